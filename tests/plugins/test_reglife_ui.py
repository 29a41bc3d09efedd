"""The "Compliance reports" page: only an authenticated Airflow user with a role the policy names
sees reports or gets their bytes; everyone else gets neither bytes nor URLs."""
from __future__ import annotations

import hashlib

import httpx
import pytest

from .conftest import bundle_zip_name, write_aws_connection

PAGE = "/reglife/reports/"
DOWNLOAD = "/reglife/reports/download/2026Q3/20261001T003000Z"


def _refusal_leaks_nothing(response, bundle) -> None:
    body = response.content
    assert b"2026Q3" not in body and b"/download/" not in body and b"href" not in body and b"report.pdf" not in body
    assert b"X-Amz" not in body
    assert b"%PDF" not in body and bundle_zip_name(bundle).encode() not in body
    assert "location" not in response.headers


@pytest.mark.parametrize("path", [PAGE, "/reglife/reports/api", f"{DOWNLOAD}/report.pdf", f"{DOWNLOAD}/MANIFEST.sha256"])
def test_anonymous_requests_get_neither_bytes_nor_urls(client, report_location, empty_lake_bundle, path):
    response = client.get(path)
    assert response.status_code == 401
    _refusal_leaks_nothing(response, empty_lake_bundle)


def test_a_forged_token_is_refused(client, report_location, empty_lake_bundle, token_for):
    header, payload, _ = token_for("alice", "admin").split(".")
    response = client.get(PAGE, headers={"Authorization": f"Bearer {header}.{payload}.forged"})
    assert response.status_code in (401, 403)
    _refusal_leaks_nothing(response, empty_lake_bundle)


def test_an_authenticated_user_without_the_policy_role_is_refused(client, report_location, empty_lake_bundle,
                                                                   token_for):
    response = client.get(f"{DOWNLOAD}/report.pdf", headers={"Authorization": f"Bearer {token_for('vic', 'viewer')}"})
    assert response.status_code == 403
    _refusal_leaks_nothing(response, empty_lake_bundle)


def test_an_allowed_user_sees_the_list_and_downloads_through_the_page(client, report_location, empty_lake_bundle,
                                                                       token_for):
    client.cookies.set("_token", token_for("alice", "admin"))      # the UI's session cookie
    page = client.get(PAGE)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "2026Q3" in page.text and "Signed in as alice" in page.text
    assert f'href="{DOWNLOAD}/report.pdf"' in page.text
    zip_name = bundle_zip_name(empty_lake_bundle)
    archive = client.get(f"{DOWNLOAD}/{zip_name}")
    assert archive.status_code == 200
    assert hashlib.sha256(archive.content).hexdigest() == empty_lake_bundle.zip_sha256
    assert client.get(f"{DOWNLOAD}/..%2F..%2F..%2Fpolicy.yaml").status_code == 404
    assert client.get("/reglife/reports/download/2026Q3/20261001T003000Z/nothing.pdf").status_code == 404


@pytest.mark.integration
def test_on_s3_a_download_is_a_short_lived_presigned_redirect(client, report_location, empty_lake_bundle, token_for,
                                                             s3_bucket, monkeypatch):
    from registry_lifecycle.report.storage import S3ReportStore

    write_aws_connection(monkeypatch, s3_bucket.server)
    location = s3_bucket.url("reports")
    S3ReportStore(location, client=s3_bucket.server.client()).store(
        empty_lake_bundle, "2026Q3", report_location.reports()[0].generated_at)
    monkeypatch.setenv("REGLIFE_REPORT_LOCATION", location)
    anonymous = client.get(f"{DOWNLOAD}/report.pdf")
    assert anonymous.status_code == 401 and "location" not in anonymous.headers
    response = client.get(f"{DOWNLOAD}/report.pdf", headers={"Authorization": f"Bearer {token_for('alice', 'admin')}"})
    assert response.status_code == 303
    url = response.headers["location"]
    assert url.startswith(s3_bucket.endpoint_url) and "X-Amz-Expires=3600" in url
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content.startswith(b"%PDF")
    listing = client.get("/reglife/reports/api", headers={"Authorization": f"Bearer {token_for('alice', 'admin')}"})
    assert listing.json()["location"] == location and "X-Amz" not in listing.text


def test_the_plugin_registers_the_app_and_a_nav_entry(client, token_for):
    response = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token_for('alice', 'admin')}"})
    assert response.status_code == 200, response.text
    plugin = next(p for p in response.json()["plugins"] if p["name"] == "registry_lifecycle")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/reglife/reports"
    view = plugin["external_views"][0]
    assert (view["name"], view["href"], view["destination"]) == ("Compliance reports", "/reglife/reports/", "nav")
