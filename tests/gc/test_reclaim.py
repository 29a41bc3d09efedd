"""Bytes freed: only blobs no kept manifest references count, shared layers once (invariant 7)."""
from __future__ import annotations

import pandas as pd

from registry_lifecycle.gc.reclaim import MANIFEST_POSITION, BlobGraph, Reclaim, reclaim, unique_bytes

from .registry_frames import MiB, Registry, digest

BASE = 80 * MiB


def two_builds_on_one_base() -> tuple[Registry, str, str, str]:
    registry = Registry()
    first = registry.image("first", layers={"base": BASE, "first-code": 5 * MiB}, config=1_000)
    second = registry.image("second", layers={"base": BASE, "second-code": 7 * MiB}, config=2_000)
    unrelated = registry.image("unrelated", layers={"other-base": 60 * MiB}, config=500)
    return registry, first, second, unrelated


def test_a_shared_base_layer_is_counted_once():
    registry, first, second, _ = two_builds_on_one_base()
    frames = registry.frames()
    result = reclaim(frames.images, frames.layers, [first, second])
    assert result.honest_bytes == BASE + 5 * MiB + 7 * MiB + 1_000 + 2_000
    assert result.naive_bytes == 2 * BASE + 5 * MiB + 7 * MiB + 1_000 + 2_000
    assert result.blobs_freed == 5
    assert result.shared_bytes_kept == 0


def test_a_layer_a_kept_image_still_uses_is_not_freed():
    registry, first, second, _ = two_builds_on_one_base()
    frames = registry.frames()
    result = reclaim(frames.images, frames.layers, [first])
    assert result == Reclaim(honest_bytes=5 * MiB + 1_000, naive_bytes=BASE + 5 * MiB + 1_000,
                             shared_bytes_kept=BASE, blobs_freed=2)


def test_config_blobs_count_and_a_shared_config_counts_once():
    registry = Registry()
    first = registry.image("first", layers={"code-1": 100}, config=3_000)
    second = registry.image("second", layers={"code-2": 100}, config=3_000)
    frames = registry.frames()
    shared_config = digest("first/config")
    frames.layers.loc[frames.layers["image_digest"] == second, "layer_digest"] = \
        frames.layers.loc[frames.layers["image_digest"] == second, "layer_digest"].replace(digest("second/config"),
                                                                                           shared_config)
    assert reclaim(frames.images, frames.layers, [first]).honest_bytes == 100
    assert reclaim(frames.images, frames.layers, [first, second]).honest_bytes == 3_000 + 200


def test_a_deleted_index_frees_its_own_manifest_and_its_children():
    registry = Registry()
    amd64 = registry.image("amd64", layers={"amd64-os": 70 * MiB}, config=900)
    arm64 = registry.image("arm64", layers={"arm64-os": 68 * MiB}, config=800, architecture="arm64")
    index = registry.index("index", [amd64, arm64], size=750)
    frames = registry.frames()
    result = reclaim(frames.images, frames.layers, [index])
    assert result.honest_bytes == 750 + 70 * MiB + 900 + 68 * MiB + 800
    assert result.naive_bytes == 750 + 70 * MiB + 900 + 68 * MiB + 800


def test_children_another_kept_index_lists_are_not_freed():
    registry = Registry()
    shared = registry.image("shared-amd64", layers={"amd64-os": 70 * MiB}, config=900)
    old_arm = registry.image("old-arm64", layers={"old-arm": 50 * MiB}, config=800, architecture="arm64")
    new_arm = registry.image("new-arm64", layers={"new-arm": 51 * MiB}, config=700, architecture="arm64")
    old_index = registry.index("index-old", [shared, old_arm], size=600)
    new_index = registry.index("index-new", [new_arm], size=650)
    frames = registry.frames()
    listing = pd.DataFrame({"index_digest": [old_index, old_index, new_index, new_index],
                            "child_digest": [shared, old_arm, shared, new_arm]})
    exact = reclaim(frames.images, frames.layers, [old_index], index_children=listing)
    assert exact.honest_bytes == 600 + 50 * MiB + 800
    # Without the full listing the snapshot cannot tell, so no child of the repository's kept index goes.
    presumed = reclaim(frames.images, frames.layers, [old_index])
    assert presumed.honest_bytes == 600


def test_a_child_kept_on_its_own_stays_when_its_index_goes():
    registry = Registry()
    amd64 = registry.image("amd64", layers={"amd64-os": 70 * MiB}, config=900)
    index = registry.index("index", [amd64], size=700)
    frames = registry.frames()
    assert reclaim(frames.images, frames.layers, [index], held=[amd64]).honest_bytes == 700


def test_referrers_go_with_their_subject():
    registry = Registry()
    subject = registry.image("subject", layers={"code": 5 * MiB}, config=1_000)
    registry.signature("sbom", subject)
    frames = registry.frames()
    assert reclaim(frames.images, frames.layers, [subject]).honest_bytes == 5 * MiB + 1_000 + 300 + 2


def test_manifest_rows_in_layers_are_counted():
    """Distribution's GC frees the manifest blob too: bytes freed = manifest + config + unique layers."""
    registry = Registry()
    image = registry.image("image", layers={"code": 5 * MiB}, config=1_000)
    frames = registry.frames()
    manifest_row = pd.DataFrame([{"image_digest": image, "layer_digest": image, "size_bytes": 1_432,
                                  "position": MANIFEST_POSITION}]).astype(frames.layers.dtypes.to_dict())
    layers = pd.concat([frames.layers, manifest_row], ignore_index=True)
    assert reclaim(frames.images, layers, [image]).honest_bytes == 1_432 + 1_000 + 5 * MiB


def test_unique_bytes_agrees_with_reclaim():
    registry, first, second, unrelated = two_builds_on_one_base()
    frames = registry.frames()
    doomed = frames.images[frames.images["digest"].isin([first, second])]
    kept = frames.images[~frames.images["digest"].isin([first, second])]
    assert unique_bytes(kept, doomed, frames.layers) == reclaim(frames.images, frames.layers,
                                                                [first, second]).honest_bytes


def test_shares_add_up_to_the_honest_total_and_split_shared_layers():
    registry, first, second, unrelated = two_builds_on_one_base()
    frames = registry.frames()
    graph = BlobGraph(frames.images, frames.layers)
    shares = graph.shares([first, second])
    assert int(shares.sum()) == graph.reclaim([first, second]).honest_bytes
    assert shares[first] == BASE // 2 + 5 * MiB + 1_000
    assert shares[second] == BASE // 2 + 7 * MiB + 2_000


def test_exclusive_bytes_are_what_deleting_one_image_alone_frees():
    registry, first, second, unrelated = two_builds_on_one_base()
    frames = registry.frames()
    exclusive = BlobGraph(frames.images, frames.layers).exclusive_bytes()
    for image in (first, second, unrelated):
        assert exclusive[image] == reclaim(frames.images, frames.layers, [image]).honest_bytes


def test_nothing_doomed_frees_nothing():
    registry, *_ = two_builds_on_one_base()
    frames = registry.frames()
    assert reclaim(frames.images, frames.layers, []) == Reclaim(0, 0, 0, 0)
