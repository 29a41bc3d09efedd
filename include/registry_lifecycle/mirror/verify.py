"""After the copies: every unit the audit log says is on a target is checked there, by digest.

For each (unit, target) recorded `copied` or `already_present` for the plan, the unit is read
from the source again (the same walk the copy made) and every manifest is fetched from each
target repository by digest: the client hashes the body and refuses one that does not hash to
its digest. Every blob is HEADed for its size; `deep` also downloads and hashes each one
(the registry verified them on upload; `deep` re-proves it at the cost of reading them all).
Every referrer tag must name the referrer. What is missing or different is a problem, named.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from ..config import MirrorTarget
from ..sources.errors import SourceError
from ..sources.registry import RegistryClient
from .audit import HELD
from .copy import read_unit
from .errors import CopyFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verification:
    """Units checked per target, and what was wrong, one sentence each."""

    checked: int = 0
    manifests: int = 0
    blobs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"checked": self.checked, "manifests": self.manifests, "blobs": self.blobs, "ok": self.ok,
                "problems": self.problems[:50], "problem_count": len(self.problems)}


def verify_unit(source: RegistryClient, target: RegistryClient, source_repository: str, digest: str,
                target_repositories: list[str], *, deep: bool = False) -> tuple[int, int, list[str]]:
    """(manifests checked, blobs checked, problems) of one unit on one target."""
    problems: list[str] = []
    manifests = blobs = 0
    try:
        unit = read_unit(source, source_repository, digest)
    except CopyFailed as error:
        return 0, 0, [f"{source_repository}@{digest}: cannot be read from the source to compare ({error})"]
    for repository in target_repositories:
        for step in unit.steps:
            what = f"{repository}{':' + step.tag if step.tag else '@' + step.manifest.digest}"
            try:
                if step.tag is not None:
                    named = target.manifest_digest(repository, step.tag)
                    if named != step.manifest.digest:
                        problems.append(f"{what} names {named or 'nothing'}, not {step.manifest.digest}")
                    continue
                manifests += 1
                if target.get_manifest(repository, step.manifest.digest) is None:
                    problems.append(f"{what} is missing")
                    continue
                for blob in ([step.manifest.config] if step.manifest.config else []) + list(step.manifest.layers):
                    blobs += 1
                    size = target.blob_size(repository, blob.digest)
                    if size is None:
                        problems.append(f"{repository} lacks blob {blob.digest} of {step.manifest.digest}")
                    elif size >= 0 and size != blob.size:
                        problems.append(f"{repository} holds blob {blob.digest} with {size} bytes, not {blob.size}")
                    elif deep:
                        hasher = hashlib.sha256()
                        with target.open_blob(repository, blob.digest) as response:
                            for piece in response.iter_bytes():
                                hasher.update(piece)
                        if "sha256:" + hasher.hexdigest() != blob.digest:
                            problems.append(f"{repository} serves blob {blob.digest} with other content")
            except SourceError as error:
                problems.append(f"{what}: {error.detail}")
    return manifests, blobs, problems


def verify_copies(audit: pd.DataFrame, *, source: RegistryClient, targets: Mapping[str, RegistryClient],
                  target_settings: Mapping[str, MirrorTarget], source_repositories: Mapping[str, str],
                  deep: bool = False) -> Verification:
    """Check every (unit, target) the audit records as held: `copied` or `already_present`.

    `source_repositories` maps each digest to the source repository to read it from.
    """
    held = audit[audit["outcome"].isin(HELD)].drop_duplicates(["digest", "target"], keep="last")
    checked = manifests = blobs = 0
    problems: list[str] = []
    for row in held.sort_values(["target", "digest"]).itertuples():
        client, settings = targets.get(row.target), target_settings.get(row.target)
        if client is None or settings is None:
            problems.append(f"target {row.target} of {row.digest} has no client to verify with")
            continue
        repositories = [settings.repository(repository) for repository in row.repositories.split(",") if repository]
        found = verify_unit(source, client, source_repositories.get(row.digest, row.repositories.split(",")[0]),
                            row.digest, repositories, deep=deep)
        checked += 1
        manifests += found[0]
        blobs += found[1]
        problems.extend(f"{row.target}: {problem}" for problem in found[2])
    result = Verification(checked=checked, manifests=manifests, blobs=blobs, problems=problems)
    log.info("mirror verification: %d units, %d manifests, %d blobs, %d problems", checked, manifests, blobs,
             len(problems))
    return result
