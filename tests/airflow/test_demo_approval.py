"""`reglife demo`'s approval round-trip: registry_gc run by Airflow on the sandbox, its plan
approved by the demo approver through Airflow's HITL REST API, never by skipping the step.

The lake is the small sandbox history of tests/dags/test_registry_gc.py (three days, one
snapshot), with its scoring policy: the plan holds rows of mode approve and auto, and the audit
namespace's images stay out of it.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml

from registry_lifecycle.airflow.demo_approval import APPROVER, _list_images, approval_round_trip
from registry_lifecycle.gc.audit import DELETED
from registry_lifecycle.lake import Lake
from registry_lifecycle.sandbox import Sandbox
from tests.dags.test_registry_gc import APPROVE_NS, SANDBOX_DAYS, SCORING, History, build_history


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    return build_history(tmp_path_factory.mktemp("demo-approval-history"),
                         datetime.now(timezone.utc).replace(microsecond=0))


def test_the_demo_approves_the_plan_through_the_hitl_api_and_deletes_only_what_it_approved(history, tmp_path):
    shutil.copytree(history.lake, tmp_path / "lake")
    lake = Lake(tmp_path / "lake")
    shown: list[str] = []
    with Sandbox(days=SANDBOX_DAYS, until=history.until, data_dir=tmp_path / "sandbox") as sandbox:
        kubeconfig = sandbox.endpoints["kubeconfig"]
        images_before = {image["metadata"]["name"] for image in _list_images(kubeconfig)}
        result = approval_round_trip(sandbox, lake, tmp_path, gc=SCORING, say=shown.append)
        images_after = {image["metadata"]["name"] for image in _list_images(kubeconfig)}
        secrets = [json.loads(Path(sandbox.endpoints["registry_credentials"]).read_text())["password"],
                   yaml.safe_load(Path(kubeconfig).read_text())["users"][0]["user"]["token"]]

    # Answered through the API, and recorded by Airflow as the demo approver's answer.
    assert result.answer_status == 200
    assert result.approved_by == APPROVER and result.chosen == ["Approve"]
    assert result.assigned_users == [APPROVER]
    assert result.states["approve_in_airflow"] == "success" and result.states["execute"] == "success"
    assert result.plan_id in result.body and "naive sum" in result.body and "Top namespaces" in result.body
    assert any("PATCH /api/v2/dags/registry_gc/dagRuns/" in line and "HTTP 200" in line for line in shown)

    # Deleted: exactly the audited deletions, all rows of the approved plan, none outside it.
    plan, audit = result.plan, result.audit
    assert APPROVE_NS in set(plan.loc[plan["mode"] == "approve", "namespace"]), "the plan must need the approval"
    deleted = audit[audit["outcome"] == DELETED]
    assert len(deleted) > 0
    assert set(deleted["plan_id"]) == {result.plan_id}
    assert set(deleted["digest"]) <= set(plan["digest"])
    assert images_before - images_after == set(deleted["digest"]), "nothing outside the audited deletions went"
    assert (deleted["approved_by"] == APPROVER).all()
    assert (deleted["approved_at"] == pd.Timestamp(result.approved_at)).all()

    # The result as verify reports it, and what the demo leaves for a reader.
    assert result.verified["removed"] == len(deleted)
    assert result.verified["freed_bytes"] and result.verified["predicted_bytes"]
    assert not [failure for failure in result.verified["failures"] if not failure.startswith("bytes_off")]
    report = (tmp_path / "gc-approval.md").read_text()
    assert result.plan_id[:12] in report and f"**{APPROVER}**" in report
    printed = "\n".join(shown) + report
    assert not [secret for secret in secrets if secret in printed], "a credential reached the demo's output"
