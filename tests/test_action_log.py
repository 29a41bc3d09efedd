"""The rules both executors' plans and audit records keep."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from registry_lifecycle.action_log import check_action_record, single_plan_id
from registry_lifecycle.gc.plan import GC_PLAN
from registry_lifecycle.mirror.plan import MIRROR_PLAN


def plan_frame(contract, plan_ids: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({name: [None] * len(plan_ids) for name in contract.schema.names})
    return frame.assign(plan_id=plan_ids)


@pytest.mark.parametrize("contract", [GC_PLAN, MIRROR_PLAN])
def test_a_plan_frame_is_one_plan_under_its_contract(contract):
    assert single_plan_id(plan_frame(contract, ["p1", "p1"]), contract) == "p1"
    with pytest.raises(ValueError, match="exactly one plan_id, this frame has 2"):
        single_plan_id(plan_frame(contract, ["p1", "p2"]), contract)
    with pytest.raises(ValueError, match=f"lacks the {contract.name} column"):
        single_plan_id(plan_frame(contract, ["p1"]).drop(columns=["plan_id"]), contract)


def test_a_record_names_a_known_outcome_and_aware_instants():
    aware = datetime(2026, 11, 28, tzinfo=timezone.utc)
    check_action_record("deleted", ("deleted", "failed"), executed_at=aware, approved_at=None)
    with pytest.raises(ValueError, match="outcome 'gone' is not one of deleted, failed"):
        check_action_record("gone", ("deleted", "failed"), executed_at=aware)
    with pytest.raises(ValueError, match="executed_at must be timezone-aware"):
        check_action_record("deleted", ("deleted",), executed_at=datetime(2026, 11, 28))
