"""The plan as skopeo, oc-mirror and the cluster read it: parsed back, and checked against the plan."""
from __future__ import annotations

import yaml
from registry_lifecycle.mirror.exports import (
    digest_mirror_sets,
    imageset_config,
    skopeo_sync,
    write_exports,
)
from registry_lifecycle.mirror.plan import KEEP, MIRROR, make_plan
from registry_lifecycle.mirror.target_state import TargetState

from tests.mirror.worlds import SOURCE, policy, standard_world


def planned():
    world, cases = standard_world()
    settings = policy()
    # The hot image is held already (kept), the rest is decided by the plan.
    state = TargetState(present={"eu-west": frozenset({("team-a-staging/api", cases["hot"])}), "dr": frozenset()})
    return make_plan(world.inputs(), settings, state), settings, cases


def wanted_on(plan, target: str) -> set[tuple[str, str]]:
    lines = plan.lines[(plan.lines["target"] == target) & plan.lines["action"].isin([MIRROR, KEEP])]
    return {(repository, digest) for digest, repositories in zip(lines["digest"], lines["repositories"])
            for repository in repositories.split(",")}


def test_skopeo_sync_yaml_lists_what_the_plan_wants_on_the_target_by_digest():
    plan, settings, cases = planned()
    eu_west = settings.mirror.targets[0]
    text = skopeo_sync(plan, settings, eu_west)
    document = yaml.safe_load(text)
    assert list(document) == [SOURCE]
    images = document[SOURCE]["images"]
    listed = {(repository, digest) for repository, digests in images.items() for digest in digests}
    assert listed == wanted_on(plan, "eu-west")
    assert (("team-a-staging/api", cases["hot"])) in listed            # kept lines are part of the wanted state
    assert all(digest.startswith("sha256:") for _, digest in listed)
    assert cases["cold"] not in {digest for _, digest in listed}       # skipped lines are not
    assert document[SOURCE]["tls-verify"] is True
    assert "--preserve-digests" in text and "mirror.eu-west-1.example.com" in text


def test_the_imageset_configuration_is_oc_mirror_v2_with_the_same_images():
    plan, settings, _ = planned()
    dr = settings.mirror.targets[1]
    document = yaml.safe_load(imageset_config(plan, settings, dr))
    assert document["kind"] == "ImageSetConfiguration" and document["apiVersion"] == "mirror.openshift.io/v2alpha1"
    names = {entry["name"] for entry in document["mirror"]["additionalImages"]}
    assert names == {f"{SOURCE}/{repository}@{digest}" for repository, digest in wanted_on(plan, "dr")}
    assert names, "the DR rule must have planned something for the dr target"


def test_each_remote_cluster_gets_an_image_digest_mirror_set_pointing_at_its_regions_target():
    plan, settings, _ = planned()
    documents = {cluster: yaml.safe_load(text) for cluster, text in digest_mirror_sets(plan, settings).items()}
    assert set(documents) == {"nonprod"}       # prod-east is in the source region and has no target there
    idms = documents["nonprod"]
    assert idms["apiVersion"] == "config.openshift.io/v1" and idms["kind"] == "ImageDigestMirrorSet"
    assert idms["metadata"]["annotations"]["registry-lifecycle.io/mirror-plan-id"] == plan.plan_id
    entries = {entry["source"]: entry for entry in idms["spec"]["imageDigestMirrors"]}
    repositories = {repository for repository, _ in wanted_on(plan, "eu-west")}
    assert set(entries) == {f"{SOURCE}/{repository}" for repository in repositories}
    for repository in repositories:
        entry = entries[f"{SOURCE}/{repository}"]
        assert entry["mirrors"] == [f"mirror.eu-west-1.example.com/{repository}"]
        assert entry["mirrorSourcePolicy"] == "AllowContactingSource"


def test_a_repository_prefix_is_applied_in_every_export(tmp_path):
    plan, settings, _ = planned()
    written = {path.name: path for path in write_exports(plan, settings, tmp_path)}
    assert {"skopeo-sync-eu-west.yaml", "skopeo-sync-dr.yaml", "imageset-config-eu-west.yaml",
            "imageset-config-dr.yaml", "idms-nonprod.yaml", "plan.md", "plan-lines.csv"} <= set(written)
    assert "dr.us-west-2.example.com/dr" in written["skopeo-sync-dr.yaml"].read_text()
    assert plan.plan_id in written["plan.md"].read_text()
    for name, path in written.items():
        if name.endswith(".yaml"):
            assert yaml.safe_load(path.read_text()), f"{name} is empty or not YAML"
