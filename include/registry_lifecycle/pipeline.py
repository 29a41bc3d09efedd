"""The extraction pipeline outside Airflow: `reglife extract` and history building on the sandbox.

The same domain steps the registry_extract DAG runs, wired in-process: each source step
stages its datasets, then the quality gate publishes or halts. With the sandbox, the clock
can be moved to past days, so a range of dates yields the daily snapshots that training and
backtests need.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from kubernetes import config as kube_config

from .config import Policy
from .extract import (ExtractRequest, extract_cluster, extract_pulls_step, extract_registry, extract_scans_step,
                      extract_storage_step, validate_and_publish)
from .lake import Lake
from .sources.locations import Location

log = logging.getLogger(__name__)


@dataclass
class Endpoints:
    """Where the sources are: a kubeconfig, a registry URL and credentials, Prometheus, archives."""

    kubeconfig: str | None
    registry_url: str
    registry_username: str | None = None
    registry_password: str | None = None
    prometheus_url: str | None = None
    prometheus_token: str | None = None
    pulls: Location | None = None
    scans: Location | None = None
    verify_tls: bool | str = True

    @classmethod
    def from_environment(cls, policy: Policy) -> "Endpoints":
        """Sources for a `reglife` pod or a shell: KUBECONFIG (or in-cluster), REGLIFE_REGISTRY_URL,
        REGLIFE_REGISTRY_USERNAME/PASSWORD, REGLIFE_PROMETHEUS_URL/TOKEN, REGLIFE_CA_BUNDLE."""
        import os

        from .sources.locations import open_location

        registry = os.environ.get("REGLIFE_REGISTRY_URL")
        if not registry:
            raise SystemExit("reglife: set REGLIFE_REGISTRY_URL (the registry's v2 API), or use --sandbox")
        pulls, scans = policy.sources.pulls.location, policy.sources.scans.location
        return cls(kubeconfig=os.environ.get("KUBECONFIG"), registry_url=registry,
                   registry_username=os.environ.get("REGLIFE_REGISTRY_USERNAME"),
                   registry_password=os.environ.get("REGLIFE_REGISTRY_PASSWORD"),
                   prometheus_url=os.environ.get("REGLIFE_PROMETHEUS_URL"),
                   prometheus_token=os.environ.get("REGLIFE_PROMETHEUS_TOKEN"),
                   pulls=open_location(pulls) if pulls else None, scans=open_location(scans) if scans else None,
                   verify_tls=os.environ.get("REGLIFE_CA_BUNDLE") or policy.sources.registry.verify_tls)

    @classmethod
    def from_sandbox(cls, sandbox) -> "Endpoints":
        import json

        from .sources.locations import open_location

        credentials = json.loads(Path(sandbox.endpoints["registry_credentials"]).read_text())
        return cls(kubeconfig=sandbox.endpoints["kubeconfig"], registry_url=sandbox.endpoints["registry"],
                   registry_username=credentials.get("username"), registry_password=credentials.get("password"),
                   prometheus_url=sandbox.endpoints["prometheus"], pulls=open_location(sandbox.endpoints["pulls"]),
                   scans=open_location(sandbox.endpoints["scans"]))


@dataclass
class ExtractOutcome:
    day: date
    run_id: str
    published: bool
    summaries: dict[str, dict] = field(default_factory=dict)
    gate: object | None = None


def run_extract(day: date, endpoints: Endpoints, policy: Policy, lake: Lake, *, run_id: str | None = None,
                cache_dir: Path | None = None, snapshot: bool = True, accept_shrink: bool = False,
                skip_reason: str | None = None) -> ExtractOutcome:
    """Extract one day from every source, gate it, publish it if it passes."""
    from .sources.prometheus import PrometheusClient
    from .sources.registry import RegistryClient

    run_id = run_id or f"manual__{day.isoformat()}"
    request = ExtractRequest(day, run_id, snapshot_readable=snapshot, skip_reason=skip_reason)
    summaries: dict[str, dict] = {}
    if snapshot:
        if endpoints.kubeconfig:
            api_client = kube_config.new_client_from_config(config_file=endpoints.kubeconfig)
        else:
            from kubernetes.client import ApiClient

            kube_config.load_incluster_config()
            api_client = ApiClient()
        try:
            summaries["openshift"] = extract_cluster(request, api_client, policy, lake)
        finally:
            api_client.close()
        settings = policy.sources.registry
        with RegistryClient(endpoints.registry_url, username=endpoints.registry_username,
                            password=endpoints.registry_password, verify=endpoints.verify_tls,
                            concurrency=settings.concurrency, page_size=settings.page_size,
                            max_retries=settings.max_retries, timeout=settings.timeout_seconds) as client:
            summaries["registry"] = extract_registry(request, client, lake, cache_dir, policy.sources.registry)
    summaries["pulls"] = extract_pulls_step(request, endpoints.pulls, lake)
    if endpoints.prometheus_url:
        client = PrometheusClient(endpoints.prometheus_url, token=endpoints.prometheus_token,
                                  verify=endpoints.verify_tls)
        try:
            summaries["storage"] = extract_storage_step(request, client, policy, lake)
        finally:
            client.close()
    summaries["scans"] = extract_scans_step(request, endpoints.scans, lake)
    gate = validate_and_publish(request, policy, lake, accept_shrink=accept_shrink)
    return ExtractOutcome(day, run_id, gate.passed, summaries, gate)


def build_sandbox_history(sandbox, lake: Lake, policy: Policy, first: date, last: date, *,
                          snapshot_every: int = 1, cache_dir: Path | None = None,
                          accept_shrink: bool = False) -> list[ExtractOutcome]:
    """Extract every day from `first` to `last` on the sandbox, moving its clock to each day's end.

    Time-ranged datasets (pulls, storage, scans) are extracted for every day; the cluster
    snapshot every `snapshot_every` days and on `last`, since models and backtests need
    snapshots only at their as-of dates. Stops at the first day the quality gate halts (that
    outcome is the last one returned).
    """
    endpoints = Endpoints.from_sandbox(sandbox)
    outcomes = []
    day = first
    while day <= last:
        take_snapshot = (day - first).days % snapshot_every == 0 or day == last
        sandbox.set_clock(min(datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc), sandbox.world.until))
        outcome = run_extract(day, endpoints, policy, lake, run_id=f"sandbox__{day.isoformat()}",
                              cache_dir=cache_dir, snapshot=take_snapshot, accept_shrink=accept_shrink,
                              skip_reason=f"this history build takes a cluster snapshot every {snapshot_every} days")
        outcomes.append(outcome)
        if not outcome.published:
            break
        day += timedelta(days=1)
    sandbox.set_clock(sandbox.world.until)
    return outcomes
