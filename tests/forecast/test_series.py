"""From 5-minute samples to daily peaks: gaps, resets, resizes, object storage, GC and prunes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from registry_lifecycle.forecast import scenarios
from registry_lifecycle.forecast.series import (
    daily_storage,
    growth_drivers,
    namespace_growth,
    namespace_usage,
    remove_resets,
)

GIB = 2**30


def test_daily_value_is_the_peak_not_the_end_of_day():
    """The registry fails at the day's highest point: on GC day that is before the GC."""
    scenario = scenarios.stable_sawtooth()
    daily = daily_storage(scenario.samples)
    raw = scenario.samples.set_index("ts")["used_bytes"]
    sunday = next(day for day in daily.used.index if day.weekday() == 6 and day > daily.used.index[7])
    samples_of_day = raw[raw.index.tz_convert(None).normalize() == sunday]
    assert daily.used[sunday] == pytest.approx(samples_of_day.max())
    assert samples_of_day.iloc[-1] < 0.9 * samples_of_day.max(), "the GC on Sunday must free space in the scenario"


def test_gaps_are_interpolated_flagged_and_not_invented():
    scenario = scenarios.gaps()
    daily = daily_storage(scenario.samples)
    missing_days = ~daily.observed
    assert missing_days.sum() >= 7, "the scenario has a 2-day and a 5-day gap"
    assert not daily.used.isna().any()
    assert daily.used.index.freq == "D" and len(daily.used) == (daily.used.index[-1] - daily.used.index[0]).days + 1
    assert any("interpolated" in note for note in daily.notes)
    assert {event.kind for event in daily.events} >= {"gap"}


def test_a_gap_longer_than_the_limit_cuts_the_history():
    """Weeks of silence cannot be bridged honestly: only what follows the gap is modelled."""
    scenario = scenarios.gaps()
    daily = daily_storage(scenario.samples, max_gap_days=3)
    assert daily.used.index[0] == pd.Timestamp("2026-04-19")       # the 5-day gap ran 04-14 .. 04-18
    assert any("dropped" in note for note in daily.notes)


def test_reset_glitches_are_removed_and_not_mistaken_for_prunes():
    scenario = scenarios.counter_reset()
    assert (scenario.samples["used_bytes"] == 0).sum() > 0, "the scenario must contain zero readings"
    daily = daily_storage(scenario.samples)
    assert len(daily.of_kind("glitch")) == 3
    assert daily.samples.min() > 10 * GIB
    assert not daily.of_kind("drop", "reset")
    assert daily.used.min() > 10 * GIB


def test_a_reset_that_stays_restarts_the_history():
    """A volume that drops to zero and stays there was emptied or replaced: the old history is another volume."""
    index = pd.date_range("2026-01-01", periods=2000, freq="5min", tz="UTC")
    values = np.linspace(50, 60, 2000) * GIB
    values[1500:] = np.linspace(0.1, 2, 500) * GIB
    cleaned, events = remove_resets(pd.Series(values, index=index))
    assert [event.kind for event in events] == ["reset"]
    assert len(cleaned) == 2000

    frame = pd.DataFrame({"ts": index, "volume": "v", "used_bytes": values, "capacity_bytes": 100 * GIB,
                          "source": "test"})
    daily = daily_storage(frame)
    assert daily.samples.index[0] == index[1500]
    assert any("restarted from near zero" in note for note in daily.notes)


def test_resize_changes_the_capacity_line_not_the_usage():
    scenario = scenarios.resize()
    daily = daily_storage(scenario.samples)
    resizes = daily.of_kind("resize")
    assert len(resizes) == 1 and resizes[0].bytes == pytest.approx(80 * GIB)
    assert daily.capacity_now == pytest.approx(160 * GIB)
    assert daily.capacity[daily.capacity.index < resizes[0].at.tz_convert(None)].max() == pytest.approx(80 * GIB)
    resize_day = resizes[0].at.tz_convert(None).normalize()
    assert not [e for e in daily.of_kind("drop") if e.at.tz_convert(None).normalize() == resize_day]


def test_object_storage_takes_the_capacity_from_the_policy():
    scenario = scenarios.object_storage()
    assert scenario.samples["capacity_bytes"].isna().all()
    daily = daily_storage(scenario.samples, capacity_bytes=100 * GIB)
    assert daily.capacity_now == 100 * GIB
    assert any("from the policy" in note for note in daily.notes)
    unknown = daily_storage(scenario.samples)
    assert unknown.capacity_now is None
    assert any("capacity unknown" in note for note in unknown.notes)


def test_a_measured_capacity_wins_over_the_policy():
    daily = daily_storage(scenarios.linear_fill().samples, capacity_bytes=5 * GIB)
    assert daily.capacity_now == 100 * GIB


def test_weekly_gc_is_seasonal_and_a_one_off_prune_is_a_step(sandbox_samples):
    daily = daily_storage(sandbox_samples, until=pd.Timestamp("2026-11-27"))
    gc_runs = daily.of_kind("gc")
    assert len(gc_runs) >= 20
    assert {event.at.weekday() for event in gc_runs} == {6}, "the sandbox's registry GC runs on Sundays"
    assert daily.steps == ()

    prune = pd.Timestamp("2026-10-07 14:00", tz="UTC")
    samples = sandbox_samples.copy()
    samples.loc[samples["ts"] >= prune, "used_bytes"] -= 3 * GIB
    pruned = daily_storage(samples, until=pd.Timestamp("2026-11-27"))
    assert [event.kind for event in pruned.events if event.at == prune] == ["drop"]
    assert pruned.steps == (pd.Timestamp("2026-10-08"),)


def test_audit_log_deletions_are_steps_even_when_too_small_to_see():
    scenario = scenarios.linear_fill()
    deleted_at = pd.Timestamp("2026-03-03 10:00", tz="UTC")
    daily = daily_storage(scenario.samples, audit_events=(deleted_at,))
    assert pd.Timestamp("2026-03-04") in daily.steps
    assert [e.detail for e in daily.of_kind("prune")] == ["gc_audit"]


def test_several_volumes_must_be_named():
    frame = pd.concat([scenarios.constant().samples, scenarios.constant().samples.assign(volume="other/pvc")])
    with pytest.raises(ValueError, match="2 volumes"):
        daily_storage(frame)
    assert daily_storage(frame, "other/pvc").volume == "other/pvc"


def test_namespace_growth_counts_shared_layers_once_for_the_first_pusher():
    images = pd.DataFrame({
        "digest": ["sha256:a", "sha256:b", "sha256:c"],
        "repository": ["team-a-dev/api", "team-b-dev/web", "team-a-dev/api"],
        "created_at": pd.to_datetime(["2026-03-01 10:00", "2026-03-02 10:00", "2026-03-03 10:00"], utc=True),
    })
    layers = pd.DataFrame({
        "image_digest": ["sha256:a", "sha256:a", "sha256:b", "sha256:b", "sha256:c"],
        "layer_digest": ["base", "api-1", "base", "web-1", "api-2"],
        "size_bytes": [100, 10, 100, 20, 30],
    })
    growth = namespace_growth(images, layers)
    assert growth.groupby("namespace")["added_bytes"].sum().to_dict() == {"team-a-dev": 140, "team-b-dev": 20}
    usage = namespace_usage(growth)
    assert usage.loc["2026-03-03"].to_dict() == {"team-a-dev": 140, "team-b-dev": 20}
    drivers = growth_drivers(growth, as_of=pd.Timestamp("2026-03-03"))
    assert drivers["namespace"].iloc[0] == "team-a-dev"
    assert drivers["share"].sum() == pytest.approx(1.0)
