"""predict_linear and KubePersistentVolumeFillingUp exactly as Prometheus and kube-prometheus compute them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from registry_lifecycle.forecast import scenarios
from registry_lifecycle.forecast.models import History, PredictLinear
from registry_lifecycle.forecast.promql import (
    kube_persistent_volume_filling_up,
    predict_linear,
    rolling_predict_linear,
)


def _samples(values: list[float], start: str = "2026-03-01 18:00") -> pd.Series:
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="5min", tz="UTC"), dtype=float)


def test_predict_linear_is_the_least_squares_line_of_the_last_six_hours_extrapolated():
    rng = np.random.default_rng(3)
    samples = _samples(list(1e9 + np.cumsum(rng.normal(2e6, 5e6, size=100))))
    at = samples.index[-1]
    window = samples[samples.index > at - pd.Timedelta(hours=6)]
    assert len(window) == 72, "a 6h range over 5-minute samples, left-open, holds 72 samples"
    # By hand: y = a + b*x with x in seconds from the evaluation instant, solved by least squares.
    x = (window.index - at).total_seconds().to_numpy()
    design = np.column_stack([np.ones_like(x), x])
    (intercept, slope), *_ = np.linalg.lstsq(design, window.to_numpy(), rcond=None)
    four_days = 4 * 24 * 3600
    assert predict_linear(samples, at, four_days) == pytest.approx(intercept + slope * four_days, rel=1e-12)
    assert predict_linear(samples, at, pd.Timedelta(days=4)) == pytest.approx(intercept + slope * four_days,
                                                                               rel=1e-12)


def test_predict_linear_range_is_left_open_and_needs_two_samples():
    samples = _samples([0.0] * 10 + [100.0], start="2026-03-01 00:00")
    at = samples.index[-1]
    # A range of exactly 10 minutes holds the samples at at-5m and at, not the one at at-10m.
    assert predict_linear(samples, at, 0.0, window=pd.Timedelta(minutes=10)) == pytest.approx(100.0)
    assert np.isnan(predict_linear(samples, at, 0.0, window=pd.Timedelta(minutes=5)))


def test_predict_linear_of_a_constant_is_the_constant():
    samples = _samples([7.0] * 80)
    assert predict_linear(samples, samples.index[-1], 86400 * 30) == 7.0


def test_rolling_evaluation_matches_pointwise_predict_linear():
    rng = np.random.default_rng(5)
    samples = _samples(list(5e10 + np.cumsum(rng.normal(1e6, 2e7, size=400))))
    rolling = rolling_predict_linear(samples, pd.Timedelta(days=4))
    for at in samples.index[[1, 50, 71, 72, 200, 399]]:
        assert rolling[at] == pytest.approx(predict_linear(samples, at, pd.Timedelta(days=4)), rel=1e-9)


def test_predict_linear_model_forecasts_day_i_as_the_rule_would_at_the_origin():
    scenario = scenarios.linear_fill()
    samples = scenario.samples.set_index("ts")["used_bytes"]
    samples = samples[samples.index < pd.Timestamp("2026-03-01", tz="UTC")]
    daily = samples.groupby(samples.index.tz_convert(None).normalize()).max()
    daily.index.freq = "D"
    forecast = PredictLinear().fit(History(daily, samples=samples)).forecast(5)
    at = samples.index[-1]
    for day in range(1, 6):
        assert forecast.mean[day - 1] == pytest.approx(predict_linear(samples, at, pd.Timedelta(days=day)), rel=1e-9)
    assert not forecast.has_interval


def test_kube_rule_fires_falsely_on_a_stable_sawtooth():
    """The false alarm this project fixes: a volume that never fills, flagged week after week."""
    scenario = scenarios.stable_sawtooth()
    assert scenario.fills_at is None
    frame = scenario.samples.set_index("ts")
    fired = kube_persistent_volume_filling_up(frame["used_bytes"], frame["capacity_bytes"])
    assert fired.any()
    assert len(set(fired[fired].index.date)) >= 3


def test_kube_rule_needs_less_than_15_percent_free_and_an_hour_of_it():
    index = pd.date_range("2026-03-01", periods=24 * 12, freq="5min", tz="UTC")
    capacity = pd.Series(100.0, index=index)
    rising = pd.Series(np.linspace(70, 95, len(index)), index=index)
    fired = kube_persistent_volume_filling_up(rising, capacity)
    first = fired[fired].index[0]
    crossed = rising[rising > 85].index[0]
    assert first >= crossed + pd.Timedelta(hours=1)
    assert not fired[:crossed].any()
