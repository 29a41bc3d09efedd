"""What a report reads from the lake for its period, and a record of every file it read.

Every number in a report must be traceable to stored data, so reading goes through
`PeriodData`: it picks, per dataset and day, the committed run a normal reader would pick,
reads exactly that run, and remembers it as a `Source` (dataset, day, run id, commit time, path,
row count and the sha256 the commit marker recorded). The JSON evidence file lists them all, so
an auditor can fetch the same files and recompute any figure.

Snapshot datasets (images, tags, references, ...) describe the cluster at extraction time. A
report compares the snapshot in force when the period began (the latest one on or before its
first day, else the first one inside it) with the last one inside the period; when neither
exists the sections say so instead of guessing.

Plan datasets (gc_plan, mirror_plan) are not snapshots but logs keyed by plan id: two runs of
one day (`reglife score` and a registry_gc run, or two DAG runs) each store a plan of their
own, and an executed action must be joined to whichever of them it came from. So for these
`read_period` reads every committed run of each day, each recorded as a source. The audit logs
(gc_audit, mirror_audit) are append-only: every part of every run is read already.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from functools import cached_property

import pandas as pd

from ..datasets import ALL
from ..lake import Commit, Lake, LakeNotFound
from .period import Period

log = logging.getLogger(__name__)

SNAPSHOT_DATASETS = ("images", "layers", "tags", "references", "builds", "namespaces", "index_children")
# Datasets keyed by plan id, where every committed run of a day holds a plan of its own.
PLAN_DATASETS = ("gc_plan", "mirror_plan")


@dataclass(frozen=True)
class Source:
    """One stored file (or append-only partition) a report read."""

    dataset: str
    day: date
    run_id: str | None              # None for an append-only log (every part of every run is read)
    committed_at: datetime | None
    path: str | None
    sha256: str | None
    rows: int

    def as_dict(self) -> dict:
        data = asdict(self)
        data["day"] = self.day.isoformat()
        data["committed_at"] = self.committed_at.isoformat() if self.committed_at else None
        return data


@dataclass(frozen=True)
class SnapshotRef:
    """Which extraction run a snapshot comes from."""

    day: date
    run_id: str
    committed_at: datetime


@dataclass
class PeriodData:
    """The lake as seen by one report: cached reads, and the sources behind them."""

    lake: Lake
    period: Period
    sources: list[Source] = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ discovery
    def days(self, dataset: str) -> list[date]:
        """Days with data of `dataset`, all of them (not only the period's)."""
        if dataset not in ALL:
            return []
        key = ("days", dataset)
        if key not in self._cache:
            self._cache[key] = self.lake.days(dataset)
        return self._cache[key]

    def days_in_period(self, dataset: str) -> list[date]:
        return [day for day in self.days(dataset) if self.period.contains(day)]

    def commits(self, day: date) -> list[Commit]:
        key = ("commits", day)
        if key not in self._cache:
            self._cache[key] = self.lake.commits(day)
        return self._cache[key]

    def _commit_with(self, dataset: str, day: date) -> Commit | None:
        runs = [commit for commit in self.commits(day) if dataset in commit.files]
        return runs[-1] if runs else None

    # ------------------------------------------------------------------ reading
    def read_day(self, dataset: str, day: date, run_id: str | None = None) -> pd.DataFrame:
        """A dataset's partition of `day` (its latest committed run, or `run_id`), recorded as a source."""
        key = ("day", dataset, day, run_id)
        if key in self._cache:
            return self._cache[key]
        commit = None
        if run_id is not None:
            commit = next((c for c in self.commits(day) if c.run_id == run_id and dataset in c.files), None)
        if commit is None:
            commit = self._commit_with(dataset, day)
        if commit is not None:
            frame = self.lake.read(dataset, day, run_id=commit.run_id)
            stored = commit.files[dataset]
            self.sources.append(Source(dataset, day, commit.run_id, commit.committed_at, stored.path, stored.sha256,
                                       len(frame)))
        else:   # an append-only log: every part of every run, no commit marker
            frame = self.lake.read(dataset, day)
            self.sources.append(Source(dataset, day, None, None, f"{dataset}/dt={day.isoformat()}/", None, len(frame)))
        self._cache[key] = frame
        return frame

    def read_day_all_runs(self, dataset: str, day: date) -> pd.DataFrame:
        """Every committed run of `day` with `dataset`, oldest commit first, each recorded as a source.

        For plan datasets, where each run stores a different plan. A day without committed
        runs (an append-only log) is read as `read_day` reads it.
        """
        key = ("all_runs", dataset, day)
        if key in self._cache:
            return self._cache[key]
        runs = [commit for commit in self.commits(day) if dataset in commit.files]
        if not runs:
            frame = self.read_day(dataset, day)
        else:
            frames = [self.read_day(dataset, day, commit.run_id) for commit in runs]
            frames = [f for f in frames if len(f)]
            frame = pd.concat(frames, ignore_index=True) if frames else self.read_day(dataset, day, runs[-1].run_id)
        self._cache[key] = frame
        return frame

    def read_period(self, dataset: str, *, first: date | None = None, last: date | None = None) -> pd.DataFrame:
        """Every day of the period (or of first..last) with data of `dataset`, concatenated.

        An empty frame of the contract's columns when there is none (or the dataset is unknown
        to this installation): sections turn that into a plain "no data" statement. A plan
        dataset (`PLAN_DATASETS`) contributes every committed run of each day, not only the latest.
        """
        first = first or self.period.first
        last = last or self.period.last
        read = self.read_day_all_runs if dataset in PLAN_DATASETS else self.read_day
        frames = [read(dataset, day) for day in self.days(dataset) if first <= day <= last]
        frames = [frame for frame in frames if len(frame)]
        if frames:
            return pd.concat(frames, ignore_index=True)
        return empty(dataset)

    # ------------------------------------------------------------------ snapshots
    def snapshot_days(self) -> list[date]:
        return self.days("images")

    @cached_property
    def start_snapshot(self) -> SnapshotRef | None:
        """The snapshot in force when the period began: the latest on or before its first day,
        else the first one inside the period (the sections say which)."""
        days = self.snapshot_days()
        before = [d for d in days if d <= self.period.first]
        inside = [d for d in days if self.period.contains(d)]
        day = before[-1] if before else (inside[0] if inside else None)
        return self._ref(day)

    @cached_property
    def end_snapshot(self) -> SnapshotRef | None:
        """The last snapshot inside the period."""
        inside = [d for d in self.snapshot_days() if self.period.contains(d)]
        return self._ref(inside[-1] if inside else None)

    def _ref(self, day: date | None) -> SnapshotRef | None:
        if day is None:
            return None
        commit = self._commit_with("images", day)
        if commit is None:
            return None
        return SnapshotRef(day, commit.run_id, commit.committed_at)

    def snapshot(self, dataset: str, ref: SnapshotRef | None) -> pd.DataFrame:
        """A snapshot dataset from the same extraction run as `ref`'s images (or that day's latest)."""
        if ref is None or dataset not in ALL:
            return empty(dataset)
        try:
            return self.read_day(dataset, ref.day, ref.run_id)
        except LakeNotFound:
            return empty(dataset)

    def snapshot_refs_in_period(self) -> list[SnapshotRef]:
        return [ref for ref in (self._ref(d) for d in self.snapshot_days() if self.period.contains(d)) if ref]

    def sources_json(self) -> list[dict]:
        unique = {(s.dataset, s.day, s.run_id): s for s in self.sources}
        return [s.as_dict() for s in sorted(unique.values(), key=lambda s: (s.dataset, s.day, s.run_id or ""))]


def empty(dataset: str) -> pd.DataFrame:
    """A zero-row frame with the contract's columns and types (all-object if the contract is unknown)."""
    if dataset not in ALL:
        return pd.DataFrame()
    return ALL[dataset].schema.empty_table().to_pandas()
