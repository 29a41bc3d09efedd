"""Assembling a report: every section built from the lake for one period.

`build_report` only reads; rendering and storing are separate steps (`render`, `pdf`,
`bundle`, `storage`), so the same `Report` yields the HTML, the PDF, the CSV files and the JSON
evidence, and none can disagree with another.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..config import Policy
from ..lake import Lake
from .evidence import PeriodData
from .formatting import format_fact
from .period import Period
from .section import Section
from .sections import (
    capacity,
    controls,
    cover,
    data_quality,
    deletions,
    inventory,
    provenance,
    tag_policy,
    vulnerabilities,
)

log = logging.getLogger(__name__)

REPORT_KIND = "registry-compliance-report"


def _register_contracts() -> None:
    """Datasets later stages add to the contract registry (GC and mirror plans and audit logs,
    forecasts, capacity alerts)."""
    from ..forecast import contracts  # noqa: F401
    from ..gc import audit, plan  # noqa: F401
    from ..mirror import audit as mirror_audit  # noqa: F401


@dataclass
class Report:
    period: Period
    generated_at: datetime
    lake_url: str
    policy_sha256: str
    sections: list[Section]
    sources: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The bundle's name: `registry-compliance-2026Q3`."""
        return f"registry-compliance-{self.period.label}"

    def section(self, key: str) -> Section:
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(f"the report has no section {key!r}")

    def evidence(self) -> dict:
        """The JSON evidence document: what was computed, and from which stored files."""
        return {
            "kind": REPORT_KIND,
            "schema_version": 1,
            "period": {"label": self.period.label, "first": self.period.first.isoformat(),
                       "last": self.period.last.isoformat(), "days": self.period.days},
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            "generator": self.section("cover").value("generator"),
            "lake": self.lake_url,
            "policy_sha256": self.policy_sha256,
            "sections": [section.as_json() for section in self.sections],
            "sources": self.sources,
        }


def policy_digest(policy: Policy) -> str:
    return hashlib.sha256(json.dumps(policy.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def build_report(lake: Lake, period: Period, policy: Policy, *, now: datetime | None = None) -> Report:
    """Every section for `period`, computed from what `lake` stores."""
    _register_contracts()
    now = now or datetime.now(timezone.utc)
    data = PeriodData(lake, period)
    sections: list[Section] = []
    builders = [
        ("cover", lambda: cover.build(data, policy, generated_at=now, today=now.date())),
        ("inventory", lambda: inventory.build(data, policy)),
        ("provenance", lambda: provenance.build(data, policy)),
        ("tag_policy", lambda: tag_policy.build(data, policy)),
        ("vulnerabilities", lambda: vulnerabilities.build(data, policy)),
        ("deletions", lambda: deletions.build(data, policy)),
        ("capacity", lambda: capacity.build(data, policy)),
        ("data_quality", lambda: data_quality.build(data, policy)),
    ]
    for key, builder in builders:
        started = time.monotonic()
        sections.append(builder())
        log.info("report %s: section %s built in %.1f s", period.label, key, time.monotonic() - started)
    sections.append(controls.build(sections, format_fact))
    return Report(period, now, lake.url, policy_digest(policy), sections, data.sources_json())
