"""The pulls source: the registry's notification-event archive -> `pulls_daily`.

The registry API has no "last pulled" field; pull history exists only in the notification
events the registry sends on every manifest GET. Production archives them one envelope per
line (NDJSON, optionally gzip), partitioned by day and one file per cluster:
`<location>/dt=YYYY-MM-DD/events-<cluster>.ndjson[.gz]`. Any past day can be re-read, so
backfills recompute pull features exactly.

This module is the archive's only reader; the sandbox only writes it
(`sandbox.pull_archive.write_archive`).
"""
from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections import defaultdict
from datetime import date
from typing import Iterator

import pandas as pd

from ..datasets import PULLS_DAILY
from .errors import SourceMalformed, SourceUnavailable
from .image_refs import DIGEST
from .locations import Location

SOURCE = "pulls"
_FILE = re.compile(r"events-(?P<cluster>.+)\.ndjson(\.gz)?")
_GZIP_MAGIC = b"\x1f\x8b"
_READ_BUFFER = 1 << 20
MANIFEST_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
}


def _shown(location: Location, path: str) -> str:
    """A file as the operator configured its location (`s3://bucket/prefix/...`, a folder)."""
    relative = path[len(location.root):].lstrip("/") if location.root and path.startswith(location.root) else path
    return f"{location.url.rstrip('/')}/{relative}"


def day_files(location: Location, day: date) -> dict[str, str]:
    """cluster -> archive file for one day, in cluster order. A missing partition is an error, not
    "no pulls": an idle cluster still writes an (empty) file, so absence means the archive is broken."""
    partition = f"dt={day.isoformat()}"
    files: dict[str, str] = {}
    for path in location.list_files(partition):
        name = path.rsplit("/", 1)[-1]
        match = _FILE.fullmatch(name)
        if match is None:
            continue
        cluster = match.group("cluster")
        if cluster in files:
            raise SourceMalformed(SOURCE, f"{location.url.rstrip('/')}/{partition}",
                                  f"both {files[cluster].rsplit('/', 1)[-1]} and {name} exist for cluster {cluster}",
                                  "Keep one of them, or that cluster's pulls count twice.")
        files[cluster] = path
    if not files:
        raise SourceUnavailable(SOURCE, f"{location.url.rstrip('/')}/{partition}", "no archive files for this day",
                                "Check that the registry's notification endpoint archived this day; "
                                "pulls cannot be reconstructed from the registry itself.")
    return dict(sorted(files.items()))


def _lines(location: Location, path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of one archive file, streamed; gzip is told by its magic bytes, not its name."""
    shown = _shown(location, path)
    line_number = 0
    try:
        with location.filesystem.open_input_stream(path, compression=None) as raw:
            stream: io.BufferedIOBase = io.BufferedReader(raw, _READ_BUFFER)
            if stream.peek(2)[:2] == _GZIP_MAGIC:
                stream = gzip.GzipFile(fileobj=stream, mode="rb")
            lines = iter(stream)
            while True:
                try:
                    line = next(lines)
                except StopIteration:
                    return
                except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                    raise SourceMalformed(SOURCE, shown, f"unreadable gzip data at line {line_number + 1} ({exc})",
                                          "Re-archive the file; nothing was published.") from None
                line_number += 1
                yield line_number, line
    except OSError as exc:
        raise SourceUnavailable(SOURCE, shown, f"could not be read after line {line_number} ({exc})",
                                "Check the archive's storage and credentials, then re-run the day.") from None


def _parse_envelope(where: str, line: bytes) -> list[dict]:
    """The events of one envelope line, each with an action and a target; `where` names file and line."""
    try:
        envelope = json.loads(line)
    except UnicodeDecodeError as exc:
        raise SourceMalformed(SOURCE, where, f"not UTF-8 ({exc})", "Fix or remove the line; nothing was published.") \
            from None
    except json.JSONDecodeError as exc:
        raise SourceMalformed(SOURCE, where, f"malformed JSON at column {exc.colno}: {exc.msg}",
                              "Fix or remove the line; nothing was published.") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("events"), list):
        raise SourceMalformed(SOURCE, where, 'not a notification envelope (an object with an "events" list)',
                              "Fix or remove the line; nothing was published.")
    events = envelope["events"]
    for index, event in enumerate(events):
        if not (isinstance(event, dict) and isinstance(event.get("action"), str)
                and isinstance(event.get("target"), dict)):
            raise SourceMalformed(SOURCE, where, f"event {index} lacks an action or a target",
                                  "Fix or remove the event; nothing was published.")
    return events


def _file_envelopes(location: Location, path: str) -> Iterator[tuple[int, list[dict]]]:
    """(line number, events) of every non-blank line of one archive file."""
    for line_number, line in _lines(location, path):
        if line.strip():
            yield line_number, _parse_envelope(f"{_shown(location, path)} line {line_number}", line)


def _files_for(location: Location, day: date, cluster: str | None) -> dict[str, str]:
    files = day_files(location, day)
    if cluster is None:
        return files
    if cluster not in files:
        partition = f"{location.url.rstrip('/')}/dt={day.isoformat()}"
        raise SourceUnavailable(SOURCE, f"{partition}/events-{cluster}.ndjson[.gz]",
                                f"no archive file for cluster {cluster} on {day.isoformat()} "
                                f"(files exist for {', '.join(files)})",
                                "Check that this cluster's registry sends notifications to the archive.")
    return {cluster: files[cluster]}


def events_for_day(location: Location, day: date, *, cluster: str | None = None) -> Iterator[dict]:
    """Every notification event of one day (or of one cluster's file that day), files in cluster order.

    A missing partition or cluster file raises SourceUnavailable: "no archive" is a failed
    source, not a day without pulls. A line that is not an envelope raises SourceMalformed
    naming its file and line.
    """
    for path in _files_for(location, day, cluster).values():
        for _, events in _file_envelopes(location, path):
            yield from events


def pulls_daily(location: Location, day: date) -> pd.DataFrame:
    """Manifest pulls of one day, per (repository, digest, tag, cluster); blob pulls and pushes are not pulls."""
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for cluster, path in day_files(location, day).items():
        for line_number, events in _file_envelopes(location, path):
            for index, event in enumerate(events):
                target = event["target"]
                if event["action"] != "pull" or target.get("mediaType") not in MANIFEST_TYPES:
                    continue
                digest, repository = target.get("digest"), target.get("repository")
                if not (isinstance(digest, str) and DIGEST.match(digest) and repository):
                    raise SourceMalformed(SOURCE, f"{_shown(location, path)} line {line_number}",
                                          f"event {index} is a pull without a valid target digest or repository "
                                          f"(id {event.get('id')})", "Fix or remove the event.")
                entry = counts[(repository, digest, target.get("tag") or None, cluster)]
                entry[0] += 1
                entry[1] += int(target.get("size") or target.get("length") or 0)
    rows = [(day, repo, digest, tag, cluster, pulls, size)
            for (repo, digest, tag, cluster), (pulls, size) in counts.items()]
    frame = pd.DataFrame(rows, columns=PULLS_DAILY.schema.names)
    return frame.sort_values(["repository", "digest", "cluster"], kind="stable").reset_index(drop=True)
