"""registry_mirror_plan: its shape, the approval's meaning, and its steps against two real registries.

The steps run as the tasks run them (policy from REGLIFE_POLICY, lake from LAKE_URL, clients
from Airflow Connections in the environment); the HITL wait itself is Airflow's, so the
approver's answer is given as the ApprovalOperator returns it.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from registry_lifecycle.mirror.errors import ApprovalError

# Two real registries and the seeded source, shared with the mirror package's own tests.
from tests.mirror.conftest import seeded_source, source_registry, target_registry  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 28)


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "registry_mirror_plan.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["registry_mirror_plan"]          # get_dag() would ask the metadata DB


def test_the_dag_plans_then_waits_for_an_approval_before_copying_and_verifying(dag):
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    assert {task.task_id for task in dag.tasks} == {"plan", "anything_to_do", "approve", "copy", "verify"}
    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator)
    assert approve.defaults == ["Reject"]                      # no answer in time = Reject
    assert approve.response_timeout == timedelta(hours=24)
    assert "targets" in approve.params
    assert dag.get_task("anything_to_do").upstream_task_ids == {"plan"}
    assert approve.upstream_task_ids == {"anything_to_do"}
    assert dag.get_task("copy").upstream_task_ids == {"plan", "approve"}
    assert dag.get_task("verify").upstream_task_ids == {"copy"}
    assert dag.max_active_runs == 1


SUMMARY = {"plan_id": "p" * 64, "totals": [{"target": "eu-west"}, {"target": "dr"}], "day": "2026-11-28",
           "run_id": "scheduled__x"}


def answer(option: str = "Approve", targets: str = "") -> dict:
    return {"chosen_options": [option], "params_input": {"targets": targets},
            "responded_by_user": {"id": "7", "name": "alice"},
            "responded_at": datetime(2026, 11, 28, 9, tzinfo=timezone.utc)}


def test_an_approval_binds_to_the_plan_it_showed_and_names_the_approver():
    from registry_lifecycle.airflow.mirror_tasks import approval_from_response

    approval = approval_from_response(SUMMARY, answer())
    assert (approval.plan_id, approval.approved_by, approval.targets) == ("p" * 64, "alice", None)
    assert approval_from_response(SUMMARY, answer(targets="eu-west")).targets == frozenset({"eu-west"})


@pytest.mark.parametrize("response, words", [
    (None, "not approved"), (answer("Reject"), "not approved"), (answer(targets="eu-west, moon"), "moon"),
])
def test_a_reject_no_answer_or_an_unknown_target_copies_nothing(response, words):
    from registry_lifecycle.airflow.mirror_tasks import approval_from_response

    with pytest.raises(ApprovalError, match=words):
        approval_from_response(SUMMARY, response)


@pytest.mark.integration
def test_plan_copy_and_verify_steps_through_connections_against_real_registries(
        source_registry, target_registry, seeded_source, tmp_path, monkeypatch):  # noqa: F811 (fixtures)
    from registry_lifecycle.airflow import mirror_tasks
    from registry_lifecycle.config import load_policy, policy_with
    from registry_lifecycle.datasets import NAMESPACES, PULLS_DAILY, REFERENCES
    from registry_lifecycle.lake import Lake
    from registry_lifecycle.mirror.audit import COPIED, MirrorAuditLog
    from registry_lifecycle.sources.registry import RegistryClient

    lake = Lake(str(tmp_path / "lake"))
    with RegistryClient(source_registry.url) as client:
        snapshot = client.extract()
    hot, cold = seeded_source.find("team-a/frontend", "v2"), seeded_source.find("team-b/backend", "v1")

    def empty(dataset):
        return pa.Table.from_pylist([], schema=dataset.schema).to_pandas()

    with lake.run(DAY, "extract") as run:
        run.write("images", snapshot.images)
        run.write("layers", snapshot.layers)
        run.write("references", empty(REFERENCES))
        run.write("namespaces", empty(NAMESPACES))
    for offset in range(28):
        day = DAY - timedelta(days=offset)
        rows = [{"day": day, "repository": "team-a/frontend", "digest": hot.digest, "tag": "v2", "cluster": "nonprod",
                 "pulls": 20, "bytes": 20 * hot.size}]
        if offset == 0:
            rows.append({"day": day, "repository": "team-b/backend", "digest": cold.digest, "tag": "v1",
                         "cluster": "nonprod", "pulls": 1, "bytes": cold.size})
        with lake.run(day, "pulls") as run:
            run.write(PULLS_DAILY, pa.Table.from_pylist(rows, schema=PULLS_DAILY.schema).to_pandas())

    policy = policy_with(load_policy(), {"mirror": {
        "source_region": "us-east-1", "cluster_regions": {"nonprod": "eu-west-1"},
        "targets": [{"name": "eu-west", "url": target_registry.url, "region": "eu-west-1",
                     "connection_id": "mirror_eu_west", "egress_cost_per_gb": 0.02,
                     "storage_cost_per_gb_month": 0.023}]}})
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json")))
    monkeypatch.setenv("REGLIFE_POLICY", str(policy_file))
    monkeypatch.setenv("LAKE_URL", str(tmp_path / "lake"))
    monkeypatch.setenv("AIRFLOW_CONN_REGISTRY_DEFAULT", json.dumps({"conn_type": "http", "host": source_registry.url}))
    monkeypatch.setenv("AIRFLOW_CONN_MIRROR_EU_WEST", json.dumps({"conn_type": "http", "host": target_registry.url}))

    summary = mirror_tasks.make_plan(DAY, "scheduled__2026-11-28")
    assert summary["counts"]["mirror"] == 1 and summary["actions"] == 1
    assert json.loads(json.dumps(summary, default=str)) and "Monthly cost delta" in summary["markdown"]

    copied = mirror_tasks.run_copy(summary, answer(), "scheduled__2026-11-28")
    assert copied["outcomes"] == {COPIED: 1} and copied["approved_by"] == "alice"
    records = MirrorAuditLog(Lake(str(tmp_path / "lake")), DAY, "check").read(summary["plan_id"])
    assert list(records["digest"]) == [hot.digest] and list(records["approved_by"]) == ["alice"]

    verified = mirror_tasks.run_verify(copied)
    assert verified["ok"] and verified["checked"] == 1 and verified["manifests"] == 4   # image, sig, SBOM, index

    # The next week's plan asks the target, finds the copy, and keeps it instead of copying again.
    again = mirror_tasks.make_plan(DAY, "scheduled__2026-12-05")
    assert again["counts"]["mirror"] == 0 and again["counts"]["keep"] == 1 and again["actions"] == 0
