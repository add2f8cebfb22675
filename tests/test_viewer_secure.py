"""The viewer behind the collector's HTTPS and Basic auth, with the privacy switch on: the pages
load and draw through the login, say that client addresses are masked, and no client address of
the capture (tests/pcaps/handshakes.expected.json) reaches the page or a download."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from conftest import PCAPS, ROOT, Collector, run_sensor
from playwright.sync_api import Browser, expect
from playwright.sync_api import Error as PlaywrightError
from viewer_browser import close_viewer, open_viewer

pytestmark = pytest.mark.timeout(240)

EXPECTED = json.loads((PCAPS / "handshakes.expected.json").read_text())
USER, PASSWORD = "viewer", "v-secret"


#: The reference (handshakes.expected.json) is TCP edges; the capture's UDP flows are tested in
#: tests/test_udp.py.
TCP_ONLY = {"NG_PLUGINS_BLOCK": "udp"}


@pytest.fixture
def secure(collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path) -> Collector:
    certs = tmp_path / "certs"
    subprocess.run(
        [str(ROOT / "scripts/make-certs.sh"), str(certs)], check=True, capture_output=True
    )
    auth = tmp_path / "htpasswd"
    auth.write_text(
        f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
    )
    c: Collector = collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--authfile", str(auth), "--privacy",
        "--http-tls-cert", str(certs / "collector.pem"), "--http-tls-key", str(certs / "collector.key"),
    ).start()  # fmt: skip
    r = run_sensor(
        "-r", str(PCAPS / "handshakes.pcap"), "--collector", c.address, "--sensor-id", "gw1",
        env=TCP_ONLY,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return c


@pytest.fixture
def base(secure: Collector) -> Iterator[str]:
    yield f"https://127.0.0.1:{secure.http_port}"


def test_pages_over_https_with_a_login_and_privacy(
    browser: Browser, base: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # the test's CA is not the browser's: its certificate is checked by tests/test_api_auth.py
    v = open_viewer(
        browser,
        base,
        http_credentials={"username": USER, "password": PASSWORD},
        ignore_https_errors=True,
    )
    clients = {c["client"] for c in EXPECTED}
    try:
        page = v.goto("/")
        expect(page.locator("#status")).to_contain_text("nodes", timeout=20_000)
        expect(page.locator("#privacy-notice")).to_contain_text("masks client addresses")
        ips = set(page.evaluate("window.ngCy.nodes().map(n => n.data('ip'))"))
        assert {c["server"] for c in EXPECTED} <= ips
        assert not ips & clients
        page = v.goto("/connections")
        expect(page.locator("#table-wrap tbody tr")).to_have_count(len(EXPECTED))
        text = page.locator("#table-wrap").inner_text()
        assert not [c for c in clients if f"{c}\t" in text or f"{c}\n" in text]
        with page.expect_download() as dl:
            page.click("#download-csv")
        path = tmp_path / "c.csv"
        dl.value.save_as(path)
        body = path.read_text()
        assert body.count("\n") == len(EXPECTED) + 1
        assert not [c for c in clients if f",{c}," in body or body.startswith(f"{c},")]
        v.check()
    finally:
        close_viewer(v, request.node.name)


def test_without_the_login_the_pages_are_refused(
    browser: Browser, base: str, request: pytest.FixtureRequest
) -> None:
    v = open_viewer(browser, base, ignore_https_errors=True)
    try:
        # headless Chromium has no login prompt: the navigation fails on the 401
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            v.page.goto(v.url("/"))
        for path in ("/", "/connections", "/static/dist/graph.js"):
            assert v.page.request.get(v.url(path), ignore_https_errors=True).status == 401, path
        v.check()
    finally:
        close_viewer(v, request.node.name)
