"""The sandbox Prometheus answers like Prometheus, over real HTTP: the capacity forecast and
its `predict_linear` baseline read storage usage through exactly this API."""
from __future__ import annotations

import math
import re
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import httpx
import numpy as np
import pytest

from registry_lifecycle.sandbox.clock import SandboxClock
from registry_lifecycle.sandbox.faults import FaultInjector
from registry_lifecycle.sandbox.httpbase import SandboxServer
from registry_lifecycle.sandbox.model import Series
from registry_lifecycle.sandbox.prometheus_api import start_prometheus_api, to_openmetrics

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
T0 = int(START.timestamp())
STEP = 300                      # the history's 5-minute resolution
DAYS = 3
GAP = (T0 + 86_400, T0 + 86_400 + 3_600)       # an hour without scrapes on day 2
NOW = T0 + 2 * 86_400                           # the clock: end of day 2; day 3 is "the future"
USED = "registry_storage_used_bytes"
CAPACITY = "registry_storage_capacity_bytes"


def _used_bytes(ts: np.ndarray, base: float) -> np.ndarray:
    """Growth plus a daily wave and deterministic jitter: never a straight line."""
    rng = np.random.default_rng(7)
    return base + 40_000.0 * (ts - T0) + 3e9 * np.sin(2 * np.pi * (ts - T0) / 86_400) + rng.normal(0, 2e8, ts.size)


@lru_cache(maxsize=1)
def history() -> list[Series]:
    """Three days of two clusters' usage and capacity, plus a short-lived odd series (read-only)."""
    grid = np.arange(T0, T0 + DAYS * 86_400, STEP, dtype=np.int64)
    with_gap = grid[(grid < GAP[0]) | (grid >= GAP[1])]
    series = []
    for cluster, base in (("prod-east", 2e11), ("prod-west", 1e11)):
        labels = {"cluster": cluster, "volume": "image-registry"}
        series.append(Series(USED, labels, with_gap.astype(float).tolist(), _used_bytes(with_gap, base).tolist()))
        series.append(Series(CAPACITY, labels, grid.astype(float).tolist(), [5e11] * grid.size))
    series.append(Series("registry_storage_used_bytes", {"cluster": "lab", "volume": 'odd "quoted"\nvalue'},
                         [float(T0), float(T0 + STEP)], [1.0, 2.0]))
    return series


def samples_of(series: list[Series], cluster: str, metric: str = USED) -> tuple[np.ndarray, np.ndarray]:
    item = next(s for s in series if s.metric == metric and s.labels["cluster"] == cluster)
    return np.array(item.timestamps), np.array(item.values)


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., tuple[SandboxServer, httpx.Client]]]:
    """Start a sandbox Prometheus over `history()`; every one started is stopped after the test."""
    started: list[tuple[SandboxServer, httpx.Client]] = []

    def start(**options: object) -> tuple[SandboxServer, httpx.Client]:
        clock = SandboxClock(datetime.fromtimestamp(NOW, timezone.utc), earliest=START,
                             latest=START + timedelta(days=DAYS))
        server = start_prometheus_api(history(), clock, FaultInjector(), **options)
        client = httpx.Client(base_url=server.url, timeout=30)
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        client.close()
        server.stop()


@pytest.fixture
def prometheus(prometheus_factory) -> tuple[SandboxServer, httpx.Client]:
    return prometheus_factory()


@pytest.fixture
def api(prometheus) -> httpx.Client:
    return prometheus[1]


def query_range(api: httpx.Client, query: str, start: float, end: float, step: float | str) -> dict:
    response = api.get("/api/v1/query_range", params={"query": query, "start": start, "end": end, "step": step})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "matrix"
    return body["data"]


def instant(api: httpx.Client, query: str, at: float | None = None) -> dict:
    params = {"query": query} if at is None else {"query": query, "time": at}
    response = api.get("/api/v1/query", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def only_series(data: dict) -> dict:
    assert len(data["result"]) == 1, data["result"]
    return data["result"][0]


# ----------------------------------------------------------------------------- selection
def test_query_range_on_the_sample_grid_returns_the_stored_samples(api):
    """A step equal to the scrape interval returns every stored sample, bit for bit."""
    start, end = T0 + 6 * 3600, T0 + 12 * 3600
    data = query_range(api, f'{USED}{{cluster="prod-east"}}', start, end, STEP)
    series = only_series(data)
    assert series["metric"] == {"__name__": USED, "cluster": "prod-east", "volume": "image-registry"}
    ts, values = samples_of(history(), "prod-east")
    mask = (ts >= start) & (ts <= end)
    assert [p[0] for p in series["values"]] == ts[mask].astype(int).tolist()
    assert [float(p[1]) for p in series["values"]] == values[mask].tolist()


def test_each_step_takes_the_latest_sample_within_the_lookback(api):
    """Between scrapes a step repeats the previous sample; timestamps are the steps themselves."""
    start = T0 + 3600
    data = query_range(api, f'{USED}{{cluster="prod-east"}}', start, start + 600, 60)
    ts, values = samples_of(history(), "prod-east")
    points = only_series(data)["values"]
    assert [p[0] for p in points] == list(range(start, start + 601, 60))
    for stamp, value in points:
        latest = values[np.searchsorted(ts, stamp, side="right") - 1]
        assert float(value) == latest


def test_a_gap_longer_than_the_lookback_leaves_missing_points(api):
    """Staleness: a sample answers for 5 minutes after it (left-open window), then nothing until
    the next scrape, as Prometheus's lookback delta does."""
    last_before_gap = GAP[0] - STEP
    data = query_range(api, f'{USED}{{cluster="prod-east"}}', last_before_gap, GAP[1], 60)
    stamps = [p[0] for p in only_series(data)["values"]]
    assert stamps == list(range(last_before_gap, last_before_gap + 300, 60)) + [GAP[1]]


def test_matchers_select_series(api):
    def clusters(selector: str) -> list[str]:
        return sorted(r["metric"].get("cluster", "") for r in instant(api, selector, T0 + 7200)["result"])

    assert clusters(f'{USED}{{cluster="prod-east"}}') == ["prod-east"]
    assert clusters(f'{USED}{{cluster!="prod-east"}}') == ["prod-west"]       # "lab" has gone stale
    assert clusters(f'{USED}{{cluster=~"prod-.*"}}') == ["prod-east", "prod-west"]
    assert clusters(f'{USED}{{cluster!~"prod-e.*"}}') == ["prod-west"]
    assert clusters(f'{{__name__="{CAPACITY}", cluster=~"prod-w.+"}}') == ["prod-west"]
    assert clusters('{__name__=~"registry_storage_.*", cluster="prod-east"}') == ["prod-east", "prod-east"]
    assert clusters(f'{USED}{{cluster="nowhere"}}') == []


def test_instant_query_value_is_stamped_with_the_evaluation_time(api):
    at = T0 + 7200 + 17
    result = only_series(instant(api, f'{USED}{{cluster="prod-west"}}', at))
    ts, values = samples_of(history(), "prod-west")
    assert result["value"][0] == at
    assert float(result["value"][1]) == values[ts == T0 + 7200][0]
    assert "e" not in result["value"][1]             # Prometheus writes plain digits below 1e21


# ----------------------------------------------------------------------------- functions
def hand_predict_linear(ts: np.ndarray, values: np.ndarray, at: int, window: int, horizon: float) -> float:
    """Least squares over the samples in (at - window, at], intercept at `at`, exactly written out."""
    mask = (ts > at - window) & (ts <= at)
    xs, ys = ts[mask] - at, values[mask]
    n = xs.size
    mean_x, mean_y = math.fsum(xs) / n, math.fsum(ys) / n
    covariance = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = covariance / math.fsum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x              # the fitted value at x = 0, the evaluation time
    return intercept + slope * horizon


def test_predict_linear_matches_least_squares_at_the_evaluation_time(api):
    at = T0 + 30 * 3600 + 120                      # off the scrape grid: x is measured from here
    result = only_series(instant(api, f'predict_linear({USED}{{cluster="prod-east"}}[6h], 1209600)', at))
    ts, values = samples_of(history(), "prod-east")
    assert result["metric"] == {"cluster": "prod-east", "volume": "image-registry"}   # name dropped
    assert float(result["value"][1]) == pytest.approx(hand_predict_linear(ts, values, at, 6 * 3600, 1_209_600),
                                                      rel=1e-12)


def kahan_sum_inc(increment: float, total: float, compensation: float) -> tuple[float, float]:
    """Prometheus 3's kahanSumInc, line by line."""
    new_total = total + increment
    if math.isinf(new_total):
        return new_total, 0.0
    if abs(total) >= abs(increment):
        return new_total, compensation + ((total - new_total) + increment)
    return new_total, compensation + ((increment - new_total) + total)


def prometheus_predict_linear(ts: np.ndarray, values: np.ndarray, at: int, window: int, horizon: float) -> float:
    """Prometheus's funcPredictLinear/linearRegression transliterated: same order, same roundings."""
    mask = (ts > at - window) & (ts <= at)
    sums = {"x": (0.0, 0.0), "y": (0.0, 0.0), "xy": (0.0, 0.0), "x2": (0.0, 0.0)}
    for t_ms, y in zip((ts[mask] * 1000).astype(np.int64).tolist(), values[mask].tolist(), strict=True):
        x = float(t_ms - at * 1000) / 1e3
        for key, term in (("x", x), ("y", y), ("xy", x * y), ("x2", x * x)):
            sums[key] = kahan_sum_inc(term, *sums[key])
    n = float(mask.sum())
    sum_x, sum_y, sum_xy, sum_x2 = (total + compensation for total, compensation in sums.values())
    slope = (sum_xy - sum_x * sum_y / n) / (sum_x2 - sum_x * sum_x / n)
    return slope * horizon + (sum_y / n - slope * sum_x / n)


def test_predict_linear_and_avg_over_time_round_like_prometheus(api):
    """Not just close: Prometheus's Kahan sums in Prometheus's order give the very same float."""
    ts, values = samples_of(history(), "prod-west")
    query = f'predict_linear({USED}{{cluster="prod-west"}}[1d], 604800)'
    for stamp, value in only_series(query_range(api, query, T0 + 86_400, T0 + 2 * 86_400, 3_333))["values"]:
        assert float(value) == prometheus_predict_linear(ts, values, stamp, 86_400, 604_800.0)
    at = T0 + 40_000
    window = values[(ts > at - 86_400) & (ts <= at)].tolist()
    total, compensation = window[0], 0.0
    for sample in window[1:]:
        total, compensation = kahan_sum_inc(sample, total, compensation)
    average = only_series(instant(api, f'avg_over_time({USED}{{cluster="prod-west"}}[1d])', at))["value"][1]
    assert float(average) == total / len(window) + compensation / len(window)


def test_predict_linear_over_a_range_query_matches_instant_queries(api):
    """Each step of a range query is an instant query at that step: same engine, same answer,
    also for windows with the scrape gap in them."""
    query = f'predict_linear({USED}{{cluster="prod-west"}}[2h], 86400)'
    data = query_range(api, query, T0 + 86_400, T0 + 86_400 + 6 * 3600, "1h")
    points = only_series(data)["values"]
    assert len(points) == 7
    ts, values = samples_of(history(), "prod-west")
    for stamp, value in points:
        assert float(value) == pytest.approx(hand_predict_linear(ts, values, stamp, 7200, 86_400), rel=1e-12)
        assert value == only_series(instant(api, query, stamp))["value"][1]


def test_predict_linear_needs_two_samples(api):
    """Inside the gap a 10-minute window holds fewer than two samples: no point, like Prometheus."""
    data = query_range(api, f'predict_linear({USED}{{cluster="prod-east"}}[10m], 3600)', GAP[0] + 900,
                       GAP[0] + 1800, 300)
    assert data["result"] == []


def test_range_windows_are_left_open(api):
    """[1h] on a 5-minute grid holds 12 samples in Prometheus 3: the one exactly 1h back is out."""
    at = T0 + 10 * 3600
    ts, values = samples_of(history(), "prod-east")
    window = values[(ts > at - 3600) & (ts <= at)]
    assert window.size == 12
    for function, expected in (("max_over_time", window.max()), ("min_over_time", window.min()),
                               ("avg_over_time", window.mean())):
        result = only_series(instant(api, f'{function}({USED}{{cluster="prod-east"}}[1h])', at))
        assert float(result["value"][1]) == pytest.approx(expected, rel=1e-14), function


def test_prometheus_2_windows_include_the_left_boundary(prometheus_factory):
    """Debian 12's Prometheus 2.42 closes both windows on the left; the sandbox can match it."""
    server, api = prometheus_factory(prometheus_major=2)
    at = T0 + 10 * 3600
    ts, values = samples_of(history(), "prod-east")
    window = values[(ts >= at - 3600) & (ts <= at)]
    assert window.size == 13
    result = only_series(instant(api, f'avg_over_time({USED}{{cluster="prod-east"}}[1h])', at))
    assert float(result["value"][1]) == pytest.approx(window.mean(), rel=1e-14)
    stale = query_range(api, f'{USED}{{cluster="prod-east"}}', GAP[0] - STEP, GAP[0], 300)
    assert [p[0] for p in only_series(stale)["values"]] == [GAP[0] - STEP, GAP[0]]
    assert api.get("/api/v1/status/buildinfo").json()["data"]["version"].startswith("2.")


def test_sum_adds_series_and_by_keeps_only_the_grouping_labels(api):
    at = T0 + 7200
    east = only_series(instant(api, f'{USED}{{cluster="prod-east"}}', at))["value"][1]
    west = only_series(instant(api, f'{USED}{{cluster="prod-west"}}', at))["value"][1]
    total = only_series(instant(api, f'sum({USED}{{cluster=~"prod-.*"}})', at))
    assert total["metric"] == {}
    assert float(total["value"][1]) == float(east) + float(west)
    by_cluster = instant(api, f"sum by (cluster) ({USED})", at)["result"]
    assert {r["metric"]["cluster"]: r["value"][1] for r in by_cluster} == {"prod-east": east, "prod-west": west}
    without = instant(api, f"sum without (cluster) ({CAPACITY})", at)["result"]
    assert without == [{"metric": {"volume": "image-registry"}, "value": [at, "1000000000000"]}]


def test_used_over_capacity_divides_series_with_identical_labels(api):
    data = query_range(api, f"{USED} / {CAPACITY}", T0 + 3600, T0 + 7200, 900)
    ts, values = samples_of(history(), "prod-east")
    ratios = {r["metric"]["cluster"]: r for r in data["result"]}
    assert set(ratios) == {"prod-east", "prod-west"}                # "lab" has no capacity series
    assert ratios["prod-east"]["metric"] == {"cluster": "prod-east", "volume": "image-registry"}
    for stamp, value in ratios["prod-east"]["values"]:
        assert float(value) == pytest.approx(values[ts == stamp][0] / 5e11, rel=1e-15)
    scaled = only_series(instant(api, f'{USED}{{cluster="prod-west"}} / 1e9', T0 + 3600))
    assert float(scaled["value"][1]) == pytest.approx(samples_of(history(), "prod-west")[1][12] / 1e9)


# ----------------------------------------------------------------------------- the clock
def test_the_clock_hides_the_future(api):
    ts, values = samples_of(history(), "prod-east")
    now_value = values[ts == NOW][0]
    default_time = only_series(instant(api, f'{USED}{{cluster="prod-east"}}'))
    assert default_time["value"][0] == NOW
    assert float(default_time["value"][1]) == now_value
    data = query_range(api, f'{USED}{{cluster="prod-east"}}', NOW - 600, NOW + 3600, 60)
    stamps = [p[0] for p in only_series(data)["values"]]
    assert stamps[-1] == NOW + 240                    # the last sample goes stale; later ones don't exist
    later = only_series(instant(api, f'max_over_time({USED}{{cluster="prod-east"}}[1d])', NOW + 86_000))
    assert float(later["value"][1]) <= values[ts <= NOW].max()


def test_moving_the_clock_reveals_more_history(prometheus):
    server, api = prometheus
    server.clock.set(datetime.fromtimestamp(NOW + 3600, timezone.utc))
    result = only_series(instant(api, f'{USED}{{cluster="prod-east"}}'))
    assert result["value"][0] == NOW + 3600


# ----------------------------------------------------------------------------- parameters
def test_times_as_rfc3339_and_steps_as_durations(api):
    start = datetime.fromtimestamp(T0 + 3600, timezone.utc)
    as_text = query_range(api, USED + '{cluster="prod-east"}', start.isoformat().replace("+00:00", "Z"),
                          (start + timedelta(hours=1)).isoformat(), "5m")
    as_numbers = query_range(api, USED + '{cluster="prod-east"}', T0 + 3600, T0 + 7200, 300)
    assert as_text == as_numbers
    assert len(as_numbers["result"][0]["values"]) == 13


def test_post_form_works_like_get(api):
    params = {"query": f'{USED}{{cluster="prod-west"}}', "start": str(T0), "end": str(T0 + 3600), "step": "600"}
    posted = api.post("/api/v1/query_range", data=params)
    assert posted.status_code == 200, posted.text
    assert posted.json() == api.get("/api/v1/query_range", params=params).json()
    instant_post = api.post("/api/v1/query", data={"query": f"sum({CAPACITY})", "time": str(T0)})
    assert instant_post.json()["data"]["result"][0]["value"] == [T0, "1000000000000"]


def test_more_than_11000_points_per_series_is_refused_with_prometheus_message(api):
    response = api.get("/api/v1/query_range", params={"query": USED, "start": T0, "end": T0 + 11_001, "step": 1})
    assert response.status_code == 400
    assert response.json() == {
        "status": "error", "errorType": "bad_data",
        "error": "exceeded maximum resolution of 11,000 points per timeseries. "
                 "Try decreasing the query resolution (?step=XX)"}
    at_limit = api.get("/api/v1/query_range", params={"query": USED, "start": T0, "end": T0 + 11_000, "step": 1})
    assert at_limit.status_code == 200


@pytest.mark.parametrize("params, named", [
    ({"query": "rate(registry_storage_used_bytes[5m])"}, '"rate" is not supported'),
    ({"query": 'registry_storage_used_bytes{cluster="a"'}, "1:40: parse error: unexpected end of input inside braces"),
    ({"query": "registry_storage_used_bytes + 1"}, 'binary operator "+"'),
    ({"query": "max_over_time(registry_storage_used_bytes)"}, "expected type range vector"),
    ({"query": "no_such_function(x)"}, 'unknown function with name "no_such_function"'),
    ({"query": "avg(registry_storage_used_bytes)"}, 'aggregation "avg" is not supported'),
    ({"query": '{cluster=~".*"}'}, "at least one non-empty matcher"),
    ({"query": "registry_storage_used_bytes[5m:1m]"}, "subqueries are not supported"),
    ({"query": ""}, "no expression found in input"),
    ({"query": "registry_storage_used_bytes", "time": "yesterday"}, 'invalid parameter "time"'),
])
def test_bad_queries_are_bad_data_naming_the_problem(api, params, named):
    response = api.get("/api/v1/query", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert named in body["error"]


def test_parse_errors_carry_a_position(api):
    response = api.get("/api/v1/query", params={"query": 'sum(registry_storage_used_bytes{a=~"("})'})
    error = response.json()["error"]
    assert re.match(r'invalid parameter "query": 1:\d+: parse error: invalid regular expression', error)


@pytest.mark.parametrize("params, named", [
    ({"query": USED, "start": "x", "end": "1", "step": "1"}, 'invalid parameter "start": cannot parse "x"'),
    ({"query": USED, "start": "10", "end": "1", "step": "1"}, "end timestamp must not be before start time"),
    ({"query": USED, "start": "1", "end": "10", "step": "0"}, "zero or negative query resolution step"),
    ({"query": USED, "start": "1", "end": "10", "step": "soon"}, 'invalid parameter "step"'),
    ({"query": f"{USED}[5m]", "start": "1", "end": "10", "step": "1"}, 'invalid expression type "range vector"'),
])
def test_bad_range_parameters_are_bad_data(api, params, named):
    response = api.get("/api/v1/query_range", params=params)
    assert response.status_code == 400
    assert named in response.json()["error"]


def test_raw_range_selector_in_an_instant_query_returns_the_samples(api):
    at = T0 + 3600
    data = instant(api, f'{USED}{{cluster="prod-east"}}[20m]', at)
    assert data["resultType"] == "matrix"
    assert [p[0] for p in only_series(data)["values"]] == [at - 900, at - 600, at - 300, at]


# ----------------------------------------------------------------------------- faults
@pytest.mark.parametrize("status, error_type", [(500, "internal"), (503, "unavailable"), (422, "execution")])
def test_injected_faults_keep_prometheus_error_shape(prometheus, status, error_type):
    server, api = prometheus
    server.faults.add(api="prometheus", path=r"^/api/v1/query_range$", status=status, times=1, retry_after=3)
    params = {"query": USED, "start": T0, "end": T0 + 600, "step": 60}
    failed = api.get("/api/v1/query_range", params=params)
    assert failed.status_code == status
    assert failed.json() == {"status": "error", "errorType": error_type, "error": "injected fault"}
    assert failed.headers["Retry-After"] == "3"
    assert api.get("/api/v1/query_range", params=params).status_code == 200   # fired once, then recovers
    server.faults.add(api="prometheus", path=r"^/api/v1/query_range$", method="POST", status=status, times=1)
    assert api.post("/api/v1/query_range", data=params).json()["errorType"] == error_type
    assert api.post("/api/v1/query_range", data=params).status_code == 200    # same connection, next request


# ----------------------------------------------------------------------------- metadata endpoints
def test_series_labels_and_label_values(api):
    series = api.get("/api/v1/series", params={"match[]": [f'{USED}{{cluster=~"prod-.*"}}', CAPACITY]}).json()
    assert series["status"] == "success"
    assert {(s["__name__"], s["cluster"]) for s in series["data"]} == {
        (USED, "prod-east"), (USED, "prod-west"), (CAPACITY, "prod-east"), (CAPACITY, "prod-west")}
    assert api.get("/api/v1/labels").json()["data"] == ["__name__", "cluster", "volume"]
    assert api.get("/api/v1/label/__name__/values").json()["data"] == [CAPACITY, USED]
    assert api.get("/api/v1/label/cluster/values").json()["data"] == ["lab", "prod-east", "prod-west"]
    recent = api.get("/api/v1/label/cluster/values", params={"start": T0 + 3600}).json()["data"]
    assert recent == ["prod-east", "prod-west"]                         # "lab" only existed at T0
    missing = api.get("/api/v1/series")
    assert missing.status_code == 400 and missing.json()["error"] == "no match[] parameter provided"


def test_samples_after_the_clock_do_not_exist_even_when_asked_for(prometheus):
    server, api = prometheus
    assert instant(api, f'{USED}{{cluster="lab"}}', T0 + 350)["result"][0]["value"][1] == "2"
    server.clock.set(START + timedelta(seconds=60))
    assert instant(api, f'{USED}{{cluster="lab"}}', T0 + 60)["result"][0]["value"][1] == "1"
    assert instant(api, f'{USED}{{cluster="lab"}}', T0 + 350)["result"] == []    # T0+300 has not happened
    assert api.get("/api/v1/series", params={"match[]": USED, "start": T0 + 120}).json()["data"] == []


def test_readiness_and_buildinfo(api):
    ready = api.get("/-/ready")
    assert ready.status_code == 200 and "Ready" in ready.text
    info = api.get("/api/v1/status/buildinfo").json()
    assert info["status"] == "success" and info["data"]["version"].startswith("3.")
    assert api.get("/api/v1/nothing").status_code == 404


# ----------------------------------------------------------------------------- scale
def test_half_a_year_at_five_minutes_answers_a_full_resolution_range_query(prometheus_factory):
    """180 days at 5-minute resolution (51,840 samples) and 10,000-step queries stay interactive."""
    grid = np.arange(T0 - 177 * 86_400, T0 + 3 * 86_400, STEP, dtype=np.int64)
    straight_line = (grid - grid[0]).astype(float).tolist()
    long = Series("long_used_bytes", {"volume": "v"}, grid.astype(float).tolist(), straight_line)
    clock = SandboxClock(datetime.fromtimestamp(NOW, timezone.utc), earliest=START - timedelta(days=180),
                         latest=START + timedelta(days=3))
    server = start_prometheus_api([long], clock, FaultInjector())
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            start = int(grid[0]) + 7 * 86_400
            data = query_range(api, "predict_linear(long_used_bytes[1d], 86400)", start, start + 10_000 * 1_500, 1_500)
            points = only_series(data)["values"]
            steps = start + 1_500 * np.arange(10_001)
            visible = grid[grid <= NOW]
            in_window = np.searchsorted(visible, steps, "right") - np.searchsorted(visible, steps - 86_400, "right")
            assert [p[0] for p in points] == steps[in_window >= 2].tolist()   # two samples needed, none after now
            # a straight line is predicted exactly: value at t + 1 day = t + 1 day - first sample
            for stamp, value in points[:: 997]:
                assert float(value) == pytest.approx(stamp + 86_400 - grid[0], rel=1e-9)
    finally:
        server.stop()


# ----------------------------------------------------------------------------- OpenMetrics
_OPENMETRICS_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+) (\S+)$')
_OPENMETRICS_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_openmetrics(text: str) -> dict[tuple, list[tuple[float, float]]]:
    """A small strict reader: TYPE before samples, families not interleaved, # EOF last."""
    assert text.endswith("# EOF\n")
    series: dict[tuple, list[tuple[float, float]]] = {}
    typed: list[str] = []
    for line in text.splitlines()[:-1]:
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind == "gauge" and name not in typed
            typed.append(name)
            continue
        match = _OPENMETRICS_SAMPLE.match(line)
        assert match, line
        name, labels, value, stamp = match.groups()
        assert name == typed[-1], f"{name} outside its family"
        pairs = _OPENMETRICS_LABEL.findall(labels or "")
        assert ",".join(f'{k}="{v}"' for k, v in pairs) == (labels or "")
        unescaped = tuple((k, v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")) for k, v in pairs)
        points = series.setdefault((name, unescaped), [])
        assert not points or float(stamp) > points[-1][0], "timestamps must increase within a series"
        points.append((float(stamp), float(value)))
    return series


def test_openmetrics_export_parses_back_to_the_same_samples():
    source = history()
    parsed = parse_openmetrics(to_openmetrics(source))
    assert len(parsed) == len(source)
    for item in source:
        key = (item.metric, tuple(sorted(item.labels.items())))
        assert parsed[key] == list(zip(item.timestamps, item.values, strict=True))


def test_openmetrics_export_writes_special_values_and_fractional_timestamps():
    text = to_openmetrics([Series("x_ratio", {}, [1.5, 2.25, 3.0], [math.nan, math.inf, -0.5])])
    assert text == "# TYPE x_ratio gauge\nx_ratio NaN 1.5\nx_ratio +Inf 2.25\nx_ratio -0.5 3\n# EOF\n"
