"""The ``quality`` plugin, sensor half: TCP path quality of a sample of whole flows.

Every segment of a followed flow goes through the sequence analysis (:mod:`.analysis`), the
SACK/D-SACK reading (:mod:`.options`) and the timestamp RTT matcher (:mod:`.tsrtt`), kept per
flow in :mod:`.flows`. Each tick the counters of the flows that changed are added up per (client,
server, port) and sent as one ``QualityReport``; the collector half
(:mod:`net_gazer.plugins.quality.collector`) merges them into the ``CONNECTS`` edges.

Which flows: one in ``sample_rate``, by a hash of the addresses and ports that the kernel filter
computes too (:mod:`.sampling`), so segments of other flows never reach Python unless another
plugin asks for them. The rate is read once at start (the kernel filter is compiled then);
changing it needs a restart. Settings, ``[plugins.quality]``: ``sample_rate``, ``max_flows``,
``linger``, ``idle_timeout``.
"""

from __future__ import annotations

from net_gazer.sensor import PluginContext, TcpSegment, bounded_settings, hookimpl
from net_gazer.v1 import quality_pb2, wire_pb2

from .flows import Counters, FlowTable, TableConfig
from .sampling import MAX_RATE, bpf_fragment

#: Rows per QualityReport message: a message stays well below the collector's size limit.
ROWS_PER_MESSAGE = 2_000

_LIMITS: dict[str, tuple[type, float, float]] = {
    "sample_rate": (int, 1, MAX_RATE),
    "max_flows": (int, 16, 10_000_000),
    "linger": (float, 0.0, 3600.0),
    "idle_timeout": (float, 1.0, 86_400.0),
}


def table_config(ctx: PluginContext) -> TableConfig:
    """The table settings from ``[plugins.quality]``; a bad value is logged in one sentence and
    its default used (a plugin cannot stop the sensor)."""
    values = bounded_settings(ctx, "plugins.quality", _LIMITS)
    return TableConfig(**values)


def _table(ctx: PluginContext) -> FlowTable:
    table: FlowTable | None = ctx.state.get("table")
    if table is None:
        table = ctx.state["table"] = FlowTable(table_config(ctx))
    return table


@hookimpl
def ng_bpf_filter(ctx: PluginContext) -> str | None:
    return bpf_fragment(_table(ctx).cfg.sample_rate)


@hookimpl
def ng_packet(ctx: PluginContext, segment: TcpSegment) -> None:
    table = _table(ctx)
    table.feed(segment)
    if table.full:
        _send(ctx, table)


@hookimpl
def ng_tick(ctx: PluginContext, now: float, final: bool) -> None:
    table = _table(ctx)
    if final:
        table.close()
    else:
        table.expire(now)
    _send(ctx, table)


def _counters(c: Counters) -> quality_pb2.QualityCounters:
    return quality_pb2.QualityCounters(
        retransmits=c.retransmits,
        fast_retransmits=c.fast_retransmits,
        spurious_retransmits=c.spurious_retransmits,
        out_of_order=c.out_of_order,
        sack_packets=c.sack_packets,
        dsack=c.dsack,
        zero_windows=c.zero_windows,
        segments=c.segments,
        data_segments=c.data_segments,
        payload_bytes=c.payload_bytes,
        ts_rtt=wire_pb2.RttAggregate(
            sum_ms=c.rtt_sum, min_ms=c.rtt_min, max_ms=c.rtt_max, samples=c.rtt_n
        ),
    )


def _send(ctx: PluginContext, table: FlowTable) -> None:
    rows = table.report()
    s = table.stats
    ctx.counters.update(
        flows=len(table),
        embryos=len(table.embryos),
        flows_started=s.flows,
        flows_unverified=s.unverified,
        flows_closed=s.closed,
        flows_idle=s.idle,
        flows_evicted=s.evicted_full,
        ports_reused=s.reused,
        embryos_evicted=s.embryos_evicted_full,
        embryos_expired=s.embryos_expired,
        copies_ignored=s.copies_ignored,
        not_followed=s.not_followed,
        ts_overflows=s.ts_overflows,
        ts_negative=s.ts_negative,
    )
    if not rows:
        return
    rate = table.cfg.sample_rate
    report = quality_pb2.QualityReport(sample_rate=rate)
    for (client, server, port), row in rows.items():
        report.rows.append(
            quality_pb2.QualityRow(
                client=client,
                server=server,
                dport=port,
                direction=ctx.direction(client, server),  # type: ignore[arg-type]
                first_seen=row.first,
                last_seen=row.last,
                flows=row.flows,
                c2s=_counters(row.c2s),
                s2c=_counters(row.s2c),
            )
        )
        if len(report.rows) >= ROWS_PER_MESSAGE:
            ctx.emit(report)
            report = quality_pb2.QualityReport(sample_rate=rate)
    if report.rows:
        ctx.emit(report)
    ctx.count("rows_sent", len(rows))
