"""The ingest service in-process: a real grpc.aio server on port 0, a real channel, real FalkorDB.
Asserts the delivery rules and the status codes of the error paths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from conftest import connects, graph_query

from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.ingest import IngestService, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.v1 import wire_pb2, wire_pb2_grpc


@pytest.fixture
async def ingest(falkordb_url: str, graph_name: str) -> AsyncIterator[tuple[str, GraphStore]]:
    store = GraphStore.connect(falkordb_url, graph_name)
    await store.ensure_schema()
    service = IngestService(store, collector_plugins.load(graph_name))
    server = grpc.aio.server()
    add_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", store
    finally:
        await server.stop(grace=None)
        await store.close()


def hello(sensor: str = "s1", epoch: str = "e1", **kw: Any) -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(sensor_id=sensor, epoch=epoch, seq=0)
    env.hello.CopyFrom(wire_pb2.Hello(hostname="h", machine_id="m", protocol_minor=1, **kw))
    return env


def batch(
    seq: int, *rows: wire_pb2.HandshakeRow, sensor: str = "s1", epoch: str = "e1"
) -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(sensor_id=sensor, epoch=epoch, seq=seq)
    env.batch.handshakes.extend(rows)
    return env


def row(
    client: str = "192.0.2.1", server: str = "198.51.100.1", dport: int = 443, n: int = 1
) -> wire_pb2.HandshakeRow:
    return wire_pb2.HandshakeRow(
        client=client, server=server, dport=dport, completed=n, attempts=n, first_seen=1.0, last_seen=2.0,
        rtt=wire_pb2.RttAggregate(sum_ms=5.0 * n, min_ms=5.0, max_ms=5.0, samples=n),
    )  # fmt: skip


async def exchange(address: str, envelopes: list[wire_pb2.Envelope]) -> list[wire_pb2.Ack]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = wire_pb2_grpc.IngestStub(channel).Stream()
        acks: list[wire_pb2.Ack] = []
        for env in envelopes:
            await call.write(env)
            ack = await call.read()
            assert isinstance(ack, wire_pb2.Ack)
            acks.append(ack)
        await call.done_writing()
        return acks


async def expect_status(
    address: str, envelopes: list[wire_pb2.Envelope], code: grpc.StatusCode
) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await exchange(address, envelopes)
    assert info.value.code() == code, info.value.details()
    return str(info.value.details())


async def test_hello_then_batches_are_acked_and_applied(
    ingest: tuple[str, GraphStore], falkordb_url: str, graph_name: str
) -> None:
    address, _ = ingest
    acks = await exchange(address, [hello(), batch(1, row()), batch(2, row(n=2))])
    assert [(a.epoch, a.acked_seq) for a in acks] == [("e1", 0), ("e1", 1), ("e1", 2)]
    edge = connects(falkordb_url, graph_name)[("192.0.2.1", "198.51.100.1", 443)]
    assert edge["count"] == 3 and edge["rtt_samples"] == 3


async def test_replayed_batch_is_acked_but_not_applied_twice(
    ingest: tuple[str, GraphStore], falkordb_url: str, graph_name: str
) -> None:
    address, store = ingest
    await exchange(address, [hello(), batch(1, row())])
    # Reconnect: the hello answers the stored mark; a resent seq 1 is acknowledged and skipped.
    acks = await exchange(address, [hello(), batch(1, row()), batch(2, row())])
    assert [a.acked_seq for a in acks] == [1, 1, 2]
    assert connects(falkordb_url, graph_name)[("192.0.2.1", "198.51.100.1", 443)]["count"] == 2
    assert store.stats.duplicates == 1


async def test_new_epoch_starts_from_zero(
    ingest: tuple[str, GraphStore], falkordb_url: str, graph_name: str
) -> None:
    address, _ = ingest
    await exchange(address, [hello(), batch(1, row()), batch(2, row())])
    acks = await exchange(address, [hello(epoch="e2"), batch(1, row(), epoch="e2")])
    assert [a.acked_seq for a in acks] == [0, 1]
    assert connects(falkordb_url, graph_name)[("192.0.2.1", "198.51.100.1", 443)]["count"] == 3


async def test_gap_moves_the_mark_and_is_counted(
    ingest: tuple[str, GraphStore], falkordb_url: str, graph_name: str
) -> None:
    address, _ = ingest
    gap = wire_pb2.Envelope(sensor_id="s1", epoch="e1", seq=5)
    gap.gap.CopyFrom(
        wire_pb2.Gap(first_seq=2, lost_envelopes=4, lost_items=40, reason="buffer full")
    )
    acks = await exchange(address, [hello(), batch(1, row()), gap, batch(6, row())])
    assert [a.acked_seq for a in acks] == [0, 1, 5, 6]
    [[acked, gaps, lost, items]] = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (s:Sensor {id: 's1'}) RETURN s.acked_seq, s.gaps, s.lost_envelopes, s.lost_items",
    )
    assert (acked, gaps, lost, items) == (6, 1, 4, 40)


async def test_first_envelope_must_be_hello(ingest: tuple[str, GraphStore]) -> None:
    address, _ = ingest
    details = await expect_status(address, [batch(1, row())], grpc.StatusCode.INVALID_ARGUMENT)
    assert "hello" in details


async def test_writing_as_another_sensor_is_denied(
    ingest: tuple[str, GraphStore], falkordb_url: str, graph_name: str
) -> None:
    address, _ = ingest
    await expect_status(
        address, [hello(), batch(1, row(), sensor="intruder")], grpc.StatusCode.PERMISSION_DENIED
    )
    assert graph_query(falkordb_url, graph_name, "MATCH ()-[e:CONNECTS]->() RETURN count(e)") == [
        [0]
    ]


async def test_hole_in_sequence_fails_precondition(
    ingest: tuple[str, GraphStore], falkordb_url: str, graph_name: str
) -> None:
    address, _ = ingest
    details = await expect_status(
        address, [hello(), batch(3, row())], grpc.StatusCode.FAILED_PRECONDITION
    )
    assert "missing" in details
    assert graph_query(falkordb_url, graph_name, "MATCH ()-[e:CONNECTS]->() RETURN count(e)") == [
        [0]
    ]


async def test_invalid_sensor_id_is_rejected(ingest: tuple[str, GraphStore]) -> None:
    address, _ = ingest
    await expect_status(address, [hello(sensor="")], grpc.StatusCode.INVALID_ARGUMENT)
    await expect_status(address, [hello(sensor="x" * 200)], grpc.StatusCode.INVALID_ARGUMENT)


async def test_too_old_protocol_is_refused(ingest: tuple[str, GraphStore]) -> None:
    address, _ = ingest
    env = hello()
    env.hello.protocol_minor = 0
    # Minor 0 is one older than 1: still accepted (one minor version of slack).
    acks = await exchange(address, [env])
    assert acks[0].acked_seq == 0


async def test_many_distinct_keys_in_one_batch_keep_their_own_properties(
    ingest: tuple[str, GraphStore], falkordb_url: str, graph_name: str
) -> None:
    """FalkorDB issue #988 reported properties landing on the wrong relationship after
    UNWIND/FOREACH ... MERGE. Check every edge of a large batch, row by row."""
    address, _ = ingest
    rows = [
        row(
            client=f"10.0.{i // 250}.{i % 250 + 1}",
            server="198.51.100.7",
            dport=1000 + i % 7,
            n=i % 5 + 1,
        )
        for i in range(1500)
    ]
    await exchange(address, [hello(), batch(1, *rows)])
    got = connects(falkordb_url, graph_name)
    assert len(got) == len(rows)
    for r in rows:
        edge = got[(r.client, r.server, r.dport)]
        assert (
            edge["count"] == r.completed
            and edge["attempts"] == r.attempts
            and edge["rtt_samples"] == r.rtt.samples
        )


async def test_two_machines_claiming_one_sensor_id_are_flagged(
    ingest: tuple[str, GraphStore], falkordb_url: str, graph_name: str
) -> None:
    address, _ = ingest
    await exchange(address, [hello()])
    await exchange(address, [hello()])  # the same machine again: no conflict
    other = hello(epoch="e2")
    other.hello.machine_id = "another-machine"
    await exchange(address, [other])
    [[conflicts, machine]] = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (s:Sensor {id: 's1'}) RETURN s.machine_id_conflicts, s.machine_id",
    )
    assert (conflicts, machine) == (1, "another-machine")
