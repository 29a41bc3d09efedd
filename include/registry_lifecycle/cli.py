"""`reglife`: every step of the lifecycle, runnable outside Airflow.

The DAGs call the same functions; this entry point exists for debugging, for
KubernetesPodOperator pods, and for scripting. `--json` prints one JSON document on stdout;
logs always go to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from . import __version__

log = logging.getLogger("reglife")


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD, e.g. 2026-09-30") from None


def _add_sandbox_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7, help="scenario seed (same seed + --until = same data)")
    parser.add_argument("--scale", choices=["tiny", "S", "M", "L"], default="tiny",
                        help="tiny ≈ 700 images (default), S, M, L = 1,000,000 tag revisions")
    parser.add_argument("--days", type=int, default=180, help="days of history before --until")
    parser.add_argument("--until", type=_date, default=None, help="last day of history (default: today, UTC)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reglife",
        description="Registry Lifecycle: extract, validate, score, forecast, report and mirror the "
                    "OpenShift internal image registry. Every DAG step is a subcommand.")
    parser.add_argument("--version", action="version", version=f"reglife {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v: progress logs, -vv: debug logs (stderr)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sandbox = commands.add_parser("sandbox", help="the embedded simulated cluster, registry and Prometheus")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    serve = sandbox_commands.add_parser(
        "serve", help="serve the sandbox until stopped; prints one JSON line of endpoints",
        description="Starts the simulated Kubernetes API, OCI registry and Prometheus on 127.0.0.1, "
                    "writes a kubeconfig and the pull-event archive, prints one JSON line of endpoints "
                    "on stdout and serves until interrupted.")
    _add_sandbox_options(serve)
    serve.add_argument("--port", type=int, default=0,
                       help="0 = free ports; P = Kubernetes on P, registry on P+1, Prometheus on P+2")
    serve.add_argument("--data-dir", type=Path, default=None,
                       help="where the kubeconfig, credentials and pull archive go (default: a temp dir)")
    serve.add_argument("--no-auth", action="store_true", help="serve without bearer tokens")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (0.0.0.0 in a container; the default keeps it on loopback)")
    serve.add_argument("--advertise-host", default=None,
                       help="host name other containers use to reach it, written into URLs and the kubeconfig")

    extract = commands.add_parser(
        "extract", help="extract, validate and publish a day's snapshot (what registry_extract runs)",
        description="Reads every source for --date (or each day of --from..--to), validates the datasets "
                    "with the quality gate, and publishes them to the lake only if it passes. With "
                    "--sandbox the embedded sandbox is started and its clock moved to each day. Without it "
                    "the sources come from the environment: KUBECONFIG (or in-cluster), REGLIFE_REGISTRY_URL, "
                    "REGLIFE_REGISTRY_USERNAME/PASSWORD, REGLIFE_PROMETHEUS_URL/TOKEN.")
    extract.add_argument("--lake", required=True, help="lake folder or s3://bucket/prefix")
    when = extract.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=_date, help="the day to extract")
    when.add_argument("--from", dest="first", type=_date, help="first day of a range (needs --to)")
    extract.add_argument("--to", dest="last", type=_date, help="last day of a range")
    extract.add_argument("--snapshot-every", type=int, default=1,
                         help="with --sandbox and a range: cluster snapshot every N days (pulls etc. daily)")
    extract.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the packaged one)")
    extract.add_argument("--sandbox", action="store_true", help="extract from the embedded sandbox")
    extract.add_argument("--cache-dir", type=Path, default=None, help="registry manifest cache between runs")
    extract.add_argument("--accept-shrink", action="store_true",
                         help="publish although a snapshot shrank past validation.max_shrink (a deliberate mass cleanup)")
    extract.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    _add_sandbox_options(extract)

    backtest = commands.add_parser(
        "backtest", help="replay stored history: what each retention policy would delete, its regret and bytes freed",
        description="For each as-of date with a stored snapshot and a full horizon of stored pulls after it, "
                    "compares this project's model (at several thresholds) with the rule baselines of oc adm prune, "
                    "ECR, Harbor, Artifact Registry, acr purge and zot: images deleted, regret (pulled or referenced "
                    "again within the horizon) and bytes freed, plus the regret/bytes frontier.")
    backtest.add_argument("--lake", required=True, help="lake folder or s3://bucket/prefix")
    backtest.add_argument("--from", dest="first", type=_date, required=True, help="first as-of date")
    backtest.add_argument("--to", dest="last", type=_date, required=True, help="last as-of date")
    backtest.add_argument("--horizon", type=int, default=None, help="days (default: the policy's gc.horizon_days)")
    backtest.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the packaged one)")
    backtest.add_argument("--plot", type=Path, default=None, help="write the regret/bytes frontier as a PNG")
    backtest.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    forecast = commands.add_parser(
        "forecast", help="forecast registry storage from the lake: days to full, P(full), chart",
        description="Fits the capacity models on storage_usage up to the end of --date, chooses one per volume "
                    "by rolling-origin backtest, publishes the forecasts dataset and writes a PNG chart per volume.")
    forecast.add_argument("--lake", required=True, help="lake folder or s3://bucket/prefix")
    forecast.add_argument("--date", type=_date, required=True, help="the day to forecast from")
    forecast.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the packaged one)")
    forecast.add_argument("--out", type=Path, default=None, help="folder for the PNG charts")
    forecast.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    bench = commands.add_parser("bench", help="measure the performance targets (wall time, rows/s, requests, peak RSS)")
    bench.add_argument("--stage", choices=["all", "extract", "forecast"], default="all")
    bench.add_argument("--scale", choices=["tiny", "S", "M", "L"], default="S")
    bench.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    demo = commands.add_parser("demo", help="what `make demo` runs: the lifecycle on the sandbox, reports in --out")
    demo.add_argument("--out", type=Path, default=Path("out"), help="folder for the reports (default: out)")
    _add_sandbox_options(demo)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from .sandbox import Sandbox

    sandbox = Sandbox(seed=args.seed, scale=args.scale, days=args.days, until=args.until, port=args.port,
                      data_dir=args.data_dir, auth=not args.no_auth, host=args.host,
                      advertise_host=args.advertise_host)
    sandbox.start()
    print(json.dumps(sandbox.endpoints), flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    sandbox.stop()
    return 0


def _extract(args: argparse.Namespace) -> int:
    from .config import load_policy, policy_with
    from .extract import ExtractRequest
    from .lake import Lake
    from .pipeline import Endpoints, build_sandbox_history, run_extract

    first = args.date or args.first
    last = args.date or args.last
    if last is None:
        raise SystemExit("reglife extract: --from needs --to (the last day of the range)")
    if last < first:
        raise SystemExit(f"reglife extract: --to {last} is before --from {first}")
    policy = load_policy(args.policy)
    lake = Lake(str(args.lake))
    cache_dir = args.cache_dir or (Path(str(args.lake)) / "_cache" if not str(args.lake).startswith("s3://") else None)
    if args.sandbox:
        from .sandbox import Sandbox

        with Sandbox(seed=args.seed, scale=args.scale, days=args.days, until=args.until or last) as sandbox:
            policy = policy_with(policy, sandbox.policy_document())
            outcomes = build_sandbox_history(sandbox, lake, policy, first, last, snapshot_every=args.snapshot_every,
                                             cache_dir=cache_dir, accept_shrink=args.accept_shrink)
    else:
        endpoints = Endpoints.from_environment(policy)
        outcomes = []
        day = first
        while day <= last:
            request_day = ExtractRequest.for_day(day, "")
            outcome = run_extract(day, endpoints, policy, lake, cache_dir=cache_dir, accept_shrink=args.accept_shrink,
                                  snapshot=request_day.snapshot_readable)
            outcomes.append(outcome)
            if not outcome.published:
                break
            day += timedelta(days=1)
    report = [{"day": o.day.isoformat(), "run_id": o.run_id, "published": o.published,
               "datasets": {name: summary.get("rows", summary.get("skipped")) for name, summary in o.summaries.items()},
               "warnings": len(o.gate.warnings), "failures": [f"{c.dataset}.{c.expectation}: {c.observed}"
                                                              for c in o.gate.failures]} for o in outcomes]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for entry in report:
            state = "published" if entry["published"] else "HALTED by the quality gate"
            print(f"{entry['day']}  {state}  {entry['datasets']}  warnings: {entry['warnings']}")
            for failure in entry["failures"]:
                print(f"    FAIL {failure}")
    return 0 if all(entry["published"] for entry in report) else 3


def _forecast(args: argparse.Namespace) -> int:
    from .config import load_policy
    from .forecast.run import forecast_day, publish
    from .lake import Lake

    policy = load_policy(args.policy)
    lake = Lake(str(args.lake))
    run = forecast_day(lake, args.date, policy.forecast)
    publish(lake, run, run_id=f"manual__{args.date.isoformat()}")
    summary = run.as_dict()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for volume in run.volumes:
            if volume.forecast is not None:
                path = args.out / f"forecast-{volume.series.replace('/', '_').replace(':', '_')}.png"
                path.write_bytes(volume.chart())
                summary.setdefault("charts", []).append(str(path))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for volume in summary["volumes"]:
            print(f"{volume['series']}: model {volume['model']} ({volume['reason']})")
            if "summary" in volume:
                print(f"  {volume['summary']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)], stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)   # one line per request drowns the output
    if args.command == "sandbox" and args.sandbox_command == "serve":
        return _serve(args)
    if args.command == "extract":
        return _extract(args)
    if args.command == "backtest":
        from .config import load_policy
        from .gc.backtest import backtest as run_backtest

        run_backtest(str(args.lake), args.first, args.last, args.horizon, json=args.json,
                     policy=load_policy(args.policy), plot=args.plot)
        return 0
    if args.command == "forecast":
        return _forecast(args)
    if args.command == "bench":
        from .bench import run_bench

        return run_bench(args.stage, args.scale, args.json)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(out=args.out, seed=args.seed, scale=args.scale, days=args.days,
                        until=args.until)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
