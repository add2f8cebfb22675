"""The ``udp`` plugin, collector half: ``UdpReport`` rows -> ``CONNECTS {proto: "udp"}`` edges.

One edge per (client, server, dport, "udp", sensor); ``proto`` is part of the key, so a DNS flow
on 53 or a QUIC flow on 443 never merges into a TCP edge between the same hosts. Every part is a
mergeable count (``flows``, ``answered_flows``, ``packets_c2s/s2c``, ``bytes_c2s/s2c``), and
``answered`` is true once the server sent anything; the TCP counters are not set on UDP edges.
Each key appears once per fragment (rows for one key are folded first).
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
from net_gazer.v1 import udp_pb2, wire_pb2

DIRECTIONS = {
    wire_pb2.DIRECTION_OUTGOING: "outgoing",
    wire_pb2.DIRECTION_INCOMING: "incoming",
    wire_pb2.DIRECTION_INTERNAL: "internal",
    wire_pb2.DIRECTION_TRANSIT: "transit",
}
COUNTS = ("flows", "answered_flows", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c")
MAX_COUNT = 2**53

UDP_CYPHER = f"""
FOREACH (r IN $rows |
  MERGE (c:Host {{scope: r.cs, ip: r.c}})
  MERGE (v:Host {{scope: r.ss, ip: r.s}})
  MERGE (c)-[e:CONNECTS {{sensor: $sid, dport: r.dport, proto: 'udp'}}]->(v)
  ON CREATE SET e.first_seen = r.fs, e.last_seen = r.ls, e.answered = false,
    {", ".join(f"e.{c} = 0" for c in COUNTS)}
  SET e.direction = r.dir,
    e.first_seen = CASE WHEN r.fs < e.first_seen THEN r.fs ELSE e.first_seen END,
    e.last_seen = CASE WHEN r.ls > e.last_seen THEN r.ls ELSE e.last_seen END,
    {", ".join(f"e.{c} = CASE WHEN e.{c} + r.{c} > {MAX_COUNT} THEN {MAX_COUNT} ELSE e.{c} + r.{c} END" for c in COUNTS)},
    e.answered = e.answered OR r.packets_s2c > 0
)
"""


def _row(ctx: CollectorContext, sensor: SensorInfo, u: udp_pb2.UdpRow) -> dict[str, Any] | None:
    try:
        client, _, client_global = addr_info(u.client)
        server, _, server_global = addr_info(u.server)
    except ValueError:
        ctx.count("rows_rejected")
        ctx.log.warning("sensor %s sent a UDP row without valid addresses; skipped", sensor.id)
        return None
    times = (u.first_seen, u.last_seen)
    if not 0 < u.dport <= 0xFFFF or not all(math.isfinite(t) for t in times):
        ctx.count("rows_rejected")
        return None
    row: dict[str, Any] = {
        "c": client,
        "s": server,
        "cs": GLOBAL_SCOPE if client_global else sensor.site,
        "ss": GLOBAL_SCOPE if server_global else sensor.site,
        "dport": u.dport,
        "dir": DIRECTIONS.get(u.direction, "unknown"),
        "fs": u.first_seen,
        "ls": u.last_seen,
    }
    for c in COUNTS:
        row[c] = min(int(getattr(u, c)), MAX_COUNT)
    return row


@hookimpl
def ng_handle_extension(
    ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
) -> list[GraphWrite] | None:
    if not payload.Is(udp_pb2.UdpReport.DESCRIPTOR):
        return None
    report = udp_pb2.UdpReport()
    try:
        payload.Unpack(report)
    except DecodeError:
        ctx.count("reports_rejected")
        ctx.log.warning("sensor %s sent a UDP report that does not decode", sensor.id)
        return []
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    hosts: list[tuple[str, float]] = []
    for u in report.rows:
        row = _row(ctx, sensor, u)
        if row is None:
            continue
        key = (row["c"], row["s"], row["dport"])
        into = rows.get(key)
        if into is None:
            rows[key] = row
        else:
            into["fs"], into["ls"] = min(into["fs"], row["fs"]), max(into["ls"], row["ls"])
            for c in COUNTS:
                into[c] = min(into[c] + row[c], MAX_COUNT)
        hosts.append((row["c"], row["ls"]))
        hosts.append((row["s"], row["ls"]))
    ctx.count("rows", len(rows))
    if not rows:
        return []
    return [GraphWrite(cypher=UDP_CYPHER, rows=list(rows.values()), hosts=hosts)]
