"""The simulated history contains every trap DESIGN.md promises, deterministically."""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from registry_lifecycle.sandbox import oci
from registry_lifecycle.sandbox.scenario import build_world

UNTIL = date(2026, 11, 27)


@pytest.fixture(scope="module")
def world():
    return build_world(seed=7, scale="tiny", until=UNTIL)


def test_same_seed_and_until_give_identical_history():
    first = build_world(seed=3, scale="tiny", days=40, until=UNTIL)
    second = build_world(seed=3, scale="tiny", days=40, until=UNTIL)
    assert list(first.images) == list(second.images)
    assert [(p.day, p.digest, p.pulls) for p in first.pulls] == [(p.day, p.digest, p.pulls) for p in second.pulls]
    assert first.storage[0].values == second.storage[0].values
    other_seed = build_world(seed=4, scale="tiny", days=40, until=UNTIL)
    assert set(first.images) != set(other_seed.images)


def test_history_ends_at_until_and_reaches_back_days(world):
    assert world.until.date() == UNTIL
    assert world.start.date() == UNTIL - timedelta(days=180)
    assert world.future_until > world.until, "ground truth must extend past the served history"


def test_tiny_scale_is_a_few_hundred_images(world):
    live = [image for image in world.images.values() if image.exists_at(world.until)]
    assert 300 <= len(live) <= 1500


@pytest.mark.parametrize("trap", ["feature_branch", "promoted", "rollback_target", "cronjob", "suspended_cronjob",
                                  "dr", "index_children", "signature", "sbom", "vulnerable", "rolled_back_to"])
def test_scenario_contains_the_trap(world, trap):
    assert world.truth.digests(trap), f"the scenario must contain {trap} images"


def test_feature_branch_builds_are_never_deployed(world):
    features = world.truth.digests("feature_branch")
    referenced = {digest for digest, starts in world.truth.reference_starts.items() if starts}
    assert features and not features & referenced


def test_promotion_retags_the_same_digest_across_namespaces(world):
    promoted = next(iter(world.truth.digests("promoted")))
    holders = {stream.namespace.rsplit("-", 1)[1] for stream in world.streams.values()
               for history in stream.tags.values() for item in history.items if item.digest == promoted}
    assert {"dev", "staging"} <= holders


def test_rollback_targets_are_referenced_by_scaled_down_replica_sets(world):
    from registry_lifecycle.sandbox import resources

    source = world.kube[resources.REPLICA_SETS]
    scaled_down = [body for namespace, name in source.keys(world.until)
                   if (body := source.render(namespace, name, world.until))["spec"]["replicas"] == 0]
    assert scaled_down, "old ReplicaSets must be kept at 0 replicas"


def test_dr_deployments_run_zero_replicas_and_are_never_pulled_after_refresh(world):
    from registry_lifecycle.sandbox import resources

    deployments = world.kube[resources.DEPLOYMENTS]
    dr = [deployments.render(ns, name, world.until) for ns, name in deployments.keys(world.until) if ns.endswith("-dr")]
    assert dr and all(body["spec"]["replicas"] == 0 for body in dr)


def test_monthly_cronjob_image_is_idle_for_weeks_between_pulls(world):
    digest = max(world.truth.digests("cronjob"), key=lambda d: len(world.truth.pull_days[d]))
    days = sorted({when.date() for when in world.truth.pull_days[digest]})
    gaps = [(b - a).days for a, b in zip(days, days[1:])]
    assert gaps and max(gaps) >= 27


def test_base_images_are_multi_arch_indexes_whose_layers_apps_share(world):
    indexes = [image for image in world.images.values() if image.media_type == oci.OCI_INDEX]
    assert indexes and all(len(index.children) == 2 for index in indexes)

    def users(index):
        child_layers = {digest for digest, _, _ in world.images[index.children[0]].layers}
        return [image for image in world.images.values()
                if image.kind in ("app", "feature") and child_layers <= {d for d, _, _ in image.layers}]

    assert max(len(users(index)) for index in indexes) >= 2, "a base layer must be shared by several app images"


def test_signatures_are_tagged_after_their_subject(world):
    signature = world.images[next(iter(world.truth.digests("signature")))]
    tag = f"sha256-{signature.subject.split(':', 1)[1]}.sig"
    assert any(tag in stream.tags for stream in world.streams.values())


def test_manifest_bytes_hash_to_their_digest_and_blobs_to_theirs(world):
    for image in list(world.images.values())[:40]:
        assert oci.sha256_digest(image.manifest) == image.digest
        for digest, size, _ in image.layers[:2]:
            found_size, chunks = world.blobs.open(digest)
            hasher = hashlib.sha256()
            total = 0
            for chunk in chunks:
                hasher.update(chunk)
                total += len(chunk)
            assert (total, "sha256:" + hasher.hexdigest()) == (size, digest)
        document = json.loads(image.manifest)
        assert document["mediaType"] == image.media_type


def test_ci_builds_follow_a_weekly_rhythm(world):
    weekday = sum(1 for image in world.images.values() if image.kind == "app" and image.created.weekday() < 5)
    weekend = sum(1 for image in world.images.values() if image.kind == "app" and image.created.weekday() >= 5)
    assert weekday > 5 * weekend


def test_compliance_sweeps_re_pull_every_version_of_the_same_repositories_each_quarter(world):
    """A mirror's scope is a configured list: the repositories a sweep re-pulls are the same every
    quarter (so the history can foresee the next one), and every version in them is pulled."""
    swept: dict[str, set[str]] = {}
    for pull in world.pulls:
        if pull.cluster == "scanner" and pull.tag is None:
            swept.setdefault(pull.day, set()).add(pull.repository)
    assert len(swept) >= 3 and all(day[8:] == "05" and day[5:7] in ("02", "05", "08", "11") for day in swept)
    scopes = list(swept.values())
    assert all(scope == scopes[0] for scope in scopes), "the scope changed between quarters"
    assert 0 < len(scopes[0]) < len(world.streams) / 2
    day = min(swept)
    when = datetime.fromisoformat(day).replace(hour=1, tzinfo=timezone.utc)
    pulled = {(p.repository, p.digest) for p in world.pulls if p.day == day and p.cluster == "scanner" and p.tag is None}
    for repository in scopes[0]:
        versions = {item.digest for history in world.streams[repository].tags.values() for item in history.at(when)
                    if world.images[item.digest].exists_at(when)}
        assert {(repository, digest) for digest in versions} <= pulled


def test_storage_shows_gc_sawtooth_and_a_pvc_resize(world):
    used = world.storage[0]
    capacity = world.storage[1]
    drops = sum(1 for a, b in zip(used.values, used.values[1:]) if b < a * 0.97)
    assert drops >= 4, "weekly registry GC and monthly clean-ups must show as drops"
    assert len(set(capacity.values)) == 2, "the PVC is resized once"


def test_ground_truth_knows_future_reuse(world):
    rolled_back = next(iter(world.truth.digests("rolled_back_to")))
    first_pull = world.truth.pull_days[rolled_back][0]
    assert world.truth.reused_within(rolled_back, first_pull - timedelta(hours=1), 1)


def test_clock_window_rejects_times_outside_history(world):
    from registry_lifecycle.sandbox.clock import SandboxClock

    clock = SandboxClock(world.until, earliest=world.start, latest=world.until)
    with pytest.raises(ValueError, match="outside the simulated history"):
        clock.set(world.until + timedelta(days=1))
    assert clock.set(datetime(2026, 9, 1, tzinfo=timezone.utc)).month == 9


def test_unknown_scale_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of tiny, S, M, L"):
        build_world(scale="XL")
