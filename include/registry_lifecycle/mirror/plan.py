"""The mirror plan: for each (image, target), copy, keep, retire or skip, each with its reason.

How a line is decided, in this order:

1. Candidates. A target *serves* a region other than the source registry's: the cheapest
   target there (by storage price, then name) gets that region's pull demand. Candidates on
   a target are the units its region pulled in the look-back window, the units a DR rule may
   place on it, and the units the lifecycle copied there before (`mirror_audit` holdings).
2. State. Each candidate's root manifest is HEADed on the target in every repository it would
   land in (`target_state`); blobs of what the target holds are not transferred again.
3. Economics (`cost`): a unit the target lacks is copied when the egress it saves over the
   horizon exceeds its storage plus the transfer; one it holds is kept while it saves more
   than its storage costs, and retired otherwise when `mirror.retire` is on.
4. Filters: a repository a `deny` pattern matches, or no `allow` pattern does, is never copied.
5. DR rules: every unit an active workload matching a rule references must exist in at least
   `min_registries` registries, the source counted. Where economics placed too few copies,
   the cheapest eligible targets get one. A unit a rule requires is never retired.

Each line charges its unit for every blob the target lacks, so lines that share a base layer
each count it; the per-target totals count every blob once. The plan id is a SHA-256 over the
mirror policy, the snapshot and pull window read, what the targets held, and the lines:
identical inputs give the identical id, and an approval of one id never executes another plan.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pyarrow as pa

from ..config import BYTES_PER_GB, MirrorTarget, Policy
from ..datasets import PULLS_DAILY, TS, Dataset, register
from ..lake import Lake
from ..units import human_bytes
from .cost import economics, money
from .demand import Units, dr_requirements, regional_demand, units
from .target_state import TargetState

log = logging.getLogger(__name__)

MIRROR, RETIRE, KEEP, SKIP = "mirror", "retire", "keep", "skip"
ACTIONS: tuple[str, ...] = (MIRROR, RETIRE, KEEP, SKIP)
EXECUTABLE: tuple[str, ...] = (MIRROR, RETIRE)
SNAPSHOT_DATASETS = ("images", "layers", "references", "namespaces")

MIRROR_PLAN = register(Dataset("mirror_plan", pa.schema([
    pa.field("plan_id", pa.string(), nullable=False),
    pa.field("digest", pa.string(), nullable=False),
    pa.field("repository", pa.string(), nullable=False),
    pa.field("repositories", pa.string(), nullable=False),
    pa.field("source_repository", pa.string(), nullable=False),
    pa.field("target", pa.string(), nullable=False),
    pa.field("region", pa.string(), nullable=False),
    pa.field("action", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=True),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("pulls_per_month", pa.float64(), nullable=False),
    pa.field("egress_saved_per_month", pa.float64(), nullable=False),
    pa.field("storage_cost_per_month", pa.float64(), nullable=False),
    pa.field("transfer_cost", pa.float64(), nullable=False),
    pa.field("monthly_cost_delta", pa.float64(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("created_at", TS, nullable=False),
]), ("plan_id", "digest", "target"), False,
    "one line per (unit root digest, target): action mirror|retire|keep|skip, rule (the DR rule that requires it), "
    "bytes (to copy for mirror and skip, held for keep and retire), costs in the policy's currency per month "
    "(transfer once), monthly_cost_delta (positive = the bill grows), a one-line reason; repositories are the source "
    "repositories (comma-separated) the unit lands in on the target, repository the first of them"))




# ------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class PlanInputs:
    """What a plan reads from the lake: one snapshot and the pulls of the look-back window."""

    day: date
    snapshot_day: date
    run_ids: Mapping[str, str]
    images: pd.DataFrame
    layers: pd.DataFrame
    references: pd.DataFrame
    namespaces: pd.DataFrame
    pulls: pd.DataFrame
    window: tuple[date, date]
    days_covered: int

    def identity(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "snapshot_day": self.snapshot_day.isoformat(),
                "run_ids": dict(sorted(self.run_ids.items())),
                "window": [self.window[0].isoformat(), self.window[1].isoformat()], "days_covered": self.days_covered}


def load_inputs(lake: Lake, day: date, policy: Policy) -> PlanInputs:
    """The newest snapshot on or before `day` and the pulls of the `lookback_days` up to it."""
    from ..gc.plan import SnapshotIdentity

    snapshot_day = lake.latest_day("images", day)
    identity = SnapshotIdentity.from_lake(lake, snapshot_day, SNAPSHOT_DATASETS)
    frames = {name: identity.read(lake, name) for name in SNAPSHOT_DATASETS}
    first = day - timedelta(days=policy.mirror.lookback_days - 1)
    pulls = lake.read_range(PULLS_DAILY, first, day, columns=["day", "repository", "digest", "cluster", "pulls",
                                                               "bytes"])
    covered = sum(1 for stored in lake.days(PULLS_DAILY) if first <= stored <= day)
    return PlanInputs(day=day, snapshot_day=snapshot_day, run_ids=dict(identity.run_ids), pulls=pulls,
                      window=(first, day), days_covered=covered, **frames)


# ------------------------------------------------------------------------------ candidates
def serving_targets(policy: Policy) -> dict[str, MirrorTarget]:
    """region -> the target that serves its pulls: the cheapest to store on there, then by name."""
    serving: dict[str, MirrorTarget] = {}
    for target in sorted(policy.mirror.targets, key=lambda t: (t.storage_cost_per_gb_month, t.name)):
        if target.region != policy.mirror.source_region:
            serving.setdefault(target.region, target)
    return serving


def _merge(first: list[str], more: list[str]) -> list[str]:
    return first + [repository for repository in more if repository not in first]


def draft(policy: Policy, unit_map: Units, demand: pd.DataFrame, required: pd.DataFrame,
          holdings: pd.DataFrame, home: pd.Series) -> pd.DataFrame:
    """One row per candidate (target, root): its repositories, regional demand, DR rules and
    whether the lifecycle placed it there before."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(target: MirrorTarget, root: str) -> dict[str, Any]:
        key = (target.name, root)
        if key not in rows:
            rows[key] = {"target": target.name, "root": root, "repositories": [], "pulls_per_month": 0.0,
                         "egress_bytes_per_month": 0.0, "clusters": [], "rules": [], "workloads": [],
                         "held_before": False, "demand": False}
        return rows[key]

    serving = serving_targets(policy)
    for item in demand.itertuples(index=False):
        target = serving.get(item.region)
        if target is None:
            continue
        entry = row(target, item.root)
        entry.update(pulls_per_month=float(item.pulls_per_month),
                     egress_bytes_per_month=float(item.egress_bytes_per_month), clusters=list(item.clusters),
                     demand=True)
        entry["repositories"] = _merge(entry["repositories"], list(item.repositories))
    targets = {target.name: target for target in policy.mirror.targets}
    for item in required.itertuples(index=False):
        for name in item.targets or tuple(targets):
            entry = row(targets[name], item.root)
            entry["rules"].append(item.rule)
            entry["workloads"].append(item.workload)
            entry["repositories"] = _merge(entry["repositories"], list(item.repositories))
    for item in holdings.itertuples(index=False):
        if item.target in targets and item.digest in unit_map.root_of.index:
            entry = row(targets[item.target], item.digest)
            entry["held_before"] = True
            entry["repositories"] = _merge(entry["repositories"], [r for r in item.repositories.split(",") if r])
    frame = pd.DataFrame(list(rows.values()), columns=["target", "root", "repositories", "pulls_per_month",
                                                       "egress_bytes_per_month", "clusters", "rules", "workloads",
                                                       "held_before", "demand"])
    empty = frame["repositories"].map(len) == 0
    frame.loc[empty, "repositories"] = frame.loc[empty, "root"].map(lambda root: [home.get(root)])
    return frame


def survey_pairs(policy: Policy, candidates: pd.DataFrame) -> dict[str, set[tuple[str, str]]]:
    """What to HEAD on each target: every candidate root in every repository it would land in."""
    targets = {target.name: target for target in policy.mirror.targets}
    wanted: dict[str, set[tuple[str, str]]] = {name: set() for name in targets}
    for target, root, repositories in zip(candidates["target"], candidates["root"], candidates["repositories"]):
        wanted[target].update((targets[target].repository(repository), root) for repository in repositories)
    return wanted


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class MirrorPlan:
    """Every candidate line with its decision and reason, and the totals per target."""

    plan_id: str
    created_at: datetime
    day: date
    currency: str
    lines: pd.DataFrame = field(repr=False)          # the mirror_plan contract
    totals: pd.DataFrame = field(repr=False)         # one row per target
    inputs: dict[str, Any] = field(default_factory=dict)
    assumptions: dict[str, Any] = field(default_factory=dict)
    clusters: dict[str, str] = field(default_factory=dict)     # cluster -> region, as the plan saw them
    unserved: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def actions(self) -> pd.DataFrame:
        """The lines an execution acts on (mirror and retire), in plan order."""
        return self.lines[self.lines["action"].isin(EXECUTABLE)]

    def counts(self) -> dict[str, int]:
        return {action: int((self.lines["action"] == action).sum()) for action in ACTIONS}

    @property
    def monthly_cost_delta(self) -> float:
        return float(self.totals["monthly_cost_delta"].sum()) if not self.totals.empty else 0.0

    def summary_markdown(self, *, largest: int = 10) -> str:
        """What an approver reads: totals per target, the largest lines, and what was not copied."""
        currency = self.currency
        window = self.inputs.get("window", ["?", "?"])
        state = "assumed empty (not asked)" if self.assumptions.get("targets_assumed_empty") else "read from each target"
        lines = [
            f"### Registry mirror plan `{self.plan_id[:12]}`",
            "",
            (f"Demand: pulls of {window[0]} .. {window[1]} ({self.inputs.get('days_covered')} days with pull "
             f"data), snapshot of {self.inputs.get('snapshot_day')}. Costs in {currency} over "
             f"{self.assumptions.get('horizon_days')} days; {self.assumptions.get('cold_pull_fraction', 0):.0%} of "
             f"pulls assumed to download the image's layers. Target contents: {state}."),
            "",
        ]
        if self.totals.empty:
            lines.append("No mirror targets are configured (`mirror.targets` in the policy): nothing to plan.")
        else:
            lines += [("| target | region | copy (DR) | bytes to copy | transfer, once | storage /month "
                       "| egress saved /month | retire | cost delta /month |"),
                      "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
            for row in self.totals.itertuples():
                lines.append(f"| {row.target} | {row.region} | {row.mirror_images} ({row.dr_images}) "
                             f"| {human_bytes(row.bytes_to_copy)} | {money(row.transfer_cost, currency)} "
                             f"| {money(row.storage_cost_added_per_month, currency)} "
                             f"| {money(row.egress_saved_per_month, currency)} | {row.retire_images} "
                             f"| {money(row.monthly_cost_delta, currency)} |")
            transfer = money(float(self.totals["transfer_cost"].sum()), currency)
            lines += ["", (f"**Monthly cost delta: {money(self.monthly_cost_delta, currency)}** (negative: the bill "
                           f"shrinks), plus {transfer} of transfer once.")]
        actions = self.actions
        if not actions.empty:
            top = actions.sort_values(["monthly_cost_delta", "digest"]).head(largest)
            lines += ["", f"Largest effects ({min(largest, len(actions))} of {len(actions)} actions):", "",
                      "| action | image | target | reason |", "|---|---|---|---|"]
            for row in top.itertuples():
                image = f"{row.repository}@{row.digest[:19]}"
                lines.append(f"| {row.action} | `{image}` | {row.target} | {row.reason.replace('|', '/')} |")
        counts = self.counts()
        lines += ["", (f"Lines: {counts[MIRROR]} copy, {counts[RETIRE]} retire, {counts[KEEP]} keep, "
                       f"{counts[SKIP]} skip (each with its reason in the `mirror_plan` dataset).")]
        for region in self.unserved:
            lines.append(f"- Region {region['region']} ({', '.join(region['clusters'])}) pulls "
                         f"{region['pulls_per_month']:,.0f} times a month across regions and has no target.")
        for warning in self.warnings:
            lines.append(f"- Warning: {warning}")
        lines += ["", f"Plan id: `{self.plan_id}`"]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for XCom and `--json`): no rows, no credentials."""
        return {"plan_id": self.plan_id, "day": self.day.isoformat(), "created_at": self.created_at.isoformat(),
                "currency": self.currency, "inputs": self.inputs, "assumptions": self.assumptions,
                "counts": self.counts(), "monthly_cost_delta": round(self.monthly_cost_delta, 6),
                "transfer_cost": round(float(self.totals["transfer_cost"].sum()) if not self.totals.empty else 0.0, 6),
                "totals": json.loads(self.totals.to_json(orient="records")), "clusters": self.clusters,
                "unserved": self.unserved, "warnings": self.warnings}


def plan_id(policy: Policy, inputs: dict[str, Any], state: TargetState, lines: pd.DataFrame) -> str:
    """SHA-256 over the mirror policy, the inputs read, the targets' contents and the sorted lines."""
    hasher = hashlib.sha256()
    header = {"policy_version": policy.version, "mirror": policy.mirror.model_dump(mode="json"), "inputs": inputs,
              "targets": state.fingerprint()}
    hasher.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    ordered = lines.sort_values(["target", "digest"])
    for row in ordered[["digest", "target", "action", "repositories", "bytes"]].itertuples(index=False):
        hasher.update(f"{row.digest} {row.target} {row.action} {row.repositories} {row.bytes}\n".encode())
    return hasher.hexdigest()


def prepare(inputs: PlanInputs, policy: Policy, holdings: pd.DataFrame | None = None) -> tuple[
        Units, pd.Series, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Units, each digest's home repository, regional demand, DR requirements and the candidates."""
    holdings = holdings if holdings is not None else pd.DataFrame(columns=["target", "digest", "repositories"])
    unit_map = units(inputs.images, inputs.layers)
    home = inputs.images.set_index("digest")["repository"]
    demand = regional_demand(inputs.pulls, inputs.images, unit_map, policy, inputs.days_covered)
    required = dr_requirements(inputs.references, inputs.namespaces, inputs.images, unit_map, policy)
    return unit_map, home, demand, required, draft(policy, unit_map, demand, required, holdings, home)


def make_plan(inputs: PlanInputs, policy: Policy, state: TargetState, *, holdings: pd.DataFrame | None = None,
              created_at: datetime | None = None, prepared: tuple | None = None) -> MirrorPlan:
    """Decide every candidate (image, target) from the stored snapshot, the pulls and the targets' state."""
    mirror = policy.mirror
    created_at = created_at or datetime.now(timezone.utc)
    unit_map, home, demand, required, candidates = prepared or prepare(inputs, policy, holdings)
    targets = {target.name: target for target in mirror.targets}
    warnings: list[str] = []
    if inputs.days_covered < mirror.lookback_days:
        warnings.append(f"only {inputs.days_covered} of the {mirror.lookback_days} look-back days have pull data; "
                        "demand is scaled from those")

    decided = []
    for name, group in candidates.groupby("target", sort=True):
        decided.append(_decide(group.reset_index(drop=True), targets[name], state, unit_map, policy))
    lines = pd.concat(decided, ignore_index=True) if decided else _decide(candidates, None, state, unit_map, policy)
    lines = _apply_dr(lines, required, targets, policy, warnings)
    lines = lines[~(lines["dr_only"] & (lines["action"] == SKIP))]
    lines = _finish(lines, home)
    totals = _totals(lines, targets, state, unit_map, mirror.currency)
    assumptions = {"horizon_days": mirror.horizon_days, "cold_pull_fraction": mirror.cold_pull_fraction,
                   "targets_assumed_empty": state.assumed_empty, "retire": mirror.retire,
                   "source_region": mirror.source_region}
    identity = inputs.identity()
    identifier = plan_id(policy, identity, state, lines)
    lines = lines.assign(plan_id=identifier, created_at=pd.Timestamp(created_at),
                         rule=lines["rule"].astype(object).where(lines["rule"].notna(), None))
    table = pa.Table.from_pandas(lines[MIRROR_PLAN.schema.names], schema=MIRROR_PLAN.schema, preserve_index=False)
    clusters = {cluster: mirror.region_of(cluster) for cluster in sorted(set(inputs.pulls["cluster"])
                                                                          | set(mirror.cluster_regions))}
    return MirrorPlan(plan_id=identifier, created_at=created_at, day=inputs.day, currency=mirror.currency,
                      lines=table.to_pandas(), totals=totals, inputs=identity, assumptions=assumptions,
                      clusters=clusters, unserved=_unserved(demand, policy), warnings=warnings)


def _decide(group: pd.DataFrame, target: MirrorTarget | None, state: TargetState, unit_map: Units,
            policy: Policy) -> pd.DataFrame:
    """Presence, bytes, economics, filters and the economic action of one target's candidates."""
    columns = ["target", "root", "repositories", "region", "action", "rule", "bytes", "pulls_per_month",
               "egress_saved_per_month", "storage_cost_per_month", "transfer_cost", "monthly_cost_delta", "reason",
               "rules", "workloads", "dr_only", "present", "net_over_horizon"]
    if target is None or group.empty:
        return pd.DataFrame(columns=columns)
    mirror = policy.mirror
    currency = mirror.currency
    group = group.copy()
    allowed, refusal = [], []
    for repositories in group["repositories"]:
        denied = {repository: mirror.denied_by(repository) for repository in repositories}
        allowed.append([repository for repository in repositories if denied[repository] is None])
        refusal.append(next((f"{repository} ({why})" for repository, why in denied.items() if why), None))
    group["repositories"] = allowed
    held = [[state.holds(target.name, target.repository(repository), root) for repository in repositories]
            for root, repositories in zip(group["root"], group["repositories"])]
    group["present"] = [bool(flags) and all(flags) for flags in held]
    on_target = set(unit_map.blobs.loc[unit_map.blobs["root"].isin(state.digests(target.name)), "blob"])
    blobs = unit_map.blobs[unit_map.blobs["root"].isin(set(group["root"]))]
    missing = blobs[~blobs["blob"].isin(on_target)].groupby("root")["size_bytes"].sum()
    group["unit_bytes"] = group["root"].map(unit_map.unit_bytes).fillna(0).astype("int64")
    group["new_bytes"] = group["root"].map(missing).fillna(0).astype("int64")
    group = economics(group, target, mirror.horizon_days)
    group["region"] = target.region
    group["dr_only"] = ~group["demand"] & ~group["held_before"] & ~group["present"]

    actions, reasons, deltas, sizes = [], [], [], []
    for row in group.itertuples():
        saved, storage, transfer = row.egress_saved_per_month, row.storage_cost_per_month, row.transfer_cost
        demand = (f"{row.pulls_per_month:,.1f} pulls/month from {', '.join(row.clusters) or 'no cluster'} "
                  f"({target.region})")
        if not row.repositories:
            actions.append(SKIP)
            reasons.append(f"not mirrored: repository {refusal[row.Index]} is excluded by the policy")
            deltas.append(0.0)
            sizes.append(row.new_bytes)
        elif row.present:
            sizes.append(row.unit_bytes)
            if row.net_over_horizon > 0 or row.rules:
                actions.append(KEEP)
                why = f"required by DR rule {row.rules[0]}" if row.rules else \
                    f"{demand} save {money(saved, currency)}/month"
                reasons.append(f"held; {why}; storing it costs {money(storage, currency)}/month")
                deltas.append(0.0)
            elif mirror.retire:
                actions.append(RETIRE)
                reasons.append(f"held, but {demand} save {money(saved, currency)}/month against "
                               f"{money(storage, currency)}/month of storage: removing it saves "
                               f"{money(storage - saved, currency)}/month")
                deltas.append(saved - storage)
            else:
                actions.append(KEEP)
                reasons.append(f"held; no longer pays for itself ({money(saved, currency)}/month saved against "
                               f"{money(storage, currency)}/month of storage), kept as mirror.retire is off")
                deltas.append(0.0)
        elif row.net_over_horizon > 0:
            actions.append(MIRROR)
            sizes.append(row.new_bytes)
            deltas.append(storage - saved)
            copy = f"copying {human_bytes(row.new_bytes)} costs {money(storage, currency)}/month + " \
                   f"{money(transfer, currency)} once" if row.new_bytes else "its blobs are already there"
            reasons.append(f"{demand} would save {money(saved, currency)}/month in egress; {copy}")
        else:
            actions.append(SKIP)
            sizes.append(row.new_bytes)
            deltas.append(0.0)
            reasons.append(f"{demand} save {money(saved * mirror.horizon_days / 30, currency)} over "
                           f"{mirror.horizon_days} days, less than storing {human_bytes(row.new_bytes)} "
                           f"({money(storage * mirror.horizon_days / 30, currency)}) + transfer "
                           f"({money(transfer, currency)})")
    group["action"], group["reason"], group["monthly_cost_delta"], group["bytes"] = actions, reasons, deltas, sizes
    group["rule"] = None
    return group[columns]


def _apply_dr(lines: pd.DataFrame, required: pd.DataFrame, targets: Mapping[str, MirrorTarget], policy: Policy,
              warnings: list[str]) -> pd.DataFrame:
    """Add copies where a DR rule finds too few registries holding a unit: cheapest eligible targets first."""
    if required.empty or lines.empty:
        return lines
    lines = lines.copy()
    currency = policy.mirror.currency
    for item in required.itertuples(index=False):
        here = lines[lines["root"] == item.root]
        holding = set(here.loc[here["action"].isin([MIRROR, KEEP]), "target"])
        eligible = sorted((targets[name] for name in (item.targets or tuple(targets))),
                          key=lambda t: (t.storage_cost_per_gb_month, t.name))
        for target in eligible:
            if 1 + len(holding) >= item.min_registries:
                break
            if target.name in holding:
                continue
            index = here.index[here["target"] == target.name]
            if len(index) == 0:
                continue
            row = lines.loc[index[0]]
            if not row["repositories"]:
                warnings.append(f"DR rule {item.rule} cannot place {item.root[:19]} on {target.name}: "
                                f"{row['reason'].removeprefix('not mirrored: ')}")
                continue
            lines.loc[index[0], "action"] = MIRROR
            lines.loc[index[0], "rule"] = item.rule
            lines.loc[index[0], "bytes"] = row["bytes"]
            lines.loc[index[0], "monthly_cost_delta"] = row["storage_cost_per_month"] - row["egress_saved_per_month"]
            lines.loc[index[0], "reason"] = (
                f"DR rule {item.rule}: {item.workload} runs it and {1 + len(holding)} of {item.min_registries} "
                f"registries hold it; copying {human_bytes(row['bytes'])} costs "
                f"{money(row['storage_cost_per_month'], currency)}/month + {money(row['transfer_cost'], currency)} once")
            holding.add(target.name)
        if 1 + len(holding) < item.min_registries:
            warnings.append(f"DR rule {item.rule}: {item.root[:19]} ({item.workload}) is in {1 + len(holding)} of "
                            f"{item.min_registries} registries after this plan")
    # A unit a rule requires where it is held is kept, whatever its economics.
    for item in required.itertuples(index=False):
        mask = (lines["root"] == item.root) & (lines["action"] == RETIRE)
        if mask.any():
            lines.loc[mask, "action"] = KEEP
            lines.loc[mask, "monthly_cost_delta"] = 0.0
            lines.loc[mask, "rule"] = item.rule
            lines.loc[mask, "reason"] = f"held; required by DR rule {item.rule} ({item.workload}), never retired"
    return lines


def _finish(lines: pd.DataFrame, home: pd.Series) -> pd.DataFrame:
    """Contract columns, in plan order: per target, copies and retirements with the largest
    saving first, then what is kept and skipped."""
    order = {action: position for position, action in enumerate(ACTIONS)}
    lines = lines.assign(
        digest=lines["root"],
        repository=[repositories[0] if repositories else home.get(root)
                    for root, repositories in zip(lines["root"], lines["repositories"])],
        source_repository=lines["root"].map(home),
        repositories=lines["repositories"].map(",".join),
        rank=lines["action"].map(order),
        bytes=lines["bytes"].astype("int64"),
    )
    lines = lines.sort_values(["target", "rank", "monthly_cost_delta", "digest"], kind="stable")
    return lines.reset_index(drop=True)


def _totals(lines: pd.DataFrame, targets: Mapping[str, MirrorTarget], state: TargetState, unit_map: Units,
            currency: str) -> pd.DataFrame:
    """Per target: what the plan copies and retires and what that does to the monthly bill, shared blobs once."""
    rows = []
    for name in sorted(targets):
        target = targets[name]
        mine = lines[lines["target"] == name]
        copies, retired = mine[mine["action"] == MIRROR], mine[mine["action"] == RETIRE]
        kept = mine[mine["action"] == KEEP]
        on_target = set(unit_map.blobs.loc[unit_map.blobs["root"].isin(state.digests(name)), "blob"])
        added = unit_map.blobs[unit_map.blobs["root"].isin(set(copies["digest"])) & ~unit_map.blobs["blob"].isin(on_target)]
        bytes_to_copy = int(added.drop_duplicates("blob")["size_bytes"].sum())
        staying = set(unit_map.blobs.loc[unit_map.blobs["root"].isin(set(kept["digest"]) | set(copies["digest"])),
                                         "blob"])
        going = unit_map.blobs[unit_map.blobs["root"].isin(set(retired["digest"])) & ~unit_map.blobs["blob"].isin(staying)]
        bytes_freed = int(going.drop_duplicates("blob")["size_bytes"].sum())
        storage_added = bytes_to_copy / BYTES_PER_GB * target.storage_cost_per_gb_month
        storage_freed = bytes_freed / BYTES_PER_GB * target.storage_cost_per_gb_month
        saved = float(copies["egress_saved_per_month"].sum())
        lost = float(retired["egress_saved_per_month"].sum())
        rows.append({"target": name, "region": target.region, "mirror_images": len(copies),
                     "dr_images": int(copies["rule"].notna().sum()), "bytes_to_copy": bytes_to_copy,
                     "transfer_cost": bytes_to_copy / BYTES_PER_GB * target.egress_cost_per_gb,
                     "storage_cost_added_per_month": storage_added, "egress_saved_per_month": saved,
                     "retire_images": len(retired), "bytes_freed": bytes_freed,
                     "storage_cost_freed_per_month": storage_freed, "egress_lost_per_month": lost,
                     "kept_images": len(kept), "skipped_images": int((mine["action"] == SKIP).sum()),
                     "monthly_cost_delta": storage_added - saved - storage_freed + lost, "currency": currency})
    return pd.DataFrame(rows, columns=["target", "region", "mirror_images", "dr_images", "bytes_to_copy",
                                       "transfer_cost", "storage_cost_added_per_month", "egress_saved_per_month",
                                       "retire_images", "bytes_freed", "storage_cost_freed_per_month",
                                       "egress_lost_per_month", "kept_images", "skipped_images", "monthly_cost_delta",
                                       "currency"])


def _unserved(demand: pd.DataFrame, policy: Policy) -> list[dict[str, Any]]:
    """Regions that pull across regions without a target there (where a new target could pay)."""
    if demand.empty:
        return []
    served = set(serving_targets(policy))
    remote = demand[(demand["region"] != policy.mirror.source_region) & ~demand["region"].isin(served)]
    result = []
    for region, group in remote.groupby("region", sort=True):
        result.append({"region": region, "pulls_per_month": round(float(group["pulls_per_month"].sum()), 3),
                       "egress_bytes_per_month": round(float(group["egress_bytes_per_month"].sum())),
                       "clusters": sorted({cluster for clusters in group["clusters"] for cluster in clusters})})
    return result


# ------------------------------------------------------------------------------ lake
def plan_day(lake: Lake, day: date, policy: Policy, *, state: TargetState | None = None,
             clients: Mapping[str, Any] | None = None, created_at: datetime | None = None) -> MirrorPlan:
    """The plan for `day`: inputs from the lake, targets surveyed with `clients` (or `state` given)."""
    from .audit import MirrorAuditLog
    from .target_state import survey

    inputs = load_inputs(lake, day, policy)
    holdings = MirrorAuditLog(lake, day, "plan").holdings()
    prepared = prepare(inputs, policy, holdings)
    if state is None:
        if clients is None:
            raise ValueError("give the targets' clients to read their state, or a TargetState (assume_empty())")
        state = survey(clients, survey_pairs(policy, prepared[-1]), concurrency=policy.mirror.transfer.concurrency * 2)
    return make_plan(inputs, policy, state, holdings=holdings, created_at=created_at, prepared=prepared)


def publish(lake: Lake, plan: MirrorPlan, run_id: str) -> None:
    """Write the plan's lines as the run's `mirror_plan` partition of the plan's day, committed."""
    with lake.run(plan.day, run_id) as run:
        run.write(MIRROR_PLAN, plan.lines, extra_metadata={"mirror_plan_id": plan.plan_id})


def read_plan(lake: Lake, day: date, plan_id: str, *, run_id: str | None = None) -> pd.DataFrame:
    """The stored lines of exactly `plan_id`; raises LookupError if that plan is not stored for `day`."""
    lines = lake.read(MIRROR_PLAN, day, run_id=run_id)
    mine = lines[lines["plan_id"] == plan_id]
    if mine.empty:
        found = ", ".join(sorted(set(lines["plan_id"]))) or "none"
        raise LookupError(f"mirror plan {plan_id} is not stored for {day.isoformat()} (stored: {found}); re-plan")
    return mine.reset_index(drop=True)


def empty_lines() -> pd.DataFrame:
    return pa.Table.from_pylist([], schema=MIRROR_PLAN.schema).to_pandas()

