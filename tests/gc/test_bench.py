"""The scoring benchmark: its synthetic registry has the promised shape, and the stage runs and reports."""
from __future__ import annotations

import json

from registry_lifecycle.cli import main
from registry_lifecycle.datasets import ALL
from registry_lifecycle.gc.bench import TAG_REVISIONS, synthetic_registry

STEPS = ("compact pulls", "features", "model scoring", "plan")


def test_synthetic_registry_has_the_scale_and_traps_it_promises():
    world = synthetic_registry(TAG_REVISIONS["tiny"], seed=3)
    state = world.state
    assert len(state.tags) == TAG_REVISIONS["tiny"]
    assert len(state.images) == state.images["digest"].nunique() == 3_000
    for name in ("images", "layers", "tags", "references", "builds"):
        frame = getattr(state, name)
        assert set(frame.columns) == set(ALL[name].schema.names), name
    assert state.images["index_digest"].notna().any() and state.images["subject_digest"].notna().any()
    assert state.tags["tag"].str.startswith("sha256-").any(), "signatures carry their cosign tag"
    assert (state.references["source"] == "replicaset-history").any()
    shared = state.layers.groupby("layer_digest")["image_digest"].nunique()
    assert shared.max() > 100, "base layers are shared by many images"
    assert set(world.pulls.columns) == {"day", "repository", "digest", "pulls"}
    assert world.sizes["pull_events"] > world.sizes["pull_rows"] > len(state.images)


def test_bench_score_stage_runs_and_prints_its_figures(capsys):
    assert main(["bench", "--stage", "score", "--scale", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "## score (tiny: 10,000 tag revisions" in printed
    for step in STEPS:
        assert f"\n{step} | " in printed
    assert "features + model scoring + plan:" in printed and "peak RSS" in printed

    assert main(["bench", "--stage", "score", "--scale", "tiny", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["score"]
    assert [step["step"] for step in figures["steps"]] == list(STEPS)
    assert figures["model_fallback_reason"] is None, "a fitted model, not the priors, does the scoring"
    assert figures["candidates"] > 0 and figures["bytes_reclaimable"] < figures["bytes_naive"]
