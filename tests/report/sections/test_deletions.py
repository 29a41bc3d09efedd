"""Every executed action is joined to its plan and approval; what has no matching approval is
an exception with the reason an auditor needs."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
from registry_lifecycle.gc.audit import AuditRecord, records_frame
from registry_lifecycle.mirror.audit import MirrorRecord
from registry_lifecycle.mirror.audit import records_frame as mirror_records_frame
from registry_lifecycle.report.sections.deletions import (
    AUTO_MODE,
    LATE_APPROVAL,
    MIRROR_EXECUTED,
    MIRROR_KEY,
    NO_APPROVAL,
    NO_PLAN,
    join_approvals,
    plan_table,
)

T = datetime(2026, 9, 11, 10, tzinfo=timezone.utc)
EARLIER, LATER = datetime(2026, 9, 11, 9, tzinfo=timezone.utc), datetime(2026, 9, 11, 11, tzinfo=timezone.utc)


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def _record(plan, n, outcome="deleted", by=None, at=None):
    return AuditRecord(plan, _digest(n), "shop-dev/web", "shop-dev", "delete", 100, by, at, T, outcome)


def _plans(*rows):
    return pd.DataFrame([{"plan_id": plan, "digest": _digest(n), "mode": mode, "created_at": EARLIER}
                         for plan, n, mode in rows])


def test_each_kind_of_missing_approval_is_named():
    audit = records_frame([
        _record("p1", 1, by="alice", at=EARLIER),                # approved before execution: no exception
        _record("p2", 2),                                        # mode auto: allowed by policy, still listed
        _record("p1", 3),                                        # approve mode, no approval
        _record("p1", 4, by="alice", at=LATER),                  # approved after the fact
        _record("p9", 5, by="bob", at=EARLIER),                  # no stored plan has it
        _record("p1", 6, outcome="refused_not_approved"),        # executed nothing
    ])
    plans = _plans(("p1", 1, "approve"), ("p2", 2, "auto"), ("p1", 3, "approve"), ("p1", 4, "approve"),
                   ("p1", 6, "approve"))
    actions = join_approvals(audit, plans).set_index("digest")
    assert _digest(6) not in actions.index, "a refusal is not an executed action"
    assert actions["exception"].to_dict() == {_digest(1): None, _digest(2): AUTO_MODE, _digest(3): NO_APPROVAL,
                                              _digest(4): LATE_APPROVAL, _digest(5): NO_PLAN}
    assert actions.loc[_digest(1), "approved_by"] == "alice"


def test_a_mirror_copy_is_matched_to_its_plan_line_by_target_and_has_no_auto_mode():
    def copy(n, target, by=None):
        return MirrorRecord("m1", _digest(n), "shop-prod/web", target, "mirror", 100, by, EARLIER if by else None, T,
                            "copied")

    audit = mirror_records_frame([copy(1, "eu-west", by="alice"), copy(1, "ap-south", by="alice"), copy(2, "eu-west")])
    plans = pd.DataFrame([{"plan_id": "m1", "digest": _digest(n), "target": target, "created_at": EARLIER}
                          for n, target in ((1, "eu-west"), (2, "eu-west"))])
    actions = join_approvals(audit, plans, key=MIRROR_KEY, executed=MIRROR_EXECUTED)
    found = {(row.digest, row.target): row.exception for row in actions.itertuples()}
    assert found == {(_digest(1), "eu-west"): None, (_digest(1), "ap-south"): NO_PLAN,
                     (_digest(2), "eu-west"): NO_APPROVAL}


def test_the_plan_table_counts_deletions_and_exceptions_per_plan():
    audit = records_frame([_record("p1", 1, by="alice", at=EARLIER), _record("p1", 2), _record("p1", 3, "failed")])
    actions = join_approvals(audit, _plans(("p1", 1, "approve"), ("p1", 2, "approve"), ("p1", 3, "approve")))
    row = plan_table(actions, done="deleted").iloc[0]
    assert (row.deleted, row.bytes_deleted, row.failed, row.exceptions) == (2, 200, 1, 2)
