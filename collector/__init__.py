"""net-gazer collector: gRPC ingest, the FalkorDB graph store, and the web viewer.

Writing a collector plugin needs only this module::

    from net_gazer.collector import hookimpl

    @hookimpl
    def ng_handle_extension(ctx, sensor, plugin, payload):
        ...

and an entry point in the group ``net_gazer.collector``. The hooks are specified in
:mod:`net_gazer.collector.hookspecs`.
"""

from __future__ import annotations

import pluggy

PROJECT = "net_gazer.collector"  # also the entry-point group

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]
