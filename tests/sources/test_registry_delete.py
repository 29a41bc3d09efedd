"""RegistryClient.delete_manifest: by digest, idempotent, with a delete-scoped token, loud refusals.

Against the sandbox registry over HTTP with distribution's bearer-token auth, so the token
scopes a pruner's credentials are asked for are the real ones.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from registry_lifecycle.sandbox import oci
from registry_lifecycle.sandbox.blobs import BlobStore
from registry_lifecycle.sandbox.clock import SandboxClock
from registry_lifecycle.sandbox.faults import FaultInjector
from registry_lifecycle.sandbox.registry_api import RegistryServer, start_registry_api
from registry_lifecycle.sandbox.registry_content import InMemoryRegistry
from registry_lifecycle.sources.errors import SourceError, SourceForbidden
from registry_lifecycle.sources.registry import RegistryClient

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CREDENTIALS = ("pruner", "s3cret-pruner-password")


@dataclass
class Served:
    server: RegistryServer
    faults: FaultInjector
    digest: str

    def client(self) -> RegistryClient:
        return RegistryClient(self.server.url, username=CREDENTIALS[0], password=CREDENTIALS[1], max_retries=0)


@pytest.fixture
def served() -> Iterator[Served]:
    blobs = BlobStore(seed=5)
    content = InMemoryRegistry(blobs)
    layer = blobs.add_synthetic(4096, "layer")
    config = oci.image_config(architecture="amd64", os="linux", created=T0.isoformat(), labels={}, diff_ids=[layer],
                              history_note="build")
    config_digest = blobs.add_bytes(config)
    for blob in (layer, config_digest):
        content.link_blob("team-a/api", blob)
    body = oci.image_manifest(oci.OCI_MANIFEST, oci.Descriptor(oci.OCI_CONFIG, config_digest, len(config)),
                              [oci.Descriptor(oci.OCI_LAYER, layer, 4096)])
    digest = content.push_manifest("team-a/api", body, oci.OCI_MANIFEST, ("v1", "latest"), at=T0)
    faults = FaultInjector()
    server = start_registry_api(content, SandboxClock(T0 + timedelta(days=1), earliest=T0,
                                                      latest=T0 + timedelta(days=9)), faults, credentials=CREDENTIALS)
    try:
        yield Served(server, faults, digest)
    finally:
        server.stop()


def test_a_manifest_is_deleted_by_digest_with_its_tags_and_a_second_delete_finds_it_gone(served: Served):
    with served.client() as client:
        assert client.resolve("team-a/api", "v1") == served.digest
        assert client.delete_manifest("team-a/api", served.digest) is True
        assert client.resolve("team-a/api", served.digest) is None
        assert client.tags("team-a/api") == []
        assert client.delete_manifest("team-a/api", served.digest) is False
    assert served.server.endpoint_counts()["delete"] == 2


def test_deletion_asks_for_a_delete_scope_and_leaves_the_pull_token_alone(served: Served):
    with served.client() as client:
        assert client.resolve("team-a/api", "latest") == served.digest
        tokens = served.server.endpoint_counts()["token"]
        assert client.delete_manifest("team-a/api", served.digest)
        assert served.server.endpoint_counts()["token"] == tokens + 1      # one delete-scoped token
        assert client.tags("team-a/api") == []                              # reads still use the pull token
        assert served.server.endpoint_counts()["token"] == tokens + 1


def test_a_tag_is_never_deleted_by_name(served: Served):
    with served.client() as client, pytest.raises(ValueError, match="refuse deletion by tag"):
        client.delete_manifest("team-a/api", "v1")


def test_a_registry_with_deletes_disabled_says_which_setting_enables_them(served: Served):
    served.faults.add(api="registry", method="DELETE", status=405)
    with served.client() as client, pytest.raises(SourceError, match="storage.delete.enabled: true"):
        client.delete_manifest("team-a/api", served.digest)


def test_a_forbidden_deletion_is_refused_without_echoing_credentials(served: Served):
    served.faults.add(api="registry", method="DELETE", status=403)
    with served.client() as client, pytest.raises(SourceForbidden) as refused:
        client.delete_manifest("team-a/api", served.digest)
    assert CREDENTIALS[1] not in str(refused.value)
