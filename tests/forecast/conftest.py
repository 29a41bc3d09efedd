"""Shared inputs for the capacity-forecast tests: the sandbox's storage series and its forecast.

Fitting the statsmodels candidates takes seconds per volume, so the sandbox forecast is
computed once per session; tests about plumbing (fallbacks, capacity sources, the lake) pass
the numpy-only candidates instead, which choose and forecast in milliseconds.
"""
from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from registry_lifecycle.forecast.bench import sandbox_storage
from registry_lifecycle.forecast.models import NAMESPACE_CANDIDATES
from registry_lifecycle.forecast.run import VolumeForecast, forecast_volume
from registry_lifecycle.forecast.series import daily_storage
from registry_lifecycle.sandbox.scenario import build_world

SANDBOX_UNTIL = date(2026, 11, 27)
#: Cheap candidates for tests that check plumbing rather than model quality.
FAST_CANDIDATES = NAMESPACE_CANDIDATES


@pytest.fixture(scope="session")
def sandbox_world():
    return build_world(seed=7, scale="tiny", until=SANDBOX_UNTIL)


@pytest.fixture(scope="session")
def sandbox_samples(sandbox_world) -> pd.DataFrame:
    """storage_usage rows of the sandbox's registry PVC, its history and its future."""
    return sandbox_storage(sandbox_world)


@pytest.fixture(scope="session")
def sandbox_forecast(sandbox_samples) -> VolumeForecast:
    """The forecast a run on the sandbox's last day makes, with every candidate model."""
    return forecast_volume(daily_storage(sandbox_samples, until=pd.Timestamp(SANDBOX_UNTIL)))
