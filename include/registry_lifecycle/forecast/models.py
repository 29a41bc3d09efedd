"""Capacity models behind one small interface: `model.fit(history).forecast(horizon)`.

Every forecast carries simulated future paths, not only a mean and bands: "P(full by date)"
is a question about the running maximum of a path crossing the capacity line, which bands
alone cannot answer. Intervals are the paths' quantiles, so bands and probabilities always
agree.

The families, and why each is here:
- `predict_linear` (raw and daily): the anchor to beat. Reproduced as kube-prometheus
  computes it (see `promql.py`); no interval, so it is scored but never chosen.
- `snaive_drift`: seasonal naive (m = 7) plus the average growth of the last 8 weeks; the
  MASE scale and a strong simple model on weekly-rhythm data.
- `weekly_increments`: resamples whole past weeks of daily increments. A registry grows by
  pushes on workdays and shrinks at the weekly GC; a resampled week carries both, in order,
  so the sawtooth and its uncertainty come from the data itself. Cheap enough for thousands
  of namespace series.
- `ets`: ETSModel with additive error, damped additive trend and weekly season, on levels.
- `increment_ets`: ETS with weekly season on the daily increments, summed up. On real
  cumulative growth series, models of the increments do clearly better than ETS on levels.
- `stl_ets`: STL removes the weekly pattern, damped-trend ETS forecasts the rest.
- `step_uc`: UnobservedComponents (local linear trend, weekly season) with a step regressor
  per prune or clean-up, so a one-off drop moves the level instead of bending the trend.
- `combination`: the mean of several models, the M4 lesson; its paths are a mixture of the
  members' paths, so its intervals also carry the members' disagreement.
- `drift` and `constant`: fallbacks for a short history and for a series that never moves.

Models work on the series divided by its largest value: statsmodels' optimisers start from
defaults tuned for values near 1, and registry sizes are 1e10 and more.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd

from . import promql

SEASON = 7
DAY = pd.Timedelta(days=1)


class ModelUnavailable(ValueError):
    """This model cannot be fitted on this history (too short, no raw samples, ...)."""


@dataclass(frozen=True, eq=False)
class History:
    """What a model may learn from: the daily series up to the forecast origin (its last day)."""

    y: pd.Series                              # daily values, index: consecutive days, no NaN
    steps: tuple[pd.Timestamp, ...] = ()      # first days of one-off level shifts (prunes, clean-ups)
    samples: pd.Series | None = None          # raw samples up to the origin (UTC index), for predict_linear

    def __post_init__(self) -> None:
        if self.y.isna().any():
            raise ValueError("a history must not contain NaN; interpolate gaps first (series.daily_storage does)")

    @property
    def values(self) -> np.ndarray:
        return self.y.to_numpy(dtype=float)

    @property
    def origin(self) -> pd.Timestamp:
        return pd.Timestamp(self.y.index[-1])

    def until(self, day: pd.Timestamp) -> History:
        """The history as it was known at the end of `day`: what a backtest may use."""
        day = pd.Timestamp(day)
        samples = None
        if self.samples is not None:
            end = (day + DAY).tz_localize("UTC")
            samples = self.samples.iloc[:self.samples.index.searchsorted(end, side="left")]
        # Positional slicing: the backtest cuts thousands of namespace histories.
        return History(self.y.iloc[:self.y.index.searchsorted(day, side="right")],
                       tuple(s for s in self.steps if s <= day), samples)


@dataclass(frozen=True, eq=False)
class Forecast:
    """Mean, simulated paths (one row each) and the intervals they imply, for the days after the origin."""

    model: str
    origin: pd.Timestamp                  # the last day of the history; the forecast starts the day after
    mean: np.ndarray
    paths: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def horizon(self) -> int:
        return len(self.mean)

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        """The forecast days (built on demand: a backtest scores thousands of forecasts by position)."""
        return pd.date_range(self.origin + DAY, periods=self.horizon, freq="D")

    @property
    def has_interval(self) -> bool:
        """A single path is a point forecast (predict_linear): it has no interval to report."""
        return self.paths.shape[0] > 1

    @cached_property
    def _bands(self) -> np.ndarray:
        return np.quantile(self.paths, [0.025, 0.1, 0.9, 0.975], axis=0)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The central 80% or 95% interval of the paths (the two levels the contract stores)."""
        if level == 0.8:
            return self._bands[1], self._bands[2]
        if level == 0.95:
            return self._bands[0], self._bands[3]
        raise ValueError(f"intervals are kept at 80% and 95%, not {level:.0%}")

    def to_frame(self, series: str) -> pd.DataFrame:
        """Rows of the `forecasts` dataset; intervals are null for a point forecast."""
        missing = np.full(self.horizon, np.nan)
        lo80, hi80 = self.interval(0.8) if self.has_interval else (missing, missing)
        lo95, hi95 = self.interval(0.95) if self.has_interval else (missing, missing)
        return pd.DataFrame({"series": series, "ds": self.index.date, "yhat": self.mean, "lo80": lo80, "hi80": hi80,
                             "lo95": lo95, "hi95": hi95, "model": self.model})


Draw = Callable[[int, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True, eq=False)
class Fitted:
    """A model fitted on one history: its expected future and a way to draw possible futures."""

    model: str
    origin: pd.Timestamp
    expect: Callable[[int], np.ndarray]
    draw: Draw | None                     # None: a point forecast without an interval
    notes: tuple[str, ...] = ()

    def forecast(self, horizon: int, *, paths: int = 1000, seed: int = 0) -> Forecast:
        if horizon < 1:
            raise ValueError("horizon must be at least one day")
        mean = np.asarray(self.expect(horizon), dtype=float)
        if self.draw is None:
            simulated = mean[np.newaxis, :]
        else:
            simulated = np.asarray(self.draw(horizon, paths, np.random.default_rng(seed)), dtype=float)
        return Forecast(self.model, self.origin, mean, simulated, self.notes)


class Model(Protocol):
    name: str

    def fit(self, history: History) -> Fitted: ...


def _unit(values: np.ndarray) -> float:
    return max(float(np.max(np.abs(values))), 1.0)


@contextmanager
def _fit_notes(notes: list[str]) -> Iterator[None]:
    """Turn statsmodels' convergence warnings into notes on the forecast.

    They say the optimiser stopped at its iteration limit; the parameters are still usable
    and the backtest judges the model by its forecasts, so the warning belongs with the
    forecast, not in the task log. Every other warning passes through unchanged.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            notes.append(f"optimiser did not fully converge: {str(warning.message).splitlines()[0]}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _seasonal_positions(horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """For days 1..h ahead: how many seasons back the same weekday is, and the weekday lane."""
    ahead = np.arange(1, horizon + 1)
    return np.ceil(ahead / SEASON).astype(int), (ahead - 1) % SEASON


# ------------------------------------------------------------------------------ baselines
@dataclass(frozen=True)
class PredictLinear:
    """kube-prometheus' `predict_linear(used[6h], d)` at the origin's last sample, d = 1..h days.

    The forecast for day T+i is the line through the last 6 hours of raw samples, evaluated
    i days after the last sample of day T (the instant the daily run evaluates it).
    """

    name: str = "predict_linear"

    def fit(self, history: History) -> Fitted:
        samples = history.samples
        if samples is None or samples.dropna().empty:
            raise ModelUnavailable("predict_linear needs the raw samples")
        at = samples.dropna().index[-1]
        now = promql.predict_linear(samples, at, 0.0)
        one_day = promql.predict_linear(samples, at, DAY)
        if math.isnan(now):
            raise ModelUnavailable("fewer than two samples in the last 6 hours")
        slope = one_day - now
        return Fitted(self.name, history.origin, lambda h: now + slope * np.arange(1, h + 1), None)


@dataclass(frozen=True)
class PredictLinearDaily:
    """The same rule on the daily series: a least-squares line through the last 6 daily peaks.

    This is the "6-sample predict_linear" of the design notes, the fair daily-step reading of
    the rule when only daily values exist.
    """

    samples: int = 6
    name: str = "predict_linear_daily"

    def fit(self, history: History) -> Fitted:
        y = history.values[-self.samples:]
        if len(y) < 2:
            raise ModelUnavailable("predict_linear_daily needs two days")
        x = np.arange(len(y), dtype=float) - (len(y) - 1)
        slope, intercept = np.polyfit(x, y, 1)
        return Fitted(self.name, history.origin, lambda h: intercept + slope * np.arange(1, h + 1), None)


# ------------------------------------------------------------------------------ simple models
@dataclass(frozen=True)
class SeasonalNaiveDrift:
    """Last week's value for the same weekday, plus the average daily growth of the last 8 weeks.

    Paths add bootstrapped one-season errors per weekday lane, so uncertainty grows with the
    number of weeks ahead, as a seasonal random walk's does.
    """

    window_days: int = 56
    name: str = "snaive_drift"

    def fit(self, history: History) -> Fitted:
        y = history.values
        n = len(y)
        window = min(self.window_days, SEASON * ((n - 1 - SEASON) // SEASON))
        if window < SEASON:
            raise ModelUnavailable(f"snaive_drift needs at least {2 * SEASON + 1} days")
        drift = (y[-1] - y[-1 - window]) / window
        residuals = (y[SEASON:] - y[:-SEASON] - SEASON * drift)[-window:]

        def expect(horizon: int) -> np.ndarray:
            seasons, _ = _seasonal_positions(horizon)
            ahead = np.arange(1, horizon + 1)
            return y[n - 1 + ahead - SEASON * seasons] + drift * SEASON * seasons

        def draw(horizon: int, count: int, rng: np.random.Generator) -> np.ndarray:
            seasons, lanes = _seasonal_positions(horizon)
            shocks = rng.choice(residuals, size=(count, int(seasons.max()), SEASON)).cumsum(axis=1)
            return expect(horizon) + shocks[:, seasons - 1, lanes]

        return Fitted(self.name, history.origin, expect, draw)


@dataclass(frozen=True)
class WeeklyIncrements:
    """The future as a sequence of past weeks: daily increments of a randomly drawn recent week,
    aligned by weekday, added up from the last value."""

    weeks: int = 8
    name: str = "weekly_increments"

    def fit(self, history: History) -> Fitted:
        y = history.values
        increments = np.diff(y)
        weeks = min(self.weeks, len(increments) // SEASON)
        if weeks < 2:
            raise ModelUnavailable(f"weekly_increments needs at least {2 * SEASON + 1} days")
        blocks = increments[len(increments) - weeks * SEASON:].reshape(weeks, SEASON)
        profile = blocks.mean(axis=0)
        last = y[-1]

        def expect(horizon: int) -> np.ndarray:
            return last + np.cumsum(np.resize(profile, horizon))

        def draw(horizon: int, count: int, rng: np.random.Generator) -> np.ndarray:
            chosen = rng.integers(0, weeks, size=(count, -(-horizon // SEASON)))
            return last + blocks[chosen].reshape(count, -1)[:, :horizon].cumsum(axis=1)

        return Fitted(self.name, history.origin, expect, draw)


@dataclass(frozen=True)
class Drift:
    """Random walk with drift from bootstrapped daily increments: the short-history fallback.

    It assumes nothing about weeks or trends beyond the average increment, and its intervals
    widen with the square root of the horizon: honest about how little a few days can tell.
    """

    name: str = "drift"

    def fit(self, history: History) -> Fitted:
        y = history.values
        if len(y) < 2:
            raise ModelUnavailable("drift needs two days")
        increments = np.diff(y)
        drift, last = increments.mean(), y[-1]
        return Fitted(self.name, history.origin, lambda h: last + drift * np.arange(1, h + 1),
                      lambda h, count, rng: last + rng.choice(increments, size=(count, h)).cumsum(axis=1))


@dataclass(frozen=True)
class Constant:
    """A series that has never moved stays where it is: zero-width intervals, said plainly."""

    name: str = "constant"

    def fit(self, history: History) -> Fitted:
        last = history.values[-1]
        return Fitted(self.name, history.origin, lambda h: np.full(h, last),
                      lambda h, count, rng: np.full((count, h), last))


# ------------------------------------------------------------------------------ statsmodels
@dataclass(frozen=True)
class ETS:
    """ETSModel: additive error, damped additive trend, additive weekly season, on levels."""

    name: str = "ets"

    def fit(self, history: History) -> Fitted:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        y = history.values
        if len(y) < 3 * SEASON:
            raise ModelUnavailable(f"ets needs at least {3 * SEASON} days")
        unit, notes = _unit(y), []
        with _fit_notes(notes):
            result = ETSModel(y / unit, error="add", trend="add", damped_trend=True, seasonal="add",
                              seasonal_periods=SEASON).fit(disp=False)
        return Fitted(self.name, history.origin, lambda h: np.asarray(result.forecast(h)) * unit,
                      lambda h, count, rng: _simulated(result.simulate(h, anchor="end", repetitions=count, rng=rng),
                                                       h, count) * unit, tuple(notes))


@dataclass(frozen=True)
class IncrementETS:
    """ETS with additive weekly season on the daily increments, added up from the last value."""

    name: str = "increment_ets"

    def fit(self, history: History) -> Fitted:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        y = history.values
        if len(y) < 3 * SEASON:
            raise ModelUnavailable(f"increment_ets needs at least {3 * SEASON} days")
        increments = np.diff(y)
        unit, last, notes = _unit(increments), y[-1], []
        with _fit_notes(notes):
            result = ETSModel(increments / unit, error="add", seasonal="add", seasonal_periods=SEASON).fit(disp=False)

        def draw(horizon: int, count: int, rng: np.random.Generator) -> np.ndarray:
            steps = _simulated(result.simulate(horizon, anchor="end", repetitions=count, rng=rng), horizon, count)
            return last + steps.cumsum(axis=1) * unit

        return Fitted(self.name, history.origin, lambda h: last + np.cumsum(result.forecast(h)) * unit, draw,
                      tuple(notes))


@dataclass(frozen=True)
class STLETS:
    """STL (period 7, robust) takes out the weekly pattern; damped-trend ETS forecasts the rest,
    and the last week's seasonal pattern is added back (statsmodels' STLForecast, with paths)."""

    name: str = "stl_ets"

    def fit(self, history: History) -> Fitted:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel
        from statsmodels.tsa.seasonal import STL

        y = history.values
        if len(y) < 3 * SEASON:
            raise ModelUnavailable(f"stl_ets needs at least {3 * SEASON} days")
        unit, notes = _unit(y), []
        seasonal = np.asarray(STL(y / unit, period=SEASON, robust=True).fit().seasonal)
        last_week = seasonal[-SEASON:]
        with _fit_notes(notes):
            result = ETSModel(y / unit - seasonal, error="add", trend="add", damped_trend=True).fit(disp=False)

        def expect(horizon: int) -> np.ndarray:
            return (np.asarray(result.forecast(horizon)) + np.resize(last_week, horizon)) * unit

        def draw(horizon: int, count: int, rng: np.random.Generator) -> np.ndarray:
            simulated = _simulated(result.simulate(horizon, anchor="end", repetitions=count, rng=rng), horizon, count)
            return (simulated + np.resize(last_week, horizon)) * unit

        return Fitted(self.name, history.origin, expect, draw, tuple(notes))


@dataclass(frozen=True)
class StepUC:
    """UnobservedComponents: local linear trend + weekly season + a step per prune or clean-up.

    A step regressor is 0 before the shift and 1 from its first day on, and stays 1 in the
    future: the freed space stays freed. Steps too close to either end of the history cannot
    be told apart from the trend and are left to the level.
    """

    name: str = "step_uc"
    margin_days: int = 3

    def fit(self, history: History) -> Fitted:
        from statsmodels.tsa.statespace.structural import UnobservedComponents

        y = history.values
        if len(y) < 3 * SEASON:
            raise ModelUnavailable(f"step_uc needs at least {3 * SEASON} days")
        positions = sorted({int(history.y.index.get_indexer([step])[0]) for step in history.steps})
        positions = [p for p in positions if self.margin_days <= p <= len(y) - self.margin_days]
        exog = None
        if positions:
            exog = np.zeros((len(y), len(positions)))
            for column, position in enumerate(positions):
                exog[position:, column] = 1.0
        unit, notes = _unit(y), []
        with _fit_notes(notes):
            result = UnobservedComponents(y / unit, level="local linear trend", seasonal=SEASON,
                                          exog=exog).fit(disp=False)

        def future(horizon: int) -> np.ndarray | None:
            return None if exog is None else np.ones((horizon, exog.shape[1]))

        def draw(horizon: int, count: int, rng: np.random.Generator) -> np.ndarray:
            simulated = result.simulate(horizon, anchor="end", repetitions=count, exog=future(horizon), rng=rng)
            return _simulated(simulated, horizon, count) * unit

        return Fitted(self.name, history.origin, lambda h: np.asarray(result.forecast(h, exog=future(h))) * unit,
                      draw, tuple(notes) + ((f"{len(positions)} step intervention(s)",) if positions else ()))


def _simulated(values: object, horizon: int, count: int) -> np.ndarray:
    """statsmodels returns (horizon,), (horizon, count) or (horizon, 1, count): always (count, horizon)."""
    return np.asarray(values, dtype=float).reshape(horizon, count).T


# ------------------------------------------------------------------------------ combination
def combine(forecasts: Sequence[Forecast], name: str) -> Forecast:
    """The mean of the members' means; paths are an equal-share mixture of the members' paths."""
    share = min(f.paths.shape[0] for f in forecasts) // len(forecasts)
    paths = np.concatenate([f.paths[:max(share, 1)] for f in forecasts])
    mean = np.mean([f.mean for f in forecasts], axis=0)
    notes = tuple(note for f in forecasts for note in f.notes)
    return Forecast(name, forecasts[0].origin, mean, paths, notes)


@dataclass(frozen=True)
class Combination:
    """The mean of several models (the M4 lesson): no single model's mistake dominates."""

    members: tuple[Model, ...]

    @property
    def name(self) -> str:
        return combination_name([m.name for m in self.members])

    def fit(self, history: History) -> Fitted:
        fitted = [member.fit(history) for member in self.members]
        name = self.name

        def draw(horizon: int, count: int, rng: np.random.Generator) -> np.ndarray:
            seeds = rng.integers(0, 2**32, size=len(fitted))
            members = [f.forecast(horizon, paths=count, seed=int(s)) for f, s in zip(fitted, seeds)]
            return combine(members, name).paths

        return Fitted(name, history.origin, lambda h: np.mean([f.expect(h) for f in fitted], axis=0), draw,
                      tuple(note for f in fitted for note in f.notes))


def combination_name(members: Sequence[str]) -> str:
    """Members in name order: the mean does not depend on their order, so neither does the name."""
    return "combination(" + "+".join(sorted(members)) + ")"


#: Models the backtest may choose for a registry volume.
VOLUME_CANDIDATES: tuple[Model, ...] = (SeasonalNaiveDrift(), WeeklyIncrements(), ETS(), IncrementETS(), STLETS(),
                                        StepUC())
#: The anchors every candidate is compared with; never chosen (no interval).
BASELINES: tuple[Model, ...] = (PredictLinear(), PredictLinearDaily())
#: Cheap models for thousands of namespace series: numpy only, no optimiser.
NAMESPACE_CANDIDATES: tuple[Model, ...] = (SeasonalNaiveDrift(), WeeklyIncrements(), Drift())
