"""When will the registry be full, how sure are we, and should someone be told now?

P(full by day d) is the share of simulated paths whose running maximum has reached the
capacity by d. A path that touches the capacity once is a registry that refused a push, even
if a GC frees space the next day, so the running maximum (not the value on day d) is what
counts, and the probability can only grow with d.

The alert fires when P(full within the policy's lead time) exceeds its threshold. An alert
that repeats every day for the same situation teaches people to ignore it, so each alert
leaves a fingerprint (capacity, severity band, the day the risk crosses the threshold) and a
new one is sent only when the situation is really different: the capacity changed, the risk
moved to a higher band, or the projected date came at least a week closer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from .models import Forecast
from .settings import ForecastSettings

#: P(full within lead time) bands; moving up a band is news, moving within one is not.
BANDS = (0.5, 0.8)
#: What each band is called in an alert: above the policy's threshold, at least 50%, at least 80%.
SEVERITIES = {1: "warning", 2: "high", 3: "critical"}
#: A projected date this many days earlier than the one alerted on is news.
EARLIER_DAYS = 7
CAPACITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class DaysToFull:
    """Days after the as-of day until the volume is full: median and 80% interval; None = beyond the horizon."""

    median: int | None
    lo80: int | None
    hi80: int | None


@dataclass(frozen=True)
class AlertFingerprint:
    """What an alert said, kept to decide whether the next situation is new."""

    series: str
    capacity_bytes: float
    band: int              # 1: above the threshold, 2: P >= 0.5, 3: P >= 0.8
    full_by: date          # first day P(full by day) exceeds the threshold

    @property
    def severity(self) -> str:
        return SEVERITIES[self.band]

    def to_dict(self) -> dict:
        return {**asdict(self), "full_by": self.full_by.isoformat()}

    @classmethod
    def from_dict(cls, data: dict) -> AlertFingerprint:
        return cls(series=str(data["series"]), capacity_bytes=float(data["capacity_bytes"]), band=int(data["band"]),
                   full_by=date.fromisoformat(str(data["full_by"])))


@dataclass(frozen=True)
class CapacityOutlook:
    series: str
    as_of: date
    capacity_bytes: float | None
    used_bytes: float
    p_full: pd.Series | None           # P(full by day), one value per forecast day; None: capacity unknown
    crosses_10: date | None            # first day P(full by day) >= 10%
    crosses_50: date | None
    days_to_full: DaysToFull
    p_full_within_lead: float
    lead_time_days: int
    alert_probability: float
    at_risk: bool
    fingerprint: AlertFingerprint | None
    summary: str


def outlook(forecast: Forecast, *, series: str, capacity_bytes: float | None, used_bytes: float,
            settings: ForecastSettings) -> CapacityOutlook:
    """P(full by date), the 10%/50% crossing dates, days to full and the alert decision for one forecast."""
    as_of = forecast.origin.date()
    lead = settings.lead_time_days
    if capacity_bytes is None or not np.isfinite(capacity_bytes):
        return CapacityOutlook(series, as_of, None, used_bytes, None, None, None, DaysToFull(None, None, None), 0.0,
                               lead, settings.alert_probability, False, None,
                               "capacity unknown: set forecast capacity_bytes in the policy for object storage")
    probability = p_full_by_day(forecast, capacity_bytes, used_bytes)
    within_lead = float(probability.iloc[min(lead, len(probability)) - 1])
    crosses_10, crosses_50 = _first_day(probability >= 0.1), _first_day(probability >= 0.5)
    full_by = _first_day(probability > settings.alert_probability)
    days = days_to_full(forecast, capacity_bytes, used_bytes)
    at_risk = within_lead > settings.alert_probability
    fingerprint = None
    if at_risk and full_by is not None:
        band = 1 + sum(within_lead >= edge for edge in BANDS)
        fingerprint = AlertFingerprint(series, float(capacity_bytes), band, full_by)
    summary = _summary(series, capacity_bytes, used_bytes, within_lead, lead, crosses_10, crosses_50, days,
                       settings.alert_probability)
    return CapacityOutlook(series, as_of, float(capacity_bytes), used_bytes, probability, crosses_10, crosses_50,
                           days, within_lead, lead, settings.alert_probability, at_risk, fingerprint, summary)


def p_full_by_day(forecast: Forecast, capacity_bytes: float, used_bytes: float) -> pd.Series:
    """Share of paths whose running maximum reached the capacity by each forecast day."""
    if used_bytes >= capacity_bytes:
        return pd.Series(1.0, index=forecast.index)
    reached = np.maximum.accumulate(forecast.paths, axis=1) >= capacity_bytes
    return pd.Series(reached.mean(axis=0), index=forecast.index)


def days_to_full(forecast: Forecast, capacity_bytes: float, used_bytes: float) -> DaysToFull:
    """Per path, the first day at capacity; the median and 10th-90th percentiles over paths."""
    if used_bytes >= capacity_bytes:
        return DaysToFull(0, 0, 0)
    reached = forecast.paths >= capacity_bytes
    first = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, np.inf)
    # Sample quantiles (no interpolation): "beyond the horizon" must not blend with a day count.
    quantiles = np.quantile(first, [0.5, 0.1, 0.9], method="inverted_cdf")
    median, lo, hi = (int(q) if np.isfinite(q) else None for q in quantiles)
    return DaysToFull(median, lo, hi)


def _first_day(condition: pd.Series) -> date | None:
    """The first forecast day on which `condition` holds (it is monotone: P(full by day) only grows)."""
    true_days = condition.index[condition.to_numpy()]
    return true_days[0].date() if len(true_days) else None


def _summary(series: str, capacity: float, used: float, within_lead: float, lead: int, crosses_10: date | None,
             crosses_50: date | None, days: DaysToFull, threshold: float) -> str:
    gib = 2**30
    text = (f"{series}: {used / gib:.1f} of {capacity / gib:.1f} GiB used; "
            f"P(full within {lead} days) = {within_lead:.0%} (alert above {threshold:.0%})")
    if days.median is not None:
        interval = f"{days.lo80}-{days.hi80 if days.hi80 is not None else 'beyond the horizon'}"
        text += f"; full in about {days.median} days (80%: {interval})"
    elif days.lo80 is not None:
        text += f"; fewer than half of the simulated futures fill within the horizon (10% within {days.lo80} days)"
    else:
        text += "; not full within the horizon"
    if crosses_10 is not None:
        text += f"; 10% likely full by {crosses_10.isoformat()}"
    if crosses_50 is not None:
        text += f", 50% by {crosses_50.isoformat()}"
    return text


def should_alert(previous: AlertFingerprint | None, current: CapacityOutlook) -> bool:
    """Alert when the volume is at risk and the situation differs from the last alert sent.

    `previous` is the fingerprint of the last alert sent for this series (None: none yet, or
    the risk went away since, see `fingerprint_to_keep`).
    """
    if not current.at_risk or current.fingerprint is None:
        return False
    return what_changed(previous, current.fingerprint) is not None


def what_changed(previous: AlertFingerprint | None, current: AlertFingerprint) -> str | None:
    """Why `current` is news against the last alert sent, in words; None: the same situation."""
    if previous is None or previous.series != current.series:
        return "first alert for this situation"
    if abs(current.capacity_bytes - previous.capacity_bytes) > CAPACITY_TOLERANCE * previous.capacity_bytes:
        return (f"the capacity changed ({previous.capacity_bytes / 2**30:.1f} -> "
                f"{current.capacity_bytes / 2**30:.1f} GiB)")
    if current.band > previous.band:
        return f"the risk rose from {SEVERITIES[previous.band]} to {SEVERITIES[current.band]}"
    if current.full_by <= previous.full_by - timedelta(days=EARLIER_DAYS):
        return (f"the projected date moved {(previous.full_by - current.full_by).days} days closer "
                f"({previous.full_by.isoformat()} -> {current.full_by.isoformat()})")
    return None


def fingerprint_to_keep(previous: AlertFingerprint | None, current: CapacityOutlook,
                        alerted: bool) -> AlertFingerprint | None:
    """What to store after this run: the new fingerprint if an alert went out, nothing once the
    risk is gone (so a later recurrence alerts again), otherwise the last alert's fingerprint.

    Keeping the last *sent* fingerprint, not yesterday's, is what lets a date that creeps a
    day closer every day still re-alert once it has moved a week.
    """
    if not current.at_risk:
        return None
    return current.fingerprint if alerted else previous
