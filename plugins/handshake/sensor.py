"""The ``handshake`` plugin, sensor half: coalesced handshake counts and RTT halves.

Every handshake verdict is folded into one row per (client, server, port); each tick sends the rows
as ``HandshakeRow`` messages, so a busy gateway costs the collector rows per pair and interval, not
per packet. The collector half (:mod:`net_gazer.plugins.handshake.collector`) writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from net_gazer.sensor import HandshakeEvent, Kind, PluginContext, hookimpl
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
    evicted: int = 0
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
        # completed, refused, unanswered, abandoned or evicted), so the attempt and its outcome always
        # travel in one row: a SYN counted in one flush and folded there cannot leave its
        # completion in the next flush with attempts 0. A SYN+ACK makes no row either.
        return
    rows = _table(ctx)
    key = (event.client, event.server, event.port)
    agg = rows.get(key)
    # first_seen is when the attempt began (its SYN), last_seen when its verdict fell.
    started = event.started or event.ts
    if agg is None:
        if len(rows) >= MAX_ROWS:
            _send(ctx)
        agg = rows[key] = _Agg(first=started, last=event.ts)
    else:
        agg.first = min(agg.first, started)
        agg.last = max(agg.last, event.ts)
    kind = event.kind
    agg.attempts += 1
    agg.syn_retransmits += event.syn_retransmits
    if kind is Kind.COMPLETED:
        agg.completed += 1
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
    elif kind is Kind.ABANDONED:
        agg.abandoned += 1
    elif kind is Kind.EVICTED:
        agg.evicted += 1


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
                unanswered=a.unanswered, abandoned=a.abandoned, evicted=a.evicted,
                syn_retransmits=a.syn_retransmits,
            )  # fmt: skip
            continue
        agg.first, agg.last = min(agg.first, a.first), max(agg.last, a.last)
        agg.attempts += a.attempts
        agg.refused += a.refused
        agg.unanswered += a.unanswered
        agg.abandoned += a.abandoned
        agg.evicted += a.evicted
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
                evicted=a.evicted,
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
