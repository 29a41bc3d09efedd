"""The download page in a real browser: headless Chromium against the Airflow API server."""
from __future__ import annotations

import struct
import threading
import time

import pytest

from tests.fixtures.components import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def api_server_url(api_server_app):
    """The Airflow API server app (with the plugin) served over HTTP by uvicorn on 127.0.0.1."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api_server_app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png[16:24])


def test_the_page_in_chromium_refuses_a_visitor_and_lists_reports_for_a_signed_in_user(
        chromium, api_server_url, report_location, token_for, tmp_path):
    page_url = f"{api_server_url}/reglife/reports/"
    assert chromium.open(page_url) == 401
    refused = chromium.text()
    assert "Not authenticated" in refused and "2026Q3" not in refused and "report.pdf" not in refused

    chromium.set_cookie(api_server_url + "/", "_token", token_for("alice", "admin"))
    assert chromium.open(page_url) == 200
    text = chromium.text()
    assert "Registry compliance reports" in text and "2026Q3" in text and "report.pdf" in text
    links = chromium.evaluate("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
    assert "/reglife/reports/download/2026Q3/20261001T003000Z/report.pdf" in links

    png = chromium.screenshot()
    (tmp_path / "compliance-reports-page.png").write_bytes(png)
    assert _png_size(png) == (1280, 800)
    assert len(png) > 10_000, "a blank screenshot compresses to almost nothing"
