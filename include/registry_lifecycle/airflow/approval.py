"""The two approval channels of registry_gc, as Airflow operators.

- `PlanApprovalOperator` is Airflow's own Human-in-the-Loop `ApprovalOperator`. Its subject,
  body (the plan's summary), assigned users and response timeout come from the plan and the
  policy when the task runs, not when the DAG file is parsed (no file is read at parse time).
  On Airflow 3.3 the task waits in the `awaiting_input` state; an approver answers in the UI's
  Required Actions page or through the HITL REST API (`PATCH .../hitlDetails`). No answer within
  `gc.approval.response_timeout` is Reject (the scheduler's timeout sweep applies the default).
- `ApprovalRecordSensor` waits, deferred to the triggerer, for an approval record on the cluster
  (`gc.approval.channel: cluster`): a ConfigMap named after the plan id in the approvals
  namespace, judged by `registry_lifecycle.gc.approval_record`.

Both push the same `Decision` (XCom key `decision`). Unless the plan was approved they audit
every row of it as refused (with who declined it and why) and, as ApprovalOperator does on
Reject, skip the step right after them: a declined plan executes nothing.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import SkipMixin
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from ..gc.approval_record import Decision

log = logging.getLogger(__name__)

DECISION_XCOM = "decision"


def _plan_summary(context, plan_task_id: str) -> dict:
    outcome = context["ti"].xcom_pull(task_ids=plan_task_id)
    if not outcome or not outcome.get("plan_id"):
        raise AirflowFailException(f"no plan from task {plan_task_id!r}: there is nothing to approve")
    return outcome


def _record_refusal(context, decision: Decision) -> None:
    """Audit every row of a plan that was not approved as refused, with who declined it and why."""
    from ..gc.approval_record import audit_declined
    from ..gc.audit import AuditLog
    from ..gc.run import read_plan
    from . import runtime

    lake = runtime.lake()
    # The day of the decision: never before the plan was made, where the log is read back from.
    audit = AuditLog(lake, datetime.now(timezone.utc).date(), context["run_id"])
    written = audit_declined(read_plan(lake, decision.plan_id), decision, audit)
    log.warning("plan %s is not approved, nothing of it runs: %s (%d rows audited as refused)", decision.plan_id,
                decision.why, written)


def _skip_next(operator: BaseSensorOperator | ApprovalOperator, context) -> None:
    """What ApprovalOperator does on Reject: the tasks right after this one are skipped."""
    following = [task for task in context["task"].get_direct_relatives(upstream=False) if not task.is_teardown]
    if following:
        operator.skip(ti=context["ti"], tasks=following)


# ------------------------------------------------------------------------------ Airflow HITL
def hitl_decision(plan_id: str, event: dict[str, Any], response_timeout: timedelta) -> Decision:
    """The Decision an answered (or timed-out) HITL approval event states."""
    from ..config import format_duration
    from ..gc.approval_record import Decision

    chosen = (event.get("chosen_options") or [None])[0]
    user = event.get("responded_by_user") or {}
    who = user.get("name") or user.get("id")
    when = event.get("responded_at")
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if not who or event.get("timedout"):
        return Decision(plan_id, "timed_out", "airflow",
                        f"nobody answered within gc.approval.response_timeout ({format_duration(response_timeout)}): "
                        f"{chosen or 'Reject'} by default", None, when)
    if chosen == ApprovalOperator.APPROVE:
        return Decision(plan_id, "approved", "airflow", f"approved by {who} in Airflow", who, when)
    return Decision(plan_id, "rejected", "airflow", f"rejected by {who} in Airflow", who, when)


class PlanApprovalOperator(ApprovalOperator):
    """ApprovalOperator for one GC plan: Approve runs it, Reject (the default on timeout) skips it."""

    def __init__(self, *, plan_task_id: str, **kwargs) -> None:
        # Placeholders: the real subject and body are the plan's, set when the task runs.
        super().__init__(subject="Registry GC plan", body=None, defaults=ApprovalOperator.REJECT, **kwargs)
        self.plan_task_id = plan_task_id

    def execute(self, context):
        from ..config import format_duration
        from . import runtime

        settings = runtime.policy().gc.approval
        outcome = _plan_summary(context, self.plan_task_id)
        self.subject = outcome["approval_subject"]
        self.body = outcome["approval_body"]
        # HITL users are {id, name}; the policy lists the auth manager's user ids (with the
        # SimpleAuthManager and most SSO setups, the user name).
        self.assigned_users = [{"id": user, "name": user} for user in settings.assigned_users] or None
        self.response_timeout = settings.response_timeout
        log.info("asking %s to approve plan %s within %s", ", ".join(settings.assigned_users) or "any DAG editor",
                 outcome["plan_id"], format_duration(settings.response_timeout))
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            from . import runtime

            self.validate_chosen_options(event["chosen_options"])
            outcome = _plan_summary(context, self.plan_task_id)
            decision = hitl_decision(outcome["plan_id"], event, runtime.policy().gc.approval.response_timeout)
            log.info("plan %s: %s", decision.plan_id, decision.why)
            # Pushed before the parent skips what follows: a skip ends the task without a return value.
            context["ti"].xcom_push(key=DECISION_XCOM, value=decision.as_json())
            if not decision.approved:
                _record_refusal(context, decision)
        return super().execute_complete(context, event)


# ------------------------------------------------------------------------------ cluster record
class ApprovalRecordTrigger(BaseTrigger):
    """Polls the plan's approval ConfigMap until it states a decision, or the deadline passes.

    A missing, incomplete or foreign record keeps it waiting (an approver may create the record
    and annotate it in two steps). A Forbidden read is an error, not a wait: without the
    approval-reader RoleBinding nobody's approval could ever be seen.
    """

    def __init__(self, *, conn_id: str, plan_id: str, planned_at: str, approval_policy: dict, deadline: str,
                 poll_interval: float = 30.0) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.plan_id = plan_id
        self.planned_at = planned_at
        self.approval_policy = approval_policy
        self.deadline = deadline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"conn_id": self.conn_id, "plan_id": self.plan_id, "planned_at": self.planned_at,
                 "approval_policy": self.approval_policy, "deadline": self.deadline,
                 "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio.client import ApiException, CoreV1Api

        from ..config import Approval as ApprovalPolicy
        from ..gc.approval_record import FINAL, Decision, judge_record, record_name

        policy = ApprovalPolicy.model_validate(self.approval_policy)
        planned_at = datetime.fromisoformat(self.planned_at)
        deadline = datetime.fromisoformat(self.deadline)
        name, namespace = record_name(self.plan_id), policy.approvals_namespace
        hook = AsyncKubernetesHook(conn_id=self.conn_id)
        last = f"no approval record {namespace}/{name} yet"
        async with hook.get_conn() as api_client:
            core = CoreV1Api(api_client)
            while True:
                record = None
                try:
                    configmap = await core.read_namespaced_config_map(name, namespace)
                    record = api_client.sanitize_for_serialization(configmap)
                    readable = True
                except ApiException as error:
                    if error.status in (401, 403):
                        yield TriggerEvent({"error": f"reading {namespace}/{name}: HTTP {error.status} {error.reason}; "
                                                     "bind the approval-reader Role of deploy/rbac.yaml"})
                        return
                    readable = error.status == 404
                    if not readable:
                        last = f"could not read {namespace}/{name}: HTTP {error.status} {error.reason}"
                except (OSError, asyncio.TimeoutError) as error:
                    readable = False
                    last = f"could not read {namespace}/{name}: {type(error).__name__}"
                now = datetime.now(timezone.utc)
                if readable:
                    decision = judge_record(record, plan_id=self.plan_id, planned_at=planned_at, policy=policy,
                                            now=now)
                    if decision.status in FINAL:
                        yield TriggerEvent({DECISION_XCOM: decision.as_json()})
                        return
                    if decision.why != last:
                        self.log.info("plan %s: %s", self.plan_id[:12], decision.why)
                    last = decision.why
                else:
                    self.log.warning("plan %s: %s; trying again", self.plan_id[:12], last)
                if now >= deadline:
                    timed_out = Decision(self.plan_id, "timed_out", "cluster",
                                         f"no valid approval record by {deadline:%Y-%m-%d %H:%M:%S} UTC "
                                         f"(the last check: {last})")
                    yield TriggerEvent({DECISION_XCOM: timed_out.as_json()})
                    return
                remaining = (deadline - now).total_seconds()
                await asyncio.sleep(max(0.0, min(self.poll_interval, remaining)))


class ApprovalRecordSensor(BaseSensorOperator, SkipMixin):
    """Waits, deferred to the triggerer, for the plan's approval record on the cluster.

    The deadline is the earlier of `gc.approval.response_timeout` from now and the plan's
    expiry (`plan_max_age` after it was made). An approval lets the next step run; anything
    else (a rejection, an expired plan, no valid record in time) skips it, like Reject does.
    """

    inherits_from_skipmixin = True

    def __init__(self, *, plan_task_id: str, poll_interval: timedelta = timedelta(seconds=30), **kwargs) -> None:
        super().__init__(poke_interval=poll_interval, **kwargs)
        self.plan_task_id = plan_task_id

    def poke(self, context) -> PokeReturnValue:
        """One synchronous read: a record written before this step started decides at once."""
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        from ..gc.approval_record import FINAL, judge_record, record_name
        from . import connections, runtime

        policy = runtime.policy()
        settings = policy.gc.approval
        outcome = _plan_summary(context, self.plan_task_id)
        api_client = connections.kubernetes_api_client(policy.sources.openshift.connection_id)
        try:
            configmap = CoreV1Api(api_client).read_namespaced_config_map(record_name(outcome["plan_id"]),
                                                                         settings.approvals_namespace)
            record = api_client.sanitize_for_serialization(configmap)
        except ApiException as error:
            if error.status != 404:
                raise
            record = None
        decision = judge_record(record, plan_id=outcome["plan_id"],
                                planned_at=datetime.fromisoformat(outcome["created_at"]), policy=settings,
                                now=datetime.now(timezone.utc))
        return PokeReturnValue(is_done=decision.status in FINAL, xcom_value=decision.as_json())

    def execute(self, context):
        from . import runtime

        first = self.poke(context)
        if first.is_done:
            return self._conclude(context, first.xcom_value)
        policy = runtime.policy()
        settings = policy.gc.approval
        outcome = _plan_summary(context, self.plan_task_id)
        planned_at = datetime.fromisoformat(outcome["created_at"])
        now = datetime.now(timezone.utc)
        deadline = min(now + settings.response_timeout, planned_at + settings.plan_max_age)
        log.info("waiting until %s for an approval record of plan %s in namespace %s", deadline.isoformat(),
                 outcome["plan_id"], settings.approvals_namespace)
        self.defer(trigger=ApprovalRecordTrigger(conn_id=policy.sources.openshift.connection_id,
                                                 plan_id=outcome["plan_id"], planned_at=planned_at.isoformat(),
                                                 approval_policy=settings.model_dump(mode="json"),
                                                 deadline=deadline.isoformat(),
                                                 poll_interval=self.poke_interval),
                   method_name="execute_complete",
                   # The trigger ends itself at the deadline; this only catches a triggerer that lost it.
                   timeout=deadline - now + timedelta(minutes=10))

    def execute_complete(self, context, event: dict[str, Any]) -> dict:
        if "error" in event:
            raise AirflowFailException(event["error"])
        return self._conclude(context, event[DECISION_XCOM])

    def _conclude(self, context, decision_json: dict) -> dict:
        from ..gc.approval_record import Decision

        decision = Decision.from_json(decision_json)
        context["ti"].xcom_push(key=DECISION_XCOM, value=decision.as_json())
        if decision.approved:
            log.info("plan %s: %s at %s", decision.plan_id, decision.why, decision.decided_at)
            return decision.as_json()
        _record_refusal(context, decision)
        _skip_next(self, context)
        return decision.as_json()
