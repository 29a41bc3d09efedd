"""The sandbox's Kubernetes API, driven by the real `kubernetes` DynamicClient over HTTP:
what a snapshot extractor sees from it must be what it would see from kube-apiserver."""
from __future__ import annotations

import json
import math
import time
from datetime import datetime, timedelta

import pytest
from kubernetes import config as kube_config
from kubernetes.client import Configuration
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InternalServerError,
    MethodNotAllowedError,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
)
from kubernetes.dynamic.resource import ResourceInstance

from registry_lifecycle.sandbox.faults import Fault
from registry_lifecycle.sandbox.kube_api import (
    CONTINUE_EXPIRED_MESSAGE,
    SERVICE_ACCOUNT_USER,
    KubeStore,
    write_kubeconfig,
)
from registry_lifecycle.sandbox.model import ResourceType, TimelineObject, TimelineSource

from .conftest import T0, Kube, dynamic_client

RW = ("create", "delete", "get", "list", "patch", "update", "watch")
PODS = ResourceType("", "v1", "Pod", "pods", True, RW, ("po",), "pod")
CONFIG_MAPS = ResourceType("", "v1", "ConfigMap", "configmaps", True, RW, ("cm",), "configmap")
DEPLOYMENTS = ResourceType("apps", "v1", "Deployment", "deployments", True, ("get", "list", "watch"), ("deploy",))
DEPLOYMENT_CONFIGS = ResourceType("apps.openshift.io", "v1", "DeploymentConfig", "deploymentconfigs", True,
                                  ("get", "list", "watch"), ("dc",))
IMAGES = ResourceType("image.openshift.io", "v1", "Image", "images", False, ("delete", "get", "list", "watch"))
IMAGE_STREAMS = ResourceType("image.openshift.io", "v1", "ImageStream", "imagestreams", True, RW, ("is",))


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def k8s(rtype: ResourceType, namespace: str, name: str, created: datetime, removed: datetime | None = None,
        labels: dict[str, str] | None = None, **fields: object) -> TimelineObject:
    metadata: dict = {"name": name, "uid": f"uid-{namespace}-{name}", "resourceVersion": "1",
                      "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = labels
    body = {"apiVersion": rtype.group_version, "kind": rtype.kind, "metadata": metadata, **fields}
    return TimelineObject(namespace, name, body, created, removed)


class ReadOnlySource:
    """An ObjectSource without put/remove: the API must refuse writes, not lose them."""

    def __init__(self, inner: TimelineSource) -> None:
        self.inner = inner

    def keys(self, at: datetime, namespace: str | None = None) -> list[tuple[str, str]]:
        return self.inner.keys(at, namespace)

    def render(self, namespace: str, name: str, at: datetime) -> dict | None:
        return self.inner.render(namespace, name, at)


class CountingSource:
    """n generated objects; counts keys() calls, the O(n) scan a paged list must not repeat per page."""

    def __init__(self, n: int) -> None:
        self._keys = [("ns", f"image-{i:06d}") for i in range(n)]
        self.keys_calls = 0

    def keys(self, at: datetime, namespace: str | None = None) -> list[tuple[str, str]]:
        self.keys_calls += 1
        return list(self._keys)

    def render(self, namespace: str, name: str, at: datetime) -> dict | None:
        return {"metadata": {"namespace": namespace, "name": name}}


def small_cluster() -> KubeStore:
    """Two namespaces of pods (one pod deleted on day 12, one created on day 15), image
    streams with a status, cluster-scoped images, a Deployment, a DeploymentConfig and an
    empty writable ConfigMap resource."""
    store = KubeStore()
    store.register(PODS, TimelineSource([
        k8s(PODS, "team-a", "web-1", day(1), labels={"app": "web", "tier": "front"}, status={"phase": "Running"}),
        k8s(PODS, "team-a", "web-2", day(2), labels={"app": "web", "tier": "front"}, status={"phase": "Running"}),
        k8s(PODS, "team-a", "gone-1", day(3), removed=day(12), labels={"app": "web"}, status={"phase": "Running"}),
        k8s(PODS, "team-b", "batch-1", day(1), labels={"app": "batch", "tier": "back"}, status={"phase": "Succeeded"}),
        k8s(PODS, "team-b", "debug", day(4), status={"phase": "Running"}),
        k8s(PODS, "team-b", "late-1", day(15), labels={"app": "batch"}, status={"phase": "Pending"}),
    ]))
    store.register(IMAGE_STREAMS, TimelineSource([
        k8s(IMAGE_STREAMS, "team-a", "web", day(1), spec={"tags": []},
            status={"dockerImageRepository": "image-registry.openshift-image-registry.svc:5000/team-a/web",
                    "tags": [{"tag": "latest", "items": [{"image": "sha256:aaa"}]}]}),
    ]))
    store.register(IMAGES, ReadOnlySource(TimelineSource([
        k8s(IMAGES, "", "sha256:aaa", day(1), dockerImageReference="registry/team-a/web@sha256:aaa"),
        k8s(IMAGES, "", "sha256:bbb", day(2), dockerImageReference="registry/team-a/web@sha256:bbb"),
    ])))
    store.register(DEPLOYMENTS, TimelineSource([k8s(DEPLOYMENTS, "team-a", "web", day(1), spec={"replicas": 2})]))
    store.register(DEPLOYMENT_CONFIGS, TimelineSource([k8s(DEPLOYMENT_CONFIGS, "team-b", "legacy", day(1))]))
    store.register(CONFIG_MAPS, TimelineSource())
    return store


def many_pods(n: int) -> KubeStore:
    store = KubeStore()
    store.register(PODS, TimelineSource(k8s(PODS, f"ns-{i % 7}", f"pod-{i:05d}", day(1)) for i in range(n)))
    return store


@pytest.fixture
def kube(serve) -> Kube:
    return serve(small_cluster())


def names(result: ResourceInstance) -> list[str]:
    return [item.metadata.name for item in result.items]


def status_of(err: Exception) -> dict:
    return json.loads(err.body)


# --------------------------------------------------------------------------- discovery
def test_discovery_resolves_openshift_apps_and_core_kinds(kube: Kube):
    """The DynamicClient finds every kind the extractor reads, with the right scope."""
    resources = kube.client.resources
    stream = resources.get(api_version="image.openshift.io/v1", kind="ImageStream")
    image = resources.get(api_version="image.openshift.io/v1", kind="Image")
    assert (stream.name, stream.namespaced) == ("imagestreams", True)
    assert (image.name, image.namespaced) == ("images", False)
    assert resources.get(api_version="apps/v1", kind="Deployment").name == "deployments"
    assert resources.get(api_version="apps.openshift.io/v1", kind="DeploymentConfig").short_names == ["dc"]
    assert resources.get(api_version="v1", kind="Pod").namespaced is True


def test_discovery_lists_groups_with_preferred_version_and_status_subresources(kube: Kube):
    """/apis and the group's resource list have the shape of the real documents."""
    groups = json.loads(kube.client.request("GET", "/apis", serialize=False).data)
    image_group = next(g for g in groups["groups"] if g["name"] == "image.openshift.io")
    assert image_group["preferredVersion"] == {"groupVersion": "image.openshift.io/v1", "version": "v1"}
    listing = json.loads(kube.client.request("GET", "/apis/image.openshift.io/v1", serialize=False).data)
    by_name = {r["name"]: r for r in listing["resources"]}
    assert by_name["imagestreams/status"] == {"name": "imagestreams/status", "singularName": "", "namespaced": True,
                                              "kind": "ImageStream", "verbs": ["get", "patch", "update"]}
    assert "images/status" not in by_name
    assert "status" in kube.client.resources.get(api_version="image.openshift.io/v1", kind="ImageStream").subresources


# --------------------------------------------------------------------------- lists
def test_paging_returns_every_object_once_in_ceil_n_over_limit_requests(serve):
    """limit/continue paging collects each object exactly once, one request per page."""
    n, limit = 1234, 100
    kube = serve(many_pods(n))
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    before, seen, token = kube.requests(), [], None
    while True:
        page = pods.get(limit=limit, _continue=token)
        seen += [(item.metadata.namespace, item.metadata.name) for item in page.items]
        token = page.metadata["continue"]
        if not token:
            break
        assert page.metadata.remainingItemCount == n - len(seen)
    assert kube.requests() - before == math.ceil(n / limit)
    assert len(seen) == len(set(seen)) == n
    assert seen == sorted(seen)


def test_large_list_pages_from_one_key_snapshot():
    """200,000 objects page at limit=500 with one keys() scan for the whole list, not one per page."""
    n = 200_000
    source = CountingSource(n)
    store = KubeStore()
    store.register(PODS, source)
    seen, token, pages = [], None, 0
    while True:
        page = store.list_page(PODS, day(10), limit=500, continue_token=token)
        seen += [item["metadata"]["name"] for item in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
    assert (len(seen), len(set(seen)), pages) == (n, n, n // 500)
    assert source.keys_calls == 1


def test_objects_outside_the_clock_window_are_not_listed(kube: Kube, clock):
    """The API shows the cluster as of the clock: not yet created and already deleted objects are absent."""
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    assert "late-1" not in names(pods.get()) and "gone-1" in names(pods.get())
    clock.set(day(20))
    assert "late-1" in names(pods.get()) and "gone-1" not in names(pods.get())


def test_namespaced_list_and_all_namespaces_list(kube: Kube):
    """A namespace path lists that namespace; the cluster path lists all, sorted by (namespace, name)."""
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    assert names(pods.get(namespace="team-b")) == ["batch-1", "debug"]
    everything = pods.get()
    assert [(p.metadata.namespace, p.metadata.name) for p in everything.items] == [
        ("team-a", "gone-1"), ("team-a", "web-1"), ("team-a", "web-2"), ("team-b", "batch-1"), ("team-b", "debug")]
    assert (everything.kind, everything.apiVersion) == ("PodList", "v1")
    assert everything.metadata.resourceVersion == str(kube.store.resource_version)


def test_cluster_scoped_images_list_without_namespace(kube: Kube):
    images = kube.client.resources.get(api_version="image.openshift.io/v1", kind="Image")
    assert names(images.get()) == ["sha256:aaa", "sha256:bbb"]
    assert images.get(name="sha256:bbb").dockerImageReference == "registry/team-a/web@sha256:bbb"


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", ["gone-1", "web-1", "web-2"]),
    ("app==batch", ["batch-1"]),
    ("app!=web", ["batch-1", "debug"]),
    ("app in (batch, web),tier", ["web-1", "web-2", "batch-1"]),
    ("tier notin (front)", ["gone-1", "batch-1", "debug"]),
    ("tier", ["web-1", "web-2", "batch-1"]),
    ("!app", ["debug"]),
    ("app=web,tier=front", ["web-1", "web-2"]),
])
def test_label_selector(kube: Kube, selector: str, expected: list[str]):
    """labelSelector has apimachinery's semantics: `!=` and `notin` match objects without the label."""
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    assert names(pods.get(label_selector=selector)) == expected


def test_label_selector_pages_through_matches_only(kube: Kube):
    """With a selector, each page holds up to `limit` matches and no remainingItemCount, as on a real server."""
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    first = pods.get(label_selector="app=web", limit=2)
    assert names(first) == ["gone-1", "web-1"] and first.metadata.remainingItemCount is None
    rest = pods.get(label_selector="app=web", limit=2, _continue=first.metadata["continue"])
    assert names(rest) == ["web-2"]


@pytest.mark.parametrize(("selector", "expected"), [
    ("metadata.name=web-1", ["web-1"]),
    ("metadata.namespace!=team-a", ["batch-1", "debug"]),
    ("status.phase!=Succeeded,metadata.namespace=team-b", ["debug"]),
])
def test_field_selector(kube: Kube, selector: str, expected: list[str]):
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    assert names(pods.get(field_selector=selector)) == expected


def test_unsupported_field_selector_is_bad_request(kube: Kube):
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    with pytest.raises(BadRequestError) as err:
        pods.get(field_selector="spec.nothing=x")
    assert status_of(err.value)["message"] == "field label not supported: spec.nothing"


def test_unknown_resource_is_not_found(kube: Kube):
    with pytest.raises(NotFoundError) as err:
        kube.client.request("GET", "/apis/image.openshift.io/v1/nosuchthings")
    assert status_of(err.value) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                    "message": "the server could not find the requested resource",
                                    "reason": "NotFound", "details": {}, "code": 404}


# --------------------------------------------------------------------------- continue tokens
def first_page(kube: Kube):
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    page = pods.get(limit=2)
    assert page.metadata["continue"], "the list must need more than one page"
    return pods, page


def assert_expired(err: GoneError) -> dict:
    body = status_of(err)
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "Expired", 410)
    assert body["message"] == CONTINUE_EXPIRED_MESSAGE
    return body


def test_continue_token_expires_after_compaction(kube: Kube):
    """A token older than the last compaction is 410 Expired; the Status carries a token to continue inconsistently."""
    pods, page = first_page(kube)
    kube.store.compact()
    with pytest.raises(GoneError) as err:
        pods.get(limit=2, _continue=page.metadata["continue"])
    restart = assert_expired(err.value)["metadata"]["continue"]
    rest = pods.get(limit=100, _continue=restart)
    assert names(page) + names(rest) == ["gone-1", "web-1", "web-2", "batch-1", "debug"]


def test_continue_token_expires_after_ttl(kube: Kube):
    pods, page = first_page(kube)
    kube.store.continue_ttl = 0.01
    time.sleep(0.05)
    with pytest.raises(GoneError) as err:
        pods.get(limit=2, _continue=page.metadata["continue"])
    assert_expired(err.value)


def test_continue_token_expires_on_fault(kube: Kube, faults):
    pods, page = first_page(kube)
    faults.add(Fault(api="kubernetes", path=r"^/api/v1/pods$", query="continue=", expire_continue=True))
    with pytest.raises(GoneError) as err:
        pods.get(limit=2, _continue=page.metadata["continue"])
    assert_expired(err.value)


def test_malformed_continue_token_is_bad_request(kube: Kube):
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    with pytest.raises(BadRequestError) as err:
        pods.get(limit=2, _continue="not a token")
    assert status_of(err.value)["reason"] == "BadRequest"


def test_continuation_shows_the_instant_of_its_first_page(kube: Kube, clock):
    """Moving the clock between pages does not mix two instants into one list."""
    pods, page = first_page(kube)
    clock.set(day(20))
    rest = pods.get(limit=100, _continue=page.metadata["continue"])
    assert names(page) + names(rest) == ["gone-1", "web-1", "web-2", "batch-1", "debug"]


# --------------------------------------------------------------------------- faults
def test_forbidden_fault_is_a_status_naming_the_resource(kube: Kube, faults):
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    faults.add(Fault(api="kubernetes", path=r"^/api/v1/pods$", status=403))
    with pytest.raises(ForbiddenError) as err:
        pods.get()
    assert status_of(err.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'pods is forbidden: User "{SERVICE_ACCOUNT_USER}" cannot list resource "pods" '
                   'in API group "" at the cluster scope',
        "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403}


def test_forbidden_fault_in_a_namespace_names_group_and_namespace(kube: Kube, faults):
    streams = kube.client.resources.get(api_version="image.openshift.io/v1", kind="ImageStream")
    faults.add(Fault(api="kubernetes", path="/imagestreams", status=403))
    with pytest.raises(ForbiddenError) as err:
        streams.get(namespace="team-a")
    assert status_of(err.value)["message"] == (
        f'imagestreams.image.openshift.io is forbidden: User "{SERVICE_ACCOUNT_USER}" cannot list resource '
        '"imagestreams" in API group "image.openshift.io" in the namespace "team-a"')


def test_server_error_faults_surface_with_their_status(kube: Kube, faults):
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    faults.add(Fault(api="kubernetes", path=r"^/api/v1/pods$", status=500))
    faults.add(Fault(api="kubernetes", path=r"^/api/v1/pods$", status=429))
    with pytest.raises(InternalServerError) as err:
        pods.get()
    assert (err.value.status, status_of(err.value)["reason"]) == (500, "InternalError")
    with pytest.raises(TooManyRequestsError) as err:
        pods.get()
    assert (err.value.status, status_of(err.value)["reason"]) == (429, "TooManyRequests")
    assert names(pods.get()), "the faults fire once, then the API recovers"


def test_429_with_retry_after_is_retried_inside_the_client(kube: Kube, faults):
    """urllib3 under the kubernetes client honours Retry-After on 429/503 (up to 3 retries):
    a caller never sees a 429 that recovers within them."""
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    faults.add(Fault(api="kubernetes", path=r"^/api/v1/pods$", status=429, retry_after=1))
    before = kube.requests()
    assert names(pods.get())
    assert kube.requests() - before == 2


def test_truncated_page_is_recognisable(kube: Kube, faults):
    """A truncated page has no continue token although remainingItemCount says items remain."""
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    faults.add(Fault(api="kubernetes", path=r"^/api/v1/pods$", truncate=True))
    page = pods.get(limit=2)
    assert len(page.items) == 2
    assert not page.metadata["continue"]
    assert page.metadata.remainingItemCount == 3


def test_malformed_body_is_not_returned_as_data(kube: Kube, faults):
    """The DynamicClient swallows a JSON decode error and returns the raw text: never a list."""
    pods = kube.client.resources.get(api_version="v1", kind="Pod")
    faults.add(Fault(api="kubernetes", path=r"^/api/v1/pods$", malformed=True))
    result = pods.get()
    assert not isinstance(result, ResourceInstance)
    with pytest.raises(json.JSONDecodeError):
        json.loads(result)


# --------------------------------------------------------------------------- writes
def test_configmap_create_patch_delete(kube: Kube, clock):
    """ConfigMaps are written as on a real cluster: server-set metadata, merge patches,
    409 on a duplicate name, a Status on delete, 404 on deleting twice."""
    cms = kube.client.resources.get(api_version="v1", kind="ConfigMap")
    rv_before = kube.store.resource_version
    created = cms.create(namespace="team-a", body={"metadata": {"name": "plan"}, "data": {"batch": "1"}})
    assert created.metadata.uid and created.metadata.namespace == "team-a"
    assert created.metadata.creationTimestamp == clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert int(created.metadata.resourceVersion) > rv_before

    with pytest.raises(ConflictError) as err:
        cms.create(namespace="team-a", body={"metadata": {"name": "plan"}})
    assert status_of(err.value)["reason"] == "AlreadyExists"

    cms.patch(namespace="team-a", name="plan", body={"metadata": {"labels": {"stage": "approved"}},
                                                     "data": {"batch": None, "state": "done"}})
    cms.patch(namespace="team-a", name="plan", body={"metadata": {"annotations": {"by": "ops"}}},
              content_type="application/merge-patch+json")
    stored = cms.get(namespace="team-a", name="plan")
    assert stored.data.to_dict() == {"state": "done"}
    assert (stored.metadata.labels.stage, stored.metadata.annotations.by) == ("approved", "ops")
    assert stored.metadata.uid == created.metadata.uid

    deleted = cms.delete(namespace="team-a", name="plan")
    assert (deleted.kind, deleted.status, deleted.details.name) == ("Status", "Success", "plan")
    with pytest.raises(NotFoundError) as err:
        cms.delete(namespace="team-a", name="plan")
    assert status_of(err.value)["message"] == 'configmaps "plan" not found'


def test_replace_with_a_stale_resource_version_conflicts(kube: Kube):
    cms = kube.client.resources.get(api_version="v1", kind="ConfigMap")
    created = cms.create(namespace="team-a", body={"metadata": {"name": "plan"}, "data": {"a": "1"}}).to_dict()
    cms.patch(namespace="team-a", name="plan", body={"data": {"a": "2"}})
    with pytest.raises(ConflictError) as err:
        cms.replace(namespace="team-a", body=created)
    assert status_of(err.value)["reason"] == "Conflict"


def test_status_subresource_write_replaces_status_only(kube: Kube):
    """PUT on imagestreams/NAME/status stores the new status and keeps the stored spec."""
    streams = kube.client.resources.get(api_version="image.openshift.io/v1", kind="ImageStream")
    body = streams.get(namespace="team-a", name="web").to_dict()
    body["status"]["tags"] = []
    body["spec"]["tags"] = [{"name": "ignored"}]
    streams.status.replace(namespace="team-a", body=body)
    stored = streams.get(namespace="team-a", name="web")
    assert stored.status.tags == [] and stored.spec.tags == []


def test_writes_to_a_read_only_source_are_method_not_allowed(kube: Kube):
    images = kube.client.resources.get(api_version="image.openshift.io/v1", kind="Image")
    with pytest.raises(MethodNotAllowedError) as err:
        images.delete(name="sha256:aaa")
    assert status_of(err.value)["message"] == 'delete is not supported on resources of kind "images.image.openshift.io"'
    assert "sha256:aaa" in names(images.get())


# --------------------------------------------------------------------------- auth and kubeconfig
def test_bearer_token_is_required_when_configured(serve, tmp_path):
    kube = serve(small_cluster(), token="s3cret")
    with pytest.raises(UnauthorizedError) as err:
        dynamic_client(kube.server.url, tmp_path / "anonymous.json")
    assert status_of(err.value) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    assert names(kube.client.resources.get(api_version="v1", kind="Pod").get(namespace="team-b"))


def test_kubeconfig_round_trip(serve, tmp_path):
    """write_kubeconfig produces what load_kube_config and new_client_from_config accept."""
    kube = serve(small_cluster(), token="s3cret")
    path = write_kubeconfig(tmp_path / "kube" / "config", kube.server.url, "s3cret", namespace="team-a")
    cfg = Configuration()
    kube_config.load_kube_config(config_file=str(path), client_configuration=cfg)
    assert cfg.host == kube.server.url
    _, active = kube_config.list_kube_config_contexts(config_file=str(path))
    assert active["context"]["namespace"] == "team-a"
    client = DynamicClient(kube_config.new_client_from_config(config_file=str(path)),
                           cache_file=str(tmp_path / "kubeconfig-discovery.json"))
    pods = client.resources.get(api_version="v1", kind="Pod")
    assert names(pods.get(namespace="team-a")) == ["gone-1", "web-1", "web-2"]
