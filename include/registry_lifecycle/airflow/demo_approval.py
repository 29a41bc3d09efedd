"""The approval round-trip of `reglife demo`: registry_gc run by Airflow on the sandbox, its
Human-in-the-loop request answered by a demo approver through Airflow's REST API.

Nothing is skipped or faked on the Airflow side. A throwaway Airflow home (SQLite metadata DB,
the SimpleAuthManager with one approver whose password is generated and never shown) runs the
repository's own `dags/registry_gc.py` with `dag.test()`; its tasks reach the sandbox through
Connections, exactly as in a cluster. When `approve_in_airflow` parks in `awaiting_input`, the
approver logs in with its password (`POST /auth/token`), finds the request the way the Required
Actions page does (`GET .../hitlDetails?response_received=false`), and answers Approve with
`PATCH .../hitlDetails`; Airflow itself checks that the user is assigned and records who
answered and when. Execution, the registry's garbage collection and verification then run
as scheduled tasks would.

Airflow reads its configuration and opens its metadata DB when it is first imported, so the run
happens in a child process with its own environment: the demo's process (or a test session
with an Airflow of its own) is left as it was, and Airflow's log output goes to a file instead
of the demo's terminal. The child reports what a human would see as JSON lines on a pipe.

The bytes freed are measured, not copied from the plan: the DAG's storage command counts the
blobs that the cluster's remaining Image objects still reference, manifest, config and layers,
each blob once, read through the Kubernetes API and the registry API. That is what the
registry's own pruner keeps; the difference before and after is what it frees.
"""
from __future__ import annotations

import json
import os
import queue
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..lake import Lake
    from ..sandbox import Sandbox

DAG_ID = "registry_gc"
APPROVAL_TASK = "approve_in_airflow"
APPROVER = "demo-approver"
# The least role that may answer a HITL request of a DAG (the SimpleAuthManager's "user").
APPROVER_ROLE = "user"
DAGS_FOLDER = Path(__file__).resolve().parents[3] / "dags"
HITL_PATH = "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"
PENDING_PATH = f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails"
GIVE_UP_AFTER_S = 600
TASK_ORDER = ("score", "choose_approval", APPROVAL_TASK, "approve_on_cluster", "execute", "registry_garbage_collect",
              "verify")
_PLAN_ID = re.compile(r"Plan id: `([0-9a-f]{64})`")


def _gib(value: float | None) -> str:
    return "not measured" if value is None else f"{value / 2**30:,.2f} GiB"


# ------------------------------------------------------------------------------ the result
@dataclass
class RoundTrip:
    """What the demo shows of one approval round-trip, and what its test checks."""

    plan_id: str
    run_id: str
    subject: str
    body: str
    assigned_users: list[str]
    answer_status: int                  # HTTP status of the PATCH .../hitlDetails
    approved_by: str | None             # Airflow's record of who answered (responded_by_user)
    approved_at: datetime | None
    chosen: list[str]
    states: dict[str, str]
    executed: dict = field(repr=False)
    verified: dict = field(repr=False)
    audit: Any = field(repr=False)       # the gc_audit rows of the plan (a DataFrame)
    plan: Any = field(repr=False)        # the gc_plan rows of the plan (a DataFrame)
    task_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0                # the whole round-trip, as the demo's reader waits for it
    startup_seconds: float = 0.0        # of which Airflow's import, DB migration and DAG parsing

    @property
    def outcomes(self) -> dict[str, int]:
        return {str(name): int(count) for name, count in self.audit["outcome"].value_counts().items()}


class RoundTripError(RuntimeError):
    """The round-trip did not complete; the message says where, with the tail of Airflow's log."""


# ------------------------------------------------------------------------------ the demo side
def approval_round_trip(sandbox: Sandbox, lake: Lake, out: Path, *, gc: dict,
                        say: Callable[[str], None] = lambda text="": print(text, flush=True),
                        timeout_s: float = GIVE_UP_AFTER_S) -> RoundTrip:
    """Run registry_gc on the sandbox through Airflow, approve its plan as the demo approver
    through the HITL REST API, print the request, the answer and the result, and write
    `out/gc-approval.md`. `gc` is the demo's gc policy (horizon, threshold, ...)."""
    started = time.monotonic()
    say("Approval round-trip: registry_gc run by Airflow (dag.test()) against the sandbox, answered through "
        "Airflow's HITL REST API:")
    with tempfile.TemporaryDirectory(prefix="reglife-demo-airflow-") as home_dir:
        home = Path(home_dir)
        policy_file = _write_policy(sandbox, gc, home)
        password = secrets.token_urlsafe(24)
        env = _airflow_environment(sandbox, lake, home, policy_file, out, password=password)
        secrets_shown_nowhere = [password, env["AIRFLOW__API_AUTH__JWT_SECRET"], *_secrets(sandbox)]
        say(f"  throwaway Airflow home (SQLite, SimpleAuthManager; user {APPROVER}, role {APPROVER_ROLE}, "
            "generated password), DAGs from " + str(DAGS_FOLDER))
        events = _ChildRun(env, home / "airflow.log", timeout_s=timeout_s)
        request: dict | None = None
        answer: dict | None = None
        done: dict | None = None
        try:
            for event in events:
                kind = event["event"]
                if kind == "migrated":
                    say(f"  Airflow imported, metadata DB migrated and {DAG_ID} parsed in {event['seconds']:.0f} s; "
                        "starting the REST API in-process and the run")
                elif kind == "request":
                    request = event
                    _show_request(request, say)
                    _show_replanned(lake, request.get("plan_id"), say)
                elif kind == "answered":
                    answer = event
                    _show_answer(answer, say)
                elif kind == "done":
                    done = event
                elif kind == "error":
                    raise RoundTripError(event["message"])
        except RoundTripError as error:
            raise RoundTripError(f"{error}\n--- the last lines of Airflow's log ---\n"
                                 f"{_scrub(events.log_tail(), secrets_shown_nowhere)}") from None
        if done is None:
            raise RoundTripError("the Airflow run ended without a result\n--- the last lines of Airflow's log ---\n"
                                 + _scrub(events.log_tail(), secrets_shown_nowhere))
        result = _result(lake, request, answer, done, time.monotonic() - started)
        _show_result(result, say)
        report = out / "gc-approval.md"
        report.write_text(_markdown(result))
        say(f"  request, decision and result -> {report} (round-trip {result.seconds:.0f} s, of which "
            f"{result.startup_seconds:.0f} s starting Airflow)")
        failed = sorted(task for task, state in result.states.items() if state in ("failed", "upstream_failed"))
        if failed:
            raise RoundTripError(f"registry_gc did not complete ({', '.join(failed)} failed)\n"
                                 f"--- the last lines of Airflow's log ---\n"
                                 f"{_scrub(events.log_tail(), secrets_shown_nowhere)}")
    return result


def _write_policy(sandbox: Sandbox, gc: dict, home: Path) -> Path:
    """The policy registry_gc reads (REGLIFE_POLICY): the sandbox's sources, the demo's gc settings,
    the demo approver as the only assigned user, and the sandbox's storage measurement."""
    import yaml

    from ..config import load_policy, policy_with

    measure = [sys.executable, "-m", __name__, "stored-bytes", sandbox.endpoints["kubeconfig"],
               sandbox.endpoints["registry"], sandbox.endpoints["registry_credentials"]]
    settings = {**gc, "backend": "openshift",
                "approval": {"channel": "airflow", "assigned_users": [APPROVER]},
                "registry_gc": {"command": [sys.executable, "-m", __name__, "collect-garbage"],
                                "storage_command": measure, "timeout": "10m"}}
    policy = policy_with(policy_with(load_policy(), sandbox.policy_document()), {"gc": settings})
    path = home / "policy.yaml"
    path.write_text(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False))
    return path


def _secrets(sandbox: Sandbox) -> list[str]:
    """The sandbox's credentials, to scrub (with the approver's password and the JWT secret) from
    any log excerpt shown on failure."""
    import yaml

    credentials = json.loads(Path(sandbox.endpoints["registry_credentials"]).read_text() or "{}")
    kubeconfig = yaml.safe_load(Path(sandbox.endpoints["kubeconfig"]).read_text()) or {}
    tokens = [(user.get("user") or {}).get("token") for user in kubeconfig.get("users") or []]
    return [value for value in (credentials.get("password"), *tokens) if value]


def _airflow_environment(sandbox: Sandbox, lake: Lake, home: Path, policy_file: Path, out: Path, *,
                         password: str) -> dict[str, str]:
    """The child's environment: Airflow's settings, the Connections to the sandbox, the lake and
    the policy. Nothing AIRFLOW* is inherited, so a caller's own Airflow setup cannot leak in."""
    from ..config import load_policy

    if not (DAGS_FOLDER / f"{DAG_ID}.py").is_file():
        raise RoundTripError(f"{DAGS_FOLDER / (DAG_ID + '.py')} not found: the demo runs the repository's DAG files, "
                             "so run it from a checkout (an editable install, as `make demo` makes)")
    password_file = home / "passwords.json"
    # The approver's password exists only in this 0600 file (the SimpleAuthManager's store),
    # which goes away with the throwaway home; it is never printed or logged.
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({APPROVER: password}, handle)
    (home / "plugins").mkdir()
    sources = load_policy(policy_file).sources
    credentials = json.loads(Path(sandbox.endpoints["registry_credentials"]).read_text() or "{}")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        # The UI plugin is not needed to answer through the API; an empty folder keeps start-up short.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{APPROVER}:{APPROVER_ROLE}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        # Nothing listens (the API is served in-process), but Airflow judges its setup by this.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        f"AIRFLOW_CONN_{sources.openshift.connection_id.upper()}": json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": sandbox.endpoints["kubeconfig"]}}),
        f"AIRFLOW_CONN_{sources.registry.connection_id.upper()}": json.dumps(
            {"conn_type": "http", "host": sandbox.endpoints["registry"], "login": credentials.get("username"),
             "password": credentials.get("password")}),
        "LAKE_URL": lake.url,
        "REGLIFE_POLICY": str(policy_file),
        "REGLIFE_CACHE_DIR": str(out / "cache"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


class _ChildRun:
    """The child process, iterated as the events it reports; its output goes to `log_file`."""

    def __init__(self, env: dict[str, str], log_file: Path, *, timeout_s: float) -> None:
        self.log_file = log_file
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        read_fd, write_fd = os.pipe()
        self._log = log_file.open("wb")
        try:
            self.process = subprocess.Popen([sys.executable, "-m", __name__, "run", str(write_fd)], env=env,
                                            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                            pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        self._events: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, args=(read_fd,), daemon=True, name="demo-approval-events").start()

    def _read(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "r") as pipe:
            for line in pipe:
                try:
                    self._events.put(json.loads(line))
                except json.JSONDecodeError:
                    continue
        self._events.put(None)

    def __iter__(self):
        try:
            while True:
                remaining = self.deadline - time.monotonic()
                try:
                    event = self._events.get(timeout=max(remaining, 0.1))
                except queue.Empty:
                    self.process.kill()
                    raise RoundTripError(f"the Airflow run took longer than {self.timeout_s:.0f} s") from None
                if event is None:
                    break
                yield event
            code = self.process.wait(timeout=max(self.deadline - time.monotonic(), 5))
            if code != 0:
                raise RoundTripError(f"the Airflow run exited with status {code}")
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _scrub(text: str, known: list[str]) -> str:
    for value in known:
        text = text.replace(value, "***")
    return text


def _show_request(request: dict, say: Callable[[str], None]) -> None:
    say(f"  {request['task_id']} is waiting in awaiting_input (run {request['run_id']}); the request, as "
        f"{APPROVER} reads it through GET {PENDING_PATH}?response_received=false:")
    say(f"    Subject: {request['subject']}")
    say(f"    Assigned to: {', '.join(request['assigned_users']) or 'any DAG editor'}")
    for line in _request_excerpt(request["body"]):
        say(f"      {line}")


def _show_replanned(lake: Lake, plan_id: str | None, say: Callable[[str], None]) -> None:
    """Say so when an earlier plan stored for the same day (the demo's plan step) has the same rows."""
    from ..gc.plan import GC_PLAN
    from ..gc.run import PLAN_ID_KEY, read_plan

    if plan_id is None:
        return
    plan = read_plan(lake, plan_id)
    day = plan["created_at"].min().date()
    ours = set(zip(plan["digest"], plan["action"]))
    for commit in lake.commits(day):
        if GC_PLAN.name not in commit.files:
            continue
        other_id = lake.metadata(GC_PLAN, day, run_id=commit.run_id).get(PLAN_ID_KEY)
        if other_id in (None, plan_id):
            continue
        other = lake.read(GC_PLAN, day, run_id=commit.run_id)
        if set(zip(other["digest"], other["action"])) == ours:
            say(f"    (the DAG's score task planned the same {len(plan)} actions as plan {other_id[:12]} above; the id "
                "differs because it hashes the whole gc policy, which here also names the approver and the "
                "storage measurement)")
            return


def _request_excerpt(body: str) -> list[str]:
    """The head of the approval body: the counts, honest against naive bytes, the top namespaces
    and the plan id; the largest items and the answering instructions stay in the file."""
    lines = [line for line in body.splitlines() if line.strip()]
    head = []
    for line in lines:
        if line.startswith("**The ") and "largest items" in line:
            break
        if line.startswith("|---"):
            continue
        head.append(line)
    head += [line for line in lines if line.startswith("Plan id:") or line.startswith("**Approve before")]
    return head


def _show_answer(answer: dict, say: Callable[[str], None]) -> None:
    if answer["status"] != 200:
        say(f"  {APPROVER} answered {answer['chosen']}: HTTP {answer['status']} {answer.get('detail', '')}")
        return
    say(f"  {APPROVER} logged in (POST /auth/token) and answered {', '.join(answer['chosen'])} with PATCH "
        f"{answer['path']} -> HTTP {answer['status']}")
    say(f"  Airflow recorded: approved by {answer['responded_by']} at {_when(answer['responded_at'])}")


def _when(value: str | datetime | None) -> str:
    if value is None:
        return "-"
    when = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _result(lake: Lake, request: dict | None, answer: dict | None, done: dict, seconds: float) -> RoundTrip:
    from ..gc.audit import AuditLog
    from ..gc.run import read_plan

    plan_id = done["score"]["plan_id"]
    plan = read_plan(lake, plan_id)
    audit = AuditLog(lake, datetime.now(timezone.utc).date(), "demo-reader").read(plan_id)
    hitl = done.get("hitl") or {}
    responded_by = (hitl.get("responded_by_user") or {}).get("name")
    responded_at = hitl.get("responded_at")
    return RoundTrip(
        plan_id=plan_id, run_id=done["run_id"],
        subject=(request or {}).get("subject", ""), body=(request or {}).get("body", ""),
        assigned_users=(request or {}).get("assigned_users", []),
        answer_status=(answer or {}).get("status", 0), approved_by=responded_by,
        approved_at=datetime.fromisoformat(responded_at.replace("Z", "+00:00")) if responded_at else None,
        chosen=hitl.get("chosen_options") or [], states=done["states"],
        executed=done.get("execute") or {}, verified=done.get("verify") or {}, audit=audit, plan=plan,
        task_seconds=done.get("task_seconds") or {}, seconds=seconds,
        startup_seconds=done.get("startup_seconds", 0.0))


def _bytes_freed(verified: dict) -> str:
    """Predicted against measured bytes freed, and whether verify found them within its tolerance."""
    from ..gc.verify import BYTES_OFF

    error = verified.get("bytes_error")
    text = f"predicted {_gib(verified.get('predicted_bytes'))}, measured {_gib(verified.get('freed_bytes'))}"
    if error is None:
        return text
    beyond = any(failure.startswith(BYTES_OFF) for failure in verified.get("failures") or [])
    return text + f" ({error:+.2%}, {'beyond' if beyond else 'within'} verify's tolerance)"


def _integrity_failures(verified: dict) -> list[str]:
    """What verify found broken: a kept image or blob no longer served, a removed one still there."""
    from ..gc.verify import BYTES_OFF

    return [failure for failure in verified.get("failures") or [] if not failure.startswith(BYTES_OFF)]


def _show_result(result: RoundTrip, say: Callable[[str], None]) -> None:
    from ..gc.audit import DELETED, SKIPPED_REFERENCED

    say("  tasks: " + ", ".join(f"{task} {result.states.get(task, '-')}" for task in TASK_ORDER))
    outcomes, verified = result.outcomes, result.verified
    say(f"  deleted {outcomes.get(DELETED, 0)} of {len(result.plan)} planned images; "
        f"{outcomes.get(SKIPPED_REFERENCED, 0)} skipped because a workload referenced them since planning")
    broken = _integrity_failures(verified)
    say(f"  verify: {verified.get('kept_manifests', 0):,} kept manifests and {verified.get('blobs', 0):,} of their "
        f"blobs still served, {verified.get('removed', 0)} removed manifests gone: "
        + (f"{len(broken)} FAILED, the first: {broken[0]}" if broken else "ok"))
    say(f"  bytes freed: {_bytes_freed(verified)}; measured = the blobs no remaining Image object references, "
        "before vs after")
    approvals = result.audit[["approved_by", "approved_at"]].dropna().drop_duplicates()
    recorded = ", ".join(f"{row.approved_by} at {_when(row.approved_at.to_pydatetime())}"
                         for row in approvals.itertuples()) or "nobody"
    counts = ", ".join(f"{name} {count}" for name, count in outcomes.items())
    say(f"  gc_audit: {len(result.audit)} rows for plan {result.plan_id[:12]} ({counts}); approved by {recorded}")


def _markdown(result: RoundTrip) -> str:
    from ..gc.audit import DELETED

    verified = result.verified
    deleted = result.audit[result.audit["outcome"] == DELETED]
    answered_at = _when(result.approved_at) if result.approved_at else "-"
    patch = HITL_PATH.format(dag_id=DAG_ID, run_id=result.run_id, task_id=APPROVAL_TASK, map_index=-1)
    approvers = ", ".join(sorted(set(deleted["approved_by"].dropna()))) or "-"
    lines = [
        f"# Approval round-trip of registry_gc plan `{result.plan_id[:12]}`", "",
        f"Airflow run `{result.run_id}` of `{DAG_ID}`; task `{APPROVAL_TASK}` (Human-in-the-loop ApprovalOperator) "
        "answered through Airflow's REST API.", "",
        "## The request", "",
        f"**Subject:** {result.subject}", "",
        f"**Assigned to:** {', '.join(result.assigned_users) or 'any DAG editor'}", "",
        result.body, "",
        "## The decision", "",
        f"{', '.join(result.chosen) or 'No answer'} by **{result.approved_by or 'nobody'}** at {answered_at} "
        f"(`PATCH {patch}`, HTTP {result.answer_status}).", "",
        "## The result", "",
        "| task | state | seconds |", "|---|---|---:|",
        *[f"| {task} | {result.states.get(task, '-')} | {result.task_seconds.get(task, 0):.1f} |" for task in TASK_ORDER],
        "",
        "| gc_audit outcome | rows |", "|---|---:|",
        *[f"| {name} | {count} |" for name, count in result.outcomes.items()], "",
        f"- images deleted: {len(deleted)} of {len(result.plan)} planned, approved by {approvers}",
        f"- bytes freed: {_bytes_freed(verified)}; measured as the blobs (manifest, config, layers) that no remaining "
        "Image object references, before against after",
        f"- verification: {verified.get('kept_manifests', 0):,} kept manifests and {verified.get('blobs', 0):,} of "
        f"their blobs still served, {verified.get('removed', 0)} removed manifests gone",
        *[f"  - {failure}" for failure in verified.get("failures") or []], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the Airflow side (child)
def _run_in_airflow(events_fd: int) -> int:
    """The child: migrate the DB, run the DAG, answer its approval through the REST API, report."""
    events = os.fdopen(events_fd, "w", buffering=1)

    def emit(kind: str, **data) -> None:
        events.write(json.dumps({"event": kind, **data}, default=str) + "\n")
        events.flush()

    try:
        started = time.monotonic()
        from airflow.utils.db import initdb

        initdb()
        dag = _load_dag()
        startup_seconds = time.monotonic() - started
        emit("migrated", seconds=startup_seconds)
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        with TestClient(create_app(apps="core")) as client:
            approver = _Approver(client, emit)
            approver.start()
            try:
                run = dag.test(logical_date=datetime.now(timezone.utc))
            finally:
                approver.finished.set()
                approver.join(timeout=30)
            if approver.error is not None:
                raise approver.error
            emit("done", run_id=run.run_id, startup_seconds=startup_seconds,
                 states={ti.task_id: str(ti.state) for ti in run.get_task_instances()},
                 task_seconds={ti.task_id: (ti.end_date - ti.start_date).total_seconds()
                               for ti in run.get_task_instances() if ti.start_date and ti.end_date},
                 score=_xcom(run, "score"), execute=_xcom(run, "execute"), verify=_xcom(run, "verify"),
                 hitl=approver.decided_request(run.run_id))
        return 0
    except BaseException as error:  # noqa: BLE001 - reported to the demo, which shows the log tail
        emit("error", message=f"{type(error).__name__}: {error}")
        raise
    finally:
        events.close()


def _load_dag():
    """registry_gc as the dag-processor loads it, without retries (a demo should fail fast)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / f"{DAG_ID}.py"))
    if bag.import_errors:
        raise RoundTripError(f"{DAG_ID} does not import: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    for task in dag.tasks:
        task.retries = 0
    return dag


def _xcom(run, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=DAG_ID, task_ids=task_id, key=key)
                              ).first()
        return None if row is None else XComModel.deserialize_value(row)


class _Approver(threading.Thread):
    """The demo approver: logs in, waits for a request in its Required Actions, reads it and
    answers Approve, all through the public REST API.

    If answering fails, the parked task is failed in the metadata DB so that `dag.test()`
    (which waits for an answer forever) returns and the demo reports the error.
    """

    def __init__(self, client, emit: Callable[..., None]) -> None:
        super().__init__(daemon=True, name="demo-approver")
        self.client = client
        self.emit = emit
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self._headers: dict[str, str] = {}

    def run(self) -> None:
        try:
            self._log_in()
            deadline = time.monotonic() + GIVE_UP_AFTER_S
            while not self.finished.is_set():
                pending = self._pending()
                if pending is not None:
                    self._answer(pending)
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{APPROVAL_TASK} never waited for input")
                # Not faster: the DAG's tasks run in this process, and each poll costs them time.
                time.sleep(1.0)
        except BaseException as error:  # noqa: BLE001 - re-raised by the main thread after dag.test() returns
            self.error = error
            self._fail_waiting_task()

    def _log_in(self) -> None:
        from airflow.configuration import conf

        passwords = json.loads(Path(conf.get("core", "simple_auth_manager_passwords_file")).read_text())
        response = self.client.post("/auth/token", json={"username": APPROVER, "password": passwords[APPROVER]})
        if response.status_code != 201:
            raise RoundTripError(f"{APPROVER} could not log in: HTTP {response.status_code}")
        self._headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def _pending(self) -> dict | None:
        response = self.client.get(PENDING_PATH, params={"response_received": "false", "state": "awaiting_input",
                                                         "task_id": APPROVAL_TASK}, headers=self._headers)
        if response.status_code != 200:
            raise RoundTripError(f"GET {PENDING_PATH}: HTTP {response.status_code} {response.text[:300]}")
        details = response.json()["hitl_details"]
        return details[0] if details else None

    def _answer(self, pending: dict) -> None:
        ti = pending["task_instance"]
        body = pending.get("body") or ""
        plan = _PLAN_ID.search(body)
        self.emit("request", run_id=ti["dag_run_id"], task_id=ti["task_id"], subject=pending["subject"], body=body,
                  plan_id=plan.group(1) if plan else None, created_at=pending.get("created_at"),
                  assigned_users=[user["name"] for user in pending.get("assigned_users") or []])
        path = HITL_PATH.format(dag_id=DAG_ID, run_id=ti["dag_run_id"], task_id=ti["task_id"],
                                map_index=ti.get("map_index", -1))
        response = self.client.patch(path, json={"chosen_options": ["Approve"], "params_input": {}},
                                     headers=self._headers)
        answered = response.json() if response.status_code == 200 else {}
        self.emit("answered", status=response.status_code, path=path,
                  chosen=answered.get("chosen_options", ["Approve"]),
                  responded_by=(answered.get("responded_by") or {}).get("name"),
                  responded_at=answered.get("responded_at"),
                  detail="" if response.status_code == 200 else response.text[:300])
        if response.status_code != 200:
            raise RoundTripError(f"PATCH {path}: HTTP {response.status_code} {response.text[:300]}")

    def decided_request(self, run_id: str) -> dict | None:
        """The answered request as the API serves it afterwards (who answered, when, what)."""
        if not self._headers:
            return None
        path = HITL_PATH.format(dag_id=DAG_ID, run_id=run_id, task_id=APPROVAL_TASK, map_index=-1)
        response = self.client.get(path, headers=self._headers)
        return response.json() if response.status_code == 200 else None

    @staticmethod
    def _fail_waiting_task() -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import update

        with create_session() as session:
            session.execute(update(TaskInstance).where(
                TaskInstance.dag_id == DAG_ID, TaskInstance.task_id == APPROVAL_TASK,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT).values(state=TaskInstanceState.FAILED))


# ------------------------------------------------------------------------------ the sandbox's storage
def stored_blob_bytes(kubeconfig: str, registry_url: str, credentials_file: str) -> tuple[int, int, int]:
    """(images, blobs, bytes) the registry keeps: every blob a remaining Image object's manifest
    references (the manifest itself, its config and its layers), each blob once.

    This is the mark of a registry GC in an OpenShift cluster, whose pruner keeps exactly the
    blobs that Image objects reference; the registry API gives the exact manifest bytes.
    """
    from ..sources.registry import RegistryClient

    located = [(repository_of(image), image["metadata"]["name"]) for image in _list_images(kubeconfig)]
    credentials = json.loads(Path(credentials_file).read_text() or "{}")
    blobs: dict[str, int] = {}
    with RegistryClient(registry_url, username=credentials.get("username"),
                        password=credentials.get("password")) as registry, ThreadPoolExecutor(8) as pool:
        for manifest in pool.map(lambda where: registry.get_manifest(*where), located):
            if manifest is None:
                continue
            blobs[manifest.digest] = len(manifest.body)
            for descriptor in ([manifest.config] if manifest.config is not None else []) + list(manifest.layers):
                blobs[descriptor.digest] = descriptor.size
    return len(located), len(blobs), sum(blobs.values())


def repository_of(image: dict) -> str:
    """`team-a/app` of an Image whose dockerImageReference is `<registry>/team-a/app@sha256:...`."""
    return (image.get("dockerImageReference") or "").split("/", 1)[-1].split("@", 1)[0]


def _list_images(kubeconfig: str) -> list[dict]:
    """Every Image object, paged with limit/continue, with the kubeconfig's server and token.

    Plain HTTP rather than the kubernetes client: this runs twice per GC run as the storage
    command, and importing the client would take longer than listing the sandbox's Images.
    """
    import httpx
    import yaml

    config = yaml.safe_load(Path(kubeconfig).read_text())
    context = next(item["context"] for item in config["contexts"] if item["name"] == config["current-context"])
    server = next(item["cluster"]["server"] for item in config["clusters"] if item["name"] == context["cluster"])
    token = next(item["user"].get("token") for item in config["users"] if item["name"] == context["user"])
    images: list[dict] = []
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        params = {"limit": "500"}
        while True:
            response = client.get("/apis/image.openshift.io/v1/images", params=params)
            response.raise_for_status()
            page = response.json()
            images += page.get("items") or []
            params["continue"] = (page.get("metadata") or {}).get("continue")
            if not params["continue"]:
                return images


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "run":
        code = _run_in_airflow(int(argv[1]))
        # Everything is reported and in the lake: Airflow's teardown (the API app, connection
        # pools, its threads) in a throwaway home would only add seconds to the demo.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if command == "stored-bytes":
        images, blobs, stored = stored_blob_bytes(*argv[1:4])
        print(f"{stored} bytes in {blobs} blobs that {images} Image objects reference")
        return 0
    if command == "collect-garbage":
        # The sandbox stores no garbage: a blob that no Image references stops counting at once.
        # In a cluster this step is the registry's pruner (or `registry garbage-collect`).
        print("sandbox registry: blobs that no remaining Image references are freed")
        return 0
    print(f"usage: python -m {__name__} run FD | stored-bytes KUBECONFIG REGISTRY CREDENTIALS | collect-garbage",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
