"""The GC audit log is append-only, tells a re-run what is done, and tells namespaces by Event."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from registry_lifecycle.datasets import ALL
from registry_lifecycle.gc.audit import (ALREADY_GONE, DELETED, EVENT_REASON, FAILED, GC_AUDIT, REFUSED_NOT_APPROVED,
                                         SKIPPED_CAP, SKIPPED_REFERENCED, AuditLog, AuditRecord, EventRecorder)
from registry_lifecycle.lake import Lake
from registry_lifecycle.sandbox import resources
from registry_lifecycle.sandbox.clock import SandboxClock
from registry_lifecycle.sandbox.faults import FaultInjector
from registry_lifecycle.sandbox.httpbase import SandboxServer
from registry_lifecycle.sandbox.kube_api import KubeStore, start_kube_api
from registry_lifecycle.sandbox.model import TimelineSource

DAY = date(2026, 11, 27)
EXECUTED = datetime(2026, 11, 27, 14, 0, tzinfo=timezone.utc)
APPROVED = datetime(2026, 11, 27, 13, 30, tzinfo=timezone.utc)
TOKEN = "kube-token-never-logged"


def record(digest_name: str, outcome: str = DELETED, *, plan_id: str = "plan-1", namespace: str = "team-a-dev",
           executed_at: datetime = EXECUTED) -> AuditRecord:
    digest = "sha256:" + digest_name.encode().hex().ljust(64, "0")[:64]
    return AuditRecord(plan_id=plan_id, digest=digest, repository=f"{namespace}/orders", namespace=namespace,
                       action="delete", bytes=10 * 2**20, approved_by="alice", approved_at=APPROVED,
                       executed_at=executed_at, outcome=outcome, detail=None if outcome == DELETED else "why")


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


def audit_parts(lake: Lake, day: date) -> list[Path]:
    return sorted(Path(lake.url.removeprefix("file://"), "gc_audit", f"dt={day.isoformat()}").glob("*.parquet"))


def test_gc_audit_is_a_registered_contract():
    assert ALL["gc_audit"] is GC_AUDIT
    assert GC_AUDIT.schema.names == ["plan_id", "digest", "repository", "namespace", "action", "bytes", "approved_by",
                                     "approved_at", "executed_at", "outcome", "detail"]
    assert GC_AUDIT.schema.field("approved_by").nullable and not GC_AUDIT.schema.field("outcome").nullable


def test_each_call_appends_a_part_and_a_retry_never_overwrites_one(lake: Lake):
    first = AuditLog(lake, DAY, "scheduled__2026-11-27")
    first.record([record("a")])
    first.record([record("b"), record("c", FAILED)])
    retry = AuditLog(lake, DAY, "scheduled__2026-11-27")      # Airflow's retry: same run id
    retry.record([record("c")])
    assert len(audit_parts(lake, DAY)) == 3
    log = retry.read("plan-1")
    assert list(log["outcome"]) == [DELETED, DELETED, FAILED, DELETED]
    assert log["approved_by"].eq("alice").all()


def test_executed_is_what_any_run_on_any_day_removed_for_that_plan(lake: Lake):
    AuditLog(lake, DAY, "run-1").record([record("a"), record("b", ALREADY_GONE), record("c", FAILED),
                                          record("d", SKIPPED_REFERENCED), record("e", REFUSED_NOT_APPROVED)])
    next_day = DAY + timedelta(days=1)
    AuditLog(lake, next_day, "run-2").record([record("c", executed_at=EXECUTED + timedelta(days=1)),
                                               record("x", plan_id="plan-2")])
    audit = AuditLog(lake, next_day, "run-3")
    assert audit.executed("plan-1") == {record(name).digest for name in "abc"}
    assert audit.executed("plan-2") == {record("x").digest}
    assert audit.executed("plan-1", since=next_day) == {record("c").digest}
    assert audit.executed("never-executed") == set()


def test_a_record_with_an_unknown_outcome_or_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="outcome 'removed' is not one of"):
        record("a", "removed")
    with pytest.raises(ValueError, match="executed_at must be timezone-aware"):
        replace(record("a"), executed_at=EXECUTED.replace(tzinfo=None))


# ------------------------------------------------------------------------------ events
@dataclass
class EventsApi:
    server: SandboxServer
    faults: FaultInjector
    api_client: ApiClient

    def events(self, namespace: str) -> list:
        return CoreV1Api(self.api_client).list_namespaced_event(namespace).items


@pytest.fixture
def events_api() -> Iterator[EventsApi]:
    """A Kubernetes API that serves Events, behind a bearer token, as the cluster does."""
    clock = SandboxClock(EXECUTED, earliest=EXECUTED - timedelta(days=1), latest=EXECUTED + timedelta(days=1))
    store = KubeStore()
    store.register(resources.EVENTS, TimelineSource())
    faults = FaultInjector()
    server = start_kube_api(store, clock, faults, token=TOKEN)
    configuration = Configuration()
    configuration.host = server.url
    configuration.api_key = {"BearerToken": TOKEN}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    api_client = ApiClient(configuration)
    try:
        yield EventsApi(server, faults, api_client)
    finally:
        api_client.close()
        server.stop()


def test_each_action_posts_an_event_on_its_imagestream(lake: Lake, events_api: EventsApi):
    audit = AuditLog(lake, DAY, "run-1", events=EventRecorder(events_api.api_client, instance="gc-run-1"))
    audit.record([record("a"), record("b", FAILED), record("c", SKIPPED_CAP)])
    events = sorted(events_api.events("team-a-dev"), key=lambda event: event.type)
    assert [(event.type, event.reason) for event in events] == [("Normal", EVENT_REASON), ("Warning", EVENT_REASON)]
    deleted = events[0]
    assert (deleted.involved_object.kind, deleted.involved_object.name,
            deleted.involved_object.namespace) == ("ImageStream", "orders", "team-a-dev")
    assert deleted.message.startswith(f"deleted team-a-dev/orders@{record('a').digest}")
    assert "approved by alice" in deleted.message
    assert deleted.reporting_component == "registry-lifecycle"


def test_a_failed_event_post_is_logged_and_the_record_is_kept(lake: Lake, events_api: EventsApi,
                                                              caplog: pytest.LogCaptureFixture):
    events_api.faults.add(api="kubernetes", method="POST", path="/events", status=403, times=None)
    audit = AuditLog(lake, DAY, "run-1", events=EventRecorder(events_api.api_client))
    with caplog.at_level(logging.WARNING, logger="registry_lifecycle.gc.audit"):
        audit.record([record("a")])
    assert audit.executed("plan-1") == {record("a").digest}
    assert "could not post the deleted event" in caplog.text and "403" in caplog.text
    assert TOKEN not in caplog.text


def test_a_record_posted_twice_gives_one_event(lake: Lake, events_api: EventsApi):
    recorder = EventRecorder(events_api.api_client)
    assert recorder.record(record("a"))
    assert not recorder.record(record("a"))          # the retry of a post that reached the server
    assert len(events_api.events("team-a-dev")) == 1
