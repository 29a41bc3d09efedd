"""registry_gc run by Airflow itself (`dag.test()`), against the sandbox through Connections,
with its approval answered the way a human answers it.

What is real here. The DAG is loaded as the dag-processor loads it and run by `dag.test()`;
the plan is scored from a lake the real extraction pipeline wrote from the sandbox; deletions
go through the Kubernetes API of the sandbox (the OpenShift backend) and are verified through
its registry API. The approval is Airflow's own Human-in-the-Loop ApprovalOperator: on Airflow
3.3 the task parks in `awaiting_input` and `dag.test()` waits until a response flips it back.
The response comes from another thread, the way it comes in production:

- approve / reject: Airflow's public REST API (`PATCH .../hitlDetails`, the endpoint behind the
  Required Actions page), served in-process by `create_app()` with the SimpleAuthManager, after
  a real password login (`POST /auth/token`); so assigned users and "who responded" are
  Airflow's own checks and records;
- no answer: the scheduler's own timeout sweep (`SchedulerJobRunner.check_awaiting_input_timeouts`),
  which applies the operator's default (Reject) once `response_timeout` has passed.

The cluster channel's sensor defers to its trigger, which `dag.test()` runs in-process (as the
triggerer would), polling the sandbox's Kubernetes API while another thread writes the
ConfigMap with the kubernetes client, as `oc create configmap` and `oc annotate` do.
"""
from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml

from registry_lifecycle.config import load_policy, policy_with
from registry_lifecycle.gc.audit import DELETED, REFUSED_EXPIRED, REFUSED_NOT_APPROVED, SKIPPED_REFERENCED
from registry_lifecycle.gc.plan import GC_PLAN
from registry_lifecycle.lake import Lake
from registry_lifecycle.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "registry_gc"
USERS = {"alice": "alice-password", "bob": "bob-password"}
SANDBOX_DAYS = 60
HISTORY_DAYS = 3
# Short history: the reuse model falls back to its priors (p_reuse 0.9 for an image nobody
# pulled or pushed for 2 x horizon_days), so this threshold plans those images. The plan
# then holds images of team-a-dev (approve), team-b-dev (auto) and infra-agents (audit).
SCORING = {"horizon_days": 7, "threshold": 0.95, "keep_tag_revisions": 1,
           "modes": [{"match": {"namespace": "team-b-dev"}, "mode": "auto"},
                     {"match": {"namespace": "infra-agents"}, "mode": "audit"}]}
APPROVE_NS, AUTO_NS, AUDIT_NS = "team-a-dev", "team-b-dev", "infra-agents"
GIVE_UP_AFTER_S = 240


# ------------------------------------------------------------------------------ the world
@dataclass(frozen=True)
class History:
    """A lake extracted from the sandbox world of one seed and `until`."""

    until: datetime
    lake: Path


def build_history(root: Path, until: datetime) -> History:
    from registry_lifecycle.pipeline import build_sandbox_history

    with Sandbox(days=SANDBOX_DAYS, until=until, data_dir=root / "sandbox") as sandbox:
        policy = policy_with(load_policy(), sandbox.policy_document())
        last = sandbox.world.until.date()
        build_sandbox_history(sandbox, Lake(root / "lake"), policy, last - timedelta(days=HISTORY_DAYS - 1), last,
                              snapshot_every=HISTORY_DAYS)
    return History(until, root / "lake")


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    """Extracted once: each test gets a fresh sandbox of the same world and a copy of this lake."""
    return build_history(tmp_path_factory.mktemp("gc-history"), datetime.now(timezone.utc).replace(microsecond=0))


@dataclass
class GcWorld:
    sandbox: Sandbox
    lake: Lake
    policy_file: Path
    registry_credentials: dict
    marker: Path

    def use_policy(self, gc: dict) -> None:
        """The policy the DAG reads (REGLIFE_POLICY): the sandbox's sources, SCORING and `gc`."""
        policy = policy_with(load_policy(), self.sandbox.policy_document())
        gc_settings = {**SCORING, "backend": "openshift",
                       # The registry's "garbage collection" leaves a mark, so the test sees it ran.
                       "registry_gc": {"command": [sys.executable, "-c",
                                                   "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('gc')",
                                                   str(self.marker)]}}
        policy = policy_with(policy_with(policy, {"gc": gc_settings}), {"gc": gc})
        self.policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json")))

    def stored(self, repository: str, digest: str) -> bool:
        from registry_lifecycle.sources.registry import RegistryClient

        with RegistryClient(self.sandbox.endpoints["registry"], username=self.registry_credentials["username"],
                            password=self.registry_credentials["password"], backoff=0.01) as client:
            return client.resolve(repository, digest) is not None

    def start_using(self, repository: str, digest: str) -> None:
        """A pod starts running the image (by digest), as a hotfix rollout would."""
        from registry_lifecycle.sandbox import resources
        from registry_lifecycle.sandbox.model import TimelineObject
        from registry_lifecycle.sandbox.world import INTERNAL_REGISTRY, rfc3339

        now = self.sandbox.clock.now()
        namespace = repository.split("/")[0]
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "hotfix-7d9f", "namespace": namespace, "uid": "hotfix-7d9f-uid",
                             "resourceVersion": "1", "creationTimestamp": rfc3339(now)},
                "spec": {"containers": [{"name": "app", "image": f"{INTERNAL_REGISTRY}/{repository}@{digest}"}]},
                "status": {"phase": "Running"}}
        self.sandbox.world.kube[resources.PODS].put(TimelineObject(namespace, "hotfix-7d9f", body, now))


def _world(history: History, tmp_path: Path, monkeypatch) -> Iterator[GcWorld]:
    shutil.copytree(history.lake, tmp_path / "lake")
    with Sandbox(days=SANDBOX_DAYS, until=history.until, data_dir=tmp_path / "sandbox") as sandbox:
        endpoints = sandbox.endpoints
        credentials = json.loads(Path(endpoints["registry_credentials"]).read_text())
        monkeypatch.setenv("AIRFLOW_CONN_OPENSHIFT_DEFAULT", json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": endpoints["kubeconfig"]}}))
        monkeypatch.setenv("AIRFLOW_CONN_REGISTRY_DEFAULT", json.dumps(
            {"conn_type": "http", "host": endpoints["registry"], "login": credentials["username"],
             "password": credentials["password"]}))
        monkeypatch.setenv("LAKE_URL", str(tmp_path / "lake"))
        monkeypatch.setenv("REGLIFE_POLICY", str(tmp_path / "policy.yaml"))
        yield GcWorld(sandbox, Lake(tmp_path / "lake"), tmp_path / "policy.yaml", credentials, tmp_path / "gc-ran")


@pytest.fixture
def world(airflow_db, history: History, tmp_path: Path, monkeypatch) -> Iterator[GcWorld]:
    yield from _world(history, tmp_path, monkeypatch)


# ------------------------------------------------------------------------------ Airflow
def _dag():
    """The DAG as the dag-processor loads it, with retries off and a quick cluster-record poll."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{DAG_ID}.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(DAG_ID)
    for task in dag.tasks:
        task.retries = 0
    dag.get_task("approve_on_cluster").poke_interval = 0.5
    return dag


@pytest.fixture(scope="module")
def hitl_api() -> Iterator[HitlApi]:
    """Airflow's REST API in-process, with two password users of the SimpleAuthManager."""
    with pytest.MonkeyPatch.context() as patch, tempfile_dir() as home:
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps(USERS))
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                     "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{user}:admin" for user in USERS))
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        with TestClient(create_app(apps="core")) as client:
            yield HitlApi(client)


class tempfile_dir:
    def __enter__(self) -> Path:
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="reglife-hitl-")
        return Path(self._dir.name)

    def __exit__(self, *exc) -> None:
        self._dir.cleanup()


@dataclass
class Waiting:
    """A task instance parked in awaiting_input."""

    run_id: str
    task_id: str
    ti_id: str
    trigger_timeout: datetime | None


class HitlApi:
    """Answers Human-in-the-loop requests as a logged-in user, through the public REST API."""

    def __init__(self, client) -> None:
        self.client = client

    def respond(self, waiting: Waiting, user: str, option: str):
        token = self.client.post("/auth/token", json={"username": user, "password": USERS[user]})
        assert token.status_code == 201, token.text
        return self.client.patch(
            f"/api/v2/dags/{DAG_ID}/dagRuns/{waiting.run_id}/taskInstances/{waiting.task_id}/-1/hitlDetails",
            json={"chosen_options": [option], "params_input": {}},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"})


def expire_unanswered_requests() -> None:
    """What the scheduler does every loop: resolve awaiting_input tasks past their deadline."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()


class Responder(threading.Thread):
    """Waits for the approval task to park in awaiting_input, then does what `act` says.

    If `act` fails, or nothing is waiting in time, the parked task is failed so that
    `dag.test()` (which waits for a response forever) returns and the test fails.
    """

    def __init__(self, act: Callable[[Waiting], None], *, task_id: str) -> None:
        super().__init__(daemon=True, name="hitl-responder")
        self.act = act
        self.task_id = task_id
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + GIVE_UP_AFTER_S
        while not self.done.is_set():
            waiting = self._waiting()
            if waiting is not None:
                try:
                    self.act(waiting)
                except BaseException as error:  # noqa: BLE001 - reported by the test, after unblocking the run
                    self.error = error
                    self._fail(waiting)
                return
            if time.monotonic() > deadline:
                self.error = TimeoutError(f"{self.task_id} never waited for input")
                return
            time.sleep(0.5)

    def _waiting(self) -> Waiting | None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        with create_session() as session:
            ti = session.scalars(select(TaskInstance).where(
                TaskInstance.dag_id == DAG_ID, TaskInstance.task_id == self.task_id,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT)).first()
            if ti is None:
                return None
            return Waiting(ti.run_id, ti.task_id, str(ti.id), ti.trigger_timeout)

    @staticmethod
    def _fail(waiting: Waiting) -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import update

        with create_session() as session:
            session.execute(update(TaskInstance).where(TaskInstance.id == waiting.ti_id).values(state="failed"))


def run_dag(act: Callable[[Waiting], None] | None = None, *, task_id: str = "approve_in_airflow",
            logical_date: datetime | None = None):
    """One DAG run; `act` answers the approval request from another thread."""
    responder = Responder(act, task_id=task_id) if act is not None else None
    if responder is not None:
        responder.start()
    try:
        run = _dag().test(logical_date=logical_date or datetime.now(timezone.utc))
    finally:
        if responder is not None:
            responder.done.set()
            responder.join(timeout=30)
    if responder is not None and responder.error is not None:
        raise responder.error
    return run


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def xcom(run, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=DAG_ID, task_ids=task_id, key=key)
                              ).first()
        return None if row is None else XComModel.deserialize_value(row)


def hitl_detail(run):
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        detail = session.scalars(select(HITLDetail).join(TaskInstance, HITLDetail.ti_id == TaskInstance.id).where(
            TaskInstance.run_id == run.run_id, TaskInstance.dag_id == DAG_ID)).one()
        session.expunge(detail)
        return detail


def audit_of(world: GcWorld, plan_id: str) -> pd.DataFrame:
    from registry_lifecycle.gc.audit import AuditLog

    return AuditLog(world.lake, datetime.now(timezone.utc).date(), "reader").read(plan_id)


def planned(world: GcWorld, plan_id: str) -> pd.DataFrame:
    from registry_lifecycle.gc.run import read_plan

    return read_plan(world.lake, plan_id)


# ------------------------------------------------------------------------------ Airflow HITL
def test_an_approval_in_airflow_deletes_the_plan_and_records_who_approved_it(world: GcWorld, hitl_api: HitlApi):
    """Only an assigned user can approve; the approved plan is deleted, except what a workload
    started to use meanwhile; gc_audit says who approved and when; a second run of the same
    plan deletes nothing again."""
    world.use_policy({"approval": {"assigned_users": ["alice"]}})
    answers = {}

    def approve(waiting: Waiting) -> None:
        plan = world.lake.read(GC_PLAN, datetime.now(timezone.utc).date())
        target = plan[(plan["namespace"] == APPROVE_NS) & (plan["action"] == "delete")].iloc[0]
        answers["referenced"] = (target["repository"], target["digest"])
        world.start_using(target["repository"], target["digest"])
        answers["bob"] = hitl_api.respond(waiting, "bob", "Approve")
        answers["alice"] = hitl_api.respond(waiting, "alice", "Approve")

    run = run_dag(approve)
    assert answers["bob"].status_code == 403, "bob is not among gc.approval.assigned_users"
    assert answers["alice"].status_code == 200, answers["alice"].text
    assert states(run) == {"score": "success", "choose_approval": "success", "approve_in_airflow": "success",
                           "approve_on_cluster": "skipped", "execute": "success",
                           "registry_garbage_collect": "success", "verify": "success"}, states(run)

    outcome = xcom(run, "score")
    plan = planned(world, outcome["plan_id"])
    assert {APPROVE_NS, AUTO_NS} <= set(plan["namespace"]) and AUDIT_NS not in set(plan["namespace"])
    assert set(plan.loc[plan["namespace"] == AUTO_NS, "mode"]) == {"auto"}
    detail = hitl_detail(run)
    assert outcome["plan_id"] in detail.body and "Top namespaces" in detail.body and "policy version" in detail.body
    assert "naive sum" in detail.body and detail.subject.startswith(f"Registry GC plan {outcome['plan_id'][:12]}")
    assert detail.assigned_users == [{"id": "alice", "name": "alice"}]
    assert detail.responded_by_user == {"id": "alice", "name": "alice"}

    log = audit_of(world, outcome["plan_id"]).set_index("digest")
    referenced_repository, referenced = answers["referenced"]
    assert log.at[referenced, "outcome"] == SKIPPED_REFERENCED
    assert "hotfix-7d9f" in log.at[referenced, "detail"]
    assert world.stored(referenced_repository, referenced)
    held = plan.loc[plan["rank"] == plan.set_index("digest").at[referenced, "rank"], "digest"]
    assert set(log.loc[list(held), "outcome"]) == {SKIPPED_REFERENCED}, "what goes with it stays with it"
    deleted = log[log["outcome"] == DELETED]
    assert len(deleted) == len(plan) - len(held), log["outcome"].value_counts()
    assert (deleted["approved_by"] == "alice").all()
    assert (deleted["approved_at"] == pd.Timestamp(detail.responded_at)).all()
    assert not any(world.stored(row.repository, digest) for digest, row in deleted.iterrows())
    assert world.marker.read_text() == "gc", "the registry's garbage collection ran after the deletions"
    assert xcom(run, "verify")["ok"]

    # The same snapshot gives the same plan; a second run, approved again, repeats no action.
    again = run_dag(lambda waiting: hitl_api.respond(waiting, "alice", "Approve"),
                    logical_date=datetime.now(timezone.utc) + timedelta(seconds=1))
    assert states(again)["execute"] == "success"
    assert xcom(again, "score")["plan_id"] == outcome["plan_id"]
    assert xcom(again, "execute")["deleted"] == 0
    log = audit_of(world, outcome["plan_id"])
    assert (log[log["outcome"] == DELETED].groupby("digest").size() == 1).all()


def test_a_rejected_plan_deletes_nothing_not_even_its_auto_rows(world: GcWorld, hitl_api: HitlApi):
    world.use_policy({"approval": {"assigned_users": ["alice", "bob"]}})
    run = run_dag(lambda waiting: _ok(hitl_api.respond(waiting, "bob", "Reject")))
    assert states(run)["approve_in_airflow"] == "success"
    assert {states(run)[task] for task in ("execute", "registry_garbage_collect", "verify")} == {"skipped"}
    plan_id = xcom(run, "score")["plan_id"]
    plan = planned(world, plan_id)
    assert "auto" in set(plan["mode"]), "the plan must hold rows that need no approval"
    assert all(world.stored(row.repository, row.digest) for row in plan.itertuples())
    log = audit_of(world, plan_id)
    assert len(log) == len(plan) and set(log["outcome"]) == {REFUSED_NOT_APPROVED}
    assert log["detail"].str.contains("rejected by bob in Airflow").all() and log["approved_by"].isna().all()
    assert not world.marker.exists()


def test_an_unanswered_approval_request_is_rejected_when_it_times_out(world: GcWorld):
    world.use_policy({"approval": {"response_timeout": "2s"}})

    def let_it_time_out(waiting: Waiting) -> None:
        assert waiting.trigger_timeout is not None, "response_timeout must reach the awaiting task"
        while datetime.now(timezone.utc) <= waiting.trigger_timeout:
            time.sleep(0.2)
        expire_unanswered_requests()

    run = run_dag(let_it_time_out)
    assert states(run)["execute"] == "skipped"
    plan_id = xcom(run, "score")["plan_id"]
    plan = planned(world, plan_id)
    assert all(world.stored(row.repository, row.digest) for row in plan.itertuples())
    assert hitl_detail(run).chosen_options == ["Reject"]
    log = audit_of(world, plan_id)
    assert set(log["outcome"]) == {REFUSED_NOT_APPROVED} and len(log) == len(plan)
    assert log["detail"].str.contains("nobody answered within gc.approval.response_timeout").all()


def test_an_approval_given_after_the_plan_expired_is_refused(world: GcWorld, hitl_api: HitlApi):
    world.use_policy({"approval": {"response_timeout": "3s", "plan_max_age": "3s"}})

    def approve_late(waiting: Waiting) -> None:
        time.sleep(4)       # no scheduler sweeps in dag.test(): a late answer still gets through
        _ok(hitl_api.respond(waiting, "alice", "Approve"))

    run = run_dag(approve_late)
    assert states(run)["approve_in_airflow"] == "success" and states(run)["execute"] == "failed"
    plan_id = xcom(run, "score")["plan_id"]
    plan = planned(world, plan_id)
    assert all(world.stored(row.repository, row.digest) for row in plan.itertuples())
    log = audit_of(world, plan_id)
    assert set(log["outcome"]) == {REFUSED_EXPIRED} and len(log) == len(plan)


def _ok(response):
    assert response.status_code == 200, response.text
    return response


# ------------------------------------------------------------------------------ the cluster channel
@pytest.fixture
def fresh_world(airflow_db, tmp_path_factory, tmp_path: Path, monkeypatch) -> Iterator[GcWorld]:
    """A world whose clock is now: the API server stamps approval records with the sandbox's
    clock, which must not be older than the plan (made with the wall clock)."""
    history = build_history(tmp_path_factory.mktemp("gc-fresh"), datetime.now(timezone.utc).replace(microsecond=0))
    yield from _world(history, tmp_path, monkeypatch)


def test_an_approval_record_on_the_cluster_approves_only_its_own_plan(fresh_world: GcWorld):
    """A record first written with another plan id is ignored; once it names this plan and its
    approver, the trigger sees it and the plan is deleted, with the annotation as approver."""
    from kubernetes import config as kube_config
    from kubernetes.client import CoreV1Api
    from registry_lifecycle.gc.approval_record import APPROVED_BY_ANNOTATION, record_name

    world = fresh_world
    world.use_policy({"approval": {"channel": "cluster"}})
    namespace = load_policy(world.policy_file).gc.approval.approvals_namespace
    written = {}

    def approve_with_oc() -> None:
        day = datetime.now(timezone.utc).date()
        deadline = time.monotonic() + GIVE_UP_AFTER_S
        while not any(GC_PLAN.name in commit.files for commit in world.lake.commits(day)):
            assert time.monotonic() < deadline, "the DAG never planned"
            time.sleep(0.5)
        plan_id = world.lake.read(GC_PLAN, day)["plan_id"].iloc[0]
        api_client = kube_config.new_client_from_config(config_file=world.sandbox.endpoints["kubeconfig"])
        core = CoreV1Api(api_client)
        name = record_name(plan_id)
        # oc create configmap NAME --from-literal=plan-id=<a wrong id> --from-literal=decision=approve
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name},
                                                      "data": {"plan-id": "f" * 64, "decision": "approve"}})
        core.patch_namespaced_config_map(name, namespace, {"metadata": {"annotations": {
            APPROVED_BY_ANNOTATION: "alice"}}})
        time.sleep(2)           # several polls see a signed record of another plan, and wait on
        written["ignored"] = True
        core.patch_namespaced_config_map(name, namespace, {"data": {"plan-id": plan_id}})
        api_client.close()

    writer = threading.Thread(target=lambda: written.setdefault("error", _capture(approve_with_oc)), daemon=True)
    writer.start()
    run = run_dag()
    writer.join(timeout=30)
    assert written.get("error") is None, written["error"]
    assert written.get("ignored"), "the record of another plan id was written and ignored first"
    assert states(run)["approve_on_cluster"] == "success" and states(run)["approve_in_airflow"] == "skipped"
    assert states(run)["execute"] == "success" and states(run)["verify"] == "success", states(run)
    decision = xcom(run, "approve_on_cluster", key="decision")
    assert decision["status"] == "approved" and decision["decided_by"] == "alice"
    plan_id = xcom(run, "score")["plan_id"]
    plan = planned(world, plan_id)
    log = audit_of(world, plan_id)
    assert set(log["outcome"]) == {DELETED} and len(log) == len(plan)
    assert (log["approved_by"] == "alice").all()
    assert not any(world.stored(row.repository, row.digest) for row in plan.itertuples())


def _capture(function: Callable[[], None]) -> BaseException | None:
    try:
        function()
    except BaseException as error:  # noqa: BLE001 - re-raised by the test thread
        return error
    return None
