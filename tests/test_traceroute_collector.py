"""The collector half through the real ingest path: a grpc.aio server on port 0, a real channel,
real FalkorDB. Expected values come from the runs the test defines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
import pytest
from conftest import graph_query
from google.protobuf.any_pb2 import Any as AnyMessage
from test_ingest import exchange, hello

from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.ingest import IngestService, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.v1 import traceroute_pb2, wire_pb2

SRC = "198.51.100.1"
PATH = ["198.51.100.2", "", "198.51.100.18", "198.51.100.34", "192.0.2.10"]


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


def run(
    tid: str, path: list[str], *, reached: bool = True, inferred: int = 0
) -> traceroute_pb2.TraceRun:
    r = traceroute_pb2.TraceRun(
        id=tid, src=SRC, dst=path[-1], method="tcp", flow_id=61001, dport=80, started=10.0,
        finished=11.0, reached=reached, mode="paris", probes_saved=inferred,
    )  # fmt: skip
    for ttl, addr in enumerate(path, start=1):
        inf = ttl <= inferred
        r.hops.add(
            ttl=ttl, addr=addr, rtt_ms=-1.0 if not addr or inf else float(ttl),
            sent=0 if inf else (3 if not addr else 1), answered=0 if inf or not addr else 1,
            inferred=inf,
        )  # fmt: skip
    return r


def envelope(seq: int, *runs: traceroute_pb2.TraceRun) -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(sensor_id="s1", epoch="e1", seq=seq)
    payload = AnyMessage()
    payload.Pack(traceroute_pb2.TraceReport(traces=runs))
    env.batch.extensions.add(plugin="traceroute", payload=payload)
    return env


def q(url: str, graph: str, cypher: str) -> list[list[Any]]:
    return graph_query(url, graph, cypher)


async def test_a_trace_writes_trace_ran_to_at_and_route(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    await exchange(ingest, [hello(own_addresses=[SRC]), envelope(1, run("t1", PATH))])
    (trace,) = q(falkordb_url, graph_name,
        "MATCH (s:Sensor {id: 's1'})-[:RAN]->(t:Trace)-[:TO]->(d:Host) "
        "RETURN t.id, t.src, t.dst, t.method, t.flow_id, t.reached, t.hops, t.rtts, t.hop_count, d.ip")  # fmt: skip
    assert trace == [
        "t1",
        SRC,
        "192.0.2.10",
        "tcp",
        61001,
        True,
        PATH,
        [1.0, -1.0, 3.0, 4.0, 5.0],
        5,
        "192.0.2.10",
    ]
    at = q(
        falkordb_url,
        graph_name,
        "MATCH (:Trace {id: 't1'})-[a:AT]->(h:Host) RETURN a.ttl, h.ip, a.rtt_ms, a.inferred ORDER BY a.ttl",
    )
    assert at == [
        [1, PATH[0], 1.0, False],
        [3, PATH[2], 3.0, False],
        [4, PATH[3], 4.0, False],
        [5, PATH[4], 5.0, False],
    ]
    routes = q(falkordb_url, graph_name,
        "MATCH (a:Host)-[e:ROUTE]->(b:Host) RETURN a.ip, b.ip, e.gap, e.count, e.sensor, e.rtt_ms_min, e.probes, e.answered ORDER BY e.rtt_ms_min")  # fmt: skip
    assert routes == [
        [SRC, PATH[0], 0, 1, "s1", 1.0, 1, 1],
        [PATH[0], PATH[2], 1, 1, "s1", 3.0, 1, 1],
        [PATH[2], PATH[3], 0, 1, "s1", 4.0, 1, 1],
        [PATH[3], PATH[4], 0, 1, "s1", 5.0, 1, 1],
    ]
    # The path starts at the sensor's ORIGIN host.
    assert q(
        falkordb_url,
        graph_name,
        "MATCH (:Sensor {id: 's1'})-[:ORIGIN]->(h:Host)-[:ROUTE]->() RETURN h.ip",
    ) == [[SRC]]


async def test_routes_add_up_per_key_and_each_run_is_its_own_trace(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    await exchange(ingest, [
        hello(own_addresses=[SRC]),
        envelope(1, run("t1", PATH), run("t2", PATH, inferred=3)),
        envelope(2, run("t3", PATH)),
        envelope(2, run("t3", PATH)),  # a resent batch: acknowledged, not applied again
    ])  # fmt: skip
    assert q(falkordb_url, graph_name, "MATCH (t:Trace) RETURN count(t)") == [[3]]
    routes = q(falkordb_url, graph_name,
        "MATCH (a:Host)-[e:ROUTE]->(b:Host) RETURN a.ip, b.ip, e.gap, e.count, e.rtt_samples ORDER BY a.ip, b.ip")  # fmt: skip
    assert len(routes) == 4  # one edge per (a, b, sensor, gap), never two
    by = {(r[0], r[1]): r for r in routes}
    assert by[(SRC, PATH[0])][3:] == [3, 2]  # three traces, two measured (one inferred)
    assert by[(PATH[3], PATH[4])][3:] == [3, 3]
    inferred = q(
        falkordb_url,
        graph_name,
        "MATCH (:Trace {id: 't2'})-[a:AT {inferred: true}]->(h) RETURN a.ttl ORDER BY a.ttl",
    )
    assert inferred == [[1], [3]]


async def test_an_insane_run_is_skipped_and_the_rest_applies(
    ingest: str, falkordb_url: str, graph_name: str
) -> None:
    bad = run("bad", PATH)
    bad.dst = "not an address"
    await exchange(ingest, [hello(), envelope(1, bad, run("good", PATH))])
    assert q(falkordb_url, graph_name, "MATCH (t:Trace) RETURN t.id") == [["good"]]
