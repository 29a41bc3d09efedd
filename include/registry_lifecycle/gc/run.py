"""One scoring run: the reuse model and the GC plan of a day's snapshot, written to the lake.

What `reglife score` and the registry_gc DAG's plan step call. The model is trained on the
lake's own history up to the snapshot's day, exactly as the backtest replays it
(`ExampleSet.for_policy`, `reuse_model.train`), so what `reglife backtest` reports is what
plans. Every image of the snapshot is scored, `make_plan` decides and ranks, and the run
writes `gc_scores` and `gc_plan` in one commit: readers see both or neither.

Which snapshot. Snapshots cannot be re-extracted for a past day, so a run for day D scores the
newest stored snapshot on or before D, with the pulls stored up to that snapshot's day: the
plan is what a run on that day computed, and its id (a content hash of the policy, the
snapshot's runs and the decisions) is the same whichever later day asks for it.

Why re-runs change nothing. A run is keyed by (day, run key): an Airflow retry re-uses its run
id. When that run already committed the plan this run computes (same plan id), nothing is
written and the stored plan, with its original creation time, is returned; an approval
recorded for it stays valid. A different plan under the same key replaces the run's files,
and readers keep seeing the previous commit until the new one is complete.

The plan id, its creation time and the snapshot day are also stored in the files' metadata,
so a plan without any action (nothing to delete) can still be found by its id.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import pandas as pd

from ..config import Policy
from ..lake import Lake, LakeNotFound
from .features import History, load_state, snapshot_days
from .plan import (DEFERRED, DELETE, GC_PLAN, GC_SCORES, REPORT_ONLY, SNAPSHOT_DATASETS, PlanError, SnapshotIdentity,
                   make_plan)
from .reuse_model import FALLBACK_PRIOR, ExampleSet, ReuseModel, train

log = logging.getLogger(__name__)

#: Decisions of images that are deletion candidates (unprotected, p_reuse <= threshold),
#: whether this run deletes them, defers them beyond its caps or only reports them.
CANDIDATE_DECISIONS = (DELETE, DEFERRED, REPORT_ONLY)
#: Datasets a plan reads when the extraction committed them; they join the snapshot identity.
OPTIONAL_SNAPSHOT_DATASETS = ("index_children", "builds")
PLAN_ID_KEY = "gc.plan_id"
CREATED_AT_KEY = "gc.created_at"
SNAPSHOT_DAY_KEY = "gc.snapshot_day"


@dataclass(frozen=True)
class ScoreOutcome:
    """What one scoring run planned, and where it is stored."""

    day: date
    plan_id: str
    plan: pd.DataFrame = field(repr=False)     # the gc_plan rows as written to the lake
    summary_markdown: str = field(repr=False)  # Plan.summary_markdown() and the model's note: the approval body
    candidates: int                            # unprotected, p_reuse <= threshold: delete, deferred or report_only
    bytes_reclaimable: int                     # honest: blobs no kept image references, shared blobs once
    bytes_naive: int                           # the sum of the deleted images' sizes
    model_fallback_reason: str | None
    snapshot_day: date | None = None           # the snapshot scored (the newest on or before `day`)
    run_id: str = ""                           # the lake run that holds gc_scores and gc_plan
    decisions: Mapping[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        """A small JSON-serialisable summary (no frames), for XCom and `reglife score --json`."""
        return {
            "day": self.day.isoformat(),
            "snapshot_day": self.snapshot_day.isoformat() if self.snapshot_day else None,
            "run_id": self.run_id,
            "plan_id": self.plan_id,
            "candidates": self.candidates,
            "actions": int(len(self.plan)),
            "bytes_reclaimable": self.bytes_reclaimable,
            "bytes_naive": self.bytes_naive,
            "decisions": {name: int(count) for name, count in self.decisions.items()},
            "model_fallback_reason": self.model_fallback_reason,
        }


def latest_snapshot_day(lake: Lake, day: date) -> date:
    """The newest day on or before `day` with a stored snapshot; LakeNotFound says what exists."""
    days = snapshot_days(lake)
    eligible = [d for d in days if d <= day]
    if not eligible:
        extract = f"run `reglife extract --lake {lake.url} --date {day.isoformat()}` first"
        if not days:
            raise LakeNotFound(f"no cluster snapshot in {lake.url}: {extract}")
        raise LakeNotFound(f"no cluster snapshot on or before {day.isoformat()} in {lake.url} (stored snapshots: "
                           f"{days[0].isoformat()} .. {days[-1].isoformat()}, {len(days)} days); score a day from "
                           f"{days[0].isoformat()} on: a snapshot cannot be extracted for a past day")
    return eligible[-1]


def snapshot_identity(lake: Lake, day: date) -> SnapshotIdentity:
    """The runs a plan of `day`'s snapshot reads: the required datasets and any optional ones stored."""
    committed = {name for commit in lake.commits(day) for name in commit.files}
    optional = tuple(name for name in OPTIONAL_SNAPSHOT_DATASETS if name in committed)
    return SnapshotIdentity.from_lake(lake, day, SNAPSHOT_DATASETS + optional)


def load_history(lake: Lake, day: date) -> History:
    """Every stored snapshot and day of pulls up to `day`: what the model may learn from."""
    if not any(d <= day for d in lake.days("pulls_daily")):
        raise LakeNotFound(f"pulls_daily has no committed day on or before {day.isoformat()} in {lake.url}: the reuse "
                           "model needs the pull history; run `reglife extract` for the days up to it first")
    return History.from_lake(lake, last=day)


def model_note(model: ReuseModel) -> str:
    """One paragraph for the approval body: which model scored, or why priors stood in."""
    if model.is_fallback:
        return (f"**Reuse model: conservative priors, not a fitted model.** {model.fallback_reason}. Until the "
                f"history can speak, an image pulled or pushed within {2 * model.horizon_days} days gets p_reuse 1 "
                f"and any other {FALLBACK_PRIOR:.0%}, so only a policy threshold at or above that plans deletions.")
    first, last = model.trained_on[0], model.trained_on[-1]
    return (f"**Reuse model:** ridge-regularised logistic GLM on this registry's own history, "
            f"{len(model.trained_on)} labelled as-of dates ({first.isoformat()} .. {last.isoformat()}), calibrated on "
            f"held-out dates; p_reuse is the chance of a pull or a workload reference within "
            f"{model.horizon_days} days.")


def scored_frame(features: pd.DataFrame, model: ReuseModel) -> pd.DataFrame:
    """What `make_plan` takes: one row per digest with every feature, p_reuse and the model's reason."""
    return features.join(model.score(features)).reset_index()


def _stored_plan(lake: Lake, day: date, run_id: str) -> Mapping[str, str] | None:
    """The metadata of the plan run `run_id` committed for `day`, if it committed gc_plan and gc_scores."""
    if not any(commit.run_id == run_id and {GC_PLAN.name, GC_SCORES.name} <= set(commit.files)
               for commit in lake.commits(day)):
        return None
    return lake.metadata(GC_PLAN, day, run_id=run_id)


def score_day(lake: Lake, day: date, policy: Policy, *, policy_version: int = 1,
              run_key: str | None = None) -> ScoreOutcome:
    """Train the reuse model on the lake's history, score the snapshot of `day` (or the newest
    before it), plan, and commit gc_scores and gc_plan for `day` under run `run_key`
    (default `score__<day>`). Idempotent per (day, run_key)."""
    run_id = run_key or f"score__{day.isoformat()}"
    snapshot_day = latest_snapshot_day(lake, day)
    identity = snapshot_identity(lake, snapshot_day)
    history = load_history(lake, snapshot_day)
    snapshot = load_state(lake, snapshot_day, history.scans, run_ids=identity.run_ids)
    history.pin(snapshot)
    examples = ExampleSet.for_policy(history, policy.gc)
    model = train(examples, snapshot_day)
    features = history.features(snapshot_day, examples.horizon_days)
    plan = make_plan(scored_frame(features, model), snapshot, policy, identity, policy_version=policy_version)

    stored = _stored_plan(lake, day, run_id)
    if stored is not None and stored.get(PLAN_ID_KEY) == plan.plan_id:
        log.info("run %s of %s already committed plan %s: nothing to write", run_id, day, plan.plan_id)
        plan = dataclasses.replace(plan, created_at=datetime.fromisoformat(stored[CREATED_AT_KEY]))
    else:
        metadata = {PLAN_ID_KEY: plan.plan_id, CREATED_AT_KEY: plan.created_at.isoformat(),
                    SNAPSHOT_DAY_KEY: snapshot_day.isoformat()}
        with lake.run(day, run_id) as run:
            run.write(GC_SCORES, plan.scores, extra_metadata=metadata)
            run.write(GC_PLAN, plan.actions, extra_metadata=metadata)
    decisions = plan.scores["decision"].value_counts()
    outcome = ScoreOutcome(
        day=day, plan_id=plan.plan_id, plan=lake.read(GC_PLAN, day, run_id=run_id),
        summary_markdown=plan.summary_markdown() + "\n\n" + model_note(model),
        candidates=int(decisions.reindex(list(CANDIDATE_DECISIONS), fill_value=0).sum()),
        bytes_reclaimable=plan.reclaim.honest_bytes, bytes_naive=plan.reclaim.naive_bytes,
        model_fallback_reason=model.fallback_reason, snapshot_day=snapshot_day, run_id=run_id,
        decisions={str(name): int(count) for name, count in decisions.items()})
    log.info("plan %s of %s (snapshot %s): %d candidates, %d actions, %d bytes freed (naive %d)", plan.plan_id[:12],
             day, snapshot_day, outcome.candidates, len(outcome.plan), outcome.bytes_reclaimable, outcome.bytes_naive)
    return outcome


def read_plan(lake: Lake, plan_id: str) -> pd.DataFrame:
    """The gc_plan rows of the stored plan `plan_id` (newest day and run first); PlanError if none has it."""
    for day in reversed(lake.days(GC_PLAN)):
        for commit in reversed(lake.commits(day)):
            if GC_PLAN.name not in commit.files:
                continue
            stored_id = lake.metadata(GC_PLAN, day, run_id=commit.run_id).get(PLAN_ID_KEY)
            if stored_id is not None and stored_id != plan_id:
                continue
            rows = lake.read(GC_PLAN, day, run_id=commit.run_id)
            if stored_id == plan_id:
                return rows
            found = rows[rows["plan_id"] == plan_id]        # a plan written without the metadata
            if len(found):
                return found.reset_index(drop=True)
    raise PlanError(f"no stored gc_plan has plan id {plan_id!r} in {lake.url}; run `reglife score --lake {lake.url} "
                    "--date D` to make one, and pass the full id it prints")
