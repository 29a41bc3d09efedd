"""Hard protections: the images no score may delete, each with the names of what holds it.

The reuse model decides among the rest; nothing here is a probability. The rules are spelled
out in one place. From `oc adm prune images` (openshift/oc
pkg/cli/admin/prune/imageprune/prune.go), kept exactly:

- `tag-revision`: the newest `keep_tag_revisions` revisions of every ImageStream tag
  (revision < N; revision 0 is what the tag points at now).
- `young`: an image, or a tag revision naming it, created less than `keep_younger_than` ago,
  so a push in flight is never garbage. (oc also keeps every image of an ImageStream younger
  than that; all revisions of such a stream are younger still, so this rule covers it.)
- a digest named by any row of `references`, active or not: pods, the templates of every
  controller, ReplicaSets and ReplicationControllers kept for rollback even at 0 replicas,
  Jobs, CronJobs, DeploymentConfig triggers (`workload`), the `from` images of Builds and
  BuildConfigs (`build-input`). Stricter than oc, which ignores finished pods older than
  `keep_younger_than`: a pod that ran an image is evidence enough to keep it.
- `index-child`: a manifest listed by a kept multi-arch index (`maybe-index-child` while the
  snapshot cannot tell whether a kept index of its repository lists it too).

Beyond oc:

- `protected-tag`: the image a tag points at now, when the tag's name matches a pattern of
  its namespace's environment (release tags in prod, `stable`, ...).
- `legal-hold`: everything in a namespace or ImageStream carrying the hold annotation.
- `referrer`: signatures, SBOMs and attestations of a kept image, whether they name it as OCI
  `subject` or by a cosign `sha256-<hex>.sig|.att|.sbom` tag in any revision (invariant 6).
- Named apart so that a report says why, although each is also a workload reference:
  `rollback-target` (a scaled-down ReplicaSet/RC), `suspended-cronjob`, and `dr-deployment`
  (any reference in a namespace labelled as disaster recovery, typically at 0 replicas).

Propagation runs to a fixed point along the dependency graph and only downwards: a kept
index keeps its children and a kept image its referrers (and theirs), but keeping a child
never keeps its index, nor a signature its subject. The reverse direction is
`ManifestGraph.going_with`: when every parent of a dependent is deleted, the dependent goes too
(a signature with its subject, an index's children with the index) unless something holds it
on its own.

Everything works on integer codes of the image digests: with pandas' Arrow strings a
membership test against a large Python collection costs microseconds per value, and a
snapshot of a million tag revisions asks many of them.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from ..config import GcPolicy
from ..sources.registry import INDEX_TYPES

BUILD_INPUT = "build-input"
DR_DEPLOYMENT = "dr-deployment"
INDEX_CHILD = "index-child"
LEGAL_HOLD = "legal-hold"
MAYBE_INDEX_CHILD = "maybe-index-child"
PROTECTED_TAG = "protected-tag"
REFERRER = "referrer"
ROLLBACK_TARGET = "rollback-target"
SUSPENDED_CRONJOB = "suspended-cronjob"
TAG_REVISION = "tag-revision"
WORKLOAD = "workload"
YOUNG = "young"
# Every name, in the order a list of them is written (alphabetical).
PROTECTIONS: tuple[str, ...] = (BUILD_INPUT, DR_DEPLOYMENT, INDEX_CHILD, LEGAL_HOLD, MAYBE_INDEX_CHILD, PROTECTED_TAG,
                                REFERRER, ROLLBACK_TARGET, SUSPENDED_CRONJOB, TAG_REVISION, WORKLOAD, YOUNG)
CARRIED: tuple[str, ...] = (INDEX_CHILD, MAYBE_INDEX_CHILD, REFERRER)
# What a referrer's own `sha256-<hex>.sig` tag or push time gives it. A signature must not
# outlive its subject (invariant 6), so these hold a referrer only while the subject stays.
TAG_DERIVED = frozenset({TAG_REVISION, YOUNG, PROTECTED_TAG})

# cosign's tag scheme (`.sig`, `.att`, `.sbom`) and OCI 1.1's referrers tag fallback (no suffix).
SUBJECT_TAG = r"^sha256-([0-9a-f]{64})(?:\.[A-Za-z0-9_-]+)?$"
_RELATIONS = (INDEX_CHILD, REFERRER)

NamespaceMetadata = Mapping[str, Mapping[str, Mapping[str, str]]]   # name -> {"labels": ..., "annotations": ...}


def namespace_metadata(namespaces: NamespaceMetadata | pd.DataFrame) -> dict[str, dict[str, dict[str, str]]]:
    """The `namespaces` dataset (labels and annotations as JSON) or a mapping, as a mapping."""
    if isinstance(namespaces, pd.DataFrame):
        return {str(name): {"labels": json.loads(labels or "{}"), "annotations": json.loads(annotations or "{}")}
                for name, labels, annotations in zip(namespaces["namespace"], namespaces["labels"],
                                                     namespaces["annotations"])}
    return {str(name): {"labels": dict(meta.get("labels") or {}), "annotations": dict(meta.get("annotations") or {})}
            for name, meta in namespaces.items()}


def namespace_environments(namespaces: NamespaceMetadata, environment_label: str) -> dict[str, str]:
    """namespace -> its environment label's value, for namespaces that have one."""
    return {name: meta["labels"][environment_label] for name, meta in namespaces.items()
            if environment_label in (meta.get("labels") or {})}


def _in(values: pd.Series, members: Iterable[str]) -> np.ndarray:
    """values.isin(members) for a small set of members, via the few distinct values."""
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    wanted = set(members)
    hit = np.fromiter((value in wanted for value in uniques), dtype=bool, count=len(uniques))
    return np.append(hit, False)[codes]       # code -1 (null) indexes the appended False


class ManifestGraph:
    """The snapshot's manifests as integer codes, and who depends on whom among them.

    Edges run from parent to child: index -> listed child (`index-child`), subject -> referrer
    (`referrer`). A referrer is known by its OCI `subject` or by a cosign-style tag naming its
    subject's digest, in any revision (a re-signed release leaves its older signature at
    revision 1, with no `subject` in its manifest). An index child is known by
    `images.index_digest`, which names one index only (the smallest); `index_children`
    (index_digest, child_digest: every listing) completes it. Without that listing, a child
    stored in a repository that keeps an index is presumed listed by it (see `carried`).
    """

    def __init__(self, images: pd.DataFrame, tags: pd.DataFrame | None = None,
                 index_children: pd.DataFrame | None = None) -> None:
        rows, uniques = pd.factorize(images["digest"].astype(object))
        self.digests = pd.Index(uniques, dtype=object)
        self.size = len(self.digests)
        self.is_index = np.zeros(self.size, dtype=bool)
        self.is_index[rows] = images["media_type"].isin(INDEX_TYPES).to_numpy(dtype=bool)
        self.listing_complete = index_children is not None
        repository_codes, _ = pd.factorize(images["repository"].astype(object))
        self.repository = np.full(self.size, -1, dtype=np.int64)
        self.repository[rows] = repository_codes
        parents = [self._code_present(images["index_digest"]), self._code_present(images["subject_digest"])]
        children = [rows, rows]
        relations = [np.zeros(len(rows), np.int8), np.ones(len(rows), np.int8)]
        if index_children is not None and len(index_children):
            parents.append(self.code(index_children["index_digest"]))
            children.append(self.code(index_children["child_digest"]))
            relations.append(np.zeros(len(index_children), np.int8))
        # Codes of the tags' digests, computed once: protections and modes need them too.
        self.tag_codes = self.code(tags["digest"]) if tags is not None else np.zeros(0, dtype=np.int64)
        if tags is not None and len(tags):
            is_signature = tags["tag"].str.startswith("sha256-").to_numpy(dtype=bool)
            subject_hex = tags.loc[is_signature, "tag"].str.extract(SUBJECT_TAG, expand=False)
            parents.append(self.code("sha256:" + subject_hex))
            children.append(self.tag_codes[is_signature])
            relations.append(np.ones(int(is_signature.sum()), np.int8))
        parent, child, relation = (np.concatenate(parts) for parts in (parents, children, relations))
        present = (parent >= 0) & (child >= 0) & (parent != child)
        pairs = np.unique(np.stack([parent[present], child[present]]), axis=1, return_index=True)[1]
        keep = np.flatnonzero(present)[np.sort(pairs)]
        self.parent, self.child, self.relation = parent[keep], child[keep], relation[keep]

    def code(self, digests: pd.Series | pd.Index | Iterable[str]) -> np.ndarray:
        """Position of each digest among the snapshot's images; -1 for unknown or null."""
        values = digests if isinstance(digests, (pd.Series, pd.Index)) else pd.Index(list(digests), dtype=object)
        return self.digests.get_indexer(pd.Index(values.astype(object)))

    def _code_present(self, digests: pd.Series) -> np.ndarray:
        """code() for a mostly-null column, hashing only the values that are there."""
        codes = np.full(len(digests), -1, dtype=np.int64)
        present = digests.notna().to_numpy(dtype=bool)
        codes[present] = self.code(digests[present])
        return codes

    def mask(self, digests: Iterable[str] | np.ndarray) -> np.ndarray:
        """A boolean mask over the images from digests (or a mask, returned as it is)."""
        if isinstance(digests, np.ndarray) and digests.dtype == bool:
            return digests
        codes = self.code(digests)
        result = np.zeros(self.size, dtype=bool)
        result[codes[codes >= 0]] = True
        return result

    @property
    def edges(self) -> pd.DataFrame:
        """(parent, child, relation) as digests."""
        return pd.DataFrame({"parent": self.digests[self.parent], "child": self.digests[self.child],
                             "relation": np.asarray(_RELATIONS, dtype=object)[self.relation]})

    def dependents(self, relation: str) -> np.ndarray:
        """Mask of the images that are `index-child` or `referrer` of another image here."""
        result = np.zeros(self.size, dtype=bool)
        result[self.child[self.relation == _RELATIONS.index(relation)]] = True
        return result

    def possibly_listed(self, kept: np.ndarray) -> np.ndarray:
        """Index children that a kept index might list although `index_digest` names another.

        An index can only list manifests of its own repository, so without the full listing
        every child stored in a repository that keeps an index is presumed listed by it:
        deleting a child that a kept index lists breaks that image for every platform.
        """
        kept_repositories = np.unique(self.repository[kept & self.is_index])
        return self.dependents(INDEX_CHILD) & np.isin(self.repository, kept_repositories)

    def carried(self, kept: Iterable[str] | np.ndarray) -> pd.DataFrame:
        """Per image, which dependents' protections a kept manifest passes on, to a fixed point.

        Downwards only: a kept index keeps its children, a kept image its referrers, and so
        on through referrers of children; a kept child or signature never keeps its parent.
        Columns: `index-child`, `referrer`, and `maybe-index-child` (see `possibly_listed`).
        """
        held = self.mask(kept).copy()
        presumed = np.zeros(self.size, dtype=bool)
        frontier = held.copy()
        while frontier.any():
            reached = np.zeros(self.size, dtype=bool)
            reached[self.child[frontier[self.parent]]] = True
            frontier = reached & ~held
            held |= frontier
            if not frontier.any() and not self.listing_complete:
                frontier = self.possibly_listed(held) & ~held
                held |= frontier
                presumed |= frontier
        columns = {}
        for code, name in enumerate(_RELATIONS):
            column = np.zeros(self.size, dtype=bool)
            edges = (self.relation == code) & held[self.parent]
            column[self.child[edges]] = True
            columns[name] = column
        columns[MAYBE_INDEX_CHILD] = presumed
        return pd.DataFrame(columns, index=self.digests)

    def going_with(self, deleted: Iterable[str] | np.ndarray, held: Iterable[str] | np.ndarray = ()) -> pd.DataFrame:
        """(digest, parent) of the dependents that go with `deleted`: every parent of theirs is
        deleted and `held` does not keep them on their own. Runs to a fixed point, so a
        signature of an index child goes with the index."""
        gone = self.mask(deleted).copy()
        kept = self.mask(held)
        followers = np.zeros(self.size, dtype=bool)
        while True:
            kept_parent = np.zeros(self.size, dtype=bool)
            kept_parent[self.child[~gone[self.parent]]] = True
            reached = np.zeros(self.size, dtype=bool)
            reached[self.child[gone[self.parent]]] = True
            new = reached & ~kept_parent & ~gone & ~kept
            if not new.any():
                break
            gone |= new
            followers |= new
        # The smallest deleted parent names who it goes with.
        edges = np.flatnonzero(followers[self.child])
        order = np.lexsort((self.digests[self.parent[edges]].to_numpy(dtype=object).astype(str), self.child[edges]))
        first = edges[order][np.unique(self.child[edges][order], return_index=True)[1]]
        return pd.DataFrame({"digest": self.digests[self.child[first]].to_numpy(dtype=object),
                             "parent": self.digests[self.parent[first]].to_numpy(dtype=object)})


def direct_protections(images: pd.DataFrame, tags: pd.DataFrame, references: pd.DataFrame,
                       namespaces: NamespaceMetadata | pd.DataFrame, policy: GcPolicy, as_of: datetime, *,
                       graph: ManifestGraph | None = None,
                       imagestream_annotations: Mapping[str, Mapping[str, str]] | None = None) -> pd.DataFrame:
    """Per image (indexed by digest), one boolean column per rule that holds it by itself.

    `graph`, when given, must be built from these images and tags (the plan shares one).
    `imagestream_annotations` maps "namespace/name" to an ImageStream's annotations, for
    legal holds placed on a single ImageStream rather than its namespace.
    """
    graph = graph or ManifestGraph(images, tags)
    meta = namespace_metadata(namespaces)
    cutoff = pd.Timestamp(as_of).tz_convert("UTC") - pd.Timedelta(policy.keep_younger_than)
    tag_codes = graph.tag_codes
    image_codes = graph.code(images["digest"])
    columns = {name: np.zeros(graph.size, dtype=bool) for name in PROTECTIONS if name not in CARRIED}

    def hold(name: str, codes: np.ndarray, where: np.ndarray) -> None:
        selected = codes[where]
        columns[name][selected[selected >= 0]] = True

    hold(TAG_REVISION, tag_codes, (tags["revision"] < policy.keep_tag_revisions).to_numpy(dtype=bool))
    hold(YOUNG, tag_codes, _after(tags["created_at"], cutoff))
    hold(YOUNG, image_codes, _after(images["created_at"], cutoff))
    hold(PROTECTED_TAG, tag_codes, _protected_tags(tags, meta, policy))
    tagged_held, stored_held = _legal_holds(images, tags, meta, policy, imagestream_annotations or {})
    hold(LEGAL_HOLD, tag_codes, tagged_held)
    hold(LEGAL_HOLD, image_codes, stored_held)
    reference_names = _reference_names(references, meta, policy)
    reference_codes = graph.code(references["digest"])
    for name in (WORKLOAD, ROLLBACK_TARGET, BUILD_INPUT, SUSPENDED_CRONJOB, DR_DEPLOYMENT):
        hold(name, reference_codes, reference_names == name)
    return pd.DataFrame(columns, index=graph.digests)


def _after(times: pd.Series, cutoff: pd.Timestamp) -> np.ndarray:
    """times > cutoff; an unknown time (null) is not "after" anything."""
    return (pd.to_datetime(times, utc=True) > cutoff).to_numpy(dtype=bool)


def _protected_tags(tags: pd.DataFrame, meta: NamespaceMetadata, policy: GcPolicy) -> np.ndarray:
    """Current revisions whose tag name matches a pattern of the namespace's environment.

    Only revision 0: the pattern protects what the tag names now; older revisions of a moving
    tag such as `prod` are history, which keep_tag_revisions and the model look after.
    Patterns run once per distinct (environment, tag name), not per row.
    """
    protected = np.zeros(len(tags), dtype=bool)
    if not policy.protected_tag_patterns:
        return protected
    current = (tags["revision"] == 0).to_numpy(dtype=bool)
    environments = namespace_environments(meta, policy.environment_label)
    for environment, regexes in policy.protected_tag_patterns.items():
        in_scope = current.copy()
        if environment != "*":
            in_scope &= _in(tags["namespace"], [n for n, env in environments.items() if env == environment])
        if not in_scope.any() or not regexes:
            continue
        codes, names = pd.factorize(tags["tag"].to_numpy(dtype=object)[in_scope])
        names = pd.Series(names, dtype=object)
        hits = np.zeros(len(names), dtype=bool)
        for regex in regexes:
            hits |= names.str.contains(regex, regex=True).to_numpy(dtype=bool)
        protected[np.flatnonzero(in_scope)[hits[codes]]] = True
    return protected


def _legal_holds(images: pd.DataFrame, tags: pd.DataFrame, meta: NamespaceMetadata, policy: GcPolicy,
                 imagestream_annotations: Mapping[str, Mapping[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Tag rows in a held namespace or ImageStream, and images stored in one.

    The annotation's presence is the hold, whatever its value (usually a case number).
    """
    key = policy.legal_hold_annotation
    held_namespaces = {name for name, m in meta.items() if key in (m.get("annotations") or {})}
    held_streams = {name for name, annotations in imagestream_annotations.items() if key in (annotations or {})}
    if not held_namespaces and not held_streams:
        return np.zeros(len(tags), dtype=bool), np.zeros(len(images), dtype=bool)
    tagged = _in(tags["namespace"], held_namespaces)
    if held_streams:
        tagged |= _in(tags["namespace"].astype(object) + "/" + tags["imagestream"].astype(object), held_streams)
    repository = images["repository"].astype(object)
    stored = _in(repository_namespaces(repository), held_namespaces) | _in(repository, held_streams)
    return tagged, stored


def _reference_names(references: pd.DataFrame, meta: NamespaceMetadata, policy: GcPolicy) -> np.ndarray:
    """For every reference row, the name of why its workload still matters."""
    dr_key, dr_value = policy.dr_label
    dr_namespaces = {name for name, m in meta.items() if (m.get("labels") or {}).get(dr_key) == dr_value}
    inactive = ~references["active"].astype(bool).to_numpy()
    return np.select(
        [_in(references["namespace"], dr_namespaces),
         (references["kind"] == "CronJob").to_numpy(dtype=bool) & inactive,
         (references["source"] == "replicaset-history").to_numpy(dtype=bool) & inactive,
         _in(references["source"], {"build", "buildconfig"})],
        [DR_DEPLOYMENT, SUSPENDED_CRONJOB, ROLLBACK_TARGET, BUILD_INPUT], default=WORKLOAD)


def as_lists(held: pd.DataFrame) -> pd.Series:
    """A boolean frame (digest x protection) as one alphabetical list of names per digest.

    Built once per distinct combination (a snapshot has a few dozen at most) from the
    combination's bit pattern, then handed out as a fresh list per digest.
    """
    names = [name for name in PROTECTIONS if name in held.columns]
    bits = held[names].to_numpy(dtype=bool)
    pattern = bits.astype(np.int64) @ (np.int64(1) << np.arange(len(names), dtype=np.int64))
    patterns, inverse = np.unique(pattern, return_inverse=True)
    lists = [[name for bit, name in enumerate(names) if value >> bit & 1] for value in patterns]
    return pd.Series([list(lists[i]) for i in inverse.reshape(-1)], index=held.index, name="protections", dtype=object)


def repository_namespaces(repositories: pd.Series) -> pd.Series:
    """"ns/name" -> "ns", computed once per distinct repository."""
    codes, uniques = pd.factorize(repositories.astype(object))
    namespaces = np.array([str(repository).partition("/")[0] for repository in uniques], dtype=object)
    return pd.Series(np.append(namespaces, None)[codes], index=repositories.index, dtype=object)


def protect(images: pd.DataFrame, tags: pd.DataFrame, references: pd.DataFrame,
            namespaces: NamespaceMetadata | pd.DataFrame, policy: GcPolicy, as_of: datetime, *,
            imagestream_annotations: Mapping[str, Mapping[str, str]] | None = None,
            index_children: pd.DataFrame | None = None) -> pd.Series:
    """Per image digest, the alphabetical names of every protection that holds it, propagated.

    An empty list means only the score decides. The plan propagates again from everything it
    keeps (an index kept for its score keeps its children too); this is the floor. A referrer
    held only by its own tag or age (TAG_DERIVED) still goes when the plan deletes its subject.
    """
    graph = ManifestGraph(images, tags, index_children)
    direct = direct_protections(images, tags, references, namespaces, policy, as_of, graph=graph,
                                imagestream_annotations=imagestream_annotations)
    carried = graph.carried(direct.to_numpy(dtype=bool).any(axis=1))
    return as_lists(pd.concat([direct, carried], axis=1))
