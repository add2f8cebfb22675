"""JSON endpoints. The full API (graph, hosts, traces, CSV/XLSX) arrives with the viewer."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

bp = Blueprint("api", __name__)

CONNECTION_FIELDS = (
    "sensor", "dport", "proto", "direction", "first_seen", "last_seen", "count", "attempts",
    "refused", "unanswered", "abandoned", "evicted", "syn_retransmits", "rtt_ms", "rtt_ms_min", "rtt_ms_max",
    "rtt_samples", "client_rtt_ms", "client_rtt_ms_min", "client_rtt_ms_max", "client_rtt_samples",
)  # fmt: skip

CONNECTIONS_CYPHER = (
    "MATCH (c:Host)-[e:CONNECTS]->(s:Host) "
    "WHERE $sensor IS NULL OR e.sensor = $sensor "
    "RETURN c.ip, c.scope, s.ip, s.scope, "
    + ", ".join(f"e.{f}" for f in CONNECTION_FIELDS)
    + " ORDER BY e.last_seen DESC LIMIT $limit"
)


def _graph() -> Any:
    return current_app.extensions["ng_graph"]


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    graph_ok = _graph().ping()
    body = {"status": "ok" if graph_ok else "degraded", "graph": graph_ok}
    body.update(current_app.config["NG"].status())
    return jsonify(body), 200 if graph_ok else 503


@bp.get("/api/connections")
def connections() -> ResponseReturnValue:
    fmt = request.args.get("format", "json")
    if fmt != "json":
        return jsonify(error=f"format {fmt!r} is not supported; use format=json"), 400
    try:
        limit = int(request.args.get("limit", "1000"))
    except ValueError:
        return jsonify(error="limit must be a whole number"), 400
    limit = max(1, min(limit, 100_000))
    sensor = request.args.get("sensor") or None
    rows = _graph().query(CONNECTIONS_CYPHER, {"limit": limit, "sensor": sensor})
    out = []
    for row in rows:
        item: dict[str, Any] = {
            "client": row[0],
            "client_scope": row[1],
            "server": row[2],
            "server_scope": row[3],
        }
        item.update(zip(CONNECTION_FIELDS, row[4:], strict=True))
        out.append(item)
    return jsonify(connections=out, count=len(out))
