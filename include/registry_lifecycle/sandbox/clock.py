"""The sandbox's clock: what "now" is for every API it serves.

The simulated history is generated once, up to `until`; the clock picks the instant the
APIs show. Moving it back lets a caller extract the daily snapshots of past dates, which
is how history for training and backtests is built from the sandbox.
"""
from __future__ import annotations

import threading
from datetime import datetime, timezone


class SandboxClock:
    def __init__(self, now: datetime, *, earliest: datetime, latest: datetime) -> None:
        self._lock = threading.Lock()
        self.earliest = earliest
        self.latest = latest
        self._now = self._checked(now)

    def _checked(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        if not self.earliest <= when <= self.latest:
            raise ValueError(
                f"clock {when.isoformat()} is outside the simulated history "
                f"[{self.earliest.isoformat()}, {self.latest.isoformat()}]; "
                "start the sandbox with a larger --days or a later --until"
            )
        return when

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> datetime:
        with self._lock:
            self._now = self._checked(when)
            return self._now
