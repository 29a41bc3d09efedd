"""The real components the other integration tests stand on: they start, take the seeded
content, and measure what they claim to measure.

Run alone with `pytest -p tests.fixtures.components tests/integration/test_real_components.py`
when the root conftest does not load the plugin yet.
"""
from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.fixtures.components import run_garbage_collect, storage_bytes
from tests.fixtures.oci_seed import (
    MANIFEST_ACCEPT,
    OCI_INDEX,
    push_image,
    push_multiarch_image,
    random_bytes,
    referrers_fallback_tag,
    seed_registry,
    seed_shared_base,
    signature_tag,
)

pytestmark = pytest.mark.integration


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _get_manifest(client: httpx.Client, repository: str, reference: str) -> httpx.Response:
    return client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})


def test_registry_serves_every_seeded_manifest_and_blob_byte_for_byte(docker_registry):
    with docker_registry.client() as client:
        seeded = seed_registry(client, seed=7)
        kinds = {m.media_type for m in seeded.manifests}
        assert {"application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.oci.image.manifest.v1+json", OCI_INDEX} <= kinds
        assert any(m.subject and m.artifact_type for m in seeded.manifests), "no OCI referrer"
        assert any(tag.endswith(".sig") for m in seeded.manifests for tag in m.tags), "no signature"

        for manifest in seeded.manifests:
            response = _get_manifest(client, manifest.repository, manifest.digest)
            assert response.status_code == 200, (manifest.repository, manifest.digest)
            assert _sha256(response.content) == manifest.digest
            assert response.headers["Content-Type"] == manifest.media_type
            for tag in manifest.tags:
                by_tag = _get_manifest(client, manifest.repository, tag)
                assert by_tag.headers["Docker-Content-Digest"] == manifest.digest
            for blob in manifest.blobs:
                pulled = client.get(f"/v2/{manifest.repository}/blobs/{blob.digest}")
                assert pulled.status_code == 200
                assert len(pulled.content) == blob.size
                assert _sha256(pulled.content) == blob.digest

    # Each distinct blob and manifest payload is stored once, however many repositories or
    # manifests name it: the accounting every "bytes freed" number starts from.
    assert storage_bytes(docker_registry) == seeded.stored_bytes()


def test_distribution_28_has_no_referrers_api_so_the_fallback_tag_carries_referrers(docker_registry):
    with docker_registry.client() as client:
        seeded = seed_registry(client)
        subject = seeded.find("team-a/frontend", "v2")

        assert client.get(f"/v2/team-a/frontend/referrers/{subject.digest}").status_code == 404

        fallback = _get_manifest(client, "team-a/frontend", referrers_fallback_tag(subject.digest))
        listed = [entry["digest"] for entry in fallback.json()["manifests"]]
        referrer = next(m for m in seeded.manifests if m.artifact_type and m.subject == subject.digest)
        assert listed == [referrer.digest]
        assert _get_manifest(client, "team-a/frontend", referrer.digest).json()["subject"]["digest"] \
            == subject.digest

        signature = _get_manifest(client, "team-a/frontend", signature_tag(subject.digest))
        assert signature.status_code == 200


def test_gc_frees_exactly_the_unique_bytes_of_a_deleted_image(docker_registry):
    """DESIGN's "reclaim within 1%" is measured against this: the shared base layer stays."""
    with docker_registry.client() as client:
        seeded = seed_shared_base(client, base_size=2_000_000,
                                  unique_sizes=((700_000, 300_001), (900_000,)), seed=1)
        doomed = seeded.find("team-a/frontend", "v1")
        kept = seeded.find("team-b/backend", "v1")
        # One blob, named with the Docker media type by one manifest and the OCI one by the other.
        base = seeded.shared_base.digest
        assert base in {l.digest for l in doomed.layers} and base in {l.digest for l in kept.layers}

        before = storage_bytes(docker_registry)
        assert before == seeded.stored_bytes()
        run_garbage_collect(docker_registry)
        assert storage_bytes(docker_registry) == before, "GC freed blobs of kept manifests"

        deleted = client.delete(f"/v2/team-a/frontend/manifests/{doomed.digest}")
        assert deleted.status_code == 202
        assert storage_bytes(docker_registry) == before, "a manifest DELETE frees nothing until GC"

    output = run_garbage_collect(docker_registry)
    freed = before - storage_bytes(docker_registry)

    unique_bytes = doomed.size + doomed.config.size + 700_000 + 300_001
    assert freed == unique_bytes == seeded.bytes_freed_by_deleting([doomed.digest]), output

    with docker_registry.client() as client:
        # The restarted registry still serves the kept image, shared base included.
        base = client.get(f"/v2/team-b/backend/blobs/{seeded.shared_base.digest}")
        assert base.status_code == 200 and _sha256(base.content) == seeded.shared_base.digest
        assert _get_manifest(client, "team-b/backend", "v1").status_code == 200
        assert _get_manifest(client, "team-a/frontend", "v1").status_code == 404


def test_htpasswd_registry_refuses_anonymous_pushes_and_accepts_its_user(docker_registry_htpasswd):
    anonymous = httpx.get(f"{docker_registry_htpasswd.url}/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    with docker_registry_htpasswd.client() as client:
        image = push_image(client, "secure/app", tags=["v1"], layers=[random_bytes(1000, "auth")])
        assert _get_manifest(client, "secure/app", "v1").headers["Docker-Content-Digest"] == image.digest


def _openmetrics_history(start: datetime, days: int, step: timedelta) -> tuple[str, list[float], list[float]]:
    """A growing registry volume with a weekly rhythm, as OpenMetrics text."""
    timestamps, values = [], []
    t = start
    while t < start + timedelta(days=days):
        seconds = t.timestamp()
        elapsed_days = (t - start).total_seconds() / 86_400
        values.append(float(round(100e9 + 1e9 * elapsed_days
                                  + 2e9 * math.sin(2 * math.pi * elapsed_days / 7))))
        timestamps.append(seconds)
        t += step
    lines = ["# TYPE kubelet_volume_stats_used_bytes gauge"]
    labels = 'namespace="openshift-image-registry",persistentvolumeclaim="image-registry-storage"'
    lines += [f"kubelet_volume_stats_used_bytes{{{labels}}} {v:.0f} {int(ts)}"
              for ts, v in zip(timestamps, values)]
    lines.append("# EOF")
    return "\n".join(lines) + "\n", timestamps, values


def test_prometheus_answers_query_range_over_30_days_of_5_minute_history(prometheus_server):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    text, timestamps, values = _openmetrics_history(start, days=30, step=timedelta(minutes=5))
    assert len(values) == 30 * 288

    server = prometheus_server(text)
    response = httpx.get(f"{server.url}/api/v1/query_range", params={
        "query": "kubelet_volume_stats_used_bytes",
        "start": timestamps[0], "end": timestamps[-1], "step": "5m",
    }, timeout=60)
    assert response.status_code == 200, response.text
    (series,) = response.json()["data"]["result"]
    assert series["metric"]["persistentvolumeclaim"] == "image-registry-storage"
    assert [float(t) for t, _ in series["values"]] == timestamps   # the first day survived retention
    assert [float(v) for _, v in series["values"]] == values


def test_gc_delete_untagged_breaks_multiarch_indexes_in_distribution_28(docker_registry):
    """Why the GC executor must run plain `garbage-collect`: `--delete-untagged` in 2.8 deletes
    the untagged children of a tagged index, so `platform/tools:1.0` no longer pulls."""
    with docker_registry.client() as client:
        index = push_multiarch_image(client, "platform/tools", tags=["1.0"],
                                     layer_sizes=(1000,), seed="untagged")

    run_garbage_collect(docker_registry)
    with docker_registry.client() as client:
        assert all(_get_manifest(client, "platform/tools", child.digest).status_code == 200
                   for child in index.children)

    run_garbage_collect(docker_registry, delete_untagged=True)
    with docker_registry.client() as client:
        assert _get_manifest(client, "platform/tools", "1.0").status_code == 200
        assert all(_get_manifest(client, "platform/tools", child.digest).status_code == 404
                   for child in index.children)
