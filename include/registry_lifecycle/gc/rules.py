"""The rule-based retention policies that users compare us with, replayed on a stored snapshot.

Each function answers "which images would this tool delete today?" for one parameter setting,
faithful to the tool's documented semantics, on the registry view of an OpenShift snapshot:

- a registry *repository* is an ImageStream (`namespace/name`); an *artifact* is a manifest
  linked into it (every revision of every tag, plus untagged manifests it stores);
- a *tag* is what registry tools see: revision 0 of an ImageStream tag (older revisions are
  untagged manifests to them), last moved at that revision's `created_at`;
- *pushed* is when the manifest was first linked into the repository (its oldest tag
  revision there, else the image's creation time); *pulled* is the end of the last day with
  pulls of that digest in that repository, from pulls_daily (day resolution, as ECR's
  lastRecordedPullTime, which is only kept to about a day, too).

Registry tools delete per repository; an image promoted to several repositories (dev, staging,
prod) is gone only when every repository holding it lets it go, which is what deleting an
OpenShift Image amounts to. Where a tool has no notion of the OpenShift reference graph (every
tool here except `oc adm prune`), it deletes images workloads still use; the backtest can lay
the same hard protections over every policy so that only the choice among deletable images
is compared (see `backtest.py`).

`RULE_GRID` holds each family's parameter grid, so a backtest draws each tool's frontier of
regret against bytes freed rather than judging it at one arbitrary setting.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from .features import PullHistory, RegistryState

TagStatus = Literal["tagged", "untagged", "any"]


# ------------------------------------------------------------------------------ registry view
@dataclass(frozen=True)
class RegistryView:
    """The snapshot as a registry tool sees it, as of the end of one day, as numpy arrays.

    Artifacts are (repository, digest) pairs: `repository` and `digest` hold integer codes
    into `repositories` and `digests`; `pushed_days` and `pulled_days` are days before the
    as-of instant (NaN: never pulled in the stored history); `tagged` says whether a current
    tag names it. Current tags are `tag_artifact` (row of their artifact), `tag_names` and
    `tag_updated_days`. Every rule answers with a boolean mask over artifacts; arrays rather
    than frames because a backtest asks a few hundred rule settings per as-of date.
    """

    as_of: date
    state: RegistryState = field(repr=False)
    digests: pd.Index = field(repr=False)
    repository: np.ndarray = field(repr=False)
    digest: np.ndarray = field(repr=False)
    pushed_days: np.ndarray = field(repr=False)
    pulled_days: np.ndarray = field(repr=False)
    tagged: np.ndarray = field(repr=False)
    tag_artifact: np.ndarray = field(repr=False)
    tag_names: pd.Series = field(repr=False)
    tag_updated_days: np.ndarray = field(repr=False)
    index_of: np.ndarray = field(repr=False)          # per digest code: code of the index listing it, or -1
    _matches: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.digest)

    def tag_matches(self, regex: str) -> np.ndarray:
        """Per current tag: does its name fully match `regex`? (memoised per pattern)"""
        if regex not in self._matches:
            self._matches[regex] = self.tag_names.str.fullmatch(regex).to_numpy(dtype=bool)
        return self._matches[regex]

    def named_by(self, tag_mask: np.ndarray) -> np.ndarray:
        """Per artifact: is it named by at least one of the tags in `tag_mask`?"""
        hit = np.zeros(self.size, dtype=bool)
        hit[self.tag_artifact[tag_mask]] = True
        return hit

    def rank(self, selected: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Within each repository, 0 for the most recent selected artifact by `days`, 1 for the next...

        Unselected artifacts get a rank larger than any count.
        """
        rows = np.flatnonzero(selected)
        order = rows[np.lexsort((self.digest[rows], days[rows], self.repository[rows]))]
        groups = self.repository[order]
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(order) else np.zeros(0, dtype=int)
        first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        rank = np.full(self.size, np.iinfo(np.int64).max, dtype=np.int64)
        rank[order] = np.arange(len(order)) - first_of_group
        return rank

    def gone(self, deleted: np.ndarray) -> frozenset[str]:
        """Digests deleted from every repository that holds them, except what a kept index lists."""
        holders = np.bincount(self.digest, minlength=len(self.digests))
        doomed = np.bincount(self.digest[deleted], minlength=len(self.digests))
        gone = (doomed == holders) & (holders > 0)
        listed = self.index_of >= 0
        gone[listed] &= gone[self.index_of[listed]]
        return frozenset(self.digests[gone])


def registry_view(state: RegistryState, pulls: PullHistory | pd.DataFrame, as_of: date | None = None) -> RegistryView:
    """The registry tools' view of `state` with pull times from `pulls` up to `as_of`."""
    as_of = as_of or state.day
    now = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)
    images = state.images.drop_duplicates("digest")
    # Only manifests the registry holds: a tag revision naming a digest the registry no longer
    # stores has nothing left to delete.
    tags = state.tags[state.tags["digest"].isin(images["digest"])]
    tags = tags.assign(repository=tags["namespace"].astype(str) + "/" + tags["imagestream"].astype(str))
    created = pd.to_datetime(images.set_index("digest")["created_at"], utc=True)

    linked = tags.groupby(["repository", "digest"], as_index=False)["created_at"].min()
    stored = pd.DataFrame({"repository": images["repository"].astype(str).to_numpy(),
                           "digest": images["digest"].to_numpy(), "created_at": pd.NaT})
    stored_key = pd.MultiIndex.from_frame(stored[["repository", "digest"]])
    linked_key = pd.MultiIndex.from_frame(linked[["repository", "digest"]])
    artifacts = pd.concat([linked, stored[~stored_key.isin(linked_key)]], ignore_index=True)
    pushed = pd.to_datetime(artifacts["created_at"], utc=True).fillna(artifacts["digest"].map(created)).fillna(now)

    history = pulls if isinstance(pulls, PullHistory) else PullHistory.from_frame(pulls)
    last = history.until(as_of).groupby(["repository", "digest"], observed=True)["day"].max()
    last.index = pd.MultiIndex.from_arrays([last.index.get_level_values(0).astype(object),
                                            last.index.get_level_values(1).astype(object)])
    today = int(np.datetime64(as_of, "D").astype("int64"))
    key = pd.MultiIndex.from_arrays([artifacts["repository"].astype(object), artifacts["digest"].astype(object)])
    pulled_days = today - last.reindex(key).to_numpy(dtype=float)      # last pulled at the end of that day

    current = tags[tags["revision"] == 0]
    tag_artifact = key.get_indexer(pd.MultiIndex.from_arrays([current["repository"].astype(object),
                                                              current["digest"].astype(object)]))
    tagged = np.zeros(len(artifacts), dtype=bool)
    tagged[tag_artifact] = True
    digest_codes, digests = pd.factorize(artifacts["digest"].astype(object))
    repository_codes, _ = pd.factorize(artifacts["repository"].astype(object))
    digests = pd.Index(digests)
    index_of = np.full(len(digests), -1, dtype=np.int64)
    children = images[images["index_digest"].notna()]
    child_code, parent_code = digests.get_indexer(children["digest"]), digests.get_indexer(children["index_digest"])
    both = (child_code >= 0) & (parent_code >= 0)
    index_of[child_code[both]] = parent_code[both]
    updated = pd.to_datetime(current["created_at"], utc=True).fillna(now)
    return RegistryView(
        as_of=as_of, state=state, digests=digests, repository=repository_codes, digest=digest_codes,
        pushed_days=((now - pushed).dt.total_seconds() / 86400).clip(lower=0).to_numpy(dtype=float),
        pulled_days=pulled_days, tagged=tagged, tag_artifact=tag_artifact,
        tag_names=current["tag"].astype(str).reset_index(drop=True),
        tag_updated_days=((now - updated).dt.total_seconds() / 86400).clip(lower=0).to_numpy(dtype=float),
        index_of=index_of)


def _regex(patterns: Sequence[str]) -> str:
    return "|".join(f"(?:{pattern})" for pattern in patterns)


# ------------------------------------------------------------------------------ oc adm prune
def oc_adm_prune(view: RegistryView, *, keep_tag_revisions: int = 3,
                 keep_younger_than: timedelta = timedelta(minutes=60)) -> frozenset[str]:
    """`oc adm prune images --keep-tag-revisions=3 --keep-younger-than=60m` (the defaults).

    What oc does (pkg/cli/admin/prune/imageprune/prune.go): it builds a graph of every image,
    ImageStream tag revision and workload, keeps the newest `keep-tag-revisions` revisions of
    every tag, every image younger than `keep-younger-than`, and every image referenced by pods,
    ReplicationControllers, DeploymentConfigs, Deployments, ReplicaSets, StatefulSets,
    DaemonSets, Jobs, CronJobs, Builds and BuildConfigs; everything else is pruned, including
    images in no ImageStream at all. Children of a kept manifest list stay.
    Simplifications: the references dataset is the reference graph (it resolves tags to
    digests the way oc does); oc's `--prune-over-size-limit` and `--all=false` (skip images
    not pushed to the internal registry) are not modelled, since every image here is managed.
    """
    state = view.state
    now = pd.Timestamp(view.as_of, tz="UTC") + pd.Timedelta(days=1)
    cutoff = now - pd.Timedelta(keep_younger_than)
    tags = state.tags
    kept = set(tags.loc[tags["revision"] < keep_tag_revisions, "digest"])
    kept |= set(tags.loc[pd.to_datetime(tags["created_at"], utc=True) > cutoff, "digest"])
    images = state.images
    kept |= set(images.loc[pd.to_datetime(images["created_at"], utc=True) > cutoff, "digest"])
    kept |= set(state.references["digest"].dropna())
    return view.gone(~np.isin(view.digests[view.digest], list(kept)))


def image_pruner(view: RegistryView, *, keep_tag_revisions: int = 3,
                 keep_younger_than: timedelta = timedelta(minutes=60)) -> frozenset[str]:
    """The cluster's ImagePruner CR (imagepruner.imageregistry.operator.openshift.io/cluster).

    Its defaults are `keepTagRevisions: 3` and `keepYoungerThanDuration: 60m`, run daily at
    midnight as a CronJob that calls `oc adm prune images` with those flags (and
    `ignoreInvalidImageReferences: true`, which only matters for unparsable references that
    our extraction already reports). So it deletes exactly what `oc_adm_prune` does.
    """
    return oc_adm_prune(view, keep_tag_revisions=keep_tag_revisions, keep_younger_than=keep_younger_than)


# ------------------------------------------------------------------------------ Amazon ECR
@dataclass(frozen=True)
class EcrRule:
    """One ECR lifecycle rule: a selection (tagStatus, tag patterns) and a count (type, number)."""

    count_type: Literal["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"]
    count_number: int
    tag_status: TagStatus = "any"
    tag_patterns: tuple[str, ...] = ()       # tagPatternList, with `*` wildcards; tagPrefixList = "prefix*"


def _wildcard(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


def ecr_lifecycle(view: RegistryView, *, rules: Sequence[EcrRule]) -> frozenset[str]:
    """An ECR lifecycle policy: rules by priority (the list order), each `expire`.

    What ECR does (Lifecycle policy properties, AWS docs): per repository, rules are evaluated
    lowest rulePriority first; `tagStatus` tagged (with tagPatternList/tagPrefixList, an image
    matches when its tags match every listed pattern), untagged, or any (must be the last
    rule). `imageCountMoreThan` N sorts the selected images by push time, newest first, and
    expires all beyond N; `sinceImagePushed` N expires those pushed more than N days ago;
    `sinceImagePulled` N those whose last recorded pull is more than N days ago, with the push
    time standing in for an image never pulled. An image is expired by at most one rule, and an
    image matching a higher-priority rule's selection cannot be expired by a lower-priority one
    (though it still counts in that rule's image count).
    Simplifications: pull time at day resolution; a pattern list matches when, for each
    pattern, some tag of the image matches it.
    """
    claimed = np.zeros(view.size, dtype=bool)
    expired = np.zeros(view.size, dtype=bool)
    for rule in rules:
        if rule.tag_status == "untagged":
            selected = ~view.tagged
        elif rule.tag_status == "tagged":
            selected = view.tagged.copy()
            for pattern in rule.tag_patterns:
                selected &= view.named_by(view.tag_matches(_wildcard(pattern)))
        else:
            selected = np.ones(view.size, dtype=bool)
        if rule.count_type == "imageCountMoreThan":
            over = view.rank(selected, view.pushed_days) >= rule.count_number
        elif rule.count_type == "sinceImagePushed":
            over = view.pushed_days > rule.count_number
        else:
            over = np.where(np.isnan(view.pulled_days), view.pushed_days, view.pulled_days) > rule.count_number
        expired |= selected & over & ~claimed
        claimed |= selected
    return view.gone(expired)


# ------------------------------------------------------------------------------ Harbor
@dataclass(frozen=True)
class HarborRule:
    """One Harbor tag-retention rule: a template, its number, and the tag selector."""

    template: Literal["latestPushedK", "latestPulledN", "nDaysSinceLastPush", "nDaysSinceLastPull", "always"]
    number: int = 0
    tag_pattern: str = ".*"           # Harbor's doublestar `**` = every tag
    include_untagged: bool = True


def harbor_retention(view: RegistryView, *, rules: Sequence[HarborRule]) -> frozenset[str]:
    """A Harbor tag-retention policy on every repository: keep what any rule retains.

    What Harbor does (Harbor docs, "Create Tag Retention Rules"): up to 15 rules, OR-ed; each
    selects artifacts by repository and tag pattern (untagged artifacts included or not) and
    retains the K most recently pushed, the N most recently pulled, those pushed or pulled
    within the last N days, or always. An artifact that no rule retains is deleted.
    Simplifications: tag patterns are regexes on current tags; "most recently pulled" ranks
    only artifacts pulled within the stored history (a never-pulled artifact has no pull time).
    """
    retained = np.zeros(view.size, dtype=bool)
    pulled = ~np.isnan(view.pulled_days)
    for rule in rules:
        selected = view.named_by(view.tag_matches(rule.tag_pattern))
        if rule.include_untagged:
            selected |= ~view.tagged
        if rule.template == "always":
            keep = selected
        elif rule.template == "latestPushedK":
            keep = view.rank(selected, view.pushed_days) < rule.number
        elif rule.template == "latestPulledN":
            keep = view.rank(selected & pulled, view.pulled_days) < rule.number
        elif rule.template == "nDaysSinceLastPush":
            keep = selected & (view.pushed_days <= rule.number)
        else:
            keep = selected & pulled & (view.pulled_days <= rule.number)
        retained |= keep
    return view.gone(~retained)


# ------------------------------------------------------------------------------ Artifact Registry
def artifact_registry_cleanup(view: RegistryView, *, older_than_days: int, keep_count: int = 0,
                              tag_state: TagStatus = "any") -> frozenset[str]:
    """Artifact Registry cleanup policies: one Delete and one Keep (mostRecentVersions) policy.

    What Artifact Registry does (cleanup policies docs): a version matching any Delete policy
    (here tagState and olderThan, on the version's creation time) is deleted unless any Keep
    policy matches it; Keep wins. `mostRecentVersions` keeps the `keepCount` newest versions of
    each package. Here a package is a repository and a version a manifest in it.
    Simplification: `newerThan`, package and version-name prefixes are not modelled.
    """
    in_state = {"tagged": view.tagged, "untagged": ~view.tagged}.get(tag_state, np.ones(view.size, dtype=bool))
    delete = in_state & (view.pushed_days > older_than_days)
    keep = view.rank(np.ones(view.size, dtype=bool), view.pushed_days) < keep_count
    return view.gone(delete & ~keep)


# ------------------------------------------------------------------------------ Azure acr purge
def acr_purge(view: RegistryView, *, ago_days: int, keep: int = 0, untagged: bool = True,
              filter_regex: str = ".*") -> frozenset[str]:
    """`acr purge --filter 'repo:regex' --ago Nd --keep K [--untagged]` on every repository.

    What acr purge does (Azure docs, "Automatically purge images"): deletes the tags matching
    the filter whose last update is older than `--ago`, except the `--keep` most recently
    updated of those; only with `--untagged` are manifests deleted: every manifest left without
    a tag, whatever its age, except ones a retained index depends on. Without `--untagged` no
    manifest goes, so nothing is freed.
    Simplification: locked (write-disabled) artifacts are not modelled.
    """
    if not untagged:
        return frozenset()
    old = view.tag_matches(filter_regex) & (view.tag_updated_days > ago_days)
    # --keep: rank the old tags of each repository by update time, newest first.
    tag_repository = view.repository[view.tag_artifact]
    rows = np.flatnonzero(old)
    order = rows[np.lexsort((view.tag_names.to_numpy()[rows], view.tag_updated_days[rows], tag_repository[rows]))]
    groups = tag_repository[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(order) else np.zeros(0, dtype=int)
    position = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    deleted_tags = np.zeros(len(old), dtype=bool)
    deleted_tags[order[position >= keep]] = True
    still_tagged = view.named_by(~deleted_tags)
    return view.gone(~still_tagged)


# ------------------------------------------------------------------------------ zot
def zot_retention(view: RegistryView, *, pulled_within_days: int | None = None,
                  pushed_within_days: int | None = None, most_recently_pulled_count: int = 0,
                  most_recently_pushed_count: int = 0, patterns: Sequence[str] = (".*",),
                  delete_untagged: bool = True) -> frozenset[str]:
    """A zot retention policy with one `keepTags` entry for every repository.

    What zot does (zot docs, "Configuring zot Tag Retention Policies"): once a repository has a
    keepTags policy, every tag not retained is removed; within an entry a tag is retained when
    it matches `patterns` AND (pulledWithin OR pushedWithin OR among the mostRecentlyPushedCount
    OR the mostRecentlyPulledCount); an entry with patterns only retains every match.
    `deleteUntagged` (default true) then deletes manifests left without tags, unless an index or
    artifact still refers to them. A manifest is gone when none of its tags is retained.
    Simplification: `delay` (grace for fresh untagged manifests) and `deleteReferrers` are not
    modelled; referrers follow their subject in the backtest.
    """
    if not delete_untagged:
        return frozenset()
    matching = view.named_by(view.tag_matches(_regex(patterns)))
    no_criteria = (pulled_within_days is None and pushed_within_days is None
                   and not most_recently_pulled_count and not most_recently_pushed_count)
    if no_criteria:
        return view.gone(~matching)
    pulled = ~np.isnan(view.pulled_days)
    keep = np.zeros(view.size, dtype=bool)
    if pulled_within_days is not None:
        keep |= pulled & (view.pulled_days <= pulled_within_days)
    if pushed_within_days is not None:
        keep |= view.pushed_days <= pushed_within_days
    if most_recently_pushed_count:
        keep |= view.rank(matching, view.pushed_days) < most_recently_pushed_count
    if most_recently_pulled_count:
        keep |= view.rank(matching & pulled, view.pulled_days) < most_recently_pulled_count
    return view.gone(~(matching & keep))


# ------------------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class RulePolicy:
    """One tool at one parameter setting: a point on that tool's frontier."""

    family: str
    params: Mapping[str, Any]
    function: Callable[..., frozenset[str]] = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={_describe(value)}" for key, value in self.params.items())

    def deletes(self, state: RegistryState, pulls: PullHistory | pd.DataFrame, as_of: date | None = None,
                *, view: RegistryView | None = None) -> frozenset[str]:
        """The digests this policy deletes from `state` as of `as_of` (pass `view` to reuse one)."""
        return self.function(view or registry_view(state, pulls, as_of), **self.params)


def _describe(value: Any) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds() / 60:.0f}m" if value < timedelta(days=1) else f"{value.days}d"
    if isinstance(value, (list, tuple)):
        return "[" + "; ".join(_describe(v) for v in value) + "]"
    if isinstance(value, EcrRule):
        return f"{value.tag_status}:{value.count_type}>{value.count_number}"
    if isinstance(value, HarborRule):
        return f"{value.template}({value.number})"
    return str(value)


DAYS = (7, 14, 30, 45, 60, 90, 120, 180, 270)
COUNTS = (1, 2, 3, 5, 10, 20)


def _grid() -> list[RulePolicy]:
    grid: list[RulePolicy] = []
    for revisions in (1, 2, 3, 5, 10):
        for younger in (timedelta(minutes=60), timedelta(days=7), timedelta(days=30), timedelta(days=90)):
            grid.append(RulePolicy("oc adm prune", {"keep_tag_revisions": revisions, "keep_younger_than": younger},
                                   oc_adm_prune))
    grid.append(RulePolicy("ImagePruner CR", {"keep_tag_revisions": 3, "keep_younger_than": timedelta(minutes=60)},
                           image_pruner))
    for days in DAYS:
        grid.append(RulePolicy("ECR", {"rules": (EcrRule("sinceImagePushed", days),)}, ecr_lifecycle))
        grid.append(RulePolicy("ECR", {"rules": (EcrRule("sinceImagePulled", days),)}, ecr_lifecycle))
    for count in COUNTS:
        grid.append(RulePolicy("ECR", {"rules": (EcrRule("imageCountMoreThan", count),)}, ecr_lifecycle))
        grid.append(RulePolicy("ECR", {"rules": (EcrRule("sinceImagePushed", 1, "untagged"),
                                                 EcrRule("imageCountMoreThan", count))}, ecr_lifecycle))
    for days in DAYS:
        grid.append(RulePolicy("Harbor", {"rules": (HarborRule("nDaysSinceLastPull", days),)}, harbor_retention))
        grid.append(RulePolicy("Harbor", {"rules": (HarborRule("nDaysSinceLastPush", days),)}, harbor_retention))
        for count in (1, 3, 10):
            grid.append(RulePolicy("Harbor", {"rules": (HarborRule("nDaysSinceLastPull", days),
                                                        HarborRule("latestPushedK", count))}, harbor_retention))
    for count in COUNTS:
        grid.append(RulePolicy("Harbor", {"rules": (HarborRule("latestPulledN", count),)}, harbor_retention))
        grid.append(RulePolicy("Harbor", {"rules": (HarborRule("latestPushedK", count),)}, harbor_retention))
    for days in DAYS:
        for count in (0, 1, 3, 5, 10):
            grid.append(RulePolicy("Artifact Registry", {"older_than_days": days, "keep_count": count},
                                   artifact_registry_cleanup))
    for days in DAYS:
        for count in (0, 1, 3, 10):
            grid.append(RulePolicy("acr purge", {"ago_days": days, "keep": count, "untagged": True}, acr_purge))
    for days in DAYS:
        grid.append(RulePolicy("zot", {"pulled_within_days": days}, zot_retention))
        grid.append(RulePolicy("zot", {"pushed_within_days": days}, zot_retention))
        for count in (1, 3):
            grid.append(RulePolicy("zot", {"pulled_within_days": days, "most_recently_pushed_count": count},
                                   zot_retention))
    for count in COUNTS:
        grid.append(RulePolicy("zot", {"most_recently_pulled_count": count}, zot_retention))
    return grid


RULE_GRID: tuple[RulePolicy, ...] = tuple(_grid())
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(policy.family for policy in RULE_GRID))
