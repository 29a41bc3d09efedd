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
from typing import Iterable, Iterator

import pandas as pd
from kubernetes.client import ApiClient

from ..datasets import BUILDS, IMAGE_OBJECTS, NAMESPACES, REFERENCES, TAGS
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
OPENSHIFT_ONLY = {"apps.openshift.io/v1", "build.openshift.io/v1"}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass
class OpenShiftSnapshot:
    """Everything read from the cluster in one extraction, plus the derived frames."""

    observed_at: datetime
    cluster: str
    namespaces: list[dict]
    images: list[dict]
    imagestreams: list[dict]
    workloads: dict[str, list[dict]]          # kind -> objects
    missing_kinds: list[str] = field(default_factory=list)   # API groups this cluster does not serve

    def tags_frame(self) -> pd.DataFrame:
        return tags_frame(self.imagestreams)

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
        return image_objects_frame(self.images, self.internal_hosts())

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
    workloads: dict[str, list[dict]] = {}
    missing: list[str] = []
    for api_version, kind, _ in WORKLOAD_KINDS:
        if api_version in OPENSHIFT_ONLY and not lister.has(api_version, kind):
            # A plain Kubernetes cluster has no DeploymentConfigs or Builds; that is not an error.
            missing.append(f"{kind}.{api_version}")
            continue
        workloads[kind] = lister.list_all(api_version, kind)
    snapshot = OpenShiftSnapshot(
        observed_at=observed_at, cluster=cluster,
        namespaces=lister.list_all("v1", "Namespace"),
        images=lister.list_all("image.openshift.io/v1", "Image"),
        imagestreams=lister.list_all("image.openshift.io/v1", "ImageStream"),
        workloads=workloads, missing_kinds=missing)
    log.info("openshift: %d images, %d image streams, %d workload objects in %d requests",
             len(snapshot.images), len(snapshot.imagestreams),
             sum(len(v) for v in workloads.values()), lister.stats.requests)
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
    rows = []
    for image in images:
        digest = (image.get("metadata") or {}).get("name") or ""
        image_ref = image.get("dockerImageReference") or ""
        spec = parse_pull_spec(image_ref)
        repository = None
        if (spec is not None and spec.registry in internal_hosts and spec.namespace
                and "/" not in spec.namespace):
            repository = spec.repository
        rows.append((digest, repository, image_ref, *_described_content(image)))
    frame = pd.DataFrame(rows, columns=IMAGE_OBJECTS.schema.names)
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
            json.dumps({str(k): str(v) for k, v in labels.items()}, sort_keys=True, separators=(",", ":"))
            if isinstance(labels, dict) else None,
            json.dumps([[layer.get("name"), layer.get("size"), layer.get("mediaType")] for layer in layers],
                       separators=(",", ":")) if isinstance(layers, list) else None,
            json.dumps([[child.get("digest"), child.get("mediaType"), child.get("manifestSize")]
                        for child in manifests], separators=(",", ":")) if isinstance(manifests, list) else None)


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
                for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
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
