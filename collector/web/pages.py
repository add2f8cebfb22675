"""The viewer's pages: the graph (``/``), the map, the connections table and sensor health.

Each page is a small template; the work happens in the browser, in scripts that esbuild bundles
from ``ui/`` into ``static/dist`` at build time (``make ui``) and that read the JSON API. Nothing
is loaded from another origin: the Content-Security-Policy says so to the browser, too.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, current_app, render_template, url_for
from flask.typing import ResponseReturnValue

HERE = Path(__file__).resolve().parent
DIST = HERE / "static" / "dist"

bp = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

NAV = (
    ("pages.graph", "Graph"),
    ("pages.world_map", "Map"),
    ("pages.connections", "Connections"),
    ("pages.sensors", "Sensors"),
)

#: Same origin only. Styles may be inline because Cytoscape.js sets its container's style.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@cache
def _fingerprint(name: str, mtime_ns: int) -> str:
    return hashlib.sha256((DIST / name).read_bytes()).hexdigest()[:12]


def asset(name: str) -> str:
    """The URL of a bundled file, with a content hash so a rebuilt bundle is never stale."""
    path = DIST / name
    try:
        version = _fingerprint(name, path.stat().st_mtime_ns)
    except OSError:
        version = "missing"
    return url_for("pages.static", filename=f"dist/{name}", v=version)


def bundle_built() -> bool:
    return (DIST / "BUILT").is_file()


def _privacy() -> bool:
    return bool(getattr(current_app.config["NG"], "privacy", False))


def _page(template: str, **extra: object) -> ResponseReturnValue:
    html = render_template(
        template,
        nav=NAV,
        asset=asset,
        bundle=bundle_built(),
        privacy=_privacy(),
        **extra,
    )
    resp = Response(html, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    return resp


@bp.get("/")
def graph() -> ResponseReturnValue:
    return _page("graph.html", poll_ms=5000)


@bp.get("/map")
def world_map() -> ResponseReturnValue:
    return _page("map.html")


@bp.get("/connections")
def connections() -> ResponseReturnValue:
    return _page("connections.html")


@bp.get("/sensors")
def sensors() -> ResponseReturnValue:
    return _page("sensors.html")
