"""The data-quality gate: every dataset of a snapshot is checked before it is published.

`suites` holds the rules (Great Expectations suites built from the contracts in
`registry_lifecycle.datasets`, plus the cross-dataset references GX cannot express),
`volume` compares row counts with the previous snapshot, and `gate` runs both and decides.

This module only defines the record all three produce. It imports neither pandas nor Great
Expectations, so `volume` stays cheap to import and nothing heavy runs at DAG-parse time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["critical", "warning", "info"]
"""critical fails the gate; warning is recorded and shown; info only documents what happened."""

CRITICAL: Severity = "critical"
WARNING: Severity = "warning"
INFO: Severity = "info"


@dataclass(frozen=True)
class CheckResult:
    """One row of the `validation` dataset, plus the advice a failure message gives.

    `hint` is not stored in the lake: it is what the person reading a failed run should do,
    and it belongs in the error message and the summary rather than in every row.
    """

    dataset: str
    expectation: str
    severity: Severity
    success: bool
    observed: str | None
    hint: str = ""

    @property
    def is_failure(self) -> bool:
        """A failed critical check: the gate halts on it."""
        return self.severity == CRITICAL and not self.success

    @property
    def is_warning(self) -> bool:
        """A failed warning check: the run goes on, but people must see it."""
        return self.severity == WARNING and not self.success
