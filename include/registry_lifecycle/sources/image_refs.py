"""Parsing and resolving container image references the way OpenShift does.

A workload names its image in one of several forms: a pull spec by digest
(`host/ns/name@sha256:...`), a pull spec by tag (`host/ns/name:tag`), or an object reference
(`ImageStreamTag ns/name:tag`, `ImageStreamImage ns/name@sha256:...`, `DockerImage <pull spec>`).
Resolution turns each into the manifest digest it means *now*, or None when that cannot be
known (an external registry by tag).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from ..datasets import DIGEST_PATTERN

DIGEST = re.compile(DIGEST_PATTERN)
DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True)
class PullSpec:
    registry: str
    namespace: str
    name: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def parse_pull_spec(ref: str) -> PullSpec | None:
    """Split `registry/namespace/name[:tag][@digest]`; None if it is not a pull spec."""
    ref = ref.strip()
    for prefix in ("docker-pullable://", "docker://", "cri-o://"):
        ref = ref.removeprefix(prefix)
    if not ref or " " in ref:
        return None
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not DIGEST.match(digest):
            return None
    parts = ref.split("/")
    registry = DEFAULT_REGISTRY
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts.pop(0)
    tag = None
    if ":" in parts[-1]:
        parts[-1], tag = parts[-1].rsplit(":", 1)
    if not parts[-1]:
        return None
    namespace = "/".join(parts[:-1])
    if tag is None and digest is None:
        tag = "latest"
    return PullSpec(registry, namespace, parts[-1], tag, digest)


class Resolver:
    """Resolves references against the current ImageStream tags of one cluster."""

    def __init__(self, current_tags: dict[tuple[str, str, str], str], internal_hosts: set[str]) -> None:
        self.current_tags = current_tags          # (namespace, imagestream, tag) -> digest
        self.internal_hosts = internal_hosts      # hosts that mean "the integrated registry"

    def pull_spec(self, ref: str) -> str | None:
        spec = parse_pull_spec(ref)
        if spec is None:
            return None
        if spec.digest:
            return spec.digest
        if spec.registry in self.internal_hosts and spec.namespace and "/" not in spec.namespace:
            return self.current_tags.get((spec.namespace, spec.name, spec.tag or "latest"))
        return None

    def object_ref(self, ref: dict | None, default_namespace: str) -> tuple[str, str | None]:
        """(image_ref as written, digest) for an ObjectReference to an image."""
        if not ref:
            return "", None
        kind = ref.get("kind", "")
        name = ref.get("name", "")
        namespace = ref.get("namespace") or default_namespace
        if kind == "DockerImage":
            return name, self.pull_spec(name)
        if kind == "ImageStreamImage" and "@" in name:
            digest = name.split("@", 1)[1]
            return f"ImageStreamImage {namespace}/{name}", digest if DIGEST.match(digest) else None
        if kind == "ImageStreamTag":
            stream, _, tag = name.partition(":")
            return f"ImageStreamTag {namespace}/{name}", self.current_tags.get((namespace, stream, tag or "latest"))
        return f"{kind} {namespace}/{name}", None
