"""Small hand-built registry states for the plan tests: each image named for the case it is.

Sizes are whole MiB so the expected costs can be worked out by hand: 1 GiB pulled across
regions at 0.02 per GB is 0.02, 1 GiB stored for a month at 0.023 is 0.023.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
from registry_lifecycle.datasets import (
    IMAGES,
    LAYERS,
    NAMESPACES,
    PULLS_DAILY,
    REFERENCES,
)
from registry_lifecycle.mirror.plan import PlanInputs

MIB = 2**20
DAY = date(2026, 11, 28)
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SOURCE = "image-registry.openshift-image-registry.svc:5000"


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@dataclass
class World:
    images: list[dict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    pulls: list[dict] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    namespaces: dict[str, dict] = field(default_factory=dict)

    def image(self, name: str, repository: str, *, layers: list[tuple[str, int]], index: str | None = None,
              subject: str | None = None) -> str:
        image_digest = digest(name)
        self.images.append({"digest": image_digest, "repository": repository, "media_type": DOCKER,
                            "size_bytes": sum(size for _, size in layers) + 1000, "config_digest": digest(name + ":c"),
                            "created_at": None, "architecture": "amd64", "os": "linux", "labels": "{}",
                            "subject_digest": subject, "index_digest": index, "managed": True})
        self.layers.append({"image_digest": image_digest, "layer_digest": image_digest, "size_bytes": 500,
                            "position": -2})
        self.layers.append({"image_digest": image_digest, "layer_digest": digest(name + ":c"), "size_bytes": 1000,
                            "position": -1})
        for position, (layer, size) in enumerate(layers):
            self.layers.append({"image_digest": image_digest, "layer_digest": digest(layer), "size_bytes": size,
                                "position": position})
        return image_digest

    def index(self, name: str, repository: str, children: list[str]) -> str:
        index_digest = digest(name)
        self.images.append({"digest": index_digest, "repository": repository, "media_type": OCI_INDEX,
                            "size_bytes": 700, "config_digest": None, "created_at": None, "architecture": None,
                            "os": None, "labels": None, "subject_digest": None, "index_digest": None, "managed": True})
        for row in self.images:
            if row["digest"] in children:
                row["index_digest"] = index_digest
        return index_digest

    def pull(self, image: str, repository: str, cluster: str, per_day: int, days: int = 28) -> None:
        for offset in range(days):
            self.pulls.append({"day": DAY - timedelta(days=offset), "repository": repository, "digest": image,
                               "tag": None, "cluster": cluster, "pulls": per_day, "bytes": per_day * 500})

    def runs(self, image: str, namespace: str, name: str, *, cluster: str = "prod-east", active: bool = True) -> None:
        repository = f"{namespace}/{name}"
        self.references.append({"cluster": cluster, "namespace": namespace, "kind": "Deployment", "name": name,
                                "container": name, "image_ref": f"{SOURCE}/{repository}@{image}", "digest": image,
                                "source": "template", "active": active,
                                "observed_at": datetime(2026, 11, 28, tzinfo=timezone.utc)})

    def namespace(self, name: str, env: str) -> None:
        self.namespaces[name] = {"env": env}

    def frame(self, dataset, rows) -> pd.DataFrame:
        return pa.Table.from_pylist(rows, schema=dataset.schema).to_pandas()

    def inputs(self) -> PlanInputs:
        pulls = self.frame(PULLS_DAILY, self.pulls)
        namespaces = self.frame(NAMESPACES, [{"namespace": name, "labels": json.dumps(labels), "annotations": "{}"}
                                             for name, labels in self.namespaces.items()])
        return PlanInputs(day=DAY, snapshot_day=DAY, run_ids={"images": "test"}, images=self.frame(IMAGES, self.images),
                          layers=self.frame(LAYERS, self.layers), references=self.frame(REFERENCES, self.references),
                          namespaces=namespaces, pulls=pulls, window=(DAY - timedelta(days=27), DAY), days_covered=28)


def policy(**mirror):
    """Source in us-east-1; nonprod in eu-west-1 served by `eu-west`; `dr` in us-west-2 for DR only."""
    from registry_lifecycle.config import load_policy, policy_with

    settings = {
        "source_region": "us-east-1",
        "cluster_regions": {"prod-east": "us-east-1", "nonprod": "eu-west-1", "partner": "ap-south-1"},
        "targets": [
            {"name": "eu-west", "url": "https://mirror.eu-west-1.example.com", "region": "eu-west-1",
             "connection_id": "mirror_eu_west", "egress_cost_per_gb": 0.02, "storage_cost_per_gb_month": 0.023},
            {"name": "dr", "url": "https://dr.us-west-2.example.com", "region": "us-west-2", "connection_id": "mirror_dr",
             "egress_cost_per_gb": 0.02, "storage_cost_per_gb_month": 0.0125, "repository_prefix": "dr"},
        ],
        "dr_rules": [{"name": "prod-twice", "match": {"env": "prod"}, "min_registries": 2, "targets": ["dr"]}],
        "deny": ["*-dev/*"],
        "cold_pull_fraction": 0.5,
    }
    settings.update(mirror)
    return policy_with(load_policy(), {"mirror": settings})


def standard_world() -> tuple[World, dict[str, str]]:
    """Every case at once: hot, cold, prod-running, denied, multi-arch, signed; digests by case."""
    world = World()
    for name, env in (("team-a-staging", "staging"), ("team-a-prod", "prod"), ("team-a-dev", "dev"),
                      ("platform", "platform")):
        world.namespace(name, env)
    cases = {
        "hot": world.image("hot", "team-a-staging/api", layers=[("base", 200 * MIB), ("hot:1", 56 * MIB)]),
        "cold": world.image("cold", "team-a-staging/batch", layers=[("base", 200 * MIB), ("cold:1", 300 * MIB)]),
        "prod": world.image("prod", "team-a-prod/api", layers=[("base", 200 * MIB), ("prod:1", 40 * MIB)]),
        "dev": world.image("dev", "team-a-dev/api", layers=[("base", 200 * MIB), ("dev:1", 60 * MIB)]),
    }
    amd = world.image("tools-amd64", "platform/tools", layers=[("tools-amd64:0", 100 * MIB)])
    arm = world.image("tools-arm64", "platform/tools", layers=[("tools-arm64:0", 100 * MIB)])
    cases["index"] = world.index("tools", "platform/tools", [amd, arm])
    cases["index_child"] = amd
    cases["signature"] = world.image("hot.sig", "team-a-staging/api", layers=[("hot.sig:0", 1000)],
                                     subject=cases["hot"])
    world.pull(cases["hot"], "team-a-staging/api", "nonprod", per_day=20)          # 560 pulls in 28 days
    world.pull(cases["cold"], "team-a-staging/batch", "nonprod", per_day=1, days=1)
    world.pull(cases["dev"], "team-a-dev/api", "nonprod", per_day=50)
    world.pull(cases["prod"], "team-a-prod/api", "prod-east", per_day=30)           # local: no egress
    world.pull(amd, "platform/tools", "nonprod", per_day=10)                        # a child pulled by digest
    world.pull(cases["index"], "platform/tools", "nonprod", per_day=10)
    world.runs(cases["prod"], "team-a-prod", "api")
    return world, cases
