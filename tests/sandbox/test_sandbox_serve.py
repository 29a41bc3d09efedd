"""`reglife sandbox serve` as a user runs it: a separate process, one JSON line of endpoints,
and real clients (kubernetes DynamicClient, httpx for the registry and Prometheus) against it."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from kubernetes import config as kube_config
from kubernetes.dynamic import DynamicClient

from registry_lifecycle.sources.kube_lister import KubeLister

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sandbox")
    process = subprocess.Popen(
        [sys.executable, "-m", "registry_lifecycle.cli", "sandbox", "serve", "--port", "0", "--days", "60",
         "--until", "2026-11-27", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        yield json.loads(line)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def registry_client(endpoints: dict, scope: str) -> httpx.Client:
    """A client holding a bearer token for `scope`, obtained through the WWW-Authenticate challenge."""
    credentials = json.loads(Path(endpoints["registry_credentials"]).read_text())
    client = httpx.Client(base_url=endpoints["registry"], timeout=30)
    challenge = httpx.get(endpoints["registry"] + "/v2/")
    assert challenge.status_code == 401
    realm = challenge.headers["WWW-Authenticate"].split('realm="', 1)[1].split('"', 1)[0]
    token = httpx.get(realm, params={"service": "sandbox-registry", "scope": scope},
                       auth=(credentials["username"], credentials["password"]))
    assert token.status_code == 200
    client.headers["Authorization"] = f"Bearer {token.json()['token']}"
    return client


def test_serve_prints_one_json_line_of_endpoints(served):
    assert set(served) >= {"kubernetes", "kubeconfig", "registry", "prometheus", "pulls"}
    assert Path(served["kubeconfig"]).is_file()
    assert any(Path(served["pulls"]).glob("dt=*/events-*.ndjson"))
    assert "password" not in json.dumps(served), "credentials go to a 0600 file, never to stdout"
    assert oct(Path(served["registry_credentials"]).stat().st_mode)[-3:] == "600"


def test_dynamic_client_pages_imagestreams_images_and_deployments(served):
    api_client = kube_config.new_client_from_config(config_file=served["kubeconfig"])
    lister = KubeLister(api_client, page_size=7)
    streams = lister.list_all("image.openshift.io/v1", "ImageStream")
    images = lister.list_all("image.openshift.io/v1", "Image")
    deployments = lister.list_all("apps/v1", "Deployment")
    assert streams and images and deployments
    assert lister.stats.requests >= len(images) // 7, "lists must have been paged"
    names = [image["metadata"]["name"] for image in images]
    assert len(names) == len(set(names)), "paging must return each object exactly once"
    first_tag = streams[0]["status"]["tags"][0]["items"][0]
    assert set(first_tag) == {"created", "dockerImageReference", "image", "generation"}
    image = next(i for i in images if i["dockerImageLayers"])
    assert {"name", "size", "mediaType"} == set(image["dockerImageLayers"][0])
    assert image["dockerImageMetadata"]["Size"] >= sum(layer["size"] for layer in image["dockerImageLayers"])


def test_discovery_lists_openshift_groups(served):
    api_client = kube_config.new_client_from_config(config_file=served["kubeconfig"])
    dynamic = DynamicClient(api_client, cache_file=str(Path(served["kubeconfig"]).with_name("discovery.json")))
    for api_version, kind in [("apps.openshift.io/v1", "DeploymentConfig"), ("build.openshift.io/v1", "Build"),
                              ("batch/v1", "CronJob"), ("v1", "ReplicationController")]:
        assert dynamic.resources.get(api_version=api_version, kind=kind).kind == kind


def test_registry_serves_catalog_tags_manifests_and_blobs_with_valid_digests(served):
    with registry_client(served, "registry:catalog:*") as catalog_client:
        repositories, url = [], "/v2/_catalog?n=5"
        while url:
            page = catalog_client.get(url)
            repositories += page.json()["repositories"]
            url = page.links.get("next", {}).get("url")
    assert len(repositories) == len(set(repositories)) > 5, "catalog paging must return each name once"
    repository = next(r for r in repositories if "-prod/" in r)
    with registry_client(served, f"repository:{repository}:pull") as client:
        listing = client.get(f"/v2/{repository}/tags/list")
        assert listing.status_code == 200, listing.text
        tags = listing.json()["tags"]
        manifest = client.get(f"/v2/{repository}/manifests/{tags[0]}", headers={"Accept": ACCEPT})
        assert manifest.status_code == 200
        digest = manifest.headers["Docker-Content-Digest"]
        assert digest == "sha256:" + hashlib.sha256(manifest.content).hexdigest()
        document = manifest.json()
        for descriptor in ([document["config"]] + document["layers"])[:2]:
            blob = client.get(f"/v2/{repository}/blobs/{descriptor['digest']}")
            assert len(blob.content) == descriptor["size"]
            assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == descriptor["digest"]


def test_prometheus_answers_query_range_for_the_registry_volume(served):
    query = 'kubelet_volume_stats_used_bytes{persistentvolumeclaim="image-registry-storage"}'
    response = httpx.get(f"{served['prometheus']}/api/v1/query_range",
                         params={"query": query, "start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z",
                                 "step": "1h"})
    body = response.json()
    assert body["status"] == "success"
    assert len(body["data"]["result"][0]["values"]) == 25


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "registry_lifecycle.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "sandbox" in result.stdout and "demo" in result.stdout


def test_every_day_of_the_pull_archive_has_a_file_per_cluster(served):
    """An idle day still has its (empty) files: a missing file means a broken archive, not zero pulls."""
    partitions = sorted(Path(served["pulls"]).glob("dt=*"))
    assert len(partitions) >= 60
    clusters = [{path.name for path in partition.glob("events-*.ndjson*")} for partition in partitions]
    assert all(found == clusters[0] for found in clusters) and clusters[0]
