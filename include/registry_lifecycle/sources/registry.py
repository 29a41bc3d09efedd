"""The OCI distribution v2 client: a complete, verified picture of what the registry stores.

`RegistryClient.extract()` lists every repository (`/v2/_catalog`) and tag (`/tags/list`),
resolves each tag to its digest with a HEAD, fetches each manifest it has not seen before by
digest, follows index children and OCI referrers, reads the image configs, and returns the
`images` and `layers` datasets of `registry_lifecycle.datasets` plus every tag's digest.

What a run can rely on:

- Complete or an error (safety invariant 3). A forbidden, failing or truncated list raises a
  `SourceError`; nothing partial is returned. Truncation rule (the cheapest one that is
  correct): every `Link: rel="next"` is followed, and must advance (a URL already requested, or
  a `last` cursor not greater than the previous one, is a loop and raises `SourceTruncated`);
  a page without `Link` ends the list when it holds fewer than the `n` asked for (distribution
  only sends short pages at the end) or more (a registry that ignores `n` sent everything);
  only a page of exactly `n` entries without `Link` is ambiguous, and costs one probe with
  `last=<its last entry>`: any entry after it proves the `Link` was dropped. So a truncation
  costs at most one extra request per list, and only when the last page happens to be full.
  A short page *with* a `Link` is followed, not refused: following it loses nothing, and
  registries that filter by permission (Quay, Harbor) send such pages legitimately.
- Verified content. A manifest is fetched by digest and must hash to it, and the registry's
  `Docker-Content-Digest` must name it too: a proxy that re-encodes manifests, or a registry
  that rewrites digests, fails loudly with `SourceMalformed` instead of feeding wrong layers
  to the reclaim calculation. JSON is parsed strictly (no duplicate keys, no NaN), and Docker
  schema 1 is refused with its own message, as nothing can be verified or reclaimed from it.
- Manifest and blob GETs grow with new images, not with registry size: manifests are
  immutable per digest, so `ManifestCache` keeps each verified manifest with the parts of its
  config the snapshot uses, and a warm run GETs only digests it has never seen.
- The other per-run requests grow with the registry unless something else already knows the
  answer. A tag costs one HEAD (tags/list names tags, not digests, and a tag can move) unless
  the caller passes `tag_digests`: on the OpenShift image registry tags/list *is* the
  ImageStreams' tag list, so the cluster step already read each tag's current digest from the
  same source of truth. Referrers cost one request per manifest and repository (a signature
  can be attached to an old image at any time) unless a `ReferrersCache` answered for that
  manifest recently: each entry is asked again once every `refresh_days` days, on a day set by
  its digest, so a daily run re-asks a steady 1/refresh_days of the manifests. A referrer pushed
  with a `sha256-<hex>` tag (cosign's scheme) is seen the same day through tags/list anyway.
  The benchmark target is that a warm re-run issues at most 5% of the cold run's requests;
  every request is counted per endpoint in `ExtractStats.requests`.
- Secrets stay secret (safety invariant 8): credentials and tokens live in private state that
  no repr, log line or exception shows; messages name URL paths only. TLS is verified by
  default; a token realm over plain HTTP for an HTTPS registry is refused.

How the columns are filled (one `images` row per digest, however many repositories hold it):
`repository` is the first holding repository in sorted order, so reruns agree whatever order
threads finish in. `size_bytes` of an image is its config plus its layers (shared layers
included, as OpenShift's image size); of an index, the length of its own manifest, because its
children are rows of their own, carrying `index_digest` (the smallest, if several indexes
list one child). `subject_digest` is the OCI `subject`, else the digest a cosign-style
`sha256-<hex>.sig|.att|.sbom` tag encodes. `created_at`, `architecture`, `os` and `labels`
come from image configs only (not an SBOM's empty `{}`); `labels` is `{}` for a config without
labels and null without a config; an empty architecture and Go's zero time (what cosign
writes) are null. `layers` holds each layer at positions 0..n-1 and the config blob at -1,
so reclaim calculations count config blobs too. `managed` is always True here: every row
is a manifest stored in the registry this lifecycle manages (images that OpenShift only
references in other registries never appear in its catalog).

Concurrency is a thread pool of `concurrency` workers over one `httpx.Client` and, for plain
GETs and HEADs, one urllib3 pool (both thread-safe; see pooled_http.py), not asyncio: the
extractor runs inside Airflow tasks and
`reglife` pods where a running event loop cannot be assumed, and the work between requests
(hashing, JSON) is small. Each phase submits at most a few times `concurrency` requests at
once, so a million tags do not become a million pending futures.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import re
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Mapping, TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import httpx

from .errors import SourceError, SourceForbidden, SourceMalformed, SourceTruncated, SourceUnavailable
from .pooled_http import PooledSender, proxied, tls_context
from ..datasets import DIGEST_PATTERN, labels_json

if TYPE_CHECKING:
    import pandas as pd

    from .described_images import DescribedImages

log = logging.getLogger(__name__)

SOURCE = "registry"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_SCHEMA1 = frozenset({"application/vnd.docker.distribution.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.v1+prettyjws"})
IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
# Configs worth reading: an artifact's config (cosign's, an SBOM's empty `{}`) has no image fields.
IMAGE_CONFIG_TYPES = frozenset({"application/vnd.docker.container.image.v1+json",
                                "application/vnd.oci.image.config.v1+json"})
# Indexes first: a registry that negotiates must not down-convert a multi-arch image to one child.
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 120.0
MAX_CONFIG_BYTES = 8 * 1024 * 1024
TOKEN_DEFAULT_TTL = 60            # seconds; the token spec's default when `expires_in` is absent
# Pull scopes asked for in one token request when the repositories to read are known ahead. The
# token travels as a header on every request, so it stays a few KB (proxies and registries cap
# header sizes, nginx at 8 KB by default).
TOKEN_SCOPES_PER_REQUEST = 25

_DIGEST = re.compile(DIGEST_PATTERN)
# cosign's tag scheme (`.sig`, `.att`, `.sbom`) and OCI 1.1's referrers tag fallback (no suffix).
_SUBJECT_TAG = re.compile(r"^sha256-(?P<hex>[0-9a-f]{64})(?:\.[A-Za-z0-9_-]+)?$")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')

_FIX_FORBIDDEN = ("Give the extractor's registry credentials pull access to every repository and, for the "
                  "catalog, the registry-viewer role (oc adm policy add-cluster-role-to-user registry-viewer "
                  "<user>); nothing was published.")
_FIX_UNAVAILABLE = ("The registry kept failing; nothing was published. Re-run when it is healthy (check the "
                    "image-registry pods, their storage backend and any route or proxy in front of them).")
_FIX_TLS = ("Give the registry connection the CA bundle that signed the registry's certificate (its extra "
            "`ca_bundle`, or REGLIFE_CA_BUNDLE: on OpenShift the service CA for the service, the ingress CA for "
            "the route); `verify: false` only on a test cluster. Nothing was published.")
_FIX_TRUNCATED = ("The registry or a proxy between it and the worker cut the list short; nothing was "
                  "published. Re-run the task; if it repeats, check proxy and route timeouts.")
_FIX_REWRITTEN = ("Something between the worker and the registry (a caching proxy, a mirror) rewrites "
                  "manifests, so their layers cannot be trusted; nothing was published. Point the source "
                  "at the registry itself.")
_FIX_MALFORMED = ("The registry served a document that is not a valid manifest; nothing was published. "
                  "Inspect it with `skopeo inspect --raw` and delete or re-push the image.")


# ============================================================================ documents
class Descriptor(NamedTuple):
    """A content descriptor: what a manifest says about a blob or a child manifest."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A verified manifest: its exact bytes, and what they reference."""

    digest: str
    media_type: str
    body: bytes
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()       # an index's manifests
    subject: str | None = None                  # OCI 1.1 `subject`: the manifest this one describes

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def needs_config(self) -> bool:
        """Whether the snapshot reads this manifest's config blob (image configs only)."""
        return self.config is not None and self.config.media_type in IMAGE_CONFIG_TYPES


def _strict_json(body: bytes) -> Any:
    """JSON as the spec defines it: a duplicate key (which parsers resolve differently, the
    classic way to make two tools see two manifests in one digest) or NaN is an error."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for key, value in pairs:
            if key in document:
                raise ValueError(f"duplicate key {key!r}")
            document[key] = value
        return document

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(body, object_pairs_hook=unique, parse_constant=no_constants)


def _malformed(what: str, detail: str, fix: str = _FIX_MALFORMED) -> SourceMalformed:
    return SourceMalformed(SOURCE, what, detail, fix)


def _media_type(content_type: str | None) -> str:
    """`application/x; charset=utf-8` -> `application/x`."""
    return (content_type or "").split(";")[0].strip().lower()


def _schema1(what: str) -> SourceMalformed:
    """Docker schema 1 names no config and signs a different byte range than it is addressed
    by: nothing in it can be verified or reclaimed, so it gets its own, actionable error."""
    return _malformed(what, "it is a Docker schema 1 manifest, which cannot be verified or reclaimed",
                      "Re-push the image with a current client (schema 2 or OCI) and delete the schema 1 "
                      "manifest; nothing was published.")


def _descriptor(value: Any, what: str, role: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _malformed(what, f"{role} is not a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise _malformed(what, f"{role} has digest {str(digest)[:80]!r}, not sha256:<64 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _malformed(what, f"{role} {digest} has no valid size")
    if not isinstance(media_type, str):
        raise _malformed(what, f"{role} {digest} has no mediaType")
    return Descriptor(media_type, digest, size)


def parse_manifest(digest: str, content_type: str | None, body: bytes, what: str) -> Manifest:
    """A manifest from its verified bytes; raises SourceMalformed naming `what` (repo and digest)."""
    try:
        document = _strict_json(body)
    except (ValueError, RecursionError) as exc:
        raise _malformed(what, f"the body is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(document, dict):
        raise _malformed(what, "the body is not a JSON object")
    header_type = _media_type(content_type)
    if document.get("schemaVersion") == 1 or header_type in DOCKER_SCHEMA1:
        raise _schema1(what)
    if document.get("schemaVersion") != 2:
        raise _malformed(what, f"schemaVersion is {document.get('schemaVersion')!r}, not 2")
    body_type = document.get("mediaType")
    media_type = body_type if isinstance(body_type, str) else header_type
    subject = None
    if document.get("subject") is not None:
        subject = _descriptor(document["subject"], what, "subject").digest
    if media_type in INDEX_TYPES:
        children = document.get("manifests")
        if not isinstance(children, list):
            raise _malformed(what, f"the {media_type} has no `manifests` list")
        return Manifest(digest, media_type, body,
                        children=tuple(_descriptor(child, what, f"manifests[{i}]") for i, child in enumerate(children)),
                        subject=subject)
    if media_type in IMAGE_TYPES:
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise _malformed(what, f"the {media_type} has no `layers` list")
        return Manifest(digest, media_type, body, config=_descriptor(document.get("config"), what, "config"),
                        layers=tuple(_descriptor(layer, what, f"layers[{i}]") for i, layer in enumerate(layers)),
                        subject=subject)
    raise _malformed(what, f"media type {media_type or 'unknown'!r} is not a Docker schema 2 or OCI manifest/index")


def reduce_config(document: Any, what: str) -> dict[str, Any]:
    """The parts of an image config the snapshot uses, in the config's own shape, so a cached
    config and a fresh one are read by the same code."""
    if not isinstance(document, dict):
        raise _malformed(what, "the image config is not a JSON object")
    inner = document.get("config")
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    reduced: dict[str, Any] = {key: document[key] for key in ("created", "architecture", "os")
                               if isinstance(document.get(key), str)}
    reduced["config"] = {"Labels": {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}}
    return reduced


_RFC3339 = re.compile(r"^(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?P<fraction>\.\d+)?"
                      r"(?P<zone>Z|z|[+-]\d{2}:\d{2})?$")


def _created(value: Any) -> datetime | None:
    """A config's `created` in UTC. Go writes up to nanoseconds (cut to the lake's
    microseconds); Go's zero time (year 1, what reproducible builders leave) means unknown."""
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    fraction = (match["fraction"] or "")[:7]
    zone = match["zone"] or "+00:00"
    parsed = datetime.fromisoformat(match["base"].replace(" ", "T") + fraction + ("+00:00" if zone in "Zz" else zone))
    return None if parsed.year <= 1 else parsed.astimezone(timezone.utc)


# ============================================================================ the cache
class CachedManifest(NamedTuple):
    """A cache entry: a manifest's media type and bytes, and its reduced config (JSON) if it has one."""

    media_type: str
    body: bytes
    config_json: str | None


class ManifestCache(Protocol):
    """Verified manifests by digest. Digests are immutable, so an entry never goes stale;
    only a manifest fetched by digest and verified (and, for an image, its config read) is put."""

    def get(self, digest: str) -> CachedManifest | None:
        """The entry for `digest`, or None if it was never stored."""

    def put(self, digest: str, media_type: str, body: bytes, config_json: str | None) -> None:
        """Store one verified manifest; called from several worker threads."""

    def flush(self) -> None:
        """Persist what was put since the last flush."""


class _ParquetStore(ABC):
    """A dict of entries kept as one parquet file in a folder the caller owns: read whole at
    open (point lookups for every tag or manifest of a run), rewritten atomically on flush
    (readers never see half a file). An unreadable file, or one of another `FORMAT`, is ignored
    with a warning: a cache can only cost requests, never a wrong snapshot.
    Subclasses say what a row is (`_rows`, `_table`)."""

    FILE_NAME: str
    FORMAT: str
    WHAT: str                  # for log lines and the format key

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / self.FILE_NAME
        self._lock = threading.Lock()
        self._entries: dict = {}
        self._dirty = False

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, entries={len(self._entries)})"

    @property
    def _format_key(self) -> bytes:
        return f"reglife.{self.WHAT.replace(' ', '_')}.format".encode()

    def _load(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.path.exists():
            return
        try:
            table = pq.read_table(self.path)
        except (OSError, pa.ArrowException) as exc:
            log.warning("%s %s is unreadable (%s); starting empty", self.WHAT, self.path, type(exc).__name__)
            return
        if (table.schema.metadata or {}).get(self._format_key) != self.FORMAT.encode():
            log.warning("%s %s has another format; starting empty", self.WHAT, self.path)
            return
        self._rows(table)

    def _set(self, key: Any, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._dirty = True

    def flush(self) -> None:
        import pyarrow.parquet as pq

        with self._lock:
            if not self._dirty:
                return
            keys = sorted(self._entries)
            values = [self._entries[key] for key in keys]
            self._dirty = False
        table = self._table(keys, values)
        table = table.replace_schema_metadata({self._format_key: self.FORMAT.encode()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".parquet.partial")
        pq.write_table(table, partial, compression="zstd")
        partial.replace(self.path)

    @abstractmethod
    def _rows(self, table: Any) -> None:
        """Fill `_entries` from a table of this store's format."""

    @abstractmethod
    def _table(self, keys: list, values: list) -> Any:
        """The entries as a pyarrow table."""


class ParquetManifestCache(_ParquetStore):
    """A `ManifestCache` kept as one parquet file (the lake stores it beside the datasets).

    Entries are re-verified on load (sha256 of the body must be the key), so a damaged or
    edited file costs requests, never a wrong snapshot.
    """

    FILE_NAME = "registry-manifests.parquet"
    FORMAT = "1"               # bump when reduce_config keeps different fields
    WHAT = "manifest cache"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self._load()

    def _rows(self, table: Any) -> None:
        dropped = 0
        for digest, media_type, body, config_json in zip(*(table.column(name).to_pylist() for name in
                                                           ("digest", "media_type", "body", "config_json"))):
            if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
                dropped += 1
                continue
            self._entries[digest] = CachedManifest(media_type, body, config_json)
        if dropped:
            log.warning("manifest cache %s: %d entries did not hash to their digest and were dropped",
                        self.path, dropped)

    def get(self, digest: str) -> CachedManifest | None:
        return self._entries.get(digest)

    def put(self, digest: str, media_type: str, body: bytes, config_json: str | None) -> None:
        self._set(digest, CachedManifest(media_type, body, config_json))

    def _table(self, keys: list, values: list) -> Any:
        import pyarrow as pa

        return pa.table({"digest": pa.array(keys, pa.string()),
                         "media_type": pa.array([entry.media_type for entry in values], pa.string()),
                         "body": pa.array([entry.body for entry in values], pa.binary()),
                         "config_json": pa.array([entry.config_json for entry in values], pa.string())})


class ReferrersCache(_ParquetStore):
    """The OCI referrers of each (repository, manifest), as last asked, kept as one parquet file.

    Unlike manifests, referrers change: a signature, SBOM or attestation can be attached to an
    image of any age. An entry therefore answers only within its refresh period (see `get`):
    each manifest is asked again once every `refresh_days` days, on a day fixed by its digest,
    which spreads the re-asking of a cold run's entries evenly over the following runs instead
    of repeating the cold cost on one day. The price is bounded staleness: a referrer attached
    without a tag is seen at most `refresh_days` days late (a missed signature of a kept image
    stays unplanned, so it is never deleted; one of a deleted image is picked up and planned
    later). `refresh_days` 0 disables the cache. `today` is the run's date, so reruns of one
    day agree.
    """

    FILE_NAME = "registry-referrers.parquet"
    FORMAT = "1"
    WHAT = "referrers cache"

    def __init__(self, folder: Path, *, today: date, refresh_days: int = 14) -> None:
        if refresh_days < 0:
            raise ValueError("refresh_days must be 0 (no cache) or more")
        super().__init__(folder)
        self.today = today
        self.refresh_days = refresh_days
        if refresh_days:
            self._load()

    def _rows(self, table: Any) -> None:
        for repository, digest, found, checked in zip(*(table.column(name).to_pylist() for name in
                                                         ("repository", "digest", "referrers", "checked_on"))):
            if all(_DIGEST.match(value) for value in (digest, *found)):
                self._entries[(repository, digest)] = (tuple(found), checked)

    def phase(self, digest: str) -> int:
        """0..refresh_days-1, fixed per digest: the day of each period on which it is asked again."""
        return int(digest[7:15], 16) % self.refresh_days

    def get(self, repository: str, digest: str) -> list[str] | None:
        """The referrers last found, unless the digest's refresh day has come since; None means ask.

        Time is cut into periods of `refresh_days` days, shifted per digest by its phase; an
        entry answers within the period it was checked in. So each manifest is asked about once
        per period (a steady 1/refresh_days of them per daily run) and never later than
        `refresh_days` days after its last check.
        """
        entry = self._entries.get((repository, digest)) if self.refresh_days else None
        if entry is None:
            return None
        found, checked = entry
        phase = self.phase(digest)
        period = (self.today.toordinal() + phase) // self.refresh_days
        return list(found) if (checked.toordinal() + phase) // self.refresh_days == period else None

    def put(self, repository: str, digest: str, found: list[str]) -> None:
        if self.refresh_days:
            self._set((repository, digest), (tuple(sorted(found)), self.today))

    def _table(self, keys: list, values: list) -> Any:
        import pyarrow as pa

        return pa.table({"repository": pa.array([key[0] for key in keys], pa.string()),
                         "digest": pa.array([key[1] for key in keys], pa.string()),
                         "referrers": pa.array([list(value[0]) for value in values], pa.list_(pa.string())),
                         "checked_on": pa.array([value[1] for value in values], pa.date32())})


# ============================================================================ results
@dataclass
class ExtractStats:
    """What an extraction cost, for `reglife bench` and the warm-run target.

    `requests` counts every HTTP request sent, retries and 401 challenges included, by
    endpoint: catalog, tags, manifest_head, manifest_get, blob_get, referrers, token.
    """

    requests: Counter[str] = field(default_factory=Counter)
    bytes_received: int = 0
    retries: int = 0
    truncation_probes: int = 0
    manifest_gets_avoided: int = 0          # manifests served by the cache
    blob_gets_avoided: int = 0              # image configs served by the cache
    tag_heads_avoided: int = 0              # tags whose digest the caller already knew
    referrers_avoided: int = 0              # referrers lookups served by the ReferrersCache
    vanished: Counter[str] = field(default_factory=Counter)   # repositories/tags/manifests/configs deleted mid-run

    @property
    def fetches(self) -> int:
        """Manifest and blob GETs: the requests the cache exists to avoid."""
        return self.requests["manifest_get"] + self.requests["blob_get"]


@dataclass(frozen=True)
class RegistrySnapshot:
    """The registry as one extraction saw it."""

    images: pd.DataFrame                       # datasets.IMAGES
    layers: pd.DataFrame                       # datasets.LAYERS
    index_children: pd.DataFrame               # datasets.INDEX_CHILDREN
    tags_by_repo: dict[str, dict[str, str]]    # repository -> {tag: manifest digest}
    stats: ExtractStats


@dataclass
class _Challenge:
    scheme: str                 # "basic" | "bearer"
    realm: str = ""
    service: str = ""


T = TypeVar("T")
R = TypeVar("R")


# ============================================================================ the client
class RegistryClient:
    """A client for one OCI distribution v2 registry (the OpenShift image registry, distribution,
    Quay, Harbor, ...). Thread-safe; use as a context manager or call `close()`.

    Authentication follows the registry's 401 challenge: `Bearer realm,service,scope` (a token
    fetched from the realm with HTTP Basic credentials, cached per scope until shortly before it
    expires) or plain `Basic`. Once the realm is known, tokens are fetched before a repository's
    first request instead of after a 401, saving a round trip per repository.

    `verify` is True (the system's CAs), False, or the path of a CA bundle (the cluster's service CA).
    `backoff` is the first retry delay in seconds; it doubles per attempt, with jitter, and a
    429/503's `Retry-After` takes precedence. `referrers=False` skips the OCI referrers API
    (one request per manifest and repository) when another source already lists untagged
    manifests. `transport` replaces httpx's network transport (proxies, tests) for every request.
    """

    def __init__(self, base_url: str, *, username: str | None = None, password: str | None = None,
                 verify: bool | str | Path = True, concurrency: int = 8, page_size: int = 1000,
                 max_retries: int = 4, timeout: float = 30, backoff: float = 0.5, referrers: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        if concurrency < 1 or page_size < 1 or max_retries < 0:
            raise ValueError("concurrency and page_size must be at least 1, max_retries at least 0")
        self.base_url = str(base_url).rstrip("/")
        self.username = username
        self.concurrency = concurrency
        self.page_size = page_size
        self.max_retries = max_retries
        self.backoff = backoff
        self.use_referrers = referrers
        self.__basic = ("Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
                        if username is not None else None)
        tls = tls_context(verify if isinstance(verify, bool) else str(verify))
        if verify is False:
            log.warning("TLS certificates of %s are not verified (verify_tls is off)", self.base_url)
        headers = {"User-Agent": "registry-lifecycle/0.1"}
        self._http = httpx.Client(
            base_url=self.base_url, verify=tls, timeout=httpx.Timeout(timeout), transport=transport,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers=headers)
        # Plain GETs and HEADs (manifests, tag lists, blob sizes) take the cheaper stack unless a
        # test's transport or the environment's proxy must see them (see pooled_http.py).
        self._pooled = (PooledSender(self.base_url, context=tls, timeout=timeout, connections=concurrency,
                                     headers=headers)
                        if transport is None and not proxied(self.base_url) else None)
        self._origin = (self._http.base_url.scheme, self._http.base_url.host, self._http.base_url.port)
        self._auth_lock = threading.Lock()
        self._scope_locks: dict[str, threading.Lock] = {}
        self._challenge: _Challenge | None = None
        self.__tokens: dict[str, tuple[str, float]] = {}      # scope key -> (token, monotonic expiry)
        self._scopes: dict[str, str] = {}                     # scope key -> scope the registry asked for
        self._expected: dict[str, None] = {}                  # repositories about to be read, in order
        self._referrers_supported = True
        self._stats_lock = threading.Lock()
        self._stats = ExtractStats()

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r}, username={self.username!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        if self._pooled is not None:
            self._pooled.close()

    @property
    def stats(self) -> ExtractStats:
        """Requests since the client was created or the last `extract()` returned (an
        extraction's own requests are in its snapshot's stats)."""
        return self._stats

    def _tally(self, counter: str, amount: int = 1) -> None:
        """Add to one of the stats' integer counters, from any worker thread."""
        with self._stats_lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + amount)

    def _tally_vanished(self, kind: str) -> None:
        with self._stats_lock:
            self._stats.vanished[kind] += 1

    # ------------------------------------------------------------------ listing
    def catalog(self) -> list[str]:
        """Every repository, sorted; raises SourceTruncated/Forbidden/Unavailable rather than
        return part of the list."""
        names = self._list_all("/v2/_catalog", "repositories", endpoint="catalog", scope_key="catalog")
        if names is None:
            raise SourceError(SOURCE, "GET /v2/_catalog", "the registry has no catalog endpoint (HTTP 404)",
                              "Pass the repositories to extract explicitly; nothing was published.")
        return sorted(set(names))

    def tags(self, repository: str) -> list[str] | None:
        """Every tag of a repository, sorted; None when the registry does not know the
        repository (deleted since it was listed)."""
        names = self._list_all(f"/v2/{repository}/tags/list", "tags", endpoint="tags", scope_key=repository)
        return None if names is None else sorted(set(names))

    def _list_all(self, path: str, key: str, *, endpoint: str, scope_key: str) -> list[str] | None:
        """All entries of a paged list, under the truncation rule of the module docstring."""
        url = self._http.base_url.join(path).copy_merge_params({"n": self.page_size})
        names: list[str] = []
        requested: set[str] = set()
        cursor: str | None = None
        while True:
            requested.add(str(url))
            what = f"GET {url.path}"
            response = self._request("GET", url, endpoint=endpoint, scope_key=scope_key, what=what)
            if response.status_code == 404 and _error_code(response) in ("NAME_UNKNOWN", None):
                if names:
                    raise SourceTruncated(SOURCE, what, "the list disappeared while it was being paged",
                                          _FIX_TRUNCATED)
                return None
            page = self._page(response, key, what)
            names.extend(page)
            link = response.links.get("next", {}).get("url")
            if link is None:
                asked = _int_param(url, "n")
                if page and asked is not None and len(page) == asked:
                    self._probe(url, key, page[-1], endpoint=endpoint, scope_key=scope_key)
                return names
            next_url = self._same_origin(url.join(link), what)
            next_cursor = next_url.params.get("last")
            if str(next_url) in requested or (cursor is not None and next_cursor is not None
                                               and next_cursor <= cursor):
                raise SourceTruncated(SOURCE, what, f"the next-page Link does not advance past {cursor!r}",
                                      _FIX_TRUNCATED)
            cursor = next_cursor if next_cursor is not None else cursor
            url = next_url

    def _probe(self, url: httpx.URL, key: str, last: str, *, endpoint: str, scope_key: str) -> None:
        """A full page came without Link: ask for what follows its last entry. Entries after it
        prove the Link was dropped; entries up to it mean the registry ignores `last` and
        already sent everything."""
        self._tally("truncation_probes")
        probe = url.copy_merge_params({"last": last})
        what = f"GET {url.path}"
        response = self._request("GET", probe, endpoint=endpoint, scope_key=scope_key, what=what)
        following = [] if response.status_code == 404 else [name for name in self._page(response, key, what)
                                                            if name > last]
        if following:
            raise SourceTruncated(
                SOURCE, what, f"a full page (n={_int_param(url, 'n')}) ended at {last!r} without a next-page "
                f"Link, but {following[0]!r} follows it", _FIX_TRUNCATED)

    @staticmethod
    def _page(response: httpx.Response, key: str, what: str) -> list[str]:
        _expect_ok(response, what)
        try:
            document = _strict_json(response.content)
        except (ValueError, RecursionError):
            raise _malformed(what, "the page is not valid JSON") from None
        if not isinstance(document, dict) or key not in document:
            raise _malformed(what, f"the page has no `{key}` field")
        entries = document[key]
        if entries is None:               # distribution encodes an empty Go slice as null
            return []
        if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
            raise _malformed(what, f"`{key}` is not a list of names")
        return entries

    # ------------------------------------------------------------------ manifests
    def resolve(self, repository: str, tag: str) -> str | None:
        """The digest a tag names now (a HEAD: no body), or None if the tag is gone."""
        path = f"/v2/{repository}/manifests/{tag}"
        what = f"HEAD {path}"
        response = self._request("HEAD", path, endpoint="manifest_head", scope_key=repository, what=what,
                                 accept=ACCEPT)
        if response.status_code == 404:
            return None
        _expect_ok(response, what)
        if _media_type(response.headers.get("Content-Type")) in DOCKER_SCHEMA1:
            raise _schema1(what)
        digest = response.headers.get("Docker-Content-Digest", "")
        if not _DIGEST.match(digest):
            raise _malformed(what, f"the answer carries no sha256 Docker-Content-Digest ({digest[:80]!r})",
                             "Point the source at a registry (or proxy) that keeps Docker-Content-Digest; "
                             "nothing was published.")
        return digest

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        """A manifest by digest or tag, verified; None if the repository does not hold it.

        By digest the body must hash to the digest asked for; by tag, to the digest the registry
        names. Either way a `Docker-Content-Digest` that disagrees is a rewritten manifest.
        """
        path = f"/v2/{repository}/manifests/{reference}"
        what = f"GET {path}"
        response = self._request("GET", path, endpoint="manifest_get", scope_key=repository, what=what,
                                 accept=ACCEPT)
        if response.status_code == 404:
            return None
        _expect_ok(response, what)
        content_type = response.headers.get("Content-Type")
        if _media_type(content_type) in DOCKER_SCHEMA1:
            raise _schema1(what)
        body = response.content
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        announced = response.headers.get("Docker-Content-Digest")
        expected = reference if ":" in reference else (announced or actual)
        if announced is not None and announced != expected:
            raise _malformed(what, f"the registry names it {announced[:80]}, not {expected}", _FIX_REWRITTEN)
        if actual != expected:
            raise _malformed(what, f"the body hashes to {actual}, not {expected}", _FIX_REWRITTEN)
        return parse_manifest(expected, content_type, body, f"manifest {expected} in {repository}")

    def image_config(self, repository: str, config: Descriptor) -> dict[str, Any] | None:
        """The reduced image config a manifest points to (see `reduce_config`), verified
        against its digest; None if the blob is gone from the repository."""
        path = f"/v2/{repository}/blobs/{config.digest}"
        what = f"GET {path}"
        if config.size > MAX_CONFIG_BYTES:
            raise _malformed(what, f"the image config is {config.size} bytes, over the {MAX_CONFIG_BYTES} limit")
        # Blob GETs may redirect to object storage; httpx drops Authorization on another origin.
        response = self._request("GET", path, endpoint="blob_get", scope_key=repository, what=what,
                                 follow_redirects=True)
        if response.status_code == 404:
            return None
        _expect_ok(response, what)
        actual = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if actual != config.digest:
            raise _malformed(what, f"the config hashes to {actual}, not {config.digest}", _FIX_REWRITTEN)
        try:
            document = _strict_json(response.content)
        except (ValueError, RecursionError) as exc:
            raise _malformed(what, f"the image config is not valid JSON ({str(exc)[:120]})") from None
        return reduce_config(document, f"config {config.digest} in {repository}")

    def referrers(self, repository: str, digest: str) -> list[str]:
        """Digests of the manifests in `repository` whose `subject` is `digest` (OCI 1.1).

        [] once the registry has shown it lacks the API (distribution 2.8: 404); such
        registries' referrers are found through their `sha256-<hex>` tags instead.
        """
        if not self._referrers_supported:
            return []
        url: httpx.URL | None = self._http.base_url.join(f"/v2/{repository}/referrers/{digest}")
        found: list[str] = []
        requested: set[str] = set()
        while url is not None:
            requested.add(str(url))
            what = f"GET {url.path}"
            response = self._request("GET", url, endpoint="referrers", scope_key=repository, what=what)
            if response.status_code == 404:
                if _error_code(response) not in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"):
                    self._referrers_supported = False
                return found
            _expect_ok(response, what)
            try:
                document = _strict_json(response.content)
            except (ValueError, RecursionError):
                raise _malformed(what, "the referrers index is not valid JSON") from None
            entries = document.get("manifests") if isinstance(document, dict) else None
            if not isinstance(entries, list):
                raise _malformed(what, "the referrers index has no `manifests` list")
            found.extend(_descriptor(entry, what, f"manifests[{i}]").digest for i, entry in enumerate(entries))
            link = response.links.get("next", {}).get("url")
            url = None if link is None else self._same_origin(url.join(link), what)
            if url is not None and str(url) in requested:
                raise SourceTruncated(SOURCE, what, "the referrers Link does not advance", _FIX_TRUNCATED)
        return found

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest revision by digest (`DELETE /v2/<repo>/manifests/<digest>`).

        True when the registry deleted it (202), False when it no longer holds it (404), which
        makes a retried deletion idempotent. The token is asked for with the `delete` action
        under a scope key of its own, so a delete-only token never replaces the pull token the
        same repository's reads use. Distribution answers 405 UNSUPPORTED while deletes are
        disabled in its config: that raises SourceError with the setting that enables them.
        """
        if not _DIGEST.match(digest):
            raise ValueError(f"a manifest is deleted by its sha256 digest, not {digest[:80]!r}: registries "
                             "refuse deletion by tag")
        path = f"/v2/{repository}/manifests/{digest}"
        what = f"DELETE {path}"
        scope_key = f"{repository}#delete"
        with self._auth_lock:
            self._scopes.setdefault(scope_key, f"repository:{repository}:delete")
        response = self._request("DELETE", path, endpoint="manifest_delete", scope_key=scope_key, what=what)
        if response.status_code == 404:
            return False
        if response.status_code == 405:
            raise SourceError(SOURCE, what, f"HTTP 405{_error_suffix(response)}",
                              "The registry has deletes disabled: set storage.delete.enabled: true in its config "
                              "(the OpenShift image registry allows them for the system:image-pruner role).")
        if response.status_code not in (200, 202):
            raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code}{_error_suffix(response)}",
                              "The registry refused a deletion a distribution v2 registry accepts.")
        return True

    # ------------------------------------------------------------------ copying (mirror targets)
    # The blob and manifest calls a copy between registries makes (`registry_lifecycle.mirror.copy`).
    # Writes ask for `pull,push` under a scope key of their own, as deletes do; a cross-repository
    # mount asks for push on the target repository and pull on the one mounted from, in one token.
    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the registry names for a manifest (a HEAD: no body), None if it does not hold it.

        Unlike `resolve`, a present manifest without a sha256 `Docker-Content-Digest` is not an
        error here: the caller compares the answer with the digest it expects.
        """
        path = f"/v2/{repository}/manifests/{reference}"
        what = f"HEAD {path}"
        response = self._request("HEAD", path, endpoint="manifest_head", scope_key=repository, what=what,
                                 accept=ACCEPT)
        if response.status_code == 404:
            return None
        _expect_ok(response, what)
        return response.headers.get("Docker-Content-Digest", "")

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob the repository holds (a HEAD), None if it does not."""
        path = f"/v2/{repository}/blobs/{digest}"
        what = f"HEAD {path}"
        response = self._request("HEAD", path, endpoint="blob_head", scope_key=repository, what=what,
                                 follow_redirects=True)
        if response.status_code == 404:
            return None
        _expect_ok(response, what)
        length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else -1

    @contextmanager
    def open_blob(self, repository: str, digest: str, *, offset: int = 0) -> Iterator[httpx.Response]:
        """`with client.open_blob(...) as response`: a blob's body as a stream (`iter_bytes()`),
        from byte `offset` on (a `Range` request), closed on exit. Its bytes are not verified
        here: the reader hashes them. Raises SourceError when the blob is missing or the range
        is refused."""
        path = f"/v2/{repository}/blobs/{digest}"
        what = f"GET {path}" + (f" from byte {offset}" if offset else "")
        response = self._request("GET", path, endpoint="blob_stream", scope_key=repository, what=what,
                                 follow_redirects=True, headers={"Range": f"bytes={offset}-"} if offset else None,
                                 stream=True)
        if response.status_code == (206 if offset else 200):
            try:
                yield response
            finally:
                response.close()
            return
        if offset and response.status_code == 200:
            response.close()
            raise SourceError(SOURCE, what, "the registry ignored the Range header and sent the whole blob",
                              "Retry the copy; it restarts the blob from its first byte.")
        response.close()
        detail = "the repository does not hold it" if response.status_code == 404 else \
            f"unexpected HTTP {response.status_code}{_error_suffix(response)}"
        raise SourceError(SOURCE, what, detail, "Re-plan: the source changed since the plan was made.")

    def _push_scope(self, repository: str, mount_from: str | None = None) -> str:
        scope_key = f"{repository}#push" + (f"+{mount_from}" if mount_from else "")
        scope = f"repository:{repository}:pull,push" + (f" repository:{mount_from}:pull" if mount_from else "")
        with self._auth_lock:
            self._scopes.setdefault(scope_key, scope)
        return scope_key

    def _upload_location(self, response: httpx.Response, what: str, sent: str) -> str:
        """The upload session URL a registry answered to a request for `sent` (a path or a URL);
        it must stay on the registry."""
        location = response.headers.get("Location")
        if not location:
            raise _malformed(what, f"HTTP {response.status_code} without a Location for the upload",
                             "The target does not speak the distribution upload protocol.")
        url = self._http.base_url.join(sent).join(location)
        if (url.scheme, url.host, url.port) != self._origin:
            raise _malformed(what, f"the upload Location leads to another host ({url.host})",
                             "Credentials are never sent to another host; check the target's URL.")
        return str(url)

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Ask the registry to link a blob it holds in `from_repository` into `repository`.

        None when it did (201): nothing was transferred. Otherwise the URL of the upload
        session the registry opened instead (202), to upload the blob into.
        """
        path = f"/v2/{repository}/blobs/uploads/"
        what = f"POST {path}?mount={digest}&from={from_repository}"
        response = self._request("POST", path, endpoint="blob_mount",
                                 scope_key=self._push_scope(repository, from_repository), what=what,
                                 params={"mount": digest, "from": from_repository}, content=b"")
        if response.status_code == 201:
            return None
        if response.status_code != 202:
            raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code}{_error_suffix(response)}",
                              "The target refused a blob mount a distribution registry accepts.")
        return self._upload_location(response, what, path)

    def start_upload(self, repository: str) -> str:
        """Open a blob upload session in `repository`; its URL."""
        path = f"/v2/{repository}/blobs/uploads/"
        what = f"POST {path}"
        response = self._request("POST", path, endpoint="blob_upload", scope_key=self._push_scope(repository),
                                 what=what, content=b"")
        if response.status_code != 202:
            raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code}{_error_suffix(response)}",
                              "The target refused to start an upload; check that it accepts pushes.")
        return self._upload_location(response, what, path)

    def upload_chunk(self, repository: str, upload_url: str, chunk: bytes, offset: int) -> str:
        """Send bytes `offset`..`offset + len(chunk) - 1` of a blob (a PATCH); the session's next URL.

        Sent once, never retried here: distribution appends whatever a PATCH carries and ignores
        `Content-Range`, so a blind resend could store bytes twice. After a failure the caller
        asks `upload_offset` where the session stands, and resumes or restarts the blob."""
        what = f"PATCH upload of {repository} at byte {offset}"
        # A list, not bytes: `_send` gives non-bytes bodies one attempt, and a list can still be
        # re-sent by `_request` after a 401 challenge (an expired token), unlike an iterator.
        response = self._request("PATCH", upload_url, endpoint="blob_upload", scope_key=self._push_scope(repository),
                                 what=what, content=[chunk],
                                 headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                                          "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
        if response.status_code != 202:
            raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code}{_error_suffix(response)}",
                              "The upload session broke; the copy restarts the blob.")
        return self._upload_location(response, what, upload_url)

    def upload_offset(self, repository: str, upload_url: str) -> tuple[int, str] | None:
        """How many bytes an upload session holds, and its current URL; None if the session is gone.

        Distribution answers `Range: 0-<last byte>`, and `0-0` for both nothing and one byte,
        so `0-0` counts as nothing: resending one byte is harmless, skipping one is not."""
        what = f"GET upload status of {repository}"
        response = self._request("GET", upload_url, endpoint="blob_upload", scope_key=self._push_scope(repository),
                                 what=what)
        if response.status_code in (400, 404):
            return None
        if response.status_code != 204:
            raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code}{_error_suffix(response)}",
                              "The upload session broke; the copy restarts the blob.")
        last = re.fullmatch(r"(?:bytes=)?0-(\d+)", response.headers.get("Range", "").strip())
        held = int(last.group(1)) + 1 if last and int(last.group(1)) > 0 else 0
        location = self._upload_location(response, what, upload_url) if response.headers.get("Location") else upload_url
        return held, location

    def finish_upload(self, repository: str, upload_url: str, digest: str,
                      content: bytes | Iterable[bytes] = b"", size: int | None = None) -> None:
        """Close an upload session with the blob's digest (a PUT), sending `content` with it: the
        whole blob (a monolithic upload, streamed when `content` is an iterator of `size`
        bytes) or nothing after PATCHed chunks. The registry checks the digest itself."""
        url = httpx.URL(upload_url).copy_merge_params({"digest": digest})
        what = f"PUT upload of {digest} to {repository}"
        length = len(content) if isinstance(content, bytes) else size
        if length is None:
            raise ValueError("a streamed upload needs its size (Content-Length)")
        response = self._request("PUT", url, endpoint="blob_upload", scope_key=self._push_scope(repository),
                                 what=what, content=content,
                                 headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)})
        if response.status_code not in (201, 204):
            raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code}{_error_suffix(response)}",
                              "The target did not accept the blob; the copy restarts it.")

    def cancel_upload(self, repository: str, upload_url: str) -> None:
        """Abandon an upload session (a DELETE); a session already gone is fine."""
        try:
            self._request("DELETE", upload_url, endpoint="blob_upload", scope_key=self._push_scope(repository),
                          what=f"DELETE upload session of {repository}")
        except SourceError as error:
            log.info("could not cancel an upload session in %s (%s); the registry expires it", repository,
                     error.detail)

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        """Store a manifest under a digest or tag (a PUT of its exact bytes); the digest the
        registry says it stored it as (`Docker-Content-Digest`, else the body's own)."""
        path = f"/v2/{repository}/manifests/{reference}"
        what = f"PUT {path}"
        response = self._request("PUT", path, endpoint="manifest_put", scope_key=self._push_scope(repository),
                                 what=what, content=body, headers={"Content-Type": media_type})
        if response.status_code not in (200, 201, 202):
            raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code}{_error_suffix(response)}",
                              "The target refused the manifest: every blob and child it names must be there "
                              "first, and its media type must be one the target stores.")
        return response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    # ------------------------------------------------------------------ extraction
    def extract(self, repositories: Iterable[str] | None = None, *,
                cache: ManifestCache | None = None,
                known_digests: Mapping[str, Iterable[str]] | None = None,
                tag_digests: Mapping[str, Mapping[str, str]] | None = None,
                referrers_cache: ReferrersCache | None = None,
                described: DescribedImages | None = None) -> RegistrySnapshot:
        """The images and layers datasets of every repository (or of `repositories`).

        Repositories and manifests deleted while the run reads them are left out and counted
        in `stats.vanished`; anything forbidden, failing, truncated or unverifiable raises.
        `cache` (flushed at the end, also after a failure: its entries are verified) makes
        the run fetch only manifests it has never seen. `known_digests` (repository -> digests)
        adds manifests that no tag reaches: on OpenShift, older ImageStream tag revisions are
        still stored and still prunable, but tags/list cannot enumerate them. `tag_digests`
        (repository -> {tag: digest}) spares the HEAD of every listed tag it names: pass it
        only from a source that is the registry's own truth for tags (OpenShift ImageStreams);
        a listed tag it does not name is resolved as usual. `referrers_cache` answers
        referrers lookups it checked recently (see `ReferrersCache`); flushed like `cache`.

        `described` (see `DescribedImages`) is what an
        OpenShift cluster's Image objects already say, as `oc adm prune images` reads them: the
        registry is then asked only about what they do not describe (indexes, OCI artifacts,
        images without metadata). With it, `repositories` and `tag_digests` must be the cluster's
        ImageStreams, which on the OpenShift registry *are* its catalog and tags, so neither is
        listed; and the referrers API is not asked, because every stored manifest is an Image
        object (reached through `known_digests`) and an artifact's subject is in its manifest.
        """
        self._stats = ExtractStats()
        if described is not None and (repositories is None or tag_digests is None):
            raise ValueError("described manifests come with the cluster's repositories and tag digests")
        run = _Extraction(self, cache, referrers_cache, described)
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="registry-extract") as pool:
                run.pool = pool
                names = sorted(set(repositories)) if repositories is not None else self.catalog()
                run.read(names, {repo: set(digests) for repo, digests in (known_digests or {}).items()},
                         tag_digests or {})
        finally:
            for store in (cache, referrers_cache):
                if store is not None:
                    store.flush()
        images, layers, index_children = run.frames()
        stats, self._stats = self._stats, ExtractStats()
        log.info("registry extract: %d repositories, %d images, %d layer rows; %s; avoided: %d manifest GETs, "
                 "%d tag HEADs, %d referrers lookups", len(run.tags_by_repo), len(images), len(layers),
                 dict(stats.requests), stats.manifest_gets_avoided, stats.tag_heads_avoided, stats.referrers_avoided)
        return RegistrySnapshot(images, layers, index_children, run.tags_by_repo, stats)

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, url: httpx.URL | str, *, endpoint: str, scope_key: str, what: str,
                 accept: str | None = None, follow_redirects: bool = False, headers: Mapping[str, str] | None = None,
                 params: dict[str, str] | None = None, content: bytes | Iterable[bytes] | None = None,
                 stream: bool = False) -> httpx.Response:
        """One registry request with auth: answers a 401 challenge once (a fresh token or
        Basic credentials), and turns a 401 after that, or any 403, into SourceForbidden.
        With `stream` the body is left unread (the caller closes the response)."""
        challenged = False
        while True:
            sent = {"Accept": accept} if accept else {}
            sent.update(headers or {})
            sent.update(self._auth_header(scope_key))
            response = self._send(method, url, endpoint=endpoint, what=what, headers=sent, params=params,
                                  follow_redirects=follow_redirects, content=content, stream=stream)
            if response.status_code == 401 and not challenged:
                challenged = True
                response.close()
                self._learn_challenge(response.headers.get("WWW-Authenticate", ""), scope_key, what)
                continue
            if response.status_code in (401, 403):
                raise SourceForbidden(SOURCE, what, f"HTTP {response.status_code}{_error_suffix(response)}",
                                      _FIX_FORBIDDEN)
            return response

    def _send(self, method: str, url: httpx.URL | str, *, endpoint: str, what: str, headers: dict[str, str],
              params: dict[str, str] | None = None, follow_redirects: bool = False,
              content: bytes | Iterable[bytes] | None = None, stream: bool = False) -> httpx.Response:
        """One request with retries: 429/5xx and connection errors back off (exponentially,
        with jitter, or as Retry-After says) up to max_retries, then SourceUnavailable.
        A body given as an iterator cannot be sent twice, so it gets one attempt; a streamed
        answer's body is read only when it is an error (its message goes into the error)."""
        failure = ""
        attempts = self.max_retries + 1 if content is None or isinstance(content, bytes) else 1
        for attempt in range(attempts):
            with self._stats_lock:
                self._stats.requests[endpoint] += 1
                if attempt:
                    self._stats.retries += 1
            try:
                if self._pooled is not None and method in ("GET", "HEAD") and content is None and params is None \
                        and not (stream or follow_redirects):
                    response = self._pooled.send(method, url, headers)
                else:
                    request = self._http.build_request(method, url, headers=headers, params=params, content=content)
                    response = self._http.send(request, follow_redirects=follow_redirects, stream=stream)
                if stream and response.status_code >= 300:
                    response.read()
            except httpx.TransportError as exc:
                if _untrusted_certificate(exc):      # not transient: retrying cannot help
                    raise SourceUnavailable(SOURCE, what, "the registry's TLS certificate is not trusted "
                                            f"({str(exc)[-160:]})", _FIX_TLS) from None
                failure = f"connection failed ({type(exc).__name__})"
                delay = self._delay(attempt, None)
            else:
                if not stream:
                    self._tally("bytes_received", len(response.content))
                if response.status_code not in RETRYABLE:
                    return response
                failure = f"HTTP {response.status_code}{_error_suffix(response)}"
                delay = self._delay(attempt, response.headers.get("Retry-After"))
            if attempt < attempts - 1:
                log.warning("%s: %s; retry %d/%d in %.1fs", what, failure, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
        raise SourceUnavailable(SOURCE, what, f"{failure} after {tries}", _FIX_UNAVAILABLE)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            seconds: float | None = None
            if retry_after.strip().isdigit():
                seconds = float(retry_after)
            else:
                try:
                    seconds = (parsedate_to_datetime(retry_after) - datetime.now(timezone.utc)).total_seconds()
                except (TypeError, ValueError):
                    seconds = None
            if seconds is not None:
                return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
        return min(self.backoff * 2 ** attempt, MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.5)

    def _same_origin(self, url: httpx.URL, what: str) -> httpx.URL:
        """A Link must stay on the registry: following it elsewhere would send credentials there."""
        if (url.scheme, url.host, url.port) != self._origin:
            raise _malformed(what, f"the next-page Link leads to another host ({url.host})")
        return url

    # ------------------------------------------------------------------ auth
    def expect_repositories(self, repositories: Iterable[str]) -> None:
        """Repositories about to be read: their pull tokens are then fetched together, up to
        TOKEN_SCOPES_PER_REQUEST scopes per token request (the token protocol takes repeated
        `scope` parameters), instead of one request per repository."""
        with self._auth_lock:
            for repository in repositories:
                self._expected.setdefault(repository, None)

    def _companions(self, scope_key: str) -> list[str]:
        """Up to TOKEN_SCOPES_PER_REQUEST - 1 expected repositories without a valid token, to ask
        for with `scope_key`'s; each is claimed once, so a token the registry narrowed (a
        repository it refuses) costs that repository its own request, as without batching."""
        now = time.monotonic()
        with self._auth_lock:
            self._expected.pop(scope_key, None)
            companions: list[str] = []
            for repository in self._expected:
                if len(companions) == TOKEN_SCOPES_PER_REQUEST - 1:
                    break
                cached = self.__tokens.get(repository)
                if (cached is None or now >= cached[1]) and self._scopes.get(repository) in (
                        None, f"repository:{repository}:pull"):
                    companions.append(repository)
            for repository in companions:
                del self._expected[repository]
            return companions

    def _auth_header(self, scope_key: str) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            return {"Authorization": self.__basic} if self.__basic else {}
        return {"Authorization": f"Bearer {self._token(scope_key)}"}

    def _learn_challenge(self, header: str, scope_key: str, what: str) -> None:
        """Remember how the registry wants to be authenticated, and drop the token it refused."""
        scheme = header.strip().split(" ", 1)[0].lower()
        params = dict(_CHALLENGE_PARAM.findall(header))
        if scheme == "basic":
            if self.__basic is None:
                raise SourceForbidden(SOURCE, what, "the registry asks for credentials and none are configured",
                                      _FIX_FORBIDDEN)
            self._challenge = _Challenge("basic")
            return
        if scheme != "bearer" or not params.get("realm"):
            raise SourceForbidden(SOURCE, what, f"HTTP 401 with an unsupported challenge ({scheme or 'none'})",
                                  _FIX_FORBIDDEN)
        realm = httpx.URL(params["realm"])
        if self._origin[0] == "https" and realm.scheme != "https":
            raise _malformed(what, "the token realm is plain HTTP for an HTTPS registry; credentials stay unsent",
                             "Fix the registry's auth.token.realm to an https:// URL; nothing was published.")
        with self._auth_lock:
            self._challenge = _Challenge("bearer", params["realm"], params.get("service", ""))
            if params.get("scope"):
                self._scopes[scope_key] = params["scope"]
            self.__tokens.pop(scope_key, None)

    def _token(self, scope_key: str) -> str:
        """A bearer token for a catalog or repository scope, fetched once per scope and reused
        until shortly before it expires; one fetch per scope even with many threads asking."""
        with self._auth_lock:
            lock = self._scope_locks.setdefault(scope_key, threading.Lock())
        with lock:
            cached = self.__tokens.get(scope_key)
            if cached is not None and time.monotonic() < cached[1]:
                return cached[0]
            challenge = self._challenge
            assert challenge is not None and challenge.scheme == "bearer"
            scope = self._scopes.get(scope_key) or (
                "registry:catalog:*" if scope_key == "catalog" else f"repository:{scope_key}:pull")
            realm = httpx.URL(challenge.realm)
            what = f"token request to {realm.host}{realm.path} for {scope}"
            companions = self._companions(scope_key) if scope == f"repository:{scope_key}:pull" else []
            # Several scopes (a cross-repository mount needs push here and pull there) are
            # space-separated in a challenge and sent as repeated `scope` parameters.
            scopes = scope.split() + [f"repository:{repository}:pull" for repository in companions]
            params = {"scope": scopes, **({"service": challenge.service} if challenge.service else {})}
            response = self._send("GET", realm, endpoint="token", what=what, params=params,
                                  headers={"Authorization": self.__basic} if self.__basic else {},
                                  follow_redirects=False)
            if response.status_code in (401, 403):
                raise SourceForbidden(SOURCE, what, f"the token server refused the credentials "
                                      f"(HTTP {response.status_code})", _FIX_FORBIDDEN)
            if response.status_code != 200:
                raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code} from the token server",
                                  "Check the registry's token service; nothing was published.")
            try:
                document = _strict_json(response.content)
            except (ValueError, RecursionError):
                document = None
            token = (document.get("token") or document.get("access_token")) if isinstance(document, dict) else None
            if not isinstance(token, str) or not token:
                raise _malformed(what, "the token server's answer holds no token",
                                 "Check the registry's token service; nothing was published.")
            ttl = document.get("expires_in")
            ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0 else TOKEN_DEFAULT_TTL
            # Renew a little early: a token that expires in flight costs a 401 and a second fetch.
            expiry = time.monotonic() + ttl * 0.9
            with self._auth_lock:
                for key in (scope_key, *companions):
                    self.__tokens[key] = (token, expiry)
            return token


def _untrusted_certificate(error: BaseException) -> bool:
    """Whether a transport error is a certificate this worker does not trust: both HTTP stacks
    raise it wrapped, with the ssl module's error down the chain."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _int_param(url: httpx.URL, name: str) -> int | None:
    value = url.params.get(name)
    return int(value) if value is not None and value.isdigit() else None


def _error_code(response: httpx.Response) -> str | None:
    """Distribution's error code (`MANIFEST_UNKNOWN`, ...) of an error answer, if it has one."""
    try:
        errors = json.loads(response.content).get("errors")
        code = errors[0].get("code") if errors else None
    except (ValueError, AttributeError, TypeError, IndexError, KeyError):
        return None
    return code if isinstance(code, str) else None


def _error_suffix(response: httpx.Response) -> str:
    """` (CODE: message)` from a registry error body, short, for an error's detail."""
    try:
        error = json.loads(response.content)["errors"][0]
        return f" ({str(error.get('code'))[:40]}: {str(error.get('message'))[:120]})"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def _cached_config(config_json: str | None) -> dict[str, Any] | None:
    """A cached reduced config, or None when absent or unreadable (then it is fetched again)."""
    if not config_json:
        return None
    try:
        document = json.loads(config_json)
    except ValueError:
        return None
    # Re-reduced, so that whatever the file holds reaches the frames in the types they expect.
    return reduce_config(document, "cached config") if isinstance(document, dict) else None


def _expect_ok(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        raise SourceError(SOURCE, what, f"unexpected HTTP {response.status_code}{_error_suffix(response)}",
                          "The registry refused a request a distribution v2 registry accepts; check that the "
                          "URL points at the registry's API and that page_size is within its limit (1000 for "
                          "distribution); nothing was published.")


# ============================================================================ one run
class _Extraction:
    """The state of one `extract()`: what was found where, filled phase by phase."""

    def __init__(self, client: RegistryClient, cache: ManifestCache | None,
                 referrers_cache: ReferrersCache | None = None,
                 described: DescribedImages | None = None) -> None:
        self.client = client
        self.cache = cache
        self.described = described
        self.taken: set[str] = set()                    # digests whose rows come from `described`, not the registry
        self.referrers_cache = referrers_cache
        self.pool: ThreadPoolExecutor | None = None
        self.tags_by_repo: dict[str, dict[str, str]] = {}
        self.manifests: dict[str, tuple[Manifest, dict[str, Any] | None]] = {}
        self.repositories: dict[str, str] = {}          # digest -> first repository (sorted order)
        self.parents: dict[str, str] = {}               # child digest -> index digest (the smallest)
        self.tag_subjects: dict[str, str] = {}          # digest -> subject encoded in a sha256-<hex> tag
        self.gone: set[str] = set()
        self._configs: dict[str, Future[dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- phases
    def read(self, repositories: list[str], known: dict[str, set[str]],
             tag_digests: Mapping[str, Mapping[str, str]]) -> None:
        if self.described is not None:
            listed = [(repo, sorted(tag_digests.get(repo, {}))) for repo in repositories]
        else:
            listed = self._parallel(lambda repo: (repo, self.client.tags(repo)), repositories)
        pairs: list[tuple[str, str]] = []
        resolved: list[tuple[str, str, str | None]] = []
        for repo, tags in sorted(listed):
            if tags is None:
                log.warning("repository %s vanished between the catalog and its tag list", repo)
                self.client._tally_vanished("repositories")
                continue
            self.tags_by_repo[repo] = {}
            told = tag_digests.get(repo, {})
            for tag in tags:
                digest = told.get(tag)
                if digest is not None and _DIGEST.match(digest):
                    resolved.append((repo, tag, digest))
                else:
                    pairs.append((repo, tag))
        self.client._tally("tag_heads_avoided", len(resolved))
        frontier: set[tuple[str, str]] = set()
        resolved += self._parallel(lambda pair: (*pair, self.client.resolve(*pair)), pairs)
        for repo, tag, digest in resolved:
            if digest is None:
                self.client._tally_vanished("tags")
                continue
            self.tags_by_repo[repo][tag] = digest
            frontier.add((repo, digest))
            subject = _SUBJECT_TAG.match(tag)
            if subject is not None:
                self._keep_min(self.tag_subjects, digest, "sha256:" + subject["hex"])
        self.tags_by_repo = {repo: dict(sorted(tags.items())) for repo, tags in sorted(self.tags_by_repo.items())}
        frontier.update((repo, digest) for repo, digests in known.items() if repo in self.tags_by_repo
                        for digest in digests)
        self._walk(frontier)

    def _walk(self, frontier: set[tuple[str, str]]) -> None:
        """From tagged manifests to everything they reach: index children and referrers, level
        by level, each (repository, digest) visited once."""
        seen: set[tuple[str, str]] = set()
        while frontier:
            new = sorted(frontier - seen)
            seen.update(new)
            wanted: dict[str, list[str]] = {}
            for repo, digest in new:
                if digest not in self.manifests and digest not in self.taken and digest not in self.gone:
                    wanted.setdefault(digest, []).append(repo)
            # What the cluster's Image objects describe is taken here, unless a cache entry (the
            # registry's own bytes) answers first: handing each of half a million lookups to the
            # pool cost about 20 s of CPU at scale L, for nothing.
            cached = {digest for digest in wanted if self._cached(digest)}
            if self.described is not None:
                self.taken.update(digest for digest in wanted if digest in self.described and digest not in cached)
            loads = sorted((digest, repos) for digest, repos in wanted.items() if digest not in self.taken)
            self.client.expect_repositories(repos[0] for digest, repos in loads if digest not in cached)
            for digest, loaded in self._parallel(lambda item: (item[0], self._load(*item)), loads):
                if loaded is None:
                    log.warning("manifest %s vanished while it was being read", digest)
                    self.client._tally_vanished("manifests")
                    self.gone.add(digest)
                else:
                    self.manifests[digest] = loaded
            present = [(repo, digest) for repo, digest in new if digest in self.manifests or digest in self.taken]
            frontier = set()
            for repo, digest in present:
                self._keep_min(self.repositories, digest, repo)
                loaded = self.manifests.get(digest)
                for child in loaded[0].children if loaded is not None else ():
                    self._keep_min(self.parents, child.digest, digest)
                    frontier.add((repo, child.digest))
            if self.client.use_referrers and self.described is None:
                for repo, found in self._parallel(lambda pair: (pair[0], self._referrers(*pair)), present):
                    frontier.update((repo, digest) for digest in found)

    def _referrers(self, repository: str, digest: str) -> list[str]:
        if self.referrers_cache is None:
            return self.client.referrers(repository, digest)
        found = self.referrers_cache.get(repository, digest)
        if found is not None:
            self.client._tally("referrers_avoided")
            return found
        found = self.client.referrers(repository, digest)
        if self.client._referrers_supported:       # a registry without the API is asked nothing next time either
            self.referrers_cache.put(repository, digest, found)
        return found

    def _cached(self, digest: str) -> bool:
        return self.cache is not None and self.cache.get(digest) is not None

    def _load(self, digest: str, repositories: list[str]) -> tuple[Manifest, dict[str, Any] | None] | None:
        """A manifest and its reduced config: from the cache, else fetched from the first
        repository that still holds it, verified, and put in the cache; None if none does."""
        cached = self.cache.get(digest) if self.cache is not None else None
        if cached is not None:
            manifest = parse_manifest(digest, cached.media_type, cached.body, f"cached manifest {digest}")
            config = _cached_config(cached.config_json)
            self.client._tally("manifest_gets_avoided")
            if not manifest.needs_config:
                return manifest, None
            if config is not None:
                self.client._tally("blob_gets_avoided")
                return manifest, config
            source = repositories[0]        # an entry without its config: read the config again
        else:
            found: Manifest | None = None
            for source in repositories:
                found = self.client.get_manifest(source, digest)
                if found is not None:
                    break
            if found is None:
                return None
            manifest = found
        config = None
        if manifest.needs_config:
            assert manifest.config is not None
            config = self._config(source, manifest.config)
            if config is None:
                # The config blob is gone (a registry GC bug, or a race): keep the image without
                # config fields, and out of the cache, so that the next run looks again.
                log.warning("config %s of %s is missing from %s", manifest.config.digest, digest, source)
                self.client._tally_vanished("configs")
                return manifest, None
        if self.cache is not None:
            config_json = json.dumps(config, sort_keys=True, separators=(",", ":")) if config is not None else None
            self.cache.put(digest, manifest.media_type, manifest.body, config_json)
        return manifest, config

    def _config(self, repository: str, descriptor: Descriptor) -> dict[str, Any] | None:
        """Each config blob is fetched once per run, however many manifests share it."""
        with self._lock:
            future = self._configs.get(descriptor.digest)
            owner = future is None
            if future is None:
                future = self._configs[descriptor.digest] = Future()
        if owner:
            try:
                future.set_result(self.client.image_config(repository, descriptor))
            except BaseException as exc:
                future.set_exception(exc)
                raise
        return future.result()

    # ---------------------------------------------------------------- frames
    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The images, layers and index_children datasets, rows sorted by key, typed by their contracts."""
        import pyarrow as pa

        from ..datasets import IMAGES, INDEX_CHILDREN, LAYERS

        # Column lists rather than a dict per row: at scale L there are two million layer rows.
        images: dict[str, list[Any]] = {name: [] for name in IMAGES.schema.names}
        layers: dict[str, list[Any]] = {name: [] for name in LAYERS.schema.names}
        edges: dict[str, list[Any]] = {name: [] for name in INDEX_CHILDREN.schema.names}

        def layer(image_digest: str, layer_digest: str, size: int, position: int) -> None:
            layers["image_digest"].append(image_digest)
            layers["layer_digest"].append(layer_digest)
            layers["size_bytes"].append(size)
            layers["position"].append(position)

        for digest in sorted(self.manifests.keys() | self.taken):
            if digest in self.taken:
                assert self.described is not None
                for layer_digest, size, position in self.described.layer_rows(digest):
                    layer(digest, layer_digest, size, position)
                row = {"digest": digest, "repository": self.repositories[digest], **self.described.image_fields(digest),
                       "subject_digest": self.tag_subjects.get(digest), "index_digest": self.parents.get(digest),
                       "managed": True}
                for name, column in images.items():
                    column.append(row[name])
                continue
            manifest, config = self.manifests[digest]
            config = config or {}
            if manifest.is_index:
                size = len(manifest.body)
                for child in sorted(manifest.children, key=lambda child: child.digest):
                    if child.digest in self.manifests or child.digest in self.taken:
                        edges["index_digest"].append(digest)
                        edges["child_digest"].append(child.digest)
            else:
                # The manifest is a blob too: a registry GC frees it with the image's layers.
                layer(digest, digest, len(manifest.body), -2)
                assert manifest.config is not None
                size = manifest.config.size + sum(item.size for item in manifest.layers)
                layer(digest, manifest.config.digest, manifest.config.size, -1)
                for position, item in enumerate(manifest.layers):
                    layer(digest, item.digest, item.size, position)
            row = {
                "digest": digest,
                "repository": self.repositories[digest],
                "media_type": manifest.media_type,
                "size_bytes": size,
                "config_digest": manifest.config.digest if manifest.config is not None else None,
                "created_at": _created(config.get("created")),
                "architecture": config.get("architecture") or None,
                "os": config.get("os") or None,
                "labels": labels_json(config["config"]["Labels"]) if config else None,
                "subject_digest": manifest.subject or self.tag_subjects.get(digest),
                "index_digest": self.parents.get(digest),
                "managed": True,
            }
            for name, column in images.items():
                column.append(row[name])
        return (pa.Table.from_pydict(images, schema=IMAGES.schema).to_pandas(),
                pa.Table.from_pydict(layers, schema=LAYERS.schema).to_pandas(),
                pa.Table.from_pydict(edges, schema=INDEX_CHILDREN.schema).to_pandas())

    # ---------------------------------------------------------------- helpers
    def _keep_min(self, mapping: dict[str, str], key: str, value: str) -> None:
        """Deterministic attribution whatever order threads finish in: the smallest value wins."""
        current = mapping.get(key)
        if current is None or value < current:
            mapping[key] = value

    def _parallel(self, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`work` over `items` on the pool, at most 4 x concurrency in flight; the first error
        cancels what has not started and is raised."""
        assert self.pool is not None
        window = 4 * self.client.concurrency
        results: list[R] = []
        pending: set[Future[R]] = set()
        iterator: Iterator[T] = iter(items)
        try:
            for item in iterator:
                if len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    results.extend(future.result() for future in done)
                pending.add(self.pool.submit(work, item))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                results.extend(future.result() for future in done)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        return results
