"""Provenance: can each image be traced to the source it was built from, is it signed, and does
it carry an SBOM or attestation?

- build source and commit: the image's labels name a source repository and a commit
  (OpenShift builds write `io.openshift.build.source-location` / `.commit.id`, OCI builders
  `org.opencontainers.image.source` / `.revision`), or a stored Build produced it from a
  source URI and a commit;
- signed: a cosign signature (`sha256-<digest>.sig`) names it as its subject;
- SBOM or attestation: any other OCI referrer whose `subject` is the image.

Counted over "images" (no referrers, no index children) at the closing snapshot, and apart for
the images added during the period, since those are what this period's processes produced.
"""
from __future__ import annotations

import pandas as pd

from ...config import Policy
from ..evidence import PeriodData
from ..frames import (
    environment_of,
    environments,
    labels_frame,
    repository_namespace,
    signature_digests,
    top_level_images,
)
from ..section import NO_DATA, Fact, Section, Table, share

SOURCE_LABELS = ("io.openshift.build.source-location", "org.opencontainers.image.source")
COMMIT_LABELS = ("io.openshift.build.commit.id", "org.opencontainers.image.revision")


def image_provenance(images: pd.DataFrame, tags: pd.DataFrame, builds: pd.DataFrame,
                     index_children: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per image: repository, namespace, created_at, has_build_source, signed, has_sbom_or_attestation."""
    top = top_level_images(images, index_children)
    labels = labels_frame(top, SOURCE_LABELS + COMMIT_LABELS)
    labelled = labels[list(SOURCE_LABELS)].notna().any(axis=1) & labels[list(COMMIT_LABELS)].notna().any(axis=1)
    built = builds.dropna(subset=["output_digest", "source_uri", "commit"])["output_digest"]
    referrers = images.loc[images["subject_digest"].notna(), ["digest", "subject_digest"]]
    signatures = signature_digests(tags)
    signed_subjects = set(referrers.loc[referrers["digest"].isin(signatures), "subject_digest"])
    other_subjects = set(referrers.loc[~referrers["digest"].isin(signatures), "subject_digest"])
    return pd.DataFrame({
        "digest": top["digest"], "repository": top["repository"],
        "namespace": repository_namespace(top["repository"]), "created_at": top["created_at"],
        "has_build_source": labelled | top["digest"].isin(set(built)),
        "signed": top["digest"].isin(signed_subjects),
        "has_sbom_or_attestation": top["digest"].isin(other_subjects),
    }).reset_index(drop=True)


def _facts(rows: pd.DataFrame, prefix: str, label: str) -> list[Fact]:
    total = len(rows)
    return [
        Fact(f"{prefix}_images", f"{label}: images", total),
        Fact(f"{prefix}_build_source_share", f"{label}: with build source and commit",
             share(int(rows["has_build_source"].sum()), total), "share",
             f"{int(rows['has_build_source'].sum())} of {total}"),
        Fact(f"{prefix}_signed_share", f"{label}: signed", share(int(rows["signed"].sum()), total), "share",
             f"{int(rows['signed'].sum())} of {total}"),
        Fact(f"{prefix}_sbom_share", f"{label}: with an SBOM or attestation",
             share(int(rows["has_sbom_or_attestation"].sum()), total), "share",
             f"{int(rows['has_sbom_or_attestation'].sum())} of {total}"),
    ]


def build(data: PeriodData, policy: Policy) -> Section:
    section = Section("provenance", "Provenance",
                      "Share of images traceable to a source repository and commit, signed, and carrying an SBOM or "
                      "attestation referrer.", datasets=["images", "tags", "builds", "index_children", "namespaces"])
    end_ref = data.end_snapshot
    if end_ref is None:
        section.no_data("No data: no cluster snapshot was stored in this period.")
        section.status = NO_DATA
        return section
    rows = image_provenance(data.snapshot("images", end_ref), data.snapshot("tags", end_ref),
                            data.snapshot("builds", end_ref), data.snapshot("index_children", end_ref))
    envs = environments(data.snapshot("namespaces", end_ref), policy.gc.environment_label)
    rows["environment"] = environment_of(rows["namespace"], envs)
    baseline = top_level_images(data.snapshot("images", data.start_snapshot),
                                data.snapshot("index_children", data.start_snapshot))
    added = rows[~rows["digest"].isin(set(baseline["digest"]))] if data.start_snapshot != end_ref else rows.iloc[:0]
    section.facts += _facts(rows, "all", "All images at the end")
    section.facts += _facts(added, "added", "Images added in the period")
    if data.start_snapshot == end_ref:
        section.no_data("Only one snapshot covers the period: images added in it cannot be told apart.")
    by_namespace = rows.groupby(["namespace", "environment"]).agg(
        images=("digest", "size"), with_build_source=("has_build_source", "sum"), signed=("signed", "sum"),
        with_sbom_or_attestation=("has_sbom_or_attestation", "sum")).reset_index()
    section.tables.append(Table("provenance-namespaces", "Per namespace", by_namespace))
    missing = rows[~(rows["has_build_source"] & rows["signed"])].sort_values(["environment", "namespace", "repository"])
    section.tables.append(Table("provenance-images", "Images without build provenance or signature",
                                missing.drop(columns=["created_at"]), shown=15,
                                caption="all images at the end, without a build source and commit or without a "
                                        "signature; the CSV lists every one"))
    return section
