"""One scoring run on a stored sandbox history: what it writes, what re-running does, the plan's id,
the protections it honours, finding a plan again, and `reglife score`'s exit codes."""
from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pandas as pd
import pytest

from registry_lifecycle.cli import main
from registry_lifecycle.config import load_policy, policy_with
from registry_lifecycle.gc.plan import DELETE, GC_PLAN, PROTECTED, PlanError
from registry_lifecycle.gc.run import read_plan, score_day
from registry_lifecycle.lake import Lake

HORIZON = 30
# The stored history is shorter than the model asks for, so it falls back to its priors: p_reuse
# 1 for an image pulled or pushed within 2 x the horizon, 0.9 for any other. A threshold above
# 0.9 makes those others candidates, so the plan has something to delete.
FALLBACK_THRESHOLD = 0.95


def scoring_policy(**gc: object):
    return policy_with(load_policy(), {"gc": {"horizon_days": HORIZON, "threshold": FALLBACK_THRESHOLD, **gc}})


@pytest.fixture(scope="module")
def lake(sandbox_history, tmp_path_factory) -> Lake:
    """A copy of the stored history: these tests write gc datasets into it."""
    path = tmp_path_factory.mktemp("score-lake") / "lake"
    shutil.copytree(sandbox_history.lake_path, path)
    return Lake(path)


@pytest.fixture(scope="module")
def day(sandbox_history):
    return sandbox_history.history.days[-1]


@pytest.fixture(scope="module")
def outcome(lake, day):
    return score_day(lake, day, scoring_policy(), run_key="scheduled__first")


def test_the_plan_written_is_the_plan_returned(lake, day, outcome):
    assert outcome.candidates > 0 and len(outcome.plan), "the scenario must leave something to delete"
    stored = lake.read(GC_PLAN, day, run_id="scheduled__first")
    pd.testing.assert_frame_equal(stored, outcome.plan)
    assert list(stored.columns) == GC_PLAN.schema.names
    assert set(stored["plan_id"]) == {outcome.plan_id}
    assert int(stored["bytes"].sum()) == outcome.bytes_reclaimable
    assert outcome.bytes_reclaimable < outcome.bytes_naive, "shared layers make the naive sum overstate"
    scores = lake.read("gc_scores", day, run_id="scheduled__first")
    assert len(scores) == len(lake.read("images", day)["digest"].unique())
    assert set(scores.loc[scores["decision"] == DELETE, "digest"]) == set(stored["digest"]) - set(
        stored.loc[stored["action"] == "delete_with_subject", "digest"])


def test_the_summary_is_the_approval_body_and_says_the_model_fell_back(outcome):
    assert outcome.plan_id in outcome.summary_markdown
    assert "Top namespaces" in outcome.summary_markdown
    assert outcome.model_fallback_reason
    assert "conservative priors" in outcome.summary_markdown
    document = json.loads(json.dumps(outcome.as_json()))
    assert document["plan_id"] == outcome.plan_id and document["actions"] == len(outcome.plan)
    assert document["candidates"] == outcome.candidates


def test_rerunning_with_the_same_run_key_changes_nothing(lake, day, outcome):
    def commit():
        (found,) = [c for c in lake.commits(day) if c.run_id == "scheduled__first"]
        return found

    before = commit()
    again = score_day(lake, day, scoring_policy(), run_key="scheduled__first")
    assert again.plan_id == outcome.plan_id
    assert commit() == before, "an identical plan is not written again"
    pd.testing.assert_frame_equal(again.plan, outcome.plan)     # same rows, same created_at
    assert again.summary_markdown == outcome.summary_markdown


def test_plan_id_is_stable_for_the_same_inputs_and_changes_with_the_policy(lake, day, outcome):
    same = score_day(lake, day, scoring_policy(), run_key="manual__same-inputs")
    assert same.plan_id == outcome.plan_id
    stricter = score_day(lake, day, scoring_policy(threshold=0.99), run_key="manual__other-policy")
    assert stricter.plan_id != outcome.plan_id
    revised = score_day(lake, day, scoring_policy(), policy_version=2, run_key="manual__policy-v2")
    assert revised.plan_id != outcome.plan_id


def test_a_day_without_a_snapshot_plans_on_the_newest_before_it(lake, day, outcome, sandbox_history):
    later = day + timedelta(days=1)
    assert later not in sandbox_history.history.days
    moved = score_day(lake, later, scoring_policy())
    assert moved.snapshot_day == day and moved.day == later
    assert moved.plan_id == outcome.plan_id, "the id names the snapshot, not the day that asked"


def test_protected_images_are_never_delete_candidates(lake, day, outcome):
    references = lake.read("references", day)
    referenced = set(references["digest"].dropna())
    rollback = set(references.loc[references["source"] == "replicaset-history", "digest"].dropna())
    assert referenced and rollback, "the scenario must contain workload references and rollback targets"
    planned = set(outcome.plan["digest"])
    assert planned and not planned & referenced
    scores = lake.read("gc_scores", day, run_id="scheduled__first")
    protected = set(scores.loc[scores["protections"].map(len) > 0, "digest"])
    assert protected >= referenced & set(scores["digest"])
    assert not planned & protected
    assert (scores.loc[scores["digest"].isin(protected), "decision"] == PROTECTED).all()


def test_read_plan_finds_a_stored_plan_by_its_id(lake, outcome):
    """Identical inputs re-planned later give the same id; the newest run of it is returned."""
    found = read_plan(lake, outcome.plan_id)
    assert set(found["plan_id"]) == {outcome.plan_id}
    pd.testing.assert_frame_equal(found.drop(columns="created_at"), outcome.plan.drop(columns="created_at"))
    assert found["created_at"].min() >= outcome.plan["created_at"].min()
    with pytest.raises(PlanError, match="no stored gc_plan has plan id"):
        read_plan(lake, "0" * 64)


def test_an_empty_plan_is_still_found_by_its_id(lake, day):
    nothing = score_day(lake, day, scoring_policy(threshold=0.0), run_key="manual__empty")
    assert nothing.candidates == 0 and nothing.plan.empty
    found = read_plan(lake, nothing.plan_id)
    assert found.empty and list(found.columns) == GC_PLAN.schema.names


def test_reglife_score_prints_the_summary_or_one_json_document(lake, day, outcome, tmp_path, capsys):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(f"gc:\n  horizon_days: {HORIZON}\n  threshold: {FALLBACK_THRESHOLD}\n")
    assert main(["score", "--lake", str(lake.url), "--date", day.isoformat(), "--policy", str(policy_file),
                 "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["snapshot_day"] == day.isoformat() and document["candidates"] == outcome.candidates
    assert main(["score", "--lake", str(lake.url), "--date", day.isoformat(), "--policy", str(policy_file)]) == 0
    assert capsys.readouterr().out.startswith("### Registry GC plan")


def test_reglife_score_without_a_snapshot_exits_2_naming_the_fix(lake, sandbox_history, tmp_path, capsys):
    first = sandbox_history.history.days[0]
    assert main(["score", "--lake", str(lake.url), "--date", (first - timedelta(days=1)).isoformat()]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "no cluster snapshot on or before" in error and f"score a day from {first.isoformat()} on" in error

    assert main(["score", "--lake", str(tmp_path / "empty"), "--date", "2026-11-27"]) == 2
    assert "reglife extract --lake" in capsys.readouterr().err


def test_reglife_score_with_a_broken_policy_exits_2_naming_the_field(lake, day, tmp_path, capsys):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("gc:\n  threshhold: 0.1\n")
    assert main(["score", "--lake", str(lake.url), "--date", day.isoformat(), "--policy", str(policy_file)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "gc.threshhold: unknown setting" in error
