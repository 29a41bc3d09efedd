"""The bundle: a PDF that renders every section, CSV and JSON that agree with the report, and a
SHA-256 manifest that catches any change."""
from __future__ import annotations

import json
import shutil
import subprocess
import zipfile

import pandas as pd
import pytest
from registry_lifecycle.report.bundle import MANIFEST, BundleError, verify_bundle

from tests.fixtures.components import require_binary

PDFTOTEXT_BIN = "/usr/bin/pdftotext"
SHA256SUM_BIN = "/usr/bin/sha256sum"


def test_the_pdf_renders_every_section_with_its_figures(q3_report, q3_bundle):
    pdftotext = require_binary(PDFTOTEXT_BIN, "poppler-utils")
    raw = subprocess.run([pdftotext, str(q3_bundle.folder / "report.pdf"), "-"], check=True, capture_output=True,
                         text=True).stdout
    text = " ".join(raw.split())        # reading order; a label that wraps in its cell reads as one line
    for number, section in enumerate(q3_report.sections, 1):
        assert f"{number}. {section.title}" in text, section.title
    assert "Registry compliance report" in text and "2026Q3 (2026-07-01 to 2026-09-30, 92 days)" in text
    deletions = q3_report.section("deletions")
    label = deletions.fact("exceptions").label
    assert f"{label} {deletions.value('exceptions')}" in text
    assert "Mirroring: no data" in text
    pages = subprocess.run(["/usr/bin/pdfinfo", str(q3_bundle.folder / "report.pdf")], capture_output=True,
                           text=True, check=True).stdout
    assert int(next(line.split()[-1] for line in pages.splitlines() if line.startswith("Pages:"))) >= len(
        q3_report.sections)


def test_the_manifest_lists_and_verifies_every_file_of_the_folder_and_the_zip(q3_bundle):
    listed = verify_bundle(q3_bundle.folder)
    assert listed == verify_bundle(q3_bundle.zip_path) == q3_bundle.files
    assert {"report.html", "report.pdf", "evidence.json"} <= set(listed)
    assert any(name.startswith("tables/") and name.endswith(".csv") for name in listed)
    assert any(name.startswith("charts/") and name.endswith(".png") for name in listed)


def test_coreutils_sha256sum_checks_the_manifest_as_an_auditor_would(q3_bundle):
    sha256sum = require_binary(SHA256SUM_BIN, "coreutils")
    result = subprocess.run([sha256sum, "--check", "--strict", MANIFEST], cwd=q3_bundle.folder, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_changed_byte_or_an_unlisted_file_fails_verification(q3_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(q3_bundle.folder, copy)
    csv = next(copy.glob("tables/*.csv"))
    csv.write_bytes(csv.read_bytes().replace(b",", b";", 1))
    with pytest.raises(BundleError, match=f"tables/{csv.name}: sha256"):
        verify_bundle(copy)
    shutil.copytree(q3_bundle.folder, tmp_path / "extra")
    (tmp_path / "extra" / "notes.txt").write_text("added later")
    with pytest.raises(BundleError, match="notes.txt: present but not listed"):
        verify_bundle(tmp_path / "extra")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(q3_bundle.zip_path) as source, zipfile.ZipFile(tampered, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, data + b" " if info.filename.endswith("evidence.json") else data)
    with pytest.raises(BundleError, match="evidence.json: sha256"):
        verify_bundle(tampered)


def test_each_detail_table_is_a_csv_with_all_its_rows(q3_report, q3_bundle):
    for section in q3_report.sections:
        for table in section.tables:
            stored = pd.read_csv(q3_bundle.folder / table.csv_name, keep_default_na=False)
            assert len(stored) == len(table.frame), table.csv_name
            assert list(stored.columns) == [str(column) for column in table.frame.columns] or table.frame.empty


def test_the_json_evidence_repeats_every_fact_and_names_its_sources(q3_report, q3_bundle):
    evidence = json.loads((q3_bundle.folder / "evidence.json").read_text())
    assert evidence["period"] == {"label": "2026Q3", "first": "2026-07-01", "last": "2026-09-30", "days": 92}
    by_key = {section["key"]: section for section in evidence["sections"]}
    for section in q3_report.sections:
        for fact in section.facts:
            assert by_key[section.key]["facts"][fact.key]["value"] == fact.as_json(), (section.key, fact.key)
    assert evidence["sources"] and all({"dataset", "day", "path", "sha256"} <= set(s) for s in evidence["sources"])


def test_values_from_the_lake_are_escaped_in_the_html(tmp_path, report_lake):
    """A repository or tag name is data; `<script>` in one must never become markup."""
    from registry_lifecycle.lake import Lake
    from registry_lifecycle.report.build import build_report
    from registry_lifecycle.report.period import quarter
    from registry_lifecycle.report.render import render_html
    from registry_lifecycle.report.section import Fact, Table

    report = build_report(Lake(str(tmp_path / "empty")), quarter("2026Q3"), report_lake.policy)
    hostile = "<script>alert('x')</script>"
    report.section("inventory").facts.append(Fact("hostile", hostile, hostile, "text"))
    report.section("inventory").tables.append(Table("hostile", hostile, pd.DataFrame({"repository": [hostile]})))
    html = render_html(report)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
