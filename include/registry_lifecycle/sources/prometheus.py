"""The Prometheus source: registry volume usage and capacity over a day -> `storage_usage`.

Reads `query_range` for any past window, so backfills re-extract exactly what a scheduled run
would have. Missing samples stay missing (NaN rows are not invented); a capacity configured in
the policy stands in for registries on object storage, which have no PVC to measure.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timedelta

import httpx
import pandas as pd

from ..datasets import STORAGE_USAGE
from .errors import SourceForbidden, SourceMalformed, SourceUnavailable

SOURCE = "prometheus"
MAX_POINTS = 11_000


class PrometheusClient:
    def __init__(self, base_url: str, *, token: str | None = None, verify: bool | str = True,
                 timeout: float = 30, max_retries: int = 4, backoff_seconds: float = 0.5) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, verify=verify, timeout=timeout)
        self.max_retries, self.backoff_seconds = max_retries, backoff_seconds
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def query_range(self, query: str, start: datetime, end: datetime, step: timedelta) -> list[dict]:
        """The matrix result; split into windows under Prometheus's 11,000-points limit."""
        seconds = step.total_seconds()
        results: dict[tuple, dict] = {}
        window_start = start
        while window_start <= end:
            window_end = min(end, window_start + timedelta(seconds=seconds * (MAX_POINTS - 1)))
            for series in self._get("/api/v1/query_range", {"query": query, "start": window_start.timestamp(),
                                                           "end": window_end.timestamp(), "step": seconds}):
                key = tuple(sorted(series["metric"].items()))
                results.setdefault(key, {"metric": series["metric"], "values": []})["values"].extend(series["values"])
            window_start = window_end + timedelta(seconds=seconds)
        return list(results.values())

    def _get(self, path: str, params: dict) -> list[dict]:
        what = f"{path}?query={params['query']}"
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                response = self._http.post(path, data=params)
            except httpx.TransportError as exc:
                if attempt < self.max_retries:
                    self._sleep(attempt)
                    continue
                raise SourceUnavailable(SOURCE, what, f"connection failed ({type(exc).__name__})",
                                        "Check the prometheus_default connection and network policy.") from None
            if response.status_code in (401, 403):
                raise SourceForbidden(SOURCE, what, f"HTTP {response.status_code}",
                                      "Give the connection a token allowed to query (cluster-monitoring-view).")
            if response.status_code in (429, 502, 503, 504) or response.status_code >= 500:
                if attempt < self.max_retries:
                    self._sleep(attempt)
                    continue
                raise SourceUnavailable(SOURCE, what, f"HTTP {response.status_code} after {attempt + 1} attempts",
                                        "Prometheus is failing; re-run when it is healthy.")
            try:
                body = response.json()
            except ValueError:
                raise SourceMalformed(SOURCE, what, "response is not JSON", "Check the connection's URL.") from None
            if body.get("status") != "success":
                raise SourceMalformed(SOURCE, what, f"{body.get('errorType')}: {body.get('error')}",
                                      "Fix the query in the policy (sources.prometheus).")
            data = body.get("data") or {}
            if data.get("resultType") != "matrix":
                raise SourceMalformed(SOURCE, what, f"expected a matrix, got {data.get('resultType')}",
                                      "Use a range-vector-compatible selector in the policy.")
            return data.get("result") or []
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(30.0, self.backoff_seconds * 2 ** attempt * (0.5 + random.random())))


def storage_usage(client: PrometheusClient, *, used_query: str, capacity_query: str, volume: str,
                  start: datetime, end: datetime, step: timedelta,
                  capacity_bytes: int | None = None) -> pd.DataFrame:
    """One row per sample time: used and capacity bytes of the registry's volume."""
    def frame(query: str, column: str) -> pd.DataFrame:
        series = client.query_range(query, start, end, step)
        if len(series) > 1:
            raise SourceMalformed(SOURCE, query, f"{len(series)} series matched; expected one volume",
                                  "Narrow the selector in sources.prometheus to the registry's PVC.")
        values = series[0]["values"] if series else []
        return pd.DataFrame({"ts": pd.to_datetime([float(t) for t, _ in values], unit="s", utc=True),
                             column: [float(v) for _, v in values]})

    used = frame(used_query, "used_bytes")
    if capacity_bytes is not None:
        merged = used.assign(capacity_bytes=float(capacity_bytes))
    else:
        merged = used.merge(frame(capacity_query, "capacity_bytes"), on="ts", how="outer")
    merged["volume"] = volume
    merged["source"] = "prometheus"
    merged["ts"] = merged["ts"].astype("datetime64[us, UTC]")
    return merged[STORAGE_USAGE.schema.names].sort_values("ts").reset_index(drop=True)
