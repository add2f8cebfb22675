"""net-gazer sensor: capture, handshake tracking, the sensor plugin host, and transport.

Writing a sensor plugin needs only this module::

    from net_gazer.sensor import hookimpl

    @hookimpl
    def ng_handshake(ctx, event):
        ...

and an entry point in the group ``net_gazer.sensor`` (pyproject.toml)::

    [project.entry-points."net_gazer.sensor"]
    my_plugin = "my_package.my_plugin"

The hooks are specified, with when they are called and what their return values mean, in
:mod:`net_gazer.sensor.hookspecs`.
"""

from __future__ import annotations

import pluggy

PROJECT = "net_gazer.sensor"  # also the entry-point group

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]
