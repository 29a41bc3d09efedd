"""Data quality: the quality gate's results for every extraction run of the period.

Each extraction validates what it staged (Great Expectations suites plus snapshot-shrink
checks) and publishes only if no critical check fails; the results are stored in `validation`
either way. So a day whose run was halted shows here as a critical failure, and a day without
any result shows as a day without extraction. `info` results (a dataset not extracted in a run
by design, e.g. a weekly snapshot) are counted apart.
"""
from __future__ import annotations

import pandas as pd

from ...config import Policy
from ..evidence import PeriodData
from ..section import NO_DATA, Fact, Section, Table, share


def per_dataset(results: pd.DataFrame) -> pd.DataFrame:
    checked = results[results["severity"] != "info"]
    table = checked.assign(failed=~checked["success"].astype(bool)).groupby(["dataset", "severity"]).agg(
        checks=("success", "size"), failed=("failed", "sum")).reset_index()
    return table.sort_values(["failed", "dataset"], ascending=[False, True]).reset_index(drop=True)


def halted_runs(data: PeriodData, results: pd.DataFrame) -> pd.DataFrame:
    """Runs with a critical failure: the gate halted them and nothing of theirs was published."""
    failed = results[(results["severity"] == "critical") & ~results["success"].astype(bool)]
    rows = []
    for run_id, checks in failed.groupby("run_id"):
        rows.append({"run_id": run_id, "day": checks["day"].iloc[0], "failed_checks": len(checks),
                     "first_failure": f"{checks['dataset'].iloc[0]}: {checks['expectation'].iloc[0]}"})
    return pd.DataFrame(rows, columns=["run_id", "day", "failed_checks", "first_failure"])


def build(data: PeriodData, policy: Policy) -> Section:
    section = Section("data_quality", "Data quality",
                      "Results of the data-quality gate for every extraction run of the period.",
                      datasets=["validation"])
    frames = [data.read_day("validation", day).assign(day=day) for day in data.days_in_period("validation")]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["dataset", "expectation", "severity", "success", "observed", "run_id", "day"])
    if results.empty:
        section.no_data("No data: no validation result is stored for this period.")
        section.status = NO_DATA
        return section
    checked = results[results["severity"] != "info"]
    failures = checked[~checked["success"].astype(bool)]
    halted = halted_runs(data, results)
    days = set(results["day"])
    missing = [d for d in pd.date_range(data.period.first, min(data.period.last, max(days))).date if d not in days]
    section.facts += [
        Fact("runs", "Extraction runs validated", int(results["run_id"].nunique())),
        Fact("days_validated", "Days with a validated extraction", len(days)),
        Fact("days_without", "Days without any extraction", len(missing),
             detail=", ".join(d.isoformat() for d in missing[:10]) + (" ..." if len(missing) > 10 else "")
             if missing else None),
        Fact("checks", "Checks run", len(checked)),
        Fact("pass_rate", "Checks passed", share(int(checked["success"].astype(bool).sum()), len(checked)), "share"),
        Fact("critical_failures", "Critical failures", int((failures["severity"] == "critical").sum())),
        Fact("warnings", "Warnings", int((failures["severity"] == "warning").sum())),
        Fact("halted_runs", "Runs halted by the gate (nothing published)", len(halted)),
        Fact("info", "Informational results", int((results["severity"] == "info").sum()),
             detail="e.g. a snapshot dataset not extracted in a run by design"),
    ]
    if data.period.first < min(days):
        section.notes.append(f"The first validated extraction of the period is on {min(days).isoformat()}.")
    section.tables.append(Table("data-quality-datasets", "Checks per dataset", per_dataset(results)))
    section.tables.append(Table("data-quality-halted-runs", "Runs halted by the gate", halted))
    section.tables.append(Table("data-quality-failures", "Failed checks", failures[
        ["day", "run_id", "dataset", "expectation", "severity", "observed"]].sort_values(["day", "dataset"])))
    return section
