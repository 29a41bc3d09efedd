"""The registry extractor reads a whole registry or fails loudly, and a warm run re-fetches nothing.

Every test but the few that need a registry misbehaving in ways the sandbox cannot (a Link
that loops, a rewritten Docker-Content-Digest, schema 1) talks HTTP to the sandbox registry
on 127.0.0.1, so paging, auth, retries and digest checks run exactly as against production.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry_lifecycle.datasets import IMAGES, LAYERS
from registry_lifecycle.sandbox import oci
from registry_lifecycle.sandbox.blobs import BlobStore
from registry_lifecycle.sandbox.clock import SandboxClock
from registry_lifecycle.sandbox.faults import FaultInjector
from registry_lifecycle.sandbox.registry_api import RegistryServer, start_registry_api
from registry_lifecycle.sandbox.registry_content import InMemoryRegistry
from registry_lifecycle.sources.errors import (SourceForbidden, SourceMalformed, SourceTruncated,
                                               SourceUnavailable)
from registry_lifecycle.sources.registry import ParquetManifestCache, ReferrersCache, RegistryClient, RegistrySnapshot

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=10)
MB = 1024 * 1024
SECRET = "pa55-w0rd-never-logged"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


# ----------------------------------------------------------------------------- building content
@dataclass
class Pushed:
    """A manifest as pushed: what the expected frames are computed from."""

    digest: str
    body: bytes
    media_type: str
    config: tuple[str, int] | None = None          # (digest, size)
    layers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def image_size(self) -> int:
        assert self.config is not None
        return self.config[1] + sum(size for _, size in self.layers)


class Builder:
    """Pushes content the way a CI pipeline does: blobs linked into the repository, then the manifest."""

    def __init__(self) -> None:
        self.blobs = BlobStore(seed=11)
        self.content = InMemoryRegistry(self.blobs)

    def layer(self, size: int, salt: str) -> tuple[str, int]:
        return self.blobs.add_synthetic(size, salt), size

    def image(self, repo: str, layers: list[tuple[str, int]], *, tags: tuple[str, ...] = (),
              media_type: str = oci.OCI_MANIFEST, config: bytes | None = None, arch: str = "amd64",
              labels: dict[str, str] | None = None, created: datetime = T0 + timedelta(days=1),
              at: datetime = T0 + timedelta(days=1)) -> Pushed:
        docker = media_type == oci.DOCKER_MANIFEST
        if config is None:
            config = oci.image_config(architecture=arch, os="linux", created=created.isoformat(),
                                      labels=labels or {}, diff_ids=[digest for digest, _ in layers],
                                      history_note=f"build of {repo}")
        config_digest = self.blobs.add_bytes(config)
        body = oci.image_manifest(
            media_type, oci.Descriptor(oci.DOCKER_CONFIG if docker else oci.OCI_CONFIG, config_digest, len(config)),
            [oci.Descriptor(oci.DOCKER_LAYER if docker else oci.OCI_LAYER, digest, size) for digest, size in layers])
        for blob in (config_digest, *(digest for digest, _ in layers)):
            self.content.link_blob(repo, blob)
        digest = self.content.push_manifest(repo, body, media_type, tags, at=at)
        return Pushed(digest, body, media_type, (config_digest, len(config)), list(layers))

    def index(self, repo: str, children: list[tuple[Pushed, str]], *, tags: tuple[str, ...]) -> Pushed:
        body = oci.image_index(oci.OCI_INDEX, [
            oci.Descriptor(child.media_type, child.digest, len(child.body),
                           platform={"architecture": arch, "os": "linux"})
            for child, arch in children])
        return Pushed(self.content.push_manifest(repo, body, oci.OCI_INDEX, tags, at=T0 + timedelta(days=1)),
                      body, oci.OCI_INDEX)

    def sbom(self, repo: str, subject: Pushed) -> Pushed:
        """An OCI 1.1 referrer: empty config, one SPDX layer, `subject` set, no tag."""
        empty = self.blobs.add_bytes(b"{}")
        payload = json.dumps({"spdxVersion": "SPDX-2.3", "name": subject.digest}).encode()
        payload_digest = self.blobs.add_bytes(payload)
        for blob in (empty, payload_digest):
            self.content.link_blob(repo, blob)
        body = oci.image_manifest(
            oci.OCI_MANIFEST, oci.Descriptor(oci.OCI_EMPTY, empty, 2),
            [oci.Descriptor(oci.SPDX_SBOM, payload_digest, len(payload))],
            subject=oci.Descriptor(subject.media_type, subject.digest, len(subject.body)), artifact_type=oci.SPDX_SBOM)
        digest = self.content.push_manifest(repo, body, oci.OCI_MANIFEST, at=T0 + timedelta(days=2))
        return Pushed(digest, body, oci.OCI_MANIFEST, (empty, 2), [(payload_digest, len(payload))])

    def cosign_signature(self, repo: str, subject: Pushed) -> Pushed:
        """A classic cosign signature: no `subject`, found only through its `sha256-<hex>.sig` tag.
        Its config is what cosign writes: empty architecture and os, Go's zero time, no labels."""
        payload = json.dumps({"critical": {"image": {"docker-manifest-digest": subject.digest},
                                           "type": "cosign container image signature"}, "optional": None}).encode()
        layer = (self.blobs.add_bytes(payload), len(payload))
        config = oci.canonical({"architecture": "", "created": "0001-01-01T00:00:00Z", "os": "",
                                "rootfs": {"type": "layers", "diff_ids": [layer[0]]}, "config": {}})
        tag = "sha256-" + subject.digest.removeprefix("sha256:") + ".sig"
        return self.image(repo, [layer], config=config, tags=(tag,), at=T0 + timedelta(days=2))


@dataclass
class Small:
    """A small registry with every shape the snapshot must get right."""

    builder: Builder
    base: tuple[str, int]
    api: Pushed
    signature: Pushed
    sbom: Pushed
    amd64: Pushed
    arm64: Pushed
    multi: Pushed
    worker: Pushed
    repositories: list[str]


def small_registry() -> Small:
    b = Builder()
    base = b.layer(2 * MB + 3, "base-os")              # shared by every image below
    api = b.image("team-a/api", [base, b.layer(MB + 7, "api")], tags=("v1", "latest"),
                  labels={"app": "api", "version": "1"})
    b.content.push_manifest("mirror/api", api.body, api.media_type, ("api-v1",), at=T0 + timedelta(days=3))
    assert api.config is not None
    b.content.link_blob("mirror/api", api.config[0])
    signature = b.cosign_signature("team-a/api", api)
    sbom = b.sbom("team-a/api", api)
    amd64 = b.image("team-a/multi", [base, b.layer(MB + 11, "multi-amd64")], arch="amd64")
    arm64 = b.image("team-a/multi", [base, b.layer(MB + 13, "multi-arm64")], arch="arm64")
    multi = b.index("team-a/multi", [(amd64, "amd64"), (arm64, "arm64")], tags=("latest",))
    worker = b.image("team-b/worker", [base, b.layer(3 * MB, "worker")], tags=("1.0",),
                     media_type=oci.DOCKER_MANIFEST, labels={"app": "worker"}, created=T0 + timedelta(days=4))
    return Small(b, base, api, signature, sbom, amd64, arm64, multi, worker,
                 ["mirror/api", "team-a/api", "team-a/multi", "team-b/worker"])


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock(NOW, earliest=T0, latest=T0 + timedelta(days=60))


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector()


@pytest.fixture
def serve(clock: SandboxClock, faults: FaultInjector) -> Iterator[Callable[..., RegistryServer]]:
    """Start a sandbox registry for some content; every server started is stopped after the test."""
    started: list[RegistryServer] = []

    def _serve(content: InMemoryRegistry, credentials: tuple[str, str] | None = None) -> RegistryServer:
        server = start_registry_api(content, clock, faults, credentials=credentials)
        started.append(server)
        return server

    yield _serve
    for server in started:
        server.stop()


@pytest.fixture
def small() -> Small:
    return small_registry()


def client_for(server: RegistryServer, **options: Any) -> RegistryClient:
    options.setdefault("backoff", 0.01)
    return RegistryClient(server.url, **options)


def extract(server: RegistryServer, **options: Any) -> RegistrySnapshot:
    wanted = {name: options.pop(name, None) for name in ("cache", "referrers_cache", "tag_digests")}
    with client_for(server, **options) as client:
        return client.extract(**wanted)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts, missing values as None, so that they compare with ==."""
    return [{key: (None if not isinstance(value, (list, dict)) and pd.isna(value) else value)
             for key, value in row.items()} for row in frame.to_dict("records")]


def server_delta(server: RegistryServer, before: dict[str, int]) -> dict[str, int]:
    after = server.endpoint_counts()
    return {endpoint: after.get(endpoint, 0) - before.get(endpoint, 0) for endpoint in after}


# ----------------------------------------------------------------------------- the snapshot
def expected_images(s: Small) -> list[dict[str, Any]]:
    def image(p: Pushed, repository: str, **fields: Any) -> dict[str, Any]:
        assert p.config is not None
        row = {"digest": p.digest, "repository": repository, "media_type": p.media_type, "size_bytes": p.image_size,
               "config_digest": p.config[0], "created_at": None, "architecture": None, "os": None, "labels": None,
               "subject_digest": None, "index_digest": None, "managed": True}
        row.update(fields)
        return row

    day1 = pd.Timestamp(T0 + timedelta(days=1))
    rows = [
        # First repository in sorted order: the mirror holds the same manifest and sorts first.
        image(s.api, "mirror/api", created_at=day1, architecture="amd64", os="linux",
              labels='{"app":"api","version":"1"}'),
        image(s.signature, "team-a/api", labels="{}", subject_digest=s.api.digest),
        image(s.sbom, "team-a/api", subject_digest=s.api.digest),
        image(s.amd64, "team-a/multi", created_at=day1, architecture="amd64", os="linux", labels="{}",
              index_digest=s.multi.digest),
        image(s.arm64, "team-a/multi", created_at=day1, architecture="arm64", os="linux", labels="{}",
              index_digest=s.multi.digest),
        {"digest": s.multi.digest, "repository": "team-a/multi", "media_type": oci.OCI_INDEX,
         "size_bytes": len(s.multi.body), "config_digest": None, "created_at": None, "architecture": None,
         "os": None, "labels": None, "subject_digest": None, "index_digest": None, "managed": True},
        image(s.worker, "team-b/worker", created_at=pd.Timestamp(T0 + timedelta(days=4)), architecture="amd64",
              os="linux", labels='{"app":"worker"}'),
    ]
    return sorted(rows, key=lambda row: row["digest"])


def expected_layers(s: Small) -> list[dict[str, Any]]:
    rows = []
    for p in (s.api, s.signature, s.sbom, s.amd64, s.arm64, s.worker):
        assert p.config is not None
        rows.append({"image_digest": p.digest, "layer_digest": p.digest, "size_bytes": len(p.body), "position": -2})
        rows.append({"image_digest": p.digest, "layer_digest": p.config[0], "size_bytes": p.config[1], "position": -1})
        rows.extend({"image_digest": p.digest, "layer_digest": digest, "size_bytes": size, "position": position}
                    for position, (digest, size) in enumerate(p.layers))
    return sorted(rows, key=lambda row: (row["image_digest"], row["position"]))


def test_full_extraction_produces_the_exact_images_and_layers(small: Small, serve) -> None:
    """Index children, a shared base layer, a cosign signature tag, an OCI referrer found only
    through the referrers API, a Docker v2 image, and one manifest in two repositories: each
    manifest once, every column as the contract defines it."""
    snapshot = extract(serve(small.builder.content))

    assert records(snapshot.images) == expected_images(small)
    assert records(snapshot.layers) == expected_layers(small)
    assert snapshot.tags_by_repo == {
        "mirror/api": {"api-v1": small.api.digest},
        "team-a/api": {"latest": small.api.digest, "v1": small.api.digest,
                       "sha256-" + small.api.digest.removeprefix("sha256:") + ".sig": small.signature.digest},
        "team-a/multi": {"latest": small.multi.digest},
        "team-b/worker": {"1.0": small.worker.digest},
    }
    shared = snapshot.layers[snapshot.layers.layer_digest == small.base[0]]
    assert len(shared) == 4 and shared.image_digest.is_unique, "the base layer is listed once per image using it"


def test_frames_match_the_lake_contracts(small: Small, serve) -> None:
    """The frames convert to the datasets' arrow schemas without a cast, nulls only where allowed."""
    snapshot = extract(serve(small.builder.content))
    for frame, dataset in ((snapshot.images, IMAGES), (snapshot.layers, LAYERS)):
        table = pa.Table.from_pandas(frame, schema=dataset.schema, preserve_index=False)
        assert table.schema.equals(dataset.schema)
        for name in dataset.schema.names:
            if not dataset.schema.field(name).nullable:
                assert table.column(name).null_count == 0, name
    assert snapshot.images.digest.str.fullmatch(r"sha256:[0-9a-f]{64}").all()


def test_the_snapshot_does_not_depend_on_concurrency(small: Small, serve) -> None:
    """Threads finish in any order; attribution (repository, index) must not."""
    server = serve(small.builder.content)
    one, many = extract(server, concurrency=1), extract(server, concurrency=8)
    pd.testing.assert_frame_equal(one.images, many.images)
    pd.testing.assert_frame_equal(one.layers, many.layers)


def test_request_counts_are_reported_per_endpoint(small: Small, serve) -> None:
    """Stats count what was really sent: they agree with the server's own counts."""
    server = serve(small.builder.content)
    snapshot = extract(server)
    served = server.endpoint_counts()
    for endpoint in ("catalog", "tags", "manifest_head", "manifest_get", "blob_get", "referrers"):
        assert snapshot.stats.requests[endpoint] == served.get(endpoint, 0), endpoint
    assert snapshot.stats.requests["manifest_head"] == 6          # one per tag
    assert snapshot.stats.requests["manifest_get"] == 7           # one per distinct manifest
    assert snapshot.stats.requests["blob_get"] == 5               # image configs, not the SBOM's empty one
    assert snapshot.stats.bytes_received > 0


# ----------------------------------------------------------------------------- paging and truncation
def paged_registry(repositories: int, big_repo_tags: int = 1) -> Builder:
    b = Builder()
    for i in range(repositories):
        b.image(f"bulk/app-{i:03d}", [], tags=("latest",))
    if big_repo_tags > 1:
        b.image("bulk/app-000", [], tags=tuple(f"build-{i:03d}" for i in range(big_repo_tags)), arch="arm64")
    return b


def test_catalog_and_tags_are_followed_over_many_pages(serve) -> None:
    server = serve(paged_registry(25, big_repo_tags=30).content)
    with client_for(server, page_size=7) as client:
        catalog = client.catalog()
        assert catalog == [f"bulk/app-{i:03d}" for i in range(25)]
        assert client.stats.requests["catalog"] == 4                 # 7 + 7 + 7 + 4
        tags = client.tags("bulk/app-000")
        assert tags == sorted(["latest", *(f"build-{i:03d}" for i in range(30))])
        assert client.stats.requests["tags"] == 5                    # 31 tags: 7 x 4 + 3
        assert client.stats.truncation_probes == 0, "a short last page needs no probe"
    snapshot = extract(server, page_size=7)
    assert len(snapshot.tags_by_repo) == 25 and len(snapshot.tags_by_repo["bulk/app-000"]) == 31


def test_a_full_last_page_costs_one_probe_not_a_false_alarm(serve) -> None:
    """21 repositories in pages of 7: the third page is full and rightly has no Link."""
    server = serve(paged_registry(21).content)
    with client_for(server, page_size=7) as client:
        assert len(client.catalog()) == 21
        assert client.stats.requests["catalog"] == 4
        assert client.stats.truncation_probes == 1


def test_a_catalog_page_that_lost_its_link_aborts_the_run(serve, faults: FaultInjector) -> None:
    """The second page comes back full but without Link, as a cutting proxy would send it: the
    probe finds more repositories, so the run fails instead of publishing 14 of 25."""
    server = serve(paged_registry(25).content)
    fault = faults.add(api="registry", path=r"^/v2/_catalog$", truncate=True, skip=1, times=1)
    with pytest.raises(SourceTruncated) as raised:
        extract(server, page_size=7)
    assert fault.fired == 1
    message = str(raised.value)
    assert "/v2/_catalog" in message and "bulk/app-014" in message and "nothing was published" in message


def test_a_tags_page_that_lost_its_link_aborts_the_run(serve, faults: FaultInjector) -> None:
    server = serve(paged_registry(3, big_repo_tags=30).content)
    faults.add(api="registry", path=r"^/v2/bulk/app-000/tags/list$", truncate=True, skip=2, times=1)
    with pytest.raises(SourceTruncated, match="/v2/bulk/app-000/tags/list"):
        extract(server, page_size=7)


# ----------------------------------------------------------------------------- auth
def test_bearer_token_auth(small: Small, serve, caplog: pytest.LogCaptureFixture) -> None:
    """The 401 challenge is answered once; after that every repository gets its token before
    its first request, and no credential shows up in logs or reprs."""
    caplog.set_level(logging.DEBUG)
    anonymous = extract(serve(small.builder.content))
    server = serve(small.builder.content, credentials=("robot", SECRET))
    with client_for(server, username="robot", password=SECRET) as client:
        snapshot = client.extract()
        assert SECRET not in repr(client)
    pd.testing.assert_frame_equal(snapshot.images, anonymous.images)
    sent, served = snapshot.stats.requests, server.endpoint_counts()
    assert sent["token"] == served["token"] == 1 + len(small.repositories)      # the catalog, then one per repository
    unauthorized = sum(sent.values()) - sum(served.values())
    assert unauthorized == 1, "only the very first request meets a 401"
    assert SECRET not in caplog.text


def test_an_expired_token_is_renewed(small: Small, serve, clock: SandboxClock) -> None:
    server = serve(small.builder.content, credentials=("robot", SECRET))
    with client_for(server, username="robot", password=SECRET) as client:
        assert client.tags("team-a/api")
        clock.set(NOW + timedelta(minutes=10))       # the sandbox's tokens live 5 minutes
        assert client.tags("team-a/api")
        assert client.stats.requests["token"] == 2


def test_repositories_announced_ahead_share_their_token_requests(serve) -> None:
    """A run that knows its repositories up front (images_from_cluster) asks for their pull
    tokens 25 scopes at a time instead of one request each, and can read every repository."""
    repositories = [f"bulk/app-{i:03d}" for i in range(30)]
    server = serve(paged_registry(len(repositories)).content, credentials=("robot", SECRET))
    with client_for(server, username="robot", password=SECRET) as client:
        client.expect_repositories(repositories)
        assert all(client.tags(repository) == ["latest"] for repository in repositories)
        assert client.stats.requests["token"] == server.endpoint_counts()["token"] == 2     # 25 + 5


def test_wrong_credentials_are_forbidden_without_echoing_them(small: Small, serve) -> None:
    server = serve(small.builder.content, credentials=("robot", "the-real-one"))
    with pytest.raises(SourceForbidden) as raised:
        extract(server, username="robot", password=SECRET)
    assert SECRET not in str(raised.value) and "the-real-one" not in str(raised.value)
    assert "registry-viewer" in str(raised.value)


def test_a_forbidden_list_is_fatal_and_never_retried(small: Small, serve, faults: FaultInjector) -> None:
    """`oc adm prune` warns on a Forbidden list and carries on; this run must stop (invariant 3)."""
    fault = faults.add(api="registry", path=r"^/v2/team-b/worker/tags/list$", status=403, times=None)
    with pytest.raises(SourceForbidden, match="/v2/team-b/worker/tags/list"):
        extract(serve(small.builder.content))
    assert fault.fired == 1


# ----------------------------------------------------------------------------- retries
def test_server_errors_are_retried_until_they_pass(small: Small, serve, faults: FaultInjector) -> None:
    server = serve(small.builder.content)
    baseline = extract(server)
    fault = faults.add(api="registry", method="GET", path=rf"/manifests/{small.multi.digest}$", status=500, times=2)
    snapshot = extract(server)
    assert fault.fired == 2 and snapshot.stats.retries == 2
    pd.testing.assert_frame_equal(snapshot.images, baseline.images)


def test_a_server_that_keeps_failing_is_unavailable_after_the_retries(small: Small, serve,
                                                                     faults: FaultInjector) -> None:
    fault = faults.add(api="registry", method="GET", path=rf"/manifests/{small.multi.digest}$", status=500,
                       times=None)
    with pytest.raises(SourceUnavailable, match="after 3 attempts"):
        extract(serve(small.builder.content), max_retries=2)
    assert fault.fired == 3


def test_retry_after_is_honoured(small: Small, serve, faults: FaultInjector) -> None:
    server = serve(small.builder.content)
    faults.add(api="registry", path=r"^/v2/_catalog$", status=429, retry_after=1, times=1)
    with client_for(server, backoff=0.0) as client:
        started = time.monotonic()
        assert client.catalog() == small.repositories
        assert time.monotonic() - started >= 1.0
        assert client.stats.retries == 1


def test_an_unreachable_registry_is_unavailable() -> None:
    with RegistryClient("http://127.0.0.1:9", max_retries=1, backoff=0.0, timeout=2) as client:
        with pytest.raises(SourceUnavailable, match="connection failed"):
            client.catalog()
        assert client.stats.requests["catalog"] == 2


# ----------------------------------------------------------------------------- verification
def test_a_manifest_that_is_not_json_is_malformed(small: Small, serve, faults: FaultInjector) -> None:
    faults.add(api="registry", method="GET", path=rf"/manifests/{small.worker.digest}$", malformed=True)
    with pytest.raises(SourceMalformed) as raised:
        extract(serve(small.builder.content))
    assert "team-b/worker" in str(raised.value) and small.worker.digest in str(raised.value)


def test_a_manifest_with_duplicate_keys_is_malformed(serve) -> None:
    """Valid for a lenient parser, ambiguous for a strict one: two tools would see two images."""
    b = Builder()
    body = b'{"schemaVersion":2,"mediaType":"' + oci.OCI_MANIFEST.encode() + b'","layers":[],"layers":[],' \
        b'"config":{"mediaType":"' + oci.OCI_CONFIG.encode() + b'","digest":"sha256:' + b"0" * 64 + b'","size":2}}'
    digest = b.content.push_manifest("team-x/odd", body, oci.OCI_MANIFEST, ("v1",), at=T0)
    with pytest.raises(SourceMalformed, match="duplicate key") as raised:
        extract(serve(b.content))
    assert "team-x/odd" in str(raised.value) and digest in str(raised.value)


def test_a_rewritten_manifest_fails_digest_verification(small: Small, serve, faults: FaultInjector) -> None:
    """A proxy re-indents the JSON but keeps the digest header: same document, different bytes."""
    faults.add(api="registry", method="GET", path=rf"/manifests/{small.api.digest}$", truncate=True)
    with pytest.raises(SourceMalformed, match="hashes to") as raised:
        extract(serve(small.builder.content))
    assert small.api.digest in str(raised.value)


# The misbehaviours below are ones the sandbox does not produce, so they come from a mock transport.
def mock_registry(routes: dict[str, Callable[[httpx.Request], httpx.Response]], **options: Any) -> RegistryClient:
    def handle(request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url.path}"
        if key in routes:
            return routes[key](request)
        return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})

    return RegistryClient("https://registry.test", transport=httpx.MockTransport(handle), backoff=0.0, **options)


def test_a_link_that_does_not_advance_is_truncation() -> None:
    def page(request: httpx.Request) -> httpx.Response:      # the same page, for ever
        return httpx.Response(200, json={"repositories": ["a"]},
                              headers={"Link": '</v2/_catalog?last=a&n=1>; rel="next"'})

    with mock_registry({"GET /v2/_catalog": page}, page_size=1) as client:
        with pytest.raises(SourceTruncated, match="does not advance"):
            client.catalog()


def test_a_short_page_with_a_link_is_followed_and_a_registry_ignoring_n_is_complete() -> None:
    def catalog(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("last") == "a":
            return httpx.Response(200, json={"repositories": ["b"]})
        return httpx.Response(200, json={"repositories": ["a"]},
                              headers={"Link": '</v2/_catalog?last=a&n=2>; rel="next"'})

    def tags(request: httpx.Request) -> httpx.Response:            # ignores n and last, as old registries do
        return httpx.Response(200, json={"name": "r", "tags": ["x", "y"]})

    with mock_registry({"GET /v2/_catalog": catalog, "GET /v2/r/tags/list": tags}, page_size=2) as client:
        assert client.catalog() == ["a", "b"]
        assert client.tags("r") == ["x", "y"]
        assert client.stats.truncation_probes == 1               # the full tags page was probed, and is complete


def test_a_link_to_another_host_is_refused() -> None:
    """Following it would send the registry's credentials to that host."""
    def page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"repositories": ["a"]},
                              headers={"Link": '<https://elsewhere.test/v2/_catalog?last=a>; rel="next"'})

    with mock_registry({"GET /v2/_catalog": page}) as client:
        with pytest.raises(SourceMalformed, match="another host"):
            client.catalog()


def test_a_registry_that_renames_a_digest_fails_loudly() -> None:
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    def served(request: httpx.Request) -> httpx.Response:    # the right bytes under another name
        return httpx.Response(200, content=body, headers={"Content-Type": oci.OCI_INDEX,
                                                          "Docker-Content-Digest": "sha256:" + "f" * 64})

    with mock_registry({f"GET /v2/r/manifests/{digest}": served}) as client:
        with pytest.raises(SourceMalformed, match="the registry names it"):
            client.get_manifest("r", digest)


def test_schema1_manifests_are_refused_with_their_own_message() -> None:
    def head(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws",
                                            "Docker-Content-Digest": "sha256:" + "a" * 64})

    with mock_registry({"HEAD /v2/r/manifests/old": head}) as client:
        with pytest.raises(SourceMalformed, match="schema 1"):
            client.resolve("r", "old")


# ----------------------------------------------------------------------------- the manifest cache
def test_a_warm_run_fetches_only_manifests_it_has_never_seen(small: Small, serve, tmp_path: Path) -> None:
    """Unchanged registry: no manifest or blob GET at all. After a push: exactly the new
    manifest and its config. Tags still cost one HEAD each, every run."""
    server = serve(small.builder.content)
    before = server.endpoint_counts()
    cold = extract(server, cache=ParquetManifestCache(tmp_path))
    cold_served = server_delta(server, before)
    assert cold_served["manifest_get"] == 7 and cold_served["blob_get"] == 5

    before = server.endpoint_counts()
    warm = extract(server, cache=ParquetManifestCache(tmp_path))       # a new process would re-open the file
    warm_served = server_delta(server, before)
    assert warm_served["manifest_get"] == 0 and warm_served["blob_get"] == 0
    assert warm_served["manifest_head"] == cold_served["manifest_head"] == 6
    assert warm.stats.manifest_gets_avoided == 7 and warm.stats.blob_gets_avoided == 5
    pd.testing.assert_frame_equal(warm.images, cold.images)
    pd.testing.assert_frame_equal(warm.layers, cold.layers)

    pushed = small.builder.image("team-b/worker", [small.base, small.builder.layer(MB, "worker-1.1")],
                                 tags=("1.1",), media_type=oci.DOCKER_MANIFEST, at=T0 + timedelta(days=5))
    before = server.endpoint_counts()
    after_push = extract(server, cache=ParquetManifestCache(tmp_path))
    served = server_delta(server, before)
    assert served["manifest_get"] == 1 and served["blob_get"] == 1
    assert set(after_push.images.digest) == set(cold.images.digest) | {pushed.digest}


def test_a_damaged_cache_entry_is_fetched_again(small: Small, serve, tmp_path: Path) -> None:
    """The cache is re-verified when opened: an edited body costs a request, never a wrong layer list."""
    server = serve(small.builder.content)
    cold = extract(server, cache=ParquetManifestCache(tmp_path))
    path = tmp_path / ParquetManifestCache.FILE_NAME
    table = pq.read_table(path)
    bodies = table.column("body").to_pylist()
    damaged = table.column("digest").to_pylist().index(small.worker.digest)
    bodies[damaged] = bodies[damaged].replace(b'"layers":[', b'"layers":[ ')
    pq.write_table(table.set_column(table.schema.get_field_index("body"), "body", pa.array(bodies, pa.binary())), path)

    before = server.endpoint_counts()
    warm = extract(server, cache=ParquetManifestCache(tmp_path))
    assert server_delta(server, before)["manifest_get"] == 1
    pd.testing.assert_frame_equal(warm.layers, cold.layers)


# ----------------------------------------------------------------------------- requests that grow with the registry
def test_tags_named_by_the_imagestreams_cost_no_head_and_the_others_still_do(small: Small, serve) -> None:
    """On OpenShift tags/list is the ImageStreams: a tag whose digest the cluster step read is
    not HEADed again; a listed tag it does not name (here the cosign signature tag) is."""
    server = serve(small.builder.content)
    reference = extract(server)
    told = {repo: {tag: digest for tag, digest in tags.items() if not tag.startswith("sha256-")}
            for repo, tags in reference.tags_by_repo.items()}
    before = server.endpoint_counts()
    snapshot = extract(server, tag_digests=told)
    assert server_delta(server, before).get("manifest_head", 0) == 1          # the .sig tag only
    assert snapshot.stats.tag_heads_avoided == 5
    assert snapshot.tags_by_repo == reference.tags_by_repo
    pd.testing.assert_frame_equal(snapshot.images, reference.images)


def test_a_malformed_digest_from_the_cluster_is_not_trusted(small: Small, serve) -> None:
    server = serve(small.builder.content)
    before = server.endpoint_counts()
    snapshot = extract(server, tag_digests={"team-a/multi": {"latest": "sha256:not-a-digest"}})
    assert server_delta(server, before)["manifest_head"] == 6
    assert snapshot.tags_by_repo["team-a/multi"] == {"latest": small.multi.digest}


def test_referrers_are_asked_again_once_per_refresh_period_on_a_day_set_by_the_digest(
        small: Small, serve, tmp_path: Path) -> None:
    """Same day: no referrers request at all, same snapshot. Over the next refresh_days daily
    runs every (repository, manifest) is asked exactly once more, spread over those days."""
    server = serve(small.builder.content)
    day = date(2026, 3, 1)
    before = server.endpoint_counts()
    cold = extract(server, referrers_cache=ReferrersCache(tmp_path, today=day, refresh_days=7))
    asked = server_delta(server, before)["referrers"]
    assert asked == len(ReferrersCache(tmp_path, today=day)) == 8      # one per (repository, manifest) present

    before = server.endpoint_counts()
    warm = extract(server, referrers_cache=ReferrersCache(tmp_path, today=day, refresh_days=7))
    assert server_delta(server, before).get("referrers", 0) == 0
    assert warm.stats.referrers_avoided == asked
    pd.testing.assert_frame_equal(warm.images, cold.images)

    per_day = []
    for offset in range(1, 8):
        before = server.endpoint_counts()
        extract(server, referrers_cache=ReferrersCache(tmp_path, today=day + timedelta(days=offset), refresh_days=7))
        per_day.append(server_delta(server, before).get("referrers", 0))
    assert sum(per_day) == asked, per_day
    assert max(per_day) < asked, "the re-asking is spread over the period, not repeated in one run"


def test_a_referrer_attached_later_is_found_when_its_subject_is_asked_again(small: Small, serve, tmp_path: Path) -> None:
    server = serve(small.builder.content)
    day = date(2026, 3, 1)
    extract(server, referrers_cache=ReferrersCache(tmp_path, today=day))
    sbom = small.builder.sbom("team-b/worker", small.worker)
    same_day = extract(server, referrers_cache=ReferrersCache(tmp_path, today=day))
    assert sbom.digest not in set(same_day.images.digest), "bounded staleness: the cached answer stands"
    uncached = extract(server, referrers_cache=ReferrersCache(tmp_path, today=day, refresh_days=0))
    assert sbom.digest in set(uncached.images.digest)
    refreshed = extract(server, referrers_cache=ReferrersCache(tmp_path, today=day + timedelta(days=14)))
    assert refreshed.images.set_index("digest").loc[sbom.digest, "subject_digest"] == small.worker.digest
