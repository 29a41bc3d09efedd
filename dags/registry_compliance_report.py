"""
### registry_compliance_report

Once a quarter, for the quarter that just ended, assembles the compliance evidence from the lake:
inventory and change, provenance, tag-policy adherence, vulnerability posture, every deletion
joined to its approval (exceptions listed), capacity, data quality, and the mapping to NIST SP
800-190, SOC 2, PCI DSS and ISO 27001 controls. Writes it as HTML, PDF, one CSV per detail table
and a JSON evidence file, with a SHA-256 manifest, zipped; stores it under the report location
(S3 with optional Object Lock); reads it back to verify the manifest; and tells the policy's
report notifiers with a short-lived download link.

The data interval is the quarter, so a backfill reports on past quarters from stored data:
`airflow backfill create --dag-id registry_compliance_report --from-date 2026-01-01 --to-date 2026-06-30`.
A custom period: `reglife report --lake L --from D --to D --out DIR`.
Policy: the `report:` section. Download page: Browse > Compliance reports.
"""
import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag
from registry_lifecycle.airflow import report_tasks


@dag(
    # A data-interval timetable: the run at 1 October covers [1 July, 1 October), i.e. Q3.
    schedule=CronDataIntervalTimetable("@quarterly", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    doc_md=__doc__,
    tags=["registry", "compliance"],
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(minutes=10)},
)
def registry_compliance_report():
    stored = report_tasks.build()
    verified = report_tasks.verify(stored)
    report_tasks.notify(stored, verified)


registry_compliance_report()
