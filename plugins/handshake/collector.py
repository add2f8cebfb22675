"""The ``handshake`` plugin, collector half: handshake rows -> ``CONNECTS`` edges.

The rows its sensor half sends become ``(client:Host)-[:CONNECTS]->(server:Host)`` edges, one per
(client, server, dport, proto, sensor), with ``proto`` ``"tcp"``, whose aggregates are mergeable
parts (sum, count, min, max), so the order of arrival never matters.

FalkorDB evaluates every expression of a SET against the values from before that SET (checked
with 4.16.3), so the derived means are computed from the old parts plus the row's, not from the
freshly updated parts. Each key appears once per batch (rows are merged first): the FalkorDB bug
report #988 concerns repeated keys in one ``UNWIND ... MERGE``.

Another plugin (quality) may create the edge first, without the handshake counters: every part is
read with ``coalesce``, so the first handshake row then starts them from zero.
"""

from __future__ import annotations

from typing import Any

from net_gazer.collector import (
    GLOBAL_SCOPE,
    CollectorContext,
    GraphWrite,
    SensorInfo,
    addr_info,
    hookimpl,
)
from net_gazer.v1 import wire_pb2

DIRECTIONS = {
    wire_pb2.DIRECTION_OUTGOING: "outgoing",
    wire_pb2.DIRECTION_INCOMING: "incoming",
    wire_pb2.DIRECTION_INTERNAL: "internal",
    wire_pb2.DIRECTION_TRANSIT: "transit",
}


def _min(prop: str, n: str, value: str) -> str:
    return (
        f"CASE WHEN {n} = 0 THEN e.{prop} WHEN e.{prop} IS NULL OR {value} < e.{prop} "
        f"THEN {value} ELSE e.{prop} END"
    )


def _max(prop: str, n: str, value: str) -> str:
    return (
        f"CASE WHEN {n} = 0 THEN e.{prop} WHEN e.{prop} IS NULL OR {value} > e.{prop} "
        f"THEN {value} ELSE e.{prop} END"
    )


COUNTERS = (
    "count",
    "attempts",
    "refused",
    "unanswered",
    "abandoned",
    "evicted",
    "syn_retransmits",
)

CONNECTS_CYPHER = f"""
FOREACH (r IN $rows |
  MERGE (c:Host {{scope: r.cs, ip: r.c}})
  MERGE (v:Host {{scope: r.ss, ip: r.s}})
  MERGE (c)-[e:CONNECTS {{sensor: $sid, dport: r.dport, proto: r.proto}}]->(v)
  ON CREATE SET e.first_seen = r.fs, e.last_seen = r.ls,
    {", ".join(f"e.{c} = 0" for c in COUNTERS)},
    e.rtt_ms_sum = 0.0, e.rtt_samples = 0, e.client_rtt_ms_sum = 0.0, e.client_rtt_samples = 0
  SET e.direction = r.dir,
    e.first_seen = CASE WHEN e.first_seen IS NULL OR r.fs < e.first_seen THEN r.fs
      ELSE e.first_seen END,
    e.last_seen = CASE WHEN e.last_seen IS NULL OR r.ls > e.last_seen THEN r.ls
      ELSE e.last_seen END,
    {", ".join(f"e.{c} = coalesce(e.{c}, 0) + r.{c}" for c in COUNTERS)},
    e.rtt_ms_min = {_min("rtt_ms_min", "r.rn", "r.rmin")},
    e.rtt_ms_max = {_max("rtt_ms_max", "r.rn", "r.rmax")},
    e.rtt_ms_sum = coalesce(e.rtt_ms_sum, 0.0) + r.rsum,
    e.rtt_samples = coalesce(e.rtt_samples, 0) + r.rn,
    e.client_rtt_ms_min = {_min("client_rtt_ms_min", "r.cn", "r.cmin")},
    e.client_rtt_ms_max = {_max("client_rtt_ms_max", "r.cn", "r.cmax")},
    e.client_rtt_ms_sum = coalesce(e.client_rtt_ms_sum, 0.0) + r.csum,
    e.client_rtt_samples = coalesce(e.client_rtt_samples, 0) + r.cn,
    e.rtt_ms = CASE WHEN coalesce(e.rtt_samples, 0) + r.rn > 0
      THEN (coalesce(e.rtt_ms_sum, 0.0) + r.rsum) / (coalesce(e.rtt_samples, 0) + r.rn)
      ELSE null END,
    e.client_rtt_ms = CASE WHEN coalesce(e.client_rtt_samples, 0) + r.cn > 0
      THEN (coalesce(e.client_rtt_ms_sum, 0.0) + r.csum) / (coalesce(e.client_rtt_samples, 0) + r.cn)
      ELSE null END
)
"""


def _merge_into(into: dict[str, Any], row: dict[str, Any]) -> None:
    """Fold a second row for the same key into the first (one key once per batch)."""
    into["fs"] = min(into["fs"], row["fs"])
    into["ls"] = max(into["ls"], row["ls"])
    for c in COUNTERS:
        into[c] += row[c]
    for p in ("r", "c"):
        n = f"{p}n"
        if row[n]:
            if into[n]:
                into[f"{p}min"] = min(into[f"{p}min"], row[f"{p}min"])
                into[f"{p}max"] = max(into[f"{p}max"], row[f"{p}max"])
            else:
                into[f"{p}min"], into[f"{p}max"] = row[f"{p}min"], row[f"{p}max"]
            into[f"{p}sum"] += row[f"{p}sum"]
            into[n] += row[n]


@hookimpl
def ng_graph_writes(
    ctx: CollectorContext, sensor: SensorInfo, batch: wire_pb2.Batch
) -> list[GraphWrite] | None:
    if not batch.handshakes:
        return None
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    hosts: list[tuple[str, float]] = []
    site = sensor.site
    for h in batch.handshakes:
        try:
            client, _, client_global = addr_info(h.client)
            server, _, server_global = addr_info(h.server)
        except ValueError:
            ctx.count("rows_rejected")  # a malformed row is counted and skipped, never fatal
            ctx.log.warning(
                "sensor %s sent a handshake row without valid addresses; skipped", sensor.id
            )
            continue
        if not 0 < h.dport <= 65535 or h.proto not in (0, 6):
            ctx.count("rows_rejected")  # handshakes are TCP; UDP flows come from the udp plugin
            continue
        row: dict[str, Any] = {
            "c": client,
            "s": server,
            "cs": GLOBAL_SCOPE if client_global else site,
            "ss": GLOBAL_SCOPE if server_global else site,
            "dport": h.dport,
            "proto": "tcp",
            "dir": DIRECTIONS.get(h.direction, "unknown"),
            "fs": h.first_seen,
            "ls": h.last_seen,
            "count": h.completed,
            "attempts": h.attempts,
            "refused": h.refused,
            "unanswered": h.unanswered,
            "abandoned": h.abandoned,
            "evicted": h.evicted,
            "syn_retransmits": h.syn_retransmits,
            "rsum": h.rtt.sum_ms,
            "rmin": h.rtt.min_ms,
            "rmax": h.rtt.max_ms,
            "rn": h.rtt.samples,
            "csum": h.client_rtt.sum_ms,
            "cmin": h.client_rtt.min_ms,
            "cmax": h.client_rtt.max_ms,
            "cn": h.client_rtt.samples,
        }
        key = (client, server, h.dport)
        if key in rows:
            _merge_into(rows[key], row)
        else:
            rows[key] = row
        hosts.append((client, h.last_seen))
        hosts.append((server, h.last_seen))
    return [GraphWrite(cypher=CONNECTS_CYPHER, rows=list(rows.values()), hosts=hosts)]
