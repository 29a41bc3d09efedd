"""The pull-event archive looks like what a registry notification endpoint stores, and reads
back through the product's reader (`sources.pulls`) to exactly the pull counts it was written
from: the extract step's pulls_daily and every reuse model downstream depend on that."""
from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest

from registry_lifecycle.sandbox.model import PullRecord
from registry_lifecycle.sandbox.pull_archive import PushRecord, envelopes_for_day, push_envelopes, write_archive
from registry_lifecycle.sources.errors import SourceMalformed, SourceUnavailable
from registry_lifecycle.sources.locations import open_location
from registry_lifecycle.sources.pulls import events_for_day

DAY = date(2026, 3, 4)                       # a Wednesday
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
SCANNER = "trivy/0.50.1 go-containerregistry/v0.19.1"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def day_records() -> list[PullRecord]:
    """Two clusters; pulls by tag and by digest; one record says who pulled, one pulled nothing."""
    return [
        PullRecord(DAY.isoformat(), "payments/api", digest(1), "v1.4.2", "prod-east", 240, MANIFEST, 1_203),
        PullRecord(DAY.isoformat(), "payments/api", digest(2), None, "prod-east", 3, MANIFEST, 1_187),
        PullRecord(DAY.isoformat(), "shared/base-ubi9", digest(3), "latest", "prod-east", 57, INDEX, 742,
                   user_agents=[SCANNER]),
        PullRecord(DAY.isoformat(), "payments/api", digest(1), "v1.4.2", "prod-west", 88, MANIFEST, 1_203),
        PullRecord(DAY.isoformat(), "reports/monthly", digest(4), "2026-02", "prod-west", 0, MANIFEST, 980),
    ]


def nanoseconds(stamp: str) -> int:
    """An RFC3339Nano UTC timestamp as integer nanoseconds (strings do not sort: ".25Z" > ".251Z")."""
    whole, _, fraction = stamp.removesuffix("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp())
    return seconds * 10 ** 9 + int(fraction.ljust(9, "0") if fraction else 0)


def events_of(lines: list[bytes]) -> list[dict]:
    return [event for line in lines for event in json.loads(line)["events"]]


def read_day(root, day: date = DAY, *, cluster: str | None = None) -> list[dict]:
    """The archived events of one day, read the way the extract step reads them."""
    return list(events_for_day(open_location(str(root)), day, cluster=cluster))


def test_round_trip_reads_back_every_pull(tmp_path):
    """Events per (cluster, repository, digest) equal the records' pull counts; tags and sizes survive."""
    records = day_records()
    paths = write_archive(tmp_path, DAY, records, seed=11)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "dt=2026-03-04/events-prod-east.ndjson", "dt=2026-03-04/events-prod-west.ndjson"]
    events = read_day(tmp_path)
    assert len(events) == sum(r.pulls for r in records)
    for cluster in ("prod-east", "prod-west"):
        counted = Counter((e["target"]["repository"], e["target"]["digest"], e["target"].get("tag"))
                          for e in read_day(tmp_path, cluster=cluster))
        expected = {(r.repository, r.digest, r.tag): r.pulls for r in records if r.cluster == cluster and r.pulls}
        assert counted == expected
    for event in events:
        assert event["action"] == "pull" and event["request"]["method"] == "GET"
        record = next(r for r in records if r.digest == event["target"]["digest"])
        assert event["target"]["mediaType"] == record.media_type
        assert event["target"]["size"] == event["target"]["length"] == record.size
        assert event["target"]["url"].endswith(f"/v2/{record.repository}/manifests/{record.digest}")
        assert datetime.fromtimestamp(nanoseconds(event["timestamp"]) // 10 ** 9, timezone.utc).date() == DAY
    assert len({e["id"] for e in events}) == len(events)
    assert len({e["request"]["id"] for e in events}) == len(events)


def test_events_carry_distributions_field_names():
    """The field names of distribution's notifications/event.go, nothing invented."""
    event = events_of(list(envelopes_for_day(day_records()[:1], seed=1)))[0]
    assert list(event) == ["id", "timestamp", "action", "target", "request", "actor", "source"]
    assert list(event["target"]) == ["mediaType", "size", "digest", "length", "repository", "url", "tag"]
    assert list(event["request"]) == ["id", "addr", "host", "method", "useragent"]
    assert list(event["actor"]) == ["name"]
    assert list(event["source"]) == ["addr", "instanceID"]
    by_digest = events_of(list(envelopes_for_day(day_records()[1:2], seed=1)))[0]
    assert "tag" not in by_digest["target"]                 # omitempty, as Go writes it


def test_same_inputs_give_identical_bytes_whatever_the_record_order(tmp_path):
    records = day_records()
    first = write_archive(tmp_path / "a", DAY, records, seed=5)
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    second = write_archive(tmp_path / "b", DAY, shuffled, seed=5)
    again = write_archive(tmp_path / "a", DAY, records, seed=5)       # re-running a day is a no-op
    for a, b, c in zip(first, second, again, strict=True):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    other_seed = write_archive(tmp_path / "c", DAY, records, seed=6)
    assert other_seed[0].read_bytes() != first[0].read_bytes()


def test_gzip_archive_is_deterministic_and_reads_like_plain(tmp_path):
    plain = write_archive(tmp_path / "plain", DAY, day_records(), seed=9)
    zipped = write_archive(tmp_path / "gz", DAY, day_records(), seed=9, compress=True)
    rezipped = write_archive(tmp_path / "gz2", DAY, day_records(), seed=9, compress=True)
    assert all(p.name.endswith(".ndjson.gz") for p in zipped)
    assert [p.read_bytes() for p in zipped] == [p.read_bytes() for p in rezipped]
    assert gzip.decompress(zipped[0].read_bytes()) == plain[0].read_bytes()
    assert read_day(tmp_path / "gz") == read_day(tmp_path / "plain")


def test_switching_to_gzip_replaces_the_plain_file(tmp_path):
    """A day must never hold both variants of one cluster's file: its pulls would count twice."""
    write_archive(tmp_path, DAY, day_records(), seed=2)
    write_archive(tmp_path, DAY, day_records(), seed=2, compress=True)
    names = sorted(p.name for p in (tmp_path / "dt=2026-03-04").iterdir())
    assert names == ["events-prod-east.ndjson.gz", "events-prod-west.ndjson.gz"]
    assert len(read_day(tmp_path)) == sum(r.pulls for r in day_records())


def test_a_malformed_line_names_its_file_and_line(tmp_path):
    path = write_archive(tmp_path, DAY, day_records(), seed=4)[0]
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 4
    path.write_bytes(b"".join(lines[:2] + [b'{"events": [{"id": "x", "action": "pull"\n'] + lines[2:]))
    with pytest.raises(SourceMalformed) as raised:
        read_day(tmp_path)
    assert raised.value.what == f"{path} line 3"
    assert raised.value.detail.startswith("malformed JSON at column ")


def test_a_line_that_is_not_an_envelope_is_refused(tmp_path):
    path = tmp_path / "dt=2026-03-04" / "events-lab.ndjson"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"events": []}\n\n[1, 2]\n')
    with pytest.raises(SourceMalformed, match=r"events-lab\.ndjson line 3: not a notification envelope"):
        read_day(tmp_path)


def test_an_event_without_action_or_target_is_refused(tmp_path):
    path = tmp_path / "dt=2026-03-04" / "events-lab.ndjson"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"events": [{"action": "pull", "target": {}}, {"action": "pull"}]}\n')
    with pytest.raises(SourceMalformed, match=r"events-lab\.ndjson line 1: event 1 lacks an action or a target"):
        read_day(tmp_path)


def test_a_truncated_gzip_file_names_its_file(tmp_path):
    path = write_archive(tmp_path, DAY, day_records(), seed=4, compress=True)[0]
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(SourceMalformed, match=r"events-prod-east\.ndjson\.gz: unreadable gzip data") as raised:
        read_day(tmp_path, cluster="prod-east")
    assert raised.value.what == str(path)


def test_a_missing_day_is_an_error_not_an_empty_day(tmp_path):
    with pytest.raises(SourceUnavailable, match="2026-03-05") as missing_day:
        read_day(tmp_path, DAY + timedelta(days=1))
    assert missing_day.value.what == f"{tmp_path}/dt=2026-03-05"
    write_archive(tmp_path, DAY, day_records(), seed=1)
    with pytest.raises(SourceUnavailable, match="cluster dr-site") as missing_cluster:
        read_day(tmp_path, cluster="dr-site")
    assert missing_cluster.value.what.startswith(f"{tmp_path}/dt=2026-03-04/events-dr-site.ndjson")


def test_records_of_another_day_are_refused(tmp_path):
    other = PullRecord("2026-03-05", "payments/api", digest(1), "v1", "prod-east", 1, MANIFEST, 1)
    with pytest.raises(ValueError, match="2026-03-05"):
        write_archive(tmp_path, DAY, day_records() + [other], seed=1)
    with pytest.raises(ValueError, match="one day"):
        list(envelopes_for_day(day_records() + [other], seed=1))


def test_envelopes_batch_one_replicas_events_of_one_cluster():
    """Like the notifier: an envelope comes from one registry instance and holds at most `batch` events."""
    lines = list(envelopes_for_day(day_records(), seed=8, batch=20))
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    for line in lines:
        events = json.loads(line)["events"]
        assert 1 <= len(events) <= 20
        assert len({e["source"]["instanceID"] for e in events}) == 1
        stamps = [nanoseconds(e["timestamp"]) for e in events]
        assert stamps == sorted(stamps)
    instances = {json.loads(line)["events"][0]["source"]["instanceID"] for line in lines}
    assert len(instances) == 4                         # two replicas in each of two clusters, never shared


def test_pulls_follow_the_working_day_and_the_records_user_agents():
    busy = [PullRecord(DAY.isoformat(), "payments/api", digest(1), "v1", "prod-east", 5_000, MANIFEST, 1_203)]
    events = events_of(list(envelopes_for_day(busy, seed=1)))
    hours = Counter(int(e["timestamp"][11:13]) for e in events)
    assert sum(hours[h] for h in range(9, 17)) > 3 * sum(hours[h] for h in range(0, 8))
    agents = Counter(e["request"]["useragent"].split("/")[0] for e in events)
    assert agents.most_common(1)[0][0] == "cri-o" and {"trivy", "skopeo"} <= set(agents)
    kubelet_hosts = {e["request"]["addr"].rsplit(":", 1)[0] for e in events
                     if e["request"]["useragent"].startswith("cri-o/")}
    assert 1 < len(kubelet_hosts) <= 12                # the cluster's node pool
    assert all(e["actor"]["name"] == "system:serviceaccount:payments:default" for e in events
               if e["request"]["useragent"].startswith("cri-o/"))
    scanned = events_of(list(envelopes_for_day(day_records()[2:3], seed=1)))
    assert {e["request"]["useragent"] for e in scanned} == {SCANNER}


def test_pushes_are_put_events_at_their_exact_time(tmp_path):
    at = datetime(2026, 3, 4, 13, 37, 5, 250_000, tzinfo=timezone.utc)
    push = PushRecord(at, "payments/api", digest(9), "v1.5.0", "prod-east", MANIFEST, 1_210)
    (event,) = events_of(list(push_envelopes([push], seed=1)))
    assert event["action"] == "push" and event["request"]["method"] == "PUT"
    assert event["timestamp"] == "2026-03-04T13:37:05.25Z"
    assert event["target"]["tag"] == "v1.5.0" and event["target"]["digest"] == digest(9)
    assert event["actor"]["name"] == "system:serviceaccount:payments:builder"
    write_archive(tmp_path, DAY, day_records(), seed=1, pushes=[push])
    actions = Counter(e["action"] for e in read_day(tmp_path, cluster="prod-east"))
    assert actions == {"pull": 300, "push": 1}
    with pytest.raises(ValueError, match="push at 2026-03-05"):
        write_archive(tmp_path, DAY, [], seed=1, pushes=[PushRecord(at + timedelta(days=1), "a/b", digest(1), None,
                                                                    "prod-east", MANIFEST, 1)])


def test_an_idle_cluster_still_gets_a_file(tmp_path):
    """A cluster whose records show no pulls writes an empty file: an idle day, not a missing source."""
    idle = [PullRecord(DAY.isoformat(), "reports/monthly", digest(4), "2026-02", "dr-site", 0, MANIFEST, 980)]
    (path,) = write_archive(tmp_path, DAY, idle, seed=1)
    assert path.read_bytes() == b""
    assert read_day(tmp_path, cluster="dr-site") == []
