"""The period a compliance report covers: a calendar quarter (`2026Q3`) or any custom range of days.

Both ends are inclusive calendar days in UTC, the way the lake partitions data (`dt=YYYY-MM-DD`).
An Airflow data interval is half-open (`[start, end)`), so `from_interval` turns its exclusive end
into the last included day.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*$")


class PeriodError(ValueError):
    """A period that cannot be reported on; the message says how to write a valid one."""


@dataclass(frozen=True)
class Period:
    first: date
    last: date
    label: str              # "2026Q3", or "2026-08-01_2026-09-15" for a custom period

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise PeriodError(f"the period starts {self.first} after it ends {self.last}; give --from before --to")

    @property
    def is_quarter(self) -> bool:
        return bool(_QUARTER.match(self.label))

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def contains(self, day: date) -> bool:
        return self.first <= day <= self.last

    def describe(self) -> str:
        span = f"{self.first.isoformat()} to {self.last.isoformat()}"
        return f"{self.label} ({span}, {self.days} days)" if self.is_quarter else f"{span} ({self.days} days)"


def quarter(text: str) -> Period:
    """'2026Q3' (or '2026-Q3', '2026q3') -> 2026-07-01 .. 2026-09-30."""
    match = _QUARTER.match(str(text))
    if not match:
        raise PeriodError(f"{text!r} is not a quarter; write the year and the quarter, e.g. 2026Q3")
    year, number = int(match.group(1)), int(match.group(2))
    first = date(year, 3 * number - 2, 1)
    following = date(year + 1, 1, 1) if number == 4 else date(year, 3 * number + 1, 1)
    return Period(first, following - timedelta(days=1), f"{year}Q{number}")


def quarter_of(day: date) -> Period:
    return quarter(f"{day.year}Q{(day.month - 1) // 3 + 1}")


def previous_quarter(day: date) -> Period:
    """The last quarter that has ended before `day` starts: what a run on 1 October reports on."""
    return quarter_of(quarter_of(day).first - timedelta(days=1))


def custom(first: date, last: date) -> Period:
    """Any range of days; a range that is exactly a quarter is labelled as that quarter."""
    candidate = quarter_of(first)
    if (candidate.first, candidate.last) == (first, last):
        return candidate
    return Period(first, last, f"{first.isoformat()}_{last.isoformat()}")


def from_interval(start: datetime, end: datetime) -> Period:
    """An Airflow data interval [start, end) as the days it covers (UTC calendar days)."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    first = start.date()
    last = (end - timedelta(microseconds=1)).date() if end > start else first
    return custom(first, last)
