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
from datetime import date, timedelta
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

    score = commands.add_parser(
        "score", help="score every image of a day's snapshot and plan the GC (registry_gc's plan step)",
        description="Trains the reuse model on the lake's own history, scores every image of the snapshot of "
                    "--date (or the newest stored before it), applies the hard protections and the policy's "
                    "threshold and caps, and commits gc_scores and gc_plan for --date. Prints the plan summary "
                    "(the approval request's body), or with --json one JSON document. Re-running with the same "
                    "--run-id is idempotent.")
    score.add_argument("--lake", required=True, help="lake folder or s3://bucket/prefix")
    score.add_argument("--date", type=_date, required=True, help="the day to plan (its snapshot, or the newest before)")
    score.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the packaged one)")
    score.add_argument("--run-id", default=None, help="lake run id to write under (default: score__DATE)")
    score.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    forecast = commands.add_parser(
        "forecast", help="forecast registry storage from the lake: days to full, P(full), chart",
        description="Fits the capacity models on storage_usage up to the end of --date, chooses one per volume "
                    "by rolling-origin backtest, publishes the forecasts dataset and writes a PNG chart per volume.")
    forecast.add_argument("--lake", required=True, help="lake folder or s3://bucket/prefix")
    forecast.add_argument("--date", type=_date, required=True, help="the day to forecast from")
    forecast.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the packaged one)")
    forecast.add_argument("--out", type=Path, default=None, help="folder for the PNG charts")
    forecast.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    report = commands.add_parser(
        "report", help="the compliance report of a quarter or a custom period: HTML, PDF, CSV, JSON, SHA-256 manifest",
        description="Builds every section of the compliance report from what the lake stores for the period "
                    "(inventory and change, provenance, tag policy, vulnerabilities, deletions and their approvals, "
                    "capacity, data quality, control mapping) and writes the bundle to --out: report.html, report.pdf, "
                    "evidence.json, tables/*.csv, charts/*.png and MANIFEST.sha256, zipped beside it. --store also "
                    "uploads it where the registry_compliance_report DAG stores reports.")
    report.add_argument("--lake", required=True, help="lake folder or s3://bucket/prefix")
    period = report.add_mutually_exclusive_group(required=True)
    period.add_argument("--quarter", help="a calendar quarter, e.g. 2026Q3")
    period.add_argument("--from", dest="first", type=_date, help="first day of a custom period (needs --to)")
    report.add_argument("--to", dest="last", type=_date, help="last day of a custom period")
    report.add_argument("--out", type=Path, required=True, help="folder for the bundle")
    report.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the packaged one)")
    report.add_argument("--store", nargs="?", const="", default=None, metavar="LOCATION",
                        help="also store the bundle: in LOCATION (s3://bucket/prefix or a folder), or with no value "
                             "where the policy's report.location says; S3 credentials from the AWS environment")
    report.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    mirror_plan = commands.add_parser(
        "mirror-plan", help="plan cross-registry mirroring from demand and cost: what to copy where, and why",
        description="Reads the snapshot and the pulls of mirror.lookback_days up to --date, asks each target in the "
                    "policy's mirror section what it holds (REGLIFE_MIRROR_<NAME>_USERNAME/PASSWORD), decides per "
                    "(image, target) to copy, keep, retire or skip, publishes the mirror_plan dataset and prints the "
                    "totals and monthly cost delta per target. --out writes skopeo sync YAML, oc-mirror "
                    "ImageSetConfigurations and ImageDigestMirrorSets.")
    mirror_plan.add_argument("--lake", required=True, help="lake folder or s3://bucket/prefix")
    mirror_plan.add_argument("--date", type=_date, required=True, help="the day to plan for")
    mirror_plan.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the packaged one)")
    mirror_plan.add_argument("--out", type=Path, default=None, help="folder for the exports and the plan summary")
    mirror_plan.add_argument("--assume-empty-targets", action="store_true",
                             help="plan as if no target held anything yet, without asking them (offline)")
    mirror_plan.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    mirror_copy = commands.add_parser(
        "mirror-copy", help="copy an approved mirror plan to its targets, then verify every copy by digest",
        description="Executes the stored mirror plan --plan-id of --date, approved by --approved-by (the approval "
                    "is recorded with every action in mirror_audit), from REGLIFE_REGISTRY_URL to the targets, "
                    "then checks each copy on its target. Exit code 4 when anything failed or did not verify.")
    mirror_copy.add_argument("--lake", required=True, help="lake folder or s3://bucket/prefix")
    mirror_copy.add_argument("--date", type=_date, required=True, help="the day the plan was made for")
    mirror_copy.add_argument("--plan-id", required=True, help="the plan's id, as mirror-plan printed it")
    mirror_copy.add_argument("--approved-by", required=True, help="who approved this exact plan")
    mirror_copy.add_argument("--targets", default=None, help="comma-separated targets to copy to (default: all)")
    mirror_copy.add_argument("--deep-verify", action="store_true", help="download and hash every copied blob")
    mirror_copy.add_argument("--policy", type=Path, default=None, help="policy YAML (default: the packaged one)")
    mirror_copy.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    bench = commands.add_parser("bench", help="measure the performance targets (wall time, rows/s, requests, peak RSS)",
                                description="Stages: extract (cold and warm, on a sandbox of --scale), score "
                                            "(features, model and plan on a synthetic registry of --scale), "
                                            "forecast, quality (the reuse model against the rule baselines on a "
                                            "390-day tiny sandbox history, judged by its ground truth; about 15 "
                                            "minutes). Targets are printed beside the figures, never asserted.")
    bench.add_argument("--stage", choices=["all", "extract", "score", "forecast", "quality"], default="all")
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


def _score(args: argparse.Namespace) -> int:
    from .config import PolicyError, load_policy
    from .gc.plan import PlanError
    from .gc.run import score_day
    from .lake import Lake, LakeError

    try:
        policy = load_policy(args.policy)
        outcome = score_day(Lake(str(args.lake)), args.date, policy, run_key=args.run_id)
    except (PolicyError, PlanError, LakeError) as error:
        print("reglife score: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(outcome.as_json(), indent=2))
    else:
        print(outcome.summary_markdown)
    return 0


def _forecast(args: argparse.Namespace) -> int:
    from .config import load_policy
    from .forecast import alert
    from .forecast.run import forecast_day, publish
    from .lake import Lake

    policy = load_policy(args.policy)
    lake = Lake(str(args.lake))
    run = forecast_day(lake, args.date, policy.forecast)
    run_id = f"manual__{args.date.isoformat()}"
    publish(lake, run, run_id=run_id, top_namespaces=policy.forecast.alerts.top_namespaces)
    summary = run.as_dict()
    # The decision the DAG's alert task would take now; the CLI itself never sends.
    channels = [notifier.channel for notifier in policy.forecast.alerts.notifiers]
    decided = alert.decisions(lake, args.date, alert.read_candidates(lake, args.date, run_id), channels)
    for volume, decision in zip(summary["volumes"], decided, strict=True):
        volume["alert"] = decision.as_dict()
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
            decision = volume["alert"]
            state = (f"FIRES ({decision['severity']})" if decision["fires"]
                     else "at risk, not repeated" if decision["at_risk"] else "no alert")
            print(f"  alert: {state}: {decision['reason']}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .config import PolicyError, load_policy, policy_with
    from .lake import Lake, LakeError
    from .report import period as periods
    from .report.run import generate, report_store, summary
    from .report.storage import StorageError

    try:
        if args.quarter:
            period = periods.quarter(args.quarter)
        elif args.last is None:
            raise periods.PeriodError("--from needs --to (the last day of the period)")
        else:
            period = periods.custom(args.first, args.last)
        policy = load_policy(args.policy)
        generated = generate(Lake(str(args.lake)), period, policy, args.out)
        stored = None
        if args.store is not None:
            if args.store:
                policy = policy_with(policy, {"report": {"location": args.store}})
            stored = report_store(policy.report).store(generated.bundle, period.label, generated.report.generated_at)
    except (periods.PeriodError, PolicyError, LakeError, StorageError) as error:
        print("reglife report: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    result = summary(generated, stored)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['name']}: {generated.report.period.describe()}")
    for key, status in result["sections"].items():
        print(f"  {key:<16} {status}")
    for line in result["headlines"]:
        print(f"  {line['label']}: {line['text']}")
    print(f"bundle {result['bundle']} ({result['files']} files, checked by MANIFEST.sha256)")
    print(f"zip    {result['zip']} sha256 {result['zip_sha256']}")
    if stored is not None:
        print(f"stored {report_store(policy.report).location}/{stored.folder}")
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
    if args.command == "score":
        return _score(args)
    if args.command == "forecast":
        return _forecast(args)
    if args.command == "report":
        return _report(args)
    if args.command in ("mirror-plan", "mirror-copy"):
        from .config import load_policy
        from .mirror import run as mirror_run

        policy = load_policy(args.policy)
        if args.command == "mirror-plan":
            return mirror_run.plan_command(str(args.lake), args.date, policy, as_json=args.json, out=args.out,
                                           assume_empty_targets=args.assume_empty_targets)
        targets = [name.strip() for name in args.targets.split(",") if name.strip()] if args.targets else None
        return mirror_run.copy_command(str(args.lake), args.date, policy, plan_id=args.plan_id,
                                       approved_by=args.approved_by, targets=targets, as_json=args.json,
                                       deep=args.deep_verify)
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
