"""The capacity-forecast part of the policy: how far ahead to look, and when to wake someone up.

The defaults encode the issue's policy: alert when the registry is at least 20% likely to be
full within 30 days, which leaves a platform team weeks (not the four days of kube-prometheus'
KubePersistentVolumeFillingUp) to resize the volume, prune, or move to object storage.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..config import ByteSize


class ForecastSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lead_time_days: int = Field(30, ge=1, le=365, description="alert when the volume may be full within this many days")
    alert_probability: float = Field(0.2, gt=0, lt=1,
                                     description="alert when P(full within the lead time) exceeds this")
    min_history_days: int = Field(21, ge=15, description="below this, a drift model with wide intervals stands in "
                                                         "for the backtested models")
    horizon_days: int = Field(90, ge=7, le=730, description="days forecast ahead")
    capacity_bytes: ByteSize | None = Field(None, description="capacity of a registry on object storage (no PVC); "
                                                              "a capacity measured on the volume wins")
    max_gap_days: int = Field(7, ge=1, description="longer gaps in the samples cut the history: only the part after "
                                                   "the gap is modelled")
    backtest_horizon_days: int = Field(28, ge=7, description="days ahead scored by the rolling-origin backtest")
    backtest_origins: int = Field(10, ge=2, description="forecast origins of the rolling-origin backtest")
    backtest_step_days: int = Field(7, ge=1, description="days between backtest origins")
    paths: int = Field(1000, ge=100, description="simulated future paths per forecast")
    seed: int = 0
