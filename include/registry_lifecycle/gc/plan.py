"""The GC plan: from reuse scores and protections to a ranked, capped, approvable list of deletions.

Every image of the snapshot gets one decision:

- `protected`: a hard protection holds it (see `protections.py`), including everything a kept
  image carries with it: the children of a kept index and the referrers of a kept image.
- `keep`: no protection, but its p_reuse is above the policy's threshold (or it has no score).
- `delete`: a candidate (unprotected, p_reuse <= threshold) inside this run's caps. Its
  children and referrers that nothing else keeps go with it, as `delete_with_subject`.
- `deferred`: a candidate beyond the per-run caps, left for a later run.
- `report_only`: a candidate in a namespace whose mode is `audit`; nothing is executed.

Candidates are ranked by expected benefit, the bytes their deletion frees times the chance
they are not needed again, (1 - p_reuse); an image and the dependents that go with it form one
unit, ranked and capped together, so a signature is never planned without its subject. The caps
(images and bytes per run) are applied in rank order: what falls beyond them is deferred.

An image held by several namespaces (promotion re-tags one digest from dev to prod) gets the
most cautious mode among them, because deleting the digest removes it from all of them.

The plan id is a SHA-256 over the policy's gc section, the snapshot's identity (day and the
run id of every dataset read) and the sorted decisions: identical inputs give the identical
id, and an approval recorded for one id can never be applied to a plan that differs.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..config import GC_MODES_BY_CAUTION, GcPolicy, Policy
from ..datasets import TS, Dataset, register
from ..lake import Lake, LakeNotFound
from ..units import human_bytes, markdown_cell
from .features import distinct
from .protections import (REFERRER, TAG_DERIVED, ManifestGraph, as_lists, direct_protections, namespace_environments,
                          namespace_metadata, repository_namespaces)
from .reclaim import BlobGraph, Reclaim

KEEP, PROTECTED, DELETE, DEFERRED, REPORT_ONLY = "keep", "protected", "delete", "deferred", "report_only"
ACTION_DELETE, ACTION_WITH_SUBJECT = "delete", "delete_with_subject"
SNAPSHOT_DATASETS = ("images", "layers", "tags", "references", "namespaces")
# Columns of a scored frame that are not features.
_SCORE_COLUMNS = frozenset({"digest", "repository", "namespace", "size_bytes", "p_reuse", "reason"})

GC_SCORES = register(Dataset("gc_scores", pa.schema([
    pa.field("digest", pa.string(), nullable=False),
    pa.field("repository", pa.string(), nullable=False),
    pa.field("namespace", pa.string(), nullable=False),
    pa.field("environment", pa.string(), nullable=True),
    pa.field("size_bytes", pa.int64(), nullable=False),
    pa.field("unique_bytes", pa.int64(), nullable=False),
    pa.field("p_reuse", pa.float64(), nullable=True),
    pa.field("benefit_bytes", pa.float64(), nullable=True),
    pa.field("protections", pa.list_(pa.string()), nullable=False),
    pa.field("mode", pa.string(), nullable=False),
    pa.field("decision", pa.string(), nullable=False),
    pa.field("rank", pa.int32(), nullable=True),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("features", pa.string(), nullable=False),
]), ("digest",), False,
    "one row per image: its reuse score, protections, exclusive bytes (unique_bytes: what deleting it alone frees), "
    "expected benefit, mode and decision (keep|protected|delete|deferred|report_only); features as a JSON object"))

GC_PLAN = register(Dataset("gc_plan", pa.schema([
    pa.field("plan_id", pa.string(), nullable=False),
    pa.field("digest", pa.string(), nullable=False),
    pa.field("repository", pa.string(), nullable=False),
    pa.field("namespace", pa.string(), nullable=False),
    pa.field("action", pa.string(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("mode", pa.string(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("created_at", TS, nullable=False),
]), ("plan_id", "digest"), False,
    "planned deletions (action delete|delete_with_subject, mode approve|auto); bytes are each row's share of the "
    "honest reclaim and add up to it"))


class PlanError(ValueError):
    """The inputs cannot give a safe plan; the message says what is missing."""


class SnapshotFrames(Protocol):
    """The stored snapshot a plan is made on (features.RegistryState has these). An optional
    `index_children` frame (index_digest, child_digest) lists children several indexes share."""

    images: pd.DataFrame
    layers: pd.DataFrame
    tags: pd.DataFrame
    references: pd.DataFrame
    namespaces: pd.DataFrame | Mapping


@dataclass(frozen=True)
class SnapshotIdentity:
    """Which committed runs a plan read: the day and, per dataset, the run id."""

    day: date
    run_ids: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_lake(cls, lake: Lake, day: date, datasets: tuple[str, ...] = SNAPSHOT_DATASETS) -> SnapshotIdentity:
        """The latest committed run of each snapshot dataset of `day`, as `Lake.read` picks it."""
        commits = lake.commits(day)
        run_ids = {}
        for name in datasets:
            runs = [commit.run_id for commit in commits if name in commit.files]
            if not runs:
                raise LakeNotFound(f"{name} has no committed run for {day.isoformat()} in {lake.url}: a plan needs "
                                   "the whole snapshot; snapshots cannot be re-extracted for a past day")
            run_ids[name] = runs[-1]
        return cls(day, run_ids)

    def read(self, lake: Lake, dataset: str) -> pd.DataFrame:
        """The dataset exactly as this identity names it, never a run committed since."""
        return lake.read(dataset, self.day, run_id=self.run_ids[dataset])

    def as_json(self) -> dict:
        return {"day": self.day.isoformat(), "run_ids": dict(sorted(self.run_ids.items()))}


@dataclass(frozen=True)
class Plan:
    """Decisions for every image plus the executable actions, with their honest reclaim."""

    plan_id: str
    created_at: datetime
    policy: GcPolicy
    policy_version: int
    policy_sha256: str
    identity: SnapshotIdentity
    scores: pd.DataFrame = field(repr=False)        # the gc_scores contract
    actions: pd.DataFrame = field(repr=False)       # the gc_plan contract
    reclaim: Reclaim

    @property
    def deleted_digests(self) -> frozenset[str]:
        return frozenset(self.actions["digest"])

    def totals(self, by: Literal["namespace", "environment"] = "namespace") -> pd.DataFrame:
        """Per namespace or environment: images and bytes planned, and what was kept back."""
        scores = self.scores.assign(environment=self.scores["environment"].fillna("(no environment)"))
        planned_bytes = self.actions.set_index("digest")["bytes"]
        scores = scores.assign(planned_bytes=scores["digest"].map(planned_bytes).fillna(0).astype(np.int64),
                               planned_naive=np.where(scores["decision"] == DELETE, scores["size_bytes"], 0))
        decision = scores["decision"]
        table = scores.assign(**{name: decision == name for name in (DELETE, DEFERRED, REPORT_ONLY, PROTECTED)}) \
            .groupby(by).agg(images=(DELETE, "sum"), bytes=("planned_bytes", "sum"),
                             naive_bytes=("planned_naive", "sum"), deferred=(DEFERRED, "sum"),
                             report_only=(REPORT_ONLY, "sum"), protected=(PROTECTED, "sum"))
        return table.astype(np.int64).sort_values(["bytes", "images"], ascending=False)

    def summary_markdown(self, *, top_namespaces: int = 5, largest: int = 10) -> str:
        """The body of the approval request: what will happen, how much it frees, and why."""
        counts = self.scores["decision"].value_counts()
        actions = self.actions
        by_mode = actions.groupby("mode")["bytes"].agg(["size", "sum"])
        lines = [
            f"### Registry GC plan `{self.plan_id[:12]}`",
            "",
            f"Snapshot of {self.identity.day.isoformat()} · policy version {self.policy_version} "
            f"(gc settings sha256 `{self.policy_sha256[:12]}`) · planned {self.created_at:%Y-%m-%d %H:%M} UTC",
            "",
            "| decision | images |",
            "|---|---:|",
            *(f"| {name} | {int(counts.get(name, 0)):,} |"
              for name in (DELETE, DEFERRED, REPORT_ONLY, KEEP, PROTECTED)),
            "",
            f"**Frees {human_bytes(self.reclaim.honest_bytes)}** ({self.reclaim.blobs_freed:,} blobs no kept image "
            f"references, shared layers counted once). The naive sum of the deleted images' sizes would say "
            f"{human_bytes(self.reclaim.naive_bytes)}; {human_bytes(self.reclaim.shared_bytes_kept)} of their blobs stay "
            "because kept images share them.",
            "",
        ]
        for mode, row in by_mode.iterrows():
            verb = "after this approval" if mode == "approve" else "without approval (mode auto)"
            lines.append(f"- {int(row['size']):,} images, {human_bytes(int(row['sum']))}, deleted {verb}")
        if counts.get(DEFERRED, 0):
            lines.append(f"- {int(counts[DEFERRED]):,} candidates deferred beyond the per-run caps "
                         f"({self.policy.caps.max_images:,} images, {human_bytes(self.policy.caps.max_bytes)})")
        if counts.get(REPORT_ONLY, 0):
            lines.append(f"- {int(counts[REPORT_ONLY]):,} candidates in audit-mode namespaces: reported, never deleted")
        namespaces = self.totals("namespace")
        namespaces = namespaces[namespaces["images"] > 0].head(top_namespaces)
        lines += ["", "**Top namespaces**", "", "| namespace | images | frees | naive sum |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {int(row['images']):,} | {human_bytes(int(row['bytes']))} "
                  f"| {human_bytes(int(row['naive_bytes']))} |" for name, row in namespaces.iterrows()]
        biggest = actions.sort_values(["bytes", "digest"], ascending=[False, True]).head(largest)
        lines += ["", f"**The {len(biggest)} largest items**", "", "| rank | image | frees | action | why |",
                  "|---:|---|---:|---|---|"]
        lines += [f"| {int(row.rank)} | `{row.repository}@{row.digest[:19]}` | {human_bytes(int(row.bytes))} | {row.action} "
                  f"| {markdown_cell(row.reason)} |" for row in biggest.itertuples()]
        lines += ["", f"Plan id: `{self.plan_id}`"]
        return "\n".join(lines)






def policy_sha256(policy: GcPolicy) -> str:
    """Content hash of the gc settings, the part of the policy a plan depends on."""
    return hashlib.sha256(json.dumps(policy.model_dump(mode="json"), sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()


def plan_id(policy: GcPolicy, policy_version: int, identity: SnapshotIdentity, decisions: pd.DataFrame) -> str:
    """SHA-256 over the policy's canonical JSON, the snapshot identity and the sorted decisions."""
    hasher = hashlib.sha256()
    header = {"policy_version": policy_version, "gc": policy.model_dump(mode="json"), "snapshot": identity.as_json()}
    hasher.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    digests = decisions["digest"].to_numpy(dtype=object)
    order = pc.sort_indices(pa.array(digests, type=pa.string())).to_numpy()
    lines = digests[order] + " " + decisions["decision"].to_numpy(dtype=object)[order]
    hasher.update("\n".join(lines).encode())
    return hasher.hexdigest()


def _scores_by_digest(scored: pd.DataFrame, graph: ManifestGraph) -> pd.DataFrame:
    """p_reuse, the model's reason and the features as JSON, aligned to the graph's images
    (NaN, "" and "{}" for an image the model did not score)."""
    if "digest" not in scored.columns:
        if scored.index.name != "digest":
            raise PlanError("the scored frame needs a digest column (or a digest index)")
        scored = scored.reset_index()
    if "p_reuse" not in scored.columns:
        raise PlanError("the scored frame has no p_reuse column; score it with the reuse model first")
    codes = graph.code(scored["digest"])
    rows = np.flatnonzero(codes >= 0)
    rows = rows[np.unique(codes[rows], return_index=True)[1]]        # the first row of each digest
    at = codes[rows]
    p_reuse = np.full(graph.size, np.nan)
    p_reuse[at] = pd.to_numeric(scored["p_reuse"]).to_numpy(dtype=float)[rows]
    reasons = np.full(graph.size, "", dtype=object)
    if "reason" in scored.columns:
        reasons[at] = scored["reason"].fillna("").astype(str).to_numpy(dtype=object)[rows]
    feature_columns = sorted(c for c in scored.columns if c not in _SCORE_COLUMNS)
    if feature_columns and len(rows):
        position = np.full(graph.size, -1, dtype=np.int64)
        position[at] = np.arange(len(rows))
        objects = json_objects(scored.iloc[rows][feature_columns]).take(pa.array(position, mask=position < 0))
    else:
        objects = pa.nulls(graph.size, pa.string())
    features = pd.array(objects.fill_null("{}").to_pandas())
    return pd.DataFrame({"p_reuse": p_reuse, "model_reason": reasons, "features": features}, index=graph.digests)


def json_objects(frame: pd.DataFrame) -> pa.Array:
    """One JSON object per row (column name -> value), what `to_json(orient="records")` writes,
    built column by column in Arrow: a million rows of fifty features in seconds, not a minute.
    Numbers stay numbers (NaN and infinities become null), times are ISO 8601, anything else
    is encoded by json.dumps once per distinct value."""
    if not len(frame.columns):
        return pa.array(np.full(len(frame), "{}", dtype=object), type=pa.string())
    parts: list = []
    for position, name in enumerate(frame.columns):
        parts += [("{" if position == 0 else ",") + json.dumps(str(name)) + ":", _json_values(frame[name])]
    return pc.binary_join_element_wise(*parts, "}", "", null_handling="replace", null_replacement="null")


def _json_values(values: pd.Series) -> pa.Array:
    """Each value as JSON text; null where JSON says null."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return pc.cast(pa.array(values, type=pa.bool_(), from_pandas=True), pa.string())
    if pd.api.types.is_integer_dtype(dtype):
        return pc.cast(pa.array(values, from_pandas=True), pa.string())
    if pd.api.types.is_float_dtype(dtype):
        # Four decimals are all a reader needs, and halve the text of a million rows.
        rounded = np.round(values.to_numpy(dtype=float), 4)
        finite = np.isfinite(rounded)
        if finite.all() and (rounded == np.trunc(rounded)).all() and (np.abs(rounded) < 2**53).all():
            return pc.cast(pa.array(rounded.astype(np.int64)), pa.string())        # counts and flags
        numbers = pa.array(rounded, type=pa.float64())
        return pc.if_else(pa.array(finite), pc.cast(numbers, pa.string()), pa.scalar(None, pa.string()))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        # Whole seconds through a zone-less timestamp: formatting with a time zone costs 20x more.
        stamps = pa.array(values)
        per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[stamps.type.unit]
        seconds = pc.divide(stamps.cast(pa.int64()), per_second).cast(pa.timestamp("s"))
        text = pc.replace_substring(pc.cast(seconds, pa.string()), " ", "T", max_replacements=1)
        return pc.binary_join_element_wise('"', text, 'Z"' if stamps.type.tz else '"', "")
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        text = pa.array(values, type=pa.string(), from_pandas=True)
        if not pc.any(pc.match_substring_regex(text, r"[\x00-\x1f]")).as_py():     # nothing but quotes to escape
            escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
            return pc.binary_join_element_wise('"', escaped, '"', "")
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = np.array([json.dumps(_plain(value), default=str) for value in uniques] + [None], dtype=object)
    return pa.array(texts[codes], type=pa.string())        # code -1 (missing) takes the trailing None


def _plain(value: object) -> object:
    """A numpy scalar as the Python value json knows; a non-finite float as None."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _as_of(snapshot: SnapshotFrames, identity: SnapshotIdentity) -> datetime:
    """When the cluster was read: the references' observation time, else the end of the day."""
    observed = pd.to_datetime(snapshot.references["observed_at"], utc=True) if len(snapshot.references) else None
    if observed is not None and observed.notna().any():
        return observed.max().to_pydatetime()
    return datetime.combine(identity.day, time(23, 59, 59), tzinfo=timezone.utc)


def _cautions(graph: ManifestGraph, namespace: pd.Series, tags: pd.DataFrame, environments: Mapping[str, str],
              gc: GcPolicy) -> np.ndarray:
    """Per image, the most cautious mode (an index into GC_MODES_BY_CAUTION) of every
    namespace that holds it, by a tag (`tags`, the graph's) or as its repository (`namespace`)."""
    codes = np.concatenate([graph.tag_codes, np.arange(graph.size)])
    holders = pd.concat([tags["namespace"].astype(object), namespace], ignore_index=True)
    namespace_code, names = pd.factorize(holders)
    by_namespace = np.array([GC_MODES_BY_CAUTION.index(gc.mode_for(name, environments.get(name))) for name in names],
                            dtype=np.int64)
    caution = np.full(graph.size, len(GC_MODES_BY_CAUTION) - 1, dtype=np.int64)
    known = codes >= 0
    np.minimum.at(caution, codes[known], by_namespace[namespace_code[known]])
    return caution


def _roots(graph: ManifestGraph, candidates: np.ndarray) -> np.ndarray:
    """Per image, the root it is deleted with: a candidate dependent follows its parent (the
    index before the subject, then the smallest digest) up to an image that is nobody's
    dependent; everything else is its own root. Every parent of a candidate is a candidate:
    a kept parent would have kept it."""
    root = np.arange(graph.size)
    among = candidates[graph.child]
    child, parent, relation = graph.child[among], graph.parent[among], graph.relation[among]
    if not len(child):
        return root
    parent_digest = graph.digests[parent].to_numpy(dtype=object).astype(str)
    order = np.lexsort((parent_digest, relation, child))
    first = order[np.unique(child[order], return_index=True)[1]]
    root[child[first]] = parent[first]
    for _ in range(64):
        jumped = root[root]
        if np.array_equal(jumped, root):
            break
        root = jumped
    is_dependent = np.zeros(graph.size, dtype=bool)
    is_dependent[child] = True
    cyclic = is_dependent[root]            # only a malformed graph has cycles; such images stand alone
    root[cyclic] = np.flatnonzero(cyclic)
    return root


def make_plan(scored: pd.DataFrame, snapshot: SnapshotFrames, policy: Policy, identity: SnapshotIdentity, *,
              as_of: datetime | None = None, created_at: datetime | None = None,
              imagestream_annotations: Mapping[str, Mapping[str, str]] | None = None,
              policy_version: int | None = None) -> Plan:
    """Decide every image of `snapshot` from its score and its protections; plan the deletions.

    `scored` has one row per image: digest, p_reuse and the model's reason; any other column
    is kept as a feature in gc_scores. `as_of` is when the cluster was read (default: the
    references' observation time), against which `keep_younger_than` counts. `policy_version`
    is the revision of the policy document the caller deployed (default: `policy.version`);
    it goes into the plan id and the approval summary.
    """
    gc = policy.gc
    version = policy.version if policy_version is None else policy_version
    images = snapshot.images.drop_duplicates("digest").reset_index(drop=True)
    meta = namespace_metadata(snapshot.namespaces)
    if len(images) and not meta:
        raise PlanError("the snapshot has no namespaces (labels and annotations): legal holds, DR namespaces and "
                        "environments would be unknown, so nothing may be planned. Re-extract with a version "
                        "that stages the namespaces dataset.")
    as_of = as_of or _as_of(snapshot, identity)
    created_at = created_at or datetime.now(timezone.utc)
    environments = namespace_environments(meta, gc.environment_label)
    graph = ManifestGraph(images, snapshot.tags, getattr(snapshot, "index_children", None))
    digests = pd.Index(graph.digests, name="digest")
    namespace = repository_namespaces(images["repository"])
    scores = _scores_by_digest(scored, graph)
    p_reuse = scores["p_reuse"].to_numpy(dtype=float)

    # Everything kept: by a protection, by its score, and what those carry with them.
    direct = direct_protections(images, snapshot.tags, snapshot.references, meta, gc, as_of, graph=graph,
                                imagestream_annotations=imagestream_annotations)
    is_referrer = graph.dependents(REFERRER)
    outlives_subject = direct[[name for name in direct.columns if name not in TAG_DERIVED]].to_numpy().any(axis=1)
    holds_alone = np.where(is_referrer, outlives_subject, direct.to_numpy().any(axis=1))
    kept_alone = holds_alone | ((np.isnan(p_reuse) | (p_reuse > gc.threshold)) & ~is_referrer)
    carried = graph.carried(kept_alone)
    is_kept = kept_alone | carried.to_numpy().any(axis=1)
    protections = as_lists(pd.concat([direct, carried], axis=1))
    candidates = ~is_kept

    # Units (an image and the dependents that go with it), ranked by expected benefit.
    blobs = BlobGraph(images, snapshot.layers)
    caution = _cautions(graph, namespace, snapshot.tags, environments, gc)
    root = _roots(graph, candidates)
    members = np.flatnonzero(candidates)
    share = blobs.shares(candidates).to_numpy()[:graph.size].astype(float)
    benefit = np.full(graph.size, np.nan)
    benefit[members] = share[members] * (1 - p_reuse[root[members]])
    unit_bytes = np.bincount(root[members], weights=share[members], minlength=graph.size)
    unit_benefit = np.bincount(root[members], weights=benefit[members], minlength=graph.size)
    unit_images = np.bincount(root[members], minlength=graph.size)
    unit_caution = np.full(graph.size, len(GC_MODES_BY_CAUTION) - 1, dtype=np.int64)
    np.minimum.at(unit_caution, root[members], caution[members])
    roots = distinct(root[members])
    roots = roots[np.lexsort((digests[roots].to_numpy(dtype=object).astype(str), -unit_benefit[roots]))]
    rank = np.zeros(graph.size, dtype=np.int64)
    rank[roots] = np.arange(1, len(roots) + 1)

    # Caps, in rank order; cumulative sums only grow, so "within both caps" is a prefix.
    executable = unit_caution[roots] > 0
    within = ((np.cumsum(np.where(executable, unit_images[roots], 0)) <= gc.caps.max_images)
              & (np.cumsum(np.where(executable, unit_bytes[roots], 0)) <= gc.caps.max_bytes))
    selected = np.zeros(graph.size, dtype=bool)
    selected[roots[executable & within]] = True
    selected &= candidates          # a root is always a candidate; this keeps it so if that ever breaks
    followers = graph.going_with(selected, held=is_kept)
    deleted = (selected | graph.mask(followers["digest"])) & candidates

    decision = np.select(
        [is_kept & protections.map(len).gt(0).to_numpy(), is_kept, deleted, unit_caution[root] == 0],
        [PROTECTED, KEEP, DELETE, REPORT_ONLY], default=DEFERRED)
    reason = _reasons(digests, decision, protections, scores, gc, root, rank, selected,
                      dict(zip(followers["digest"], followers["parent"])))
    score_frame = pd.DataFrame({
        "digest": digests.to_numpy(dtype=object),
        "repository": images["repository"].to_numpy(dtype=object),
        "namespace": namespace.to_numpy(dtype=object),
        "environment": namespace.map(environments).to_numpy(dtype=object),
        "size_bytes": images["size_bytes"].to_numpy(dtype=np.int64),
        "unique_bytes": blobs.exclusive_bytes().to_numpy()[:graph.size],
        "p_reuse": p_reuse,
        "benefit_bytes": benefit,
        "protections": protections.to_numpy(),
        "mode": np.asarray(GC_MODES_BY_CAUTION, dtype=object)[caution],
        "decision": decision,
        "rank": pd.array(np.where(candidates, rank[root], np.nan), dtype="Int32"),
        "reason": reason,
        "features": scores["features"].array,
    })
    identifier = plan_id(gc, version, identity, score_frame[["digest", "decision"]])

    planned = np.flatnonzero(deleted)
    planned_bytes = blobs.shares(deleted).to_numpy()[:graph.size]
    is_follower = graph.mask(followers["digest"])
    actions = pd.DataFrame({
        "plan_id": identifier,
        "digest": score_frame["digest"].to_numpy()[planned],
        "repository": score_frame["repository"].to_numpy()[planned],
        "namespace": score_frame["namespace"].to_numpy()[planned],
        "action": np.where(is_follower[planned], ACTION_WITH_SUBJECT, ACTION_DELETE),
        "bytes": planned_bytes[planned],
        "mode": score_frame["mode"].to_numpy()[planned],
        "rank": rank[root[planned]].astype(np.int32),
        "reason": reason[planned],
        "created_at": pd.Timestamp(created_at).tz_convert("UTC"),
    }).sort_values(["rank", "action", "digest"], ignore_index=True)
    return Plan(plan_id=identifier, created_at=created_at, policy=gc, policy_version=version,
                policy_sha256=policy_sha256(gc), identity=identity, scores=score_frame, actions=actions,
                reclaim=blobs.reclaim(deleted))


def _reasons(digests: pd.Index, decision: np.ndarray, protections: pd.Series, scores: pd.DataFrame, gc: GcPolicy,
             root: np.ndarray, rank: np.ndarray, selected: np.ndarray, parents: Mapping[str, str]) -> np.ndarray:
    """One sentence per image that a reviewer can check against the policy."""
    threshold = f"{gc.threshold:g}"
    caps = f"max_images {gc.caps.max_images:,}, max_bytes {human_bytes(gc.caps.max_bytes)}"
    p_reuse = scores["p_reuse"].to_numpy(dtype=float)
    model_reasons = scores["model_reason"].to_numpy(dtype=object)
    names = protections.to_numpy()
    digest_of = digests.to_numpy(dtype=object)
    out = np.empty(len(digests), dtype=object)
    for i, verdict in enumerate(decision):
        p, model = p_reuse[i], model_reasons[i]
        model = f"; {model}" if model else ""
        if verdict == PROTECTED:
            out[i] = "protected: " + ", ".join(names[i])
            continue
        if verdict == KEEP:
            out[i] = "no reuse score: kept" if np.isnan(p) else f"p_reuse {p:.3f} > threshold {threshold}{model}"
            continue
        unit = root[i]
        if unit != i:
            why = f"goes with {parents.get(digest_of[i], digest_of[unit])} (nothing else keeps it)"
        else:
            why = f"p_reuse {p:.3f} <= threshold {threshold}{model}"
        if verdict == DELETE:
            out[i] = why
        elif verdict == REPORT_ONLY:
            out[i] = f"audit mode, nothing executed; would delete: {why}"
        elif selected[unit]:
            out[i] = f"another parent of it is not deleted in this run; {why}"
        else:
            out[i] = f"beyond the per-run caps ({caps}) at rank {rank[unit]}; {why}"
    return out
