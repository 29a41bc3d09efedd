"""What the two executors of approved plans share: garbage collection (`gc/`) and mirroring
(`mirror/`) each read a plan frame and append one audit record per action attempt.

A plan frame is one plan: every column of its contract and a single plan id, or the executor
would act on a mixture no approval covered. An audit record names an outcome its log knows and
carries timezone-aware instants, since an auditor compares them across clusters and zones.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from .datasets import Dataset


def single_plan_id(plan: pd.DataFrame, contract: Dataset) -> str:
    """The one plan id of `plan`; ValueError when a column of `contract` is missing or ids differ."""
    missing = [name for name in contract.schema.names if name not in plan.columns]
    if missing:
        raise ValueError(f"the plan lacks the {contract.name} column(s) {', '.join(missing)}")
    plan_ids = plan["plan_id"].unique()
    if len(plan_ids) != 1:
        raise ValueError(f"a plan has exactly one plan_id, this frame has {len(plan_ids)}")
    return str(plan_ids[0])


def check_action_record(outcome: str, outcomes: Sequence[str], **instants: datetime | None) -> None:
    """ValueError unless `outcome` is one of `outcomes` and every given instant is timezone-aware."""
    if outcome not in outcomes:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(outcomes)}")
    for name, value in instants.items():
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (UTC), got {value!r}")
