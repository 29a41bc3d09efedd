"""Prints the measured parse time of each DAG file at the end of the run.

The 0.5 s parse target is a benchmark figure, not an assertion (see test_dag_integrity.py),
so the numbers are shown on every run instead of only when something fails.
"""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    rows = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            seconds = dict(getattr(report, "user_properties", ())).get("parse_seconds")
            if seconds is not None:
                rows.append((report.nodeid.rsplit("[", 1)[-1].rstrip("]"), seconds))
    if rows:
        terminalreporter.section("DAG parse time per file (target 0.5 s)")
        for name, seconds in sorted(rows, key=lambda row: -row[1]):
            terminalreporter.write_line(f"{seconds:7.3f} s  {name}")
