"""The sandbox's Prometheus: the HTTP API of a Prometheus server over simulated series.

The capacity forecast reads storage usage through `query_range` and compares itself with
kube-prometheus' `predict_linear` alert, so this server answers the way Prometheus does
(https://prometheus.io/docs/prometheus/latest/querying/api/): same parameters (unix or
RFC3339 times, float or `5m`-style steps, form-encoded POSTs), same JSON shapes, same error
types and messages, the same 11,000-points limit. It evaluates a small PromQL subset, parsed
properly so that anything outside it is a clear `bad_data` error instead of a wrong answer:

- instant vector selectors `metric{a="v", b=~"re", c!="x", d!~"re"}` and `{__name__="metric"}`;
- `predict_linear(v[range], seconds)`, `max_over_time`, `min_over_time`, `avg_over_time`;
- `sum(v)`, `sum by (labels) (v)`, `sum without (labels) (v)`;
- `/` between instant vectors (one-to-one on all labels but the name) and number literals.

Evaluation follows the Prometheus engine: at each step an instant selector takes the latest
sample within the 5-minute lookback, a range selector takes the samples in (t - range, t],
functions and aggregations drop the metric name. `predict_linear` and `avg_over_time` use
Prometheus's own Kahan-Neumaier sums in the same order, so results agree with a real server
to the last bit. Prometheus 3 made both windows left-open and changed `avg_over_time`;
`prometheus_major=2` reproduces Debian 12's Prometheus 2.42 (windows closed on the left,
incremental mean) for tests that compare against that real server. Sums that overflow
float64 (Prometheus falls back to an incremental mean) are not reproduced.

The sandbox clock is "now": samples after it do not exist and a missing `time` means it.
Fault rules with a status answer in Prometheus's error shape; `truncate` has no Prometheus
counterpart (the API never pages) and is not applied here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from typing import Callable, ClassVar, Iterable, Iterator, Union
from urllib.parse import parse_qs, unquote

import numpy as np

from .clock import SandboxClock
from .faults import FaultInjector
from .httpbase import SandboxHandler, SandboxServer
from .model import Series

LOOKBACK_DELTA_MS = 5 * 60 * 1000
MAX_STEPS_PER_SERIES = 11_000
TOO_MANY_POINTS = ("exceeded maximum resolution of 11,000 points per timeseries. "
                   "Try decreasing the query resolution (?step=XX)")

# Prometheus accepts its own boundary times although Go's parser cannot read them.
_MIN_TIME_FORMATTED = "-292273086-05-16T16:47:06Z"
_MAX_TIME_FORMATTED = "292277025-08-18T07:12:54.999999999Z"
_MIN_TIME_MS = (-(2 ** 63 // 1000) + 62135596801) * 1000
_MAX_TIME_MS = ((2 ** 63 - 1) // 1000 - 62135596801) * 1000 + 999

_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DURATION_RE = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")

_HTTP_STATUS_BY_ERROR_TYPE = {"bad_data": 400, "execution": 422, "not_found": 404, "internal": 500,
                              "unavailable": 503, "timeout": 503, "canceled": 499}
_ERROR_TYPE_BY_HTTP_STATUS = {400: "bad_data", 404: "not_found", 406: "not_acceptable", 422: "execution",
                              499: "canceled", 503: "unavailable", 504: "timeout"}


class PrometheusAPIError(Exception):
    """An error the API reports as `{"status":"error","errorType":...,"error":...}`."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS_BY_ERROR_TYPE.get(self.error_type, 500)


class PromQLParseError(ValueError):
    """A query outside the supported PromQL subset, positioned like Prometheus ("1:9: parse error: ...")."""


# =========================================================================== parameters
def parse_duration_ms(text: str) -> int:
    """A Prometheus duration (`1h30m`, `5m`, `90s`, `0`) in milliseconds, as model.ParseDuration reads it."""
    if text == "0":
        return 0
    if text == "":
        raise ValueError("empty duration string")
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f'not a valid duration string: "{text}"')
    parts = zip(match.groups(), _DURATION_UNITS_MS, strict=True)
    return sum(int(part) * unit for part, unit in parts if part)


def parse_time_ms(text: str) -> int:
    """A query time (unix seconds, fractions allowed, or RFC3339) in milliseconds, as the API reads it."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            whole = math.trunc(seconds)
            return whole * 1000 + round((seconds - whole) * 1000)
        raise ValueError(f'cannot parse "{text}" to a valid timestamp')
    if text == _MIN_TIME_FORMATTED:
        return _MIN_TIME_MS
    if text == _MAX_TIME_FORMATTED:
        return _MAX_TIME_MS
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        raise ValueError(f'cannot parse "{text}" to a valid timestamp')
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        offset = 0 if zone in ("Z", "z") else (int(zone[1:3]) * 60 + int(zone[4:6])) * (-1 if zone[0] == "-" else 1)
        base = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)
    except ValueError:
        raise ValueError(f'cannot parse "{text}" to a valid timestamp') from None
    nanos = int((fraction or "").ljust(9, "0"))
    return (int(base.timestamp()) - offset * 60) * 1000 + nanos // 1_000_000


def parse_step_ms(text: str) -> int:
    """A step or timeout (float seconds or a duration) in whole milliseconds, like the engine uses it."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            return parse_duration_ms(text)
        except ValueError:
            raise ValueError(f'cannot parse "{text}" to a valid duration') from None
    if not math.isfinite(seconds) or abs(seconds) * 1e9 > 2 ** 63:
        raise ValueError(f'cannot parse "{text}" to a valid duration. It overflows int64')
    return int(seconds * 1e9) // 1_000_000


# =========================================================================== PromQL syntax
@dataclass(frozen=True)
class NumberLiteral:
    value: float
    value_type: ClassVar[str] = "scalar"


@dataclass(frozen=True)
class VectorSelector:
    """`name{matchers}`, optionally `[range]`; `name` is None when only `__name__` matchers select."""

    name: str | None
    matchers: tuple[tuple[str, str, str], ...]
    range_ms: int | None = None

    @property
    def value_type(self) -> str:
        return "matrix" if self.range_ms is not None else "vector"


@dataclass(frozen=True)
class FunctionCall:
    """`predict_linear(v[range], scalar)` or `<max|min|avg>_over_time(v[range])`."""

    function: str
    args: tuple["Expr", ...]
    value_type: ClassVar[str] = "vector"


@dataclass(frozen=True)
class SumAggregation:
    """`sum`, optionally `by (...)` or `without (...)`."""

    expr: "Expr"
    grouping: tuple[str, ...] | None      # None: sum over everything
    without: bool = False
    value_type: ClassVar[str] = "vector"


@dataclass(frozen=True)
class Division:
    """`lhs / rhs`: vector/vector matched one-to-one, or either side a scalar."""

    lhs: "Expr"
    rhs: "Expr"

    @property
    def value_type(self) -> str:
        return "scalar" if self.lhs.value_type == self.rhs.value_type == "scalar" else "vector"


Expr = Union[NumberLiteral, VectorSelector, FunctionCall, SumAggregation, Division]

_TYPE_NAMES = {"vector": "instant vector", "matrix": "range vector", "scalar": "scalar"}
_RANGE_FUNCTIONS = ("max_over_time", "min_over_time", "avg_over_time")
_SUPPORTED_FUNCTIONS = ("predict_linear",) + _RANGE_FUNCTIONS
# Prometheus's own functions and aggregations: naming one gets "not supported", not "unknown".
_PROMETHEUS_FUNCTIONS = frozenset("""
    abs absent absent_over_time acos acosh asin asinh atan atanh ceil changes clamp clamp_max clamp_min
    cos cosh count_over_time days_in_month day_of_month day_of_week day_of_year deg delta deriv exp floor
    histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters double_exponential_smoothing hour idelta increase info irate label_join
    label_replace last_over_time ln log10 log2 mad_over_time minute month pi predict_linear
    present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
    sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time
    timestamp vector year max_over_time min_over_time avg_over_time
""".split())
_AGGREGATIONS = frozenset("sum avg min max count group stddev stdvar topk bottomk quantile count_values "
                          "limitk limit_ratio".split())
_BINARY_OPERATORS = frozenset("/ * + - % ^ == != < > <= >=".split())
_SET_OPERATORS = frozenset(("and", "or", "unless", "atan2"))
_MATCHING_MODIFIERS = frozenset(("on", "ignoring", "bool", "group_left", "group_right"))
_MATCH_OPERATORS = ("=", "!=", "=~", "!~")

_TOKEN_RE = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)(?![a-zA-Z0-9_])
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[=/*+\-%^<>])
  | (?P<punct>[{}()\[\],@])
""", re.VERBOSE)
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"', "'": "'"}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.DOTALL)


@dataclass(frozen=True)
class _Token:
    kind: str       # space-free: string, duration, number, ident, op, punct, eof
    text: str
    pos: int

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of input"
        if self.kind in ("op", "punct"):
            return f'"{self.text}"'
        if self.kind == "string":
            return f"string {self.text}"
        return f'{"identifier" if self.kind == "ident" else self.kind} "{self.text}"'


class _Parser:
    """Recursive descent over the supported subset; every rejection names what and where."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.index = 0

    # -- tokens -------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[_Token]:
        tokens: list[_Token] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN_RE.match(text, pos)
            if match is None:
                raise self._error(pos, f"unexpected character: {text[pos]!r}")
            kind = match.lastgroup or ""
            if kind != "space":
                tokens.append(_Token(kind, match.group(kind), pos))
            pos = match.end()
        tokens.append(_Token("eof", "", len(text)))
        return tokens

    def _peek(self) -> _Token:
        return self.tokens[self.index]

    def _next(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def _is(self, token: _Token, kind: str, *texts: str) -> bool:
        return token.kind == kind and (not texts or token.text in texts)

    def _error(self, pos: int, message: str) -> PromQLParseError:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - self.text.rfind("\n", 0, pos)
        return PromQLParseError(f"{line}:{column}: parse error: {message}")

    def _unexpected(self, token: _Token, context: str, expected: str = "") -> PromQLParseError:
        message = f"unexpected {token.describe()} in {context}"
        return self._error(token.pos, f"{message}, expected {expected}" if expected else message)

    def _expect(self, kind: str, text: str, context: str) -> _Token:
        token = self._next()
        if not self._is(token, kind, text):
            if token.kind == "eof" and text == ")":
                raise self._error(token.pos, "unclosed left parenthesis")
            raise self._unexpected(token, context, f'"{text}"')
        return token

    # -- grammar ------------------------------------------------------------------------
    def parse(self) -> Expr:
        if self._peek().kind == "eof":
            raise self._error(0, "no expression found in input")
        expr = self._expression()
        token = self._peek()
        if token.kind != "eof":
            if self._is(token, "punct", ")"):
                raise self._error(token.pos, 'unexpected right parenthesis ")"')
            raise self._unexpected(token, "expression")
        return expr

    def _expression(self) -> Expr:
        start = self._peek().pos
        lhs = self._unary()
        while True:
            token = self._peek()
            if token.kind == "op" and token.text in _BINARY_OPERATORS or self._is(token, "ident", *_SET_OPERATORS):
                if token.text != "/":
                    raise self._error(token.pos, f'binary operator "{token.text}" is not supported by the sandbox '
                                                 '(supported: "/")')
                self._next()
                modifier = self._peek()
                if self._is(modifier, "ident", *_MATCHING_MODIFIERS):
                    raise self._error(modifier.pos, f'vector matching modifier "{modifier.text}" is not supported '
                                                    "by the sandbox: both sides must carry identical labels")
                rhs = self._unary()
                for side in (lhs, rhs):
                    if side.value_type == "matrix":
                        raise self._error(start, "binary expression must contain only scalar and instant "
                                                 "vector types")
                lhs = Division(lhs, rhs)
            else:
                return lhs

    def _unary(self) -> Expr:
        token = self._peek()
        if self._is(token, "op", "-", "+"):
            self._next()
            operand = self._unary()
            if not isinstance(operand, NumberLiteral):
                raise self._error(token.pos, f'unary "{token.text}" is only supported on number literals '
                                             "by the sandbox")
            return NumberLiteral(-operand.value if token.text == "-" else operand.value)
        return self._postfix(self._primary())

    def _primary(self) -> Expr:
        token = self._next()
        if token.kind == "number":
            text = token.text
            return NumberLiteral(float(int(text, 16)) if text[:2].lower() == "0x" else float(text))
        if self._is(token, "punct", "("):
            inner = self._expression()
            self._expect("punct", ")", "parenthesized expression")
            return inner
        if self._is(token, "punct", "{"):
            return self._selector(None, token)
        if token.kind == "ident":
            following = self._peek()
            if token.text.lower() in ("inf", "nan") and not self._is(following, "punct", "(", "{"):
                return NumberLiteral(float(token.text))
            if token.text in _AGGREGATIONS:
                if token.text != "sum":
                    raise self._error(token.pos, f'aggregation "{token.text}" is not supported by the sandbox '
                                                 '(supported: "sum")')
                return self._sum(token)
            if self._is(following, "punct", "("):
                return self._call(token)
            if token.text in _SET_OPERATORS or token.text in _MATCHING_MODIFIERS or token.text in ("by", "without"):
                raise self._unexpected(token, "expression")
            return self._selector(token, None)
        if token.kind == "string":
            raise self._error(token.pos, "string literals are only supported as label matcher values "
                                         "by the sandbox")
        if token.kind == "eof":
            raise self._error(token.pos, "unexpected end of input")
        raise self._unexpected(token, "expression")

    def _postfix(self, expr: Expr) -> Expr:
        token = self._peek()
        if self._is(token, "punct", "["):
            if not isinstance(expr, VectorSelector) or expr.range_ms is not None:
                raise self._error(token.pos, "ranges are only allowed for vector selectors "
                                             "(subqueries are not supported by the sandbox)")
            self._next()
            duration = self._next()
            if duration.kind != "duration":
                raise self._unexpected(duration, "range", "duration")
            try:
                range_ms = parse_duration_ms(duration.text)
            except ValueError as exc:
                raise self._error(duration.pos, str(exc)) from None
            if range_ms <= 0:
                raise self._error(duration.pos, "range must be greater than 0")
            close = self._next()
            if close.text.startswith(":"):
                raise self._error(close.pos, "subqueries are not supported by the sandbox")
            if not self._is(close, "punct", "]"):
                raise self._unexpected(close, "range", '"]"')
            expr = VectorSelector(expr.name, expr.matchers, range_ms)
            token = self._peek()
        if self._is(token, "ident", "offset") or self._is(token, "punct", "@"):
            raise self._error(token.pos, f'the "{token.text}" modifier is not supported by the sandbox')
        return expr

    def _selector(self, name_token: _Token | None, brace: _Token | None) -> VectorSelector:
        name = name_token.text if name_token else None
        start = name_token or brace
        assert start is not None
        matchers: list[tuple[str, str, str]] = [("__name__", "=", name)] if name else []
        if brace is None and self._is(self._peek(), "punct", "{"):
            brace = self._next()
        if brace is not None:
            matchers.extend(self._matchers(name, start.pos))
        if all(_matches_empty(op, value) for _, op, value in matchers):
            raise self._error(start.pos, "vector selector must contain at least one non-empty matcher")
        if name is None:
            name = next((value for label, op, value in matchers if label == "__name__" and op == "="), None)
        return VectorSelector(name, tuple(matchers))

    def _matchers(self, metric_name: str | None, selector_pos: int) -> list[tuple[str, str, str]]:
        matchers: list[tuple[str, str, str]] = []
        while True:
            label = self._next_inside_braces()
            if self._is(label, "punct", "}"):
                return matchers
            if label.kind != "ident" or not _LABEL_NAME_RE.fullmatch(label.text):
                raise self._unexpected(label, "label matching", "label")
            op = self._next_inside_braces()
            if not (op.kind == "op" and op.text in _MATCH_OPERATORS):
                raise self._unexpected(op, "label matching", "label matching operator")
            literal = self._next_inside_braces()
            if literal.kind != "string":
                raise self._unexpected(literal, "label matching", "string")
            value = self._unquote(literal)
            if op.text in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise self._error(label.pos, f"invalid regular expression in matcher "
                                                   f"{label.text}{op.text}{literal.text}: {exc}") from None
            if label.text == "__name__" and metric_name is not None:
                raise self._error(selector_pos, f'metric name must not be set twice: "{metric_name}" or "{value}"')
            matchers.append((label.text, op.text, value))
            separator = self._next_inside_braces()
            if self._is(separator, "punct", "}"):
                return matchers
            if not self._is(separator, "punct", ","):
                raise self._unexpected(separator, "label matching", '"," or "}"')

    def _next_inside_braces(self) -> _Token:
        token = self._next()
        if token.kind == "eof":
            raise self._error(token.pos, "unexpected end of input inside braces")
        return token

    def _unquote(self, token: _Token) -> str:
        body = token.text[1:-1]
        if token.text[0] == "`":
            return body

        def replace(match: re.Match[str]) -> str:
            escape = match.group(1)
            if escape in _ESCAPES and (escape not in "'\"" or escape == token.text[0]):
                return _ESCAPES[escape]
            if escape[0] in "xuU" and len(escape) > 1:
                return chr(int(escape[1:], 16))
            if len(escape) == 3 and escape.isdigit():
                return chr(int(escape, 8))
            raise self._error(token.pos + match.start(), f"unknown escape sequence \\{escape}")

        return _ESCAPE_RE.sub(replace, body)

    def _call(self, name: _Token) -> FunctionCall:
        function = name.text
        if function not in _SUPPORTED_FUNCTIONS:
            if function in _PROMETHEUS_FUNCTIONS:
                raise self._error(name.pos, f'function "{function}" is not supported by the sandbox '
                                            f"(supported: {', '.join(_SUPPORTED_FUNCTIONS)})")
            raise self._error(name.pos, f'unknown function with name "{function}"')
        self._expect("punct", "(", "function call")
        args: list[Expr] = []
        positions: list[int] = []
        if not self._is(self._peek(), "punct", ")"):
            while True:
                positions.append(self._peek().pos)
                args.append(self._expression())
                if not self._is(self._peek(), "punct", ","):
                    break
                self._next()
        self._expect("punct", ")", "function call")
        expected = ("matrix", "scalar") if function == "predict_linear" else ("matrix",)
        if len(args) != len(expected):
            raise self._error(name.pos, f'expected {len(expected)} argument(s) in call to "{function}", '
                                        f"got {len(args)}")
        for arg, position, wanted in zip(args, positions, expected, strict=True):
            if arg.value_type != wanted:
                raise self._error(position, f'expected type {_TYPE_NAMES[wanted]} in call to function '
                                            f'"{function}", got {_TYPE_NAMES[arg.value_type]}')
        return FunctionCall(function, tuple(args))

    def _grouping(self) -> tuple[tuple[str, ...], bool]:
        keyword = self._next()
        self._expect("punct", "(", "grouping opts")
        labels: list[str] = []
        while True:
            token = self._next()
            if self._is(token, "punct", ")"):
                break
            if token.kind != "ident" or not _LABEL_NAME_RE.fullmatch(token.text):
                raise self._unexpected(token, "grouping opts", "label")
            labels.append(token.text)
            separator = self._next()
            if self._is(separator, "punct", ")"):
                break
            if not self._is(separator, "punct", ","):
                raise self._unexpected(separator, "grouping opts", '"," or ")"')
        return tuple(labels), keyword.text == "without"

    def _sum(self, keyword: _Token) -> SumAggregation:
        grouping: tuple[str, ...] | None = None
        without = False
        if self._is(self._peek(), "ident", "by", "without"):
            grouping, without = self._grouping()
        self._expect("punct", "(", "aggregation")
        if self._is(self._peek(), "punct", ")"):
            raise self._error(keyword.pos, "no arguments for aggregate expression provided")
        position = self._peek().pos
        expr = self._expression()
        if self._is(self._peek(), "punct", ","):
            raise self._error(keyword.pos, "wrong number of arguments for aggregate expression provided, "
                                           "expected 1, got 2 or more")
        self._expect("punct", ")", "aggregation")
        if self._is(self._peek(), "ident", "by", "without"):
            if grouping is not None:
                raise self._error(self._peek().pos, "aggregation must only contain one grouping clause")
            grouping, without = self._grouping()
        if expr.value_type != "vector":
            raise self._error(position, "expected type instant vector in aggregation expression, "
                                           f"got {_TYPE_NAMES[expr.value_type]}")
        return SumAggregation(expr, grouping, without)


def _matches_empty(op: str, value: str) -> bool:
    """Whether a matcher accepts a missing label; a selector made only of such matchers selects everything."""
    if op == "=":
        return value == ""
    if op == "!=":
        return value != ""
    found = re.fullmatch(value, "") is not None
    return found if op == "=~" else not found


def parse_promql(query: str) -> Expr:
    """The syntax tree of `query`, or PromQLParseError naming the first thing outside the subset."""
    return _Parser(query).parse()


# =========================================================================== storage
@dataclass(frozen=True)
class StoredSeries:
    """A series ready for evaluation: full label set (with `__name__`) and millisecond timestamps."""

    labels: dict[str, str]
    timestamps_ms: np.ndarray
    values: np.ndarray

    @property
    def sort_key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.labels.items()))


def _label_set(series: Series) -> dict[str, str]:
    if not _METRIC_NAME_RE.fullmatch(series.metric):
        raise ValueError(f"invalid metric name {series.metric!r}")
    for name in series.labels:
        if name == "__name__" or not _LABEL_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid label name {name!r} on {series.metric}")
    return {"__name__": series.metric, **series.labels}


class SeriesStore:
    """The series a sandbox Prometheus serves, indexed by metric name, immutable once built."""

    def __init__(self, series: Iterable[Series]) -> None:
        by_name: dict[str, list[StoredSeries]] = {}
        seen: set[tuple[tuple[str, str], ...]] = set()
        for item in series:
            labels = _label_set(item)
            timestamps = np.rint(np.asarray(item.timestamps, dtype=np.float64) * 1000).astype(np.int64)
            values = np.asarray(item.values, dtype=np.float64)
            if timestamps.shape != values.shape or timestamps.ndim != 1:
                raise ValueError(f"{labels}: {len(item.timestamps)} timestamps but {len(item.values)} values")
            if timestamps.size > 1 and not np.all(np.diff(timestamps) > 0):
                raise ValueError(f"{labels}: timestamps must be strictly increasing (at millisecond precision)")
            stored = StoredSeries(labels, timestamps, values)
            if stored.sort_key in seen:
                raise ValueError(f"duplicate series {labels}")
            seen.add(stored.sort_key)
            by_name.setdefault(item.metric, []).append(stored)
        self._by_name = {name: sorted(items, key=lambda s: s.sort_key) for name, items in by_name.items()}
        self._all = sorted((s for items in self._by_name.values() for s in items), key=lambda s: s.sort_key)

    def select(self, selector: VectorSelector) -> list[StoredSeries]:
        """Series whose labels satisfy every matcher, in label order (the order Prometheus returns)."""
        candidates = self._by_name.get(selector.name, []) if selector.name is not None else self._all
        return [s for s in candidates if _matches(s.labels, selector.matchers)]

    def all(self) -> list[StoredSeries]:
        return self._all


def _matches(labels: dict[str, str], matchers: tuple[tuple[str, str, str], ...]) -> bool:
    for label, op, value in matchers:
        actual = labels.get(label, "")
        if op == "=":
            ok = actual == value
        elif op == "!=":
            ok = actual != value
        elif op == "=~":
            ok = re.fullmatch(value, actual) is not None
        else:
            ok = re.fullmatch(value, actual) is None
        if not ok:
            return False
    return True


# =========================================================================== evaluation
@dataclass
class _Row:
    """One output series over the step grid; `present` marks the steps where it has a value."""

    labels: dict[str, str]
    values: np.ndarray
    present: np.ndarray


_Value = Union[list[_Row], np.ndarray]       # instant vector rows, or a scalar per step


_WINDOW_CELLS_PER_CHUNK = 32_768          # rows of windows per chunk stay in the CPU cache


def _kahan_add(increment: np.ndarray, total: np.ndarray,
               compensation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus 2's kahanSumInc (Neumaier's variant), elementwise: one step of many sums at once."""
    new_total = total + increment
    error = np.where(np.abs(total) >= np.abs(increment), (total - new_total) + increment,
                     (increment - new_total) + total)
    return new_total, compensation + error


def _neumaier_rows(terms: np.ndarray, prometheus_major: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum, compensation) per row, exactly as a kahanSumInc loop over the row leaves them.

    np.cumsum accumulates one element after the other, so its running totals are the loop's
    sums bit for bit; each step's rounding error follows from two neighbouring totals, and the
    compensation is the running sum of those errors. Prometheus 3 zeroes the compensation once
    the sum is infinite. Trailing zeros (inactive cells) leave both unchanged.
    """
    running = np.cumsum(terms, axis=1)
    previous = np.zeros_like(running)
    previous[:, 1:] = running[:, :-1]
    with np.errstate(invalid="ignore"):
        errors = np.where(np.abs(previous) >= np.abs(terms), (previous - running) + terms,
                          (terms - running) + previous)
    total, compensation = running[:, -1], np.cumsum(errors, axis=1)[:, -1]
    if prometheus_major >= 3:
        compensation = np.where(np.isinf(total), 0.0, compensation)
    return total, compensation


def _window_chunks(first: np.ndarray, counts: np.ndarray,
                   size: int) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Windows as rows of sample indices, a bounded number of rows at a time: (rows, index, active)."""
    width = int(counts.max())
    per_chunk = max(1, _WINDOW_CELLS_PER_CHUNK // width)
    offsets = np.arange(width)
    for start in range(0, first.size, per_chunk):
        rows = slice(start, start + per_chunk)
        active = offsets[None, :] < counts[rows, None]
        yield rows, np.minimum(first[rows, None] + offsets[None, :], size - 1), active


class _Evaluator:
    """Evaluates a syntax tree at every step of a grid at once, with numpy over each series.

    Functions over range windows walk the windows sample by sample, all steps together, so
    that each step's sums accumulate in Prometheus's order and round the same way.
    """

    def __init__(self, store: SeriesStore, steps_ms: np.ndarray, now_ms: int, prometheus_major: int) -> None:
        self.store = store
        self.steps = steps_ms
        self.now_ms = now_ms
        self.prometheus_major = prometheus_major
        self.left_open = prometheus_major >= 3

    def visible(self, series: StoredSeries) -> tuple[np.ndarray, np.ndarray]:
        """The samples that exist at the sandbox's "now"."""
        end = int(np.searchsorted(series.timestamps_ms, self.now_ms, side="right"))
        return series.timestamps_ms[:end], series.values[:end]

    def windows(self, timestamps: np.ndarray, range_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Per step, the index bounds [lo, hi) of the samples in the range window ending at the step."""
        side = "right" if self.left_open else "left"
        lo = np.searchsorted(timestamps, self.steps - range_ms, side=side)
        hi = np.searchsorted(timestamps, self.steps, side="right")
        return lo, hi

    def evaluate(self, expr: Expr) -> _Value:
        if isinstance(expr, NumberLiteral):
            return np.full(self.steps.shape, expr.value)
        if isinstance(expr, VectorSelector):
            return self._instant_selector(expr)
        if isinstance(expr, FunctionCall):
            return self._function(expr)
        if isinstance(expr, SumAggregation):
            return self._sum(expr)
        return self._divide(expr)

    def _instant_selector(self, selector: VectorSelector) -> list[_Row]:
        rows = []
        for series in self.store.select(selector):
            timestamps, values = self.visible(series)
            if timestamps.size == 0:
                continue
            last = np.searchsorted(timestamps, self.steps, side="right") - 1
            safe = np.maximum(last, 0)
            age_limit = self.steps - LOOKBACK_DELTA_MS
            fresh = timestamps[safe] > age_limit if self.left_open else timestamps[safe] >= age_limit
            rows.append(_Row(dict(series.labels), values[safe], (last >= 0) & fresh))
        return rows

    def _function(self, call: FunctionCall) -> list[_Row]:
        selector = call.args[0]
        assert isinstance(selector, VectorSelector) and selector.range_ms is not None
        horizon = self.evaluate(call.args[1]) if call.function == "predict_linear" else None
        rows = []
        for series in self.store.select(selector):
            timestamps, values = self.visible(series)
            lo, hi = self.windows(timestamps, selector.range_ms)
            if call.function == "predict_linear":
                assert isinstance(horizon, np.ndarray)
                result, present = self._predict_linear(timestamps, values, lo, hi, horizon)
            elif call.function == "avg_over_time":
                result, present = self._average(values, lo, hi)
            else:
                result, present = _extreme_over_time(call.function, values, lo, hi)
            if present.any():
                labels = {k: v for k, v in series.labels.items() if k != "__name__"}
                rows.append(_Row(labels, result, present))
        return rows

    def _predict_linear(self, timestamps: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                        horizon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prometheus's linearRegression with the intercept at the evaluation time, then
        slope * horizon + intercept; fewer than 2 samples give no value, a constant series slope 0."""
        present = (hi - lo) >= 2
        result = np.zeros(self.steps.shape)
        if not present.any():
            return result, present
        which = np.flatnonzero(present)
        first, counts, at = lo[which], hi[which] - lo[which], self.steps[which]
        for rows, index, active in _window_chunks(first, counts, values.size):
            samples = values[index]
            initial = samples[:, 0]
            constant = np.all((samples[:, 1:] == initial[:, None]) | ~active[:, 1:], axis=1)
            x = np.where(active, (timestamps[index] - at[rows, None]).astype(np.float64) / 1e3, 0.0)
            y = np.where(active, samples, 0.0)
            sum_x, sum_y, sum_xy, sum_x2 = (total + compensation for total, compensation in (
                _neumaier_rows(terms, self.prometheus_major) for terms in (x, y, x * y, x * x)))
            n = counts[rows].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                cov_xy = sum_xy - sum_x * sum_y / n
                var_x = sum_x2 - sum_x * sum_x / n
                slope = cov_xy / var_x
                intercept = sum_y / n - slope * sum_x / n
                infinite = np.isinf(initial)
                slope = np.where(constant, np.where(infinite, math.nan, 0.0), slope)
                intercept = np.where(constant, np.where(infinite, math.nan, initial), intercept)
                result[which[rows]] = slope * horizon[which[rows]] + intercept
        return result, present

    def _average(self, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """avg_over_time as the chosen Prometheus computes it: 3.x sums with Kahan and divides,
        2.x updates a running mean with Kahan after each sample (sequential, so window offset by offset)."""
        present = hi > lo
        result = np.zeros(self.steps.shape)
        if not present.any():
            return result, present
        which = np.flatnonzero(present)
        first, counts = lo[which], hi[which] - lo[which]
        if self.prometheus_major >= 3:
            for rows, index, active in _window_chunks(first, counts, values.size):
                total, compensation = _neumaier_rows(np.where(active, values[index], 0.0), self.prometheus_major)
                result[which[rows]] = total / counts[rows] + compensation / counts[rows]
            return result, present
        mean, compensation = np.zeros(which.size), np.zeros(which.size)
        with np.errstate(invalid="ignore"):
            for offset in range(int(counts.max())):
                sample = values[np.minimum(first + offset, values.size - 1)]
                count = float(offset + 1)
                keep_infinite_mean = np.isinf(mean) & ((np.isinf(sample) & ((mean > 0) == (sample > 0)))
                                                      | (~np.isinf(sample) & ~np.isnan(sample)))
                update = (offset < counts) & ~keep_infinite_mean
                new_mean, new_compensation = _kahan_add(sample / count - mean / count, mean, compensation)
                mean = np.where(update, new_mean, mean)
                compensation = np.where(update, new_compensation, compensation)
        result[which] = np.where(np.isinf(mean), mean, mean + compensation)
        return result, present

    def _sum(self, aggregation: SumAggregation) -> list[_Row]:
        inner = self.evaluate(aggregation.expr)
        assert isinstance(inner, list)
        groups: dict[tuple[tuple[str, str], ...], list[_Row]] = {}
        for row in inner:
            if aggregation.grouping is None:
                labels: dict[str, str] = {}
            elif aggregation.without:
                labels = {k: v for k, v in row.labels.items()
                          if k != "__name__" and k not in aggregation.grouping}
            else:
                labels = {k: v for k, v in row.labels.items() if k in aggregation.grouping}
            groups.setdefault(tuple(sorted(labels.items())), []).append(row)
        out = []
        for key, members in groups.items():
            total = np.zeros(self.steps.shape)
            present = np.zeros(self.steps.shape, dtype=bool)
            for row in members:
                total += np.where(row.present, row.values, 0.0)
                present |= row.present
            out.append(_Row(dict(key), total, present))
        return out

    def _divide(self, division: Division) -> _Value:
        lhs, rhs = self.evaluate(division.lhs), self.evaluate(division.rhs)
        with np.errstate(divide="ignore", invalid="ignore"):
            if isinstance(lhs, np.ndarray) and isinstance(rhs, np.ndarray):
                return lhs / rhs
            if isinstance(rhs, np.ndarray):
                assert isinstance(lhs, list)
                return [_Row(_without_name(r.labels), r.values / rhs, r.present) for r in lhs]
            if isinstance(lhs, np.ndarray):
                return [_Row(_without_name(r.labels), lhs / r.values, r.present) for r in rhs]
            left, right = self._by_signature(lhs, "left"), self._by_signature(rhs, "right")
            out = []
            for signature, (left_values, left_present) in left.items():
                if signature not in right:
                    continue
                right_values, right_present = right[signature]
                present = left_present & right_present
                if present.any():
                    out.append(_Row(dict(signature), left_values / right_values, present))
            return out

    def _by_signature(self, rows: list[_Row], side: str) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
        """One-to-one matching input: rows keyed by labels without the name; a clash at one step is an error."""
        merged: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for row in rows:
            signature = tuple(sorted(_without_name(row.labels).items()))
            if signature in merged:
                values, present = merged[signature]
                if (present & row.present).any():
                    raise PrometheusAPIError(
                        "execution",
                        f"found duplicate series for the match group {_format_labels(dict(signature))} on the "
                        f"{side} hand-side of the operation; many-to-many matching not allowed: matching labels "
                        "must be unique on one side")
                merged[signature] = (np.where(row.present, row.values, values), present | row.present)
            else:
                merged[signature] = (row.values, row.present)
        return merged


def _extreme_over_time(function: str, values: np.ndarray, lo: np.ndarray,
                       hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max/min over each [lo, hi) window at once: `reduceat` on interleaved bounds reads each window once.

    fmax/fmin skip NaN unless a window holds only NaN, as Prometheus's max/min_over_time do.
    """
    present = hi > lo
    if not present.any():
        return np.zeros(lo.shape), present
    padded = np.append(values, 0.0)             # reduceat needs every bound to be a valid index
    bounds = np.empty(lo.size * 2, dtype=np.int64)
    bounds[0::2], bounds[1::2] = lo, hi
    ufunc = np.fmax if function == "max_over_time" else np.fmin
    reduced = ufunc.reduceat(padded, bounds)[0::2]
    return np.where(present, reduced, 0.0), present


def _without_name(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != "__name__"}


def _format_labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


# =========================================================================== JSON encoding
def format_sample_value(value: float) -> str:
    """A sample value exactly as Prometheus writes it: shortest digits, exponent only below 1e-6 or from 1e21."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        return text
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def json_timestamp(ms: int) -> int | float:
    """Milliseconds as the JSON number Prometheus writes: whole seconds without a fraction."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _sorted_labels(labels: dict[str, str]) -> dict[str, str]:
    return dict(sorted(labels.items()))


# =========================================================================== HTTP
class PrometheusHandler(SandboxHandler):
    """The Prometheus HTTP API over the server's SeriesStore (`server.state["store"]`)."""

    api_name = "prometheus"

    version_2: ClassVar[str] = "2.42.0"
    version_3: ClassVar[str] = "3.5.0"

    @property
    def store(self) -> SeriesStore:
        return self.server.state["store"]

    @property
    def prometheus_major(self) -> int:
        return int(self.server.state.get("prometheus_major", 3))

    def error_body(self, status: int, message: str) -> dict[str, str]:
        error_type = _ERROR_TYPE_BY_HTTP_STATUS.get(status, "internal" if status >= 500 else "bad_data")
        return {"status": "error", "errorType": error_type, "error": message}

    def route(self, method: str) -> None:
        path = self.url_path
        if path in ("/-/ready", "/-/healthy"):
            if method not in ("GET", "HEAD"):
                self._method_not_allowed()
                return
            text = "Prometheus Server is Ready.\n" if path == "/-/ready" else "Prometheus Server is Healthy.\n"
            self.send_bytes(200, text.encode(), "text/plain; charset=utf-8", head_only=method == "HEAD")
            return
        endpoints: dict[str, Callable[[dict[str, list[str]]], object]] = {
            "/api/v1/query": self._query,
            "/api/v1/query_range": self._query_range,
            "/api/v1/labels": self._labels,
            "/api/v1/series": self._series,
            "/api/v1/status/buildinfo": self._buildinfo,
        }
        label_values = re.fullmatch(r"/api/v1/label/([^/]+)/values", path)
        endpoint = (partial(self._label_values, unquote(label_values.group(1))) if label_values is not None
                    else endpoints.get(path))
        if endpoint is None:
            self.send_bytes(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if method not in ("GET", "POST") or (path == "/api/v1/status/buildinfo" and method != "GET"):
            self._method_not_allowed()
            return
        try:
            data = endpoint(self._form(method))
        except PrometheusAPIError as exc:
            self.send_json(exc.http_status, {"status": "error", "errorType": exc.error_type, "error": exc.message})
            return
        self.send_json(200, {"status": "success", "data": data})

    def _method_not_allowed(self) -> None:
        self.send_bytes(405, b"Method Not Allowed\n", "text/plain; charset=utf-8", {"Allow": "GET, OPTIONS, POST"})

    def _form(self, method: str) -> dict[str, list[str]]:
        """Go's Request.Form: a form-encoded POST body first, then the URL query."""
        params: dict[str, list[str]] = {}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if method == "POST":
            body = self.read_body()
            if content_type == "application/x-www-form-urlencoded":
                params = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        for key, values in parse_qs(self.raw_query, keep_blank_values=True).items():
            params.setdefault(key, []).extend(values)
        return params

    # -- parameters -------------------------------------------------------------------
    @staticmethod
    def _value(params: dict[str, list[str]], name: str) -> str:
        values = params.get(name)
        return values[0] if values else ""

    def _time(self, params: dict[str, list[str]], name: str, default: int | None = None) -> int:
        text = self._value(params, name)
        if text == "" and default is not None:
            return default
        try:
            return parse_time_ms(text)
        except ValueError as exc:
            raise PrometheusAPIError("bad_data", f'invalid parameter "{name}": {exc}') from None

    def _now_ms(self) -> int:
        return int(round(self.clock.now().timestamp() * 1000))

    def _check_timeout(self, params: dict[str, list[str]]) -> None:
        text = self._value(params, "timeout")
        if text:
            try:
                parse_step_ms(text)
            except ValueError as exc:
                raise PrometheusAPIError("bad_data", f'invalid parameter "timeout": {exc}') from None

    def _parse(self, params: dict[str, list[str]]) -> Expr:
        try:
            return parse_promql(self._value(params, "query"))
        except PromQLParseError as exc:
            raise PrometheusAPIError("bad_data", f'invalid parameter "query": {exc}') from None

    # -- endpoints ---------------------------------------------------------------------
    def _query(self, params: dict[str, list[str]]) -> dict[str, object]:
        now = self._now_ms()
        at = self._time(params, "time", default=now)
        self._check_timeout(params)
        expr = self._parse(params)
        evaluator = _Evaluator(self.store, np.array([at], dtype=np.int64), now, self.prometheus_major)
        if isinstance(expr, VectorSelector) and expr.range_ms is not None:
            return {"resultType": "matrix", "result": self._raw_range(evaluator, expr)}
        value = evaluator.evaluate(expr)
        if isinstance(value, np.ndarray):
            return {"resultType": "scalar", "result": [json_timestamp(at), format_sample_value(float(value[0]))]}
        result = [{"metric": _sorted_labels(row.labels),
                   "value": [json_timestamp(at), format_sample_value(float(row.values[0]))]}
                  for row in sorted(value, key=lambda r: sorted(r.labels.items())) if row.present[0]]
        return {"resultType": "vector", "result": result}

    def _raw_range(self, evaluator: _Evaluator, selector: VectorSelector) -> list[dict[str, object]]:
        """An instant query for `metric[5m]`: the raw samples in the window, at their own timestamps."""
        assert selector.range_ms is not None
        result = []
        for series in self.store.select(selector):
            timestamps, values = evaluator.visible(series)
            lo, hi = evaluator.windows(timestamps, selector.range_ms)
            if hi[0] > lo[0]:
                points = [[json_timestamp(int(t)), format_sample_value(float(v))]
                          for t, v in zip(timestamps[lo[0]:hi[0]], values[lo[0]:hi[0]], strict=True)]
                result.append({"metric": _sorted_labels(series.labels), "values": points})
        return result

    def _query_range(self, params: dict[str, list[str]]) -> dict[str, object]:
        start = self._time(params, "start")
        end = self._time(params, "end")
        if end < start:
            raise PrometheusAPIError("bad_data", 'invalid parameter "end": end timestamp must not be before start time')
        try:
            step = parse_step_ms(self._value(params, "step"))
        except ValueError as exc:
            raise PrometheusAPIError("bad_data", f'invalid parameter "step": {exc}') from None
        if step <= 0:
            raise PrometheusAPIError("bad_data", 'invalid parameter "step": zero or negative query resolution step '
                                                 "widths are not accepted. Try a positive integer")
        if (end - start) // step > MAX_STEPS_PER_SERIES:
            raise PrometheusAPIError("bad_data", TOO_MANY_POINTS)
        self._check_timeout(params)
        expr = self._parse(params)
        if expr.value_type == "matrix":
            raise PrometheusAPIError("bad_data", 'invalid expression type "range vector" for range query, '
                                                 "must be Scalar or instant Vector")
        steps = np.arange(start, end + 1, step, dtype=np.int64)
        value = _Evaluator(self.store, steps, self._now_ms(), self.prometheus_major).evaluate(expr)
        stamps = [json_timestamp(int(t)) for t in steps]
        if isinstance(value, np.ndarray):
            points = [[stamps[k], format_sample_value(float(v))] for k, v in enumerate(value)]
            return {"resultType": "matrix", "result": [{"metric": {}, "values": points}]}
        result = []
        for row in sorted(value, key=lambda r: sorted(r.labels.items())):
            indices = np.flatnonzero(row.present)
            if indices.size:
                points = [[stamps[k], format_sample_value(float(row.values[k]))] for k in indices]
                result.append({"metric": _sorted_labels(row.labels), "values": points})
        return {"resultType": "matrix", "result": result}

    def _matching_series(self, params: dict[str, list[str]], *, required: bool) -> list[StoredSeries]:
        """Series selected by the `match[]` selectors (all if none and not required) with samples in [start, end]."""
        now = self._now_ms()
        start = self._time(params, "start", default=_MIN_TIME_MS)
        end = self._time(params, "end", default=_MAX_TIME_MS)
        selectors = params.get("match[]", [])
        if required and not selectors:
            raise PrometheusAPIError("bad_data", "no match[] parameter provided")
        chosen: dict[int, StoredSeries] = {}
        candidates: list[StoredSeries] = []
        if not selectors:
            candidates = self.store.all()
        for text in selectors:
            try:
                expr = parse_promql(text)
            except PromQLParseError as exc:
                raise PrometheusAPIError("bad_data", f'invalid parameter "match[]": {exc}') from None
            if not isinstance(expr, VectorSelector) or expr.range_ms is not None:
                raise PrometheusAPIError("bad_data", f'invalid parameter "match[]": {text!r} is not a series selector')
            candidates.extend(self.store.select(expr))
        for series in candidates:
            ts = series.timestamps_ms
            lo = int(np.searchsorted(ts, start, side="left"))
            if lo < ts.size and ts[lo] <= min(end, now):
                chosen[id(series)] = series
        return sorted(chosen.values(), key=lambda s: s.sort_key)

    def _series(self, params: dict[str, list[str]]) -> list[dict[str, str]]:
        return [_sorted_labels(s.labels) for s in self._matching_series(params, required=True)]

    def _labels(self, params: dict[str, list[str]]) -> list[str]:
        return sorted({name for s in self._matching_series(params, required=False) for name in s.labels})

    def _label_values(self, name: str, params: dict[str, list[str]]) -> list[str]:
        if not (name == "__name__" or _LABEL_NAME_RE.fullmatch(name)):
            raise PrometheusAPIError("bad_data", f'invalid label name: "{name}"')
        return sorted({s.labels[name] for s in self._matching_series(params, required=False) if name in s.labels})

    def _buildinfo(self, params: dict[str, list[str]]) -> dict[str, str]:
        return {"version": self.version_3 if self.prometheus_major >= 3 else self.version_2,
                "revision": "registry-lifecycle-sandbox", "branch": "HEAD",
                "buildUser": "registry-lifecycle@sandbox", "buildDate": "20260101-00:00:00",
                "goVersion": "go1.24.0"}


def start_prometheus_api(series: Iterable[Series], clock: SandboxClock, faults: FaultInjector, port: int = 0,
                         *, prometheus_major: int = 3, host: str = "127.0.0.1",
                         advertise_host: str | None = None) -> SandboxServer:
    """Serve `series` as a Prometheus on 127.0.0.1 (port 0: any free port), already running.

    `prometheus_major=2` answers like Debian 12's Prometheus 2.42 instead of Prometheus 3.
    """
    if prometheus_major not in (2, 3):
        raise ValueError(f"prometheus_major must be 2 or 3, not {prometheus_major}")
    store = SeriesStore(series)
    server = SandboxServer(PrometheusHandler, clock=clock, faults=faults, port=port, host=host,
                           advertise_host=advertise_host, store=store, prometheus_major=prometheus_major)
    return server.start()


# =========================================================================== OpenMetrics export
def _openmetrics_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _openmetrics_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_openmetrics(series: Iterable[Series]) -> str:
    """The series as OpenMetrics text, for `promtool tsdb create-blocks-from openmetrics`.

    Each metric is one gauge family, its series written one after another (OpenMetrics forbids
    interleaving), every sample with its timestamp in seconds, ending with `# EOF`. Timestamps are
    rounded to milliseconds exactly as the API serves them, so a real Prometheus loaded from this
    text answers the same queries with the same samples.
    """
    store = SeriesStore(series)
    lines: list[str] = []
    families: dict[str, list[StoredSeries]] = {}
    for stored in store.all():
        families.setdefault(stored.labels["__name__"], []).append(stored)
    for name in sorted(families):
        members = [s for s in families[name] if s.timestamps_ms.size]
        if not members:
            continue
        lines.append(f"# TYPE {name} gauge")
        for stored in members:
            pairs = ",".join(f'{k}="{_openmetrics_escape(v)}"' for k, v in sorted(stored.labels.items())
                             if k != "__name__")
            prefix = f"{name}{{{pairs}}} " if pairs else f"{name} "
            seconds = stored.timestamps_ms / 1000
            lines.extend(f"{prefix}{_openmetrics_value(v)} {_openmetrics_timestamp(t)}"
                         for v, t in zip(stored.values.tolist(), seconds.tolist(), strict=True))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _openmetrics_timestamp(seconds: float) -> str:
    text = repr(seconds)
    return text[:-2] if text.endswith(".0") else text
