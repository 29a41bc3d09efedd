"""registry_capacity_forecast run by Airflow (`dag.test()`) on storage samples a real Prometheus
served, alerting through a real notifier to a local webhook receiver.

The samples are loaded into Prometheus 2.42 (Debian `prometheus`) with promtool, read back by
the extraction's own storage step day by day into the lake, as registry_extract does, and the
forecast DAG runs on that lake: a filling volume alerts once, with the chart and the
fastest-growing namespaces, and the next day's run does not repeat it; a stable volume does
not alert at all.
"""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from registry_lifecycle.config import load_policy, policy_with
from registry_lifecycle.extract import ExtractRequest, extract_storage_step
from registry_lifecycle.forecast import scenarios
from registry_lifecycle.forecast.contracts import ALERT_DELIVERIES, CAPACITY_ALERTS
from registry_lifecycle.lake import Lake, LakeNotFound
from registry_lifecycle.sandbox.model import Series
from registry_lifecycle.sandbox.prometheus_api import to_openmetrics
from registry_lifecycle.sources.prometheus import PrometheusClient
from tests.fixtures.receivers import HttpReceiver

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HISTORY_DAYS = 75
TOKEN = "webhook-token-for-tests-only"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOLUME_LABELS = {"namespace": "openshift-image-registry", "persistentvolumeclaim": "image-registry-storage"}


def _openmetrics(samples: pd.DataFrame) -> str:
    """The scenario's samples as the kubelet's two volume gauges of the registry PVC."""
    seconds = ((pd.DatetimeIndex(samples["ts"]) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).tolist()
    return to_openmetrics([
        Series("kubelet_volume_stats_used_bytes", VOLUME_LABELS, seconds, samples["used_bytes"].tolist()),
        Series("kubelet_volume_stats_capacity_bytes", VOLUME_LABELS, seconds, samples["capacity_bytes"].tolist()),
    ])


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _images_snapshot(lake: Lake, day: date) -> None:
    """Pushes over the history, most of the bytes from team-a-dev: who drives the growth."""
    rng = np.random.default_rng(3)
    pushed = pd.date_range(day - timedelta(days=HISTORY_DAYS), day, freq="6h", tz="UTC")
    namespaces = rng.choice(["team-a-dev", "team-b-dev", "team-c-prod"], size=len(pushed), p=[0.7, 0.2, 0.1])
    images = pd.DataFrame({
        "digest": [_digest(f"image-{i}") for i in range(len(pushed))],
        "repository": [f"{namespace}/app" for namespace in namespaces],
        "media_type": "application/vnd.oci.image.manifest.v1+json", "size_bytes": 0, "config_digest": None,
        "created_at": pushed, "architecture": "amd64", "os": "linux", "labels": None, "subject_digest": None,
        "index_digest": None, "managed": True})
    layers = pd.DataFrame({"image_digest": images["digest"],
                           "layer_digest": [_digest(f"layer-{i}") for i in range(len(pushed))],
                           "size_bytes": rng.integers(10, 200, size=len(pushed)) * 2**20, "position": 0})
    with lake.run(day, "extract__images") as run:
        run.write("images", images)
        run.write("layers", layers)


def _lake_from_prometheus(prometheus_server, scenario: scenarios.FillScenario, last: date, lake: Lake) -> None:
    """Up to HISTORY_DAYS of samples until the end of `last`, through Prometheus and the storage step."""
    first = max(last - timedelta(days=HISTORY_DAYS - 1), scenarios.START.date())
    ts = scenario.samples["ts"]
    window = scenario.samples[(ts >= pd.Timestamp(first, tz="UTC")) & (ts < pd.Timestamp(last + timedelta(days=1),
                                                                                         tz="UTC"))]
    server = prometheus_server(_openmetrics(window))
    policy = load_policy()
    client = PrometheusClient(server.url)
    try:
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            request = ExtractRequest(day, f"extract__{day.isoformat()}")
            summary = extract_storage_step(request, client, policy, lake)
            assert summary["rows"]["storage_usage"] == 288, (day, summary)
            lake.commit(day, request.run_id, ["storage_usage"])
    finally:
        client.close()


@pytest.fixture
def receiver():
    server = HttpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def alerting_deployment(tmp_path, monkeypatch, receiver) -> Lake:
    """The environment of a deployment whose policy sends capacity alerts to a webhook Connection."""
    policy = policy_with(load_policy(), {"forecast": {"alerts": {"notifiers": [
        {"kind": "webhook", "name": "capacity-hook", "connection_id": "capacity_webhook"}]}}})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json")))
    monkeypatch.setenv("REGLIFE_POLICY", str(policy_file))
    monkeypatch.setenv("LAKE_URL", str(tmp_path / "lake"))
    monkeypatch.setenv("AIRFLOW_CONN_CAPACITY_WEBHOOK", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": receiver.port, "schema": "http", "password": TOKEN,
         "extra": {"endpoint": "/hooks/registry-capacity"}}))
    return Lake(str(tmp_path / "lake"))


def _forecast_dag():
    """The DAG as the dag-processor loads it, with retries off: a test must see the first failure."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "registry_capacity_forecast.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("registry_capacity_forecast")
    for task in dag.tasks:
        task.retries = 0
    return dag


def _run(day: date):
    run = _forecast_dag().test(logical_date=datetime(day.year, day.month, day.day, tzinfo=timezone.utc))
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    return run


def test_a_filling_volume_alerts_once_through_the_webhook_with_chart_and_namespaces(
        airflow_db, prometheus_server, alerting_deployment, receiver):
    lake = alerting_deployment
    scenario = scenarios.linear_fill()
    day = (scenario.fills_at.tz_convert(None).normalize() - pd.Timedelta(days=14)).date()
    _lake_from_prometheus(prometheus_server, scenario, day + timedelta(days=1), lake)
    _images_snapshot(lake, day - timedelta(days=1))

    _run(day)
    [request] = receiver.requests
    assert request.path == "/hooks/registry-capacity"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    alert = request.json()
    assert alert["series"] == f"volume:{scenarios.VOLUME}" and alert["as_of"] == day.isoformat()
    assert alert["severity"] in ("high", "critical") and alert["p_full_within_lead"] > alert["alert_probability"]
    assert alert["days_to_full"]["median"] is not None and alert["days_to_full"]["median"] >= 1
    assert alert["top_namespaces"][0]["namespace"] == "team-a-dev"
    assert base64.b64decode(alert["chart_png_base64"]).startswith(PNG_MAGIC)
    sent = lake.read(ALERT_DELIVERIES, day)
    assert sent[["channel", "event"]].values.tolist() == [["capacity-hook", "sent"]]

    # The next day: the same situation, so no second alert.
    _run(day + timedelta(days=1))
    assert len(receiver.requests) == 1
    next_day = lake.read(CAPACITY_ALERTS, day + timedelta(days=1))
    assert next_day["at_risk"].tolist() == [True]
    with pytest.raises(LakeNotFound):
        lake.read(ALERT_DELIVERIES, day + timedelta(days=1))


def test_a_stable_volume_does_not_alert(airflow_db, prometheus_server, alerting_deployment, receiver):
    lake = alerting_deployment
    day = date(2026, 3, 16)
    _lake_from_prometheus(prometheus_server, scenarios.stable_sawtooth(), day, lake)

    _run(day)
    assert receiver.requests == []
    candidates = lake.read(CAPACITY_ALERTS, day)
    assert candidates["at_risk"].tolist() == [False]
    assert candidates["p_full_within_lead"].iloc[0] < load_policy().forecast.alert_probability
