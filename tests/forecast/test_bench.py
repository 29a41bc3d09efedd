"""The benchmark's inputs: the sandbox series in the storage_usage contract, and namespace series at scale."""
from __future__ import annotations

from registry_lifecycle.datasets import STORAGE_USAGE
from registry_lifecycle.forecast.bench import synthetic_namespace_usage
from registry_lifecycle.forecast.scenarios import all_scenarios


def test_sandbox_series_follows_the_storage_usage_contract(sandbox_samples, sandbox_world):
    assert list(sandbox_samples.columns) == STORAGE_USAGE.schema.names
    assert sandbox_samples["ts"].diff().dropna().dt.total_seconds().eq(300).all()
    assert sandbox_samples["capacity_bytes"].nunique() == 2, "the sandbox's PVC is resized once"
    assert sandbox_samples["ts"].iloc[-1] > sandbox_world.until, "the future is kept as the truth to score against"


def test_every_scenario_is_contract_rows_with_its_truth():
    for scenario in all_scenarios():
        assert list(scenario.samples.columns) == STORAGE_USAGE.schema.names, scenario.name
        if scenario.expect_alert:
            assert scenario.fills_at is not None, scenario.name
            at_fill = scenario.samples.loc[scenario.samples["ts"] == scenario.fills_at].iloc[0]
            capacity = scenario.capacity_bytes or at_fill["capacity_bytes"]
            assert at_fill["used_bytes"] >= capacity
        else:
            assert scenario.fills_at is None, scenario.name


def test_namespace_series_are_cumulative_and_varied():
    usage = synthetic_namespace_usage(300, days=60, seed=2)
    assert usage.shape == (60, 300)
    assert (usage.diff().dropna() >= 0).all().all()
    final = usage.iloc[-1]
    growing = final[final > 0]
    assert (final == 0).sum() > 0, "some namespaces never push"
    assert growing.max() > 10 * growing.min(), "namespaces grow at very different rates"
