"""Why a mirror target, or one copy, stops. Messages name the target and the URL path, never a credential."""
from __future__ import annotations


class TargetError(RuntimeError):
    """A whole target cannot be used this run: credentials refused, unreachable, or it rewrites
    digests. Nothing more is attempted on it; every other target carries on."""

    def __init__(self, target: str, detail: str, fix: str) -> None:
        self.target, self.detail, self.fix = target, detail, fix
        super().__init__(f"mirror target {target}: {detail}. {fix}")


class TargetRewritesDigests(TargetError):
    """The target stored a manifest under another digest than the bytes it was sent hash to.

    Clusters pull mirrored images by digest (ImageDigestMirrorSet), so such a target can
    never serve them: it is refused rather than filled with copies nobody can pull."""


class CopyFailed(RuntimeError):
    """One image could not be copied (the source changed, a blob kept breaking off, the target
    refused a manifest). It is audited as failed, never as copied; a re-run tries it again."""


class ApprovalError(RuntimeError):
    """The run may not execute this plan: no approval, another plan's approval, or a stale plan."""
