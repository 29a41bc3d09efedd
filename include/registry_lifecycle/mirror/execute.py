"""Executing an approved mirror plan: copy and retire what it says, where the approver chose.

What a run guarantees, in the order it checks:

1. An approval recorded for this exact plan id, and a plan younger than
   `mirror.approval.plan_max_age` (safety invariant 1). Without one, or with another plan's,
   every line is audited as refused and `ApprovalError` is raised: nothing is copied.
2. Re-running is safe (invariant 5): (image, target) pairs the audit log records as done for
   this plan are skipped, and every copy is idempotent anyway (what reached the target is
   found and skipped). Records are flushed every few lines and at the end, also on failure.
3. Targets the approver did not choose are audited `skipped_not_chosen`; lines beyond the
   per-run caps (`transfer.max_images`, `transfer.max_bytes`, counting what earlier attempts
   did) are `skipped_cap`, in plan order.
4. A target that refuses the credentials, cannot be reached or rewrites digests stops at once
   (`skipped_target_failed` for the rest of its lines, with the reason); after
   `transfer.max_errors` failed images a target stops too. Other targets carry on.
5. `copied` is recorded only once the unit's root manifest is stored and read back under its
   digest (see `copy`); a unit that broke off is `failed`, with what was done, and is copied
   again by the next attempt.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from ..action_log import single_plan_id
from ..config import Policy, format_duration
from ..sources.errors import SourceError, SourceForbidden, SourceUnavailable
from ..sources.registry import RegistryClient
from .audit import (
    ALREADY_GONE,
    ALREADY_PRESENT,
    COPIED,
    FAILED,
    REFUSED_EXPIRED,
    REFUSED_NOT_APPROVED,
    RETIRED,
    SKIPPED_CAP,
    SKIPPED_NOT_CHOSEN,
    SKIPPED_TARGET_FAILED,
    MirrorAuditLog,
    MirrorRecord,
    records_frame,
)
from .copy import ImageCopier, Throttle
from .errors import ApprovalError, CopyFailed, TargetError
from .plan import EXECUTABLE, MIRROR, MIRROR_PLAN, RETIRE

log = logging.getLogger(__name__)

FLUSH_EVERY = 25


@dataclass(frozen=True)
class Approval:
    """Who approved which plan, when, and for which targets (None: every target of the plan)."""

    plan_id: str
    approved_by: str
    approved_at: datetime
    targets: frozenset[str] | None = None


@dataclass(frozen=True)
class MirrorExecution:
    """What one execution did: its audit records, the targets that stopped, and copy statistics."""

    plan_id: str
    records: pd.DataFrame = field(repr=False)
    already_done: frozenset[tuple[str, str]]
    failed_targets: dict[str, str]
    stats: dict[str, dict[str, int]]

    def outcomes(self) -> dict[str, int]:
        return {str(name): int(count) for name, count in self.records["outcome"].value_counts().items()}

    @property
    def complete(self) -> bool:
        """Every executable line of the plan is done (now or by an earlier attempt)."""
        unfinished = {SKIPPED_CAP, SKIPPED_TARGET_FAILED, FAILED, REFUSED_EXPIRED, REFUSED_NOT_APPROVED}
        return not self.failed_targets and not self.records["outcome"].isin(unfinished).any()

    def as_dict(self) -> dict[str, Any]:
        return {"plan_id": self.plan_id, "outcomes": self.outcomes(), "already_done": len(self.already_done),
                "failed_targets": self.failed_targets, "stats": self.stats, "complete": self.complete,
                "bytes_copied": int(self.records.loc[self.records["outcome"] == COPIED, "bytes"].sum())}


class _Recorder:
    """Audit records of one run: buffered a little, flushed in parts, thread-safe."""

    def __init__(self, plan_id: str, approval: Approval | None, audit: MirrorAuditLog) -> None:
        self.plan_id, self.approval, self.audit = plan_id, approval, audit
        self.written: list[MirrorRecord] = []
        self._pending: list[MirrorRecord] = []
        self._lock = threading.Lock()

    def record(self, rows: pd.DataFrame, outcome: str, detail: str | None, *, flush: bool = False) -> None:
        now = datetime.now(timezone.utc)
        records = [MirrorRecord(plan_id=self.plan_id, digest=row.digest, repositories=row.repositories,
                                target=row.target, action=row.action, bytes=int(row.bytes),
                                approved_by=self.approval.approved_by if self.approval else None,
                                approved_at=self.approval.approved_at if self.approval else None,
                                executed_at=now, outcome=outcome, detail=(detail or None) and detail[:2000])
                   for row in rows.itertuples()]
        with self._lock:
            self._pending.extend(records)
            self.written.extend(records)
            ready = flush or len(self._pending) >= FLUSH_EVERY
        if ready:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        self.audit.record(pending)


def _checked(plan: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The plan's id and the rows to execute."""
    plan_id = single_plan_id(plan, MIRROR_PLAN)
    if plan.duplicated(["digest", "target"]).any():
        raise ValueError("the plan names an (image, target) twice")
    return plan_id, plan[plan["action"].isin(EXECUTABLE)].reset_index(drop=True)


def _within_caps(rows: pd.DataFrame, max_images: int, max_bytes: int) -> pd.Series:
    """Per row, whether it fits the caps, taking rows in plan order (a prefix)."""
    fits = (pd.Series(1, index=rows.index).cumsum() <= max_images) & (rows["bytes"].cumsum() <= max_bytes)
    return fits.cummin()


def execute_mirror_plan(plan: pd.DataFrame, *, approval: Approval | None, policy: Policy, source: RegistryClient,
                        targets: Mapping[str, RegistryClient], audit: MirrorAuditLog, now: datetime | None = None,
                        throttle: Throttle | None = None) -> MirrorExecution:
    """Copy and retire the plan's lines that its approval, the caps and the targets allow."""
    settings = policy.mirror.transfer
    if plan.empty:
        return MirrorExecution("", records_frame([]), frozenset(), {}, {})
    plan_id, rows = _checked(plan)
    recorder = _Recorder(plan_id, approval, audit)
    created = pd.Timestamp(plan["created_at"].min()).to_pydatetime()
    done = audit.done(plan_id, since=created.date() - timedelta(days=1))
    remaining = rows[[(digest, target) not in done for digest, target in zip(rows["digest"], rows["target"])]]
    if done:
        log.info("mirror plan %s: %d line(s) done by earlier attempts are skipped", plan_id[:12], len(done))

    def refuse(outcome: str, why: str) -> None:
        recorder.record(remaining, outcome, why, flush=True)
        log.error("mirror plan %s refused: %s", plan_id[:12], why)
        raise ApprovalError(f"mirror plan {plan_id}: {why}")

    if approval is None:
        refuse(REFUSED_NOT_APPROVED, "no approval was recorded for this plan; nothing is copied without one")
    assert approval is not None
    if approval.plan_id != plan_id:
        refuse(REFUSED_NOT_APPROVED, f"the approval is for plan {approval.plan_id}, not this one")
    age = (now or datetime.now(timezone.utc)) - created
    if age > policy.mirror.approval.plan_max_age:
        refuse(REFUSED_EXPIRED, f"planned {format_duration(timedelta(seconds=int(age.total_seconds())))} ago, longer "
                                f"than mirror.approval.plan_max_age "
                                f"({format_duration(policy.mirror.approval.plan_max_age)}): re-plan it")

    chosen = remaining["target"].isin(approval.targets) if approval.targets is not None else \
        pd.Series(True, index=remaining.index)
    recorder.record(remaining[~chosen], SKIPPED_NOT_CHOSEN, f"the approver chose {sorted(approval.targets or [])}")
    selected = remaining[chosen]
    earlier = rows[[(digest, target) in done for digest, target in zip(rows["digest"], rows["target"])]]
    fits = _within_caps(selected, settings.max_images - len(earlier), settings.max_bytes - int(earlier["bytes"].sum()))
    recorder.record(selected[~fits], SKIPPED_CAP, f"beyond the per-run caps (transfer.max_images {settings.max_images:,}"
                                                  f", transfer.max_bytes {settings.max_bytes:,}); the next run goes on")
    selected = selected[fits]

    throttle = throttle or Throttle(settings.bandwidth_limit)
    failed_targets: dict[str, str] = {}
    stats: dict[str, dict[str, int]] = {}
    try:
        for name, lines in selected.groupby("target", sort=True):
            client = targets.get(name)
            if client is None:
                failed_targets[name] = f"no client for target {name}"
                recorder.record(lines, SKIPPED_TARGET_FAILED, failed_targets[name])
                continue
            copier = ImageCopier(source, client, name=name, chunk_size=settings.chunk_size, throttle=throttle,
                                 max_attempts=max(1, settings.max_retries))
            reason = _run_target(name, lines, copier, client, policy, recorder)
            stats[name] = copier.stats.as_dict()
            if reason is not None:
                failed_targets[name] = reason
    finally:
        recorder.flush()
    result = MirrorExecution(plan_id, records_frame(recorder.written), frozenset(done), failed_targets, stats)
    log.info("mirror plan %s: %s%s", plan_id[:12], result.outcomes(),
             f"; stopped targets: {failed_targets}" if failed_targets else "")
    return result


def _run_target(name: str, lines: pd.DataFrame, copier: ImageCopier, client: RegistryClient, policy: Policy,
                recorder: _Recorder) -> str | None:
    """Every line of one target, `transfer.concurrency` at a time; why the target stopped, if it did."""
    target = next(t for t in policy.mirror.targets if t.name == name)
    settings = policy.mirror.transfer
    stop = threading.Event()
    state: dict[str, Any] = {"reason": None, "errors": 0}
    lock = threading.Lock()

    def one(index: int) -> None:
        line = lines.loc[[index]]
        row = lines.loc[index]
        if stop.is_set():
            recorder.record(line, SKIPPED_TARGET_FAILED, f"not attempted: {state['reason']}")
            return
        repositories = [target.repository(repository) for repository in row["repositories"].split(",") if repository]
        started = time.monotonic()
        try:
            if row["action"] == MIRROR:
                result = copier.copy(row["source_repository"], row["digest"], repositories)
                recorder.record(line, ALREADY_PRESENT if result.already_present else COPIED,
                                f"{result.detail()} in {time.monotonic() - started:.1f} s")
            elif row["action"] == RETIRE:
                removed = [repository for repository in repositories
                           if _retire(client, name, repository, row["digest"])]
                recorder.record(line, RETIRED if removed else ALREADY_GONE,
                                f"deleted from {', '.join(removed)}" if removed else "no longer on the target")
        except TargetError as error:
            with lock:
                if state["reason"] is None:
                    state["reason"] = str(error)
            stop.set()
            recorder.record(line, FAILED, str(error), flush=True)
            log.error("%s", error)
        except CopyFailed as error:
            recorder.record(line, FAILED, str(error), flush=True)
            with lock:
                state["errors"] += 1
                if state["errors"] >= settings.max_errors and state["reason"] is None:
                    state["reason"] = (f"{state['errors']} images failed on {name} "
                                       f"(mirror.transfer.max_errors {settings.max_errors})")
                    stop.set()
            log.warning("mirror %s: %s", name, error)
        except BaseException as error:
            recorder.record(line, FAILED, f"{type(error).__name__}: {str(error)[:500]}", flush=True)
            raise

    with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix=f"mirror-{name}") as pool:
        for future in [pool.submit(one, index) for index in lines.index]:
            future.result()
    return state["reason"]


def _retire(client: RegistryClient, name: str, repository: str, digest: str) -> bool:
    """Delete one retired copy; False if it was gone already."""
    try:
        return client.delete_manifest(repository, digest)
    except SourceForbidden as error:
        raise TargetError(name, f"refused to delete {repository}@{digest} ({error.detail})",
                          "Give the target's credentials delete rights, or turn mirror.retire off") from None
    except SourceUnavailable as error:
        raise TargetError(name, f"DELETE {repository}@{digest}: {error.detail}", "Check that the target is up") from None
    except SourceError as error:
        raise CopyFailed(f"{name}: deleting {repository}@{digest}: {error.detail}") from None


__all__ = ["Approval", "ApprovalError", "MirrorExecution", "execute_mirror_plan"]
