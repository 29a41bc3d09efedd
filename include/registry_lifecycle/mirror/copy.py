"""Copying one image, with everything that goes with it, between two registries.

Over the distribution API only (no docker daemon, no skopeo): the source is read through its
`RegistryClient`, the target written through another. One *unit* is copied at a time, in an
order that makes the root's presence on the target mean the whole unit is there:

1. the unit is read from the source, each manifest by digest and verified against it: index
   children, OCI referrers (the referrers API, or cosign-style `sha256-<hex>[.sig|.att|.sbom]`
   tags on registries without it) and theirs, recursively;
2. manifests are written dependencies first: each after its children and its referrers, the
   root last. A run that stops early leaves signatures without their image (invisible to
   pulls), never an image without its signature, which signature-enforcing clusters refuse;
3. a manifest already on the target under its digest is skipped; otherwise each blob is
   HEADed (present: skipped), mounted from another repository of the target that holds it
   (nothing transferred), or streamed from the source: in one PUT up to `chunk_size`, in
   PATCH chunks above it. The registry checks each blob's digest, and so does the copier as
   the bytes pass;
4. the manifest is PUT under its digest and read back: a target that names another digest
   rewrites manifests, which clusters pulling by digest cannot use, and is refused
   (`TargetRewritesDigests`) instead of being filled with copies nobody can pull.

Resuming. Every step is idempotent, so a copy that stopped (a crash, a cut, a failed run) is
resumed by running it again: whatever reached the target is found by its HEAD and skipped.
Inside one blob, a chunked upload cut while *reading the source* continues from the last
acknowledged chunk (a `Range` request to the source); one cut while *writing* asks the upload
session where it stands and continues there when the registry says so, else restarts the
blob (distribution appends whatever a broken PATCH carried, so its sessions cannot resume).
Each blob gets `max_attempts` tries; then the unit fails (`CopyFailed`) and nothing about it
is reported as copied.

`Throttle` caps the bytes per second read from the source by all copies of a run together.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from ..sources.errors import SourceError, SourceForbidden, SourceUnavailable
from ..sources.registry import Descriptor, Manifest, RegistryClient
from .errors import CopyFailed, TargetError, TargetRewritesDigests

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024          # bytes per read from the source stream
DEFAULT_CHUNK_SIZE = 16 * 2**20
T = TypeVar("T")

_FIX_CREDENTIALS = ("Give the target's Connection a login with pull and push rights on the mirrored repositories "
                    "(and, for mounts, pull on the others); nothing more is copied to it this run.")
_FIX_UNREACHABLE = ("Check that the target is up and reachable from the worker (DNS, route, proxy, TLS); nothing "
                    "more is copied to it this run, and a re-run resumes where this one stopped.")


class Throttle:
    """A token bucket shared by the copies of a run: on average at most `bytes_per_second`,
    bursts up to one second's worth. None (or 0) means unlimited."""

    def __init__(self, bytes_per_second: int | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = bytes_per_second or 0
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._allowance = float(self.rate)
        self._last = clock()

    def take(self, amount: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = self._clock()
            self._allowance = min(float(self.rate), self._allowance + (now - self._last) * self.rate) - amount
            self._last = now
            wait = -self._allowance / self.rate if self._allowance < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


# ------------------------------------------------------------------------------ the unit
@dataclass(frozen=True)
class Step:
    """Write `manifest` to the target; with `tag`, point that tag at it (after it is written)."""

    manifest: Manifest
    tag: str | None = None


@dataclass(frozen=True)
class Unit:
    """A unit as read from the source: the steps that write it, dependencies first, root last."""

    digest: str
    repository: str
    steps: tuple[Step, ...]

    @property
    def manifests(self) -> list[Manifest]:
        return [step.manifest for step in self.steps if step.tag is None]

    @property
    def blobs(self) -> dict[str, Descriptor]:
        """Every distinct blob the unit's manifests name (configs and layers)."""
        found: dict[str, Descriptor] = {}
        for manifest in self.manifests:
            for blob in ([manifest.config] if manifest.config else []) + list(manifest.layers):
                found.setdefault(blob.digest, blob)
        return found


def _referrer_tags(tags: Sequence[str], digest: str) -> list[str]:
    """Tags naming `digest`'s referrers: `sha256-<hex>` (OCI 1.1 fallback index) and cosign's suffixes."""
    prefix = "sha256-" + digest.removeprefix("sha256:")
    return [tag for tag in tags if tag == prefix or tag.startswith(prefix + ".")]


def read_unit(source: RegistryClient, repository: str, digest: str) -> Unit:
    """The unit rooted at `digest` in the source `repository`, every manifest verified by digest."""
    steps: list[Step] = []
    seen: set[str] = set()
    tags: list[str] | None = None

    def source_call(what: str, call: Callable[..., T], *args: object) -> T:
        try:
            return call(*args)
        except SourceError as error:
            raise CopyFailed(f"reading {what} from the source failed: {error}") from None

    def visit(wanted: str) -> None:
        nonlocal tags
        if wanted in seen:
            return
        seen.add(wanted)
        manifest = source_call(f"{repository}@{wanted}", source.get_manifest, repository, wanted)
        if manifest is None:
            raise CopyFailed(f"the source no longer holds {repository}@{wanted}; re-plan")
        for child in manifest.children:
            visit(child.digest)
        for referrer in source_call(f"the referrers of {wanted}", source.referrers, repository, wanted):
            visit(referrer)
        if tags is None:
            tags = source_call(f"the tags of {repository}", source.tags, repository) or []
        tagged: list[Step] = []
        for tag in _referrer_tags(tags, wanted):
            named = source_call(f"{repository}:{tag}", source.resolve, repository, tag)
            if named is None:
                continue
            visit(named)
            written = next((step.manifest for step in steps if step.manifest.digest == named and step.tag is None),
                           None)
            if written is not None:         # None only for a tag naming a manifest above it (a cycle)
                tagged.append(Step(written, tag))
        steps.extend(tagged)
        steps.append(Step(manifest))

    visit(digest)
    return Unit(digest=digest, repository=repository, steps=tuple(steps))


# ------------------------------------------------------------------------------ results
@dataclass
class CopyStats:
    """What copies did, added up across threads."""

    manifests_present: int = 0
    manifests_put: int = 0
    tags_put: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    uploads_resumed: int = 0
    uploads_restarted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if not name.startswith("_")}

    @property
    def wrote_anything(self) -> bool:
        return bool(self.manifests_put or self.tags_put or self.blobs_mounted or self.blobs_uploaded)


@dataclass(frozen=True)
class CopyResult:
    """One unit copied into one or more repositories of a target."""

    digest: str
    repositories: tuple[str, ...]
    stats: CopyStats

    @property
    def already_present(self) -> bool:
        return not self.stats.wrote_anything

    def detail(self) -> str:
        s = self.stats
        if self.already_present:
            return f"all {s.manifests_present} manifest(s) already on the target"
        return (f"{s.manifests_put} manifest(s) and {s.tags_put} tag(s) written, {s.manifests_present} present; blobs: "
                f"{s.blobs_uploaded} uploaded ({s.bytes_uploaded:,} bytes), {s.blobs_mounted} mounted, "
                f"{s.blobs_present} present" + (f"; {s.uploads_resumed} upload(s) resumed" if s.uploads_resumed else "")
                + (f", {s.uploads_restarted} restarted" if s.uploads_restarted else ""))


class _Interrupted(Exception):
    """A transfer broke off (a cut stream, a failed upload session call): worth another try."""


@dataclass
class _Upload:
    url: str | None = None
    acked: int = 0
    hasher: "hashlib._Hash" = field(default_factory=hashlib.sha256)


# ------------------------------------------------------------------------------ the copier
class ImageCopier:
    """Copies units from `source` to the target `target` (named `name` in messages). Thread-safe:
    one copier serves every copy to its target in a run, so concurrent copies sharing a blob
    transfer it once and mount it elsewhere."""

    def __init__(self, source: RegistryClient, target: RegistryClient, *, name: str,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, throttle: Throttle | None = None, max_attempts: int = 3) -> None:
        self.source, self.target, self.name = source, target, name
        self.chunk_size = chunk_size
        self.throttle = throttle or Throttle(None)
        self.max_attempts = max_attempts
        self.stats = CopyStats()
        self._lock = threading.Lock()
        self._blob_locks: dict[str, threading.Lock] = {}
        self._holders: dict[str, set[str]] = {}      # blob -> target repositories known to hold it

    # ---------------------------------------------------------------- entry point
    def copy(self, source_repository: str, digest: str, target_repositories: Sequence[str]) -> CopyResult:
        """Copy the unit rooted at `digest` into every target repository; idempotent."""
        if not target_repositories:
            raise ValueError("name at least one target repository")
        unit = read_unit(self.source, source_repository, digest)
        stats = CopyStats()
        for repository in target_repositories:
            for step in unit.steps:
                if step.tag is None:
                    self._manifest(unit, repository, step.manifest, stats, mount_from=target_repositories[0])
                else:
                    self._tag(repository, step.tag, step.manifest, stats)
        self.stats.add(**stats.as_dict())
        log.info("mirror %s: %s@%s into %s: %s", self.name, source_repository, digest[:19],
                 ", ".join(target_repositories), CopyResult(digest, tuple(target_repositories), stats).detail())
        return CopyResult(digest, tuple(target_repositories), stats)

    # ---------------------------------------------------------------- manifests
    def _manifest(self, unit: Unit, repository: str, manifest: Manifest, stats: CopyStats, *, mount_from: str) -> None:
        named = self._on_target(f"HEAD {repository}@{manifest.digest}", self.target.manifest_digest, repository,
                                manifest.digest)
        if named == manifest.digest:
            stats.add(manifests_present=1)
            return
        if named is not None:
            raise self._rewrites(repository, manifest.digest, named)
        for blob in ([manifest.config] if manifest.config else []) + list(manifest.layers):
            self._blob(unit, repository, blob, stats, mount_from=mount_from)
        stored = self._on_target(f"PUT {repository}@{manifest.digest}", self.target.put_manifest, repository,
                                 manifest.digest, manifest.media_type, manifest.body)
        if stored != manifest.digest:
            raise self._rewrites(repository, manifest.digest, stored)
        # Read back: only a manifest the target serves under its own digest counts as copied.
        named = self._on_target(f"HEAD {repository}@{manifest.digest}", self.target.manifest_digest, repository,
                                manifest.digest)
        if named != manifest.digest:
            if named is None:
                raise CopyFailed(f"{self.name} accepted {repository}@{manifest.digest} but does not serve it")
            raise self._rewrites(repository, manifest.digest, named)
        stats.add(manifests_put=1)

    def _tag(self, repository: str, tag: str, manifest: Manifest, stats: CopyStats) -> None:
        named = self._on_target(f"HEAD {repository}:{tag}", self.target.manifest_digest, repository, tag)
        if named == manifest.digest:
            return
        stored = self._on_target(f"PUT {repository}:{tag}", self.target.put_manifest, repository, tag,
                                 manifest.media_type, manifest.body)
        if stored != manifest.digest:
            raise self._rewrites(repository, manifest.digest, stored)
        stats.add(tags_put=1)

    def _rewrites(self, repository: str, sent: str, named: str) -> TargetRewritesDigests:
        return TargetRewritesDigests(self.name, f"rewrites manifests: {repository}@{sent} was stored under digest "
                                                f"{named[:80] or '(none)'}",
                                     "Clusters pull mirrors by digest, so this target cannot serve them; use a "
                                     "registry that stores manifests byte for byte (no conversion, no re-signing)")

    # ---------------------------------------------------------------- blobs
    @contextmanager
    def _exclusive(self, digest: str) -> Iterator[None]:
        """One transfer of a given blob at a time: a second copy waits, then finds it present."""
        with self._lock:
            lock = self._blob_locks.setdefault(digest, threading.Lock())
        with lock:
            yield

    def _blob(self, unit: Unit, repository: str, blob: Descriptor, stats: CopyStats, *, mount_from: str) -> None:
        with self._exclusive(blob.digest):
            size = self._on_target(f"HEAD blob {blob.digest} in {repository}", self.target.blob_size, repository,
                                   blob.digest)
            if size is not None:
                if size >= 0 and size != blob.size:
                    raise CopyFailed(f"{self.name} holds blob {blob.digest} in {repository} with {size} bytes, "
                                     f"the manifest says {blob.size}")
                self._held(blob.digest, repository)
                stats.add(blobs_present=1)
                return
            with self._lock:
                holders = sorted(self._holders.get(blob.digest, set()) - {repository})
            candidate = holders[0] if holders else (mount_from if mount_from != repository else None)
            upload = _Upload()
            if candidate is not None:
                upload.url = self._on_target(f"mount {blob.digest} into {repository}", self.target.mount_blob,
                                             repository, blob.digest, candidate)
                if upload.url is None:
                    self._held(blob.digest, repository)
                    stats.add(blobs_mounted=1)
                    return
            self._upload(unit, repository, blob, upload, stats)
            self._held(blob.digest, repository)

    def _held(self, digest: str, repository: str) -> None:
        with self._lock:
            self._holders.setdefault(digest, set()).add(repository)

    def _upload(self, unit: Unit, repository: str, blob: Descriptor, upload: _Upload, stats: CopyStats) -> None:
        failures: list[str] = []
        while True:
            try:
                if upload.url is None:
                    upload.url = self._on_target(f"start an upload in {repository}", self.target.start_upload,
                                                 repository)
                    upload.acked, upload.hasher = 0, hashlib.sha256()
                if blob.size <= self.chunk_size:
                    self._monolithic(unit, repository, blob, upload)
                else:
                    self._chunked(unit, repository, blob, upload)
                stats.add(blobs_uploaded=1, bytes_uploaded=blob.size)
                return
            except _Interrupted as error:
                failures.append(str(error))
                if len(failures) >= self.max_attempts:
                    self._abandon(repository, upload)
                    raise CopyFailed(f"blob {blob.digest} ({blob.size:,} bytes) of {unit.repository}@{unit.digest} "
                                     f"broke off {len(failures)} times, last: {failures[-1]}") from None
                log.warning("mirror %s: blob %s into %s broke off at byte %d (%s); trying again", self.name,
                            blob.digest[:19], repository, upload.acked, error)
                if not self._resumable(repository, upload):
                    self._abandon(repository, upload)
                    stats.add(uploads_restarted=1)
                else:
                    stats.add(uploads_resumed=1)
            except BaseException:
                self._abandon(repository, upload)
                raise

    def _resumable(self, repository: str, upload: _Upload) -> bool:
        """Whether the session still holds exactly the acknowledged bytes (then its URL is refreshed)."""
        if upload.url is None or not upload.acked:
            return False
        try:
            status = self.target.upload_offset(repository, upload.url)
        except SourceError:
            return False
        if status is None or status[0] != upload.acked:
            return False
        upload.url = status[1]
        return True

    def _abandon(self, repository: str, upload: _Upload) -> None:
        if upload.url is not None:
            self.target.cancel_upload(repository, upload.url)
        upload.url, upload.acked, upload.hasher = None, 0, hashlib.sha256()

    def _monolithic(self, unit: Unit, repository: str, blob: Descriptor, upload: _Upload) -> None:
        """The whole blob in the PUT that closes the session, streamed from the source as it is read."""
        assert upload.url is not None
        hasher = hashlib.sha256()

        def body() -> Iterator[bytes]:
            sent = 0
            for piece in self._read(unit, blob, 0):
                hasher.update(piece)
                sent += len(piece)
                yield piece
            self._check_source_bytes(unit, blob, sent, hasher)

        self._in_session(f"PUT blob {blob.digest} into {repository}", self.target.finish_upload, repository,
                         upload.url, blob.digest, body(), blob.size)

    def _chunked(self, unit: Unit, repository: str, blob: Descriptor, upload: _Upload) -> None:
        """PATCH chunks of `chunk_size` from the acknowledged offset on, then the closing PUT."""
        buffer = bytearray()

        def send(chunk: bytes) -> None:
            assert upload.url is not None
            upload.url = self._in_session(f"PATCH blob {blob.digest} into {repository}", self.target.upload_chunk,
                                          repository, upload.url, chunk, upload.acked)
            upload.hasher.update(chunk)
            upload.acked += len(chunk)

        for piece in self._read(unit, blob, upload.acked):
            buffer += piece
            while len(buffer) >= self.chunk_size:
                send(bytes(buffer[:self.chunk_size]))
                del buffer[:self.chunk_size]
        if buffer:
            send(bytes(buffer))
        self._check_source_bytes(unit, blob, upload.acked, upload.hasher)
        self._in_session(f"PUT blob {blob.digest} into {repository}", self.target.finish_upload, repository,
                         upload.url, blob.digest)

    def _read(self, unit: Unit, blob: Descriptor, offset: int) -> Iterator[bytes]:
        """The source blob from `offset` on, throttled; a cut or failing stream is `_Interrupted`."""
        try:
            with self.source.open_blob(unit.repository, blob.digest, offset=offset) as response:
                for piece in response.iter_bytes(READ_SIZE):
                    self.throttle.take(len(piece))
                    yield piece
        except SourceUnavailable as error:
            raise _Interrupted(f"source: {error.detail}") from None
        except SourceError as error:
            raise CopyFailed(f"reading blob {blob.digest} from the source failed: {error}") from None
        except httpx.HTTPError as error:
            raise _Interrupted(f"source stream broke off ({type(error).__name__})") from None

    @staticmethod
    def _check_source_bytes(unit: Unit, blob: Descriptor, length: int, hasher: "hashlib._Hash") -> None:
        actual = "sha256:" + hasher.hexdigest()
        if length != blob.size or actual != blob.digest:
            raise CopyFailed(f"the source served {length:,} bytes hashing to {actual} for blob {blob.digest} "
                             f"({blob.size:,} bytes) of {unit.repository}@{unit.digest}; nothing was stored")

    # ---------------------------------------------------------------- error mapping
    def _on_target(self, what: str, call: Callable[..., T], *args: object) -> T:
        """A target call whose failure tells about the target as a whole."""
        try:
            return call(*args)
        except SourceForbidden as error:
            raise TargetError(self.name, f"refused {what} ({error.detail})", _FIX_CREDENTIALS) from None
        except SourceUnavailable as error:
            raise TargetError(self.name, f"{what}: {error.detail}", _FIX_UNREACHABLE) from None
        except SourceError as error:
            raise CopyFailed(f"{self.name}: {what}: {error.detail}") from None

    def _in_session(self, what: str, call: Callable[..., T], *args: object) -> T:
        """An upload session call: sent once, so its failure is a break to resume from, unless refused."""
        try:
            return call(*args)
        except SourceForbidden as error:
            raise TargetError(self.name, f"refused {what} ({error.detail})", _FIX_CREDENTIALS) from None
        except SourceError as error:
            raise _Interrupted(f"target: {error.detail}") from None
