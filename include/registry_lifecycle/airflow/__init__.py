"""Airflow glue only: assets, connections -> domain clients, task functions, notifiers.

Nothing here is imported at DAG-parse time except `assets` and the task modules, which
import their heavy dependencies (pandas, kubernetes, great_expectations) inside the tasks.
"""
