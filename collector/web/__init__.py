"""The collector's web side: a Flask application factory, blueprints by concern.

Served by waitress (a production WSGI server) from :mod:`net_gazer.collector.cli`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask


@dataclass
class WebConfig:
    graph_url: str
    graph: str = "net_gazer"
    #: Returns the collector's live status (ingest counters, plugins) for /healthz.
    status: Callable[[], dict[str, Any]] = field(default=lambda: {})
    #: Returns the collector's plugins and what they lost, for /api/plugins.
    plugins: Callable[[], dict[str, Any]] = field(default=lambda: {})
    #: Mask client addresses in every answer and export (the privacy switch).
    privacy: bool = False
    #: Returns what the GeoIP databases are (paths, build dates, attribution), for the API.
    geoip: Callable[[], dict[str, Any]] = field(default=lambda: {})
    #: The collector process's prometheus_client registry for /metrics (None: sensors only).
    metrics: Any = None


def create_app(config: WebConfig) -> Flask:
    from net_gazer.collector.web import (
        api,
        common,
        connections,
        graph,
        hosts,
        metrics,
        pages,
        plugins,
    )
    from net_gazer.collector.web.db import GraphReader

    app = Flask("net_gazer.collector.web")
    app.config["NG"] = config
    app.extensions["ng_graph"] = GraphReader(config.graph_url, config.graph)
    app.register_blueprint(pages.bp)
    app.register_blueprint(common.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(graph.bp)
    app.register_blueprint(connections.bp)
    app.register_blueprint(hosts.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(plugins.bp)
    return app
