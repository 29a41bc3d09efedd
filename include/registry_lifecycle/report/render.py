"""The report as HTML, from the jinja2 templates in `report/templates` (autoescaped: every value
in a report comes from stored data, and stored data is not trusted markup).

The same HTML is the report people open and the source of the PDF. Charts are embedded as
`data:` URIs so that `report.html` stands alone when it is downloaded without the bundle;
the bundle also carries each chart as its own PNG file.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .build import Report
from .formatting import format_cell, format_fact
from .section import Section, Table

STATUS_TEXT = {"ok": "evidence complete", "partial": "partial evidence", "no data": "no data"}


@dataclass(frozen=True)
class RenderedTable:
    title: str
    caption: str | None
    csv_name: str
    columns: list[str]
    rows: list[list[str]]
    total: int

    @property
    def hidden(self) -> int:
        return self.total - len(self.rows)


def _table(table: Table) -> RenderedTable:
    frame = table.displayed()
    columns = [str(column) for column in frame.columns]
    rows = [[format_cell(column, value) for column, value in zip(columns, record)]
            for record in frame.itertuples(index=False, name=None)]
    return RenderedTable(table.title, table.caption, table.csv_name, [c.replace("_", " ") for c in columns], rows,
                         len(table.frame))


def _section(section: Section) -> dict:
    return {
        "key": section.key, "title": section.title, "intro": section.intro, "status": section.status,
        "status_text": STATUS_TEXT[section.status], "notes": section.notes, "datasets": section.datasets,
        "facts": [{"label": fact.label, "value": format_fact(fact), "detail": fact.detail,
                   "missing": fact.value is None} for fact in section.facts],
        "charts": [{"title": chart.title, "file": chart.file_name,
                    "src": "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")}
                   for chart in section.charts],
        "tables": [_table(table) for table in section.tables],
    }


def environment() -> Environment:
    return Environment(loader=PackageLoader("registry_lifecycle.report", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(report: Report) -> str:
    template = environment().get_template("report.html.j2")
    cover = report.section("cover")
    return template.render(
        name=report.name, period=report.period, generated_at=report.generated_at.isoformat(timespec="seconds"),
        generator=cover.value("generator"), sections=[_section(section) for section in report.sections],
        policy_sha256=report.policy_sha256, lake=report.lake_url, sources=len(report.sources))
