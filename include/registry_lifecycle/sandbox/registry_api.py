"""The sandbox's OCI distribution v2 API: what `oc adm prune images`, skopeo and our own
extractor talk to, served over real HTTP so their real clients run unchanged.

It answers like distribution 2.8 (the code inside the OpenShift image registry) wherever a
client could notice the difference, including the parts naive clients trip over:

- catalog paging with a `Link` header (100 per page unless `n` says otherwise; `n` above 1000
  is refused with PAGINATION_NUMBER_INVALID); tag paging only when the client sends `n`, as
  distribution lists every tag otherwise; a repository with no tags left answers
  `"tags": null` (Go's nil slice), not `[]`;
- manifests are served byte for byte with `Docker-Content-Digest` and `ETag`, and `Accept` is
  negotiated as 2.8 does: an OCI manifest or index is *404 MANIFEST_UNKNOWN* to a client that
  does not accept its media type (no Accept header at all included), a Docker manifest list
  fetched by tag by a client that does not accept lists is answered with its linux/amd64
  child, and a Docker schema 2 manifest is served as is (2.8's down-conversion to the
  long-dead schema 1 is not simulated);
- DELETE works by digest only (202); by tag it is 400 DIGEST_INVALID, as 2.8 answers;
- blobs stream from `content.blob` chunk by chunk, with single `Range: bytes=` requests (206)
  so an interrupted puller can resume;
- the OCI 1.1 referrers API, when the content can list referrers (`ReferrersSource`);
- distribution's bearer-token auth, when the server is given credentials.

Fault hooks beyond the base's: `truncate` drops the `Link` of a catalog or tags page while
more remain, cuts a blob body in half and closes the connection, and on a manifest serves a
re-indented body (same JSON, different bytes) under the original digest, as a rewriting
proxy would: a client that does not verify digests will not notice, which is the point.
"""
from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlencode

from . import oci
from .clock import SandboxClock
from .faults import FaultInjector
from .httpbase import SandboxHandler, SandboxServer
from .model import Manifest, RegistryContent

SERVICE = "sandbox-registry"
TOKEN_TTL_SECONDS = 300
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_ROUTE = re.compile(rf"^/v2/(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)/"
                    r"(?P<kind>tags|manifests|blobs|referrers)/(?P<ref>[^/]+)$")
_DIGEST = re.compile(r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

# Distribution's canonical messages: clients log them and some match on them.
_MESSAGES = {
    "UNKNOWN": "unknown error",
    "UNSUPPORTED": "The operation is unsupported.",
    "UNAUTHORIZED": "authentication required",
    "DENIED": "requested access to the resource is denied",
    "UNAVAILABLE": "service unavailable",
    "TOOMANYREQUESTS": "too many requests",
    "DIGEST_INVALID": "provided digest did not match uploaded content",
    "NAME_UNKNOWN": "repository name not known to registry",
    "MANIFEST_UNKNOWN": "manifest unknown",
    "BLOB_UNKNOWN": "blob unknown to registry",
    "PAGINATION_NUMBER_INVALID": "invalid number of results requested",
    "RANGE_INVALID": "invalid content range",
}
_CODE_BY_STATUS = {401: "UNAUTHORIZED", 403: "DENIED", 405: "UNSUPPORTED", 429: "TOOMANYREQUESTS",
                   503: "UNAVAILABLE"}
# Which methods each endpoint answers; anything else is 405, as the sandbox accepts no pushes.
_METHODS = {"base": {"GET", "HEAD"}, "catalog": {"GET"}, "tags": {"GET"},
            "manifests": {"GET", "HEAD", "DELETE"}, "blobs": {"GET", "HEAD"}, "referrers": {"GET"},
            "token": {"GET"}}

Access = tuple[str, str, str]            # (resource type, resource name, action)
Grants = dict[tuple[str, str], frozenset[str]]


@runtime_checkable
class ReferrersSource(Protocol):
    """Registry content that can answer the OCI 1.1 referrers API.

    Optional beside `RegistryContent`: content without it makes the server answer the
    referrers endpoint with 404, which is how a registry without the API behaves and what
    sends clients to the `sha256-<hex>` tag fallback.
    """

    def referrers(self, repository: str, digest: str, at: datetime) -> list[dict[str, Any]]:
        """Descriptors (mediaType, digest, size, artifactType, annotations) of the manifests
        linked in `repository` at `at` whose `subject` is `digest`; [] if none."""


class _ApiError(Exception):
    """An answer in distribution's error shape, raised from deep in a handler."""

    def __init__(self, status: int, code: str, detail: Any = None, *, message: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail
        self.message = message or _MESSAGES[code]
        self.headers = headers or {}


def _errors(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return {"errors": [error]}


def _not_found_code(path: str) -> str:
    """The code a 404 on this path carries, so an injected 404 reads like a real one."""
    if path.endswith("/tags/list"):
        return "NAME_UNKNOWN"
    if "/manifests/" in path:
        return "MANIFEST_UNKNOWN"
    if "/blobs/" in path:
        return "BLOB_UNKNOWN"
    return "UNSUPPORTED"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parse_scope(scope: str) -> tuple[str, str, frozenset[str]] | None:
    """`repository:team/app:pull,delete` -> (type, name, actions); None if not a scope."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name or not actions:
        return None
    return kind, name, frozenset(a for a in actions.split(",") if a)


def _allows(grants: Grants, access: Access) -> bool:
    """Distribution's rule: the action itself or `*` granted on that exact resource."""
    actions = grants.get((access[0], access[1]), frozenset())
    return access[2] in actions or "*" in actions


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte span one `Range: bytes=` header asks for.

    None means serve the whole blob: no header, or one this server does not honour
    (several ranges, another unit), which HTTP allows a server to ignore.
    Raises _ApiError(416) for a span that does not overlap the blob.
    """
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first_text, last_text = match.groups()
    unsatisfiable = _ApiError(416, "RANGE_INVALID", {"size": size},
                              headers={"Content-Range": f"bytes */{size}"})
    if not first_text:                       # suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(size - suffix, 0), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise unsatisfiable
    return first, min(last, size - 1)


class RegistryHandler(SandboxHandler):
    """Routes /v2/ requests to the content as of the sandbox clock."""

    api_name = "registry"
    server: "RegistryServer"

    # -- responses ------------------------------------------------------------------
    def _begin(self, status: int, headers: dict[str, str]) -> None:
        """Status line and headers; every answer carries the header clients probe for v2."""
        self.send_response(status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def send_bytes(self, status: int, body: bytes, content_type: str,
                   headers: dict[str, str] | None = None, *, head_only: bool = False,
                   content_length: int | None = None) -> None:
        """As the base does, plus the Docker-Distribution-API-Version header on every answer."""
        length = len(body) if content_length is None else content_length
        self._begin(status, {"Content-Type": content_type, "Content-Length": str(length), **(headers or {})})
        if body and not head_only and self.command != "HEAD":
            self.wfile.write(body)

    def error_body(self, status: int, message: str) -> Any:
        """Distribution's error document for a status the base produced (injected faults,
        handler crashes): the code a real registry would put there, the message as detail."""
        code = _not_found_code(self.url_path) if status == 404 else _CODE_BY_STATUS.get(status, "UNKNOWN")
        return _errors(code, _MESSAGES[code], message)

    def _send_error(self, error: _ApiError) -> None:
        self.send_json(error.status, _errors(error.code, error.message, error.detail), error.headers,
                       content_type="application/json; charset=utf-8")

    # -- routing --------------------------------------------------------------------
    def route(self, method: str) -> None:
        endpoint = self._endpoint()
        if endpoint is None:
            super().route(method)
            return
        kind, name, ref = endpoint
        try:
            if method not in _METHODS[kind]:
                # The body was read in parse_request, so the connection stays usable; closing it
                # silently made a client's next request on it fail ("Server disconnected").
                raise _ApiError(405, "UNSUPPORTED", {"method": method})
            if kind == "token":
                self._token()
                return
            self._authorize(self._required_access(kind, name, method))
            if kind == "base":
                self.server.count_endpoint("base")
                self.send_json(200, {})
            elif kind == "catalog":
                self._catalog()
            elif kind == "tags":
                self._tags(name)
            elif kind == "manifests" and method == "DELETE":
                self._delete(name, ref)
            elif kind == "manifests":
                self._manifest(name, ref, head=method == "HEAD")
            elif kind == "blobs":
                self._blob(name, ref, head=method == "HEAD")
            else:
                self._referrers(name, ref)
        except _ApiError as error:
            self._send_error(error)

    def _endpoint(self) -> tuple[str, str, str] | None:
        """(kind, repository, reference) of the request, None for a path the API lacks."""
        path = self.url_path
        if path in ("/v2", "/v2/"):
            return "base", "", ""
        if path == "/v2/_catalog":
            return "catalog", "", ""
        if path == "/token" and self.server.credentials is not None:
            return "token", "", ""
        match = _ROUTE.match(path)
        if match is None:
            return None
        kind, name, ref = match["kind"], match["name"], match["ref"]
        if kind == "tags" and ref != "list":
            return None
        return kind, name, ref

    @staticmethod
    def _required_access(kind: str, name: str, method: str) -> list[Access]:
        """What distribution asks a token for: nothing for /v2/, `*` on the catalog,
        `delete` to delete and `pull` to read a repository."""
        if kind == "base":
            return []
        if kind == "catalog":
            return [("registry", "catalog", "*")]
        return [("repository", name, "delete" if method == "DELETE" else "pull")]

    # -- auth -----------------------------------------------------------------------
    def _authorize(self, access: list[Access]) -> None:
        """Raises distribution's 401 and challenge unless a valid token grants `access`."""
        if self.server.credentials is None:
            return
        scheme, _, raw_token = self.headers.get("Authorization", "").partition(" ")
        error = None
        if scheme.lower() == "bearer" and raw_token.strip():
            grants = self.server.verify_token(raw_token.strip())
            if grants is None:
                error = "invalid_token"
            elif all(_allows(grants, item) for item in access):
                return
            else:
                error = "insufficient_scope"
        challenge = f'Bearer realm="{self.server.url}/token",service="{SERVICE}"'
        if access:
            challenge += ',scope="' + " ".join(f"{kind}:{name}:{action}" for kind, name, action in access) + '"'
        if error:
            challenge += f',error="{error}"'
        detail = [{"Type": kind, "Class": "", "Name": name, "Action": action} for kind, name, action in access]
        raise _ApiError(401, "UNAUTHORIZED", detail, headers={"WWW-Authenticate": challenge})

    def _token(self) -> None:
        """The token server: HTTP Basic credentials in, a bearer token for the scopes asked."""
        self.server.count_endpoint("token")
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        if scheme.lower() != "basic" or not self.server.check_password(user, password):
            raise _ApiError(401, "UNAUTHORIZED", "invalid username or password",
                            headers={"WWW-Authenticate": f'Basic realm="{SERVICE}"'})
        requested = [scope for value in parse_qs(self.raw_query).get("scope", []) for scope in value.split()]
        grants = [parsed for parsed in map(_parse_scope, requested) if parsed is not None]
        token, issued = self.server.issue_token(user, grants)
        self.send_json(200, {"token": token, "access_token": token, "expires_in": TOKEN_TTL_SECONDS,
                             "issued_at": issued.isoformat().replace("+00:00", "Z")})

    # -- listing --------------------------------------------------------------------
    def _paged(self, items: list[str], default_size: int | None) -> tuple[list[str], dict[str, str]]:
        """The page of sorted `items` after `last`, and its `Link` header while more remain.

        `default_size` None lists everything when the client sends no `n`. Under a
        `truncate` fault the Link is dropped, so only a client that checks counts notices.
        """
        raw_size = self.query.get("n", "")
        size = default_size
        if raw_size:
            try:
                size = int(raw_size)
            except ValueError:
                raise _ApiError(400, "PAGINATION_NUMBER_INVALID", {"n": raw_size}) from None
            if not 0 <= size <= MAX_PAGE_SIZE:
                raise _ApiError(400, "PAGINATION_NUMBER_INVALID", {"n": size})
        last = self.query.get("last", "")
        start = bisect.bisect_right(items, last) if last else 0
        if size is None:
            return items[start:], {}
        page = items[start:start + size]
        if not page or start + size >= len(items) or (self.fault is not None and self.fault.truncate):
            return page, {}
        query = urlencode({"last": page[-1], "n": size})   # Go's url.Values order: sorted keys
        return page, {"Link": f'<{self.url_path}?{query}>; rel="next"'}

    def _catalog(self) -> None:
        self.server.count_endpoint("catalog")
        page, headers = self._paged(self.server.content.repositories(self.clock.now()), DEFAULT_PAGE_SIZE)
        self.send_json(200, {"repositories": page}, headers)

    def _tags(self, name: str) -> None:
        self.server.count_endpoint("tags")
        tags = self.server.content.tags(name, self.clock.now())
        if tags is None:
            raise _ApiError(404, "NAME_UNKNOWN", {"name": name})
        page, headers = self._paged(sorted(tags), None)
        # distribution 2.8 encodes an empty Go slice as null: clients must cope with it.
        self.send_json(200, {"name": name, "tags": page or None}, headers)

    # -- manifests ------------------------------------------------------------------
    def _accepted(self) -> set[str]:
        """Media types named in every Accept header; q-values ignored, as distribution does."""
        return {part.split(";")[0].strip().lower()
                for value in self.headers.get_all("Accept", []) for part in value.split(",")}

    def _lookup(self, name: str, reference: str) -> Manifest:
        """The manifest a tag or digest names, else the 404 distribution gives."""
        by_digest = ":" in reference
        if by_digest and not _DIGEST.match(reference):
            raise _ApiError(400, "DIGEST_INVALID", reference)
        at = self.clock.now()
        manifest = self.server.content.manifest(name, reference, at)
        if manifest is not None:
            return manifest
        if self.server.content.tags(name, at) is None:
            raise _ApiError(404, "NAME_UNKNOWN", {"name": name})
        detail = {"Name": name, "Revision": reference} if by_digest else {"Tag": reference}
        raise _ApiError(404, "MANIFEST_UNKNOWN", detail)

    def _manifest(self, name: str, reference: str, *, head: bool) -> None:
        self.server.count_endpoint("manifest_head" if head else "manifest_get")
        manifest = self._lookup(name, reference)
        etag = f'"{manifest.digest}"'
        if any(value in (etag, manifest.digest) for value in self.headers.get_all("If-None-Match", [])):
            self._begin(304, {"ETag": etag, "Docker-Content-Digest": manifest.digest})
            return
        accepted = self._accepted()
        if manifest.media_type == oci.OCI_MANIFEST and oci.OCI_MANIFEST not in accepted:
            raise _ApiError(404, "MANIFEST_UNKNOWN",
                            message="OCI manifest found, but accept header does not support OCI manifests")
        if manifest.media_type == oci.OCI_INDEX and oci.OCI_INDEX not in accepted:
            raise _ApiError(404, "MANIFEST_UNKNOWN",
                            message="OCI index found, but accept header does not support OCI indexes")
        if (manifest.media_type == oci.DOCKER_MANIFEST_LIST and oci.DOCKER_MANIFEST_LIST not in accepted
                and ":" not in reference):
            manifest = self._default_platform(name, manifest)
        body = manifest.body
        if self.fault is not None and self.fault.truncate:
            body = json.dumps(json.loads(body), indent=3).encode()
        self.send_bytes(200, body, manifest.media_type,
                        {"Docker-Content-Digest": manifest.digest, "ETag": f'"{manifest.digest}"'},
                        head_only=head)

    def _default_platform(self, name: str, manifest_list: Manifest) -> Manifest:
        """What 2.8 serves an old client asking a manifest list by tag: the linux/amd64 image."""
        for entry in json.loads(manifest_list.body).get("manifests", []):
            platform = entry.get("platform") or {}
            if platform.get("architecture") == "amd64" and platform.get("os") == "linux":
                child = self.server.content.manifest(name, entry["digest"], self.clock.now())
                if child is not None:
                    return child
        raise _ApiError(404, "MANIFEST_UNKNOWN")

    def _delete(self, name: str, reference: str) -> None:
        self.server.count_endpoint("delete")
        if not _DIGEST.match(reference):       # 2.8 deletes by digest only; a tag is no digest
            raise _ApiError(400, "DIGEST_INVALID", reference)
        at = self.clock.now()
        if self.server.content.delete_manifest(name, reference, at):
            self._begin(202, {"Content-Length": "0"})
            return
        if self.server.content.tags(name, at) is None:
            raise _ApiError(404, "NAME_UNKNOWN", {"name": name})
        raise _ApiError(404, "MANIFEST_UNKNOWN", {"Name": name, "Revision": reference})

    # -- blobs ----------------------------------------------------------------------
    def _blob(self, name: str, digest: str, *, head: bool) -> None:
        self.server.count_endpoint("blob_head" if head else "blob_get")
        if not _DIGEST.match(digest):
            raise _ApiError(400, "DIGEST_INVALID", digest)
        opened = self.server.content.blob(name, digest, self.clock.now())
        if opened is None:
            raise _ApiError(404, "BLOB_UNKNOWN", digest)
        size, chunks = opened
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                   "ETag": f'"{digest}"', "Accept-Ranges": "bytes", "Cache-Control": "max-age=31536000"}
        span = _byte_range(self.headers.get("Range"), size)
        first, last = span if span is not None else (0, size - 1)
        if span is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        count = last - first + 1
        self._begin(206 if span is not None else 200, {**headers, "Content-Length": str(count)})
        if head:
            return
        if self.fault is not None and self.fault.truncate:
            count //= 2
            self.close_connection = True        # the client sees a body shorter than announced
        self._write_span(chunks, first, count)

    def _write_span(self, chunks: Iterator[bytes], first: int, count: int) -> None:
        """Writes `count` bytes from offset `first` of the chunked blob, one chunk at a time."""
        position = 0
        for chunk in chunks:
            if count <= 0:
                break
            end = position + len(chunk)
            if end > first:
                piece = memoryview(chunk)[max(first - position, 0):][:count]
                self.wfile.write(piece)
                count -= len(piece)
            position = end

    # -- referrers ------------------------------------------------------------------
    def _referrers(self, name: str, digest: str) -> None:
        self.server.count_endpoint("referrers")
        content = self.server.content
        if not isinstance(content, ReferrersSource):    # a registry without the API: 404
            raise _ApiError(404, "UNSUPPORTED", self.url_path)
        if not _DIGEST.match(digest):
            raise _ApiError(400, "DIGEST_INVALID", digest)
        at = self.clock.now()
        if content.tags(name, at) is None:
            raise _ApiError(404, "NAME_UNKNOWN", {"name": name})
        # Content may leave optional fields as None; the index must omit them, not send null.
        descriptors = [{key: value for key, value in entry.items() if value is not None}
                       for entry in content.referrers(name, digest, at)]
        headers = {}
        artifact_type = self.query.get("artifactType")
        if artifact_type:
            descriptors = [entry for entry in descriptors if entry.get("artifactType") == artifact_type]
            headers["OCI-Filters-Applied"] = "artifactType"
        self.send_json(200, {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": descriptors},
                       headers, content_type=oci.OCI_INDEX)


class RegistryServer(SandboxServer):
    """The registry's server: its content, optional credentials, token signing key and the
    per-endpoint request counts that benchmarks read to prove a warm run fetches little."""

    def __init__(self, content: RegistryContent, *, clock: SandboxClock, faults: FaultInjector,
                 port: int = 0, credentials: tuple[str, str] | None = None, host: str = "127.0.0.1",
                 advertise_host: str | None = None) -> None:
        super().__init__(RegistryHandler, clock=clock, faults=faults, port=port, host=host,
                         advertise_host=advertise_host)
        self.content = content
        self.credentials = credentials
        self._signing_key = secrets.token_bytes(32)
        # token -> (expiry, grants) of tokens already verified: a client reuses one token for
        # thousands of requests, and re-checking its signature and decoding its grants each time
        # made the sandbox, not the client, the cost a benchmark measured.
        self._verified: dict[str, tuple[int, Grants]] = {}
        self._endpoints: Counter[str] = Counter()
        self._endpoints_lock = threading.Lock()

    # -- counting -------------------------------------------------------------------
    def count_endpoint(self, endpoint: str) -> None:
        with self._endpoints_lock:
            self._endpoints[endpoint] += 1

    def endpoint_counts(self) -> dict[str, int]:
        """Requests that passed auth and reached each endpoint: base, catalog, tags,
        manifest_get, manifest_head, blob_get, blob_head, delete, referrers, token."""
        with self._endpoints_lock:
            return dict(self._endpoints)

    def request_counts(self) -> dict[str, int]:
        """The base's per-API totals plus `registry.<endpoint>` counts, so `/_sandbox/stats`
        shows them to a benchmark running in another process."""
        counts = super().request_counts()
        counts.update({f"registry.{endpoint}": n for endpoint, n in self.endpoint_counts().items()})
        return counts

    # -- tokens ---------------------------------------------------------------------
    def check_password(self, user: str, password: str) -> bool:
        if self.credentials is None:
            return False
        expected_user, expected_password = self.credentials
        return (hmac.compare_digest(user.encode(), expected_user.encode())
                & hmac.compare_digest(password.encode(), expected_password.encode()))

    def issue_token(self, user: str, grants: list[tuple[str, str, frozenset[str]]]) -> tuple[str, datetime]:
        """An opaque token (payload + HMAC) granting `grants`, expiring TOKEN_TTL_SECONDS
        after now on the sandbox clock, so a test expires it by moving the clock."""
        issued = self.clock.now().astimezone(timezone.utc)
        payload = {"sub": user, "iat": int(issued.timestamp()),
                   "exp": int((issued + timedelta(seconds=TOKEN_TTL_SECONDS)).timestamp()),
                   "access": [{"type": kind, "name": name, "actions": sorted(actions)}
                              for kind, name, actions in grants]}
        encoded = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{encoded}.{self._sign(encoded)}", issued

    def verify_token(self, token: str) -> Grants | None:
        """The grants of a token this server signed and that has not expired, else None."""
        verified = self._verified.get(token)
        if verified is None:
            encoded, _, signature = token.partition(".")
            if not hmac.compare_digest(signature.encode(), self._sign(encoded).encode()):
                return None
            payload = json.loads(_unb64(encoded))
            grants: Grants = {}
            for entry in payload["access"]:
                key = (entry["type"], entry["name"])
                grants[key] = grants.get(key, frozenset()) | frozenset(entry["actions"])
            verified = (payload["exp"], grants)
            if len(self._verified) >= 10_000:       # tokens expire in minutes; start over rather than grow
                self._verified.clear()
            self._verified[token] = verified
        if self.clock.now().timestamp() >= verified[0]:
            return None
        return verified[1]

    def _sign(self, encoded: str) -> str:
        return _b64(hmac.new(self._signing_key, encoded.encode(), hashlib.sha256).digest())


def start_registry_api(content: RegistryContent, clock: SandboxClock, faults: FaultInjector,
                       port: int = 0, credentials: tuple[str, str] | None = None, *, host: str = "127.0.0.1",
                       advertise_host: str | None = None) -> RegistryServer:
    """Serve `content` as an OCI distribution v2 registry on 127.0.0.1 (port 0: any free one).

    With `credentials` (user, password) every /v2/ request needs a bearer token from
    `<url>/token`, obtained with those credentials over HTTP Basic.
    """
    server = RegistryServer(content, clock=clock, faults=faults, port=port, credentials=credentials, host=host,
                            advertise_host=advertise_host)
    server.start()
    return server
