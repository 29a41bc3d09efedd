"""A GC plan executed against a real registry (CNCF distribution 2.8, `docker-registry`).

The registry is seeded over its HTTP API with what production holds (a base layer shared by
images of two repositories, a signed image with an SBOM referrer, a multi-arch index), read
back with the project's extractor, and a plan is built for some of it: the images to delete,
and (with `reclaim.with_dependents`) the signatures, referrers and index children that go
with them, each with its share of the bytes the project's reclaim calculation predicts. The
plan is executed with the OCI backend, the registry's own `garbage-collect` runs, and then:

- the blob store shrank by the predicted bytes, within 1% (the DESIGN target), and exactly by
  what the seeding records say distribution's GC frees (computed without the code under test);
- every kept image is still pullable: its manifest and every blob, fetched and hashed, both by
  `verify_execution` and independently with plain HTTP.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from registry_lifecycle.config import load_policy
from registry_lifecycle.datasets import REFERENCES, TAGS
from registry_lifecycle.gc.audit import DELETED, AuditLog
from registry_lifecycle.gc.execute import Approval, OciBackend, execute_plan
from registry_lifecycle.gc.plan import ACTION_DELETE, ACTION_WITH_SUBJECT, GC_PLAN
from registry_lifecycle.gc.reclaim import BlobGraph, with_dependents
from registry_lifecycle.gc.verify import verify_execution
from registry_lifecycle.lake import Lake
from registry_lifecycle.sources.registry import RegistryClient

from tests.fixtures.components import DockerRegistry, run_garbage_collect, storage_bytes
from tests.fixtures.oci_seed import (MANIFEST_ACCEPT, PushedManifest, SeededRegistry, push_image, random_bytes,
                                     seed_registry)

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

PLAN_ID = "plan-real-registry"
NOW = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)


def seed(registry: DockerRegistry) -> SeededRegistry:
    """seed_registry's content plus a second backend build on the shared base, kept."""
    with registry.client() as client:
        seeded = seed_registry(client)
        base = seeded.shared_base
        assert base is not None
        backend_v1 = seeded.find("team-b/backend", "v1")
        seeded.add(push_image(client, "team-b/backend", tags=["v2"],
                              layers=[random_bytes(base.size, "0:base"), random_bytes(640 * 1024, "backend:v2")],
                              created="2026-03-01T00:00:00Z"))
        assert backend_v1.layers[0].digest == base.digest
    return seeded


def plan_for(images: pd.DataFrame, layers: pd.DataFrame, roots: list[str], seeded: SeededRegistry) -> pd.DataFrame:
    """The gc_plan of `roots` and everything that goes with them, each row with its share of the
    predicted bytes, ranked by unit (a dependent takes the rank of the root it follows).

    Every index's full listing is given (as the seeding recorded it): `images.index_digest` names
    one index per child, and without the listing reclaim presumes that a child of a repository
    which still has an index at the time may be listed by it, which keeps the SBOM that the OCI
    1.1 fallback index lists.
    """
    listing = pd.DataFrame([(manifest.digest, child.digest) for manifest in seeded.manifests
                            for child in manifest.children], columns=["index_digest", "child_digest"])
    doomed_mask = with_dependents(images, roots, index_children=listing)
    doomed = images.loc[doomed_mask, ["digest", "repository", "subject_digest", "index_digest"]]
    shares = BlobGraph(images, layers).shares(doomed_mask)
    parent = {row.digest: row.index_digest if row.index_digest in set(doomed["digest"]) else row.subject_digest
              for row in doomed.itertuples() if row.digest not in roots}

    def root_of(digest: str) -> str:
        while digest in parent:
            digest = parent[digest]
        return digest

    rank = {root: position + 1 for position, root in enumerate(roots)}
    rows = [{"plan_id": PLAN_ID, "digest": row.digest, "repository": row.repository,
             "namespace": row.repository.split("/", 1)[0],
             "action": ACTION_DELETE if row.digest in roots else ACTION_WITH_SUBJECT,
             "bytes": int(shares[row.digest]), "mode": "approve", "rank": rank[root_of(row.digest)],
             "reason": "test plan", "created_at": NOW - timedelta(hours=1)} for row in doomed.itertuples()]
    return pa.Table.from_pylist(rows, schema=GC_PLAN.schema).to_pandas()


def no_rows(dataset):
    """A registry without a cluster: no workload references, no ImageStream tags to re-check."""
    return lambda namespaces: pa.Table.from_pylist([], schema=dataset.schema).to_pandas()


def assert_pullable(client: httpx.Client, manifest: PushedManifest) -> None:
    """Pull like a container runtime: manifest by digest, then every blob, each hashed."""
    response = client.get(f"/v2/{manifest.repository}/manifests/{manifest.digest}",
                          headers={"Accept": MANIFEST_ACCEPT})
    assert response.status_code == 200, f"{manifest.repository}@{manifest.digest}: HTTP {response.status_code}"
    assert "sha256:" + hashlib.sha256(response.content).hexdigest() == manifest.digest
    for blob in manifest.blobs:
        response = client.get(f"/v2/{manifest.repository}/blobs/{blob.digest}", follow_redirects=True)
        assert response.status_code == 200, f"{manifest.repository} blob {blob.digest}: HTTP {response.status_code}"
        assert "sha256:" + hashlib.sha256(response.content).hexdigest() == blob.digest


def test_executed_plan_frees_the_predicted_bytes_and_keeps_every_kept_image_pullable(
        docker_registry: DockerRegistry, tmp_path: Path):
    seeded = seed(docker_registry)
    with RegistryClient(docker_registry.url, max_retries=2, backoff=0.05) as client:
        snapshot = client.extract()
    images, layers = snapshot.images, snapshot.layers
    frontend_v1 = seeded.find("team-a/frontend", "v1")
    frontend_v2 = seeded.find("team-a/frontend", "v2")
    tools = seeded.find("platform/tools", "1.0")
    plan = plan_for(images, layers, [frontend_v2.digest, tools.digest, frontend_v1.digest], seeded)

    doomed = set(plan["digest"])
    kept = [manifest for manifest in seeded.manifests if manifest.digest not in doomed]
    # What goes with the roots: v2's cosign signature, SBOM referrer and its fallback index,
    # and both children of the tools index. The shared base stays for team-b/backend.
    assert len(plan) == 3 + 3 + 2
    assert {m.repository for m in kept} == {"team-b/backend"} and len(kept) == 2
    predicted = BlobGraph(images, layers).reclaim(images["digest"].isin(list(doomed)).to_numpy()).honest_bytes
    assert int(plan["bytes"].sum()) == predicted
    expected = seeded.bytes_freed_by_deleting(doomed)

    before = storage_bytes(docker_registry)
    audit = AuditLog(Lake(tmp_path / "lake"), NOW.date(), "manual__real-registry")
    approval = Approval(plan_id=PLAN_ID, approved_by="alice", approved_at=NOW - timedelta(minutes=30))
    with RegistryClient(docker_registry.url, max_retries=2, backoff=0.05) as client:
        result = execute_plan(plan, approval=approval, policy=load_policy(), backend=OciBackend(client),
                              reread_references=no_rows(REFERENCES), reread_tags=no_rows(TAGS), audit=audit, now=NOW)
    assert result.deleted == doomed, result.outcomes()
    assert set(audit.read(PLAN_ID)["outcome"]) == {DELETED}

    run_garbage_collect(docker_registry)
    after = storage_bytes(docker_registry)
    freed = before - after
    log.warning("bytes freed by distribution's GC: %d; predicted by gc/reclaim.py: %d (%+.3f%%); seeding records: %d",
                freed, predicted, 100 * (freed - predicted) / predicted, expected)
    assert freed == expected
    assert abs(freed - predicted) <= 0.01 * predicted

    kept_frame = pd.DataFrame({"repository": [m.repository for m in kept], "digest": [m.digest for m in kept]})
    with RegistryClient(docker_registry.url, max_retries=2, backoff=0.05) as client:
        verification = verify_execution(client, result.removed, kept=kept_frame, storage_before=before,
                                        storage_after=after, download_blobs=True)
    assert verification.ok, verification.summary()
    assert verification.kept_manifests == len(kept) and verification.removed == len(doomed)
    with docker_registry.client() as http:
        for manifest in kept:
            assert_pullable(http, manifest)
        for manifest in seeded.manifests:
            if manifest.digest in doomed:
                gone = http.head(f"/v2/{manifest.repository}/manifests/{manifest.digest}",
                                 headers={"Accept": MANIFEST_ACCEPT})
                assert gone.status_code == 404


def test_a_deletion_retried_after_it_succeeded_is_already_gone(docker_registry: DockerRegistry):
    """The registry's own answer to a repeated DELETE is what makes a retried run idempotent."""
    with docker_registry.client() as http:
        image = push_image(http, "team-c/cron", tags=["2026.11"], layers=[random_bytes(4096, "cron")])
    with RegistryClient(docker_registry.url, max_retries=0) as client:
        backend = OciBackend(client)
        assert not backend.delete(image.repository, image.digest).already_gone
        assert backend.delete(image.repository, image.digest).already_gone
        assert client.tags(image.repository) == []      # distribution drops the tags with the manifest
