"""A stored history for the report tests, built once per session.

`report_lake` runs the real extraction against the embedded sandbox from 20 August to
2 October 2026 (scale tiny, a snapshot every week), so 2026Q3 is covered from its 51st day
on: the report must say so rather than invent July. The lake also holds

- the forecast a run on 30 September made (the real forecast code, so also its alert records);
- GC plans and audit records written the way the GC executor writes them, with one action of
  each kind the deletions section must tell apart: approved, mode auto, unapproved, approved
  too late, not in any plan, refused (not executed), and one executed after the quarter.

Building it takes a minute or two; every test module of tests/report shares it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from registry_lifecycle.config import Policy, load_policy

FIRST_DAY = date(2026, 8, 20)
LAST_DAY = date(2026, 10, 2)
UNTIL = date(2026, 11, 27)
QUARTER = "2026Q3"
GENERATED_AT = datetime(2026, 10, 2, 6, 0, tzinfo=timezone.utc)

APPROVED_PLAN = "a" * 64
AUTO_PLAN = "b" * 64
UNAPPROVED_PLAN = "c" * 64
UNKNOWN_PLAN = "d" * 64


@dataclass(frozen=True)
class ReportLake:
    path: Path
    policy: Policy
    gc_digests: dict[str, str]          # what each planted GC action is about -> its digest

    @property
    def lake(self):
        from registry_lifecycle.lake import Lake

        return Lake(str(self.path))


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)


def _plan_rows(plan_id: str, digests: list[str], images: pd.DataFrame, mode: str, created: datetime) -> list[dict]:
    rows = []
    for rank, digest in enumerate(digests, 1):
        image = images.loc[images["digest"] == digest].iloc[0]
        rows.append({"plan_id": plan_id, "digest": digest, "repository": image.repository,
                     "namespace": image.repository.split("/")[0], "action": "delete", "bytes": 1000 * rank,
                     "mode": mode, "rank": rank, "reason": "test plan", "created_at": created})
    return rows


def _plant_gc_history(lake, images: pd.DataFrame) -> dict[str, str]:
    """Plans and audit records as registry_gc leaves them, one of each kind of action."""
    from registry_lifecycle.gc.audit import AuditLog, AuditRecord
    from registry_lifecycle.gc.plan import GC_PLAN

    candidates = images[images["subject_digest"].isna()].sort_values("digest")["digest"].tolist()
    names = ["approved", "approved_second", "auto", "unapproved", "late", "unplanned", "refused", "after_quarter"]
    digests = dict(zip(names, candidates[:len(names)]))
    plan_day, run_day = date(2026, 9, 10), date(2026, 9, 11)
    created = _at(plan_day, 8)
    plans = (_plan_rows(APPROVED_PLAN, [digests["approved"], digests["approved_second"], digests["late"],
                                        digests["after_quarter"]], images, "approve", created)
             + _plan_rows(AUTO_PLAN, [digests["auto"]], images, "auto", created)
             + _plan_rows(UNAPPROVED_PLAN, [digests["unapproved"], digests["refused"]], images, "approve", created))
    with lake.run(plan_day, "gc__plan") as run:
        run.write(GC_PLAN, pd.DataFrame(plans))

    def record(plan_id, name, outcome, *, by=None, at=None, executed=None):
        image = images.loc[images["digest"] == digests[name]].iloc[0]
        return AuditRecord(plan_id, digests[name], image.repository, image.repository.split("/")[0], "delete", 5000,
                           by, at, executed or _at(run_day, 10), outcome)

    approval = _at(run_day, 9)
    AuditLog(lake, run_day, "gc__run").record([
        record(APPROVED_PLAN, "approved", "deleted", by="alice", at=approval),
        record(APPROVED_PLAN, "approved_second", "already_gone", by="alice", at=approval),
        record(AUTO_PLAN, "auto", "deleted"),
        record(UNAPPROVED_PLAN, "unapproved", "deleted"),
        record(APPROVED_PLAN, "late", "deleted", by="alice", at=_at(run_day, 11)),
        record(UNKNOWN_PLAN, "unplanned", "deleted", by="bob", at=approval),
        record(UNAPPROVED_PLAN, "refused", "refused_not_approved"),
    ])
    AuditLog(lake, date(2026, 10, 1), "gc__late_run").record([
        record(APPROVED_PLAN, "after_quarter", "deleted", by="alice", at=approval, executed=_at(date(2026, 10, 1))),
    ])
    return digests


@pytest.fixture(scope="session")
def report_lake(tmp_path_factory: pytest.TempPathFactory) -> ReportLake:
    from registry_lifecycle.config import policy_with
    from registry_lifecycle.forecast.run import forecast_day, publish
    from registry_lifecycle.lake import Lake
    from registry_lifecycle.pipeline import build_sandbox_history
    from registry_lifecycle.sandbox import Sandbox

    path = tmp_path_factory.mktemp("report-lake")
    lake = Lake(str(path))
    with Sandbox(seed=7, scale="tiny", until=UNTIL) as sandbox:
        policy = policy_with(load_policy(), sandbox.policy_document())
        outcomes = build_sandbox_history(sandbox, lake, policy, FIRST_DAY, LAST_DAY, snapshot_every=7)
        assert outcomes[-1].published, "the sandbox history must pass the quality gate"
    forecast_day_ = date(2026, 9, 30)
    publish(lake, forecast_day(lake, forecast_day_, policy.forecast), run_id="forecast__2026-09-30")
    images = lake.read("images", lake.latest_day("images", on_or_before=date(2026, 9, 30)))
    digests = _plant_gc_history(lake, images)
    return ReportLake(path, policy, digests)


@pytest.fixture(scope="session")
def q3_report(report_lake):
    from registry_lifecycle.report.build import build_report
    from registry_lifecycle.report.period import quarter

    return build_report(report_lake.lake, quarter(QUARTER), report_lake.policy, now=GENERATED_AT)


@pytest.fixture(scope="session")
def q3_bundle(q3_report, tmp_path_factory):
    from registry_lifecycle.report.bundle import write_bundle

    return write_bundle(q3_report, tmp_path_factory.mktemp("bundle"))
