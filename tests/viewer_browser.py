"""Real headless Chromium (Debian's ``chromium``) driven by Playwright, for the viewer's tests and
its bench.

Every request a page makes goes through a route that lets only loopback through: anything else
is aborted and recorded, and the test fails. That is also the proof that the pages need nothing
from the internet. Uncaught page errors fail the test too. A screenshot of each test's last page
is kept in ``.ci-artifacts/viewer/``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".ci-artifacts" / "viewer"
CHROMIUM = "/usr/bin/chromium"
#: As root Chromium needs --no-sandbox; the rest keeps it from calling home (this machine has no
#: route out, and a test must not depend on that).
ARGS = [
    "--no-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    # WebGL (the sigma.js candidate in the bench) without a GPU
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Viewer:
    """One browser context on one collector: ``page``, ``url(path)``, and what went wrong."""

    base: str
    context: BrowserContext
    page: Page
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def goto(self, path: str) -> Page:
        self.page.goto(self.url(path))
        return self.page

    def check(self) -> None:
        assert not self.outside, f"requests left loopback: {self.outside}"
        assert not self.errors, f"page errors: {self.errors}"


def launch(pw: Playwright) -> Browser:
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Browser]:
    """One Chromium per test module (conftest.py imports it). Not per session: Playwright's sync
    API keeps an event loop running in the main thread while it is open, which would break the
    asyncio.run() of every test module after the viewer's."""
    with sync_playwright() as pw:
        b = launch(pw)
        try:
            yield b
        finally:
            b.close()


def open_viewer(
    browser: Browser,
    base: str,
    *,
    http_credentials: dict[str, str] | None = None,
    bypass_csp: bool = True,
    **kw: Any,
) -> Viewer:
    """A fresh context. ``bypass_csp``: Playwright's waiting helpers compile scripts in the page,
    which the pages' Content-Security-Policy forbids; the CSP test turns it off."""
    ctx = browser.new_context(
        viewport={"width": 1400, "height": 900},
        accept_downloads=True,
        bypass_csp=bypass_csp,
        http_credentials=http_credentials,  # type: ignore[arg-type]
        **kw,
    )
    v = Viewer(base=base, context=ctx, page=ctx.new_page())

    def guard(route: Route) -> None:
        if loopback(route.request.url):
            route.continue_()
        else:
            v.outside.append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    v.page.on("pageerror", lambda exc: v.errors.append(str(exc)))
    return v


def close_viewer(v: Viewer, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]
    try:
        v.page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)
    finally:
        v.context.close()


def axe_source() -> str:
    return (
        ROOT / "collector" / "web" / "ui" / "node_modules" / "axe-core" / "axe.min.js"
    ).read_text()
