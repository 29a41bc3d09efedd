"""Approval decisions, and the approval record an approver writes on the cluster itself.

Whichever channel the policy picks (`gc.approval.channel`), what comes back is a `Decision`
about one plan id: approved, rejected, expired, or no answer in time. Only an approval lets
`execute_plan` act on rows of `mode: approve`; a declined plan is audited as refused, with
who declined it and when, so the gc_audit log tells the whole story of every plan.

The cluster channel, for approvers who work with `oc` rather than Airflow: one ConfigMap per
plan, in `gc.approval.approvals_namespace`, where only the group `registry-approvers` may write
(deploy/rbac.yaml). The approval body prints the exact commands:

    oc create configmap gc-plan-<plan id> -n registry-lifecycle-approvals \\
        --from-literal=plan-id=<plan id> --from-literal=decision=approve
    oc annotate configmap gc-plan-<plan id> -n registry-lifecycle-approvals \\
        registry-lifecycle/approved-by="$(oc whoami)"

Who: the `registry-lifecycle/approved-by` annotation, which RBAC lets only approvers write;
the API server's audit log holds the authenticated identity of both writes (managedFields only
name the client, e.g. `kubectl-annotate`). When: the last write to the record (the newest
managedFields time, else its creationTimestamp), so an edit after the fact moves the approval
later, never earlier.

A record is no approval (and the sensor keeps waiting for a valid one until its deadline) when
it is for another plan id, lacks the plan id, the decision or the approver, names an approver
outside `gc.approval.assigned_users` (when that list is set), is being deleted, or was written
before the plan existed (a leftover of an identical earlier plan: re-approve the new one). A
plan older than `plan_max_age` is expired, approved or not.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import pandas as pd

from ..config import Approval as ApprovalPolicy
from ..config import format_duration
from .audit import REFUSED_EXPIRED, REFUSED_NOT_APPROVED, AuditLog, AuditRecord
from .execute import Approval

RECORD_PREFIX = "gc-plan-"
PLAN_ID_KEY = "plan-id"
DECISION_KEY = "decision"
APPROVED_BY_ANNOTATION = "registry-lifecycle/approved-by"
# Airflow's clock and the API server's may disagree a little; a record is not "older than its
# plan" because of that.
CLOCK_SKEW = timedelta(minutes=5)

Status = Literal["approved", "rejected", "expired", "timed_out", "waiting"]
# Statuses after which nothing will change: the sensor stops waiting.
FINAL: frozenset[str] = frozenset({"approved", "rejected", "expired", "timed_out"})


@dataclass(frozen=True)
class Decision:
    """What a channel decided about one plan, with who decided, when, and one sentence why."""

    plan_id: str
    status: Status
    channel: Literal["airflow", "cluster"]
    why: str
    decided_by: str | None = None
    decided_at: datetime | None = None

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def approval(self) -> Approval | None:
        """The approval `execute_plan` takes, or None when the plan was not approved."""
        if not self.approved or self.decided_by is None or self.decided_at is None:
            return None
        return Approval(plan_id=self.plan_id, approved_by=self.decided_by, approved_at=self.decided_at)

    def as_json(self) -> dict:
        return {"plan_id": self.plan_id, "status": self.status, "channel": self.channel, "why": self.why,
                "decided_by": self.decided_by,
                "decided_at": self.decided_at.isoformat() if self.decided_at is not None else None}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Decision:
        decided_at = value.get("decided_at")
        return cls(plan_id=value["plan_id"], status=value["status"], channel=value["channel"], why=value["why"],
                   decided_by=value.get("decided_by"),
                   decided_at=datetime.fromisoformat(decided_at) if decided_at else None)


def record_name(plan_id: str) -> str:
    """The ConfigMap an approval of `plan_id` is written to (a plan id is 64 hex digits)."""
    return f"{RECORD_PREFIX}{plan_id}"


def approval_commands(plan_id: str, namespace: str) -> str:
    """The `oc` commands that approve `plan_id` on the cluster channel, for the approval body."""
    name = record_name(plan_id)
    return (f"oc create configmap {name} -n {namespace} --from-literal={PLAN_ID_KEY}={plan_id} "
            f"--from-literal={DECISION_KEY}=approve\n"
            f"oc annotate configmap {name} -n {namespace} {APPROVED_BY_ANNOTATION}=\"$(oc whoami)\"")


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def recorded_at(metadata: Mapping[str, Any]) -> datetime | None:
    """When the record was last written: the newest managedFields time, else its creation."""
    times = [_timestamp(entry.get("time")) for entry in metadata.get("managedFields") or []
             if isinstance(entry, Mapping)]
    times = [when for when in times if when is not None]
    return max(times) if times else _timestamp(metadata.get("creationTimestamp"))


def plan_expiry(planned_at: datetime, policy: ApprovalPolicy) -> datetime:
    return planned_at + policy.plan_max_age


def judge_record(record: Mapping[str, Any] | None, *, plan_id: str, planned_at: datetime, policy: ApprovalPolicy,
                 now: datetime) -> Decision:
    """The decision a ConfigMap (as the API returns it, camelCase, or None when absent) states
    about `plan_id`, planned at `planned_at`; `waiting` says why it is not (yet) a decision."""
    name = record_name(plan_id)

    def waiting(why: str) -> Decision:
        return Decision(plan_id, "waiting", "cluster", why)

    if now - planned_at > policy.plan_max_age:
        return Decision(plan_id, "expired", "cluster",
                        f"the plan is older than gc.approval.plan_max_age ({format_duration(policy.plan_max_age)}): "
                        "re-plan it")
    where = f"{policy.approvals_namespace}/{name}"
    if record is None:
        return waiting(f"no approval record {where} yet")
    metadata = record.get("metadata") or {}
    if metadata.get("name") != name or metadata.get("namespace", policy.approvals_namespace) != \
            policy.approvals_namespace:
        return waiting(f"the record {metadata.get('namespace')}/{metadata.get('name')} is not {where}")
    if metadata.get("deletionTimestamp"):
        return waiting(f"the record {where} is being deleted")
    data = record.get("data") or {}
    recorded_plan = str(data.get(PLAN_ID_KEY, "")).strip()
    if not recorded_plan:
        return waiting(f"the record {where} has no data.{PLAN_ID_KEY}: it must name the plan it approves")
    if recorded_plan != plan_id:
        return waiting(f"the record {where} is for plan {recorded_plan[:12]}, not {plan_id[:12]}")
    decision = str(data.get(DECISION_KEY, "")).strip().lower()
    if decision not in ("approve", "reject"):
        return waiting(f"the record {where} has data.{DECISION_KEY} {data.get(DECISION_KEY)!r}; write approve or "
                       "reject")
    approver = str((metadata.get("annotations") or {}).get(APPROVED_BY_ANNOTATION, "")).strip()
    if not approver:
        return waiting(f"the record {where} has no {APPROVED_BY_ANNOTATION} annotation: annotate it with "
                       "`$(oc whoami)`")
    if policy.assigned_users and approver not in policy.assigned_users:
        return waiting(f"{approver}, who signed {where}, is not one of gc.approval.assigned_users")
    when = recorded_at(metadata)
    if when is None:
        return waiting(f"the record {where} has neither managedFields times nor a creationTimestamp")
    if when < planned_at - CLOCK_SKEW:
        return waiting(f"the record {where} was written at {when:%Y-%m-%d %H:%M:%S} UTC, before this plan was made "
                       f"({planned_at:%Y-%m-%d %H:%M:%S} UTC): delete it and approve again")
    if when > plan_expiry(planned_at, policy):
        return Decision(plan_id, "expired", "cluster",
                        f"the record {where} came after the plan expired (gc.approval.plan_max_age "
                        f"{format_duration(policy.plan_max_age)})", approver, when)
    if decision == "reject":
        return Decision(plan_id, "rejected", "cluster", f"rejected by {approver} in {where}", approver, when)
    return Decision(plan_id, "approved", "cluster", f"approved by {approver} in {where}", approver, when)


def audit_declined(plan: pd.DataFrame, decision: Decision, audit: AuditLog, *, now: datetime | None = None) -> int:
    """Audit every row of a plan that was not approved as refused, with the decision's reason.

    A re-run adds nothing: rows that already carry this refusal are left alone. Returns the
    number of records written.
    """
    if decision.approved:
        raise ValueError(f"plan {decision.plan_id} was approved; execute it instead of refusing it")
    if plan.empty:
        return 0
    if set(plan["plan_id"]) != {decision.plan_id}:
        raise ValueError(f"the decision is about plan {decision.plan_id}, "
                         f"the rows are of {sorted(set(plan['plan_id']))}")
    outcome = REFUSED_EXPIRED if decision.status == "expired" else REFUSED_NOT_APPROVED
    detail = f"nothing in this plan was executed: {decision.why}"
    created = pd.Timestamp(plan["created_at"].min()).to_pydatetime()
    earlier = audit.read(decision.plan_id, since=created.date() - timedelta(days=1),
                         columns=["digest", "outcome", "detail"])
    done = set(earlier.loc[(earlier["outcome"] == outcome) & (earlier["detail"] == detail), "digest"])
    executed_at = now or datetime.now(timezone.utc)
    records = [AuditRecord(plan_id=decision.plan_id, digest=row.digest, repository=row.repository,
                           namespace=row.namespace, action=row.action, bytes=int(row.bytes), approved_by=None,
                           approved_at=None, executed_at=executed_at, outcome=outcome, detail=detail)
               for row in plan.itertuples() if row.digest not in done]
    audit.record(records)
    return len(records)
