"""Path history and route changes.

The pure comparison is checked against hand-made hop lists; the recorded ``CHANGED`` edges go
through the real ingest path (grpc.aio on port 0, a real channel, real FalkorDB), with the
paths and their order defined by each test, and the lab test moves a real route between two
traces (the topology's routers are the expected responders).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from conftest import graph_query
from google.protobuf.any_pb2 import Any as AnyMessage
from lab_fixture import LabNet
from test_ingest import exchange, hello
from test_traceroute_lab import CONNECT, config, lab_sensor, traces_to

from net_gazer.collector import history
from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.ingest import IngestService, add_to_server
from net_gazer.collector.routechange import RouteChange, route_change
from net_gazer.collector.store import GraphStore
from net_gazer.v1 import traceroute_pb2, wire_pb2

SRC = "198.51.100.1"
DST = "192.0.2.10"
A = ["198.51.100.2", "198.51.100.10", "198.51.100.18", DST]
B = ["198.51.100.2", "198.51.100.10", "198.51.100.26", DST]  # A with TTL 3 moved


# -- the comparison itself ---------------------------------------------------------------------


def test_same_path_is_no_change() -> None:
    assert route_change(A, list(A)) is None


def test_silent_hops_are_ignored() -> None:
    assert route_change(A, ["198.51.100.2", "", "198.51.100.18", DST]) is None
    assert route_change(["", "", "", ""], A) is None


def test_a_ttl_past_the_shorter_path_is_no_evidence() -> None:
    assert route_change(A[:2], A) is None
    assert route_change(A, [*A, "192.0.2.99"]) is None


def test_one_moved_hop_is_a_change_at_its_ttl() -> None:
    assert route_change(A, B) == RouteChange(3, "198.51.100.18", "198.51.100.26", (3,))


def test_a_longer_path_changes_at_the_first_ttl_that_differs() -> None:
    longer = ["198.51.100.2", "198.51.100.10", "198.51.100.50", "198.51.100.18", DST]
    change = route_change(A, longer)
    assert change == RouteChange(3, "198.51.100.18", "198.51.100.50", (3, 4))


# -- recorded through the real ingest path -----------------------------------------------------


@pytest.fixture
async def ingest(falkordb_url: str, graph_name: str) -> AsyncIterator[str]:
    store = GraphStore.connect(falkordb_url, graph_name)
    await store.ensure_schema()
    service = IngestService(store, collector_plugins.load(graph_name))
    server = grpc.aio.server()
    add_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)
        await store.close()


def trace(tid: str, path: list[str], started: float) -> traceroute_pb2.TraceRun:
    r = traceroute_pb2.TraceRun(
        id=tid, src=SRC, dst=path[-1], method="tcp", flow_id=61001, dport=80, started=started,
        finished=started + 1, reached=True, mode="paris",
    )  # fmt: skip
    for ttl, addr in enumerate(path, start=1):
        r.hops.add(ttl=ttl, addr=addr, rtt_ms=float(ttl) if addr else -1.0, sent=1,
                   answered=int(bool(addr)))  # fmt: skip
    return r


def envelope(seq: int, *runs: traceroute_pb2.TraceRun) -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(sensor_id="s1", epoch="e1", seq=seq)
    payload = AnyMessage()
    payload.Pack(traceroute_pb2.TraceReport(traces=runs))
    env.batch.extensions.add(plugin="traceroute", payload=payload)
    return env


def changes(url: str, graph: str) -> list[list[Any]]:
    return graph_query(
        url,
        graph,
        "MATCH (a:Trace)-[c:CHANGED]->(b:Trace) "
        "RETURN a.id, b.id, c.ttl, c.before, c.after, c.ttls, c.sensor, c.dst, c.at ORDER BY b.id",
    )


async def test_consecutive_traces_record_one_change_at_the_ttl(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    silent = ["198.51.100.2", "", "198.51.100.18", DST]
    await exchange(ingest, [
        hello(own_addresses=[SRC]),
        envelope(1, trace("t1", A, 100.0), trace("t2", silent, 200.0)),
        envelope(2, trace("t3", B, 300.0)),
        envelope(3, trace("t4", B, 400.0)),
    ])  # fmt: skip
    assert changes(falkordb_url, graph_name) == [
        ["t2", "t3", 3, "198.51.100.18", "198.51.100.26", [3], "s1", DST, 300.0]
    ]


async def test_traces_arriving_out_of_order_give_the_changes_of_time_order(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    # Time order: t1 A, t2 B, t3 A. They arrive t3, t1, t2: before t2 arrives t1 -> t3 are
    # consecutive with the same path, and once it does there are two changes.
    await exchange(ingest, [
        hello(own_addresses=[SRC]),
        envelope(1, trace("t3", A, 300.0)),
        envelope(2, trace("t1", A, 100.0)),
    ])  # fmt: skip
    assert changes(falkordb_url, graph_name) == []
    await exchange(ingest, [hello(own_addresses=[SRC]), envelope(3, trace("t2", B, 200.0))])
    got = [(a, b, ttl, before, after) for a, b, ttl, before, after, *_ in
           changes(falkordb_url, graph_name)]  # fmt: skip
    assert got == [
        ("t1", "t2", 3, "198.51.100.18", "198.51.100.26"),
        ("t2", "t3", 3, "198.51.100.26", "198.51.100.18"),
    ]


async def test_a_late_trace_between_two_others_replaces_their_change(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    await exchange(ingest, [
        hello(own_addresses=[SRC]),
        envelope(1, trace("t1", A, 100.0), trace("t3", B, 300.0)),
    ])  # fmt: skip
    assert [r[:2] for r in changes(falkordb_url, graph_name)] == [["t1", "t3"]]
    await exchange(ingest, [hello(own_addresses=[SRC]), envelope(2, trace("t2", B, 200.0))])
    assert [r[:2] for r in changes(falkordb_url, graph_name)] == [["t1", "t2"]]


async def test_traces_started_at_one_time_are_ordered_by_id(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    await exchange(ingest, [
        hello(own_addresses=[SRC]),
        envelope(1, trace("t2", B, 100.0), trace("t1", A, 100.0), trace("t3", B, 100.0)),
    ])  # fmt: skip
    assert [r[:3] for r in changes(falkordb_url, graph_name)] == [["t1", "t2", 3]]


async def test_other_destinations_and_sensors_are_not_consecutive(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    other = ["198.51.100.2", "198.51.100.10", "198.51.100.26", "192.0.2.138"]
    other_sensor = envelope(1, trace("u1", B, 150.0))
    other_sensor.sensor_id = "s2"
    await exchange(ingest, [
        hello(own_addresses=[SRC]),
        envelope(1, trace("t1", A, 100.0), trace("t2", other, 200.0)),
    ])  # fmt: skip
    await exchange(ingest, [hello("s2", own_addresses=[SRC]), other_sensor])
    assert changes(falkordb_url, graph_name) == []


async def test_resending_a_batch_keeps_one_change(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    batches = [envelope(1, trace("t1", A, 100.0)), envelope(2, trace("t2", B, 200.0))]
    await exchange(ingest, [hello(own_addresses=[SRC]), *batches])
    await exchange(ingest, [hello(own_addresses=[SRC]), *batches])
    assert len(changes(falkordb_url, graph_name)) == 1


async def test_history_reads_show_each_trace_and_its_change(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    await exchange(ingest, [
        hello(own_addresses=[SRC]),
        envelope(1, trace("t1", A, 100.0), trace("t2", A, 200.0), trace("t3", B, 300.0)),
    ])  # fmt: skip

    def query(cypher: str, params: dict[str, Any]) -> list[list[Any]]:
        return graph_query(falkordb_url, graph_name, cypher, params)

    hist = history.path_history(query, DST)
    assert [h["id"] for h in hist] == ["t3", "t2", "t1"]
    assert hist[0]["hops"] == B and hist[0]["change"] == {
        "from": "t2", "ttl": 3, "before": "198.51.100.18", "after": "198.51.100.26", "ttls": [3],
    }  # fmt: skip
    assert hist[1]["change"] is None and hist[2]["change"] is None
    assert [h["id"] for h in history.path_history(query, DST, until=250.0)] == ["t2", "t1"]
    assert history.path_history(query, DST, sensor="other") == []
    (ch,) = history.route_changes(query, dst=DST)
    assert (ch["from"], ch["to"], ch["at"], ch["ttl"]) == ("t2", "t3", 300.0, 3)
    assert history.route_changes(query, since=301.0) == []
    # The path as it was: before the change, A; after it, B; before any trace, nothing.
    assert [p["hops"] for p in history.paths_at(query, 250.0)] == [A]
    assert [p["hops"] for p in history.paths_at(query, 1e9)] == [B]
    assert history.paths_at(query, 50.0) == []


async def test_the_migration_records_changes_of_traces_stored_before_it(
    falkordb_url: str, graph_name: str
) -> None:
    from net_gazer.collector.store import SCHEMA_VERSION

    # Traces as a collector from before CHANGED wrote them, and a graph at schema 2.
    graph_query(
        falkordb_url, graph_name,
        "CREATE (:Trace {id: 'o1', sensor: 's1', dst: $dst, started: 1.0, hops: $a}), "
        "(:Trace {id: 'o2', sensor: 's1', dst: $dst, started: 2.0, hops: $b}), "
        "(:Trace {id: 'o3', sensor: 's1', dst: $dst, started: 3.0, hops: $b}), "
        "(:Schema {id: 'net_gazer', version: 2})",
        {"dst": DST, "a": A, "b": B},
    )  # fmt: skip
    store = GraphStore.connect(falkordb_url, graph_name)
    try:
        await store.ensure_schema()
        assert await store.migrate() == {}  # current now: a second run does nothing
    finally:
        await store.close()
    assert [r[:3] for r in changes(falkordb_url, graph_name)] == [["o1", "o2", 3]]
    [[version]] = graph_query(falkordb_url, graph_name, "MATCH (x:Schema) RETURN x.version")
    assert version == SCHEMA_VERSION


# -- in the lab: a real route moves between two traces -----------------------------------------


@pytest.mark.root
def test_a_route_moved_in_the_lab_is_one_change_at_its_ttl(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    cfg = config(tmp_path, method="tcp", dedup_window=2, router_rate=0, timeout=0.5)

    def pin(via: str) -> None:
        lab_net.run("r2", "ip", "route", "replace", "192.0.2.0/26", "via", via)

    try:
        pin("198.51.100.18")  # r3a only
        with (
            lab_net.icmp_ratelimit(on=False),
            lab_sensor(lab_net, sock, tmp_path / "s.log", "-c", str(cfg)),
        ):
            lab_net.python("client", CONNECT, "192.0.2.10,80")
            traces_to(falkordb_url, graph_name, "192.0.2.10", 1)
            time.sleep(2.5)
            lab_net.python("client", CONNECT, "192.0.2.10,80")  # same route again
            traces_to(falkordb_url, graph_name, "192.0.2.10", 2)
            pin("198.51.100.26")  # the route moves to r3b
            time.sleep(2.5)
            lab_net.python("client", CONNECT, "192.0.2.10,80")
            rows = traces_to(falkordb_url, graph_name, "192.0.2.10", 3)
    finally:
        lab_net.run("r2", "ip", "route", "replace", "192.0.2.0/26",
                    "nexthop", "via", "198.51.100.18", "nexthop", "via", "198.51.100.26")  # fmt: skip
    assert len(rows) == 3, rows
    got = changes(falkordb_url, graph_name)
    assert [(a, b, ttl, before, after) for a, b, ttl, before, after, *_ in got] == [
        (rows[1][0], rows[2][0], 3, "198.51.100.18", "198.51.100.26")
    ], (rows, got)
