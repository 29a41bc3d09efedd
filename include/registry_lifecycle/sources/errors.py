"""Why an extraction stops. Each error names the source, what was being read (never a
credential) and what the operator can do about it.

A failed, forbidden or truncated list aborts the run (safety invariant 3): a partial snapshot
would make every image missing from it look unreferenced.
"""
from __future__ import annotations


class SourceError(RuntimeError):
    """An outside system could not be read completely."""

    def __init__(self, source: str, what: str, detail: str, fix: str) -> None:
        self.source, self.what, self.detail, self.fix = source, what, detail, fix
        super().__init__(f"{source}: {what}: {detail}. {fix}")


class SourceForbidden(SourceError):
    """401/403: credentials or RBAC are missing. Never retried."""


class SourceTruncated(SourceError):
    """A list ended early (a page without its continuation). Never accepted as complete."""


class SourceUnavailable(SourceError):
    """5xx, 429 or connection errors that outlasted the retries."""


class SourceMalformed(SourceError):
    """A response that is not what the API promises (bad JSON, wrong digest)."""
