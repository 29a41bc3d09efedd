"""Where report bundles are kept: an S3 prefix (AWS, MinIO, ODF) or a local folder, one layout.

    <prefix>/<period label>/<generated stamp>/<name>.zip        the bundle
    <prefix>/<period label>/<generated stamp>/<file>            each file of the bundle, for direct download

A report is never overwritten: every run (a retry, a backfill, a re-run after a data fix)
stores under its own generation stamp, and readers list them all. On S3 each object may carry
an Object Lock retention (GOVERNANCE or COMPLIANCE, `report.object_lock`), so a stored report
cannot be deleted or altered before it expires; the bucket must have Object Lock enabled.
Downloads from S3 are presigned URLs that expire quickly (`report.download_url_ttl`): the
URL is the credential, so it is handed to an authenticated user or a notification, never
logged or stored.
"""
from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from .bundle import HTML, MANIFEST, PDF, Bundle

if TYPE_CHECKING:
    from botocore.client import BaseClient

log = logging.getLogger(__name__)

DEFAULT_LOCATION = "./data/reports"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_REPORT_DIR = re.compile(r"^(?P<label>[0-9A-Za-z_-]+)/(?P<stamp>\d{8}T\d{6}Z)/(?P<file>.+)$")
CONTENT_TYPES = {".csv": "text/csv; charset=utf-8", ".json": "application/json", ".sha256": "text/plain; charset=utf-8",
                 ".html": "text/html; charset=utf-8", ".pdf": "application/pdf", ".zip": "application/zip",
                 ".png": "image/png"}


class StorageError(RuntimeError):
    """A report could not be stored or found; the message says where and why."""


@dataclass(frozen=True)
class StoredReport:
    """One stored report generation: its period, when it was generated, and its files."""

    label: str
    stamp: str
    files: tuple[str, ...] = field(default=())       # relative to the report's folder
    retain_until: datetime | None = None

    @property
    def folder(self) -> str:
        return f"{self.label}/{self.stamp}"

    @property
    def generated_at(self) -> datetime:
        return datetime.strptime(self.stamp, STAMP_FORMAT).replace(tzinfo=timezone.utc)

    @property
    def zip_name(self) -> str | None:
        return next((name for name in self.files if name.endswith(".zip") and "/" not in name), None)

    def has(self, name: str) -> bool:
        return name in self.files

    @property
    def downloads(self) -> list[str]:
        """The files a person downloads, in the order a page lists them."""
        wanted = [PDF, HTML, self.zip_name, "evidence.json", MANIFEST]
        return [name for name in wanted if name and name in self.files]

    def as_dict(self) -> dict:
        return {"label": self.label, "stamp": self.stamp, "folder": self.folder, "files": list(self.files),
                "retain_until": self.retain_until.isoformat() if self.retain_until else None}


def stamp_of(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(STAMP_FORMAT)


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _bundle_objects(bundle: Bundle) -> list[tuple[str, Path]]:
    """(name in the report folder, local file) for the zip and every file of the bundle."""
    objects = [(bundle.zip_path.name, bundle.zip_path)]
    objects += [(relative, bundle.folder / relative) for relative in bundle.paths]
    return objects


class ReportStore(Protocol):
    location: str

    def store(self, bundle: Bundle, label: str, generated_at: datetime) -> StoredReport: ...

    def reports(self) -> list[StoredReport]: ...

    def get(self, label: str, stamp: str) -> StoredReport: ...

    def read(self, report: StoredReport, name: str) -> bytes: ...


def _group(names: Iterable[str]) -> list[StoredReport]:
    found: dict[tuple[str, str], list[str]] = {}
    for name in names:
        match = _REPORT_DIR.match(name)
        if match:
            found.setdefault((match["label"], match["stamp"]), []).append(match["file"])
    reports = [StoredReport(label, stamp, tuple(sorted(files))) for (label, stamp), files in found.items()]
    return sorted(reports, key=lambda r: (r.label, r.stamp), reverse=True)


def _check_name(report: StoredReport, name: str) -> None:
    # The page passes names from a URL: only names the listing returned may be read.
    if name not in report.files:
        raise StorageError(f"{report.folder} has no file {name!r}")


class LocalReportStore:
    """Reports in a folder (a PVC, or ./data/reports for a demo)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.location = str(self.root)

    def store(self, bundle: Bundle, label: str, generated_at: datetime) -> StoredReport:
        folder = self.root / label / stamp_of(generated_at)
        if folder.exists():
            raise StorageError(f"{folder} already exists; a stored report is never overwritten")
        for name, source in _bundle_objects(bundle):
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        return self.get(label, stamp_of(generated_at))

    def reports(self) -> list[StoredReport]:
        if not self.root.is_dir():
            return []
        return _group(str(path.relative_to(self.root)) for path in self.root.rglob("*") if path.is_file())

    def get(self, label: str, stamp: str) -> StoredReport:
        for report in self.reports():
            if (report.label, report.stamp) == (label, stamp):
                return report
        raise StorageError(f"no report {label}/{stamp} in {self.location}")

    def path(self, report: StoredReport, name: str) -> Path:
        _check_name(report, name)
        return self.root / report.folder / name

    def read(self, report: StoredReport, name: str) -> bytes:
        return self.path(report, name).read_bytes()


class S3ReportStore:
    """Reports under an S3 prefix, through boto3, with optional Object Lock retention."""

    def __init__(self, url: str, *, client: BaseClient | None = None, endpoint_url: str | None = None,
                 region: str | None = None, access_key: str | None = None, secret_key: str | None = None,
                 object_lock_mode: str | None = None, retain_days: int | None = None):
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise StorageError(f"{url!r} is not an S3 location; write s3://bucket/prefix")
        self.location = url.rstrip("/")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.object_lock_mode = object_lock_mode
        self.retain_days = retain_days
        if client is None:
            import boto3
            from botocore.config import Config

            # SigV4: presigned URLs carry their lifetime (X-Amz-Expires), and every region accepts them.
            client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                                  aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                  config=Config(signature_version="s3v4"))
        self.client = client

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def store(self, bundle: Bundle, label: str, generated_at: datetime) -> StoredReport:
        folder = f"{label}/{stamp_of(generated_at)}"
        if self._keys(folder + "/"):
            raise StorageError(f"{self.location}/{folder} already exists; a stored report is never overwritten")
        retain_until = None
        if self.object_lock_mode:
            retain_until = datetime.now(timezone.utc) + timedelta(days=self.retain_days or 1)
        for name, source in _bundle_objects(bundle):
            data = source.read_bytes()
            extra: dict = {}
            if retain_until is not None:
                extra = {"ObjectLockMode": self.object_lock_mode, "ObjectLockRetainUntilDate": retain_until}
            self.client.put_object(Bucket=self.bucket, Key=self._key(f"{folder}/{name}"), Body=data,
                                   ContentType=content_type(name), ChecksumAlgorithm="SHA256",
                                   Metadata={"sha256": hashlib.sha256(data).hexdigest()}, **extra)
        files = tuple(sorted(name for name, _ in _bundle_objects(bundle)))
        log.info("stored report %s (%d files) under %s/%s%s", label, len(files), self.location, folder,
                 f", {self.object_lock_mode} retention until {retain_until:%Y-%m-%d}" if retain_until else "")
        return StoredReport(label, stamp_of(generated_at), files, retain_until)

    def _keys(self, below: str = "") -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        start = self._key(below) if below else (f"{self.prefix}/" if self.prefix else "")
        keys = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            keys += [entry["Key"] for entry in page.get("Contents", [])]
        return keys

    def reports(self) -> list[StoredReport]:
        strip = f"{self.prefix}/" if self.prefix else ""
        return _group(key[len(strip):] for key in self._keys())

    def get(self, label: str, stamp: str) -> StoredReport:
        files = [key.split(f"{label}/{stamp}/", 1)[1] for key in self._keys(f"{label}/{stamp}/")]
        if not files:
            raise StorageError(f"no report {label}/{stamp} in {self.location}")
        return StoredReport(label, stamp, tuple(sorted(files)))

    def retention(self, report: StoredReport, name: str) -> dict:
        """The Object Lock retention of one stored file: {"Mode", "RetainUntilDate"}, or {} when none is set.

        Read from HEAD, whose Object Lock headers S3 returns to anyone with s3:GetObjectRetention.
        """
        _check_name(report, name)
        head = self.client.head_object(Bucket=self.bucket, Key=self._key(f"{report.folder}/{name}"))
        if not head.get("ObjectLockMode"):
            return {}
        return {"Mode": head["ObjectLockMode"], "RetainUntilDate": head.get("ObjectLockRetainUntilDate")}

    def read(self, report: StoredReport, name: str) -> bytes:
        _check_name(report, name)
        return self.client.get_object(Bucket=self.bucket, Key=self._key(f"{report.folder}/{name}"))["Body"].read()

    def download_url(self, report: StoredReport, name: str, ttl: timedelta) -> str:
        """A presigned GET URL valid for `ttl`; it is a credential: hand it over, never log it."""
        _check_name(report, name)
        disposition = "inline" if name in (PDF, HTML) else f'attachment; filename="{Path(name).name}"'
        return self.client.generate_presigned_url(
            "get_object", ExpiresIn=int(ttl.total_seconds()),
            Params={"Bucket": self.bucket, "Key": self._key(f"{report.folder}/{name}"),
                    "ResponseContentDisposition": disposition, "ResponseContentType": content_type(name)})


def open_store(location: str | None, *, endpoint_url: str | None = None, region: str | None = None,
               access_key: str | None = None, secret_key: str | None = None, object_lock_mode: str | None = None,
               retain_days: int | None = None) -> LocalReportStore | S3ReportStore:
    """The store at `location` (s3://bucket/prefix or a folder; None: ./data/reports)."""
    location = location or DEFAULT_LOCATION
    if location.startswith("s3://"):
        return S3ReportStore(location, endpoint_url=endpoint_url, region=region, access_key=access_key,
                             secret_key=secret_key, object_lock_mode=object_lock_mode, retain_days=retain_days)
    if object_lock_mode:
        raise StorageError("report.object_lock needs an S3 location; a folder cannot hold a retention")
    return LocalReportStore(location.removeprefix("file://"))
