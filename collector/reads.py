"""Graph reads for plugins' web routes."""

from __future__ import annotations

from typing import Any


def read_graph(cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
    """Run a read-only Cypher query on the collector's graph from inside a web request (a route
    that ``ng_web_routes`` registered); return the result rows.

    It goes through the viewer's own reader (a read replica when ``--graph-read-url`` gives one),
    which FalkorDB runs read-only, and an empty graph (no sensor has written yet) reads as no
    rows. Pass every value as a parameter: nothing is ever pasted into the query text.
    """
    from flask import current_app

    rows: list[list[Any]] = current_app.extensions["ng_graph"].query(cypher, params or {})
    return rows
