"""``GET /metrics``: Prometheus text, the collector process's metrics and every sensor's
(see :mod:`net_gazer.collector.metrics`)."""

from __future__ import annotations

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from net_gazer.collector.metrics import sensor_metrics
from net_gazer.collector.web.common import config, graph

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    registry = config().metrics
    own = generate_latest(registry) if registry is not None else b""
    return Response(
        own + generate_latest(sensor_metrics(graph().query)), mimetype=CONTENT_TYPE_LATEST
    )
