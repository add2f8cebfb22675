"""The collector's plugin host: the built-in and third-party collector plugins.

:meth:`CollectorPlugins.collect` gathers the graph writes of one batch and says what was lost on
the way, per plugin (:class:`~net_gazer.collector.graphwrite.Loss`): an ``ng_graph_writes`` that
raised, returned something that is not a list of ``GraphWrite``, or whose plugin is disabled
(once per batch); an ``ng_handle_extension`` that raised or returned garbage (once per
extension). The store counts these on the ``Sensor`` node in the batch's own query (see
``store.py``). Extensions that no plugin handled are counted apart, by sending plugin name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf.any_pb2 import Any as AnyMessage

from net_gazer import pluginhost
from net_gazer.collector import PROJECT, hookspecs
from net_gazer.collector.context import CollectorContext
from net_gazer.collector.graphwrite import GraphWrite, Loss, SensorInfo
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
        """The writes for the built-in payloads of ``batch`` (what is lost is logged only)."""
        return self._graph_writes(sensor, batch, [])

    def _graph_writes(
        self, sensor: SensorInfo, batch: wire_pb2.Batch, losses: list[Loss]
    ) -> list[GraphWrite]:
        failures: list[tuple[str, str]] = []
        results = self.host.safecall(
            "ng_graph_writes", ctx=self.ctx, sensor=sensor, batch=batch, failures=failures
        )
        losses.extend(Loss(name, f"raised {why}") for name, why in failures)
        for info in self.host.plugins():
            if info.disabled and "ng_graph_writes" in info.hooks:
                losses.append(Loss(info.name, f"disabled: {info.disabled}"))
        writes: list[GraphWrite] = []
        for name, result in results:
            writes.extend(_stamped(name, result, losses))
        return writes

    def handle_extension(
        self, sensor: SensorInfo, plugin: str, payload: AnyMessage
    ) -> list[GraphWrite] | None:
        return self._handle_extension(sensor, plugin, payload, [])

    def _handle_extension(
        self, sensor: SensorInfo, plugin: str, payload: AnyMessage, losses: list[Loss]
    ) -> list[GraphWrite] | None:
        failures: list[tuple[str, str]] = []
        results = self.host.safecall(
            "ng_handle_extension",
            ctx=self.ctx,
            sensor=sensor,
            plugin=plugin,
            payload=payload,
            failures=failures,
        )
        losses.extend(Loss(name, f"raised {why} on an extension") for name, why in failures)
        if not results:
            return [] if failures else None
        return [w for name, ws in results for w in _stamped(name, ws, losses)]

    def collect(
        self, sensor: SensorInfo, batch: wire_pb2.Batch
    ) -> tuple[list[GraphWrite], list[Loss], int]:
        """All graph writes for ``batch`` (each stamped with its plugin), the plugins' losses,
        and the number of extensions that no plugin handled."""
        losses: list[Loss] = []
        writes = self._graph_writes(sensor, batch, losses)
        unhandled = 0
        for ext in batch.extensions:
            handled = self._handle_extension(sensor, ext.plugin, ext.payload, losses)
            if handled is None:
                unhandled += 1
                # Names come from the network: past 256 of them, count the rest together.
                known = self.unhandled
                name = ext.plugin if ext.plugin in known or len(known) < 256 else "<other>"
                known[name] = known.get(name, 0) + 1
            else:
                writes.extend(handled)
        return writes, losses, unhandled

    def enrich(self, ip: str, scope: str, props: dict[str, Any]) -> None:
        self.host.safecall("ng_enrich_host", ctx=self.ctx, ip=ip, scope=scope, props=props)

    def web_routes(self, app: Flask) -> None:
        self.host.safecall("ng_web_routes", ctx=self.ctx, app=app)

    def describe(self) -> list[dict[str, Any]]:
        """Every plugin, loaded or not, for /healthz and /api/plugins: name, version, module,
        hooks, errors, overruns, why it is disabled (``""`` while active), its counters, its
        place in the call order; one that failed to load has ``loaded: false`` and the reason as
        ``disabled``."""
        out = []
        order = {name: i for i, name in enumerate(self.host.order)}
        for p in self.host.plugins():
            item = p.as_dict()
            item["counters"] = dict(self.ctx(p.name).counters)
            item["loaded"] = True
            item["position"] = order.get(p.name, len(order))
            out.append(item)
        for name, why in sorted(self.host.failed.items()):
            out.append({"name": name, "version": "", "module": "", "hooks": [], "errors": 0,
                        "overruns": 0, "disabled": why, "counters": {}, "loaded": False,
                        "position": None})  # fmt: skip
        return out


def _stamped(plugin: str, result: object, losses: list[Loss]) -> list[GraphWrite]:
    """``result`` as a list of writes stamped with ``plugin``, or nothing (and a loss) when it is
    not a list of :class:`GraphWrite`."""
    if not isinstance(result, list | tuple) or not all(isinstance(w, GraphWrite) for w in result):
        losses.append(Loss(plugin, f"returned {type(result).__name__}, not a list of GraphWrite"))
        return []
    for w in result:
        w.plugin = plugin
    return list(result)


def load(
    graph: str,
    *,
    allow: Iterable[str] = (),
    block: Iterable[str] = (),
    order: Iterable[str] = (),
    budget: float | None = None,
    config: dict[str, dict[str, Any]] | None = None,
    extra: Iterable[tuple[str, object]] = (),
) -> CollectorPlugins:
    """Load the collector plugins; ``budget`` is each hook call's time budget in seconds."""
    host = pluginhost.create(PROJECT, hookspecs, allow=allow, block=block, order=order, extra=extra)
    if budget is not None:
        host.budget = budget
    return CollectorPlugins(host=host, graph=graph, config=config or {})
