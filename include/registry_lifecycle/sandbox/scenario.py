"""Generates the sandbox's history: a seeded, deterministic OpenShift cluster and registry.

The scenario is built to be hard on naive retention policies. It contains, on purpose:
- feature-branch builds that CI pulls once and nobody deploys;
- promotion by re-tagging (the same digest in dev, staging and prod image streams);
- rollback targets: old ReplicaSets/ReplicationControllers scaled to 0, never pulled, sometimes
  rolled back to;
- monthly CronJobs idle for ~29 days between pulls, and one suspended CronJob;
- scaled-to-zero disaster-recovery Deployments refreshed quarterly, never pulled;
- shared base layers (multi-arch OCI indexes of base images) and dependency layers shared by
  successive builds, so the naive sum of image sizes overstates what deletion frees;
- cosign `sha256-<digest>.sig` signature tags and OCI referrers (SBOMs, attestations);
- ageing base images that become vulnerable;
- a weekly CI rhythm, monthly scanner sweeps, quarterly bursts that re-pull every version of the
  repositories in a compliance mirror's scope, and "library" images whose old versions keep being pulled;
- a monthly feature-branch clean-up and a weekly registry GC that give storage its sawtooth,
  and a PVC resize.
The history runs `future_days` past `until`; the APIs never serve that future, but the ground
truth keeps it, so a decision taken at `until` can be scored.
"""
from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import numpy as np

from . import oci, resources
from .blobs import BlobStore
from .model import PullRecord, Series, TimelineObject, TimelineSource
from .openshift_objects import ImageSource, ImageStreamSource, object_uid
from .world import INTERNAL_REGISTRY, SimImage, SimStream, World, rfc3339

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class Scale:
    teams: int
    apps_per_team: int
    nodes: int
    # When set, only this many teams are simulated and the others are copies (`replicate.py`).
    template_teams: int = 0


SCALES: dict[str, Scale] = {
    "tiny": Scale(teams=2, apps_per_team=3, nodes=4),
    "S": Scale(teams=6, apps_per_team=8, nodes=8),
    "M": Scale(teams=30, apps_per_team=15, nodes=24),
    "L": Scale(teams=200, apps_per_team=22, nodes=120, template_teams=10),
}

BASE_IMAGES = ("ubi9", "python-311", "nodejs-20", "openjdk-17")
CLUSTERS = {"dev": "nonprod", "staging": "nonprod", "prod": "prod-east", "platform": "prod-east"}


@dataclass
class App:
    team: str
    name: str
    kind: str                  # deployment | deploymentconfig | cronjob | statefulset
    base: str
    builds_per_week: float
    feature_builds_per_week: float
    release_every_days: int
    tag_per_commit: bool
    library: bool              # old versions keep being pulled by other teams
    dr: bool                   # has a scaled-to-zero DR copy in the team's DR namespace
    deps_layer: str = ""
    deps_size: int = 0
    releases: list[tuple[datetime, str, str]] = field(default_factory=list)  # (when, version, digest)


class _Controller:
    """A Deployment or DeploymentConfig and its revision history (ReplicaSets or RCs)."""

    def __init__(self, namespace: str, name: str, kind: str, replicas: int, env: str) -> None:
        self.namespace, self.name, self.kind, self.replicas, self.env = namespace, name, kind, replicas, env
        self.revisions: list[tuple[str, str, datetime]] = []  # (child name, digest, created)
        self.current: str | None = None
        self.running_since: datetime | None = None
        self.running: tuple[str, str] | None = None   # (digest, repository) of the live revision
        self.pods: list[str] = []


class ScenarioBuilder:
    def __init__(self, *, seed: int = 7, scale: str = "tiny", days: int = 180,
                 until: datetime | date | None = None, future_days: int = 120) -> None:
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        if days < 14:
            raise ValueError("--days must be at least 14: the scenario needs a few weeks of history")
        now = datetime.now(timezone.utc)
        until = until or now
        if isinstance(until, date) and not isinstance(until, datetime):
            # A day means its end, but never later than now: a history must not reach the future.
            until = min(datetime.combine(until, time(23, 59, 59), tzinfo=timezone.utc), now)
        elif until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
        self.until = until.replace(microsecond=0)
        self.start = datetime.combine((self.until - timedelta(days=days)).date(), time(), tzinfo=timezone.utc)
        self.end = self.until + timedelta(days=future_days)
        self.seed, self.scale_name, self.scale = seed, scale, SCALES[scale]
        self.rng = random.Random(f"scenario-{seed}-{scale}")
        self.np_rng = np.random.default_rng(seed)
        self.world = World(seed=seed, scale=scale, start=self.start, until=self.until,
                           future_until=self.end, blobs=BlobStore(seed))
        self.kube = {rtype: TimelineSource() for rtype in resources.ALL
                     if rtype not in (resources.IMAGES, resources.IMAGE_STREAMS)}
        self.pull_counts: dict[tuple[str, str, str, str | None, str], int] = defaultdict(int)
        self.push_counts: dict[tuple[str, str, str, str | None, str], int] = defaultdict(int)
        self.base_versions: dict[str, list[tuple[datetime, str, str]]] = {}  # base -> (when, index, amd64 child)
        self.builds_per_config: dict[tuple[str, str], list[str]] = defaultdict(list)
        self._commit = 0

    # ================================================================== entry point
    def build(self) -> World:
        self._namespaces()
        self._base_images()
        apps = self._apps()
        for app in apps:
            self._simulate_app(app)
        self._infra_daemonset()
        self._scanner_sweeps()
        self._library_pulls(apps)
        self._feature_cleanup()
        self._finish()
        return self.world

    # ================================================================== helpers
    def _days(self):
        day = self.start
        while day < self.end:
            yield day
            day += timedelta(days=1)

    def _at_work(self, day: datetime, rng: random.Random) -> datetime:
        minutes = int(rng.triangular(7 * 60, 19 * 60, 11 * 60))
        return day + timedelta(minutes=minutes, seconds=rng.randrange(60))

    def _stream(self, namespace: str, name: str, created: datetime) -> SimStream:
        key = f"{namespace}/{name}"
        stream = self.world.streams.get(key)
        if stream is None:
            stream = SimStream(namespace, name, created)
            self.world.streams[key] = stream
        return stream

    def _pull(self, when: datetime, repo: str, digest: str, tag: str | None, cluster: str, count: int = 1) -> None:
        if count <= 0 or when < self.start:
            return
        self.pull_counts[(when.date().isoformat(), repo, digest, tag, cluster)] += count
        self.world.truth.add_pull(digest, when)

    def _reference(self, digest: str, when: datetime) -> None:
        self.world.truth.add_reference(digest, when)

    def _put(self, rtype, namespace: str, name: str, body: dict, created: datetime) -> None:
        body.setdefault("metadata", {}).setdefault("uid", object_uid(rtype.plural, namespace, name, rfc3339(created)))
        body["metadata"].setdefault("resourceVersion", str(int(created.timestamp())))
        self.kube[rtype].put(TimelineObject(namespace, name, body, created))

    def _remove(self, rtype, namespace: str, name: str, when: datetime) -> None:
        self.kube[rtype].remove(namespace, name, when)

    def _ref(self, repo: str, digest: str) -> str:
        return f"{INTERNAL_REGISTRY}/{repo}@{digest}"

    def _next_commit(self, app: str) -> str:
        self._commit += 1
        return hashlib.sha1(f"{self.seed}-{app}-{self._commit}".encode()).hexdigest()

    # ================================================================== images
    def _push_image(self, repo: str, when: datetime, *, layers: list[tuple[str, int]], labels: dict[str, str],
                    kind: str, media_type: str = oci.DOCKER_MANIFEST, architecture: str = "amd64",
                    subject: str | None = None, artifact: str | None = None) -> SimImage:
        blobs = self.world.blobs
        layer_type = oci.DOCKER_LAYER if media_type == oci.DOCKER_MANIFEST else oci.OCI_LAYER
        if artifact is not None:
            layer_type = artifact
        config_bytes = oci.image_config(
            architecture=architecture, os="linux", created=rfc3339(when), labels=labels,
            diff_ids=["sha256:" + hashlib.sha256(d.encode()).hexdigest() for d, _ in layers],
            history_note=f"built for {repo}")
        config_type = oci.DOCKER_CONFIG if media_type == oci.DOCKER_MANIFEST else oci.OCI_CONFIG
        if artifact is not None:
            config_bytes = b"{}"
            config_type = oci.OCI_EMPTY
        config_digest = blobs.add_bytes(config_bytes)
        subject_descriptor = None
        if subject is not None:
            subject_image = self.world.images[subject]
            subject_descriptor = oci.Descriptor(subject_image.media_type, subject, len(subject_image.manifest))
        manifest = oci.image_manifest(
            media_type, oci.Descriptor(config_type, config_digest, len(config_bytes)),
            [oci.Descriptor(layer_type, d, size) for d, size in layers],
            subject=subject_descriptor, artifact_type=artifact)
        digest = oci.sha256_digest(manifest)
        image = SimImage(digest=digest, repository=repo, media_type=media_type, manifest=manifest,
                         created=when, config_digest=config_digest,
                         layers=[(d, size, layer_type) for d, size in layers], architecture=architecture,
                         labels=labels, subject=subject, kind=kind, config_size=len(config_bytes))
        self.world.images[digest] = image
        if when >= self.start:
            self.push_counts[(when.date().isoformat(), repo, digest, None, "nonprod")] += 1
        return image

    def _layer(self, size: int, salt: str) -> tuple[str, int]:
        return self.world.blobs.add_synthetic(size, f"{self.seed}/{salt}"), size

    # ================================================================== namespaces
    def _namespaces(self) -> None:
        created = self.start - timedelta(days=400)
        spaces: dict[str, dict[str, str]] = {
            "openshift": {"env": "platform", "tier": "platform"},
            "infra-agents": {"env": "prod", "tier": "platform"},
        }
        for team_index in range(self.scale.teams):
            team = f"team{team_index:03d}" if self.scale.teams > 9 else f"team-{'abcdefghi'[team_index]}"
            for env in ("dev", "staging", "prod"):
                spaces[f"{team}-{env}"] = {"env": env, "team": team, "tier": "gold" if env == "prod" else "bronze"}
            spaces[f"{team}-dr"] = {"env": "prod", "team": team, "tier": "gold", "dr": "true"}
        for name, labels in spaces.items():
            labels = {"kubernetes.io/metadata.name": name, **labels}
            self.world.namespaces[name] = labels
            body = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels, "creationTimestamp": rfc3339(created),
                                 "annotations": {"openshift.io/requester": "platform-admin"}},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            if name == "team-a-prod" or name == "team000-prod":
                body["metadata"]["annotations"]["registry-lifecycle/legal-hold"] = "audit-2026-017"
            self._put(resources.NAMESPACES, "", name, body, created)

    # ================================================================== base images
    def _base_images(self) -> None:
        rng = random.Random(f"base-{self.seed}")
        for base in BASE_IMAGES:
            os_layer = {"ubi9": 78, "python-311": 78, "nodejs-20": 78, "openjdk-17": 78}[base] * MiB
            runtime_mb = {"ubi9": 0, "python-311": 140, "nodejs-20": 110, "openjdk-17": 190}[base]
            stream = self._stream("openshift", base, self.start - timedelta(days=200))
            versions = []
            # A new base build on the first Tuesday of each month, starting before the history.
            month = (self.start - timedelta(days=62)).replace(day=1)
            version = 0
            while month < self.end:
                tuesday = month + timedelta(days=(1 - month.weekday()) % 7)
                when = tuesday + timedelta(hours=9, minutes=rng.randrange(120))
                version += 1
                children = []
                for arch in ("amd64", "arm64"):
                    layers = [self._layer(os_layer + rng.randrange(4 * MiB), f"base/{base}/{version}/{arch}/os")]
                    if runtime_mb:
                        layers.append(self._layer(runtime_mb * MiB + rng.randrange(8 * MiB),
                                                  f"base/{base}/{version}/{arch}/runtime"))
                    child = self._push_image(
                        f"openshift/{base}", when, layers=layers, kind="index-child", media_type=oci.OCI_MANIFEST,
                        architecture=arch, labels={"name": base, "version": f"{version}", "vendor": "Red Hat"})
                    children.append(child)
                index_bytes = oci.image_index(oci.OCI_INDEX, [
                    oci.Descriptor(c.media_type, c.digest, len(c.manifest),
                                   platform={"architecture": c.architecture, "os": "linux"}) for c in children])
                index_digest = oci.sha256_digest(index_bytes)
                self.world.images[index_digest] = SimImage(
                    digest=index_digest, repository=f"openshift/{base}", media_type=oci.OCI_INDEX,
                    manifest=index_bytes, created=when, config_digest=None, layers=[],
                    children=[c.digest for c in children], kind="base")
                stream.tag("latest", index_digest, when)
                stream.tag(f"1.{version}", index_digest, when)
                versions.append((when, index_digest, children[0].digest))
                self.world.truth.mark("index_children", children[0].digest)
                self.world.truth.mark("index_children", children[1].digest)
                if version <= 2 and when < self.start + timedelta(days=30):
                    self.world.truth.mark("vulnerable", children[0].digest)
                month = (month + timedelta(days=32)).replace(day=1)
            self.base_versions[base] = versions

    def _base_at(self, base: str, when: datetime) -> tuple[str, str]:
        current = self.base_versions[base][0]
        for version in self.base_versions[base]:
            if version[0] <= when:
                current = version
        return current[1], current[2]

    # ================================================================== applications
    def _apps(self) -> list[App]:
        apps = []
        # Ordered so that even the tiny scale has one application of every kind.
        kinds = ["deployment", "deploymentconfig", "cronjob", "statefulset", "deployment", "deployment",
                 "deploymentconfig", "deployment"]
        words = ["orders", "billing", "search", "catalog", "auth", "ledger", "reports", "gateway", "notify",
                 "inventory", "pricing", "profile", "checkout", "media", "export", "ingest"]
        for team_index in range(self.scale.teams):
            team = f"team{team_index:03d}" if self.scale.teams > 9 else f"team-{'abcdefghi'[team_index]}"
            for app_index in range(self.scale.apps_per_team):
                rng = random.Random(f"app-{self.seed}-{team}-{app_index}")
                kind = kinds[(team_index * 3 + app_index) % len(kinds)]
                name = words[app_index % len(words)] + ("" if app_index < len(words) else f"-{app_index}")
                apps.append(App(
                    team=team, name=name, kind=kind, base=BASE_IMAGES[(team_index * 3 + app_index) % 4],
                    builds_per_week=(0.5 if kind in ("statefulset", "cronjob") else rng.uniform(1.5, 6.0)),
                    feature_builds_per_week=rng.uniform(0.5, 3.0) if kind != "statefulset" else 0.3,
                    release_every_days=rng.choice([7, 14, 14, 21, 28]),
                    tag_per_commit=rng.random() < 0.35,
                    library=rng.random() < 0.2,
                    dr=kind in ("deployment", "deploymentconfig") and rng.random() < 0.4,
                ))
        return apps

    def _build(self, app: App, when: datetime, ref: str, rng: random.Random) -> SimImage:
        dev_ns = f"{app.team}-dev"
        repo = f"{dev_ns}/{app.name}"
        base_index, base_child = self._base_at(app.base, when)
        base_layers = [(d, size) for d, size, _ in self.world.images[base_child].layers]
        # Dependencies change every few weeks; until then successive builds share the layer.
        if not app.deps_layer or rng.random() < 0.12:
            app.deps_size = int(rng.lognormvariate(math.log(40 * MiB), 0.8))
            app.deps_layer = f"deps/{app.team}/{app.name}/{when.isoformat()}"
        commit = self._next_commit(app.name)
        layers = base_layers + [self._layer(app.deps_size, app.deps_layer),
                                self._layer(int(rng.lognormvariate(math.log(6 * MiB), 1.0)) + 4096,
                                            f"code/{app.team}/{app.name}/{commit}")]
        kind = "feature" if ref.startswith("feature/") else "app"
        image = self._push_image(repo, when, layers=layers, kind=kind, labels={
            "io.openshift.build.commit.id": commit, "io.openshift.build.commit.ref": ref,
            "io.openshift.build.source-location": f"https://git.example.com/{app.team}/{app.name}.git",
            "org.opencontainers.image.revision": commit})
        if kind == "feature":
            self.world.truth.mark("feature_branch", image.digest)
        # The builder pulls its base image; the Build object records inputs and output.
        self._pull(when - timedelta(minutes=4), f"openshift/{app.base}", base_child, None, "nonprod")
        self._record_build(app, when, ref, commit, base_index, image)
        return image

    def _record_build(self, app: App, when: datetime, ref: str, commit: str, base_index: str, image: SimImage) -> None:
        ns = f"{app.team}-dev"
        config = self.builds_per_config[(ns, app.name)]
        number = len(config) + 1
        name = f"{app.name}-{number}"
        git_source = {"type": "Git", "git": {"uri": f"https://git.example.com/{app.team}/{app.name}.git", "ref": ref}}
        strategy = {"type": "Docker", "dockerStrategy": {"from": {"kind": "ImageStreamTag", "namespace": "openshift",
                                                                  "name": f"{app.base}:latest"}}}
        output_tag = "latest" if not ref.startswith("feature/") else "feature-" + ref.split("/", 1)[1]
        body = {
            "apiVersion": "build.openshift.io/v1", "kind": "Build",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": rfc3339(when - timedelta(minutes=6)),
                         "labels": {"buildconfig": app.name, "openshift.io/build-config.name": app.name},
                         "annotations": {"openshift.io/build.number": str(number)}},
            "spec": {"source": git_source, "strategy": strategy,
                     "revision": {"type": "Git", "git": {"commit": commit, "author": {"name": "dev"},
                                                         "message": f"change {number}"}},
                     "output": {"to": {"kind": "ImageStreamTag", "name": f"{app.name}:{output_tag}"}}},
            "status": {"phase": "Complete", "startTimestamp": rfc3339(when - timedelta(minutes=6)),
                       "completionTimestamp": rfc3339(when),
                       "outputDockerImageReference": f"{INTERNAL_REGISTRY}/{ns}/{app.name}:{output_tag}",
                       "output": {"to": {"imageDigest": image.digest}},
                       "config": {"kind": "BuildConfig", "namespace": ns, "name": app.name}},
        }
        self._put(resources.BUILDS, ns, name, body, when - timedelta(minutes=6))
        self._reference(base_index, when)
        config.append(name)
        # successfulBuildsHistoryLimit: 5 — older builds are pruned by the build controller.
        if len(config) > 5:
            self._remove(resources.BUILDS, ns, config[-6], when)
        if number == 1:
            self._put(resources.BUILD_CONFIGS, ns, app.name, {
                "apiVersion": "build.openshift.io/v1", "kind": "BuildConfig",
                "metadata": {"name": app.name, "namespace": ns, "creationTimestamp": rfc3339(when - timedelta(days=1))},
                "spec": {"source": {"type": "Git", "git": {"uri": git_source["git"]["uri"], "ref": "main"}},
                         "strategy": strategy, "successfulBuildsHistoryLimit": 5,
                         "output": {"to": {"kind": "ImageStreamTag", "name": f"{app.name}:latest"}},
                         "triggers": [{"type": "ImageChange", "imageChange": {}}, {"type": "ConfigChange"}]},
                "status": {"lastVersion": number}}, when - timedelta(days=1))

    # ------------------------------------------------------------------ controllers
    def _rollout(self, ctl: _Controller, image: SimImage, repo: str, when: datetime, rng: random.Random,
                 *, by_tag: str | None = None) -> None:
        """A new revision of a Deployment or DeploymentConfig: new RS/RC, old one scaled to 0."""
        digest = image.digest
        revision = len(ctl.revisions) + 1
        if ctl.kind == "deployment":
            child = f"{ctl.name}-{hashlib.sha1(f'{ctl.namespace}{digest}'.encode()).hexdigest()[:10]}"
            child_type = resources.REPLICA_SETS
        else:
            child = f"{ctl.name}-{revision}"
            child_type = resources.REPLICATION_CONTROLLERS
        existing = [r for r in ctl.revisions if r[0] == child]
        image_ref = f"{INTERNAL_REGISTRY}/{repo}:{by_tag}" if by_tag else self._ref(repo, digest)
        container = {"name": ctl.name, "image": image_ref if ctl.kind == "deployment" else self._ref(repo, digest),
                     "imagePullPolicy": "Always"}
        template = {"metadata": {"labels": {"app": ctl.name}}, "spec": {"containers": [container]}}
        previous = ctl.current
        if previous is not None and previous != child:
            self._scale_child(ctl, previous, 0, when)
        if existing:   # a rollback re-activates the old ReplicaSet
            self._scale_child(ctl, child, ctl.replicas, when)
        else:
            ctl.revisions.append((child, digest, when))
            self._child_body(ctl, child, child_type, template, revision, ctl.replicas, when)
            # revisionHistoryLimit: 10 — older scaled-down revisions are garbage-collected.
            while len(ctl.revisions) > 11:
                old = ctl.revisions.pop(0)
                self._remove(child_type, ctl.namespace, old[0], when)
        ctl.current = child
        self._reference(digest, when)
        self._controller_body(ctl, template, repo, digest, revision, when)
        self._pods(ctl, child, container["image"], digest, repo, when, rng)

    def _child_body(self, ctl: _Controller, child: str, child_type, template: dict, revision: int,
                    replicas: int, when: datetime) -> None:
        owner_kind = "Deployment" if ctl.kind == "deployment" else "DeploymentConfig"
        annotations = ({"deployment.kubernetes.io/revision": str(revision)} if ctl.kind == "deployment" else
                       {"openshift.io/deployment-config.name": ctl.name,
                        "openshift.io/deployment-config.latest-version": str(revision),
                        "openshift.io/deployment.phase": "Complete"})
        body = {
            "apiVersion": child_type.group_version, "kind": child_type.kind,
            "metadata": {"name": child, "namespace": ctl.namespace, "creationTimestamp": rfc3339(when),
                         "labels": {"app": ctl.name}, "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "apps/v1" if ctl.kind == "deployment" else "apps.openshift.io/v1",
                                              "kind": owner_kind, "name": ctl.name, "controller": True,
                                              "uid": object_uid(owner_kind, ctl.namespace, ctl.name)}]},
            "spec": {"replicas": replicas, "template": template,
                     "selector": ({"matchLabels": {"app": ctl.name}} if ctl.kind == "deployment" else {"app": ctl.name})},
            "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
        }
        self._put(child_type, ctl.namespace, child, body, when)

    def _scale_child(self, ctl: _Controller, child: str, replicas: int, when: datetime) -> None:
        child_type = resources.REPLICA_SETS if ctl.kind == "deployment" else resources.REPLICATION_CONTROLLERS
        body = self.kube[child_type].render(ctl.namespace, child, when)
        if body is None:
            return
        scaled = {**body, "spec": {**body["spec"], "replicas": replicas},
                  "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}}
        scaled["metadata"] = {**body["metadata"], "resourceVersion": str(int(when.timestamp()))}
        self.kube[child_type].put(TimelineObject(ctl.namespace, child, scaled, when))

    def _controller_body(self, ctl: _Controller, template: dict, repo: str, digest: str, revision: int,
                         when: datetime) -> None:
        created = ctl.revisions[0][2]
        if ctl.kind == "deployment":
            body = {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": ctl.name, "namespace": ctl.namespace, "creationTimestamp": rfc3339(created),
                                 "generation": revision, "labels": {"app": ctl.name},
                                 "annotations": {"deployment.kubernetes.io/revision": str(revision)}},
                    "spec": {"replicas": ctl.replicas, "revisionHistoryLimit": 10,
                             "selector": {"matchLabels": {"app": ctl.name}}, "template": template},
                    "status": {"replicas": ctl.replicas, "readyReplicas": ctl.replicas,
                               "observedGeneration": revision}}
            self._put(resources.DEPLOYMENTS, ctl.namespace, ctl.name, body, when)
        else:
            namespace, name = repo.split("/")
            tag = {"dev": "latest", "staging": "staging", "prod": "prod"}.get(ctl.env, "latest")
            body = {"apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
                    "metadata": {"name": ctl.name, "namespace": ctl.namespace, "creationTimestamp": rfc3339(created),
                                 "generation": revision, "labels": {"app": ctl.name}},
                    "spec": {"replicas": ctl.replicas, "revisionHistoryLimit": 10, "selector": {"app": ctl.name},
                             "strategy": {"type": "Rolling"}, "template": template,
                             "triggers": [{"type": "ConfigChange"}, {"type": "ImageChange", "imageChangeParams": {
                                 "automatic": True, "containerNames": [ctl.name],
                                 "from": {"kind": "ImageStreamTag", "namespace": namespace, "name": f"{name}:{tag}"},
                                 "lastTriggeredImage": self._ref(repo, digest)}}]},
                    "status": {"latestVersion": revision, "replicas": ctl.replicas, "observedGeneration": revision}}
            self._put(resources.DEPLOYMENT_CONFIGS, ctl.namespace, ctl.name, body, when)

    def _pods(self, ctl: _Controller, child: str, image_ref: str, digest: str, repo: str, when: datetime,
              rng: random.Random) -> None:
        cluster = CLUSTERS.get(ctl.env, "nonprod")
        for pod in ctl.pods:
            self._remove(resources.PODS, ctl.namespace, pod, when + timedelta(minutes=2))
        ctl.pods = []
        if ctl.replicas == 0:
            return
        for index in range(ctl.replicas):
            suffix = hashlib.sha1(f"{child}{index}{when}".encode()).hexdigest()[:5]
            pod = f"{child}-{suffix}"
            ctl.pods.append(pod)
            self._put(resources.PODS, ctl.namespace, pod, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": ctl.namespace, "creationTimestamp": rfc3339(when),
                             "labels": {"app": ctl.name},
                             "ownerReferences": [{"apiVersion": "apps/v1" if ctl.kind == "deployment" else "v1",
                                                  "kind": "ReplicaSet" if ctl.kind == "deployment" else "ReplicationController",
                                                  "name": child, "controller": True}]},
                "spec": {"containers": [{"name": ctl.name, "image": image_ref}],
                         "nodeName": f"worker-{rng.randrange(self.scale.nodes)}"},
                "status": {"phase": "Running", "startTime": rfc3339(when),
                           "containerStatuses": [{"name": ctl.name, "image": image_ref, "ready": True,
                                                  "imageID": self._ref(repo, digest)}]},
            }, when)
        self._pull(when, repo, digest, None, cluster, ctl.replicas)
        ctl.running_since = when
        ctl.running = (digest, repo)

    def _churn_pulls(self, ctl: _Controller, until: datetime) -> None:
        """Pods rescheduled to other nodes re-pull their image (imagePullPolicy: Always)."""
        running = ctl.running
        if running is None or ctl.running_since is None or ctl.replicas == 0:
            return
        days = (until - ctl.running_since).days
        if days <= 0:
            return
        rate = {"prod": 0.04, "staging": 0.06, "dev": 0.1}.get(ctl.env, 0.05)
        hits = self.np_rng.binomial(ctl.replicas, rate, size=days)
        for offset in np.nonzero(hits)[0]:
            when = ctl.running_since + timedelta(days=int(offset) + 1, hours=3)
            self._pull(when, running[1], running[0], None, CLUSTERS.get(ctl.env, "nonprod"), int(hits[offset]))

    # ------------------------------------------------------------------ one application's life
    def _simulate_app(self, app: App) -> None:
        rng = random.Random(f"life-{self.seed}-{app.team}-{app.name}")
        dev_ns, stage_ns, prod_ns = f"{app.team}-dev", f"{app.team}-staging", f"{app.team}-prod"
        created = self.start - timedelta(days=30)
        dev = self._stream(dev_ns, app.name, created)
        stage = self._stream(stage_ns, app.name, created)
        prod = self._stream(prod_ns, app.name, created)
        controllers: dict[str, _Controller] = {}
        if app.kind in ("deployment", "deploymentconfig"):
            for env, ns, replicas in (("dev", dev_ns, 1), ("staging", stage_ns, 2), ("prod", prod_ns, 3)):
                controllers[env] = _Controller(ns, app.name, app.kind, replicas, env)
        dr_ctl = _Controller(f"{app.team}-dr", app.name, "deployment", 0, "prod") if app.dr else None
        open_branches: list[str] = []
        latest_main: SimImage | None = None
        next_release = self.start + timedelta(days=rng.randrange(app.release_every_days))
        pending_prod: list[tuple[datetime, str, SimImage]] = []
        version = [1, rng.randrange(3, 12), 0]
        prod_history: list[SimImage] = []

        def release_version() -> str:
            version[2] += 1
            if rng.random() < 0.15:
                version[1] += 1
                version[2] = 0
            return f"v{version[0]}.{version[1]}.{version[2]}"

        # The image that was running when the history starts.
        first = self._build(app, self.start - timedelta(days=3), "main", rng)
        dev.tag("latest", first.digest, first.created)
        latest_main = first
        for env, ctl in controllers.items():
            stream = {"dev": dev, "staging": stage, "prod": prod}[env]
            if env != "dev":
                stream.tag(env, first.digest, first.created,
                           spec_from={"kind": "ImageStreamImage", "namespace": dev_ns, "name": f"{app.name}@{first.digest}"})
            self._rollout(ctl, first, stream.repository, first.created + timedelta(hours=1), rng,
                          by_tag=None)
        prod.tag("v1.0.0", first.digest, first.created)
        prod_history.append(first)

        for day in self._days():
            weekday_factor = 1.0 if day.weekday() < 5 else 0.08
            # -- main builds (weekly CI rhythm) --------------------------------------
            for _ in range(self.np_rng.poisson(app.builds_per_week / 5 * weekday_factor)):
                when = self._at_work(day, rng)
                image = self._build(app, when, "main", rng)
                dev.tag("latest", image.digest, when)
                if app.tag_per_commit:
                    dev.tag("main-" + image.labels["io.openshift.build.commit.id"][:7], image.digest, when)
                self._pull(when + timedelta(minutes=12), dev.repository, image.digest, "latest", "nonprod")  # CI test
                latest_main = image
                if "dev" in controllers:
                    self._churn_pulls(controllers["dev"], when)
                    self._rollout(controllers["dev"], image, dev.repository, when + timedelta(minutes=20), rng)
            # -- feature branches: pulled by CI the same day, never deployed -----------
            for _ in range(self.np_rng.poisson(app.feature_builds_per_week / 5 * weekday_factor)):
                when = self._at_work(day, rng)
                if open_branches and rng.random() < 0.45:
                    branch = rng.choice(open_branches)
                else:
                    branch = f"{rng.choice(['fix', 'feat', 'chore'])}-{rng.randrange(100, 9999)}"
                    open_branches.append(branch)
                    if len(open_branches) > 6:
                        open_branches.pop(0)
                image = self._build(app, when, f"feature/{branch}", rng)
                dev.tag(f"feature-{branch}", image.digest, when)
                self._pull(when + timedelta(minutes=10), dev.repository, image.digest, f"feature-{branch}",
                           "nonprod", rng.randint(1, 3))
            # -- releases: promotion by re-tagging the same digest ---------------------
            if day >= next_release and latest_main is not None and day.weekday() < 5:
                when = self._at_work(day, rng)
                tag = release_version()
                spec_from = {"kind": "ImageStreamImage", "namespace": dev_ns, "name": f"{app.name}@{latest_main.digest}"}
                stage.tag(tag, latest_main.digest, when, spec_from=spec_from)
                stage.tag("staging", latest_main.digest, when, spec_from=spec_from)
                self.world.truth.mark("promoted", latest_main.digest)
                if "staging" in controllers:
                    self._churn_pulls(controllers["staging"], when)
                    self._rollout(controllers["staging"], latest_main, stage.repository, when + timedelta(minutes=5), rng)
                pending_prod.append((when + timedelta(days=rng.randint(2, 6), hours=rng.randint(0, 3)), tag, latest_main))
                next_release = day + timedelta(days=app.release_every_days + rng.randint(-2, 3))
            for item in [p for p in pending_prod if p[0] <= day + timedelta(days=1)]:
                pending_prod.remove(item)
                when, tag, image = item
                self._promote_to_prod(app, prod, tag, image, when, controllers, prod_history, rng)
                app.releases.append((when, tag, image.digest))
            # -- disaster-recovery copy, refreshed at the start of each quarter --------
            if dr_ctl is not None and day.day == 2 and day.month in (1, 4, 7, 10) and prod_history:
                self._rollout(dr_ctl, prod_history[-1], prod.repository, day + timedelta(hours=6), rng)
                self.world.truth.mark("dr", prod_history[-1].digest)
            if dr_ctl is not None and not dr_ctl.revisions and prod_history:
                self._rollout(dr_ctl, prod_history[-1], prod.repository, self.start - timedelta(days=20), rng)
                self.world.truth.mark("dr", prod_history[-1].digest)
            # -- monthly batch job ------------------------------------------------------
            if app.kind == "cronjob":
                self._cron_day(app, prod, day, prod_history, rng)
        for ctl in controllers.values():
            self._churn_pulls(ctl, self.end)
        for ctl in controllers.values():
            for child, digest, _ in ctl.revisions[:-1]:
                if child != ctl.current:
                    self.world.truth.mark("rollback_target", digest)
        if app.kind == "statefulset":
            self._statefulset(app, prod, prod_history, rng)

    def _promote_to_prod(self, app: App, prod: SimStream, tag: str, image: SimImage, when: datetime,
                         controllers: dict[str, _Controller], prod_history: list[SimImage],
                         rng: random.Random) -> None:
        spec_from = {"kind": "ImageStreamImage", "namespace": f"{app.team}-staging", "name": f"{app.name}@{image.digest}"}
        prod.tag(tag, image.digest, when, spec_from=spec_from)
        prod.tag("prod", image.digest, when, spec_from=spec_from)
        prod_history.append(image)
        self._sign(prod, image, when + timedelta(minutes=3))
        if "prod" in controllers:
            ctl = controllers["prod"]
            self._churn_pulls(ctl, when)
            self._rollout(ctl, image, prod.repository, when + timedelta(minutes=15), rng)
            # Now and then a bad release is rolled back to the previous ReplicaSet a day later.
            if len(ctl.revisions) > 1 and rng.random() < 0.08:
                previous_child, previous_digest, _ = ctl.revisions[-2]
                back = when + timedelta(days=1, hours=rng.randint(0, 6))
                if back < self.end:
                    self._churn_pulls(ctl, back)
                    self._rollout(ctl, self.world.images[previous_digest], prod.repository, back, rng)
                    self.world.truth.mark("rolled_back_to", previous_digest)

    def _sign(self, stream: SimStream, image: SimImage, when: datetime) -> None:
        """cosign: a signature manifest tagged sha256-<hex>.sig, plus an SBOM referrer with `subject`."""
        payload = self.world.blobs.add_bytes(
            oci.canonical({"critical": {"identity": {"docker-reference": f"{INTERNAL_REGISTRY}/{stream.repository}"},
                                        "image": {"docker-manifest-digest": image.digest},
                                        "type": "cosign container image signature"}, "optional": None}))
        size = self.world.blobs.size(payload) or 0
        signature = self._push_image(stream.repository, when, layers=[(payload, size)], kind="signature",
                                     media_type=oci.OCI_MANIFEST, labels={})
        signature.subject = image.digest
        stream.tag(f"sha256-{image.digest.split(':', 1)[1]}.sig", signature.digest, when)
        sbom_blob = self.world.blobs.add_bytes(oci.canonical({"spdxVersion": "SPDX-2.3", "name": image.digest,
                                                             "packages": [{"name": stream.name}]}))
        sbom = self._push_image(stream.repository, when, layers=[(sbom_blob, self.world.blobs.size(sbom_blob) or 0)],
                                kind="sbom", media_type=oci.OCI_MANIFEST, labels={}, subject=image.digest,
                                artifact=oci.SPDX_SBOM)
        stream.extra_links[sbom.digest] = when
        self.world.truth.mark("signature", signature.digest)
        self.world.truth.mark("sbom", sbom.digest)
        self.world.truth.mark("signed", image.digest)

    def _cron_day(self, app: App, prod: SimStream, day: datetime, prod_history: list[SimImage],
                  rng: random.Random) -> None:
        """A monthly CronJob: created before the history, runs one Job a month (one pull)."""
        ns = f"{app.team}-prod"
        cron_day = 1 + (sum(map(ord, app.name)) % 27)
        tag_ref = f"{INTERNAL_REGISTRY}/{prod.repository}:prod"
        if day == self.start:
            created = self.start - timedelta(days=60)
            self._put(resources.CRON_JOBS, ns, app.name, {
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": app.name, "namespace": ns, "creationTimestamp": rfc3339(created)},
                "spec": {"schedule": f"0 3 {cron_day} * *", "suspend": False, "concurrencyPolicy": "Forbid",
                         "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                         "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                                                        "containers": [{"name": app.name, "image": tag_ref}]}}}}},
            }, created)
            if not any(rtype_key[1].endswith("-quarterly") for rtype_key in self.kube[resources.CRON_JOBS].keys(day)):
                # A quarterly report job, suspended between quarters and pinned by digest to an
                # old release that nothing else uses any more.
                old = prod_history[0]
                self._put(resources.CRON_JOBS, ns, f"{app.name}-quarterly", {
                    "apiVersion": "batch/v1", "kind": "CronJob",
                    "metadata": {"name": f"{app.name}-quarterly", "namespace": ns,
                                 "creationTimestamp": rfc3339(created)},
                    "spec": {"schedule": "0 4 1 1,4,7,10 *", "suspend": True,
                             "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [
                                 {"name": app.name, "image": self._ref(prod.repository, old.digest)}]}}}}},
                }, created)
                self._reference(old.digest, created)
                self.world.truth.mark("suspended_cronjob", old.digest)
        if day.day != cron_day:
            return
        image = prod_history[-1]
        when = day + timedelta(hours=3)
        job = f"{app.name}-{int(when.timestamp()) // 60}"
        self._put(resources.JOBS, ns, job, {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job, "namespace": ns, "creationTimestamp": rfc3339(when),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": app.name,
                                              "controller": True}]},
            "spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                           "containers": [{"name": app.name, "image": tag_ref}]}}},
            "status": {"succeeded": 1, "startTime": rfc3339(when),
                       "completionTime": rfc3339(when + timedelta(minutes=rng.randint(3, 40)))}}, when)
        pod = f"{job}-{rng.randrange(10**4, 10**5)}"
        self._put(resources.PODS, ns, pod, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": ns, "creationTimestamp": rfc3339(when),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "controller": True}]},
            "spec": {"containers": [{"name": app.name, "image": tag_ref}], "restartPolicy": "OnFailure"},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": app.name, "image": tag_ref, "ready": False, "imageID": self._ref(prod.repository, image.digest)}]},
        }, when)
        self._pull(when, prod.repository, image.digest, "prod", "prod-east")
        self.world.truth.mark("cronjob", image.digest)
        jobs = sorted(key for key in self.kube[resources.JOBS].keys(when, ns) if key[1].startswith(app.name + "-"))
        for _, old_job in jobs[:-3]:
            self._remove(resources.JOBS, ns, old_job, when + timedelta(minutes=1))
            for pod_ns, pod_name in self.kube[resources.PODS].keys(when, ns):
                if pod_name.startswith(old_job + "-"):
                    self._remove(resources.PODS, pod_ns, pod_name, when + timedelta(minutes=1))

    def _statefulset(self, app: App, prod: SimStream, prod_history: list[SimImage], rng: random.Random) -> None:
        ns = f"{app.team}-prod"
        releases = [(self.start - timedelta(days=3), prod_history[0])] + [
            (when, self.world.images[digest]) for when, _, digest in app.releases]
        for index, (when, image) in enumerate(releases):
            body = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": app.name, "namespace": ns, "generation": index + 1,
                                 "creationTimestamp": rfc3339(releases[0][0])},
                    "spec": {"replicas": 3, "serviceName": app.name, "selector": {"matchLabels": {"app": app.name}},
                             "template": {"metadata": {"labels": {"app": app.name}}, "spec": {"containers": [
                                 {"name": app.name, "image": self._ref(prod.repository, image.digest)}]}}},
                    "status": {"replicas": 3, "readyReplicas": 3}}
            self._put(resources.STATEFUL_SETS, ns, app.name, body, when)
            self._reference(image.digest, when)
            self._pull(when, prod.repository, image.digest, None, "prod-east", 3)

    def _infra_daemonset(self) -> None:
        """A node agent on every node: one rollout pulls the image once per node."""
        rng = random.Random(f"infra-{self.seed}")
        stream = self._stream("infra-agents", "node-exporter", self.start - timedelta(days=60))
        when = self.start - timedelta(days=2)
        while when < self.end:
            base_index, base_child = self._base_at("ubi9", when)
            layers = [(d, size) for d, size, _ in self.world.images[base_child].layers]
            layers.append(self._layer(24 * MiB + rng.randrange(MiB), f"agent/{when.isoformat()}"))
            image = self._push_image(stream.repository, when, layers=layers, kind="app",
                                     labels={"io.openshift.build.commit.ref": "main"})
            stream.tag("latest", image.digest, when)
            body = {"apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": "node-exporter", "namespace": "infra-agents",
                                 "creationTimestamp": rfc3339(self.start - timedelta(days=60))},
                    "spec": {"selector": {"matchLabels": {"app": "node-exporter"}},
                             "template": {"metadata": {"labels": {"app": "node-exporter"}}, "spec": {"containers": [
                                 {"name": "agent", "image": self._ref(stream.repository, image.digest)}]}}},
                    "status": {"desiredNumberScheduled": self.scale.nodes, "numberReady": self.scale.nodes}}
            self._put(resources.DAEMON_SETS, "infra-agents", "node-exporter", body, when)
            self._reference(image.digest, when)
            self._pull(when + timedelta(minutes=5), stream.repository, image.digest, None, "prod-east", self.scale.nodes)
            when += timedelta(days=rng.randint(35, 70))

    # ================================================================== sweeps over everything
    def _scanner_sweeps(self) -> None:
        """Monthly: the scanner pulls every tagged image of staging and prod. Quarterly: a
        compliance mirror pulls every version of the repositories in its scope at once.

        The scope is a fixed quarter of the repositories, as a real mirror's configured list is:
        a burst that struck repositories at random each quarter would be noise that nothing in
        the history can foresee, where a real one shows up, quarter after quarter, in the
        repository's own pulls."""
        rng = random.Random(f"scanner-{self.seed}")
        in_scope = {repo: rng.random() < 0.25 for repo in sorted(self.world.streams)}
        for day in self._days():
            monthly = day.day == 1
            quarterly = day.day == 5 and day.month in (2, 5, 8, 11)
            if not (monthly or quarterly):
                continue
            when = day + timedelta(hours=1)
            for stream in self.world.streams.values():
                env = self.world.namespaces.get(stream.namespace, {}).get("env")
                burst = quarterly and in_scope[stream.repository]
                if monthly and env in ("staging", "prod"):
                    for tag, history in stream.tags.items():
                        items = history.at(when)
                        if items and not tag.endswith(".sig") and self.world.images[items[0].digest].exists_at(when):
                            self._pull(when, stream.repository, items[0].digest, tag, "scanner")
                if burst:
                    seen = set()
                    for history in stream.tags.values():
                        for item in history.at(when):
                            if item.digest not in seen and self.world.images[item.digest].exists_at(when):
                                seen.add(item.digest)
                                self._pull(when, stream.repository, item.digest, None, "scanner")

    def _library_pulls(self, apps: list[App]) -> None:
        """Other teams keep pulling old releases of "library" images, less and less often."""
        for app in apps:
            if not app.library:
                continue
            rng = np.random.default_rng(int(hashlib.sha1(f"{self.seed}/{app.team}/{app.name}".encode()).hexdigest()[:8], 16))
            repo = f"{app.team}-prod/{app.name}"
            for released, tag, digest in app.releases:
                days = (self.end - released).days
                if days <= 0:
                    continue
                ages = np.arange(1, days + 1)
                hits = rng.random(days) < 0.25 / np.sqrt(ages)
                for age in ages[hits]:
                    self._pull(released + timedelta(days=int(age), hours=10), repo, digest, tag, "partner")

    def _feature_cleanup(self) -> None:
        """The team's own monthly cron deletes feature tags idle for 30 days (and their images)."""
        for day in self._days():
            if day.day != 15:
                continue
            when = day + timedelta(hours=2)
            for stream in self.world.streams.values():
                for tag, history in stream.tags.items():
                    if not tag.startswith("feature-") or history.removed is not None:
                        continue
                    items = history.at(when)
                    if items and items[0].created < when - timedelta(days=30):
                        history.removed = when
                        for item in items:
                            image = self.world.images[item.digest]
                            if image.kind == "feature" and image.removed is None:
                                image.removed = when

    # ================================================================== storage and wrap-up
    def _storage_series(self) -> None:
        """Registry PVC usage: live blobs plus garbage that the weekly GC (Sunday 03:00) frees."""
        events: list[tuple[float, int, str]] = []
        for image in self.world.images.values():
            blobs = [d for d, _, _ in image.layers] + ([image.config_digest] if image.config_digest else [])
            for digest in blobs:
                events.append((image.created.timestamp(), +1, digest))
                if image.removed is not None:
                    events.append((image.removed.timestamp(), -1, digest))
        events.sort(key=lambda e: (e[0], -e[1]))
        sizes = {d: self.world.blobs.size(d) or 0 for _, _, d in events}
        step = 300
        grid = np.arange(self.start.timestamp(), self.end.timestamp(), step)
        used = np.zeros(len(grid))
        refcount: dict[str, int] = defaultdict(int)
        live = garbage = 0
        rng = np.random.default_rng(self.seed + 17)
        event_index = 0
        next_gc = self.start + timedelta(days=(6 - self.start.weekday()) % 7, hours=3)
        for i, ts in enumerate(grid):
            while event_index < len(events) and events[event_index][0] <= ts:
                _, delta, digest = events[event_index]
                before = refcount[digest]
                refcount[digest] += delta
                if before == 0 and delta > 0:
                    live += sizes[digest]
                elif refcount[digest] == 0 and delta < 0:
                    live -= sizes[digest]
                    garbage += sizes[digest]
                event_index += 1
            if ts >= next_gc.timestamp():
                garbage = 0
                next_gc += timedelta(days=7)
            # Interrupted pushes leave upload directories behind until the next GC.
            if rng.random() < 0.004:
                garbage += int(rng.lognormal(math.log(300 * MiB), 0.7))
            used[i] = live + garbage
        final = used[grid <= self.until.timestamp()]
        first_capacity = max(GiB, math.ceil(final[len(final) // 2] * 1.3 / (10 * GiB)) * 10 * GiB)
        resize_at = self.start + timedelta(days=int((self.until - self.start).days * 0.55))
        capacity = np.where(grid < resize_at.timestamp(), first_capacity, first_capacity * 2).astype(float)
        labels = {"namespace": "openshift-image-registry", "persistentvolumeclaim": "image-registry-storage",
                  "node": "worker-0", "job": "kubelet", "service": "kubelet"}
        self.world.storage = [
            Series("kubelet_volume_stats_used_bytes", dict(labels), grid.tolist(), used.tolist()),
            Series("kubelet_volume_stats_capacity_bytes", dict(labels), grid.tolist(), capacity.tolist()),
            Series("kubelet_volume_stats_available_bytes", dict(labels), grid.tolist(), (capacity - used).tolist()),
        ]
        self.world.pvc_resized_at = resize_at

    def _finish(self) -> None:
        self._storage_series()
        images = self.world.images
        self.world.pulls = sorted(
            (PullRecord(day=day, repository=repo, digest=digest, tag=tag, cluster=cluster, pulls=count,
                        media_type=images[digest].media_type, size=len(images[digest].manifest))
             for (day, repo, digest, tag, cluster), count in self.pull_counts.items()),
            key=lambda r: (r.day, r.repository, r.digest, r.cluster))
        self.world.pushes = sorted(
            (PullRecord(day=day, repository=repo, digest=digest, tag=tag, cluster=cluster, pulls=count,
                        media_type=images[digest].media_type, size=len(images[digest].manifest))
             for (day, repo, digest, tag, cluster), count in self.push_counts.items()),
            key=lambda r: (r.day, r.repository, r.digest))
        self.world.truth.finish()
        self.world.kube = dict(self.kube)
        self.world.kube[resources.IMAGES] = ImageSource(self.world)          # type: ignore[assignment]
        self.world.kube[resources.IMAGE_STREAMS] = ImageStreamSource(self.world)  # type: ignore[assignment]


def build_world(*, seed: int = 7, scale: str = "tiny", days: int = 180, until: datetime | date | None = None,
                future_days: int = 120) -> World:
    """The sandbox's world for a seed and scale, identical for identical arguments."""
    builder = ScenarioBuilder(seed=seed, scale=scale, days=days, until=until, future_days=future_days)
    full = builder.scale
    if not full.template_teams:
        return builder.build()
    from dataclasses import replace

    from .replicate import replicate

    if full.teams % full.template_teams or full.template_teams < 10:
        raise ValueError("a replicated scale needs teams = a multiple of template_teams, and at least 10 "
                         "template teams (named teamNNN)")
    builder.scale = replace(full, teams=full.template_teams)
    return replicate(builder.build(), template_teams=full.template_teams, copies=full.teams // full.template_teams)
