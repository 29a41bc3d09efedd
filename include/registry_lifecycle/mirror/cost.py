"""The cost model: when a copy on a target pays for itself.

Per (unit, target), over the policy's horizon of H days (H/30 months):

    saved    = egress bytes its region pulls per month x egress price           (per month)
    storage  = bytes the target must add (blobs it lacks) x storage price       (per month)
    transfer = the same bytes x egress price, once: copying crosses the same regions

    copy when   saved x H/30  >  storage x H/30 + transfer

A unit the target already holds costs its whole size in storage and nothing to transfer:
keeping it pays while `saved > storage`. Prices are per GB of 2^30 bytes, as cloud bills
count. The monthly cost delta of a line is what the bill changes by each month once the line
is executed: storage added minus egress saved for a copy, and the reverse for a retirement.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import BYTES_PER_GB, MirrorTarget


def economics(candidates: pd.DataFrame, target: MirrorTarget, horizon_days: int) -> pd.DataFrame:
    """`candidates` (egress_bytes_per_month, new_bytes, unit_bytes, present) with the costs
    added: egress_saved_per_month, storage_cost_per_month, transfer_cost, net_over_horizon."""
    months = horizon_days / 30.0
    present = candidates["present"].to_numpy(dtype=bool)
    stored = np.where(present, candidates["unit_bytes"].to_numpy(dtype="float64"),
                      candidates["new_bytes"].to_numpy(dtype="float64"))
    moved = np.where(present, 0.0, candidates["new_bytes"].to_numpy(dtype="float64"))
    saved = candidates["egress_bytes_per_month"].to_numpy(dtype="float64") / BYTES_PER_GB * target.egress_cost_per_gb
    storage = stored / BYTES_PER_GB * target.storage_cost_per_gb_month
    transfer = moved / BYTES_PER_GB * target.egress_cost_per_gb
    return candidates.assign(egress_saved_per_month=saved, storage_cost_per_month=storage, transfer_cost=transfer,
                             net_over_horizon=(saved - storage) * months - transfer)


def money(amount: float, currency: str) -> str:
    """An amount as people read bills: two decimals, more for fractions of a cent."""
    if amount != 0 and abs(amount) < 0.01:
        return f"{amount:,.4f} {currency}"
    return f"{amount:,.2f} {currency}"
