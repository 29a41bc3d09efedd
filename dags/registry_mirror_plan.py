"""
### registry_mirror_plan

Weekly. Decides which images are worth copying to which mirror registry, from what the
clusters of each region pulled and what each target charges: a copy is planned when the
cross-region egress it saves exceeds its storage plus the transfer, or when a disaster-recovery
rule requires it (for example: every image running in prod exists in at least two
registries); allow/deny patterns bound it. Each line says why; the totals give the monthly cost
delta per target. A platform engineer approves the plan (or some of its targets); then every
image is copied with its index children, signatures and SBOMs through the registry API
(cross-repository mounts, resumable uploads, a bandwidth limit), and each copy is verified by
digest on its target. No answer within 24 hours is a Reject.

Outputs: the `mirror_plan` and `mirror_audit` datasets in the lake; `reglife mirror-plan --out`
writes the same plan as skopeo sync YAML, oc-mirror ImageSetConfiguration and
ImageDigestMirrorSets. Policy: the `mirror:` section.
"""
import pendulum
from airflow.sdk import dag
from registry_lifecycle.airflow import mirror_tasks


@dag(
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,          # two runs copying at once would race for the same targets
    doc_md=__doc__,
    tags=["registry", "mirror"],
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(minutes=10)},
)
def registry_mirror_plan():
    plan = mirror_tasks.plan()
    decision = mirror_tasks.approval(plan)
    copied = mirror_tasks.copy(plan, decision.output)
    mirror_tasks.verify(copied)


registry_mirror_plan()
