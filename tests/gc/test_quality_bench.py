"""The decision-quality bench's table: model vs best rule at fixed regret levels, and the targets."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from registry_lifecycle.gc.backtest import MODEL_FAMILY, TABLE_COLUMNS, model_params
from registry_lifecycle.gc.quality_bench import QUALITY_LEVELS, print_quality_figures, quality_table

GiB = 2**30


def backtest_table(rows: list[tuple[str, str, int, int, int]]) -> pd.DataFrame:
    """A policy table as `summarise` makes it, from (family, params, deleted, regret, bytes freed)."""
    table = pd.DataFrame(rows, columns=["family", "params", "images_deleted", "regret", "bytes_freed"])
    table["regret_pct"] = table["regret"] / table["images_deleted"].clip(lower=1)
    return table.assign(as_of_dates=4)[TABLE_COLUMNS]


@pytest.fixture
def table() -> pd.DataFrame:
    return backtest_table([
        (MODEL_FAMILY, model_params(0.005), 400, 1, 40 * GiB),      # 0.25%
        (MODEL_FAMILY, model_params(0.02), 500, 2, 60 * GiB),       # 0.4%: the default threshold
        (MODEL_FAMILY, model_params(0.1), 1000, 40, 90 * GiB),      # 4%
        ("Harbor", "not pulled within 60 d", 300, 2, 30 * GiB),     # 0.67%
        ("ECR", "sinceImagePulled 30 d", 800, 24, 80 * GiB),        # 3%
        ("zot", "pulledWithin 7 d", 2000, 300, 200 * GiB),          # 15%
    ])


def test_ratio_is_model_bytes_over_best_rule_bytes_at_each_regret_level(table):
    figures = quality_table(table, 0.02)
    levels = {row["regret_level"]: row for row in figures["levels"]}
    assert list(levels) == list(QUALITY_LEVELS)
    assert levels[0.005]["rule_reaches_level"] is False and levels[0.005]["ratio"] is None
    assert levels[0.01]["best_rule"] == "Harbor: not pulled within 60 d"
    assert levels[0.01]["model"] == model_params(0.02) and levels[0.01]["ratio"] == pytest.approx(2.0)
    assert levels[0.05]["ratio"] == pytest.approx(90 / 80) and levels[0.05]["meets_ratio"] is False
    assert levels[0.2]["best_rule"].startswith("zot") and levels[0.2]["ratio"] == pytest.approx(90 / 200)


def test_targets_need_the_ratio_at_every_level_a_rule_reaches(table):
    figures = quality_table(table, 0.02)
    assert figures["default_threshold"] == {"threshold": 0.02, "images_deleted": 500, "regret": 2,
                                            "regret_pct": 0.004, "bytes_freed": 60 * GiB}
    assert figures["regret_met"] and not figures["ratio_met"]

    dominant = table[table["family"] != "zot"].copy()
    dominant.loc[dominant["params"] == model_params(0.1), "bytes_freed"] = 120 * GiB
    assert quality_table(dominant, 0.02)["ratio_met"]
    assert not quality_table(dominant, 0.1)["regret_met"], "4% regret at 0.1 misses the 0.5% target"


def test_where_the_rule_frees_nearly_everything_deletable_the_model_must_match_it():
    """1.3x a rule that frees 100 of at most 105 deletable GiB is beyond any policy: judged at 1x."""
    table = backtest_table([
        (MODEL_FAMILY, model_params(0.02), 500, 1, 80 * GiB),       # 0.2%
        (MODEL_FAMILY, model_params(1.0), 1000, 150, 105 * GiB),    # 15%: every deletable image
        ("Harbor", "not pulled within 60 d", 300, 2, 40 * GiB),     # 0.67%: 1.3x is 52 GiB, reachable
        ("ECR", "imageCountMoreThan 1", 950, 140, 100 * GiB),       # 14.7%: 1.3x would be 130 GiB
    ])
    levels = {row["regret_level"]: row for row in quality_table(table, 0.02)["levels"]}
    assert levels[0.01]["required_ratio"] == 1.3 and levels[0.01]["meets_ratio"]        # 80 / 40 = 2x
    assert levels[0.2]["required_ratio"] == 1.0 and levels[0.2]["meets_ratio"]          # 105 / 100
    assert quality_table(table, 0.02)["ratio_met"]

    short = table.copy()
    short.loc[short["params"] == model_params(1.0), "bytes_freed"] = 99 * GiB             # below the rule
    assert not quality_table(short, 0.02)["ratio_met"]


def test_deleting_nothing_does_not_meet_the_regret_target(table):
    idle = table.copy()
    idle.loc[idle["params"] == model_params(0.02), ["images_deleted", "regret", "regret_pct", "bytes_freed"]] = 0
    assert not quality_table(idle, 0.02)["regret_met"]


def test_default_threshold_must_be_in_the_backtest(table):
    with pytest.raises(ValueError, match="default threshold 0.3"):
        quality_table(table, 0.3)


def test_printed_table_says_whether_targets_are_met(table, capsys):
    figures = {"scale": "tiny", "seed": 7, "history_days": 300, "snapshot_every_days": 7, "horizon_days": 90,
               "as_of_dates": ["2026-11-01"], "model_fallbacks": {}, "policies": 6, "world_seconds": 1.0,
               "history_seconds": 1.0, "backtest_seconds": 1.0, **quality_table(table, 0.02)}
    json.dumps(figures, allow_nan=False)            # --json prints it as it is
    print_quality_figures(figures)
    printed = capsys.readouterr().out
    assert "\n1.0% | Harbor: not pulled within 60 d | 0.67% | 30.0 GiB | p_reuse <= 0.02 | 0.40% | 60.0 GiB | 2.00x " \
           "| 1.3x" in printed
    assert "0.5% | nothing freed within it | n/a | 0 B | p_reuse <= 0.02 | 0.40% | 60.0 GiB | n/a (no rule within it) " \
           "| –" in printed
    assert "20.0% | zot: pulledWithin 7 d | 15.00% | 200.0 GiB | p_reuse <= 0.1 | 4.00% | 90.0 GiB | 0.45x | 1x" \
        in printed
    assert "NOT met (short at 5.0%, 10.0%, 20.0%)" in printed
    assert "regret <= 0.5% at the default threshold: met" in printed
