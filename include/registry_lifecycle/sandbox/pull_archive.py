"""The registry's pull-event archive, as a notification endpoint would have stored it.

The registry (CNCF distribution, and OpenShift's image-registry built on it) reports every
manifest GET and PUT to its notification endpoints as an envelope `{"events": [...]}`
(distribution's `notifications/event.go`). Pull counts exist nowhere else: the registry
API has no "last pulled" field. Production archives those envelopes one per line (NDJSON),
partitioned by day, one file per cluster: `<root>/dt=YYYY-MM-DD/events-<cluster>.ndjson[.gz]`.

The sandbox only writes that archive, from the scenario's daily pull counts; its one reader
is `sources.pulls`, the extract step's source. The events are real-shaped, with what makes
real ones awkward: events of several registry replicas interleaved, envelopes of many
unrelated events, pulls by tag and by digest, scanners and mirrors beside the kubelet.
Everything is derived from a seed and the record's content, so the same inputs always give
byte-identical files.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .model import PullRecord

REGISTRY_HOST = "image-registry.openshift-image-registry.svc:5000"
REGISTRY_REPLICAS = 2
NODES_PER_CLUSTER = 12
BUILDER_USER_AGENT = "Buildah/1.33.7"

# (user agent, share of pulls) when a record does not say who pulled: mostly the kubelet
# through CRI-O, then scanners, mirroring, developers and builds.
DEFAULT_USER_AGENTS: tuple[tuple[str, float], ...] = (
    ("cri-o/1.29.5 go/go1.21.9 os/linux arch/amd64", 0.80),
    ("trivy/0.50.1 go-containerregistry/v0.19.1", 0.08),
    ("skopeo/1.14.2", 0.05),
    ("docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/5.14.0-284.el9.x86_64 os/linux arch/amd64 "
     "UpstreamClient(Docker-Client/24.0.7 \\(linux\\))", 0.04),
    (BUILDER_USER_AGENT, 0.03),
)

# Relative pull activity per UTC hour: deployments, CI and people work in the daytime.
_HOURLY_ACTIVITY = np.array([1, 1, 1, 1, 1, 1, 1.5, 2.5, 4, 5, 5, 5, 4, 5, 5, 5, 4, 3, 2, 1.5, 1.5, 1, 1, 1])
HOURLY_WEIGHTS = _HOURLY_ACTIVITY / _HOURLY_ACTIVITY.sum()

_CLUSTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NS_PER_HOUR = 3_600 * 10 ** 9
_EPOCH = date(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class PushRecord:
    """One manifest push (a build's output, a mirror copy) at an exact instant."""

    at: datetime
    repository: str
    digest: str
    tag: str | None
    cluster: str
    media_type: str
    size: int
    user_agent: str = BUILDER_USER_AGENT


# =========================================================================== events
@dataclass
class _EventBlock:
    """Events of one record, generated together; rendered one by one only when written."""

    sort_key: tuple[str, ...]
    action: str
    method: str
    target_json: str
    namespace: str
    timestamps_ns: np.ndarray
    ids: bytes                          # 16 bytes per event id, then 16 per request id
    agents: list[str]
    agent_index: np.ndarray
    client_addresses: list[str]
    replica: np.ndarray


def _rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator keyed by the seed and the content, so that records do not depend on each other's order."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in (seed, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def _uuid4_bytes(raw: bytes) -> np.ndarray:
    """Random bytes shaped into RFC 4122 version-4 UUIDs, one row per id."""
    ids = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16).copy()
    ids[:, 6] = (ids[:, 6] & 0x0F) | 0x40
    ids[:, 8] = (ids[:, 8] & 0x3F) | 0x80
    return ids


def _target_json(repository: str, digest: str, tag: str | None, media_type: str, size: int) -> str:
    """`target` as distribution marshals it: Descriptor fields, then length/repository/url/tag, empties omitted."""
    target: dict[str, object] = {"mediaType": media_type}
    if size:
        target["size"] = size
    target["digest"] = digest
    if size:
        target["length"] = size
    target["repository"] = repository
    target["url"] = f"https://{REGISTRY_HOST}/v2/{repository}/manifests/{digest}"
    if tag:
        target["tag"] = tag
    return json.dumps(target, separators=(",", ":"))


def _cluster_network(seed: int, cluster: str) -> tuple[list[str], tuple[int, int]]:
    """The cluster's node addresses (where the kubelet pulls from) and its pod network's first two octets."""
    rng = _rng(seed, "network", cluster)
    second, third = (int(x) for x in rng.integers(1, 127, size=2))
    nodes = [f"10.{second}.{third}.{10 + i}" for i in range(NODES_PER_CLUSTER)]
    return nodes, (10, 128 + int(rng.integers(0, 4)))


def _client_addresses(rng: np.random.Generator, agent_names: list[str], agent_index: np.ndarray,
                      nodes: list[str], pod_network: tuple[int, int]) -> list[str]:
    """`request.addr` (ip:port): the kubelet pulls from a node, everything else from a pod."""
    n = agent_index.size
    nodes_used = rng.integers(0, max(len(nodes), 1), size=n).tolist()
    pod_hosts = rng.integers(2, 2 ** 16 - 1, size=n).tolist()
    ports = rng.integers(32768, 61000, size=n).tolist()
    from_node = [bool(nodes) and name.startswith("cri-o/") for name in agent_names]
    prefix = f"{pod_network[0]}.{pod_network[1]}"
    return [f"{nodes[node]}:{port}" if from_node[agent] else f"{prefix}.{pod >> 8}.{pod & 0xFF}:{port}"
            for agent, node, pod, port in zip(agent_index.tolist(), nodes_used, pod_hosts, ports, strict=True)]


def _actor(user_agent: str, namespace: str) -> str:
    """Who the registry's authorizer saw: the service account whose pull secret the client used."""
    if user_agent.startswith("trivy/"):
        return "system:serviceaccount:trivy-system:trivy"
    if user_agent.startswith("skopeo/"):
        return "system:serviceaccount:registry-mirror:mirror"
    if user_agent.startswith("Buildah/"):
        return f"system:serviceaccount:{namespace}:builder"
    return f"system:serviceaccount:{namespace}:default"


def _as_utc(when: datetime) -> datetime:
    """Naive datetimes are UTC, as everywhere in the sandbox."""
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _check_cluster(cluster: str) -> None:
    if not _CLUSTER_RE.fullmatch(cluster):
        raise ValueError(f"cluster name {cluster!r} cannot name an archive file")


def _pull_blocks(records: Iterable[PullRecord], seed: int) -> dict[str, list[_EventBlock]]:
    """Pull events per cluster; each record becomes `pulls` GETs of its manifest during its day."""
    blocks: dict[str, list[_EventBlock]] = {}
    occurrences: dict[tuple[str, ...], int] = {}
    networks: dict[str, tuple[list[str], tuple[int, int]]] = {}
    agent_names = [name for name, _ in DEFAULT_USER_AGENTS]
    agent_shares = np.array([share for _, share in DEFAULT_USER_AGENTS])
    agent_shares = agent_shares / agent_shares.sum()
    for record in records:
        _check_cluster(record.cluster)
        if record.pulls < 0:
            raise ValueError(f"negative pull count in {record}")
        day_start_ns = int(datetime.combine(date.fromisoformat(record.day), datetime.min.time(),
                                            timezone.utc).timestamp()) * 10 ** 9
        key = ("pull", record.day, record.cluster, record.repository, record.digest, record.tag or "")
        occurrence = occurrences.get(key, 0)
        occurrences[key] = occurrence + 1
        blocks.setdefault(record.cluster, [])
        if record.pulls == 0:
            continue
        n = record.pulls
        rng = _rng(seed, *key, occurrence)
        hours = rng.choice(24, size=n, p=HOURLY_WEIGHTS)
        timestamps = day_start_ns + hours.astype(np.int64) * _NS_PER_HOUR + rng.integers(0, _NS_PER_HOUR, size=n)
        if record.user_agents:
            agents = list(record.user_agents)
            agent_index = rng.integers(0, len(agents), size=n)
        else:
            agents = agent_names
            agent_index = rng.choice(len(agents), size=n, p=agent_shares)
        if record.cluster not in networks:
            networks[record.cluster] = _cluster_network(seed, record.cluster)
        nodes, pod_network = networks[record.cluster]
        blocks[record.cluster].append(_EventBlock(
            sort_key=(*key, str(occurrence)), action="pull", method="GET",
            target_json=_target_json(record.repository, record.digest, record.tag, record.media_type, record.size),
            namespace=record.repository.split("/")[0], timestamps_ns=timestamps,
            ids=_uuid4_bytes(rng.bytes(32 * n)).tobytes(), agents=agents, agent_index=agent_index,
            client_addresses=_client_addresses(rng, agents, agent_index, nodes, pod_network),
            replica=rng.integers(0, REGISTRY_REPLICAS, size=n)))
    return blocks


def _push_blocks(pushes: Iterable[PushRecord], seed: int) -> dict[str, list[_EventBlock]]:
    """Push events per cluster: one PUT of the manifest at its exact time, from a build pod."""
    blocks: dict[str, list[_EventBlock]] = {}
    occurrences: dict[tuple[str, ...], int] = {}
    for push in pushes:
        _check_cluster(push.cluster)
        at = _as_utc(push.at)
        at_ns = (at - _EPOCH_UTC) // timedelta(microseconds=1) * 1000
        key = ("push", at.isoformat(), push.cluster, push.repository, push.digest, push.tag or "")
        occurrence = occurrences.get(key, 0)
        occurrences[key] = occurrence + 1
        rng = _rng(seed, *key, occurrence)
        _, pod_network = _cluster_network(seed, push.cluster)
        agent_index = np.zeros(1, dtype=np.int64)
        blocks.setdefault(push.cluster, []).append(_EventBlock(
            sort_key=(*key, str(occurrence)), action="push", method="PUT",
            target_json=_target_json(push.repository, push.digest, push.tag, push.media_type, push.size),
            namespace=push.repository.split("/")[0], timestamps_ns=np.array([at_ns], dtype=np.int64),
            ids=_uuid4_bytes(rng.bytes(32)).tobytes(), agents=[push.user_agent], agent_index=agent_index,
            client_addresses=_client_addresses(rng, [push.user_agent], agent_index, [], pod_network),
            replica=rng.integers(0, REGISTRY_REPLICAS, size=1)))
    return blocks


@lru_cache(maxsize=64)
def _day_prefix(days_since_epoch: int) -> str:
    return (_EPOCH + timedelta(days=days_since_epoch)).isoformat() + "T"


@lru_cache(maxsize=1)
def _clock_faces() -> list[str]:
    """"HH:MM:SS" for every second of a day, built once: formatting millions of timestamps is then a lookup."""
    return [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


def _rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds without trailing zeros, none when whole."""
    seconds, fraction = divmod(ns, 10 ** 9)
    days, second_of_day = divmod(seconds, 86_400)
    text = _day_prefix(days) + _clock_faces()[second_of_day]
    return f"{text}.{fraction:09d}".rstrip("0") + "Z" if fraction else text + "Z"


def _uuid_text(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:32]}"


def _replicas(seed: int, cluster: str) -> list[tuple[str, str]]:
    """(source.addr, source.instanceID) of the cluster's registry pods; the id changes with each restart."""
    rng = _rng(seed, "replicas", cluster)
    alphabet = list("bcdfghjklmnpqrstvwxz2456789")          # what Kubernetes uses for generated names
    replica_set = "".join(rng.choice(alphabet, size=10))
    replicas = []
    for _ in range(REGISTRY_REPLICAS):
        pod = f"image-registry-{replica_set}-{''.join(rng.choice(alphabet, size=5))}"
        replicas.append((f"{pod}:5000", _uuid_text(_uuid4_bytes(rng.bytes(16)).tobytes().hex())))
    return replicas


def _envelopes(cluster: str, blocks: list[_EventBlock], seed: int, batch: int) -> Iterator[bytes]:
    """One cluster's events as envelopes: each replica batches its own events in time order, and
    envelopes appear in the order they were sent (when their last event happened)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    blocks = sorted(blocks, key=lambda b: b.sort_key)
    if not blocks:
        return
    block_of = np.concatenate([np.full(b.timestamps_ns.size, i, dtype=np.int64) for i, b in enumerate(blocks)])
    position = np.concatenate([np.arange(b.timestamps_ns.size, dtype=np.int64) for b in blocks])
    timestamps = np.concatenate([b.timestamps_ns for b in blocks])
    replica = np.concatenate([b.replica for b in blocks])
    if timestamps.size == 0:
        return
    # Everything is put in time order once, so that rendering walks memory front to back.
    order = np.lexsort((position, block_of, timestamps))
    replica = replica[order]
    stamps = timestamps[order].tolist()
    block_list = block_of[order].tolist()
    agent_list = np.concatenate([b.agent_index for b in blocks])[order].tolist()
    all_addresses = [address for b in blocks for address in b.client_addresses]
    addresses = [all_addresses[i] for i in order.tolist()]
    ids = np.frombuffer(b"".join(b.ids for b in blocks), dtype=np.uint8).reshape(-1, 32)[order]
    hex_ids = ids.tobytes().hex()
    chunks: list[tuple[int, int, list[int]]] = []
    for r in range(REGISTRY_REPLICAS):
        mine = np.flatnonzero(replica == r)
        for start in range(0, mine.size, batch):
            chunk = mine[start:start + batch]
            chunks.append((stamps[chunk[-1]], r, chunk.tolist()))
    chunks.sort(key=lambda c: (c[0], c[1]))
    host = json.dumps(REGISTRY_HOST)
    heads = [f'"action":"{b.action}","target":{b.target_json},"request":{{"id":"' for b in blocks]
    methods = [f'","host":{host},"method":"{b.method}","useragent":' for b in blocks]
    tails = [[f'{json.dumps(agent)}}},"actor":{{"name":{json.dumps(_actor(agent, b.namespace))}}}'
              for agent in b.agents] for b in blocks]
    sources = [f',"source":{{"addr":{json.dumps(addr)},"instanceID":"{instance}"}}}}'
               for addr, instance in _replicas(seed, cluster)]
    for _, r, chunk in chunks:
        source = sources[r]
        events = []
        for g in chunk:
            b = block_list[g]
            both_ids = hex_ids[64 * g:64 * g + 64]
            events.append(f'{{"id":"{_uuid_text(both_ids[:32])}","timestamp":"{_rfc3339_nano(stamps[g])}",'
                          f'{heads[b]}{_uuid_text(both_ids[32:])}","addr":"{addresses[g]}{methods[b]}'
                          f'{tails[b][agent_list[g]]}{source}')
        yield ('{"events":[' + ",".join(events) + "]}\n").encode()


def _single_day(records: list[PullRecord]) -> None:
    days = {r.day for r in records}
    if len(days) > 1:
        raise ValueError(f"records of one day expected, got {sorted(days)}")


def envelopes_for_day(records: Iterable[PullRecord], *, seed: int, batch: int = 50) -> Iterator[bytes]:
    """NDJSON lines (with their newline) of notification envelopes for one day's pull records.

    Each record becomes `record.pulls` pull events of its manifest spread over its day, more
    in working hours. Envelopes hold up to `batch` events of one cluster and one registry
    replica; clusters follow each other in name order.
    """
    records = list(records)
    _single_day(records)
    blocks = _pull_blocks(records, seed)
    for cluster in sorted(blocks):
        yield from _envelopes(cluster, blocks[cluster], seed, batch)


def push_envelopes(pushes: Iterable[PushRecord], *, seed: int, batch: int = 50) -> Iterator[bytes]:
    """NDJSON lines of envelopes with one `push` event per pushed manifest, per cluster in name order."""
    blocks = _push_blocks(pushes, seed)
    for cluster in sorted(blocks):
        yield from _envelopes(cluster, blocks[cluster], seed, batch)


# =========================================================================== files
def partition_dir(root: Path, day: date) -> Path:
    return Path(root) / f"dt={day.isoformat()}"


def write_archive(root: Path, day: date, records: Iterable[PullRecord], *, seed: int,
                  pushes: Iterable[PushRecord] = (), compress: bool = False, batch: int = 50) -> list[Path]:
    """Write one day's partition, one file per cluster, and return the files in cluster order.

    Each file is written to a temporary name and renamed, so a reader never sees half a file;
    the same inputs give the same bytes (gzip with no name and mtime 0), so re-running a day
    is a no-op. Writing a cluster's file removes its other variant (`.ndjson` vs `.ndjson.gz`),
    which would otherwise count the day's pulls twice.
    """
    records = list(records)
    pushes = list(pushes)
    for record in records:
        if record.day != day.isoformat():
            raise ValueError(f"record of {record.day} given for the partition of {day}: {record}")
    for push in pushes:
        if _as_utc(push.at).date() != day:
            raise ValueError(f"push at {push.at.isoformat()} given for the partition of {day}")
    pull_blocks = _pull_blocks(records, seed)
    push_blocks = _push_blocks(pushes, seed)
    directory = partition_dir(root, day)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for cluster in sorted(set(pull_blocks) | set(push_blocks)):
        blocks = pull_blocks.get(cluster, []) + push_blocks.get(cluster, [])
        path = directory / (f"events-{cluster}.ndjson" + (".gz" if compress else ""))
        _write_atomically(path, _envelopes(cluster, blocks, seed, batch), compress)
        other = path.with_name(f"events-{cluster}.ndjson" + ("" if compress else ".gz"))
        other.unlink(missing_ok=True)
        written.append(path)
    return written


def _write_atomically(path: Path, lines: Iterable[bytes], compress: bool) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "wb") as raw:
            if compress:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as zipped:
                    zipped.writelines(lines)
            else:
                raw.writelines(lines)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
