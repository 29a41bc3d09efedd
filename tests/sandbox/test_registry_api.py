"""The sandbox registry answers like a distribution 2.8 registry, over real HTTP.

Every test talks HTTP with httpx to a server on 127.0.0.1, as the extractor and the GC will.
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from registry_lifecycle.sandbox import oci
from registry_lifecycle.sandbox.blobs import BlobStore
from registry_lifecycle.sandbox.clock import SandboxClock
from registry_lifecycle.sandbox.faults import FaultInjector
from registry_lifecycle.sandbox.model import Manifest
from registry_lifecycle.sandbox.registry_api import RegistryServer, start_registry_api
from registry_lifecycle.sandbox.registry_content import InMemoryRegistry

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=10)
LATER = T0 + timedelta(days=15)
MB = 1024 * 1024
BULK_REPOSITORIES = 130
BUILD_TAGS = 23
EVERY_MANIFEST_TYPE = ", ".join([oci.OCI_INDEX, oci.OCI_MANIFEST, oci.DOCKER_MANIFEST_LIST, oci.DOCKER_MANIFEST])
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
CREDENTIALS = ("ci-robot", "s3cret")


@dataclass
class World:
    """The registry under test and the digests a test needs to name."""

    content: InMemoryRegistry
    clock: SandboxClock
    faults: FaultInjector
    base_layer: str
    api_v1: str
    api_v2_later: str
    worker: str
    multi_index: str
    tool_list: str
    tool_amd64: str
    signature: str
    signature_tag: str
    sbom: str
    doomed: str
    repositories: list[str]


class _Builder:
    """Pushes images the way a CI pipeline would: blobs linked first, then the manifest."""

    def __init__(self) -> None:
        self.blobs = BlobStore(seed=7)
        self.content = InMemoryRegistry(self.blobs)

    def image(self, repo: str, media_type: str, layers: list[str], *, tags: tuple[str, ...] = (),
              at: datetime = T0 + timedelta(days=1), arch: str = "amd64") -> tuple[str, bytes]:
        docker = media_type == oci.DOCKER_MANIFEST
        config = oci.image_config(architecture=arch, os="linux", created=at.isoformat(),
                                  labels={"io.openshift.build.name": repo}, diff_ids=layers,
                                  history_note=f"build of {repo}")
        config_digest = self.blobs.add_bytes(config)
        layer_type = oci.DOCKER_LAYER if docker else oci.OCI_LAYER
        body = oci.image_manifest(
            media_type,
            oci.Descriptor(oci.DOCKER_CONFIG if docker else oci.OCI_CONFIG, config_digest, len(config)),
            [oci.Descriptor(layer_type, layer, self.blobs.size(layer) or 0) for layer in layers])
        for blob in (config_digest, *layers):
            self.content.link_blob(repo, blob)
        return self.content.push_manifest(repo, body, media_type, tags, at=at), body

    def index(self, repo: str, media_type: str, children: list[tuple[str, bytes, str]], media: str,
              tags: tuple[str, ...]) -> str:
        body = oci.image_index(media_type, [
            oci.Descriptor(media, digest, len(child), platform={"architecture": arch, "os": "linux"})
            for digest, child, arch in children])
        return self.content.push_manifest(repo, body, media_type, tags, at=T0 + timedelta(days=1))

    def artifact(self, repo: str, subject: tuple[str, bytes], artifact_type: str, layer_type: str,
                 payload: bytes, *, tags: tuple[str, ...] = (), annotations: dict | None = None) -> str:
        empty = self.blobs.add_bytes(b"{}")
        payload_digest = self.blobs.add_bytes(payload)
        for blob in (empty, payload_digest):
            self.content.link_blob(repo, blob)
        body = oci.image_manifest(
            oci.OCI_MANIFEST, oci.Descriptor(oci.OCI_EMPTY, empty, 2),
            [oci.Descriptor(layer_type, payload_digest, len(payload), annotations=annotations)],
            subject=oci.Descriptor(oci.OCI_MANIFEST, subject[0], len(subject[1])),
            artifact_type=artifact_type)
        return self.content.push_manifest(repo, body, oci.OCI_MANIFEST, tags, at=T0 + timedelta(days=2))


def build_world() -> World:
    """A registry with the shapes a pruner meets: a base layer shared by two images, a
    multi-arch OCI index, a Docker manifest list, a Docker schema 2 image, a cosign
    signature tag and an SBOM referrer, many repositories and tags to page through, and
    an image pushed after the clock's instant."""
    b = _Builder()
    base = b.blobs.add_synthetic(6 * MB, "ubi9-base")
    api_layer = b.blobs.add_synthetic(3 * MB + 17, "api-app")
    worker_layer = b.blobs.add_synthetic(4 * MB + 5, "worker-app")
    builds = tuple(f"build-{i:03d}" for i in range(1, BUILD_TAGS + 1))
    api_v1, api_body = b.image("team-a/api", oci.OCI_MANIFEST, [base, api_layer], tags=("v1", "latest", *builds))
    api_v2_later, _ = b.image("team-a/api", oci.OCI_MANIFEST, [base, b.blobs.add_synthetic(MB, "api-v2")],
                              tags=("v2",), at=LATER)
    worker, _ = b.image("team-b/worker", oci.DOCKER_MANIFEST, [base, worker_layer], tags=("1.0",))

    oci_children = [(*b.image("team-a/multi", oci.OCI_MANIFEST, [b.blobs.add_synthetic(MB + i, f"multi-{arch}")],
                              arch=arch), arch) for i, arch in enumerate(("amd64", "arm64"))]
    multi_index = b.index("team-a/multi", oci.OCI_INDEX, oci_children, oci.OCI_MANIFEST, ("latest",))
    docker_children = [(*b.image("team-b/tool", oci.DOCKER_MANIFEST, [b.blobs.add_synthetic(MB + 100 + i, f"tool-{arch}")],
                                 arch=arch), arch) for i, arch in enumerate(("arm64", "amd64"))]
    tool_list = b.index("team-b/tool", oci.DOCKER_MANIFEST_LIST, docker_children, oci.DOCKER_MANIFEST, ("latest",))

    signature_tag = "sha256-" + api_v1.removeprefix("sha256:") + ".sig"
    signed_payload = json.dumps({"critical": {"identity": {"docker-reference": "team-a/api"},
                                              "image": {"docker-manifest-digest": api_v1},
                                              "type": "cosign container image signature"},
                                 "optional": None}).encode()
    signature = b.artifact("team-a/api", (api_v1, api_body), oci.COSIGN_SIGNATURE, COSIGN_SIMPLESIGNING,
                           signed_payload, tags=(signature_tag,),
                           annotations={"dev.cosignproject.cosign/signature": "MEUCIQDsandbox"})
    sbom = b.artifact("team-a/api", (api_v1, api_body), oci.SPDX_SBOM, oci.SPDX_SBOM,
                      b'{"spdxVersion": "SPDX-2.3", "name": "team-a/api"}')
    doomed, _ = b.image("team-d/doomed", oci.OCI_MANIFEST, [base], tags=("old",))
    b.image("team-c/late", oci.OCI_MANIFEST, [base], tags=("v1",), at=LATER)
    for i in range(BULK_REPOSITORIES):
        b.image(f"bulk/app-{i:03d}", oci.OCI_MANIFEST, [], tags=("latest",), at=T0)

    repositories = sorted(["team-a/api", "team-a/multi", "team-b/worker", "team-b/tool", "team-d/doomed",
                           *(f"bulk/app-{i:03d}" for i in range(BULK_REPOSITORIES))])
    clock = SandboxClock(NOW, earliest=T0, latest=T0 + timedelta(days=30))
    return World(b.content, clock, FaultInjector(), base, api_v1, api_v2_later, worker, multi_index,
                 tool_list, docker_children[1][0], signature, signature_tag, sbom, doomed, repositories)


@contextmanager
def serving(world: World, credentials: tuple[str, str] | None = None) -> Iterator[tuple[RegistryServer, httpx.Client]]:
    server = start_registry_api(world.content, world.clock, world.faults, credentials=credentials)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield server, client
    finally:
        server.stop()


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


@pytest.fixture(scope="module")
def registry(world: World) -> Iterator[tuple[RegistryServer, httpx.Client]]:
    with serving(world) as served:
        yield served


@pytest.fixture
def client(registry: tuple[RegistryServer, httpx.Client], world: World) -> Iterator[httpx.Client]:
    """The shared registry's client; faults a test injects end with the test."""
    yield registry[1]
    world.faults.clear()


# ----------------------------------------------------------------------------- helpers
def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_code(response: httpx.Response) -> str:
    return response.json()["errors"][0]["code"]


def collect_pages(client: httpx.Client, url: str, key: str) -> tuple[list[str], int]:
    """Every name a paged listing yields by following Link to the end, and the page count."""
    names: list[str] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = client.get(next_url)
        assert response.status_code == 200, response.text
        names += response.json()[key] or []
        pages += 1
        next_url = response.links.get("next", {}).get("url")
    return names, pages


def download(client: httpx.Client, repo: str, digest: str) -> tuple[str, int]:
    """(sha256, length) of a blob, streamed as a puller reads it."""
    hasher = hashlib.sha256()
    length = 0
    with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
        assert response.status_code == 200, response.read()
        assert response.headers["Docker-Content-Digest"] == digest
        assert response.headers["Content-Type"] == "application/octet-stream"
        for chunk in response.iter_bytes():
            hasher.update(chunk)
            length += len(chunk)
        assert int(response.headers["Content-Length"]) == length
    return "sha256:" + hasher.hexdigest(), length


def verify_manifest(client: httpx.Client, repo: str, reference: str, pulled: list[tuple[str, str]]) -> tuple[str, int]:
    """Pull a manifest and everything it references, checking every digest and size;
    returns (digest, size) of the manifest and records each (repo, blob) pulled."""
    response = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": EVERY_MANIFEST_TYPE})
    assert response.status_code == 200, response.text
    digest = response.headers["Docker-Content-Digest"]
    assert sha256(response.content) == digest
    assert reference == digest or ":" not in reference
    assert response.headers["ETag"] == f'"{digest}"'
    assert int(response.headers["Content-Length"]) == len(response.content)
    document = response.json()
    assert response.headers["Content-Type"] == document["mediaType"]
    if "manifests" in document:
        for child in document["manifests"]:
            assert verify_manifest(client, repo, child["digest"], pulled) == (child["digest"], child["size"])
    else:
        for descriptor in [document["config"], *document["layers"]]:
            if (repo, descriptor["digest"]) in pulled:     # a puller fetches a blob once per repository
                continue
            assert download(client, repo, descriptor["digest"]) == (descriptor["digest"], descriptor["size"])
            pulled.append((repo, descriptor["digest"]))
    return digest, len(response.content)


def token_for(client: httpx.Client, scope: str, credentials: tuple[str, str] = CREDENTIALS) -> httpx.Response:
    return client.get("/token", params={"service": "sandbox-registry", "scope": scope}, auth=credentials)


# ----------------------------------------------------------------------------- listing
def test_base_endpoint_announces_registry_v2(client: httpx.Client) -> None:
    """Clients probe /v2/ and the version header before anything else."""
    response = client.get("/v2/")
    assert response.status_code == 200
    assert response.json() == {}
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_catalog_paging_collects_every_repository_exactly_once(client: httpx.Client, world: World) -> None:
    names, pages = collect_pages(client, "/v2/_catalog?n=7", "repositories")
    assert names == world.repositories
    assert pages == -(-len(world.repositories) // 7)


def test_catalog_pages_by_100_by_default_and_refuses_more_than_1000(client: httpx.Client) -> None:
    first = client.get("/v2/_catalog")
    assert len(first.json()["repositories"]) == 100
    assert first.headers["Link"] == '</v2/_catalog?last=bulk%2Fapp-099&n=100>; rel="next"'
    too_many = client.get("/v2/_catalog?n=1001")
    assert too_many.status_code == 400
    assert error_code(too_many) == "PAGINATION_NUMBER_INVALID"


def test_tags_paging_collects_every_tag_exactly_once(client: httpx.Client, world: World) -> None:
    everything = client.get("/v2/team-a/api/tags/list")
    assert "Link" not in everything.headers, "without n distribution lists every tag at once"
    all_tags = everything.json()["tags"]
    assert all_tags == sorted(["v1", "latest", world.signature_tag, *(f"build-{i:03d}" for i in range(1, BUILD_TAGS + 1))])
    names, pages = collect_pages(client, "/v2/team-a/api/tags/list?n=5", "tags")
    assert names == all_tags
    assert pages == -(-len(all_tags) // 5)


def test_tags_of_an_unknown_repository_is_name_unknown(client: httpx.Client) -> None:
    response = client.get("/v2/team-z/nothing/tags/list")
    assert response.status_code == 404
    assert response.json()["errors"][0] == {"code": "NAME_UNKNOWN", "message": "repository name not known to registry",
                                            "detail": {"name": "team-z/nothing"}}


# ----------------------------------------------------------------------------- content
def test_every_manifest_and_blob_hashes_to_its_digest(client: httpx.Client, world: World) -> None:
    """The full pull of every tag verifies: manifest bytes, index children, config and
    layers all hash to the digest they are named by and have the size they are listed with."""
    pulled: list[tuple[str, str]] = []
    for repo in ["team-a/api", "team-a/multi", "team-b/worker", "team-b/tool"]:
        for tag in client.get(f"/v2/{repo}/tags/list").json()["tags"]:
            digest, _ = verify_manifest(client, repo, tag, pulled)
            assert verify_manifest(client, repo, digest, pulled)[0] == digest
    assert {("team-a/api", world.base_layer), ("team-b/worker", world.base_layer)} <= set(pulled), \
        "the shared base layer must be served from both repositories that use it"
    assert any(repo == "team-a/multi" for repo, _ in pulled)


def test_signature_tag_names_the_manifest_it_signs(client: httpx.Client, world: World) -> None:
    response = client.get(f"/v2/team-a/api/manifests/{world.signature_tag}", headers={"Accept": oci.OCI_MANIFEST})
    assert response.headers["Docker-Content-Digest"] == world.signature
    assert response.json()["subject"]["digest"] == world.api_v1


def test_head_gives_headers_without_a_body(client: httpx.Client, world: World) -> None:
    get = client.get("/v2/team-b/worker/manifests/1.0", headers={"Accept": oci.DOCKER_MANIFEST})
    head = client.head("/v2/team-b/worker/manifests/1.0", headers={"Accept": oci.DOCKER_MANIFEST})
    assert head.status_code == 200 and head.content == b""
    for header in ("Content-Type", "Content-Length", "Docker-Content-Digest", "ETag"):
        assert head.headers[header] == get.headers[header]
    blob = client.head(f"/v2/team-b/worker/blobs/{world.base_layer}")
    assert blob.status_code == 200 and blob.content == b""
    assert int(blob.headers["Content-Length"]) == 6 * MB
    missing = client.head("/v2/team-b/worker/manifests/nope", headers={"Accept": oci.DOCKER_MANIFEST})
    assert missing.status_code == 404 and missing.content == b""
    assert client.get("/v2/").status_code == 200, "the connection must still be usable after HEAD"


def test_range_requests_let_a_puller_resume(client: httpx.Client, world: World) -> None:
    url = f"/v2/team-a/api/blobs/{world.base_layer}"
    first = client.get(url, headers={"Range": "bytes=0-1048575"})
    rest = client.get(url, headers={"Range": "bytes=1048576-"})
    assert (first.status_code, rest.status_code) == (206, 206)
    assert first.headers["Content-Range"] == f"bytes 0-1048575/{6 * MB}"
    assert rest.headers["Content-Range"] == f"bytes 1048576-{6 * MB - 1}/{6 * MB}"
    assert sha256(first.content + rest.content) == world.base_layer
    tail = client.get(url, headers={"Range": "bytes=-10"})
    assert tail.content == rest.content[-10:]
    beyond = client.get(url, headers={"Range": f"bytes={6 * MB}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{6 * MB}"
    assert error_code(beyond) == "RANGE_INVALID"


def test_a_cut_blob_download_is_detected_and_resumed(client: httpx.Client, world: World) -> None:
    """A connection dropped mid-layer: the short body is noticed, Range finishes it."""
    world.faults.add(api="registry", path="/blobs/", method="GET", truncate=True)
    url = f"/v2/team-a/api/blobs/{world.base_layer}"
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("GET", url) as response:
            for chunk in response.iter_bytes():
                received += chunk
    assert 0 < len(received) < 6 * MB
    rest = client.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert sha256(bytes(received) + rest.content) == world.base_layer


def test_unknown_manifest_and_blob_errors_name_what_is_missing(client: httpx.Client, world: World) -> None:
    by_tag = client.get("/v2/team-a/api/manifests/nope", headers={"Accept": EVERY_MANIFEST_TYPE})
    assert by_tag.status_code == 404
    assert by_tag.json()["errors"][0] == {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                          "detail": {"Tag": "nope"}}
    by_digest = client.get(f"/v2/team-a/api/manifests/{world.worker}", headers={"Accept": EVERY_MANIFEST_TYPE})
    assert error_code(by_digest) == "MANIFEST_UNKNOWN", "a digest of another repository is not linked here"
    assert error_code(client.get("/v2/team-z/nothing/manifests/latest")) == "NAME_UNKNOWN"
    blob = client.get(f"/v2/team-a/api/blobs/sha256:{'0' * 64}")
    assert blob.status_code == 404 and error_code(blob) == "BLOB_UNKNOWN"


def test_accept_header_is_negotiated_like_distribution_2_8(client: httpx.Client, world: World) -> None:
    """A client that forgets to accept OCI types sees OCI content as missing, and an old
    client asking a Docker manifest list by tag gets the linux/amd64 image instead."""
    bare = client.get("/v2/team-a/api/manifests/v1")
    assert bare.status_code == 404
    assert bare.json()["errors"][0]["message"] == "OCI manifest found, but accept header does not support OCI manifests"
    single_only = client.get("/v2/team-a/multi/manifests/latest", headers={"Accept": oci.OCI_MANIFEST})
    assert single_only.status_code == 404 and error_code(single_only) == "MANIFEST_UNKNOWN"
    old_client = client.get("/v2/team-b/tool/manifests/latest", headers={"Accept": oci.DOCKER_MANIFEST})
    assert old_client.headers["Docker-Content-Digest"] == world.tool_amd64
    assert sha256(old_client.content) == world.tool_amd64
    by_digest = client.get(f"/v2/team-b/tool/manifests/{world.tool_list}", headers={"Accept": oci.DOCKER_MANIFEST})
    assert by_digest.headers["Docker-Content-Digest"] == world.tool_list, "by digest nothing is rewritten"
    schema2 = client.get("/v2/team-b/worker/manifests/1.0")
    assert schema2.headers["Content-Type"] == oci.DOCKER_MANIFEST


def test_the_sandbox_registry_accepts_no_pushes(client: httpx.Client) -> None:
    pushed = client.put("/v2/team-a/api/manifests/v9", content=b'{"schemaVersion":2}',
                        headers={"Content-Type": oci.OCI_MANIFEST})
    assert pushed.status_code == 405 and error_code(pushed) == "UNSUPPORTED"
    assert client.get("/v2/").status_code == 200


def test_a_cached_manifest_is_revalidated_with_if_none_match(client: httpx.Client, world: World) -> None:
    response = client.get("/v2/team-a/api/manifests/v1",
                          headers={"Accept": oci.OCI_MANIFEST, "If-None-Match": f'"{world.api_v1}"'})
    assert response.status_code == 304
    assert response.content == b""


# ----------------------------------------------------------------------------- delete
def test_delete_by_digest_unlinks_the_manifest_and_its_tags() -> None:
    world = build_world()
    with serving(world) as (_, client):
        url = f"/v2/team-d/doomed/manifests/{world.doomed}"
        assert client.delete(url).status_code == 202
        gone = client.get(url, headers={"Accept": oci.OCI_MANIFEST})
        assert gone.status_code == 404 and error_code(gone) == "MANIFEST_UNKNOWN"
        tags = client.get("/v2/team-d/doomed/tags/list")
        assert tags.json() == {"name": "team-d/doomed", "tags": None}, "2.8 answers null, not []"
        assert "team-d/doomed" in collect_pages(client, "/v2/_catalog", "repositories")[0]
        again = client.delete(url)
        assert again.status_code == 404 and error_code(again) == "MANIFEST_UNKNOWN"


def test_delete_by_tag_is_refused_as_distribution_2_8_does() -> None:
    world = build_world()
    with serving(world) as (_, client):
        refused = client.delete("/v2/team-d/doomed/manifests/old")
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["code"] == "DIGEST_INVALID"
        still = client.get("/v2/team-d/doomed/manifests/old", headers={"Accept": oci.OCI_MANIFEST})
        assert still.headers["Docker-Content-Digest"] == world.doomed


# ----------------------------------------------------------------------------- auth
def test_bearer_challenge_then_token_then_success() -> None:
    world = build_world()
    with serving(world, CREDENTIALS) as (server, client):
        challenged = client.get("/v2/team-a/api/tags/list")
        assert challenged.status_code == 401
        assert challenged.headers["WWW-Authenticate"] == (
            f'Bearer realm="{server.url}/token",service="sandbox-registry",scope="repository:team-a/api:pull"')
        assert challenged.json()["errors"][0]["code"] == "UNAUTHORIZED"
        issued = token_for(client, "repository:team-a/api:pull")
        assert issued.status_code == 200
        body = issued.json()
        assert body["token"] == body["access_token"] and body["expires_in"] == 300 and body["issued_at"]
        bearer = {"Authorization": f"Bearer {body['token']}"}
        assert client.get("/v2/team-a/api/tags/list", headers=bearer).status_code == 200
        other = client.get("/v2/team-b/worker/tags/list", headers=bearer)
        assert other.status_code == 401, "a token is scoped to the repositories it names"
        catalog = client.get("/v2/_catalog")
        assert 'scope="registry:catalog:*"' in catalog.headers["WWW-Authenticate"]
        catalog_token = token_for(client, "registry:catalog:*").json()["token"]
        assert client.get("/v2/_catalog", headers={"Authorization": f"Bearer {catalog_token}"}).status_code == 200


def test_wrong_password_gets_no_token() -> None:
    world = build_world()
    with serving(world, CREDENTIALS) as (_, client):
        refused = token_for(client, "repository:team-a/api:pull", credentials=("ci-robot", "guess"))
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="sandbox-registry"'
        assert error_code(refused) == "UNAUTHORIZED"
        assert client.get("/token", params={"scope": "repository:team-a/api:pull"}).status_code == 401
        forged = client.get("/v2/team-a/api/tags/list", headers={"Authorization": "Bearer e30.forged"})
        assert forged.status_code == 401
        assert forged.headers["WWW-Authenticate"].endswith(',error="invalid_token"')


def test_pull_token_cannot_delete_and_the_challenge_names_delete() -> None:
    world = build_world()
    with serving(world, CREDENTIALS) as (_, client):
        url = f"/v2/team-d/doomed/manifests/{world.doomed}"
        pull = token_for(client, "repository:team-d/doomed:pull").json()["token"]
        refused = client.delete(url, headers={"Authorization": f"Bearer {pull}"})
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].endswith(
            ',scope="repository:team-d/doomed:delete",error="insufficient_scope"')
        assert refused.json()["errors"][0]["detail"] == [
            {"Type": "repository", "Class": "", "Name": "team-d/doomed", "Action": "delete"}]
        star = token_for(client, "repository:team-d/doomed:*").json()["token"]
        assert client.delete(url, headers={"Authorization": f"Bearer {star}"}).status_code == 202
        delete = token_for(client, "repository:team-d/doomed:pull,delete").json()["token"]
        gone = client.delete(url, headers={"Authorization": f"Bearer {delete}"})
        assert gone.status_code == 404, "the delete action is enough to be let through"


def test_expired_token_is_refused() -> None:
    world = build_world()
    with serving(world, CREDENTIALS) as (_, client):
        token = token_for(client, "repository:team-a/api:pull").json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/v2/team-a/api/tags/list", headers=bearer).status_code == 200
        world.clock.set(NOW + timedelta(seconds=301))
        expired = client.get("/v2/team-a/api/tags/list", headers=bearer)
        assert expired.status_code == 401
        assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]


def test_token_is_opaque_but_carries_its_scopes() -> None:
    """Tokens are signed: editing the granted scopes inside one invalidates it."""
    world = build_world()
    with serving(world, CREDENTIALS) as (_, client):
        token = token_for(client, "repository:team-a/api:pull").json()["token"]
        payload, _, signature = token.partition(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["access"] == [{"type": "repository", "name": "team-a/api", "actions": ["pull"]}]
        claims["access"][0]["actions"] = ["*"]
        forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        forged = client.delete(f"/v2/team-a/api/manifests/{world.api_v1}",
                               headers={"Authorization": f"Bearer {forged_payload}.{signature}"})
        assert forged.status_code == 401


# ----------------------------------------------------------------------------- faults
@pytest.mark.parametrize(("status", "code", "message"), [
    (500, "UNKNOWN", "unknown error"),
    (403, "DENIED", "requested access to the resource is denied"),
    (429, "TOOMANYREQUESTS", "too many requests"),
])
def test_injected_errors_look_like_distribution_errors(client: httpx.Client, world: World, status: int,
                                                        code: str, message: str) -> None:
    world.faults.add(api="registry", path="/tags/list", status=status, retry_after=3 if status == 429 else None)
    response = client.get("/v2/team-a/api/tags/list")
    assert response.status_code == status
    assert response.json()["errors"][0]["code"] == code
    assert response.json()["errors"][0]["message"] == message
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    if status == 429:
        assert response.headers["Retry-After"] == "3"
    assert client.get("/v2/team-a/api/tags/list").status_code == 200, "a one-shot fault recovers"


def test_truncate_drops_the_catalog_link_while_more_remain(client: httpx.Client, world: World) -> None:
    world.faults.add(api="registry", path="/v2/_catalog", truncate=True)
    cut = client.get("/v2/_catalog?n=10")
    assert len(cut.json()["repositories"]) == 10
    assert "Link" not in cut.headers, "a client that trusts Link alone stops after 10 names"
    assert "Link" in client.get("/v2/_catalog?n=10").headers


def test_a_rewriting_registry_serves_bytes_that_do_not_match_the_digest(client: httpx.Client, world: World) -> None:
    world.faults.add(api="registry", path="/manifests/", method="GET", truncate=True)
    response = client.get("/v2/team-a/api/manifests/v1", headers={"Accept": oci.OCI_MANIFEST})
    assert response.headers["Docker-Content-Digest"] == world.api_v1
    assert sha256(response.content) != world.api_v1, "only a client that verifies digests notices"
    assert response.json()["config"] == client.get(
        "/v2/team-a/api/manifests/v1", headers={"Accept": oci.OCI_MANIFEST}).json()["config"]


# ----------------------------------------------------------------------------- time
def test_the_clock_hides_what_was_pushed_later(client: httpx.Client, world: World) -> None:
    accept = {"Accept": oci.OCI_MANIFEST}
    assert "v2" not in client.get("/v2/team-a/api/tags/list").json()["tags"]
    assert client.get(f"/v2/team-a/api/manifests/{world.api_v2_later}", headers=accept).status_code == 404
    assert error_code(client.get("/v2/team-c/late/tags/list")) == "NAME_UNKNOWN"
    moved = client.post("/_sandbox/clock", json={"now": LATER.isoformat()})
    assert moved.status_code == 200
    try:
        assert "v2" in client.get("/v2/team-a/api/tags/list").json()["tags"]
        assert client.get("/v2/team-a/api/manifests/v2", headers=accept).headers["Docker-Content-Digest"] == \
            world.api_v2_later
        assert "team-c/late" in collect_pages(client, "/v2/_catalog", "repositories")[0]
    finally:
        world.clock.set(NOW)


def test_a_retagged_tag_names_its_old_manifest_before_the_move() -> None:
    """Promotion by re-tagging: `latest` moves, and the past still sees where it pointed."""
    content = InMemoryRegistry()
    first = content.push_manifest("team/app", b'{"schemaVersion":2,"n":1}', oci.OCI_MANIFEST, ["latest"], at=T0)
    second = content.push_manifest("team/app", b'{"schemaVersion":2,"n":2}', oci.OCI_MANIFEST, ["latest"],
                                   at=T0 + timedelta(days=3))
    assert content.tags("team/app", T0 + timedelta(days=1)) == {"latest": first}
    assert content.tags("team/app", T0 + timedelta(days=3)) == {"latest": second}
    assert content.manifest("team/app", first, T0 + timedelta(days=4)) is not None, "re-tagging does not unlink"
    assert content.tags("team/app", T0 - timedelta(days=1)) is None


# ----------------------------------------------------------------------------- referrers
def test_referrers_list_the_signature_and_the_sbom_of_a_subject(client: httpx.Client, world: World) -> None:
    response = client.get(f"/v2/team-a/api/referrers/{world.api_v1}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == oci.OCI_INDEX
    index = response.json()
    assert index["mediaType"] == oci.OCI_INDEX and index["schemaVersion"] == 2
    by_type = {entry["artifactType"]: entry for entry in index["manifests"]}
    assert by_type.keys() == {oci.COSIGN_SIGNATURE, oci.SPDX_SBOM}
    assert by_type[oci.COSIGN_SIGNATURE]["digest"] == world.signature
    assert by_type[oci.SPDX_SBOM]["digest"] == world.sbom
    sbom = client.get(f"/v2/team-a/api/manifests/{world.sbom}", headers={"Accept": oci.OCI_MANIFEST})
    assert by_type[oci.SPDX_SBOM]["size"] == len(sbom.content)


def test_referrers_filter_by_artifact_type(client: httpx.Client, world: World) -> None:
    response = client.get(f"/v2/team-a/api/referrers/{world.api_v1}", params={"artifactType": oci.SPDX_SBOM})
    assert [entry["digest"] for entry in response.json()["manifests"]] == [world.sbom]
    assert response.headers["OCI-Filters-Applied"] == "artifactType"
    none = client.get(f"/v2/team-a/api/referrers/{world.worker}")
    assert none.status_code == 200 and none.json()["manifests"] == [], "no referrers is an empty index, not 404"
    invalid = client.get("/v2/team-a/api/referrers/sha256:xyz")
    assert invalid.status_code == 400 and error_code(invalid) == "DIGEST_INVALID"


class _WithoutReferrers:
    """Registry content that cannot list referrers, like a registry older than OCI 1.1."""

    def __init__(self, inner: InMemoryRegistry) -> None:
        self._inner = inner

    def repositories(self, at: datetime) -> list[str]:
        return self._inner.repositories(at)

    def tags(self, repository: str, at: datetime) -> dict[str, str] | None:
        return self._inner.tags(repository, at)

    def manifest(self, repository: str, reference: str, at: datetime) -> Manifest | None:
        return self._inner.manifest(repository, reference, at)

    def blob(self, repository: str, digest: str, at: datetime) -> tuple[int, Iterator[bytes]] | None:
        return self._inner.blob(repository, digest, at)

    def delete_manifest(self, repository: str, digest: str, at: datetime) -> bool:
        return self._inner.delete_manifest(repository, digest, at)


def test_a_registry_without_referrers_answers_404_so_clients_fall_back_to_tags(world: World) -> None:
    server = start_registry_api(_WithoutReferrers(world.content), world.clock, world.faults)
    try:
        response = httpx.get(f"{server.url}/v2/team-a/api/referrers/{world.api_v1}")
        assert response.status_code == 404
        assert error_code(response) == "UNSUPPORTED"
    finally:
        server.stop()


# ----------------------------------------------------------------------------- counts
def test_endpoint_counts_show_what_a_client_fetched(world: World) -> None:
    """Benchmarks prove a warm re-run is cheap by these counts, in process or over HTTP."""
    with serving(world) as (server, client):
        client.get("/v2/_catalog")
        client.get("/v2/team-a/api/tags/list")
        client.get("/v2/team-a/api/manifests/v1", headers={"Accept": oci.OCI_MANIFEST})
        client.head("/v2/team-a/api/manifests/v1", headers={"Accept": oci.OCI_MANIFEST})
        client.head(f"/v2/team-a/api/blobs/{world.base_layer}")
        assert server.endpoint_counts() == {"catalog": 1, "tags": 1, "manifest_get": 1, "manifest_head": 1,
                                            "blob_head": 1}
        stats = client.get("/_sandbox/stats").json()
        assert stats["registry"] == 6, "the base counts every request, this one included"
        assert stats["registry.manifest_get"] == 1
