"""Tag policy adherence: do workloads pin what they run, and do tags that should never move stay put?

- deployed by tag instead of digest: what a workload's pod template (Deployment,
  DeploymentConfig, StatefulSet, DaemonSet, Job, CronJob) names, read from the closing
  snapshot. A tag can be re-pointed under a running workload; a digest cannot.
- `latest` and mutable tags running in production: active pods and templates in namespaces
  whose environment label is one of `report.prod_environments`, naming `latest` (also
  implicitly: no tag at all) or a tag whose history shows it was re-pointed at least once.
- re-pointed tags: ImageStream tags that got a new revision during the period while an older
  revision existed. Release tags (`report.release_tag_patterns`) must never move, so each of
  those is a finding. Cosign signature tags move when an image is re-signed and are left out.
"""
from __future__ import annotations

import re

import pandas as pd

from ...config import Policy
from ..evidence import PeriodData
from ..frames import (
    DEPLOYED_SOURCES,
    RUNNING_SOURCES,
    SIGNATURE_TAG,
    environment_of,
    environments,
    references_with_parts,
)
from ..section import NO_DATA, Fact, Section, Table, share

WORKLOAD = ["cluster", "namespace", "kind", "name", "container"]


def tag_revisions(tags: pd.DataFrame) -> pd.DataFrame:
    """Per ImageStream tag (`namespace/imagestream`, tag): how many revisions its history holds."""
    counts = tags.groupby(["namespace", "imagestream", "tag"]).size().rename("revisions").reset_index()
    counts["repository"] = counts["namespace"] + "/" + counts["imagestream"]
    return counts


def workloads_by_tag(references: pd.DataFrame, tags: pd.DataFrame, envs: dict[str, str]) -> pd.DataFrame:
    """Workload containers (of `references`) that name a tag, with the tag's mutability."""
    refs = references_with_parts(references)
    by_tag = refs[~refs["by_digest"] & refs["ref_tag"].notna()].copy()
    revisions = tag_revisions(tags).set_index(["repository", "tag"])["revisions"]
    keys = pd.MultiIndex.from_arrays([by_tag["ref_repository"].fillna(""), by_tag["ref_tag"].fillna("")])
    by_tag["revisions"] = revisions.reindex(keys).to_numpy()
    by_tag["environment"] = environment_of(by_tag["namespace"], envs)
    by_tag["latest"] = by_tag["ref_tag"] == "latest"
    by_tag["mutable"] = by_tag["latest"] | (by_tag["revisions"].fillna(0) > 1)
    columns = ["environment", *WORKLOAD, "source", "image_ref", "ref_tag", "revisions", "latest", "mutable"]
    return by_tag[columns].rename(columns={"ref_tag": "tag"}).sort_values(["environment", "namespace", "name"])


def repointed_tags(tags: pd.DataFrame, period_first, period_last, envs: dict[str, str],
                   release_patterns: list[str]) -> pd.DataFrame:
    """Tags that got a new revision in the period while an older one existed, one row per tag."""
    tags = tags[~tags["tag"].astype(str).str.match(SIGNATURE_TAG)]
    created = tags["created_at"].dt.date
    oldest = tags.groupby(["namespace", "imagestream", "tag"])["revision"].transform("max")
    moved = tags[(created >= period_first) & (created <= period_last) & (tags["revision"] < oldest)]
    if moved.empty:
        return pd.DataFrame(columns=["environment", "namespace", "imagestream", "tag", "repoints", "last_repointed_at",
                                     "release_tag"])
    table = moved.groupby(["namespace", "imagestream", "tag"]).agg(
        repoints=("revision", "size"), last_repointed_at=("created_at", "max")).reset_index()
    release = re.compile("|".join(f"(?:{pattern})" for pattern in release_patterns)) if release_patterns else None
    table["release_tag"] = table["tag"].map(lambda tag: bool(release and release.search(tag)))
    table.insert(0, "environment", environment_of(table["namespace"], envs))
    return table.sort_values(["release_tag", "repoints"], ascending=False).reset_index(drop=True)


def build(data: PeriodData, policy: Policy) -> Section:
    section = Section("tag_policy", "Tag policy adherence",
                      "Workloads that run images by tag instead of digest, `latest` and re-pointed tags in production, "
                      "and tags re-pointed during the period.", datasets=["references", "tags", "namespaces"])
    end_ref = data.end_snapshot
    if end_ref is None:
        section.no_data("No data: no cluster snapshot was stored in this period.")
        section.status = NO_DATA
        return section
    references = data.snapshot("references", end_ref)
    tags = data.snapshot("tags", end_ref)
    envs = environments(data.snapshot("namespaces", end_ref), policy.gc.environment_label)
    prod = set(policy.report.prod_environments)

    deployed = references_with_parts(references[references["source"].isin(DEPLOYED_SOURCES)])
    deployed = deployed.drop_duplicates(WORKLOAD)
    # Deployed: every pod template, scaled to zero or not (a DR Deployment scaled up later runs
    # whatever its tag points at then). Running: active pods and templates.
    by_tag_deployed = workloads_by_tag(references[references["source"].isin(DEPLOYED_SOURCES)], tags, envs) \
        .drop_duplicates(WORKLOAD)
    running = references[references["source"].isin(RUNNING_SOURCES) & references["active"]]
    by_tag = workloads_by_tag(running, tags, envs)
    prod_workloads = by_tag[by_tag["environment"].isin(prod)].drop_duplicates(WORKLOAD)
    repointed = repointed_tags(tags, data.period.first, data.period.last, envs, policy.report.release_tag_patterns)
    deployed_count = len(deployed)
    section.facts += [
        Fact("workload_containers", "Workload containers (pod templates)", deployed_count,
             detail=f"closing snapshot of {end_ref.day}; Deployments, DeploymentConfigs, StatefulSets, DaemonSets, "
                    "Jobs and CronJobs"),
        Fact("by_tag", "Deployed by tag instead of digest", len(by_tag_deployed),
             detail="pod templates whose image is a tag (a digest cannot be re-pointed)"),
        Fact("by_tag_share", "Share deployed by tag", share(len(by_tag_deployed), deployed_count), "share"),
        Fact("prod_latest", "Running `latest` in production", int(prod_workloads["latest"].sum()),
             detail=f"active pods and templates in environments {', '.join(sorted(prod))}"),
        Fact("prod_mutable", "Running a mutable tag in production", int(prod_workloads["mutable"].sum()),
             detail="`latest`, or a tag whose history shows it was re-pointed"),
        Fact("repointed_tags", "Tags re-pointed in the period", len(repointed)),
        Fact("repoint_events", "Re-point events in the period", int(repointed["repoints"].sum()) if len(repointed) else 0),
        Fact("release_tags_repointed", "Release tags re-pointed (must never move)",
             int(repointed["release_tag"].sum()) if len(repointed) else 0,
             detail="tags matching " + ", ".join(policy.report.release_tag_patterns)),
    ]
    if not envs:
        section.no_data(f"No namespace carries the environment label `{policy.gc.environment_label}`: production "
                        "workloads cannot be told apart.")
    listed = pd.concat([by_tag_deployed, by_tag], ignore_index=True).drop_duplicates([*WORKLOAD, "source"])
    section.tables.append(Table("tag-policy-workloads-by-tag", "Workloads deployed or running by tag", listed,
                                columns=("environment", "namespace", "kind", "name", "container", "source", "tag",
                                         "revisions", "latest", "mutable")))
    section.tables.append(Table("tag-policy-repointed-tags", "Tags re-pointed in the period", repointed))
    return section
