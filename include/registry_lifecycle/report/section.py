"""A report section as data: facts, detail tables, charts and plain statements, before any format.

The HTML/PDF, the CSV files and the JSON evidence are all rendered from these objects, so the
three can never disagree. A fact's `unit` tells the renderers how to print it (bytes as GiB,
shares as percentages); the JSON keeps the raw value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import pandas as pd

Unit = Literal["count", "bytes", "share", "days", "text", "date"]
Status = Literal["ok", "partial", "no data"]

OK, PARTIAL, NO_DATA = "ok", "partial", "no data"


@dataclass(frozen=True)
class Fact:
    key: str                    # stable machine name in the JSON evidence
    label: str                  # what a reader sees
    value: Any                  # None = no data
    unit: Unit = "count"
    detail: str | None = None   # how it was computed, or from which records

    def as_json(self) -> Any:
        return _json_value(self.value)


@dataclass(frozen=True)
class Table:
    """A detail table: all rows go to `<name>.csv`; the HTML and PDF show the first `shown`."""

    name: str
    title: str
    frame: pd.DataFrame = field(repr=False)
    shown: int = 25
    caption: str | None = None
    columns: tuple[str, ...] | None = None     # the columns the HTML/PDF show (None: all); the CSV has all

    def displayed(self) -> pd.DataFrame:
        frame = self.frame.head(max(self.shown, 0))
        return frame[list(self.columns)] if self.columns else frame

    @property
    def csv_name(self) -> str:
        return f"tables/{self.name}.csv"


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    png: bytes = field(repr=False)

    @property
    def file_name(self) -> str:
        return f"charts/{self.name}.png"


@dataclass
class Section:
    key: str
    title: str
    intro: str
    facts: list[Fact] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)      # "no data" statements and caveats, in plain words
    datasets: list[str] = field(default_factory=list)   # which lake datasets the section reads
    status: Status = OK

    def fact(self, key: str) -> Fact:
        for fact in self.facts:
            if fact.key == key:
                return fact
        raise KeyError(f"section {self.key} has no fact {key!r}")

    def value(self, key: str) -> Any:
        return self.fact(key).value

    def no_data(self, statement: str) -> None:
        """Record that a source is missing; the section is 'partial' unless nothing at all was found."""
        self.notes.append(statement)
        if self.status == OK:
            self.status = PARTIAL

    def as_json(self) -> dict:
        return {
            "key": self.key, "title": self.title, "status": self.status, "datasets": self.datasets,
            "facts": {fact.key: {"label": fact.label, "value": fact.as_json(), "unit": fact.unit,
                                 **({"detail": fact.detail} if fact.detail else {})} for fact in self.facts},
            "tables": {table.name: {"title": table.title, "file": table.csv_name, "rows": len(table.frame)}
                       for table in self.tables},
            "charts": {chart.name: chart.file_name for chart in self.charts},
            "notes": self.notes,
        }


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (datetime, date, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "item"):          # numpy scalars
        return _json_value(value.item())
    return value


def share(part: int, whole: int) -> float | None:
    """part/whole, or None (no data) when there is nothing to divide by."""
    return part / whole if whole else None
