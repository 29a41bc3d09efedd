"""The lake: the dataset store that every DAG, the CLI and the tests share.

Datasets are parquet files on a local folder or on S3 (AWS, MinIO, ODF, moto), laid out as
`<dataset>/dt=YYYY-MM-DD/<run_id>.parquet`, with the contracts of `datasets.py`. One code path
serves both stores: everything goes through `pyarrow.fs`, so a test on a tmp folder exercises
the same logic production runs on S3.

Why commit markers. A DAG run writes several datasets one after the other; a task can die
between two of them, and Airflow retries it under the same run id. So a file being present
proves nothing. A run becomes visible only when `commit()` writes
`_commits/dt=YYYY-MM-DD/<run_id>.json`, which names each dataset file of the run with its row
count, size and sha256. Readers start from the markers, never from a directory listing, take
the latest committed run of a partition by commit time, and check the sha256 of what they read
against the marker. A crash before the commit leaves files nobody reads; the retry rewrites
them and commits. Re-writing a dataset of an already committed run first marks the run as
reopened, so readers fall back to the previous complete run until the rewrite is committed
again, instead of meeting a file that no longer matches its marker.

Why each publish is a single step. On a local folder a file is written under a hidden
temporary name and renamed into place; on S3 a PUT (or a completed multipart upload) appears
whole or not at all. So no reader, and no marker, ever sees half a file.

Run ids come from Airflow (`scheduled__2026-11-27T00:00:00+00:00`) and contain characters that
are unsafe in S3 keys and awkward in paths. `run_key()` turns them into a safe file name,
deterministically; the original id is kept in the parquet metadata and in the marker.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .datasets import ALL, SCHEMA_VERSION, Dataset

if TYPE_CHECKING:
    from botocore.client import BaseClient

log = logging.getLogger(__name__)

DEFAULT_LAKE_URL = "file://./data/lake"
COMMITS_DIR = "_commits"
# Version of the commit-marker JSON layout (not of the datasets: that is SCHEMA_VERSION).
MARKER_FORMAT = 1
METADATA_PREFIX = "reglife."
PARQUET_COMPRESSION = "zstd"

# A sanitised run id must be unambiguous next to the append parts `<run_key>-NNNNNN.parquet`.
_UNSAFE_RUN_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_LOOKS_LIKE_APPEND_PART = re.compile(r"-\d{6}$")
_RUN_KEY_MAX_LENGTH = 120
_APPEND_PART_NAME = re.compile(r"^(?P<key>.+)-(?P<seq>\d{6})\.parquet$")
_MAX_APPEND_PARTS = 999_999
_PARTITION_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
# Reading the commit markers of a long history one GET after another is slow on S3.
_MARKER_READ_THREADS = 16


class LakeError(Exception):
    """Anything the lake refuses to do, with a message that says how to fix it."""


class LakeSchemaError(LakeError, ValueError):
    """A frame does not match its dataset's contract; `problems` has one entry per column."""

    def __init__(self, dataset: str, problems: list[ColumnProblem]):
        self.dataset = dataset
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"{dataset}: the frame does not match the contract in registry_lifecycle/datasets.py "
            f"(schema version {SCHEMA_VERSION}); nothing was written:\n{lines}")


class LakeNotFound(LakeError, LookupError):
    """The partition, run or day asked for has no committed data."""


class LakeSchemaVersionError(LakeError):
    """A file was written by a newer registry-lifecycle than the one reading it."""


class LakeIntegrityError(LakeError):
    """A committed file no longer matches its commit marker."""


@dataclass(frozen=True)
class ColumnProblem:
    column: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"column {self.column!r} {self.problem}: {self.fix}"


@dataclass(frozen=True)
class S3Credentials:
    """Explicit S3 credentials; without them the standard AWS env/config/instance chain applies.

    Every field is left out of repr() so that credentials never reach a log line by accident.
    """

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WriteResult:
    """What one write or append published: enough for `commit()` and for a log line."""

    dataset: str
    day: date
    run_id: str                 # as the caller gave it (the Airflow run id)
    path: str                   # relative to the lake root
    rows: int
    size_bytes: int
    sha256: str
    part: int | None = None     # sequence number of an append part; None for a run's file


@dataclass(frozen=True)
class CommittedFile:
    """One dataset file as its commit marker describes it."""

    path: str
    rows: int
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Commit:
    """A committed run of one day: which file of each dataset it published, and when."""

    day: date
    run_id: str
    committed_at: datetime
    files: Mapping[str, CommittedFile]


@dataclass(frozen=True)
class Snapshot:
    """A committed partition read back, with the run it came from."""

    dataset: str
    day: date
    run_id: str
    committed_at: datetime
    frame: pd.DataFrame = field(repr=False)


@dataclass(frozen=True)
class _Marker:
    """A commit marker as stored; `reopened` runs are invisible to readers."""

    commit: Commit
    reopened: bool


def run_key(run_id: str) -> str:
    """The file-name form of a run id: safe in paths and S3 keys, deterministic, unambiguous.

    Safe ids (letters, digits, `.`, `_`, `-`, starting with a letter or digit) are kept as
    they are. Any other id has its unsafe characters replaced by `_` and gets a short hash of
    the original appended, so two ids that differ only in unsafe characters (`...+00:00` and
    `...-00:00`) never share a file. An id ending in `-` and six digits is hashed as well,
    because that is how append parts are named.
    """
    if not isinstance(run_id, str) or not run_id.strip():
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    key = _UNSAFE_RUN_ID_CHARS.sub("_", run_id)
    if not key[0].isalnum():
        key = "r" + key
    if key != run_id or len(key) > _RUN_KEY_MAX_LENGTH or _LOOKS_LIKE_APPEND_PART.search(key):
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        key = f"{key[:_RUN_KEY_MAX_LENGTH]}_{digest}"
    return key


def _day_text(day: date) -> str:
    # datetime is a date subclass; its .isoformat() would put a time into the partition name,
    # and which calendar day a datetime belongs to depends on a time zone only the caller knows.
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"day must be a datetime.date, got {day!r}; "
                        "for an Airflow logical date pass logical_date.date()")
    return day.isoformat()


def _resolve(dataset: Dataset | str) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    try:
        return ALL[dataset]
    except KeyError:
        raise LakeError(f"unknown dataset {dataset!r}; the contracts in registry_lifecycle/datasets.py "
                        f"are: {', '.join(sorted(ALL))}") from None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _describe(schema_field: pa.Field) -> str:
    return f"{schema_field.type}, {'nullable' if schema_field.nullable else 'not null'}"


def _format_days(days: list[date]) -> str:
    if not days:
        return "none"
    text = [d.isoformat() for d in days]
    if len(text) > 10:
        text = text[:3] + [f"... ({len(days) - 6} more) ..."] + text[-3:]
    return ", ".join(text)


# --------------------------------------------------------------------------------------------
# Frame -> contract-conforming arrow table
# --------------------------------------------------------------------------------------------

def _convert_column(schema_field: pa.Field, series: pd.Series) -> tuple[pa.Array | pa.ChunkedArray | None,
                                                                        ColumnProblem | None]:
    """The column as arrow data of the contract's type, or the reason it cannot be.

    pyarrow alone is too lenient for a contract: it turns 0/1 into booleans, "12" into 12 and
    a datetime with a time of day into a date. So the kind of values is checked first (with
    pandas' own inference), and pyarrow only converts what is already the right kind.
    """
    name, target = schema_field.name, schema_field.type

    def problem(text: str, fix: str) -> tuple[None, ColumnProblem]:
        return None, ColumnProblem(name, text, fix)

    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if series.isna().all():
        return pa.nulls(len(series), type=target), None
    kind = pd.api.types.infer_dtype(series, skipna=True)
    expected = f"expected {target}"

    if pa.types.is_timestamp(target):
        if kind == "datetime64":
            if getattr(series.dt, "tz", None) is None:
                return problem(f"has naive timestamps ({series.dtype}), {expected}",
                               f"say which time zone they are in, e.g. frame[{name!r}] = "
                               f"frame[{name!r}].dt.tz_localize('UTC')")
            # The contract stores microseconds; finer digits are cut rather than refused.
            series = series.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        elif kind == "datetime":
            if any(value.tzinfo is None for value in series.dropna()):
                return problem(f"has naive datetime objects, {expected}",
                               "give every value a tzinfo (e.g. datetime.timezone.utc)")
            series = pd.to_datetime(series, utc=True).astype("datetime64[us, UTC]")
        elif kind in ("string", "bytes"):
            return problem(f"has text values, {expected}",
                           f"parse it first: pd.to_datetime(frame[{name!r}], utc=True)")
        else:
            return problem(f"has {kind} values ({series.dtype}), {expected}",
                           "convert it to UTC timestamps before writing")
    elif pa.types.is_date(target):
        if kind == "datetime64":
            if getattr(series.dt, "tz", None) is not None or not (series.dropna() == series.dropna().dt.normalize()).all():
                return problem(f"has timestamps ({series.dtype}), {expected}",
                               f"pick the calendar day explicitly: frame[{name!r}].dt.date")
        elif kind != "date":
            fix = (f"parse it first: pd.to_datetime(frame[{name!r}]).dt.date" if kind == "string"
                   else f"convert it to datetime.date values: frame[{name!r}].dt.date")
            return problem(f"has {kind} values ({series.dtype}), {expected}", fix)
    elif pa.types.is_boolean(target):
        if kind != "boolean":
            return problem(f"has {kind} values ({series.dtype}), {expected}",
                           "give it True/False values (0/1 or 'yes'/'no' are not booleans)")
    elif pa.types.is_integer(target) or pa.types.is_floating(target):
        allowed = {"integer", "floating", "mixed-integer-float"}
        if kind not in allowed:
            return problem(f"has {kind} values ({series.dtype}), {expected}",
                           f"convert it to numbers first, e.g. pd.to_numeric(frame[{name!r}])")
    elif pa.types.is_string(target):
        if kind != "string":
            return problem(f"has {kind} values ({series.dtype}), {expected}",
                           f"give it text values (e.g. frame[{name!r}].astype('string')) or fix the producer")

    try:
        array = pa.array(series, type=target, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as error:
        return problem(f"cannot be stored as {target} ({error})",
                       f"make its values fit {target} before writing")
    return array, None


def _to_table(dataset: Dataset, frame: pd.DataFrame, metadata: dict[str, str]) -> pa.Table:
    """The frame as a table of exactly the contract's schema, or LakeSchemaError listing every problem."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{dataset.name}: expected a pandas DataFrame, got {type(frame).__name__}")
    schema = dataset.schema
    problems: list[ColumnProblem] = []
    columns = list(frame.columns)
    for column in sorted({str(c) for c in columns if columns.count(c) > 1}):
        problems.append(ColumnProblem(column, "appears more than once", "keep a single column of that name"))
    for column in columns:
        if column not in schema.names:
            problems.append(ColumnProblem(
                str(column), "is not in the contract",
                "drop it before writing, or add it to the contract in registry_lifecycle/datasets.py "
                "and bump SCHEMA_VERSION"))
    arrays = []
    for schema_field in schema:
        if schema_field.name not in columns:
            problems.append(ColumnProblem(schema_field.name, "is missing",
                                          f"add it ({_describe(schema_field)})"))
            continue
        if columns.count(schema_field.name) > 1:
            continue
        array, problem = _convert_column(schema_field, frame[schema_field.name])
        if problem is None and array is not None and not schema_field.nullable and array.null_count:
            first = pc.index(pc.is_null(array), True).as_py()
            problem = ColumnProblem(
                schema_field.name,
                f"has {array.null_count} null value(s) (first at row {frame.index[first]!r}) "
                "but the contract says not null",
                "drop or fill those rows before writing, or make the column nullable in "
                "registry_lifecycle/datasets.py and bump SCHEMA_VERSION")
        if problem is not None:
            problems.append(problem)
        arrays.append(array)
    if problems:
        raise LakeSchemaError(dataset.name, problems)
    return pa.Table.from_arrays(arrays, schema=schema.with_metadata(metadata))


def _metadata(dataset: Dataset, day: date, run_id: str,
              extra_metadata: Mapping[str, str] | None) -> dict[str, str]:
    extra = dict(extra_metadata or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"extra_metadata must map str to str, got {key!r}: {value!r}")
        if key.startswith(METADATA_PREFIX):
            raise ValueError(f"extra_metadata key {key!r}: the prefix {METADATA_PREFIX!r} is reserved for the lake")
    return {
        **extra,
        f"{METADATA_PREFIX}schema_version": str(SCHEMA_VERSION),
        f"{METADATA_PREFIX}dataset": dataset.name,
        f"{METADATA_PREFIX}run_id": run_id,
        f"{METADATA_PREFIX}day": day.isoformat(),
        f"{METADATA_PREFIX}written_at": _utcnow().isoformat(),
    }


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=PARQUET_COMPRESSION)
    return sink.getvalue().to_pybytes()


def _file_metadata(schema: pa.Schema) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def _check_schema_version(metadata: Mapping[str, str], where: str) -> int:
    raw = metadata.get(f"{METADATA_PREFIX}schema_version")
    if raw is None:
        raise LakeError(f"{where} has no {METADATA_PREFIX}schema_version metadata: it was not written by "
                        "registry-lifecycle's lake; remove it or write it with Lake.write()")
    version = int(raw)
    if version > SCHEMA_VERSION:
        raise LakeSchemaVersionError(
            f"{where} was written with schema version {version}, but this registry-lifecycle only "
            f"understands up to version {SCHEMA_VERSION}: upgrade registry-lifecycle (the DAG "
            "image / `pip install -U registry-lifecycle`) wherever this reader runs")
    return version


# --------------------------------------------------------------------------------------------
# The lake
# --------------------------------------------------------------------------------------------

class Lake:
    """Partitioned parquet datasets under one URL: a folder, `file://...` or `s3://bucket/prefix`.

    S3 options: `s3_endpoint_url` for MinIO, ODF or moto (`http://` is allowed there),
    `s3_credentials` to pass keys explicitly (otherwise the standard AWS chain: environment,
    `~/.aws`, instance metadata), `s3_region` (otherwise AWS_REGION / AWS_DEFAULT_REGION, and
    us-east-1 for a custom endpoint). Credentials never appear in `repr()` or in the logs, and
    a URL that carries them is refused so that they cannot leak through an Airflow variable.
    """

    def __init__(self, url: str | os.PathLike[str], *, s3_endpoint_url: str | None = None,
                 s3_credentials: S3Credentials | None = None, s3_region: str | None = None):
        text = os.fspath(url)
        self._endpoint_url: str | None = None
        self._bucket: str | None = None
        self._s3_prefix = ""
        self._credentials = s3_credentials
        self._region: str | None = None
        self._boto_client: BaseClient | None = None
        # Results of this process's writes, so commit() by dataset name need not re-read files.
        self._written: dict[tuple[str, str, str], WriteResult] = {}

        if text.startswith("s3://"):
            parts = urlsplit(text)
            if "@" in parts.netloc:
                raise ValueError("the lake URL must not contain credentials; pass s3_credentials or "
                                 "use the AWS environment/config chain")
            if parts.query or parts.fragment or not parts.netloc:
                raise ValueError(f"expected s3://bucket/prefix, got {text!r}")
            self._bucket = parts.netloc
            self._s3_prefix = parts.path.strip("/")
            self._root = f"{self._bucket}/{self._s3_prefix}" if self._s3_prefix else self._bucket
            self._url = f"s3://{self._root}"
            self._fs: pafs.FileSystem = self._s3_filesystem(s3_endpoint_url, s3_region)
        elif "://" in text and not text.startswith("file://"):
            raise ValueError(f"unsupported lake URL {text!r}: use a folder path, file://PATH or s3://bucket/prefix")
        else:
            if s3_endpoint_url is not None or s3_credentials is not None or s3_region is not None:
                raise ValueError(f"S3 options were given for a local lake {text!r}")
            path = text.removeprefix("file://")
            self._root = os.path.abspath(os.path.expanduser(path))
            self._url = f"file://{self._root}"
            self._fs = pafs.LocalFileSystem()

    def _s3_filesystem(self, endpoint_url: str | None, region: str | None) -> pafs.S3FileSystem:
        options: dict[str, Any] = {}
        self._region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if endpoint_url:
            endpoint = urlsplit(endpoint_url)
            if endpoint.scheme not in ("http", "https") or not endpoint.netloc or "@" in endpoint.netloc:
                raise ValueError("s3_endpoint_url must look like https://host[:port] without credentials")
            self._endpoint_url = f"{endpoint.scheme}://{endpoint.netloc}"
            options.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme)
            # MinIO, ODF and moto ignore the region, but request signing still needs one.
            self._region = self._region or "us-east-1"
        if self._region:
            options["region"] = self._region
        if self._credentials is not None:
            options.update(access_key=self._credentials.access_key_id,
                           secret_key=self._credentials.secret_access_key,
                           session_token=self._credentials.session_token)
        return pafs.S3FileSystem(**options)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Lake:
        """The lake that LAKE_URL (default file://./data/lake) and LAKE_S3_ENDPOINT_URL name.

        The endpoint falls back to AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL, the AWS SDKs' own
        variables, so a pod configured for the AWS CLI needs nothing more. Credentials always
        come from the standard AWS chain here, never from a lake-specific variable.
        """
        env = os.environ if environ is None else environ
        url = env.get("LAKE_URL") or DEFAULT_LAKE_URL
        endpoint = None
        if url.startswith("s3://"):
            endpoint = (env.get("LAKE_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3")
                        or env.get("AWS_ENDPOINT_URL") or None)
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        return cls(url, s3_endpoint_url=endpoint, s3_region=region if url.startswith("s3://") else None)

    @property
    def url(self) -> str:
        """The normalised lake URL (absolute for a folder); never contains credentials."""
        return self._url

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem the lake reads and writes through."""
        return self._fs

    def __repr__(self) -> str:
        endpoint = f", endpoint={self._endpoint_url!r}" if self._endpoint_url else ""
        return f"Lake({self._url!r}{endpoint})"

    # ---------------------------------------------------------------- paths and raw storage

    def _abs(self, relative: str) -> str:
        return f"{self._root}/{relative}"

    def _relative(self, absolute: str) -> str:
        return absolute[len(self._root) + 1:]

    @staticmethod
    def _data_path(dataset: str, day: str, key: str, part: int | None = None) -> str:
        name = key if part is None else f"{key}-{part:06d}"
        return f"{dataset}/dt={day}/{name}.parquet"

    @staticmethod
    def _marker_path(day: str, key: str) -> str:
        return f"{COMMITS_DIR}/dt={day}/{key}.json"

    @property
    def _is_local(self) -> bool:
        return isinstance(self._fs, pafs.LocalFileSystem)

    def _list(self, relative_dir: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self._abs(relative_dir), recursive=True, allow_not_found=True)
        return [info for info in self._fs.get_file_info(selector) if info.type == pafs.FileType.File]

    def _read_bytes(self, relative: str) -> bytes:
        with self._fs.open_input_stream(self._abs(relative)) as stream:
            return stream.read()

    def _size(self, relative: str) -> int | None:
        info = self._fs.get_file_info(self._abs(relative))
        return info.size if info.type == pafs.FileType.File else None

    def _publish(self, relative: str, data: bytes, *, overwrite: bool) -> bool:
        """Make `data` appear at `relative` in one step; False if `overwrite` is off and it exists."""
        target = self._abs(relative)
        if not self._is_local:
            if overwrite:
                with self._fs.open_output_stream(target) as stream:
                    stream.write(data)
                return True
            return self._s3_put_if_absent(relative, data)

        directory, name = target.rsplit("/", 1)
        self._fs.create_dir(directory, recursive=True)
        # Hidden name: readers skip dot files, so a crash leaves nothing they could pick up.
        temporary = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self._fs.open_output_stream(temporary) as stream:
                stream.write(data)
            if overwrite:
                self._fs.move(temporary, target)
                return True
            # pyarrow's move() replaces an existing file silently; a hard link refuses to, which
            # makes "publish unless present" one atomic step with no window between check and act.
            try:
                os.link(temporary, target)
            except FileExistsError:
                return False
            return True
        finally:
            if self._fs.get_file_info(temporary).type != pafs.FileType.NotFound:
                self._fs.delete_file(temporary)

    def _s3_put_if_absent(self, relative: str, data: bytes) -> bool:
        """A conditional PUT (If-None-Match: *), through boto3.

        pyarrow.fs has no conditional writes, and a list-then-put leaves a window in which a
        concurrent retry of the same task could replace an audit part. S3, MinIO and moto
        answer 412 when the key exists.
        """
        from botocore.exceptions import ClientError

        key = f"{self._s3_prefix}/{relative}" if self._s3_prefix else relative
        try:
            self._s3_client().put_object(Bucket=self._bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def _s3_client(self) -> BaseClient:
        if self._boto_client is None:
            import boto3
            from botocore.config import Config

            credentials: dict[str, str | None] = {}
            if self._credentials is not None:
                credentials = {"aws_access_key_id": self._credentials.access_key_id,
                               "aws_secret_access_key": self._credentials.secret_access_key,
                               "aws_session_token": self._credentials.session_token}
            # Checksums only when required: newer botocore adds CRC headers by default that
            # older MinIO and Ceph RGW (ODF) releases reject.
            config = Config(request_checksum_calculation="when_required",
                            response_checksum_validation="when_required")
            self._boto_client = boto3.client("s3", endpoint_url=self._endpoint_url, region_name=self._region,
                                             config=config, **credentials)
        return self._boto_client

    # ---------------------------------------------------------------- commit markers

    def _load_marker(self, relative: str) -> _Marker | None:
        try:
            raw = json.loads(self._read_bytes(relative))
        except FileNotFoundError:
            return None
        if raw.get("format", 0) > MARKER_FORMAT:
            raise LakeSchemaVersionError(
                f"{self._url}/{relative} uses commit-marker format {raw['format']}, newer than this "
                f"registry-lifecycle understands ({MARKER_FORMAT}): upgrade registry-lifecycle")
        files = {name: CommittedFile(path=entry["path"], rows=entry["rows"], size_bytes=entry["size_bytes"],
                                     sha256=entry["sha256"])
                 for name, entry in raw["datasets"].items()}
        commit = Commit(day=date.fromisoformat(raw["day"]), run_id=raw["run_id"],
                        committed_at=datetime.fromisoformat(raw["committed_at"]), files=files)
        return _Marker(commit=commit, reopened=raw["state"] == "reopened")

    def _store_marker(self, commit: Commit, *, reopened: bool) -> None:
        document = {
            "format": MARKER_FORMAT,
            "state": "reopened" if reopened else "committed",
            "run_id": commit.run_id,
            "day": commit.day.isoformat(),
            "committed_at": commit.committed_at.isoformat(),
            "schema_version": SCHEMA_VERSION,
            "datasets": {name: {"path": f.path, "rows": f.rows, "size_bytes": f.size_bytes, "sha256": f.sha256}
                         for name, f in sorted(commit.files.items())},
        }
        data = json.dumps(document, indent=2).encode()
        self._publish(self._marker_path(commit.day.isoformat(), run_key(commit.run_id)), data, overwrite=True)

    def _markers(self, relative_paths: Iterable[str]) -> list[_Marker]:
        paths = list(relative_paths)
        if len(paths) <= 1:
            loaded = [self._load_marker(p) for p in paths]
        else:
            with ThreadPoolExecutor(max_workers=min(_MARKER_READ_THREADS, len(paths))) as pool:
                loaded = list(pool.map(self._load_marker, paths))
        return [m for m in loaded if m is not None]

    def _marker_paths(self, day: str | None = None) -> list[str]:
        directory = COMMITS_DIR if day is None else f"{COMMITS_DIR}/dt={day}"
        paths = (self._relative(info.path) for info in self._list(directory))
        return [p for p in paths if p.endswith(".json") and not p.rsplit("/", 1)[-1].startswith(".")]

    def commits(self, day: date) -> list[Commit]:
        """The committed runs of a day, oldest commit first (reopened runs are not listed)."""
        markers = self._markers(self._marker_paths(_day_text(day)))
        return sorted((m.commit for m in markers if not m.reopened),
                      key=lambda c: (c.committed_at, run_key(c.run_id)))

    # ---------------------------------------------------------------- writing

    def _partition_files(self, dataset: str, day: str) -> tuple[list[str], dict[str, list[int]]]:
        """Run files and append parts (run key -> sequence numbers) present in a partition."""
        run_files: list[str] = []
        parts: dict[str, list[int]] = {}
        for info in self._list(f"{dataset}/dt={day}"):
            name = info.base_name
            if name.startswith(".") or not name.endswith(".parquet"):
                continue
            match = _APPEND_PART_NAME.match(name)
            if match:
                parts.setdefault(match["key"], []).append(int(match["seq"]))
            else:
                run_files.append(name)
        return run_files, parts

    def write(self, dataset: Dataset | str, day: date, run_id: str, frame: pd.DataFrame, *,
              extra_metadata: dict[str, str] | None = None) -> WriteResult:
        """Validate `frame` against the contract and store it as this run's file of the partition.

        Nothing is visible until `commit()` (or the end of a `run()` block). Writing the same
        (dataset, day, run) again replaces the file; if that run was already committed, the
        run is reopened first, so readers use the previous complete run until it is committed
        again. Raises LakeSchemaError, naming every offending column, before anything is stored.
        """
        ds = _resolve(dataset)
        day_text, key = _day_text(day), run_key(run_id)
        table = _to_table(ds, frame, _metadata(ds, day, run_id, extra_metadata))
        _, parts = self._partition_files(ds.name, day_text)
        if parts:
            raise LakeError(f"{ds.name} for {day_text} holds append parts: it is an append-only log there, "
                            "so use Lake.append(), which never replaces what is stored")
        self._reopen_if_committed(ds.name, day, run_id)
        data = _parquet_bytes(table)
        relative = self._data_path(ds.name, day_text, key)
        self._publish(relative, data, overwrite=True)
        result = WriteResult(dataset=ds.name, day=day, run_id=run_id, path=relative, rows=table.num_rows,
                             size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        self._written[(ds.name, day_text, key)] = result
        log.info("wrote %s for %s, run %s: %d rows, %d bytes (not visible until committed)",
                 ds.name, day_text, run_id, result.rows, result.size_bytes)
        return result

    def _reopen_if_committed(self, dataset: str, day: date, run_id: str) -> None:
        marker_path = self._marker_path(day.isoformat(), run_key(run_id))
        marker = self._load_marker(marker_path)
        if marker is None or dataset not in marker.commit.files:
            return
        # The other datasets' entries stay: their files are untouched, and the next commit of
        # this run merges them back in. The rewritten dataset's entry goes, since its sha256
        # is about to be wrong.
        remaining = {name: f for name, f in marker.commit.files.items() if name != dataset}
        self._store_marker(Commit(day=day, run_id=run_id, committed_at=marker.commit.committed_at,
                                  files=remaining), reopened=True)
        log.warning("run %s of %s was committed; rewriting %s reopens it until it is committed again",
                    run_id, day.isoformat(), dataset)

    def append(self, dataset: Dataset | str, day: date, run_id: str, frame: pd.DataFrame, *,
               extra_metadata: dict[str, str] | None = None) -> WriteResult:
        """Add a new part to an append-only log (the GC audit log); never replaces a stored part.

        Each call stores `<dataset>/dt=DAY/<run_id>-NNNNNN.parquet` with the next free sequence
        number of that run, and the part is visible to readers as soon as this returns: no
        commit. That is the point of an audit log: a GC task that deleted a batch and then
        crashed must still leave the record of that batch, and a retry adds its own parts
        instead of rewriting history. A part is published in one step and is refused, not
        replaced, if its name is taken (hard link locally, conditional PUT on S3); a retry of
        a lost race takes the next number. Readers of such a partition get every part of every
        run, in the order they were written. A partition is either an append-only log or
        a partition of run files: mixing both is refused.
        """
        ds = _resolve(dataset)
        day_text, key = _day_text(day), run_key(run_id)
        metadata = _metadata(ds, day, run_id, extra_metadata)
        run_files, parts = self._partition_files(ds.name, day_text)
        if run_files:
            raise LakeError(f"{ds.name} for {day_text} holds run files written with Lake.write(); "
                            "an append-only log cannot share their partition")
        table = _to_table(ds, frame, metadata)
        seq = max(parts.get(key, [0])) + 1
        while seq <= _MAX_APPEND_PARTS:
            table = table.replace_schema_metadata({**metadata, f"{METADATA_PREFIX}part": str(seq)})
            data = _parquet_bytes(table)
            relative = self._data_path(ds.name, day_text, key, seq)
            if self._publish(relative, data, overwrite=False):
                log.info("appended %s for %s, run %s, part %d: %d rows", ds.name, day_text, run_id, seq,
                         table.num_rows)
                return WriteResult(dataset=ds.name, day=day, run_id=run_id, path=relative, rows=table.num_rows,
                                   size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), part=seq)
            seq += 1
        raise LakeError(f"{ds.name} for {day_text}, run {run_id}: all {_MAX_APPEND_PARTS} part numbers are taken")

    def commit(self, day: date, run_id: str, datasets: Iterable[Dataset | str | WriteResult]) -> Commit:
        """Publish the run's files of `datasets` for `day`: from now on readers see them.

        Takes WriteResults (cheap) or dataset names (the file is read back to record its row
        count, size and sha256, e.g. when another Airflow task wrote it). Committing again is
        harmless: an unchanged commit is left as it is, keeping its commit time; new or
        rewritten datasets are merged into the run's marker with a new commit time.
        """
        day_text, key = _day_text(day), run_key(run_id)
        entries: dict[str, CommittedFile] = {}
        for item in datasets:
            name, entry = self._committable(item, day, day_text, run_id, key)
            entries[name] = entry
        if not entries:
            raise LakeError(f"nothing to commit for run {run_id} of {day_text}: name the datasets it wrote")

        marker = self._load_marker(self._marker_path(day_text, key))
        files = dict(marker.commit.files) if marker else {}
        files.update(entries)
        if marker is not None and not marker.reopened and files == dict(marker.commit.files):
            log.info("run %s of %s was already committed with these files", run_id, day_text)
            return marker.commit
        commit = Commit(day=day, run_id=run_id, committed_at=_utcnow(), files=files)
        self._store_marker(commit, reopened=False)
        log.info("committed run %s of %s: %s", run_id, day_text,
                 ", ".join(f"{n} ({f.rows} rows)" for n, f in sorted(files.items())))
        return commit

    def _committable(self, item: Dataset | str | WriteResult, day: date, day_text: str, run_id: str,
                     key: str) -> tuple[str, CommittedFile]:
        if isinstance(item, WriteResult):
            if item.day != day or run_key(item.run_id) != key or item.part is not None:
                raise LakeError(f"{item.path} is not the {item.dataset} file of run {run_id} for {day_text}")
            result: WriteResult | None = item
            name = item.dataset
        else:
            name = _resolve(item).name
            result = self._written.get((name, day_text, key))
        relative = self._data_path(name, day_text, key)
        size = self._size(relative)
        if size is None:
            _, parts = self._partition_files(name, day_text)
            hint = (" (it is an append-only log there: its parts are visible without a commit)" if parts
                    else "; write it first")
            raise LakeError(f"cannot commit {name} for run {run_id} of {day_text}: {self._url}/{relative} "
                            f"does not exist{hint}")
        if result is not None and result.size_bytes == size:
            return name, CommittedFile(relative, result.rows, result.size_bytes, result.sha256)
        data = self._read_bytes(relative)
        metadata = _file_metadata(pq.read_schema(pa.BufferReader(data)))
        if metadata.get(f"{METADATA_PREFIX}run_id") != run_id:
            raise LakeError(f"{self._url}/{relative} was written by run "
                            f"{metadata.get(f'{METADATA_PREFIX}run_id')!r}, not {run_id!r}")
        rows = pq.read_metadata(pa.BufferReader(data)).num_rows
        return name, CommittedFile(relative, rows, len(data), hashlib.sha256(data).hexdigest())

    @contextmanager
    def run(self, day: date, run_id: str) -> Iterator[LakeRun]:
        """`with lake.run(day, run_id) as run: run.write(...)`: commits on success, only then.

        An exception inside the block propagates and commits nothing; the files already
        written stay invisible until a retry of the run rewrites and commits them.
        """
        _day_text(day)
        lake_run = LakeRun(self, day, run_id)
        yield lake_run
        self.commit(day, run_id, lake_run.results)

    # ---------------------------------------------------------------- reading

    def _committed_runs(self, dataset: str, day: date) -> list[Commit]:
        return [c for c in self.commits(day) if dataset in c.files]

    def _committed_days(self, dataset: str) -> dict[date, list[Commit]]:
        """Committed runs per day that include `dataset`, reading only markers that can."""
        run_files = {(info.path.rsplit("/", 2)[-2], info.base_name.removesuffix(".parquet"))
                     for info in self._list(dataset)
                     if info.base_name.endswith(".parquet") and not _APPEND_PART_NAME.match(info.base_name)}
        candidates = []
        for path in self._marker_paths():
            partition, name = path.rsplit("/", 2)[-2:]
            if (partition, name.removesuffix(".json")) in run_files:
                candidates.append(path)
        by_day: dict[date, list[Commit]] = {}
        for marker in self._markers(candidates):
            if not marker.reopened and dataset in marker.commit.files:
                by_day.setdefault(marker.commit.day, []).append(marker.commit)
        for commits in by_day.values():
            commits.sort(key=lambda c: (c.committed_at, run_key(c.run_id)))
        return by_day

    def _append_days(self, dataset: str) -> set[date]:
        days = set()
        for info in self._list(dataset):
            match = _PARTITION_DIR.match(info.path.rsplit("/", 2)[-2])
            if match and _APPEND_PART_NAME.match(info.base_name):
                days.add(date.fromisoformat(match[1]))
        return days

    def days(self, dataset: Dataset | str) -> list[date]:
        """Every day with committed data (or append parts) of the dataset, oldest first."""
        name = _resolve(dataset).name
        return sorted(set(self._committed_days(name)) | self._append_days(name))

    def latest_day(self, dataset: Dataset | str, on_or_before: date | None = None) -> date:
        """The newest day with committed data, optionally not after `on_or_before`."""
        ds = _resolve(dataset)
        days = self.days(ds)
        eligible = [d for d in days if on_or_before is None or d <= on_or_before]
        if not eligible:
            bound = f" on or before {_day_text(on_or_before)}" if on_or_before else ""
            raise LakeNotFound(f"{ds.name} has no committed data{bound} in {self._url}; "
                               f"days with data: {_format_days(days)}")
        return eligible[-1]

    def _not_found(self, ds: Dataset, day: date, detail: str) -> LakeNotFound:
        available = self.days(ds)
        message = (f"{ds.name} has {detail} for {day.isoformat()} in {self._url}; "
                   f"days with committed {ds.name}: {_format_days(available)}")
        if ds.snapshot:
            message += (f". {ds.name} is a snapshot of the cluster at extraction time and cannot be "
                        "re-extracted for a past date: use one of the days listed")
        return LakeNotFound(message)

    def _read_committed(self, ds: Dataset, commit: Commit, columns: list[str] | None) -> pa.Table:
        entry = commit.files[ds.name]
        where = f"{self._url}/{entry.path}"
        try:
            data = self._read_bytes(entry.path)
        except FileNotFoundError:
            raise LakeIntegrityError(f"{where} is gone although run {commit.run_id} committed it; "
                                     "re-run that run to rewrite it") from None
        if len(data) != entry.size_bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise LakeIntegrityError(f"{where} no longer matches what run {commit.run_id} committed: "
                                     "it was changed after the commit; re-run that run to rewrite and commit it")
        return self._parse(data, where, columns)

    @staticmethod
    def _parse(data: bytes, where: str, columns: list[str] | None) -> pa.Table:
        table = pq.read_table(pa.BufferReader(data), columns=columns)
        _check_schema_version(_file_metadata(table.schema), where)
        return table

    def _check_columns(self, ds: Dataset, columns: list[str] | None) -> None:
        unknown = [c for c in columns or [] if c not in ds.schema.names]
        if unknown:
            raise LakeError(f"{ds.name} has no column(s) {', '.join(map(repr, unknown))}; "
                            f"its columns are: {', '.join(ds.schema.names)}")

    def _select(self, ds: Dataset, day: date, run_id: str | None,
                commits: list[Commit] | None = None) -> Commit | None:
        """The committed run to read: the given one, or the latest; None if the day has none."""
        committed = self._committed_runs(ds.name, day) if commits is None else commits
        if run_id is None:
            return committed[-1] if committed else None
        for commit in committed:
            if commit.run_id == run_id:
                return commit
        return None

    def _read_parts(self, ds: Dataset, day: date, run_id: str | None,
                    columns: list[str] | None) -> pa.Table | None:
        day_text = day.isoformat()
        _, parts = self._partition_files(ds.name, day_text)
        wanted = {run_key(run_id)} if run_id is not None else set(parts)
        paths = [self._data_path(ds.name, day_text, key, seq)
                 for key in sorted(wanted & set(parts)) for seq in sorted(parts[key])]
        if not paths:
            return None
        tables = [self._parse(self._read_bytes(p), f"{self._url}/{p}", columns) for p in paths]
        # Log order is write order, across runs too (a retry's parts come after the original's).
        tables.sort(key=lambda t: _file_metadata(t.schema)[f"{METADATA_PREFIX}written_at"])
        return pa.concat_tables([t.replace_schema_metadata(None) for t in tables])

    def _read_table(self, ds: Dataset, day: date, run_id: str | None, columns: list[str] | None,
                    commits: list[Commit] | None = None) -> tuple[pa.Table, Commit | None]:
        commit = self._select(ds, day, run_id, commits)
        if commit is not None:
            return self._read_committed(ds, commit, columns), commit
        parts = self._read_parts(ds, day, run_id, columns)
        if parts is not None:
            return parts, None
        if run_id is None:
            raise self._not_found(ds, day, "no committed run")
        runs = ", ".join(c.run_id for c in self._committed_runs(ds.name, day)) or "none"
        raise self._not_found(ds, day, f"no committed data from run {run_id!r} (committed runs that day: {runs})")

    def read(self, dataset: Dataset | str, day: date, *, run_id: str | None = None,
             columns: list[str] | None = None) -> pd.DataFrame:
        """The partition of `day`: its latest committed run, or the run `run_id` if given.

        For an append-only log, every part of every run (or only `run_id`'s parts). Raises
        LakeNotFound listing the days that do exist when there is nothing to read.
        """
        ds = _resolve(dataset)
        _day_text(day)
        self._check_columns(ds, columns)
        table, _ = self._read_table(ds, day, run_id, columns)
        return table.to_pandas()

    def read_staged(self, dataset: Dataset | str, day: date, run_id: str, *,
                    columns: list[str] | None = None) -> pd.DataFrame:
        """A run's own file before it is committed: what its quality gate inspects.

        Only the run that wrote the file should call this; every other reader sees committed
        runs only. Raises LakeNotFound when the run wrote no such dataset.
        """
        ds = _resolve(dataset)
        self._check_columns(ds, columns)
        path = self._data_path(ds.name, _day_text(day), run_key(run_id))
        if self._size(path) is None:
            raise LakeNotFound(f"run {run_id!r} wrote no {ds.name} for {day.isoformat()} in {self._url}")
        return self._parse(self._read_bytes(path), f"{self._url}/{path}", columns).to_pandas()

    def read_range(self, dataset: Dataset | str, first: date, last: date, *,
                   columns: list[str] | None = None, require_every_day: bool = False) -> pd.DataFrame:
        """The latest committed run of each day from `first` to `last` (inclusive), concatenated.

        For time-ranged datasets such as pulls_daily. Days without data are skipped unless
        `require_every_day`, which raises LakeNotFound naming the missing days (a backtest
        over a gap would otherwise read silence as "no pulls").
        """
        ds = _resolve(dataset)
        first_text, last_text = _day_text(first), _day_text(last)
        if first > last:
            raise ValueError(f"first ({first_text}) is after last ({last_text})")
        self._check_columns(ds, columns)
        committed = self._committed_days(ds.name)
        available = sorted(set(committed) | self._append_days(ds.name))
        in_range = [d for d in available if first <= d <= last]
        if require_every_day:
            missing = [d for d in pd.date_range(first, last).date if d not in set(in_range)]
            if missing:
                raise LakeNotFound(f"{ds.name} has no committed data for {_format_days(missing)} "
                                   f"(asked for {first_text} .. {last_text}) in {self._url}")
        if not in_range:
            raise LakeNotFound(f"{ds.name} has no committed data from {first_text} to {last_text} in "
                               f"{self._url}; days with committed {ds.name}: {_format_days(available)}")
        tables = [self._read_table(ds, d, None, columns, committed.get(d, []))[0].replace_schema_metadata(None)
                  for d in in_range]
        return pa.concat_tables(tables).to_pandas()

    def previous_snapshot(self, dataset: Dataset | str, before_day: date, *,
                          columns: list[str] | None = None) -> Snapshot | None:
        """The latest committed partition strictly before `before_day`, or None if there is none.

        The quality gate compares a new snapshot with this one to catch implausible shrinkage;
        None means "first run", which the gate must treat as such rather than as a failure.
        """
        ds = _resolve(dataset)
        self._check_columns(ds, columns)
        commit = self.previous_commit(ds, before_day)
        if commit is None:
            return None
        return Snapshot(dataset=ds.name, day=commit.day, run_id=commit.run_id, committed_at=commit.committed_at,
                        frame=self._read_committed(ds, commit, columns).to_pandas())

    def previous_commit(self, dataset: Dataset | str, before_day: date) -> Commit | None:
        """The commit `previous_snapshot` reads, without reading any data: its `files` record each
        dataset's row count, all a volume check needs (a previous `layers` of an L registry is
        millions of rows)."""
        ds = _resolve(dataset)
        _day_text(before_day)
        committed = self._committed_days(ds.name)
        earlier = [d for d in committed if d < before_day]
        if not earlier:
            return None
        day = max(earlier)
        commit = self._select(ds, day, None, committed[day])
        assert commit is not None  # a committed day always selects a commit
        return commit

    def schema_version_of(self, dataset: Dataset | str, day: date, *, run_id: str | None = None) -> int:
        """The schema version a partition's file was written with (its parquet metadata).

        For an append-only log, the highest version among the parts. Raises
        LakeSchemaVersionError if it is newer than this code understands.
        """
        ds = _resolve(dataset)
        day_text = _day_text(day)
        commit = self._select(ds, day, run_id)
        if commit is not None:
            paths = [commit.files[ds.name].path]
        else:
            _, parts = self._partition_files(ds.name, day_text)
            keys = [run_key(run_id)] if run_id is not None else sorted(parts)
            paths = [self._data_path(ds.name, day_text, k, s) for k in keys for s in parts.get(k, [])]
        if not paths:
            raise self._not_found(ds, day, "no committed run" if run_id is None else f"no data from run {run_id!r}")
        versions = []
        for path in paths:
            with self._fs.open_input_file(self._abs(path)) as source:
                metadata = _file_metadata(pq.read_schema(source))
            versions.append(_check_schema_version(metadata, f"{self._url}/{path}"))
        return max(versions)

    def metadata(self, dataset: Dataset | str, day: date, *, run_id: str | None = None) -> dict[str, str]:
        """The key-value metadata of the committed file `read` would return (the writer's
        `extra_metadata` and the lake's own `reglife.*` keys), checked against its marker.

        What a file says about itself when it may hold no rows at all (an empty GC plan still
        has a plan id). Raises LakeNotFound like `read`.
        """
        ds = _resolve(dataset)
        commit = self._select(ds, day, run_id)
        if commit is None:
            raise self._not_found(ds, day, "no committed run" if run_id is None else f"no committed data from run "
                                  f"{run_id!r}")
        return _file_metadata(self._read_committed(ds, commit, columns=[]).schema)


class LakeRun:
    """The writes of one run inside `Lake.run()`; committed together when the block succeeds."""

    def __init__(self, lake: Lake, day: date, run_id: str):
        self._lake = lake
        self.day = day
        self.run_id = run_id
        self._results: dict[str, WriteResult] = {}

    def write(self, dataset: Dataset | str, frame: pd.DataFrame, *,
              extra_metadata: dict[str, str] | None = None) -> WriteResult:
        """Lake.write() for this run's day and run id."""
        result = self._lake.write(dataset, self.day, self.run_id, frame, extra_metadata=extra_metadata)
        self._results[result.dataset] = result
        return result

    @property
    def results(self) -> list[WriteResult]:
        """The latest write of each dataset so far."""
        return list(self._results.values())
