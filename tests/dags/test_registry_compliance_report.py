"""registry_compliance_report run by Airflow itself (`dag.test()`): the quarter just ended is
reported, stored on S3 (moto_server) under Object Lock, verified, and announced through a
policy-configured webhook notifier with a presigned link that works, and that never reaches XCom."""
from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pendulum
import pytest
import yaml
from registry_lifecycle.config import load_policy, policy_with

from .test_registry_extract import REPO, _dag

pytestmark = pytest.mark.integration


def test_the_schedule_gives_each_run_the_quarter_just_ended():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction
    from registry_lifecycle.report.period import from_interval

    dag = DagBag(dag_folder=str(REPO / "dags" / "registry_compliance_report.py")).dags["registry_compliance_report"]
    timetable = coerce_to_core_timetable(dag.timetable)     # what the scheduler runs
    previous = DataInterval(pendulum.datetime(2026, 4, 1, tz="UTC"), pendulum.datetime(2026, 7, 1, tz="UTC"))
    info = timetable.next_dagrun_info(last_automated_data_interval=previous,
                                      restriction=TimeRestriction(dag.start_date, None, catchup=True))
    assert info.run_after == pendulum.datetime(2026, 10, 1, tz="UTC"), "runs once the quarter has ended"
    interval = info.data_interval
    assert (interval.start, interval.end) == (pendulum.datetime(2026, 7, 1, tz="UTC"),
                                             pendulum.datetime(2026, 10, 1, tz="UTC"))
    assert from_interval(interval.start, interval.end).label == "2026Q3"


@pytest.fixture
def webhook():
    """A local HTTP endpoint that records the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_a_quarterly_run_stores_verifies_and_announces_the_report(airflow_db, moto_server, webhook, tmp_path,
                                                                  monkeypatch):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    url, received = webhook
    client = moto_server.client()
    bucket = "reglife-reports-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:10]
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    policy = policy_with(load_policy(), {"report": {
        "location": f"s3://{bucket}/compliance", "object_lock": {"mode": "GOVERNANCE", "retain_days": 30},
        "download_url_ttl": "15m", "notifiers": [{"kind": "webhook", "name": "auditors", "connection_id": "report_hook",
                                                  "include_chart": False}]}})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json")))
    monkeypatch.setenv("REGLIFE_POLICY", str(policy_file))
    monkeypatch.setenv("LAKE_URL", str(tmp_path / "lake"))       # an empty lake: every section says "no data"
    monkeypatch.delenv("REGLIFE_REPORT_LOCATION", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": moto_server.access_key_id, "password": moto_server.secret_access_key,
        "extra": {"endpoint_url": moto_server.endpoint_url, "region_name": moto_server.region}}))
    monkeypatch.setenv("AIRFLOW_CONN_REPORT_HOOK", json.dumps({"conn_type": "http", "host": url}))

    # A run triggered on 1 October covers the quarter that ended then.
    run = _dag("registry_compliance_report").test(logical_date=datetime(2026, 10, 1, tzinfo=timezone.utc))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"build": "success", "verify": "success", "notify": "success"}, states
    assert (run.data_interval_start, run.data_interval_end) == (datetime(2026, 7, 1, tzinfo=timezone.utc),
                                                                datetime(2026, 10, 1, tzinfo=timezone.utc))

    keys = [entry["Key"] for entry in client.list_objects_v2(Bucket=bucket, Prefix="compliance/2026Q3/")["Contents"]]
    assert any(key.endswith("/registry-compliance-2026Q3.zip") for key in keys)
    pdf_key = next(key for key in keys if key.endswith("/report.pdf"))
    assert client.head_object(Bucket=bucket, Key=pdf_key)["ObjectLockMode"] == "GOVERNANCE"

    [message] = received
    assert message["period"] == "2026Q3" and message["subject"].startswith("Registry compliance report 2026Q3")
    link = message["links"]["report.pdf"]
    assert "X-Amz-Expires=900" in link
    assert httpx.get(link).content.startswith(b"%PDF")

    with create_session() as session:
        values = [row.value for row in session.query(XComModel).filter(XComModel.dag_id == run.dag_id,
                                                                       XComModel.run_id == run.run_id)]
    assert values, "the tasks return their summaries through XCom"
    stored = json.dumps(values, default=str)
    assert "X-Amz" not in stored and link not in stored, "a presigned URL is a credential: never in XCom"
