"""The simulated world: every image, tag revision, workload and pull of the sandbox's history,
with as-of views that the HTTP APIs serve.

Everything carries the instant it appeared and (if it did) the instant it went away, so the
same world answers "what did the cluster look like on day D" for any D in its history. The
generator (`scenario.py`) fills it; nothing here knows how the history was invented.
"""
from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterator

from . import oci
from .blobs import BlobStore
from .model import Manifest, PullRecord, ResourceType, Series, TimelineSource

INTERNAL_REGISTRY = "image-registry.openshift-image-registry.svc:5000"
PUBLIC_REGISTRY = "default-route-openshift-image-registry.apps.sandbox.example.com"


def rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SimImage:
    """One manifest in the registry (an OpenShift Image object)."""

    digest: str
    repository: str                   # the repository it was first pushed to
    media_type: str
    manifest: bytes
    created: datetime
    config_digest: str | None
    layers: list[tuple[str, int, str]]        # (digest, size, mediaType) in manifest order
    architecture: str = "amd64"
    os: str = "linux"
    labels: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)      # for an index: child manifest digests
    subject: str | None = None                              # for a referrer: the image it describes
    kind: str = "app"      # app | feature | base | index-child | signature | sbom | attestation
    config_size: int = 0
    removed: datetime | None = None

    def exists_at(self, at: datetime) -> bool:
        return self.created <= at and (self.removed is None or at < self.removed)

    @property
    def size(self) -> int:
        """dockerImageMetadata.Size: config plus layers, as OpenShift reports it (shared layers included)."""
        return self.config_size + sum(size for _, size, _ in self.layers)


@dataclass
class TagEvent:
    created: datetime
    digest: str
    generation: int


@dataclass
class TagHistory:
    items: list[TagEvent] = field(default_factory=list)      # oldest first
    removed: datetime | None = None
    spec_from: dict | None = None     # spec.tags[].from for tags set with `oc tag`

    def at(self, when: datetime) -> list[TagEvent]:
        """Revisions that exist at `when`, newest first (as status.tags[].items lists them)."""
        if self.removed is not None and when >= self.removed:
            return []
        count = bisect.bisect_right([item.created for item in self.items], when)
        return list(reversed(self.items[:count]))


@dataclass
class SimStream:
    namespace: str
    name: str
    created: datetime
    tags: dict[str, TagHistory] = field(default_factory=dict)
    # Manifests linked into this repository without a tag (index children, referrers).
    extra_links: dict[str, datetime] = field(default_factory=dict)
    generation: int = 0

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.name}"

    def tag(self, tag: str, digest: str, when: datetime, spec_from: dict | None = None) -> None:
        self.generation += 1
        history = self.tags.setdefault(tag, TagHistory())
        if history.removed is not None:     # a re-created tag starts a fresh history
            history.items.clear()
            history.removed = None
        history.items.append(TagEvent(when, digest, self.generation))
        if spec_from is not None:
            history.spec_from = spec_from


class GroundTruth:
    """What really happened to each image, including after the served history ends.

    Decision quality is measured against this: an image deleted at `as_of` is a regret when it
    is pulled, or a workload starts referencing it, within the horizon after `as_of`.
    """

    def __init__(self) -> None:
        self.pull_days: dict[str, list[datetime]] = defaultdict(list)
        self.reference_starts: dict[str, list[datetime]] = defaultdict(list)
        self.categories: dict[str, set[str]] = defaultdict(set)   # trap name -> digests

    def add_pull(self, digest: str, when: datetime) -> None:
        self.pull_days[digest].append(when)

    def add_reference(self, digest: str, when: datetime) -> None:
        self.reference_starts[digest].append(when)

    def mark(self, category: str, digest: str) -> None:
        self.categories[category].add(digest)

    def finish(self) -> None:
        for times in (*self.pull_days.values(), *self.reference_starts.values()):
            times.sort()

    def next_use_after(self, digest: str, as_of: datetime) -> datetime | None:
        """First pull or new workload reference strictly after `as_of`."""
        candidates = []
        for times in (self.pull_days.get(digest, ()), self.reference_starts.get(digest, ())):
            index = bisect.bisect_right(times, as_of)
            if index < len(times):
                candidates.append(times[index])
        return min(candidates) if candidates else None

    def reused_within(self, digest: str, as_of: datetime, horizon_days: int) -> bool:
        nxt = self.next_use_after(digest, as_of)
        return nxt is not None and nxt <= as_of + timedelta(days=horizon_days)

    def digests(self, category: str) -> set[str]:
        return set(self.categories.get(category, ()))


class World:
    """The whole simulated history plus the as-of views served by the sandbox APIs."""

    def __init__(self, *, seed: int, scale: str, start: datetime, until: datetime,
                 future_until: datetime, blobs: BlobStore) -> None:
        self.seed = seed
        self.scale = scale
        self.start = start
        self.until = until
        self.future_until = future_until
        self.blobs = blobs
        self.images: dict[str, SimImage] = {}
        self.streams: dict[str, SimStream] = {}
        self.kube: dict[ResourceType, TimelineSource] = {}
        self.pulls: list[PullRecord] = []
        self.pushes: list[PullRecord] = []
        self.storage: list[Series] = []
        self.truth = GroundTruth()
        self.namespaces: dict[str, dict[str, str]] = {}
        self.pvc_resized_at: datetime | None = None
        # The first instant the APIs can show, and the first day of the pull archive and scan
        # reports: the whole history, except in a replicated world (`replicate.py`).
        self.served_from = start
        self.archive_from = start.date()
        self._lock = threading.Lock()
        self._repo_index: dict[str, dict[str, datetime]] | None = None
        self._unlinked: dict[tuple[str, str], datetime] = {}

    # ------------------------------------------------------------------ registry view
    def _links(self) -> dict[str, dict[str, datetime]]:
        """repository -> {digest: first time it was linked there} (tags, index children, referrers)."""
        if self._repo_index is None:
            index: dict[str, dict[str, datetime]] = {}
            for repo, stream in self.streams.items():
                links: dict[str, datetime] = dict(stream.extra_links)
                for history in stream.tags.values():
                    for item in history.items:
                        if item.digest not in links or item.created < links[item.digest]:
                            links[item.digest] = item.created
                for digest, linked in list(links.items()):
                    for child in self.images[digest].children:
                        if child not in links or linked < links[child]:
                            links[child] = linked
                index[repo] = links
            self._repo_index = index
        return self._repo_index

    def repositories(self, at: datetime) -> list[str]:
        return sorted(repo for repo, stream in self.streams.items()
                      if stream.created <= at and self.tags(repo, at))

    def tags(self, repository: str, at: datetime) -> dict[str, str] | None:
        stream = self.streams.get(repository)
        if stream is None or stream.created > at:
            return None
        current = {tag: self._tag_digest(repository, tag, at) for tag in stream.tags}
        return {tag: digest for tag, digest in current.items() if digest is not None}

    def _tag_digest(self, repository: str, tag: str, at: datetime) -> str | None:
        stream = self.streams.get(repository)
        history = stream.tags.get(tag) if stream is not None and stream.created <= at else None
        items = history.at(at) if history is not None else []
        if items and self._linked(repository, items[0].digest, at):
            return items[0].digest
        return None

    def _linked(self, repository: str, digest: str, at: datetime) -> bool:
        image = self.images.get(digest)
        if image is None or not image.exists_at(at):
            return False
        linked = self._links().get(repository, {}).get(digest)
        if linked is None or linked > at:
            return False
        unlinked = self._unlinked.get((repository, digest))
        return unlinked is None or at < unlinked

    def manifest(self, repository: str, reference: str, at: datetime) -> Manifest | None:
        digest = reference if reference.startswith("sha256:") else self._tag_digest(repository, reference, at)
        if digest is None or not self._linked(repository, digest, at):
            return None
        image = self.images[digest]
        return Manifest(digest=digest, media_type=image.media_type, body=image.manifest)

    def blob(self, repository: str, digest: str, at: datetime) -> tuple[int, Iterator[bytes]] | None:
        # A blob is served from any repository that links an image using it, as the
        # distribution registry does for layers it has linked into that repository.
        if digest not in self.blobs or repository not in self.streams:
            return None
        return self.blobs.open(digest)

    def delete_manifest(self, repository: str, digest: str, at: datetime) -> bool:
        with self._lock:
            if not self._linked(repository, digest, at):
                return False
            self._unlinked[(repository, digest)] = at
            return True

    def referrers(self, repository: str, digest: str, at: datetime) -> list[dict]:
        out = []
        for candidate in self._links().get(repository, {}):
            image = self.images[candidate]
            if image.subject == digest and self._linked(repository, candidate, at):
                artifact = {"signature": oci.COSIGN_SIGNATURE, "sbom": oci.SPDX_SBOM,
                            "attestation": oci.INTOTO_ATTESTATION}.get(image.kind)
                out.append({"mediaType": image.media_type, "digest": candidate,
                            "size": len(image.manifest), "artifactType": artifact})
        return out

    # ------------------------------------------------------------------ summaries
    def pulls_between(self, first_day: str, last_day: str) -> Iterator[PullRecord]:
        return (record for record in self.pulls if first_day <= record.day <= last_day)

    def inventory(self, at: datetime) -> dict:
        """What the cluster holds at `at`: the numbers `make demo` prints."""
        images = [image for image in self.images.values() if image.exists_at(at)]
        revisions = sum(len(history.at(at)) for stream in self.streams.values() for history in stream.tags.values())
        blobs = {digest: size for image in images for digest, size, _ in image.layers}
        workloads = {rtype.plural: len(source.keys(at)) for rtype, source in self.kube.items()
                     if rtype.plural not in ("images", "imagestreams", "namespaces")}
        return {
            "as_of": rfc3339(at),
            "namespaces": len(self.kube_source("namespaces").keys(at)),
            "image_streams": len(self.kube_source("imagestreams").keys(at)),
            "images": len(images),
            "tag_revisions": revisions,
            "unique_layer_bytes": sum(blobs.values()),
            "naive_image_bytes": sum(sum(size for _, size, _ in image.layers) for image in images),
            "workload_objects": workloads,
            "pull_records": sum(1 for record in self.pulls if record.day <= at.date().isoformat()),
        }

    def kube_source(self, plural: str) -> TimelineSource:
        for rtype, source in self.kube.items():
            if rtype.plural == plural:
                return source
        raise KeyError(plural)
