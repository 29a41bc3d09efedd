"""Control mapping: which section of this report gives evidence for which control.

The mapping is fixed (it is what the sections are built to show); the status of each row comes
from the sections of this very report, so a control whose evidence is missing this period says
so instead of pointing at an empty section.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..section import NO_DATA, OK, PARTIAL, Fact, Section, Table


@dataclass(frozen=True)
class Control:
    framework: str
    control: str
    requirement: str
    sections: tuple[str, ...]
    figures: tuple[tuple[str, str], ...]     # (section, fact) pairs quoted as key figures


CONTROLS: tuple[Control, ...] = (
    Control("NIST SP 800-190", "§4.2 Registry countermeasures",
            "Keep registries free of stale and vulnerable images; refer to images by immutable names, not `latest`; "
            "control who changes registry contents.",
            ("inventory", "vulnerabilities", "deletions", "tag_policy"),
            (("vulnerabilities", "vulnerable_retained_unused"), ("tag_policy", "prod_latest"),
             ("deletions", "exceptions"))),
    Control("SOC 2", "CC8.1 Change management",
            "Changes are authorized, documented, approved and implemented under control.",
            ("deletions", "provenance", "tag_policy"),
            (("deletions", "approved_actions"), ("deletions", "exceptions"), ("deletions", "mirror_exceptions"),
             ("tag_policy", "release_tags_repointed"))),
    Control("PCI DSS 4.0", "6.3.3 Security patches",
            "Known vulnerabilities are addressed by installing patches; critical ones within one month of release.",
            ("vulnerabilities",),
            (("vulnerabilities", "sla_breaches"), ("vulnerabilities", "mttr_days"))),
    Control("PCI DSS 4.0", "11.3.1 Internal vulnerability scans",
            "Internal vulnerability scans at least once every three months; high-risk and critical findings resolved "
            "and rescanned.",
            ("vulnerabilities",),
            (("vulnerabilities", "scan_days"), ("vulnerabilities", "coverage_running"))),
    Control("ISO/IEC 27001:2022", "A.8.8 Management of technical vulnerabilities",
            "Information about technical vulnerabilities is obtained, exposure evaluated and measures taken.",
            ("vulnerabilities", "provenance"),
            (("vulnerabilities", "open_critical"), ("vulnerabilities", "sla_breaches"))),
    Control("ISO/IEC 27001:2022", "A.8.32 Change management",
            "Changes to information processing facilities are subject to change management procedures.",
            ("deletions", "tag_policy", "provenance"),
            (("deletions", "exceptions"), ("provenance", "added_signed_share"))),
)


def _status(statuses: list[str]) -> str:
    if all(status == NO_DATA for status in statuses):
        return NO_DATA
    return OK if all(status == OK for status in statuses) else PARTIAL


def build(sections: list[Section], render_value) -> Section:
    """The mapping table for `sections` (already built); `render_value(fact)` prints a figure."""
    by_key = {section.key: section for section in sections}
    rows = []
    for control in CONTROLS:
        statuses = [by_key[key].status for key in control.sections if key in by_key]
        figures = []
        for section_key, fact_key in control.figures:
            section = by_key.get(section_key)
            if section is None:
                continue
            try:
                fact = section.fact(fact_key)
            except KeyError:
                continue
            figures.append(f"{fact.label}: {render_value(fact)}")
        rows.append({"framework": control.framework, "control": control.control, "requirement": control.requirement,
                     "evidence": ", ".join(by_key[key].title for key in control.sections if key in by_key),
                     "status": _status(statuses) if statuses else NO_DATA, "key_figures": "; ".join(figures)})
    table = pd.DataFrame(rows)
    section = Section("controls", "Control mapping",
                      "Which section of this report gives evidence for which control, and whether this period's "
                      "data supports it fully (ok), in part (partial) or not at all (no data).",
                      datasets=[])
    section.facts += [Fact("controls", "Controls mapped", len(table)),
                      Fact("controls_ok", "With complete evidence", int((table["status"] == OK).sum())),
                      Fact("controls_partial", "With partial evidence", int((table["status"] == PARTIAL).sum())),
                      Fact("controls_no_data", "Without evidence this period", int((table["status"] == NO_DATA).sum()))]
    section.tables.append(Table("controls-mapping", "Controls and their evidence", table, shown=len(table)))
    return section
