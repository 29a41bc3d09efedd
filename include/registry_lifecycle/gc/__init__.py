"""Garbage collection of the internal registry: features, protections, the reuse model, the
reclaim calculation, the plan, its execution and the backtest. No Airflow imports here."""
