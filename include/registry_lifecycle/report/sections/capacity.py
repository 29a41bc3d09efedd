"""Capacity: how full the registry's storage was during the period, what the last forecast of
the period expected, and which capacity alerts were raised and sent.

Usage is the daily peak of the stored Prometheus samples (`storage_usage`). The forecast is
the latest `forecasts` run on or before the period's last day; the day it reaches capacity
is read off its mean and its 95% upper band. Alerts are the forecast runs' own records:
`capacity_alerts` (a volume at risk on a day) and `alert_deliveries` (what was sent, to which
channel).
"""
from __future__ import annotations

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...config import Policy
from ...datasets import ALL
from ..evidence import PeriodData
from ..section import NO_DATA, Chart, Fact, Section, Table

GIB = 2**30
ALERTS, DELIVERIES = "capacity_alerts", "alert_deliveries"


def daily_usage(samples: pd.DataFrame) -> pd.DataFrame:
    """Per volume and day: peak used bytes and the capacity at that peak."""
    samples = samples.dropna(subset=["used_bytes"]).assign(day=samples["ts"].dt.date)
    peaks = samples.loc[samples.groupby(["volume", "day"])["used_bytes"].idxmax()]
    return peaks[["volume", "day", "used_bytes", "capacity_bytes"]].sort_values(["volume", "day"]).reset_index(drop=True)


def volume_table(daily: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for volume, days in daily.groupby("volume"):
        first, last = days.iloc[0], days.iloc[-1]
        utilisation = days["used_bytes"] / days["capacity_bytes"]
        rows.append({"volume": volume, "days": len(days), "used_start": first.used_bytes, "used_end": last.used_bytes,
                     "used_peak": days["used_bytes"].max(), "capacity_end": last.capacity_bytes,
                     "peak_utilisation": utilisation.max() if utilisation.notna().any() else None,
                     "growth_bytes": last.used_bytes - first.used_bytes})
    return pd.DataFrame(rows)


def full_on(forecast: pd.DataFrame, column: str, capacity: float | None):
    """The first forecast day on which `column` reaches `capacity`, or None."""
    if capacity is None or pd.isna(capacity) or column not in forecast:
        return None
    reached = forecast[forecast[column] >= capacity]
    return reached["ds"].min() if len(reached) else None


def chart(daily: pd.DataFrame, forecast: pd.DataFrame, volume: str) -> bytes:
    figure = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    used = daily[daily["volume"] == volume]
    axes.plot(pd.to_datetime(used["day"]), used["used_bytes"] / GIB, color="tab:blue", label="daily peak used")
    axes.step(pd.to_datetime(used["day"]), used["capacity_bytes"] / GIB, where="post", color="black",
              linestyle="--", label="capacity")
    if len(forecast):
        days = pd.to_datetime(forecast["ds"])
        if forecast["hi80"].notna().any():
            axes.fill_between(days, forecast["lo80"] / GIB, forecast["hi80"] / GIB, color="tab:orange", alpha=0.3,
                              linewidth=0, label="forecast 80%")
        axes.plot(days, forecast["yhat"] / GIB, color="tab:orange", label=f"forecast ({forecast['model'].iloc[0]})")
    axes.set_ylabel("GiB")
    axes.set_title(f"Storage of {volume}")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def build(data: PeriodData, policy: Policy) -> Section:
    section = Section("capacity", "Capacity",
                      "Registry storage used during the period, the forecast made at its end, and the capacity alerts "
                      "raised.", datasets=["storage_usage", "forecasts"])
    period = data.period
    samples = data.read_period("storage_usage")
    daily = daily_usage(samples) if len(samples) else pd.DataFrame(columns=["volume", "day", "used_bytes",
                                                                             "capacity_bytes"])
    volumes = volume_table(daily)
    if volumes.empty:
        section.no_data("No data: no storage samples are stored for this period.")
    primary = volumes.sort_values("used_peak", ascending=False).iloc[0] if len(volumes) else None
    forecast_days = [d for d in data.days("forecasts") if d <= period.last]
    forecast = pd.DataFrame(columns=["series", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])
    if forecast_days and primary is not None:
        stored = data.read_day("forecasts", forecast_days[-1])
        forecast = stored[stored["series"] == f"volume:{primary.volume}"].sort_values("ds")
    capacity = primary.capacity_end if primary is not None else None
    section.facts += [
        Fact("volumes", "Volumes", len(volumes)),
        Fact("used_end", "Used at the end", primary.used_end if primary is not None else None, "bytes",
             f"volume {primary.volume}" if primary is not None else None),
        Fact("used_peak", "Peak used in the period", primary.used_peak if primary is not None else None, "bytes"),
        Fact("capacity_end", "Capacity at the end", capacity, "bytes"),
        Fact("peak_utilisation", "Peak utilisation", primary.peak_utilisation if primary is not None else None, "share"),
        Fact("growth", "Growth over the period", primary.growth_bytes if primary is not None else None, "bytes"),
        Fact("forecast_day", "Forecast used", forecast_days[-1] if forecast_days and len(forecast) else None, "date",
             f"model {forecast['model'].iloc[0]}" if len(forecast) else None),
        Fact("full_mean", "Full by (forecast mean)", full_on(forecast, "yhat", capacity), "date",
             "none within the forecast horizon" if len(forecast) and full_on(forecast, "yhat", capacity) is None
             else None),
        Fact("full_hi95", "Full by (95% upper band)", full_on(forecast, "hi95", capacity), "date"),
    ]
    if not len(forecast):
        section.no_data("No forecast is stored on or before the period's last day.")

    if ALERTS in ALL:
        section.datasets += [ALERTS, DELIVERIES]
        candidates = data.read_period(ALERTS)
        at_risk = candidates[candidates["at_risk"].astype(bool)] if len(candidates) else candidates
        deliveries = data.read_period(DELIVERIES) if DELIVERIES in ALL else pd.DataFrame()
        sent = deliveries[deliveries["event"] == "sent"] if len(deliveries) else deliveries
        recorded = bool(data.days_in_period(ALERTS))
        section.facts += [
            Fact("days_at_risk", "Forecast days with a volume at risk",
                 int(at_risk["as_of"].nunique()) if recorded else None,
                 detail=f"P(full within {policy.forecast.lead_time_days} days) above "
                        f"{policy.forecast.alert_probability:.0%}"),
            Fact("alerts_sent", "Capacity alerts sent", len(sent) if recorded else None,
                 detail=", ".join(sorted(set(sent["channel"]))) if len(sent) else None),
        ]
        if not recorded:
            section.no_data("No data: no capacity alert decision is stored for this period.")
        if len(at_risk):
            section.tables.append(Table("capacity-alerts", "Days a volume was at risk",
                                        at_risk[["as_of", "series", "severity", "p_full_within_lead", "full_by",
                                                 "capacity_bytes", "subject"]]))
        if len(sent):
            section.tables.append(Table("capacity-alert-deliveries", "Alerts sent",
                                        sent[["at", "series", "channel", "band", "full_by", "run_id"]]))
    else:
        section.facts.append(Fact("alerts_sent", "Capacity alerts sent", None, detail="no alert log stored"))
        section.no_data("Alerts: no data. No capacity alert log is stored in the lake.")
    section.tables.insert(0, Table("capacity-volumes", "Per volume", volumes, shown=len(volumes)))
    section.tables.append(Table("capacity-daily-usage", "Daily peak usage", daily, shown=0,
                                caption="every day of the period in the CSV"))
    if primary is not None:
        section.charts.append(Chart("capacity-usage", "Usage, capacity and forecast", chart(daily, forecast,
                                                                                             primary.volume)))
    if volumes.empty and not len(forecast):
        section.status = NO_DATA
    return section
