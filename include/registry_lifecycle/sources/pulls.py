"""The pulls source: the registry's notification-event archive -> `pulls_daily`.

The registry API has no "last pulled" field; pull history exists only in the notification
events the registry sends on every manifest GET. Production archives them one envelope per
line (NDJSON, optionally gzip), partitioned by day and one file per cluster:
`<location>/dt=YYYY-MM-DD/events-<cluster>.ndjson[.gz]`. Any past day can be re-read, so
backfills recompute pull features exactly.
"""
from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from datetime import date

import pandas as pd

from ..datasets import PULLS_DAILY
from .errors import SourceMalformed, SourceUnavailable
from .image_refs import DIGEST
from .locations import Location

SOURCE = "pulls"
_FILE = re.compile(r"events-(?P<cluster>.+)\.ndjson(\.gz)?$")
MANIFEST_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
}


def day_files(location: Location, day: date) -> dict[str, str]:
    """cluster -> archive file for one day. A missing partition is an error, not "no pulls":
    an idle cluster still writes an (empty) file, so absence means the archive is broken."""
    partition = f"dt={day.isoformat()}"
    files = {}
    for path in location.list_files(partition):
        match = _FILE.search(path.rsplit("/", 1)[-1])
        if match:
            if match.group("cluster") in files:
                raise SourceMalformed(SOURCE, f"{location.url}/{partition}",
                                      f"two files for cluster {match.group('cluster')}",
                                      "Keep one of them, or that cluster's pulls count twice.")
            files[match.group("cluster")] = path
    if not files:
        raise SourceUnavailable(SOURCE, f"{location.url}/{partition}", "no archive files for this day",
                                "Check that the registry's notification endpoint archived this day; "
                                "pulls cannot be reconstructed from the registry itself.")
    return files


def _events(location: Location, path: str):
    data = location.read_bytes(path)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise SourceMalformed(SOURCE, path, f"unreadable gzip data ({exc})", "Re-archive the file.") from None
    for line_number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            envelope = json.loads(line)
            events = envelope["events"]
            if not isinstance(events, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise SourceMalformed(SOURCE, f"{path} line {line_number}",
                                  'not a notification envelope {"events": [...]}',
                                  "Fix or remove the line; nothing was published.") from None
        yield from events


def pulls_daily(location: Location, day: date) -> pd.DataFrame:
    """Manifest pulls of one day, per (repository, digest, tag, cluster)."""
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for cluster, path in day_files(location, day).items():
        for event in _events(location, path):
            target = event.get("target") or {}
            if event.get("action") != "pull" or target.get("mediaType") not in MANIFEST_TYPES:
                continue
            digest, repository = target.get("digest"), target.get("repository")
            if not (isinstance(digest, str) and DIGEST.match(digest) and repository):
                raise SourceMalformed(SOURCE, path, f"a pull event without a valid target digest/repository "
                                                    f"(id {event.get('id')})", "Fix or remove the event.")
            entry = counts[(repository, digest, target.get("tag") or None, cluster)]
            entry[0] += 1
            entry[1] += int(target.get("size") or target.get("length") or 0)
    rows = [(day, repo, digest, tag, cluster, pulls, size)
            for (repo, digest, tag, cluster), (pulls, size) in counts.items()]
    frame = pd.DataFrame(rows, columns=PULLS_DAILY.schema.names)
    return frame.sort_values(["repository", "digest", "cluster"], kind="stable").reset_index(drop=True)
