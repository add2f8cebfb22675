"""net-gazer sensor: capture, handshake tracking, the sensor plugin host, and transport.

This module is the public API for sensor plugins: everything a plugin needs is exported here, and
built-in plugins use nothing else (a test enforces it). The rest of ``net_gazer.sensor`` is internal
and may change. A sensor plugin is a module (or object) with hook implementations::

    from net_gazer.sensor import Kind, HandshakeEvent, PluginContext, hookimpl

    @hookimpl
    def ng_handshake(ctx: PluginContext, event: HandshakeEvent) -> None:
        if event.kind is Kind.COMPLETED:
            ctx.count("completed")

registered through an entry point in the group ``net_gazer.sensor``::

    [project.entry-points."net_gazer.sensor"]
    my_plugin = "my_package.sensor"

A plugin's collector half is a separate module with its own entry point in ``net_gazer.collector``
(:mod:`net_gazer.collector`); the two halves never import each other's host, so the sensor process
never loads collector code. Messages travel between them as protobuf (:mod:`net_gazer.v1`).

The hooks, with when they are called and what their return values mean, are specified in
:mod:`net_gazer.sensor.hookspecs`.

Exports:

- :data:`hookimpl`: the marker for hook implementations;
- :class:`PluginContext`: what every hook receives as ``ctx`` (config, ``emit``, counters, state,
  direction, whether probing is allowed);
- :class:`TcpSegment` and the TCP flag constants (``TH_SYN`` ...): what ``ng_packet`` receives;
- :class:`UdpDatagram`: what ``ng_datagram`` receives;
- :class:`HandshakeEvent` and :class:`Kind`: what ``ng_handshake`` receives;
- address helpers shared with the collector: :func:`addr_info`, :func:`scope_of`, :func:`ntop`,
  :func:`parse_networks`, :class:`NetworkSet`, :data:`GLOBAL_SCOPE`, :data:`PRIVATE_NETWORKS`.
"""

from __future__ import annotations

import pluggy

PROJECT = "net_gazer.sensor"  # also the entry-point group

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

# The markers come first: the modules below import them.
from net_gazer.netaddr import (  # noqa: E402
    GLOBAL_SCOPE,
    PRIVATE_NETWORKS,
    NetworkSet,
    addr_info,
    ntop,
    parse_networks,
    scope_of,
)
from net_gazer.sensor.context import PluginContext, bounded_settings  # noqa: E402
from net_gazer.sensor.handshake import HandshakeEvent, Kind  # noqa: E402
from net_gazer.sensor.packet import (  # noqa: E402
    TH_ACK,
    TH_CWR,
    TH_ECE,
    TH_FIN,
    TH_PUSH,
    TH_RST,
    TH_SYN,
    TH_URG,
    TcpSegment,
    UdpDatagram,
)

__all__ = [
    "GLOBAL_SCOPE",
    "PRIVATE_NETWORKS",
    "PROJECT",
    "TH_ACK",
    "TH_CWR",
    "TH_ECE",
    "TH_FIN",
    "TH_PUSH",
    "TH_RST",
    "TH_SYN",
    "TH_URG",
    "HandshakeEvent",
    "Kind",
    "NetworkSet",
    "PluginContext",
    "TcpSegment",
    "UdpDatagram",
    "addr_info",
    "bounded_settings",
    "hookimpl",
    "hookspec",
    "ntop",
    "parse_networks",
    "scope_of",
]
