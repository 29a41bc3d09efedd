"""The embedded default: a simulated OpenShift cluster, its registry, Prometheus and the
registry's pull-event archive, served over real HTTP on 127.0.0.1.

The same clients that talk to production talk to it: the real `kubernetes` client (through a
kubeconfig), an OCI distribution v2 client, a Prometheus HTTP API client, and a reader of
notification archives. See `scenario.py` for what the simulated history contains.
"""
from __future__ import annotations

import json
import os
import secrets
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from .clock import SandboxClock
from .faults import Fault, FaultInjector
from .world import World

__all__ = ["Sandbox", "Fault", "FaultInjector", "World"]


class Sandbox:
    """Builds the world for a seed/scale/window and serves it until `stop()`.

    Use as a context manager. `endpoints` is what `reglife sandbox serve` prints.
    Ports: 0 picks free ports; a fixed `port` P serves Kubernetes on P, the registry on P+1
    and Prometheus on P+2.
    """

    def __init__(self, *, seed: int = 7, scale: str = "tiny", days: int = 180,
                 until: datetime | date | None = None, port: int = 0,
                 data_dir: Path | str | None = None, auth: bool = True,
                 world: World | None = None, host: str = "127.0.0.1", advertise_host: str | None = None) -> None:
        self.seed, self.scale, self.days, self.until, self.port = seed, scale, days, until, port
        self.auth = auth
        self.bind = {"host": host, "advertise_host": advertise_host}
        self._tmp: tempfile.TemporaryDirectory | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="reglife-sandbox-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.faults = FaultInjector()
        self.world = world
        self.servers: dict[str, Any] = {}
        self.endpoints: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Sandbox":
        from .kube_api import KubeStore, start_kube_api, write_kubeconfig
        from .prometheus_api import start_prometheus_api
        from .registry_api import start_registry_api
        from .scenario import build_world

        if self.world is None:
            self.world = build_world(seed=self.seed, scale=self.scale, days=self.days, until=self.until)
        world = self.world
        self.clock = SandboxClock(world.until, earliest=world.served_from, latest=world.until)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        kube_token = secrets.token_urlsafe(24) if self.auth else None
        registry_credentials = ("reglife", secrets.token_urlsafe(18)) if self.auth else None

        store = KubeStore()
        for rtype, source in world.kube.items():
            store.register(rtype, source)
        port = self.port
        self.servers["kubernetes"] = start_kube_api(store, self.clock, self.faults, port=port, token=kube_token,
                                                    **self.bind)
        self.servers["registry"] = start_registry_api(world, self.clock, self.faults, port=port + 1 if port else 0,
                                                      credentials=registry_credentials, **self.bind)
        self.servers["prometheus"] = start_prometheus_api(world.storage, self.clock, self.faults,
                                                          port=port + 2 if port else 0, **self.bind)
        self.kube_store = store

        kubeconfig = write_kubeconfig(self.data_dir / "kubeconfig", self.servers["kubernetes"].url,
                                      kube_token or "", namespace="default")
        credentials_file = self.data_dir / "registry-credentials.json"
        # Credentials go to a 0600 file, never to stdout or logs (safety invariant 8).
        fd = os.open(credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"username": registry_credentials[0], "password": registry_credentials[1]}
                      if registry_credentials else {}, handle)
        pulls = self.write_pull_archive(self.data_dir / "pulls")
        scans = self.write_scan_reports(self.data_dir / "scans")
        self.endpoints = {
            "kubernetes": self.servers["kubernetes"].url,
            "kubeconfig": str(kubeconfig),
            "registry": self.servers["registry"].url,
            "registry_credentials": str(credentials_file),
            "prometheus": self.servers["prometheus"].url,
            "pulls": str(pulls),
            "scans": str(scans),
            "history": {"from": world.start.date().isoformat(), "until": world.until.isoformat()},
            "seed": self.seed,
            "scale": self.scale,
        }
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ data
    def write_pull_archive(self, root: Path, first: date | None = None, last: date | None = None) -> Path:
        """Write the notification archive for each day of the served history (idempotent)."""
        from .pull_archive import partition_dir, write_archive

        assert self.world is not None
        first = first or self.world.archive_from
        last = last or self.world.until.date()
        by_day: dict[str, list] = {}
        for record in self.world.pulls_between(first.isoformat(), last.isoformat()):
            by_day.setdefault(record.day, []).append(record)
        clusters = sorted({record.cluster for record in self.world.pulls})
        day = first
        while day <= last:
            records = by_day.get(day.isoformat(), [])
            write_archive(root, day, records, seed=self.seed)
            # An idle cluster still writes its (empty) file: absence means a broken archive.
            for cluster in clusters:
                partition = partition_dir(root, day)
                if not any(partition.glob(f"events-{cluster}.ndjson*")):
                    partition.mkdir(parents=True, exist_ok=True)
                    (partition / f"events-{cluster}.ndjson").touch()
            day += timedelta(days=1)
        return root

    def write_scan_reports(self, root: Path) -> Path:
        """Trivy JSON reports of the monthly scanner sweeps within the served history."""
        from .trivy_reports import write_scan_reports

        assert self.world is not None
        root.mkdir(parents=True, exist_ok=True)
        day = datetime.combine(self.world.archive_from, datetime.min.time(), tzinfo=self.world.start.tzinfo)
        while day <= self.world.until:
            write_scan_reports(self.world, root, day)
            day += timedelta(days=1)
        return root

    def policy_document(self) -> dict:
        """Policy settings that point the archive sources at this sandbox (merge into a policy)."""
        return {"sources": {"openshift": {"cluster": "prod-east"},
                            "pulls": {"location": self.endpoints["pulls"]},
                            "scans": {"location": self.endpoints["scans"]}}}

    def set_clock(self, when: datetime) -> datetime:
        return self.clock.set(when)

    def request_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, server in self.servers.items():
            counts[name] = sum(server.request_counts().values())
        return counts
