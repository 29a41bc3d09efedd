"""Folders and S3 prefixes behind one interface, for the archives the sources read (pull events,
scan reports). pyarrow.fs gives local files, S3, MinIO and ODF the same calls; credentials
come from the caller (an Airflow connection) or the standard AWS chain, never from a URL."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Location:
    filesystem: pafs.FileSystem
    root: str            # path inside the filesystem, without a trailing slash
    url: str             # as configured, for messages

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.root else "/".join(parts)

    def list_files(self, *parts: str) -> list[str]:
        """Files directly under a folder; [] when the folder does not exist."""
        info = self.filesystem.get_file_info(pafs.FileSelector(self.path(*parts), allow_not_found=True))
        return sorted(item.path for item in info if item.type == pafs.FileType.File)

    def read_bytes(self, path: str) -> bytes:
        with self.filesystem.open_input_stream(path, compression=None) as stream:
            return stream.read()


def open_location(url: str, *, endpoint_url: str | None = None, access_key: str | None = None,
                  secret_key: str | None = None, region: str | None = None) -> Location:
    if url.startswith("s3://"):
        bucket_and_prefix = url[len("s3://"):].strip("/")
        options: dict = {}
        if endpoint_url:
            scheme, _, host = endpoint_url.partition("://")
            options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        if access_key and secret_key:
            options.update(access_key=access_key, secret_key=secret_key)
        if region:
            options["region"] = region
        return Location(pafs.S3FileSystem(**options), bucket_and_prefix, url)
    path = Path(url.removeprefix("file://")).expanduser().resolve()
    return Location(pafs.LocalFileSystem(), str(path), url)
