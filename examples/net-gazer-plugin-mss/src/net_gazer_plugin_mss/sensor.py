"""The ``mss`` plugin, sensor half: the MSS each host advertises in its SYN and SYN+ACK segments.

Per flush interval the plugin folds every SYN-flagged segment into one row per advertising host
(samples, min, max, sum, and how many were below ``small_below``), and at each tick it sends the
rows as one :class:`~net_gazer_plugin_mss.mss_pb2.MssReport`. One message per interval, each host
once in it: the collector half can then write each key once per batch.

Configuration, in the sensor's file::

    [plugins.mss]
    small_below = 1400   # default: 1460 for IPv4, 1440 for IPv6 (what Ethernet allows)
"""

from __future__ import annotations

from dataclasses import dataclass

from net_gazer.sensor import TH_SYN, PluginContext, TcpSegment, hookimpl, ntop

from net_gazer_plugin_mss import mss_pb2
from net_gazer_plugin_mss.options import mss_option

#: The MSS a host on plain Ethernet (MTU 1500) advertises, by IP version: less is a hint.
ETHERNET_MSS = {4: 1460, 6: 1440}


@dataclass(slots=True)
class _Seen:
    family: int
    first: float
    last: float
    samples: int = 0
    min: int = 0
    max: int = 0
    sum: int = 0
    small: int = 0


@hookimpl
def ng_bpf_filter(ctx: PluginContext) -> str | None:
    # SYN and SYN+ACK only. libpcap's tcp[] indexes TCP headers over IPv4 only, so for IPv6 the
    # kernel passes all of TCP and ng_packet checks the flag itself.
    return "(ip and tcp[tcpflags] & tcp-syn != 0) or (ip6 and tcp)"


def small_below(ctx: PluginContext, family: int) -> int:
    """The threshold from ``[plugins.mss] small_below``, checked once per configuration (a
    SIGHUP brings a new ``ctx.config``)."""
    if ctx.state.get("config") is not ctx.config:
        ctx.state["config"] = ctx.config
        value = ctx.config.get("small_below")
        if value is not None and (type(value) is not int or not 0 < value < 65536):
            ctx.log.error(
                "[plugins.mss] small_below must be a whole number from 1 to 65535, not %r; "
                "using the Ethernet defaults",
                value,
            )
            value = None
        ctx.state["small_below"] = value
    configured: int | None = ctx.state["small_below"]
    return configured if configured is not None else ETHERNET_MSS[family]


@hookimpl
def ng_packet(ctx: PluginContext, segment: TcpSegment) -> None:
    if not segment.flags & TH_SYN:
        return  # the hot path: most segments leave here
    try:
        mss = mss_option(segment.options)
    except ValueError:
        ctx.count("options_malformed")  # counted and skipped, never raised
        return
    if mss is None:
        ctx.count("syn_without_mss")
        return
    hosts: dict[bytes, _Seen] = ctx.state.setdefault("hosts", {})
    seen = hosts.get(segment.src)
    if seen is None:
        seen = hosts[segment.src] = _Seen(segment.family, segment.ts, segment.ts, min=mss, max=mss)
    seen.last = max(seen.last, segment.ts)
    seen.samples += 1
    seen.min, seen.max, seen.sum = min(seen.min, mss), max(seen.max, mss), seen.sum + mss
    if mss < small_below(ctx, segment.family):
        seen.small += 1


@hookimpl
def ng_tick(ctx: PluginContext, now: float, final: bool) -> None:
    hosts: dict[bytes, _Seen] = ctx.state.get("hosts", {})
    if not hosts:
        return
    report = mss_pb2.MssReport()
    for packed, s in hosts.items():
        report.hosts.add(
            ip=ntop(s.family, packed), samples=s.samples, min=s.min, max=s.max, sum=s.sum,
            small=s.small, first_seen=s.first, last_seen=s.last,
        )  # fmt: skip
    ctx.emit(report)  # travels as an Extension tagged "mss"
    ctx.count("hosts_sent", len(hosts))
    hosts.clear()
