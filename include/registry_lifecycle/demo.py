"""`reglife demo` (what `make demo` runs): the lifecycle on the embedded sandbox, end to end.

It starts the sandbox, then runs each stage through the same code the DAGs run, reading the
sandbox over HTTP with the real clients, and writes what a user would look at under `--out`.
"""
from __future__ import annotations

import json
import logging
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
    from .forecast import alert
    from .forecast.run import forecast_day, publish

    _say("Capacity forecast (models chosen by rolling-origin backtest against predict_linear):")
    settings = load_policy().forecast
    run = forecast_day(lake, day, settings)
    run_id = f"demo__{day.isoformat()}"
    publish(lake, run, run_id=run_id, top_namespaces=settings.alerts.top_namespaces)
    channels = [notifier.channel for notifier in settings.alerts.notifiers]
    decided = alert.decisions(lake, day, alert.read_candidates(lake, day, run_id), channels)
    summary = run.as_dict()
    for volume, decision, entry in zip(run.volumes, decided, summary["volumes"], strict=True):
        entry["alert"] = decision.as_dict()
        _say(f"  {volume.series}: {volume.forecast.model if volume.forecast else 'no forecast'} — {volume.reason}")
        if volume.outlook is not None:
            days = volume.outlook.days_to_full
            _say(f"  {volume.outlook.summary}")
            def shown(value: int | None) -> str:
                return "beyond the horizon" if value is None else f"{value} d"

            _say(f"  days to full: {shown(days.median)} (80% interval {shown(days.lo80)} – {shown(days.hi80)})")
        if decision.due:
            _say(f"  alert: WOULD FIRE ({decision.severity}): {decision.reason}")
        else:
            _say(f"  alert: would not fire: {decision.reason}")
        if volume.forecast is not None:
            chart = out / "capacity-forecast.png"
            chart.write_bytes(volume.chart())
            _say(f"  chart: {chart}")
    (out / "forecast.json").write_text(json.dumps(summary, indent=1, default=str))


# The sandbox's clusters pull from one registry in us-east-1; its policy has no mirror targets,
# so the demo places the non-production cluster in Europe and the partner cluster in India,
# each with a mirror registry of its own, plus a DR registry for what production runs.
SANDBOX_MIRROR = {
    "source_region": "us-east-1",
    "cluster_regions": {"prod-east": "us-east-1", "scanner": "us-east-1", "nonprod": "eu-west-1",
                        "partner": "ap-south-1"},
    "targets": [
        {"name": "eu-west", "url": "https://mirror.eu-west-1.example.com", "region": "eu-west-1",
         "connection_id": "mirror_eu_west", "egress_cost_per_gb": 0.02, "storage_cost_per_gb_month": 0.023},
        {"name": "ap-south", "url": "https://mirror.ap-south-1.example.com", "region": "ap-south-1",
         "connection_id": "mirror_ap_south", "egress_cost_per_gb": 0.09, "storage_cost_per_gb_month": 0.025},
        {"name": "dr-us-west", "url": "https://dr.us-west-2.example.com", "region": "us-west-2",
         "connection_id": "mirror_dr", "egress_cost_per_gb": 0.02, "storage_cost_per_gb_month": 0.0125,
         "repository_prefix": "dr"},
    ],
    "dr_rules": [{"name": "prod-in-two-registries", "match": {"env": "prod"}, "min_registries": 2,
                  "targets": ["dr-us-west"]}],
    "deny": ["*-dev/*"],
}


def mirror_plan(lake, day: date, out: Path) -> None:
    """registry_mirror_plan's plan step on the sandbox's demand, with the exports a user would apply."""
    import yaml

    from .config import load_policy, policy_with
    from .mirror.cost import money
    from .mirror.exports import write_exports
    from .mirror.plan import plan_day, publish
    from .mirror.target_state import assume_empty

    policy = policy_with(load_policy(), {"mirror": SANDBOX_MIRROR})
    # The example targets do not exist: plan as the first run would, with every target empty.
    plan = plan_day(lake, day, policy, state=assume_empty())
    publish(lake, plan, run_id=f"demo__{day.isoformat()}")
    folder = out / "mirror"
    written = write_exports(plan, policy, folder)
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False))
    counts = plan.counts()
    _say(f"Mirroring plan {plan.plan_id[:12]} (demand of the last {policy.mirror.lookback_days} days, costs over "
         f"{policy.mirror.horizon_days} days, targets assumed empty):")
    for row in plan.totals.itertuples():
        _say(f"  {row.target:<11} {row.region:<11} copy {row.mirror_images:>3} ({row.dr_images} for DR), "
             f"{_gib(row.bytes_to_copy)}, transfer {money(row.transfer_cost, plan.currency)} once, "
             f"storage +{money(row.storage_cost_added_per_month, plan.currency)}/month, "
             f"egress saved {money(row.egress_saved_per_month, plan.currency)}/month -> "
             f"delta {money(row.monthly_cost_delta, plan.currency)}/month")
    _say(f"  monthly cost delta {money(plan.monthly_cost_delta, plan.currency)}; {counts['mirror']} copies, "
         f"{counts['skip']} candidates skipped (cold or denied), each line with its reason")
    for region in plan.unserved:
        _say(f"  region {region['region']} ({', '.join(region['clusters'])}) pulls across regions with no target")
    _say(f"  exports: {', '.join(path.name for path in written)} -> {folder}/")


# The demo's 70 days are too short for the reuse model (it wants a quarter of pulls before its
# first labelled day and labels spanning another quarter), so it plans with the model's stated
# fallback priors: 0.9 for an image not pulled or pushed within twice the horizon. A threshold
# above that shows the whole plan: protections, ranking, honest against naive bytes.
DEMO_GC = {"horizon_days": 30, "threshold": 0.95}


def plan_garbage_collection(lake, day: date, out: Path) -> None:
    """registry_gc's plan step on the last snapshot, and `reglife backtest` of every policy on the history."""
    from .config import load_policy, policy_with
    from .gc.backtest import MODEL_FAMILY, plot_frontier, run_backtest
    from .gc.features import History
    from .gc.run import score_day

    # The demo says once that the model fell back; training would log it again for every date.
    logging.getLogger("registry_lifecycle.gc.reuse_model").setLevel(logging.ERROR)
    policy = policy_with(load_policy(), {"gc": DEMO_GC})
    outcome = score_day(lake, day, policy, run_key=f"demo__{day.isoformat()}")
    (out / "gc-plan.md").write_text(outcome.summary_markdown + "\n")
    decisions = outcome.decisions
    _say(f"Garbage-collection plan {outcome.plan_id[:12]} for the snapshot of {outcome.snapshot_day} "
         f"(registry_gc's plan step, horizon {DEMO_GC['horizon_days']} d, threshold {DEMO_GC['threshold']}):")
    if outcome.model_fallback_reason:
        _say(f"  reuse model: conservative priors ({outcome.model_fallback_reason})")
    _say("  " + ", ".join(f"{name} {decisions.get(name, 0):,}" for name in
                          ("protected", "keep", "delete", "deferred", "report_only")) + " images")
    _say(f"  {outcome.candidates:,} candidates, {len(outcome.plan):,} deletions planned: frees "
         f"{_gib(outcome.bytes_reclaimable)} (blobs no kept image shares); the naive sum of their sizes says "
         f"{_gib(outcome.bytes_naive)}")
    top = outcome.plan.groupby("namespace")["bytes"].agg(["size", "sum"]).sort_values("sum", ascending=False).head(3)
    if len(top):
        _say("  top namespaces: " + ", ".join(f"{name} ({int(row['size'])} images, {_gib(row['sum'])})"
                                              for name, row in top.iterrows()))
    _say(f"  approval request body -> {out / 'gc-plan.md'}")

    history = History.from_lake(lake)
    horizon = DEMO_GC["horizon_days"]
    result = run_backtest(history, history.days[0], day, horizon, gc=policy.gc)
    result.table.to_csv(out / "gc-backtest.csv", index=False)
    plot_frontier(result, out / "gc-backtest.png")
    _say()
    _say(f"Policy backtest (reglife backtest): {len(result.table):,} policies replayed on "
         f"{len(result.as_of_dates)} as-of dates with a stored {horizon}-day horizon; regret = deleted images "
         "pulled or referenced again within it:")
    _say(f"  {'regret at most':>14} | {'best rule setting':<58} {'frees':>9} | {MODEL_FAMILY:<18} {'frees':>9}")
    for row in result.frontier.itertuples():
        rule = f"{row.best_rule[:48]} ({row.rule_regret_pct:.1%})" if row.rule_bytes else "nothing within it"
        model = f"{row.model} ({row.model_regret_pct:.1%})" if row.model_bytes else "nothing within it"
        _say(f"  {row.regret_level:>14.2%} | {rule:<58} {_gib(row.rule_bytes):>9} | {model:<18} "
             f"{_gib(row.model_bytes):>9}")
    if result.fallbacks:
        _say(f"  the model used its fallback priors on {len(result.fallbacks)} of {len(result.as_of_dates)} dates: "
             "this history is shorter than it needs to learn")
    _say(f"  every policy -> {out / 'gc-backtest.csv'}, regret against bytes freed -> {out / 'gc-backtest.png'}")


def compliance_report(lake, day: date, out: Path) -> None:
    """registry_compliance_report's bundle for the quarter so far (it says the quarter has not ended)."""
    from .config import load_policy
    from .report.period import quarter_of
    from .report.run import generate, summary

    period = quarter_of(day)
    _say(f"Compliance report {period.label} (the quarter so far), from the lake only:")
    started = time.monotonic()
    result = summary(generate(lake, period, load_policy(), out / "report"))
    for key, status in result["sections"].items():
        _say(f"  {key:<16} {status}")
    for line in result["headlines"]:
        _say(f"  {line['label']}: {line['text']}")
    _say(f"  bundle: {result['bundle']}/ (report.html, report.pdf, evidence.json, tables/*.csv, charts/*.png, "
         f"MANIFEST.sha256; check with `sha256sum -c MANIFEST.sha256`), {time.monotonic() - started:.0f} s")
    _say(f"  zip:    {result['zip']} (sha256 {result['zip_sha256'][:16]}…)")


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
        plan_garbage_collection(lake, sandbox.world.until.date(), out)
        _say()
        from .airflow.demo_approval import approval_round_trip

        approval_round_trip(sandbox, lake, out, gc=DEMO_GC, say=_say)
        _say()
        forecast_capacity(lake, sandbox.world.until.date(), out)
        _say()
        mirror_plan(lake, sandbox.world.until.date(), out)
        _say()
        compliance_report(lake, sandbox.world.until.date(), out)
    _say()
    _say(f"Done in {time.monotonic() - started:.0f} s. Outputs in {out}/: sandbox-inventory.json, "
         "extract-summary.json, validation.md, gc-plan.md, gc-backtest.csv, gc-backtest.png, gc-approval.md, "
         "forecast.json, capacity-forecast.png, mirror/ (plan and skopeo/oc-mirror/IDMS exports), report/ (the compliance report bundle and its zip), "
         "lake/ (parquet datasets with commit markers).")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(out=Path("out")))
