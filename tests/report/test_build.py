"""The report's numbers, checked against the lake they come from.

Each expected value is recomputed here straight from `Lake.read`, independently of the section
code, on the sandbox history of tests/report/conftest.py (2026Q3, data from 20 August on).
"""
from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest
from registry_lifecycle.report.sections.deletions import (
    AUTO_MODE,
    LATE_APPROVAL,
    NO_APPROVAL,
    NO_PLAN,
)

from .conftest import APPROVED_PLAN, AUTO_PLAN, FIRST_DAY, UNAPPROVED_PLAN, UNKNOWN_PLAN

Q3_FIRST, Q3_LAST = date(2026, 7, 1), date(2026, 9, 30)
SECTIONS = ["cover", "inventory", "provenance", "tag_policy", "vulnerabilities", "deletions", "capacity",
            "data_quality", "controls"]


def _snapshot_days(lake):
    return [d for d in lake.days("images") if Q3_FIRST <= d <= Q3_LAST]


def _images(lake, day):
    images = lake.read("images", day)
    children = set(lake.read("index_children", day)["child_digest"]) | set(images.loc[images.index_digest.notna(),
                                                                                       "digest"])
    return images[images.subject_digest.isna() & ~images.digest.isin(children)]


def test_every_section_is_there_in_reading_order(q3_report):
    assert [section.key for section in q3_report.sections] == SECTIONS


def test_the_cover_names_the_snapshots_used_and_says_the_quarter_is_only_partly_stored(report_lake, q3_report):
    cover = q3_report.section("cover")
    days = _snapshot_days(report_lake.lake)
    assert cover.value("baseline_snapshot") == FIRST_DAY == days[0]
    assert cover.value("closing_snapshot") == days[-1]
    assert cover.value("snapshots_in_period") == len(days)
    assert "prod-east" in cover.value("clusters")
    assert cover.value("registry") == "image-registry.openshift-image-registry.svc:5000"
    assert any("baseline is the first snapshot in the period (2026-08-20)" in note for note in cover.notes)
    coverage = cover.tables[0].frame.set_index("dataset")
    assert coverage.loc["pulls_daily", "days_with_data"] == (Q3_LAST - FIRST_DAY).days + 1


def test_inventory_counts_images_bytes_and_changes_between_the_two_snapshots(report_lake, q3_report):
    lake = report_lake.lake
    first, last = _snapshot_days(lake)[0], _snapshot_days(lake)[-1]
    start, end = _images(lake, first), _images(lake, last)
    layers = lake.read("layers", last)
    inventory = q3_report.section("inventory")
    assert inventory.value("images_start") == len(start)
    assert inventory.value("images_end") == len(end)
    assert inventory.value("repositories_end") == end.repository.nunique()
    assert inventory.value("images_added") == len(set(end.digest) - set(start.digest)) > 0
    assert inventory.value("images_removed") == len(set(start.digest) - set(end.digest))
    assert inventory.value("bytes_end") == layers.drop_duplicates("layer_digest").size_bytes.sum()
    per_namespace = inventory.tables[0].frame
    assert per_namespace.images_end.sum() == len(end)


def test_provenance_shares_match_labels_signature_tags_and_referrers(report_lake, q3_report):
    lake = report_lake.lake
    day = _snapshot_days(lake)[-1]
    images, tags = lake.read("images", day), lake.read("tags", day)
    end = _images(lake, day)
    signatures = set(tags.loc[tags.tag.str.fullmatch(r"sha256-[0-9a-f]{64}\.sig"), "digest"])
    signed = set(images.loc[images.digest.isin(signatures), "subject_digest"])
    labelled = end.labels.fillna("{}").map(json.loads).map(
        lambda labels: bool(labels.get("io.openshift.build.commit.id") and labels.get("io.openshift.build.source-location")))
    provenance = q3_report.section("provenance")
    assert provenance.value("all_images") == len(end)
    assert provenance.value("all_signed_share") == pytest.approx(end.digest.isin(signed).mean())
    assert 0 < provenance.value("all_signed_share") < 1, "the sandbox signs some images, not all"
    assert provenance.value("all_build_source_share") >= labelled.mean()


def test_tag_policy_counts_workloads_by_tag_and_moved_tags(report_lake, q3_report):
    lake = report_lake.lake
    day = _snapshot_days(lake)[-1]
    refs = lake.read("references", day)
    templates = refs[refs.source.isin(["template", "cronjob"])].drop_duplicates(
        ["cluster", "namespace", "kind", "name", "container"])
    section = q3_report.section("tag_policy")
    assert section.value("workload_containers") == len(templates)
    by_tag = templates[~templates.image_ref.str.contains("@sha256:")]
    assert section.value("by_tag") == len(by_tag)
    tags = lake.read("tags", day)
    moved_in_q3 = tags[(tags.created_at.dt.date >= Q3_FIRST) & (tags.created_at.dt.date <= Q3_LAST)
                       & ~tags.tag.str.endswith(".sig")
                       & (tags.revision < tags.groupby(["namespace", "imagestream", "tag"]).revision.transform("max"))]
    assert section.value("repoint_events") == len(moved_in_q3) > 0


def test_vulnerabilities_use_the_quarters_scans_and_the_latest_scan_of_each_stored_image(report_lake, q3_report):
    lake = report_lake.lake
    scans = lake.read_range("scans", FIRST_DAY, date(2026, 10, 2))
    assert date(2026, 10, 1) in set(scans.scanned_at.dt.date), "the fixture must hold a scan after the quarter"
    section = q3_report.section("vulnerabilities")
    assert section.value("scan_days") == 1 and section.fact("scan_days").detail == "2026-09-01"
    day = _snapshot_days(lake)[-1]
    stored = set(lake.read("images", day).digest)
    in_quarter = scans[scans.scanned_at.dt.date <= Q3_LAST]
    latest = in_quarter[in_quarter.scanned_at == in_quarter.groupby("digest").scanned_at.transform("max")]
    latest = latest[latest.digest.isin(stored)]
    assert section.value("open_critical") == (latest.severity == "CRITICAL").sum() > 0
    assert section.value("open_high") == (latest.severity == "HIGH").sum()
    severe = set(latest.loc[latest.severity.isin(["CRITICAL", "HIGH"]), "digest"])
    assert section.value("vulnerable_retained") == len(severe)


def test_deletions_join_every_executed_action_to_its_approval_and_list_the_rest(report_lake, q3_report):
    section = q3_report.section("deletions")
    digests = report_lake.gc_digests
    assert section.value("executed_actions") == 6, "refusals and the October run are not in Q3's actions"
    assert section.value("deleted_images") == 5
    assert section.value("deleted_bytes") == 5 * 5000
    assert section.value("approved_actions") == 2
    assert section.value("plans_executed") == 4
    assert section.value("approvers") == "alice, bob"
    assert section.value("not_executed") == 1
    exceptions = {table.name: table for table in section.tables}["deletions-exceptions"].frame
    assert dict(zip(exceptions.digest, exceptions.exception)) == {
        digests["auto"]: AUTO_MODE, digests["unapproved"]: NO_APPROVAL, digests["late"]: LATE_APPROVAL,
        digests["unplanned"]: NO_PLAN}
    plans = {table.name: table for table in section.tables}["deletions-plans"].frame.set_index("plan_id")
    assert plans.loc[APPROVED_PLAN, "approved_by"] == "alice"
    assert set(plans.index) == {APPROVED_PLAN, AUTO_PLAN, UNAPPROVED_PLAN, UNKNOWN_PLAN}
    assert digests["after_quarter"] not in set({t.name: t for t in section.tables}["deletions-actions"].frame.digest)
    assert section.value("mirror_actions") is None
    assert any(note.startswith("Mirroring: no data.") for note in section.notes)


def test_capacity_reports_stored_usage_the_quarter_end_forecast_and_alert_records(report_lake, q3_report):
    lake = report_lake.lake
    samples = lake.read_range("storage_usage", FIRST_DAY, Q3_LAST)
    last_day = samples[samples.ts.dt.date == Q3_LAST]
    section = q3_report.section("capacity")
    assert section.value("used_end") == last_day.used_bytes.max()
    assert section.value("used_peak") == samples.used_bytes.max()
    assert section.value("forecast_day") == date(2026, 9, 30)
    alerts = lake.read("capacity_alerts", date(2026, 9, 30))
    assert section.value("days_at_risk") == int(alerts.at_risk.any())
    assert section.charts, "usage and forecast are charted"


def test_data_quality_counts_every_validation_result_of_the_quarter(report_lake, q3_report):
    lake = report_lake.lake
    results = lake.read_range("validation", FIRST_DAY, Q3_LAST)
    checked = results[results.severity != "info"]
    section = q3_report.section("data_quality")
    assert section.value("checks") == len(checked)
    assert section.value("runs") == results.run_id.nunique()
    assert section.value("days_without") == (FIRST_DAY - Q3_FIRST).days
    assert section.value("pass_rate") == pytest.approx(checked.success.mean())


def test_control_mapping_covers_the_named_controls(q3_report):
    table = q3_report.section("controls").tables[0].frame
    controls = set(table.control)
    for expected in ("§4.2", "CC8.1", "6.3.3", "11.3.1", "A.8.8", "A.8.32"):
        assert any(expected in control for control in controls), expected
    assert set(table.status) <= {"ok", "partial", "no data"}


def test_every_source_in_the_evidence_is_a_committed_file_with_its_checksum(report_lake, q3_report):
    sources = q3_report.sources
    assert {s["dataset"] for s in sources} >= {"images", "layers", "tags", "references", "scans", "storage_usage",
                                               "validation", "gc_audit", "gc_plan", "forecasts"}
    for source in sources:
        if source["sha256"] is None:
            assert source["dataset"] == "gc_audit", "only the append-only audit log has no commit marker"
            continue
        data = (report_lake.path / source["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == source["sha256"], source["path"]


def test_a_period_without_any_data_says_no_data_everywhere_instead_of_zero(tmp_path, report_lake):
    from registry_lifecycle.lake import Lake
    from registry_lifecycle.report.build import build_report
    from registry_lifecycle.report.period import quarter

    report = build_report(Lake(str(tmp_path / "empty")), quarter("2026Q3"), report_lake.policy)
    statuses = {section.key: section.status for section in report.sections}
    assert all(status == "no data" for key, status in statuses.items() if key not in ("cover", "controls"))
    assert report.section("inventory").notes == ["No data: no cluster snapshot was stored in this period."]
    assert set(report.section("controls").tables[0].frame.status) == {"no data"}
