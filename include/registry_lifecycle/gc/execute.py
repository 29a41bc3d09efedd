"""Executing a GC plan: delete what was approved, in batches that re-check the live cluster first.

What a run guarantees, in the order it checks:

1. The approval is for this exact plan, and the plan is fresh (invariant 1). An approval of
   another plan id, or a plan older than `gc.approval.plan_max_age`, refuses the whole run:
   every remaining row is audited (`refused_not_approved` / `refused_expired`) and
   `ApprovalError` is raised. Without any approval, rows of `mode: approve` are refused and
   only `mode: auto` rows run; `mode: audit` rows never run. A unit (an image and the
   dependents planned with it, sharing one rank) takes its most cautious mode.
2. Re-running is safe (invariant 5): digests the audit log already records as removed for
   this plan are skipped, and a 404 on delete is `already_gone`. Each attempt is appended to
   the log as soon as it is made, so a run killed mid-batch leaves a complete record of what
   it did, and its retry neither repeats an action nor leaves one unrecorded.
3. Blast radius (invariant 4): the per-run caps on images and bytes are applied again, in
   rank order and to whole units, counting what earlier attempts of this plan removed; the
   rest is `skipped_cap`. The circuit breaker stops the run after `circuit_breaker.max_errors`
   failed deletions and audits everything not attempted as `skipped_cap`, with the reason.
4. Right before each batch (per namespace, `batch_size` rows) the live references and tags
   are read again (invariant 2): an image a workload references now, that a tag points at
   now (re-tagged), or that a tag event younger than `keep_younger_than` names (pushed or
   tagged since planning) is skipped and audited, and so are its planned dependents.

The order inside a unit: the subject first, then what goes with it (an index before its
children, an image before its signatures, SBOMs and attestations). A run that stops between
the two leaves a signature whose image is gone: harmless, invisible to pulls, and deleted by
the retry, which skips the subject as done and carries on with the dependents. The other
order would leave, after a stop or a failed subject deletion, a live image without its
signature: one that signature-enforcing admission refuses to run, the one state invariant 6
exists to prevent. When the subject is skipped or fails, its dependents are not attempted.

Two backends sit behind one protocol: `OciBackend` deletes manifests through the registry's
v2 API (any distribution registry), `OpenShiftBackend` does what `oc adm prune images` does
through the Kubernetes API (remove the image's tag events from every ImageStream's status,
then delete the Image object), leaving the registry's storage to the registry's own pruner.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple, NoReturn, Protocol

import pandas as pd

from ..action_log import single_plan_id
from ..config import GC_MODES_BY_CAUTION, Policy, format_duration
from ..sources.errors import SourceError
from .audit import (ALREADY_GONE, DELETED, DONE, FAILED, REFUSED_EXPIRED, REFUSED_NOT_APPROVED, SKIPPED_CAP,
                    SKIPPED_REFERENCED, SKIPPED_RETAGGED, SKIPPED_YOUNGER, AuditLog, AuditRecord, records_frame)
from .plan import ACTION_DELETE, ACTION_WITH_SUBJECT, GC_PLAN

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from ..sources.openshift import OpenShiftSnapshot

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 50
# Where a workload names an image by digest: `registry/ns/name@sha256:...`.
_DIGEST_IN_REFERENCE = r"@(sha256:[0-9a-f]{64})"
# Status writes of an ImageStream that keeps changing under us are retried this often.
_CONFLICT_RETRIES = 5


class ApprovalError(RuntimeError):
    """The run may not execute this plan: wrong plan id or a plan too old to trust."""


class DeletionFailed(Exception):
    """A backend could not delete one image; it counts toward the circuit breaker.

    Anything else a backend raises is a crash, not a failure: it propagates, and the retry
    continues from the audit log.
    """


@dataclass(frozen=True)
class Approval:
    """Who approved which plan, and when (from the HITL ApprovalOperator or an approval object)."""

    plan_id: str
    approved_by: str
    approved_at: datetime


class Deletion(NamedTuple):
    """What a backend did: `already_gone` when the image was no longer there."""

    already_gone: bool
    detail: str


class DeletionBackend(Protocol):
    """Deletes one image at a time; `prepare` sees each batch's rows first."""

    def prepare(self, batch: pd.DataFrame) -> None:
        """Look up, once per batch, what the deletions of `batch` (gc_plan rows) need."""

    def delete(self, repository: str, digest: str) -> Deletion:
        """Delete `digest`; raise DeletionFailed when the system refuses or fails."""


# ------------------------------------------------------------------------------ backends
class ManifestDeleter(Protocol):
    def delete_manifest(self, repository: str, digest: str) -> bool: ...


class OciBackend:
    """Deletes manifest revisions through the OCI distribution API (`RegistryClient`).

    The client's credentials need the `delete` action on the repositories (distribution's
    token auth; `system:image-pruner` on OpenShift). Blobs are freed later by the registry's
    garbage collection, which is why the plan counts only blobs no kept manifest references.
    """

    def __init__(self, client: ManifestDeleter) -> None:
        self.client = client

    def prepare(self, batch: pd.DataFrame) -> None:
        """Nothing to look up: the registry deletes one digest per request."""

    def delete(self, repository: str, digest: str) -> Deletion:
        try:
            removed = self.client.delete_manifest(repository, digest)
        except SourceError as error:
            raise DeletionFailed(str(error)) from None
        status = "202 Accepted" if removed else "404, not in the repository any more"
        return Deletion(already_gone=not removed, detail=f"DELETE /v2/{repository}/manifests/{digest}: {status}")


class OpenShiftBackend:
    """Deletes Image objects the way `oc adm prune images` does, through the Kubernetes API.

    Before each batch every ImageStream is listed (completely, or the run stops: invariant 3)
    to find which streams hold each image in a tag's history: promotion re-tags one digest
    into several namespaces. Each deletion removes the image's tag events from those streams'
    status (a conflict re-reads the stream and tries again), then deletes the Image; a 404
    on the Image means it is already gone. Needs get/list/update on imagestreams and
    imagestreams/status and delete on images (the `system:image-pruner` role).
    """

    def __init__(self, api_client: ApiClient, *, page_size: int = 500, max_retries: int = 4) -> None:
        from ..sources.kube_lister import KubeLister

        self._lister = KubeLister(api_client, page_size=page_size, max_retries=max_retries)
        resources = self._lister.dynamic.resources
        self._streams = resources.get(api_version="image.openshift.io/v1", kind="ImageStream")
        self._images = resources.get(api_version="image.openshift.io/v1", kind="Image")
        self._holders: dict[str, set[tuple[str, str]]] = {}

    def prepare(self, batch: pd.DataFrame) -> None:
        wanted = set(batch["digest"])
        holders: dict[str, set[tuple[str, str]]] = {}
        for stream in self._lister.list_all("image.openshift.io/v1", "ImageStream"):
            meta = stream["metadata"]
            for named in (stream.get("status") or {}).get("tags") or []:
                for item in named.get("items") or []:
                    if item.get("image") in wanted:
                        holders.setdefault(item["image"], set()).add((meta["namespace"], meta["name"]))
        self._holders = holders

    def delete(self, repository: str, digest: str) -> Deletion:
        from kubernetes.dynamic.exceptions import DynamicApiError
        from urllib3.exceptions import HTTPError

        untagged = []
        for namespace, name in sorted(self._holders.get(digest, ())):
            removed = self._remove_tag_events(namespace, name, digest)
            if removed:
                untagged.append(f"{removed} tag event(s) from {namespace}/{name}")
        done = f"removed {', '.join(untagged)}; " if untagged else ""
        try:
            self._images.delete(name=digest)
        except DynamicApiError as error:
            if error.status == 404:
                return Deletion(already_gone=True, detail=f"{done}Image {digest} was already deleted")
            raise DeletionFailed(f"{done}deleting Image {digest}: HTTP {error.status} {error.reason}") from None
        except HTTPError as error:
            raise DeletionFailed(f"{done}deleting Image {digest}: {type(error).__name__}") from None
        return Deletion(already_gone=False, detail=f"{done}deleted Image {digest}")

    def _remove_tag_events(self, namespace: str, name: str, digest: str) -> int:
        """Write the stream's status without the image's tag events; how many were removed."""
        from kubernetes.dynamic.exceptions import DynamicApiError
        from urllib3.exceptions import HTTPError

        what = f"imagestream {namespace}/{name}"
        for _ in range(_CONFLICT_RETRIES):
            try:
                stream = self._streams.get(name=name, namespace=namespace).to_dict()
                status = stream.get("status") or {}
                kept_tags, removed = [], 0
                for named in status.get("tags") or []:
                    items = [item for item in named.get("items") or [] if item.get("image") != digest]
                    removed += len(named.get("items") or []) - len(items)
                    if items:
                        kept_tags.append({**named, "items": items})
                if not removed:
                    return 0
                stream["status"] = {**status, "tags": kept_tags}
                self._streams.status.replace(body=stream, name=name, namespace=namespace)
                return removed
            except DynamicApiError as error:
                if error.status == 404:
                    return 0
                if error.status != 409:
                    raise DeletionFailed(f"updating the status of {what}: HTTP {error.status} {error.reason}") from None
            except HTTPError as error:
                raise DeletionFailed(f"updating the status of {what}: {type(error).__name__}") from None
        raise DeletionFailed(f"updating the status of {what}: it changed {_CONFLICT_RETRIES} times in a row (409)")


# ------------------------------------------------------------------------------ live state
class LiveCluster:
    """The live references and tag revisions a batch is re-checked against, from the API.

    Both read the whole cluster, whatever namespaces the batch's images live in: a workload
    in any namespace may run an image of another one, and `oc tag` may promote it into any
    other stream (the plan saw the whole cluster too). Lists are complete or raise.
    """

    def __init__(self, api_client: ApiClient, *, cluster: str, page_size: int = 500, max_retries: int = 4) -> None:
        from ..sources.kube_lister import KubeLister

        self._lister = KubeLister(api_client, page_size=page_size, max_retries=max_retries)
        self.cluster = cluster

    def references(self, namespaces: set[str]) -> pd.DataFrame:
        """The references dataset as of now (tags resolved against the live streams)."""
        from ..sources.openshift import OPENSHIFT_ONLY, WORKLOAD_KINDS

        workloads = {kind: self._lister.list_all(api_version, kind) for api_version, kind, _ in WORKLOAD_KINDS
                     if api_version not in OPENSHIFT_ONLY or self._lister.has(api_version, kind)}
        return self._snapshot(workloads).references_frame()

    def tags(self, namespaces: set[str]) -> pd.DataFrame:
        """The tags dataset as of now: every revision of every ImageStream tag."""
        return self._snapshot({}).tags_frame()

    def _snapshot(self, workloads: dict[str, list[dict]]) -> OpenShiftSnapshot:
        from ..sources.openshift import OpenShiftSnapshot

        return OpenShiftSnapshot(observed_at=datetime.now(timezone.utc), cluster=self.cluster, namespaces=[],
                                 image_rows=[], imagestreams=self._lister.list_all("image.openshift.io/v1", "ImageStream"),
                                 workloads=workloads)


def live_holds(digests: set[str], references: pd.DataFrame, tags: pd.DataFrame, *, now: datetime,
               keep_younger_than: timedelta) -> dict[str, tuple[str, str]]:
    """Digests the live cluster holds now, with the skip outcome and a sentence saying why.

    Referenced (any reference row, active or not, by resolved digest or by `@digest` in the
    reference as written) wins over re-tagged (a tag's current revision), which wins over
    younger (a tag event created less than `keep_younger_than` before `now`).
    """
    wanted = list(digests)
    holds: dict[str, tuple[str, str]] = {}
    resolved = references["digest"].astype(object)
    written = references["image_ref"].astype(object).str.extract(_DIGEST_IN_REFERENCE, expand=False)
    named = resolved.where(resolved.isin(wanted), written)       # the wanted digest a row names, if any
    referenced = references.assign(held=named)[named.isin(wanted)]
    for digest, rows in referenced.groupby("held", sort=True):
        first = rows.iloc[0]
        more = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
        why = (f"referenced by {first['kind']} {first['namespace']}/{first['name']} "
               f"({first['source']}, container {first['container']}){more}")
        holds[digest] = (SKIPPED_REFERENCED, why)
    revisions = tags[tags["digest"].isin(wanted)]
    for row in revisions[revisions["revision"] == 0].itertuples():
        why = f"the current revision of {row.namespace}/{row.imagestream}:{row.tag}"
        holds.setdefault(row.digest, (SKIPPED_RETAGGED, why))
    created = pd.to_datetime(revisions["created_at"], utc=True)
    for row in revisions[created >= pd.Timestamp(now - keep_younger_than)].itertuples():
        why = (f"tagged {row.namespace}/{row.imagestream}:{row.tag} at {pd.Timestamp(row.created_at):%Y-%m-%d %H:%M:%S}"
               f" UTC, less than {format_duration(keep_younger_than)} ago")
        holds.setdefault(row.digest, (SKIPPED_YOUNGER, why))
    return holds


# ------------------------------------------------------------------------------ the result
@dataclass(frozen=True)
class ExecutionResult:
    """What one execution did: its audit records, and why it stopped if it did."""

    plan_id: str
    records: pd.DataFrame = field(repr=False)       # the gc_audit records this run appended
    already_done: frozenset[str]                    # removed by earlier attempts, not touched again
    circuit_breaker_open: bool

    def outcomes(self) -> dict[str, int]:
        return {str(name): int(count) for name, count in self.records["outcome"].value_counts().items()}

    @property
    def deleted(self) -> frozenset[str]:
        """Digests this run deleted (not those it found already gone)."""
        return frozenset(self.records.loc[self.records["outcome"] == DELETED, "digest"])

    @property
    def removed(self) -> pd.DataFrame:
        """Records of images this run removed or found gone: what verification checks."""
        return self.records[self.records["outcome"].isin(DONE)]

    @property
    def bytes_deleted(self) -> int:
        """The plan's bytes of the images this run deleted."""
        return int(self.records.loc[self.records["outcome"] == DELETED, "bytes"].sum())

    @property
    def failures(self) -> pd.DataFrame:
        return self.records[self.records["outcome"] == FAILED]


# ------------------------------------------------------------------------------ execution
class _Clock:
    """`now` as given, advancing with real time: the run's reference instant for age checks."""

    def __init__(self, now: datetime | None) -> None:
        start = now or datetime.now(timezone.utc)
        if start.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got {start!r}")
        self._start, self._started = start, time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._started)


def _checked_plan(plan: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The plan's id and its rows in execution order, with each unit's most cautious mode."""
    plan_id = single_plan_id(plan, GC_PLAN)
    if plan["digest"].duplicated().any():
        raise ValueError("the plan names a digest twice; each image is planned once")
    actions = set(plan["action"]) - {ACTION_DELETE, ACTION_WITH_SUBJECT}
    modes = set(plan["mode"]) - set(GC_MODES_BY_CAUTION)
    if actions or modes:
        raise ValueError(f"unknown action(s) {sorted(actions)} or mode(s) {sorted(modes)} in the plan")
    rows = plan.assign(follower=plan["action"] == ACTION_WITH_SUBJECT,
                       caution=plan["mode"].map(GC_MODES_BY_CAUTION.index).astype(int))
    rows = rows.assign(unit_mode=rows.groupby("rank")["caution"].transform("min").map(
        lambda caution: GC_MODES_BY_CAUTION[caution]))
    # Subjects before what goes with them: see the module docstring.
    rows = rows.sort_values(["rank", "follower", "digest"], ignore_index=True)
    return plan_id, rows


def _within_caps(units: pd.DataFrame, max_images: int, max_bytes: int) -> pd.Series:
    """Per row: whether its unit fits the caps, taking whole units in rank order (a prefix)."""
    if units.empty:
        return pd.Series(False, index=units.index)
    per_unit = units.groupby("rank", sort=True).agg(images=("digest", "size"), bytes=("bytes", "sum"))
    fits = (per_unit["images"].cumsum() <= max_images) & (per_unit["bytes"].cumsum() <= max_bytes)
    return units["rank"].map(fits.cummin()).astype(bool)


def _batches(rows: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    """Whole units, grouped by their subject's namespace, at most `size` rows a batch (a
    bigger unit goes alone); namespaces in the order of their best-ranked unit."""
    namespace = rows.groupby("rank")["namespace"].transform("first")
    for _, group in rows.assign(unit_namespace=namespace).groupby("unit_namespace", sort=False):
        batch: list[pd.DataFrame] = []
        count = 0
        for _, unit in group.groupby("rank", sort=True):
            if batch and count + len(unit) > size:
                yield pd.concat(batch)
                batch, count = [], 0
            batch.append(unit)
            count += len(unit)
        if batch:
            yield pd.concat(batch)


class _Run:
    """The state of one execution: records go to the audit log as they are made."""

    def __init__(self, plan_id: str, approval: Approval | None, audit: AuditLog, clock: _Clock) -> None:
        self.plan_id = plan_id
        self.approval = approval
        self.audit = audit
        self.clock = clock
        self.written: list[AuditRecord] = []
        self.attempted: set[str] = set()
        self.failures = 0

    def record(self, rows: pd.DataFrame, outcome: str, detail: str | None) -> None:
        """Audit `rows` with one outcome, appended as one part."""
        approved_by = self.approval.approved_by if self.approval is not None else None
        approved_at = self.approval.approved_at if self.approval is not None else None
        executed_at = self.clock.now()
        records = [AuditRecord(plan_id=self.plan_id, digest=row.digest, repository=row.repository,
                               namespace=row.namespace, action=row.action, bytes=int(row.bytes),
                               approved_by=approved_by, approved_at=approved_at, executed_at=executed_at,
                               outcome=outcome, detail=detail)
                   for row in rows.itertuples()]
        self.audit.record(records)
        self.written.extend(records)
        self.attempted.update(rows["digest"])

    def refuse_all(self, rows: pd.DataFrame, outcome: str, why: str) -> NoReturn:
        self.record(rows, outcome, why)
        log.error("GC plan %s refused: %s", self.plan_id, why)
        raise ApprovalError(f"plan {self.plan_id}: {why}")


def execute_plan(plan: pd.DataFrame, *, approval: Approval | None, policy: Policy, backend: DeletionBackend,
                 reread_references: Callable[[set[str]], pd.DataFrame],
                 reread_tags: Callable[[set[str]], pd.DataFrame], audit: AuditLog,
                 now: datetime | None = None, batch_size: int | None = None) -> ExecutionResult:
    """Delete the plan's images that its approval, its modes, the caps and the live cluster allow.

    `plan` is the gc_plan dataset of one plan. `reread_references` and `reread_tags` are given
    the namespaces of a batch's images and return the live references and tags datasets
    (`LiveCluster` reads them from the API); they must raise rather than return a partial
    list. `now` (default: the wall clock) is the run's start on the clock the plan's and the
    tags' timestamps use. `batch_size` defaults to the policy's `gc.batch_size` if it has one,
    else 50. Raises ApprovalError, after auditing the refusal, for another plan's approval or
    an expired plan; a crash inside the backend propagates, with every attempt so far audited.
    """
    gc = policy.gc
    size = batch_size or getattr(gc, "batch_size", DEFAULT_BATCH_SIZE)
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    if plan.empty:
        # A plan with nothing to delete has no rows, so no plan id either: nothing to audit.
        return ExecutionResult(plan_id="", records=records_frame([]), already_done=frozenset(),
                               circuit_breaker_open=False)
    plan_id, rows = _checked_plan(plan)
    clock = _Clock(now)
    run = _Run(plan_id, approval, audit, clock)
    created = pd.Timestamp(rows["created_at"].min()).to_pydatetime()
    # The day before the plan was made bounds what is read: days are UTC, plans are not.
    done = audit.executed(plan_id, since=created.date() - timedelta(days=1))
    remaining = rows[~rows["digest"].isin(list(done))]
    if done:
        log.info("GC plan %s: %d image(s) were removed by an earlier attempt and are skipped", plan_id, len(done))

    if approval is not None and approval.plan_id != plan_id:
        run.refuse_all(remaining, REFUSED_NOT_APPROVED, f"the approval is for plan {approval.plan_id}, not this one")
    age = clock.now() - created
    if age > gc.approval.plan_max_age:
        run.refuse_all(remaining, REFUSED_EXPIRED,
                       f"planned {format_duration(timedelta(seconds=int(age.total_seconds())))} ago, longer than "
                       f"gc.approval.plan_max_age ({format_duration(gc.approval.plan_max_age)}): re-plan it")

    audit_mode = remaining["unit_mode"] == "audit"
    unapproved = (remaining["unit_mode"] == "approve") & (approval is None)
    run.record(remaining[audit_mode], REFUSED_NOT_APPROVED, "mode audit: reported, never executed")
    run.record(remaining[unapproved], REFUSED_NOT_APPROVED, "mode approve: no approval was given for this plan")
    executable = remaining[~audit_mode & ~unapproved]

    removed_before = rows[rows["digest"].isin(list(done))]
    fits = _within_caps(executable, gc.caps.max_images - len(removed_before),
                        gc.caps.max_bytes - int(removed_before["bytes"].sum()))
    run.record(executable[~fits], SKIPPED_CAP,
               f"beyond the per-run caps (max_images {gc.caps.max_images:,}, max_bytes {gc.caps.max_bytes:,}), "
               f"counting {len(removed_before)} image(s) earlier attempts removed")
    selected = executable[fits]

    for batch in _batches(selected, size):
        if run.failures >= gc.circuit_breaker.max_errors:
            break
        _execute_batch(batch, run, backend, reread_references, reread_tags, policy)
    breaker_open = run.failures >= gc.circuit_breaker.max_errors
    if breaker_open:
        not_attempted = selected[~selected["digest"].isin(list(run.attempted))]
        run.record(not_attempted, SKIPPED_CAP, f"not attempted: the circuit breaker opened after {run.failures} "
                                               "failed deletions (gc.circuit_breaker.max_errors)")
        log.error("GC plan %s: circuit breaker open after %d failed deletions; %d image(s) not attempted",
                  plan_id, run.failures, len(not_attempted))
    result = ExecutionResult(plan_id=plan_id, records=records_frame(run.written), already_done=frozenset(done),
                             circuit_breaker_open=breaker_open)
    log.info("GC plan %s: %s", plan_id, result.outcomes())
    return result


def _execute_batch(batch: pd.DataFrame, run: _Run, backend: DeletionBackend,
                   reread_references: Callable[[set[str]], pd.DataFrame],
                   reread_tags: Callable[[set[str]], pd.DataFrame], policy: Policy) -> None:
    """Re-check one batch against the live cluster, then delete unit by unit, subject first."""
    gc = policy.gc
    namespaces = set(batch["namespace"])
    holds = live_holds(set(batch["digest"]), reread_references(namespaces), reread_tags(namespaces),
                       now=run.clock.now(), keep_younger_than=gc.keep_younger_than)
    backend.prepare(batch[~batch["digest"].isin(list(holds))])
    for _, unit in batch.groupby("rank", sort=True):
        blocked: tuple[str, str] | None = None      # why the dependents of this unit's subject stay
        for row in unit.itertuples():
            one = unit[unit["digest"] == row.digest]
            if run.failures >= gc.circuit_breaker.max_errors:
                return
            if row.follower and blocked is not None:
                run.record(one, *blocked)
                continue
            if row.digest in holds:
                outcome, why = holds[row.digest]
                run.record(one, outcome, why)
                if not row.follower:
                    blocked = (outcome, f"goes with {row.digest}, which stays: {why}")
                continue
            try:
                deletion = backend.delete(row.repository, row.digest)
            except DeletionFailed as error:
                run.failures += 1
                run.record(one, FAILED, str(error))
                if not row.follower:
                    blocked = (FAILED, f"not attempted: deleting {row.digest}, which it goes with, failed")
                continue
            run.record(one, ALREADY_GONE if deletion.already_gone else DELETED, deletion.detail)
