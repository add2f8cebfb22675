"""The ``udp`` plugin, sensor half: UDP flows per (client, server, port).

Every datagram of a followed flow goes into the flow table (:mod:`.flows`), which decides client
and server by the port rules (:mod:`.rules`) and adds packets and bytes per direction to the row
of the flow's (client, server, port). Each tick sends the rows as one ``UdpReport`` (in messages
of ``ROWS_PER_MESSAGE`` rows); the collector half writes them as ``CONNECTS {proto: "udp"}``.

Flood bounds, as the handshake plugin's: the table holds ``max_flows`` flows (the oldest go
first, their counts already in their rows), the rows of one interval are sent early past
``MAX_ROWS``, and rows that no server answered are itemized only up to ``max_unanswered_rows``
per flush interval; past it they are folded per (server, port) into one row from the
unspecified address (``0.0.0.0`` or ``::``), so forged sources cost a row per target.

Settings, ``[plugins.udp]``: ``min_client_port`` (2048), ``max_server_port`` (49151),
``sample_rate`` (1), ``max_flows``, ``idle_timeout``, ``max_unanswered_rows`` (2000) and
``trace`` (false). The sample rate is read once at start (the kernel filter is compiled then).
"""

from __future__ import annotations

from typing import Any

from net_gazer.sensor import PluginContext, UdpDatagram, bounded_settings, hookimpl
from net_gazer.v1 import udp_pb2

from .flows import FlowTable, Row, RowKey, TableConfig
from .rules import PortRules
from .sampling import MAX_RATE, bpf_fragment

#: Rows per UdpReport message: a message stays well below the collector's size limit.
ROWS_PER_MESSAGE = 2_000
#: Rows without any answer sent one by one per flush interval; the rest are folded.
MAX_UNANSWERED_ROWS = 2_000
UNSPECIFIED = {4: "0.0.0.0", 6: "::"}

_LIMITS: dict[str, tuple[type, float, float]] = {
    "min_client_port": (int, 0, 65535),
    "max_server_port": (int, 1, 65535),
    "sample_rate": (int, 1, MAX_RATE),
    "max_flows": (int, 16, 10_000_000),
    "idle_timeout": (float, 1.0, 86_400.0),
    "max_unanswered_rows": (int, 0, 1_000_000),
}


def settings(ctx: PluginContext) -> dict[str, Any]:
    """The checked ``[plugins.udp]`` settings; a bad value is logged in one sentence and its
    default used (a plugin cannot stop the sensor)."""
    values = bounded_settings(ctx, "plugins.udp", _LIMITS)
    trace = ctx.config.get("trace", False)
    if not isinstance(trace, bool):
        ctx.log.error("[plugins.udp] trace must be true or false, not %r; using false", trace)
        trace = False
    values["trace"] = trace
    return values


def table_config(ctx: PluginContext) -> TableConfig:
    s = settings(ctx)
    rules = PortRules(**{k: s[k] for k in ("min_client_port", "max_server_port") if k in s})
    table = {k: s[k] for k in ("sample_rate", "max_flows", "idle_timeout") if k in s}
    return TableConfig(rules=rules, **table)


def _table(ctx: PluginContext) -> FlowTable:
    table: FlowTable | None = ctx.state.get("table")
    if table is None:
        table = ctx.state["table"] = FlowTable(table_config(ctx))
    return table


@hookimpl
def ng_bpf_filter(ctx: PluginContext) -> str | None:
    return bpf_fragment(_table(ctx).cfg.sample_rate)


@hookimpl
def ng_datagram(ctx: PluginContext, datagram: UdpDatagram) -> None:
    d = datagram
    table = _table(ctx)
    table.feed(d.ts, d.iface, d.src, d.dst, d.sport, d.dport, d.length, d.payload)
    if table.full:
        _send(ctx, table)


@hookimpl
def ng_tick(ctx: PluginContext, now: float, final: bool) -> None:
    table = _table(ctx)
    table.expire(now)
    _send(ctx, table)
    ctx.state["unanswered_sent"] = 0  # a new interval, a new budget


def fold(rows: dict[RowKey, Row], budget: int) -> dict[RowKey, Row]:
    """Rows that nothing answered, past ``budget``, folded per (server, port) into a row from
    the unspecified address (the rows with the most datagrams are kept itemized)."""
    out = {k: r for k, r in rows.items() if r.answered}
    quiet = sorted(
        ((k, r) for k, r in rows.items() if not r.answered), key=lambda kv: -kv[1].packets_c2s
    )
    out.update(quiet[:budget])
    for (_, server, port), r in quiet[budget:]:
        key = (UNSPECIFIED[r.family], server, port)
        into = out.get(key)
        if into is None:
            out[key] = Row(r.family, r.first, r.last, r.flows, 0, r.packets_c2s, 0, r.bytes_c2s)
            continue
        into.first, into.last = min(into.first, r.first), max(into.last, r.last)
        into.flows += r.flows
        into.packets_c2s += r.packets_c2s
        into.bytes_c2s += r.bytes_c2s
    return out


def _send(ctx: PluginContext, table: FlowTable) -> None:
    s = table.stats
    ctx.counters.update(
        flows=len(table),
        flows_started=s.flows,
        datagrams=s.datagrams,
        left_out=s.left_out,
        not_followed=s.not_followed,
        copies_ignored=s.copies_ignored,
        flows_evicted=s.evicted_full,
        flows_idle=s.idle,
    )
    rows = table.report()
    if not rows:
        return
    budget = int(ctx.config.get("max_unanswered_rows", MAX_UNANSWERED_ROWS))
    used = int(ctx.state.get("unanswered_sent", 0))
    left = max(0, budget - used)
    quiet = sum(1 for r in rows.values() if not r.answered)
    if quiet > left:
        folded = fold(rows, left)
        ctx.count("unanswered_rows_folded", len(rows) - len(folded))
        rows, quiet = folded, left
    ctx.state["unanswered_sent"] = used + quiet
    rate = table.cfg.sample_rate
    report = udp_pb2.UdpReport(sample_rate=rate)
    for (client, server, port), r in rows.items():
        report.rows.append(
            udp_pb2.UdpRow(
                client=client,
                server=server,
                dport=port,
                direction=ctx.direction(client, server),  # type: ignore[arg-type]
                first_seen=r.first,
                last_seen=r.last,
                flows=r.flows,
                answered_flows=r.answered_flows,
                packets_c2s=r.packets_c2s,
                packets_s2c=r.packets_s2c,
                bytes_c2s=r.bytes_c2s,
                bytes_s2c=r.bytes_s2c,
            )
        )
        if len(report.rows) >= ROWS_PER_MESSAGE:
            ctx.emit(report)
            report = udp_pb2.UdpReport(sample_rate=rate)
    if report.rows:
        ctx.emit(report)
    ctx.count("rows_sent", len(rows))
