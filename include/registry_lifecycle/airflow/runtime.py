"""What every task needs from its environment: the policy, the lake, and Connection-backed
clients. Read inside tasks only (never at DAG-parse time)."""
from __future__ import annotations

import os
from pathlib import Path

from ..config import Policy, load_policy
from ..lake import Lake, S3Credentials
from . import connections


def policy() -> Policy:
    """The policy file named by REGLIFE_POLICY (the ConfigMap mount in production), else the default."""
    return load_policy(os.environ.get("REGLIFE_POLICY") or None)


def lake(aws_conn_id: str = "aws_default") -> Lake:
    url = os.environ.get("LAKE_URL", "file://./data/lake")
    if not url.startswith("s3://"):
        return Lake(url)
    settings = connections.s3_settings(aws_conn_id)
    credentials = (S3Credentials(settings["access_key"], settings["secret_key"])
                   if settings.get("access_key") and settings.get("secret_key") else None)
    return Lake(url, s3_endpoint_url=settings.get("endpoint_url") or os.environ.get("LAKE_S3_ENDPOINT_URL"),
                s3_credentials=credentials, s3_region=settings.get("region"))


def manifest_cache_dir() -> Path:
    """Where the registry manifest cache lives between runs (a PVC in production)."""
    return Path(os.environ.get("REGLIFE_CACHE_DIR", "./data/cache"))


def archive_location(setting, aws_conn_id: str):
    """A pulls/scans archive location from the policy, with S3 credentials from a Connection."""
    from ..sources.locations import open_location

    if setting.location is None:
        return None
    if not setting.location.startswith("s3://"):
        return open_location(setting.location)
    return open_location(setting.location, **connections.s3_settings(aws_conn_id))
