"""After a GC run: prove that what was kept is still served and what was deleted is gone.

A deletion that took one manifest too many is invisible until someone pulls the image, and a
registry GC that swept a blob still in use breaks every image that shares it. So, right after
execution (and again after the registry's own garbage collection), every repository the run
touched is read back through the same client the extractor uses:

- every kept manifest (what the repository's tags resolve to, plus the kept digests the caller
  names: older tag revisions and index children have no tag) still resolves, its body still
  hashes to its digest, the children of a kept index resolve too, and every blob a kept image
  manifest names (config and layers) answers 200 with its digest and size; with
  `download_blobs` the blobs are fetched and hashed instead of asked for with HEAD;
- every removed digest answers 404 in its repository;
- given the blob store's size before and after the registry GC, the bytes really freed are
  compared with the plan's prediction (the sum of the removed rows' `bytes`), which should
  agree within `tolerance` (safety invariant 7; the project's target is 1%).

Nothing is raised for a failed check: each one becomes a `VerificationFailure`, so the caller
sees all of them at once. A registry that cannot be read at all raises the client's
SourceError, since then nothing was verified.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd

from ..sources.errors import SourceMalformed
from ..sources.registry import Descriptor, Manifest, RegistryClient

log = logging.getLogger(__name__)

KEPT_MISSING = "kept_missing"          # a kept manifest no longer resolves, or no longer matches its digest
BLOB_MISSING = "blob_missing"          # a blob of a kept image is not served
BLOB_MISMATCH = "blob_mismatch"        # a blob is served with another digest or size
STILL_PRESENT = "still_present"        # a removed digest still resolves in its repository
BYTES_OFF = "bytes_off"                # bytes freed differ from the prediction by more than the tolerance

# Layers a registry never stores (Windows base layers): their absence is not a failure.
_NOT_STORED = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
               "application/vnd.oci.image.layer.nondistributable.v1.tar",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


@dataclass(frozen=True)
class VerificationFailure:
    kind: str
    repository: str
    digest: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.repository}@{self.digest}" if self.digest else (self.repository or "registry")
        return f"{self.kind}: {where}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    """What was checked, and every check that failed."""

    repositories: tuple[str, ...]
    kept_manifests: int
    blobs: int
    removed: int
    predicted_bytes: int
    freed_bytes: int | None                 # None without a before/after measurement
    failures: tuple[VerificationFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def bytes_error(self) -> float | None:
        """(freed - predicted) / predicted, when both are known."""
        if self.freed_bytes is None or not self.predicted_bytes:
            return None
        return (self.freed_bytes - self.predicted_bytes) / self.predicted_bytes

    def summary(self) -> str:
        freed = "" if self.freed_bytes is None else (
            f"; freed {self.freed_bytes:,} bytes against {self.predicted_bytes:,} predicted"
            + (f" ({self.bytes_error:+.2%})" if self.bytes_error is not None else ""))
        head = (f"{len(self.repositories)} repositories: {self.kept_manifests} kept manifests and {self.blobs} blobs "
                f"served, {self.removed} removed digests gone{freed}")
        if self.ok:
            return head
        return head + f"; {len(self.failures)} FAILED:\n" + "\n".join(f"  - {failure}" for failure in self.failures)


def _check_blob(client: RegistryClient, repository: str, blob: Descriptor, download: bool) -> str | None:
    """None when the blob is served as its descriptor says; otherwise what is wrong.

    RegistryClient has no public blob request (its extractor only reads configs), so this
    goes through its authenticated request path: the same tokens, retries and TLS settings.
    """
    path = f"/v2/{repository}/blobs/{blob.digest}"
    method = "GET" if download else "HEAD"
    response = client._request(method, path, endpoint="blob_get" if download else "blob_head",
                               scope_key=repository, what=f"{method} {path}", follow_redirects=True)
    if response.status_code == 404:
        return "404: the registry does not serve it any more"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    if download:
        actual = "sha256:" + hashlib.sha256(response.content).hexdigest()
        size = len(response.content)
    else:
        actual = response.headers.get("Docker-Content-Digest", blob.digest)
        length = response.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else blob.size
    if actual != blob.digest or size != blob.size:
        return f"served as {actual} with {size} bytes, the manifest names {blob.size} bytes"
    return None


def _manifest(client: RegistryClient, repository: str, digest: str) -> Manifest | str:
    try:
        manifest = client.get_manifest(repository, digest)
    except SourceMalformed as error:
        return error.detail
    return manifest if manifest is not None else "404: the manifest does not resolve any more"


def verify_execution(client: RegistryClient, removed: pd.DataFrame, *, kept: pd.DataFrame | None = None,
                     storage_before: int | None = None, storage_after: int | None = None,
                     tolerance: float = 0.01, download_blobs: bool = False) -> Verification:
    """Check the registry after a GC run; see the module docstring.

    `removed` has repository, digest and bytes of every image the run removed (the
    `ExecutionResult.removed` records). `kept` (repository, digest) names images that must
    still be served although no tag reaches them. `storage_before`/`storage_after` are the
    blob store's size before the deletions and after the registry's garbage collection.
    """
    gone = sorted(set(zip(removed["repository"], removed["digest"])))
    repositories = sorted({repository for repository, _ in gone})
    failures: list[VerificationFailure] = []
    with ThreadPoolExecutor(max_workers=client.concurrency, thread_name_prefix="gc-verify") as pool:
        still = pool.map(lambda item: client.resolve(*item), gone)
        failures += [VerificationFailure(STILL_PRESENT, repository, digest, "still resolves after its deletion")
                     for (repository, digest), answer in zip(gone, still) if answer is not None]

        wanted = set() if kept is None else set(zip(kept["repository"], kept["digest"]))
        for repository, tags in zip(repositories, pool.map(client.tags, repositories)):
            resolved = pool.map(lambda tag, repository=repository: client.resolve(repository, tag), tags or [])
            wanted |= {(repository, digest) for digest in resolved if digest is not None}
        wanted -= set(gone)

        manifests: dict[tuple[str, str], Manifest] = {}
        visited: set[tuple[str, str]] = set()
        frontier = sorted(wanted)
        while frontier:          # kept indexes first, then their children: they must resolve too
            visited |= set(frontier)
            for (repository, digest), found in zip(frontier, pool.map(lambda item: _manifest(client, *item),
                                                                        frontier)):
                if isinstance(found, str):
                    failures.append(VerificationFailure(KEPT_MISSING, repository, digest, found))
                else:
                    manifests[(repository, digest)] = found
            frontier = sorted({(repository, child.digest) for (repository, _), manifest in manifests.items()
                               for child in manifest.children} - visited)

        blobs = sorted({(repository, blob) for (repository, _), manifest in manifests.items()
                        for blob in _stored_blobs(manifest)})
        problems = pool.map(lambda item: _check_blob(client, item[0], item[1], download_blobs), blobs)
        for (repository, blob), problem in zip(blobs, problems):
            if problem is not None:
                kind = BLOB_MISSING if problem.startswith("404") else BLOB_MISMATCH
                failures.append(VerificationFailure(kind, repository, blob.digest, problem))

    predicted = int(removed["bytes"].sum()) if "bytes" in removed.columns else 0
    freed = None
    if storage_before is not None and storage_after is not None:
        freed = storage_before - storage_after
        if abs(freed - predicted) > tolerance * max(predicted, 1):
            failures.append(VerificationFailure(
                BYTES_OFF, "", "", f"the registry freed {freed:,} bytes, the plan predicted {predicted:,} "
                                   f"(allowed: {tolerance:.1%})"))
    result = Verification(repositories=tuple(repositories), kept_manifests=len(manifests), blobs=len(blobs),
                          removed=len(gone), predicted_bytes=predicted, freed_bytes=freed, failures=tuple(failures))
    (log.info if result.ok else log.error)("GC verification: %s", result.summary())
    return result


def _stored_blobs(manifest: Manifest) -> Iterable[Descriptor]:
    """The blobs a registry must serve for an image manifest: its config and stored layers."""
    if manifest.config is not None:
        yield manifest.config
    yield from (layer for layer in manifest.layers if layer.media_type not in _NOT_STORED)
