"""Graphs for the API tests, written through the public ingest path (a real grpc.aio server on
port 0 in front of the real store and plugins), and traces in the schema of docs/schema.md."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc.aio
from conftest import graph_query

from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.ingest import IngestService, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.v1 import wire_pb2, wire_pb2_grpc


@dataclass
class Conn:
    client: str
    server: str
    dport: int = 443
    completed: int = 1
    attempts: int = 1
    refused: int = 0
    unanswered: int = 0
    rtt_ms: float = 10.0
    last_seen: float = 1000.0
    direction: int = wire_pb2.DIRECTION_OUTGOING

    def row(self) -> wire_pb2.HandshakeRow:
        n = self.completed
        return wire_pb2.HandshakeRow(
            client=self.client, server=self.server, dport=self.dport, completed=n,
            attempts=self.attempts, refused=self.refused, unanswered=self.unanswered,
            first_seen=self.last_seen - 1, last_seen=self.last_seen, direction=self.direction,
            rtt=wire_pb2.RttAggregate(sum_ms=self.rtt_ms * n, min_ms=self.rtt_ms,
                                      max_ms=self.rtt_ms, samples=n),
        )  # fmt: skip


async def _ingest(
    url: str, graph: str, sensors: dict[str, Sequence[Conn]], batch_size: int, enrich: Any
) -> None:
    store = GraphStore.connect(url, graph)
    await store.ensure_schema()
    if enrich is not None:
        store.enrich = enrich
    service = IngestService(store, collector_plugins.load(graph))
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    add_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        ) as channel:
            for sid, conns in sensors.items():
                call = wire_pb2_grpc.IngestStub(channel).Stream()
                env = wire_pb2.Envelope(sensor_id=sid, epoch="e1", seq=0)
                env.hello.CopyFrom(
                    wire_pb2.Hello(hostname=sid, machine_id="m-" + sid, version="0.1.0",
                                   protocol_minor=1)
                )  # fmt: skip
                await call.write(env)
                await call.read()
                for seq, i in enumerate(range(0, len(conns), batch_size), 1):
                    env = wire_pb2.Envelope(sensor_id=sid, epoch="e1", seq=seq)
                    env.batch.handshakes.extend(c.row() for c in conns[i : i + batch_size])
                    env.batch.counters["sensor_packets"] = 10 * seq
                    await call.write(env)
                    ack = await call.read()
                    assert isinstance(ack, wire_pb2.Ack) and ack.acked_seq == seq
                await call.done_writing()
    finally:
        await server.stop(grace=None)
        await store.close()


def ingest(
    url: str,
    graph: str,
    sensors: dict[str, Sequence[Conn]],
    batch_size: int = 2000,
    enrich: Any = None,
) -> None:
    asyncio.run(_ingest(url, graph, sensors, batch_size, enrich))


def add_trace(
    url: str,
    graph: str,
    *,
    tid: str,
    sensor: str,
    dst: str,
    hops: Iterable[str],
    finished: float,
    site: str | None = None,
    reached: bool = True,
) -> None:
    """One Trace with its RAN, TO and AT edges, as the traceroute plugin writes them."""
    hop_list = list(hops)
    site = site or sensor
    from net_gazer.netaddr import scope_of

    graph_query(
        url, graph,
        "MATCH (s:Sensor {id: $sensor}) "
        "CREATE (s)-[:RAN]->(t:Trace {id: $tid, sensor: $sensor, dst: $dst, method: 'udp', "
        "started: $finished - 1, finished: $finished, reached: $reached, "
        "hop_count: size($hops), hops: $hops, rtts: [h IN $hops | 1.0]}) "
        "WITH t MERGE (d:Host {scope: $dscope, ip: $dst}) CREATE (t)-[:TO]->(d)",
        {"sensor": sensor, "tid": tid, "dst": dst, "finished": finished, "reached": reached,
         "hops": hop_list, "dscope": scope_of(dst, site)},
    )  # fmt: skip
    for ttl, ip in enumerate(hop_list, 1):
        if not ip:
            continue
        graph_query(
            url, graph,
            "MATCH (t:Trace {id: $tid}) MERGE (h:Host {scope: $scope, ip: $ip}) "
            "ON CREATE SET h.family = $family, h.private = $private "
            "CREATE (t)-[:AT {ttl: $ttl, rtt_ms: $rtt, inferred: false}]->(h)",
            {"tid": tid, "scope": scope_of(ip, site), "ip": ip, "ttl": ttl, "rtt": float(ttl),
             "family": 6 if ":" in ip else 4, "private": scope_of(ip, site) != "global"},
        )  # fmt: skip


# Sensor gw1: three LAN clients, five servers, server i last seen at 1000 + i.
GW1 = [
    Conn(f"10.0.0.{c}", f"198.51.100.{i}", dport=443 if i % 2 else 80, last_seen=1000 + i + c / 10)
    for i in range(1, 6)
    for c in range(1, 4)
]
# Sensor gw2: one IPv6 client to two servers; 2001:db8:1::9 is the newest of all.
GW2 = [
    Conn("fd00::1", "2001:db8:1::9", dport=22, last_seen=2000.0, refused=1, completed=0,
         attempts=1, rtt_ms=0.0),
    Conn("fd00::1", "198.51.100.1", dport=443, last_seen=1500.0, rtt_ms=80.0),
]  # fmt: skip


def load_scenario(url: str, graph: str) -> None:
    """Two sensors, eight servers, traces to 198.51.100.5 (the scenario the API tests check)."""
    ingest(url, graph, {"gw1": GW1, "gw2": GW2})
    # gw1's trace to 198.51.100.5: an older one, and the latest with a silent TTL 3.
    add_trace(
        url,
        graph,
        tid="t-old",
        sensor="gw1",
        dst="198.51.100.5",
        hops=["10.0.0.254", "192.0.2.1"],
        finished=900.0,
        reached=False,
    )
    add_trace(
        url,
        graph,
        tid="t5",
        sensor="gw1",
        dst="198.51.100.5",
        hops=["10.0.0.254", "203.0.113.1", "", "198.51.100.5"],
        finished=1010.0,
    )


def big_graph(n_servers: int, start: float | None = None) -> dict[str, list[Conn]]:
    """``n_servers`` servers (half IPv4, half IPv6), and over 2 * n_servers hosts in all: every
    server has its own client, and every tenth a second one, seen half a second earlier.
    Server ``i`` is last seen at ``start + i`` (default: ending now), so the newest servers are
    the highest ``i``."""
    if start is None:
        start = time.time() - n_servers
    conns = []
    for i in range(n_servers):
        server = f"198.18.{i // 250 % 256}.{i % 250 + 1}" if i % 2 else f"2001:db8::{i:x}"
        if i % 2 and i >= 2 * 256 * 250:
            server = f"2001:db8:1::{i:x}"
        client = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        conns.append(Conn(client, server, dport=443, last_seen=start + i))
        if i % 10 == 0:
            conns.append(Conn(f"fd00::{i:x}", server, dport=80, last_seen=start + i - 0.5))
    return {"big": conns}
