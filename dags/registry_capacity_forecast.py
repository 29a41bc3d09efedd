"""
### registry_capacity_forecast

Runs whenever registry_extract publishes a snapshot. For each registry volume it models the
daily peak of used bytes with statsmodels (ETS with damped trend and weekly season, STL + ETS,
UnobservedComponents with steps at GC and prune drops, and their combination), chooses a model
by rolling-origin backtest against kube-prometheus' `predict_linear`, and publishes forecasts
with 80%/95% intervals, P(full by date) and days to full to the `forecasts` dataset. Growth per
namespace shows who drives it. The run's outlook is the forecast task's return value (XCom).

When P(full within the lead time) exceeds the policy's threshold, the alert task tells the
notifiers of the policy (email, Slack, webhook) with the chart and the fastest-growing
namespaces, once per situation: an unchanged risk is not repeated (`alert_deliveries` log).

A backfill recomputes the forecasts of past days from stored storage samples only, and sends no alert.
Policy: the `forecast:` section (lead time, alert probability, horizon, object-storage capacity,
`alerts.notifiers`); credentials only in Airflow Connections.
"""
import pendulum
from airflow.sdk import dag

from registry_lifecycle.airflow import assets, forecast_tasks


@dag(
    schedule=[assets.SNAPSHOT],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,          # two runs at once could both send the same alert
    doc_md=__doc__,
    tags=["registry", "capacity"],
    default_args={"owner": "platform", "retries": 2, "retry_delay": pendulum.duration(minutes=5)},
)
def registry_capacity_forecast():
    outlook = forecast_tasks.forecast()
    forecast_tasks.alert(outlook)


registry_capacity_forecast()
