"""Hard protections: each test builds the one situation a rule is for and checks who it holds.

Every assertion would fail with the rule removed: the held image is also old, unpulled and
unprotected otherwise, and a look-alike that the rule must not hold sits next to it.
"""
from __future__ import annotations

from datetime import timedelta

import pandas as pd

from registry_lifecycle.gc.protections import (BUILD_INPUT, DR_DEPLOYMENT, INDEX_CHILD, LEGAL_HOLD, MAYBE_INDEX_CHILD,
                                               PROTECTED_TAG, REFERRER, ROLLBACK_TARGET, SUSPENDED_CRONJOB,
                                               TAG_REVISION, WORKLOAD, YOUNG, ManifestGraph, namespace_metadata,
                                               protect)

from .registry_frames import AS_OF, Registry, contract_frame, digest, policy

NO_TAG_RULES = {"keep_tag_revisions": 0, "protected_tag_patterns": {}}


def held(registry: Registry, *, imagestream_annotations: dict | None = None, **gc: object) -> dict[str, list[str]]:
    snapshot = registry.frames()
    names = protect(snapshot.images, snapshot.tags, snapshot.references, snapshot.namespaces,
                    policy(**{**NO_TAG_RULES, **gc}).gc, AS_OF, imagestream_annotations=imagestream_annotations)
    return dict(names.items())


def test_newest_tag_revisions_are_kept_as_oc_adm_prune_does():
    registry = Registry()
    revisions = [registry.image(f"web-{n}") for n in range(3)]
    for revision, image in enumerate(revisions):
        registry.tag(image, "latest", revision=revision)
    names = held(registry, keep_tag_revisions=2)
    assert [TAG_REVISION in names[image] for image in revisions] == [True, True, False]


def test_keep_tag_revisions_zero_keeps_no_revision():
    registry = Registry()
    current = registry.image("web")
    registry.tag(current, "latest")
    assert held(registry, keep_tag_revisions=0)[current] == []


def test_images_younger_than_keep_younger_than_are_kept():
    registry = Registry()
    pushed_now = registry.image("fresh", created=AS_OF - timedelta(minutes=10))
    pushed_before = registry.image("older", created=AS_OF - timedelta(hours=2))
    names = held(registry, keep_younger_than="60m")
    assert names[pushed_now] == [YOUNG]
    assert names[pushed_before] == []


def test_a_tag_revision_created_recently_keeps_an_image_built_long_ago():
    """Build time comes from the config; a re-tag minutes ago is still an operation in flight."""
    registry = Registry()
    retagged = registry.image("rebuilt")
    registry.tag(retagged, "hotfix", revision=4, created=AS_OF - timedelta(minutes=5))
    assert held(registry, keep_younger_than="60m")[retagged] == [YOUNG]


def test_every_workload_reference_keeps_its_image_active_or_not():
    registry = Registry()
    running, rollback, scaled_down_dc = registry.image("running"), registry.image("rollback"), registry.image("rc")
    unreferenced = registry.image("unreferenced")
    registry.reference(running, kind="Deployment", source="template")
    registry.reference(rollback, kind="ReplicaSet", name="web-5d8f", source="replicaset-history", active=False)
    registry.reference(scaled_down_dc, kind="ReplicationController", name="web-3", source="replicaset-history",
                       active=False)
    registry.reference(None, kind="Pod", name="external", source="pod")        # an unresolvable tag names nothing
    names = held(registry)
    assert names[running] == [WORKLOAD]
    assert names[rollback] == [ROLLBACK_TARGET]
    assert names[scaled_down_dc] == [ROLLBACK_TARGET]
    assert names[unreferenced] == []


def test_build_inputs_are_kept():
    registry = Registry()
    builder, configured = registry.image("builder-base"), registry.image("config-base")
    registry.reference(builder, kind="Build", name="web-7", source="build", active=False)
    registry.reference(configured, kind="BuildConfig", name="web", source="buildconfig")
    names = held(registry)
    assert names[builder] == [BUILD_INPUT]
    assert names[configured] == [BUILD_INPUT]


def test_a_suspended_cronjob_keeps_its_pinned_image_and_says_so():
    registry = Registry()
    pinned = registry.image("quarterly-report")
    registry.reference(pinned, kind="CronJob", name="report-quarterly", source="cronjob", active=False)
    assert held(registry)[pinned] == [SUSPENDED_CRONJOB]


def test_images_of_dr_namespaces_are_kept_and_named_apart():
    registry = Registry()
    registry.namespace("shop-dr", labels={"env": "prod", "dr": "true"})
    registry.namespace("shop", labels={"env": "prod"})
    standby = registry.image("standby", repository="shop/web")
    scaled_down_elsewhere = registry.image("scaled-down")
    registry.reference(standby, namespace="shop-dr", kind="Deployment", source="template", active=False)
    registry.reference(scaled_down_elsewhere, namespace="shop", kind="Deployment", source="template", active=False)
    names = held(registry)
    assert names[standby] == [DR_DEPLOYMENT]
    assert names[scaled_down_elsewhere] == [WORKLOAD]


def test_protected_tag_patterns_apply_per_environment_to_the_current_revision():
    registry = Registry()
    registry.namespace("shop-prod", labels={"env": "prod"})
    registry.namespace("shop-dev", labels={"env": "dev"})
    release = registry.image("release")
    previous_prod = registry.image("previous-prod")
    dev_release = registry.image("dev-release")
    registry.tag(release, "v1.4.2", namespace="shop-prod")
    registry.tag(release, "prod", namespace="shop-prod")
    registry.tag(previous_prod, "prod", namespace="shop-prod", revision=1)
    registry.tag(dev_release, "v1.4.3", namespace="shop-dev")
    names = held(registry, protected_tag_patterns={"prod": [r"^v?\d+\.\d+\.\d+$", "^prod$"]})
    assert names[release] == [PROTECTED_TAG]
    assert names[previous_prod] == []          # history of a moving tag: the rule is about what it names now
    assert names[dev_release] == []


def test_star_patterns_apply_in_every_environment():
    registry = Registry()
    registry.namespace("shop-dev", labels={"env": "dev"})
    golden = registry.image("golden")
    registry.tag(golden, "golden", namespace="shop-dev")
    assert held(registry, protected_tag_patterns={"*": ["^golden$"]})[golden] == [PROTECTED_TAG]


def test_a_legal_hold_on_a_namespace_keeps_every_revision_and_every_image_stored_there():
    registry = Registry()
    registry.namespace("audit", labels={"env": "prod"}, annotations={"registry-lifecycle/legal-hold": "case-17"})
    old_revision = registry.image("old", repository="audit/ledger")
    untagged = registry.image("untagged", repository="audit/ledger")
    elsewhere = registry.image("elsewhere", repository="shop/web")
    registry.tag(old_revision, "latest", namespace="audit", stream="ledger", revision=9)
    registry.tag(elsewhere, "latest", revision=9)
    names = held(registry)
    assert names[old_revision] == [LEGAL_HOLD]
    assert names[untagged] == [LEGAL_HOLD]
    assert names[elsewhere] == []


def test_a_legal_hold_on_one_imagestream_keeps_only_that_stream():
    registry = Registry()
    held_image, sibling = registry.image("held", repository="shop/ledger"), registry.image("sibling")
    registry.tag(held_image, "latest", stream="ledger", revision=5)
    registry.tag(sibling, "latest", stream="web", revision=5)
    names = held(registry, imagestream_annotations={"shop/ledger": {"registry-lifecycle/legal-hold": "case-18"}})
    assert names[held_image] == [LEGAL_HOLD]
    assert names[sibling] == []


def test_children_of_a_kept_index_are_kept_but_a_kept_child_does_not_keep_its_index():
    registry = Registry()
    amd64, arm64 = registry.image("amd64"), registry.image("arm64", architecture="arm64")
    kept_index = registry.index("index-kept", [amd64, arm64], repository="base/ubi")
    registry.tag(kept_index, "latest", namespace="base", stream="ubi")
    old_child = registry.image("old-amd64", repository="other/app")
    old_index = registry.index("index-old", [old_child], repository="other/app")
    registry.reference(old_child, kind="Pod", name="pinned-by-platform", source="pod")
    names = held(registry, keep_tag_revisions=1)
    assert names[amd64] == [INDEX_CHILD] and names[arm64] == [INDEX_CHILD]
    assert names[old_child] == [WORKLOAD]
    assert names[old_index] == []


def test_a_child_that_another_kept_index_of_its_repository_may_list_is_held():
    """images.index_digest names one index per child; another kept index may list it too."""
    registry = Registry()
    shared = registry.image("shared-amd64")
    old_index = registry.index("index-1", [shared])
    new_arm = registry.image("new-arm64", architecture="arm64")
    new_index = registry.index("index-2", [new_arm])
    registry.tag(new_index, "latest")
    registry.tag(old_index, "latest", revision=1)
    names = held(registry, keep_tag_revisions=1)
    assert names[old_index] == []
    assert names[shared] == [MAYBE_INDEX_CHILD]


def test_referrers_of_kept_images_are_kept_by_subject_or_by_sig_tag():
    registry = Registry()
    release, retired = registry.image("release"), registry.image("retired")
    registry.tag(release, "prod")
    by_subject = registry.signature("sbom-of-release", release)
    by_tag = registry.signature("sig-of-release", release, by_tag=True)
    retired_signature = registry.signature("sig-of-retired", retired)
    names = held(registry, keep_tag_revisions=1)
    assert names[by_subject] == [REFERRER]
    assert REFERRER in names[by_tag]
    assert names[retired_signature] == []


def test_a_kept_signature_does_not_keep_its_subject():
    registry = Registry()
    subject = registry.image("subject")
    signature = registry.signature("sig", subject)
    registry.reference(signature, kind="Pod", name="odd", source="pod")
    names = held(registry)
    assert names[signature] == [WORKLOAD]
    assert names[subject] == []


def test_protections_propagate_to_a_fixed_point():
    """A kept index keeps its child, which keeps its signature, which keeps its attestation."""
    registry = Registry()
    child = registry.image("child")
    index = registry.index("index", [child])
    signature = registry.signature("sig-of-child", child)
    attestation = registry.signature("att-of-sig", signature)
    registry.tag(index, "stable")
    names = held(registry, keep_tag_revisions=1)
    assert names[child] == [INDEX_CHILD]
    assert names[signature] == [REFERRER]
    assert names[attestation] == [REFERRER]


def test_referrers_go_with_their_subject_unless_held_on_their_own():
    registry = Registry()
    subject = registry.image("subject")
    sbom = registry.signature("sbom", subject)
    sig_by_tag = registry.signature("sig", subject, by_tag=True)
    att_of_sbom = registry.signature("att", sbom)
    pinned = registry.signature("pinned", subject)
    snapshot = registry.frames()
    followers = ManifestGraph(snapshot.images, snapshot.tags).going_with([subject], held=[pinned])
    assert set(followers["digest"]) == {sbom, sig_by_tag, att_of_sbom}
    assert dict(zip(followers["digest"], followers["parent"]))[att_of_sbom] == sbom


def test_an_index_child_goes_with_its_index_only_when_every_listing_index_goes():
    registry = Registry()
    shared = registry.image("shared")
    first, second = registry.index("first", [shared]), registry.index("second", [])
    listing = pd.DataFrame({"index_digest": [first, second], "child_digest": [shared, shared]})
    graph = ManifestGraph(registry.frames().images, index_children=listing)
    assert graph.going_with([first]).empty
    assert list(graph.going_with([first, second])["digest"]) == [shared]


def test_namespace_metadata_reads_the_namespaces_dataset():
    frame = contract_frame("namespaces", [{"namespace": "shop-dr", "labels": '{"dr": "true", "env": "prod"}',
                                           "annotations": "{}"}])
    assert namespace_metadata(frame) == {"shop-dr": {"labels": {"dr": "true", "env": "prod"}, "annotations": {}}}


def test_every_image_gets_a_row_even_without_protection():
    registry = Registry()
    images = [registry.image(f"img-{n}") for n in range(3)]
    assert set(held(registry)) == set(images)
    assert digest("img-0") in held(registry)
