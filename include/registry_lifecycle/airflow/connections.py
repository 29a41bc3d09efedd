"""Airflow Connections -> the domain's clients. Credentials are read here, handed to the
client objects, and never logged, returned through XCom or written to the lake."""
from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseHook


def _extra(conn: Any) -> dict:
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    return extra or {}


def _base_url(conn: Any, default_scheme: str = "https") -> str:
    host = conn.host or ""
    if "://" not in host:
        host = f"{conn.schema or default_scheme}://{host}"
    if conn.port and f":{conn.port}" not in host.split("://", 1)[1]:
        host = f"{host}:{conn.port}"
    return host.rstrip("/")


def _verify(extra: dict) -> bool | str:
    # TLS is verified by default (safety invariant 8); a private CA is given as a bundle path.
    if extra.get("ca_bundle"):
        return str(extra["ca_bundle"])
    return bool(extra.get("verify", True))


def kubernetes_api_client(conn_id: str):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook(conn_id=conn_id).get_conn()


def registry_settings(conn_id: str) -> dict:
    conn = BaseHook.get_connection(conn_id)
    extra = _extra(conn)
    return {"base_url": _base_url(conn), "username": conn.login or None, "password": conn.password or None,
            "verify": _verify(extra)}


def prometheus_settings(conn_id: str) -> dict:
    conn = BaseHook.get_connection(conn_id)
    extra = _extra(conn)
    return {"base_url": _base_url(conn), "token": conn.password or extra.get("token") or None,
            "verify": _verify(extra)}


def s3_settings(conn_id: str) -> dict:
    """Endpoint and keys for S3-compatible storage (AWS, MinIO, ODF) from an `aws` connection."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:      # no connection: fall back to the standard AWS credential chain
        return {}
    extra = _extra(conn)
    return {"endpoint_url": extra.get("endpoint_url"), "access_key": conn.login or None,
            "secret_key": conn.password or None, "region": extra.get("region_name")}
