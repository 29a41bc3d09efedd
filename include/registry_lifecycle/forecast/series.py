"""From 5-minute `storage_usage` samples to the daily series the capacity models fit.

Why the daily peak: a registry fails on the first push that finds its volume full, and that
happens at the day's highest point, not at midnight. With a weekly GC the two differ most on
GC day (the peak is before the GC, the end of the day after it), so a forecast of end-of-day
usage would be optimistic exactly when it matters.

What real samples do, and what this module does about it:
- Gaps (Prometheus down, kubelet restarted): a day with less than half of its expected
  samples is not observed. Short runs of such days are interpolated for the models but never
  scored in a backtest; a gap longer than `max_gap_days` cuts the history, because a line drawn
  across weeks of silence would be invented data.
- Resets: a kubelet or exporter restart can report 0 bytes used for a few samples. A fall to
  under a tenth of the level that comes back within hours is a glitch and is removed; one
  that stays means the volume was emptied or replaced, and the history before it no longer
  describes this volume.
- Drops: GC and prunes free space in one step. Drops that recur on the same weekday are the
  scheduled GC (a seasonal pattern the models learn); the others (prunes, clean-ups, the GC
  runs this project triggers) are level shifts, the step interventions of the structural model.
- Capacity: a resized PVC changes the capacity line, not the usage series; a registry on
  object storage has no capacity samples and takes the capacity from the policy.

Namespace growth comes from the images snapshot: every blob counted once, for the namespace
that pushed it first, so shared base layers do not inflate anyone's share.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

EventKind = Literal["gc", "drop", "prune", "resize", "reset", "glitch", "gap"]

DAY = pd.Timedelta(days=1)
# A fall to under this fraction of the level is a reset, not a GC: no GC frees 90% at once.
RESET_FRACTION = 0.1
# A reset that recovers within this window was a measurement glitch.
RESET_RECOVERY = pd.Timedelta(hours=6)
# Smaller falls are deletions and noise, not a GC or a prune.
DROP_FRACTION = 0.01
# Falls closer together than this are one event (a GC sweeps for several samples).
DROP_MERGE = pd.Timedelta(hours=1)
# A day needs this share of its expected samples for its peak to count as observed.
MIN_DAY_COVERAGE = 0.5


@dataclass(frozen=True)
class StorageEvent:
    """Something that happened to the volume: `bytes` is what was freed, or capacity added."""

    at: pd.Timestamp
    kind: EventKind
    bytes: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class DailyStorage:
    """One volume as the models see it, with everything that was repaired on the way."""

    volume: str
    used: pd.Series            # daily peak bytes used; days without data interpolated; index: UTC days, freq D
    observed: pd.Series        # bool per day: the peak was measured, not interpolated
    capacity: pd.Series        # capacity bytes per day; NaN when unknown
    samples: pd.Series         # cleaned raw used bytes (index: UTC timestamps), for predict_linear
    events: tuple[StorageEvent, ...]
    notes: tuple[str, ...]     # what was repaired or cut, for the forecast's reason

    @property
    def capacity_now(self) -> float | None:
        """The capacity on the last day: what the forecast is measured against."""
        known = self.capacity.dropna()
        return float(known.iloc[-1]) if len(known) else None

    @property
    def steps(self) -> tuple[pd.Timestamp, ...]:
        """First days on which a non-scheduled drop (prune, clean-up) holds: level shifts."""
        return tuple(sorted({(event.at.tz_convert(None).normalize() + DAY) for event in self.events
                             if event.kind in ("drop", "prune")}))

    def of_kind(self, *kinds: EventKind) -> list[StorageEvent]:
        return [event for event in self.events if event.kind in kinds]


def volumes(frame: pd.DataFrame) -> list[str]:
    """The volumes present in a `storage_usage` frame."""
    return sorted(frame["volume"].dropna().unique().tolist())


def daily_storage(frame: pd.DataFrame, volume: str | None = None, *, until: pd.Timestamp | None = None,
                  capacity_bytes: float | None = None, max_gap_days: int = 7,
                  audit_events: tuple[pd.Timestamp, ...] = ()) -> DailyStorage:
    """The daily peak series of one volume from its 5-minute samples, up to the end of `until`'s day.

    `capacity_bytes` stands in when the samples carry no capacity (object storage); a measured
    capacity wins. `audit_events` are times at which this project's GC deleted images (from
    the gc_audit log): they are prunes, i.e. level shifts, even when too small to detect.
    """
    if volume is None:
        present = volumes(frame)
        if len(present) != 1:
            raise ValueError(f"storage_usage holds {len(present)} volumes ({', '.join(present) or 'none'}); "
                             "name the one to forecast")
        volume = present[0]
    rows = frame.loc[frame["volume"] == volume, ["ts", "used_bytes", "capacity_bytes"]]
    if until is not None:
        rows = rows[rows["ts"] < _utc(until).normalize() + DAY]
    rows = rows.sort_values("ts").drop_duplicates("ts", keep="last")
    ts = pd.DatetimeIndex(rows["ts"])
    used = pd.Series(rows["used_bytes"].to_numpy(dtype=float), index=ts).dropna()
    if used.empty:
        raise ValueError(f"volume {volume} has no used_bytes samples"
                         + (f" up to {pd.Timestamp(until).date()}" if until is not None else ""))
    notes: list[str] = []
    events: list[StorageEvent] = []

    used, reset_events = remove_resets(used)
    events += reset_events
    glitches = [e for e in reset_events if e.kind == "glitch"]
    if glitches:
        notes.append(f"{len(glitches)} reset glitch(es) removed")
    resets = [e for e in reset_events if e.kind == "reset"]
    if resets:
        used = used[used.index >= resets[-1].at]
        notes.append(f"the volume restarted from near zero on {resets[-1].at.date()}; history before it dropped")

    peak, observed = _daily_peak(used)
    peak, observed, gap_events, gap_notes = _bridge_gaps(peak, observed, max_gap_days)
    events += gap_events
    notes += gap_notes
    used = used[used.index >= peak.index[0].tz_localize("UTC")]

    capacity_samples = pd.Series(rows["capacity_bytes"].to_numpy(dtype=float), index=ts).dropna()
    capacity_samples = capacity_samples[capacity_samples > 0]
    capacity = _daily_capacity(capacity_samples, peak.index, capacity_bytes)
    if capacity_samples.empty and capacity_bytes is not None:
        notes.append("capacity from the policy (no capacity samples: object storage)")
    elif capacity_samples.empty:
        notes.append("capacity unknown: no capacity samples and none in the policy")
    events += _resizes(capacity_samples)

    drops = detect_drops(used)
    events += classify_drops(drops, n_days=len(peak))
    first_day, last_day = peak.index[0], peak.index[-1]
    events += [StorageEvent(at, "prune", 0.0, "gc_audit") for at in map(_utc, audit_events)
               if first_day <= at.tz_convert(None).normalize() <= last_day]
    return DailyStorage(volume=volume, used=peak, observed=observed, capacity=capacity, samples=used,
                        events=tuple(sorted(events, key=lambda e: e.at)), notes=tuple(notes))


def _utc(at: object) -> pd.Timestamp:
    stamp = pd.Timestamp(at)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def remove_resets(used: pd.Series) -> tuple[pd.Series, list[StorageEvent]]:
    """Samples with glitches removed, and the glitches and persistent resets found.

    A reset is a fall to under RESET_FRACTION of the previous hour's median. If the level comes
    back within RESET_RECOVERY it was a glitch (the samples are dropped); otherwise it is a
    real restart of the series, reported and left in place.
    """
    values = used.to_numpy(dtype=float)
    reference = used.rolling(12, min_periods=1).median().shift(1).to_numpy()
    candidates = np.flatnonzero((reference > 0) & (values <= RESET_FRACTION * reference))
    keep = np.ones(len(values), dtype=bool)
    events: list[StorageEvent] = []
    times = used.index
    position = 0
    for start in candidates:
        if start < position:
            continue
        level = reference[start]
        end = start
        while end + 1 < len(values) and values[end + 1] <= RESET_FRACTION * level:
            end += 1
        after = (times > times[end]) & (times <= times[end] + RESET_RECOVERY)
        if end + 1 < len(values) and times[end + 1] <= times[end] + RESET_RECOVERY \
                and np.any(values[after] >= 0.5 * level):
            keep[start:end + 1] = False
            events.append(StorageEvent(times[start], "glitch", 0.0,
                                       f"{end - start + 1} sample(s) near zero, then back to the level"))
        else:
            events.append(StorageEvent(times[start], "reset", float(level - values[start]),
                                       "fell to near zero and stayed"))
        position = end + 1
    return used[keep], events


def _daily_peak(used: pd.Series) -> tuple[pd.Series, pd.Series]:
    days = used.index.tz_convert(None).normalize()
    grouped = used.groupby(days)
    peak = grouped.max()
    counts = grouped.size()
    step = pd.Series(used.index).diff().median()
    expected = DAY / step if pd.notna(step) and step > pd.Timedelta(0) else 1.0
    full = pd.date_range(peak.index[0], peak.index[-1], freq="D")
    peak = peak.reindex(full)
    coverage = counts.reindex(full, fill_value=0) / expected
    observed = (coverage >= MIN_DAY_COVERAGE) & peak.notna()
    # The first and last days are kept when partly covered: they are the edges of the history.
    if len(full) > 1:
        observed.iloc[[0, -1]] = peak.iloc[[0, -1]].notna().to_numpy()
    return peak.where(observed), observed


def _bridge_gaps(peak: pd.Series, observed: pd.Series, max_gap_days: int
                 ) -> tuple[pd.Series, pd.Series, list[StorageEvent], list[str]]:
    missing = ~observed
    runs = (missing != missing.shift()).cumsum()[missing]
    events: list[StorageEvent] = []
    notes: list[str] = []
    cut: pd.Timestamp | None = None
    for _, days in runs.groupby(runs):
        first, last = days.index[0], days.index[-1]
        length = len(days)
        events.append(StorageEvent(first.tz_localize("UTC"), "gap", 0.0, f"{length} day(s) without enough samples"))
        if length > max_gap_days:
            cut = last + DAY
    if cut is not None:
        notes.append(f"history before the gap that ended {cut.date()} dropped (longer than {max_gap_days} days)")
        peak, observed = peak[peak.index >= cut], observed[observed.index >= cut]
        events = [e for e in events if e.at.tz_convert(None) >= cut]
    filled = int((~observed).sum())
    if filled:
        notes.append(f"{filled} day(s) without enough samples interpolated (not scored)")
    peak = peak.interpolate(method="time", limit_area="inside").ffill().bfill()
    peak.index.freq = "D"
    observed.index.freq = "D"
    return peak, observed, events, notes


def _daily_capacity(samples: pd.Series, days: pd.DatetimeIndex, fallback: float | None) -> pd.Series:
    if samples.empty:
        return pd.Series(np.nan if fallback is None else float(fallback), index=days)
    daily = samples.groupby(samples.index.tz_convert(None).normalize()).last()
    return daily.reindex(days.union(daily.index)).ffill().bfill().reindex(days)


def _resizes(capacity: pd.Series) -> list[StorageEvent]:
    change = capacity.diff()
    moved = change[change.abs() > 1e-3 * capacity.shift()]
    return [StorageEvent(at, "resize", float(delta), f"capacity {capacity.shift()[at]:.0f} -> {capacity[at]:.0f} bytes")
            for at, delta in moved.items()]


def detect_drops(used: pd.Series) -> list[StorageEvent]:
    """Falls of at least DROP_FRACTION of the level between neighbouring samples, merged per hour."""
    values = used.to_numpy(dtype=float)
    if len(values) < 2:
        return []
    times = used.index
    fall = values[:-1] - values[1:]
    adjacent = (times[1:] - times[:-1]) <= DROP_MERGE
    where = np.flatnonzero(adjacent & (fall >= DROP_FRACTION * np.maximum(values[:-1], 1.0)))
    events: list[StorageEvent] = []
    for index in where:
        at = times[index + 1]
        if events and at - events[-1].at <= DROP_MERGE:
            events[-1] = StorageEvent(events[-1].at, "drop", events[-1].bytes + float(fall[index]))
        else:
            events.append(StorageEvent(at, "drop", float(fall[index])))
    return events


def classify_drops(drops: list[StorageEvent], *, n_days: int) -> list[StorageEvent]:
    """Drops on a weekday that has one in at least half the weeks are the scheduled GC."""
    weeks = max(n_days / 7, 1.0)
    weekdays = pd.Series([event.at.weekday() for event in drops], dtype=int)
    counts = weekdays.value_counts()
    scheduled = {int(day) for day, count in counts.items() if count >= max(3, 0.5 * weeks)}
    return [StorageEvent(event.at, "gc" if event.at.weekday() in scheduled else "drop", event.bytes,
                         "recurs on this weekday" if event.at.weekday() in scheduled else "not on the GC schedule")
            for event in drops]


# ------------------------------------------------------------------------------ namespaces
def namespace_growth(images: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Bytes each namespace added per day: every blob once, for the namespace that pushed it first.

    Columns: namespace, day, added_bytes. Built from the images and layers snapshot, so it is
    the growth of what the registry still holds (deleted images no longer count).
    """
    pushed = images.loc[images["created_at"].notna(), ["digest", "repository", "created_at"]]
    blobs = layers[["image_digest", "layer_digest", "size_bytes"]].merge(
        pushed, left_on="image_digest", right_on="digest")
    first = blobs.sort_values(["created_at", "layer_digest"]).drop_duplicates("layer_digest")
    growth = pd.DataFrame({
        "namespace": first["repository"].str.split("/", n=1).str[0],
        "day": pd.to_datetime(first["created_at"], utc=True).dt.tz_convert(None).dt.normalize(),
        "added_bytes": first["size_bytes"].astype(float),
    })
    return (growth.groupby(["namespace", "day"], as_index=False)["added_bytes"].sum()
            .sort_values(["namespace", "day"]).reset_index(drop=True))


def namespace_usage(growth: pd.DataFrame, *, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """Cumulative bytes per namespace per day (rows: days, columns: namespaces)."""
    wide = growth.pivot_table(index="day", columns="namespace", values="added_bytes", aggfunc="sum")
    last = pd.Timestamp(until).normalize() if until is not None else wide.index.max()
    wide = wide[wide.index <= last]
    days = pd.date_range(wide.index.min(), last, freq="D")
    return wide.reindex(days, fill_value=0.0).fillna(0.0).cumsum()


def growth_drivers(growth: pd.DataFrame, *, as_of: pd.Timestamp, window_days: int = 30) -> pd.DataFrame:
    """Who drives growth: bytes added per namespace in the last `window_days`, largest first, with shares."""
    as_of = pd.Timestamp(as_of).normalize()
    recent = growth[(growth["day"] > as_of - pd.Timedelta(days=window_days)) & (growth["day"] <= as_of)]
    drivers = recent.groupby("namespace", as_index=False)["added_bytes"].sum()
    total = drivers["added_bytes"].sum()
    drivers["share"] = drivers["added_bytes"] / total if total > 0 else 0.0
    return drivers.sort_values("added_bytes", ascending=False).reset_index(drop=True)
