"""Copies between two real registries (CNCF distribution 2.8, `docker-registry`), over their API.

The source is seeded with what production holds (a base layer shared by two repositories, a
cosign-signed image with an SBOM referrer and its OCI 1.1 fallback index, a multi-arch index,
an image whose layer takes several upload chunks). Each copy is then checked on the target
independently of the copier: every manifest fetched by digest and hashed, every blob
downloaded and hashed, every referrer tag resolved.
"""
from __future__ import annotations

import hashlib
import time

import pytest
from registry_lifecycle.mirror.copy import ImageCopier, Throttle
from registry_lifecycle.mirror.verify import verify_unit
from registry_lifecycle.sources.registry import RegistryClient

from tests.fixtures.components import DockerRegistry
from tests.fixtures.oci_seed import (
    MANIFEST_ACCEPT,
    PushedManifest,
    referrers_fallback_tag,
    signature_tag,
)
from tests.mirror.conftest import BIG_LAYER, CHUNK_SIZE, Seeded
from tests.mirror.fault_proxy import Fault

pytestmark = pytest.mark.integration


def client(url: str, **kwargs) -> RegistryClient:
    return RegistryClient(url, max_retries=2, backoff=0.01, timeout=10, **kwargs)


def copier(source: RegistryClient, target: RegistryClient, **kwargs) -> ImageCopier:
    return ImageCopier(source, target, name="eu-west", chunk_size=CHUNK_SIZE, **kwargs)


def assert_served(target: DockerRegistry, manifest: PushedManifest, repository: str | None = None) -> None:
    """Pull it from the target like a runtime would, hashing everything, children included."""
    repository = repository or manifest.repository
    with target.client() as http:
        response = http.get(f"/v2/{repository}/manifests/{manifest.digest}", headers={"Accept": MANIFEST_ACCEPT})
        assert response.status_code == 200, f"{repository}@{manifest.digest}: HTTP {response.status_code}"
        assert "sha256:" + hashlib.sha256(response.content).hexdigest() == manifest.digest
        for blob in manifest.blobs:
            got = http.get(f"/v2/{repository}/blobs/{blob.digest}", follow_redirects=True)
            assert got.status_code == 200 and "sha256:" + hashlib.sha256(got.content).hexdigest() == blob.digest
    for child in manifest.children:
        assert_served(target, child, repository)


def tag_digest(target: DockerRegistry, repository: str, tag: str) -> str | None:
    with target.client() as http:
        response = http.head(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


def test_a_signed_image_arrives_with_its_signature_and_sbom_under_the_same_digests(
        seeded_source: Seeded, source_registry: DockerRegistry, target_registry: DockerRegistry):
    v2 = seeded_source.find("team-a/frontend", "v2")
    signature = next(m for m in seeded_source.registry.manifests if m.subject == v2.digest and m.tags)
    fallback = seeded_source.find("team-a/frontend", referrers_fallback_tag(v2.digest))
    with client(source_registry.url) as source, client(target_registry.url) as target:
        result = copier(source, target).copy("team-a/frontend", v2.digest, ["team-a/frontend"])
        assert not result.already_present
        for manifest in (v2, signature, fallback):
            assert_served(target_registry, manifest)
        assert tag_digest(target_registry, "team-a/frontend", signature_tag(v2.digest)) == signature.digest
        assert tag_digest(target_registry, "team-a/frontend", referrers_fallback_tag(v2.digest)) == fallback.digest
        manifests, _, problems = verify_unit(source, target, "team-a/frontend", v2.digest, ["team-a/frontend"],
                                                 deep=True)
        assert (problems, manifests) == ([], 4)       # image, signature, fallback index, SBOM
        again = copier(source, target).copy("team-a/frontend", v2.digest, ["team-a/frontend"])
        assert again.already_present, again.detail()


def test_a_multi_arch_index_arrives_with_every_child(seeded_source: Seeded, source_registry: DockerRegistry,
                                                      target_registry: DockerRegistry):
    tools = seeded_source.find("platform/tools", "1.0")
    with client(source_registry.url) as source, client(target_registry.url) as target:
        result = copier(source, target).copy("platform/tools", tools.digest, ["mirrors/platform/tools"])
    assert result.stats.manifests_put == 3
    assert_served(target_registry, tools, "mirrors/platform/tools")


def test_a_blob_the_target_holds_elsewhere_is_mounted_not_uploaded(seeded_source: Seeded,
                                                                    source_registry: DockerRegistry,
                                                                    target_registry: DockerRegistry):
    frontend, backend = seeded_source.find("team-a/frontend", "v1"), seeded_source.find("team-b/backend", "v1")
    base = seeded_source.registry.shared_base
    with client(source_registry.url) as source, client(target_registry.url) as target:
        copy = copier(source, target)
        copy.copy("team-a/frontend", frontend.digest, ["team-a/frontend"])
        second = copy.copy("team-b/backend", backend.digest, ["team-b/backend", "team-b-prod/backend"])
    assert second.stats.blobs_mounted >= 1 + len(backend.blobs)        # the base here, everything in the 2nd repo
    assert second.stats.bytes_uploaded == sum(blob.size for blob in backend.blobs) - base.size
    for repository in ("team-b/backend", "team-b-prod/backend"):
        assert_served(target_registry, backend, repository)


def test_a_large_blob_goes_in_chunks_and_a_source_cut_resumes_at_the_last_chunk(
        seeded_source: Seeded, source_registry: DockerRegistry, target_registry: DockerRegistry, proxy_factory):
    big = seeded_source.big
    layer = big.layers[0]
    assert layer.size == BIG_LAYER > 3 * CHUNK_SIZE
    proxy = proxy_factory(source_registry)
    cut = proxy.add(Fault("cut_response", method="GET", path=f"/blobs/{layer.digest}$",
                          after_bytes=2 * CHUNK_SIZE + 1000))
    with client(proxy.url) as source, client(target_registry.url) as target:
        result = copier(source, target).copy("team-c/big", big.digest, ["team-c/big"])
    assert cut.fired == 1
    assert result.stats.uploads_resumed == 1 and result.stats.uploads_restarted == 0
    ranges = [path for method, path in proxy.requests if method == "GET" and layer.digest in path]
    assert len(ranges) == 2          # the first read, and one resumed from the acknowledged chunks
    assert_served(target_registry, big)


def test_a_target_cut_mid_upload_restarts_the_blob_and_still_stores_the_right_bytes(
        seeded_source: Seeded, source_registry: DockerRegistry, target_registry: DockerRegistry, proxy_factory):
    big = seeded_source.big
    proxy = proxy_factory(target_registry)
    cut = proxy.add(Fault("cut_request", method="PATCH", path=r"/blobs/uploads/", after_bytes=CHUNK_SIZE // 2))
    with client(source_registry.url) as source, client(proxy.url) as target:
        result = copier(source, target).copy("team-c/big", big.digest, ["team-c/big"])
    assert cut.fired == 1
    # distribution appends whatever a broken PATCH carried: its session cannot resume, so the blob restarts.
    assert result.stats.uploads_restarted == 1
    assert_served(target_registry, big)


def test_the_bandwidth_limit_paces_the_copy(seeded_source: Seeded, source_registry: DockerRegistry,
                                             target_registry: DockerRegistry):
    big = seeded_source.big
    total = sum(blob.size for blob in big.blobs)
    rate = 512 * 1024
    with client(source_registry.url) as source, client(target_registry.url) as target:
        started = time.monotonic()
        copier(source, target, throttle=Throttle(rate)).copy("team-c/big", big.digest, ["team-c/big"])
        elapsed = time.monotonic() - started
    # A full bucket lets the first second's worth through at once; the rest waits for tokens.
    assert elapsed >= (total - rate) / rate * 0.95, f"{total:,} bytes in {elapsed:.2f} s at {rate:,} B/s"
