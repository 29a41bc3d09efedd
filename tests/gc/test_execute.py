"""Executing a GC plan: only what was approved, never what the live cluster uses now, within the
blast radius, idempotently, and with a subject always deleted before what goes with it.

Most tests run against the sandbox over real HTTP: its registry deletes manifests, its
Kubernetes API serves the live references and tags a batch is re-checked against, and Events.
Candidates are images the sandbox's cluster really does not use (old feature and app builds in
old tag revisions); each test takes its own from a shared pool, so the tests stay independent
while one sandbox serves them all. The ordering rules are tested with an in-memory backend,
where a stop between two deletions can be placed exactly.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.dynamic.exceptions import NotFoundError
from registry_lifecycle.config import Policy, load_policy, policy_with
from registry_lifecycle.datasets import REFERENCES, TAGS
from registry_lifecycle.gc.audit import (ALREADY_GONE, DELETED, EVENT_REASON, FAILED, REFUSED_EXPIRED,
                                         REFUSED_NOT_APPROVED, SKIPPED_CAP, SKIPPED_REFERENCED, SKIPPED_RETAGGED,
                                         SKIPPED_YOUNGER, AuditLog, EventRecorder)
from registry_lifecycle.gc.execute import (Approval, ApprovalError, Deletion, DeletionFailed, ExecutionResult,
                                           LiveCluster, OciBackend, OpenShiftBackend, execute_plan, live_holds)
from registry_lifecycle.gc.plan import ACTION_DELETE, ACTION_WITH_SUBJECT, GC_PLAN
from registry_lifecycle.gc.verify import verify_execution
from registry_lifecycle.lake import Lake
from registry_lifecycle.sandbox import Sandbox
from registry_lifecycle.sandbox.world import SimImage
from registry_lifecycle.sources.kube_lister import KubeLister
from registry_lifecycle.sources.registry import RegistryClient

UNTIL = date(2026, 11, 27)
APPROVER = "alice@platform"


# ------------------------------------------------------------------------------ building plans
def plan_frame(images: list[tuple[str, str, int]], *, plan_id: str, created_at: datetime, mode: str = "approve",
               actions: list[str] | None = None, ranks: list[int] | None = None) -> pd.DataFrame:
    """A gc_plan frame for (digest, repository, bytes) rows, ranked 1..n unless told."""
    rows = [{"plan_id": plan_id, "digest": digest, "repository": repository,
             "namespace": repository.split("/", 1)[0],
             "action": actions[i] if actions else ACTION_DELETE, "bytes": size,
             "mode": mode, "rank": ranks[i] if ranks else i + 1,
             "reason": "p_reuse 0.001 <= threshold 0.02", "created_at": created_at}
            for i, (digest, repository, size) in enumerate(images)]
    return pa.Table.from_pylist(rows, schema=GC_PLAN.schema).to_pandas()


Reader = Callable[[set[str]], pd.DataFrame]


def empty(dataset) -> Reader:
    return lambda namespaces: pa.Table.from_pylist([], schema=dataset.schema).to_pandas()


def with_rows(read: Reader, dataset, rows: list[dict]) -> Reader:
    """A live reader plus rows that appeared since planning (a new workload, a new tag)."""
    extra = pa.Table.from_pylist(rows, schema=dataset.schema).to_pandas()
    return lambda namespaces: pd.concat([read(namespaces), extra], ignore_index=True)


def outcomes(result: ExecutionResult) -> dict[str, str]:
    return dict(zip(result.records["digest"], result.records["outcome"]))


# ------------------------------------------------------------------------------ the sandbox
@dataclass
class Cluster:
    """The sandbox and clients on it, with a pool of images nothing in the cluster uses."""

    sandbox: Sandbox
    api_client: ApiClient
    live: LiveCluster
    registry_credentials: dict[str, str]
    pool: list[SimImage] = field(default_factory=list)

    @property
    def now(self) -> datetime:
        return self.sandbox.clock.now()

    def take(self, count: int, *, namespace: str | None = None) -> list[SimImage]:
        """`count` candidates (of one namespace, if given) that no other test touches."""
        fitting = [image for image in self.pool if namespace is None or image.repository.startswith(f"{namespace}/")]
        assert len(fitting) >= count, "the sandbox has too few unused images for the tests"
        taken = fitting[:count]
        self.pool = [image for image in self.pool if image not in taken]
        return taken

    def registry(self, **options) -> RegistryClient:
        options.setdefault("backoff", 0.01)
        return RegistryClient(self.sandbox.endpoints["registry"], username=self.registry_credentials["username"],
                              password=self.registry_credentials["password"], **options)

    def stored(self, image: SimImage) -> bool:
        with self.registry() as client:
            return client.resolve(image.repository, image.digest) is not None


def unused_images(sandbox: Sandbox, live: LiveCluster) -> list[SimImage]:
    """Old builds that no workload references, no tag points at now, nothing signs or lists,
    and that the registry serves: what a plan deletes."""
    world, now = sandbox.world, sandbox.clock.now()
    references, tags = live.references(set()), live.tags(set())
    referenced = set(references["digest"].dropna()) | set(references["image_ref"].str.extract(
        r"@(sha256:[0-9a-f]{64})", expand=False).dropna())
    current = set(tags.loc[tags["revision"] == 0, "digest"])
    recent = set(tags.loc[tags["created_at"] > now - timedelta(hours=6), "digest"])
    tagged = set(tags["digest"])
    subjects = {image.subject for image in world.images.values() if image.subject}
    children = {child for image in world.images.values() for child in image.children}
    return sorted((image for digest, image in world.images.items()
                   if image.exists_at(now) and image.kind in ("feature", "app") and digest in tagged
                   and not {digest} & (referenced | current | recent | subjects | children)),
                  key=lambda image: image.digest)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Sandbox(seed=7, scale="tiny", days=60, until=UNTIL) as sandbox:
        api_client = kube_config.new_client_from_config(config_file=sandbox.endpoints["kubeconfig"])
        live = LiveCluster(api_client, cluster="prod-east")
        credentials = json.loads(Path(sandbox.endpoints["registry_credentials"]).read_text())
        running = Cluster(sandbox, api_client, live, credentials, unused_images(sandbox, live))
        assert len(running.pool) >= 35, "the scenario must hold enough unused images for these tests"
        try:
            yield running
        finally:
            api_client.close()


@pytest.fixture
def faults(cluster: Cluster):
    yield cluster.sandbox.faults
    cluster.sandbox.faults.clear()


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(Lake(tmp_path / "lake"), UNTIL, "manual__2026-11-27")


@pytest.fixture
def policy() -> Policy:
    return load_policy()


def sandbox_plan(cluster: Cluster, images: list[SimImage], *, plan_id: str = "plan-a",
                 age: timedelta = timedelta(hours=2), **options) -> pd.DataFrame:
    return plan_frame([(image.digest, image.repository, image.size) for image in images], plan_id=plan_id,
                      created_at=cluster.now - age, **options)


def approval(plan: pd.DataFrame) -> Approval:
    return Approval(plan_id=plan["plan_id"].iloc[0], approved_by=APPROVER,
                    approved_at=pd.Timestamp(plan["created_at"].iloc[0]).to_pydatetime() + timedelta(minutes=20))


def run(cluster: Cluster, plan: pd.DataFrame, audit: AuditLog, policy: Policy, *, approved: bool = True,
        backend=None, references=None, tags=None, **options) -> ExecutionResult:
    with cluster.registry(max_retries=0) as client:
        return execute_plan(plan, approval=approval(plan) if approved else None, policy=policy,
                            backend=backend or OciBackend(client),
                            reread_references=references or cluster.live.references,
                            reread_tags=tags or cluster.live.tags, audit=audit, now=cluster.now, **options)


# ------------------------------------------------------------------------------ approval
def test_an_approved_plan_is_deleted_audited_and_announced(cluster: Cluster, tmp_path: Path, policy: Policy):
    images = cluster.take(3)
    plan = sandbox_plan(cluster, images)
    audit = AuditLog(Lake(tmp_path / "lake"), UNTIL, "manual__2026-11-27",
                     events=EventRecorder(cluster.api_client, instance="test"))
    result = run(cluster, plan, audit, policy)

    assert result.deleted == {image.digest for image in images}
    assert not any(cluster.stored(image) for image in images)
    log = audit.read(plan["plan_id"].iloc[0])
    assert list(log["outcome"]) == [DELETED] * 3
    assert log["approved_by"].eq(APPROVER).all() and log["approved_at"].notna().all()
    assert result.bytes_deleted == sum(image.size for image in images)
    with cluster.registry() as client:
        assert verify_execution(client, result.removed).ok
    namespace = images[0].repository.split("/")[0]
    events = [event for event in CoreV1Api(cluster.api_client).list_namespaced_event(namespace).items
              if event.reason == EVENT_REASON and images[0].digest in event.message]
    assert len(events) == 1 and events[0].involved_object.name == images[0].repository.split("/")[1]


def test_without_an_approval_nothing_is_deleted_and_the_refusal_is_audited(cluster: Cluster, audit: AuditLog,
                                                                          policy: Policy):
    images = cluster.take(2)
    result = run(cluster, sandbox_plan(cluster, images), audit, policy, approved=False)
    assert set(outcomes(result).values()) == {REFUSED_NOT_APPROVED}
    assert all(cluster.stored(image) for image in images)
    assert audit.read("plan-a")["detail"].str.contains("no approval").all()


def test_the_approval_of_another_plan_refuses_the_whole_run(cluster: Cluster, audit: AuditLog, policy: Policy):
    images = cluster.take(2)
    plan = sandbox_plan(cluster, images, plan_id="plan-b", mode="auto")
    wrong = Approval(plan_id="plan-a", approved_by=APPROVER, approved_at=cluster.now)
    with cluster.registry() as client, pytest.raises(ApprovalError, match="the approval is for plan plan-a"):
        execute_plan(plan, approval=wrong, policy=policy, backend=OciBackend(client),
                     reread_references=cluster.live.references, reread_tags=cluster.live.tags, audit=audit,
                     now=cluster.now)
    assert all(cluster.stored(image) for image in images)
    assert list(audit.read("plan-b")["outcome"]) == [REFUSED_NOT_APPROVED] * 2


def test_an_expired_plan_is_refused_although_approved(cluster: Cluster, audit: AuditLog, policy: Policy):
    images = cluster.take(2)
    plan = sandbox_plan(cluster, images, age=policy.gc.approval.plan_max_age + timedelta(hours=1))
    with pytest.raises(ApprovalError, match="longer than gc.approval.plan_max_age"):
        run(cluster, plan, audit, policy)
    assert all(cluster.stored(image) for image in images)
    assert list(audit.read("plan-a")["outcome"]) == [REFUSED_EXPIRED] * 2


def test_audit_mode_executes_nothing_even_when_approved(cluster: Cluster, audit: AuditLog, policy: Policy):
    images = cluster.take(2)
    result = run(cluster, sandbox_plan(cluster, images, mode="audit"), audit, policy)
    assert set(outcomes(result).values()) == {REFUSED_NOT_APPROVED}
    assert result.records["detail"].str.startswith("mode audit").all()
    assert all(cluster.stored(image) for image in images)


def test_auto_mode_needs_no_approval_but_stays_within_the_caps(cluster: Cluster, audit: AuditLog, policy: Policy):
    images = cluster.take(3)
    capped = policy_with(policy, {"gc": {"caps": {"max_images": 2}}})
    result = run(cluster, sandbox_plan(cluster, images, mode="auto"), audit, capped, approved=False)
    assert [outcomes(result)[image.digest] for image in images] == [DELETED, DELETED, SKIPPED_CAP]
    assert result.records["approved_by"].isna().all()
    assert cluster.stored(images[2])


# ------------------------------------------------------------------------------ the live re-check
def test_an_image_a_workload_starts_to_use_after_planning_is_not_deleted(cluster: Cluster, audit: AuditLog,
                                                                         policy: Policy):
    images = cluster.take(3)
    used = images[1]
    namespace = used.repository.split("/")[0]
    new_pod = {"cluster": "prod-east", "namespace": namespace, "kind": "Pod", "name": "hotfix-7d9f", "container": "app",
               "image_ref": f"image-registry.openshift-image-registry.svc:5000/{used.repository}@{used.digest}",
               "digest": None, "source": "pod", "active": True, "observed_at": cluster.now}
    result = run(cluster, sandbox_plan(cluster, images), audit, policy,
                 references=with_rows(cluster.live.references, REFERENCES, [new_pod]))
    assert [outcomes(result)[image.digest] for image in images] == [DELETED, SKIPPED_REFERENCED, DELETED]
    assert cluster.stored(used)
    detail = result.records.set_index("digest").at[used.digest, "detail"]
    assert detail.startswith(f"referenced by Pod {namespace}/hotfix-7d9f")


def test_an_image_retagged_or_tagged_again_since_planning_is_not_deleted(cluster: Cluster, audit: AuditLog,
                                                                         policy: Policy):
    images = cluster.take(3)
    retagged, fresh = images[0], images[2]
    namespace, stream = retagged.repository.split("/")
    new_tags = [
        {"namespace": namespace, "imagestream": stream, "tag": "rollback", "revision": 0, "digest": retagged.digest,
         "created_at": cluster.now - timedelta(hours=3)},
        {"namespace": namespace, "imagestream": stream, "tag": "canary", "revision": 1, "digest": fresh.digest,
         "created_at": cluster.now - timedelta(minutes=5)},
    ]
    result = run(cluster, sandbox_plan(cluster, images), audit, policy,
                 tags=with_rows(cluster.live.tags, TAGS, new_tags))
    assert [outcomes(result)[image.digest] for image in images] == [SKIPPED_RETAGGED, DELETED, SKIPPED_YOUNGER]
    assert cluster.stored(retagged) and cluster.stored(fresh)


def test_live_holds_prefer_a_reference_to_a_tag_and_a_tag_to_its_age():
    digest = "sha256:" + "a" * 64
    now = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    reference = pa.Table.from_pylist([{"cluster": "c", "namespace": "ns", "kind": "CronJob", "name": "report",
                                       "container": "main", "image_ref": "ns/app:monthly", "digest": digest,
                                       "source": "cronjob", "active": False, "observed_at": now}],
                                     schema=REFERENCES.schema).to_pandas()
    tag = pa.Table.from_pylist([{"namespace": "ns", "imagestream": "app", "tag": "monthly", "revision": 0,
                                 "digest": digest, "created_at": now}], schema=TAGS.schema).to_pandas()
    holds = live_holds({digest}, reference, tag, now=now, keep_younger_than=timedelta(hours=1))
    assert holds[digest] == (SKIPPED_REFERENCED, "referenced by CronJob ns/report (cronjob, container main)")
    assert live_holds({digest}, reference.iloc[:0], tag, now=now,
                      keep_younger_than=timedelta(hours=1))[digest][0] == SKIPPED_RETAGGED


# ------------------------------------------------------------------------------ blast radius
@pytest.mark.parametrize("caps", [{"max_images": 2}, {"max_bytes": "cap"}], ids=["images", "bytes"])
def test_caps_take_whole_units_in_rank_order(cluster: Cluster, audit: AuditLog, policy: Policy, caps: dict):
    images = cluster.take(4)
    if caps.get("max_bytes") == "cap":
        caps = {"max_bytes": images[0].size + images[1].size}
    plan = sandbox_plan(cluster, images, ranks=[3, 1, 4, 2])
    result = run(cluster, plan, audit, policy_with(policy, {"gc": {"caps": caps}}))
    assert [outcomes(result)[image.digest] for image in images] == [SKIPPED_CAP, DELETED, SKIPPED_CAP, DELETED]
    assert cluster.stored(images[0]) and not cluster.stored(images[1])


def test_the_circuit_breaker_stops_the_run_and_audits_what_it_did_not_attempt(cluster: Cluster, audit: AuditLog,
                                                                              policy: Policy, faults):
    images = cluster.take(5)
    faults.add(api="registry", method="DELETE", status=500, times=None)
    breaker = policy_with(policy, {"gc": {"circuit_breaker": {"max_errors": 2}}})
    result = run(cluster, sandbox_plan(cluster, images), audit, breaker)
    faults.clear()
    assert result.circuit_breaker_open
    assert sorted(outcomes(result)[image.digest] for image in images) == [FAILED, FAILED] + [SKIPPED_CAP] * 3
    assert result.records.loc[result.records["outcome"] == SKIPPED_CAP, "detail"].str.contains(
        "circuit breaker opened after 2 failed deletions").all()
    assert "HTTP 500" in result.failures["detail"].iloc[0]
    assert all(cluster.stored(image) for image in images)


# ------------------------------------------------------------------------------ idempotence
class Crashing:
    """A backend whose worker dies after `after` deletions (not a failed deletion: a crash)."""

    def __init__(self, backend, after: int) -> None:
        self.backend, self.after, self.calls = backend, after, []

    def prepare(self, batch: pd.DataFrame) -> None:
        self.backend.prepare(batch)

    def delete(self, repository: str, digest: str) -> Deletion:
        if len(self.calls) == self.after:
            raise RuntimeError("worker pod evicted")
        self.calls.append(digest)
        return self.backend.delete(repository, digest)


def test_a_run_killed_mid_batch_resumes_without_repeating_an_action(cluster: Cluster, audit: AuditLog,
                                                                    policy: Policy):
    images = cluster.take(5, namespace="team-a-dev")       # one batch: the crash is in its middle
    plan = sandbox_plan(cluster, images)
    deletes_before = cluster.sandbox.servers["registry"].endpoint_counts().get("delete", 0)
    with cluster.registry() as client:
        first = Crashing(OciBackend(client), after=2)
        with pytest.raises(RuntimeError, match="evicted"):
            run(cluster, plan, audit, policy, backend=first)
        assert len(first.calls) == 2 and audit.executed("plan-a") == set(first.calls)

        retry = Crashing(OciBackend(client), after=99)
        result = run(cluster, plan, audit, policy, backend=retry)
    assert result.already_done == set(first.calls)
    assert sorted(first.calls + retry.calls) == sorted(image.digest for image in images)
    assert cluster.sandbox.servers["registry"].endpoint_counts()["delete"] - deletes_before == 5
    log = audit.read("plan-a")
    assert sorted(log["digest"]) == sorted(image.digest for image in images)      # one record per action
    assert set(log["outcome"]) == {DELETED}
    assert not any(cluster.stored(image) for image in images)


def test_an_image_deleted_behind_the_plans_back_is_already_gone(cluster: Cluster, audit: AuditLog, policy: Policy):
    images = cluster.take(2)
    with cluster.registry() as client:
        assert client.delete_manifest(images[0].repository, images[0].digest)
    result = run(cluster, sandbox_plan(cluster, images), audit, policy)
    assert [outcomes(result)[image.digest] for image in images] == [ALREADY_GONE, DELETED]
    assert audit.executed("plan-a") == {image.digest for image in images}


# ------------------------------------------------------------------------------ OpenShift backend
def test_the_openshift_backend_prunes_like_oc_adm_prune_images(cluster: Cluster, audit: AuditLog, policy: Policy):
    images = cluster.take(3)
    lister = KubeLister(cluster.api_client)
    revisions_before = cluster.live.tags(set())
    result = run(cluster, sandbox_plan(cluster, images), audit, policy,
                 backend=OpenShiftBackend(cluster.api_client))

    assert result.deleted == {image.digest for image in images}
    assert "tag event(s) from" in result.records["detail"].iloc[0]
    image_api = lister.dynamic.resources.get(api_version="image.openshift.io/v1", kind="Image")
    for image in images:
        with pytest.raises(NotFoundError):
            image_api.get(name=image.digest)
        assert not cluster.stored(image)
    revisions_after = cluster.live.tags(set())
    doomed = {image.digest for image in images}
    assert not doomed & set(revisions_after["digest"])
    # The streams' status writes removed the tag events themselves, not only the Images.
    world = cluster.sandbox.world
    assert not doomed & {item.digest for stream in world.streams.values() for history in stream.tags.values()
                         for item in history.items}
    # Every other revision stays, and the streams' current tags are untouched.
    untouched = revisions_before[~revisions_before["digest"].isin(list(doomed))]
    assert len(revisions_after) == len(untouched)
    assert (set(revisions_after.loc[revisions_after["revision"] == 0, "digest"])
            == set(untouched.loc[untouched["revision"] == 0, "digest"]))
    backend = OpenShiftBackend(cluster.api_client)
    backend.prepare(sandbox_plan(cluster, images[:1]))
    assert backend.delete(images[0].repository, images[0].digest).already_gone


# ------------------------------------------------------------------------------ order and batches
class InMemory:
    """A backend over a set of stored digests that records every call, and can fail or crash."""

    def __init__(self, stored: set[str], *, failing: set[str] = frozenset(), crash_after: int | None = None) -> None:
        self.stored, self.failing, self.crash_after = set(stored), set(failing), crash_after
        self.calls: list[str] = []
        self.batches: list[list[str]] = []

    def prepare(self, batch: pd.DataFrame) -> None:
        self.batches.append(list(batch["digest"]))

    def delete(self, repository: str, digest: str) -> Deletion:
        if self.crash_after is not None and len(self.calls) == self.crash_after:
            raise RuntimeError("killed")
        self.calls.append(digest)
        if digest in self.failing:
            raise DeletionFailed("HTTP 500 from the registry")
        gone = digest not in self.stored
        self.stored.discard(digest)
        return Deletion(already_gone=gone, detail="")


def digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


SUBJECT, SIGNATURE, SBOM = digest("subject"), digest("signature"), digest("sbom")
NOW = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)


def signed_image_plan(plan_id: str = "plan-signed") -> pd.DataFrame:
    """One unit: an image and its signature and SBOM, which go with it; listed dependents first."""
    rows = [(SBOM, "team-a-dev/orders", 300), (SIGNATURE, "team-a-dev/orders", 700),
            (SUBJECT, "team-a-dev/orders", 50 * 2**20)]
    return plan_frame(rows, plan_id=plan_id, created_at=NOW - timedelta(hours=1),
                      actions=[ACTION_WITH_SUBJECT, ACTION_WITH_SUBJECT, ACTION_DELETE], ranks=[1, 1, 1])


def run_in_memory(plan: pd.DataFrame, backend: InMemory, audit: AuditLog, policy: Policy, *,
                  references=None, **options) -> ExecutionResult:
    return execute_plan(plan, approval=approval(plan), policy=policy, backend=backend,
                        reread_references=references or empty(REFERENCES), reread_tags=empty(TAGS), audit=audit,
                        now=NOW, **options)


def test_a_subject_is_deleted_before_the_signatures_and_sboms_that_go_with_it(audit: AuditLog, policy: Policy):
    backend = InMemory({SUBJECT, SIGNATURE, SBOM})
    run_in_memory(signed_image_plan(), backend, audit, policy)
    assert backend.calls[0] == SUBJECT and set(backend.calls[1:]) == {SIGNATURE, SBOM}


def test_a_stop_after_the_subject_leaves_only_signatures_of_nothing_which_the_retry_deletes(audit: AuditLog,
                                                                                            policy: Policy):
    backend = InMemory({SUBJECT, SIGNATURE, SBOM}, crash_after=1)
    with pytest.raises(RuntimeError):
        run_in_memory(signed_image_plan(), backend, audit, policy)
    # Never a live image without its signature: the image went first.
    assert backend.stored == {SIGNATURE, SBOM}
    backend.crash_after = None
    result = run_in_memory(signed_image_plan(), backend, audit, policy)
    assert backend.stored == set() and result.already_done == {SUBJECT}
    assert sorted(backend.calls) == sorted([SUBJECT, SIGNATURE, SBOM])


def test_when_the_subject_stays_what_goes_with_it_stays_too(audit: AuditLog, policy: Policy):
    used = with_rows(empty(REFERENCES), REFERENCES, [{
        "cluster": "c", "namespace": "team-a-dev", "kind": "Deployment", "name": "orders", "container": "main",
        "image_ref": f"team-a-dev/orders@{SUBJECT}", "digest": SUBJECT, "source": "template", "active": True,
        "observed_at": NOW}])
    backend = InMemory({SUBJECT, SIGNATURE, SBOM})
    result = run_in_memory(signed_image_plan(), backend, audit, policy, references=used)
    assert set(outcomes(result).values()) == {SKIPPED_REFERENCED} and backend.calls == []
    assert result.records.set_index("digest").at[SIGNATURE, "detail"].startswith(f"goes with {SUBJECT}, which stays")

    failing = InMemory({SUBJECT, SIGNATURE, SBOM}, failing={SUBJECT})
    result = run_in_memory(signed_image_plan("plan-failing"), failing, audit, policy)
    assert failing.calls == [SUBJECT] and failing.stored == {SUBJECT, SIGNATURE, SBOM}
    assert set(outcomes(result).values()) == {FAILED}
    assert not result.circuit_breaker_open        # only the subject's deletion failed; the rest was not tried


def test_a_unit_takes_its_most_cautious_mode(audit: AuditLog, policy: Policy):
    plan = signed_image_plan().assign(mode=["audit", "auto", "auto"])
    backend = InMemory({SUBJECT, SIGNATURE, SBOM})
    result = execute_plan(plan, approval=None, policy=policy, backend=backend, reread_references=empty(REFERENCES),
                          reread_tags=empty(TAGS), audit=audit, now=NOW)
    assert backend.calls == [] and set(outcomes(result).values()) == {REFUSED_NOT_APPROVED}


def test_each_batch_rereads_the_cluster_for_its_namespace_first(audit: AuditLog, policy: Policy):
    rows = [(digest(f"{namespace}-{i}"), f"{namespace}/app", 100) for namespace in ("dev", "ci") for i in range(3)]
    plan = plan_frame(rows, plan_id="plan-batches", created_at=NOW - timedelta(hours=1), ranks=[1, 3, 5, 2, 4, 6])
    reads: list[set[str]] = []

    def references(namespaces: set[str]) -> pd.DataFrame:
        reads.append(namespaces)
        return empty(REFERENCES)(namespaces)

    backend = InMemory({row[0] for row in rows})
    run_in_memory(plan, backend, audit, policy, references=references, batch_size=2)
    assert reads == [{"dev"}, {"dev"}, {"ci"}, {"ci"}]
    assert [len(batch) for batch in backend.batches] == [2, 1, 2, 1]
    assert backend.calls == [row[0] for row in rows[:3]] + [row[0] for row in rows[3:]]
