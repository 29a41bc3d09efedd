"""The Airflow Assets the DAGs exchange: registry_extract emits SNAPSHOT when a validated
snapshot is published; the GC, forecast and audit DAGs are scheduled on it."""
from airflow.sdk import Asset

SNAPSHOT = Asset("reglife://lake/snapshot", group="registry-lifecycle",
                 extra={"datasets": "images,layers,tags,references,builds,pulls_daily,scans,storage_usage"})
