"""Plugins that fail: each failure mode on each host is isolated, counted where operators look
(the sensor's counters on the Sensor node, the collector's /healthz and /api/plugins) and, when it
keeps failing, disabled; the sensor, the collector and the other plugins go on.

Real parts throughout: real pcaps through libpcap and the sensor's packet path, a real grpc.aio
ingest server on port 0 with a real channel, real FalkorDB, the real Flask app reading it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from conftest import PCAPS, graph_query
from google.protobuf.any_pb2 import Any as AnyMessage
from test_ingest import exchange, hello, row

from net_gazer.collector import CollectorContext, GraphWrite, SensorInfo
from net_gazer.collector import hookimpl as collector_hookimpl
from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.ingest import IngestService, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.collector.web import WebConfig, create_app
from net_gazer.sensor import HandshakeEvent, Kind, PluginContext, TcpSegment, hookimpl
from net_gazer.testing import sensor_run
from net_gazer.v1 import wire_pb2

SAMPLE = PCAPS / "sample.pcap"
EXPECTED: list[dict[str, Any]] = json.loads((PCAPS / "sample.expected.json").read_text())
COMPLETED = sum(int(r["count"]) for r in EXPECTED)


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NG_PLUGINS_BLOCK", "NG_PLUGINS_ALLOW", "NG_PLUGINS_ORDER", "NG_PLUGIN_TRACE"):
        monkeypatch.delenv(name, raising=False)


def completed(batches: list[wire_pb2.Batch]) -> int:
    return sum(h.completed for b in batches for h in b.handshakes)


# --- the sensor ---------------------------------------------------------------------------------


class RaisesEvery:
    """Raises in ng_handshake on every ``every``-th call (1: always)."""

    def __init__(self, every: int) -> None:
        self.every, self.calls = every, 0

    @hookimpl
    def ng_handshake(self, ctx: PluginContext, event: HandshakeEvent) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            raise RuntimeError(f"bad event {self.calls}")


def test_a_sensor_plugin_that_keeps_raising_is_disabled_and_the_rest_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    boom = RaisesEvery(1)
    run = sensor_run(SAMPLE, plugins=["handshake"], extra=[("boom", boom)])
    info = run.plugins["boom"]
    assert info["errors"] == boom.calls == 100  # disabled after 100 in a row, then not called
    assert "raised 100 times in a row in ng_handshake" in info["disabled"]
    assert "RuntimeError: bad event 100" in info["disabled"]
    assert run.counters["plugin_boom_errors"] == 100
    assert run.counters["plugin_boom_disabled"] == 1
    assert run.counters["plugin_handshake_errors"] == 0
    assert run.counters["plugin_handshake_disabled"] == 0
    assert completed(run.batches) == COMPLETED  # the built-in plugin saw every handshake
    assert "plugin boom disabled" in caplog.text


def test_a_sensor_plugin_that_raises_now_and_then_stays_enabled() -> None:
    flaky = RaisesEvery(2)
    run = sensor_run(SAMPLE, plugins=["handshake"], extra=[("flaky", flaky)])
    assert flaky.calls == run.counters["sensor_events"] > 200
    assert run.plugins["flaky"]["errors"] == flaky.calls // 2
    assert run.plugins["flaky"]["disabled"] == ""
    assert completed(run.batches) == COMPLETED


def test_a_sensor_plugin_that_keeps_overrunning_its_budget_is_disabled() -> None:
    class Slow:
        calls = 0

        @hookimpl
        def ng_packet(self, ctx: PluginContext, segment: TcpSegment) -> None:
            Slow.calls += 1
            time.sleep(0.03)

    run = sensor_run(PCAPS / "handshakes.pcap", extra=[("slow", Slow())], budget_ms=20)
    assert Slow.calls == 20  # 20 overruns in a row, then disabled
    assert run.counters["plugin_slow_overruns"] == 20
    assert run.counters["plugin_slow_disabled"] == 1
    assert (
        "overran its 20 ms budget 20 times in a row in ng_packet" in run.plugins["slow"]["disabled"]
    )
    assert run.counters["sensor_tcp"] > 20  # capture went on
    expected = json.loads((PCAPS / "handshakes.expected.json").read_text())
    assert completed(run.batches) == sum(r["count"] for r in expected)


def test_emitting_what_is_no_protobuf_message_is_the_plugins_error_and_sends_nothing() -> None:
    class Sloppy:
        @hookimpl
        def ng_handshake(self, ctx: PluginContext, event: HandshakeEvent) -> None:
            if event.kind is Kind.COMPLETED:
                ctx.emit({"not": "a message"})  # type: ignore[arg-type]

        @hookimpl
        def ng_tick(self, ctx: PluginContext, now: float, final: bool) -> None:
            ctx.emit(wire_pb2.Gap(reason="fine"))

    run = sensor_run(SAMPLE, plugins=["handshake"], extra=[("sloppy", Sloppy())])
    assert run.counters["plugin_sloppy_errors"] == COMPLETED
    sent = [e for b in run.batches for e in b.extensions if e.plugin == "sloppy"]
    assert sent and all(e.payload.Is(wire_pb2.Gap.DESCRIPTOR) for e in sent)
    assert completed(run.batches) == COMPLETED


# --- the collector ------------------------------------------------------------------------------


class Strict:
    """A collector half that unpacks its sensor half's HandshakeRow payloads (raising on bytes
    that do not parse) and writes one node per payload."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    @collector_hookimpl
    def ng_handle_extension(
        self, ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
    ) -> list[GraphWrite] | None:
        if plugin != "strict" or not payload.Is(wire_pb2.HandshakeRow.DESCRIPTOR):
            return None
        time.sleep(self.delay)
        msg = wire_pb2.HandshakeRow()
        payload.Unpack(msg)  # DecodeError on malformed bytes
        ctx.count("payloads")
        return [
            GraphWrite(
                cypher="FOREACH (r IN $rows | CREATE (:StrictSeen {sensor: $sid, client: r.c}))",
                rows=[{"c": msg.client}],
            )
        ]


@pytest.fixture
async def ingest(
    falkordb_url: str, graph_name: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, collector_plugins.CollectorPlugins]]:
    strict, budget = request.param if hasattr(request, "param") else (Strict(), None)
    cplugins = collector_plugins.load(graph_name, budget=budget, extra=[("strict", strict)])
    store = GraphStore.connect(falkordb_url, graph_name)
    await store.ensure_schema()
    server = grpc.aio.server()
    add_to_server(IngestService(store, cplugins), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", cplugins
    finally:
        await server.stop(grace=None)
        await store.close()


def envelope(seq: int, *extensions: tuple[str, AnyMessage], rows: int = 1) -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(sensor_id="s1", epoch="e1", seq=seq)
    env.batch.handshakes.extend(row(client=f"192.0.2.{i + 1}") for i in range(rows))
    for plugin, payload in extensions:
        env.batch.extensions.add(plugin=plugin, payload=payload)
    return env


def good_payload() -> AnyMessage:
    payload = AnyMessage()
    payload.Pack(wire_pb2.HandshakeRow(client="192.0.2.99"))
    return payload


def malformed_payload() -> AnyMessage:
    # The right type, bytes that do not parse: field 1 (a string) claims 127 bytes and has 2.
    return AnyMessage(type_url="type.googleapis.com/net_gazer.v1.HandshakeRow", value=b"\x0a\x7fab")


def api_plugins(falkordb_url: str, graph_name: str, cplugins: Any) -> dict[str, Any]:
    app = create_app(
        WebConfig(
            graph_url=falkordb_url,
            graph=graph_name,
            plugins=lambda: {
                "plugins": cplugins.describe(),
                "unhandled_extensions": dict(cplugins.unhandled),
            },
        )
    )
    resp = app.test_client().get("/api/plugins")
    assert resp.status_code == 200
    body: dict[str, Any] = resp.get_json()
    return body


def sensor_node(url: str, graph: str) -> dict[str, Any]:
    ((props,),) = graph_query(url, graph, "MATCH (s:Sensor {id: 's1'}) RETURN properties(s)")
    result: dict[str, Any] = props
    return result


async def test_a_collector_plugin_that_fails_on_a_malformed_payload_is_isolated(
    ingest: tuple[str, collector_plugins.CollectorPlugins], falkordb_url: str, graph_name: str
) -> None:
    address, cplugins = ingest
    acks = await exchange(
        address,
        [
            hello(plugins=["handshake", "strict"]),
            envelope(1, ("strict", good_payload())),
            envelope(2, ("strict", malformed_payload()), ("stranger", good_payload()), rows=2),
        ],
    )
    assert [a.acked_seq for a in acks] == [0, 1, 2]  # the stream went on
    # The handshake rows of both batches and the good payload reached the graph.
    edges = graph_query(falkordb_url, graph_name, "MATCH ()-[e:CONNECTS]->() RETURN sum(e.count)")
    assert edges == [[3]]
    seen = graph_query(falkordb_url, graph_name, "MATCH (n:StrictSeen) RETURN n.client")
    assert seen == [["192.0.2.99"]]
    node = sensor_node(falkordb_url, graph_name)
    assert node["plugin_lost_strict"] == 1
    assert node["unhandled_extensions"] == 1  # the payload nobody claims is counted
    (strict,) = [p for p in cplugins.describe() if p["name"] == "strict"]
    assert (strict["errors"], strict["disabled"], strict["counters"]) == (1, "", {"payloads": 1})
    body = api_plugins(falkordb_url, graph_name, cplugins)
    (strict,) = [p for p in body["collector"]["plugins"] if p["name"] == "strict"]
    assert strict["errors"] == 1 and strict["loaded"] is True
    assert body["collector"]["unhandled_extensions"] == {"stranger": 1}
    (sensor,) = body["sensors"]
    assert sensor["id"] == "s1"
    assert sensor["plugin_lost"] == {"strict": 1}
    assert sensor["unhandled_extensions"] == 1
    assert [p["name"] for p in sensor["plugins"]] == ["handshake", "strict"]


@pytest.mark.parametrize("ingest", [(Strict(delay=0.03), 0.02)], indirect=True)
async def test_a_collector_plugin_that_keeps_overrunning_is_disabled_and_its_payloads_counted(
    ingest: tuple[str, collector_plugins.CollectorPlugins], falkordb_url: str, graph_name: str
) -> None:
    address, cplugins = ingest
    assert cplugins.host.budget == 0.02
    envs = [hello()] + [envelope(seq, ("strict", good_payload())) for seq in range(1, 26)]
    acks = await exchange(address, envs)
    assert acks[-1].acked_seq == 25
    (strict,) = [p for p in cplugins.describe() if p["name"] == "strict"]
    assert strict["overruns"] == 20
    assert "overran its 20 ms budget 20 times in a row in ng_handle_extension" in strict["disabled"]
    # Its payloads after that are unclaimed, counted; the handshake rows all applied.
    assert cplugins.unhandled == {"strict": 5}
    assert sensor_node(falkordb_url, graph_name)["unhandled_extensions"] == 5
    assert graph_query(
        falkordb_url, graph_name, "MATCH ()-[e:CONNECTS]->() RETURN sum(e.count)"
    ) == [[25]]
    body = api_plugins(falkordb_url, graph_name, cplugins)
    (strict,) = [p for p in body["collector"]["plugins"] if p["name"] == "strict"]
    assert strict["disabled"].startswith("overran")


def test_the_collector_budget_comes_from_its_config(tmp_path: Path) -> None:
    from net_gazer.collector.cli import parser
    from net_gazer.collector.config import load
    from net_gazer.errors import ConfigError

    path = tmp_path / "collector.toml"
    path.write_text('[plugins]\nbudget_ms = 40\norder = ["b", "a"]\n')
    cfg = load(parser().parse_args(["-c", str(path)]))
    assert cfg.plugin_budget == 0.04
    assert cfg.plugins_order == ["b", "a"]
    for bad, message in (("0", "between 1 and 60000"), ('"fast"', "must be a number")):
        path.write_text(f"[plugins]\nbudget_ms = {bad}\n")
        with pytest.raises(ConfigError, match=message) as info:
            load(parser().parse_args(["-c", str(path)]))
        assert "\n" not in str(info.value)


class Broken(Strict):
    @collector_hookimpl
    def ng_handle_extension(
        self, ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
    ) -> list[GraphWrite] | None:
        raise KeyError("every time")


@pytest.mark.parametrize("ingest", [(Broken(), None)], indirect=True)
async def test_a_collector_plugin_that_keeps_raising_is_disabled(
    ingest: tuple[str, collector_plugins.CollectorPlugins], falkordb_url: str, graph_name: str
) -> None:
    address, cplugins = ingest
    cplugins.host.max_errors = 3
    envs = [hello()] + [envelope(seq, ("strict", good_payload())) for seq in range(1, 6)]
    assert (await exchange(address, envs))[-1].acked_seq == 5
    (broken,) = [p for p in cplugins.describe() if p["name"] == "strict"]
    assert broken["errors"] == 3
    assert broken["disabled"].startswith("raised 3 times in a row in ng_handle_extension")
    node = sensor_node(falkordb_url, graph_name)
    assert node["plugin_lost_strict"] == 3  # its part of the first three batches
    assert node["unhandled_extensions"] == 2  # then nobody claims the payloads
    edges = graph_query(falkordb_url, graph_name, "MATCH ()-[e:CONNECTS]->() RETURN sum(e.count)")
    assert edges == [[5]]
