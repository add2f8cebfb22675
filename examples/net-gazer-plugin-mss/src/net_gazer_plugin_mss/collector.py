"""The ``mss`` plugin, collector half: ``MssReport`` messages become ``ADVERTISED_MSS`` edges.

``(:Sensor)-[:ADVERTISED_MSS]->(:Host)``, one edge per (sensor, host), holds mergeable parts:
``samples``, ``sum``, ``min``, ``max``, ``small``, ``first_seen``, ``last_seen``, and the derived
``mean``. Two sensors seeing one host keep two edges, and batches may arrive in any order: the
result is the same. ``GET /api/mss`` serves the edges as JSON.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue
from google.protobuf.any_pb2 import Any as AnyMessage
from net_gazer.collector import (
    CollectorContext,
    GraphWrite,
    SensorInfo,
    addr_info,
    hookimpl,
    read_graph,
    scope_of,
)

from net_gazer_plugin_mss import mss_pb2

#: One FOREACH clause over ``$rows``; the store runs it inside the batch's delivery guard, which
#: has bound ``s`` already (so the sensor's node is ``me`` here). Every SET expression sees the
#: values from before the SET, so the mean adds the row's parts to the old ones instead of
#: reading the freshly set sum.
MSS_CYPHER = """
FOREACH (r IN $rows |
  MERGE (me:Sensor {id: $sid})
  MERGE (h:Host {scope: r.scope, ip: r.ip})
  MERGE (me)-[m:ADVERTISED_MSS]->(h)
  ON CREATE SET m.samples = 0, m.sum = 0, m.small = 0, m.min = r.min, m.max = r.max,
    m.first_seen = r.fs, m.last_seen = r.ls
  SET m.min = CASE WHEN r.min < m.min THEN r.min ELSE m.min END,
    m.max = CASE WHEN r.max > m.max THEN r.max ELSE m.max END,
    m.first_seen = CASE WHEN r.fs < m.first_seen THEN r.fs ELSE m.first_seen END,
    m.last_seen = CASE WHEN r.ls > m.last_seen THEN r.ls ELSE m.last_seen END,
    m.samples = m.samples + r.n,
    m.sum = m.sum + r.sum,
    m.small = m.small + r.small,
    m.mean = toFloat(m.sum + r.sum) / (m.samples + r.n)
)
"""


@hookimpl
def ng_handle_extension(
    ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
) -> list[GraphWrite] | None:
    if plugin != "mss" or not payload.Is(mss_pb2.MssReport.DESCRIPTOR):
        return None  # not ours: another plugin may claim it
    report = mss_pb2.MssReport()
    payload.Unpack(report)
    rows: dict[str, dict[str, Any]] = {}
    for h in report.hosts:
        try:
            ip = addr_info(h.ip)[0]
        except ValueError:
            ctx.count("rows_rejected")  # from the network: counted and skipped, never fatal
            continue
        if h.samples == 0 or ip in rows:
            ctx.count("rows_rejected")  # each host once per message: FalkorDB needs one key once
            continue
        rows[ip] = {
            "ip": ip, "scope": scope_of(ip, sensor.site), "n": h.samples, "min": h.min,
            "max": h.max, "sum": h.sum, "small": h.small, "fs": h.first_seen, "ls": h.last_seen,
        }  # fmt: skip
    ctx.count("rows", len(rows))
    # ``hosts``: the store merges (and enriches) these Host nodes before the fragment runs.
    hosts = [(r["ip"], r["ls"]) for r in rows.values()]
    return [GraphWrite(cypher=MSS_CYPHER, rows=list(rows.values()), hosts=hosts)]


READ_CYPHER = """
MATCH (s:Sensor)-[m:ADVERTISED_MSS]->(h:Host)
WHERE ($sensor IS NULL OR s.id = $sensor) AND m.small >= $small
RETURN s.id, h.ip, h.scope, m.samples, m.min, m.max, m.mean, m.small, m.first_seen, m.last_seen
ORDER BY m.min, h.ip
LIMIT $limit
"""
FIELDS = ("sensor", "ip", "scope", "samples", "min", "max", "mean", "small", "first_seen",
          "last_seen")  # fmt: skip

bp = Blueprint("mss", __name__)


@bp.get("/api/mss")
def mss_hosts() -> ResponseReturnValue:
    """Hosts by advertised MSS, smallest first; ``?small=1`` only those below the threshold,
    ``?sensor=ID`` one sensor's, ``?limit=N`` (default 1000)."""
    try:
        limit = max(1, min(int(request.args.get("limit", "1000")), 100_000))
    except ValueError:
        return jsonify(error="limit must be a whole number"), 400
    params = {
        "sensor": request.args.get("sensor") or None,
        "small": 1 if request.args.get("small") in ("1", "true", "yes") else 0,
        "limit": limit,
    }
    hosts = [dict(zip(FIELDS, row, strict=True)) for row in read_graph(READ_CYPHER, params)]
    return jsonify(hosts=hosts, count=len(hosts))


@hookimpl
def ng_web_routes(ctx: CollectorContext, app: Flask) -> None:
    app.register_blueprint(bp)
