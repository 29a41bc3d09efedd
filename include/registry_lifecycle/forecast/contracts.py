"""The forecast's datasets: `forecasts` (one row per series and forecast day), `capacity_alerts`
(what a run would tell people) and `alert_deliveries` (what was told, to whom: the dedup state)."""
from __future__ import annotations

import pyarrow as pa

from ..datasets import TS, Dataset, register

FORECASTS = register(Dataset("forecasts", pa.schema([
    pa.field("series", pa.string(), nullable=False),   # "volume:<namespace>/<pvc>" or "namespace:<name>"
    pa.field("ds", pa.date32(), nullable=False),
    pa.field("yhat", pa.float64(), nullable=False),
    pa.field("lo80", pa.float64(), nullable=True),     # null: the model has no interval (predict_linear)
    pa.field("hi80", pa.float64(), nullable=True),
    pa.field("lo95", pa.float64(), nullable=True),
    pa.field("hi95", pa.float64(), nullable=True),
    pa.field("model", pa.string(), nullable=False),
]), ("series", "ds"), False, "daily peak storage forecasts with 80% and 95% intervals, per volume and namespace"))

CAPACITY_ALERTS = register(Dataset("capacity_alerts", pa.schema([
    pa.field("series", pa.string(), nullable=False),
    pa.field("as_of", pa.date32(), nullable=False),
    pa.field("at_risk", pa.bool_(), nullable=False),
    pa.field("p_full_within_lead", pa.float64(), nullable=True),   # null: no forecast or capacity unknown
    pa.field("severity", pa.string(), nullable=True),              # warning|high|critical when at risk
    pa.field("band", pa.int32(), nullable=True),                   # the fingerprint: band, full_by, capacity
    pa.field("full_by", pa.date32(), nullable=True),
    pa.field("capacity_bytes", pa.float64(), nullable=True),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("html", pa.string(), nullable=False),
    pa.field("details", pa.string(), nullable=False),              # JSON: the facts a webhook receives
    pa.field("chart_png", pa.binary(), nullable=True),             # only when at risk
]), ("series",), False, "each volume's alert candidate of a forecast run: the situation, and the message an "
   "alert would carry (sent or not: see alert_deliveries)"))

ALERT_DELIVERIES = register(Dataset("alert_deliveries", pa.schema([
    pa.field("series", pa.string(), nullable=False),
    pa.field("as_of", pa.date32(), nullable=False),                # the forecast day the alert was about
    pa.field("channel", pa.string(), nullable=False),              # a notifier's name; "*" for a clearance
    pa.field("event", pa.string(), nullable=False),                # sent | cleared
    pa.field("band", pa.int32(), nullable=True),
    pa.field("full_by", pa.date32(), nullable=True),
    pa.field("capacity_bytes", pa.float64(), nullable=True),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("at", TS, nullable=False),
]), ("series", "channel", "at"), False,
    "append-only log of capacity alerts sent per channel, and of risks that went away (which re-arm the alert)"))
