"""The extraction's source clients against the real components they meet in production:
CNCF distribution 2.8 (Debian `docker-registry`) and Prometheus 2.42 (Debian `prometheus`).

The sandbox imitates both; these tests make sure the clients read the real things the same way:
multi-arch indexes, cosign signatures, OCI referrers and shared base layers as distribution
stores them, and storage samples as Prometheus answers `query_range` for them.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from registry_lifecycle.config import load_policy
from registry_lifecycle.sandbox.prometheus_api import to_openmetrics
from registry_lifecycle.sandbox.scenario import build_world
from registry_lifecycle.sources.prometheus import PrometheusClient, storage_usage
from registry_lifecycle.sources.registry import ParquetManifestCache, RegistryClient
from tests.fixtures.oci_seed import OCI_INDEX, SeededRegistry, seed_registry, signature_tag

pytestmark = pytest.mark.integration

FIRST_DAY = date(2026, 11, 20)
DAYS = 3
SAMPLES_PER_DAY = 288


@pytest.fixture
def seeded(docker_registry) -> SeededRegistry:
    """Schema 2 and OCI images on a shared base, a signed image with an SBOM referrer, a multi-arch index."""
    with docker_registry.client() as client:
        return seed_registry(client, seed=11)


def extract(docker_registry, cache_dir: Path):
    with RegistryClient(docker_registry.url, concurrency=4, page_size=2, backoff=0.0) as client:
        return client.extract(cache=ParquetManifestCache(cache_dir))


def test_the_registry_source_reads_indexes_signatures_and_shared_layers_from_distribution(
        docker_registry, seeded: SeededRegistry, tmp_path: Path):
    snapshot = extract(docker_registry, tmp_path)
    images = snapshot.images.set_index("digest")
    assert set(images.index) == {manifest.digest for manifest in seeded.manifests}

    index = next(m for m in seeded.manifests if m.media_type == OCI_INDEX and m.repository == "platform/tools")
    assert images.loc[index.digest, "index_digest"] is None or pd.isna(images.loc[index.digest, "index_digest"])
    assert [images.loc[child.digest, "index_digest"] for child in index.children] == [index.digest] * 2

    signed = seeded.find("team-a/frontend", "v2")
    signature = seeded.find("team-a/frontend", signature_tag(signed.digest))
    assert images.loc[signature.digest, "subject_digest"] == signed.digest
    sbom = next(m for m in seeded.manifests if m.artifact_type and m.subject == signed.digest)
    assert images.loc[sbom.digest, "subject_digest"] == signed.digest

    layers = snapshot.layers
    sharing = set(layers.loc[layers.layer_digest == seeded.shared_base.digest, "image_digest"])
    assert {seeded.find("team-a/frontend", "v1").digest, seeded.find("team-b/backend", "v1").digest} <= sharing
    assert images.loc[list(sharing), "repository"].nunique() == 2, "one base layer, two repositories"


def test_a_warm_run_against_distribution_fetches_no_manifest(docker_registry, seeded: SeededRegistry,
                                                             tmp_path: Path):
    """Digests are immutable: a daily run re-fetches nothing it has already verified."""
    cold = extract(docker_registry, tmp_path)
    assert cold.stats.requests["manifest_get"] >= len(seeded.manifests)
    warm = extract(docker_registry, tmp_path)
    assert warm.stats.requests["manifest_get"] == 0
    assert warm.stats.manifest_gets_avoided == len(seeded.manifests)
    pd.testing.assert_frame_equal(warm.images, cold.images)
    pd.testing.assert_frame_equal(warm.layers, cold.layers)


def test_the_prometheus_source_reads_every_storage_sample_of_a_day_from_prometheus(prometheus_server):
    """288 five-minute samples a day, the values the volume really reported."""
    world = build_world(seed=7, scale="tiny", days=14, until=FIRST_DAY + timedelta(days=DAYS), future_days=0)
    start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=timezone.utc)
    end = start + timedelta(days=DAYS)
    window = [replace(series,
                      timestamps=[t for t in series.timestamps if start.timestamp() <= t < end.timestamp()],
                      values=[v for t, v in zip(series.timestamps, series.values)
                              if start.timestamp() <= t < end.timestamp()])
              for series in world.storage]
    server = prometheus_server(to_openmetrics(window))
    expected = {series.metric: dict(zip(series.timestamps, series.values)) for series in window}

    settings = load_policy().sources.prometheus
    client = PrometheusClient(server.url)
    try:
        for offset in range(DAYS):
            day_start = start + timedelta(days=offset)
            frame = storage_usage(client, used_query=settings.used_query, capacity_query=settings.capacity_query,
                                  volume=settings.volume, start=day_start,
                                  end=day_start + timedelta(days=1) - timedelta(seconds=1), step=settings.step)
            assert len(frame) == SAMPLES_PER_DAY, day_start
            seconds = [ts.timestamp() for ts in frame.ts]
            assert seconds[0] == day_start.timestamp()
            assert frame.used_bytes.tolist() == [expected["kubelet_volume_stats_used_bytes"][s] for s in seconds]
            assert frame.capacity_bytes.tolist() == [expected["kubelet_volume_stats_capacity_bytes"][s]
                                                     for s in seconds]
    finally:
        client.close()
