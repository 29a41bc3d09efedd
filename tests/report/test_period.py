"""Periods: quarters as compliance officers write them, and Airflow data intervals."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from registry_lifecycle.report.period import (
    PeriodError,
    custom,
    from_interval,
    previous_quarter,
    quarter,
)


@pytest.mark.parametrize("text, first, last", [
    ("2026Q1", date(2026, 1, 1), date(2026, 3, 31)),
    ("2026Q2", date(2026, 4, 1), date(2026, 6, 30)),
    ("2026-Q3", date(2026, 7, 1), date(2026, 9, 30)),
    ("2026q4", date(2026, 10, 1), date(2026, 12, 31)),
    ("2028Q1", date(2028, 1, 1), date(2028, 3, 31)),
])
def test_a_quarter_is_its_three_calendar_months(text, first, last):
    period = quarter(text)
    assert (period.first, period.last) == (first, last)
    assert period.label == f"{first.year}Q{(first.month - 1) // 3 + 1}"
    assert period.is_quarter


@pytest.mark.parametrize("text", ["2026Q5", "Q3 2026", "2026-09", ""])
def test_a_malformed_quarter_says_how_to_write_one(text):
    with pytest.raises(PeriodError, match="e.g. 2026Q3"):
        quarter(text)


def test_a_run_on_the_first_day_of_a_quarter_reports_on_the_quarter_before():
    assert previous_quarter(date(2026, 10, 1)).label == "2026Q3"
    assert previous_quarter(date(2026, 1, 15)).label == "2025Q4"


def test_the_quarterly_data_interval_is_the_quarter_just_ended():
    """[1 July, 1 October) in Airflow's half-open convention is 1 July .. 30 September."""
    period = from_interval(datetime(2026, 7, 1, tzinfo=timezone.utc), datetime(2026, 10, 1, tzinfo=timezone.utc))
    assert period == quarter("2026Q3")


def test_a_custom_period_keeps_its_days_and_a_custom_label():
    period = custom(date(2026, 8, 1), date(2026, 9, 15))
    assert (period.first, period.last, period.days) == (date(2026, 8, 1), date(2026, 9, 15), 46)
    assert period.label == "2026-08-01_2026-09-15" and not period.is_quarter
    assert custom(date(2026, 4, 1), date(2026, 6, 30)).label == "2026Q2"


def test_a_period_that_ends_before_it_starts_is_refused():
    with pytest.raises(PeriodError, match="before"):
        custom(date(2026, 9, 2), date(2026, 9, 1))
