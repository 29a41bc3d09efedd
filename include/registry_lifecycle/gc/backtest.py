"""The policy backtest: what each policy would have deleted on past days, and what that cost.

For every as-of date with a stored snapshot and a full horizon of stored pulls after it, each
policy (the reuse model at a sweep of thresholds, and every rule baseline of `rules.py` over
its parameter grid) deletes a set of images. Its *regret* is the number of those images that
were pulled, or referenced by a workload, within the horizon after the as-of date (from the
stored pulls and later snapshots, so it works on any lake); its *bytes freed* is what a
registry GC would really free (`reclaim.py`: blobs no kept image shares, counted once).

The model is replayed honestly: at each as-of date it is trained only on labelled dates whose
horizon was already over, exactly what a nightly run would have had.

Why a frontier and not one number: every policy trades regret for bytes through its knobs.
A model counts as better only if, at every regret level, it frees at least as many bytes as
the best setting of the best rule family (`frontier`). By default every policy also gets this
project's hard protections (workload references, rollback targets, index children, ...), so
the comparison measures the choice among deletable images, not the safety net; with
`shared_protections=False` each tool acts on its own semantics alone.

`decision_quality` replays the same policies against the sandbox's ground truth (what really
happened, including after the served history ends) for `reglife bench`.
"""
from __future__ import annotations

import json as json_module
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import GcPolicy, Policy, load_policy
from ..lake import Lake
from ..units import human_bytes
from .features import History
from .protections import INDEX_CHILD, MAYBE_INDEX_CHILD, REFERRER, ManifestGraph, protect
from .reclaim import BlobGraph, with_dependents
from .reuse_model import ExampleSet, ReuseModel, calibration_table, reused_after, train
from .rules import RULE_GRID, RulePolicy, registry_view

log = logging.getLogger(__name__)

MODEL_FAMILY = "reuse model"
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
                                         0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.995,
                                         0.998, 0.999, 0.9995, 0.9997, 0.9998, 0.99985, 0.9999, 0.99995, 1.0)
REGRET_LEVELS: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
TABLE_COLUMNS = ["family", "params", "images_deleted", "regret", "regret_pct", "bytes_freed", "as_of_dates"]

RegretOracle = Callable[[date, pd.Index], pd.Series]


def model_params(threshold: float) -> str:
    """The `params` of the reuse model's row at `threshold` in a backtest table."""
    return f"p_reuse <= {threshold:g}"


@dataclass(frozen=True)
class BacktestResult:
    """Everything a backtest found; `table` and `frontier` are what `reglife backtest` prints."""

    horizon_days: int
    as_of_dates: tuple[date, ...]
    runs: pd.DataFrame            # one row per (as_of, policy): images_deleted, regret, bytes_freed
    table: pd.DataFrame           # per policy over all dates (TABLE_COLUMNS)
    frontier: pd.DataFrame        # per regret level: best rule vs the model
    calibration: pd.DataFrame     # out-of-sample: predicted vs observed reuse by decile
    fallbacks: dict[date, str]    # as-of dates where the model fell back, and why
    bytes_method: str = "unique bytes (blobs no kept image shares, counted once)"
    shared_protections: bool = True
    skipped: dict[date, str] = field(default_factory=dict)

    @property
    def model_dominates(self) -> bool:
        """True when, for every rule setting, some model threshold has no more regret and no fewer bytes."""
        return dominates(self.table)

    def to_json(self) -> dict:
        def records(frame: pd.DataFrame) -> list[dict]:
            return json_module.loads(frame.to_json(orient="records", date_format="iso"))
        return {"horizon_days": self.horizon_days, "as_of_dates": [d.isoformat() for d in self.as_of_dates],
                "bytes_method": self.bytes_method, "shared_protections": self.shared_protections,
                "model_dominates_rule_frontier": self.model_dominates,
                "table": records(self.table), "frontier": records(self.frontier),
                "calibration": records(self.calibration),
                "fallbacks": {d.isoformat(): reason for d, reason in self.fallbacks.items()},
                "skipped": {d.isoformat(): reason for d, reason in self.skipped.items()}}

    def markdown(self) -> str:
        """The table and the frontier as Markdown, for a terminal or a report."""
        table = self.table.assign(regret_pct=self.table["regret_pct"].map(lambda v: f"{v:.2%}"),
                                  bytes_freed=self.table["bytes_freed"].map(human_bytes))
        percent = lambda v: "n/a" if not np.isfinite(v) else f"{v:.2%}"   # noqa: E731 - local formatter
        frontier = self.frontier.assign(
            regret_level=self.frontier["regret_level"].map(percent),
            rule_regret_pct=self.frontier["rule_regret_pct"].map(percent),
            model_regret_pct=self.frontier["model_regret_pct"].map(percent),
            rule_bytes=self.frontier["rule_bytes"].map(human_bytes),
            model_bytes=self.frontier["model_bytes"].map(human_bytes),
            ratio=self.frontier["ratio"].map(lambda v: "n/a" if not np.isfinite(v) else f"{v:.2f}x"))
        lines = [f"## Policy backtest, horizon {self.horizon_days} d, {len(self.as_of_dates)} as-of date(s)", "",
                 f"Bytes freed: {self.bytes_method}, mean per as-of date. Shared hard protections: "
                 f"{'yes' if self.shared_protections else 'no'}.", ""]
        if self.fallbacks:
            lines += [f"Model fell back to priors on {len(self.fallbacks)} date(s): "
                      f"{next(iter(self.fallbacks.values()))}", ""]
        lines += ["### Frontier: best rule vs reuse model at each regret level", "", _markdown(frontier), "",
                  f"Model dominates the whole rule frontier: {'yes' if self.model_dominates else 'no'}", "",
                  "### Every policy", "", _markdown(table), "",
                  "### Calibration (out of sample)", "", _markdown(self.calibration)]
        return "\n".join(lines)




def _markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


# ------------------------------------------------------------------------------ one as-of date
_CARRIED = frozenset({INDEX_CHILD, MAYBE_INDEX_CHILD, REFERRER})


@dataclass
class _Day:
    """What every policy of one as-of date needs: protections, the outcome oracle, a memo."""

    as_of: date
    images: pd.DataFrame
    graph: ManifestGraph              # of `images`, shared by every policy's question
    blobs: BlobGraph
    protected: frozenset[str]         # held on their own (not merely carried by a parent)
    candidates: pd.Index
    reused: pd.Series                 # digest -> reused within the horizon (every image of the snapshot)
    _memo: dict[tuple[frozenset[str], bool], tuple[int, int, int]] = field(default_factory=dict)

    def outcome(self, deleted: Iterable[str], shared_protections: bool) -> tuple[int, int, int]:
        """(images deleted with their dependents, of which reused within the horizon, bytes freed)."""
        doomed = frozenset(deleted)
        if shared_protections:
            doomed = doomed.intersection(self.candidates)
        key = (doomed, shared_protections)
        if key not in self._memo:
            held = self.protected if shared_protections else frozenset()
            mask = with_dependents(self.images, list(doomed), list(held), graph=self.graph)
            final = pd.Index(self.images["digest"].to_numpy()[mask])
            regret = int(self.reused.reindex(final).fillna(False).astype(bool).sum())
            self._memo[key] = (len(final), regret, self.blobs.reclaim(mask).honest_bytes)
        return self._memo[key]


def _day(history: History, examples: ExampleSet, as_of: date, oracle: RegretOracle) -> _Day:
    state = history.state(as_of)
    images = state.images.drop_duplicates("digest").reset_index(drop=True)
    moment = datetime.combine(as_of, time(23, 59, 59), tzinfo=timezone.utc)
    protections = protect(images, state.tags, state.references, state.namespaces, examples.gc, moment)
    own = protections[protections.map(lambda names: bool(set(names) - _CARRIED)).to_numpy(dtype=bool)]
    digests = pd.Index(images["digest"])
    return _Day(as_of, images, ManifestGraph(images), BlobGraph(images, state.layers), frozenset(own.index),
                examples.candidates(as_of), oracle(as_of, digests))


def _evaluate(history: History, examples: ExampleSet, days: Sequence[date], thresholds: Sequence[float],
              oracle: RegretOracle, rules: Sequence[RulePolicy], shared_protections: bool
              ) -> tuple[pd.DataFrame, pd.DataFrame, dict[date, str]]:
    rows: list[dict] = []
    scored: list[pd.DataFrame] = []
    fallbacks: dict[date, str] = {}
    for as_of in days:
        day = _day(history, examples, as_of, oracle)
        model: ReuseModel = train(examples, as_of)
        if model.is_fallback:
            fallbacks[as_of] = model.fallback_reason or ""
        features = history.features(as_of, examples.horizon_days).loc[lambda f: f.index.isin(day.candidates)]
        p = model.predict(features)
        scored.append(pd.DataFrame({"p_reuse": p, "reused": day.reused.reindex(p.index).fillna(False).astype(bool)}))
        for threshold in thresholds:
            deleted, regret, freed = day.outcome(p.index[p.to_numpy() <= threshold], True)
            rows.append({"as_of": as_of, "family": MODEL_FAMILY, "params": model_params(threshold),
                         "images_deleted": deleted, "regret": regret, "bytes_freed": freed})
        view = registry_view(history.state(as_of), history.pulls, as_of)
        for policy in rules:
            deleted, regret, freed = day.outcome(policy.deletes(view.state, history.pulls, as_of, view=view),
                                                 shared_protections)
            rows.append({"as_of": as_of, "family": policy.family, "params": policy.label,
                         "images_deleted": deleted, "regret": regret, "bytes_freed": freed})
        log.info("backtest %s: %d candidates, model %s", as_of, len(day.candidates),
                 "fallback" if model.is_fallback else f"trained on {len(model.trained_on)} dates")
    return pd.DataFrame(rows), (pd.concat(scored) if scored else pd.DataFrame(columns=["p_reuse", "reused"])), fallbacks


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per policy over all as-of dates: deletions and regrets summed, bytes freed per date."""
    if runs.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    table = runs.groupby(["family", "params"], sort=False).agg(
        images_deleted=("images_deleted", "sum"), regret=("regret", "sum"), bytes_freed=("bytes_freed", "mean"),
        as_of_dates=("as_of", "nunique")).reset_index()
    table["regret_pct"] = table["regret"] / table["images_deleted"].clip(lower=1)
    table["bytes_freed"] = table["bytes_freed"].round().astype("int64")
    return table[TABLE_COLUMNS]


def frontier(table: pd.DataFrame, levels: Sequence[float] = REGRET_LEVELS) -> pd.DataFrame:
    """At each regret level: the most bytes any rule frees within it, and the most the model frees."""
    rules = table[table["family"] != MODEL_FAMILY]
    model = table[table["family"] == MODEL_FAMILY]
    rows = []
    for level in levels:
        rule_ok = rules[rules["regret_pct"] <= level]
        model_ok = model[model["regret_pct"] <= level]
        best_rule = rule_ok.loc[rule_ok["bytes_freed"].idxmax()] if len(rule_ok) else None
        best_model = model_ok.loc[model_ok["bytes_freed"].idxmax()] if len(model_ok) else None
        rule_bytes = int(best_rule["bytes_freed"]) if best_rule is not None else 0
        model_bytes = int(best_model["bytes_freed"]) if best_model is not None else 0
        rows.append({
            "regret_level": level,
            "best_rule": f"{best_rule['family']}: {best_rule['params']}" if best_rule is not None else "none",
            "rule_regret_pct": float(best_rule["regret_pct"]) if best_rule is not None else float("nan"),
            "rule_bytes": rule_bytes,
            "model": best_model["params"] if best_model is not None else "none",
            "model_regret_pct": float(best_model["regret_pct"]) if best_model is not None else float("nan"),
            "model_bytes": model_bytes,
            "ratio": model_bytes / rule_bytes if rule_bytes else (float("inf") if model_bytes else float("nan")),
        })
    return pd.DataFrame(rows)


def dominates(table: pd.DataFrame) -> bool:
    """Every rule point is matched by a model point with no more regret and at least its bytes."""
    rules = table[table["family"] != MODEL_FAMILY]
    model = table[table["family"] == MODEL_FAMILY]
    for regret, freed in zip(rules["regret_pct"], rules["bytes_freed"]):
        if freed <= 0:
            continue
        if not ((model["regret_pct"] <= regret + 1e-12) & (model["bytes_freed"] >= freed)).any():
            return False
    return True


def _as_of_dates(history: History, first: date, last: date, horizon_days: int) -> tuple[list[date], dict[date, str]]:
    """Snapshot days in [first, last] whose horizon is fully stored; the others, with the reason."""
    chosen, skipped = [], {}
    for day in history.days:
        if not first <= day <= last:
            continue
        if day + timedelta(days=horizon_days) > history.pulls.last_day:
            skipped[day] = (f"its {horizon_days}-day horizon ends after the last stored pulls "
                            f"({history.pulls.last_day.isoformat()})")
            continue
        chosen.append(day)
    return chosen, skipped


def run_backtest(history: History, first: date, last: date, horizon_days: int,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, gc: GcPolicy | None = None,
                 rules: Sequence[RulePolicy] = RULE_GRID, shared_protections: bool = True) -> BacktestResult:
    """Replay every policy on each stored snapshot in [first, last] with a full horizon after it."""
    gc = gc or GcPolicy()
    days, skipped = _as_of_dates(history, first, last, horizon_days)
    examples = ExampleSet.for_policy(history, gc, horizon_days)

    def stored_outcome(as_of: date, digests: pd.Index) -> pd.Series:
        return reused_after(history, digests, as_of, horizon_days)

    runs, scored, fallbacks = _evaluate(history, examples, days, thresholds, stored_outcome, rules, shared_protections)
    table = summarise(runs)
    return BacktestResult(horizon_days, tuple(days), runs, table, frontier(table),
                          calibration_table(scored["p_reuse"].to_numpy(), scored["reused"].to_numpy()),
                          fallbacks, shared_protections=shared_protections, skipped=skipped)


def decision_quality(world, history: History, first: date, last: date, horizon_days: int,
                     thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, gc: GcPolicy | None = None,
                     rules: Sequence[RulePolicy] = RULE_GRID, shared_protections: bool = True) -> BacktestResult:
    """The backtest scored against the sandbox's ground truth (`world.truth`) instead of the lake.

    The truth knows what happens after the stored history ends, so as-of dates up to `last`
    count even without a stored horizon; the model still trains only on stored, finished horizons.
    """
    gc = gc or GcPolicy()
    days = [d for d in history.days if first <= d <= last]
    examples = ExampleSet.for_policy(history, gc, horizon_days)

    def truth(as_of: date, digests: pd.Index) -> pd.Series:
        moment = datetime.combine(as_of, time(23, 59, 59), tzinfo=timezone.utc)
        return pd.Series([world.truth.reused_within(d, moment, horizon_days) for d in digests], index=digests,
                         dtype=bool)

    runs, scored, fallbacks = _evaluate(history, examples, days, thresholds, truth, rules, shared_protections)
    table = summarise(runs)
    return BacktestResult(horizon_days, tuple(days), runs, table, frontier(table),
                          calibration_table(scored["p_reuse"].to_numpy(), scored["reused"].to_numpy()),
                          fallbacks, shared_protections=shared_protections)


def plot_frontier(result: BacktestResult, path: Path | str) -> Path:
    """A PNG of regret (% of deleted images) against bytes freed, one line per policy family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    figure, axes = plt.subplots(figsize=(9, 6))
    for family, points in result.table.groupby("family", sort=False):
        points = points.sort_values("bytes_freed")
        is_model = family == MODEL_FAMILY
        axes.plot(points["bytes_freed"] / 2**30, points["regret_pct"] * 100,
                  marker="o" if is_model else ".", linestyle="-" if is_model else "none",
                  linewidth=2 if is_model else 1, markersize=6 if is_model else 5, label=family,
                  zorder=3 if is_model else 2)
    axes.set_xlabel(f"bytes freed per run (GiB, {result.bytes_method.split(' (')[0]})")
    axes.set_ylabel(f"regret: deleted images reused within {result.horizon_days} d (%)")
    axes.set_title(f"Policy backtest over {len(result.as_of_dates)} as-of date(s)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def backtest(lake: Lake | str, first: date, last: date, horizon_days: int | None = None,
             thresholds: Sequence[float] = DEFAULT_THRESHOLDS, json: bool = False, *,
             policy: Policy | None = None, plot: Path | str | None = None,
             shared_protections: bool = True) -> BacktestResult:
    """`reglife backtest --lake L --from D --to D [--horizon DAYS] [--json]`.

    Prints the table and the frontier (Markdown, or one JSON document with `json`) on stdout
    and writes the frontier plot to `plot` when given. The horizon defaults to the policy's
    `gc.horizon_days`.
    """
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    policy = policy or load_policy()
    horizon = horizon_days or policy.gc.horizon_days
    history = History.from_lake(lake)
    result = run_backtest(history, first, last, horizon, thresholds, gc=policy.gc,
                          shared_protections=shared_protections)
    if plot is not None:
        plot_frontier(result, plot)
    if json:
        document = result.to_json()
        if plot is not None:
            document["plot"] = str(plot)
        sys.stdout.write(json_module.dumps(document) + "\n")
    else:
        sys.stdout.write(result.markdown() + "\n")
    return result
