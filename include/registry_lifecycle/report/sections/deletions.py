"""Deletions and mirroring: every action executed on a registry in the period, joined to the
approval it ran under, and every action without a matching approval listed as an exception.

Both executors write an append-only audit log with the same approval fields: `gc_audit`
(deletions) and `mirror_audit` (copies to and retirements from other registries). An executed
action is a record whose outcome touched a registry (GC: `deleted`, `already_gone`, `failed`;
mirroring: `copied`, `already_present`, `retired`, `already_gone`, `failed`); refusals and skips
executed nothing and are only counted. Each action is joined to

- its plan (`gc_plan` by plan id and digest, `mirror_plan` by plan id, digest and target): an
  action no stored plan contains is an exception, whatever its approval says;
- its approval, which the executor records with every action (who, when, for which plan id):
  none, or one given after the action, is an exception. A deletion in a namespace whose policy
  is `mode: auto` runs without approval by design; it is listed as an exception of its own
  kind, so that an auditor sees the policy at work.
"""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from ...config import Policy
from ...datasets import ALL
from ..evidence import PeriodData
from ..section import NO_DATA, Fact, Section, Table

GC_EXECUTED = ("deleted", "already_gone", "failed")
MIRROR_EXECUTED = ("copied", "already_present", "retired", "already_gone", "failed")
GC_KEY = ("plan_id", "digest")
MIRROR_KEY = ("plan_id", "digest", "target")
# An executor's records are partitioned by its run's day, but an approval can hold execution
# for a while: partitions this far around the period are read, then filtered by executed_at.
PARTITION_SLACK = timedelta(days=14)

NO_PLAN = "not in any stored plan"
NO_APPROVAL = "no approval recorded"
LATE_APPROVAL = "approved after execution"
AUTO_MODE = "mode auto: executed without approval by policy"


def join_approvals(audit: pd.DataFrame, plans: pd.DataFrame, *, key=GC_KEY, executed=GC_EXECUTED) -> pd.DataFrame:
    """Executed actions with their plan and approval, and `exception` naming what is missing (or None)."""
    key = list(key)
    actions = audit[audit["outcome"].isin(executed)].copy()
    planned = plans.assign(mode=plans.get("mode"))[[*key, "mode", "created_at"]] \
        .drop_duplicates(key).rename(columns={"created_at": "planned_at"})
    actions = actions.merge(planned, on=key, how="left", indicator="in_plan")
    in_plan = actions.pop("in_plan") == "both"
    approved = actions["approved_by"].notna() & actions["approved_at"].notna()
    late = approved & (actions["approved_at"] > actions["executed_at"])
    auto = ~approved & (actions["mode"] == "auto")
    exception = pd.Series(None, index=actions.index, dtype=object)
    # The first reason that applies is the one named: assigned from the least to the most basic.
    for mask, reason in ((~approved, NO_APPROVAL), (auto, AUTO_MODE), (late, LATE_APPROVAL), (~in_plan, NO_PLAN)):
        exception[mask.to_numpy()] = reason
    actions["exception"] = exception.astype(object).where(exception.notna(), None)
    first = ["executed_at", *key]
    return actions[first + [c for c in actions.columns if c not in first]] \
        .sort_values(first).reset_index(drop=True)


def plan_table(actions: pd.DataFrame, *, done: str) -> pd.DataFrame:
    """Per plan: who approved it and when, what it did (`done` outcomes, their bytes), how many exceptions."""
    columns = ["plan_id", "approved_by", "approved_at", "first_action", "last_action", done, f"bytes_{done}", "failed",
               "exceptions"]
    if actions.empty:
        return pd.DataFrame(columns=columns)
    is_done = actions["outcome"] == done
    table = actions.assign(is_done=is_done, done_bytes=np.where(is_done, actions["bytes"], 0),
                           is_failed=actions["outcome"] == "failed", is_exception=actions["exception"].notna()) \
        .groupby("plan_id", dropna=False).agg(
            approved_by=("approved_by", lambda v: ", ".join(sorted(set(v.dropna()))) or None),
            approved_at=("approved_at", "max"), first_action=("executed_at", "min"), last_action=("executed_at", "max"),
            is_done=("is_done", "sum"), done_bytes=("done_bytes", "sum"), failed=("is_failed", "sum"),
            exceptions=("is_exception", "sum")).reset_index().sort_values("first_action")
    return table.rename(columns={"is_done": done, "done_bytes": f"bytes_{done}"})[columns]


def _no_value(fact: Fact) -> Fact:
    return Fact(fact.key, fact.label, None, fact.unit, "no audit log stored")


def _read_window(data: PeriodData, dataset: str) -> pd.DataFrame:
    period = data.period
    return data.read_period(dataset, first=period.first - PARTITION_SLACK, last=period.last + PARTITION_SLACK)


def _in_period(data: PeriodData, audit: pd.DataFrame) -> pd.DataFrame:
    return audit[audit["executed_at"].dt.date.between(data.period.first, data.period.last)] if len(audit) else audit


def _deletions(data: PeriodData, section: Section) -> None:
    audit = _in_period(data, _read_window(data, "gc_audit"))
    actions = join_approvals(audit, _read_window(data, "gc_plan"))
    exceptions = actions[actions["exception"].notna()]
    deleted = actions[actions["outcome"] == "deleted"]
    not_executed = audit[~audit["outcome"].isin(GC_EXECUTED)]
    section.facts += [
        Fact("executed_actions", "Deletions executed", len(actions), detail="deleted, already gone or failed"),
        Fact("deleted_images", "Images deleted", len(deleted)),
        Fact("deleted_bytes", "Bytes freed by deletions (planned reclaim)", int(deleted["bytes"].sum()), "bytes",
             "each deletion's share of its plan's honest reclaim"),
        Fact("plans_executed", "GC plans executed", int(actions["plan_id"].nunique())),
        Fact("approvers", "Approvers", ", ".join(sorted(set(actions["approved_by"].dropna()))) or None, "text"),
        Fact("approved_actions", "Deletions with a matching approval", len(actions) - len(exceptions)),
        Fact("exceptions", "Deletion exceptions (no matching approval)", len(exceptions)),
        Fact("not_executed", "Planned deletions refused or skipped", len(not_executed),
             detail=", ".join(f"{outcome} {count}" for outcome, count in
                              not_executed["outcome"].value_counts().sort_index().items()) or None),
    ]
    if not data.days("gc_audit"):
        # Zero would read as "nothing was deleted"; the truth is that nothing was recorded.
        section.facts = [_no_value(fact) for fact in section.facts]
        section.no_data("Deletions: no data. The GC audit log (gc_audit) is empty: no GC plan has been executed or "
                        "refused yet.")
    elif not len(audit):
        section.notes.append("No GC action was recorded in this period.")
    shown = ("executed_at", "plan_id", "repository", "digest", "bytes", "outcome", "mode", "approved_by", "approved_at")
    section.tables += [
        Table("deletions-exceptions", "Deletions without a matching approval", exceptions,
              caption="each is an action an auditor should ask about", columns=(*shown, "exception")),
        Table("deletions-plans", "Executed GC plans and their approvals", plan_table(actions, done="deleted")),
        Table("deletions-actions", "Every executed deletion with its approval", actions, shown=20, columns=shown)]


def _mirroring(data: PeriodData, section: Section) -> None:
    if "mirror_audit" not in ALL or not data.days("mirror_audit"):
        section.facts.append(Fact("mirror_actions", "Mirroring actions executed", None,
                                  detail="no mirroring audit log stored"))
        section.no_data("Mirroring: no data. The mirroring audit log (mirror_audit) is empty: no mirror plan has been "
                        "executed, so no copy between registries can be evidenced.")
        return
    section.datasets += ["mirror_audit", "mirror_plan"]
    audit = _in_period(data, _read_window(data, "mirror_audit"))
    plans = _read_window(data, "mirror_plan") if "mirror_plan" in ALL else pd.DataFrame(
        columns=[*MIRROR_KEY, "created_at"])
    actions = join_approvals(audit, plans, key=MIRROR_KEY, executed=MIRROR_EXECUTED)
    exceptions = actions[actions["exception"].notna()]
    copied = actions[actions["outcome"] == "copied"]
    section.facts += [
        Fact("mirror_actions", "Mirroring actions executed", len(actions),
             detail="copied, already present, retired, already gone or failed"),
        Fact("mirror_copied", "Images copied to other registries", len(copied)),
        Fact("mirror_bytes_copied", "Bytes copied", int(copied["bytes"].sum()), "bytes"),
        Fact("mirror_retired", "Copies retired", int((actions["outcome"] == "retired").sum())),
        Fact("mirror_exceptions", "Mirroring exceptions (no matching approval)", len(exceptions)),
    ]
    if not len(audit):
        section.notes.append("No mirroring action was recorded in this period.")
    shown = ("executed_at", "plan_id", "target", "repositories", "digest", "outcome", "approved_by", "approved_at")
    section.tables += [
        Table("mirroring-exceptions", "Mirroring actions without a matching approval", exceptions,
              columns=(*shown, "exception")),
        Table("mirroring-plans", "Executed mirror plans and their approvals", plan_table(actions, done="copied")),
        Table("mirroring-actions", "Every executed mirroring action with its approval", actions, shown=20,
              columns=shown)]


def build(data: PeriodData, policy: Policy) -> Section:
    section = Section("deletions", "Deletions and mirroring",
                      "Every action executed on a registry in the period, joined to its approval (who, when, plan id); "
                      "actions without a matching approval are listed as exceptions.",
                      datasets=["gc_audit", "gc_plan"])
    _deletions(data, section)
    _mirroring(data, section)
    if not data.days("gc_audit") and not ("mirror_audit" in ALL and data.days("mirror_audit")):
        section.status = NO_DATA
    return section
