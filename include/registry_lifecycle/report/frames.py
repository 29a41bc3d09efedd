"""Small readings of snapshot frames that several sections share: which manifests are images,
which are signatures or SBOMs, which namespace is prod, what a workload reference names."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from ..sources.image_refs import parse_pull_spec

SIGNATURE_TAG = re.compile(r"^sha256-[0-9a-f]{64}\.sig$")
ATTESTATION_TAG = re.compile(r"^sha256-[0-9a-f]{64}\.(att|sbom)$")
# Reference sources that say what a workload runs (not build inputs or kept rollback targets).
DEPLOYED_SOURCES = ("template", "cronjob")
RUNNING_SOURCES = ("pod", "template", "cronjob")
NO_ENVIRONMENT = "(none)"


def repository_namespace(repositories: pd.Series) -> pd.Series:
    """`team-a-prod/orders` -> `team-a-prod` (the internal registry's repositories are ns/name)."""
    return repositories.astype(str).str.split("/", n=1).str[0]


def environments(namespaces: pd.DataFrame, label: str) -> dict[str, str]:
    """namespace -> the value of its environment label."""
    out = {}
    for name, labels in zip(namespaces.get("namespace", []), namespaces.get("labels", [])):
        try:
            value = (json.loads(labels) if isinstance(labels, str) else (labels or {})).get(label)
        except ValueError:
            value = None
        if value:
            out[name] = value
    return out


def environment_of(namespaces: pd.Series, envs: dict[str, str]) -> pd.Series:
    return namespaces.map(envs).fillna(NO_ENVIRONMENT)


def signature_digests(tags: pd.DataFrame) -> set[str]:
    """Manifests tagged the cosign way, `sha256-<subject>.sig` (any revision)."""
    return set(tags.loc[tags["tag"].astype(str).str.match(SIGNATURE_TAG), "digest"])


def top_level_images(images: pd.DataFrame, index_children: pd.DataFrame | None = None) -> pd.DataFrame:
    """What people call "the images": no referrers (signatures, SBOMs, attestations) and no
    children of a multi-arch index (the index stands for them)."""
    children = set(images.loc[images["index_digest"].notna(), "digest"])
    if index_children is not None and len(index_children):
        children |= set(index_children["child_digest"])
    keep = images["subject_digest"].isna() & ~images["digest"].isin(children)
    return images.loc[keep]


def platform_images(images: pd.DataFrame) -> pd.DataFrame:
    """Manifests with layers a scanner can scan: no indexes, no referrers."""
    is_index = images["media_type"].astype(str).str.contains("index|manifest.list", regex=True)
    return images.loc[images["subject_digest"].isna() & ~is_index]


def unique_blob_bytes(layers: pd.DataFrame) -> int:
    """Bytes a registry stores for these manifests: each blob once, however many images share it."""
    if not len(layers):
        return 0
    return int(layers.drop_duplicates("layer_digest")["size_bytes"].sum())


def labels_frame(images: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """The given label keys as columns (None where absent)."""
    def parse(text):
        if not isinstance(text, str) or not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    parsed = images["labels"].map(parse)
    return pd.DataFrame({key: parsed.map(lambda labels, key=key: labels.get(key) or None) for key in keys},
                        index=images.index)


def parse_reference(image_ref: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(registry, repository, tag, digest) of a workload reference as written.

    Handles pull specs and OpenShift's object references (`ImageStreamTag ns/name:tag`,
    `ImageStreamImage ns/name@sha256:...`, `DockerImage <pull spec>`). A pull spec with neither
    tag nor digest means `latest`, as the container runtime reads it.
    """
    text = str(image_ref or "").strip()
    kind, _, rest = text.partition(" ")
    if rest and kind in ("ImageStreamTag", "ImageStreamImage", "DockerImage"):
        if kind == "DockerImage":
            text = rest
        else:
            name, digest = (rest.split("@", 1) + [None])[:2] if "@" in rest else (rest, None)
            tag = None
            if digest is None and ":" in name:
                name, tag = name.rsplit(":", 1)
            return None, name, tag, digest
    spec = parse_pull_spec(text)
    if spec is None:
        return None, None, None, None
    return spec.registry, spec.repository, spec.tag, spec.digest


def references_with_parts(references: pd.DataFrame) -> pd.DataFrame:
    """references plus ref_registry, ref_repository, ref_tag, ref_digest and by_digest."""
    parts = references["image_ref"].map(parse_reference)
    out = references.assign(ref_registry=parts.str[0], ref_repository=parts.str[1], ref_tag=parts.str[2],
                            ref_digest=parts.str[3])
    return out.assign(by_digest=out["ref_digest"].notna())


def days_between(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return (later - earlier).dt.total_seconds() / 86_400


def bool_count(mask) -> int:
    return int(np.asarray(mask, dtype=bool).sum())
