"""registry_compliance_report's tasks: build and store the bundle, verify what was stored,
tell people with a short-lived link.

The period is the run's data interval (the quarter just ended, or a past quarter in a
backfill). What goes to XCom is the run summary: names, counts, checksums, never a download
URL: a presigned URL is a credential, created in `notify` and handed only to the notifiers.
"""
from __future__ import annotations

import logging

from airflow.sdk import get_current_context, task

log = logging.getLogger(__name__)

DOWNLOAD_PAGE = "the Airflow UI, Browse > Compliance reports (/reglife/reports/)"


def _store(policy):
    from ..report.run import report_location, report_store
    from . import connections

    s3 = connections.s3_settings(policy.report.connection_id) if report_location(policy.report).startswith("s3://") \
        else {}
    return report_store(policy.report, s3=s3)


@task
def build() -> dict:
    """Build every section from the lake for the data interval, bundle it, store it."""
    import tempfile

    from ..report.period import from_interval
    from ..report.run import generate, summary
    from . import runtime

    context = get_current_context()
    period = from_interval(context["data_interval_start"], context["data_interval_end"])
    policy = runtime.policy()
    store = _store(policy)
    with tempfile.TemporaryDirectory(prefix="reglife-report-") as out:
        generated = generate(runtime.lake(), period, policy, out)
        stored = store.store(generated.bundle, period.label, generated.report.generated_at)
        result = summary(generated, stored)
    # The temporary paths are gone once the task ends; what stays is where the report is stored.
    for local in ("bundle", "zip"):
        result.pop(local)
    log.info("report %s stored in %s/%s: %s", period.label, store.location, stored.folder,
             ", ".join(f"{key} {status}" for key, status in result["sections"].items()))
    return result


@task
def verify(result: dict) -> dict:
    """Read the stored zip back and check it against its manifest and its recorded sha256."""
    import hashlib
    import tempfile
    from pathlib import Path

    from ..report.bundle import verify_bundle
    from ..report.storage import StorageError
    from . import runtime

    policy = runtime.policy()
    store = _store(policy)
    report = store.get(result["stored"]["label"], result["stored"]["stamp"])
    data = store.read(report, report.zip_name)
    if hashlib.sha256(data).hexdigest() != result["zip_sha256"]:
        raise StorageError(f"the stored {report.zip_name} differs from the bundle that was written")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / report.zip_name
        path.write_bytes(data)
        manifest = verify_bundle(path)
    retention = store.retention(report, report.zip_name) if policy.report.object_lock.mode else {}
    if policy.report.object_lock.mode and retention.get("Mode") != policy.report.object_lock.mode:
        raise StorageError(f"{report.zip_name} was stored without the {policy.report.object_lock.mode} retention the "
                           f"policy asks for (found {retention or 'none'}): is Object Lock enabled on the bucket?")
    return {"label": report.label, "stamp": report.stamp, "files_verified": len(manifest),
            "retention": {key: str(value) for key, value in retention.items()}}


@task
def notify(result: dict, verified: dict) -> dict:
    """Tell the policy's report notifiers, with presigned links that expire after report.download_url_ttl."""
    from datetime import datetime, timezone

    from ..forecast.alert import AlertMessage, DeliveryFailed
    from ..report.notification import compose
    from ..report.storage import S3ReportStore
    from . import notifiers, runtime

    policy = runtime.policy()
    settings = policy.report
    if not settings.notifiers:
        log.info("report.notifiers is empty: nobody is notified (the report is on the download page)")
        return {"sent": [], "failed": []}
    store = _store(policy)
    report = store.get(verified["label"], verified["stamp"])
    links, expires_at = {}, None
    if isinstance(store, S3ReportStore):
        expires_at = datetime.now(timezone.utc) + settings.download_url_ttl
        links = {name: store.download_url(report, name, settings.download_url_ttl)
                 for name in (report.downloads[:1] + ([report.zip_name] if report.zip_name else []))}
    subject, text, html = compose(result, links, expires_at, DOWNLOAD_PAGE)
    details = {"kind": "registry_compliance_report", "period": result["period"], "zip_sha256": result["zip_sha256"],
               "sections": result["sections"], "exceptions": result["exceptions"], "links": links,
               "links_expire_at": expires_at.isoformat() if expires_at else None}
    message = AlertMessage(f"report:{result['period']}", None, subject, text, html, details, None)
    context = get_current_context()
    sent, failed = [], []
    for channel in settings.notifiers:
        try:
            notifiers.send(channel, message, context=context)
            sent.append(channel.channel)
        except DeliveryFailed as error:     # its text names no URL, token or password
            log.error("report notification failed: %s", error)
            failed.append(channel.channel)
    if failed:
        raise DeliveryFailed(f"report notification failed on {', '.join(failed)} (sent: {', '.join(sent) or 'none'})")
    return {"sent": sent, "failed": failed}
