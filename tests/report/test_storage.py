"""Storing reports on S3 (moto_server, through boto3 as on AWS/MinIO/ODF) and in a folder."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from registry_lifecycle.report.storage import (
    LocalReportStore,
    S3ReportStore,
    StorageError,
)

pytestmark = pytest.mark.integration

GENERATED = datetime(2026, 10, 1, 0, 30, tzinfo=timezone.utc)


def _store(server, bucket: str, prefix: str = "reports", **kwargs) -> S3ReportStore:
    """The store as the DAG and the page make it: endpoint and keys, its own boto3 client."""
    return S3ReportStore(f"s3://{bucket}/{prefix}", endpoint_url=server.endpoint_url, region=server.region,
                         access_key=server.access_key_id, secret_key=server.secret_access_key, **kwargs)


def test_a_bundle_stored_on_s3_is_listed_and_read_back_byte_for_byte(q3_bundle, s3_bucket):
    store = _store(s3_bucket.server, s3_bucket.name)
    stored = store.store(q3_bundle, "2026Q3", GENERATED)
    assert stored.folder == "2026Q3/20261001T003000Z"
    assert f"reports/2026Q3/20261001T003000Z/{q3_bundle.zip_path.name}" in s3_bucket.keys()
    assert "reports/2026Q3/20261001T003000Z/report.pdf" in s3_bucket.keys()
    [listed] = store.reports()
    assert (listed.label, listed.stamp, listed.zip_name) == ("2026Q3", "20261001T003000Z", q3_bundle.zip_path.name)
    assert listed.downloads[:3] == ["report.pdf", "report.html", q3_bundle.zip_path.name]
    assert hashlib.sha256(store.read(listed, listed.zip_name)).hexdigest() == q3_bundle.zip_sha256


def test_a_stored_report_is_never_overwritten(q3_bundle, s3_bucket, tmp_path):
    store = _store(s3_bucket.server, s3_bucket.name)
    store.store(q3_bundle, "2026Q3", GENERATED)
    with pytest.raises(StorageError, match="never overwritten"):
        store.store(q3_bundle, "2026Q3", GENERATED)
    store.store(q3_bundle, "2026Q3", GENERATED + timedelta(minutes=5))   # a re-run stores beside it
    assert [r.stamp for r in store.reports()] == ["20261001T003500Z", "20261001T003000Z"]
    local = LocalReportStore(tmp_path / "reports")
    local.store(q3_bundle, "2026Q3", GENERATED)
    with pytest.raises(StorageError, match="never overwritten"):
        local.store(q3_bundle, "2026Q3", GENERATED)


def test_a_presigned_url_serves_the_file_until_it_expires(q3_bundle, s3_bucket):
    store = _store(s3_bucket.server, s3_bucket.name)
    stored = store.store(q3_bundle, "2026Q3", GENERATED)
    url = store.download_url(stored, "report.pdf", timedelta(minutes=5))
    assert "X-Amz-Expires=300" in url and "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    assert response.headers["content-type"] == "application/pdf"
    unsigned = url.split("?", 1)[0]
    assert httpx.get(unsigned).status_code == 403, "without the signature the object is not readable"
    with pytest.raises(StorageError, match="no file"):
        store.download_url(stored, "../other-report/report.pdf", timedelta(minutes=5))


def test_object_lock_retention_is_set_on_every_file_and_refuses_deletion(q3_bundle, moto_server):
    client = moto_server.client()
    bucket = "reglife-test-locked-" + hashlib.sha256(str(datetime.now()).encode()).hexdigest()[:8]
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = _store(moto_server, bucket, object_lock_mode="COMPLIANCE", retain_days=30)
    stored = store.store(q3_bundle, "2026Q3", GENERATED)
    assert stored.retain_until is not None
    for name in (stored.zip_name, "report.pdf", "MANIFEST.sha256"):
        retention = store.retention(stored, name)
        assert retention["Mode"] == "COMPLIANCE"
        assert retention["RetainUntilDate"] > datetime.now(timezone.utc) + timedelta(days=29)
    key = f"reports/{stored.folder}/report.pdf"
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)


def test_object_lock_needs_an_s3_location():
    from registry_lifecycle.report.storage import open_store

    with pytest.raises(StorageError, match="needs an S3 location"):
        open_store("/tmp/reports", object_lock_mode="GOVERNANCE")
