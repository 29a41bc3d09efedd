"""Per-image features: idle time, the image's own rhythm, repository bursts, position among versions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from registry_lifecycle.gc.features import MODEL_FEATURES, NEVER, build_features


def test_idle_gap_and_rhythm_come_from_the_images_own_pulls(build_state):
    """An image pulled every 30 days, last 10 days ago, is idle well within its usual gap."""
    snapshot = build_state()
    monthly = snapshot.image("monthly", pushed=200)
    for days_ago in (100, 70, 40, 10):
        snapshot.pull(monthly, days_ago)
    features = build_features(snapshot.state(), snapshot.pull_history(), horizon_days=30).loc[monthly]

    assert features["never_pulled"] == 0
    assert features["days_idle"] == pytest.approx(10.5)
    assert features["longest_idle_gap"] == 30
    assert features["typical_gap"] == pytest.approx(30)
    assert features["idle_vs_longest_gap"] == pytest.approx(10.5 / 30)
    assert features["pulls_30"] == 1 and features["pulls_90"] == 3
    assert features["active_days_per_quarter"] == pytest.approx(4 / 200.5 * 91)   # 4 active days in 200.5 observed


def test_an_image_never_pulled_is_idle_since_its_push(build_state):
    snapshot = build_state()
    never = snapshot.image("never", pushed=45)
    features = build_features(snapshot.state(), snapshot.pull_history()).loc[never]
    assert features["never_pulled"] == 1
    assert features["days_idle"] == pytest.approx(features["age_days"])
    assert features["age_days"] == pytest.approx(45.5)          # pushed at noon, scored at the end of the day
    assert features["longest_idle_gap"] == 0


def test_a_repository_burst_reaches_every_version_pulled_in_it(build_state):
    """Four of five versions re-pulled on one day 20 days ago is a burst of that repository."""
    snapshot = build_state()
    versions = [snapshot.image(f"v{i}", pushed=300 - i) for i in range(5)]
    for version in versions[:4]:
        snapshot.pull(version, 20)
    quiet = snapshot.image("other", repository="shop-dev/api", pushed=100)
    snapshot.pull(quiet, 20, repository="shop-dev/api")
    features = build_features(snapshot.state(), snapshot.pull_history())

    burst = features.loc[versions[0]]
    assert burst["repo_burst_days"] == 1
    assert burst["days_since_repo_burst"] == 20
    assert burst["burst_participation"] == 1
    assert burst["repo_active_share_30"] == pytest.approx(4 / 5)
    assert features.loc[versions[4], "burst_participation"] == 0     # its repository burst, it did not take part
    assert features.loc[quiet, "repo_burst_days"] == 0               # a single pull is no burst
    assert features.loc[quiet, "days_since_repo_burst"] == NEVER


def test_waking_up_one_quarter_ago_is_seen_for_the_image_and_the_registry(build_state):
    """Pulled 80 days ago after a long silence: the same point of the last quarter saw it wake."""
    snapshot = build_state()
    sleeper = snapshot.image("sleeper", pushed=300)
    snapshot.pull(sleeper, 250)
    snapshot.pull(sleeper, 80)
    still = snapshot.image("still", pushed=300)
    features = build_features(snapshot.state(), snapshot.pull_history(), horizon_days=30)
    assert features.loc[sleeper, "woke_one_quarter_ago"] == 1
    assert features.loc[still, "woke_one_quarter_ago"] == 0
    assert features.loc[still, "registry_woke_one_quarter_ago"] == pytest.approx(0.5)
    assert features.loc[sleeper, "longest_idle_gap"] == 170


def test_position_among_versions_and_newer_versions_in_use(build_state):
    snapshot = build_state()
    old, middle, new = (snapshot.image(name, pushed=days) for name, days in (("old", 90), ("mid", 60), ("new", 30)))
    snapshot.pull(middle, 5)
    snapshot.pull(new, 3)
    features = build_features(snapshot.state(), snapshot.pull_history())
    assert features.loc[[new, middle, old], "version_rank"].tolist() == [0, 1, 2]
    assert features.loc[old, "version_rank_share"] == 1
    assert features.loc[old, "newer_versions_pulled_30"] == 2
    assert features.loc[new, "newer_versions_pulled_30"] == 0


def test_tags_builds_namespaces_and_references(build_state):
    snapshot = build_state()
    snapshot.namespace("shop-prod", env="prod", tier="gold")
    release = snapshot.image("release", repository="shop-prod/web")
    snapshot.tag(release, "v1.4.2", stream="shop-prod/web")
    snapshot.tag(release, "latest", revision=3)
    snapshot.reference(release)
    branch = snapshot.image("branch", labels={"io.openshift.build.commit.ref": "feature/login"})
    snapshot.tag(branch, "feature-login")
    untagged = snapshot.image("untagged")
    features = build_features(snapshot.state(), snapshot.pull_history())

    assert features.loc[release, ["release_tag", "revision_index", "newer_revisions", "tag_heads"]].tolist() == [1, 0, 3, 1]
    assert features.loc[release, ["env_rank", "tier_rank", "referenced_now", "days_since_referenced"]].tolist() == \
        [2, 2, 1, 0]
    assert features.loc[branch, ["feature_tag", "feature_branch_build", "release_tag"]].tolist() == [1, 1, 0]
    assert features.loc[untagged, ["untagged", "ever_referenced", "days_since_referenced"]].tolist() == [1, 0, NEVER]


def test_features_of_a_sandbox_snapshot_are_complete(sandbox_history):
    """Every model input is numeric and finite for every image of a real snapshot."""
    history = sandbox_history.history
    day = history.days[-3]
    features = history.features(day, 30)
    assert len(features) == history.state(day).images["digest"].nunique()
    values = features[list(MODEL_FEATURES)].to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert (features["pulls_90"] > 0).any() and (features["repo_burst_days"] > 0).any()


def test_history_keeps_only_the_latest_days_in_memory_and_recomputes_the_same(sandbox_history):
    """Training walks every labelled date; a year of L snapshots must not all stay in memory."""
    from registry_lifecycle.gc.features import CACHED_DAYS, History
    from registry_lifecycle.lake import Lake

    history = History.from_lake(Lake(sandbox_history.lake_path))
    first_day, later_days = history.days[0], history.days[1:]
    first = history.features(first_day, 30)
    pinned = history.state(later_days[0])
    history.pin(pinned)
    for day in later_days[1:]:
        history.features(day, 30)
    assert len(history._states) <= CACHED_DAYS and len(history._features) <= CACHED_DAYS
    assert first_day not in history._states, "the oldest day should have been dropped"
    assert history.state(later_days[0]) is pinned, "a pinned snapshot stays, whatever else is used"
    pd.testing.assert_frame_equal(history.features(first_day, 30), first)    # read back: the same features
