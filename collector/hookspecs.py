"""Hook specifications of the collector host. Every hook is called with keyword arguments only.

``ctx`` is the calling plugin's own :class:`~net_gazer.collector.context.CollectorContext`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from net_gazer.collector import hookspec

if TYPE_CHECKING:
    from flask import Flask
    from google.protobuf.any_pb2 import Any as AnyMessage

    from net_gazer.collector.context import CollectorContext
    from net_gazer.collector.graphwrite import GraphWrite, SensorInfo
    from net_gazer.v1 import wire_pb2


# -- lifecycle ---------------------------------------------------------------------------------
@hookspec
def ng_collector_start(ctx: CollectorContext) -> None:
    """Called once after the store is ready and before the gRPC server accepts sensors."""


@hookspec
def ng_collector_stop(ctx: CollectorContext) -> None:
    """Called once when the collector stops."""


# -- ingest ------------------------------------------------------------------------------------
@hookspec
def ng_graph_writes(
    ctx: CollectorContext, sensor: SensorInfo, batch: wire_pb2.Batch
) -> list[GraphWrite] | None:
    """Return the graph writes for the built-in payloads of ``batch`` that this plugin handles.

    The writes of all plugins run in one query with the sensor's delivery mark, so a batch is
    applied entirely or not at all, and exactly once.
    """


@hookspec
def ng_handle_extension(
    ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
) -> list[GraphWrite] | None:
    """Return graph writes for one third-party payload (``Extension``), or None when this plugin
    does not handle it. ``plugin`` is the sending sensor plugin's name; check
    ``payload.Is(MyMessage.DESCRIPTOR)`` and ``payload.Unpack(msg)``."""


@hookspec
def ng_enrich_host(ctx: CollectorContext, ip: str, scope: str, props: dict[str, Any]) -> None:
    """Add properties for a Host node about to be written (GeoIP, ASN, names), in place.

    Called once per new address per collector process (results are cached).
    """


# -- web ---------------------------------------------------------------------------------------
@hookspec
def ng_web_routes(ctx: CollectorContext, app: Flask) -> None:
    """Register blueprints or routes on the viewer's Flask app."""
