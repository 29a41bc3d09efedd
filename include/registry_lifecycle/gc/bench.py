"""The scoring benchmark (`reglife bench --stage score`): features, reuse scores and the plan at scale.

DESIGN.md's target: a snapshot of 1,000,000 tag revisions (300,000 images, 200,000 workload
references, 100 million pull events) scored and planned in under 60 s on 2 cores, with peak RSS
under 4 GiB. Going through the sandbox's HTTP APIs would measure the extraction again (that is
`--stage extract`), so the snapshot and the pull history are built here directly, vectorised,
as the frames the lake hands back: the contracts' Arrow types, pandas' Arrow-backed strings,
pulls_daily with the four columns `History` reads.

What is timed is exactly what a nightly run does after reading the lake: compact the pull
history, build every image's features, score them with a fitted reuse model, and make the plan
(protections, blob graph, ranking, caps, reasons, plan id). Training is timed apart: in
production it runs on the stored history's labelled dates, here on synthetic labels, only so
that a fitted model (not the fallback priors) does the scoring.

The world is plain but has the shapes that cost: Zipf-sized repositories, a dozen moving tags
per repository with revision chains, shared base layers, multi-arch indexes with children,
signatures with `sha256-<hex>.sig` tags, rollback ReplicaSets, builds, scans, and pulls
concentrated on a fifth of the images.
"""
from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from datetime import date, datetime, time as clock, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Policy
from ..datasets import ALL
from ..sources.registry import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from .features import PullHistory, RegistryState, build_features, distinct
from .plan import SnapshotIdentity, make_plan
from .reuse_model import ReuseModel, fit_reuse_model
from .run import CANDIDATE_DECISIONS, scored_frame

TAG_REVISIONS = {"tiny": 10_000, "S": 100_000, "M": 300_000, "L": 1_000_000}
IMAGES_PER_REVISION = 0.3
REFERENCES_PER_IMAGE = 2 / 3
PULL_ROWS_PER_REVISION = 10          # (digest, repository, day) rows; 10 pulls a row on average
HISTORY_DAYS = 180
AS_OF = date(2026, 11, 27)
TAG_NAMES = ("latest", "main", "develop", "stable", "prod", "nightly", "feature-login", "feature-search",
             "release-2.1", "v1.4.0", "v1.4.1", "v2.0.0")
TAG_WEIGHTS = np.array([8, 6, 4, 2, 2, 3, 2, 2, 1, 1, 1, 1], dtype=float)
ENVIRONMENTS = ("dev", "staging", "prod")
BASE_IMAGES = 20
MiB = 2**20


def _digests(rng: np.random.Generator, count: int) -> pa.Array:
    """`count` distinct-looking sha256 digests as an Arrow string array."""
    hexes = np.frombuffer(rng.bytes(32 * count).hex().encode(), dtype="S64")
    digests = pa.array(np.char.add(b"sha256:", hexes), type=pa.binary()).cast(pa.string())
    return digests.combine_chunks() if isinstance(digests, pa.ChunkedArray) else digests


def _table(dataset: str, columns: dict[str, pa.Array | np.ndarray | list]) -> pd.DataFrame:
    """Columns in the dataset's contract types, handed over as `Lake.read` returns them."""
    schema = pa.schema([ALL[dataset].schema.field(name) for name in columns])
    arrays = [values.cast(field.type) if isinstance(values, (pa.Array, pa.ChunkedArray))
              else pa.array(values, type=field.type) for values, field in zip(columns.values(), schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema).to_pandas()


def _where(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """`values` where `mask`, null elsewhere."""
    return pc.if_else(pa.array(mask), values, pa.nulls(len(values), pa.string()))


def _timestamps(days_before: np.ndarray) -> np.ndarray:
    end = np.datetime64(datetime.combine(AS_OF, clock(23, 59, 59)).isoformat(), "us")
    return end - (days_before * 86_400e6).astype("timedelta64[us]")


@dataclass(frozen=True)
class SyntheticRegistry:
    """A snapshot as the lake returns it and the pulls_daily columns History reads."""

    state: RegistryState
    pulls: pd.DataFrame
    first_day: date

    @property
    def sizes(self) -> dict[str, int]:
        state = self.state
        return {"tag_revisions": len(state.tags), "images": len(state.images), "layers": len(state.layers),
                "references": len(state.references), "builds": len(state.builds), "scans": len(state.scans),
                "namespaces": len(state.namespaces), "pull_rows": len(self.pulls),
                "pull_events": int(self.pulls["pulls"].sum())}


def synthetic_registry(tag_revisions: int = 1_000_000, *, seed: int = 0) -> SyntheticRegistry:
    """A registry of about `tag_revisions` tag revisions with its snapshot frames and pull history."""
    rng = np.random.default_rng(seed)
    images = max(int(tag_revisions * IMAGES_PER_REVISION), 100)
    repositories = max(images // 70, 10)
    teams = max(repositories // 22, 2)

    # Repositories "team-T-ENV/app-R", Zipf-sized; images sorted by repository, oldest first.
    repo_team, repo_env = np.arange(repositories) % teams, (np.arange(repositories) // teams) % len(ENVIRONMENTS)
    repo_names = np.array([f"team-{team}-{ENVIRONMENTS[env]}/app-{number}"
                           for number, (team, env) in enumerate(zip(repo_team, repo_env, strict=True))], dtype=object)
    weights = 1.0 / np.arange(1, repositories + 1) ** 0.8
    image_repo = np.sort(rng.choice(repositories, size=images, p=weights / weights.sum()))
    age = np.minimum(rng.exponential(200, images), 900)
    order = np.lexsort((-age, image_repo))
    image_repo, age = image_repo[order], age[order]
    digest = _digests(rng, images)
    same_repo_next = np.r_[image_repo[1:] == image_repo[:-1], False]

    # 2% indexes list the next two manifests of their repository; 3% are signatures of the previous one.
    kind = rng.random(images)
    is_index = (kind < 0.02) & same_repo_next & np.r_[same_repo_next[1:], False]
    is_signature = (kind > 0.97) & np.r_[False, image_repo[1:] == image_repo[:-1]] & ~is_index
    index_of = np.full(images, -1)
    for step in (1, 2):
        index_of[np.flatnonzero(is_index) + step] = np.flatnonzero(is_index)
    is_signature &= index_of < 0
    index_of[is_index | is_signature] = -1
    subject_of = np.where(is_signature, np.arange(images) - 1, -1)
    is_signature &= ~is_index[np.maximum(subject_of, 0)] | (subject_of < 0)
    subject_of[~is_signature] = -1
    media_type = np.where(is_index, OCI_INDEX, np.where(is_signature, OCI_MANIFEST, DOCKER_MANIFEST))

    # Layers: the team's base image (3 shared layers), 2 own layers and a config blob.
    base = repo_team[image_repo] % BASE_IMAGES
    base_layers = _digests(rng, BASE_IMAGES * 3)
    base_sizes = rng.integers(20 * MiB, 300 * MiB, BASE_IMAGES * 3)
    layered = np.flatnonzero(~is_index)
    own = len(layered)
    own_layers = _digests(rng, own * 3)           # two layers and a config blob per image
    own_sizes = np.where(is_signature[layered, None], 800,
                         rng.lognormal(np.log(15 * MiB), 1.2, (own, 3))).astype(np.int64)
    own_sizes[:, 2] = rng.integers(2_000, 12_000, own)
    base_rows = np.where(is_signature[layered], 0, 3)
    base_image = np.repeat(layered, base_rows)
    base_position = np.arange(len(base_image)) - np.repeat(np.cumsum(base_rows) - base_rows, base_rows)
    base_slot = base[base_image] * 3 + base_position
    layer_image = np.concatenate([base_image, np.repeat(layered, 3)])
    layer_digest = pa.concat_arrays([base_layers.take(pa.array(base_slot)), own_layers])
    layer_size = np.concatenate([base_sizes[base_slot], own_sizes.ravel()])
    layer_position = np.concatenate([base_position, np.tile([3, 4, -1], own)])
    size_bytes = np.bincount(layer_image, weights=layer_size, minlength=images).astype(np.int64)
    size_bytes[is_index] = 1_200
    config_digest = _where(~is_index, own_layers.take(pa.array(np.maximum(np.cumsum(~is_index) * 3 - 1, 0))))

    build_ref = np.where(rng.random(images) < 0.3, "feature/search", "main")
    labels = np.char.add(np.char.add('{"io.openshift.build.commit.ref": "', build_ref.astype(str)), '"}')
    images_frame = _table("images", {
        "digest": digest, "repository": repo_names[image_repo], "media_type": media_type, "size_bytes": size_bytes,
        "config_digest": config_digest, "created_at": _timestamps(age),
        "architecture": np.where(is_index, None, "amd64"), "os": np.where(is_index, None, "linux"),
        "labels": labels.astype(object),
        "subject_digest": _where(subject_of >= 0, digest.take(pa.array(np.maximum(subject_of, 0)))),
        "index_digest": _where(index_of >= 0, digest.take(pa.array(np.maximum(index_of, 0)))),
        "managed": np.ones(images, dtype=bool)})
    layers_frame = _table("layers", {"image_digest": digest.take(pa.array(layer_image)), "layer_digest": layer_digest,
                                     "size_bytes": layer_size, "position": layer_position})

    # Tag revisions: 85% of the taggable images carry tags of their repository, distinct per
    # image, to `tag_revisions` rows in all; revision = rank among the tag's images, newest
    # first. Signatures get their cosign tag.
    signature_rows = np.flatnonzero(is_signature)
    wanted = max(tag_revisions - len(signature_rows), 1)
    tagged = np.flatnonzero(~is_signature & (index_of < 0) & (rng.random(images) < 0.85))
    draws = int(wanted * 2)
    pair = distinct(rng.choice(tagged, size=draws).astype(np.int64) * len(TAG_NAMES)
                     + rng.choice(len(TAG_NAMES), size=draws, p=TAG_WEIGHTS / TAG_WEIGHTS.sum()))
    pair = np.sort(rng.permutation(pair)[:wanted])
    row_image, row_tag = pair // len(TAG_NAMES), pair % len(TAG_NAMES)
    stream = image_repo[row_image].astype(np.int64) * len(TAG_NAMES) + row_tag
    by_stream = np.lexsort((age[row_image], stream))             # newest first within a tag
    starts = np.r_[0, np.flatnonzero(np.diff(stream[by_stream])) + 1]
    revision = np.empty(len(row_image), dtype=np.int64)
    revision[by_stream] = np.arange(len(row_image)) - np.repeat(starts, np.diff(np.r_[starts, len(row_image)]))
    sig_tags = pc.binary_join_element_wise(
        "sha256-", pc.utf8_slice_codeunits(digest.take(pa.array(subject_of[signature_rows])), 7), ".sig", "")
    tag_image = np.concatenate([row_image, signature_rows])
    namespace_of = np.array([name.split("/")[0] for name in repo_names], dtype=object)
    stream_of = np.array([name.split("/")[1] for name in repo_names], dtype=object)
    tags_frame = _table("tags", {
        "namespace": namespace_of[image_repo[tag_image]], "imagestream": stream_of[image_repo[tag_image]],
        "tag": pa.concat_arrays([pa.array(np.asarray(TAG_NAMES, dtype=object)[row_tag], type=pa.string()), sig_tags]),
        "revision": np.concatenate([revision, np.zeros(len(signature_rows), dtype=np.int64)]),
        "digest": digest.take(pa.array(tag_image)), "created_at": _timestamps(np.maximum(age[tag_image] - 0.01, 0))})

    # Workload references: current and recent revisions, a third of them rollback ReplicaSets.
    current = np.flatnonzero(revision <= 2)
    references = int(images * REFERENCES_PER_IMAGE)
    chosen = row_image[rng.choice(current, size=references)]
    reference_kind = rng.choice(5, size=references, p=[0.45, 0.3, 0.05, 0.05, 0.15])
    kinds = np.array(["Deployment", "ReplicaSet", "CronJob", "StatefulSet", "Pod"], dtype=object)
    sources = np.array(["template", "replicaset-history", "cronjob", "template", "pod"], dtype=object)
    image_ref = pc.binary_join_element_wise("image-registry.openshift-image-registry.svc:5000/",
                                            pa.array(repo_names[image_repo[chosen]], type=pa.string()), "@",
                                            digest.take(pa.array(chosen)), "")
    references_frame = _table("references", {
        "cluster": np.where(repo_env[image_repo[chosen]] == 2, "prod-east", "nonprod"),
        "namespace": namespace_of[image_repo[chosen]], "kind": kinds[reference_kind],
        "name": np.char.add("workload-", np.arange(references).astype(str)).astype(object),
        "container": np.full(references, "main", dtype=object), "image_ref": image_ref,
        "digest": digest.take(pa.array(chosen)), "source": sources[reference_kind],
        "active": reference_kind != 1, "observed_at": _timestamps(np.zeros(references))})

    built = rng.choice(images, size=images // 5, replace=False)
    builds_frame = _table("builds", {
        "namespace": namespace_of[image_repo[built]],
        "name": np.char.add("build-", np.arange(len(built)).astype(str)).astype(object),
        "output_digest": digest.take(pa.array(built)),
        "source_uri": np.full(len(built), "https://git/app", dtype=object),
        "commit": np.full(len(built), "0" * 40, dtype=object), "ref": build_ref[built].astype(object),
        "completed_at": _timestamps(age[built])})
    scanned = rng.choice(images, size=images, replace=True)
    scans_frame = _table("scans", {
        "digest": digest.take(pa.array(scanned)),
        "severity": np.array(["LOW", "MEDIUM", "HIGH", "CRITICAL"], dtype=object)[rng.integers(0, 4, images)],
        "vuln_id": np.char.add("CVE-2026-", rng.integers(1000, 99999, images).astype(str)).astype(object),
        "scanned_at": _timestamps(np.minimum(age[scanned], 30))})[["digest", "severity", "vuln_id", "scanned_at"]]
    namespace_names = sorted(set(namespace_of))
    namespaces_frame = pd.DataFrame({
        "namespace": namespace_names,
        # One DR namespace (its references are rollback copies) and one under legal hold.
        "labels": [json.dumps({"env": name.rsplit("-", 1)[1], **({"dr": "true"} if i == 1 else {})})
                   for i, name in enumerate(namespace_names)],
        "annotations": ['{"registry-lifecycle/legal-hold": "case-42"}' if i == 2 else "{}"
                        for i in range(len(namespace_names))]})

    # Pulls: a fifth of the images draw most of them. An image is pulled while it is in use, a
    # few months after its push; libraries and base images (15%) stay in use until today.
    first_day = AS_OF - timedelta(days=HISTORY_DAYS - 1)
    pull_weight = np.where(rng.random(images) < 0.2, 10.0, 1.0) * np.where(is_signature | is_index, 0.05, 1.0)
    in_use_days = np.where(rng.random(images) < 0.15, np.inf, rng.exponential(120, images))
    last_use = np.maximum(age - in_use_days, 0)                 # days before as_of
    pull_weight[last_use >= HISTORY_DAYS] = 0                   # out of use before the history starts
    wanted = tag_revisions * PULL_ROWS_PER_REVISION
    draws = wanted * 2                        # a busy image drawn twice on one day is one row
    pulled = rng.choice(images, size=draws, p=pull_weight / pull_weight.sum())
    newest, oldest = last_use[pulled], np.minimum(age[pulled], HISTORY_DAYS - 1)
    days_ago = np.floor(newest + rng.random(draws) * (oldest - newest + 1)).astype(np.int64)
    days_ago = np.minimum(days_ago, HISTORY_DAYS - 1)
    keys = distinct(pulled.astype(np.int64) * HISTORY_DAYS + days_ago)
    keys = np.sort(rng.permutation(keys)[:wanted])
    pulled, days_ago = keys // HISTORY_DAYS, keys % HISTORY_DAYS
    pulls_frame = _table("pulls_daily", {
        "day": (np.datetime64(AS_OF, "D") - days_ago.astype("timedelta64[D]")),
        "repository": pa.array(repo_names, type=pa.string()).take(pa.array(image_repo[pulled])),
        "digest": digest.take(pa.array(pulled)), "pulls": 1 + rng.geometric(0.08, len(pulled))})
    state = RegistryState(AS_OF, images_frame, tags_frame, references_frame, builds_frame, layers_frame,
                          namespaces_frame, scans_frame)
    return SyntheticRegistry(state, pulls_frame, first_day)


def synthetic_model(features: pd.DataFrame, horizon_days: int, *, seed: int = 0, sample: int = 60_000) -> ReuseModel:
    """A reuse model fitted on synthetic labels (reuse falls with idle time, rises with recent pulls)."""
    rng = np.random.default_rng(seed)
    rows = features.iloc[rng.choice(len(features), size=min(sample, len(features)), replace=False)]
    logit = (1.0 - 0.04 * rows["days_idle"].to_numpy() + 0.6 * np.log1p(rows["pulls_30"].to_numpy())
             - 0.5 * rows["has_newer_revision"].to_numpy())
    reused = rng.random(len(rows)) < 1 / (1 + np.exp(-logit))
    as_of = np.asarray([AS_OF - timedelta(days=d) for d in (0, 40, 80, 120)], dtype=object)
    examples = rows.assign(reused=reused, as_of=as_of[rng.integers(0, len(as_of), len(rows))])
    return fit_reuse_model(examples, horizon_days)


def _status_mib(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Start the peak-RSS count afresh (Linux: clear_refs 5), so a step's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    """The resident-set high-water mark since the last reset (else since the process started)."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_benchmark(scale: str = "L", *, seed: int = 0, policy: Policy | None = None) -> dict:
    """Time each step of scoring a synthetic registry of `scale`; returns the figures (JSON-ready)."""
    policy = policy or Policy()
    horizon = policy.gc.horizon_days
    started = time.monotonic()
    world = synthetic_registry(TAG_REVISIONS[scale], seed=seed)
    generated = time.monotonic() - started
    generation_peak = _peak_rss_mib()
    # From here on the peak is the scoring's own: the input frames it holds, and what it adds.
    peak_is_stage_only = _reset_peak_rss()
    inputs_rss = _status_mib("VmRSS") or generation_peak
    steps: list[dict] = []

    def timed(step: str, rows: int, work):
        begun, cpu = time.monotonic(), time.process_time()
        result = work()
        seconds = time.monotonic() - begun
        steps.append({"step": step, "seconds": round(seconds, 2), "cpu_seconds": round(time.process_time() - cpu, 2),
                      "rows": rows, "rows_per_second": round(rows / seconds) if seconds else None,
                      "peak_rss_mib": round(_peak_rss_mib())})
        return result

    state = world.state
    history = timed("compact pulls", len(world.pulls),
                    lambda: PullHistory.from_frame(world.pulls, world.first_day, AS_OF))
    features = timed("features", len(state.images), lambda: build_features(state, history, AS_OF, horizon_days=horizon))
    training_started = time.monotonic()
    model = synthetic_model(features, horizon, seed=seed)
    training = time.monotonic() - training_started
    scored = timed("model scoring", len(features), lambda: scored_frame(features, model))
    identity = SnapshotIdentity(AS_OF, {name: "bench" for name in ("images", "layers", "tags", "references",
                                                                    "namespaces")})
    plan = timed("plan", len(state.tags), lambda: make_plan(scored, state, policy, identity))
    decisions = plan.scores["decision"].value_counts()
    return {
        "scale": scale, **world.sizes,
        "steps": steps,
        "score_seconds": round(sum(step["seconds"] for step in steps), 1),
        "score_cpu_seconds": round(sum(step["cpu_seconds"] for step in steps), 1),
        "target_seconds": 60,
        "peak_rss_mib": round(_peak_rss_mib()),
        "peak_rss_is_the_stage_only": peak_is_stage_only,
        "target_rss_mib": 4096,
        "inputs_rss_mib": round(inputs_rss),
        "generate_seconds": round(generated, 1),
        "generate_peak_rss_mib": round(generation_peak),
        "train_seconds_synthetic_labels": round(training, 1),
        "model_fallback_reason": model.fallback_reason,
        "candidates": int(decisions.reindex(list(CANDIDATE_DECISIONS), fill_value=0).sum()),
        "decisions": {str(name): int(count) for name, count in decisions.items()},
        "plan_actions": len(plan.actions),
        "bytes_reclaimable": plan.reclaim.honest_bytes,
        "bytes_naive": plan.reclaim.naive_bytes,
    }


def print_score_figures(figures: dict) -> None:
    """The benchmark as a table, with the targets beside the totals."""
    print(f"## score ({figures['scale']}: {figures['tag_revisions']:,} tag revisions, {figures['images']:,} images, "
          f"{figures['references']:,} references, {figures['pull_rows']:,} pull rows = "
          f"{figures['pull_events']:,} pull events; synthetic, built in {figures['generate_seconds']} s)\n")
    print("step | wall s | cpu s | rows | rows/s | peak RSS MiB")
    print("--- | --- | --- | --- | --- | ---")
    for step in figures["steps"]:
        print(f"{step['step']} | {step['seconds']} | {step['cpu_seconds']} | {step['rows']:,} | "
              f"{step['rows_per_second'] or 0:,} | {step['peak_rss_mib']:,}")
    print(f"\nfeatures + model scoring + plan: {figures['score_seconds']} s wall, {figures['score_cpu_seconds']} s cpu "
          f"(target < {figures['target_seconds']} s); peak RSS {figures['peak_rss_mib']:,} MiB "
          f"(target < {figures['target_rss_mib']:,} MiB; the input frames alone hold {figures['inputs_rss_mib']:,} MiB"
          + ("" if figures["peak_rss_is_the_stage_only"] else "; peak since process start, generation included")
          + ")")
    print(f"model trained on synthetic labels in {figures['train_seconds_synthetic_labels']} s"
          + (f" (fallback: {figures['model_fallback_reason']})" if figures["model_fallback_reason"] else ""))
    print(f"plan: {figures['candidates']:,} candidates, {figures['plan_actions']:,} actions within the caps, "
          f"{figures['bytes_reclaimable'] / 2**30:,.1f} GiB freed honestly vs "
          f"{figures['bytes_naive'] / 2**30:,.1f} GiB naive; decisions {figures['decisions']}")
