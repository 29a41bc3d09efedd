"""One report run, as the DAG's tasks and `reglife report` do it: build, bundle, store, summarise."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..config import Policy, ReportSettings
from ..lake import Lake
from .build import Report, build_report
from .bundle import Bundle, write_bundle
from .formatting import format_fact
from .period import Period
from .storage import (
    DEFAULT_LOCATION,
    LocalReportStore,
    S3ReportStore,
    StoredReport,
    open_store,
)

# What a summary quotes from each section (and a notification repeats).
HEADLINES = (("inventory", "images_end"), ("inventory", "bytes_end"), ("provenance", "all_signed_share"),
             ("tag_policy", "prod_latest"), ("vulnerabilities", "open_critical"), ("vulnerabilities", "sla_breaches"),
             ("deletions", "executed_actions"), ("deletions", "exceptions"), ("deletions", "mirror_actions"),
             ("capacity", "peak_utilisation"),
             ("data_quality", "critical_failures"))


@dataclass(frozen=True)
class Generated:
    report: Report
    bundle: Bundle


def generate(lake: Lake, period: Period, policy: Policy, out: Path | str, *, now: datetime | None = None) -> Generated:
    """Build the report for `period` from `lake` and write its bundle under `out`."""
    report = build_report(lake, period, policy, now=now)
    return Generated(report, write_bundle(report, out))


def report_location(settings: ReportSettings) -> str:
    """Where reports are kept: REGLIFE_REPORT_LOCATION, else the policy's report.location, else ./data/reports."""
    return os.environ.get("REGLIFE_REPORT_LOCATION") or settings.location or DEFAULT_LOCATION


def report_store(settings: ReportSettings, *, s3: dict | None = None) -> LocalReportStore | S3ReportStore:
    """The store at `report_location`, with S3 settings (endpoint, keys) from a Connection."""
    s3 = s3 or {}
    location = report_location(settings)
    return open_store(location, endpoint_url=s3.get("endpoint_url"), region=s3.get("region"),
                      access_key=s3.get("access_key"), secret_key=s3.get("secret_key"),
                      object_lock_mode=settings.object_lock.mode, retain_days=settings.object_lock.retain_days)


def headlines(report: Report) -> list[dict]:
    lines = []
    for section_key, fact_key in HEADLINES:
        section = report.section(section_key)
        try:
            fact = section.fact(fact_key)
        except KeyError:        # a section without data has no figures to quote
            lines.append({"section": section_key, "key": fact_key, "label": section.title, "value": None,
                          "text": "no data"})
            continue
        lines.append({"section": section_key, "key": fact_key, "label": fact.label, "value": fact.as_json(),
                      "text": format_fact(fact)})
    return lines


def summary(generated: Generated, stored: StoredReport | None = None) -> dict:
    """JSON-ready facts about a run: no URL, no credential (this goes to XCom and stdout)."""
    report, bundle = generated.report, generated.bundle
    deletions = report.section("deletions")
    exceptions = sum(fact.value or 0 for fact in deletions.facts if fact.key in ("exceptions", "mirror_exceptions"))
    return {
        "name": report.name, "period": report.period.label, "first": report.period.first.isoformat(),
        "last": report.period.last.isoformat(), "generated_at": report.generated_at.isoformat(timespec="seconds"),
        "bundle": str(bundle.folder), "zip": str(bundle.zip_path), "zip_sha256": bundle.zip_sha256,
        "files": len(bundle.files) + 1,
        "sections": {section.key: section.status for section in report.sections},
        "headlines": headlines(report), "exceptions": exceptions,
        "stored": None if stored is None else stored.as_dict(),
    }
