"""The ``traceroute`` plugin, collector half: ``TraceReport`` -> ``Trace`` nodes with ``RAN``,
``TO`` and ``AT``, and ``ROUTE`` adjacencies between hosts (docs/schema.md).

Each run becomes its own ``Trace`` (the path history), linked from the sensor (``RAN``) to its
destination (``TO``) and to the responder at each TTL that answered (``AT {ttl, rtt_ms,
inferred, sent, answered}``). Consecutive responders, starting from the run's source address
(the sensor's ``ORIGIN`` host), become ``ROUTE`` edges keyed by (a, b, sensor, gap), where
``gap`` is the number of silent TTLs between them; they add up ``count``, the RTT to ``b``
(``rtt_ms_min``, ``rtt_ms_sum``, ``rtt_samples``) and the probes sent to and answered by
``b``'s TTL (``probes``, ``answered``), so a hop's response rate can be shown honestly.

Both fragments are FOREACH clauses inside the batch's delivery guard (``s`` is the sensor the
guard matched), so a batch's traces are written exactly once. ROUTE rows are merged per key
first: a relationship MERGE does not see one created earlier in the same query.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import DecodeError

from net_gazer.collector import (
    GLOBAL_SCOPE,
    CollectorContext,
    GraphWrite,
    SensorInfo,
    addr_info,
    hookimpl,
)
from net_gazer.v1 import traceroute_pb2

METHODS = {"tcp", "udp", "icmp"}
MAX_HOPS = 255

TRACE_CYPHER = """
FOREACH (r IN $rows |
  MERGE (t:Trace {id: r.id})
  ON CREATE SET t.sensor = $sid, t.src = r.src, t.dst = r.dst, t.method = r.method,
    t.flow_id = r.flow, t.dport = r.dport, t.mode = r.mode, t.started = r.started,
    t.finished = r.finished, t.reached = r.reached, t.hop_count = r.hop_count, t.hops = r.hops,
    t.rtts = r.rtts, t.probes_sent = r.sent, t.probes_answered = r.answered,
    t.probes_saved = r.saved
  MERGE (s)-[:RAN]->(t)
  MERGE (d:Host {scope: r.ds, ip: r.dst})
  MERGE (t)-[:TO]->(d)
  FOREACH (h IN r.at |
    MERGE (x:Host {scope: h.scope, ip: h.ip})
    MERGE (t)-[a:AT {ttl: h.ttl}]->(x)
    SET a.rtt_ms = h.rtt, a.inferred = h.inferred, a.sent = h.sent, a.answered = h.answered
  )
)
"""

ROUTE_CYPHER = """
FOREACH (r IN $rows |
  MERGE (a:Host {scope: r.ascope, ip: r.a})
  MERGE (b:Host {scope: r.bscope, ip: r.b})
  MERGE (a)-[e:ROUTE {sensor: $sid, gap: r.gap}]->(b)
  SET e.count = coalesce(e.count, 0) + r.n,
    e.first_seen = CASE WHEN e.first_seen IS NULL OR r.fs < e.first_seen THEN r.fs
      ELSE e.first_seen END,
    e.last_seen = CASE WHEN e.last_seen IS NULL OR r.ls > e.last_seen THEN r.ls
      ELSE e.last_seen END,
    e.rtt_ms_min = CASE WHEN r.rn = 0 THEN e.rtt_ms_min
      WHEN e.rtt_ms_min IS NULL OR r.rmin < e.rtt_ms_min THEN r.rmin ELSE e.rtt_ms_min END,
    e.rtt_ms_sum = coalesce(e.rtt_ms_sum, 0.0) + r.rsum,
    e.rtt_samples = coalesce(e.rtt_samples, 0) + r.rn,
    e.probes = coalesce(e.probes, 0) + r.sent,
    e.answered = coalesce(e.answered, 0) + r.answered
)
"""


def _host(ip: str, site: str) -> tuple[str, str]:
    canonical, _, is_global = addr_info(ip)
    return canonical, GLOBAL_SCOPE if is_global else site


def _text(value: str, limit: int) -> str:
    """A string as FalkorDB stores it: NUL replaced with U+FFFD, bounded."""
    return value[:limit].replace("\0", "\ufffd")


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def trace_row(
    run: traceroute_pb2.TraceRun, site: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The Trace row and its ROUTE rows (not yet merged), or None for a run that is not sane."""
    if run.method not in METHODS or not run.id or len(run.hops) > MAX_HOPS:
        return None
    try:
        src, src_scope = _host(run.src, site)
        dst, dst_scope = _host(run.dst, site)
        hops = [(_host(h.addr, site) if h.addr else None, h) for h in run.hops]
    except ValueError:
        return None
    started, finished = _finite(run.started), _finite(run.finished)
    at, routes = [], []
    prev, prev_scope, prev_ttl = src, src_scope, 0
    for ttl, (host, h) in enumerate(hops, start=1):
        if host is None:
            continue
        ip, scope = host
        rtt = h.rtt_ms if math.isfinite(h.rtt_ms) and h.rtt_ms >= 0 and not h.inferred else -1.0
        at.append({
            "ttl": ttl, "ip": ip, "scope": scope, "rtt": rtt, "inferred": h.inferred,
            "sent": h.sent, "answered": h.answered,
        })  # fmt: skip
        if ip != prev:
            routes.append({
                "a": prev, "ascope": prev_scope, "b": ip, "bscope": scope, "gap": ttl - prev_ttl - 1,
                "n": 1, "fs": finished, "ls": finished, "rn": int(rtt >= 0),
                "rmin": max(rtt, 0.0), "rsum": max(rtt, 0.0), "sent": h.sent,
                "answered": h.answered,
            })  # fmt: skip
        prev, prev_scope, prev_ttl = ip, scope, ttl
    row = {
        "id": _text(run.id, 200),
        "src": src,
        "dst": dst,
        "ds": dst_scope,
        "method": run.method,
        "flow": run.flow_id,
        "dport": run.dport,
        "mode": _text(run.mode, 16),
        "started": started,
        "finished": finished,
        "reached": run.reached,
        "hop_count": len(hops),
        "hops": [host[0] if host else "" for host, _ in hops],
        "rtts": [
            h.rtt_ms if host and math.isfinite(h.rtt_ms) and h.rtt_ms >= 0 else -1.0
            for host, h in hops
        ],
        "sent": sum(h.sent for _, h in hops),
        "answered": sum(h.answered for _, h in hops),
        "saved": run.probes_saved,
        "at": at,
    }
    return row, routes


def _merge_route(into: dict[str, Any], r: dict[str, Any]) -> None:
    into["n"] += r["n"]
    into["fs"], into["ls"] = min(into["fs"], r["fs"]), max(into["ls"], r["ls"])
    if r["rn"]:
        into["rmin"] = min(into["rmin"], r["rmin"]) if into["rn"] else r["rmin"]
    into["rn"] += r["rn"]
    into["rsum"] += r["rsum"]
    into["sent"] += r["sent"]
    into["answered"] += r["answered"]


@hookimpl
def ng_handle_extension(
    ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
) -> list[GraphWrite] | None:
    if not payload.Is(traceroute_pb2.TraceReport.DESCRIPTOR):
        return None
    report = traceroute_pb2.TraceReport()
    try:
        payload.Unpack(report)
    except DecodeError:
        ctx.count("reports_rejected")
        ctx.log.warning("sensor %s sent a trace report that does not decode", sensor.id)
        return []
    rows: dict[str, dict[str, Any]] = {}
    routes: dict[tuple[str, str, str, str, int], dict[str, Any]] = {}
    hosts: list[tuple[str, float]] = []
    for run in report.traces:
        got = trace_row(run, sensor.site)
        if got is None:
            ctx.count("traces_rejected")
            ctx.log.warning("sensor %s sent a trace that is not sane; skipped", sensor.id)
            continue
        row, route_rows = got
        if row["id"] in rows:
            continue
        rows[row["id"]] = row
        ts = row["finished"]
        hosts += [(row["src"], ts), (row["dst"], ts)] + [(a["ip"], ts) for a in row["at"]]
        for r in route_rows:
            key = (r["ascope"], r["a"], r["bscope"], r["b"], r["gap"])
            if key in routes:
                _merge_route(routes[key], r)
            else:
                routes[key] = r
    if not rows:
        return []
    ctx.count("traces", len(rows))
    writes = [GraphWrite(cypher=TRACE_CYPHER, rows=list(rows.values()), hosts=hosts)]
    if routes:
        writes.append(GraphWrite(cypher=ROUTE_CYPHER, rows=list(routes.values())))
    return writes
