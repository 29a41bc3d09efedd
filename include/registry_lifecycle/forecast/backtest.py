"""Rolling-origin backtest: which model forecasts this series best, judged on its own past.

At each origin (every `step` days, the most recent `origins` of them) every model is fitted
on the history up to that day and forecasts `horizon` days; the forecasts are scored against
what happened, on observed days only (interpolated gap days are not truth).

- MASE: mean absolute error divided by the in-sample MAE of the seasonal naive forecast
  (m = 7) on the training part, averaged over origins (Hyndman & Koehler 2006). Below 1 a
  model beats "same weekday last week" at one step; multi-step forecasts usually score above 1.
- Coverage: the share of actual values inside the 80% and 95% intervals, pooled over origins
  and horizons. A calibrated 80% interval covers close to 80%, not "as much as possible".
- Winkler (interval) score of the 80% interval: width plus 2/alpha times any miss, scaled like
  MASE. It rewards narrow intervals and punishes misses in one number.

Choice: the lowest MASE (MAE when MASE is undefined: a series that never moved in its
training part). Coverage does not decide: the spread factor below calibrates any model's
intervals, while point accuracy cannot be repaired afterwards. The combination (mean of the
three best models by MASE) is a candidate like any other; it is built from the members'
stored forecasts, so it sees exactly the same origins. predict_linear is scored for
comparison and never chosen: it has no interval.

Spread factor: how much the 80% interval would have to be widened (>1) or narrowed (<1) to
cover 80% of the backtest's actual values. Model noise estimates on a sawtooth are rarely
right (the weekly GC is not Gaussian noise), so the chosen model's paths are scaled about
their mean by this factor: empirical prediction intervals, calibrated on the series' own
past errors. Coverage in the table is before scaling; the benchmark measures it after, on
forecasts the calibration never saw.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .models import (
    BASELINES,
    SEASON,
    Combination,
    Forecast,
    History,
    Model,
    ModelUnavailable,
    combination_name,
    combine,
)

COMBINE_TOP = 3
# Scaling outside these bounds would say more about a short backtest than about the model.
MIN_SPREAD, MAX_SPREAD = 0.25, 4.0


@dataclass(frozen=True)
class ModelScore:
    model: str
    mase: float
    mae: float
    coverage80: float          # NaN: no interval
    coverage95: float
    winkler80: float           # scaled like MASE; NaN: no interval
    spread80: float            # factor that makes the 80% interval cover 80% in the backtest; NaN: no interval
    origins: int               # origins at which the model could be fitted
    baseline: bool


@dataclass(frozen=True)
class Backtest:
    as_of: pd.Timestamp                 # last day of the history it was run on
    horizon: int
    origins: tuple[pd.Timestamp, ...]
    scores: tuple[ModelScore, ...]
    chosen: str
    reason: str
    combination_members: tuple[str, ...] = ()

    def score(self, model: str) -> ModelScore:
        for score in self.scores:
            if score.model == model:
                return score
        raise KeyError(f"{model} was not backtested; scored: {', '.join(s.model for s in self.scores)}")

    def mase_ratio(self, model: str | None = None, baseline: str = "predict_linear") -> float:
        """MASE of `model` (default: the chosen one) over that of `baseline`: the 0.7 target."""
        return self.score(model or self.chosen).mase / self.score(baseline).mase

    def table(self) -> pd.DataFrame:
        frame = pd.DataFrame([vars(score) for score in self.scores])
        frame["chosen"] = frame["model"] == self.chosen
        return frame.sort_values(["baseline", "mase"]).reset_index(drop=True)


@dataclass
class _Tally:
    """Running sums for one model over the origins."""

    mase: list[float] = field(default_factory=list)
    mae: list[float] = field(default_factory=list)
    inside80: int = 0
    inside95: int = 0
    winkler: list[float] = field(default_factory=list)
    ratios: list[np.ndarray] = field(default_factory=list)
    points: int = 0
    interval: bool = True

    def add(self, forecast: Forecast, actual: np.ndarray, observed: np.ndarray, scale: float) -> None:
        error = np.abs(forecast.mean - actual)[observed]
        if not len(error):
            return
        self.mae.append(float(error.mean()))
        self.mase.append(float(error.mean() / scale) if scale > 0 else float("nan"))
        if not forecast.has_interval:
            self.interval = False
            return
        lo80, hi80 = forecast.interval(0.8)
        lo95, hi95 = forecast.interval(0.95)
        truth = actual[observed]
        lo80, hi80, lo95, hi95 = lo80[observed], hi80[observed], lo95[observed], hi95[observed]
        self.inside80 += int(np.sum((truth >= lo80) & (truth <= hi80)))
        self.inside95 += int(np.sum((truth >= lo95) & (truth <= hi95)))
        self.points += len(truth)
        alpha = 0.2
        score = (hi80 - lo80) + (2 / alpha) * np.maximum(lo80 - truth, 0) + (2 / alpha) * np.maximum(truth - hi80, 0)
        self.winkler.append(float(score.mean() / scale) if scale > 0 else float("nan"))
        center = forecast.mean[observed]
        with np.errstate(divide="ignore", invalid="ignore"):
            # How far out each actual lies, in units of the 80% half-interval on its side.
            self.ratios.append(np.where(truth >= center, (truth - center) / (hi80 - center),
                                        (center - truth) / (center - lo80)))

    def result(self, model: str, baseline: bool) -> ModelScore:
        has_interval = self.interval and self.points > 0
        return ModelScore(
            model=model, mase=float(np.mean(self.mase)) if self.mase else float("nan"),
            mae=float(np.mean(self.mae)) if self.mae else float("nan"),
            coverage80=self.inside80 / self.points if has_interval else float("nan"),
            coverage95=self.inside95 / self.points if has_interval else float("nan"),
            winkler80=float(np.mean(self.winkler)) if has_interval and self.winkler else float("nan"),
            spread80=_spread(np.concatenate(self.ratios)) if has_interval and self.ratios else float("nan"),
            origins=len(self.mae), baseline=baseline)


def _spread(ratios: np.ndarray) -> float:
    ratios = np.nan_to_num(ratios, nan=0.0, posinf=np.inf)
    factor = float(np.quantile(ratios, 0.8))
    return float(np.clip(factor, MIN_SPREAD, MAX_SPREAD)) if np.isfinite(factor) else MAX_SPREAD


def calibrate(forecast: Forecast, factor: float) -> Forecast:
    """The forecast with its paths' deviations from the mean scaled by `factor` (see the spread factor)."""
    if not forecast.has_interval or not np.isfinite(factor) or factor == 1.0:
        return forecast
    paths = forecast.mean + factor * (forecast.paths - forecast.mean)
    note = f"intervals scaled x{factor:.2f} to the backtest's 80% coverage"
    return Forecast(forecast.model, forecast.origin, forecast.mean, paths, forecast.notes + (note,))


def seasonal_naive_scale(values: np.ndarray) -> float:
    """In-sample MAE of "same weekday last week": the MASE denominator (m = 7)."""
    if len(values) <= SEASON:
        return float("nan")
    return float(np.mean(np.abs(values[SEASON:] - values[:-SEASON])))


def origins_for(history: History, *, horizon: int, count: int, step: int, min_train: int) -> list[pd.Timestamp]:
    """The most recent `count` origins, `step` days apart, each with `horizon` days of truth after it."""
    last = len(history.y) - 1 - horizon
    positions = list(range(last, min_train - 2, -step))[:count]
    return sorted(pd.Timestamp(history.y.index[p]) for p in positions)


def rolling_origin(history: History, candidates: Sequence[Model], baselines: Sequence[Model] = BASELINES, *,
                   observed: pd.Series | None = None, horizon: int = 28, origins: int = 10, step: int = 7,
                   min_train: int = 4 * SEASON, paths: int = 500, seed: int = 0) -> Backtest:
    """Score every model at every origin, add the combination of the best, and choose."""
    cut_points = origins_for(history, horizon=horizon, count=origins, step=step, min_train=min_train)
    if not cut_points:
        raise ValueError(f"a backtest with a {horizon}-day horizon needs at least {min_train + horizon} days; "
                         f"the history has {len(history.y)}")
    y = history.values
    seen = np.ones(len(y), dtype=bool) if observed is None else observed.reindex(history.y.index,
                                                                                 fill_value=False).to_numpy()
    models = [(m, False) for m in candidates] + [(m, True) for m in baselines]
    tallies = {m.name: _Tally() for m, _ in models}
    stored: dict[str, list[Forecast]] = {m.name: [] for m, _ in models}
    truths: list[tuple[np.ndarray, np.ndarray, float]] = []
    for origin in cut_points:
        position = int(history.y.index.searchsorted(origin))
        train = history.until(origin)
        truth = (y[position + 1:position + 1 + horizon], seen[position + 1:position + 1 + horizon],
                 seasonal_naive_scale(train.values))
        truths.append(truth)
        for model, _ in models:
            forecast = _forecast_or_none(model, train, horizon, paths, seed)
            if forecast is not None:
                stored[model.name].append(forecast)
                tallies[model.name].add(forecast, *truth)
    scores = [tallies[m.name].result(m.name, baseline) for m, baseline in models]

    # Only a model that forecast every origin can be compared with the others, or chosen.
    complete = [s for s in scores if not s.baseline and len(stored[s.model]) == len(cut_points)]
    members = tuple(s.model for s in sorted(complete, key=_error_key)[:COMBINE_TOP])
    if len(members) >= 2:
        name = combination_name(members)
        tally = _Tally()
        for index, truth in enumerate(truths):
            tally.add(combine([stored[member][index] for member in members], name), *truth)
        complete.append(tally.result(name, False))
        scores.append(complete[-1])
    chosen, reason = _choose(complete)
    return Backtest(as_of=history.origin, horizon=horizon, origins=tuple(cut_points), scores=tuple(scores),
                    chosen=chosen, reason=reason, combination_members=members if len(members) >= 2 else ())


def _forecast_or_none(model: Model, history: History, horizon: int, paths: int, seed: int) -> Forecast | None:
    try:
        forecast = model.fit(history).forecast(horizon, paths=paths, seed=seed)
    except ModelUnavailable:
        return None
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        # An optimiser that fails on one origin's data disqualifies the model at that origin
        # only; the model cannot be chosen unless it forecast every origin.
        return None
    if not np.all(np.isfinite(forecast.mean)) or not np.all(np.isfinite(forecast.paths)):
        return None
    return forecast


def _error_key(score: ModelScore) -> float:
    return score.mase if np.isfinite(score.mase) else score.mae


def _choose(scores: list[ModelScore]) -> tuple[str, str]:
    if not scores:
        raise ValueError("no candidate model could be fitted at every backtest origin")
    ranked = sorted(scores, key=_error_key)
    best = ranked[0]
    measure = f"MASE {best.mase:.3f}" if np.isfinite(best.mase) else f"MAE {best.mae:.4g} (MASE undefined)"
    runner_up = f"; next {ranked[1].model} ({_error_key(ranked[1]):.3f})" if len(ranked) > 1 else ""
    return best.model, (f"lowest error ({measure}{runner_up}); its 80% intervals covered {best.coverage80:.0%} "
                        f"and are scaled x{best.spread80:.2f} to cover 80%")


def model_for(backtest: Backtest, candidates: Sequence[Model]) -> Model:
    """The Model instance behind the backtest's choice (a Combination of its members if so)."""
    by_name = {m.name: m for m in candidates}
    if backtest.chosen in by_name:
        return by_name[backtest.chosen]
    return Combination(tuple(by_name[name] for name in backtest.combination_members))
