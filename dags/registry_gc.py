"""
### registry_gc

Runs whenever registry_extract publishes a snapshot. Scores every image of the newest snapshot
with the reuse model trained on this registry's own pull history, plans what to delete (ranked,
capped, with the honest bytes it frees), and waits for a human to approve that exact plan:
in Airflow (the Human-in-the-Loop **ApprovalOperator**: Required Actions page or HITL API) or,
with `gc.approval.channel: cluster`, through a ConfigMap named after the plan id that a member
of `registry-approvers` creates with `oc` (deploy/rbac.yaml). Reject, no answer within
`gc.approval.response_timeout`, or a plan older than `gc.approval.plan_max_age` executes nothing.

Approved plans are deleted in batches that re-read the live cluster first (what a workload
started to use, or a tag points at again, since planning stays), within the per-run caps and
behind a circuit breaker, through the OpenShift API or the registry's v2 API (`gc.backend`).
Then the registry's blob garbage collection runs (`gc.registry_gc.command`, or the registry's
own pruner), and verification proves that every kept image is still served and, when the blob
store is measured, that the bytes freed match the prediction.

Modes per namespace (`gc.modes`): `audit` reports only, `approve` (the default) needs the
approval, `auto` deletes without one. Every action and every refusal is in the append-only
`gc_audit` dataset, with who approved, when and the plan id, and each deletion posts a
Kubernetes Event on its ImageStream. Re-running any task is safe.

Connections: `openshift_default` (Kubernetes), `registry_default` (HTTP), `aws_default` (S3 lake).
Policy: `REGLIFE_POLICY`, section `gc:`.
"""
import pendulum
from airflow.sdk import dag

from registry_lifecycle.airflow import assets, gc_tasks


@dag(
    schedule=[assets.SNAPSHOT],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,          # two runs must never execute one plan at the same time
    doc_md=__doc__,
    tags=["registry", "gc"],
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(minutes=5)},
)
def registry_gc():
    outcome = gc_tasks.score()
    channel = gc_tasks.choose_approval(outcome)
    approvals = [gc_tasks.approve_in_airflow(), gc_tasks.approve_on_cluster()]
    executed = gc_tasks.execute(outcome)
    # The branch keeps `execute` and at most one approval step; an approval step that does
    # not approve skips `execute`, and with it everything after.
    channel >> [*approvals, executed]
    approvals >> executed
    collected = gc_tasks.registry_garbage_collect(executed)
    gc_tasks.verify(outcome, executed, collected)


registry_gc()
