"""Hook specifications of the sensor host. Every hook is called with keyword arguments only.

``ctx`` is the calling plugin's own :class:`~net_gazer.sensor.context.PluginContext`: its name, its
configuration section, and ``ctx.emit(message)`` to send protobuf messages to the collector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from net_gazer.sensor import hookspec

if TYPE_CHECKING:
    from net_gazer.sensor.context import PluginContext
    from net_gazer.sensor.handshake import HandshakeEvent
    from net_gazer.sensor.packet import TcpSegment, UdpDatagram


# -- lifecycle ---------------------------------------------------------------------------------
@hookspec
def ng_sensor_start(ctx: PluginContext) -> None:
    """Called once after the plugins are loaded and before capture starts.

    Open sockets here (the sensor still has its capabilities). Raising disables nothing: the error
    is logged and counted like any other.
    """


@hookspec
def ng_sensor_stop(ctx: PluginContext) -> None:
    """Called once when the sensor stops, after the last :func:`ng_tick` (``final=True``).

    Messages emitted here are still delivered.
    """


# -- capture -----------------------------------------------------------------------------------
@hookspec
def ng_bpf_filter(ctx: PluginContext) -> str | None:
    """Return a BPF fragment (pcap-filter syntax) for the packets this plugin needs, or None.

    The kernel filter is the union (``or``) of all fragments, so the kernel drops everything no
    plugin asked for. Called once at start; a fragment that does not compile is a config error.
    """


@hookspec
def ng_bpf_exclude(ctx: PluginContext) -> str | None:
    """Return a BPF fragment for packets of this plugin's own making, or None.

    Called once at start, after :func:`ng_bpf_filter`. What matches any plugin's fragment is
    dropped by the kernel before any plugin or the handshake tracker sees it: the traceroute
    plugin leaves out its probes and the answers to them this way, so they never count as
    connections. Live capture only (``ctx.own_addresses`` is empty in a replay).
    """


@hookspec
def ng_packet(ctx: PluginContext, segment: TcpSegment) -> None:
    """Called for every decoded TCP segment that passed the filter, in capture order.

    This is the hot path: keep it cheap. Implement it only when per-packet data is needed; the
    handshake events below are usually enough.
    """


@hookspec
def ng_datagram(ctx: PluginContext, datagram: UdpDatagram) -> None:
    """Called for every decoded UDP datagram that passed the filter, in capture order.

    Only plugins that ask for UDP in their BPF fragment see any (the DPI plugin reads DNS
    answers this way). UDP is decoded only while some plugin implements this hook.
    """


# -- handshakes --------------------------------------------------------------------------------
@hookspec
def ng_handshake(ctx: PluginContext, event: HandshakeEvent) -> None:
    """Called for every handshake event: SYN (a new attempt), SYNACK, COMPLETED, REFUSED,
    UNANSWERED, ABANDONED and EVICTED (:class:`~net_gazer.sensor.handshake.Kind`). Every attempt
    gets exactly one of the last five, its verdict.

    Only COMPLETED proves that the client's address is real (it answered the SYN+ACK); active
    measurements must be triggered by COMPLETED alone.
    """


# -- time --------------------------------------------------------------------------------------
@hookspec
def ng_tick(ctx: PluginContext, now: float, final: bool) -> None:
    """Called once per flush interval, before the sensor cuts a batch for the collector.

    ``now`` is capture time (packet timestamps in replay). Emit coalesced results here. ``final``
    is True on the last tick before the sensor stops: emit everything that is pending.
    """
