"""registry_capacity_forecast's task: forecast every volume from the lake and publish the
`forecasts` dataset. Returns the JSON outlook (days to full, P(full), model, reason) for XCom."""
from __future__ import annotations

from airflow.sdk import get_current_context, task


@task
def forecast() -> dict:
    """Fit, backtest, forecast and publish from what the lake knew at the end of the run's day."""
    from ..forecast.run import forecast_day, publish
    from . import runtime

    context = get_current_context()
    day = (context.get("data_interval_end") or context["logical_date"]).date()
    lake = runtime.lake()
    run = forecast_day(lake, day, runtime.policy().forecast)
    publish(lake, run, run_id=context["run_id"])
    return run.as_dict()
