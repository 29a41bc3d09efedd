"""OCI / Docker manifest and config documents, built as the exact bytes a registry serves.

A manifest's digest is the sha256 of its bytes, so they are serialised once, here, and never
re-encoded afterwards.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
COSIGN_SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SPDX_SBOM = "application/spdx+json"
INTOTO_ATTESTATION = "application/vnd.in-toto+json"

INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX})


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=False).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


def image_config(*, architecture: str, os: str, created: str, labels: dict[str, str],
                 diff_ids: list[str], history_note: str) -> bytes:
    """An image config blob (the JSON a `docker inspect` shows)."""
    return canonical({
        "architecture": architecture,
        "os": os,
        "created": created,
        "config": {"Labels": labels, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": history_note}],
    })


def image_manifest(media_type: str, config: Descriptor, layers: list[Descriptor], *,
                   subject: Descriptor | None = None, artifact_type: str | None = None,
                   annotations: dict | None = None) -> bytes:
    document: dict = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type and media_type == OCI_MANIFEST:
        document["artifactType"] = artifact_type
    document["config"] = config.to_json()
    document["layers"] = [layer.to_json() for layer in layers]
    if subject is not None and media_type == OCI_MANIFEST:
        document["subject"] = subject.to_json()
    if annotations:
        document["annotations"] = annotations
    return canonical(document)


def image_index(media_type: str, manifests: list[Descriptor]) -> bytes:
    return canonical({"schemaVersion": 2, "mediaType": media_type,
                      "manifests": [m.to_json() for m in manifests]})
