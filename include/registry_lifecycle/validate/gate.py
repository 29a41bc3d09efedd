"""The data-quality gate: every dataset of a snapshot is validated before it is published.

The extract DAG calls `run_quality_gate` between extracting and writing; `raise_for_failures`
stops the run on any critical failure, so a broken snapshot never becomes the input of a GC
plan. Every check, passed or not, becomes a row of the `validation` dataset, so a compliance
report can show what was checked for every published snapshot, not only what went wrong.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from ..datasets import VALIDATION
from . import CRITICAL, INFO, WARNING, CheckResult
from .suites import VALIDATED, check_foreign_keys, validate_frames
from .volume import VolumeThresholds, check_volume

if TYPE_CHECKING:
    from ..config import Validation

log = logging.getLogger(__name__)

DEFAULT_TIMESTAMP_SKEW = timedelta(hours=1)
PRESENT = "present in run"


@dataclass(frozen=True)
class GateThresholds:
    """The tunable limits of the gate; `from_policy` reads them from the policy's `validation`."""

    timestamp_skew: timedelta = DEFAULT_TIMESTAMP_SKEW
    volume: VolumeThresholds = field(default_factory=VolumeThresholds)

    @classmethod
    def from_policy(cls, validation: Validation, *, accept_shrink: bool = False) -> GateThresholds:
        """The policy's limits; `accept_shrink` is the per-run `--accept-shrink` flag, never policy."""
        return cls(timestamp_skew=validation.timestamp_skew,
                   volume=VolumeThresholds(max_shrink=dict(validation.max_shrink),
                                           max_growth_factor=validation.max_growth_factor,
                                           accept_shrink=accept_shrink))


class DataQualityError(Exception):
    """A snapshot failed a critical check; the message lists each one with what to do about it."""

    def __init__(self, run_id: str, failures: tuple[CheckResult, ...]):
        self.run_id = run_id
        self.failures = failures
        lines = "\n".join(f"  - {_line(check)}" for check in failures)
        count = f"{len(failures)} critical check{'s' if len(failures) != 1 else ''}"
        super().__init__(f"data-quality gate failed for run {run_id}: {count} failed, so this snapshot "
                         f"must not be published:\n{lines}")


def _line(check: CheckResult) -> str:
    advice = f"; {check.hint}" if check.hint else ""
    return f"{check.dataset}.{check.expectation}: {check.observed}{advice}"


@dataclass(frozen=True)
class GateResult:
    """Every check of one run, in report order (dataset by dataset)."""

    run_id: str
    checks: tuple[CheckResult, ...]

    @cached_property
    def results(self) -> pd.DataFrame:
        """The checks as rows of the `validation` dataset, in its contract's columns and types."""
        rows = [{"dataset": check.dataset, "expectation": check.expectation, "severity": check.severity,
                 "success": check.success, "observed": check.observed, "run_id": self.run_id}
                for check in self.checks]
        return pa.Table.from_pylist(rows, schema=VALIDATION.schema).to_pandas()

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """Failed critical checks: any one of them halts the run."""
        return tuple(check for check in self.checks if check.is_failure)

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        """Failed warning checks: the run goes on, and people must see them."""
        return tuple(check for check in self.checks if check.is_warning)

    @property
    def passed(self) -> bool:
        """No critical check failed: the snapshot may be published."""
        return not self.failures

    def raise_for_failures(self) -> None:
        """Raise DataQualityError if any critical check failed; otherwise do nothing."""
        if self.failures:
            raise DataQualityError(self.run_id, self.failures)

    def summary_markdown(self) -> str:
        """A table for the Airflow log and the demo: problems first, then everything that passed."""
        verdict = "PASSED" if self.passed else "FAILED"
        passed = sum(check.success for check in self.checks)
        lines = [
            f"### Data-quality gate {verdict} — run `{self.run_id}`",
            "",
            f"{len(self.failures)} critical failure(s), {len(self.warnings)} warning(s), "
            f"{passed} of {len(self.checks)} checks passed.",
            "",
            "| result | dataset | check | severity | observed |",
            "|---|---|---|---|---|",
        ]
        problems = self.failures + self.warnings
        rest = tuple(check for check in self.checks if check not in problems)
        for check in problems + rest:
            lines.append(f"| {_status(check)} | {check.dataset} | {_cell(check.expectation)} | "
                         f"{check.severity} | {_cell(check.observed or '')} |")
        if problems:
            lines += ["", "What to do:", ""]
            lines += [f"- **{check.dataset}.{check.expectation}** ({_status(check)}): {check.hint}"
                      for check in problems if check.hint]
        return "\n".join(lines)


def _status(check: CheckResult) -> str:
    if check.is_failure:
        return "FAIL"
    if check.is_warning:
        return "WARN"
    return "info" if check.severity == INFO else "pass"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def run_quality_gate(frames: Mapping[str, pd.DataFrame], *, as_of: datetime, run_id: str,
                     previous_counts: Mapping[str, int] | None,
                     thresholds: GateThresholds = GateThresholds(),
                     previous_run: str | Mapping[str, str] | None = None, required: Collection[str] = (),
                     not_extracted: Mapping[str, str] | None = None) -> GateResult:
    """Validate the datasets of one extraction and decide whether the snapshot may be published.

    `as_of` is when the extraction finished reading its sources (timezone-aware): timestamps
    later than it by more than the allowed skew are broken data. `previous_counts` are the row
    counts of the previous snapshot (None on the first run) and `previous_run` names it in
    messages. A dataset missing from `frames` is recorded as skipped, never passed over silently;
    if it is in `required` (a daily run must have every snapshot dataset), its absence is critical;
    if it is in `not_extracted` (dataset -> why, e.g. a backfill cannot list a past cluster), its
    absence is recorded as information with that reason.
    """
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of.isoformat()} has no time zone; pass an aware datetime, "
                         "e.g. datetime.now(timezone.utc)")
    known = [dataset.name for dataset in VALIDATED]
    unknown = sorted((set(frames) | set(required)) - set(known))
    if unknown:
        raise ValueError(f"the quality gate has no rules for {', '.join(unknown)}; it validates "
                         f"{', '.join(known)}")
    started = time.perf_counter()
    checks = [_presence(name, frames, required=name in required, reason=(not_extracted or {}).get(name))
              for name in known]
    checks += validate_frames(frames, as_of=as_of, timestamp_skew=thresholds.timestamp_skew)
    checks += check_foreign_keys(frames)
    checks += check_volume({name: len(frame) for name, frame in frames.items()}, previous_counts,
                           thresholds=thresholds.volume, previous_run=previous_run)
    # Stable sort: each dataset's checks stay in the order they were made.
    checks.sort(key=lambda check: known.index(check.dataset))
    result = GateResult(run_id, tuple(checks))
    log.info("quality gate for run %s %s: %d checks, %d critical failures, %d warnings, %.1f s",
             run_id, "passed" if result.passed else "failed", len(checks), len(result.failures),
             len(result.warnings), time.perf_counter() - started)
    return result


def _presence(name: str, frames: Mapping[str, pd.DataFrame], *, required: bool,
              reason: str | None = None) -> CheckResult:
    severity = CRITICAL if required else WARNING
    if reason is not None and name not in frames:
        return CheckResult(name, PRESENT, INFO, False, f"not extracted in this run: {reason}")
    if name in frames:
        return CheckResult(name, PRESENT, severity, True, f"{len(frames[name]):,} rows")
    if required:
        return CheckResult(name, PRESENT, severity, False, "missing from this run, which requires it",
                           "a snapshot without it would look to the GC like a cluster without it — check "
                           "the extraction log for why this dataset was not produced")
    return CheckResult(name, PRESENT, severity, False, "not in this run: all of its checks were skipped",
                       "expected when its source is not configured in the policy; otherwise check why "
                       "the extraction did not produce it")
