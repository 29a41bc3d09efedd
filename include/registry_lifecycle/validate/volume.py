"""Row counts of a snapshot against the previous snapshot: an implausible shrink halts the run.

Safety invariant 3. A half-empty list is far likelier to be a broken source (a namespace that
became Forbidden, a truncated page, an expired `continue` token) than a real mass deletion, and
a GC plan built on it would take every image the list missed for unreferenced. Each check
here is schema-valid on its own, which is why only a comparison with yesterday catches it.

Only snapshot datasets are compared (the contract's `snapshot` flag): time-ranged datasets
(pulls, scans, storage usage) change size with the range asked for, not with the cluster.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..datasets import ALL
from . import CRITICAL, INFO, WARNING, CheckResult

DEFAULT_MAX_SHRINK = 0.3
"""Largest tolerated drop, as a fraction, for a snapshot dataset the policy does not name."""

DEFAULT_MAX_GROWTH_FACTOR = 5.0

NO_PREVIOUS = "row count vs previous snapshot"
SHRINK = "row count shrink vs previous snapshot"
GROWTH = "row count growth vs previous snapshot"


@dataclass(frozen=True)
class VolumeThresholds:
    """How much a snapshot may change between runs; the policy's `validation` section sets these.

    `max_shrink` names per-dataset limits; a snapshot dataset it does not name still gets
    `default_max_shrink`, so a policy that lists only `images` does not switch the check off
    for `tags`. `accept_shrink` is the `--accept-shrink` flag: one run's intentional mass
    cleanup goes through as a warning instead of a halt, without loosening the policy for
    every later run.
    """

    max_shrink: Mapping[str, float] = field(default_factory=dict)
    default_max_shrink: float = DEFAULT_MAX_SHRINK
    max_growth_factor: float = DEFAULT_MAX_GROWTH_FACTOR
    accept_shrink: bool = False

    def __post_init__(self) -> None:
        for name, fraction in {**self.max_shrink, "(default)": self.default_max_shrink}.items():
            if not 0 < fraction <= 1:
                raise ValueError(f"max_shrink for {name} is {fraction}: use a fraction in (0, 1], "
                                 "e.g. 0.3 to halt when more than 30% of the rows disappear")
        if not self.max_growth_factor > 1:
            raise ValueError(f"max_growth_factor is {self.max_growth_factor}: use a factor above 1, e.g. 5.0")

    def shrink_limit(self, dataset: str) -> float:
        """The largest tolerated drop for `dataset`, as a fraction of the previous count."""
        return self.max_shrink.get(dataset, self.default_max_shrink)


def check_volume(current_counts: Mapping[str, int], previous_counts: Mapping[str, int] | None, *,
                 thresholds: VolumeThresholds, previous_run: str | Mapping[str, str] | None = None) -> list[CheckResult]:
    """Compare each snapshot dataset's row count with the previous snapshot's.

    `previous_counts` is None when there is no previous snapshot at all (the first run):
    that is recorded as an informational pass, never as a failure. `previous_run` names the
    run the counts came from (one run, or a run per dataset), so a halted run says what it was
    compared with.
    """
    results: list[CheckResult] = []
    for name, current in current_counts.items():
        contract = ALL.get(name)
        if contract is None or not contract.snapshot:
            continue
        previous = None if previous_counts is None else previous_counts.get(name)
        if previous is None:
            results.append(CheckResult(
                name, NO_PREVIOUS, INFO, True,
                f"{current:,} rows; no previous snapshot of {name} to compare with "
                "(first run, or the dataset is new), so the volume check did not apply"))
            continue
        run = previous_run.get(name) if isinstance(previous_run, Mapping) else previous_run
        results.append(_shrink(name, current, previous, thresholds, run))
        results.append(_growth(name, current, previous, thresholds, run))
    return results


def _previous_snapshot(previous_run: str | None) -> str:
    return f"the previous snapshot (run {previous_run})" if previous_run else "the previous snapshot"


def _compared_with(previous: int, previous_run: str | None) -> str:
    return f"{previous:,} in {_previous_snapshot(previous_run)}"


def _shrink(name: str, current: int, previous: int, thresholds: VolumeThresholds,
            previous_run: str | None) -> CheckResult:
    limit = thresholds.shrink_limit(name)
    drop = (previous - current) / previous if previous else 0.0
    if drop <= limit:
        return CheckResult(name, SHRINK, CRITICAL, True,
                           f"{current:,} rows vs {_compared_with(previous, previous_run)}; "
                           f"a drop of more than {limit:.0%} halts the run")
    observed = (f"{current:,} rows, down {drop:.0%} from {_compared_with(previous, previous_run)}; "
                f"the limit is a {limit:.0%} drop")
    hint = ("a source most likely returned a partial list (a namespace that became Forbidden, a "
            "truncated page) — check the extraction log for the source of this dataset; if this is an "
            "intentional mass cleanup, re-run with --accept-shrink, or raise "
            f"validation.max_shrink.{name} in the policy")
    if thresholds.accept_shrink:
        return CheckResult(name, SHRINK, WARNING, False, f"{observed}; accepted by --accept-shrink", hint)
    return CheckResult(name, SHRINK, CRITICAL, False, observed, hint)


def _growth(name: str, current: int, previous: int, thresholds: VolumeThresholds,
            previous_run: str | None) -> CheckResult:
    factor = thresholds.max_growth_factor
    ratio = current / previous if previous else (math.inf if current else 1.0)
    if ratio <= factor:
        return CheckResult(name, GROWTH, WARNING, True,
                           f"{current:,} rows vs {_compared_with(previous, previous_run)}; "
                           f"growth beyond {factor:g}x is flagged")
    if math.isinf(ratio):
        observed = f"{current:,} rows where {_previous_snapshot(previous_run)} had none"
    else:
        observed = f"{current:,} rows, {ratio:.1f}x the {_compared_with(previous, previous_run)}; more than {factor:g}x"
    return CheckResult(
        name, GROWTH, WARNING, False, observed,
        "check for pages read twice or a source pointed at a different cluster; if the growth is "
        "real (a new tenant, a migration), raise validation.max_growth_factor in the policy")
