"""
### registry_extract

Reads the OpenShift cluster (image streams, builds, every workload that can hold an image),
then the registry (catalog, tags, manifests, and every older tag revision by digest); in
parallel the registry's pull-event archive, Prometheus (registry volume usage) and Trivy scan
reports; stages them in the lake; and
publishes the day's snapshot only if the Great Expectations quality gate passes. A failed,
forbidden or truncated list fails its task, and a snapshot that shrinks implausibly against
the previous one halts the run: nothing partial is ever published.

Publishing emits the `reglife://lake/snapshot` Asset that the GC, forecast and audit DAGs run on.
Re-running a day replaces that day's run. A backfill (`airflow backfill create`) re-extracts
pulls, storage usage and scans; the cluster snapshot cannot be read for a past date, and the
task logs and the validation record say so.

Connections: `openshift_default` (Kubernetes), `registry_default` (HTTP), `prometheus_default`
(HTTP), `aws_default` (S3 lake and archives). Policy: `REGLIFE_POLICY`.
"""
import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag

from registry_lifecycle.airflow import extract_tasks


@dag(
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),   # each run covers one whole UTC day
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,          # two runs staging the same day would race for its partition
    doc_md=__doc__,
    tags=["registry", "extract"],
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(minutes=5)},
)
def registry_extract():
    cluster = extract_tasks.openshift()
    registry = extract_tasks.registry()
    # The registry step fetches, by digest, the older tag revisions and untagged Image objects the
    # cluster step found: the registry API cannot enumerate them, yet they are what pruning removes.
    cluster >> registry
    time_ranged = [extract_tasks.pulls(), extract_tasks.storage(), extract_tasks.scans()]
    extract_tasks.validate_and_publish([cluster, registry, *time_ranged])


registry_extract()
