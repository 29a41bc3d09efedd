"""The `forecasts` dataset: one row per (series, forecast day), as every reader of the lake expects."""
from __future__ import annotations

import pyarrow as pa

from ..datasets import Dataset, register

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
