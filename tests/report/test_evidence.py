"""Plans are keyed by plan id, not daily snapshots: a report joins executed deletions to every
plan stored in its window, also when several runs stored a plan on the same day."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd
from registry_lifecycle.config import load_policy
from registry_lifecycle.gc.audit import AuditLog, AuditRecord
from registry_lifecycle.gc.plan import GC_PLAN
from registry_lifecycle.lake import Lake
from registry_lifecycle.report.evidence import PeriodData
from registry_lifecycle.report.period import quarter
from registry_lifecycle.report.sections import deletions
from registry_lifecycle.report.sections.deletions import NO_PLAN

PLAN_DAY, RUN_DAY = date(2026, 9, 10), date(2026, 9, 11)
SCORE_PLAN, DAG_PLAN, UNKNOWN_PLAN = "e" * 64, "f" * 64, "0" * 64
APPROVED = datetime(2026, 9, 11, 9, tzinfo=timezone.utc)
EXECUTED = datetime(2026, 9, 11, 10, tzinfo=timezone.utc)


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def _plan(plan_id: str, numbers: list[int]) -> pd.DataFrame:
    return pd.DataFrame([{"plan_id": plan_id, "digest": _digest(n), "repository": "shop-dev/web",
                          "namespace": "shop-dev", "action": "delete", "bytes": 100, "mode": "approve", "rank": rank,
                          "reason": "test plan", "created_at": datetime(2026, 9, 10, 8, tzinfo=timezone.utc)}
                         for rank, n in enumerate(numbers, 1)])


def _deleted(plan_id: str, n: int) -> AuditRecord:
    return AuditRecord(plan_id, _digest(n), "shop-dev/web", "shop-dev", "delete", 100, "alice", APPROVED, EXECUTED,
                       "deleted")


def test_deletions_of_two_plans_stored_the_same_day_are_both_matched(tmp_path):
    lake = Lake(str(tmp_path))
    # `reglife score` and a registry_gc run each store a plan on the same day, under their own run ids.
    with lake.run(PLAN_DAY, "reglife_score") as run:
        run.write(GC_PLAN, _plan(SCORE_PLAN, [1, 2]))
    with lake.run(PLAN_DAY, "scheduled__2026-09-10T00:00:00+00:00") as run:
        run.write(GC_PLAN, _plan(DAG_PLAN, [3]))
    AuditLog(lake, RUN_DAY, "gc__run").record([
        _deleted(SCORE_PLAN, 1), _deleted(SCORE_PLAN, 2), _deleted(DAG_PLAN, 3), _deleted(UNKNOWN_PLAN, 4)])

    data = PeriodData(lake, quarter("2026Q3"))
    section = deletions.build(data, load_policy())

    facts = {fact.key: fact.value for fact in section.facts}
    assert facts["executed_actions"] == 4
    exceptions = next(t for t in section.tables if t.name == "deletions-exceptions").frame
    assert exceptions[["plan_id", "digest", "exception"]].values.tolist() == [[UNKNOWN_PLAN, _digest(4), NO_PLAN]], \
        "only the deletion whose plan id no stored plan has is an exception"
    assert facts["exceptions"] == 1

    plan_sources = [s for s in data.sources_json() if s["dataset"] == "gc_plan"]
    committed = {c.run_id: c.files["gc_plan"] for c in lake.commits(PLAN_DAY)}
    assert {s["run_id"] for s in plan_sources} == set(committed), "every stored plan run is listed as evidence"
    for source in plan_sources:
        assert (source["path"], source["sha256"], source["rows"]) == \
            (committed[source["run_id"]].path, committed[source["run_id"]].sha256, committed[source["run_id"]].rows)
