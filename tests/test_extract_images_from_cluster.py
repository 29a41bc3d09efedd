"""`sources.registry.images_from_cluster`: images and layers read from the cluster's Image objects,
as `oc adm prune images` reads them, with the registry asked only about what they do not describe.
On the sandbox it must give the registry path's snapshot, except what the Image API cannot say."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from registry_lifecycle.config import load_policy, policy_with
from registry_lifecycle.lake import Lake
from registry_lifecycle.pipeline import Endpoints, run_extract
from registry_lifecycle.sandbox import Sandbox
from registry_lifecycle.sources.described_images import OCI_EMPTY_CONFIG, DescribedImages
from registry_lifecycle.sources.registry import DOCKER_MANIFEST, OCI_INDEX

DIGEST = "sha256:" + "a" * 64
LAYER = "sha256:" + "b" * 64
CONFIG = "sha256:" + "c" * 64
CREATED = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory):
    """The same tiny sandbox day extracted through the registry and through the cluster's Image objects."""
    tmp = tmp_path_factory.mktemp("from-cluster")
    with Sandbox(seed=7, scale="tiny") as sandbox:
        endpoints = Endpoints.from_sandbox(sandbox)
        day = sandbox.world.until.astimezone(timezone.utc).date()
        results = {}
        for mode in ("registry", "cluster", "cluster-warm"):
            document = sandbox.policy_document()
            document["sources"]["registry"] = {"images_from_cluster": mode != "registry"}
            lake = Lake(str(tmp / f"lake-{mode}"))
            cache = tmp / ("cache-cluster" if mode.startswith("cluster") else "cache-registry")
            outcome = run_extract(day, endpoints, policy_with(load_policy(), document), lake, run_id=f"run-{mode}",
                                  cache_dir=cache, accept_shrink=True)
            results[mode] = (lake.read("images", day).set_index("digest").sort_index(),
                             lake.read("layers", day), outcome.summaries["registry"]["requests"])
    return results


def test_images_are_the_registry_paths_except_os(both_paths):
    registry, cluster = both_paths["registry"][0], both_paths["cluster"][0]
    assert list(cluster.index) == list(registry.index)
    columns = [c for c in registry.columns if c != "os"]
    pd.testing.assert_frame_equal(cluster[columns], registry[columns])
    described = cluster["os"].isna()
    assert described.sum() > 100, "most images must be described by the cluster"
    assert (cluster.loc[~described, "os"] == registry.loc[~described, "os"]).all()


def test_layers_are_the_registry_paths_except_unread_manifest_blobs(both_paths):
    registry, cluster = both_paths["registry"][1], both_paths["cluster"][1]
    images = both_paths["cluster"][0]
    described = set(images.index[images["os"].isna() & both_paths["registry"][0]["os"].notna()])
    assert described
    expected = registry[~((registry.position == -2) & registry.image_digest.isin(described))]
    key = ["image_digest", "position"]
    pd.testing.assert_frame_equal(cluster.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True))


def test_the_registry_is_asked_only_what_the_cluster_does_not_describe(both_paths):
    requests = both_paths["cluster"][2]
    assert set(requests) <= {"manifest_get", "token"}
    assert 0 < requests["manifest_get"] < both_paths["registry"][2]["manifest_get"] / 4
    warm = both_paths["cluster-warm"][2]
    assert warm.get("manifest_get", 0) == 0


def _described(**changes) -> DescribedImages:
    row = {"digest": DIGEST, "media_type": DOCKER_MANIFEST, "config_digest": CONFIG, "size_bytes": 150,
           "created_at": CREATED, "architecture": "amd64", "labels": '{"a":"b"}',
           "layers": f'[["{LAYER}",100,"application/vnd.docker.image.rootfs.diff.tar.gzip"]]'}
    frame = pd.DataFrame([{**row, **changes}])
    frame["size_bytes"] = frame["size_bytes"].astype("Int64")
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return DescribedImages.from_image_objects(frame)


def test_an_image_object_without_what_the_snapshot_needs_is_left_to_the_registry():
    complete = _described()
    assert DIGEST in complete
    assert complete.layer_rows(DIGEST) == [(CONFIG, 50, -1), (LAYER, 100, 0)]
    assert complete.image_fields(DIGEST) == {"media_type": DOCKER_MANIFEST, "size_bytes": 150, "config_digest": CONFIG,
                                             "created_at": CREATED, "architecture": "amd64", "os": None,
                                             "labels": '{"a":"b"}'}
    # An index's size is its manifest's length; an artifact's subject is only in its manifest;
    # an imported image may carry no metadata; a Size below its layers is not to be trusted.
    assert DIGEST not in _described(media_type=OCI_INDEX, config_digest=None, size_bytes=None, layers="[]")
    assert DIGEST not in _described(config_digest=OCI_EMPTY_CONFIG)
    assert DIGEST not in _described(size_bytes=None)
    assert DIGEST not in _described(layers=None)
    assert DIGEST not in _described(size_bytes=99)
    assert DIGEST not in _described(layers='[["sha256:short",100,"x"]]')
    # Go's zero time is no creation time; an object without labels has none.
    assert _described(created_at=datetime(1, 1, 1, tzinfo=timezone.utc), labels=None).image_fields(DIGEST)[
        "created_at"] is None
    assert _described(labels=None).image_fields(DIGEST)["labels"] == "{}"
