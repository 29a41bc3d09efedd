"""`reglife bench --stage extract`: a cold and a warm extraction, each in its own process, against a
sandbox served by another (tiny scale here; the figures of M and L are printed, never asserted)."""
from __future__ import annotations

import json

from registry_lifecycle.cli import main


def test_bench_extract_measures_a_cold_and_a_warm_run_in_their_own_processes(capsys):
    assert main(["bench", "--stage", "extract", "--scale", "tiny", "--json"]) == 0
    cold, warm = json.loads(capsys.readouterr().out)["extract"]
    assert (cold["run"], warm["run"]) == ("cold", "warm")
    assert cold["rows"] == warm["rows"] > 1_000
    assert cold["manifest_and_blob_gets"] > 50 and warm["manifest_and_blob_gets"] == 0
    assert 0 < warm["registry_requests"] <= 0.05 * cold["registry_requests"]
    assert cold["kubernetes_requests"] == warm["kubernetes_requests"] > 0
    # Peak RSS is the run's own process, not this test process (which holds pytest and more).
    assert 100 < cold["peak_rss_mib"] < 2_000 and 100 < warm["peak_rss_mib"] < 2_000
