"""Fault injection for the sandbox's HTTP APIs.

Tests ask an endpoint to misbehave the way real servers do (403 on a list, 429 with
Retry-After, 500s, slow answers, a page cut short, a body that is not JSON) and then check
that the client fails loudly instead of publishing a partial snapshot. A rule matches by
API, method and a path regex, and fires a bounded number of times, so a test can say
"the second page of the pods list answers 500 twice, then recovers".
"""
from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Literal

ApiName = Literal["kubernetes", "registry", "prometheus", "any"]


@dataclass
class Fault:
    """One misbehaviour. `times=None` fires forever; `skip` lets the first N matches pass."""

    path: str = ".*"                 # regex searched in the request path (without query)
    api: ApiName = "any"
    method: str = "*"
    status: int | None = None        # answer with this status instead of serving
    latency: float = 0.0             # seconds to sleep before answering
    truncate: bool = False           # serve the page but drop its continuation (continue token / Link)
    malformed: bool = False          # answer 200 with a body that is not what the API promises
    expire_continue: bool = False    # kubernetes only: treat any continue token as expired (410)
    retry_after: int | None = None   # Retry-After header sent with a 429/503
    query: str | None = None         # regex searched in the raw query string
    times: int | None = 1
    skip: int = 0
    fired: int = field(default=0, compare=False)

    def matches(self, api: str, method: str, path: str, query: str) -> bool:
        if self.api != "any" and self.api != api:
            return False
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if not re.search(self.path, path):
            return False
        if self.query is not None and not re.search(self.query, query):
            return False
        return True


class FaultInjector:
    """Thread-safe list of fault rules shared by every sandbox server."""

    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()
        self._seen: dict[int, int] = {}

    def add(self, fault: Fault | None = None, **kwargs) -> Fault:
        fault = fault or Fault(**kwargs)
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._seen.clear()

    def rules(self) -> list[dict]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def take(self, api: str, method: str, path: str, query: str = "") -> Fault | None:
        """The first live rule matching this request, counted as fired; None if none."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(api, method, path, query):
                    continue
                seen = self._seen.get(id(rule), 0)
                self._seen[id(rule)] = seen + 1
                if seen < rule.skip:
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                rule.fired += 1
                return rule
        return None
