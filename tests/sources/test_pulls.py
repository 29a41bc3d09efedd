"""`pulls_daily` counts exactly the manifest pulls the archive holds, wherever it is stored.

The archive is written by the sandbox's writer from known pull records, so every expected
count is a record's; the same files are then read from a folder and from S3 (a moto server
spoken to over HTTP, as pyarrow speaks to AWS, MinIO or ODF).
"""
from __future__ import annotations

import shutil
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from registry_lifecycle.datasets import PULLS_DAILY
from registry_lifecycle.sandbox.model import PullRecord
from registry_lifecycle.sandbox.pull_archive import PushRecord, write_archive
from registry_lifecycle.sources.errors import SourceMalformed, SourceUnavailable
from registry_lifecycle.sources.locations import Location, open_location
from registry_lifecycle.sources.pulls import events_for_day, pulls_daily

DAY = date(2026, 3, 4)
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def manifest_pulls() -> list[PullRecord]:
    """Three clusters; one digest under two tags and by digest; an index; an idle cluster."""
    day = DAY.isoformat()
    return [
        PullRecord(day, "payments/api", digest(1), "v1.4.2", "prod-east", 240, MANIFEST, 1_203),
        PullRecord(day, "payments/api", digest(1), "stable", "prod-east", 17, MANIFEST, 1_203),
        PullRecord(day, "payments/api", digest(1), None, "prod-east", 5, MANIFEST, 1_203),
        PullRecord(day, "payments/api", digest(2), "v1.4.1", "prod-east", 3, MANIFEST, 1_187),
        PullRecord(day, "shared/base-ubi9", digest(3), "latest", "prod-east", 57, INDEX, 742),
        PullRecord(day, "payments/api", digest(1), "v1.4.2", "prod-west", 88, MANIFEST, 1_203),
        PullRecord(day, "reports/monthly", digest(4), "2026-02", "dr-site", 0, MANIFEST, 980),
    ]


def blob_pulls() -> list[PullRecord]:
    """Layer GETs: the registry reports them too, but they say nothing about which image was used."""
    return [PullRecord(DAY.isoformat(), "payments/api", digest(11), None, "prod-east", 400, LAYER, 52_000_000),
            PullRecord(DAY.isoformat(), "payments/api", digest(12), None, "prod-west", 90, LAYER, 31_000_000)]


def pushes() -> list[PushRecord]:
    at = datetime(2026, 3, 4, 13, 37, 5, tzinfo=timezone.utc)
    return [PushRecord(at, "payments/api", digest(5), "v1.5.0", "prod-east", MANIFEST, 1_210),
            PushRecord(at, "payments/api", digest(1), "v1.4.2", "prod-west", MANIFEST, 1_203)]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """One day's archive of manifest pulls, blob pulls and pushes, as the sandbox writes it."""
    root = tmp_path / "pulls"
    write_archive(root, DAY, manifest_pulls() + blob_pulls(), seed=7, pushes=pushes(), batch=25)
    return root


def expected_pulls(records: list[PullRecord]) -> dict[tuple, tuple[int, int]]:
    """(repository, digest, tag, cluster) -> (pulls, bytes) straight from the records."""
    expected: dict[tuple, tuple[int, int]] = {}
    for r in records:
        if r.pulls:
            pulls, size = expected.get((r.repository, r.digest, r.tag, r.cluster), (0, 0))
            expected[(r.repository, r.digest, r.tag, r.cluster)] = (pulls + r.pulls, size + r.pulls * r.size)
    return expected


def as_counts(frame: pd.DataFrame) -> dict[tuple, tuple[int, int]]:
    return {(row.repository, row.digest, None if pd.isna(row.tag) else row.tag, row.cluster): (row.pulls, row.bytes)
            for row in frame.itertuples()}


def test_pulls_daily_sums_exactly_the_records_pulls(archive):
    """Per repository, digest, tag and cluster: the records' pulls, and their bytes from the target size."""
    frame = pulls_daily(open_location(str(archive)), DAY)
    assert list(frame.columns) == PULLS_DAILY.schema.names
    assert (frame.day == DAY).all()
    assert as_counts(frame) == expected_pulls(manifest_pulls())
    assert int(frame.pulls.sum()) == sum(r.pulls for r in manifest_pulls())
    assert not frame.duplicated(["repository", "digest", "tag", "cluster"]).any()


def test_pushes_and_blob_pulls_are_not_counted(archive):
    """Only manifest GETs mean an image was used; a push or a layer GET must not keep an image alive."""
    location = open_location(str(archive))
    events = list(events_for_day(location, DAY))
    actions = Counter((e["action"], e["target"]["mediaType"] == LAYER) for e in events)
    assert actions[("push", False)] == len(pushes())
    assert actions[("pull", True)] == sum(r.pulls for r in blob_pulls())
    frame = pulls_daily(location, DAY)
    assert not set(frame.digest) & {digest(5), digest(11), digest(12)}
    pushed_and_pulled = frame[(frame.digest == digest(1)) & (frame.cluster == "prod-west")]
    assert pushed_and_pulled.pulls.tolist() == [88]


def test_an_idle_cluster_is_a_day_without_pulls_not_an_error(archive):
    assert (archive / "dt=2026-03-04" / "events-dr-site.ndjson").read_bytes() == b""
    frame = pulls_daily(open_location(str(archive)), DAY)
    assert "dr-site" not in set(frame.cluster)


def test_gzip_and_plain_archives_give_the_same_frame(tmp_path, archive):
    zipped = tmp_path / "zipped"
    write_archive(zipped, DAY, manifest_pulls() + blob_pulls(), seed=7, pushes=pushes(), batch=25, compress=True)
    assert all(p.name.endswith(".ndjson.gz") for p in (zipped / "dt=2026-03-04").iterdir())
    pd.testing.assert_frame_equal(pulls_daily(open_location(str(zipped)), DAY),
                                  pulls_daily(open_location(str(archive)), DAY))


def test_two_files_for_one_cluster_are_refused(archive):
    """Both variants of a cluster's file would count its pulls twice; the reader refuses to guess."""
    partition = archive / "dt=2026-03-04"
    shutil.copy(partition / "events-prod-west.ndjson", partition / "events-prod-west.ndjson.gz")
    with pytest.raises(SourceMalformed, match="events-prod-west.ndjson and events-prod-west.ndjson.gz"):
        pulls_daily(open_location(str(archive)), DAY)


def test_a_pull_without_a_digest_names_its_file_and_line(archive):
    path = archive / "dt=2026-03-04" / "events-prod-west.ndjson"
    bad = b'{"events": [{"action": "pull", "target": {"mediaType": "%s", "repository": "a/b", "tag": "v1"}}]}\n'
    path.write_bytes(path.read_bytes() + bad % MANIFEST.encode())
    lines = path.read_bytes().count(b"\n")
    with pytest.raises(SourceMalformed) as raised:
        pulls_daily(open_location(str(archive)), DAY)
    assert raised.value.what == f"{path} line {lines}"
    assert "event 0 is a pull without a valid target digest" in raised.value.detail


def upload(archive: Path, bucket, prefix: str) -> None:
    client = bucket.server.client()
    for path in sorted(archive.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket.name, f"{prefix}/{path.relative_to(archive).as_posix()}")


def s3_location(bucket, prefix: str) -> Location:
    server = bucket.server
    return open_location(bucket.url(prefix), endpoint_url=bucket.endpoint_url, access_key=server.access_key_id,
                         secret_key=server.secret_access_key, region=server.region)


def test_the_same_archive_reads_the_same_from_s3(archive, s3_bucket):
    upload(archive, s3_bucket, "registry/pulls")
    assert "registry/pulls/dt=2026-03-04/events-prod-east.ndjson" in s3_bucket.keys()
    location = s3_location(s3_bucket, "registry/pulls")
    from_s3 = pulls_daily(location, DAY)
    assert as_counts(from_s3) == expected_pulls(manifest_pulls())
    pd.testing.assert_frame_equal(from_s3, pulls_daily(open_location(str(archive)), DAY))
    assert list(events_for_day(location, DAY, cluster="prod-west")) == \
        list(events_for_day(open_location(str(archive)), DAY, cluster="prod-west"))


def test_s3_errors_name_the_object_as_configured(tmp_path, s3_bucket):
    """An operator reads `s3://bucket/prefix/...` in the error, the URL they configured."""
    zipped = tmp_path / "zipped"
    (path,) = write_archive(zipped, DAY, manifest_pulls()[:1], seed=3, compress=True)
    path.write_bytes(path.read_bytes()[:-100])
    upload(zipped, s3_bucket, "pulls")
    location = s3_location(s3_bucket, "pulls")
    with pytest.raises(SourceMalformed, match="unreadable gzip data") as raised:
        pulls_daily(location, DAY)
    assert raised.value.what == f"s3://{s3_bucket.name}/pulls/dt=2026-03-04/events-prod-east.ndjson.gz"
    with pytest.raises(SourceUnavailable) as missing:
        pulls_daily(location, date(2026, 3, 5))
    assert missing.value.what == f"s3://{s3_bucket.name}/pulls/dt=2026-03-05"
