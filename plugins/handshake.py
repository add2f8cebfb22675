"""Built-in plugin ``handshake``: coalesced handshake counts and RTT halves -> CONNECTS edges.

Sensor side: every handshake event is folded into one row per (client, server, port); each tick
sends the rows as ``HandshakeRow`` messages, so a busy gateway costs the collector rows per pair
and interval, not per packet (DESIGN.md, "Scale").

Collector side: the rows become ``(client:Host)-[:CONNECTS]->(server:Host)`` edges, one per
(client, server, dport, sensor), whose aggregates are mergeable parts (sum, count, min, max), so
the order of arrival never matters.

FalkorDB evaluates every expression of a SET against the values from before that SET (checked
with 4.16.3), so the derived means are computed from the old parts plus the row's, not from the
freshly updated parts. Each key appears once per batch (rows are merged first): the FalkorDB bug
report #988 concerns repeated keys in one ``UNWIND ... MERGE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from net_gazer.collector import hookimpl as collector_hookimpl
from net_gazer.collector.context import CollectorContext
from net_gazer.collector.graphwrite import GraphWrite, SensorInfo
from net_gazer.netaddr import GLOBAL_SCOPE, addr_info
from net_gazer.sensor import hookimpl
from net_gazer.sensor.context import PluginContext
from net_gazer.sensor.handshake import HandshakeEvent, Kind
from net_gazer.v1 import wire_pb2

#: Rows held before the plugin sends early within an interval (bounds memory under a SYN flood).
MAX_ROWS = 20_000


@dataclass(slots=True)
class _Agg:
    first: float
    last: float
    completed: int = 0
    attempts: int = 0
    refused: int = 0
    unanswered: int = 0
    abandoned: int = 0
    syn_retransmits: int = 0
    rtt_sum: float = 0.0
    rtt_min: float = 0.0
    rtt_max: float = 0.0
    rtt_n: int = 0
    crtt_sum: float = 0.0
    crtt_min: float = 0.0
    crtt_max: float = 0.0
    crtt_n: int = 0


Rows = dict[tuple[str, str, int], _Agg]


def _table(ctx: PluginContext) -> Rows:
    rows: Rows | None = ctx.state.get("rows")
    if rows is None:
        rows = ctx.state["rows"] = {}
    return rows


@hookimpl
def ng_bpf_filter(ctx: PluginContext) -> str | None:
    # The final ACK of a handshake carries no SYN/RST flag, so every TCP segment is needed.
    return "tcp"


@hookimpl
def ng_handshake(ctx: PluginContext, event: HandshakeEvent) -> None:
    if event.kind is Kind.SYN or event.kind is Kind.SYNACK:
        # An attempt is counted with its verdict (the tracker gives every attempt exactly one:
        # completed, refused, unanswered or abandoned), so the attempt and its outcome always
        # travel in one row: a SYN counted in one flush and folded there cannot leave its
        # completion in the next flush with attempts 0. A SYN+ACK makes no row either.
        return
    rows = _table(ctx)
    key = (event.client, event.server, event.port)
    agg = rows.get(key)
    if agg is None:
        if len(rows) >= MAX_ROWS:
            _send(ctx)
        agg = rows[key] = _Agg(first=event.ts, last=event.ts)
    else:
        agg.first = min(agg.first, event.ts)
        agg.last = max(agg.last, event.ts)
    kind = event.kind
    agg.attempts += 1
    if kind is Kind.COMPLETED:
        agg.completed += 1
        agg.syn_retransmits += event.syn_retransmits
        if event.rtt is not None:
            ms = event.rtt * 1000.0
            agg.rtt_min = ms if agg.rtt_n == 0 else min(agg.rtt_min, ms)
            agg.rtt_max = ms if agg.rtt_n == 0 else max(agg.rtt_max, ms)
            agg.rtt_sum += ms
            agg.rtt_n += 1
        if event.client_rtt is not None:
            ms = event.client_rtt * 1000.0
            agg.crtt_min = ms if agg.crtt_n == 0 else min(agg.crtt_min, ms)
            agg.crtt_max = ms if agg.crtt_n == 0 else max(agg.crtt_max, ms)
            agg.crtt_sum += ms
            agg.crtt_n += 1
    elif kind is Kind.REFUSED:
        agg.refused += 1
    elif kind is Kind.UNANSWERED:
        agg.unanswered += 1
        agg.syn_retransmits += event.syn_retransmits
    elif kind is Kind.ABANDONED:
        agg.abandoned += 1


@hookimpl
def ng_tick(ctx: PluginContext, now: float, final: bool) -> None:
    _send(ctx)
    ctx.state["unverified_sent"] = 0  # a new interval, a new budget


#: Rows per flush whose client never completed a handshake ("unverified": attempts, refusals,
#: unanswered SYNs) that are sent one by one. Past it, the rest are folded per (server, port)
#: into one row from the unspecified address (0.0.0.0 or ::), so a spoofed SYN flood costs the
#: collector a row per target, not per forged source, and cannot crowd out real handshakes.
MAX_UNVERIFIED_ROWS = 2_000

UNSPECIFIED = {4: "0.0.0.0", 6: "::"}


def _fold(rows: Rows, budget: int) -> Rows:
    verified = {k: a for k, a in rows.items() if a.completed}
    unverified = sorted(
        ((k, a) for k, a in rows.items() if not a.completed), key=lambda kv: -kv[1].attempts
    )
    out: Rows = dict(verified)
    out.update(unverified[:budget])
    for (client, server, port), a in unverified[budget:]:
        key = (UNSPECIFIED[6 if ":" in client else 4], server, port)
        agg = out.get(key)
        if agg is None:
            out[key] = _Agg(
                first=a.first, last=a.last, attempts=a.attempts, refused=a.refused,
                unanswered=a.unanswered, abandoned=a.abandoned, syn_retransmits=a.syn_retransmits,
            )  # fmt: skip
            continue
        agg.first, agg.last = min(agg.first, a.first), max(agg.last, a.last)
        agg.attempts += a.attempts
        agg.refused += a.refused
        agg.unanswered += a.unanswered
        agg.abandoned += a.abandoned
        agg.syn_retransmits += a.syn_retransmits
    return out


def _send(ctx: PluginContext) -> None:
    rows = _table(ctx)
    budget = int(ctx.config.get("max_unverified_rows", MAX_UNVERIFIED_ROWS))
    # The budget is per flush interval: the early sends (MAX_ROWS) draw on the same budget as
    # the tick, or a flood would get budget rows itemized per MAX_ROWS rows it causes.
    used = int(ctx.state.get("unverified_sent", 0))
    left = max(0, budget - used)
    unverified = sum(1 for a in rows.values() if not a.completed)
    out = rows
    if unverified > left:
        out = _fold(rows, left)
        ctx.count("unverified_rows_folded", len(rows) - len(out))
        unverified = left
    ctx.state["unverified_sent"] = used + unverified
    for (client, server, port), a in out.items():
        ctx.emit(
            wire_pb2.HandshakeRow(
                client=client,
                server=server,
                dport=port,
                proto=6,
                direction=ctx.direction(client, server),  # type: ignore[arg-type]
                first_seen=a.first,
                last_seen=a.last,
                completed=a.completed,
                attempts=a.attempts,
                refused=a.refused,
                unanswered=a.unanswered,
                abandoned=a.abandoned,
                syn_retransmits=a.syn_retransmits,
                rtt=wire_pb2.RttAggregate(
                    sum_ms=a.rtt_sum, min_ms=a.rtt_min, max_ms=a.rtt_max, samples=a.rtt_n
                ),
                client_rtt=wire_pb2.RttAggregate(
                    sum_ms=a.crtt_sum, min_ms=a.crtt_min, max_ms=a.crtt_max, samples=a.crtt_n
                ),
            )
        )
    ctx.count("rows_sent", len(out))
    rows.clear()


# -- collector side ----------------------------------------------------------------------------
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


COUNTERS = ("count", "attempts", "refused", "unanswered", "abandoned", "syn_retransmits")

CONNECTS_CYPHER = f"""
FOREACH (r IN $rows |
  MERGE (c:Host {{scope: r.cs, ip: r.c}})
  MERGE (v:Host {{scope: r.ss, ip: r.s}})
  MERGE (c)-[e:CONNECTS {{sensor: $sid, dport: r.dport}}]->(v)
  ON CREATE SET e.proto = r.proto, e.first_seen = r.fs, e.last_seen = r.ls,
    {", ".join(f"e.{c} = 0" for c in COUNTERS)},
    e.rtt_ms_sum = 0.0, e.rtt_samples = 0, e.client_rtt_ms_sum = 0.0, e.client_rtt_samples = 0
  SET e.direction = r.dir,
    e.first_seen = CASE WHEN r.fs < e.first_seen THEN r.fs ELSE e.first_seen END,
    e.last_seen = CASE WHEN r.ls > e.last_seen THEN r.ls ELSE e.last_seen END,
    {", ".join(f"e.{c} = e.{c} + r.{c}" for c in COUNTERS)},
    e.rtt_ms_min = {_min("rtt_ms_min", "r.rn", "r.rmin")},
    e.rtt_ms_max = {_max("rtt_ms_max", "r.rn", "r.rmax")},
    e.rtt_ms_sum = e.rtt_ms_sum + r.rsum,
    e.rtt_samples = e.rtt_samples + r.rn,
    e.client_rtt_ms_min = {_min("client_rtt_ms_min", "r.cn", "r.cmin")},
    e.client_rtt_ms_max = {_max("client_rtt_ms_max", "r.cn", "r.cmax")},
    e.client_rtt_ms_sum = e.client_rtt_ms_sum + r.csum,
    e.client_rtt_samples = e.client_rtt_samples + r.cn,
    e.rtt_ms = CASE WHEN e.rtt_samples + r.rn > 0
      THEN (e.rtt_ms_sum + r.rsum) / (e.rtt_samples + r.rn) ELSE null END,
    e.client_rtt_ms = CASE WHEN e.client_rtt_samples + r.cn > 0
      THEN (e.client_rtt_ms_sum + r.csum) / (e.client_rtt_samples + r.cn) ELSE null END
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


@collector_hookimpl
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
        if not 0 < h.dport <= 65535:
            ctx.count("rows_rejected")
            continue
        row: dict[str, Any] = {
            "c": client,
            "s": server,
            "cs": GLOBAL_SCOPE if client_global else site,
            "ss": GLOBAL_SCOPE if server_global else site,
            "dport": h.dport,
            "proto": "tcp" if h.proto in (0, 6) else str(h.proto),
            "dir": DIRECTIONS.get(h.direction, "unknown"),
            "fs": h.first_seen,
            "ls": h.last_seen,
            "count": h.completed,
            "attempts": h.attempts,
            "refused": h.refused,
            "unanswered": h.unanswered,
            "abandoned": h.abandoned,
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
