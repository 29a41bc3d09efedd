"""`reglife bench`: the performance targets of DESIGN.md, measured and printed (never asserted in
a test, where a busy CI machine would make them flaky).

The sandbox runs in its own process, as a real API server and registry would, so that the
extraction's wall time, request counts and peak RSS are the pipeline's alone. Each stage is
measured on a cold run (empty manifest cache) and a warm re-run (what a daily run costs).
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx


@dataclass
class StageFigures:
    stage: str
    scale: str
    run: str
    wall_seconds: float
    rows: int
    rows_per_second: float
    registry_requests: int
    kubernetes_requests: int
    manifest_and_blob_gets: int
    peak_rss_mib: float
    referrers_requests: int = 0


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SandboxProcess:
    """`reglife sandbox serve` in a child process; its endpoints and request counters."""

    def __init__(self, scale: str, seed: int, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "registry_lifecycle.cli", "sandbox", "serve", "--scale", scale, "--seed", str(seed),
             "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox did not start; run `reglife -v sandbox serve` to see why")
        self.endpoints = json.loads(line)

    def counts(self) -> dict[str, int]:
        registry = httpx.get(self.endpoints["registry"] + "/_sandbox/stats").json()
        kubernetes = httpx.get(self.endpoints["kubernetes"] + "/_sandbox/stats").json()
        return {"registry": registry.get("registry", 0),
                "fetches": registry.get("registry.manifest_get", 0) + registry.get("registry.blob_get", 0),
                "referrers": registry.get("registry.referrers", 0),
                "kubernetes": kubernetes.get("kubernetes", 0)}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:     # a large world can take long to tear down
            self.process.kill()
            self.process.wait()


def bench_extract(scale: str, seed: int = 7) -> list[StageFigures]:
    """Cold and warm extraction of today's snapshot from a sandbox of `scale`.

    Each run is its own process, as each Airflow task or `reglife extract` pod is: its peak RSS
    is then the run's own, not the cold run's freed-but-kept heap plus the warm run's.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    figures = []
    with tempfile.TemporaryDirectory(prefix="reglife-bench-") as tmp:
        root = Path(tmp)
        started = time.monotonic()
        sandbox = SandboxProcess(scale, seed, root / "sandbox")
        print(f"# sandbox {scale} generated and serving in {time.monotonic() - started:.0f} s", file=sys.stderr)
        try:
            spawn = multiprocessing.get_context("spawn")
            for run in ("cold", "warm"):
                before = sandbox.counts()
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                    wall, rows, peak = pool.submit(_extract_once, sandbox.endpoints, str(root), run).result()
                after = sandbox.counts()
                figures.append(StageFigures(
                    "extract", scale, run, round(wall, 1), rows, round(rows / wall), after["registry"] - before["registry"],
                    after["kubernetes"] - before["kubernetes"], after["fetches"] - before["fetches"],
                    round(peak), after["referrers"] - before["referrers"]))
        finally:
            sandbox.stop()
    return figures


def _extract_once(sandbox_endpoints: dict, root: str, run: str) -> tuple[float, int, float]:
    """One extraction in this (fresh) process: wall seconds, rows, peak RSS in MiB."""
    from datetime import datetime, timezone

    from .config import load_policy, policy_with
    from .lake import Lake
    from .pipeline import Endpoints, run_extract
    from .sources.locations import open_location

    credentials = json.loads(Path(sandbox_endpoints["registry_credentials"]).read_text())
    endpoints = Endpoints(kubeconfig=sandbox_endpoints["kubeconfig"], registry_url=sandbox_endpoints["registry"],
                          registry_username=credentials.get("username"), registry_password=credentials.get("password"),
                          prometheus_url=sandbox_endpoints["prometheus"], pulls=open_location(sandbox_endpoints["pulls"]),
                          scans=open_location(sandbox_endpoints["scans"]))
    # The sandbox is an OpenShift cluster with its own registry: the case images_from_cluster is for.
    policy = policy_with(load_policy(), {"sources": {"pulls": {"location": sandbox_endpoints["pulls"]},
                                                     "scans": {"location": sandbox_endpoints["scans"]},
                                                     "registry": {"images_from_cluster": True}}})
    day = datetime.fromisoformat(sandbox_endpoints["history"]["until"]).astimezone(timezone.utc).date()
    started = time.monotonic()
    outcome = run_extract(day, endpoints, policy, Lake(str(Path(root) / "lake")), run_id=f"bench-{run}",
                          cache_dir=Path(root) / "cache", accept_shrink=True)
    wall = time.monotonic() - started
    rows = sum(sum(summary.get("rows", {}).values()) for summary in outcome.summaries.values())
    return wall, rows, _peak_rss_mib()


def print_table(figures: list[StageFigures]) -> None:
    header = ("stage", "scale", "run", "wall s", "rows", "rows/s", "registry req", "kube req", "manifest+blob GETs",
              "peak RSS MiB")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for f in figures:
        print(" | ".join(str(v) for v in (f.stage, f.scale, f.run, f.wall_seconds, f"{f.rows:,}", f"{f.rows_per_second:,}",
                                          f"{f.registry_requests:,}", f"{f.kubernetes_requests:,}",
                                          f"{f.manifest_and_blob_gets:,}", f.peak_rss_mib)))
    cold = next((f for f in figures if f.stage == "extract" and f.run == "cold"), None)
    warm = next((f for f in figures if f.stage == "extract" and f.run == "warm"), None)
    if cold and warm and cold.manifest_and_blob_gets:
        share = warm.manifest_and_blob_gets / cold.manifest_and_blob_gets
        print(f"\nwarm re-run: {share:.1%} of the cold run's manifest and blob GETs, "
              f"{warm.registry_requests / max(cold.registry_requests, 1):.1%} of all its registry requests "
              "(target: at most 5%)")
        # The warm run re-reads the same day, when no cached referrers lookup is due. On a later
        # day 1/refresh_days of them are (sources.registry.referrers_refresh_days).
        from .config import RegistrySource

        refresh = RegistrySource().referrers_refresh_days
        if not cold.referrers_requests:         # images_from_cluster asks the referrers API nothing
            return
        daily = warm.registry_requests + (cold.referrers_requests / refresh if refresh else cold.referrers_requests)
        print(f"a warm run on the next day also re-asks 1/{refresh} of the {cold.referrers_requests:,} referrers "
              f"lookups: about {daily:,.0f} requests, {daily / max(cold.registry_requests, 1):.1%} of the cold run")


def run_bench(stage: str, scale: str, as_json: bool) -> int:
    figures: list[StageFigures] = []
    if stage in ("all", "extract"):
        figures += bench_extract(scale)
    score = None
    if stage in ("all", "score"):
        from .gc.bench import score_benchmark

        score = score_benchmark(scale)
    forecast = None
    if stage in ("all", "forecast"):
        from .forecast.bench import forecast_benchmark

        forecast = forecast_benchmark("tiny")
    quality = None
    if stage in ("all", "quality"):
        from .gc.quality_bench import QUALITY_SCALE, quality_benchmark

        quality = quality_benchmark(QUALITY_SCALE)
    if as_json:
        print(json.dumps({"extract": [asdict(f) for f in figures], "score": score, "forecast": forecast,
                          "quality": quality}, indent=2, default=str))
        return 0
    if figures:
        print_table(figures)
    if score is not None:
        from .gc.bench import print_score_figures

        print()
        print_score_figures(score)
    if forecast is not None:
        print("\n## forecast (sandbox storage series and fill scenarios)\n")
        print(json.dumps(forecast, indent=2, default=str))
    if quality is not None:
        from .gc.quality_bench import print_quality_figures

        print()
        print_quality_figures(quality)
    return 0
