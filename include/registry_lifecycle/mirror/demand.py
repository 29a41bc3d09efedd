"""Demand: which images travel together, how much each region pulls them, what DR rules require.

A *unit* is what one copy moves: an image with its signatures, SBOMs and attestations (OCI
referrers and cosign-style `sha256-<hex>` tags), or a multi-arch index with its children and
theirs. Mirroring a child without its index, or an image without its signature, would leave a
copy that a signature-enforcing cluster refuses (safety invariant 6), so demand and cost are
counted per unit and a plan line names the unit's root.

Demand comes from `pulls_daily`: a pull by a cluster outside the source registry's region
crosses regions today and would not once a target in that cluster's region holds the unit.
The bytes a pull moves are not in the pull log (a notification names the manifest only), so
each pull is taken to download the image's layers with probability `cold_pull_fraction` (a
node that has them cached fetches the manifest alone), plus the manifest bytes the log has.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import Policy
from ..sources.image_refs import parse_pull_spec
from ..sources.registry import INDEX_TYPES

# Longer parent chains (an index of indexes of signed images) do not occur; the bound only
# stops a malformed snapshot with a cycle from looping forever.
_MAX_DEPTH = 16


@dataclass(frozen=True)
class Units:
    """Which manifest travels with which root, and the distinct blobs of each unit."""

    root_of: pd.Series          # digest -> the root of its unit (a root maps to itself)
    blobs: pd.DataFrame         # root, blob, size_bytes: layers, configs and manifests, each once per unit

    @property
    def unit_bytes(self) -> pd.Series:
        """root -> bytes a target stores for the unit when it holds none of its blobs yet."""
        return self.blobs.groupby("root")["size_bytes"].sum()


def image_units(images: pd.DataFrame) -> pd.Series:
    """digest -> root: an index child goes with its index, a referrer with its subject, transitively."""
    digests = images["digest"].astype(object)
    known = set(digests)
    index = images["index_digest"].astype(object)
    subject = images["subject_digest"].astype(object)
    parent = index.where(index.isin(known), subject.where(subject.isin(known)))
    parent_of = pd.Series(parent.to_numpy(), index=digests.to_numpy()).dropna()
    parent_of = parent_of[parent_of.index != parent_of.to_numpy()]
    root = pd.Series(digests.to_numpy(), index=digests.to_numpy())
    for _ in range(_MAX_DEPTH):
        up = root.map(parent_of)
        if up.isna().all():
            break
        root = up.where(up.notna(), root)
    return root


def units(images: pd.DataFrame, layers: pd.DataFrame) -> Units:
    """The units of a snapshot and their distinct blobs (what a copy of each would move)."""
    root_of = image_units(images)
    image_blobs = pd.DataFrame({"root": layers["image_digest"].map(root_of), "blob": layers["layer_digest"],
                                "size_bytes": layers["size_bytes"].astype("int64")}).dropna(subset=["root"])
    # An index has no layers rows; its own manifest is a blob the target stores.
    indexes = images[images["media_type"].isin(INDEX_TYPES)]
    index_blobs = pd.DataFrame({"root": indexes["digest"].map(root_of), "blob": indexes["digest"],
                                "size_bytes": indexes["size_bytes"].astype("int64")})
    blobs = pd.concat([image_blobs, index_blobs], ignore_index=True).drop_duplicates(["root", "blob"])
    return Units(root_of=root_of, blobs=blobs.reset_index(drop=True))


def regional_demand(pulls: pd.DataFrame, images: pd.DataFrame, unit_map: Units, policy: Policy,
                    days_covered: int) -> pd.DataFrame:
    """One row per (root, region) pulled: pulls and expected egress bytes per 30 days, the
    repositories pulled from (most pulled first) and the clusters that pulled."""
    mirror = policy.mirror
    columns = ["root", "region", "pulls_per_month", "egress_bytes_per_month", "repositories", "clusters"]
    known = pulls[pulls["digest"].isin(unit_map.root_of.index)]
    if known.empty or days_covered < 1:
        return pd.DataFrame(columns=columns)
    by_digest = images.set_index("digest")
    is_index = known["digest"].map(by_digest["media_type"]).isin(INDEX_TYPES).to_numpy()
    image_bytes = known["digest"].map(by_digest["size_bytes"]).astype("float64").to_numpy()
    layer_bytes = np.where(is_index, 0.0, image_bytes) * known["pulls"].to_numpy() * mirror.cold_pull_fraction
    scale = 30.0 / days_covered
    frame = pd.DataFrame({
        "root": known["digest"].map(unit_map.root_of).to_numpy(),
        "region": known["cluster"].map(mirror.region_of).to_numpy(),
        "repository": known["repository"].to_numpy(),
        "cluster": known["cluster"].to_numpy(),
        "pulls": known["pulls"].to_numpy(dtype="float64"),
        "egress": layer_bytes + known["bytes"].to_numpy(dtype="float64"),
    })
    totals = frame.groupby(["root", "region"], sort=True).agg(pulls_per_month=("pulls", "sum"),
                                                               egress_bytes_per_month=("egress", "sum")) * scale
    by_repository = (frame.groupby(["root", "region", "repository"])["pulls"].sum().reset_index()
                     .sort_values(["root", "region", "pulls", "repository"], ascending=[True, True, False, True]))
    totals["repositories"] = by_repository.groupby(["root", "region"])["repository"].agg(list)
    totals["clusters"] = frame.groupby(["root", "region"])["cluster"].agg(lambda values: sorted(set(values)))
    return totals.reset_index()[columns]


def dr_requirements(references: pd.DataFrame, namespaces: pd.DataFrame, images: pd.DataFrame, unit_map: Units,
                    policy: Policy) -> pd.DataFrame:
    """One row per (root, DR rule) that requires the unit in more registries: the rule, the
    repositories its workloads pull from, and one of those workloads, named as the reason."""
    from ..gc.protections import namespace_environments, namespace_metadata

    columns = ["root", "rule", "min_registries", "targets", "repositories", "workload"]
    rules = policy.mirror.dr_rules
    active = references[references["active"].astype(bool) & references["digest"].isin(unit_map.root_of.index)]
    if not rules or active.empty:
        return pd.DataFrame(columns=columns)
    environments = namespace_environments(namespace_metadata(namespaces), policy.gc.environment_label)
    home = images.set_index("digest")["repository"]
    rows = []
    places = active[["namespace", "cluster"]].drop_duplicates()
    for rule in rules:
        matching = {(namespace, cluster) for namespace, cluster in places.itertuples(index=False)
                    if rule.match.matches(namespace, environments.get(namespace), cluster)}
        if not matching:
            continue
        hits = active[[(namespace, cluster) in matching
                       for namespace, cluster in zip(active["namespace"], active["cluster"])]]
        for root, group in hits.groupby(hits["digest"].map(unit_map.root_of), sort=True):
            repositories = []
            for image_ref, digest in zip(group["image_ref"], group["digest"]):
                spec = parse_pull_spec(image_ref)
                pulled_from = spec.repository if spec is not None and \
                    spec.registry == policy.mirror.source_pull_host else home.get(digest)
                if pulled_from and pulled_from not in repositories:
                    repositories.append(pulled_from)
            first = group.sort_values(["namespace", "kind", "name"]).iloc[0]
            rows.append({"root": root, "rule": rule.name, "min_registries": rule.min_registries,
                         "targets": tuple(rule.targets), "repositories": sorted(repositories) or [home.get(root)],
                         "workload": f"{first['kind']} {first['namespace']}/{first['name']}"})
    return pd.DataFrame(rows, columns=columns)
