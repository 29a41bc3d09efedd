"""The GC audit log: what was done to each planned image, by whose approval, and when.

One record per action attempt (and per refusal), written to the `gc_audit` dataset with
`Lake.append`, so that (safety invariant 5):

- nothing is ever overwritten: each call stores a new part, visible without a commit. A GC
  task that deleted half a batch and then died still leaves the record of that half;
- a re-run knows what is done: `executed(plan_id)` reads every part of every run and returns
  the digests whose deletion is complete (`deleted`, or `already_gone` after an earlier run
  lost its record), and the executor skips them. Everything else (skipped, failed, refused)
  is looked at again, because its reason may have changed.

Beside the lake, the namespace's own users learn what happened from a Kubernetes Event on the
ImageStream (`oc get events -n <ns>`), reason `RegistryLifecycleDelete`. Events are a
courtesy, not the record: a failure to post one is logged and never stops a deletion.
"""
from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from ..action_log import check_action_record
from ..datasets import TS, Dataset, register
from ..lake import Lake

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

DELETED = "deleted"
ALREADY_GONE = "already_gone"
SKIPPED_REFERENCED = "skipped_referenced"
SKIPPED_RETAGGED = "skipped_retagged"
SKIPPED_YOUNGER = "skipped_younger"
SKIPPED_CAP = "skipped_cap"
FAILED = "failed"
REFUSED_EXPIRED = "refused_expired"
REFUSED_NOT_APPROVED = "refused_not_approved"
OUTCOMES: tuple[str, ...] = (DELETED, ALREADY_GONE, SKIPPED_REFERENCED, SKIPPED_RETAGGED, SKIPPED_YOUNGER,
                             SKIPPED_CAP, FAILED, REFUSED_EXPIRED, REFUSED_NOT_APPROVED)
# The image is gone from the registry: a re-run must not act on it again.
DONE: frozenset[str] = frozenset({DELETED, ALREADY_GONE})
# Decisions about the run as a whole (a refused plan, a cap, an open circuit breaker): posting
# one Event per image of a refused plan would bury the namespaces' real events.
_RUN_LEVEL: frozenset[str] = frozenset({SKIPPED_CAP, REFUSED_EXPIRED, REFUSED_NOT_APPROVED})

EVENT_REASON = "RegistryLifecycleDelete"
EVENT_COMPONENT = "registry-lifecycle"

GC_AUDIT = register(Dataset("gc_audit", pa.schema([
    pa.field("plan_id", pa.string(), nullable=False),
    pa.field("digest", pa.string(), nullable=False),
    pa.field("repository", pa.string(), nullable=False),
    pa.field("namespace", pa.string(), nullable=False),
    pa.field("action", pa.string(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("approved_by", pa.string(), nullable=True),
    pa.field("approved_at", TS, nullable=True),
    pa.field("executed_at", TS, nullable=False),
    pa.field("outcome", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=True),
]), ("plan_id", "digest", "executed_at"), False,
    "append-only log of GC actions, one record per attempt: outcome deleted|already_gone|skipped_referenced|"
    "skipped_retagged|skipped_younger|skipped_cap|failed|refused_expired|refused_not_approved; approved_by/at are "
    "null for mode-auto deletions without an approval"))


@dataclass(frozen=True)
class AuditRecord:
    """One action attempt on one planned image, as the gc_audit contract stores it."""

    plan_id: str
    digest: str
    repository: str
    namespace: str
    action: str
    bytes: int
    approved_by: str | None
    approved_at: datetime | None
    executed_at: datetime
    outcome: str
    detail: str | None = None

    def __post_init__(self) -> None:
        check_action_record(self.outcome, OUTCOMES, approved_at=self.approved_at, executed_at=self.executed_at)


def records_frame(records: Iterable[AuditRecord]) -> pd.DataFrame:
    """Records as a frame of the gc_audit contract (also for zero records)."""
    rows = [asdict(record) for record in records]
    return pa.Table.from_pylist(rows, schema=GC_AUDIT.schema).to_pandas()


def _imagestream(repository: str) -> str:
    """The ImageStream a repository of the internal registry is: `<namespace>/<name>`."""
    return repository.split("/", 1)[-1]


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class EventRecorder:
    """Posts one `v1` Event per audited action to the image's namespace, on its ImageStream.

    Takes a kubernetes `ApiClient` (the same one the OpenShift source uses). The Event name is
    derived from the record, so a retried post of the same record is refused as AlreadyExists
    instead of doubling the event. Run-level outcomes (caps, refusals) post nothing.
    """

    def __init__(self, api_client: ApiClient, *, instance: str | None = None) -> None:
        from kubernetes.client import CoreV1Api

        self._core = CoreV1Api(api_client)
        # In a KubernetesPodOperator or worker pod the host name is the pod's name.
        self._instance = instance if instance is not None else socket.gethostname()

    def record(self, record: AuditRecord) -> bool:
        """Post the Event for `record`; False (and a warning in the log) if that failed."""
        if record.outcome in _RUN_LEVEL:
            return False
        stream = _imagestream(record.repository)
        key = f"{record.plan_id}|{record.digest}|{record.outcome}|{record.executed_at.isoformat()}"
        stamp = record.executed_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{stream[:200]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}",
                         "namespace": record.namespace},
            "involvedObject": {"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                               "namespace": record.namespace, "name": stream},
            "reason": EVENT_REASON,
            "message": self._message(record),
            "type": "Warning" if record.outcome == FAILED else "Normal",
            "action": "Delete",
            "source": {"component": EVENT_COMPONENT},
            "reportingComponent": EVENT_COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(record.namespace, body)
        except Exception as error:  # noqa: BLE001 - an event is a courtesy; nothing may stop the deletion log
            status = getattr(error, "status", None)
            log.warning("could not post the %s event for %s in namespace %s (%s%s); the audit log has the record",
                        record.outcome, _short(record.digest), record.namespace, type(error).__name__,
                        f" {status}" if status else "")
            return False
        return True

    @staticmethod
    def _message(record: AuditRecord) -> str:
        image = f"{record.repository}@{record.digest}"
        plan = f"GC plan {record.plan_id[:12]}"
        approval = f", approved by {record.approved_by}" if record.approved_by else " (mode auto)"
        detail = f": {record.detail}" if record.detail else ""
        if record.outcome == DELETED:
            text = f"deleted {image} ({record.bytes:,} bytes) under {plan}{approval}"
        elif record.outcome == ALREADY_GONE:
            text = f"{image} was already gone when {plan} came to delete it"
        elif record.outcome == FAILED:
            text = f"failed to delete {image} under {plan}{detail}"
        else:
            text = f"kept {image} planned for deletion by {plan}, {record.outcome.replace('_', ' ')}{detail}"
        return text[:1024]      # the API server refuses messages beyond a few KiB


class AuditLog:
    """The gc_audit log of one run: `record()` appends, `executed()` reads every run back."""

    def __init__(self, lake: Lake, day: date, run_id: str, *, events: EventRecorder | None = None) -> None:
        self.lake = lake
        self.day = day
        self.run_id = run_id
        self.events = events

    def record(self, records: Sequence[AuditRecord]) -> None:
        """Append `records` as one new part (before any Event is posted: the lake is the record)."""
        if not records:
            return
        self.lake.append(GC_AUDIT, self.day, self.run_id, records_frame(records))
        if self.events is not None:
            for record in records:
                self.events.record(record)

    def read(self, plan_id: str | None = None, *, since: date | None = None,
             columns: list[str] | None = None) -> pd.DataFrame:
        """Every record of every run (of `plan_id`, if given) in days from `since` on, in write order."""
        wanted = None if columns is None else list(dict.fromkeys([*columns, "plan_id"]))
        frames = []
        for day in self.lake.days(GC_AUDIT):
            if since is not None and day < since:
                continue
            frame = self.lake.read(GC_AUDIT, day, columns=wanted)
            frames.append(frame if plan_id is None else frame[frame["plan_id"] == plan_id])
        log_frame = pd.concat(frames, ignore_index=True) if frames else records_frame([])
        return log_frame if columns is None else log_frame[columns]

    def executed(self, plan_id: str, *, since: date | None = None) -> set[str]:
        """Digests of `plan_id` that an earlier attempt (any run, any day) already removed.

        `since` bounds the days read: a plan cannot have been executed before it was made.
        """
        done = self.read(plan_id, since=since, columns=["digest", "outcome"])
        return set(done.loc[done["outcome"].isin(DONE), "digest"])
