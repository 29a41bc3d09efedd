"""The policy backtest: the table, the frontier, the plot, the CLI entry and ground-truth scoring."""
from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest

from registry_lifecycle.gc.backtest import (MODEL_FAMILY, REGRET_LEVELS, TABLE_COLUMNS, backtest, decision_quality,
                                            dominates, frontier, plot_frontier, run_backtest)
from registry_lifecycle.gc.rules import FAMILIES, RULE_GRID

HORIZON = 30
# One setting per family keeps the suite fast; the full grid runs in `reglife backtest`.
ONE_PER_FAMILY = tuple({policy.family: policy for policy in RULE_GRID}.values())
THRESHOLDS = (0.01, 0.1, 0.5, 1.0)


@pytest.fixture(scope="module")
def result(sandbox_history):
    history = sandbox_history.history
    last_with_horizon = history.pulls.last_day - timedelta(days=HORIZON)
    return run_backtest(history, last_with_horizon - timedelta(days=20), history.pulls.last_day, HORIZON, THRESHOLDS,
                        rules=ONE_PER_FAMILY)


def test_table_has_every_policy_with_its_regret_and_bytes(result):
    assert result.as_of_dates
    table = result.table
    assert list(table.columns) == TABLE_COLUMNS
    assert set(table["family"]) == {MODEL_FAMILY, *FAMILIES}
    assert len(table[table["family"] == MODEL_FAMILY]) == len(THRESHOLDS)
    assert (table["regret"] <= table["images_deleted"]).all()
    assert (table["bytes_freed"] >= 0).all()
    model = table[table["family"] == MODEL_FAMILY].set_index("params")
    assert model.loc["p_reuse <= 0.01", "images_deleted"] <= model.loc["p_reuse <= 1", "images_deleted"]


def test_only_dates_with_a_full_stored_horizon_are_replayed(result, sandbox_history):
    last = sandbox_history.history.pulls.last_day
    assert all(day + timedelta(days=HORIZON) <= last for day in result.as_of_dates)
    assert result.skipped and all("horizon" in reason for reason in result.skipped.values())


def test_regret_counts_deleted_images_reused_within_the_horizon(result, sandbox_history):
    """Deleting every deletable image regrets at most the images reused afterwards, and some."""
    from registry_lifecycle.gc.reuse_model import reused_after

    history = sandbox_history.history
    runs = result.runs
    everything = runs[(runs["family"] == MODEL_FAMILY) & (runs["params"] == "p_reuse <= 1")].set_index("as_of")
    assert everything["regret"].sum() > 0
    for day in result.as_of_dates:
        digests = pd.Index(history.state(day).images["digest"].unique())
        assert everything.loc[day, "regret"] <= int(reused_after(history, digests, day, HORIZON).sum())


def test_frontier_compares_the_best_rule_and_the_model_at_each_regret_level(result):
    table = result.frontier
    assert table["regret_level"].tolist() == list(REGRET_LEVELS)
    assert {"best_rule", "rule_bytes", "model", "model_bytes", "ratio"} <= set(table.columns)
    assert table["model_bytes"].is_monotonic_increasing and table["rule_bytes"].is_monotonic_increasing
    model = result.table[result.table["family"] == MODEL_FAMILY]
    for level, model_bytes in zip(table["regret_level"], table["model_bytes"]):
        within = model.loc[model["regret_pct"] <= level, "bytes_freed"]
        assert model_bytes == (within.max() if len(within) else 0)


def test_dominance_needs_the_model_at_every_rule_point():
    table = pd.DataFrame({"family": [MODEL_FAMILY, MODEL_FAMILY, "Harbor"], "params": ["a", "b", "c"],
                          "images_deleted": [10, 20, 20], "regret": [0, 2, 2], "regret_pct": [0.0, 0.1, 0.1],
                          "bytes_freed": [100, 300, 250], "as_of_dates": [1, 1, 1]})
    assert dominates(table)
    assert not dominates(table.assign(bytes_freed=[100, 200, 250]))
    assert frontier(table, (0.05, 0.1))["model_bytes"].tolist() == [100, 300]


def test_plot_is_a_png(result, tmp_path):
    path = plot_frontier(result, tmp_path / "frontier.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_entry_prints_one_json_document(sandbox_history, capsys, tmp_path):
    history = sandbox_history.history
    day = [d for d in history.days if d + timedelta(days=HORIZON) <= history.pulls.last_day][-1]
    found = backtest(str(sandbox_history.lake_path), day, day, HORIZON, THRESHOLDS, json=True,
                     plot=tmp_path / "frontier.png")
    document = json.loads(capsys.readouterr().out)
    assert document["horizon_days"] == HORIZON and document["as_of_dates"] == [day.isoformat()]
    assert {row["family"] for row in document["table"]} >= {MODEL_FAMILY, "Harbor", "ECR"}
    assert len(document["frontier"]) == len(REGRET_LEVELS)
    assert document["bytes_method"].startswith("unique bytes")
    assert set(found.table["family"]) >= {MODEL_FAMILY, *FAMILIES} and (tmp_path / "frontier.png").exists()


def test_cli_entry_prints_markdown_without_json(sandbox_history, capsys):
    history = sandbox_history.history
    day = [d for d in history.days if d + timedelta(days=HORIZON) <= history.pulls.last_day][-1]
    backtest(str(sandbox_history.lake_path), day, day, HORIZON, THRESHOLDS)
    printed = capsys.readouterr().out
    assert printed.startswith(f"## Policy backtest, horizon {HORIZON} d, 1 as-of date(s)")
    assert "### Frontier: best rule vs reuse model at each regret level" in printed
    assert " GiB" in printed or " MiB" in printed or " KiB" in printed      # bytes shown for humans


def test_decision_quality_scores_against_the_sandbox_ground_truth(sandbox_history):
    history = sandbox_history.history
    day = history.days[-1]                      # no stored horizon after it: only the truth can score it
    result = decision_quality(sandbox_history.world, history, day, day, HORIZON, THRESHOLDS, rules=ONE_PER_FAMILY)
    assert result.as_of_dates == (day,)
    assert set(result.table["family"]) == {MODEL_FAMILY, *FAMILIES}
    assert result.table["regret"].sum() > 0
