"""registry_extract's tasks. Each is a thin wrapper: build clients from Connections, call the
domain step in `registry_lifecycle.extract`, return a small summary for XCom (counts, never
data or credentials)."""
from __future__ import annotations

import logging

from airflow.sdk import get_current_context, task

from . import assets

log = logging.getLogger(__name__)


def _request():
    from ..extract import ExtractRequest

    context = get_current_context()
    day = context["data_interval_start"].date()
    return ExtractRequest.for_day(day, context["run_id"])


@task
def openshift() -> dict:
    """Image streams, Images, builds and every workload that can reference an image -> tags, references,
    builds, namespaces, image_objects."""
    from ..extract import extract_cluster
    from . import connections, runtime

    policy = runtime.policy()
    api_client = connections.kubernetes_api_client(policy.sources.openshift.connection_id)
    return extract_cluster(_request(), api_client, policy, runtime.lake())


@task
def registry() -> dict:
    """Catalog, tags and manifests of the registry -> images, layers (only unseen manifests are fetched;
    tag digests come from the ImageStreams the openshift task staged)."""
    from ..extract import extract_registry
    from ..sources.registry import RegistryClient
    from . import connections, runtime

    policy = runtime.policy()
    settings = policy.sources.registry
    with RegistryClient(**connections.registry_settings(settings.connection_id), concurrency=settings.concurrency,
                        page_size=settings.page_size, max_retries=settings.max_retries,
                        timeout=settings.timeout_seconds) as client:
        return extract_registry(_request(), client, runtime.lake(), runtime.manifest_cache_dir(), settings)


@task
def pulls() -> dict:
    """The day's registry notification events -> pulls_daily (any past day can be re-read)."""
    from ..extract import extract_pulls_step
    from . import runtime

    policy = runtime.policy()
    location = runtime.archive_location(policy.sources.pulls, policy.sources.pulls.connection_id)
    return extract_pulls_step(_request(), location, runtime.lake())


@task
def storage() -> dict:
    """Registry volume usage and capacity from Prometheus -> storage_usage (any past day)."""
    from ..extract import extract_storage_step
    from ..sources.prometheus import PrometheusClient
    from . import connections, runtime

    policy = runtime.policy()
    client = PrometheusClient(**connections.prometheus_settings(policy.sources.prometheus.connection_id))
    try:
        return extract_storage_step(_request(), client, policy, runtime.lake())
    finally:
        client.close()


@task
def scans() -> dict:
    """Trivy JSON reports filed that day -> scans."""
    from ..extract import extract_scans_step
    from . import runtime

    policy = runtime.policy()
    location = runtime.archive_location(policy.sources.scans, policy.sources.scans.connection_id)
    return extract_scans_step(_request(), location, runtime.lake())


@task(outlets=[assets.SNAPSHOT], retries=0)
def validate_and_publish(summaries: list[dict]) -> dict:
    """The quality gate: publish the snapshot (and emit the Asset) only if no critical check failed.

    Not retried: a failed expectation is a data problem that a retry cannot fix.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from ..extract import validate_and_publish as publish
    from ..validate.gate import DataQualityError
    from . import runtime

    request = _request()
    if not request.snapshot_readable:
        log.warning(request.backfill_notice())
    result = publish(request, runtime.policy(), runtime.lake())
    log.info("Data quality for %s:\n%s", request.day, result.summary_markdown())
    try:
        result.raise_for_failures()
    except DataQualityError as exc:
        raise AirflowFailException(f"nothing was published for {request.day}: {exc}") from None
    return {"day": request.day.isoformat(), "warnings": len(result.warnings),
            "snapshot_readable": request.snapshot_readable}
