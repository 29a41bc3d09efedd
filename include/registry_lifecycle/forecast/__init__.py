"""Registry capacity forecast: when will the registry's storage be full, and how sure are we?

kube-prometheus' KubePersistentVolumeFillingUp extrapolates six hours of samples four days
ahead, without seasonality or interval, and is fooled by the write-then-prune sawtooth of a
registry. Here the daily peak is modelled with statsmodels and simple models, the model is
chosen per series by a rolling-origin backtest against that same predict_linear, and the
alert is a probability of being full within the policy's lead time.

Modules, each one concept: `series` (5-minute samples -> daily peaks, gaps, resets, GC and
resize events, namespace growth), `promql` (predict_linear and the kube-prometheus rule,
exactly), `models` (the models behind one fit/forecast interface), `backtest` (rolling origin,
MASE, coverage, Winkler, the choice), `capacity` (P(full by date), days to full, alert and
fingerprint), `chart` (the PNG), `alert` (the message, the per-channel dedup state, delivery),
`run` (one day's run from the lake, and backfills), `scenarios` and `bench` (synthetic fill
scenarios and the benchmark).

Importing this package registers the forecast's dataset contracts and nothing heavy:
statsmodels and matplotlib are imported by the modules that need them.
"""
from .contracts import FORECASTS
from .settings import ForecastSettings

__all__ = ["FORECASTS", "ForecastSettings"]
