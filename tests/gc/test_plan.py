"""The plan: decisions, ranking, caps, modes, dependents, a stable id, and its lake contracts."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd
import pytest

from registry_lifecycle.gc.plan import (ACTION_DELETE, ACTION_WITH_SUBJECT, DEFERRED, DELETE, GC_PLAN, GC_SCORES, KEEP,
                                        PROTECTED, REPORT_ONLY, PlanError, SnapshotIdentity, make_plan)
from registry_lifecycle.gc.protections import REFERRER, ManifestGraph
from registry_lifecycle.gc.reclaim import reclaim
from registry_lifecycle.lake import Lake

from .registry_frames import MiB, Registry, Snapshot, policy

IDENTITY = SnapshotIdentity(date(2026, 11, 27), {"images": "scheduled__2026-11-27", "tags": "scheduled__2026-11-27"})
CREATED = datetime(2026, 11, 27, 13, 0, tzinfo=timezone.utc)
PERMISSIVE = {"keep_tag_revisions": 0, "protected_tag_patterns": {}, "threshold": 0.05}


def scored(snapshot: Snapshot, p_reuse: dict[str, float] | None = None, default: float = 0.01) -> pd.DataFrame:
    """What the reuse model hands over: one row per image with p_reuse, a reason and features."""
    images = snapshot.images
    p = [(p_reuse or {}).get(d, default) for d in images["digest"]]
    return pd.DataFrame({"digest": images["digest"], "repository": images["repository"],
                         "size_bytes": images["size_bytes"], "p_reuse": p,
                         "reason": [f"idle {n} days" for n in range(len(images))],
                         "days_idle": range(len(images)), "pulls_90": 0})


def plan_for(snapshot: Snapshot, scores: pd.DataFrame | None = None, **gc: object):
    return make_plan(scores if scores is not None else scored(snapshot), snapshot, policy(**{**PERMISSIVE, **gc}),
                     IDENTITY, created_at=CREATED)


def decisions(plan) -> dict[str, str]:
    return dict(zip(plan.scores["digest"], plan.scores["decision"]))


def test_candidates_are_unprotected_images_at_or_below_the_threshold():
    registry = Registry()
    idle, busy, running = registry.image("idle"), registry.image("busy"), registry.image("running")
    registry.reference(running)
    snapshot = registry.frames()
    plan = plan_for(snapshot, scored(snapshot, {busy: 0.4, running: 0.0}))
    assert decisions(plan) == {idle: DELETE, busy: KEEP, running: PROTECTED}
    assert list(plan.actions["digest"]) == [idle]
    reasons = dict(zip(plan.scores["digest"], plan.scores["reason"]))
    assert reasons[busy].startswith("p_reuse 0.400 > threshold 0.05")
    assert reasons[running] == "protected: workload"


def test_an_image_without_a_score_is_kept():
    registry = Registry()
    scored_image, unscored = registry.image("scored"), registry.image("unscored")
    snapshot = registry.frames()
    plan = plan_for(snapshot, scored(snapshot).iloc[:1])
    assert decisions(plan) == {scored_image: DELETE, unscored: KEEP}


def test_candidates_are_ranked_by_expected_benefit():
    registry = Registry()
    big_but_likely = registry.image("big", layers={"big": 100 * MiB})
    medium = registry.image("medium", layers={"medium": 60 * MiB})
    small = registry.image("small", layers={"small": 10 * MiB})
    snapshot = registry.frames()
    plan = plan_for(snapshot, scored(snapshot, {big_but_likely: 0.045, medium: 0.0, small: 0.0}))
    # 100 MiB x 0.955 > 60 MiB x 1.0 > 10 MiB x 1.0
    assert list(plan.actions.sort_values("rank")["digest"]) == [big_but_likely, medium, small]


def test_caps_defer_what_falls_beyond_them_in_rank_order():
    registry = Registry()
    sizes = {"a": 50, "b": 40, "c": 30, "d": 20}
    images = {name: registry.image(name, layers={name: size * MiB}) for name, size in sizes.items()}
    snapshot = registry.frames()
    by_count = plan_for(snapshot, caps={"max_images": 2})
    assert [decisions(by_count)[images[n]] for n in "abcd"] == [DELETE, DELETE, DEFERRED, DEFERRED]
    deferred_reason = by_count.scores.set_index("digest").at[images["c"], "reason"]
    assert deferred_reason.startswith("beyond the per-run caps (max_images 2") and "at rank 3" in deferred_reason
    by_bytes = plan_for(snapshot, caps={"max_bytes": "95MiB"})
    assert [decisions(by_bytes)[images[n]] for n in "abcd"] == [DELETE, DELETE, DEFERRED, DEFERRED]
    assert by_bytes.reclaim.honest_bytes <= 95 * MiB


def test_audit_mode_records_report_only_and_plans_nothing():
    registry = Registry()
    registry.namespace("shop", labels={"env": "prod"})
    registry.namespace("lab", labels={"env": "dev"})
    in_prod = registry.image("in-prod", repository="shop/web")
    in_lab = registry.image("in-lab", repository="lab/web")
    snapshot = registry.frames()
    plan = plan_for(snapshot, modes=[{"match": {"env": "prod"}, "mode": "audit"},
                                     {"match": {"namespace": "lab"}, "mode": "auto"}])
    assert decisions(plan) == {in_prod: REPORT_ONLY, in_lab: DELETE}
    assert dict(zip(plan.actions["digest"], plan.actions["mode"])) == {in_lab: "auto"}
    assert plan.scores.set_index("digest").at[in_prod, "reason"].startswith("audit mode, nothing executed")


def test_an_image_held_by_several_namespaces_gets_the_most_cautious_mode():
    registry = Registry()
    registry.namespace("shop-dev", labels={"env": "dev"})
    registry.namespace("shop-prod", labels={"env": "prod"})
    promoted = registry.image("promoted", repository="shop-dev/web")
    registry.tag(promoted, "v1.0.0", namespace="shop-prod", revision=3)
    snapshot = registry.frames()
    plan = plan_for(snapshot, modes=[{"match": {"env": "dev"}, "mode": "auto"},
                                     {"match": {"env": "prod"}, "mode": "audit"}])
    assert decisions(plan)[promoted] == REPORT_ONLY


def test_referrers_are_deleted_with_their_subject_even_when_their_own_tag_is_recent():
    registry = Registry()
    subject = registry.image("subject")
    sbom = registry.signature("sbom", subject)
    signature = registry.signature("sig", subject, by_tag=True)     # revision 0 of its .sig tag
    snapshot = registry.frames()
    plan = plan_for(snapshot, scored(snapshot, {sbom: 0.9, signature: 0.9}), keep_tag_revisions=1)
    actions = dict(zip(plan.actions["digest"], plan.actions["action"]))
    assert actions == {subject: ACTION_DELETE, sbom: ACTION_WITH_SUBJECT, signature: ACTION_WITH_SUBJECT}
    assert plan.scores.set_index("digest").at[signature, "reason"].startswith(f"goes with {subject}")


def test_referrers_of_a_kept_image_are_protected():
    registry = Registry()
    subject = registry.image("subject")
    signature = registry.signature("sig", subject)
    snapshot = registry.frames()
    plan = plan_for(snapshot, scored(snapshot, {subject: 0.5}))
    assert decisions(plan) == {subject: KEEP, signature: PROTECTED}
    assert plan.scores.set_index("digest").at[signature, "protections"] == ["referrer"]


def test_children_go_with_their_index_unless_kept_on_their_own():
    registry = Registry()
    amd64 = registry.image("amd64", layers={"amd64": 70 * MiB})
    arm64 = registry.image("arm64", layers={"arm64": 60 * MiB}, architecture="arm64")
    index = registry.index("index", [amd64, arm64], repository="shop/web")
    registry.reference(arm64, kind="Pod", name="arm-node", source="pod")
    snapshot = registry.frames()
    plan = plan_for(snapshot)
    assert decisions(plan) == {amd64: DELETE, arm64: PROTECTED, index: DELETE}
    assert dict(zip(plan.actions["digest"], plan.actions["action"])) == {index: ACTION_DELETE,
                                                                         amd64: ACTION_WITH_SUBJECT}
    assert plan.reclaim.honest_bytes == reclaim(snapshot.images, snapshot.layers, [index], held=[arm64]).honest_bytes


def test_an_index_kept_for_its_score_keeps_its_children():
    registry = Registry()
    child = registry.image("child")
    index = registry.index("index", [child])
    snapshot = registry.frames()
    plan = plan_for(snapshot, scored(snapshot, {index: 0.3}))
    assert decisions(plan) == {child: PROTECTED, index: KEEP}


def test_an_index_and_its_children_are_capped_as_one_unit():
    registry = Registry()
    children = [registry.image(f"child-{n}", layers={f"child-{n}": 10 * MiB}) for n in range(3)]
    registry.index("index", children)
    loose = registry.image("loose", layers={"loose": 5 * MiB}, repository="shop/api")
    snapshot = registry.frames()
    plan = plan_for(snapshot, caps={"max_images": 3})
    # The index's unit (4 images) ranks first but does not fit; the cap is a prefix of the ranking.
    assert set(plan.scores.loc[plan.scores["decision"] == DEFERRED, "digest"]) == set(snapshot.images["digest"])
    assert loose not in plan.deleted_digests


def test_planned_bytes_add_up_to_the_honest_reclaim():
    registry = Registry()
    for n in range(4):
        registry.image(f"build-{n}", layers={"shared-base": 80 * MiB, f"code-{n}": (n + 1) * MiB})
    snapshot = registry.frames()
    plan = plan_for(snapshot)
    assert int(plan.actions["bytes"].sum()) == plan.reclaim.honest_bytes == 80 * MiB + 10 * MiB + 4 * 1_000
    assert plan.reclaim.naive_bytes == 4 * 80 * MiB + 10 * MiB + 4 * 1_000


def test_the_plan_id_is_stable_for_identical_inputs_and_changes_with_a_decision():
    registry = Registry()
    registry.image("first")
    second = registry.image("second")
    snapshot = registry.frames()
    plan = plan_for(snapshot)
    again = make_plan(scored(snapshot), snapshot, policy(**PERMISSIVE), IDENTITY,
                      created_at=datetime(2026, 11, 28, tzinfo=timezone.utc))
    assert again.plan_id == plan.plan_id and len(plan.plan_id) == 64
    changed = plan_for(snapshot, scored(snapshot, {second: 0.5}))
    assert changed.plan_id != plan.plan_id
    other_snapshot = make_plan(scored(snapshot), snapshot, policy(**PERMISSIVE),
                               SnapshotIdentity(IDENTITY.day, {"images": "manual__rerun"}), created_at=CREATED)
    assert other_snapshot.plan_id != plan.plan_id
    assert plan_for(snapshot, caps={"max_images": 1999}).plan_id != plan.plan_id
    assert set(plan.actions["plan_id"]) == {plan.plan_id}


def test_missing_namespace_metadata_refuses_to_plan():
    registry = Registry()
    registry.image("image")
    frames = registry.frames()
    without = Snapshot(frames.images, frames.layers, frames.tags, frames.references, namespaces={})
    with pytest.raises(PlanError, match="legal holds"):
        plan_for(without)


def test_scores_and_plan_match_their_lake_contracts(tmp_path):
    registry = Registry()
    subject = registry.image("subject")
    registry.signature("sig", subject)
    kept = registry.image("kept")
    registry.tag(kept, "latest")
    snapshot = registry.frames()
    plan = plan_for(snapshot, keep_tag_revisions=1)
    lake = Lake(tmp_path)
    with lake.run(IDENTITY.day, "scheduled__2026-11-27") as run:
        run.write(GC_SCORES, plan.scores)
        run.write(GC_PLAN, plan.actions)
    scores = lake.read("gc_scores", IDENTITY.day).set_index("digest")
    assert list(scores.at[kept, "protections"]) == ["tag-revision"]
    assert '"days_idle"' in scores.at[subject, "features"]
    assert set(lake.read("gc_plan", IDENTITY.day)["plan_id"]) == {plan.plan_id}


def test_totals_and_the_approval_summary():
    registry = Registry()
    registry.namespace("shop", labels={"env": "prod"})
    registry.namespace("lab", labels={"env": "dev"})
    for n in range(3):
        registry.image(f"shop-{n}", repository="shop/web", layers={"base": 50 * MiB, f"shop-{n}": 8 * MiB})
    registry.image("lab-0", repository="lab/web", layers={"lab": 3 * MiB})
    snapshot = registry.frames()
    plan = plan_for(snapshot)
    by_namespace = plan.totals("namespace")
    assert list(by_namespace.index) == ["shop", "lab"]
    assert by_namespace.at["shop", "images"] == 3
    assert plan.totals("environment").at["prod", "bytes"] == 50 * MiB + 24 * MiB + 3_000
    summary = plan.summary_markdown()
    assert plan.plan_id in summary
    assert "Frees 77.0 MiB" in summary and "naive sum" in summary
    assert "| shop | 3 |" in summary
    assert "idle 0 days" in summary          # the model's reason of a large item
    assert "policy version 1" in summary


# ---------------------------------------------------------------------------- the sandbox world
SANDBOX_DAY = date(2026, 11, 27)


@pytest.fixture(scope="module")
def sandbox_plan(tmp_path_factory):
    """The sandbox's day extracted through the real pipeline, planned with an aggressive policy:
    every image a candidate (threshold 1.0), no tag revision, age or tag pattern kept, no caps
    to hide behind. Only the hard protections stand between the plan and the traps."""
    from registry_lifecycle.config import load_policy, policy_with
    from registry_lifecycle.pipeline import Endpoints, run_extract
    from registry_lifecycle.sandbox import Sandbox
    from registry_lifecycle.sandbox.scenario import build_world

    world = build_world(seed=7, scale="tiny", until=SANDBOX_DAY)
    lake = Lake(tmp_path_factory.mktemp("lake"))
    with Sandbox(world=world, data_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        extract_policy = policy_with(load_policy(), sandbox.policy_document())
        outcome = run_extract(SANDBOX_DAY, Endpoints.from_sandbox(sandbox), extract_policy, lake,
                              run_id="sandbox__2026-11-27")
    assert outcome.published, "the sandbox snapshot must pass the quality gate"
    identity = SnapshotIdentity.from_lake(lake, SANDBOX_DAY)
    snapshot = Snapshot(*(identity.read(lake, name) for name in ("images", "layers", "tags", "references")),
                        namespaces=identity.read(lake, "namespaces"))
    aggressive = dict(threshold=1.0, keep_tag_revisions=0, keep_younger_than="0m", protected_tag_patterns={},
                      caps={"max_images": 1_000_000, "max_bytes": "1000TiB"})
    everything_idle = scored(snapshot, default=0.0)
    # No trap may pass only because its namespace happens to be on legal hold: a hold
    # annotation nobody uses for the trap tests, the real one for the legal-hold test.
    plan = make_plan(everything_idle, snapshot, policy(**aggressive, legal_hold_annotation="example.com/unused"),
                     identity, as_of=world.until)
    with_hold = make_plan(everything_idle, snapshot, policy(**aggressive), identity, as_of=world.until)
    return world, snapshot, plan, with_hold


def present(world_digests: set[str], snapshot: Snapshot) -> set[str]:
    return world_digests & set(snapshot.images["digest"])


def test_sandbox_rollback_dr_and_suspended_cronjob_images_are_never_planned(sandbox_plan):
    world, snapshot, plan, _ = sandbox_plan
    for category in ("rollback_target", "dr", "suspended_cronjob"):
        trapped = present(world.truth.digests(category), snapshot)
        assert trapped, f"the scenario must contain {category} images"
        assert not trapped & plan.deleted_digests, f"{category} images planned for deletion"


def test_sandbox_children_of_kept_indexes_are_never_planned(sandbox_plan):
    world, snapshot, plan, _ = sandbox_plan
    children = snapshot.images.dropna(subset=["index_digest"])
    kept_index = ~children["index_digest"].isin(plan.deleted_digests)
    assert kept_index.any() and present(world.truth.digests("index_children"), snapshot)
    assert not set(children.loc[kept_index, "digest"]) & plan.deleted_digests


def test_sandbox_signatures_of_kept_images_are_never_planned(sandbox_plan):
    """Re-signed releases leave older signatures at revision 1 of the `.sig` tag, with no
    `subject` in their manifest: the tag history is what ties them to their image."""
    world, snapshot, plan, _ = sandbox_plan
    edges = ManifestGraph(snapshot.images, snapshot.tags).edges
    referrers = edges[edges["relation"] == REFERRER]
    signatures = present(world.truth.digests("signature") | world.truth.digests("sbom"), snapshot)
    assert signatures and signatures <= set(referrers["child"])
    of_kept = referrers.loc[~referrers["parent"].isin(plan.deleted_digests), "child"]
    assert len(of_kept) and not set(of_kept) & plan.deleted_digests
    of_deleted = set(referrers.loc[referrers["parent"].isin(plan.deleted_digests), "child"])
    assert of_deleted <= plan.deleted_digests, "a signature must go with its subject"


def test_sandbox_legal_hold_and_unreferenced_feature_builds(sandbox_plan):
    """The protections must not be vacuous: the aggressive plan does delete the feature builds."""
    world, snapshot, plan, with_hold = sandbox_plan
    held_namespace = set(snapshot.namespaces.loc[snapshot.namespaces["annotations"].str.contains("legal-hold"),
                                                 "namespace"])
    assert held_namespace and set(plan.actions["namespace"]) & held_namespace
    assert not set(with_hold.actions["namespace"]) & held_namespace
    assert present(world.truth.digests("feature_branch"), snapshot) & plan.deleted_digests
    assert int(plan.actions["bytes"].sum()) == plan.reclaim.honest_bytes < plan.reclaim.naive_bytes
