"""Verification after a GC run: kept images are still served whole, removed ones are gone, and the
bytes freed match the prediction. Against the sandbox registry over HTTP, with bearer auth."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from registry_lifecycle.gc.verify import (BLOB_MISSING, BYTES_OFF, KEPT_MISSING, STILL_PRESENT, Verification,
                                          verify_execution)
from registry_lifecycle.sandbox import oci
from registry_lifecycle.sandbox.blobs import BlobStore
from registry_lifecycle.sandbox.clock import SandboxClock
from registry_lifecycle.sandbox.faults import FaultInjector
from registry_lifecycle.sandbox.registry_api import RegistryServer, start_registry_api
from registry_lifecycle.sandbox.registry_content import InMemoryRegistry
from registry_lifecycle.sources.registry import RegistryClient

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PUSHED = T0 + timedelta(days=1)
DELETED_AT = T0 + timedelta(days=9)
MB = 2**20
CREDENTIALS = ("pruner", "verify-secret")


class Content:
    """Images pushed the way CI does: blobs linked into the repository, then the manifest."""

    def __init__(self) -> None:
        self.blobs = BlobStore(seed=3)
        self.registry = InMemoryRegistry(self.blobs)

    def image(self, repository: str, layers: list[tuple[str, int]], *, tags: tuple[str, ...] = (),
              arch: str = "amd64", link: bool = True) -> str:
        config = oci.image_config(architecture=arch, os="linux", created=PUSHED.isoformat(), labels={},
                                  diff_ids=[digest for digest, _ in layers], history_note=f"{repository} {tags}")
        config_digest = self.blobs.add_bytes(config)
        body = oci.image_manifest(oci.OCI_MANIFEST, oci.Descriptor(oci.OCI_CONFIG, config_digest, len(config)),
                                  [oci.Descriptor(oci.OCI_LAYER, digest, size) for digest, size in layers])
        for blob in (config_digest, *(digest for digest, _ in layers)):
            if link:
                self.registry.link_blob(repository, blob)
        return self.registry.push_manifest(repository, body, oci.OCI_MANIFEST, tags, at=PUSHED)

    def layer(self, size: int, salt: str) -> tuple[str, int]:
        return self.blobs.add_synthetic(size, salt), size

    def index(self, repository: str, children: list[str], *, tags: tuple[str, ...]) -> str:
        body = oci.image_index(oci.OCI_INDEX, [
            oci.Descriptor(oci.OCI_MANIFEST, child, len(self.registry.manifest(repository, child, PUSHED).body),
                           platform={"architecture": arch, "os": "linux"})
            for child, arch in zip(children, ("amd64", "arm64"))])
        return self.registry.push_manifest(repository, body, oci.OCI_INDEX, tags, at=PUSHED)


@dataclass
class Scene:
    content: Content
    server: RegistryServer
    kept_untagged: str          # an older revision no tag reaches
    removed: pd.DataFrame       # what a GC run removed: repository, digest, bytes

    def client(self) -> RegistryClient:
        return RegistryClient(self.server.url, username=CREDENTIALS[0], password=CREDENTIALS[1], backoff=0.01)

    def verify(self, removed: pd.DataFrame | None = None, **options) -> Verification:
        kept = pd.DataFrame({"repository": ["team-a/api"], "digest": [self.kept_untagged]})
        with self.client() as client:
            return verify_execution(client, self.removed if removed is None else removed,
                                    kept=options.pop("kept", kept), **options)


@pytest.fixture
def scene() -> Iterator[Scene]:
    """team-a/api: v1 (tagged) and an untagged older build kept, v2 removed; all share a base
    layer. team-a/multi: a kept multi-arch index, and an old child nobody lists, removed."""
    content = Content()
    base = content.layer(2 * MB + 1, "base")
    content.image("team-a/api", [base, content.layer(MB, "v1")], tags=("v1",))
    older = content.image("team-a/api", [base, content.layer(MB + 5, "v0")])
    v2 = content.image("team-a/api", [base, content.layer(MB + 9, "v2")], tags=("v2", "latest"))
    amd64 = content.image("team-a/multi", [base, content.layer(MB + 11, "amd64")])
    arm64 = content.image("team-a/multi", [content.layer(MB + 13, "arm64")], arch="arm64")
    content.index("team-a/multi", [amd64, arm64], tags=("latest",))
    legacy = content.image("team-a/multi", [content.layer(MB + 17, "legacy")])
    for repository, digest in (("team-a/api", v2), ("team-a/multi", legacy)):
        assert content.registry.delete_manifest(repository, digest, DELETED_AT)
    clock = SandboxClock(DELETED_AT + timedelta(hours=1), earliest=T0, latest=T0 + timedelta(days=30))
    server = start_registry_api(content.registry, clock, FaultInjector(), credentials=CREDENTIALS)
    removed = pd.DataFrame({"repository": ["team-a/api", "team-a/multi"], "digest": [v2, legacy],
                            "bytes": [MB + 9 + 500, MB + 17 + 500]})
    try:
        yield Scene(content, server, older, removed)
    finally:
        server.stop()


@pytest.mark.parametrize("download_blobs", [False, True], ids=["head", "download"])
def test_kept_images_are_served_whole_and_removed_ones_are_gone(scene: Scene, download_blobs: bool):
    result = scene.verify(download_blobs=download_blobs)
    assert result.ok, result.summary()
    # api: v1 and the untagged older build; multi: the index and both its children.
    assert (result.kept_manifests, result.removed) == (5, 2)
    assert result.blobs == 10          # 4 configs, the base once per repository, 4 own layers
    assert result.repositories == ("team-a/api", "team-a/multi")


def test_a_removed_digest_that_still_resolves_fails(scene: Scene):
    not_deleted = pd.DataFrame({"repository": ["team-a/api"], "digest": [scene.kept_untagged], "bytes": [10]})
    result = scene.verify(pd.concat([scene.removed, not_deleted], ignore_index=True), kept=None)
    assert [(f.kind, f.digest) for f in result.failures] == [(STILL_PRESENT, scene.kept_untagged)]


def test_a_kept_image_that_lost_a_blob_fails(scene: Scene):
    orphan_layer = scene.content.layer(MB + 21, "never-linked")
    scene.content.image("team-a/api", [orphan_layer], tags=("broken",), link=False)
    result = scene.verify()
    missing = {failure.digest for failure in result.failures if failure.kind == BLOB_MISSING}
    assert orphan_layer[0] in missing and not result.ok
    assert "404: the registry does not serve it any more" in result.summary()


def test_a_kept_image_that_no_longer_resolves_fails_and_a_removed_one_is_not_expected(scene: Scene):
    gone = scene.removed["digest"].iloc[0]
    expecting_gone = pd.DataFrame({"repository": ["team-a/api"], "digest": [gone]})
    assert scene.verify(kept=expecting_gone).ok        # the run removed it: it is no longer a kept image
    result = scene.verify(removed=scene.removed.iloc[1:], kept=expecting_gone)
    assert [(failure.kind, failure.digest) for failure in result.failures] == [(KEPT_MISSING, gone)]


def test_bytes_freed_are_held_to_the_prediction(scene: Scene):
    predicted = int(scene.removed["bytes"].sum())
    close = scene.verify(storage_before=10 * MB, storage_after=10 * MB - predicted + 1000)
    assert close.ok and close.freed_bytes == predicted - 1000
    assert close.bytes_error == pytest.approx(-1000 / predicted)
    off = scene.verify(storage_before=10 * MB, storage_after=10 * MB - predicted // 2)
    assert [failure.kind for failure in off.failures] == [BYTES_OFF]
    assert "the plan predicted" in off.summary()
