"""`reglife mirror-plan` and `reglife mirror-copy`: the DAG's steps from a shell."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml
from registry_lifecycle.cli import main
from registry_lifecycle.datasets import (
    IMAGES,
    LAYERS,
    NAMESPACES,
    PULLS_DAILY,
    REFERENCES,
)
from registry_lifecycle.lake import Lake
from registry_lifecycle.mirror.plan import MIRROR_PLAN, read_plan

from tests.mirror.conftest import mirror_policy, plan_lines
from tests.mirror.worlds import DAY, policy, standard_world


def write_world(lake: Lake) -> None:
    world, _ = standard_world()
    inputs = world.inputs()
    with lake.run(DAY, "extract") as run:
        for dataset, frame in ((IMAGES, inputs.images), (LAYERS, inputs.layers), (REFERENCES, inputs.references),
                               (NAMESPACES, inputs.namespaces)):
            run.write(dataset, frame)
    for day, frame in inputs.pulls.groupby("day"):
        with lake.run(day, "pulls") as run:
            run.write(PULLS_DAILY, frame)


def test_mirror_plan_prints_one_json_document_publishes_the_plan_and_writes_the_exports(tmp_path, capsys):
    lake = Lake(str(tmp_path / "lake"))
    write_world(lake)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy().model_dump(mode="json")))
    code = main(["mirror-plan", "--lake", str(tmp_path / "lake"), "--date", DAY.isoformat(), "--policy",
                 str(policy_file), "--assume-empty-targets", "--out", str(tmp_path / "exports"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["mirror"] >= 3 and summary["assumptions"]["targets_assumed_empty"]
    stored = read_plan(lake, DAY, summary["plan_id"])
    assert len(stored) == sum(summary["counts"].values())
    assert {path.rsplit("/", 1)[-1] for path in summary["exports"]} >= {"skopeo-sync-eu-west.yaml", "idms-nonprod.yaml"}


def test_mirror_plan_on_an_empty_lake_says_what_is_missing(tmp_path):
    with pytest.raises(SystemExit, match="images has no committed data"):
        main(["mirror-plan", "--lake", str(tmp_path / "lake"), "--date", DAY.isoformat(), "--assume-empty-targets"])


@pytest.mark.integration
def test_mirror_copy_executes_the_approved_plan_and_verifies_it(seeded_source, source_registry, target_registry,
                                                                tmp_path, monkeypatch, capsys):
    lake = Lake(str(tmp_path / "lake"))
    lines = plan_lines([{"digest": seeded_source.find("platform/tools", "1.0").digest,
                         "repository": "platform/tools", "target": "eu-west"}])
    with lake.run(DAY, "plan") as run:
        run.write(MIRROR_PLAN, lines)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(mirror_policy({"eu-west": target_registry.url}).model_dump(mode="json")))
    monkeypatch.setenv("REGLIFE_REGISTRY_URL", source_registry.url)
    code = main(["mirror-copy", "--lake", str(tmp_path / "lake"), "--date", DAY.isoformat(), "--plan-id", "plan-test",
                 "--approved-by", "alice", "--policy", str(policy_file), "--deep-verify", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["execution"]["outcomes"] == {"copied": 1}
    assert result["verification"]["ok"] and result["verification"]["manifests"] == 3
    with pytest.raises(SystemExit, match="is not stored"):
        main(["mirror-copy", "--lake", str(tmp_path / "lake"), "--date", (DAY - timedelta(days=0)).isoformat(),
              "--plan-id", "another", "--approved-by", "alice", "--policy", str(policy_file)])
