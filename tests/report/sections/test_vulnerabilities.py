"""Remediation is seen per workload: a finding is fixed when the workload runs a rescanned image
without it. These cases are built by hand so each behaviour has exactly one cause."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd
from registry_lifecycle.report.sections.vulnerabilities import (
    OPEN,
    REMEDIATED,
    REMOVED,
    UNVERIFIED,
    latest_findings,
    sla_breaches,
    workload_findings,
)

OLD, NEW, UNSCANNED = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64


def _scan(digest, vuln, when, severity="CRITICAL", fixed="1.2.4"):
    return {"digest": digest, "scanner": "trivy", "vuln_id": vuln, "severity": severity, "package": "openssl",
            "installed_version": "1.2.3", "fixed_version": fixed, "scanned_at": pd.Timestamp(when, tz="UTC")}


def _runs(*rows):
    return pd.DataFrame([{"cluster": "c", "namespace": "shop-prod", "kind": "Deployment", "name": name,
                          "container": "web", "digest": digest, "day": day} for name, day, digest in rows])


def test_a_rollout_to_a_clean_rescanned_image_remediates_the_finding():
    scans = pd.DataFrame([_scan(OLD, "CVE-1", "2026-08-01 01:30"), _scan(OLD, "CVE-1", "2026-09-01 01:30"),
                          _scan(NEW, "CVE-2", "2026-09-01 01:30", severity="LOW")])
    runs = _runs(("web", date(2026, 8, 5), OLD), ("web", date(2026, 8, 26), OLD), ("web", date(2026, 9, 2), NEW))
    found = workload_findings(runs, scans)
    assert len(found) == 1
    row = found.iloc[0]
    assert (row.vuln_id, row.status, row.remediated_on) == ("CVE-1", REMEDIATED, date(2026, 9, 2))
    assert row.days_to_remediate == 32          # first reported 1 August, seen fixed 2 September


def test_a_rollout_to_an_image_not_yet_scanned_proves_nothing():
    scans = pd.DataFrame([_scan(OLD, "CVE-1", "2026-08-01 01:30")])
    runs = _runs(("web", date(2026, 8, 5), OLD), ("web", date(2026, 9, 2), UNSCANNED))
    assert workload_findings(runs, scans).iloc[0].status == UNVERIFIED


def test_a_finding_still_running_at_the_last_snapshot_is_open_and_a_deleted_workload_is_not_remediation():
    scans = pd.DataFrame([_scan(OLD, "CVE-1", "2026-08-01 01:30")])
    runs = _runs(("web", date(2026, 8, 5), OLD), ("web", date(2026, 9, 2), OLD),
                 ("api", date(2026, 8, 5), OLD))
    status = workload_findings(runs, scans).set_index("name")["status"]
    assert status["web"] == OPEN and status["api"] == REMOVED


def test_a_scan_after_the_snapshot_does_not_count_for_it():
    """The image a snapshot shows is judged by the scans that existed at that snapshot."""
    scans = pd.DataFrame([_scan(OLD, "CVE-1", "2026-08-10 01:30")])
    runs = _runs(("web", date(2026, 8, 5), OLD))
    assert workload_findings(runs, scans).empty


def test_sla_breaches_count_fixable_critical_findings_open_past_the_deadline():
    scans = pd.DataFrame([_scan(OLD, "CVE-1", "2026-07-01 01:30"), _scan(OLD, "CVE-NOFIX", "2026-07-01 01:30",
                                                                         fixed=None),
                          _scan(OLD, "CVE-MED", "2026-07-01 01:30", severity="MEDIUM")])
    runs = _runs(("web", date(2026, 7, 2), OLD), ("web", date(2026, 9, 2), OLD))
    found = workload_findings(runs, scans)
    assert set(found["vuln_id"]) == {"CVE-1", "CVE-NOFIX"}, "only critical and high are tracked"
    breaches = sla_breaches(found, date(2026, 7, 1), date(2026, 9, 30), 30)
    assert breaches["vuln_id"].tolist() == ["CVE-1"]
    assert breaches.iloc[0].deadline == date(2026, 7, 31)
    assert sla_breaches(found, date(2026, 7, 1), date(2026, 7, 20), 30).empty, "deadline not reached yet"


def test_a_remediation_within_the_sla_is_no_breach():
    scans = pd.DataFrame([_scan(OLD, "CVE-1", "2026-08-01 01:30"), _scan(NEW, "CVE-9", "2026-08-20 01:30")])
    runs = _runs(("web", date(2026, 8, 2), OLD), ("web", date(2026, 8, 21), NEW))
    found = workload_findings(runs, scans)
    remediated = found[found["vuln_id"] == "CVE-1"]
    assert remediated.iloc[0].status == REMEDIATED
    assert sla_breaches(remediated, date(2026, 7, 1), date(2026, 9, 30), 30).empty


def test_latest_findings_take_each_images_newest_scan_and_remember_when_a_finding_was_first_seen():
    scans = pd.DataFrame([_scan(OLD, "CVE-1", "2026-08-01 01:30"), _scan(OLD, "CVE-1", "2026-09-01 01:30"),
                          _scan(OLD, "CVE-2", "2026-09-01 01:30"), _scan(OLD, "CVE-3", "2026-10-01 01:30")])
    latest = latest_findings(scans, pd.Timestamp(datetime(2026, 9, 30, 23, 59, tzinfo=timezone.utc)))
    assert sorted(latest["vuln_id"]) == ["CVE-1", "CVE-2"], "the October scan is after the period"
    first = latest.set_index("vuln_id")["first_seen"]
    assert first["CVE-1"] == pd.Timestamp("2026-08-01 01:30", tz="UTC")
