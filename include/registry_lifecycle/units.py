"""How sizes read in plans, approval bodies, tables and reports: one spelling everywhere."""
from __future__ import annotations

_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def human_bytes(size: float, decimals: int = 1) -> str:
    """Binary units, bytes as a whole number: 512 B, 1.5 KiB, 21.17 GiB (with decimals=2)."""
    value = float(size)
    for unit, scale in _UNITS:
        if abs(value) >= scale:
            return f"{value / scale:,.{decimals}f} {unit}"
    return f"{value:,.0f} B"


def markdown_cell(text: str) -> str:
    """Text that stays inside one cell of a markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")
