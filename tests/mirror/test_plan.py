"""The mirror plan's decisions: each case a user would check by hand, on a small built world."""
from __future__ import annotations

import pandas as pd
import pytest
from registry_lifecycle.config import BYTES_PER_GB
from registry_lifecycle.mirror.plan import KEEP, MIRROR, RETIRE, SKIP, make_plan
from registry_lifecycle.mirror.target_state import TargetState, assume_empty

from tests.mirror.worlds import MIB, policy, standard_world


def line(plan, digest: str, target: str) -> pd.Series:
    found = plan.lines[(plan.lines["digest"] == digest) & (plan.lines["target"] == target)]
    assert len(found) == 1, f"expected one line for {digest[:19]} on {target}, found {len(found)}"
    return found.iloc[0]


@pytest.fixture
def world():
    return standard_world()


def test_a_hot_image_pulled_from_a_remote_region_is_mirrored_to_the_target_there(world):
    built, cases = world
    plan = make_plan(built.inputs(), policy(), assume_empty())
    hot = line(plan, cases["hot"], "eu-west")
    assert hot["action"] == MIRROR and pd.isna(hot["rule"])
    assert hot["pulls_per_month"] == pytest.approx(20 * 30)
    # 600 pulls/month, half of them downloading 256 MiB (+ config and manifest bytes) at 0.02 per GB.
    expected_saved = (600 * 0.5 * (256 * MIB + 1000) + 600 * 500) / BYTES_PER_GB * 0.02
    assert hot["egress_saved_per_month"] == pytest.approx(expected_saved)
    assert hot["monthly_cost_delta"] < 0
    assert "pulls/month from nonprod (eu-west-1)" in hot["reason"] and "save" in hot["reason"]


def test_a_cold_image_is_not_mirrored_and_its_line_says_why(world):
    built, cases = world
    plan = make_plan(built.inputs(), policy(), assume_empty())
    cold = line(plan, cases["cold"], "eu-west")
    assert cold["action"] == SKIP and cold["monthly_cost_delta"] == 0
    assert cold["egress_saved_per_month"] < cold["storage_cost_per_month"] + cold["transfer_cost"]
    assert "less than storing" in cold["reason"]


def test_pulls_from_the_source_region_save_no_egress_and_plan_nothing(world):
    built, cases = world
    plan = make_plan(built.inputs(), policy(dr_rules=[]), assume_empty())
    assert cases["prod"] not in set(plan.lines["digest"])


def test_a_dr_rule_copies_what_prod_runs_to_the_cheapest_eligible_target(world):
    built, cases = world
    plan = make_plan(built.inputs(), policy(), assume_empty())
    prod = line(plan, cases["prod"], "dr")
    assert prod["action"] == MIRROR and prod["rule"] == "prod-twice"
    assert prod["egress_saved_per_month"] == 0 and prod["monthly_cost_delta"] > 0    # insurance costs money
    assert "DR rule prod-twice" in prod["reason"] and "Deployment team-a-prod/api" in prod["reason"]
    # Without the rule, nothing would copy it: it is pulled only where the source is.
    without = make_plan(built.inputs(), policy(dr_rules=[]), assume_empty())
    assert cases["prod"] not in set(without.lines["digest"])


def test_a_dr_rule_already_met_by_a_held_copy_adds_nothing(world):
    built, cases = world
    state = TargetState(present={"dr": frozenset({("dr/team-a-prod/api", cases["prod"])}), "eu-west": frozenset()})
    plan = make_plan(built.inputs(), policy(retire=True), state)
    held = line(plan, cases["prod"], "dr")
    assert held["action"] == KEEP and "DR rule prod-twice" in held["reason"]     # never retired, though it saves nothing


def test_a_denied_repository_is_never_mirrored_however_hot(world):
    built, cases = world
    plan = make_plan(built.inputs(), policy(), assume_empty())
    dev = line(plan, cases["dev"], "eu-west")
    assert dev["action"] == SKIP and "deny *-dev/*" in dev["reason"]
    allowed = make_plan(built.inputs(), policy(deny=[]), assume_empty())
    assert line(allowed, cases["dev"], "eu-west")["action"] == MIRROR      # the deny pattern made the difference


def test_an_index_is_one_line_with_its_children_and_a_signature_goes_with_its_image(world):
    built, cases = world
    plan = make_plan(built.inputs(), policy(), assume_empty())
    assert cases["index_child"] not in set(plan.lines["digest"]) and cases["signature"] not in set(plan.lines["digest"])
    index = line(plan, cases["index"], "eu-west")
    assert index["action"] == MIRROR
    assert index["bytes"] >= 200 * MIB          # both children's layers travel with the index
    hot = line(plan, cases["hot"], "eu-west")
    assert hot["bytes"] == 256 * MIB + 2 * 1000 + 2 * 500 + 1000     # its layers, both configs, both manifests


def test_what_a_target_holds_is_kept_while_it_pays_and_retired_when_it_does_not(world):
    built, cases = world
    state = TargetState(present={"eu-west": frozenset({("team-a-staging/api", cases["hot"]),
                                                       ("team-a-staging/batch", cases["cold"])}),
                                 "dr": frozenset()})
    kept = make_plan(built.inputs(), policy(), state)
    assert line(kept, cases["hot"], "eu-west")["action"] == KEEP
    cold = line(kept, cases["cold"], "eu-west")
    assert cold["action"] == KEEP and "mirror.retire is off" in cold["reason"]
    retiring = make_plan(built.inputs(), policy(retire=True), state)
    retired = line(retiring, cases["cold"], "eu-west")
    assert retired["action"] == RETIRE and retired["monthly_cost_delta"] < 0
    assert line(retiring, cases["hot"], "eu-west")["action"] == KEEP
    # The cold image's 300 MiB layer is its own; the base stays for the hot one.
    totals = retiring.totals.set_index("target")
    assert totals.loc["eu-west", "bytes_freed"] == 300 * MIB + 1000 + 500


def test_blobs_a_target_already_holds_are_neither_paid_for_nor_copied(world):
    built, cases = world
    state = TargetState(present={"eu-west": frozenset({("team-a-staging/batch", cases["cold"])}), "dr": frozenset()})
    plan = make_plan(built.inputs(), policy(), state)
    hot = line(plan, cases["hot"], "eu-west")
    assert hot["bytes"] == 56 * MIB + 2 * 1000 + 2 * 500 + 1000      # the 200 MiB base is there already


def test_totals_count_a_layer_shared_by_two_copies_once(world):
    built, cases = world
    plan = make_plan(built.inputs(), policy(deny=[]), assume_empty())
    copies = plan.lines[(plan.lines["target"] == "eu-west") & (plan.lines["action"] == MIRROR)]
    assert {cases["hot"], cases["dev"]} <= set(copies["digest"])       # both carry the 200 MiB base
    totals = plan.totals.set_index("target").loc["eu-west"]
    assert totals["bytes_to_copy"] <= copies["bytes"].sum() - 200 * MIB
    assert totals["monthly_cost_delta"] == pytest.approx(
        totals["storage_cost_added_per_month"] - totals["egress_saved_per_month"])


def test_the_plan_id_is_a_content_hash_of_inputs_state_and_decisions(world):
    built, cases = world
    first = make_plan(built.inputs(), policy(), assume_empty())
    again = make_plan(built.inputs(), policy(), assume_empty())
    assert first.plan_id == again.plan_id and set(first.lines["plan_id"]) == {first.plan_id}
    state = TargetState(present={"eu-west": frozenset({("team-a-staging/api", cases["hot"])}), "dr": frozenset()})
    assert make_plan(built.inputs(), policy(), state).plan_id != first.plan_id
    assert make_plan(built.inputs(), policy(horizon_days=90), assume_empty()).plan_id != first.plan_id


def test_a_region_without_a_target_is_reported_not_planned(world):
    built, cases = world
    built.pull(cases["cold"], "team-a-staging/batch", "partner", per_day=5)
    plan = make_plan(built.inputs(), policy(), assume_empty())
    assert [region["region"] for region in plan.unserved] == ["ap-south-1"]
    assert "ap-south-1" in plan.summary_markdown() and "has no target" in plan.summary_markdown()


def test_the_summary_shows_totals_per_target_and_the_plan_id(world):
    built, _ = world
    plan = make_plan(built.inputs(), policy(), assume_empty())
    text = plan.summary_markdown()
    assert f"`{plan.plan_id}`" in text and "| eu-west | eu-west-1 |" in text and "| dr | us-west-2 |" in text
    assert "Monthly cost delta" in text
    summary = plan.as_dict()
    assert summary["counts"][MIRROR] == int((plan.lines["action"] == MIRROR).sum())
    assert {row["target"] for row in summary["totals"]} == {"eu-west", "dr"}


def test_without_targets_the_plan_is_empty_and_says_so(world):
    built, _ = world
    plan = make_plan(built.inputs(), policy(targets=[], dr_rules=[]), assume_empty())
    assert plan.lines.empty and plan.totals.empty
    assert "No mirror targets are configured" in plan.summary_markdown()
