"""P(full by date), days to full, and alerts that come early, only when warranted, and not twice."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from registry_lifecycle.forecast import scenarios
from registry_lifecycle.forecast.capacity import (
    AlertFingerprint,
    days_to_full,
    fingerprint_to_keep,
    outlook,
    p_full_by_day,
    should_alert,
)
from registry_lifecycle.forecast.models import Forecast
from registry_lifecycle.forecast.run import forecast_volume
from registry_lifecycle.forecast.series import daily_storage
from registry_lifecycle.forecast.settings import ForecastSettings

GIB = 2**30


def _forecast(paths: np.ndarray, start: str = "2026-06-01") -> Forecast:
    return Forecast("test", pd.Timestamp(start) - pd.Timedelta(days=1), paths.mean(axis=0), paths)


def _ramp_paths(slopes: np.ndarray, days: int = 90, start_bytes: float = 50 * GIB) -> np.ndarray:
    return start_bytes + np.outer(slopes, np.arange(1, days + 1))


def test_p_full_only_grows_with_time_even_when_paths_come_back_down():
    """A path that touched the capacity once refused a push, whatever a later GC frees."""
    rng = np.random.default_rng(0)
    sawtooth = np.tile([0, 3, 6, 9, 12, -20, -10], 13)[:90] * GIB
    paths = _ramp_paths(rng.normal(0.5 * GIB, 0.1 * GIB, size=500)) + sawtooth
    probability = p_full_by_day(_forecast(paths), 100 * GIB, used_bytes=50 * GIB)
    assert probability.is_monotonic_increasing
    assert probability.iloc[0] == 0 and probability.iloc[-1] > 0.5
    crossed_once = (paths >= 100 * GIB).any(axis=1).mean()
    assert probability.iloc[-1] == pytest.approx(crossed_once)
    assert probability.iloc[-1] > (paths[:, -1] >= 100 * GIB).mean(), "the last day alone would understate it"


def test_days_to_full_and_crossing_dates():
    paths = _ramp_paths(np.linspace(0.3, 2.0, 1000) * GIB)          # full after 25 to 167 days
    forecast = _forecast(paths)
    days = days_to_full(forecast, 100 * GIB, 50 * GIB)
    assert days.lo80 is not None and days.median is not None
    assert days.lo80 < days.median and days.hi80 is None, "the slowest 10% do not fill within 90 days"
    result = outlook(forecast, series="volume:x", capacity_bytes=100 * GIB, used_bytes=50 * GIB,
                     settings=ForecastSettings())
    assert result.crosses_10 < result.crosses_50
    assert result.crosses_50 == forecast.index[days.median - 1].date()
    assert result.p_full is not None and result.p_full.is_monotonic_increasing


def test_already_full_is_certain():
    paths = _ramp_paths(np.zeros(100), start_bytes=101 * GIB)
    result = outlook(_forecast(paths), series="volume:x", capacity_bytes=100 * GIB, used_bytes=101 * GIB,
                     settings=ForecastSettings())
    assert result.p_full_within_lead == 1.0 and result.days_to_full.median == 0 and result.at_risk


def test_unknown_capacity_gives_no_probability_and_no_alert():
    result = outlook(_forecast(_ramp_paths(np.ones(10) * GIB)), series="volume:x", capacity_bytes=None,
                     used_bytes=50 * GIB, settings=ForecastSettings())
    assert result.p_full is None and not result.at_risk and "capacity unknown" in result.summary


def _at_risk(within_lead: float = 0.4, full_by: date = date(2026, 7, 1), capacity: float = 100 * GIB):
    paths = np.zeros((10, 40))
    result = outlook(_forecast(paths), series="volume:x", capacity_bytes=capacity, used_bytes=0.0,
                     settings=ForecastSettings())
    band = 1 + sum(within_lead >= edge for edge in (0.5, 0.8))
    return replace(result, p_full_within_lead=within_lead, at_risk=True,
                   fingerprint=AlertFingerprint("volume:x", capacity, band, full_by))


def test_the_fingerprint_suppresses_a_repeat_of_the_same_situation():
    first = _at_risk()
    assert should_alert(None, first)
    kept = fingerprint_to_keep(None, first, alerted=True)
    next_day = _at_risk(within_lead=0.45, full_by=date(2026, 7, 3))
    assert not should_alert(kept, next_day)
    assert fingerprint_to_keep(kept, next_day, alerted=False) == kept


def test_a_different_situation_alerts_again():
    kept = _at_risk().fingerprint
    assert should_alert(kept, _at_risk(within_lead=0.6)), "the risk moved up a band"
    assert should_alert(kept, _at_risk(capacity=200 * GIB)), "the PVC was resized"
    assert should_alert(kept, _at_risk(full_by=date(2026, 7, 1) - timedelta(days=7))), "a week closer"
    assert not should_alert(kept, _at_risk(full_by=date(2026, 7, 1) - timedelta(days=6)))


def test_a_creeping_date_realerts_once_it_moved_a_week_from_the_last_alert():
    kept = fingerprint_to_keep(None, _at_risk(full_by=date(2026, 7, 10)), alerted=True)
    for days_closer in range(1, 10):
        current = _at_risk(full_by=date(2026, 7, 10) - timedelta(days=days_closer))
        alerted = should_alert(kept, current)
        assert alerted == (days_closer == 7)
        kept = fingerprint_to_keep(kept, current, alerted)


def test_the_risk_going_away_resets_the_fingerprint():
    kept = _at_risk().fingerprint
    calm = replace(_at_risk(), at_risk=False, fingerprint=None)
    assert not should_alert(kept, calm)
    assert fingerprint_to_keep(kept, calm, alerted=False) is None


def test_fingerprint_survives_json():
    fingerprint = _at_risk().fingerprint
    assert AlertFingerprint.from_dict(fingerprint.to_dict()) == fingerprint


def test_alert_fires_at_least_14_days_before_a_linear_fill():
    scenario = scenarios.linear_fill()
    fill_day = scenario.fills_at.tz_convert(None).normalize()
    as_of = fill_day - pd.Timedelta(days=14)
    result = forecast_volume(daily_storage(scenario.samples, until=as_of))
    assert result.backtest is not None, result.reason
    assert result.outlook.at_risk, result.outlook.summary
    assert should_alert(None, result.outlook)
    assert result.outlook.crosses_50 is not None
    assert abs((result.outlook.crosses_50 - fill_day.date()).days) <= 10


@pytest.mark.parametrize("as_of", ["2026-03-16", "2026-05-04"])
def test_no_alert_on_a_stable_sawtooth(as_of):
    """kube-prometheus fires on this volume (see test_promql); the forecast must not."""
    scenario = scenarios.stable_sawtooth()
    result = forecast_volume(daily_storage(scenario.samples, until=pd.Timestamp(as_of)))
    assert not result.outlook.at_risk, result.outlook.summary
    assert result.outlook.p_full_within_lead < ForecastSettings().alert_probability
    assert not should_alert(None, result.outlook)
