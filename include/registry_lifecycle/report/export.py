"""The machine-readable parts of a bundle: one CSV per detail table, and the JSON evidence file."""
from __future__ import annotations

import json

import pandas as pd

from .build import Report


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps in ISO 8601 with their zone; lists and dicts as JSON."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            out[column] = series.map(lambda value: value.isoformat() if not pd.isna(value) else "")
        elif series.dtype == object and series.map(lambda v: isinstance(v, (list, dict, tuple))).any():
            out[column] = series.map(lambda v: json.dumps(list(v) if isinstance(v, tuple) else v)
                                     if isinstance(v, (list, dict, tuple)) else v)
    return out


def csv_files(report: Report) -> dict[str, bytes]:
    """`tables/<name>.csv` -> CSV bytes, for every detail table of every section (all rows)."""
    files = {}
    for section in report.sections:
        for table in section.tables:
            files[table.csv_name] = _csv_ready(table.frame).to_csv(index=False, lineterminator="\n").encode()
    return files


def chart_files(report: Report) -> dict[str, bytes]:
    return {chart.file_name: chart.png for section in report.sections for chart in section.charts}


def evidence_json(report: Report) -> bytes:
    return (json.dumps(report.evidence(), indent=1, sort_keys=False, default=str) + "\n").encode()
