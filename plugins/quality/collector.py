"""The ``quality`` plugin, collector half: ``QualityReport`` rows -> ``CONNECTS`` edges and a
quality summary on both ``Host`` nodes.

Each row adds to the edge of (client, server, dport, sensor), the key the handshake plugin merges
on, so handshake counts and path quality meet on one edge whichever arrives first. The edges are
named in the write (``GraphWrite.edges``), so the store creates a new one before the batch query
and the two plugins' fragments in one batch merge the same edge. Per direction
the edge holds ``<metric>_c2s`` (sent by the client) and ``<metric>_s2c`` (sent by the server),
and ``<metric>`` is their sum; the timestamp RTT is kept as ``ts_rtt_ms_min``/``_max``/``_sum``
and ``ts_rtt_samples`` (per direction and in total) with the mean ``ts_rtt_ms`` derived. Every part
is a sum, a min or a max, so rows add up in any order of arrival. ``loss_rate`` is
``retransmits / data_segments``; ``sample_rate`` is the latest sensor's "one flow in N", and
``quality_flows`` counts the flows followed.

Each Host gets the summary the viewer colours by: ``quality_retransmits``,
``quality_data_segments`` and ``loss_rate`` over every followed flow it took part in, and the
timestamp RTT of its own half of the path: the samples timed on the client's segments (the
sensor-to-server round trip) for the server, those timed on the server's segments for the
client.

FalkorDB evaluates every expression of one SET against the values from before it, so derived
values are computed from the old parts plus the row's; the host summaries are separate SET
clauses, so that a flow between two addresses of one host adds both halves.
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
from net_gazer.v1 import quality_pb2, wire_pb2

COUNTS = (
    "retransmits",
    "fast_retransmits",
    "spurious_retransmits",
    "out_of_order",
    "sack_packets",
    "dsack",
    "zero_windows",
    "segments",
    "data_segments",
    "payload_bytes",
)
DIRS = ("c2s", "s2c")
#: Counts are capped here, like loss counts elsewhere: exact in any JSON reader, and FalkorDB's
#: 64-bit integers never overflow when they are added up.
MAX_COUNT = 2**53

DIRECTIONS = {
    wire_pb2.DIRECTION_OUTGOING: "outgoing",
    wire_pb2.DIRECTION_INCOMING: "incoming",
    wire_pb2.DIRECTION_INTERNAL: "internal",
    wire_pb2.DIRECTION_TRANSIT: "transit",
}


def _add(prop: str, *terms: str, node: str = "e") -> str:
    return f"{node}.{prop} = coalesce({node}.{prop}, 0) + " + " + ".join(terms)


def _rtt(prefix: str, suffix: str, r: str, node: str = "e") -> list[str]:
    """SET items merging the row's RTT part ``r`` (keys rmin/rmax/rsum/rn + r) into
    ``<prefix>_ms_min<suffix>`` ... of ``node``."""
    mn, mx = f"{node}.{prefix}_ms_min{suffix}", f"{node}.{prefix}_ms_max{suffix}"
    sm, ns = f"{node}.{prefix}_ms_sum{suffix}", f"{node}.{prefix}_samples{suffix}"
    n, lo, hi, total = f"r.rn{r}", f"r.rmin{r}", f"r.rmax{r}", f"r.rsum{r}"
    return [
        f"{mn} = CASE WHEN {n} = 0 THEN {mn} WHEN {mn} IS NULL OR {lo} < {mn} THEN {lo} "
        f"ELSE {mn} END",
        f"{mx} = CASE WHEN {n} = 0 THEN {mx} WHEN {mx} IS NULL OR {hi} > {mx} THEN {hi} "
        f"ELSE {mx} END",
        f"{sm} = coalesce({sm}, 0.0) + {total}",
        f"{ns} = coalesce({ns}, 0) + {n}",
    ]


def _mean(target: str, total: str, n: str, r_total: str, r_n: str) -> str:
    return (
        f"{target} = CASE WHEN coalesce({n}, 0) + {r_n} > 0 THEN "
        f"(coalesce({total}, 0.0) + {r_total}) / (coalesce({n}, 0) + {r_n}) ELSE {target} END"
    )


def _loss(node: str, retx: str, data: str, r_retx: str, r_data: str) -> str:
    return (
        f"{node}.loss_rate = CASE WHEN coalesce({node}.{data}, 0) + {r_data} > 0 THEN "
        f"toFloat(coalesce({node}.{retx}, 0) + {r_retx}) / "
        f"(coalesce({node}.{data}, 0) + {r_data}) ELSE {node}.loss_rate END"
    )


def _edge_sets() -> list[str]:
    items = [
        "e.first_seen = CASE WHEN e.first_seen IS NULL OR r.fs < e.first_seen THEN r.fs "
        "ELSE e.first_seen END",
        "e.last_seen = CASE WHEN e.last_seen IS NULL OR r.ls > e.last_seen THEN r.ls "
        "ELSE e.last_seen END",
        "e.proto = coalesce(e.proto, 'tcp')",
        "e.direction = coalesce(e.direction, r.dir)",
        "e.sample_rate = r.rate",
        _add("quality_flows", "r.flows"),
    ]
    for m in COUNTS:
        items += [_add(f"{m}_{d}", f"r.{m}_{d}") for d in DIRS]
        items.append(_add(m, f"r.{m}_c2s", f"r.{m}_s2c"))
    for d in DIRS:
        items += _rtt("ts_rtt", f"_{d}", f"_{d}")
    items += _rtt("ts_rtt", "", "")
    items.append(_mean("e.ts_rtt_ms", "e.ts_rtt_ms_sum", "e.ts_rtt_samples", "r.rsum", "r.rn"))
    items.append(
        _loss(
            "e",
            "retransmits",
            "data_segments",
            "r.retransmits_c2s + r.retransmits_s2c",
            "r.data_segments_c2s + r.data_segments_s2c",
        )
    )
    return items


def _host_sets(node: str, half: str) -> list[str]:
    """The host summary of ``node``; ``half`` is the direction whose RTT samples are its own."""
    retx, data = (
        "r.retransmits_c2s + r.retransmits_s2c",
        "r.data_segments_c2s + r.data_segments_s2c",
    )
    return [
        _add("quality_retransmits", retx, node=node),
        _add("quality_data_segments", data, node=node),
        _loss(node, "quality_retransmits", "quality_data_segments", retx, data),
        *_rtt("ts_rtt", "", f"_{half}", node=node),
        _mean(
            f"{node}.ts_rtt_ms",
            f"{node}.ts_rtt_ms_sum",
            f"{node}.ts_rtt_samples",
            f"r.rsum_{half}",
            f"r.rn_{half}",
        ),
    ]


def _sets(items: list[str]) -> str:
    return "SET " + ",\n    ".join(items)


QUALITY_CYPHER = f"""
FOREACH (r IN $rows |
  MERGE (c:Host {{scope: r.cs, ip: r.c}})
  MERGE (v:Host {{scope: r.ss, ip: r.s}})
  MERGE (c)-[e:CONNECTS {{sensor: $sid, dport: r.dport, proto: 'tcp'}}]->(v)
  ON CREATE SET e.direction = r.dir, e.first_seen = r.fs, e.last_seen = r.ls
  {_sets(_edge_sets())}
  {_sets(_host_sets("c", "s2c"))}
  {_sets(_host_sets("v", "c2s"))}
)
"""


def _count(value: int) -> int:
    return min(int(value), MAX_COUNT)


def _rtt_part(row: dict[str, Any], suffix: str, agg: wire_pb2.RttAggregate) -> bool:
    """The RTT aggregate into ``row``; False (and no samples) when it is not a sane one."""
    values = (agg.sum_ms, agg.min_ms, agg.max_ms)
    sane = agg.samples > 0 and all(math.isfinite(v) and v >= 0 for v in values)
    sane = sane and agg.min_ms <= agg.max_ms
    row[f"rn{suffix}"] = agg.samples if sane else 0
    row[f"rsum{suffix}"] = agg.sum_ms if sane else 0.0
    row[f"rmin{suffix}"] = agg.min_ms if sane else 0.0
    row[f"rmax{suffix}"] = agg.max_ms if sane else 0.0
    return sane or agg.samples == 0


def _merge_rtt(into: dict[str, Any], row: dict[str, Any], suffix: str) -> None:
    n = f"rn{suffix}"
    if not row[n]:
        return
    if into[n]:
        into[f"rmin{suffix}"] = min(into[f"rmin{suffix}"], row[f"rmin{suffix}"])
        into[f"rmax{suffix}"] = max(into[f"rmax{suffix}"], row[f"rmax{suffix}"])
    else:
        into[f"rmin{suffix}"], into[f"rmax{suffix}"] = row[f"rmin{suffix}"], row[f"rmax{suffix}"]
    into[f"rsum{suffix}"] += row[f"rsum{suffix}"]
    into[n] += row[n]


def _row(
    ctx: CollectorContext, sensor: SensorInfo, q: quality_pb2.QualityRow, rate: int
) -> dict[str, Any] | None:
    try:
        client, _, client_global = addr_info(q.client)
        server, _, server_global = addr_info(q.server)
    except ValueError:
        ctx.count("rows_rejected")
        ctx.log.warning("sensor %s sent a quality row without valid addresses; skipped", sensor.id)
        return None
    if not 0 < q.dport <= 0xFFFF:
        ctx.count("rows_rejected")
        return None
    row: dict[str, Any] = {
        "c": client,
        "s": server,
        "cs": GLOBAL_SCOPE if client_global else sensor.site,
        "ss": GLOBAL_SCOPE if server_global else sensor.site,
        "dport": q.dport,
        "dir": DIRECTIONS.get(q.direction, "unknown"),
        "fs": q.first_seen,
        "ls": q.last_seen,
        "flows": _count(q.flows),
        "rate": rate,
    }
    for d, counters in (("c2s", q.c2s), ("s2c", q.s2c)):
        for m in COUNTS:
            row[f"{m}_{d}"] = _count(getattr(counters, m))
        if not _rtt_part(row, f"_{d}", counters.ts_rtt):
            ctx.count("rtt_rejected")
    total: dict[str, Any] = {"rn": 0, "rsum": 0.0, "rmin": 0.0, "rmax": 0.0}
    for d in DIRS:
        part = {k: row[f"{k}_{d}"] for k in ("rn", "rsum", "rmin", "rmax")}
        _merge_rtt(total, part, "")
    row.update(total)
    return row


def _merge_into(into: dict[str, Any], row: dict[str, Any]) -> None:
    """Fold a second row for the same key into the first (one key once per fragment)."""
    into["fs"] = min(into["fs"], row["fs"])
    into["ls"] = max(into["ls"], row["ls"])
    into["flows"] = _count(into["flows"] + row["flows"])
    for d in DIRS:
        for m in COUNTS:
            k = f"{m}_{d}"
            into[k] = _count(into[k] + row[k])
        _merge_rtt(into, row, f"_{d}")
    _merge_rtt(into, row, "")


@hookimpl
def ng_handle_extension(
    ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
) -> list[GraphWrite] | None:
    if not payload.Is(quality_pb2.QualityReport.DESCRIPTOR):
        return None
    report = quality_pb2.QualityReport()
    try:
        payload.Unpack(report)
    except DecodeError:
        ctx.count("reports_rejected")
        ctx.log.warning("sensor %s sent a quality report that does not decode", sensor.id)
        return []
    rate = min(max(int(report.sample_rate), 1), 2**32)
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    hosts: list[tuple[str, float]] = []
    for q in report.rows:
        row = _row(ctx, sensor, q, rate)
        if row is None:
            continue
        key = (row["c"], row["s"], row["dport"])
        if key in rows:
            _merge_into(rows[key], row)
        else:
            rows[key] = row
        hosts.append((row["c"], q.last_seen))
        hosts.append((row["s"], q.last_seen))
    if not rows:
        return []
    edges = [(r["c"], r["s"], r["dport"], r["fs"]) for r in rows.values()]
    return [GraphWrite(cypher=QUALITY_CYPHER, rows=list(rows.values()), hosts=hosts, edges=edges)]
