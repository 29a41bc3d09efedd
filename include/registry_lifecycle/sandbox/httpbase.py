"""What the sandbox's four HTTP APIs share: a threaded server on 127.0.0.1, fault
injection applied before any handler runs, and the `/_sandbox/*` control endpoints.

Each API is its own server on its own port, as in production, where the Kubernetes API,
the registry and Prometheus are different hosts.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import msgspec

from .clock import SandboxClock
from .faults import Fault, FaultInjector

log = logging.getLogger(__name__)


class SandboxHandler(BaseHTTPRequestHandler):
    """Base request handler. Subclasses implement `route(method)` and `error_body`."""

    protocol_version = "HTTP/1.1"
    api_name: ClassVar[str] = "any"
    server: "SandboxServer"

    # -- plumbing -------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY each small response waits ~40 ms for the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args: Any) -> None:  # keep test output quiet
        log.debug("%s %s", self.api_name, fmt % args)

    @property
    def faults(self) -> FaultInjector:
        return self.server.faults

    @property
    def clock(self) -> SandboxClock:
        return self.server.clock

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        self.url_path = parts.path
        self.raw_query = parts.query
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.fault: Fault | None = None
        self.server.count_request(self.api_name)
        try:
            if self.url_path.startswith("/_sandbox/"):
                self._control(method)
                return
            fault = self.faults.take(self.api_name, method, self.url_path, self.raw_query)
            if fault is not None:
                if fault.latency:
                    time.sleep(fault.latency)
                if fault.status is not None:
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                    self.send_json(fault.status, self.error_body(fault.status, "injected fault"), headers)
                    return
                if fault.malformed:
                    self.send_bytes(200, b'{"kind": "List", "items": [{"metadata": ', "application/json")
                    return
                self.fault = fault
            self.route(method)
        except BrokenPipeError:
            pass
        except Exception as exc:  # a sandbox bug must look like a 500, not a hang
            log.exception("sandbox %s handler failed", self.api_name)
            try:
                self.send_json(500, self.error_body(500, f"sandbox error: {exc}"))
            except OSError:
                pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- to override ----------------------------------------------------------------
    def route(self, method: str) -> None:
        self.send_json(404, self.error_body(404, "not found"))

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message, "status": status}

    # -- helpers --------------------------------------------------------------------
    def parse_request(self) -> bool:
        """Read the whole request body up front: a fault answered before `route()` must not
        leave it unread on a kept-alive connection, where it would be parsed as the next request."""
        if not super().parse_request():
            return False
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length else b""
        return True

    def read_body(self) -> bytes:
        return self._body

    def read_json(self) -> Any:
        body = self.read_body()
        return json.loads(body) if body else None

    def send_bytes(self, status: int, body: bytes, content_type: str,
                   headers: dict[str, str] | None = None, *, head_only: bool = False,
                   content_length: int | None = None) -> None:
        head_only = head_only or self.command == "HEAD"   # HEAD answers never carry a body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None, *,
                  content_type: str = "application/json", head_only: bool = False) -> None:
        # msgspec, compact: a page of 500 Image objects in 0.8 ms where json takes 7 ms; encoding was
        # a third of the sandbox's CPU while a large cluster was listed, time the benchmark charged
        # to the extraction sharing its cores.
        self.send_bytes(status, msgspec.json.encode(obj), content_type, headers, head_only=head_only)

    # -- control endpoints ------------------------------------------------------------
    def _control(self, method: str) -> None:
        if self.url_path == "/_sandbox/faults":
            if method == "GET":
                self.send_json(200, self.faults.rules())
            elif method == "POST":
                rule = self.faults.add(**(self.read_json() or {}))
                self.send_json(201, {"added": rule.path})
            elif method == "DELETE":
                self.faults.clear()
                self.send_json(200, {"cleared": True})
            else:
                self.send_json(405, {"error": "use GET, POST or DELETE"})
        elif self.url_path == "/_sandbox/clock":
            if method == "POST":
                body = self.read_json() or {}
                try:
                    now = self.clock.set(datetime.fromisoformat(str(body.get("now", "")).replace("Z", "+00:00")))
                except ValueError as exc:
                    self.send_json(400, {"error": str(exc)})
                    return
                self.send_json(200, {"now": now.isoformat()})
            else:
                self.send_json(200, {"now": self.clock.now().isoformat()})
        elif self.url_path == "/_sandbox/stats":
            self.send_json(200, self.server.request_counts())
        else:
            self.send_json(404, {"error": f"unknown control endpoint {self.url_path}"})


class SandboxServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer, bound to loopback unless told otherwise, served from a daemon thread.

    `host` is the address to bind (0.0.0.0 inside a container); `advertise_host` is the name
    other processes use to reach it (the compose service name), written into URLs and the
    kubeconfig.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[SandboxHandler], *, clock: SandboxClock,
                 faults: FaultInjector, port: int = 0, host: str = "127.0.0.1",
                 advertise_host: str | None = None, **state: Any) -> None:
        super().__init__((host, port), handler)
        self.advertise_host = advertise_host
        self.clock = clock
        self.faults = faults
        self.state = state
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{self.advertise_host or host}:{port}"

    def count_request(self, api: str) -> None:
        with self._counts_lock:
            self._counts[api] = self._counts.get(api, 0) + 1

    def request_counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    def start(self) -> "SandboxServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{self.RequestHandlerClass.api_name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
