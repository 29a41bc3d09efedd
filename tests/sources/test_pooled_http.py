"""Plain GETs go over urllib3 with the same TLS trust, proxy rules and failure handling as httpx.

A small HTTP(S) server on 127.0.0.1 serves one manifest, or misbehaves on purpose; the
registry client talks to it for real.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry_lifecycle.sources.errors import SourceUnavailable
from registry_lifecycle.sources.pooled_http import proxied
from registry_lifecycle.sources.registry import RegistryClient

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + "c" * 64, "size": 2},
                       "layers": []}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    truncate = False

    def do_GET(self) -> None:   # noqa: N802 (http.server's naming)
        self.server.paths.append(self.path)
        if self.path != f"/v2/team/app/manifests/{DIGEST}":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Docker-Content-Digest", DIGEST)
        self.send_header("Content-Length", str(len(MANIFEST)))
        self.end_headers()
        if self.server.truncate:        # the connection drops half-way through the body
            self.wfile.write(MANIFEST[:10])
            self.close_connection = True
        else:
            self.wfile.write(MANIFEST)

    def log_message(self, *args: object) -> None:
        pass


def _serve(context: ssl.SSLContext | None = None, truncate: bool = False) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.paths, server.truncate = [], truncate
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path]]:
    """HTTPS with a self-signed certificate for 127.0.0.1 (the cluster's service CA, in small)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry.test")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
                   .not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca, key_file)
    server = _serve(context)
    yield server, ca
    server.shutdown()


def _url(server: ThreadingHTTPServer, scheme: str = "https") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}"


def test_a_registry_behind_the_clusters_ca_is_read_when_its_bundle_is_given(tls_server) -> None:
    server, ca = tls_server
    with RegistryClient(_url(server), verify=ca, backoff=0.0) as client:
        manifest = client.get_manifest("team/app", DIGEST)
    assert manifest is not None and manifest.digest == DIGEST
    assert server.paths == [f"/v2/team/app/manifests/{DIGEST}"]


def test_an_untrusted_certificate_is_refused_at_once_with_the_fix(tls_server) -> None:
    server, _ = tls_server
    with RegistryClient(_url(server), verify=True, max_retries=3, backoff=0.0) as client:
        with pytest.raises(SourceUnavailable, match="TLS certificate is not trusted") as raised:
            client.get_manifest("team/app", DIGEST)
        assert client.stats.retries == 0
    assert "ca_bundle" in str(raised.value)
    assert server.paths == []


def test_verify_false_skips_the_certificate_check(tls_server) -> None:
    server, _ = tls_server
    with RegistryClient(_url(server), verify=False, backoff=0.0) as client:
        assert client.get_manifest("team/app", DIGEST) is not None


def test_a_body_cut_short_is_retried_then_fails_the_source() -> None:
    server = _serve(truncate=True)
    try:
        with RegistryClient(_url(server, "http"), max_retries=2, backoff=0.0) as client:
            with pytest.raises(SourceUnavailable, match=r"RemoteProtocolError.*after 3 attempts"):
                client.get_manifest("team/app", DIGEST)
        assert len(server.paths) == 3
    finally:
        server.shutdown()


def test_a_registry_the_environment_proxies_keeps_the_proxy_aware_client(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not proxied("https://image-registry.openshift-image-registry.svc:5000")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    assert proxied("https://image-registry.openshift-image-registry.svc:5000")
    assert not proxied("http://image-registry.openshift-image-registry.svc:5000")
    monkeypatch.setenv("NO_PROXY", ".svc,localhost")
    assert not proxied("https://image-registry.openshift-image-registry.svc:5000")
    assert proxied("https://quay.io")
    with RegistryClient("https://quay.io") as client:
        assert client._pooled is None       # httpx sends everything through the proxy
