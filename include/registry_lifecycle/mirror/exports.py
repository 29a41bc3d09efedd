"""The plan in the formats other tools read: `skopeo sync`, oc-mirror v2, ImageDigestMirrorSet.

Each export describes the state the plan wants on a target, by digest: what it copies and what
it keeps (a re-run of either tool over what is already there transfers nothing). Images are
named by digest because clusters pull mirrors by digest (an ImageDigestMirrorSet redirects
only digest pulls), and a digest proves the copy is the image that was approved.

- `skopeo-sync-<target>.yaml`: the `--src yaml` input of `skopeo sync`, one file per target
  (skopeo takes one destination per run); the command is in the file's first lines.
- `imageset-config-<target>.yaml`: an oc-mirror v2 ImageSetConfiguration listing the same
  images as `additionalImages`.
- `idms-<cluster>.yaml`: per cluster, an ImageDigestMirrorSet that sends its digest pulls of
  each mirrored repository to the target serving its region first (`AllowContactingSource`:
  a digest the mirror lacks is still pulled from the source).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

from ..config import MirrorTarget, Policy
from .plan import KEEP, MIRROR, MirrorPlan

IDMS_API_VERSION = "config.openshift.io/v1"
IMAGESET_API_VERSION = "mirror.openshift.io/v2alpha1"
PLAN_ANNOTATION = "registry-lifecycle.io/mirror-plan-id"
_NAME = re.compile(r"[^a-z0-9-]+")


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order written, and `sha256:...` strings quoted as YAML 1.1 would
    otherwise read some of them as sexagesimal numbers."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style='"' if ":" in value else None))


def _dump(document: dict, header: Iterable[str]) -> str:
    comments = "".join(f"# {line}\n" for line in header)
    return comments + yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def wanted(plan: MirrorPlan, target: str) -> pd.DataFrame:
    """(repository, digest) the plan wants on `target`: its copies and what it keeps there."""
    lines = plan.lines[(plan.lines["target"] == target) & plan.lines["action"].isin([MIRROR, KEEP])]
    rows = [(repository, digest) for digest, repositories in zip(lines["digest"], lines["repositories"])
            for repository in repositories.split(",") if repository]
    return pd.DataFrame(rows, columns=["repository", "digest"]).drop_duplicates().sort_values(
        ["repository", "digest"], ignore_index=True)


def skopeo_sync(plan: MirrorPlan, policy: Policy, target: MirrorTarget) -> str:
    """`skopeo sync --src yaml` input that copies the plan's images for `target`."""
    images = wanted(plan, target.name)
    destination = f"{target.pull_host}/{target.repository_prefix}" if target.repository_prefix else target.pull_host
    document = {policy.mirror.source_pull_host: {
        "images": {repository: list(group["digest"]) for repository, group in images.groupby("repository", sort=True)},
        "tls-verify": True,
    }}
    return _dump(document, [
        f"skopeo sync input for mirror target {target.name} ({target.region}), plan {plan.plan_id}",
        f"skopeo sync --all --preserve-digests --src yaml --dest docker skopeo-sync-{target.name}.yaml {destination}",
        "--all copies every child of a multi-arch index; --preserve-digests fails instead of rewriting a digest.",
        "Credentials: --src-creds/--dest-creds or an auth file; never write them into this file.",
    ])


def imageset_config(plan: MirrorPlan, policy: Policy, target: MirrorTarget) -> str:
    """An oc-mirror v2 ImageSetConfiguration with the plan's images for `target`."""
    images = wanted(plan, target.name)
    document = {
        "kind": "ImageSetConfiguration",
        "apiVersion": IMAGESET_API_VERSION,
        "mirror": {"additionalImages": [{"name": f"{policy.mirror.source_pull_host}/{row.repository}@{row.digest}"}
                                        for row in images.itertuples()]},
    }
    destination = f"{target.pull_host}/{target.repository_prefix}" if target.repository_prefix else target.pull_host
    return _dump(document, [
        f"oc-mirror v2 image set for mirror target {target.name} ({target.region}), plan {plan.plan_id}",
        (f"oc mirror --v2 -c imageset-config-{target.name}.yaml --workspace file://oc-mirror-workspace "
         f"docker://{destination}"),
    ])


def _resource_name(text: str) -> str:
    return _NAME.sub("-", text.lower()).strip("-")[:253] or "cluster"


def digest_mirror_sets(plan: MirrorPlan, policy: Policy) -> dict[str, str]:
    """cluster -> an ImageDigestMirrorSet for the mirrored repositories, its region's targets first."""
    mirror = policy.mirror
    documents: dict[str, str] = {}
    for cluster, region in sorted(plan.clusters.items()):
        local = sorted((target for target in mirror.targets if target.region == region),
                       key=lambda target: (target.storage_cost_per_gb_month, target.name))
        mirrors_of: dict[str, list[str]] = {}
        for target in local:
            for repository in wanted(plan, target.name)["repository"].unique():
                mirrors_of.setdefault(repository, []).append(f"{target.pull_host}/{target.repository(repository)}")
        if not mirrors_of:
            continue
        document = {
            "apiVersion": IDMS_API_VERSION,
            "kind": "ImageDigestMirrorSet",
            "metadata": {"name": _resource_name(f"registry-lifecycle-{cluster}"),
                         "labels": {"app.kubernetes.io/managed-by": "registry-lifecycle"},
                         "annotations": {PLAN_ANNOTATION: plan.plan_id}},
            "spec": {"imageDigestMirrors": [
                {"source": f"{mirror.source_pull_host}/{repository}", "mirrors": mirrors,
                 "mirrorSourcePolicy": "AllowContactingSource"}
                for repository, mirrors in sorted(mirrors_of.items())]},
        }
        documents[cluster] = _dump(document, [
            f"Digest pulls of cluster {cluster} ({region}) go to its region's mirrors first; plan {plan.plan_id}.",
            "Apply after the copies are verified: oc apply -f this file (the Machine Config Operator rolls the nodes).",
        ])
    return documents


def write_exports(plan: MirrorPlan, policy: Policy, folder: Path) -> list[Path]:
    """Write every export, the plan's summary and its lines under `folder`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(name: str, text: str) -> None:
        path = folder / name
        path.write_text(text)
        written.append(path)

    for target in policy.mirror.targets:
        write(f"skopeo-sync-{target.name}.yaml", skopeo_sync(plan, policy, target))
        write(f"imageset-config-{target.name}.yaml", imageset_config(plan, policy, target))
    for cluster, text in digest_mirror_sets(plan, policy).items():
        write(f"idms-{_resource_name(cluster)}.yaml", text)
    write("plan.md", plan.summary_markdown() + "\n")
    lines = folder / "plan-lines.csv"
    plan.lines.to_csv(lines, index=False)
    written.append(lines)
    return written
