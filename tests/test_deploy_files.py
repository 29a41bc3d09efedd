"""The deployment files say what they promise: least-privilege RBAC, a policy ConfigMap that
is the tested policy, and a local stack whose services, connections and secrets are wired
the way DESIGN.md describes.

None of these files can be applied on a test machine (no cluster, no Docker engine), so they
are checked as data: a wrong verb in a ClusterRole or a dangling `depends_on` is caught here
rather than by an operator at 2 a.m.
"""
from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
MAKEFILE = REPO / "Makefile"
POLICY_FILE = REPO / "include" / "policies" / "default.yaml"
SOURCES = REPO / "include" / "registry_lifecycle" / "sources"

READ_VERBS = {"get", "list", "watch"}

# What extraction reads: the reference graph of DESIGN.md's safety invariant 2, plus the
# registry's own objects and the namespaces whose policy applies. (apiGroup, resource).
REFERENCE_GRAPH = {
    ("image.openshift.io", "images"),
    ("image.openshift.io", "imagestreams"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps.openshift.io", "deploymentconfigs"),
    ("", "pods"),
    ("", "replicationcontrollers"),
    ("", "namespaces"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("build.openshift.io", "builds"),
    ("build.openshift.io", "buildconfigs"),
}

# What executing an approved GC plan needs, and only that.
PRUNER_GRANTS = {
    ("image.openshift.io", "images"): {"delete"},
    ("image.openshift.io", "imagestreams"): {"get", "update"},
    ("image.openshift.io", "imagestreams/status"): {"get", "update"},
    ("", "events"): {"create"},
}


# --------------------------------------------------------------------------- manifests
def load_manifests() -> list[dict]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["__file__"] = path.name
                docs.append(doc)
    return docs


MANIFESTS = load_manifests()


def find(kind: str, name: str, namespace: str | None = None) -> dict:
    matches = [
        doc for doc in MANIFESTS
        if doc["kind"] == kind and doc["metadata"]["name"] == name
        and (namespace is None or doc["metadata"].get("namespace") == namespace)
    ]
    assert len(matches) == 1, f"expected exactly one {kind} {namespace or ''}/{name} in deploy/, found {len(matches)}"
    return matches[0]


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, merged over the role's rules."""
    merged: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                merged.setdefault((group, resource), set()).update(rule.get("verbs", []))
    return merged


def roles() -> list[dict]:
    return [doc for doc in MANIFESTS if doc["kind"] in ("Role", "ClusterRole")]


def bindings() -> list[dict]:
    return [doc for doc in MANIFESTS if doc["kind"] in ("RoleBinding", "ClusterRoleBinding")]


def guess_resource(kind: str) -> str:
    """Kubernetes' own kind -> resource rule (apimachinery meta.UnsafeGuessKindToResource)."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


_API_VERSION = re.compile(r"^(v\d\w*|[a-z0-9.-]+\.[a-z]+/v\d\w*|apps/v\d\w*|batch/v\d\w*)$")
_KIND = re.compile(r"^[A-Z][A-Za-z]+$")


def extractor_resources() -> set[tuple[str, str]]:
    """(apiGroup, resource) of every (apiVersion, Kind) pair written in the extraction code.

    The sources name what they list as ("apps/v1", "Deployment") pairs, in tables or in
    calls; any two adjacent string literals of that shape count.
    """
    found = set()
    for path in sorted(SOURCES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            items = node.elts if isinstance(node, (ast.Tuple, ast.List)) else node.args if isinstance(node, ast.Call) else []
            strings = [item.value if isinstance(item, ast.Constant) and isinstance(item.value, str) else None for item in items]
            for api_version, kind in itertools.pairwise(strings):
                if api_version and kind and _API_VERSION.match(api_version) and _KIND.match(kind):
                    group = api_version.rpartition("/")[0]
                    found.add((group, guess_resource(kind)))
    return found


def test_every_manifest_is_well_formed():
    assert MANIFESTS, "deploy/ holds no manifests"
    for doc in MANIFESTS:
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), doc


def test_no_wildcards_anywhere():
    """`*` in a verb, resource or group silently grows with every new API on the cluster."""
    for role in roles():
        for rule in role.get("rules", []):
            for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                for value in rule.get(field, []):
                    assert "*" not in value, f"{role['kind']} {role['metadata']['name']}: {field} contains {value!r}"


def test_reader_role_is_read_only():
    reader = find("ClusterRole", "registry-lifecycle-reader")
    for resource, verbs in grants(reader).items():
        assert verbs <= READ_VERBS, f"reader grants {sorted(verbs - READ_VERBS)} on {resource}"


def test_reader_role_reads_exactly_the_reference_graph():
    """Everything the safety invariant needs (a missing kind is a Forbidden list, which aborts
    the run), and nothing more (least privilege)."""
    reader = grants(find("ClusterRole", "registry-lifecycle-reader"))
    assert set(reader) == REFERENCE_GRAPH, (
        f"missing: {sorted(REFERENCE_GRAPH - set(reader))}, extra: {sorted(set(reader) - REFERENCE_GRAPH)}"
    )
    for resource, verbs in reader.items():
        assert verbs == READ_VERBS, f"{resource}: {sorted(verbs)}"


def test_every_kind_the_extractor_lists_is_granted_to_the_reader():
    listed = extractor_resources()
    assert listed, f"found no (apiVersion, Kind) pairs in {SOURCES}: update extractor_resources() to the new shape"
    reader = grants(find("ClusterRole", "registry-lifecycle-reader"))
    missing = sorted(resource for resource in listed if "list" not in reader.get(resource, set()))
    assert not missing, f"the extractor lists {missing}, which deploy/rbac.yaml does not grant: the run would be Forbidden"


def test_pruner_has_only_what_deletion_needs():
    pruner = grants(find("ClusterRole", "registry-lifecycle-pruner"))
    assert pruner == PRUNER_GRANTS


def test_pruner_cannot_list_or_read_secrets():
    pruner = grants(find("ClusterRole", "registry-lifecycle-pruner"))
    assert not any(resource.startswith("secrets") for _, resource in pruner)
    assert not any({"list", "watch"} & verbs for verbs in pruner.values())


def test_no_role_touches_secrets():
    for role in roles():
        for _, resource in grants(role):
            assert not resource.startswith("secrets"), f"{role['metadata']['name']} grants access to secrets"


def test_pruner_is_bound_only_by_the_gc_execution_file():
    """A cluster that applies only rbac.yaml can plan and report, never delete."""
    pruner_bindings = [b for b in bindings() if b["roleRef"]["name"] == "registry-lifecycle-pruner"]
    assert [b["__file__"] for b in pruner_bindings] == ["rbac-gc-execution.yaml"]
    assert pruner_bindings[0]["subjects"] == [
        {"kind": "ServiceAccount", "name": "reglife", "namespace": "registry-lifecycle"}
    ]


def test_only_approvers_can_write_approval_records():
    """The service account reads approvals but can never approve its own plan."""
    namespace = "registry-lifecycle-approvals"
    find("Namespace", namespace)
    writers, readers = [], []
    for binding in bindings():
        if binding["metadata"].get("namespace") != namespace:
            continue
        role = find(binding["roleRef"]["kind"], binding["roleRef"]["name"],
                    namespace if binding["roleRef"]["kind"] == "Role" else None)
        verbs = grants(role).get(("", "configmaps"), set())
        (writers if verbs - READ_VERBS else readers).append(binding)
    assert [subject for b in writers for subject in b["subjects"]] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "registry-approvers"}
    ]
    assert {"create", "update", "patch"} <= grants(find("Role", "approval-recorder", namespace))[("", "configmaps")]
    assert [subject for b in readers for subject in b["subjects"]] == [
        {"kind": "ServiceAccount", "name": "reglife", "namespace": "registry-lifecycle"}
    ]
    # And no cluster-wide grant can write ConfigMaps in that namespace either.
    for role in roles():
        if role["kind"] == "ClusterRole":
            assert ("", "configmaps") not in grants(role), role["metadata"]["name"]


def test_policy_configmap_is_the_default_policy_verbatim():
    configmap = find("ConfigMap", "registry-lifecycle-policy", "registry-lifecycle")
    assert configmap["data"]["policy.yaml"] == POLICY_FILE.read_text(), (
        "deploy/policy-configmap.yaml differs from include/policies/default.yaml: "
        "run `make deploy/policy-configmap.yaml` and commit the result"
    )


# --------------------------------------------------------------------------- docker-compose
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
AIRFLOW_SERVICES = sorted(name for name in SERVICES if name.startswith("airflow-"))
ONE_SHOT = {
    target
    for service in SERVICES.values()
    for target, dependency in (service.get("depends_on") or {}).items()
    if dependency.get("condition") == "service_completed_successfully"
}

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's variable substitution with nothing set: every ${VAR} must carry a default,
    so `docker compose up` works on a machine with no .env file."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        assert match.group("default") is not None, f"${{{match.group('name')}}} has no default"
        return match.group("default")

    return _INTERPOLATION.sub(substitute, value)


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    return {key: interpolate(str(value)) for key, value in env.items()}


def test_the_stack_has_the_official_airflow_3_services():
    for name in ("postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                 "airflow-worker", "airflow-triggerer", "airflow-init", "sandbox", "minio", "minio-init"):
        assert name in SERVICES, f"docker-compose.yaml has no {name} service"
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert environment("airflow-scheduler")["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    commands = {name: SERVICES[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-worker"] == "celery worker"
    assert commands["airflow-triggerer"] == "triggerer"


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_every_airflow_service_uses_the_common_image_and_env(service: str):
    common = COMPOSE["x-airflow-common"]
    assert SERVICES[service]["image"] == common["image"]
    assert SERVICES[service]["build"] == common["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    env = SERVICES[service]["environment"]
    for key, value in common["environment"].items():
        assert env.get(key) == value, f"{service} overrides or drops {key}"


def test_every_long_running_service_has_a_healthcheck():
    """depends_on: service_healthy is only as good as the healthcheck behind it."""
    assert ONE_SHOT == {"airflow-init", "minio-init"}
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service.get("restart") in (None, "no"), f"one-shot {name} must not restart"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_depends_on_conditions_reference_existing_services():
    valid = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in SERVICES.items():
        for target, dependency in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown service {target}"
            assert dependency.get("condition") in valid, f"{name} -> {target}: {dependency}"
            if dependency["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target} to be healthy; it has no healthcheck"


def test_task_runners_wait_for_the_cluster_and_the_bucket():
    for name in ("airflow-worker", "airflow-triggerer"):
        depends = SERVICES[name]["depends_on"]
        assert depends["sandbox"]["condition"] == "service_healthy"
        assert depends["minio-init"]["condition"] == "service_completed_successfully"


def test_api_server_exposes_8080():
    apiserver = SERVICES["airflow-apiserver"]
    assert any(str(port).split(":")[-1] == "8080" for port in apiserver["ports"]), apiserver["ports"]
    assert "localhost:8080" in " ".join(apiserver["healthcheck"]["test"])
    assert environment("airflow-worker")["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-apiserver:8080/execution/"
    )


CONNECTIONS = {
    "AIRFLOW_CONN_OPENSHIFT_DEFAULT": "kubernetes",
    "AIRFLOW_CONN_REGISTRY_DEFAULT": "http",
    "AIRFLOW_CONN_PROMETHEUS_DEFAULT": "http",
    "AIRFLOW_CONN_AWS_DEFAULT": "aws",
}


@pytest.mark.parametrize("variable", sorted(CONNECTIONS))
def test_connections_parse_as_json_with_the_right_conn_type(variable: str):
    from airflow.sdk import Connection

    raw = environment("airflow-worker")[variable]
    json.loads(raw)  # JSON form, not URI form: extras stay readable
    conn = Connection.from_json(raw, conn_id=variable.removeprefix("AIRFLOW_CONN_").lower())
    assert conn.conn_type == CONNECTIONS[variable]
    if conn.conn_type == "http":
        assert conn.host in SERVICES and conn.port, f"{variable} points at {conn.host}:{conn.port}"


def test_connections_point_at_the_stack():
    from airflow.sdk import Connection

    env = environment("airflow-worker")
    openshift = Connection.from_json(env["AIRFLOW_CONN_OPENSHIFT_DEFAULT"], conn_id="openshift_default")
    sandbox_mount = next(v.split(":")[1] for v in SERVICES["sandbox"]["volumes"] if v.startswith("sandbox-data:"))
    assert openshift.extra_dejson["kube_config_path"].startswith(sandbox_mount + "/")
    assert any(v.startswith(f"sandbox-data:{sandbox_mount}") for v in COMPOSE["x-airflow-common"]["volumes"])

    aws = Connection.from_json(env["AIRFLOW_CONN_AWS_DEFAULT"], conn_id="aws_default")
    assert aws.extra_dejson["endpoint_url"] == "http://minio:9000"
    assert (aws.login, aws.password) == (environment("minio")["MINIO_ROOT_USER"], environment("minio")["MINIO_ROOT_PASSWORD"])

    # The sandbox serves Kubernetes on --port P, the registry on P+1, Prometheus on P+2.
    command = " ".join(SERVICES["sandbox"]["command"])
    assert "reglife sandbox serve" in command and "--scale S" in command
    port = int(re.search(r"--port (\d+)", command).group(1))
    assert Connection.from_json(env["AIRFLOW_CONN_REGISTRY_DEFAULT"]).port == port + 1
    assert Connection.from_json(env["AIRFLOW_CONN_PROMETHEUS_DEFAULT"]).port == port + 2


def test_lake_and_policy_settings():
    env = environment("airflow-worker")
    assert env["LAKE_URL"] == "s3://registry-lake/lake"
    assert "mc mb --ignore-existing lake/registry-lake" in SERVICES["minio-init"]["command"][-1]
    assert env["REGLIFE_POLICY"] == "/opt/airflow/include/policies/default.yaml"
    assert "COPY --chown=airflow:0 include/policies/ /opt/airflow/include/policies/" in DOCKERFILE.read_text()
    assert POLICY_FILE.exists()


# The credentials docker-compose.yaml may contain: local-only defaults, each documented in
# the file's header. Anything else that looks like a secret is a leak.
DOCUMENTED_LOCAL_DEFAULTS = {"airflow", "reglife-local-only"}
_SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$|ACCESS_KEY", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"://[^:/@\s]*:(?P<password>[^@\s]*)@")


def _strings(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, (*path, str(index)))
    elif isinstance(node, str):
        yield path, node


def test_no_secrets_beyond_the_documented_local_defaults():
    header = COMPOSE_FILE.read_text().split("\n---", 1)[0]
    for value in DOCUMENTED_LOCAL_DEFAULTS:
        assert value in header, f"local default {value!r} is not documented in the file header"

    for path, raw in _strings(COMPOSE):
        value = interpolate(raw)
        where = ".".join(path)
        if _SECRET_KEY.search(path[-1]):
            assert value in DOCUMENTED_LOCAL_DEFAULTS | {""}, f"{where} holds an undocumented secret"
        for match in _URI_PASSWORD.finditer(value):
            assert match["password"] in DOCUMENTED_LOCAL_DEFAULTS | {""}, f"{where} embeds a password in a URI"
        if value.lstrip().startswith("{"):
            conn = json.loads(value)
            assert conn.get("password", "") in DOCUMENTED_LOCAL_DEFAULTS | {""}, f"{where} holds a password"
            for key in (conn.get("extra") or {}):
                assert not _SECRET_KEY.search(key), f"{where} has a secret in extra[{key!r}]"

    # Fernet key and JWT secret are generated by airflow-init into the shared airflow.cfg.
    all_keys = {path[-1] for path, _ in _strings(COMPOSE)}
    assert not {key for key in all_keys if "FERNET_KEY" in key or "JWT_SECRET" in key}


def test_published_ports_besides_the_ui_are_loopback_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            if name != "airflow-apiserver":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


# --------------------------------------------------------------------------- Dockerfile / Makefile
def test_dockerfile_builds_on_the_locked_airflow_with_the_locked_uv():
    dockerfile = DOCKERFILE.read_text()
    makefile = MAKEFILE.read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11" in dockerfile
    assert '"apache-airflow==3.3.2"' in pyproject, "bump the Dockerfile's base image with Airflow"
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE).group(1)
    assert f"uv=={uv_version}" in dockerfile, "Dockerfile and Makefile must pin the same uv"
    assert "uv export --frozen --no-dev --no-emit-project" in dockerfile
    assert "--require-hashes" in dockerfile
    for source, target in (("dags/", "/opt/airflow/dags/"), ("plugins/", "/opt/airflow/plugins/")):
        assert f"COPY --chown=airflow:0 {source} {target}" in dockerfile
