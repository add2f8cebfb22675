"""The collector's plugin host: the built-in and third-party collector plugins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf.any_pb2 import Any as AnyMessage

from net_gazer import pluginhost
from net_gazer.collector import PROJECT, hookspecs
from net_gazer.collector.context import CollectorContext
from net_gazer.collector.graphwrite import GraphWrite, SensorInfo
from net_gazer.v1 import wire_pb2

if TYPE_CHECKING:
    from flask import Flask


@dataclass
class CollectorPlugins:
    host: pluginhost.PluginHost
    graph: str
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: dict[str, CollectorContext] = field(default_factory=dict)
    #: Extensions that no plugin handled, by sending plugin name.
    unhandled: dict[str, int] = field(default_factory=dict)

    def ctx(self, name: str) -> CollectorContext:
        ctx = self.contexts.get(name)
        if ctx is None:
            ctx = self.contexts[name] = CollectorContext(
                name=name, config=self.config.get(name, {}), graph=self.graph
            )
        return ctx

    def start(self) -> None:
        self.host.safecall("ng_collector_start", ctx=self.ctx)

    def stop(self) -> None:
        self.host.safecall("ng_collector_stop", ctx=self.ctx)

    def graph_writes(self, sensor: SensorInfo, batch: wire_pb2.Batch) -> list[GraphWrite]:
        writes: list[GraphWrite] = []
        for _, result in self.host.safecall(
            "ng_graph_writes", ctx=self.ctx, sensor=sensor, batch=batch
        ):
            writes.extend(result)
        return writes

    def handle_extension(
        self, sensor: SensorInfo, plugin: str, payload: AnyMessage
    ) -> list[GraphWrite] | None:
        results = self.host.safecall(
            "ng_handle_extension", ctx=self.ctx, sensor=sensor, plugin=plugin, payload=payload
        )
        if not results:
            return None
        return [w for _, ws in results for w in ws]

    def enrich(self, ip: str, scope: str, props: dict[str, Any]) -> None:
        self.host.safecall("ng_enrich_host", ctx=self.ctx, ip=ip, scope=scope, props=props)

    def web_routes(self, app: Flask) -> None:
        self.host.safecall("ng_web_routes", ctx=self.ctx, app=app)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for p in self.host.plugins():
            item = p.as_dict()
            item["counters"] = dict(self.ctx(p.name).counters)
            out.append(item)
        return out


def load(
    graph: str,
    *,
    allow: Iterable[str] = (),
    block: Iterable[str] = (),
    config: dict[str, dict[str, Any]] | None = None,
    extra: Iterable[tuple[str, object]] = (),
) -> CollectorPlugins:
    host = pluginhost.create(PROJECT, hookspecs, allow=allow, block=block, extra=extra)
    return CollectorPlugins(host=host, graph=graph, config=config or {})
