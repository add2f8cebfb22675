"""``/healthz``; the JSON API lives in the other modules of this package, the pages in ``pages``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("api", __name__)


def _graph() -> Any:
    return current_app.extensions["ng_graph"]


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    graph_ok = _graph().ping()
    body = {"status": "ok" if graph_ok else "degraded", "graph": graph_ok}
    body.update(current_app.config["NG"].status())
    return jsonify(body), 200 if graph_ok else 503
