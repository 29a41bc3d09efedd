"""The decision-quality benchmark (`reglife bench --stage quality`): the reuse model against the
rule-based tools, scored by what really happened in the sandbox.

DESIGN.md's targets: at the same regret (deleted images pulled or referenced again within the
horizon), at least 1.3x the bytes the best rule policy frees, at every regret level some rule
setting reaches; and at the policy's default threshold, a regret of at most 0.5% of the
deleted images. Where the best rule already frees more than 1/1.3 of everything the shared
protections leave deletable (at high regret the rules delete nearly all of it), 1.3x is beyond
any policy, and the level is judged as DESIGN.md words the frontier: the model must free at
least as much (1x).

The history is built as production builds it: the real extraction pipeline against the
embedded sandbox, day by day, a cluster snapshot every week, into a lake. The backtest
(`backtest.decision_quality`) replays every policy on the snapshots where the model can be
trained, and scores each deletion against the sandbox's ground truth, which runs on past the
served history, so the newest snapshots count too.

Why HISTORY_DAYS: the model learns only from labelled dates with a quarter of pulls before
them (`WARM_UP_DAYS`), spanning a quarter (`MIN_SPAN_DAYS`), whose horizon was over by the
as-of date. With the default 90-day horizon the first as-of date it can decide on is about
day 272 of the stored pulls; before it the model falls back to its conservative priors
(p_reuse 0.9 or 1 for every image), and the bench would measure the fallback, not the model.
390 days give as-of dates over the last four months, so they straddle a quarterly compliance
sweep: judged only on the weeks just before one, a model (or rule) looks better or worse than
it is.
"""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Policy
from ..units import human_bytes
from .backtest import DEFAULT_THRESHOLDS, MODEL_FAMILY, decision_quality, frontier, model_params
from .features import History
from .reuse_model import MIN_SPAN_DAYS, WARM_UP_DAYS

QUALITY_LEVELS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
TARGET_RATIO = 1.3
TARGET_REGRET = 0.005
HISTORY_DAYS = 390
# Building the history runs the whole extraction and quality gate once per day: 390 days take
# about 10 minutes at tiny and 40 at S, so this stage runs at tiny whatever `--scale` says.
QUALITY_SCALE = "tiny"
SNAPSHOT_EVERY = 7
UNTIL = date(2026, 11, 27)


def first_trainable_day(history: History, horizon_days: int) -> date:
    """The first as-of date whose model can have labelled dates spanning MIN_SPAN_DAYS after the
    warm-up, each with its whole horizon over by then."""
    return history.pulls.first_day + timedelta(days=WARM_UP_DAYS + MIN_SPAN_DAYS + horizon_days)


def quality_table(table: pd.DataFrame, threshold: float, levels: Sequence[float] = QUALITY_LEVELS) -> dict:
    """From a backtest's policy table: model vs best rule at each regret level, the model at the
    default `threshold`, and whether DESIGN.md's targets are met (JSON-ready)."""
    rows = []
    # Every policy shares the safety floor, and the model at p_reuse <= 1 deletes all it leaves:
    # no policy frees more than the table's largest figure.
    deletable = int(table["bytes_freed"].max()) if len(table) else 0
    for point in frontier(table, levels).itertuples(index=False):
        reached = point.rule_bytes > 0
        required = TARGET_RATIO if TARGET_RATIO * point.rule_bytes <= deletable else 1.0
        rows.append({"regret_level": point.regret_level, "best_rule": point.best_rule,
                     "rule_regret_pct": _number(point.rule_regret_pct), "rule_bytes": point.rule_bytes,
                     "model": point.model, "model_regret_pct": _number(point.model_regret_pct),
                     "model_bytes": point.model_bytes, "ratio": _number(point.ratio) if reached else None,
                     "rule_reaches_level": reached, "required_ratio": required if reached else None,
                     "meets_ratio": bool(point.ratio >= required) if reached else None})
    model = table[(table["family"] == MODEL_FAMILY) & (table["params"] == model_params(threshold))]
    if model.empty:
        raise ValueError(f"the backtest has no model row at the default threshold {threshold:g}; "
                         "include it in the thresholds")
    default = model.iloc[0]
    judged = [row for row in rows if row["rule_reaches_level"]]
    return {
        "levels": rows,
        "default_threshold": {"threshold": threshold, "images_deleted": int(default["images_deleted"]),
                              "regret": int(default["regret"]), "regret_pct": float(default["regret_pct"]),
                              "bytes_freed": int(default["bytes_freed"])},
        "target_ratio": TARGET_RATIO,
        "deletable_bytes": deletable,
        "target_regret_pct": TARGET_REGRET,
        "ratio_met": bool(judged) and all(row["meets_ratio"] for row in judged),
        # Deleting nothing has no regret and proves nothing.
        "regret_met": int(default["images_deleted"]) > 0 and float(default["regret_pct"]) <= TARGET_REGRET,
    }


def _number(value: float) -> float | None:
    """A float for JSON: NaN and infinity (no policy within the level) become null."""
    return float(value) if np.isfinite(value) else None


def quality_benchmark(scale: str = "tiny", *, days: int = HISTORY_DAYS, seed: int = 7,
                      policy: Policy | None = None) -> dict:
    """Build a sandbox history of `days`, replay every policy against the ground truth; the figures."""
    from ..config import load_policy, policy_with
    from ..lake import Lake
    from ..pipeline import build_sandbox_history
    from ..sandbox import Sandbox

    # Training logs a fallback or a fit per as-of date; the table says what matters.
    logging.getLogger("registry_lifecycle.gc.reuse_model").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="reglife-quality-") as tmp:
        started = time.monotonic()
        with Sandbox(seed=seed, scale=scale, days=days, until=UNTIL, data_dir=Path(tmp) / "sandbox") as sandbox:
            world_seconds = time.monotonic() - started
            policy = policy_with(policy or load_policy(), sandbox.policy_document())
            lake = Lake(str(Path(tmp) / "lake"))
            started = time.monotonic()
            outcomes = build_sandbox_history(sandbox, lake, policy, sandbox.world.start.date(),
                                             sandbox.world.until.date(), snapshot_every=SNAPSHOT_EVERY)
            history_seconds = time.monotonic() - started
            world = sandbox.world
        if not outcomes[-1].published:
            raise RuntimeError(f"the quality gate halted the history on {outcomes[-1].day}; "
                               "run `reglife extract --sandbox` on that day to see why")
        history = History.from_lake(lake)
        gc = policy.gc
        thresholds = sorted({*DEFAULT_THRESHOLDS, gc.threshold})
        started = time.monotonic()
        result = decision_quality(world, history, first_trainable_day(history, gc.horizon_days), history.days[-1],
                                  gc.horizon_days, thresholds, gc=gc)
        backtest_seconds = time.monotonic() - started
    return {
        "scale": scale, "seed": seed, "history_days": days, "snapshot_every_days": SNAPSHOT_EVERY,
        "horizon_days": gc.horizon_days,
        "as_of_dates": [day.isoformat() for day in result.as_of_dates],
        "model_fallbacks": {day.isoformat(): reason for day, reason in result.fallbacks.items()},
        "policies": len(result.table),
        "world_seconds": round(world_seconds, 1), "history_seconds": round(history_seconds, 1),
        "backtest_seconds": round(backtest_seconds, 1),
        **quality_table(result.table, gc.threshold),
    }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def print_quality_figures(figures: dict) -> None:
    """The decision-quality table, with the targets and whether they are met."""
    print(f"## decision quality ({figures['scale']}, seed {figures['seed']}: {figures['history_days']} days of "
          f"sandbox history, snapshot every {figures['snapshot_every_days']} d, sandbox built in "
          f"{figures['world_seconds']} s, history extracted in {figures['history_seconds']} s; "
          f"{figures['policies']} policies replayed on {len(figures['as_of_dates'])} as-of dates in "
          f"{figures['backtest_seconds']} s; regret = deleted images "
          f"pulled or referenced again within {figures['horizon_days']} d, from the sandbox's ground truth)\n")
    print("regret at most | best rule setting | its regret | rule frees | model threshold | its regret | "
          "model frees | model / rule | needed")
    print("--- | --- | --- | --- | --- | --- | --- | --- | ---")
    for row in figures["levels"]:
        ratio = "n/a (no rule within it)" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        needed = "–" if row["required_ratio"] is None else f"{row['required_ratio']:g}x"
        rule = row["best_rule"] if row["rule_bytes"] else "nothing freed within it"
        model = row["model"] if row["model_bytes"] else "nothing freed within it"
        model_regret = _percent(row["model_regret_pct"] if row["model_bytes"] else None)
        print(f"{row['regret_level']:.1%} | {rule} | {_percent(row['rule_regret_pct'])} | "
              f"{human_bytes(row['rule_bytes'])} | {model} | {model_regret} | "
              f"{human_bytes(row['model_bytes'])} | {ratio} | {needed}")
    default = figures["default_threshold"]
    print(f"\nat the default threshold p_reuse <= {default['threshold']:g}: {default['images_deleted']:,} images "
          f"deleted over the as-of dates, {default['regret']:,} reused within the horizon = "
          f"{default['regret_pct']:.2%} regret; frees {human_bytes(default['bytes_freed'])} per run")
    judged = [row for row in figures["levels"] if row["rule_reaches_level"]]
    short = [f"{row['regret_level']:.1%}" for row in judged if not row["meets_ratio"]]
    print(f"everything the shared protections leave deletable: {human_bytes(figures['deletable_bytes'])} per run; "
          f"where {figures['target_ratio']}x the best rule would exceed it, the model must free at least as much (1x)")
    print(f"target >= {figures['target_ratio']}x the best rule's bytes at every regret level a rule reaches "
          f"({len(judged)} of {len(figures['levels'])}): " + ("met" if figures["ratio_met"] else
                                                               f"NOT met (short at {', '.join(short) or 'all'})"))
    print(f"target regret <= {figures['target_regret_pct']:.1%} at the default threshold: "
          + ("met" if figures["regret_met"] else "NOT met"
             + (" (it deletes nothing)" if not default["images_deleted"] else "")))
    if figures["model_fallbacks"]:
        print(f"the model fell back to its priors on {len(figures['model_fallbacks'])} of "
              f"{len(figures['as_of_dates'])} as-of dates: {next(iter(figures['model_fallbacks'].values()))}")
