"""Fixtures for the sandbox's API servers: a clock, a fault injector, and a way to serve a
KubeStore on 127.0.0.1 to the unmodified kubernetes DynamicClient."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest
from kubernetes.client import ApiClient, Configuration
from kubernetes.dynamic import DynamicClient

from registry_lifecycle.sandbox.clock import SandboxClock
from registry_lifecycle.sandbox.faults import FaultInjector
from registry_lifecycle.sandbox.httpbase import SandboxServer
from registry_lifecycle.sandbox.kube_api import KubeStore, start_kube_api

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> SandboxClock:
    """Day 10 of a 60-day simulated history."""
    return SandboxClock(T0 + timedelta(days=10), earliest=T0, latest=T0 + timedelta(days=60))


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector()


@dataclass
class Kube:
    """A running sandbox Kubernetes API and a DynamicClient talking to it over HTTP."""

    store: KubeStore
    server: SandboxServer
    client: DynamicClient

    def requests(self) -> int:
        return self.server.request_counts().get("kubernetes", 0)


def dynamic_client(url: str, cache_file: Path, token: str | None = None) -> DynamicClient:
    """A DynamicClient with its own discovery cache: the default cache file is keyed by
    host:port, and a port reused by another test's server would serve stale discovery."""
    cfg = Configuration()
    cfg.host = url
    if token is not None:
        # kubernetes 36 reads the token under "BearerToken"; the prefix is looked up only there
        cfg.api_key = {"BearerToken": token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return DynamicClient(ApiClient(cfg), cache_file=str(cache_file))


@pytest.fixture
def serve(clock: SandboxClock, faults: FaultInjector, tmp_path: Path) -> Iterator[Callable[..., Kube]]:
    """Start a server for a store; every server started is stopped after the test."""
    started: list[SandboxServer] = []

    def _serve(store: KubeStore, token: str | None = None) -> Kube:
        server = start_kube_api(store, clock, faults, token=token)
        started.append(server)
        client = dynamic_client(server.url, tmp_path / f"discovery-{len(started)}.json", token)
        return Kube(store, server, client)

    yield _serve
    for server in started:
        server.stop()
