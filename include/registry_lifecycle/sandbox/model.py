"""The interfaces between the simulated world and the HTTP APIs that serve it.

The scenario generator (`scenario.py`) builds a world; each API server reads it through one
of the small protocols below, always "as of" the sandbox clock. Keeping the servers behind
these protocols means an API server never knows how the history was simulated, and the
generator never knows HTTP.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Iterator, Protocol


# --------------------------------------------------------------------------- Kubernetes
@dataclass(frozen=True)
class ResourceType:
    """One API resource as discovery describes it (e.g. apps/v1 deployments)."""

    group: str                 # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = ("get", "list", "watch")
    short_names: tuple[str, ...] = ()
    singular: str = ""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


class ObjectSource(Protocol):
    """The objects of one resource type, as they stood at a given instant."""

    def keys(self, at: datetime, namespace: str | None = None) -> list[tuple[str, str]]:
        """Sorted (namespace, name) keys of the objects that exist at `at` ('' namespace if cluster-scoped)."""

    def render(self, namespace: str, name: str, at: datetime) -> dict | None:
        """The object exactly as the real API serves it (apiVersion, kind, metadata, spec, status)."""


@dataclass
class TimelineObject:
    """A Kubernetes object that exists from `created` until `removed` (None: still there)."""

    namespace: str
    name: str
    body: dict
    created: datetime
    removed: datetime | None = None

    def exists_at(self, at: datetime) -> bool:
        return self.created <= at and (self.removed is None or at < self.removed)


class TimelineSource:
    """An ObjectSource over objects with fixed bodies and lifetimes.

    A key may have several versions over time (a ReplicaSet scaled to 0 at the next rollout,
    a Deployment whose template changed): `put` of an existing key ends the live version at
    the new one's `created`. Writable for the APIs that create or delete (Events, ConfigMaps).
    """

    def __init__(self, objects: Iterable[TimelineObject] = ()) -> None:
        self._versions: dict[tuple[str, str], list[TimelineObject]] = {}
        self._sorted: list[tuple[str, str]] | None = None
        for obj in objects:
            self.put(obj)

    def put(self, obj: TimelineObject) -> None:
        key = (obj.namespace, obj.name)
        versions = self._versions.get(key)
        if versions is None:
            self._versions[key] = [obj]
            self._sorted = None
            return
        last = versions[-1]
        if last.removed is None or last.removed > obj.created:
            last.removed = obj.created
        versions.append(obj)

    def _live(self, key: tuple[str, str], at: datetime) -> TimelineObject | None:
        for version in reversed(self._versions.get(key, ())):
            if version.exists_at(at):
                return version
        return None

    def remove(self, namespace: str, name: str, at: datetime) -> bool:
        live = self._live((namespace, name), at)
        if live is None:
            return False
        live.removed = at
        return True

    def keys(self, at: datetime, namespace: str | None = None) -> list[tuple[str, str]]:
        if self._sorted is None:
            self._sorted = sorted(self._versions)
        return [key for key in self._sorted
                if (namespace is None or key[0] == namespace) and self._live(key, at) is not None]

    def render(self, namespace: str, name: str, at: datetime) -> dict | None:
        live = self._live((namespace, name), at)
        return live.body if live is not None else None

    def versions(self) -> Iterator[TimelineObject]:
        for versions in self._versions.values():
            yield from versions

    def __len__(self) -> int:
        return len(self._versions)


# --------------------------------------------------------------------------- Registry
@dataclass(frozen=True)
class Manifest:
    digest: str          # sha256 of `body`, exactly
    media_type: str
    body: bytes


class RegistryContent(Protocol):
    """What an OCI distribution v2 registry holds, as of an instant."""

    def repositories(self, at: datetime) -> list[str]:
        """Sorted repository names ("namespace/name")."""

    def tags(self, repository: str, at: datetime) -> dict[str, str] | None:
        """tag -> manifest digest for a repository, or None if the repository does not exist."""

    def manifest(self, repository: str, reference: str, at: datetime) -> Manifest | None:
        """By tag or digest; None when the repository does not hold it."""

    def blob(self, repository: str, digest: str, at: datetime) -> tuple[int, Iterator[bytes]] | None:
        """(size, chunks) of a layer or config blob linked into the repository, else None."""

    def delete_manifest(self, repository: str, digest: str, at: datetime) -> bool:
        """Unlink a manifest (and the tags that point at it) from a repository; False if absent."""


# --------------------------------------------------------------------------- Prometheus
@dataclass
class Series:
    """One Prometheus time series: a metric with labels and samples at increasing times."""

    metric: str
    labels: dict[str, str]
    timestamps: list[float]    # unix seconds, increasing
    values: list[float]

    def matches(self, name: str, matchers: list[tuple[str, str, str]]) -> bool:
        import re

        if name and name != self.metric:
            return False
        for label, op, value in matchers:
            actual = self.metric if label == "__name__" else self.labels.get(label, "")
            if op == "=" and actual != value:
                return False
            if op == "!=" and actual == value:
                return False
            if op == "=~" and not re.fullmatch(value, actual):
                return False
            if op == "!~" and re.fullmatch(value, actual):
                return False
        return True


# --------------------------------------------------------------------------- Pulls
@dataclass
class PullRecord:
    """Pulls of one manifest on one day from one cluster (the archive expands it to events)."""

    day: str             # YYYY-MM-DD
    repository: str
    digest: str
    tag: str | None
    cluster: str
    pulls: int
    media_type: str
    size: int
    user_agents: list[str] = field(default_factory=list)
