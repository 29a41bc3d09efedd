"""Fixtures for the GC tests: a small stored sandbox history, and hand-built registry states.

`sandbox_history` runs the real extraction pipeline against the embedded sandbox (scale tiny,
150 days, a snapshot every week) into a lake once per session; the model, rule and backtest
tests read it back exactly as production reads a lake. `build_state` makes tiny snapshots by
hand, for tests that state one behaviour on a handful of images.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pytest

from registry_lifecycle.datasets import ALL
from registry_lifecycle.gc.features import History, PullHistory, RegistryState

UNTIL = date(2026, 11, 27)
HISTORY_DAYS = 150     # the model needs a quarter of pulls before its first labelled date
AS_OF = date(2026, 6, 30)


@dataclass(frozen=True)
class SandboxHistory:
    """A lake built from the sandbox, the History read from it, and the world's ground truth."""

    lake_path: Path
    history: History
    world: object


@pytest.fixture(scope="session")
def sandbox_history(tmp_path_factory: pytest.TempPathFactory) -> SandboxHistory:
    from registry_lifecycle.config import load_policy, policy_with
    from registry_lifecycle.lake import Lake
    from registry_lifecycle.pipeline import build_sandbox_history
    from registry_lifecycle.sandbox import Sandbox

    path = tmp_path_factory.mktemp("gc-lake")
    lake = Lake(path)
    with Sandbox(seed=7, scale="tiny", until=UNTIL) as sandbox:
        policy = policy_with(load_policy(), sandbox.policy_document())
        build_sandbox_history(sandbox, lake, policy, UNTIL - timedelta(days=HISTORY_DAYS - 1), UNTIL,
                              snapshot_every=7)
        world = sandbox.world
    return SandboxHistory(path, History.from_lake(lake), world)


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def _frame(dataset: str, rows: list[dict]) -> pd.DataFrame:
    return pa.Table.from_pylist(rows, schema=ALL[dataset].schema).to_pandas()


def _at(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=timezone.utc)


@dataclass
class StateBuilder:
    """A snapshot as of `AS_OF` under construction, with its pull history; ages are in days."""

    as_of: date = AS_OF
    images: list[dict] = field(default_factory=list)
    tags: list[dict] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    builds: list[dict] = field(default_factory=list)
    pulls: list[dict] = field(default_factory=list)
    namespaces: dict[str, dict] = field(default_factory=dict)

    def image(self, name: str, *, repository: str = "shop-dev/web", pushed: int = 200, size: int = 100,
              index: str | None = None, labels: dict | None = None) -> str:
        """An image pushed `pushed` days before as_of; returns its digest."""
        image_digest = digest(name)
        self.images.append({"digest": image_digest, "repository": repository,
                            "media_type": "application/vnd.oci.image.manifest.v1+json", "size_bytes": size,
                            "config_digest": digest(name + "/config"), "created_at": _at(self.as_of - timedelta(days=pushed)),
                            "architecture": "amd64", "os": "linux", "labels": json.dumps(labels or {}),
                            "subject_digest": None, "index_digest": index, "managed": True})
        return image_digest

    def tag(self, image_digest: str, tag: str, *, revision: int = 0, stream: str = "shop-dev/web",
            created: int = 200) -> None:
        namespace, name = stream.split("/")
        self.tags.append({"namespace": namespace, "imagestream": name, "tag": tag, "revision": revision,
                          "digest": image_digest, "created_at": _at(self.as_of - timedelta(days=created))})

    def reference(self, image_digest: str, *, namespace: str = "shop-prod", kind: str = "Deployment") -> None:
        self.references.append({"cluster": "prod-east", "namespace": namespace, "kind": kind, "name": "web",
                                "container": "web", "image_ref": f"x@{image_digest}", "digest": image_digest,
                                "source": "template", "active": True, "observed_at": _at(self.as_of)})

    def pull(self, image_digest: str, days_ago: int, *, repository: str = "shop-dev/web", count: int = 1) -> None:
        self.pulls.append({"day": self.as_of - timedelta(days=days_ago), "repository": repository,
                           "digest": image_digest, "tag": None, "cluster": "nonprod", "pulls": count,
                           "bytes": 0})

    def namespace(self, name: str, **labels: str) -> None:
        self.namespaces[name] = labels

    def state(self) -> RegistryState:
        namespaces = pd.DataFrame({"namespace": list(self.namespaces),
                                   "labels": [json.dumps(v) for v in self.namespaces.values()],
                                   "annotations": ["{}"] * len(self.namespaces)})
        scans = pd.DataFrame({"digest": pd.Series(dtype=object), "severity": pd.Series(dtype=object),
                              "vuln_id": pd.Series(dtype=object), "scanned_at": pd.Series(dtype="datetime64[us, UTC]")})
        return RegistryState(self.as_of, _frame("images", self.images), _frame("tags", self.tags),
                             _frame("references", self.references), _frame("builds", self.builds),
                             _frame("layers", []), namespaces, scans)

    def pull_history(self, days: int = 365) -> PullHistory:
        return PullHistory.from_frame(_frame("pulls_daily", self.pulls), self.as_of - timedelta(days=days - 1),
                                      self.as_of)


@pytest.fixture
def build_state() -> Callable[[], StateBuilder]:
    """A factory of empty StateBuilders, one per call."""
    return StateBuilder
