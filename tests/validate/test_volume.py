"""Volume checks: a snapshot that shrinks implausibly halts the run (safety invariant 3)."""
from __future__ import annotations

import pytest

from registry_lifecycle.validate import CRITICAL, INFO, WARNING
from registry_lifecycle.validate.volume import GROWTH, NO_PREVIOUS, SHRINK, VolumeThresholds, check_volume

PREVIOUS_RUN = "2026-03-09/scheduled__2026-03-09T00:00:00+00:00"


def by_check(results: list) -> dict:
    return {(result.dataset, result.expectation): result for result in results}


def test_a_fifty_percent_shrink_halts_and_names_the_counts_the_run_and_the_override():
    results = by_check(check_volume({"images": 500}, {"images": 1_000}, thresholds=VolumeThresholds(),
                                    previous_run=PREVIOUS_RUN))
    shrink = results[("images", SHRINK)]
    assert shrink.severity == CRITICAL and not shrink.success and shrink.is_failure
    assert "500 rows" in shrink.observed and "1,000" in shrink.observed and "50%" in shrink.observed
    assert PREVIOUS_RUN in shrink.observed
    assert "--accept-shrink" in shrink.hint and "validation.max_shrink.images" in shrink.hint


def test_a_drop_up_to_the_limit_passes():
    results = by_check(check_volume({"tags": 700}, {"tags": 1_000}, thresholds=VolumeThresholds()))
    assert results[("tags", SHRINK)].success
    assert results[("tags", GROWTH)].success


def test_accept_shrink_lets_an_intentional_cleanup_through_as_a_visible_warning():
    thresholds = VolumeThresholds(accept_shrink=True)
    shrink = by_check(check_volume({"images": 100}, {"images": 1_000}, thresholds=thresholds))[("images", SHRINK)]
    assert shrink.severity == WARNING and not shrink.success and shrink.is_warning
    assert "accepted by --accept-shrink" in shrink.observed


def test_the_policy_overrides_the_limit_per_dataset():
    thresholds = VolumeThresholds(max_shrink={"images": 0.6})
    results = by_check(check_volume({"images": 500, "tags": 500}, {"images": 1_000, "tags": 1_000},
                                    thresholds=thresholds))
    assert results[("images", SHRINK)].success
    # A policy naming only images must not switch the check off for the other snapshot datasets.
    assert not results[("tags", SHRINK)].success


def test_growth_beyond_the_factor_warns_without_halting():
    results = by_check(check_volume({"references": 6_000}, {"references": 1_000}, thresholds=VolumeThresholds()))
    growth = results[("references", GROWTH)]
    assert growth.severity == WARNING and not growth.success
    assert "6.0x" in growth.observed and "1,000" in growth.observed
    assert results[("references", SHRINK)].success


def test_growth_within_the_factor_passes():
    results = by_check(check_volume({"references": 4_000}, {"references": 1_000}, thresholds=VolumeThresholds()))
    assert results[("references", GROWTH)].success


def test_growth_from_an_empty_previous_snapshot_warns():
    growth = by_check(check_volume({"builds": 40}, {"builds": 0}, thresholds=VolumeThresholds()))[("builds", GROWTH)]
    assert not growth.success and "had none" in growth.observed


def test_no_previous_snapshot_is_an_informational_pass_that_says_so():
    results = check_volume({"images": 10, "tags": 30}, None, thresholds=VolumeThresholds())
    assert {result.dataset for result in results} == {"images", "tags"}
    for result in results:
        assert result.expectation == NO_PREVIOUS
        assert result.severity == INFO and result.success
        assert "no previous snapshot" in result.observed


def test_a_dataset_new_since_the_previous_snapshot_is_not_compared():
    results = by_check(check_volume({"images": 10, "builds": 3}, {"images": 10}, thresholds=VolumeThresholds()))
    assert results[("builds", NO_PREVIOUS)].success
    assert results[("images", SHRINK)].success


def test_time_ranged_datasets_are_not_compared():
    """Pulls, scans and storage samples change size with the range read, not with the cluster."""
    results = check_volume({"pulls_daily": 1, "scans": 1, "storage_usage": 1},
                           {"pulls_daily": 1_000, "scans": 1_000, "storage_usage": 1_000},
                           thresholds=VolumeThresholds())
    assert results == []


@pytest.mark.parametrize("kwargs", [{"max_shrink": {"images": 0}}, {"max_shrink": {"images": 1.5}},
                                    {"default_max_shrink": -0.1}, {"max_growth_factor": 1.0}])
def test_nonsensical_thresholds_are_refused(kwargs: dict):
    with pytest.raises(ValueError, match="max_"):
        VolumeThresholds(**kwargs)
