"""Hand-built snapshots for the GC tests: a few images, tags and workloads, as the lake returns them.

Each frame goes through its contract's Arrow schema, so columns and dtypes are exactly what
the extractor stages; a test states only the handful of facts it is about.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa

from registry_lifecycle.config import Policy, load_policy
from registry_lifecycle.datasets import ALL

AS_OF = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
LONG_AGO = AS_OF - timedelta(days=200)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MiB = 2**20


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def policy(**gc: object) -> Policy:
    """The default policy with some gc settings replaced wholesale (validated like a file):
    `protected_tag_patterns={}` means no patterns, not "merge nothing into the defaults"."""
    default = load_policy().model_dump()
    return Policy.model_validate({**default, "gc": {**default["gc"], **gc}})


def contract_frame(dataset: str, rows: list[dict]) -> pd.DataFrame:
    return pa.Table.from_pylist(rows, schema=ALL[dataset].schema).to_pandas()


@dataclass
class Registry:
    """A snapshot under construction; `frames()` hands it over as the lake would."""

    images: list[dict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    tags: list[dict] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    namespaces: dict[str, dict] = field(default_factory=dict)

    def image(self, name: str, *, repository: str = "shop/web", layers: dict[str, int] | None = None,
              config: int = 1_000, created: datetime = LONG_AGO, index: str | None = None,
              subject: str | None = None, media_type: str = DOCKER_MANIFEST, architecture: str = "amd64") -> str:
        """An image manifest with its config blob (position -1) and layers {name: size}."""
        image_digest = digest(name)
        layers = {f"{name}/layer": 10 * MiB} if layers is None else layers
        config_digest = digest(f"{name}/config")
        self.layers.append({"image_digest": image_digest, "layer_digest": config_digest, "size_bytes": config,
                            "position": -1})
        for position, (layer, size) in enumerate(layers.items()):
            self.layers.append({"image_digest": image_digest, "layer_digest": digest(layer), "size_bytes": size,
                                "position": position})
        self.images.append({"digest": image_digest, "repository": repository, "media_type": media_type,
                            "size_bytes": config + sum(layers.values()), "config_digest": config_digest,
                            "created_at": created, "architecture": architecture, "os": "linux", "labels": "{}",
                            "subject_digest": subject, "index_digest": index, "managed": True})
        return image_digest

    def index(self, name: str, children: list[str], *, repository: str = "shop/web", size: int = 800,
              created: datetime = LONG_AGO) -> str:
        """A multi-arch index: its children must already exist; their index_digest is set here."""
        index_digest = digest(name)
        for row in self.images:
            if row["digest"] in children:
                row["index_digest"] = index_digest
        self.images.append({"digest": index_digest, "repository": repository, "media_type": OCI_INDEX,
                            "size_bytes": size, "config_digest": None, "created_at": created, "architecture": None,
                            "os": None, "labels": None, "subject_digest": None, "index_digest": None,
                            "managed": True})
        return index_digest

    def signature(self, name: str, subject: str, *, namespace: str = "shop", stream: str = "web",
                  by_tag: bool = False, created: datetime = LONG_AGO) -> str:
        """A cosign signature: an OCI `subject`, or (by_tag) only a `sha256-<hex>.sig` tag."""
        signature_digest = self.image(name, repository=f"{namespace}/{stream}", layers={f"{name}/payload": 300},
                                      config=2, media_type=OCI_MANIFEST, subject=None if by_tag else subject,
                                      created=created)
        if by_tag:
            self.tag(signature_digest, f"sha256-{subject.split(':', 1)[1]}.sig", namespace=namespace, stream=stream,
                     created=created)
        return signature_digest

    def tag(self, image_digest: str, tag: str, *, namespace: str = "shop", stream: str = "web", revision: int = 0,
            created: datetime = LONG_AGO) -> None:
        self.tags.append({"namespace": namespace, "imagestream": stream, "tag": tag, "revision": revision,
                          "digest": image_digest, "created_at": created})

    def reference(self, image_digest: str | None, *, namespace: str = "shop", kind: str = "Deployment",
                  name: str = "web", source: str = "template", active: bool = True) -> None:
        self.references.append({
            "cluster": "prod-east", "namespace": namespace, "kind": kind, "name": name, "container": "main",
            "image_ref": f"image-registry.openshift-image-registry.svc:5000/{namespace}/web@{image_digest}",
            "digest": image_digest, "source": source, "active": active, "observed_at": AS_OF})

    def namespace(self, name: str, *, labels: dict[str, str] | None = None,
                  annotations: dict[str, str] | None = None) -> None:
        self.namespaces[name] = {"labels": labels or {}, "annotations": annotations or {}}

    def frames(self) -> Snapshot:
        namespaces = dict(self.namespaces)
        for row in self.images + self.tags + self.references:
            name = row.get("namespace") or row["repository"].split("/")[0]
            namespaces.setdefault(name, {"labels": {"env": "dev"}, "annotations": {}})
        return Snapshot(images=contract_frame("images", self.images), layers=contract_frame("layers", self.layers),
                        tags=contract_frame("tags", self.tags),
                        references=contract_frame("references", self.references), namespaces=namespaces)


@dataclass(frozen=True)
class Snapshot:
    images: pd.DataFrame
    layers: pd.DataFrame
    tags: pd.DataFrame
    references: pd.DataFrame
    namespaces: dict[str, dict]
