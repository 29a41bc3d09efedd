"""A small, consistent snapshot of every extracted dataset, built from the contracts.

Each frame goes through the contract's Arrow schema, so its columns and dtypes are exactly
what the lake hands back; a test breaks one rule at a time on a copy of it.
"""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pytest

from registry_lifecycle.datasets import ALL

AS_OF = datetime(2026, 3, 10, 6, 0, tzinfo=timezone.utc)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


INDEX, AMD64, ARM64, SIGNATURE, OLD = (digest(name) for name in ("index", "amd64", "arm64", "sig", "old"))
BUILT = AS_OF - timedelta(days=9)


def frame(dataset: str, rows: list[dict]) -> pd.DataFrame:
    """Rows as the lake would return them: exactly the contract's columns and types."""
    return pa.Table.from_pylist(rows, schema=ALL[dataset].schema).to_pandas()


def _image(digest_: str, media_type: str, **fields: object) -> dict:
    return {"digest": digest_, "repository": "shop/web", "media_type": media_type, "size_bytes": 1_234,
            "config_digest": None, "created_at": None, "architecture": None, "os": None, "labels": None,
            "subject_digest": None, "index_digest": None, "managed": True, **fields}


def snapshot() -> dict[str, pd.DataFrame]:
    """A multi-arch index with two children, a signature of the index, and an older image."""
    images = [
        _image(INDEX, OCI_INDEX),
        _image(AMD64, OCI_MANIFEST, config_digest=digest("cfg-amd64"), created_at=BUILT, architecture="amd64",
               os="linux", labels="{}", index_digest=INDEX),
        _image(ARM64, OCI_MANIFEST, config_digest=digest("cfg-arm64"), created_at=BUILT, architecture="arm64",
               os="linux", labels="{}", index_digest=INDEX),
        _image(SIGNATURE, OCI_MANIFEST, subject_digest=INDEX),
        _image(OLD, DOCKER_MANIFEST, repository="shop/api", config_digest=digest("cfg-old"),
               created_at=BUILT - timedelta(days=90), architecture="amd64", os="linux"),
    ]
    layers = [
        {"image_digest": AMD64, "layer_digest": digest("cfg-amd64"), "size_bytes": 900, "position": -1},
        {"image_digest": AMD64, "layer_digest": digest("base"), "size_bytes": 50_000, "position": 0},
        {"image_digest": AMD64, "layer_digest": digest("app"), "size_bytes": 7_000, "position": 1},
        {"image_digest": ARM64, "layer_digest": digest("base-arm"), "size_bytes": 48_000, "position": 0},
        {"image_digest": OLD, "layer_digest": digest("base"), "size_bytes": 50_000, "position": 0},
    ]
    tags = [
        {"namespace": "shop", "imagestream": "web", "tag": "latest", "revision": 0, "digest": INDEX,
         "created_at": BUILT},
        {"namespace": "shop", "imagestream": "web", "tag": "latest", "revision": 1, "digest": OLD,
         "created_at": BUILT - timedelta(days=90)},
        {"namespace": "shop", "imagestream": "api", "tag": "v1", "revision": 0, "digest": OLD,
         "created_at": BUILT - timedelta(days=90)},
    ]
    references = [
        {"cluster": "prod", "namespace": "shop", "kind": "Deployment", "name": "web", "container": "web",
         "image_ref": f"image-registry.openshift-image-registry.svc:5000/shop/web@{INDEX}", "digest": INDEX,
         "source": "template", "active": True, "observed_at": AS_OF - timedelta(minutes=5)},
        {"cluster": "prod", "namespace": "shop", "kind": "CronJob", "name": "report", "container": "main",
         "image_ref": "quay.io/example/report:1.0", "digest": None, "source": "cronjob", "active": False,
         "observed_at": AS_OF - timedelta(minutes=5)},
    ]
    pulls_daily = [
        {"day": date(2026, 3, 9), "repository": "shop/web", "digest": AMD64, "tag": "latest", "cluster": "prod",
         "pulls": 12, "bytes": 684_000},
        {"day": date(2026, 3, 9), "repository": "shop/api", "digest": OLD, "tag": None, "cluster": "prod",
         "pulls": 1, "bytes": 50_000},
    ]
    scans = [
        {"digest": AMD64, "scanner": "trivy", "vuln_id": "CVE-2024-0001", "severity": "HIGH", "package": "openssl",
         "installed_version": "3.0.1", "fixed_version": "3.0.2", "scanned_at": AS_OF - timedelta(hours=3)},
        {"digest": OLD, "scanner": "trivy", "vuln_id": "CVE-2023-0002", "severity": "UNKNOWN", "package": "zlib",
         "installed_version": "1.2.11", "fixed_version": None, "scanned_at": AS_OF - timedelta(hours=3)},
    ]
    storage_usage = [
        {"ts": AS_OF - timedelta(minutes=10 * i), "volume": "image-registry-storage", "used_bytes": 4.0e11,
         "capacity_bytes": 1.0e12, "source": "prometheus"} for i in range(3)
    ]
    builds = [
        {"namespace": "shop", "name": "web-7", "output_digest": AMD64, "source_uri": "https://git.example/shop/web",
         "commit": "4f2a9c1", "ref": "main", "completed_at": BUILT},
        {"namespace": "shop", "name": "web-8", "output_digest": None, "source_uri": None, "commit": None,
         "ref": None, "completed_at": None},
    ]
    namespaces = [{"namespace": "shop", "labels": '{"env": "prod"}', "annotations": "{}"}]
    index_children = [{"index_digest": image["index_digest"], "child_digest": image["digest"]}
                      for image in images if image.get("index_digest")]
    internal = "image-registry.openshift-image-registry.svc:5000"
    image_objects = [{"digest": image["digest"], "repository": image["repository"],
                      "image_ref": f"{internal}/{image['repository']}@{image['digest']}"} for image in images]
    image_objects.append({"digest": "sha256:" + "cd" * 32, "repository": None,
                          "image_ref": "quay.io/example/report@sha256:" + "cd" * 32})
    return {name: frame(name, rows) for name, rows in (
        ("images", images), ("layers", layers), ("tags", tags), ("references", references),
        ("pulls_daily", pulls_daily), ("scans", scans), ("storage_usage", storage_usage), ("builds", builds),
        ("namespaces", namespaces), ("index_children", index_children), ("image_objects", image_objects))}


@pytest.fixture
def frames() -> dict[str, pd.DataFrame]:
    """A fresh copy per test, so a test may break it in place."""
    return snapshot()
