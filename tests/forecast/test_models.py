"""Every model behind the one interface: a mean, ordered intervals, paths, and rows of the contract."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from registry_lifecycle.forecast import scenarios
from registry_lifecycle.forecast.contracts import FORECASTS
from registry_lifecycle.forecast.models import (
    BASELINES,
    VOLUME_CANDIDATES,
    Combination,
    Constant,
    Drift,
    History,
    ModelUnavailable,
    SeasonalNaiveDrift,
    WeeklyIncrements,
)
from registry_lifecycle.forecast.series import daily_storage

GIB = 2**30


@pytest.fixture(scope="module")
def history() -> History:
    daily = daily_storage(scenarios.linear_fill().samples, until=pd.Timestamp("2026-04-30"))
    return History(daily.used, daily.steps, daily.samples)


@pytest.mark.parametrize("model", VOLUME_CANDIDATES + BASELINES, ids=lambda m: m.name)
def test_every_model_forecasts_mean_paths_and_ordered_intervals(model, history):
    forecast = model.fit(history).forecast(30, paths=300, seed=1)
    assert forecast.index[0] == history.origin + pd.Timedelta(days=1) and forecast.horizon == 30
    assert forecast.mean.shape == (30,) and np.all(np.isfinite(forecast.mean))
    if model not in BASELINES:
        # The scenario grows ~0.45 GiB a day: every candidate sees growth over a month (predict_linear,
        # looking at six quiet evening hours, need not: that is its weakness).
        assert forecast.mean[-1] > history.values[-1]
    if forecast.has_interval:
        assert forecast.paths.shape == (300, 30)
        lo95, hi95 = forecast.interval(0.95)
        lo80, hi80 = forecast.interval(0.8)
        assert np.all(lo95 <= lo80) and np.all(lo80 <= hi80) and np.all(hi80 <= hi95)
        assert np.all(hi95 - lo95 > 0)


def test_forecast_rows_follow_the_forecasts_contract(history):
    frame = SeasonalNaiveDrift().fit(history).forecast(10).to_frame("volume:x")
    assert list(frame.columns) == FORECASTS.schema.names
    assert frame["ds"].iloc[0] == (history.origin + pd.Timedelta(days=1)).date()
    point = BASELINES[0].fit(history).forecast(10).to_frame("volume:x")
    assert point[["lo80", "hi80", "lo95", "hi95"]].isna().all().all(), "predict_linear has no interval"


def test_same_seed_same_paths(history):
    fitted = WeeklyIncrements().fit(history)
    assert np.array_equal(fitted.forecast(20, seed=4).paths, fitted.forecast(20, seed=4).paths)


def test_combination_is_the_mean_of_its_members(history):
    members = (SeasonalNaiveDrift(), WeeklyIncrements())
    combined = Combination(members).fit(history).forecast(14, paths=400)
    means = [m.fit(history).forecast(14).mean for m in members]
    assert np.allclose(combined.mean, np.mean(means, axis=0))
    assert combined.paths.shape == (400, 14)
    assert combined.model == "combination(snaive_drift+weekly_increments)"


def test_seasonal_models_repeat_the_weekly_sawtooth():
    daily = daily_storage(scenarios.stable_sawtooth().samples, until=pd.Timestamp("2026-04-30"))
    forecast = WeeklyIncrements().fit(History(daily.used)).forecast(28)
    weekly_swing = np.ptp(forecast.mean[:7])
    assert weekly_swing > 5 * GIB, "the forecast keeps the GC sawtooth instead of flattening it"


def test_constant_and_drift_fallbacks():
    flat = History(pd.Series(5.0 * GIB, index=pd.date_range("2026-01-01", periods=10, freq="D")))
    constant = Constant().fit(flat).forecast(7)
    assert np.all(constant.paths == 5.0 * GIB)
    two_days = History(pd.Series([1.0, 2.0], index=pd.date_range("2026-01-01", periods=2, freq="D")))
    assert Drift().fit(two_days).forecast(3).mean.tolist() == [3.0, 4.0, 5.0]
    with pytest.raises(ModelUnavailable):
        SeasonalNaiveDrift().fit(two_days)


def test_a_history_with_gaps_is_refused():
    y = pd.Series([1.0, np.nan, 3.0], index=pd.date_range("2026-01-01", periods=3, freq="D"))
    with pytest.raises(ValueError, match="interpolate"):
        History(y)
