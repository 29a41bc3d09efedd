"""The capacity-forecast benchmark (`reglife bench --stage forecast`), on data whose future is known.

1. Accuracy: a rolling-origin backtest on the sandbox's storage series (its whole timeline,
   history and future) and on each fill scenario: MASE of every model and of predict_linear,
   80%/95% coverage. Target: the chosen model's MASE at most 0.7x predict_linear's.
2. Alerts: every series replayed as the daily DAG would see it, one run every
   `check_every_days` days on the samples known that day. The first alert gives the lead
   time before the volume really filled (target: at least 14 days); any alert on a series
   that does not fill is a false alarm (target: none). kube-prometheus' rule is evaluated on
   the same samples for comparison. To keep the replay affordable, the backtest that chooses
   the model runs every `reselect_every_days` days; every run in between refits that model
   on its own day's data. With weekly checks the lead is a lower bound: a daily run alerts
   on the same day or earlier.
3. Calibration out of sample: the replayed forecasts' 80%/95% intervals against the daily
   peaks that followed (target: 80% intervals covering 75-85%). The backtest's interval
   calibration never saw these days.
4. Scale: 2,000 synthetic namespace series through the namespace model family, timed
   (target: under 2 minutes on 2 cores).

statsmodels' fits are dominated by small BLAS calls; on a small, busy machine OpenBLAS'
worker threads slow them several-fold, so the report records OPENBLAS_NUM_THREADS (set it to
1 for the workers that run the forecast).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from .backtest import Backtest, rolling_origin, seasonal_naive_scale
from .models import (
    BASELINES,
    VOLUME_CANDIDATES,
    History,
    ModelUnavailable,
    PredictLinear,
)
from .promql import kube_persistent_volume_filling_up
from .run import MIN_TRAIN_DAYS, forecast_namespaces, forecast_volume
from .scenarios import SCENARIOS
from .series import DailyStorage, daily_storage
from .settings import ForecastSettings

GIB = 2**30
SANDBOX_VOLUME = "openshift-image-registry/image-registry-storage"
#: The days of a forecast compared with what followed: the backtest's horizon.
SCORED_DAYS = 28
#: Fill scenarios are replayed over the weeks before they fill.
REPLAY_WEEKS = 9


def sandbox_storage(world) -> pd.DataFrame:
    """The sandbox's kubelet volume series (history and future) as `storage_usage` rows."""
    by_metric = {series.metric: series for series in world.storage}
    used = by_metric["kubelet_volume_stats_used_bytes"]
    capacity = by_metric["kubelet_volume_stats_capacity_bytes"]
    return pd.DataFrame({
        "ts": pd.to_datetime(used.timestamps, unit="s", utc=True).astype("datetime64[us, UTC]"),
        "volume": SANDBOX_VOLUME, "used_bytes": np.asarray(used.values, dtype=float),
        "capacity_bytes": np.asarray(capacity.values, dtype=float), "source": "sandbox"})


def synthetic_namespace_usage(count: int = 2000, days: int = 180, seed: int = 0) -> pd.DataFrame:
    """Cumulative pushed bytes of `count` namespaces: weekly rhythm, different rates, some idle or bursty."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-01-05", periods=days, freq="D")
    workday = np.where(index.weekday < 5, 1.0, 0.2)[:, None]
    rate = rng.lognormal(np.log(50 * 2**20), 1.2, size=count)[None, :]
    active = rng.random((days, count)) < rng.uniform(0.2, 1.0, size=count)[None, :]
    bursts = (rng.random((days, count)) < 0.02) * rng.lognormal(np.log(2 * GIB), 0.5, size=(days, count))
    increments = workday * rate * active * rng.gamma(2.0, 0.5, size=(days, count)) + bursts
    increments[:, rng.random(count) < 0.05] = 0.0                     # namespaces nobody pushes to
    return pd.DataFrame(increments.cumsum(axis=0), index=index,
                        columns=[f"ns-{i:04d}" for i in range(count)])


def forecast_benchmark(scale: str = "tiny", *, seed: int = 7, until: date = date(2026, 11, 27),
                       namespaces: int = 2000, scenarios: Sequence[str] | None = None,
                       check_every_days: int = 7, reselect_every_days: int = 28,
                       settings: ForecastSettings | None = None) -> dict:
    """Backtest table, alert leads and false alarms, out-of-sample coverage and timings."""
    from ..sandbox.scenario import build_world

    settings = settings or ForecastSettings()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    world = build_world(seed=seed, scale=scale, until=until)
    sandbox = sandbox_storage(world)
    timings["sandbox_build_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    whole = daily_storage(sandbox, max_gap_days=settings.max_gap_days)
    sandbox_backtest = rolling_origin(History(whole.used, whole.steps, whole.samples), VOLUME_CANDIDATES, BASELINES,
                                      observed=whole.observed, horizon=settings.backtest_horizon_days, origins=20,
                                      step=settings.backtest_step_days, min_train=MIN_TRAIN_DAYS, paths=400,
                                      seed=settings.seed)
    timings["sandbox_backtest_seconds"] = time.perf_counter() - started
    tables = [_table("sandbox", sandbox_backtest)]

    series: list[dict] = []
    started = time.perf_counter()
    sandbox_until = pd.Timestamp(until)
    series.append(_replay("sandbox", sandbox, None, settings, first=sandbox_until,
                          last=whole.used.index[-1] - pd.Timedelta(days=settings.lead_time_days),
                          check_every_days=check_every_days, reselect_every_days=reselect_every_days))
    timings["sandbox_replay_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    for name in scenarios if scenarios is not None else SCENARIOS:
        scenario = SCENARIOS[name](seed=0)
        scenario_settings = settings.model_copy(update={"capacity_bytes": scenario.capacity_bytes})
        timeline = pd.DatetimeIndex(scenario.samples["ts"]).tz_convert(None).normalize()
        if scenario.fills_at is not None:
            fill_day = scenario.fills_at.tz_convert(None).normalize()
            first = max(timeline[0] + pd.Timedelta(days=6 * 7), fill_day - pd.Timedelta(weeks=REPLAY_WEEKS))
            last = fill_day - pd.Timedelta(days=1)
        else:
            first = timeline[0] + pd.Timedelta(days=6 * 7)
            last = timeline[-1] - pd.Timedelta(days=scenario_settings.lead_time_days)
        result = _replay(name, scenario.samples, scenario.fills_at, scenario_settings, first=first, last=last,
                         check_every_days=check_every_days, reselect_every_days=reselect_every_days,
                         capacity_bytes=scenario.capacity_bytes)
        series.append(result)
        if result["backtest"] is not None:
            tables.append(_table(name, result["backtest"]))
    timings["scenarios_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    usage = synthetic_namespace_usage(namespaces, seed=seed)
    _, chosen = forecast_namespaces(usage, settings)
    namespace_seconds = time.perf_counter() - started
    timings["namespaces_seconds"] = namespace_seconds

    table = pd.concat(tables, ignore_index=True)
    return {
        "scale": scale,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        "settings": settings.model_dump(),
        "backtest": table.to_dict(orient="records"),
        "series": [{k: v for k, v in s.items() if k not in ("backtest", "_points")} for s in series],
        "summary": _summary(table, series, namespace_seconds),
        "namespaces": {"series": namespaces, "seconds": round(namespace_seconds, 2),
                       "under_2_minutes": namespace_seconds < 120,
                       "models": chosen["model"].value_counts().to_dict()},
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }


def _table(name: str, backtest: Backtest) -> pd.DataFrame:
    table = backtest.table()
    table.insert(0, "series", name)
    for baseline in ("predict_linear", "predict_linear_daily"):
        reference = backtest.score(baseline).mase
        table[f"mase_vs_{baseline}"] = table["mase"] / reference if np.isfinite(reference) and reference > 0 else np.nan
    return table


def _replay(name: str, samples: pd.DataFrame, fills_at: pd.Timestamp | None, settings: ForecastSettings, *,
            first: pd.Timestamp, last: pd.Timestamp, check_every_days: int, reselect_every_days: int,
            capacity_bytes: float | None = None) -> dict:
    """Run the forecast as of every `check_every_days`-th day and score it against what came next."""
    truth = daily_storage(samples, capacity_bytes=capacity_bytes, max_gap_days=settings.max_gap_days)
    fill_day = fills_at.tz_convert(None).normalize() if fills_at is not None else None
    backtest: Backtest | None = None
    alerts: list[date] = []
    inside80 = inside95 = points = 0
    mase_model: list[float] = []
    mase_linear: list[float] = []
    for day in pd.date_range(first, last, freq=f"{check_every_days}D"):
        daily = daily_storage(samples, until=day, capacity_bytes=capacity_bytes, max_gap_days=settings.max_gap_days)
        stale = backtest is None or (day - backtest.as_of).days >= reselect_every_days
        result = forecast_volume(daily, settings, reuse=None if stale else backtest)
        backtest = result.backtest if result.backtest is not None else backtest
        if result.outlook is not None and result.outlook.at_risk:
            alerts.append(day.date())
        if result.forecast is None:
            continue
        scored = _score(result.forecast, daily, truth, fill_day)
        if scored is None:
            continue
        inside80, inside95, points = inside80 + scored[0], inside95 + scored[1], points + scored[2]
        mase_model.append(scored[3])
        mase_linear.append(scored[4])
    raw_used = pd.Series(samples["used_bytes"].to_numpy(dtype=float), index=pd.DatetimeIndex(samples["ts"]))
    kube = kube_persistent_volume_filling_up(raw_used, _capacity_samples(samples, capacity_bytes))
    fired = kube[kube].index.tz_convert(None).normalize()
    kube_days = sorted({day.date() for day in fired if first <= day <= (fill_day if fill_day is not None else last)})
    first_alert = alerts[0] if alerts else None
    lead = (fill_day.date() - first_alert).days if fill_day is not None and first_alert else None
    kube_lead = (fill_day.date() - kube_days[0]).days if fill_day is not None and kube_days else None
    return {
        "series": name, "fills_on": fill_day.date().isoformat() if fill_day is not None else None,
        "checks": len(pd.date_range(first, last, freq=f"{check_every_days}D")),
        "first_alert": first_alert.isoformat() if first_alert else None, "alert_lead_days": lead,
        "false_alarms": 0 if fill_day is not None else len(alerts),
        "kube_first_fired": kube_days[0].isoformat() if kube_days else None, "kube_lead_days": kube_lead,
        "kube_false_alarm_days": 0 if fill_day is not None else len(kube_days),
        "coverage80": inside80 / points if points else None, "coverage95": inside95 / points if points else None,
        "scored_points": points,
        "mase": float(np.mean(mase_model)) if mase_model else None,
        "mase_predict_linear": float(np.mean(mase_linear)) if mase_linear else None,
        "model": backtest.chosen if backtest is not None else None,
        "backtest": backtest,
    }


def _capacity_samples(samples: pd.DataFrame, capacity_bytes: float | None) -> pd.Series:
    capacity = pd.Series(samples["capacity_bytes"].to_numpy(dtype=float), index=pd.DatetimeIndex(samples["ts"]))
    return capacity.fillna(capacity_bytes) if capacity_bytes is not None else capacity


def _score(forecast, daily: DailyStorage, truth: DailyStorage, fill_day: pd.Timestamp | None
           ) -> tuple[int, int, int, float, float] | None:
    """Interval hits and MASE of the forecast's first SCORED_DAYS days against the observed peaks that followed."""
    days = forecast.index[:SCORED_DAYS]
    actual = truth.used.reindex(days)
    usable = truth.observed.reindex(days, fill_value=False).to_numpy() & actual.notna().to_numpy()
    if fill_day is not None:
        usable &= (days < fill_day)         # a full volume is clipped at its capacity: no longer a forecast target
    if not usable.any():
        return None
    values = actual.to_numpy()[usable]
    lo80, hi80 = (band[:SCORED_DAYS][usable] for band in forecast.interval(0.8))
    lo95, hi95 = (band[:SCORED_DAYS][usable] for band in forecast.interval(0.95))
    scale = seasonal_naive_scale(daily.used.to_numpy())
    if not scale > 0:
        return None
    error = float(np.mean(np.abs(forecast.mean[:SCORED_DAYS][usable] - values))) / scale
    try:
        linear = PredictLinear().fit(History(daily.used, samples=daily.samples)).forecast(SCORED_DAYS)
        linear_error = float(np.mean(np.abs(linear.mean[usable] - values))) / scale
    except ModelUnavailable:
        linear_error = float("nan")
    return (int(np.sum((values >= lo80) & (values <= hi80))), int(np.sum((values >= lo95) & (values <= hi95))),
            int(usable.sum()), error, linear_error)


def _summary(table: pd.DataFrame, series: list[dict], namespace_seconds: float) -> dict:
    chosen = table[table["chosen"] & np.isfinite(table["mase_vs_predict_linear"])]
    points = sum(s["scored_points"] for s in series)
    coverage80 = sum((s["coverage80"] or 0) * s["scored_points"] for s in series) / points if points else None
    coverage95 = sum((s["coverage95"] or 0) * s["scored_points"] for s in series) / points if points else None
    leads = {s["series"]: s["alert_lead_days"] for s in series if s["fills_on"] is not None}
    replay_model = [s["mase"] for s in series if s["mase"] is not None and s["mase_predict_linear"] is not None]
    replay_linear = [s["mase_predict_linear"] for s in series if s["mase"] is not None
                     and s["mase_predict_linear"] is not None]
    false_alarms = sum(s["false_alarms"] for s in series)
    met_leads = [lead is not None and lead >= 14 for lead in leads.values()]
    return {
        "backtest_mase_ratio_vs_predict_linear": float(chosen["mase_vs_predict_linear"].mean()),
        "backtest_mase_ratio_vs_predict_linear_daily": float(chosen["mase_vs_predict_linear_daily"].mean()),
        "backtest_worst_mase_ratio_vs_predict_linear": float(chosen["mase_vs_predict_linear"].max()),
        "replay_mase": float(np.mean(replay_model)) if replay_model else None,
        "replay_mase_predict_linear": float(np.mean(replay_linear)) if replay_linear else None,
        "coverage80_out_of_sample": coverage80,
        "coverage95_out_of_sample": coverage95,
        "alert_lead_days": leads,
        "kube_alert_lead_days": {s["series"]: s["kube_lead_days"] for s in series if s["fills_on"] is not None},
        "false_alarms": false_alarms,
        "kube_false_alarm_days": sum(s["kube_false_alarm_days"] for s in series),
        "targets": {
            "mase_at_most_0.7x_predict_linear": bool((chosen["mase_vs_predict_linear"] <= 0.7).all()),
            "coverage80_within_75_85": coverage80 is not None and 0.75 <= coverage80 <= 0.85,
            "alerts_at_least_14_days_ahead": all(met_leads),
            "no_false_alarms": false_alarms == 0,
            "namespaces_under_2_minutes": namespace_seconds < 120,
        },
    }
