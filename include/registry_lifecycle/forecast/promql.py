"""What Prometheus computes today, reproduced exactly, so the forecast is compared with the real anchor.

kube-prometheus (kubernetes-mixin, `alerts/storage_alerts.libsonnet`) ships this warning:

    KubePersistentVolumeFillingUp:
        kubelet_volume_stats_available_bytes / kubelet_volume_stats_capacity_bytes < 0.15
      and kubelet_volume_stats_used_bytes > 0
      and predict_linear(kubelet_volume_stats_available_bytes[6h], 4 * 24 * 3600) < 0
      for: 1h

`predict_linear(v[6h], d)` (promql/functions.go, `linearRegression`) is an ordinary
least-squares line through the samples of the range, with time measured in seconds from the
evaluation instant, so the intercept is the fitted value *at* that instant; the result is
`intercept + slope * d`. The range is left-open since Prometheus 3: samples with
`t > eval - 6h` and `t <= eval`. With fewer than two samples there is no result; with all
values equal the slope is 0. Available bytes are capacity minus used, so with a constant
capacity `predict_linear(available) < 0` is exactly `predict_linear(used) > capacity`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW = pd.Timedelta(hours=6)
AHEAD = pd.Timedelta(days=4)
FREE_FRACTION = 0.15
FOR = pd.Timedelta(hours=1)


def predict_linear(samples: pd.Series, at: pd.Timestamp, ahead: pd.Timedelta | float,
                   window: pd.Timedelta = WINDOW) -> float:
    """`predict_linear(samples[window], ahead)` evaluated at `at`; NaN with fewer than two samples.

    `ahead` is a Timedelta or seconds, as in PromQL.
    """
    seconds_ahead = ahead.total_seconds() if isinstance(ahead, pd.Timedelta) else float(ahead)
    in_range = samples[(samples.index > at - window) & (samples.index <= at)].dropna()
    if len(in_range) < 2:
        return float("nan")
    x = (in_range.index - at).total_seconds().to_numpy(dtype=float)
    y = in_range.to_numpy(dtype=float)
    if np.all(y == y[0]):
        return float(y[0])
    x_mean, y_mean = x.mean(), y.mean()
    slope = np.sum((x - x_mean) * (y - y_mean)) / np.sum((x - x_mean) ** 2)
    intercept = y_mean - slope * x_mean
    return float(intercept + slope * seconds_ahead)


def rolling_predict_linear(samples: pd.Series, ahead: pd.Timedelta, window: pd.Timedelta = WINDOW) -> pd.Series:
    """`predict_linear` evaluated at every sample time, vectorised (the rule is evaluated continuously).

    Rolling sums of x, y, xy and x² over the time window give the same least-squares line as
    `predict_linear`; x is in hours from the first sample to keep the sums well conditioned.
    """
    values = samples.dropna()
    hours = pd.Series((values.index - values.index[0]).total_seconds() / 3600.0, index=values.index)
    frame = pd.DataFrame({"n": 1.0, "x": hours, "y": values, "xy": hours * values, "xx": hours * hours})
    sums = frame.rolling(window, closed="right").sum()
    var_x = sums["xx"] - sums["x"] ** 2 / sums["n"]
    cov_xy = sums["xy"] - sums["x"] * sums["y"] / sums["n"]
    slope = (cov_xy / var_x).where(var_x > 1e-12, 0.0)
    mean_x, mean_y = sums["x"] / sums["n"], sums["y"] / sums["n"]
    at_eval = mean_y + slope * (hours - mean_x)
    predicted = at_eval + slope * (ahead.total_seconds() / 3600.0)
    return predicted.where(sums["n"] >= 2)


def kube_persistent_volume_filling_up(used: pd.Series, capacity: pd.Series) -> pd.Series:
    """Whether KubePersistentVolumeFillingUp fires at each sample time (True once pending for 1h)."""
    capacity = capacity.reindex(used.index).ffill().bfill()
    available = (capacity - used).dropna()
    predicted = rolling_predict_linear(available, AHEAD)
    condition = ((available / capacity.reindex(available.index) < FREE_FRACTION)
                 & (used.reindex(available.index) > 0) & (predicted < 0))
    # `for: 1h`: the condition held at every evaluation of the last hour.
    return condition.astype(float).rolling(FOR, closed="both").min() == 1.0
