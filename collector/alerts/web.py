"""``GET /api/alerts``: the latest alerts from the graph (newest first; ``?rule=NAME``,
``?sensor=ID``, ``?limit=N``, default 100), the rules with what each fired and suppressed since
this collector started, and the delivery counters. ``GET /api/alerts/metrics``: the same
counters in the Prometheus text format.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

bp = Blueprint("alerts", __name__)

ALERTS_CYPHER = (
    "MATCH (a:Alert) WHERE ($rule IS NULL OR a.rule = $rule) AND ($sensor IS NULL OR "
    "a.sensor = $sensor) RETURN a.id, a.rule, a.kind, a.key, a.sensor, a.ts, a.message, "
    "a.details ORDER BY a.ts DESC LIMIT $limit"
)
FIELDS = ("id", "rule", "kind", "key", "sensor", "ts", "message", "details")


def _status() -> dict[str, Any]:
    status = current_app.config.get("NG_ALERTS")
    return status() if status is not None else {"rules": []}


@bp.get("/api/alerts")
def alerts() -> ResponseReturnValue:
    try:
        limit = max(1, min(int(request.args.get("limit", "100")), 10_000))
    except ValueError:
        return jsonify(error="limit must be a whole number"), 400
    params = {"rule": request.args.get("rule") or None,
              "sensor": request.args.get("sensor") or None, "limit": limit}  # fmt: skip
    graph = current_app.extensions["ng_graph"]
    out = []
    for row in graph.query(ALERTS_CYPHER, params):
        item = dict(zip(FIELDS, row, strict=True))
        try:
            item["details"] = json.loads(item["details"] or "{}")
        except (TypeError, ValueError):
            item["details"] = {}
        out.append(item)
    return jsonify(alerts=out, count=len(out), **_status())


@bp.get("/api/alerts/metrics")
def metrics() -> ResponseReturnValue:
    s = _status()
    lines = [
        "# HELP net_gazer_alerts_fired_total Alerts fired by rule since the collector started.",
        "# TYPE net_gazer_alerts_fired_total counter",
    ]
    lines += [
        f'net_gazer_alerts_fired_total{{rule="{_label(r["name"])}"}} {r["fired"]}'
        for r in s["rules"]
    ]
    lines += [
        "# HELP net_gazer_alerts_suppressed_total Candidates the hold-down suppressed, by rule.",
        "# TYPE net_gazer_alerts_suppressed_total counter",
    ]
    lines += [
        f'net_gazer_alerts_suppressed_total{{rule="{_label(r["name"])}"}} {r["suppressed"]}'
        for r in s["rules"]
    ]
    for key in ("webhook_sent", "webhook_retries", "webhook_dropped", "command_failures"):
        if key in s:
            lines += [
                f"# TYPE net_gazer_alerts_{key}_total counter",
                f"net_gazer_alerts_{key}_total {s[key]}",
            ]
    if "webhook_queued" in s:
        lines += [
            "# TYPE net_gazer_alerts_webhook_queued gauge",
            f"net_gazer_alerts_webhook_queued {s['webhook_queued']}",
        ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
