"""The cluster approval channel's record: only a complete record of this exact, fresh plan,
signed by an allowed approver, approves it; a declined plan is audited as refused, once."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from registry_lifecycle.config import Approval as ApprovalPolicy
from registry_lifecycle.gc.approval_record import (APPROVED_BY_ANNOTATION, Decision, approval_commands, audit_declined,
                                                   judge_record, record_name)
from registry_lifecycle.gc.audit import REFUSED_EXPIRED, REFUSED_NOT_APPROVED, AuditLog
from registry_lifecycle.gc.plan import ACTION_DELETE, GC_PLAN
from registry_lifecycle.lake import Lake

PLAN = "a" * 64
OTHER_PLAN = "b" * 64
PLANNED_AT = datetime(2026, 11, 27, 8, tzinfo=timezone.utc)
NOW = PLANNED_AT + timedelta(hours=3)
POLICY = ApprovalPolicy(channel="cluster")


def configmap(*, plan_id: str = PLAN, name: str | None = None, decision: str | None = "approve",
              approver: str | None = "alice", written: list[datetime] | None = None,
              created: datetime = PLANNED_AT + timedelta(hours=1)) -> dict:
    """A ConfigMap as the API returns it after `oc create configmap` and `oc annotate`."""
    data = {"plan-id": plan_id}
    if decision is not None:
        data["decision"] = decision
    metadata = {"name": name or record_name(plan_id), "namespace": POLICY.approvals_namespace,
                "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "managedFields": [{"manager": manager, "operation": "Update", "apiVersion": "v1",
                                   "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
                                  for manager, when in zip(("kubectl-create", "kubectl-annotate"),
                                                           written or [created])]}
    if approver is not None:
        metadata["annotations"] = {APPROVED_BY_ANNOTATION: approver}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def judge(record, *, policy: ApprovalPolicy = POLICY, now: datetime = NOW) -> Decision:
    return judge_record(record, plan_id=PLAN, planned_at=PLANNED_AT, policy=policy, now=now)


def test_a_complete_record_of_this_plan_approves_it_with_who_and_the_last_write():
    created, annotated = PLANNED_AT + timedelta(hours=1), PLANNED_AT + timedelta(hours=1, minutes=2)
    decision = judge(configmap(written=[created, annotated]))
    assert decision.status == "approved" and decision.channel == "cluster"
    approval = decision.approval
    assert approval is not None
    assert (approval.plan_id, approval.approved_by, approval.approved_at) == (PLAN, "alice", annotated)


@pytest.mark.parametrize(("record", "why"), [
    (None, "no approval record"),
    (configmap(plan_id=OTHER_PLAN, name=record_name(PLAN)), "is for plan bbbbbbbbbbbb"),
    (configmap(name="gc-plan-someone-else"), "is not registry-lifecycle-approvals/gc-plan-aaaa"),
    (configmap(plan_id="", name=record_name(PLAN)), "has no data.plan-id"),
    (configmap(decision=None), "has data.decision None"),
    (configmap(decision="yes please"), "write approve or reject"),
    (configmap(approver=None), f"no {APPROVED_BY_ANNOTATION} annotation"),
    (configmap(approver="  "), f"no {APPROVED_BY_ANNOTATION} annotation"),
    (configmap(created=PLANNED_AT - timedelta(days=1)), "before this plan was made"),
], ids=["absent", "other-plan-id", "other-name", "no-plan-id", "no-decision", "bad-decision", "no-approver",
        "blank-approver", "older-than-the-plan"])
def test_a_record_that_is_not_a_complete_approval_of_this_plan_approves_nothing(record, why):
    decision = judge(record)
    assert decision.status == "waiting" and not decision.approved and decision.approval is None
    assert why in decision.why


def test_an_approver_outside_the_assigned_users_approves_nothing():
    policy = ApprovalPolicy(channel="cluster", assigned_users=["bob"])
    assert judge(configmap(approver="mallory"), policy=policy).status == "waiting"
    assert judge(configmap(approver="bob"), policy=policy).approved


def test_an_expired_plan_is_no_approval_whatever_the_record_says():
    late = PLANNED_AT + POLICY.plan_max_age + timedelta(minutes=1)
    decision = judge(configmap(), now=late)
    assert decision.status == "expired" and decision.approval is None
    assert "older than gc.approval.plan_max_age (2d)" in decision.why


def test_a_rejection_record_is_final_and_names_who_rejected():
    decision = judge(configmap(decision="reject", approver="carol"))
    assert (decision.status, decision.decided_by, decision.approval) == ("rejected", "carol", None)


def test_the_commands_in_the_approval_body_write_what_approves():
    commands = approval_commands(PLAN, POLICY.approvals_namespace)
    assert f"oc create configmap {record_name(PLAN)} -n {POLICY.approvals_namespace}" in commands
    assert f"--from-literal=plan-id={PLAN}" in commands and "--from-literal=decision=approve" in commands
    assert f'{APPROVED_BY_ANNOTATION}="$(oc whoami)"' in commands


def test_a_decision_survives_xcom():
    decision = judge(configmap())
    assert Decision.from_json(decision.as_json()) == decision


# ------------------------------------------------------------------------------ refusals
def plan_rows(plan_id: str = PLAN):
    rows = [{"plan_id": plan_id, "digest": f"sha256:{i:064x}", "repository": "team-a-dev/app",
             "namespace": "team-a-dev", "action": ACTION_DELETE, "bytes": 1000 * i, "mode": "approve", "rank": i,
             "reason": "p_reuse 0.001 <= threshold 0.02", "created_at": PLANNED_AT} for i in (1, 2, 3)]
    return pa.Table.from_pylist(rows, schema=GC_PLAN.schema).to_pandas()


def test_a_declined_plan_is_audited_as_refused_once(tmp_path: Path):
    audit = AuditLog(Lake(tmp_path / "lake"), NOW.date(), "manual__declined")
    rejected = judge(configmap(decision="reject", approver="carol"))
    assert audit_declined(plan_rows(), rejected, audit, now=NOW) == 3
    assert audit_declined(plan_rows(), rejected, audit, now=NOW) == 0, "a re-run must not add records"
    log = audit.read(PLAN)
    assert list(log["outcome"]) == [REFUSED_NOT_APPROVED] * 3
    assert log["approved_by"].isna().all()
    assert log["detail"].str.contains("rejected by carol").all()


def test_an_expired_plan_is_audited_as_expired(tmp_path: Path):
    audit = AuditLog(Lake(tmp_path / "lake"), NOW.date(), "manual__expired")
    expired = judge(configmap(), now=PLANNED_AT + timedelta(days=3))
    audit_declined(plan_rows(), expired, audit, now=NOW)
    assert set(audit.read(PLAN)["outcome"]) == {REFUSED_EXPIRED}


def test_an_approved_plan_or_another_plans_rows_cannot_be_refused(tmp_path: Path):
    audit = AuditLog(Lake(tmp_path / "lake"), NOW.date(), "manual__wrong")
    with pytest.raises(ValueError, match="was approved"):
        audit_declined(plan_rows(), judge(configmap()), audit)
    with pytest.raises(ValueError, match="the decision is about plan"):
        audit_declined(plan_rows(OTHER_PLAN), judge(configmap(decision="reject")), audit)
