"""The OpenShift source: image streams, images, builds and every workload that can hold an image.

The reference graph is spelled out in one place, `workload_references`, after
`oc adm prune images` (openshift/oc pkg/cli/admin/prune/imageprune/prune.go) and beyond it:
pods in any phase; the pod templates of Deployments, DeploymentConfigs (and their ImageChange
triggers), StatefulSets, DaemonSets, Jobs and CronJobs; every ReplicaSet and
ReplicationController kept for rollback, including those scaled to 0; Builds and BuildConfigs
(their `from` images). A reference that names a tag is resolved to the digest it points at now.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

import pandas as pd
from kubernetes.client import ApiClient

from ..datasets import BUILDS, IMAGE_OBJECTS, NAMESPACES, REFERENCES, TAGS, labels_json
from .image_refs import DIGEST, Resolver, parse_pull_spec
from .kube_lister import KubeLister

log = logging.getLogger(__name__)

# (apiVersion, kind, reference source) for every workload kind that can hold an image.
WORKLOAD_KINDS: tuple[tuple[str, str, str], ...] = (
    ("v1", "Pod", "pod"),
    ("apps/v1", "Deployment", "template"),
    ("apps/v1", "ReplicaSet", "replicaset-history"),
    ("apps/v1", "StatefulSet", "template"),
    ("apps/v1", "DaemonSet", "template"),
    ("apps.openshift.io/v1", "DeploymentConfig", "template"),
    ("v1", "ReplicationController", "replicaset-history"),
    ("batch/v1", "Job", "template"),
    ("batch/v1", "CronJob", "cronjob"),
    ("build.openshift.io/v1", "Build", "build"),
    ("build.openshift.io/v1", "BuildConfig", "buildconfig"),
)
# json.dumps builds a new encoder on every call with non-default options: a third of its cost
# when called twice for each of half a million Image objects. Same output as json.dumps.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
OPENSHIFT_ONLY = {"apps.openshift.io/v1", "build.openshift.io/v1"}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
CONTAINER_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")


@dataclass
class OpenShiftSnapshot:
    """Everything read from the cluster in one extraction, plus the derived frames."""

    observed_at: datetime
    cluster: str
    namespaces: list[dict]
    # `image_object_row` of every Image object, made page by page while listing: at scale L the
    # Image objects as dicts were most of the extraction's memory.
    image_rows: list[tuple]
    imagestreams: list[dict]
    workloads: dict[str, list[dict]]          # kind -> objects
    missing_kinds: list[str] = field(default_factory=list)   # API groups this cluster does not serve
    _tags: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)

    def tags_frame(self) -> pd.DataFrame:
        # Built once: the resolver needs the same frame, and at scale L it is a million rows.
        if self._tags is None:
            self._tags = tags_frame(self.imagestreams)
        return self._tags.copy(deep=False)     # copy-on-write: a caller changing it changes only its own

    def resolver(self) -> Resolver:
        tags = self.tags_frame()
        current = tags[tags.revision == 0]
        current_tags = {(ns, stream, tag): digest for ns, stream, tag, digest in
                        zip(current.namespace, current.imagestream, current.tag, current.digest)}
        return Resolver(current_tags, self.internal_hosts())

    def internal_hosts(self) -> set[str]:
        """The hosts that mean this cluster's integrated registry, as the ImageStreams name it
        (`status.dockerImageRepository` is the service, `publicDockerImageRepository` the route)."""
        hosts = set()
        for stream in self.imagestreams:
            for key in ("dockerImageRepository", "publicDockerImageRepository"):
                value = (stream.get("status") or {}).get(key)
                if value:
                    hosts.add(value.split("/", 1)[0])
        return hosts

    def image_objects_frame(self) -> pd.DataFrame:
        return image_objects_frame_from_rows(self.image_rows, self.internal_hosts())

    def references_frame(self) -> pd.DataFrame:
        rows = list(workload_references(self.workloads, self.resolver(), self.cluster, self.observed_at))
        return pd.DataFrame(rows, columns=REFERENCES.schema.names)

    def builds_frame(self) -> pd.DataFrame:
        return builds_frame(self.workloads.get("Build", []))

    def namespaces_frame(self) -> pd.DataFrame:
        rows = [(ns["metadata"]["name"], json.dumps(ns["metadata"].get("labels") or {}, sort_keys=True),
                 json.dumps(ns["metadata"].get("annotations") or {}, sort_keys=True)) for ns in self.namespaces]
        return pd.DataFrame(rows, columns=NAMESPACES.schema.names)


def extract_openshift(api_client: ApiClient, *, cluster: str, page_size: int = 500, max_retries: int = 4,
                      observed_at: datetime | None = None) -> tuple[OpenShiftSnapshot, KubeLister]:
    """Read every collection completely, or raise: a partial snapshot is never returned."""
    lister = KubeLister(api_client, page_size=page_size, max_retries=max_retries)
    observed_at = observed_at or datetime.now(timezone.utc)
    kinds: list[tuple[str, str]] = []
    missing: list[str] = []
    for api_version, kind, _ in WORKLOAD_KINDS:
        if api_version in OPENSHIFT_ONLY and not lister.has(api_version, kind):
            # A plain Kubernetes cluster has no DeploymentConfigs or Builds; that is not an error.
            missing.append(f"{kind}.{api_version}")
            continue
        kinds.append((api_version, kind))
    # Images first: the longest list runs beside all the others.
    images, namespaces, imagestreams, *listed = lister.list_many(
        [("image.openshift.io/v1", "Image", image_object_row), ("v1", "Namespace", None),
         ("image.openshift.io/v1", "ImageStream", None)]
        + [(api_version, kind, workload_projection(kind)) for api_version, kind in kinds])
    snapshot = OpenShiftSnapshot(
        observed_at=observed_at, cluster=cluster, namespaces=namespaces, image_rows=images,
        imagestreams=imagestreams, workloads={kind: objects for (_, kind), objects in zip(kinds, listed)},
        missing_kinds=missing)
    log.info("openshift: %d images, %d image streams, %d workload objects in %d requests",
             len(snapshot.image_rows), len(snapshot.imagestreams),
             sum(len(v) for v in snapshot.workloads.values()), lister.stats.requests)
    return snapshot, lister


# ------------------------------------------------------------------------------ tags
def tags_frame(imagestreams: Iterable[dict]) -> pd.DataFrame:
    """status.tags[].items[] of every ImageStream; items are newest first, so revision 0 is current."""
    rows = []
    for stream in imagestreams:
        meta = stream["metadata"]
        for named in (stream.get("status") or {}).get("tags") or []:
            for revision, item in enumerate(named.get("items") or []):
                rows.append((meta["namespace"], meta["name"], named["tag"], revision, item["image"],
                             _timestamp(item.get("created"))))
    frame = pd.DataFrame(rows, columns=TAGS.schema.names)
    frame["revision"] = frame["revision"].astype("int32")
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


# ------------------------------------------------------------------------------ image objects
def image_objects_frame(images: Iterable[dict], internal_hosts: set[str]) -> pd.DataFrame:
    """One row per Image object: its digest (the object's name), `dockerImageReference` as written,
    and the repository of the integrated registry that stores it, or None when the reference points
    at another registry (an image imported by reference is not stored here).

    Image objects no ImageStream tag revision names ("orphans") are still in the registry and are
    exactly what `oc adm prune images` removes; the registry step fetches them by digest.
    """
    return image_objects_frame_from_rows([image_object_row(image) for image in images], internal_hosts)


def image_object_row(image: dict) -> tuple:
    """(digest, dockerImageReference, *described content) of one Image object: all the
    image_objects dataset needs from it but the repository, which depends on the cluster's hosts."""
    return ((image.get("metadata") or {}).get("name") or "", image.get("dockerImageReference") or "",
            *_described_content(image))


def image_objects_frame_from_rows(rows: Iterable[tuple], internal_hosts: set[str]) -> pd.DataFrame:
    """The image_objects frame from `image_object_row`s."""
    repositories: dict[str, str | None] = {}     # pull spec without digest -> repository: few distinct

    def stored_repository(image_ref: str) -> str | None:
        spec = parse_pull_spec(image_ref)
        if (spec is not None and spec.registry in internal_hosts and spec.namespace
                and "/" not in spec.namespace):
            return spec.repository
        return None

    def repository_of(image_ref: str) -> str | None:
        name, at, digest = image_ref.partition("@")
        if not at or not DIGEST.match(digest) or name != name.strip() or "://" in name:
            return stored_repository(image_ref)
        # Every Image object of a repository names it the same way but for the digest.
        if name not in repositories:
            repositories[name] = stored_repository(image_ref)
        return repositories[name]

    frame = pd.DataFrame([(digest, repository_of(image_ref), image_ref, *described)
                          for digest, image_ref, *described in rows], columns=IMAGE_OBJECTS.schema.names)
    frame["size_bytes"] = frame["size_bytes"].astype("Int64")
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def _described_content(image: dict) -> tuple:
    """(media_type, config_digest, size_bytes, created_at, architecture, labels, layers, manifests) as
    the Image object states them; None for what it leaves out (an imported image may carry no metadata)."""
    metadata = image.get("dockerImageMetadata") or {}
    layers = image.get("dockerImageLayers")
    manifests = image.get("dockerImageManifests")
    size = metadata.get("Size")
    labels = (metadata.get("Config") or {}).get("Labels")
    return (image.get("dockerImageManifestMediaType") or None,
            metadata.get("Id") if DIGEST.match(metadata.get("Id") or "") else None,
            size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
            _timestamp(metadata.get("Created")),
            metadata.get("Architecture") or None,
            labels_json({str(k): str(v) for k, v in labels.items()}) if isinstance(labels, dict) else None,
            _compact_json([[layer.get("name"), layer.get("size"), layer.get("mediaType")] for layer in layers])
            if isinstance(layers, list) else None,
            _compact_json([[child.get("digest"), child.get("mediaType"), child.get("manifestSize")]
                           for child in manifests]) if isinstance(manifests, list) else None)


# ------------------------------------------------------------------------------ references
def _pod_spec(kind: str, obj: dict) -> dict | None:
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return (spec.get("template") or {}).get("spec")


def _is_active(kind: str, obj: dict) -> bool:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Pod":
        return status.get("phase") in ("Pending", "Running", "Unknown", None)
    if kind in ("ReplicaSet", "ReplicationController", "Deployment", "DeploymentConfig", "StatefulSet"):
        return (spec.get("replicas") if spec.get("replicas") is not None else 1) > 0
    if kind == "CronJob":
        return not spec.get("suspend", False)
    if kind == "Job":
        return not status.get("completionTime") and not status.get("succeeded")
    if kind == "Build":
        return status.get("phase") in ("New", "Pending", "Running")
    return True


def _strategy_from(spec: dict) -> dict | None:
    strategy = spec.get("strategy") or {}
    for key in ("dockerStrategy", "sourceStrategy", "customStrategy"):
        if strategy.get(key) and strategy[key].get("from"):
            return strategy[key]["from"]
    return None


def workload_projection(kind: str) -> Callable[[dict], dict]:
    """A `kind` object cut down to what `workload_references`, `_is_active` and `builds_frame` read,
    in the same shape, applied page by page while listing. The workloads are kept until the tags
    they are resolved against are known, and a real pod spec (env, volumes, probes, managed
    fields) is many times what the graph reads; the sandbox's are lean, so at scale L this saved
    little. Anything these functions come to read must be kept here too
    (tests/sources/test_openshift.py compares the two)."""
    status_keys = ("phase", "completionTime", "succeeded", "completionTimestamp", "output")

    def containers(pod_spec: dict) -> dict:
        return {name: [{"name": c.get("name"), "image": c.get("image")} for c in pod_spec[name] or [] if c]
                for name in CONTAINER_LISTS if name in pod_spec}

    def project(obj: dict) -> dict:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        slim_spec = {key: spec[key] for key in ("replicas", "suspend", "triggers", "revision") if key in spec}
        if "source" in spec:            # a Build's source may carry a whole inline Dockerfile
            slim_spec["source"] = {"git": (spec["source"] or {}).get("git")}
        if "strategy" in spec:
            slim_spec["strategy"] = {key: {"from": value["from"]} for key, value in (spec["strategy"] or {}).items()
                                     if isinstance(value, dict) and value.get("from")}
        pod_spec = _pod_spec(kind, obj)
        if pod_spec:
            slim_pod = containers(pod_spec)
            if kind == "Pod":
                slim_spec.update(slim_pod)
            elif kind == "CronJob":
                slim_spec["jobTemplate"] = {"spec": {"template": {"spec": slim_pod}}}
            else:
                slim_spec["template"] = {"spec": slim_pod}
        slim_status = {key: status[key] for key in status_keys if key in status}
        for key in CONTAINER_STATUS_LISTS:
            if key in status:
                slim_status[key] = [{"name": c.get("name"), "imageID": c.get("imageID")} for c in status[key] or [] if c]
        return {"metadata": {key: meta[key] for key in ("namespace", "name") if key in meta},
                "spec": slim_spec, "status": slim_status}

    return project


def workload_references(workloads: dict[str, list[dict]], resolver: Resolver, cluster: str,
                        observed_at: datetime) -> Iterator[tuple]:
    """One row per (workload, container, source) naming an image — the whole reference graph."""
    source_of = {kind: source for _, kind, source in WORKLOAD_KINDS}
    for kind, objects in workloads.items():
        source = source_of[kind]
        for obj in objects:
            meta = obj.get("metadata") or {}
            namespace, name = meta.get("namespace", ""), meta.get("name", "")
            active = _is_active(kind, obj)

            def row(container: str, image_ref: str, digest: str | None, row_source: str = source) -> tuple:
                return (cluster, namespace, kind, name, container, image_ref, digest, row_source, active, observed_at)

            if kind in ("Build", "BuildConfig"):
                spec = obj.get("spec") or {}
                image_ref, digest = resolver.object_ref(_strategy_from(spec), namespace)
                if image_ref:
                    yield row("(build-from)", image_ref, digest)
                for trigger in spec.get("triggers") or []:
                    change = trigger.get("imageChange") or {}
                    if change.get("from"):
                        image_ref, digest = resolver.object_ref(change["from"], namespace)
                        yield row("(trigger)", image_ref, digest)
                continue
            pod_spec = _pod_spec(kind, obj) or {}
            image_ids = {}
            if kind == "Pod":
                status = obj.get("status") or {}
                for key in CONTAINER_STATUS_LISTS:
                    for container_status in status.get(key) or []:
                        spec = parse_pull_spec(container_status.get("imageID") or "")
                        if spec is not None and spec.digest:
                            image_ids[container_status.get("name")] = spec.digest
            for list_name in CONTAINER_LISTS:
                for container in pod_spec.get(list_name) or []:
                    image_ref = container.get("image") or ""
                    if not image_ref:
                        continue
                    digest = image_ids.get(container.get("name")) or resolver.pull_spec(image_ref)
                    yield row(container.get("name", ""), image_ref, digest)
            if kind == "DeploymentConfig":
                for trigger in (obj.get("spec") or {}).get("triggers") or []:
                    params = trigger.get("imageChangeParams") or {}
                    if params.get("from"):
                        image_ref, digest = resolver.object_ref(params["from"], namespace)
                        for container in params.get("containerNames") or ["(trigger)"]:
                            yield row(container, image_ref, digest, "trigger")
                        last = params.get("lastTriggeredImage")
                        if last:
                            yield row("(last-triggered)", last, resolver.pull_spec(last), "trigger")


# ------------------------------------------------------------------------------ builds
def builds_frame(builds: Iterable[dict]) -> pd.DataFrame:
    rows = []
    for build in builds:
        meta, spec, status = build.get("metadata") or {}, build.get("spec") or {}, build.get("status") or {}
        git = (spec.get("source") or {}).get("git") or {}
        revision = ((spec.get("revision") or {}).get("git") or {})
        output = ((status.get("output") or {}).get("to") or {}).get("imageDigest")
        rows.append((meta.get("namespace", ""), meta.get("name", ""),
                     output if output and DIGEST.match(output) else None,
                     git.get("uri"), revision.get("commit"), git.get("ref"),
                     _timestamp(status.get("completionTimestamp"))))
    frame = pd.DataFrame(rows, columns=BUILDS.schema.names)
    frame["completed_at"] = pd.to_datetime(frame["completed_at"], utc=True)
    return frame


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
