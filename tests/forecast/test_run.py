"""One forecast run: stated fallbacks, capacity sources, namespaces, and the lake (day runs and backfills)."""
from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from registry_lifecycle.forecast import scenarios
from registry_lifecycle.forecast.bench import synthetic_namespace_usage
from registry_lifecycle.forecast.contracts import FORECASTS
from registry_lifecycle.forecast.run import (
    backfill,
    forecast_day,
    forecast_namespaces,
    forecast_volume,
    publish,
)
from registry_lifecycle.forecast.series import daily_storage
from registry_lifecycle.forecast.settings import ForecastSettings
from registry_lifecycle.lake import Lake

from .conftest import FAST_CANDIDATES

GIB = 2**30


def _first_days(scenario: scenarios.FillScenario, days: int) -> pd.DataFrame:
    return scenario.until(pd.Timestamp("2026-01-05") + pd.Timedelta(days=days - 1))


def test_short_history_falls_back_to_drift_and_says_so():
    result = forecast_volume(daily_storage(_first_days(scenarios.linear_fill(), 10)))
    assert result.forecast.model == "drift" and result.backtest is None
    assert "short history (10 days" in result.reason
    assert result.forecast.has_interval and result.outlook is not None


def test_history_too_short_to_backtest_uses_weekly_increments_and_says_so():
    result = forecast_volume(daily_storage(_first_days(scenarios.linear_fill(), 40)))
    assert result.forecast.model == "weekly_increments" and result.backtest is None
    assert "too short to backtest" in result.reason


def test_one_day_is_not_enough_to_forecast():
    result = forecast_volume(daily_storage(_first_days(scenarios.linear_fill(), 1)))
    assert result.forecast is None and result.outlook is None
    assert "nothing to forecast yet" in result.reason


def test_constant_series_gets_a_constant_forecast_and_no_alert():
    result = forecast_volume(daily_storage(scenarios.constant().samples))
    assert result.forecast.model == "constant"
    assert np.all(result.forecast.mean == 50 * GIB)
    assert result.outlook.p_full_within_lead == 0 and not result.outlook.at_risk
    assert "has not moved" in result.reason


def test_object_storage_forecast_uses_the_policy_capacity():
    scenario = scenarios.object_storage()
    as_of = scenario.fills_at.tz_convert(None).normalize() - pd.Timedelta(days=20)
    settings = ForecastSettings(capacity_bytes="100GiB")
    result = forecast_volume(daily_storage(scenario.samples, until=as_of, capacity_bytes=settings.capacity_bytes),
                             settings, candidates=FAST_CANDIDATES)
    assert result.outlook.capacity_bytes == 100 * GIB
    assert result.outlook.at_risk
    assert "capacity from the policy" in result.reason


def test_after_a_resize_the_new_capacity_counts():
    scenario = scenarios.resize()
    result = forecast_volume(daily_storage(scenario.samples, until=pd.Timestamp("2026-04-15")),
                             candidates=FAST_CANDIDATES)
    assert result.outlook.capacity_bytes == 160 * GIB
    assert not result.outlook.at_risk, "80 GiB used of the new 160 GiB is months from full"


def test_gaps_and_resets_still_give_a_backtested_forecast_that_alerts_in_time():
    for scenario in (scenarios.gaps(), scenarios.counter_reset()):
        as_of = scenario.fills_at.tz_convert(None).normalize() - pd.Timedelta(days=14)
        result = forecast_volume(daily_storage(scenario.samples, until=as_of), candidates=FAST_CANDIDATES)
        assert result.backtest is not None and result.outlook.at_risk, (scenario.name, result.reason)


def test_namespace_forecasts_are_contract_rows_with_a_model_each():
    usage = synthetic_namespace_usage(40, days=120, seed=1)
    rows, models = forecast_namespaces(usage, ForecastSettings(horizon_days=30))
    assert list(rows.columns) == FORECASTS.schema.names
    assert len(rows) == 40 * 30 and rows["series"].str.startswith("namespace:").all()
    assert len(models) == 40 and models["model"].notna().all()
    assert set(models.loc[models["reason"] == "no growth", "model"]) <= {"constant"}


@pytest.fixture
def lake_with_storage(tmp_path) -> tuple[Lake, date]:
    """A lake holding 70 days of storage_usage of a linear fill, one partition per day."""
    lake = Lake(tmp_path / "lake")
    samples = scenarios.linear_fill().samples
    first = date(2026, 1, 5)
    for offset in range(70):
        day = first + timedelta(days=offset)
        rows = samples[pd.DatetimeIndex(samples["ts"]).date == day]
        with lake.run(day, f"extract__{day.isoformat()}") as run:
            run.write("storage_usage", rows)
    return lake, first + timedelta(days=69)


def test_a_day_run_reads_the_lake_and_publishes_forecasts(lake_with_storage):
    lake, last = lake_with_storage
    run = forecast_day(lake, last, ForecastSettings(horizon_days=30), candidates=FAST_CANDIDATES)
    assert [v.series for v in run.volumes] == [f"volume:{scenarios.VOLUME}"]
    assert run.volumes[0].daily.used.index[-1] == pd.Timestamp(last)
    assert run.namespaces is None and "no namespace forecasts" in run.notes[0]
    assert publish(lake, run, "forecast__test") == 30
    stored = lake.read(FORECASTS, last)
    assert len(stored) == 30 and stored["model"].iloc[0] == run.volumes[0].forecast.model


def test_backfill_recomputes_each_day_from_what_was_known_then(lake_with_storage):
    lake, last = lake_with_storage
    runs = backfill(lake, last - timedelta(days=2), last, ForecastSettings(horizon_days=14),
                    candidates=FAST_CANDIDATES)
    assert [run.day for run in runs] == [last - timedelta(days=2), last - timedelta(days=1), last]
    for run in runs:
        stored = lake.read(FORECASTS, run.day)
        assert stored["ds"].min() == run.day + timedelta(days=1)
        assert run.volumes[0].daily.used.index[-1] == pd.Timestamp(run.day)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_a_day_run_forecasts_namespaces_from_the_newest_snapshot(lake_with_storage):
    """Namespace growth comes from the images snapshot on or before the day, and says which one."""
    lake, last = lake_with_storage
    snapshot_day = last - timedelta(days=3)
    rng = np.random.default_rng(0)
    pushed = pd.date_range("2026-01-05", snapshot_day, freq="6h", tz="UTC")
    namespaces = rng.choice(["team-a-dev", "team-b-dev", "team-c-prod"], size=len(pushed), p=[0.6, 0.3, 0.1])
    images = pd.DataFrame({
        "digest": [_digest(f"image-{i}") for i in range(len(pushed))],
        "repository": [f"{ns}/app" for ns in namespaces],
        "media_type": "application/vnd.oci.image.manifest.v1+json", "size_bytes": 0, "config_digest": None,
        "created_at": pushed, "architecture": "amd64", "os": "linux", "labels": None, "subject_digest": None,
        "index_digest": None, "managed": True,
    })
    layers = pd.DataFrame({
        "image_digest": images["digest"], "layer_digest": [_digest(f"layer-{i}") for i in range(len(pushed))],
        "size_bytes": rng.integers(10, 200, size=len(pushed)) * 2**20, "position": 0,
    })
    with lake.run(snapshot_day, "extract__snapshot") as run:
        run.write("images", images)
        run.write("layers", layers)

    result = forecast_day(lake, last, ForecastSettings(horizon_days=14), candidates=FAST_CANDIDATES)
    assert result.namespaces is not None
    assert set(result.namespaces.models["namespace"]) == {"team-a-dev", "team-b-dev", "team-c-prod"}
    assert result.namespaces.drivers["namespace"].iloc[0] == "team-a-dev"
    assert any(snapshot_day.isoformat() in note for note in result.notes)
    rows = result.forecasts()
    assert set(rows["series"]) == {f"volume:{scenarios.VOLUME}", "namespace:team-a-dev", "namespace:team-b-dev",
                                   "namespace:team-c-prod"}
    assert publish(lake, result, "forecast__with-namespaces") == 4 * 14
    summary = json.loads(json.dumps(result.as_dict()))
    assert summary["volumes"][0]["backtest"]["chosen"] == result.volumes[0].backtest.chosen
    assert summary["growth_drivers"][0]["namespace"] == "team-a-dev"
