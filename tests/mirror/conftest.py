"""Fixtures for the mirror tests: two real registries (a source and a target), a seeded source,
a fault proxy, and plan lines built by hand for the executor."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from registry_lifecycle.mirror.plan import MIRROR, MIRROR_PLAN

from tests.fixtures.components import DockerRegistry, start_docker_registry
from tests.fixtures.oci_seed import (
    SeededRegistry,
    push_image,
    random_bytes,
    seed_registry,
)
from tests.mirror.fault_proxy import FaultProxy

BIG_LAYER = 700 * 1024          # above the chunk size the tests copy with: a chunked upload
CHUNK_SIZE = 128 * 1024


@pytest.fixture
def source_registry(tmp_path_factory) -> Iterator[DockerRegistry]:
    registry = start_docker_registry(tmp_path_factory.mktemp("mirror-source"))
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def target_registry(tmp_path_factory) -> Iterator[DockerRegistry]:
    registry = start_docker_registry(tmp_path_factory.mktemp("mirror-target"))
    try:
        yield registry
    finally:
        registry.stop()


@dataclass
class Seeded:
    """The source's content: `seed_registry`'s (shared base, a signed image with an SBOM
    referrer, a multi-arch index) plus an image whose layer takes several chunks."""

    registry: SeededRegistry

    def find(self, repository: str, tag: str):
        return self.registry.find(repository, tag)

    @property
    def big(self):
        return self.registry.find("team-c/big", "v1")


@pytest.fixture
def seeded_source(source_registry: DockerRegistry) -> Seeded:
    with source_registry.client() as client:
        seeded = seed_registry(client)
        seeded.add(push_image(client, "team-c/big", tags=["v1"],
                              layers=[random_bytes(BIG_LAYER, "big:0"), random_bytes(64 * 1024, "big:1")]))
    return Seeded(seeded)


@pytest.fixture
def proxy_factory() -> Iterator:
    started: list[FaultProxy] = []

    def start(upstream: DockerRegistry) -> FaultProxy:
        proxy = FaultProxy(upstream.url).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def plan_lines(rows: list[dict], *, plan_id: str = "plan-test", created_at: datetime | None = None):
    """A mirror_plan frame of `rows` (digest, repository, target; the rest defaulted)."""
    created_at = created_at or datetime.now(timezone.utc)
    full = []
    for row in rows:
        repositories = row.get("repositories", row["repository"])
        full.append({"plan_id": plan_id, "digest": row["digest"], "repository": row["repository"],
                     "repositories": repositories, "source_repository": row.get("source_repository", row["repository"]),
                     "target": row["target"], "region": row.get("region", "eu-west-1"),
                     "action": row.get("action", MIRROR), "rule": row.get("rule"), "bytes": row.get("bytes", 1000),
                     "pulls_per_month": 10.0, "egress_saved_per_month": 1.0, "storage_cost_per_month": 0.1,
                     "transfer_cost": 0.1, "monthly_cost_delta": -0.9, "reason": "test line",
                     "created_at": created_at})
    return pa.Table.from_pylist(full, schema=MIRROR_PLAN.schema).to_pandas()


def mirror_policy(targets: dict[str, str], **transfer):
    """The default policy with `targets` (name -> registry URL) in eu-west-1 and test-sized transfers."""
    from registry_lifecycle.config import load_policy, policy_with

    return policy_with(load_policy(), {"mirror": {
        "source_region": "us-east-1",
        "targets": [{"name": name, "url": url, "region": "eu-west-1", "connection_id": f"mirror_{name}",
                     "egress_cost_per_gb": 0.02, "storage_cost_per_gb_month": 0.023} for name, url in targets.items()],
        "transfer": {"chunk_size": CHUNK_SIZE, "max_retries": 2, **transfer},
    }})


@pytest.fixture
def lake(tmp_path: Path):
    from registry_lifecycle.lake import Lake

    return Lake(str(tmp_path / "lake"))
