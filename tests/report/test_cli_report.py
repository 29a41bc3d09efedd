"""`reglife report`: a quarter or a custom period from a lake to a bundle (and optionally a store)."""
from __future__ import annotations

import json

from registry_lifecycle.cli import main
from registry_lifecycle.report.bundle import verify_bundle


def test_reglife_report_writes_a_verified_bundle_for_a_custom_period_and_stores_it(report_lake, tmp_path, capsys):
    out, store = tmp_path / "out", tmp_path / "store"
    code = main(["report", "--lake", str(report_lake.path), "--from", "2026-09-01", "--to", "2026-09-30",
                 "--out", str(out), "--store", str(store), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["period"] == "2026-09-01_2026-09-30" and result["first"] == "2026-09-01"
    assert verify_bundle(result["zip"])
    assert result["stored"]["label"] == "2026-09-01_2026-09-30"
    assert (store / result["stored"]["folder"] / "report.pdf").is_file()
    assert "https://" not in json.dumps(result) and "X-Amz" not in json.dumps(result)


def test_reglife_report_refuses_an_unclear_period(report_lake, tmp_path, capsys):
    assert main(["report", "--lake", str(report_lake.path), "--quarter", "2026Q5", "--out", str(tmp_path)]) == 2
    assert "e.g. 2026Q3" in capsys.readouterr().err
    assert main(["report", "--lake", str(report_lake.path), "--from", "2026-09-01", "--out", str(tmp_path)]) == 2
    assert "--from needs --to" in capsys.readouterr().err
