"""The OpenShift source keeps only what the reference graph reads of each workload, and loses nothing.

`workload_projection` cuts listed workloads down page by page (memory at scale L); the reference
rows and builds built from the cut objects must be those built from the whole ones: for every
workload the sandbox serves, and for objects with every field the graph reads.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from kubernetes import config as kube_config

from registry_lifecycle.sandbox import Sandbox
from registry_lifecycle.sources.image_refs import Resolver
from registry_lifecycle.sources.kube_lister import KubeLister
from registry_lifecycle.sources.openshift import (WORKLOAD_KINDS, builds_frame, workload_projection,
                                                  workload_references)

OBSERVED = datetime(2026, 11, 1, tzinfo=timezone.utc)
REGISTRY = "image-registry.openshift-image-registry.svc:5000"
DIGEST = "sha256:" + "d" * 64
OTHER = "sha256:" + "e" * 64
RESOLVER = Resolver({("team", "app", "v1"): DIGEST}, {REGISTRY})
BIG = {"env": [{"name": f"VAR{i}", "value": "x" * 100} for i in range(50)], "volumeMounts": [{"name": "data"}],
       "resources": {"limits": {"cpu": "1"}}}


def _containers(*names: str) -> list[dict]:
    return [{"name": name, "image": f"{REGISTRY}/team/app:v1", **BIG} for name in names]


# One object per kind with every field the graph reads, and much it does not.
WORKLOADS = {
    "Pod": [{"metadata": {"namespace": "team", "name": "p", "managedFields": [{"manager": "kubelet"}]},
             "spec": {"initContainers": _containers("init"), "containers": _containers("main", "side"),
                      "ephemeralContainers": [{"name": "debug", "image": "quay.io/x/y:1"}], "volumes": [{}]},
             "status": {"phase": "Running",
                        "containerStatuses": [{"name": "main", "imageID": f"{REGISTRY}/team/app@{OTHER}",
                                               "state": {"running": {}}}]}},
            {"metadata": {"namespace": "team", "name": "done"}, "spec": {"containers": _containers("main")},
             "status": {"phase": "Succeeded"}}],
    "Deployment": [{"metadata": {"namespace": "team", "name": "d"},
                    "spec": {"replicas": 0, "template": {"spec": {"containers": _containers("main")}}}}],
    "ReplicaSet": [{"metadata": {"namespace": "team", "name": "rs"},
                    "spec": {"template": {"spec": {"containers": _containers("main")}}}}],
    "CronJob": [{"metadata": {"namespace": "team", "name": "c"},
                 "spec": {"suspend": True, "jobTemplate": {"spec": {"template": {"spec": {
                     "containers": _containers("job")}}}}}}],
    "Job": [{"metadata": {"namespace": "team", "name": "j"}, "spec": {"template": {"spec": {
        "containers": _containers("job")}}}, "status": {"succeeded": 1, "completionTime": "2026-10-01T00:00:00Z"}}],
    "DeploymentConfig": [{"metadata": {"namespace": "team", "name": "dc"},
                          "spec": {"replicas": 2, "template": {"spec": {"containers": _containers("main")}},
                                   "triggers": [{"type": "ImageChange", "imageChangeParams": {
                                       "from": {"kind": "ImageStreamTag", "name": "app:v1"},
                                       "containerNames": ["main"],
                                       "lastTriggeredImage": f"{REGISTRY}/team/app@{OTHER}"}}]}}],
    "BuildConfig": [{"metadata": {"namespace": "team", "name": "bc"},
                     "spec": {"strategy": {"type": "Docker", "dockerStrategy": {
                         "from": {"kind": "ImageStreamTag", "name": "app:v1"}, "env": BIG["env"]}},
                              "triggers": [{"type": "ImageChange", "imageChange": {
                                  "from": {"kind": "DockerImage", "name": f"{REGISTRY}/team/app:v1"}}}],
                              "source": {"git": {"uri": "https://git/x", "ref": "main"},
                                         "dockerfile": "FROM x\n" * 500}}}],
    "Build": [{"metadata": {"namespace": "team", "name": "b-1"},
               "spec": {"strategy": {"sourceStrategy": {"from": {"kind": "DockerImage", "name": "quay.io/s2i:1"}}},
                        "source": {"git": {"uri": "https://git/x", "ref": "main"}},
                        "revision": {"git": {"commit": "abc123"}}},
               "status": {"phase": "Complete", "completionTimestamp": "2026-10-01T00:00:00Z",
                          "output": {"to": {"imageDigest": DIGEST}}, "logSnippet": "..."}}],
}


def _projected(workloads: dict[str, list[dict]]) -> dict[str, list[dict]]:
    return {kind: [workload_projection(kind)(obj) for obj in objects] for kind, objects in workloads.items()}


def _rows(workloads: dict[str, list[dict]]) -> list[tuple]:
    return sorted(workload_references(workloads, RESOLVER, "c1", OBSERVED), key=repr)


def test_the_projection_keeps_every_reference_and_build_and_drops_the_rest():
    projected = _projected(WORKLOADS)
    assert _rows(projected) == _rows(WORKLOADS)
    assert len(_rows(WORKLOADS)) == 15
    assert builds_frame(projected["Build"]).equals(builds_frame(WORKLOADS["Build"]))
    assert "env" not in repr(projected) and "managedFields" not in repr(projected) and "FROM x" not in repr(projected)
    assert len(repr(projected)) < len(repr(WORKLOADS)) / 10


@pytest.fixture(scope="module")
def served_workloads():
    """Every workload kind the tiny sandbox serves, listed whole."""
    with Sandbox(seed=7, scale="tiny", days=60) as sandbox:
        api_client = kube_config.new_client_from_config(config_file=sandbox.endpoints["kubeconfig"])
        try:
            lister = KubeLister(api_client, page_size=500)
            yield {kind: lister.list_all(api_version, kind) for api_version, kind, _ in WORKLOAD_KINDS}
        finally:
            api_client.close()


def test_the_projection_changes_no_reference_the_sandbox_serves(served_workloads):
    assert sum(len(objects) for objects in served_workloads.values()) > 100
    projected = _projected(served_workloads)
    whole = _rows(served_workloads)
    assert len(whole) > 100
    assert _rows(projected) == whole
    assert builds_frame(projected["Build"]).equals(builds_frame(served_workloads["Build"]))
