"""Image objects no tag revision names and no registry tag reaches ("orphans") are still stored, and
are exactly what `oc adm prune images` removes: the snapshot must hold them, or the reclaim
estimate counts their shared blobs as freed. The cluster step stages every Image object with
the repository its dockerImageReference names in this cluster's registry; the registry step
fetches those by digest. Images whose reference points at another registry are not stored here.
"""
from __future__ import annotations

from datetime import date, datetime, time, timezone

import pandas as pd
import pytest
from kubernetes import config as kube_config

from registry_lifecycle.config import load_policy
from registry_lifecycle import datasets
from registry_lifecycle.datasets import IMAGE_OBJECTS, TAGS
from registry_lifecycle.extract import ExtractRequest, extract_cluster, extract_registry
from registry_lifecycle.lake import Lake
from registry_lifecycle.pipeline import Endpoints
from registry_lifecycle.sandbox import Sandbox
from registry_lifecycle.sandbox.scenario import build_world
from registry_lifecycle.sandbox.world import INTERNAL_REGISTRY, PUBLIC_REGISTRY
from registry_lifecycle.sources.openshift import OpenShiftSnapshot, image_object_row, image_objects_frame
from registry_lifecycle.sources.registry import RegistryClient

UNTIL = date(2026, 11, 27)
DAY = date(2026, 11, 26)
RUN_ID = "manual__orphans"
ORPHAN = "sha256:" + "0a" * 32
TAGGED = "sha256:" + "0b" * 32
EXTERNAL = "sha256:" + "0c" * 32
ROUTED = "sha256:" + "0d" * 32


def image_object(digest: str, reference: str) -> dict:
    return {"apiVersion": "image.openshift.io/v1", "kind": "Image", "metadata": {"name": digest},
            "dockerImageReference": reference}


def imagestream(namespace: str, name: str) -> dict:
    return {"metadata": {"namespace": namespace, "name": name},
            "status": {"dockerImageRepository": f"{INTERNAL_REGISTRY}/{namespace}/{name}",
                       "publicDockerImageRepository": f"{PUBLIC_REGISTRY}/{namespace}/{name}", "tags": []}}


IMAGES = [
    image_object(ORPHAN, f"{INTERNAL_REGISTRY}/team-a-dev/billing@{ORPHAN}"),
    image_object(TAGGED, f"{INTERNAL_REGISTRY}/team-a-dev/billing@{TAGGED}"),
    image_object(EXTERNAL, f"quay.io/team-a-dev/billing@{EXTERNAL}"),
    image_object(ROUTED, f"{PUBLIC_REGISTRY}/team-b-dev/search@{ROUTED}"),
]


# ------------------------------------------------------------------------------ the cluster step
def test_image_objects_carry_the_repository_of_the_internal_registry_only():
    snapshot = OpenShiftSnapshot(observed_at=datetime.now(timezone.utc), cluster="c", namespaces=[],
                                 image_rows=[image_object_row(image) for image in IMAGES],
                                 imagestreams=[imagestream("team-a-dev", "billing")], workloads={})
    assert snapshot.internal_hosts() == {INTERNAL_REGISTRY, PUBLIC_REGISTRY}
    frame = snapshot.image_objects_frame().set_index("digest")
    assert list(frame.reset_index().columns) == IMAGE_OBJECTS.schema.names
    assert frame.loc[ORPHAN, "repository"] == "team-a-dev/billing"
    assert frame.loc[ROUTED, "repository"] == "team-b-dev/search"       # the registry's route is the registry
    assert pd.isna(frame.loc[EXTERNAL, "repository"])                    # stored in quay.io, not here
    assert frame.loc[EXTERNAL, "image_ref"] == f"quay.io/team-a-dev/billing@{EXTERNAL}"


def test_without_a_known_registry_host_no_image_object_is_claimed():
    frame = image_objects_frame(IMAGES + [image_object(TAGGED, "not a pull spec")], set())
    assert frame["repository"].isna().all()


# ------------------------------------------------------------------------------ the registry step
class RecordingClient:
    """Stands in for RegistryClient.extract and records what the registry step asks it to fetch."""

    def __init__(self) -> None:
        self.known_digests: dict[str, set[str]] | None = None

    def extract(self, *, known_digests, **_options):
        from registry_lifecycle.sources.registry import ExtractStats, RegistrySnapshot

        self.known_digests = {repo: set(digests) for repo, digests in known_digests.items()}
        empty = [dataset.schema.empty_table().to_pandas()
                 for dataset in (datasets.IMAGES, datasets.LAYERS, datasets.INDEX_CHILDREN)]
        return RegistrySnapshot(*empty, {}, ExtractStats())


def test_the_registry_step_fetches_staged_image_objects_of_its_registry_by_digest(tmp_path):
    lake = Lake(tmp_path / "lake")
    request = ExtractRequest(DAY, RUN_ID)
    tags = pd.DataFrame([("team-a-dev", "billing", "latest", 0, TAGGED, None)], columns=TAGS.schema.names)
    tags["revision"] = tags["revision"].astype("int32")
    tags["created_at"] = pd.to_datetime(tags["created_at"], utc=True)
    lake.write("tags", DAY, RUN_ID, tags)
    snapshot = OpenShiftSnapshot(observed_at=datetime.now(timezone.utc), cluster="c", namespaces=[],
                                 image_rows=[image_object_row(image) for image in IMAGES],
                                 imagestreams=[imagestream("team-a-dev", "billing")], workloads={})
    lake.write("image_objects", DAY, RUN_ID, snapshot.image_objects_frame())

    client = RecordingClient()
    extract_registry(request, client, lake, cache_dir=None)
    assert client.known_digests == {"team-a-dev/billing": {TAGGED, ORPHAN}, "team-b-dev/search": {ROUTED}}


# ------------------------------------------------------------------------------ end to end on the sandbox
def orphan_a_revision(world) -> tuple[str, str]:
    """Drop one older revision of a plain app image from its tag history, the registry keeping its
    link (what a trimmed history or a `status.tags` rewrite leaves): an Image object nothing names."""
    named: dict[str, int] = {}
    for stream in world.streams.values():
        for history in stream.tags.values():
            for item in history.items:
                named[item.digest] = named.get(item.digest, 0) + 1
    subjects = {image.subject for image in world.images.values() if image.subject}
    for repo, stream in sorted(world.streams.items()):
        for _, history in sorted(stream.tags.items()):
            if len(history.items) < 3:
                continue
            item = history.items[0]
            image = world.images[item.digest]
            if (named[item.digest] == 1 and image.kind == "app" and not image.children and image.subject is None
                    and item.digest not in subjects and image.removed is None):
                history.items.remove(item)
                stream.extra_links[item.digest] = item.created
                world._repo_index = None
                return repo, item.digest
    raise AssertionError("the scenario has no plain older revision to orphan")


@pytest.fixture(scope="module")
def orphaned_sandbox():
    world = build_world(seed=7, scale="tiny", days=60, until=UNTIL)
    repository, digest = orphan_a_revision(world)
    with Sandbox(world=world) as sandbox:
        yield sandbox, repository, digest


def test_an_orphan_image_objects_manifest_and_layers_are_extracted(orphaned_sandbox, tmp_path):
    sandbox, repository, orphan = orphaned_sandbox
    sandbox.set_clock(datetime.combine(DAY, time(23, 59, 59), tzinfo=timezone.utc))
    lake = Lake(tmp_path / "lake")
    request = ExtractRequest(DAY, RUN_ID)
    api_client = kube_config.new_client_from_config(config_file=sandbox.endpoints["kubeconfig"])
    try:
        extract_cluster(request, api_client, load_policy(), lake)
    finally:
        api_client.close()
    endpoints = Endpoints.from_sandbox(sandbox)
    with RegistryClient(endpoints.registry_url, username=endpoints.registry_username,
                        password=endpoints.registry_password) as client:
        extract_registry(request, client, lake, cache_dir=None)

    tags = lake.read_staged("tags", DAY, RUN_ID)
    assert orphan not in set(tags.digest), "the test needs an Image no tag revision names"
    objects = lake.read_staged("image_objects", DAY, RUN_ID).set_index("digest")
    assert objects.loc[orphan, "repository"] == repository
    images = lake.read_staged("images", DAY, RUN_ID)
    assert images.loc[images.digest == orphan, "repository"].tolist() == [repository]
    layers = lake.read_staged("layers", DAY, RUN_ID)
    assert (layers.image_digest == orphan).sum() == len(sandbox.world.images[orphan].layers) + 2   # + config, manifest
    stored = set(objects.index[objects.repository.notna()])
    assert stored == set(images.digest), "every Image object of the registry is in the snapshot, and nothing else"
