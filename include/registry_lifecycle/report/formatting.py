"""How values print in the HTML and PDF (the CSV and JSON keep raw values)."""
from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import pandas as pd

from .. import units
from .section import Fact

NO_DATA_TEXT = "no data"


def human_bytes(value: float) -> str:
    return units.human_bytes(value, decimals=2)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_value(value: Any, unit: str = "count") -> str:
    if is_missing(value):
        return NO_DATA_TEXT
    if unit == "bytes":
        return human_bytes(float(value))
    if unit == "share":
        return f"{float(value):.1%}"
    if unit == "days":
        return f"{float(value):,.1f} days"
    if unit == "date":
        return value.isoformat() if isinstance(value, (date, datetime)) else str(value)
    if unit == "count" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return str(value)


def format_fact(fact: Fact) -> str:
    return format_value(fact.value, fact.unit)


def format_cell(column: str, value: Any) -> str:
    """A table cell: bytes columns in binary units, shares as percentages, timestamps to the minute."""
    if is_missing(value):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (int, float)) or hasattr(value, "item"):
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, bool):
            return "yes" if number else "no"
        name = column.lower()
        if "bytes" in name or name.startswith(("used_", "capacity")):
            return human_bytes(float(number))
        if "share" in name or "utilisation" in name or name.startswith("p_"):
            return f"{float(number):.1%}"
        if isinstance(number, int):
            return f"{number:,}"
        if not math.isfinite(number):
            return ""
        return f"{int(number):,}" if float(number).is_integer() else f"{number:,.2f}"
    text = str(value)
    # Digests and plan ids stay recognisable when shortened; the CSV has them whole.
    if text.startswith("sha256:") and len(text) == 71:
        return text[:19] + "…"
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"
    return text
