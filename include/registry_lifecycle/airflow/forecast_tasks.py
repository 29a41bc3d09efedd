"""registry_capacity_forecast's tasks: forecast every volume from the lake and publish the
`forecasts` and `capacity_alerts` datasets; then tell the policy's notifiers about volumes
that may fill within the lead time, once per situation. Both return JSON summaries for XCom
(outlooks and decisions, never charts or credentials)."""
from __future__ import annotations

import logging

from airflow.sdk import get_current_context, task

log = logging.getLogger(__name__)


@task
def forecast() -> dict:
    """Fit, backtest, forecast and publish from what the lake knew at the end of the run's day."""
    from ..forecast.run import forecast_day, publish
    from . import runtime

    context = get_current_context()
    day = (context.get("data_interval_end") or context["logical_date"]).date()
    lake = runtime.lake()
    settings = runtime.policy().forecast
    run = forecast_day(lake, day, settings)
    publish(lake, run, run_id=context["run_id"], top_namespaces=settings.alerts.top_namespaces)
    return run.as_dict()


@task
def alert(outlook: dict) -> dict:
    """Send this run's capacity alerts through the policy's notifiers, unless already told.

    A retry tells only the channels that did not get the alert (each delivery is logged the
    moment it succeeds). A backfill run decides and logs, but sends nothing: it recomputes
    what a past day would have said, which is no news today.
    """
    from datetime import date

    from ..forecast import alert as alerts
    from . import notifiers, runtime

    context = get_current_context()
    day = date.fromisoformat(outlook["day"])
    lake = runtime.lake()
    settings = runtime.policy().forecast.alerts
    candidates = alerts.read_candidates(lake, day, run_id=context["run_id"])
    run_type = getattr(context.get("dag_run"), "run_type", None)
    if str(getattr(run_type, "value", run_type)) == "backfill":
        decided = alerts.decisions(lake, day, candidates, [notifier.channel for notifier in settings.notifiers])
        log.warning("backfill run: capacity alerts decided but not sent: %s",
                    "; ".join(f"{d.series}: {d.reason}" for d in decided) or "no volumes")
        return {"day": day.isoformat(), "sent": False, "decisions": [d.as_dict() for d in decided]}
    if not settings.notifiers:
        log.warning("no notifiers in the policy (forecast.alerts.notifiers): capacity alerts are decided, not sent")
    decided = alerts.deliver(lake, day, context["run_id"], candidates, notifiers.senders(settings, context))
    return {"day": day.isoformat(), "sent": bool(settings.notifiers), "decisions": [d.as_dict() for d in decided]}
