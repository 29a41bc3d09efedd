"""The sandbox's Kubernetes API server, close enough to kube-apiserver that the unmodified
`kubernetes.dynamic.DynamicClient` discovers, lists, pages and writes against it.

What a snapshot extractor must survive in production is reproduced here on purpose:
`limit`/`continue` paging whose tokens expire (410 Expired, as etcd compaction causes), a
continue token that vanishes while `remainingItemCount` says items remain, 403/429/500
answers shaped exactly like the real Status objects, and bearer-token authentication.
Objects come from `ObjectSource`s read "as of" the sandbox clock, so moving the clock shows
the cluster as it stood on another day.
"""
from __future__ import annotations

import base64
import copy
import hmac
import json
import re
import threading
import time
import uuid
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable
from urllib.parse import unquote

import yaml

from .clock import SandboxClock
from .faults import FaultInjector
from .httpbase import SandboxHandler, SandboxServer
from .model import ObjectSource, ResourceType, TimelineObject

#: The identity the DAGs run as; a 403 names it, as the RBAC authorizer does.
SERVICE_ACCOUNT_USER = "system:serviceaccount:registry-lifecycle:reglife"

#: What `/version` answers: the Kubernetes of OpenShift 4.18.
SERVER_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.6",
    "gitCommit": "6d5e5f8e2e8b3d5c1d3f4a8c9b6e2f0a1c7d9e4b",
    "gitTreeState": "clean",
    "buildDate": "2025-02-20T00:00:00Z",
    "goVersion": "go1.22.12",
    "compiler": "gc",
    "platform": "linux/amd64",
}

#: kube-apiserver's words (k8s.io/apiserver/pkg/storage/etcd3/errors.go), kept verbatim
#: because clients and runbooks match on them.
CONTINUE_EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)

# Resources to which the real servers attach a `status` subresource.
_STATUS_SUBRESOURCES = frozenset({
    ("", "namespaces"), ("", "pods"), ("", "replicationcontrollers"),
    ("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"), ("apps", "daemonsets"),
    ("apps.openshift.io", "deploymentconfigs"), ("batch", "jobs"), ("batch", "cronjobs"),
    ("image.openshift.io", "imagestreams"),
})
_STATUS_VERBS = ["get", "patch", "update"]

# The generic registry answers DELETE with a Status; pod storage returns the deleted Pod.
_RETURNS_DELETED_OBJECT = frozenset({("", "pods")})

# Field selectors a kind supports beyond metadata.name/metadata.namespace (pkg/registry/*/strategy.go).
_FIELD_LABELS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset({"spec.nodeName", "status.phase"}),
}

_MERGE_PATCH_TYPES = frozenset({"application/merge-patch+json", "application/strategic-merge-patch+json"})
_CONTINUE_VERSION = "meta.k8s.io/v1"
_GENERATE_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def rfc3339(when: datetime) -> str:
    """A timestamp as Kubernetes serialises metav1.Time: UTC, whole seconds, 'Z'."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def qualified_resource(rtype: ResourceType) -> str:
    """`pods` or `imagestreams.image.openshift.io`: how error messages name a resource."""
    return f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural


# --------------------------------------------------------------------------- errors
def status_body(code: int | None, reason: str, message: str, details: dict | None = None,
                metadata: dict | None = None, *, success: bool = False) -> dict:
    """A metav1.Status with the fields in the order and presence the real server emits
    (a successful DELETE's Status carries no code)."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": metadata or {},
                            "status": "Success" if success else "Failure"}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    if code is not None:
        body["code"] = code
    return body


def _details(rtype: ResourceType, name: str = "", **extra: Any) -> dict:
    """StatusDetails as NewNotFound & co. fill them: `kind` carries the resource plural."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rtype.group:
        details["group"] = rtype.group
    details["kind"] = rtype.plural
    details.update(extra)
    return details


class KubeApiError(Exception):
    """A request the API refuses; the handler answers it as the Status it carries."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 metadata: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_body(code, reason, message, details, metadata)


def not_found(rtype: ResourceType, name: str) -> KubeApiError:
    return KubeApiError(404, "NotFound", f'{qualified_resource(rtype)} "{name}" not found', _details(rtype, name))


def bad_request(message: str) -> KubeApiError:
    return KubeApiError(400, "BadRequest", message)


def _unknown_path() -> KubeApiError:
    return KubeApiError(404, "NotFound", "the server could not find the requested resource", {})


def _method_not_allowed() -> KubeApiError:
    return KubeApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def _not_supported(rtype: ResourceType, verb: str) -> KubeApiError:
    return KubeApiError(405, "MethodNotAllowed",
                        f'{verb} is not supported on resources of kind "{qualified_resource(rtype)}"',
                        _details(rtype))


# --------------------------------------------------------------------------- writable sources
@runtime_checkable
class WritableSource(Protocol):
    """A source that accepts new versions of objects (create, update, patch, status writes)."""

    def put(self, obj: TimelineObject) -> None: ...


@runtime_checkable
class DeletableSource(Protocol):
    """A source that can end an object's life at an instant (DELETE)."""

    def remove(self, namespace: str, name: str, at: datetime) -> bool: ...


# --------------------------------------------------------------------------- selectors
_LABEL_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"\s*(!?)\s*({_LABEL_KEY})\s*")
_EQUALS = re.compile(rf"\s*({_LABEL_KEY})\s*(==|=|!=)\s*({_LABEL_VALUE})\s*")
_SET = re.compile(rf"\s*({_LABEL_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*")


def _split_requirements(text: str) -> list[str]:
    """Split on the commas between requirements, not those inside `in (a, b)`."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class LabelSelector:
    """A parsed `labelSelector`, with the semantics of k8s.io/apimachinery/pkg/labels:
    `!=` and `notin` also match objects that lack the label."""

    requirements: tuple[tuple[str, str, frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        requirements = []
        for part in _split_requirements(text) if text.strip() else ():
            if match := _SET.fullmatch(part):
                values = frozenset(v.strip() for v in match[3].split(",") if v.strip())
                if not values or not all(re.fullmatch(_LABEL_VALUE, v) for v in values):
                    raise bad_request(f"unable to parse requirement: invalid values in {part.strip()!r}")
                requirements.append((match[1], match[2], values))
            elif match := _EQUALS.fullmatch(part):
                requirements.append((match[1], "!=" if match[2] == "!=" else "=", frozenset({match[3]})))
            elif match := _EXISTS.fullmatch(part):
                requirements.append((match[2], "!" if match[1] else "exists", frozenset()))
            else:
                raise bad_request(f"unable to parse requirement: {part.strip()!r} is not a valid label selector")
        return cls(tuple(requirements))

    def matches(self, labels: dict[str, str]) -> bool:
        for key, op, values in self.requirements:
            present = key in labels
            if op == "exists" and not present:
                return False
            if op == "!" and present:
                return False
            if op in ("=", "in") and (not present or labels[key] not in values):
                return False
            if op in ("!=", "notin") and present and labels[key] in values:
                return False
        return True


@dataclass(frozen=True)
class FieldSelector:
    """A parsed `fieldSelector`: metadata.name/namespace are judged on the key alone (no
    render), the few body fields a kind supports on the rendered object."""

    key_terms: tuple[tuple[str, bool, str], ...] = ()    # (field, equal?, value)
    body_terms: tuple[tuple[str, bool, str], ...] = ()

    @classmethod
    def parse(cls, text: str, rtype: ResourceType) -> FieldSelector:
        supported = _FIELD_LABELS.get((rtype.group, rtype.plural), frozenset())
        key_terms, body_terms = [], []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            match = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", part)
            if not match:
                raise bad_request(f"invalid selector: {part!r}; can't understand it")
            term = (match[1], match[2] != "!=", match[3].strip())
            if match[1] in ("metadata.name", "metadata.namespace"):
                key_terms.append(term)
            elif match[1] in supported:
                body_terms.append(term)
            else:
                raise bad_request(f'field label not supported: {match[1]}')
        return cls(tuple(key_terms), tuple(body_terms))

    def matches_key(self, key: tuple[str, str]) -> bool:
        for field, equal, value in self.key_terms:
            actual = key[1] if field == "metadata.name" else key[0]
            if (actual == value) != equal:
                return False
        return True

    def matches_body(self, body: dict) -> bool:
        for field, equal, value in self.body_terms:
            actual: Any = body
            for part in field.split("."):
                actual = actual.get(part) if isinstance(actual, dict) else None
            if (("" if actual is None else str(actual)) == value) != equal:
                return False
        return True


# --------------------------------------------------------------------------- continue tokens
@dataclass(frozen=True)
class ContinueToken:
    """What a continue token carries. Opaque to clients: base64url of JSON, as the real
    server's (which holds the etcd revision and the last key)."""

    rv: int                    # store resourceVersion of the first page; -1: "continue at latest"
    list_of: str               # which list it continues (group/plural/namespace)
    start: tuple[str, str]     # last key served
    at: str                    # clock instant the first page showed (ISO 8601)
    issued: float              # wall-clock seconds when issued, for continue_ttl

    def encode(self) -> str:
        raw = json.dumps({"v": _CONTINUE_VERSION, "rv": self.rv, "list": self.list_of,
                          "start": list(self.start), "at": self.at, "issued": self.issued},
                         separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str) -> ContinueToken:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if data["v"] != _CONTINUE_VERSION:
                raise ValueError(f"got token version {data['v']!r}")
            namespace, name = data["start"]
            parsed = cls(int(data["rv"]), str(data["list"]), (str(namespace), str(name)),
                         str(data["at"]), float(data["issued"]))
            datetime.fromisoformat(parsed.at)
            return parsed
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_request(f"invalid continue token: continue key is not valid: {exc}") from None


# --------------------------------------------------------------------------- store
@dataclass(frozen=True)
class _Entry:
    rtype: ResourceType
    source: ObjectSource
    status: bool


class KubeStore:
    """The resource types the API serves, each backed by an ObjectSource, plus what etcd
    gives the real server: a monotonic resourceVersion bumped on every write and compaction
    that expires outstanding continue tokens.

    Writes must go through the store: key snapshots kept for paging are valid only while the
    resourceVersion has not moved.
    """

    _SNAPSHOTS = 8   # a few concurrent paged lists; each snapshot is one key list

    def __init__(self, *, continue_ttl: float = 300.0, resource_version: int = 1) -> None:
        self.continue_ttl = continue_ttl
        self._rv = resource_version
        self._compacted = 0
        self._entries: dict[ResourceType, _Entry] = {}
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._snapshots: OrderedDict[tuple, list[tuple[str, str]]] = OrderedDict()
        self._lock = threading.RLock()

    # -- registry ---------------------------------------------------------------------
    def register(self, rtype: ResourceType, source: ObjectSource, *, status_subresource: bool | None = None) -> None:
        """Serve `rtype` from `source`; the status subresource defaults to what the real server has."""
        status = (rtype.group, rtype.plural) in _STATUS_SUBRESOURCES if status_subresource is None else status_subresource
        with self._lock:
            self._entries[rtype] = _Entry(rtype, source, status)
            self._by_path[(rtype.group, rtype.version, rtype.plural)] = rtype

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def types(self) -> list[ResourceType]:
        return list(self._entries)

    def source(self, rtype: ResourceType) -> ObjectSource:
        return self._entries[rtype].source

    def has_status(self, rtype: ResourceType) -> bool:
        return self._entries[rtype].status

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def compact(self) -> int:
        """Forget every revision before now, as etcd compaction does: outstanding continue
        tokens expire. Like kube-apiserver's compactor, compacting is itself a write."""
        with self._lock:
            self._rv += 1
            self._compacted = self._rv
            for key in [k for k in self._snapshots if k[3] < self._compacted]:
                del self._snapshots[key]
            return self._compacted

    def _bump(self) -> int:
        with self._lock:
            self._rv += 1
            return self._rv

    # -- reads ------------------------------------------------------------------------
    def get(self, rtype: ResourceType, namespace: str, name: str, at: datetime) -> dict:
        body = self._entries[rtype].source.render(namespace, name, at)
        if body is None:
            raise not_found(rtype, name)
        return body

    def _keys(self, rtype: ResourceType, namespace: str | None, at: datetime, rv: int, *,
              continuing: bool) -> list[tuple[str, str]]:
        """The sorted keys a list pages through. A first page reads the source; a continuation
        reuses the snapshot its first page left, so paging n objects costs one keys() call,
        not n/limit, and shows the key set the first page saw."""
        with self._lock:
            snapshot = self._snapshots.get((rtype, namespace, at, rv)) if continuing else None
            if snapshot is not None:
                self._snapshots.move_to_end((rtype, namespace, at, rv))
                return snapshot
            return self._entries[rtype].source.keys(at, namespace)

    def _keep_snapshot(self, rtype: ResourceType, namespace: str | None, at: datetime, rv: int,
                       keys: list[tuple[str, str]]) -> None:
        with self._lock:
            self._snapshots[(rtype, namespace, at, rv)] = keys
            self._snapshots.move_to_end((rtype, namespace, at, rv))
            while len(self._snapshots) > self._SNAPSHOTS:
                self._snapshots.popitem(last=False)

    def list_page(self, rtype: ResourceType, at: datetime, *, namespace: str | None = None, limit: int = 0,
                  continue_token: str | None = None, label_selector: str = "", field_selector: str = "",
                  expire_continue: bool = False, truncate: bool = False) -> dict:
        """One page of a list, as kube-apiserver serves it from etcd.

        `at` is the clock instant for a first page; a continuation shows the instant and
        the key snapshot of its first page. `expire_continue` and `truncate` are the faults
        a careful client must survive: a 410 on continuation, and a page whose continue
        token is missing although `remainingItemCount` says items remain.
        """
        entry = self._entries[rtype]
        labels = LabelSelector.parse(label_selector)
        fields = FieldSelector.parse(field_selector, rtype)
        list_of = f"{rtype.group}/{rtype.plural}/{namespace or ''}"
        current_rv = self.resource_version
        if continue_token:
            token = ContinueToken.decode(continue_token)
            if token.list_of != list_of:
                raise bad_request("invalid continue token: continue key is not valid: "
                                  f"it continues {token.list_of!r}, not {list_of!r}")
            if expire_continue or self._expired(token):
                restart = ContinueToken(-1, list_of, token.start, at.isoformat(), time.time())
                raise KubeApiError(410, "Expired", CONTINUE_EXPIRED_MESSAGE, metadata={"continue": restart.encode()})
            if token.rv != -1:
                at = datetime.fromisoformat(token.at)
            snapshot_rv = current_rv if token.rv == -1 else token.rv
            keys = self._keys(rtype, namespace, at, snapshot_rv, continuing=True)
            start = bisect_right(keys, token.start)
        else:
            snapshot_rv = current_rv
            keys = self._keys(rtype, namespace, at, snapshot_rv, continuing=False)
            start = 0

        plain = not labels.requirements and not fields.key_terms and not fields.body_terms
        items, index, total = [], start, len(keys)
        if plain:
            index = total if limit <= 0 else min(total, start + limit)
            for key in keys[start:index]:
                body = entry.source.render(key[0], key[1], at)
                if body is not None:
                    items.append(body)
        else:
            while index < total and (limit <= 0 or len(items) < limit):
                key = keys[index]
                index += 1
                if not fields.matches_key(key):
                    continue
                body = entry.source.render(key[0], key[1], at)
                if body is None or not fields.matches_body(body):
                    continue
                if labels.matches((body.get("metadata") or {}).get("labels") or {}):
                    items.append(body)

        metadata: dict[str, Any] = {"resourceVersion": str(snapshot_rv)}
        remaining = total - index
        if limit > 0 and remaining > 0:
            if not truncate:
                metadata["continue"] = ContinueToken(snapshot_rv, list_of, keys[index - 1], at.isoformat(),
                                                     time.time()).encode()
                self._keep_snapshot(rtype, namespace, at, snapshot_rv, keys)
            # the real server counts what remains only when it need not filter
            if plain or truncate:
                metadata["remainingItemCount"] = remaining
        return {"apiVersion": rtype.group_version, "kind": rtype.list_kind, "metadata": metadata, "items": items}

    def _expired(self, token: ContinueToken) -> bool:
        with self._lock:
            compacted = token.rv != -1 and token.rv < self._compacted
        return compacted or time.time() - token.issued > self.continue_ttl

    # -- writes -----------------------------------------------------------------------
    def _writable(self, rtype: ResourceType, verb: str) -> WritableSource:
        source = self._entries[rtype].source
        if not isinstance(source, WritableSource):
            raise _not_supported(rtype, verb)
        return source

    def create(self, rtype: ResourceType, namespace: str, body: Any, at: datetime) -> dict:
        """POST: a new object with the metadata the server assigns (uid, creationTimestamp,
        resourceVersion); 409 AlreadyExists if the name is taken at `at`."""
        source = self._writable(rtype, "create")
        body = self._checked_body(rtype, namespace, body)
        metadata = body["metadata"]
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + "".join(
                _GENERATE_NAME_CHARS[b % len(_GENERATE_NAME_CHARS)] for b in uuid.uuid4().bytes[:5])
        name = metadata.get("name")
        if not name:
            raise KubeApiError(422, "Invalid", f'{rtype.kind} "" is invalid: metadata.name: Required value: '
                               "name or generateName is required",
                               {"kind": rtype.kind, "causes": [{"reason": "FieldValueRequired",
                                                                "message": "Required value: name or generateName is required",
                                                                "field": "metadata.name"}]})
        with self._lock:
            if self._entries[rtype].source.render(namespace, name, at) is not None:
                raise KubeApiError(409, "AlreadyExists", f'{qualified_resource(rtype)} "{name}" already exists',
                                   _details(rtype, name))
            metadata.update(uid=str(uuid.uuid4()), creationTimestamp=rfc3339(at), resourceVersion=str(self._bump()))
            source.put(TimelineObject(namespace, name, body, created=at))
        return body

    def replace(self, rtype: ResourceType, namespace: str, name: str, body: Any, at: datetime, *,
                status_only: bool = False) -> dict:
        """PUT on the object or on its status subresource."""
        source = self._writable(rtype, "update")
        body = self._checked_body(rtype, namespace, body)
        if body["metadata"].get("name", name) != name:
            raise bad_request(f"the name of the object ({body['metadata']['name']}) does not match the name on "
                              f"the URL ({name})")
        return self._write(source, rtype, namespace, name, at, lambda current: body, status_only=status_only)

    def patch(self, rtype: ResourceType, namespace: str, name: str, patch: Any, at: datetime, *,
              status_only: bool = False) -> dict:
        """PATCH as a JSON merge patch (RFC 7386). A strategic merge patch is applied the same
        way: exact for maps (metadata, labels, annotations, data), whole-list for lists."""
        source = self._writable(rtype, "patch")
        if not isinstance(patch, dict):
            raise bad_request("the body of the request must be a JSON object for a merge patch")
        return self._write(source, rtype, namespace, name, at, lambda current: merge_patch(current, patch),
                           status_only=status_only)

    def _write(self, source: WritableSource, rtype: ResourceType, namespace: str, name: str, at: datetime,
               change: Callable[[dict], dict], *, status_only: bool) -> dict:
        """Apply `change` to the live object and store the result as its next version."""
        with self._lock:
            current = self.get(rtype, namespace, name, at)
            wanted = change(copy.deepcopy(current))
            wanted_rv = (wanted.get("metadata") or {}).get("resourceVersion")
            current_meta = current.get("metadata") or {}
            if wanted_rv and wanted_rv != current_meta.get("resourceVersion"):
                raise KubeApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified_resource(rtype)} '
                                   f'"{name}": the object has been modified; please apply your changes to the '
                                   "latest version and try again", _details(rtype, name))
            if status_only:
                # the status strategy keeps everything but status from the stored object
                new = copy.deepcopy(current)
                new.pop("status", None)
                if wanted.get("status") is not None:
                    new["status"] = wanted["status"]
            else:
                new = wanted
                if self._entries[rtype].status:
                    # with a status subresource, writes to the main resource cannot change status
                    new.pop("status", None)
                    if "status" in current:
                        new["status"] = copy.deepcopy(current["status"])
            metadata = new.setdefault("metadata", {})
            for field in ("name", "namespace", "uid", "creationTimestamp"):
                if field in current_meta:
                    metadata[field] = current_meta[field]
            metadata["resourceVersion"] = str(self._bump())
            new.setdefault("apiVersion", rtype.group_version)
            new.setdefault("kind", rtype.kind)
            source.put(TimelineObject(namespace, name, new, created=at))
        return new

    def delete(self, rtype: ResourceType, namespace: str, name: str, at: datetime) -> dict:
        """DELETE: the Status the generic registry answers (the deleted Pod for pods); 404 when absent."""
        source = self._entries[rtype].source
        if not isinstance(source, DeletableSource):
            raise _not_supported(rtype, "delete")
        with self._lock:
            current = self.get(rtype, namespace, name, at)
            if not source.remove(namespace, name, at):
                raise not_found(rtype, name)
            self._bump()
        if (rtype.group, rtype.plural) in _RETURNS_DELETED_OBJECT:
            return current
        uid = (current.get("metadata") or {}).get("uid")
        return status_body(None, "", "", _details(rtype, name, **({"uid": uid} if uid else {})), success=True)

    @staticmethod
    def _checked_body(rtype: ResourceType, namespace: str, body: Any) -> dict:
        """Validate what a client sends the way the real server does, and fill apiVersion,
        kind and namespace from the URL."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        body = copy.deepcopy(body)
        if body.get("apiVersion", rtype.group_version) != rtype.group_version:
            raise bad_request(f"the API version in the data ({body['apiVersion']}) does not match the expected "
                              f"API version ({rtype.group_version})")
        if body.get("kind", rtype.kind) != rtype.kind:
            raise bad_request(f"the kind in the data ({body['kind']}) does not match the expected kind ({rtype.kind})")
        body["apiVersion"], body["kind"] = rtype.group_version, rtype.kind
        metadata = body.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request("metadata must be a JSON object")
        if rtype.namespaced:
            if metadata.get("namespace", namespace) != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------- HTTP
@dataclass(frozen=True)
class ResourcePath:
    """A resource URL taken apart; purely syntactic, so error bodies can name what was asked."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @classmethod
    def parse(cls, path: str) -> ResourcePath | None:
        segments = [unquote(s) for s in path.split("/") if s]
        if segments[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", segments[2:]
        elif len(segments) >= 3 and segments[0] == "apis":
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            return None
        namespace = None
        # /api/v1/namespaces/NAME/status is the Namespace's own subresource, not a list
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        return cls(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None,
                   rest[2] if len(rest) > 2 else None)

    def verb(self, method: str, query: dict[str, str]) -> str:
        """The RBAC verb of a request, as the authorizer derives it."""
        if method == "GET":
            if self.name:
                return "get"
            return "watch" if query.get("watch") in ("1", "true") else "list"
        if method == "DELETE":
            return "delete" if self.name else "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[match[2]]
    return (stage, -int(match[1]), -int(match[3] or 0))


class KubeApiHandler(SandboxHandler):
    """kube-apiserver's HTTP surface over a KubeStore: discovery, lists, gets and writes."""

    api_name = "kubernetes"

    @property
    def store(self) -> KubeStore:
        return self.server.state["store"]

    # -- plumbing -----------------------------------------------------------------------
    def route(self, method: str) -> None:
        if method == "HEAD":
            self.send_json(405, _method_not_allowed().body, head_only=True)
            return
        try:
            self._authenticate()
            if method == "GET" and self._discovery():
                return
            target = ResourcePath.parse(self.url_path)
            if target is None:
                raise _unknown_path()
            self._resource(method, target)
        except KubeApiError as err:
            self.send_json(err.code, err.body)

    def _authenticate(self) -> None:
        token = self.server.state.get("token")
        if token is None:
            return
        scheme, _, presented = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            raise KubeApiError(401, "Unauthorized", "Unauthorized")

    # -- errors -------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> Any:
        """Injected faults and sandbox failures, worded as kube-apiserver words them."""
        target = ResourcePath.parse(self.url_path)
        if status == 403:
            return self._forbidden(target)
        if status == 404 and target is not None and target.name:
            rtype = self.store.lookup(target.group, target.version, target.plural)
            if rtype is not None:
                return not_found(rtype, target.name).body
        if status == 500:
            return status_body(500, "InternalError", f"Internal error occurred: {message}",
                               {"causes": [{"message": message}]})
        reason, text = {
            400: ("BadRequest", message),
            401: ("Unauthorized", "Unauthorized"),
            404: ("NotFound", "the server could not find the requested resource"),
            405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
            409: ("Conflict", message),
            410: ("Expired", CONTINUE_EXPIRED_MESSAGE),
            429: ("TooManyRequests", "Too many requests, please try again later."),
            503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
            504: ("Timeout", "the server was unable to return a response in the time allotted, "
                             "but may still be processing the request"),
        }.get(status, ("", message))
        return status_body(status, reason, text, {} if status == 404 else None)

    def _forbidden(self, target: ResourcePath | None) -> dict:
        """The RBAC authorizer's 403 (apiserver/pkg/endpoints/handlers/responsewriters)."""
        user = f'User "{SERVICE_ACCOUNT_USER}"'
        if target is None:
            return status_body(403, "Forbidden", f'forbidden: {user} cannot {self.command.lower()} path '
                               f'"{self.url_path}"', {})
        verb = target.verb(self.command, self.query)
        resource = target.plural + (f"/{target.subresource}" if target.subresource else "")
        scope = f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
        reason = f'{user} cannot {verb} resource "{resource}" in API group "{target.group}" {scope}'
        qualified = f"{target.plural}.{target.group}" if target.group else target.plural
        subject = f'{qualified} "{target.name}"' if target.name else qualified
        details: dict[str, Any] = {}
        if target.name:
            details["name"] = target.name
        if target.group:
            details["group"] = target.group
        details["kind"] = target.plural
        return status_body(403, "Forbidden", f"{subject} is forbidden: {reason}", details)

    # -- discovery ------------------------------------------------------------------------
    def _discovery(self) -> bool:
        """Answer the discovery documents; False when the path is not one of them."""
        path = self.url_path.rstrip("/") or "/"
        segments = [s for s in path.split("/") if s]
        if path in ("/healthz", "/livez", "/readyz"):
            self.send_bytes(200, b"ok", "text/plain; charset=utf-8")
        elif path == "/version":
            self.send_json(200, SERVER_VERSION)
        elif path == "/api":
            host, port = self.server.server_address[:2]
            self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                 "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                 "serverAddress": f"{host}:{port}"}]})
        elif path == "/api/v1":
            self.send_json(200, {"kind": "APIResourceList", "groupVersion": "v1",
                                 "resources": self._resources("", "v1")})
        elif path == "/apis":
            self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()})
        elif len(segments) == 2 and segments[0] == "apis":
            group = next((g for g in self._groups() if g["name"] == segments[1]), None)
            if group is None:
                raise _unknown_path()
            self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", **group})
        elif len(segments) == 3 and segments[0] == "apis":
            resources = self._resources(segments[1], segments[2])
            if not resources:
                raise _unknown_path()
            self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                 "groupVersion": f"{segments[1]}/{segments[2]}", "resources": resources})
        else:
            return False
        return True

    def _groups(self) -> list[dict]:
        versions: dict[str, list[str]] = {}
        for rtype in self.store.types():
            if rtype.group and rtype.version not in versions.setdefault(rtype.group, []):
                versions[rtype.group].append(rtype.version)
        groups = []
        for group, found in versions.items():
            ordered = [{"groupVersion": f"{group}/{v}", "version": v} for v in sorted(found, key=_version_priority)]
            groups.append({"name": group, "versions": ordered, "preferredVersion": ordered[0]})
        return groups

    def _resources(self, group: str, version: str) -> list[dict]:
        resources = []
        for rtype in self.store.types():
            if (rtype.group, rtype.version) != (group, version):
                continue
            entry: dict[str, Any] = {"name": rtype.plural, "singularName": rtype.singular or rtype.kind.lower(),
                                     "namespaced": rtype.namespaced, "kind": rtype.kind, "verbs": list(rtype.verbs)}
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            resources.append(entry)
            if self.store.has_status(rtype):
                resources.append({"name": f"{rtype.plural}/status", "singularName": "",
                                  "namespaced": rtype.namespaced, "kind": rtype.kind, "verbs": _STATUS_VERBS})
        return sorted(resources, key=lambda r: r["name"])

    # -- resources ------------------------------------------------------------------------
    def _resource(self, method: str, target: ResourcePath) -> None:
        store = self.store
        rtype = store.lookup(target.group, target.version, target.plural)
        if rtype is None or (target.namespace is not None and not rtype.namespaced):
            raise _unknown_path()
        if target.name and rtype.namespaced and target.namespace is None:
            raise _unknown_path()
        if target.subresource is not None and (target.subresource != "status" or not store.has_status(rtype)):
            raise _unknown_path()
        verb = target.verb(method, self.query)
        allowed = _STATUS_VERBS if target.subresource else rtype.verbs
        if verb not in allowed:
            raise _not_supported(rtype, verb)
        namespace = target.namespace or ""
        at = self.clock.now()
        if verb == "list":
            self.send_json(200, store.list_page(
                rtype, at, namespace=target.namespace, limit=self._limit(),
                continue_token=self.query.get("continue") or None,
                label_selector=self.query.get("labelSelector", ""),
                field_selector=self.query.get("fieldSelector", ""),
                expire_continue=bool(self.fault and self.fault.expire_continue),
                truncate=bool(self.fault and self.fault.truncate)))
        elif verb == "get":
            self.send_json(200, store.get(rtype, namespace, target.name or "", at))
        elif verb == "create":
            if rtype.namespaced and target.namespace is None:
                raise _method_not_allowed()
            self.send_json(201, store.create(rtype, namespace, self._json(), at))
        elif verb == "update":
            self.send_json(200, store.replace(rtype, namespace, target.name or "", self._json(), at,
                                              status_only=target.subresource == "status"))
        elif verb == "patch":
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type not in _MERGE_PATCH_TYPES:
                raise KubeApiError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted media types "
                                   f"include: {', '.join(sorted(_MERGE_PATCH_TYPES))}")
            self.send_json(200, store.patch(rtype, namespace, target.name or "", self._json(), at,
                                            status_only=target.subresource == "status"))
        elif verb == "delete":
            self.send_json(200, store.delete(rtype, namespace, target.name or "", at))
        else:
            # watch and deletecollection: a snapshot extractor lists; nothing here needs them
            raise _not_supported(rtype, verb)

    def _limit(self) -> int:
        raw = self.query.get("limit", "")
        if not raw:
            return 0
        try:
            return max(0, int(raw))
        except ValueError:
            raise bad_request(f"limit: Invalid value: {raw!r}: must be an integer") from None

    def _json(self) -> Any:
        try:
            return json.loads(self.read_body() or b"null")
        except ValueError as exc:
            raise bad_request(f"the body of the request could not be decoded as JSON: {exc}") from None


# --------------------------------------------------------------------------- helpers
def start_kube_api(store: KubeStore, clock: SandboxClock, faults: FaultInjector, port: int = 0,
                   token: str | None = None, *, host: str = "127.0.0.1",
                   advertise_host: str | None = None) -> SandboxServer:
    """Serve `store` on 127.0.0.1 (a free port unless given); with `token`, every request
    must carry `Authorization: Bearer <token>` or gets 401."""
    return SandboxServer(KubeApiHandler, clock=clock, faults=faults, port=port, host=host,
                         advertise_host=advertise_host, store=store, token=token).start()


def write_kubeconfig(path: str | Path, server_url: str, token: str | None,
                     namespace: str = "default") -> Path:
    """A kubeconfig for the sandbox that `kubernetes.config.load_kube_config` and `oc` accept:
    plain http on loopback, a token user, `namespace` as the context's default."""
    path = Path(path)
    user: dict[str, str] = {"token": token} if token else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server_url}}],
        "users": [{"name": "reglife", "user": user}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "reglife", "namespace": namespace}}],
        "current-context": "sandbox",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
