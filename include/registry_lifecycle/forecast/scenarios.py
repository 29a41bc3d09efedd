"""Synthetic registry volumes with a known future: does the forecast warn in time, and only then?

Each scenario is a `storage_usage` frame of 5-minute samples over the whole timeline plus the
truth: when (if ever) the volume fills. Usage is built the way a registry's is: pushes on
workdays (most around late morning) add live bytes and garbage (replaced layers, interrupted
uploads), and a weekly GC on Sunday at 03:00 frees the garbage: the write-then-prune sawtooth
that fools `predict_linear`. A full volume stays full: pushes fail.

The set covers the robustness cases of the issue: linear and accelerating fills, a stable
sawtooth close to the kube-prometheus threshold (a false alarm for predict_linear), bursty
growth, a constant series, gaps, reset glitches, a resized PVC and a registry on object storage
(no capacity samples; the capacity comes from the policy).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..datasets import STORAGE_USAGE

GIB = 2**30
START = pd.Timestamp("2026-01-05", tz="UTC")      # a Monday
STEP = pd.Timedelta(minutes=5)
VOLUME = "openshift-image-registry/image-registry-storage"
GC_WEEKDAY, GC_HOUR = 6, 3                        # Sunday 03:00, as the sandbox's registry


@dataclass(frozen=True)
class FillScenario:
    name: str
    description: str
    samples: pd.DataFrame              # storage_usage rows over the whole timeline, the future included
    fills_at: pd.Timestamp | None      # first sample at capacity; None: not within the timeline
    expect_alert: bool                 # a good forecaster alerts before fills_at (and only then)
    capacity_bytes: float | None = None  # the policy's capacity, for object storage

    def until(self, day: pd.Timestamp) -> pd.DataFrame:
        """The samples a run at the end of `day` would have read."""
        return self.samples[self.samples["ts"] < pd.Timestamp(day).tz_localize("UTC") + pd.Timedelta(days=1)]


def _grid(days: int) -> pd.DatetimeIndex:
    return pd.date_range(START, periods=days * 24 * 12, freq=STEP)


def _usage(days: int, live_per_day: np.ndarray, garbage_per_day: np.ndarray, start_bytes: float,
           rng: np.random.Generator, pushes_per_day: int = 12) -> np.ndarray:
    """Used bytes on the 5-minute grid: pushes add live bytes and garbage; the weekly GC frees the garbage."""
    grid = _grid(days)
    seconds = (grid - START).total_seconds().to_numpy()
    weekday = np.array([(START + pd.Timedelta(days=d)).weekday() for d in range(days)])
    share = np.where(weekday < 5, 1.0, 0.15)                       # weekends are quiet
    # A day's bytes vary a lot (a big image, a busy release day): gamma noise with mean 1, CV 0.6.
    volume = share / share[:7].mean() * rng.gamma(2.8, 1 / 2.8, size=days)
    live_per_day, garbage_per_day = live_per_day * volume, garbage_per_day * volume
    counts = rng.poisson(pushes_per_day * share) + 1
    day_of_push = np.repeat(np.arange(days), counts)
    hour = np.clip(rng.triangular(7, 11, 19, size=len(day_of_push)), 0, 23.9)
    push_at = day_of_push * 86400.0 + hour * 3600.0
    weights = rng.gamma(2.0, 1.0, size=len(day_of_push))
    weights /= np.bincount(day_of_push, weights, minlength=days)[day_of_push]
    order = np.argsort(push_at)
    push_at, day_of_push, weights = push_at[order], day_of_push[order], weights[order]
    live = np.cumsum(live_per_day[day_of_push] * weights)
    garbage = np.cumsum(garbage_per_day[day_of_push] * weights)

    def at(cumulative: np.ndarray, times: np.ndarray) -> np.ndarray:
        index = np.searchsorted(push_at, times, side="right") - 1
        return np.where(index >= 0, cumulative[np.maximum(index, 0)], 0.0)

    first_gc = (GC_WEEKDAY - START.weekday()) % 7 * 86400.0 + GC_HOUR * 3600.0
    last_gc = np.where(seconds >= first_gc, first_gc + np.floor((seconds - first_gc) / (7 * 86400.0)) * 7 * 86400.0,
                       -1.0)
    return start_bytes + at(live, seconds) + at(garbage, seconds) - at(garbage, last_gc)


def _frame(used: np.ndarray, capacity: np.ndarray | float, rng: np.random.Generator, *, noise: bool = True
           ) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    grid = _grid(len(used) // (24 * 12))
    capacity = np.broadcast_to(np.asarray(capacity, dtype=float), used.shape)
    if noise:
        # Logs and temporary files: a few MiB of jitter, so no stretch is exactly flat.
        used = used + rng.normal(0, 4 * 2**20, size=used.shape)
    full = np.flatnonzero(np.isfinite(capacity) & (used >= capacity))
    fills_at = grid[full[0]] if len(full) else None
    used = np.where(np.isfinite(capacity), np.minimum(used, capacity), used)
    frame = pd.DataFrame({"ts": grid.astype("datetime64[us, UTC]"), "volume": VOLUME, "used_bytes": used,
                          "capacity_bytes": capacity, "source": "scenario"})
    return frame[STORAGE_USAGE.schema.names], fills_at


def _days(days: int) -> np.ndarray:
    return np.arange(days, dtype=float)


def linear_fill(seed: int = 0, days: int = 182) -> FillScenario:
    rng = np.random.default_rng(seed)
    used = _usage(days, np.full(days, 0.45 * GIB), np.full(days, 0.6 * GIB), 20 * GIB, rng)
    frame, fills_at = _frame(used, 100 * GIB, rng)
    return FillScenario("linear_fill", "steady growth of 0.45 GiB/day plus a weekly 4 GiB sawtooth", frame,
                        fills_at, True)


def accelerating(seed: int = 0, days: int = 182) -> FillScenario:
    rng = np.random.default_rng(seed + 1)
    live = (0.05 + 0.006 * _days(days)) * GIB
    used = _usage(days, live, np.full(days, 0.5 * GIB), 15 * GIB, rng)
    frame, fills_at = _frame(used, 100 * GIB, rng)
    return FillScenario("accelerating", "growth that speeds up every week (more teams onboarded)", frame,
                        fills_at, True)


def stable_sawtooth(seed: int = 0, days: int = 182) -> FillScenario:
    rng = np.random.default_rng(seed + 2)
    used = _usage(days, np.zeros(days), np.full(days, 2.4 * GIB), 66 * GIB, rng)
    frame, fills_at = _frame(used, 100 * GIB, rng)
    return FillScenario("stable_sawtooth", "no net growth; the weekly sawtooth peaks at 80-90% used, often past "
                        "the kube-prometheus 15%-free line", frame, fills_at, False)


def bursty(seed: int = 0, days: int = 182) -> FillScenario:
    rng = np.random.default_rng(seed + 3)
    live = np.full(days, 0.1 * GIB)
    burst_days = np.cumsum(rng.integers(6, 13, size=days))
    burst_days = burst_days[burst_days < days]
    live[burst_days] += rng.uniform(3, 7, size=len(burst_days)) * GIB
    used = _usage(days, live, np.full(days, 0.5 * GIB), 20 * GIB, rng)
    frame, fills_at = _frame(used, 100 * GIB, rng)
    return FillScenario("bursty", "quiet days and big releases (3-7 GiB) every 6-12 days", frame, fills_at, True)


def constant(seed: int = 0, days: int = 182) -> FillScenario:
    rng = np.random.default_rng(seed + 4)
    frame, fills_at = _frame(np.full(days * 24 * 12, 50.0 * GIB), 100 * GIB, rng, noise=False)
    return FillScenario("constant", "a registry nobody pushes to", frame, fills_at, False)


def gaps(seed: int = 0, days: int = 182) -> FillScenario:
    base = linear_fill(seed, days)
    rng = np.random.default_rng(seed + 5)
    ts = base.samples["ts"]
    missing = rng.random(len(ts)) < 0.01
    for start, length in (("2026-02-10 09:00", "6h"), ("2026-03-02", "2D"), ("2026-04-14", "5D")):
        begin = pd.Timestamp(start, tz="UTC")
        missing |= ((ts >= begin) & (ts < begin + pd.Timedelta(length))).to_numpy()
    return FillScenario("gaps", "linear fill with a 6-hour, a 2-day and a 5-day gap and 1% lost samples",
                        base.samples[~missing].reset_index(drop=True), base.fills_at, True)


def counter_reset(seed: int = 0, days: int = 182) -> FillScenario:
    base = linear_fill(seed, days)
    samples = base.samples.copy()
    for start, length in (("2026-02-20 14:00", "15min"), ("2026-04-02 10:30", "30min"), ("2026-05-11 16:00", "10min")):
        begin = pd.Timestamp(start, tz="UTC")
        samples.loc[(samples["ts"] >= begin) & (samples["ts"] < begin + pd.Timedelta(length)), "used_bytes"] = 0.0
    return FillScenario("counter_reset", "linear fill where a restarted kubelet reported 0 bytes three times",
                        samples, base.fills_at, True)


def resize(seed: int = 0, days: int = 220) -> FillScenario:
    rng = np.random.default_rng(seed + 6)
    used = _usage(days, np.full(days, 0.7 * GIB), np.full(days, 0.6 * GIB), 20 * GIB, rng)
    grid = _grid(days)
    capacity = np.where(grid < START + pd.Timedelta(days=70), 80 * GIB, 160 * GIB).astype(float)
    frame, fills_at = _frame(used, capacity, rng)
    return FillScenario("resize", "the PVC is resized from 80 to 160 GiB on day 70, before it filled; it fills "
                        "the new capacity later", frame, fills_at, True)


def object_storage(seed: int = 0, days: int = 182) -> FillScenario:
    base = linear_fill(seed, days)
    samples = base.samples.assign(capacity_bytes=np.nan)
    return FillScenario("object_storage", "linear fill of a bucket with a 100 GiB quota: no capacity samples, "
                        "capacity from the policy", samples, base.fills_at, True, capacity_bytes=100 * GIB)


SCENARIOS: dict[str, Callable[..., FillScenario]] = {
    f.__name__: f for f in (linear_fill, accelerating, stable_sawtooth, bursty, constant, gaps, counter_reset, resize,
                            object_storage)}


def all_scenarios(seed: int = 0) -> list[FillScenario]:
    return [make(seed) for make in SCENARIOS.values()]
