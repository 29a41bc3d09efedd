"""A small HTTP proxy in front of a real registry that breaks things on purpose.

The faults a mirror copy meets between two registries, on a real socket: a response body cut
off half-way (a blob download from the source dies), a request body cut off half-way (an
upload to the target dies), a plain error status, and a target that rewrites manifests (it
re-serialises the JSON it is sent, so the stored bytes, and so the digest, change, the way a
registry that converts or re-signs manifests does). Everything else is forwarded byte for byte,
`Host` included, so the registry's `Location` headers point back at the proxy.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}
_MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/?]+)$")


@dataclass
class Fault:
    """`kind` on requests whose method and path (without query) match, `times` times (None: always)."""

    kind: str                          # cut_response | cut_request | status | rewrite_manifest
    method: str = ".*"
    path: str = ".*"
    after_bytes: int = 0               # for the cuts: bytes let through first
    status: int = 500
    times: int | None = 1
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.times is None or self.fired < self.times) and re.fullmatch(self.method, method) is not None \
            and re.search(self.path, path) is not None


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fault-proxy").start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def _take(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.fired += 1
                return fault
        return None


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, *args) -> None:     # quiet: pytest shows failures, not every request
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        owner = self.owner
        path = urlsplit(self.path).path
        owner.requests.append((self.command, self.path))
        fault = owner._take(self.command, path)
        body = self._body()
        target_path = self.path
        if fault is not None and fault.kind == "status":
            payload = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}).encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if fault is not None and fault.kind == "rewrite_manifest" and self.command == "PUT":
            match = _MANIFEST_PATH.match(path)
            if match is not None:
                body = json.dumps(json.loads(body), indent=3).encode()
                if match["reference"].startswith("sha256:"):
                    target_path = f"/v2/{match['name']}/manifests/sha256:{hashlib.sha256(body).hexdigest()}"
        upstream = urlsplit(owner.upstream)
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            connection.putrequest(self.command, target_path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                    continue
                connection.putheader(name, value)
            if body or self.command in ("PUT", "POST", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            if fault is not None and fault.kind == "cut_request":
                connection.send(body[:fault.after_bytes])
                connection.sock.shutdown(socket.SHUT_RDWR)
                self._drop()
                return
            if body:
                connection.send(body)
            response = connection.getresponse()
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            if self.command == "HEAD":
                length = response.getheader("Content-Length")
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                return
            payload = response.read()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if fault is not None and fault.kind == "cut_response":
                self.wfile.write(payload[:fault.after_bytes])
                self.wfile.flush()
                self._drop()
                return
            self.wfile.write(payload)
        finally:
            connection.close()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle
