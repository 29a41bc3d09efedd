"""Test-session setup shared by every test directory.

Airflow reads its configuration once, when `airflow` is first imported, and creates
AIRFLOW_HOME (airflow.cfg, logs, the SQLite DB) as a side effect. So the environment below is
set at conftest import time, before any test module can import Airflow: each session gets a
throwaway AIRFLOW_HOME and never touches ~/airflow or a developer's real metadata DB.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.moto", "tests.fixtures.components"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"
PLUGINS_FOLDER = REPO_ROOT / "plugins"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="reglife-airflow-home-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)

os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        # Only the project's DAGs: example DAGs would slow parsing and hide our import errors.
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        # Airflow's own test switch: config comes from its unit_tests.cfg (the variables here
        # still win) instead of a generated airflow.cfg with a real Fernet key and JWT secret,
        # and operators' execute() may be called directly in unit tests (ExecutorSafeguard).
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        # dag.test() and `airflow standalone` tests run tasks in-process; no executor daemons.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's throwaway AIRFLOW_HOME (airflow.cfg, logs and the SQLite metadata DB)."""
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """A migrated SQLite metadata DB, for tests that need one (dag.test(), the REST API).

    Opt-in rather than autouse: migrating takes seconds, and the DAG integrity tests must
    prove that parsing needs no database at all.
    """
    from airflow.utils.db import initdb

    initdb()
    return airflow_home / "airflow.db"
