"""The scans source: `trivy image --format json` reports -> `scans`.

Reports are collected wherever the scanner leaves them (a folder or an S3 prefix), one JSON
document per image, partitioned by scan day: `<location>/dt=YYYY-MM-DD/*.json`. The image is
identified by the manifest digest in `Metadata.RepoDigests` (or `ArtifactName` by digest),
never by tag, since a tag may have moved since the scan.
"""
from __future__ import annotations

import json
from datetime import date, datetime

import pandas as pd

from ..datasets import SCANS
from .errors import SourceMalformed
from .image_refs import parse_pull_spec
from .locations import Location

SOURCE = "scans"
SEVERITIES = {"UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"}


def _digest_of(report: dict) -> str | None:
    candidates = list((report.get("Metadata") or {}).get("RepoDigests") or []) + [report.get("ArtifactName") or ""]
    for candidate in candidates:
        spec = parse_pull_spec(candidate)
        if spec is not None and spec.digest:
            return spec.digest
    return None


def parse_report(report: dict, *, where: str, scanner: str = "trivy") -> list[tuple]:
    if report.get("SchemaVersion") != 2:
        raise SourceMalformed(SOURCE, where, f"SchemaVersion {report.get('SchemaVersion')!r} is not 2",
                              "Produce reports with a current Trivy (`trivy image --format json`).")
    digest = _digest_of(report)
    if digest is None:
        raise SourceMalformed(SOURCE, where, "the report names no image digest (Metadata.RepoDigests)",
                              "Scan images by digest so findings can be attributed.")
    try:
        scanned_at = datetime.fromisoformat(str(report["CreatedAt"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise SourceMalformed(SOURCE, where, "CreatedAt is missing or not a timestamp", "Re-run the scan.") from None
    rows = []
    for result in report.get("Results") or []:
        for vuln in result.get("Vulnerabilities") or []:
            severity = str(vuln.get("Severity", "UNKNOWN")).upper()
            rows.append((digest, scanner, vuln.get("VulnerabilityID", ""), severity if severity in SEVERITIES else "UNKNOWN",
                         vuln.get("PkgName", ""), vuln.get("InstalledVersion") or None,
                         vuln.get("FixedVersion") or None, scanned_at))
    return rows


def scans_for_day(location: Location, day: date) -> pd.DataFrame:
    """Findings of every report filed on `day`; a day without reports gives an empty frame."""
    rows: list[tuple] = []
    for path in location.list_files(f"dt={day.isoformat()}"):
        if not path.endswith(".json"):
            continue
        try:
            report = json.loads(location.read_bytes(path))
        except ValueError:
            raise SourceMalformed(SOURCE, path, "not valid JSON", "Fix or remove the report.") from None
        rows.extend(parse_report(report, where=path))
    frame = pd.DataFrame(rows, columns=SCANS.schema.names)
    frame["scanned_at"] = pd.to_datetime(frame["scanned_at"], utc=True)
    # A scanner may report one package twice (several targets); keep one finding per key.
    return frame.drop_duplicates(["digest", "vuln_id", "package"]).reset_index(drop=True)
