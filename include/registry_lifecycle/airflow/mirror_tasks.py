"""registry_mirror_plan's tasks: plan -> (anything to do?) -> approval -> copy -> verify.

Thin wrappers: clients come from Connections (the source registry's `sources.registry`
connection, each target's `mirror.targets[].connection_id`: login, password or token,
`ca_bundle`/`verify` in extra; the API URL is the target's `url` in the policy), the work is
`registry_lifecycle.mirror`. XCom carries summaries (plan id, counts, costs, the approver's
answer), never lines or credentials.

The approval is Airflow's Human-in-the-Loop `ApprovalOperator`: its body is the plan's summary
(totals, monthly cost delta per target, the largest lines, the plan id), a `targets` field
lets the approver limit the copy to some targets, and no answer within the timeout is a
Reject. The copy binds the answer to the exact plan id the approver saw; a rejected plan
skips copy and verify. Copy and verify re-run safely: what is done is in `mirror_audit`.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import get_current_context, task

log = logging.getLogger(__name__)

PLAN_TASK_ID = "plan"
APPROVAL_TASK_ID = "approve"
# The DAG file cannot read the policy (no file I/O at parse time), so the wait is fixed here;
# the copy still refuses a plan older than the policy's mirror.approval.plan_max_age.
RESPONSE_TIMEOUT = timedelta(hours=24)


# ------------------------------------------------------------------------------ clients
def _target_clients(policy) -> dict:
    from ..mirror.run import target_client
    from . import connections

    clients = {}
    for target in policy.mirror.targets:
        settings = connections.registry_settings(target.connection_id)
        clients[target.name] = target_client(target, policy, username=settings["username"],
                                             password=settings["password"], verify=settings["verify"])
    return clients


def _source_client(policy):
    from ..sources.registry import RegistryClient
    from . import connections

    settings = policy.sources.registry
    transfer = policy.mirror.transfer
    return RegistryClient(**connections.registry_settings(settings.connection_id),
                          concurrency=max(transfer.concurrency * 2, 2), max_retries=transfer.max_retries,
                          timeout=transfer.timeout_seconds)


def _close(clients: dict) -> None:
    for client in clients.values():
        client.close()


# ------------------------------------------------------------------------------ steps
def make_plan(day, run_id: str) -> dict:
    """Plan from the lake and the targets' state, publish `mirror_plan`, return the summary."""
    from ..mirror.plan import plan_day, publish
    from . import runtime

    policy = runtime.policy()
    lake = runtime.lake()
    clients = _target_clients(policy)
    try:
        plan = plan_day(lake, day, policy, clients=clients)
    finally:
        _close(clients)
    publish(lake, plan, run_id)
    summary = plan.as_dict()
    summary.update(run_id=run_id, markdown=plan.summary_markdown(),
                   actions=summary["counts"]["mirror"] + summary["counts"]["retire"])
    log.info("mirror plan %s: %s; monthly cost delta %.4f %s", plan.plan_id, summary["counts"],
             summary["monthly_cost_delta"], plan.currency)
    return summary


def approval_from_response(plan_summary: dict, response: dict | None):
    """The recorded approval of exactly this plan, from the ApprovalOperator's answer; raises
    ApprovalError for no answer, a Reject, or targets the plan does not have."""
    from ..mirror.errors import ApprovalError
    from ..mirror.execute import Approval

    if not response or response.get("chosen_options") != ["Approve"]:
        raise ApprovalError(f"mirror plan {plan_summary['plan_id']} was not approved "
                            f"(answer: {(response or {}).get('chosen_options')})")
    user = response.get("responded_by_user") or {}
    approved_by = user.get("name") or user.get("id") if isinstance(user, dict) else str(user)
    if not approved_by:
        raise ApprovalError("the approval names nobody; an approval must say who gave it")
    responded_at = response.get("responded_at")
    if isinstance(responded_at, str):
        responded_at = datetime.fromisoformat(responded_at)
    responded_at = responded_at or datetime.now(timezone.utc)
    chosen = str((response.get("params_input") or {}).get("targets") or "")
    targets = {name.strip() for name in chosen.split(",") if name.strip()}
    planned = {row["target"] for row in plan_summary.get("totals", [])}
    unknown = sorted(targets - planned)
    if unknown:
        raise ApprovalError(f"the approver chose target(s) {', '.join(unknown)} that plan "
                            f"{plan_summary['plan_id'][:12]} does not have ({', '.join(sorted(planned))})")
    return Approval(plan_id=plan_summary["plan_id"], approved_by=str(approved_by), approved_at=responded_at,
                    targets=frozenset(targets) or None)


def run_copy(plan_summary: dict, response: dict | None, run_id: str) -> dict:
    """Execute the approved plan; raises (after auditing) when anything is left undone, so
    that the task's retry resumes it."""
    from datetime import date

    from ..mirror.audit import MirrorAuditLog
    from ..mirror.execute import execute_mirror_plan
    from ..mirror.plan import read_plan
    from . import runtime

    approval = approval_from_response(plan_summary, response)
    policy = runtime.policy()
    lake = runtime.lake()
    day = date.fromisoformat(plan_summary["day"])
    plan = read_plan(lake, day, plan_summary["plan_id"], run_id=plan_summary["run_id"])
    audit = MirrorAuditLog(lake, day, run_id)
    clients = _target_clients(policy)
    try:
        with _source_client(policy) as source:
            result = execute_mirror_plan(plan, approval=approval, policy=policy, source=source, targets=clients,
                                         audit=audit)
    finally:
        _close(clients)
    summary = {**result.as_dict(), "day": plan_summary["day"], "plan_run_id": plan_summary["run_id"],
               "approved_by": approval.approved_by}
    if not result.complete:
        raise RuntimeError(f"mirror plan {result.plan_id[:12]} is not complete: {result.outcomes()}"
                           + (f"; stopped targets: {result.failed_targets}" if result.failed_targets else "")
                           + ". Everything done is audited in mirror_audit; the retry resumes from there.")
    return summary


def run_verify(copy_summary: dict, *, deep: bool = False) -> dict:
    """Check every copy the audit log records for the plan, on its target, by digest."""
    from datetime import date

    from ..mirror.audit import MirrorAuditLog
    from ..mirror.plan import read_plan
    from ..mirror.verify import verify_copies
    from . import runtime

    policy = runtime.policy()
    lake = runtime.lake()
    day = date.fromisoformat(copy_summary["day"])
    plan = read_plan(lake, day, copy_summary["plan_id"], run_id=copy_summary["plan_run_id"])
    held = MirrorAuditLog(lake, day, "verify").read(copy_summary["plan_id"], since=day - timedelta(days=1))
    clients = _target_clients(policy)
    try:
        with _source_client(policy) as source:
            result = verify_copies(held, source=source, targets=clients,
                                   target_settings={target.name: target for target in policy.mirror.targets},
                                   source_repositories=dict(zip(plan["digest"], plan["source_repository"])), deep=deep)
    finally:
        _close(clients)
    if not result.ok:
        raise RuntimeError(f"{len(result.problems)} problem(s) with the copies of mirror plan "
                           f"{copy_summary['plan_id'][:12]}: " + "; ".join(result.problems[:10]))
    return {**result.as_dict(), "plan_id": copy_summary["plan_id"]}


# ------------------------------------------------------------------------------ tasks
@task(task_id=PLAN_TASK_ID)
def plan() -> dict[str, Any]:
    """Demand + cost model over the newest snapshot and the pulls before the run's end."""
    context = get_current_context()
    day = (context.get("data_interval_end") or context["logical_date"]).date()
    return make_plan(day, context["run_id"])


@task.short_circuit
def anything_to_do(plan_summary: dict) -> bool:
    """Ask nobody to approve a plan that copies and retires nothing."""
    if not plan_summary["actions"]:
        log.info("mirror plan %s has nothing to copy or retire; skipping the approval", plan_summary["plan_id"][:12])
    return bool(plan_summary["actions"])


def approval(plan_summary):
    """The HITL ApprovalOperator showing the plan; its XCom is the approver's answer."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import Param

    pulled = f"ti.xcom_pull(task_ids='{PLAN_TASK_ID}')"
    operator = ApprovalOperator(
        task_id=APPROVAL_TASK_ID,
        subject=(f"Registry mirror plan {{{{ {pulled}['plan_id'][:12] }}}}: copy {{{{ {pulled}['counts']['mirror'] }}}}, "
                 f"retire {{{{ {pulled}['counts']['retire'] }}}}, {{{{ '%+.2f' % {pulled}['monthly_cost_delta'] }}}} "
                 f"{{{{ {pulled}['currency'] }}}}/month"),
        body=f"{{{{ {pulled}['markdown'] }}}}",
        defaults="Reject",
        response_timeout=RESPONSE_TIMEOUT,
        params={"targets": Param("", type="string", title="Targets",
                                 description="Comma-separated targets to copy to; empty copies to every target "
                                             "of the plan")},
        retries=0,          # a second request would ask again for a plan already answered
    )
    anything_to_do(plan_summary) >> operator
    return operator


@task
def copy(plan_summary: dict, response: dict | None) -> dict:
    """Copy (and retire) what the approver approved; resumes from mirror_audit on retry."""
    return run_copy(plan_summary, response, get_current_context()["run_id"])


@task
def verify(copy_summary: dict) -> dict:
    """Every copy served by its target under its digest, children, referrers and blobs included."""
    return run_verify(copy_summary)
