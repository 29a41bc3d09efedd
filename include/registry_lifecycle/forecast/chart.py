"""The forecast as a picture for the people who must act on it.

Top panel: the raw samples (the sawtooth), the daily peak that was modelled, the forecast
with its 80% and 95% bands, the capacity line (stepping up where the PVC was resized), the
scheduled GC runs, prunes and resets. Bottom panel: P(full by date) with the alert threshold,
so "when" and "how sure" are read off the same time axis.

Drawn on a bare matplotlib Figure with the Agg canvas: no pyplot global state, so charts can
be rendered from several tasks of one worker without interfering.
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .capacity import CapacityOutlook
from .models import Forecast
from .series import DailyStorage

GIB = 2**30


def render(daily: DailyStorage, forecast: Forecast, outlook: CapacityOutlook | None = None) -> bytes:
    """The chart as PNG bytes."""
    figure = Figure(figsize=(12, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    usage_axes, probability_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    _usage(usage_axes, daily, forecast, outlook)
    _probability(probability_axes, forecast, outlook)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write(path: Path | str, daily: DailyStorage, forecast: Forecast, outlook: CapacityOutlook | None = None) -> Path:
    path = Path(path)
    path.write_bytes(render(daily, forecast, outlook))
    return path


def _usage(axes, daily: DailyStorage, forecast: Forecast, outlook: CapacityOutlook | None) -> None:
    samples = daily.samples.tz_convert(None) if daily.samples.index.tz is not None else daily.samples
    axes.plot(samples.index, samples.to_numpy() / GIB, color="tab:blue", alpha=0.3, linewidth=0.6,
              label="used (samples)")
    axes.plot(daily.used.index + pd.Timedelta(hours=12), daily.used.to_numpy() / GIB, color="tab:blue",
              linewidth=1.4, label="daily peak")
    days = forecast.index + pd.Timedelta(hours=12)
    if forecast.has_interval:
        lo95, hi95 = forecast.interval(0.95)
        lo80, hi80 = forecast.interval(0.8)
        axes.fill_between(days, lo95 / GIB, hi95 / GIB, color="tab:orange", alpha=0.15, linewidth=0, label="95%")
        axes.fill_between(days, lo80 / GIB, hi80 / GIB, color="tab:orange", alpha=0.3, linewidth=0, label="80%")
    axes.plot(days, forecast.mean / GIB, color="tab:orange", linewidth=1.6, label=f"forecast ({forecast.model})")

    capacity = daily.capacity.dropna()
    if len(capacity):
        line = pd.concat([capacity, pd.Series(capacity.iloc[-1], index=[forecast.index[-1] + pd.Timedelta(days=1)])])
        axes.step(line.index, line.to_numpy() / GIB, where="post", color="tab:red", linewidth=1.4, label="capacity")
    for event in daily.of_kind("resize"):
        at = event.at.tz_convert(None)
        axes.axvline(at, color="tab:red", linestyle=":", linewidth=1)
        axes.annotate(f"PVC resized {event.bytes / GIB:+.0f} GiB", (at, 0.02), xycoords=("data", "axes fraction"),
                      rotation=90, fontsize=8, color="tab:red", ha="right")
    gc_runs = [event.at.tz_convert(None) for event in daily.of_kind("gc")]
    if gc_runs:
        axes.plot(gc_runs, [0.0] * len(gc_runs), linestyle="none", marker="^", color="tab:green", markersize=5,
                  transform=axes.get_xaxis_transform(), clip_on=False, label="scheduled GC")
    for index, event in enumerate(daily.of_kind("drop", "prune")):
        axes.axvline(event.at.tz_convert(None), color="tab:green", linestyle="--", linewidth=0.8, alpha=0.7,
                     label="prune / clean-up" if index == 0 else None)
    resets = [event.at.tz_convert(None) for event in daily.of_kind("reset", "glitch")]
    if resets:
        axes.plot(resets, [0.97] * len(resets), linestyle="none", marker="x", color="black",
                  transform=axes.get_xaxis_transform(), label="reset / glitch removed")
    axes.axvline(forecast.index[0], color="grey", linewidth=0.8)
    axes.set_ylabel("GiB")
    axes.set_ylim(bottom=0)
    title = f"{daily.volume}: forecast from {(forecast.index[0] - pd.Timedelta(days=1)).date()} ({forecast.model})"
    if outlook is not None:
        title += "\n" + textwrap.fill(outlook.summary.removeprefix(f"{outlook.series}: "), 150)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="best", fontsize=8, ncols=3)
    axes.grid(alpha=0.3)


def _probability(axes, forecast: Forecast, outlook: CapacityOutlook | None) -> None:
    axes.set_ylim(0, 1)
    axes.set_ylabel("P(full by date)")
    axes.grid(alpha=0.3)
    if outlook is None or outlook.p_full is None:
        axes.text(0.5, 0.5, "capacity unknown", transform=axes.transAxes, ha="center", va="center")
        return
    axes.plot(outlook.p_full.index + pd.Timedelta(hours=12), outlook.p_full.to_numpy(), color="tab:red")
    axes.axhline(outlook.alert_probability, color="tab:red", linestyle=":", linewidth=1,
                 label=f"alert threshold ({outlook.alert_probability:.0%})")
    lead_end = forecast.index[0] + pd.Timedelta(days=outlook.lead_time_days - 1)
    axes.axvspan(forecast.index[0], lead_end, color="tab:red", alpha=0.06,
                 label=f"lead time ({outlook.lead_time_days} d)")
    # The two dates are often days apart: one label left of its line, the other right of it.
    labels = ((outlook.crosses_10, "10%", 0.85, "right"), (outlook.crosses_50, "50%", 0.6, "left"))
    for day, label, height, side in labels:
        if day is not None:
            axes.axvline(pd.Timestamp(day), color="black", linestyle="--", linewidth=0.8)
            axes.annotate(f" {label} by {day.isoformat()} ", (pd.Timestamp(day), height), fontsize=8, ha=side)
    axes.legend(loc="upper left", fontsize=8)
