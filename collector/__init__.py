"""net-gazer collector: gRPC ingest, the FalkorDB graph store, and the web viewer.

This module is the public API for collector plugins: everything a plugin needs is exported here,
and built-in plugins use nothing else (a test enforces it). The rest of ``net_gazer.collector`` is
internal and may change. A collector plugin turns what its sensor half sent into graph writes::

    from net_gazer.collector import CollectorContext, GraphWrite, SensorInfo, hookimpl

    @hookimpl
    def ng_handle_extension(ctx, sensor, plugin, payload):
        if plugin != "my_plugin" or not payload.Is(MyMessage.DESCRIPTOR):
            return None
        ...
        return [GraphWrite(cypher=MY_FOREACH_CLAUSE, rows=rows, hosts=hosts)]

registered through an entry point in the group ``net_gazer.collector``::

    [project.entry-points."net_gazer.collector"]
    my_plugin = "my_package.collector"

Writes are parameterised Cypher fragments that the store joins into the one query that also moves
the sensor's delivery mark, so a batch applies exactly once (:class:`GraphWrite`). The hooks are
specified in :mod:`net_gazer.collector.hookspecs`.

Exports:

- :data:`hookimpl`: the marker for hook implementations;
- :class:`CollectorContext`: what every hook receives as ``ctx`` (config, counters, log);
- :class:`GraphWrite` and :class:`SensorInfo`: graph writes and the sensor they come from;
- :func:`read_graph`: read-only queries for the routes a plugin adds with ``ng_web_routes``;
- address helpers shared with the sensor: :func:`addr_info`, :func:`scope_of`,
  :data:`GLOBAL_SCOPE`, :func:`parse_networks`, :class:`NetworkSet`.
"""

from __future__ import annotations

import pluggy

PROJECT = "net_gazer.collector"  # also the entry-point group

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

# The markers come first: the modules below may import them.
from net_gazer.collector.context import CollectorContext  # noqa: E402
from net_gazer.collector.graphwrite import GraphWrite, SensorInfo  # noqa: E402
from net_gazer.collector.reads import read_graph  # noqa: E402
from net_gazer.netaddr import (  # noqa: E402
    GLOBAL_SCOPE,
    NetworkSet,
    addr_info,
    parse_networks,
    scope_of,
)

__all__ = [
    "GLOBAL_SCOPE",
    "PROJECT",
    "CollectorContext",
    "GraphWrite",
    "NetworkSet",
    "SensorInfo",
    "addr_info",
    "hookimpl",
    "hookspec",
    "parse_networks",
    "read_graph",
    "scope_of",
]
