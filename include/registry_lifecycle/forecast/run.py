"""One forecast run: every volume and namespace of a day, from frames or from the lake.

What `reglife forecast` and the registry_capacity_forecast DAG call. For each volume: daily
peaks, then the model the backtest chooses (or a stated fallback), a forecast with paths, and
the capacity outlook. For each namespace: its cumulative pushed bytes with a cheap model, to
show who drives the growth.

Fallbacks are never silent: a history shorter than the policy's minimum gets a random walk
with drift, one too short for a backtest of at least three origins gets resampled recent
weeks without calibration, a series that never moved gets the constant model; each says so,
and the reason travels with the result into the alert and the UI.

A backfill is the same run for past days: the forecast for day D reads storage samples up to
the end of D only, and the newest images snapshot on or before D, so it is what a run on D
would have computed (snapshots cannot be re-extracted; a day before the first snapshot gets
no namespace forecasts, and says so).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from ..datasets import ALL
from ..lake import Lake, LakeNotFound
from . import alert, capacity, chart
from .backtest import Backtest, calibrate, model_for, rolling_origin
from .capacity import CapacityOutlook
from .contracts import CAPACITY_ALERTS, FORECASTS
from .models import (
    BASELINES,
    NAMESPACE_CANDIDATES,
    SEASON,
    VOLUME_CANDIDATES,
    Constant,
    Drift,
    Forecast,
    History,
    Model,
    WeeklyIncrements,
)
from .series import (
    DailyStorage,
    daily_storage,
    growth_drivers,
    namespace_growth,
    namespace_usage,
    volumes,
)
from .settings import ForecastSettings

log = logging.getLogger(__name__)

#: Namespace series are many and cheap: fewer paths and origins than a volume gets.
NAMESPACE_PATHS = 200
NAMESPACE_ORIGINS = 3
NAMESPACE_BACKTEST_HORIZON = 14
#: Training data of a backtest origin: ETS with a weekly season fitted on three weeks is mostly
#: noise, and errors measured on such fits would inflate every calibrated interval.
MIN_TRAIN_DAYS = 5 * SEASON
#: Fewer origins, or a shorter horizon, tell too little to choose a model or calibrate it.
MIN_ORIGINS = 3
MIN_BACKTEST_HORIZON = 2 * SEASON
#: Enough paths for 80%/95% quantiles at each backtest origin; the final forecast gets the policy's.
BACKTEST_PATHS = 400


@dataclass(frozen=True)
class VolumeForecast:
    series: str
    daily: DailyStorage
    forecast: Forecast | None          # None: too little data to forecast anything
    backtest: Backtest | None          # None: a fallback was used
    outlook: CapacityOutlook | None
    reason: str                        # why this model, in words

    def chart(self) -> bytes:
        if self.forecast is None:
            raise ValueError(f"{self.series}: no forecast to draw ({self.reason})")
        return chart.render(self.daily, self.forecast, self.outlook)

    def as_dict(self) -> dict:
        """A JSON-ready summary (for `reglife forecast --json`, XCom and the UI)."""
        outlook = self.outlook
        summary: dict = {"series": self.series, "model": self.forecast.model if self.forecast else None,
                         "reason": self.reason, "notes": list(self.forecast.notes) if self.forecast else []}
        if outlook is not None:
            days = outlook.days_to_full
            summary.update({
                "as_of": outlook.as_of.isoformat(), "used_bytes": outlook.used_bytes,
                "capacity_bytes": outlook.capacity_bytes, "p_full_within_lead": outlook.p_full_within_lead,
                "lead_time_days": outlook.lead_time_days, "at_risk": outlook.at_risk,
                "crosses_10": outlook.crosses_10.isoformat() if outlook.crosses_10 else None,
                "crosses_50": outlook.crosses_50.isoformat() if outlook.crosses_50 else None,
                "days_to_full": {"median": days.median, "lo80": days.lo80, "hi80": days.hi80},
                "fingerprint": outlook.fingerprint.to_dict() if outlook.fingerprint else None,
                "summary": outlook.summary})
        if self.backtest is not None:
            table = self.backtest.table().replace({np.nan: None})
            summary["backtest"] = {"horizon_days": self.backtest.horizon, "origins": len(self.backtest.origins),
                                   "chosen": self.backtest.chosen, "scores": table.to_dict(orient="records")}
        return summary


@dataclass(frozen=True)
class NamespaceForecasts:
    forecasts: pd.DataFrame            # rows of the forecasts dataset, series "namespace:<name>"
    models: pd.DataFrame               # namespace, model, mase, reason
    drivers: pd.DataFrame              # namespace, added_bytes, share over the last 30 days


@dataclass(frozen=True)
class ForecastRun:
    day: date
    volumes: tuple[VolumeForecast, ...]
    namespaces: NamespaceForecasts | None
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """A JSON-ready summary of the run: each volume's outlook and the top growth drivers."""
        drivers = [] if self.namespaces is None else self.namespaces.drivers.head(10).to_dict(orient="records")
        return {"day": self.day.isoformat(), "volumes": [v.as_dict() for v in self.volumes],
                "growth_drivers": drivers, "notes": list(self.notes)}

    def forecasts(self) -> pd.DataFrame:
        """Every row this run contributes to the `forecasts` dataset."""
        frames = [v.forecast.to_frame(v.series) for v in self.volumes if v.forecast is not None]
        if self.namespaces is not None:
            frames.append(self.namespaces.forecasts)
        if not frames:
            return FORECASTS.schema.empty_table().to_pandas()
        return pd.concat(frames, ignore_index=True)


def volume_series(volume: str) -> str:
    return f"volume:{volume}"


def namespace_series(namespace: str) -> str:
    return f"namespace:{namespace}"


def is_constant(values: np.ndarray) -> bool:
    return bool(np.ptp(values) <= 1e-9 * max(float(np.max(np.abs(values))), 1.0))


def forecast_volume(daily: DailyStorage, settings: ForecastSettings | None = None, *,
                    candidates: Sequence[Model] = VOLUME_CANDIDATES, baselines: Sequence[Model] = BASELINES,
                    reuse: Backtest | None = None) -> VolumeForecast:
    """Choose, fit and forecast one volume, and say how likely it is to fill.

    `reuse` takes a recent backtest's choice and interval calibration instead of running a
    new backtest (the model is still refitted on today's data): for callers that reselect
    models less often than they forecast, such as the benchmark's day-by-day replay.
    """
    settings = settings or ForecastSettings()
    series = volume_series(daily.volume)
    history = History(daily.used, daily.steps, daily.samples)
    days = len(history.y)
    repaired = f" ({'; '.join(daily.notes)})" if daily.notes else ""
    if days < 2:
        return VolumeForecast(series, daily, None, None, None,
                              f"only {days} day of samples: nothing to forecast yet{repaired}")
    backtest: Backtest | None = None
    backtest_needs = MIN_TRAIN_DAYS + MIN_BACKTEST_HORIZON + (MIN_ORIGINS - 1) * settings.backtest_step_days
    backtest_horizon = min(settings.backtest_horizon_days,
                           days - MIN_TRAIN_DAYS - (MIN_ORIGINS - 1) * settings.backtest_step_days)
    if is_constant(history.values):
        model: Model = Constant()
        reason = f"the series has not moved in {days} days: constant forecast"
    elif days < settings.min_history_days:
        model = Drift()
        reason = (f"short history ({days} days, the policy asks for {settings.min_history_days}): "
                  "random walk with drift, wide intervals")
    elif backtest_horizon < MIN_BACKTEST_HORIZON:
        model = WeeklyIncrements()
        reason = (f"history too short to backtest ({days} days, a backtest needs {backtest_needs}): "
                  "recent weeks resampled, intervals not calibrated")
    elif reuse is not None:
        backtest = reuse
        model = model_for(backtest, candidates)
        reason = f"chosen by the {len(backtest.origins)}-origin backtest of {backtest.as_of.date()}: {backtest.reason}"
    else:
        backtest = rolling_origin(history, candidates, baselines, observed=daily.observed, horizon=backtest_horizon,
                                  origins=settings.backtest_origins, step=settings.backtest_step_days,
                                  min_train=MIN_TRAIN_DAYS, paths=BACKTEST_PATHS, seed=settings.seed)
        model = model_for(backtest, candidates)
        reason = f"chosen by a {len(backtest.origins)}-origin backtest: {backtest.reason}"
    forecast = model.fit(history).forecast(settings.horizon_days, paths=settings.paths, seed=settings.seed)
    if backtest is not None:
        forecast = calibrate(forecast, backtest.score(backtest.chosen).spread80)
    outlook = capacity.outlook(forecast, series=series, capacity_bytes=daily.capacity_now,
                               used_bytes=float(history.values[-1]), settings=settings)
    return VolumeForecast(series, daily, forecast, backtest, outlook, reason + repaired)


def forecast_namespaces(usage: pd.DataFrame, settings: ForecastSettings | None = None, *,
                        candidates: Sequence[Model] = NAMESPACE_CANDIDATES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Forecast rows and the chosen model per namespace, for cumulative bytes per namespace (days x namespaces).

    Each namespace gets a short backtest among numpy-only models: thousands of namespaces
    must fit in the time one volume's statsmodels backtest takes. A namespace's history
    starts at its first push.
    """
    settings = settings or ForecastSettings()
    horizon = settings.horizon_days
    values = usage.to_numpy(dtype=float)
    bands: list[np.ndarray] = []
    chosen: list[dict] = []
    for column, namespace in enumerate(usage.columns):
        series = values[:, column]
        first = int(np.argmax(series != 0)) if np.any(series != 0) else len(series) - 1
        history = History(pd.Series(series[first:], index=usage.index[first:]))
        mase = float("nan")
        if len(history.y) < 2 or is_constant(history.values):
            model: Model = Constant()
            reason = "no growth"
        elif len(history.y) < max(settings.min_history_days,
                                  MIN_TRAIN_DAYS + NAMESPACE_BACKTEST_HORIZON + (NAMESPACE_ORIGINS - 1) * SEASON):
            model, reason = Drift(), "short history"
        else:
            backtest = rolling_origin(history, candidates, (), horizon=NAMESPACE_BACKTEST_HORIZON,
                                      origins=NAMESPACE_ORIGINS, step=SEASON, min_train=MIN_TRAIN_DAYS,
                                      paths=NAMESPACE_PATHS, seed=settings.seed)
            model, reason = model_for(backtest, candidates), "backtest"
            mase = backtest.score(backtest.chosen).mase
        forecast = model.fit(history).forecast(horizon, paths=NAMESPACE_PATHS, seed=settings.seed)
        bands.append(np.vstack([forecast.mean, *forecast.interval(0.8), *forecast.interval(0.95)]))
        chosen.append({"namespace": namespace, "model": forecast.model, "mase": mase, "reason": reason})
    models = pd.DataFrame(chosen, columns=["namespace", "model", "mase", "reason"])
    if not bands:
        return FORECASTS.schema.empty_table().to_pandas(), models
    stacked = np.stack(bands)                      # namespaces x (mean, lo80, hi80, lo95, hi95) x days
    days = pd.date_range(usage.index[-1] + pd.Timedelta(days=1), periods=horizon, freq="D").date
    forecasts = pd.DataFrame({
        "series": np.repeat([namespace_series(str(n)) for n in usage.columns], horizon),
        "ds": np.tile(days, len(usage.columns)),
        **{name: stacked[:, row].ravel() for row, name in enumerate(("yhat", "lo80", "hi80", "lo95", "hi95"))},
        "model": np.repeat(models["model"].to_numpy(), horizon),
    })
    return forecasts, models


def forecast_day(lake: Lake, day: date, settings: ForecastSettings | None = None, *,
                 history_days: int = 365, namespaces: bool = True,
                 candidates: Sequence[Model] = VOLUME_CANDIDATES) -> ForecastRun:
    """The forecast run of `day` from what the lake knew at the end of that day."""
    settings = settings or ForecastSettings()
    storage = lake.read_range("storage_usage", day - timedelta(days=history_days), day)
    pruned = _audit_times(lake, day - timedelta(days=history_days), day)
    results = []
    for volume in volumes(storage):
        daily = daily_storage(storage, volume, until=pd.Timestamp(day), capacity_bytes=settings.capacity_bytes,
                              max_gap_days=settings.max_gap_days, audit_events=pruned)
        result = forecast_volume(daily, settings, candidates=candidates)
        log.info("%s: %s", result.series, result.outlook.summary if result.outlook else result.reason)
        results.append(result)
    notes: list[str] = []
    namespace_result = None
    if namespaces:
        try:
            snapshot = lake.latest_day("images", on_or_before=day)
            images, layers = lake.read("images", snapshot), lake.read("layers", snapshot)
        except LakeNotFound as missing:
            notes.append(f"no namespace forecasts: {missing}")
        else:
            if snapshot != day:
                notes.append(f"namespace growth from the images snapshot of {snapshot.isoformat()} "
                             f"(none was taken on {day.isoformat()})")
            growth = namespace_growth(images, layers)
            usage = namespace_usage(growth, until=pd.Timestamp(day))
            rows, models = forecast_namespaces(usage, settings)
            namespace_result = NamespaceForecasts(rows, models, growth_drivers(growth, as_of=pd.Timestamp(day)))
    return ForecastRun(day, tuple(results), namespace_result, tuple(notes))


def _audit_times(lake: Lake, first: date, last: date) -> tuple[pd.Timestamp, ...]:
    """When this project's GC executed deletions (gc_audit), if that log exists yet."""
    audit = ALL.get("gc_audit")
    if audit is None or "executed_at" not in audit.schema.names:
        return ()
    try:
        executed = lake.read_range(audit, first, last, columns=["executed_at"])["executed_at"].dropna()
    except LakeNotFound:
        return ()
    return tuple(pd.Timestamp(at) for at in executed.sort_values().unique())


def publish(lake: Lake, run: ForecastRun, run_id: str, *, top_namespaces: int = 5) -> int:
    """Write the run's forecasts and its alert candidates (capacity_alerts) to the lake and
    commit them together; returns the forecast row count."""
    with lake.run(run.day, run_id) as lake_run:
        result = lake_run.write(FORECASTS, run.forecasts())
        lake_run.write(CAPACITY_ALERTS, alert.candidate_frame(alert.candidates(run, top_namespaces=top_namespaces)))
    return result.rows


def backfill(lake: Lake, first: date, last: date, settings: ForecastSettings | None = None, *,
             run_id_prefix: str = "backfill", candidates: Sequence[Model] = VOLUME_CANDIDATES) -> list[ForecastRun]:
    """Recompute and publish the forecasts of every day from `first` to `last` from stored data.

    Alert candidates are recomputed too, but nothing is sent: a backfill tells what a run
    would have said then, not news for today.
    """
    settings = settings or ForecastSettings()
    runs = []
    day = first
    while day <= last:
        run = forecast_day(lake, day, settings, candidates=candidates)
        publish(lake, run, f"{run_id_prefix}__{day.isoformat()}", top_namespaces=settings.alerts.top_namespaces)
        runs.append(run)
        day += timedelta(days=1)
    return runs
