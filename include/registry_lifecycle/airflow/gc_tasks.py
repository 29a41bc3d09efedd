"""registry_gc's tasks: thin wrappers that build clients from Connections and the policy, call
the domain steps in `registry_lifecycle.gc`, and return small summaries for XCom (counts, ids,
the approval text; never frames or credentials).

The order, and who may skip what:

    score -> choose_approval -> approve_in_airflow | approve_on_cluster -> execute
          -> registry_garbage_collect -> verify

`choose_approval` asks for an approval only when the plan has rows of `mode: approve`, on the
channel the policy names; a plan of `auto` and `audit` rows goes straight to `execute`. A plan
that is rejected, not answered in time, or expired is audited as refused by the approval step,
which skips `execute` and so everything after it. `execute` never trusts the wiring
alone: `execute_plan` refuses rows of `mode: approve` without an approval of this exact plan.
"""
from __future__ import annotations

import logging
import re
import subprocess
from datetime import datetime, timedelta, timezone

from airflow.sdk import TriggerRule, get_current_context, task

from .approval import DECISION_XCOM, ApprovalRecordSensor, PlanApprovalOperator

log = logging.getLogger(__name__)

SCORE = "score"
APPROVE_IN_AIRFLOW = "approve_in_airflow"
APPROVE_ON_CLUSTER = "approve_on_cluster"
EXECUTE = "execute"
_FIRST_NUMBER = re.compile(r"^\s*(\d+)")


def _run_day(context):
    """The day a run scores: its logical date, or for an Asset-triggered run the day it runs."""
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date()


def _decision(ti):
    """The decision of whichever approval step ran, or None when no approval was asked for."""
    from ..gc.approval_record import Decision

    for task_id in (APPROVE_IN_AIRFLOW, APPROVE_ON_CLUSTER):
        value = ti.xcom_pull(task_ids=task_id, key=DECISION_XCOM)
        if value:
            return Decision.from_json(value)
    return None


def _plan_rows(lake, outcome: dict):
    """The stored gc_plan rows of the run's plan (none when it plans no action)."""
    from ..gc.plan import GC_PLAN
    from ..gc.run import read_plan

    if not outcome["actions"]:
        import pyarrow as pa

        return pa.Table.from_pylist([], schema=GC_PLAN.schema).to_pandas()
    return read_plan(lake, outcome["plan_id"])


def _audit_log(lake, context, api_client=None):
    from ..gc.audit import AuditLog, EventRecorder

    # Partitioned by the day of execution, which is never before the plan was made: the
    # executor reads the log back from the plan's day on to skip what is done.
    events = EventRecorder(api_client) if api_client is not None else None
    return AuditLog(lake, datetime.now(timezone.utc).date(), context["run_id"], events=events)


def _measure_storage(command: list[str], timeout: timedelta) -> int | None:
    """Bytes of the registry's blob store, printed first by `command` (None without one)."""
    if not command:
        return None
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout.total_seconds(), check=False)
    match = _FIRST_NUMBER.match(completed.stdout)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"gc.registry_gc.storage_command exited {completed.returncode} without printing a number "
                           f"of bytes first: {completed.stderr.strip()[-500:]}")
    return int(match.group(1))


def _approval_body(outcome, plan, lake, policy) -> str:
    """The plan's summary, where it is stored, when it expires and how to answer."""
    from ..config import format_duration
    from ..gc.approval_record import approval_commands
    from ..gc.plan import GC_PLAN

    settings = policy.gc.approval
    stored = [commit.files[GC_PLAN.name].path for commit in lake.commits(outcome.day)
              if commit.run_id == outcome.run_id and GC_PLAN.name in commit.files]
    location = f"{lake.url}/{stored[-1]}" if stored else f"gc_plan of {outcome.day.isoformat()}, run {outcome.run_id}"
    expires = plan["created_at"].min() + settings.plan_max_age
    lines = [outcome.summary_markdown, "", "---", "",
             f"**The plan:** `{location}`. `reglife score --date {outcome.day.isoformat()} --json` shows it again.",
             "",
             f"**Approve before {expires:%Y-%m-%d %H:%M} UTC** (gc.approval.plan_max_age "
             f"{format_duration(settings.plan_max_age)} after planning): an older plan is refused and planned again. "
             f"Reject, or no answer within {format_duration(settings.response_timeout)}, deletes nothing of this "
             "plan, its mode-auto rows included."]
    if settings.channel == "cluster":
        lines += ["", f"**Approve on the cluster** (group registry-approvers, namespace "
                      f"{settings.approvals_namespace}; write `decision=reject` to reject):", "", "```sh",
                  approval_commands(outcome.plan_id, settings.approvals_namespace), "```"]
    return "\n".join(lines)


@task
def score() -> dict:
    """Score the newest snapshot, plan, and store gc_scores and gc_plan; the plan's summary for XCom."""
    from ..gc.run import score_day
    from . import runtime

    context = get_current_context()
    lake, policy = runtime.lake(), runtime.policy()
    outcome = score_day(lake, _run_day(context), policy, policy_version=policy.version, run_key=context["run_id"])
    plan = outcome.plan
    rows_by_mode = {str(mode): int(count) for mode, count in plan["mode"].value_counts().items()}
    summary = outcome.as_json()
    summary.update(rows_by_mode=rows_by_mode, created_at=None, approval_subject=None, approval_body=None)
    if len(plan):
        approve = plan[plan["mode"] == "approve"]
        summary["created_at"] = plan["created_at"].min().to_pydatetime().isoformat()
        summary["approval_subject"] = (f"Registry GC plan {outcome.plan_id[:12]}: delete {len(approve):,} images, "
                                       f"{int(approve['bytes'].sum()):,} bytes freed")
        summary["approval_body"] = _approval_body(outcome, plan, lake, policy)
    log.info("plan %s: %s rows by mode, %d bytes freed (naive %d)", outcome.plan_id, rows_by_mode,
             outcome.bytes_reclaimable, outcome.bytes_naive)
    return summary


@task.branch
def choose_approval(outcome: dict) -> list[str]:
    """Ask for an approval on the policy's channel only when rows of mode approve need one."""
    from . import runtime

    if not outcome["rows_by_mode"].get("approve"):
        log.info("plan %s has no row of mode approve: nothing to ask", outcome["plan_id"])
        return [EXECUTE]
    channel = runtime.policy().gc.approval.channel
    return [APPROVE_ON_CLUSTER if channel == "cluster" else APPROVE_IN_AIRFLOW, EXECUTE]


def approve_in_airflow() -> PlanApprovalOperator:
    """Airflow's Human-in-the-Loop ApprovalOperator, with the plan's summary as its body."""
    return PlanApprovalOperator(task_id=APPROVE_IN_AIRFLOW, plan_task_id=SCORE, retries=0)


def approve_on_cluster() -> ApprovalRecordSensor:
    """The deferrable sensor that waits for the plan's approval record on the cluster."""
    return ApprovalRecordSensor(task_id=APPROVE_ON_CLUSTER, plan_task_id=SCORE, retries=0)


@task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
def execute(outcome: dict) -> dict:
    """Delete what the approval, the modes, the caps and the live cluster allow, in re-checked batches.

    A refused plan (approval of another plan, plan too old) fails without retry: only a new plan
    can fix it. A crash is retried: the audit log makes the retry skip what is done.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from ..gc.execute import ApprovalError, LiveCluster, OciBackend, OpenShiftBackend, execute_plan
    from ..sources.registry import RegistryClient
    from . import connections, runtime

    context = get_current_context()
    lake, policy = runtime.lake(), runtime.policy()
    plan = _plan_rows(lake, outcome)
    decision = _decision(context["ti"])
    summary = {"plan_id": outcome["plan_id"], "outcomes": {}, "deleted": 0, "bytes_deleted": 0, "removed": 0,
               "storage_before": None, "approved_by": None, "approved_at": None}
    if plan.empty:
        log.info("plan %s has nothing to delete", outcome["plan_id"])
        return summary
    approval = decision.approval if decision is not None else None
    if decision is not None and approval is None:
        # The approval step skips this task unless approved; a decision here that is not an
        # approval means the wiring changed. execute_plan still refuses what needs approval.
        log.error("plan %s reached execution without an approval (%s)", outcome["plan_id"], decision.why)

    openshift = policy.sources.openshift
    api_client = connections.kubernetes_api_client(openshift.connection_id)
    live = LiveCluster(api_client, cluster=openshift.cluster, page_size=openshift.page_size,
                       max_retries=openshift.max_retries)
    settings = policy.gc.registry_gc
    summary["storage_before"] = _measure_storage(settings.storage_command, settings.timeout)
    registry = None
    if policy.gc.backend == "oci":
        source = policy.sources.registry
        registry = RegistryClient(**connections.registry_settings(source.connection_id),
                                  concurrency=source.concurrency, max_retries=source.max_retries,
                                  timeout=source.timeout_seconds)
        backend = OciBackend(registry)
    else:
        backend = OpenShiftBackend(api_client, page_size=openshift.page_size, max_retries=openshift.max_retries)
    try:
        result = execute_plan(plan, approval=approval, policy=policy, backend=backend,
                              reread_references=live.references, reread_tags=live.tags,
                              audit=_audit_log(lake, context, api_client))
    except ApprovalError as error:
        raise AirflowFailException(f"{error}. Nothing was deleted; the refusal is in gc_audit.") from None
    finally:
        if registry is not None:
            registry.close()
    summary.update(outcomes=result.outcomes(), deleted=len(result.deleted), bytes_deleted=result.bytes_deleted,
                   removed=len(result.removed) + len(result.already_done),
                   approved_by=approval.approved_by if approval else None,
                   approved_at=approval.approved_at.isoformat() if approval else None)
    if result.circuit_breaker_open:
        raise AirflowFailException(f"plan {outcome['plan_id']}: the circuit breaker opened after "
                                   f"{len(result.failures)} failed deletions ({result.outcomes()}); see gc_audit")
    return summary


@task
def registry_garbage_collect(executed: dict) -> dict:
    """Run the registry's blob garbage collection (`gc.registry_gc.command`) after deletions.

    Without a command the registry's own pruner frees the blobs later (OpenShift's ImagePruner
    CronJob), and the bytes really freed are not measured here. The command is plain argv, so
    the same step can run in a KubernetesPodOperator (`cmds=command`) next to the storage.
    """
    from . import runtime

    settings = runtime.policy().gc.registry_gc
    if not executed["removed"]:
        log.info("nothing was removed: no garbage collection needed")
        return {"ran": False, "storage_after": None}
    if not settings.command:
        log.info("gc.registry_gc.command is empty: the registry's own pruner frees the blobs of %d removed images",
                 executed["removed"])
        return {"ran": False, "storage_after": None}
    started = datetime.now(timezone.utc)
    completed = subprocess.run(settings.command, capture_output=True, text=True,
                               timeout=settings.timeout.total_seconds(), check=False)
    output = (completed.stdout + completed.stderr).strip()
    log.info("%s exited %d after %s:\n%s", settings.command[0], completed.returncode,
             datetime.now(timezone.utc) - started, output[-4000:])
    if completed.returncode != 0:
        raise RuntimeError(f"gc.registry_gc.command exited {completed.returncode}: {output[-500:]}")
    return {"ran": True, "storage_after": _measure_storage(settings.storage_command, settings.timeout)}


@task
def verify(outcome: dict, executed: dict, collected: dict) -> dict:
    """Every kept image of the touched repositories still resolves with all of its blobs, every
    removed one is gone, and (when measured) the bytes freed match the prediction."""
    from airflow.sdk.exceptions import AirflowFailException

    from ..gc.audit import DONE
    from ..gc.verify import BYTES_OFF, verify_execution
    from ..sources.registry import RegistryClient
    from . import connections, runtime

    context = get_current_context()
    lake, policy = runtime.lake(), runtime.policy()
    plan = _plan_rows(lake, outcome)
    if plan.empty:
        return {"ok": True, "removed": 0}
    since = plan["created_at"].min().date() - timedelta(days=1)
    records = _audit_log(lake, context).read(outcome["plan_id"], since=since)
    removed = records[records["outcome"].isin(DONE)].drop_duplicates("digest")
    measured = collected["ran"] and executed["storage_before"] is not None and collected["storage_after"] is not None
    source = policy.sources.registry
    with RegistryClient(**connections.registry_settings(source.connection_id), concurrency=source.concurrency,
                        max_retries=source.max_retries, timeout=source.timeout_seconds) as client:
        result = verify_execution(client, removed, storage_before=executed["storage_before"] if measured else None,
                                  storage_after=collected["storage_after"] if measured else None)
    summary = {"ok": result.ok, "removed": result.removed, "kept_manifests": result.kept_manifests,
               "blobs": result.blobs, "predicted_bytes": result.predicted_bytes, "freed_bytes": result.freed_bytes,
               "bytes_error": result.bytes_error, "failures": [str(failure) for failure in result.failures]}
    broken = [failure for failure in result.failures if failure.kind != BYTES_OFF]
    if broken:
        raise AirflowFailException(f"plan {outcome['plan_id']}: verification failed: {result.summary()}")
    if result.failures:
        # Other garbage (interrupted uploads, earlier deletions) may be collected in the same
        # run; the mismatch is reported, and what is kept is intact.
        log.error("plan %s: %s", outcome["plan_id"], result.summary())
    return summary
