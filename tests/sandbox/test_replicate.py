"""Scale L is built by replicating simulated teams (`sandbox/replicate.py`). These tests build the
same kind of world, small (20 teams of 2 applications, 10 of them simulated), and check that the
copies are a world of their own: real content hashes the registry serves, Image objects that match
their manifests, no shared identities, and a ground truth about the copies' own digests."""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from registry_lifecycle.sandbox import scenario
from registry_lifecycle.sandbox.replicate import team_of


@pytest.fixture(scope="module")
def replicated():
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(scenario.SCALES, "L", scenario.Scale(teams=20, apps_per_team=2, nodes=8, template_teams=10))
        yield scenario.build_world(seed=7, scale="L")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_bytes(world, digest: str) -> bytes:
    size, chunks = world.blobs.open(digest)
    return b"".join(chunks)


def test_every_team_exists_and_copies_have_their_own_images(replicated):
    teams = {team_of(image.repository) for image in replicated.images.values()} - {None}
    assert teams == set(range(20))
    template_digests = {d for d, image in replicated.images.items() if team_of(image.repository) == 3}
    copy_digests = {d for d, image in replicated.images.items() if team_of(image.repository) == 13}
    assert template_digests and copy_digests
    assert not template_digests & copy_digests


def test_every_tag_is_served_as_a_verified_manifest_with_its_blobs(replicated):
    at = replicated.until
    checked_configs = 0
    for repository in replicated.repositories(at):
        for tag, digest in replicated.tags(repository, at).items():
            manifest = replicated.manifest(repository, tag, at)
            assert manifest is not None, f"{repository}:{tag}"
            assert sha256(manifest.body) == digest
            document = json.loads(manifest.body)
            for descriptor in ([document["config"]] if "config" in document else []) + document.get("layers", []):
                assert replicated.blob(repository, descriptor["digest"], at)[0] == descriptor["size"]
            if "config" in document and team_of(repository) is not None and team_of(repository) >= 10:
                assert sha256(blob_bytes(replicated, document["config"]["digest"])) == document["config"]["digest"]
                checked_configs += 1
    assert checked_configs > 100


def test_a_copied_layer_hashes_to_its_digest(replicated):
    image = next(image for image in replicated.images.values()
                 if team_of(image.repository) == 15 and image.kind == "app")
    digest, size, _ = image.layers[-1]          # the application's own code layer
    data = blob_bytes(replicated, digest)
    assert len(data) == size and sha256(data) == digest


def test_image_objects_match_their_manifests(replicated):
    images = replicated.kube_source("images")
    at = replicated.until
    keys = images.keys(at)
    assert len(keys) > 1000
    for _, name in keys:
        body = images.render("", name, at)
        document = json.loads(replicated.images[name].manifest)
        if "layers" in document:
            assert [(layer["name"], layer["size"]) for layer in body["dockerImageLayers"]] == \
                [(layer["digest"], layer["size"]) for layer in document["layers"]]
            assert body["dockerImageMetadata"]["Id"] == document["config"]["digest"]
            assert body["dockerImageMetadata"]["Size"] == document["config"]["size"] + sum(
                layer["size"] for layer in document["layers"])


def test_objects_have_unique_uids_and_reference_images_that_exist(replicated):
    at = replicated.until
    uids = Counter()
    pod_digests = set()
    for rtype, source in replicated.kube.items():
        for namespace, name in source.keys(at):
            body = source.render(namespace, name, at)
            uids[body["metadata"]["uid"]] += 1
            if rtype.plural == "pods":
                for status in body.get("status", {}).get("containerStatuses", []):
                    pod_digests.add(status["imageID"].rsplit("@", 1)[1])
    assert [uid for uid, count in uids.items() if count > 1] == []
    assert pod_digests and pod_digests <= set(replicated.images)


def test_ground_truth_names_the_copies_own_digests(replicated):
    for category, digests in replicated.truth.categories.items():
        assert digests <= set(replicated.images), category
    rollback = replicated.truth.digests("rollback_target")
    assert any(team_of(replicated.images[d].repository) >= 10 for d in rollback)
    pulled = [d for d, image in replicated.images.items() if team_of(image.repository) == 12
              and replicated.truth.pull_days.get(d)]
    assert pulled


def test_the_replicated_world_is_served_from_until_only(replicated):
    assert replicated.served_from == replicated.until
    assert all(record.day >= replicated.archive_from.isoformat() for record in replicated.pulls)


def test_small_scales_are_simulated_whole():
    world = scenario.build_world(seed=7, scale="tiny", days=30)
    assert world.served_from == world.start
    assert world.archive_from == world.start.date()
