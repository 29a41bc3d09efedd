"""`reglife demo` (what `make demo` runs): the lifecycle on the embedded sandbox, end to end.

It starts the sandbox, then runs each stage through the same code the DAGs run, reading the
sandbox over HTTP with the real clients, and writes what a user would look at under `--out`.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from .sandbox import Sandbox


def _gib(value: float) -> str:
    return f"{value / 2**30:,.1f} GiB"


def _say(text: str = "") -> None:
    print(text, flush=True)


def inventory_through_apis(sandbox: Sandbox) -> dict:
    """Count what the sandbox serves, through the real kubernetes client and the registry API."""
    from kubernetes import config as kube_config

    from .sources.kube_lister import KubeLister
    from .sources.registry import RegistryClient

    api_client = kube_config.new_client_from_config(config_file=sandbox.endpoints["kubeconfig"])
    lister = KubeLister(api_client, page_size=200)
    namespaces = lister.list_all("v1", "Namespace")
    streams = lister.list_all("image.openshift.io/v1", "ImageStream")
    images = lister.list_all("image.openshift.io/v1", "Image")
    revisions = sum(len(tag.get("items") or []) for stream in streams for tag in (stream.get("status") or {}).get("tags") or [])
    layer_sizes = {layer["name"]: layer["size"] for image in images for layer in image.get("dockerImageLayers") or []}
    credentials = json.loads(Path(sandbox.endpoints["registry_credentials"]).read_text())
    with RegistryClient(sandbox.endpoints["registry"], username=credentials["username"],
                        password=credentials["password"]) as registry:
        repositories = registry.catalog()
    return {
        "namespaces": len(namespaces),
        "image_streams": len(streams),
        "images": len(images),
        "tag_revisions": revisions,
        "repositories": len(repositories),
        "unique_layer_bytes": sum(layer_sizes.values()),
        "naive_image_bytes": sum(layer["size"] for image in images for layer in image.get("dockerImageLayers") or []),
        "api_requests": lister.stats.requests,
    }


def extract_history(sandbox: Sandbox, out: Path, *, days: int):
    """registry_extract's steps for the last `days` days: daily pulls, storage and scans, a
    cluster snapshot weekly and on the last day, each day through the quality gate."""
    from .config import load_policy, policy_with
    from .lake import Lake
    from .pipeline import build_sandbox_history

    lake_dir = out / "lake"
    shutil.rmtree(lake_dir, ignore_errors=True)     # the demo always starts from an empty lake
    lake = Lake(str(lake_dir))
    policy = policy_with(load_policy(), sandbox.policy_document())
    last = sandbox.world.until.date()
    first = last - timedelta(days=days - 1)
    _say(f"Extracting {first} .. {last} into {lake_dir} (registry_extract's steps, quality gate on every day):")
    started = time.monotonic()
    outcomes = build_sandbox_history(sandbox, lake, policy, first, last, snapshot_every=7,
                                     cache_dir=out / "cache")
    outcomes[-1].gate.raise_for_failures()
    snapshots = [o for o in outcomes if "openshift" in o.summaries]
    pulls = sum(o.summaries["pulls"].get("rows", {}).get("pulls_daily", 0) for o in outcomes)
    _say(f"  {len(outcomes)} days published, {len(snapshots)} cluster snapshots, {pulls:,} daily pull rows, "
         f"{time.monotonic() - started:.0f} s")
    latest = outcomes[-1]
    rows = {**latest.summaries["openshift"]["rows"], **latest.summaries["registry"]["rows"]}
    _say("  latest snapshot: " + ", ".join(f"{name} {count:,}" for name, count in rows.items()))
    registry = latest.summaries["registry"]
    _say(f"  registry requests on the last day: {sum(registry['requests'].values()):,} "
         f"(manifest GETs avoided by the digest cache: {registry['manifest_gets_avoided']:,})")
    gate = latest.gate
    _say(f"  data-quality gate: {'PASSED' if gate.passed else 'FAILED'}, {len(gate.checks)} checks, "
         f"{len(gate.failures)} critical failures, {len(gate.warnings)} warnings -> {out / 'validation.md'}")
    (out / "validation.md").write_text(gate.summary_markdown() + "\n")
    (out / "extract-summary.json").write_text(json.dumps(
        [{"day": o.day.isoformat(), "published": o.published, "summaries": o.summaries} for o in outcomes],
        indent=1, default=str))
    return lake


def forecast_capacity(lake, day: date, out: Path) -> None:
    """registry_capacity_forecast's step: the backtested model, days to full with its interval, a chart."""
    from .config import load_policy
    from .forecast.run import forecast_day, publish

    _say("Capacity forecast (models chosen by rolling-origin backtest against predict_linear):")
    run = forecast_day(lake, day, load_policy().forecast)
    publish(lake, run, run_id=f"demo__{day.isoformat()}")
    for volume in run.volumes:
        _say(f"  {volume.series}: {volume.forecast.model if volume.forecast else 'no forecast'} — {volume.reason}")
        if volume.outlook is not None:
            days = volume.outlook.days_to_full
            _say(f"  {volume.outlook.summary}")
            def shown(value: int | None) -> str:
                return "beyond the horizon" if value is None else f"{value} d"

            _say(f"  days to full: {shown(days.median)} (80% interval {shown(days.lo80)} – {shown(days.hi80)})")
        if volume.forecast is not None:
            chart = out / "capacity-forecast.png"
            chart.write_bytes(volume.chart())
            _say(f"  chart: {chart}")
    (out / "forecast.json").write_text(json.dumps(run.as_dict(), indent=1, default=str))


def run_demo(*, out: Path, seed: int = 7, scale: str = "tiny", days: int = 180, until: date | None = None,
             history_days: int = 70) -> int:
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _say(f"Registry Lifecycle demo — embedded sandbox (seed {seed}, scale {scale}, {days} days until {until})")
    with Sandbox(seed=seed, scale=scale, days=days, until=until, data_dir=out / "sandbox") as sandbox:
        endpoints = sandbox.endpoints
        _say(f"  Kubernetes API  {endpoints['kubernetes']}  (kubeconfig {endpoints['kubeconfig']})")
        _say(f"  OCI registry    {endpoints['registry']}")
        _say(f"  Prometheus      {endpoints['prometheus']}")
        _say(f"  pull archive    {endpoints['pulls']}")
        _say()
        inventory = inventory_through_apis(sandbox)
        _say("Inventory, read through the real kubernetes client and the registry API:")
        _say(f"  namespaces        {inventory['namespaces']:>10,}")
        _say(f"  image streams     {inventory['image_streams']:>10,}")
        _say(f"  repositories      {inventory['repositories']:>10,}")
        _say(f"  images            {inventory['images']:>10,}")
        _say(f"  tag revisions     {inventory['tag_revisions']:>10,}")
        _say(f"  unique layer bytes {_gib(inventory['unique_layer_bytes']):>10}   "
             f"(naive sum of image sizes: {_gib(inventory['naive_image_bytes'])})")
        (out / "sandbox-inventory.json").write_text(json.dumps(inventory, indent=2))
        _say()
        lake = extract_history(sandbox, out, days=history_days)
        _say()
        forecast_capacity(lake, sandbox.world.until.date(), out)
    _say()
    _say(f"Done in {time.monotonic() - started:.0f} s. Outputs in {out}/: sandbox-inventory.json, "
         "extract-summary.json, validation.md, forecast.json, capacity-forecast.png, "
         "lake/ (parquet datasets with commit markers).")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(out=Path("out")))
