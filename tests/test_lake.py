"""The lake's promises to every DAG, the CLI and the quality gate, on a folder and on real S3."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry_lifecycle import lake as lake_module
from registry_lifecycle.datasets import IMAGES, PULLS_DAILY, SCHEMA_VERSION, TAGS, Dataset
from registry_lifecycle.lake import (
    Lake,
    LakeError,
    LakeIntegrityError,
    LakeNotFound,
    LakeSchemaError,
    LakeSchemaVersionError,
    S3Credentials,
    run_key,
)

DAY = date(2026, 11, 27)
AIRFLOW_RUN_ID = "scheduled__2026-11-27T00:00:00+00:00"
# An append-only dataset like the GC audit log; registered by the GC package later, so the
# test brings its own contract instead of depending on it.
AUDIT = Dataset("test_audit", pa.schema([
    pa.field("plan_id", pa.string(), nullable=False), pa.field("digest", pa.string(), nullable=False),
    pa.field("outcome", pa.string(), nullable=False),
]), ("plan_id", "digest"), False, "an append-only audit log for tests")


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def images_frame(count: int = 3, *, offset: int = 0) -> pd.DataFrame:
    created = pd.Timestamp("2026-11-01T12:00:00Z")
    return pd.DataFrame({
        "digest": [digest(offset + i) for i in range(count)],
        "repository": [f"team-{i % 2}/app" for i in range(count)],
        "media_type": ["application/vnd.oci.image.manifest.v1+json"] * count,
        "size_bytes": [1_000 * (i + 1) for i in range(count)],
        "config_digest": [digest(10_000 + i) for i in range(count)],
        "created_at": [created + pd.Timedelta(days=i) for i in range(count)],
        "architecture": ["amd64"] * count,
        "os": ["linux"] * count,
        "labels": ['{"team": "a"}'] * count,
        "subject_digest": [None] * count,
        "index_digest": [None] * count,
        "managed": [True] * count,
    })


def tags_frame(count: int = 2) -> pd.DataFrame:
    return pd.DataFrame({
        "namespace": ["team-0"] * count, "imagestream": ["app"] * count,
        "tag": [f"v{i}" for i in range(count)], "revision": [0] * count,
        "digest": [digest(i) for i in range(count)],
        "created_at": pd.to_datetime(["2026-11-01T00:00:00Z"] * count),
    })


def pulls_frame(day: date, pulls: int) -> pd.DataFrame:
    return pd.DataFrame({
        "day": [day], "repository": ["team-0/app"], "digest": [digest(1)], "tag": ["latest"],
        "cluster": ["prod"], "pulls": [pulls], "bytes": [pulls * 1_000],
    })


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain values, missing values as None, whatever dtype held them."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def audit_frame(outcome: str) -> pd.DataFrame:
    return pd.DataFrame({"plan_id": ["plan-1"], "digest": [digest(1)], "outcome": [outcome]})


@pytest.fixture
def local_lake(tmp_path) -> Lake:
    return Lake(tmp_path / "lake")


def s3_lake_for(bucket) -> Lake:
    server = bucket.server
    return Lake(bucket.url("lake"), s3_endpoint_url=server.endpoint_url,
                s3_credentials=S3Credentials(server.access_key_id, server.secret_access_key))


@pytest.fixture
def s3_lake(s3_bucket) -> Lake:
    return s3_lake_for(s3_bucket)


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.integration)])
def new_lake(request, tmp_path) -> Callable[[], Lake]:
    """Opens the same store again, as another Airflow task (another process) would."""
    if request.param == "folder":
        return lambda: Lake(tmp_path / "lake")
    bucket = request.getfixturevalue("s3_bucket")
    return lambda: s3_lake_for(bucket)


@pytest.fixture
def lake(new_lake) -> Lake:
    """Every behaviour below holds on a local folder and on S3 alike."""
    return new_lake()


# --------------------------------------------------------------------------------------------
# round trip and layout
# --------------------------------------------------------------------------------------------

def test_round_trip_returns_the_frame_with_contract_types(lake):
    frame = images_frame()
    with lake.run(DAY, "manual_1") as run:
        run.write(IMAGES, frame)

    read = lake.read(IMAGES, DAY)

    assert records(read) == records(frame)
    assert str(read.created_at.dtype) == "datetime64[us, UTC]"
    assert read.size_bytes.dtype == "int64"
    assert list(read.columns) == IMAGES.schema.names


def test_columns_are_read_by_name(lake):
    lake.write(IMAGES, DAY, "manual_1", images_frame())
    lake.commit(DAY, "manual_1", [IMAGES])
    assert list(lake.read("images", DAY, columns=["digest", "size_bytes"]).columns) == ["digest", "size_bytes"]
    with pytest.raises(LakeError, match="'sizebytes'"):
        lake.read(IMAGES, DAY, columns=["sizebytes"])


@pytest.mark.integration
def test_s3_objects_follow_the_documented_layout(s3_lake, s3_bucket):
    with s3_lake.run(DAY, "manual_1") as run:
        run.write(IMAGES, images_frame())
        run.write(TAGS, tags_frame())

    assert s3_bucket.keys() == [
        "lake/_commits/dt=2026-11-27/manual_1.json",
        "lake/images/dt=2026-11-27/manual_1.parquet",
        "lake/tags/dt=2026-11-27/manual_1.parquet",
    ]


@pytest.mark.integration
def test_from_env_reaches_s3_through_the_standard_aws_variables(s3_lake, s3_bucket, monkeypatch):
    s3_lake.write(TAGS, DAY, "manual_1", tags_frame())
    s3_lake.commit(DAY, "manual_1", [TAGS])
    for name, value in s3_bucket.server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LAKE_URL", s3_bucket.url("lake"))

    from_env = Lake.from_env()

    assert from_env.url == s3_bucket.url("lake")
    assert len(from_env.read(TAGS, DAY)) == 2


def test_from_env_defaults_to_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAKE_URL", raising=False)
    assert Lake.from_env().url == f"file://{tmp_path}/data/lake"


def test_repr_and_errors_never_show_credentials():
    secret = "wJalrXUtnFEMI-very-secret"
    lake = Lake("s3://bucket/prefix", s3_endpoint_url="http://127.0.0.1:9",
                s3_credentials=S3Credentials("AKIAEXAMPLE", secret, "token-secret"))
    assert repr(lake) == "Lake('s3://bucket/prefix', endpoint='http://127.0.0.1:9')"
    assert secret not in repr(S3Credentials("AKIAEXAMPLE", secret))
    with pytest.raises(ValueError, match="must not contain credentials") as refused:
        Lake(f"s3://AKIAEXAMPLE:{secret}@bucket/prefix")
    assert secret not in str(refused.value)


# --------------------------------------------------------------------------------------------
# contracts
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("break_frame, column, words", [
    (lambda f: f.drop(columns=["managed"]), "managed", "is missing"),
    (lambda f: f.assign(size_bytes=["big"] * len(f)), "size_bytes", "pd.to_numeric"),
    (lambda f: f.assign(digest=[None] + list(f.digest[1:])), "digest", "null value"),
    (lambda f: f.assign(extra_column=1), "extra_column", "not in the contract"),
    (lambda f: f.assign(created_at=f.created_at.dt.tz_localize(None)), "created_at", "tz_localize"),
    (lambda f: f.assign(managed=[1] * len(f)), "managed", "True/False"),
])
def test_schema_error_names_dataset_column_and_fix(local_lake, break_frame, column, words):
    with pytest.raises(LakeSchemaError) as error:
        local_lake.write(IMAGES, DAY, "manual_1", break_frame(images_frame()))

    message = str(error.value)
    assert message.startswith("images:")
    assert f"column {column!r}" in message and words in message
    assert [p.column for p in error.value.problems] == [column]
    assert local_lake.filesystem.get_file_info(local_lake.url.removeprefix("file://")).type.name == "NotFound"


def test_schema_error_lists_every_problem_at_once(local_lake):
    broken = images_frame().drop(columns=["os"]).assign(position=1)
    with pytest.raises(LakeSchemaError) as error:
        local_lake.write(IMAGES, DAY, "manual_1", broken)
    assert sorted(p.column for p in error.value.problems) == ["os", "position"]


def test_values_are_cast_to_the_contract_types(local_lake):
    frame = images_frame().astype({"size_bytes": "int32"})
    frame["created_at"] = frame.created_at.dt.tz_convert("Europe/Paris")
    local_lake.write(IMAGES, DAY, "manual_1", frame)
    local_lake.commit(DAY, "manual_1", [IMAGES])

    read = local_lake.read(IMAGES, DAY)
    assert read.size_bytes.dtype == "int64"
    assert read.created_at.iloc[0] == pd.Timestamp("2026-11-01T12:00:00Z")


def test_file_metadata_carries_schema_version_and_original_run_id(local_lake):
    result = local_lake.write(IMAGES, DAY, AIRFLOW_RUN_ID, images_frame(), extra_metadata={"source": "sandbox"})
    local_lake.commit(DAY, AIRFLOW_RUN_ID, [result])

    metadata = pq.read_schema(f"{local_lake.url.removeprefix('file://')}/{result.path}").metadata
    assert metadata[b"reglife.schema_version"] == str(SCHEMA_VERSION).encode()
    assert metadata[b"reglife.dataset"] == b"images"
    assert metadata[b"reglife.run_id"] == AIRFLOW_RUN_ID.encode()
    assert metadata[b"reglife.day"] == b"2026-11-27"
    assert datetime.fromisoformat(metadata[b"reglife.written_at"].decode()).tzinfo is not None
    assert metadata[b"source"] == b"sandbox"
    assert local_lake.schema_version_of(IMAGES, DAY) == SCHEMA_VERSION


def test_file_from_a_newer_schema_version_asks_for_an_upgrade(lake, monkeypatch):
    monkeypatch.setattr(lake_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    lake.write(IMAGES, DAY, "manual_1", images_frame())
    lake.commit(DAY, "manual_1", [IMAGES])
    monkeypatch.setattr(lake_module, "SCHEMA_VERSION", SCHEMA_VERSION)

    with pytest.raises(LakeSchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        lake.read(IMAGES, DAY)
    with pytest.raises(LakeSchemaVersionError, match="upgrade"):
        lake.schema_version_of(IMAGES, DAY)


def test_day_must_be_a_date_not_a_datetime(local_lake):
    with pytest.raises(TypeError, match=r"logical_date\.date\(\)"):
        local_lake.write(IMAGES, datetime(2026, 11, 27, tzinfo=timezone.utc), "manual_1", images_frame())


# --------------------------------------------------------------------------------------------
# commits: readers see only complete runs
# --------------------------------------------------------------------------------------------

def test_uncommitted_run_is_invisible(lake):
    lake.write(IMAGES, DAY, "run_a", images_frame(1))
    lake.commit(DAY, "run_a", [IMAGES])
    lake.write(IMAGES, DAY, "run_b", images_frame(5))            # the task died before commit
    lake.write(IMAGES, DAY + timedelta(days=1), "run_c", images_frame(5))

    assert len(lake.read(IMAGES, DAY)) == 1
    assert lake.days(IMAGES) == [DAY]
    assert lake.latest_day(IMAGES) == DAY
    with pytest.raises(LakeNotFound):
        lake.read(IMAGES, DAY + timedelta(days=1))
    with pytest.raises(LakeNotFound, match="run_b"):
        lake.read(IMAGES, DAY, run_id="run_b")


def test_crash_inside_run_block_commits_nothing(lake):
    with pytest.raises(RuntimeError, match="source list was truncated"):
        with lake.run(DAY, "run_a") as run:
            run.write(IMAGES, images_frame())
            raise RuntimeError("source list was truncated")

    assert lake.days(IMAGES) == []
    assert lake.commits(DAY) == []


def test_run_commits_every_dataset_it_wrote_in_one_marker(lake):
    with lake.run(DAY, "run_a") as run:
        run.write(IMAGES, images_frame(3))
        run.write(TAGS, tags_frame(2))

    [commit] = lake.commits(DAY)
    assert commit.run_id == "run_a"
    assert {name: f.rows for name, f in commit.files.items()} == {"images": 3, "tags": 2}
    assert all(len(f.sha256) == 64 and f.size_bytes > 0 for f in commit.files.values())


def test_latest_committed_run_wins_by_commit_time_not_by_name(lake):
    lake.write(IMAGES, DAY, "run_b", images_frame(2))
    lake.write(IMAGES, DAY, "run_a", images_frame(4))
    lake.commit(DAY, "run_b", [IMAGES])
    lake.commit(DAY, "run_a", [IMAGES])           # committed last, although it sorts first

    assert len(lake.read(IMAGES, DAY)) == 4
    assert len(lake.read(IMAGES, DAY, run_id="run_b")) == 2


def test_rewriting_the_same_run_is_idempotent(lake):
    first = lake.write(IMAGES, DAY, "run_a", images_frame(3))
    commit = lake.commit(DAY, "run_a", [first])
    second = lake.write(IMAGES, DAY, "run_a", images_frame(3))
    recommit = lake.commit(DAY, "run_a", [second])
    again = lake.commit(DAY, "run_a", [IMAGES])

    assert second.path == first.path
    assert [c.run_id for c in lake.commits(DAY)] == ["run_a"]
    assert again == recommit and recommit.committed_at >= commit.committed_at
    assert records(lake.read(IMAGES, DAY)) == records(images_frame(3))


def test_rewriting_a_committed_run_hides_it_until_it_is_committed_again(lake):
    lake.write(IMAGES, DAY, "run_a", images_frame(1))
    lake.commit(DAY, "run_a", [IMAGES])
    with lake.run(DAY, "run_b") as run:
        run.write(IMAGES, images_frame(2))
        run.write(TAGS, tags_frame(2))

    lake.write(IMAGES, DAY, "run_b", images_frame(7))     # a retry of run_b, not committed yet

    assert len(lake.read(IMAGES, DAY)) == 1               # back to the last complete run
    with pytest.raises(LakeNotFound):
        lake.read(TAGS, DAY)                              # run_b as a whole is reopened
    lake.commit(DAY, "run_b", [IMAGES])
    assert len(lake.read(IMAGES, DAY)) == 7
    assert len(lake.read(TAGS, DAY)) == 2                 # kept from the first commit of run_b


def test_commit_by_name_from_another_task(lake, new_lake):
    lake.write(IMAGES, DAY, "run_a", images_frame(3))

    commit = new_lake().commit(DAY, "run_a", ["images"])

    assert commit.files["images"].rows == 3
    assert len(lake.read(IMAGES, DAY)) == 3


def test_commit_refuses_a_dataset_the_run_never_wrote(local_lake):
    local_lake.write(IMAGES, DAY, "run_a", images_frame())
    with pytest.raises(LakeError, match="tags.*does not exist"):
        local_lake.commit(DAY, "run_a", [IMAGES, TAGS])
    assert local_lake.commits(DAY) == []


def test_file_changed_after_commit_is_refused(local_lake):
    result = local_lake.write(IMAGES, DAY, "run_a", images_frame(3))
    local_lake.commit(DAY, "run_a", [result])
    path = f"{local_lake.url.removeprefix('file://')}/{result.path}"
    pq.write_table(pq.read_table(path).slice(0, 1), path)

    with pytest.raises(LakeIntegrityError, match="changed after the commit"):
        local_lake.read(IMAGES, DAY)


def test_commit_marker_is_plain_json_naming_each_file(local_lake):
    result = local_lake.write(IMAGES, DAY, AIRFLOW_RUN_ID, images_frame(3))
    local_lake.commit(DAY, AIRFLOW_RUN_ID, [result])
    root = local_lake.url.removeprefix("file://")

    marker = json.loads(open(f"{root}/_commits/dt=2026-11-27/{run_key(AIRFLOW_RUN_ID)}.json").read())

    assert marker["state"] == "committed" and marker["run_id"] == AIRFLOW_RUN_ID
    assert marker["datasets"]["images"] == {"path": result.path, "rows": 3, "size_bytes": result.size_bytes,
                                            "sha256": result.sha256}


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------

def test_missing_partition_error_lists_the_days_that_exist(lake):
    for day in (date(2026, 11, 20), date(2026, 11, 21)):
        lake.write(IMAGES, day, "run_a", images_frame())
        lake.commit(day, "run_a", [IMAGES])

    with pytest.raises(LakeNotFound) as error:
        lake.read(IMAGES, DAY)

    message = str(error.value)
    assert "images" in message and "2026-11-27" in message
    assert "2026-11-20, 2026-11-21" in message
    assert "cannot be re-extracted for a past date" in message    # images is a snapshot dataset


def test_latest_day_and_previous_snapshot(lake):
    for offset, count in ((0, 10), (1, 12), (3, 11)):
        day = DAY + timedelta(days=offset)
        with lake.run(day, f"run_{offset}") as run:
            run.write(IMAGES, images_frame(count))

    assert lake.days(IMAGES) == [DAY, DAY + timedelta(days=1), DAY + timedelta(days=3)]
    assert lake.latest_day(IMAGES) == DAY + timedelta(days=3)
    assert lake.latest_day(IMAGES, on_or_before=DAY + timedelta(days=2)) == DAY + timedelta(days=1)
    previous = lake.previous_snapshot(IMAGES, DAY + timedelta(days=3), columns=["digest"])
    assert (previous.day, previous.run_id, len(previous.frame)) == (DAY + timedelta(days=1), "run_1", 12)
    assert lake.previous_snapshot(IMAGES, DAY) is None                 # the first run has nothing to compare
    commit = lake.previous_commit(IMAGES, DAY + timedelta(days=3))      # the same partition, no data read
    assert (commit.day, commit.run_id, commit.files["images"].rows) == (DAY + timedelta(days=1), "run_1", 12)
    assert lake.previous_commit(IMAGES, DAY) is None
    with pytest.raises(LakeNotFound, match="on or before 2026-11-26"):
        lake.latest_day(IMAGES, on_or_before=DAY - timedelta(days=1))


def test_read_range_concatenates_the_latest_committed_run_of_each_day(lake):
    first = date(2026, 11, 1)
    for offset in (0, 1, 3):                         # 2026-11-03 is missing
        day = first + timedelta(days=offset)
        lake.write(PULLS_DAILY, day, "run_old", pulls_frame(day, 1))
        lake.commit(day, "run_old", [PULLS_DAILY])
        lake.write(PULLS_DAILY, day, "run_new", pulls_frame(day, 10 + offset))
        lake.commit(day, "run_new", [PULLS_DAILY])
    lake.write(PULLS_DAILY, first + timedelta(days=2), "uncommitted", pulls_frame(first, 99))

    pulls = lake.read_range(PULLS_DAILY, first, first + timedelta(days=3))

    assert pulls.pulls.tolist() == [10, 11, 13]
    assert pulls.day.tolist() == [first, first + timedelta(days=1), first + timedelta(days=3)]
    with pytest.raises(LakeNotFound, match="2026-11-03"):
        lake.read_range(PULLS_DAILY, first, first + timedelta(days=3), require_every_day=True)
    with pytest.raises(LakeNotFound, match="2026-11-01, 2026-11-02, 2026-11-04"):
        lake.read_range(PULLS_DAILY, date(2026, 12, 1), date(2026, 12, 31))


# --------------------------------------------------------------------------------------------
# append-only logs
# --------------------------------------------------------------------------------------------

def test_append_adds_parts_visible_without_commit(lake):
    one = lake.append(AUDIT, DAY, AIRFLOW_RUN_ID, audit_frame("deleted"))
    two = lake.append(AUDIT, DAY, AIRFLOW_RUN_ID, audit_frame("skipped"))
    retry = lake.append(AUDIT, DAY, "manual__retry", audit_frame("deleted-again"))

    assert (one.part, two.part, retry.part) == (1, 2, 1)
    assert one.path.endswith(f"{run_key(AIRFLOW_RUN_ID)}-000001.parquet")
    assert lake.read(AUDIT, DAY).outcome.tolist() == ["deleted", "skipped", "deleted-again"]
    assert lake.read(AUDIT, DAY, run_id=AIRFLOW_RUN_ID).outcome.tolist() == ["deleted", "skipped"]
    assert lake.days(AUDIT) == [DAY]
    assert lake.schema_version_of(AUDIT, DAY) == SCHEMA_VERSION


def test_append_never_overwrites_a_part_it_did_not_see(lake, monkeypatch):
    lake.append(AUDIT, DAY, "run_a", audit_frame("deleted"))
    # A concurrent writer: this appender lists the partition before the other part lands,
    # so it tries part number 1 again and must take number 2 instead of replacing it.
    monkeypatch.setattr(type(lake), "_partition_files", lambda self, dataset, day: ([], {}))

    second = lake.append(AUDIT, DAY, "run_a", audit_frame("skipped"))

    monkeypatch.undo()
    assert second.part == 2
    assert lake.read(AUDIT, DAY).outcome.tolist() == ["deleted", "skipped"]


def test_append_and_write_do_not_share_a_partition(local_lake):
    local_lake.append(AUDIT, DAY, "run_a", audit_frame("deleted"))
    with pytest.raises(LakeError, match="Lake.append"):
        local_lake.write(AUDIT, DAY, "run_b", audit_frame("deleted"))
    local_lake.write(AUDIT, DAY + timedelta(days=1), "run_b", audit_frame("deleted"))
    with pytest.raises(LakeError, match="cannot share"):
        local_lake.append(AUDIT, DAY + timedelta(days=1), "run_b", audit_frame("deleted"))


# --------------------------------------------------------------------------------------------
# run ids
# --------------------------------------------------------------------------------------------

def test_airflow_run_ids_become_safe_deterministic_file_names(lake):
    key = run_key(AIRFLOW_RUN_ID)
    with lake.run(DAY, AIRFLOW_RUN_ID) as run:
        result = run.write(IMAGES, images_frame(2))

    assert key == run_key(AIRFLOW_RUN_ID)
    assert not set(key) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert result.path == f"images/dt=2026-11-27/{key}.parquet"
    assert lake.commits(DAY)[0].run_id == AIRFLOW_RUN_ID
    assert len(lake.read(IMAGES, DAY, run_id=AIRFLOW_RUN_ID)) == 2


def test_run_ids_differing_only_in_unsafe_characters_do_not_collide():
    assert run_key("manual__2026-11-27T00:00:00+00:00") != run_key("manual__2026-11-27T00:00:00-00:00")
    assert run_key("manual_1") == "manual_1"                      # safe ids stay readable
    assert run_key("backfill-000001") != "backfill-000001"       # would read as an append part
    with pytest.raises(ValueError):
        run_key(" ")
