"""A small registry held in memory, for tests and hand-built scenarios.

It implements `model.RegistryContent` and the referrers extension of `registry_api`, with the
one property a time-travelling sandbox needs: every link, tag move and delete happens at an
instant, and each read answers as of the instant it is given. So a tag re-pointed on day 12
still names its old manifest when the clock is set to day 11, and a manifest pushed later is
invisible before it was pushed.

Manifests are stored once by digest (like distribution's blob store) and linked per
repository; deleting unlinks a manifest from one repository and drops the tags that pointed
at it there, and the repository stays listed, as in distribution.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator

from . import oci
from .blobs import BlobStore
from .model import Manifest


class _Timeline:
    """The value of one key over simulated time: events (since, value); None is "absent".

    Events at the same instant keep their insertion order, so the later call wins.
    """

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.values: list[str | None] = []

    def set(self, when: datetime, value: str | None) -> None:
        index = bisect.bisect_right(self.times, when)
        self.times.insert(index, when)
        self.values.insert(index, value)

    def at(self, when: datetime) -> str | None:
        index = bisect.bisect_right(self.times, when)
        return self.values[index - 1] if index else None


@dataclass
class _Repository:
    created: datetime | None = None                                  # first manifest push
    manifests: dict[str, _Timeline] = field(default_factory=dict)     # digest -> linked (digest) or None
    tags: dict[str, _Timeline] = field(default_factory=dict)          # tag -> digest or None
    blobs: set[str] = field(default_factory=set)
    referrers: dict[str, list[str]] = field(default_factory=dict)     # subject -> referrer digests


class InMemoryRegistry:
    """Registry content as of any instant, built by `push_manifest` and `link_blob`."""

    def __init__(self, blobs: BlobStore | None = None) -> None:
        self.blobs = blobs if blobs is not None else BlobStore()
        self._lock = threading.Lock()
        self._manifests: dict[str, Manifest] = {}
        self._referrer_descriptors: dict[str, dict[str, Any]] = {}
        self._repositories: dict[str, _Repository] = {}

    # -- building -------------------------------------------------------------------
    def push_manifest(self, repository: str, body: bytes, media_type: str, tags: Iterable[str] = (),
                      *, at: datetime) -> str:
        """Link a manifest into `repository` from `at` on, pointing `tags` at it; returns its
        digest, the sha256 of `body` exactly as given (it is served byte for byte)."""
        if media_type not in oci.MANIFEST_TYPES:
            raise ValueError(f"not a manifest media type: {media_type}")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        document = json.loads(body)
        with self._lock:
            repo = self._repositories.setdefault(repository, _Repository())
            repo.created = at if repo.created is None else min(repo.created, at)
            self._manifests[digest] = Manifest(digest=digest, media_type=media_type, body=body)
            repo.manifests.setdefault(digest, _Timeline()).set(at, digest)
            for tag in tags:
                repo.tags.setdefault(tag, _Timeline()).set(at, digest)
            subject = (document.get("subject") or {}).get("digest")
            if subject:
                self._referrer_descriptors[digest] = _referrer_descriptor(digest, media_type, body, document)
                known = repo.referrers.setdefault(subject, [])
                if digest not in known:
                    known.append(digest)
        return digest

    def link_blob(self, repository: str, digest: str) -> None:
        """Make a blob of the BlobStore servable from `repository` (layers, configs)."""
        if digest not in self.blobs:
            raise KeyError(f"blob {digest} is not in the blob store")
        with self._lock:
            self._repositories.setdefault(repository, _Repository()).blobs.add(digest)

    # -- RegistryContent --------------------------------------------------------------
    def repositories(self, at: datetime) -> list[str]:
        with self._lock:
            return sorted(name for name, repo in self._repositories.items()
                          if repo.created is not None and repo.created <= at)

    def tags(self, repository: str, at: datetime) -> dict[str, str] | None:
        with self._lock:
            repo = self._visible(repository, at)
            if repo is None:
                return None
            return {tag: digest for tag, timeline in repo.tags.items()
                    if (digest := timeline.at(at)) is not None}

    def manifest(self, repository: str, reference: str, at: datetime) -> Manifest | None:
        with self._lock:
            repo = self._visible(repository, at)
            if repo is None:
                return None
            if ":" in reference:
                digest: str | None = reference
            else:
                tag = repo.tags.get(reference)
                digest = tag.at(at) if tag is not None else None
            if digest is None or not self._linked(repo, digest, at):
                return None
            return self._manifests[digest]

    def blob(self, repository: str, digest: str, at: datetime) -> tuple[int, Iterator[bytes]] | None:
        with self._lock:
            repo = self._visible(repository, at)
            if repo is None or digest not in repo.blobs:
                return None
        return self.blobs.open(digest)

    def delete_manifest(self, repository: str, digest: str, at: datetime) -> bool:
        with self._lock:
            repo = self._visible(repository, at)
            if repo is None or not self._linked(repo, digest, at):
                return False
            repo.manifests[digest].set(at, None)
            for timeline in repo.tags.values():
                if timeline.at(at) == digest:
                    timeline.set(at, None)
            return True

    # -- referrers (registry_api.ReferrersSource) -------------------------------------
    def referrers(self, repository: str, digest: str, at: datetime) -> list[dict[str, Any]]:
        with self._lock:
            repo = self._visible(repository, at)
            if repo is None:
                return []
            return [dict(self._referrer_descriptors[referrer])
                    for referrer in repo.referrers.get(digest, []) if self._linked(repo, referrer, at)]

    # -- helpers ----------------------------------------------------------------------
    def _visible(self, repository: str, at: datetime) -> _Repository | None:
        repo = self._repositories.get(repository)
        if repo is None or repo.created is None or repo.created > at:
            return None
        return repo

    @staticmethod
    def _linked(repo: _Repository, digest: str, at: datetime) -> bool:
        timeline = repo.manifests.get(digest)
        return timeline is not None and timeline.at(at) is not None


def _referrer_descriptor(digest: str, media_type: str, body: bytes, document: dict[str, Any]) -> dict[str, Any]:
    """The descriptor the referrers API lists for a manifest with a subject: its artifactType,
    else its config's media type (never for an index), and its annotations (OCI 1.1)."""
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(body)}
    artifact_type = document.get("artifactType") or (document.get("config") or {}).get("mediaType")
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if document.get("annotations"):
        descriptor["annotations"] = document["annotations"]
    return descriptor
