"""Each rule baseline deletes what its tool documents, on hand-built registries."""
from __future__ import annotations

from datetime import timedelta

from registry_lifecycle.gc.rules import (FAMILIES, RULE_GRID, EcrRule, HarborRule, acr_purge, artifact_registry_cleanup,
                                         ecr_lifecycle, harbor_retention, image_pruner, oc_adm_prune, registry_view,
                                         zot_retention)


def _view(snapshot):
    return registry_view(snapshot.state(), snapshot.pull_history())


def _history_of_latest(snapshot, revisions: int) -> list[str]:
    """`latest` moved `revisions` times, one image per move, newest first (revision 0)."""
    images = []
    for revision in range(revisions):
        image = snapshot.image(f"build-{revision}", pushed=10 + 10 * revision)
        snapshot.tag(image, "latest", revision=revision, created=10 + 10 * revision)
        images.append(image)
    return images


def test_oc_adm_prune_keeps_three_revisions_young_and_referenced_images(build_state):
    snapshot = build_state()
    builds = _history_of_latest(snapshot, 6)
    snapshot.reference(builds[4])                       # a rollback target still referenced
    orphan = snapshot.image("orphan", pushed=100)       # in no image stream at all
    in_flight = snapshot.image("in-flight", pushed=0)   # pushed at noon, 12 hours before the decision
    pruned = oc_adm_prune(_view(snapshot))
    assert pruned == {builds[3], builds[5], orphan, in_flight}
    assert image_pruner(_view(snapshot)) == pruned
    one_revision_young_month = oc_adm_prune(_view(snapshot), keep_tag_revisions=1, keep_younger_than=timedelta(days=25))
    assert one_revision_young_month == {builds[2], builds[3], builds[5], orphan}


def test_ecr_count_rule_keeps_the_newest_pushes_of_each_repository(build_state):
    snapshot = build_state()
    builds = _history_of_latest(snapshot, 4)
    other = snapshot.image("api", repository="shop-dev/api", pushed=300)
    expired = ecr_lifecycle(_view(snapshot), rules=(EcrRule("imageCountMoreThan", 2),))
    assert expired == {builds[2], builds[3]}
    assert other not in expired                          # the only image of its repository


def test_ecr_since_pulled_falls_back_to_push_time_and_respects_priority(build_state):
    snapshot = build_state()
    pulled_lately = snapshot.image("pulled-lately", pushed=300)
    snapshot.tag(pulled_lately, "v1.0.0", created=300)
    snapshot.pull(pulled_lately, 5)
    never_pulled_old = snapshot.image("never-old", pushed=100)
    snapshot.tag(never_pulled_old, "dev-1", created=100)
    never_pulled_new = snapshot.image("never-new", pushed=10)
    snapshot.tag(never_pulled_new, "dev-2", created=10)
    view = _view(snapshot)
    assert ecr_lifecycle(view, rules=(EcrRule("sinceImagePulled", 30),)) == {never_pulled_old}
    assert ecr_lifecycle(view, rules=(EcrRule("sinceImagePushed", 30),)) == {pulled_lately, never_pulled_old}
    # A release matched by a higher-priority tagged rule (that expires nothing) is out of the
    # `any` rule's reach.
    protected = (EcrRule("imageCountMoreThan", 100, "tagged", ("v*",)), EcrRule("sinceImagePushed", 30))
    assert ecr_lifecycle(view, rules=protected) == {never_pulled_old}


def test_harbor_deletes_what_no_rule_retains(build_state):
    snapshot = build_state()
    builds = _history_of_latest(snapshot, 4)
    snapshot.pull(builds[3], 3)
    view = _view(snapshot)
    assert harbor_retention(view, rules=(HarborRule("nDaysSinceLastPull", 7),)) == set(builds[:3])
    assert harbor_retention(view, rules=(HarborRule("nDaysSinceLastPull", 7), HarborRule("latestPushedK", 1))) == \
        {builds[1], builds[2]}
    assert harbor_retention(view, rules=(HarborRule("latestPulledN", 1),)) == set(builds[:3])
    # Untagged artifacts (old revisions) not included in the selector: nothing retains them.
    assert harbor_retention(view, rules=(HarborRule("always", include_untagged=False),)) == set(builds[1:])


def test_artifact_registry_keep_policies_win_over_delete_policies(build_state):
    snapshot = build_state()
    builds = _history_of_latest(snapshot, 4)             # pushed 10, 20, 30, 40 days ago
    view = _view(snapshot)
    assert artifact_registry_cleanup(view, older_than_days=15) == set(builds[1:])
    assert artifact_registry_cleanup(view, older_than_days=15, keep_count=3) == {builds[3]}
    assert artifact_registry_cleanup(view, older_than_days=15, tag_state="tagged") == set()


def test_acr_purge_deletes_old_tags_then_every_untagged_manifest(build_state):
    snapshot = build_state()
    builds = _history_of_latest(snapshot, 3)             # latest -> build-0 (moved 10 days ago)
    release = snapshot.image("release", pushed=200)
    snapshot.tag(release, "v1.0.0", created=200)
    view = _view(snapshot)
    assert acr_purge(view, ago_days=30, untagged=False) == set()      # tags only: no manifest goes
    assert acr_purge(view, ago_days=30) == {builds[1], builds[2], release}
    assert acr_purge(view, ago_days=30, keep=1) == {builds[1], builds[2]}
    assert acr_purge(view, ago_days=5) == {builds[0], builds[1], builds[2], release}


def test_zot_keeps_tags_matching_pattern_and_any_criterion(build_state):
    snapshot = build_state()
    builds = _history_of_latest(snapshot, 3)
    release = snapshot.image("release", pushed=200)
    snapshot.tag(release, "v1.0.0", created=200)
    snapshot.pull(release, 3)
    view = _view(snapshot)
    assert zot_retention(view, pulled_within_days=7) == {builds[0], builds[1], builds[2]}
    assert zot_retention(view, pulled_within_days=7, pushed_within_days=15) == {builds[1], builds[2]}
    assert zot_retention(view, patterns=(r"v.*",)) == {builds[0], builds[1], builds[2]}
    assert zot_retention(view, most_recently_pushed_count=1) == {builds[1], builds[2], release}
    assert zot_retention(view, pulled_within_days=7, delete_untagged=False) == set()


def test_an_image_promoted_to_two_repositories_goes_only_when_both_let_it_go(build_state):
    snapshot = build_state()
    promoted = snapshot.image("promoted", pushed=100)
    snapshot.tag(promoted, "latest", revision=1, created=100)
    snapshot.tag(promoted, "prod", stream="shop-prod/web", created=100)
    newer = snapshot.image("newer", pushed=5)
    snapshot.tag(newer, "latest", created=5)
    snapshot.pull(promoted, 2, repository="shop-prod/web")
    view = _view(snapshot)
    # Untagged in dev, but pulled lately in prod: Harbor on pull time keeps it there.
    assert harbor_retention(view, rules=(HarborRule("nDaysSinceLastPull", 7),)) == {newer}
    assert promoted in harbor_retention(view, rules=(HarborRule("latestPushedK", 0),))


def test_a_child_of_a_kept_index_stays(build_state):
    snapshot = build_state()
    index = snapshot.image("index", pushed=10)
    snapshot.tag(index, "latest", created=10)
    child = snapshot.image("child", pushed=10, index=index)
    old_index = snapshot.image("old-index", pushed=100)
    old_child = snapshot.image("old-child", pushed=100, index=old_index)
    deleted = artifact_registry_cleanup(_view(snapshot), older_than_days=0, keep_count=0, tag_state="untagged")
    assert child not in deleted and index not in deleted
    assert {old_index, old_child} <= deleted


def test_every_family_has_a_grid_to_draw_its_frontier():
    assert set(FAMILIES) == {"oc adm prune", "ImagePruner CR", "ECR", "Harbor", "Artifact Registry", "acr purge", "zot"}
    for family in FAMILIES:
        settings = [policy for policy in RULE_GRID if policy.family == family]
        assert len(settings) >= (1 if family == "ImagePruner CR" else 5), family
        assert len({policy.label for policy in settings}) == len(settings)
