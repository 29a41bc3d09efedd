"""registry_extract run by Airflow itself (`dag.test()`), against the sandbox through Connections."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from registry_lifecycle.config import load_policy, policy_with
from registry_lifecycle.lake import Lake
from registry_lifecycle.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox_connections(tmp_path, monkeypatch):
    """A sandbox plus the environment an Airflow deployment would have: Connections, lake, policy."""
    with Sandbox(days=30, data_dir=tmp_path / "sandbox") as sandbox:
        endpoints = sandbox.endpoints
        credentials = json.loads(Path(endpoints["registry_credentials"]).read_text())
        policy = policy_with(load_policy(), sandbox.policy_document())
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json")))
        monkeypatch.setenv("AIRFLOW_CONN_OPENSHIFT_DEFAULT", json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": endpoints["kubeconfig"]}}))
        monkeypatch.setenv("AIRFLOW_CONN_REGISTRY_DEFAULT", json.dumps(
            {"conn_type": "http", "host": endpoints["registry"], "login": credentials["username"],
             "password": credentials["password"]}))
        monkeypatch.setenv("AIRFLOW_CONN_PROMETHEUS_DEFAULT", json.dumps(
            {"conn_type": "http", "host": endpoints["prometheus"]}))
        monkeypatch.setenv("LAKE_URL", str(tmp_path / "lake"))
        monkeypatch.setenv("REGLIFE_POLICY", str(policy_file))
        monkeypatch.setenv("REGLIFE_CACHE_DIR", str(tmp_path / "cache"))
        yield sandbox, Lake(str(tmp_path / "lake"))


def _dag(dag_id: str):
    """The DAG as the dag-processor loads it, with retries off: a test must see the first failure,
    not wait out production's retry delays."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    for task in dag.tasks:
        task.retries = 0
    return dag


def test_extract_dag_publishes_the_days_snapshot_and_its_validation(airflow_db, sandbox_connections):
    sandbox, lake = sandbox_connections
    day = sandbox.world.until.date()
    run = _dag("registry_extract").test(
        logical_date=datetime(day.year, day.month, day.day, tzinfo=timezone.utc))
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    day = run.data_interval_start.date()       # each run covers the whole UTC day before it
    commit = lake.commits(day)[-1]
    assert {"images", "layers", "tags", "references", "builds", "namespaces", "pulls_daily",
            "storage_usage", "validation"} <= set(commit.files)
    validation = lake.read("validation", day)
    assert validation.success.all() or (validation.severity != "critical").all()
    served = sandbox.world.inventory(sandbox.world.until)
    assert len(lake.read("tags", day)) == served["tag_revisions"]


def test_extract_dag_publishes_nothing_when_a_list_is_forbidden(airflow_db, sandbox_connections):
    sandbox, lake = sandbox_connections
    sandbox.faults.add(api="kubernetes", path="/pods$", status=403, times=None)
    day = sandbox.world.until.date()
    run = _dag("registry_extract").test(
        logical_date=datetime(day.year, day.month, day.day, tzinfo=timezone.utc))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["openshift"] == "failed"
    assert states["validate_and_publish"] != "success"
    assert not lake.commits(run.data_interval_start.date()), "a forbidden list must not publish anything"


def test_forecast_dag_publishes_forecasts_from_the_lake(airflow_db, tmp_path, monkeypatch):
    """The forecast DAG reads storage_usage from the lake and publishes the forecasts dataset."""
    from registry_lifecycle.pipeline import build_sandbox_history

    with Sandbox(days=40, data_dir=tmp_path / "sandbox") as sandbox:
        lake = Lake(str(tmp_path / "lake"))
        policy = policy_with(load_policy(), sandbox.policy_document())
        last = sandbox.world.until.date()
        build_sandbox_history(sandbox, lake, policy, last - timedelta(days=30), last, snapshot_every=30)
    monkeypatch.setenv("LAKE_URL", str(tmp_path / "lake"))
    run = _dag("registry_capacity_forecast").test(
        logical_date=datetime(last.year, last.month, last.day, tzinfo=timezone.utc))
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    forecasts = lake.read("forecasts", last)
    assert forecasts.series.str.startswith("volume:").any()
    assert (forecasts.lo95 <= forecasts.lo80).all() and (forecasts.lo80 <= forecasts.hi80).all()
    assert (forecasts.hi80 <= forecasts.hi95).all()
