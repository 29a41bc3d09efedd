"""The mirror audit log: what was done for each planned (image, target), by whose approval, and when.

One record per action attempt (and per refusal), appended to the `mirror_audit` dataset with
`Lake.append` (as the GC audit log is), so that (safety invariant 5):

- nothing is overwritten: a copy task that died half-way leaves the records it flushed;
- a re-run knows what is done: `done(plan_id)` reads every part of every run and returns the
  (digest, target) pairs whose action is complete, `copied` or `already_present` (after an
  earlier attempt lost its record), `retired` or `already_gone`; the executor skips them and
  looks again at everything else (failed, skipped, refused);
- nothing half-copied is ever recorded as done: `copied` is written only after the last
  manifest of the unit was stored and read back under its own digest on the target.

`holdings()` is what the lifecycle has put on each target and not retired since: the next plan
asks the targets about these too, so it can keep or retire them.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime

import pandas as pd
import pyarrow as pa

from ..action_log import check_action_record
from ..datasets import TS, Dataset, register
from ..lake import Lake

COPIED = "copied"
ALREADY_PRESENT = "already_present"
RETIRED = "retired"
ALREADY_GONE = "already_gone"
FAILED = "failed"
SKIPPED_CAP = "skipped_cap"
SKIPPED_TARGET_FAILED = "skipped_target_failed"
SKIPPED_NOT_CHOSEN = "skipped_not_chosen"
REFUSED_NOT_APPROVED = "refused_not_approved"
REFUSED_EXPIRED = "refused_expired"
OUTCOMES: tuple[str, ...] = (COPIED, ALREADY_PRESENT, RETIRED, ALREADY_GONE, FAILED, SKIPPED_CAP,
                             SKIPPED_TARGET_FAILED, SKIPPED_NOT_CHOSEN, REFUSED_NOT_APPROVED, REFUSED_EXPIRED)
DONE: frozenset[str] = frozenset({COPIED, ALREADY_PRESENT, RETIRED, ALREADY_GONE})
HELD: frozenset[str] = frozenset({COPIED, ALREADY_PRESENT})

MIRROR_AUDIT = register(Dataset("mirror_audit", pa.schema([
    pa.field("plan_id", pa.string(), nullable=False),
    pa.field("digest", pa.string(), nullable=False),
    pa.field("repositories", pa.string(), nullable=False),
    pa.field("target", pa.string(), nullable=False),
    pa.field("action", pa.string(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("approved_by", pa.string(), nullable=True),
    pa.field("approved_at", TS, nullable=True),
    pa.field("executed_at", TS, nullable=False),
    pa.field("outcome", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=True),
]), ("plan_id", "digest", "target", "executed_at"), False,
    "append-only log of mirror actions, one record per attempt: outcome copied|already_present|retired|already_gone|"
    "failed|skipped_cap|skipped_target_failed|skipped_not_chosen|refused_not_approved|refused_expired; repositories "
    "are the source repositories (comma-separated) the unit was copied into on the target"))


@dataclass(frozen=True)
class MirrorRecord:
    """One action attempt on one planned (image, target)."""

    plan_id: str
    digest: str
    repositories: str
    target: str
    action: str
    bytes: int
    approved_by: str | None
    approved_at: datetime | None
    executed_at: datetime
    outcome: str
    detail: str | None = None

    def __post_init__(self) -> None:
        check_action_record(self.outcome, OUTCOMES, approved_at=self.approved_at, executed_at=self.executed_at)


def records_frame(records: Iterable[MirrorRecord]) -> pd.DataFrame:
    """Records as a frame of the mirror_audit contract (also for zero records)."""
    return pa.Table.from_pylist([asdict(record) for record in records], schema=MIRROR_AUDIT.schema).to_pandas()


class MirrorAuditLog:
    """The mirror_audit log: `record()` appends a part, the readers see every part of every run."""

    def __init__(self, lake: Lake, day: date, run_id: str) -> None:
        self.lake = lake
        self.day = day
        self.run_id = run_id

    def record(self, records: Sequence[MirrorRecord]) -> None:
        if records:
            self.lake.append(MIRROR_AUDIT, self.day, self.run_id, records_frame(records))

    def read(self, plan_id: str | None = None, *, since: date | None = None) -> pd.DataFrame:
        """Every record (of `plan_id`, if given) in days from `since` on, in write order."""
        frames = []
        for day in self.lake.days(MIRROR_AUDIT):
            if since is not None and day < since:
                continue
            frame = self.lake.read(MIRROR_AUDIT, day)
            frames.append(frame if plan_id is None else frame[frame["plan_id"] == plan_id])
        return pd.concat(frames, ignore_index=True) if frames else records_frame([])

    def done(self, plan_id: str, *, since: date | None = None) -> set[tuple[str, str]]:
        """(digest, target) pairs of `plan_id` whose action an earlier attempt completed."""
        log = self.read(plan_id, since=since)
        finished = log[log["outcome"].isin(DONE)]
        return set(zip(finished["digest"], finished["target"]))

    def holdings(self) -> pd.DataFrame:
        """(target, digest, repositories) the lifecycle copied and has not retired since."""
        log = self.read()
        settled = log[log["outcome"].isin(DONE)].sort_values("executed_at", kind="stable")
        last = settled.drop_duplicates(["target", "digest"], keep="last")
        return last.loc[last["outcome"].isin(HELD), ["target", "digest", "repositories"]].reset_index(drop=True)
