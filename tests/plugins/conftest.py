"""The Airflow API server with the project's plugin mounted, and a stored report to serve.

`api_server_app` is Airflow's own FastAPI app (`airflow.api_fastapi.app.create_app`), so the
plugin page is reached exactly as in production: through the API server's routing, its
middlewares and its auth manager (the simple auth manager of Airflow's test configuration).
`token_for` signs a JWT for a user and role with that auth manager, as a login would.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

GENERATED = datetime(2026, 10, 1, 0, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def empty_lake_bundle(tmp_path_factory):
    """A real report bundle (every section says "no data"): what the page lists and serves."""
    from registry_lifecycle.config import load_policy
    from registry_lifecycle.lake import Lake
    from registry_lifecycle.report.build import build_report
    from registry_lifecycle.report.bundle import write_bundle
    from registry_lifecycle.report.period import quarter

    root = tmp_path_factory.mktemp("plugin-report")
    report = build_report(Lake(str(root / "lake")), quarter("2026Q3"), load_policy(), now=GENERATED)
    return write_bundle(report, root / "out")


@pytest.fixture
def report_location(tmp_path, monkeypatch, empty_lake_bundle):
    """A folder store holding one stored report, and a policy allowing the `admin` role."""
    from registry_lifecycle.config import load_policy, policy_with
    from registry_lifecycle.report.storage import LocalReportStore

    store = LocalReportStore(tmp_path / "reports")
    store.store(empty_lake_bundle, "2026Q3", GENERATED)
    policy = policy_with(load_policy(), {"report": {"location": str(store.root), "download_roles": ["Admin"]}})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json")))
    monkeypatch.setenv("REGLIFE_POLICY", str(policy_file))
    monkeypatch.delenv("REGLIFE_REPORT_LOCATION", raising=False)
    return store


@pytest.fixture(scope="session")
def api_server_app(airflow_db):
    from airflow.api_fastapi.app import create_app

    return create_app(apps="core")


@pytest.fixture
def token_for(api_server_app):
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    def sign(username: str, role: str | None) -> str:
        return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))

    return sign


@pytest.fixture
def client(api_server_app):
    from fastapi.testclient import TestClient

    with TestClient(api_server_app, follow_redirects=False) as test_client:
        yield test_client


def write_aws_connection(monkeypatch, server) -> None:
    """The aws_default Connection an Airflow deployment would hold for the report bucket."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": server.access_key_id, "password": server.secret_access_key,
        "extra": {"endpoint_url": server.endpoint_url, "region_name": server.region}}))


def bundle_zip_name(bundle) -> str:
    return Path(bundle.zip_path).name
