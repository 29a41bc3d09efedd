"""What each mirror target holds now, read through its registry API.

Only candidates are asked about (a HEAD per repository and manifest: no body, no blob), so
the cost grows with what the plan considers, not with the size of the source registry. HEADs
run on a bounded thread pool per target. A target is either read completely or the planning
stops naming it (safety invariant 3: a plan made on a partial picture would copy what is
there, or retire what it failed to see). A target that answers for a digest with another
digest rewrites manifests, and is refused: clusters pull mirrors by digest.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from ..sources.errors import SourceError, SourceForbidden
from .errors import TargetError, TargetRewritesDigests

log = logging.getLogger(__name__)


class ManifestHeads(Protocol):
    def manifest_digest(self, repository: str, reference: str) -> str | None: ...


@dataclass(frozen=True)
class TargetState:
    """Per target, the (target repository, digest) pairs found; `assumed_empty` when nobody asked."""

    present: Mapping[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    asked: Mapping[str, int] = field(default_factory=dict)
    assumed_empty: bool = False

    def holds(self, target: str, repository: str, digest: str) -> bool:
        return (repository, digest) in self.present.get(target, frozenset())

    def digests(self, target: str) -> set[str]:
        return {digest for _, digest in self.present.get(target, frozenset())}

    def fingerprint(self) -> str:
        """A content hash of what was found, so a plan id changes when a target's content does."""
        hasher = hashlib.sha256(b"assumed-empty" if self.assumed_empty else b"surveyed")
        for target in sorted(self.present):
            for repository, digest in sorted(self.present[target]):
                hasher.update(f"{target} {repository} {digest}\n".encode())
        return hasher.hexdigest()


def assume_empty() -> TargetState:
    """Plan as if no target held anything yet (offline planning, the demo)."""
    return TargetState(assumed_empty=True)


def survey(clients: Mapping[str, ManifestHeads], wanted: Mapping[str, Iterable[tuple[str, str]]], *,
           concurrency: int = 8) -> TargetState:
    """HEAD every wanted (target repository, digest) on its target; raises TargetError for a
    target that refuses, fails, or names another digest than the one asked for."""
    present: dict[str, frozenset[tuple[str, str]]] = {}
    asked: dict[str, int] = {}
    for target, pairs in sorted(wanted.items()):
        pairs = sorted(set(pairs))
        asked[target] = len(pairs)
        if not pairs:
            present[target] = frozenset()
            continue
        client = clients.get(target)
        if client is None:
            raise TargetError(target, "no client for this target", "Give the target a connection_id that exists.")

        def head(pair: tuple[str, str], client: ManifestHeads = client, target: str = target) -> tuple[str, str] | None:
            repository, digest = pair
            try:
                named = client.manifest_digest(repository, digest)
            except SourceForbidden as error:
                raise TargetError(target, f"refused to show {repository}@{digest[:19]} ({error.detail})",
                                  "Give the target's credentials pull and push rights on the mirrored "
                                  "repositories; no plan was made.") from None
            except SourceError as error:
                raise TargetError(target, f"could not be read ({error.what}: {error.detail})",
                                  "Check that the target is up and reachable from the worker, or plan without "
                                  "it; no plan was made.") from None
            if named is None:
                return None
            if named != digest:
                raise TargetRewritesDigests(target, f"answers for {repository}@{digest} with digest "
                                                    f"{named[:80] or '(none)'}",
                                            "Clusters pull mirrors by digest, so this target cannot serve them; "
                                            "use a registry that stores manifests byte for byte.")
            return pair

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"mirror-head-{target}") as pool:
            found = [pair for pair in pool.map(head, pairs) if pair is not None]
        present[target] = frozenset(found)
        log.info("mirror target %s: %d of %d candidate manifests present", target, len(found), len(pairs))
    return TargetState(present=present, asked=asked)
