"""registry_extract on the sandbox: what a published day contains, and why a day is not published.

One sandbox (tiny scale, 60 days up to 2026-11-27) serves every test over real HTTP; the real
kubernetes client, the registry client and the Prometheus client read it, exactly as they read
a production cluster. A day is published only when every source was read completely and the
quality gate passed (safety invariant 3): a forbidden, failing, truncated or malformed source
raises before anything is committed, and readers keep seeing the previous day.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pytest
from kubernetes import config as kube_config

from registry_lifecycle import cli
from registry_lifecycle.config import Policy, load_policy, policy_with
from registry_lifecycle.extract import (SNAPSHOT_DATASETS, TIME_RANGED_DATASETS, ExtractRequest, extract_cluster,
                                        extract_pulls_step, extract_registry, extract_scans_step,
                                        extract_storage_step, validate_and_publish)
from registry_lifecycle.lake import Lake, LakeNotFound, S3Credentials
from registry_lifecycle.pipeline import Endpoints, ExtractOutcome, run_extract
from registry_lifecycle.sandbox import FaultInjector, Sandbox
from registry_lifecycle.sandbox.world import INTERNAL_REGISTRY
from registry_lifecycle.sources.errors import (SourceForbidden, SourceMalformed, SourceTruncated,
                                               SourceUnavailable)
from registry_lifecycle.sources.kube_lister import KubeLister
from registry_lifecycle.sources.prometheus import PrometheusClient
from registry_lifecycle.sources.registry import RegistryClient
from registry_lifecycle.validate.volume import SHRINK

UNTIL = date(2026, 11, 27)
PREVIOUS_DAY = date(2026, 11, 25)       # published once, by the `published` fixture
DAY = date(2026, 11, 26)                # the day the failing runs try to publish
BACKFILL_DAY = date(2026, 10, 15)       # inside the sandbox's history, six weeks before UNTIL
PUBLISHED_RUN = "scheduled__2026-11-25"
SAMPLES_PER_DAY = 288                   # 5-minute storage samples

# The datasets a daily run must commit: every snapshot, the time-ranged ones, and the gate's record.
PUBLISHED_DATASETS = set(SNAPSHOT_DATASETS) | set(TIME_RANGED_DATASETS) | {"validation"}


def end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=7, scale="tiny", days=60, until=UNTIL) as running:
        yield running


@pytest.fixture
def faults(sandbox: Sandbox):
    """The sandbox's fault rules, cleared after the test so no other test meets them."""
    yield sandbox.faults
    sandbox.faults.clear()


@pytest.fixture(scope="module")
def policy(sandbox: Sandbox) -> Policy:
    """The packaged policy pointed at the sandbox, with pages small enough that every list pages."""
    return policy_with(policy_with(load_policy(), sandbox.policy_document()),
                       {"sources": {"openshift": {"page_size": 20}, "registry": {"page_size": 5}}})


def extract_day(sandbox: Sandbox, policy: Policy, lake: Lake, day: date, run_id: str, **options) -> ExtractOutcome:
    """What the daily DAG run does at the end of `day`: read every source, gate, publish."""
    sandbox.set_clock(end_of(day))
    return run_extract(day, Endpoints.from_sandbox(sandbox), policy, lake, run_id=run_id, **options)


@dataclass
class Published:
    lake: Lake
    outcome: ExtractOutcome

    @property
    def root(self) -> Path:
        return Path(self.lake.url.removeprefix("file://"))

    def rows(self, dataset: str) -> int:
        (commit,) = self.lake.commits(self.outcome.day)
        return commit.files[dataset].rows


@pytest.fixture(scope="module")
def published(sandbox: Sandbox, policy: Policy, tmp_path_factory) -> Published:
    """PREVIOUS_DAY extracted and published into a lake that tests only read (or copy)."""
    lake = Lake(tmp_path_factory.mktemp("published-lake"))
    outcome = extract_day(sandbox, policy, lake, PREVIOUS_DAY, PUBLISHED_RUN)
    assert outcome.published, outcome.gate.summary_markdown()
    return Published(lake, outcome)


@pytest.fixture
def lake(published: Published, tmp_path: Path) -> Lake:
    """A copy of the published lake: yesterday is there, and this test may write today."""
    copy = tmp_path / "lake"
    shutil.copytree(published.root, copy)
    return Lake(copy)


CLI_DAYS = ["2026-11-25", "2026-11-26", "2026-11-27"]


@dataclass
class CliRun:
    process: subprocess.Popen
    lake_dir: Path
    stdout: Path
    stderr: Path

    def wait(self) -> tuple[int, str, str]:
        code = self.process.wait(timeout=600)
        return code, self.stdout.read_text(), self.stderr.read_text()


@pytest.fixture(scope="module", autouse=True)
def reglife_extract_range(tmp_path_factory) -> Iterator[CliRun]:
    """`reglife extract --sandbox` over three days, as a user runs it: its own process and sandbox.

    Started with the module's first test rather than by the test that reads it: a second Python
    importing Great Expectations and building a sandbox takes most of a minute, and overlapping it
    with the in-process tests keeps the module near two minutes.
    """
    workdir = tmp_path_factory.mktemp("reglife-extract")
    lake_dir, stdout_path, stderr_path = workdir / "lake", workdir / "stdout.json", workdir / "stderr.log"
    command = [sys.executable, "-m", "registry_lifecycle.cli", "extract", "--lake", str(lake_dir),
               "--from", CLI_DAYS[0], "--to", CLI_DAYS[-1], "--sandbox", "--days", "30",
               "--snapshot-every", "2", "--json"]
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    run = CliRun(process, lake_dir, stdout_path, stderr_path)
    yield run
    if run.process.poll() is None:      # a -k selection that never waited for it
        run.process.kill()
        run.process.wait()


def image_objects_in_registry(sandbox: Sandbox, at: datetime) -> set[str]:
    """Digests of the Image objects the cluster serves at `at` whose manifest is in the internal registry."""
    sandbox.set_clock(at)
    api_client = kube_config.new_client_from_config(config_file=sandbox.endpoints["kubeconfig"])
    try:
        images = KubeLister(api_client, page_size=500).list_all("image.openshift.io/v1", "Image")
    finally:
        api_client.close()
    return {image["metadata"]["name"] for image in images
            if image["dockerImageReference"].startswith(INTERNAL_REGISTRY + "/")}


def assert_nothing_published(lake: Lake, published: Published) -> None:
    assert lake.commits(DAY) == [], "a failed run must leave no commit marker"
    with pytest.raises(LakeNotFound):
        lake.read("images", DAY)
    assert len(lake.read("images", PREVIOUS_DAY)) == published.rows("images"), "yesterday must stay readable"
    assert len(lake.read("references", PREVIOUS_DAY)) == published.rows("references")


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order, for comparing two reads of one dataset."""
    return frame.sort_values(list(frame.columns), na_position="first", kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------ a published day
def test_a_day_extracted_from_the_sandbox_is_published_with_every_dataset(published: Published):
    (commit,) = published.lake.commits(PREVIOUS_DAY)
    assert commit.run_id == PUBLISHED_RUN
    assert set(commit.files) == PUBLISHED_DATASETS
    assert commit.files["storage_usage"].rows == SAMPLES_PER_DAY
    assert all(commit.files[name].rows > 0 for name in SNAPSHOT_DATASETS)
    # Frames a step drops go back to the system, not into Arrow's own pool (peak RSS at scale L).
    assert pa.default_memory_pool().backend_name == "system"


def test_images_are_every_image_object_the_registry_stores_and_every_tag_resolves(
        published: Published, sandbox: Sandbox):
    """Older tag revisions are fetched by digest, so the snapshot holds exactly what pruning can remove."""
    images = published.lake.read("images", PREVIOUS_DAY)
    expected = image_objects_in_registry(sandbox, end_of(PREVIOUS_DAY))
    assert len(images) == len(expected)
    assert set(images.digest) == expected

    tags = published.lake.read("tags", PREVIOUS_DAY)
    assert (tags.revision > 0).any(), "the scenario must contain older tag revisions"
    assert set(tags.digest) <= set(images.digest)


def test_references_keep_rollback_targets_and_cronjobs(published: Published):
    """A ReplicaSet scaled to 0 and a CronJob idle between runs still reference their images."""
    references = published.lake.read("references", PREVIOUS_DAY)
    rollback = references[(references.source == "replicaset-history") & ~references.active]
    assert not rollback.empty, "a scaled-to-zero ReplicaSet (rollback target) must be a reference"
    assert rollback.digest.notna().all()
    cronjobs = references[references.kind == "CronJob"]
    assert not cronjobs.empty and (cronjobs.source == "cronjob").all()


# ------------------------------------------------------------------------------ failing sources
def test_a_forbidden_pods_list_aborts_the_day_and_names_the_rbac_fix(
        sandbox: Sandbox, policy: Policy, lake: Lake, published: Published, faults: FaultInjector):
    """`oc adm prune` warns on a Forbidden list and carries on; the extractor stops."""
    faults.add(api="kubernetes", path=r"^/api/v1/pods$", status=403, times=None)
    with pytest.raises(SourceForbidden) as raised:
        extract_day(sandbox, policy, lake, DAY, "scheduled__2026-11-26")
    message = str(raised.value)
    assert "list pods" in message
    assert "get/list" in message and "deploy/rbac.yaml" in message
    assert_nothing_published(lake, published)


def test_a_deployments_list_that_keeps_failing_is_unavailable_after_the_retries(
        sandbox: Sandbox, policy: Policy, lake: Lake, published: Published, faults: FaultInjector):
    failing = faults.add(api="kubernetes", path=r"^/apis/apps/v1/deployments$", status=500, times=None)
    impatient = policy_with(policy, {"sources": {"openshift": {"max_retries": 2}}})
    with pytest.raises(SourceUnavailable) as raised:
        extract_day(sandbox, impatient, lake, DAY, "scheduled__2026-11-26")
    assert failing.fired == 3, "one request and two retries"
    assert "deployments" in str(raised.value) and "HTTP 500 after 3 attempts" in str(raised.value)
    assert_nothing_published(lake, published)


def test_a_kubernetes_page_without_its_continue_token_is_truncation(
        sandbox: Sandbox, policy: Policy, lake: Lake, published: Published, faults: FaultInjector):
    """Losing the rest of the ReplicaSet list would make every rollback target look unreferenced."""
    faults.add(api="kubernetes", path=r"^/apis/apps/v1/replicasets$", query="limit=", truncate=True)
    with pytest.raises(SourceTruncated) as raised:
        extract_day(sandbox, policy, lake, DAY, "scheduled__2026-11-26")
    assert "replicasets" in str(raised.value) and "remainingItemCount" in str(raised.value)
    assert_nothing_published(lake, published)


def test_a_catalog_page_that_lost_its_link_is_truncation(
        sandbox: Sandbox, policy: Policy, lake: Lake, published: Published, faults: FaultInjector):
    # Every page, not just the first request: that one is answered 401 to fetch a bearer token.
    faults.add(api="registry", path=r"^/v2/_catalog$", truncate=True, times=None)
    with pytest.raises(SourceTruncated) as raised:
        extract_day(sandbox, policy, lake, DAY, "scheduled__2026-11-26")
    assert "/v2/_catalog" in str(raised.value)
    assert_nothing_published(lake, published)


def test_a_malformed_manifest_aborts_the_day_and_names_the_manifest(
        sandbox: Sandbox, policy: Policy, lake: Lake, published: Published, faults: FaultInjector):
    images = published.lake.read("images", PREVIOUS_DAY)
    victim = images[images.config_digest.notna()].iloc[0]
    faults.add(api="registry", method="GET", path=rf"/manifests/{victim.digest}$", malformed=True, times=None)
    with pytest.raises(SourceMalformed) as raised:
        extract_day(sandbox, policy, lake, DAY, "scheduled__2026-11-26")
    assert victim.digest in str(raised.value)
    assert_nothing_published(lake, published)


def test_an_expired_continue_token_restarts_the_list_and_the_day_is_published(
        sandbox: Sandbox, policy: Policy, lake: Lake, faults: FaultInjector):
    """A 410 Gone mid-list (etcd compaction) is survivable: the list starts over and completes."""
    expired = faults.add(api="kubernetes", path=r"^/apis/image.openshift.io/v1/imagestreams$",
                         query="continue=", expire_continue=True, times=1)
    outcome = extract_day(sandbox, policy, lake, DAY, "scheduled__2026-11-26")
    assert expired.fired == 1
    assert outcome.summaries["openshift"]["restarts"] == 1
    assert outcome.published, outcome.gate.summary_markdown()
    assert [commit.run_id for commit in lake.commits(DAY)] == ["scheduled__2026-11-26"]
    tags = lake.read("tags", DAY)
    assert len(tags) == sandbox.world.inventory(end_of(DAY))["tag_revisions"], "no tag revision lost or doubled"


# ------------------------------------------------------------------------------ re-runs
def test_rerunning_a_day_under_the_same_run_id_is_idempotent_and_a_new_run_id_wins(
        sandbox: Sandbox, policy: Policy, lake: Lake, published: Published):
    """An Airflow retry rewrites its own run; a manual re-run of the day supersedes it for readers."""
    first = {name: f.rows for name, f in published.lake.commits(PREVIOUS_DAY)[0].files.items()}
    retried = extract_day(sandbox, policy, lake, PREVIOUS_DAY, PUBLISHED_RUN)
    assert retried.published
    (commit,) = lake.commits(PREVIOUS_DAY)
    assert {name: f.rows for name, f in commit.files.items()} == first

    rerun = extract_day(sandbox, policy, lake, PREVIOUS_DAY, "manual__2026-11-25-rerun")
    assert rerun.published
    assert [c.run_id for c in lake.commits(PREVIOUS_DAY)] == [PUBLISHED_RUN, "manual__2026-11-25-rerun"]
    assert set(lake.read("validation", PREVIOUS_DAY).run_id) == {"manual__2026-11-25-rerun"}
    assert lake.previous_snapshot("images", DAY).run_id == "manual__2026-11-25-rerun"


# ------------------------------------------------------------------------------ the volume check
def test_a_snapshot_that_shrinks_implausibly_is_held_back_until_the_shrink_is_accepted(
        policy: Policy, lake: Lake, published: Published):
    """Each frame is valid on its own; only yesterday's count shows that half the references are missing."""
    request = ExtractRequest(DAY, "scheduled__2026-11-26")
    previous = {name: lake.read(name, PREVIOUS_DAY) for name in SNAPSHOT_DATASETS}
    full = len(previous["references"])
    half = full // 2
    for name, frame in previous.items():
        lake.write(name, DAY, request.run_id, frame.iloc[:half] if name == "references" else frame)

    halted = validate_and_publish(request, policy, lake)
    assert not halted.passed
    assert {(check.dataset, check.expectation) for check in halted.failures} == {("references", SHRINK)}
    (commit,) = lake.commits(DAY)
    assert set(commit.files) == {"validation"}, "the gate's record is committed, the snapshot is not"
    with pytest.raises(LakeNotFound):
        lake.read("references", DAY)
    validation = lake.read("validation", DAY)
    (shrink,) = validation[(validation.dataset == "references") & (validation.expectation == SHRINK)].itertuples()
    assert not shrink.success
    assert f"{half:,} rows" in shrink.observed and f"{full:,}" in shrink.observed
    assert PUBLISHED_RUN in shrink.observed

    accepted = validate_and_publish(request, policy, lake, accept_shrink=True)
    assert accepted.passed
    assert len(lake.read("references", DAY)) == half
    assert set(lake.commits(DAY)[-1].files) >= set(SNAPSHOT_DATASETS)
    validation = lake.read("validation", DAY)
    shrink = validation[(validation.dataset == "references") & (validation.expectation == SHRINK)]
    assert "accepted by --accept-shrink" in shrink.observed.iloc[0]


def test_a_shrink_names_the_run_its_previous_count_came_from(policy: Policy, lake: Lake):
    """The operator inspects the run the message names, so it must be the run the count was read from."""
    request = ExtractRequest(DAY, "scheduled__2026-11-26")
    for name in SNAPSHOT_DATASETS:
        lake.write(name, DAY, request.run_id, lake.read(name, PREVIOUS_DAY))
    references = lake.read("references", PREVIOUS_DAY)
    lake.write("references", PREVIOUS_DAY, "manual__references-only", pd.concat([references, references]))
    lake.commit(PREVIOUS_DAY, "manual__references-only", ["references"])

    halted = validate_and_publish(request, policy, lake)
    (shrink,) = halted.failures
    assert (shrink.dataset, shrink.expectation) == ("references", SHRINK)
    assert f"{2 * len(references):,}" in shrink.observed
    assert "manual__references-only" in shrink.observed, shrink.observed


# ------------------------------------------------------------------------------ backfills
def test_a_backfill_publishes_only_time_ranged_data_and_says_why(sandbox: Sandbox, policy: Policy, tmp_path: Path):
    """The cluster's past cannot be listed: a backfill re-reads pulls, storage and scans, and says so."""
    request = ExtractRequest.for_day(BACKFILL_DAY, "backfill__2026-10-15", now=end_of(UNTIL))
    assert not request.snapshot_readable
    sandbox.set_clock(end_of(UNTIL))
    lake = Lake(tmp_path / "lake")
    endpoints = Endpoints.from_sandbox(sandbox)
    before = sandbox.request_counts()

    api_client = kube_config.new_client_from_config(config_file=endpoints.kubeconfig)
    try:
        assert "skipped" in extract_cluster(request, api_client, policy, lake)
    finally:
        api_client.close()
    with RegistryClient(endpoints.registry_url, username=endpoints.registry_username,
                        password=endpoints.registry_password) as registry:
        assert "skipped" in extract_registry(request, registry, lake, cache_dir=None)
    extract_pulls_step(request, endpoints.pulls, lake)
    prometheus = PrometheusClient(endpoints.prometheus_url)
    try:
        extract_storage_step(request, prometheus, policy, lake)
    finally:
        prometheus.close()
    extract_scans_step(request, endpoints.scans, lake)
    result = validate_and_publish(request, policy, lake)

    after = sandbox.request_counts()
    assert after["kubernetes"] == before["kubernetes"] and after["registry"] == before["registry"], \
        "a backfill must not list today's cluster as if it were the past"
    assert result.passed, result.summary_markdown()
    (commit,) = lake.commits(BACKFILL_DAY)
    assert set(commit.files) == {"pulls_daily", "storage_usage", "scans", "validation"}
    assert commit.files["storage_usage"].rows == SAMPLES_PER_DAY
    assert commit.files["pulls_daily"].rows > 0
    validation = lake.read("validation", BACKFILL_DAY)
    presence = validation[validation.dataset.isin(SNAPSHOT_DATASETS) & (validation.expectation == "present in run")]
    assert set(presence.dataset) == set(SNAPSHOT_DATASETS)
    assert presence.observed.str.contains("cannot be read for a past date").all()


# ------------------------------------------------------------------------------ the CLI
def test_reglife_extract_publishes_a_range_of_sandbox_days_as_json(reglife_extract_range: CliRun):
    code, stdout, stderr = reglife_extract_range.wait()
    assert code == 0, stderr[-3000:]
    report = json.loads(stdout)
    assert [entry["day"] for entry in report] == CLI_DAYS
    assert all(entry["published"] for entry in report), report
    lake = Lake(reglife_extract_range.lake_dir)
    assert lake.days("pulls_daily") == [date.fromisoformat(day) for day in CLI_DAYS]
    assert lake.days("images") == [date(2026, 11, 25), date(2026, 11, 27)], "a snapshot every 2 days and the last"


def test_reglife_extract_on_the_sandbox_exits_3_with_json_when_the_gate_halts(lake: Lake, capsys):
    """The CLI contract: a halted day is reported in the JSON document, and the exit code is 3."""
    # A 14-day sandbox holds far fewer images than the 60-day one that filled the lake yesterday.
    code = cli.main(["extract", "--lake", lake.url.removeprefix("file://"), "--date", DAY.isoformat(), "--sandbox",
                     "--days", "14", "--until", UNTIL.isoformat(), "--json"])
    (entry,) = json.loads(capsys.readouterr().out)
    assert code == 3
    assert entry["published"] is False
    assert any(failure.startswith(f"images.{SHRINK}") for failure in entry["failures"])
    assert lake.commits(DAY)[-1].files.keys() == {"validation"}


# ------------------------------------------------------------------------------ S3
def test_a_day_published_to_s3_reads_back_like_the_same_day_on_a_folder(
        sandbox: Sandbox, policy: Policy, published: Published, s3_bucket):
    s3_lake = Lake(s3_bucket.url("lake"), s3_endpoint_url=s3_bucket.endpoint_url,
                   s3_credentials=S3Credentials(s3_bucket.server.access_key_id, s3_bucket.server.secret_access_key))
    outcome = extract_day(sandbox, policy, s3_lake, PREVIOUS_DAY, PUBLISHED_RUN)
    assert outcome.published, outcome.gate.summary_markdown()

    (commit,) = s3_lake.commits(PREVIOUS_DAY)
    assert set(commit.files) == PUBLISHED_DATASETS
    assert any(key.startswith("lake/_commits/dt=2026-11-25/") for key in s3_bucket.keys())
    for name in PUBLISHED_DATASETS:
        # observed_at is when the cluster was read (wall clock), the only thing two runs differ in.
        from_s3, from_folder = (lake.read(name, PREVIOUS_DAY).drop(columns=["observed_at"], errors="ignore")
                                for lake in (s3_lake, published.lake))
        pd.testing.assert_frame_equal(canonical(from_s3), canonical(from_folder), obj=name)
