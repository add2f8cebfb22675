"""Backpressure and limits: a busy or slow collector pushes back with a clear status or slower
acks, never by growing without bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import redis
from conftest import PCAPS, connects, expected, run_sensor
from test_e2e import assert_graph_matches
from test_ingest import batch, exchange, expect_status, hello, row

from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.embedded import EmbeddedFalkorDB
from net_gazer.collector.ingest import IngestService, Limits, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.v1 import wire_pb2_grpc


async def serve(
    url: str, graph: str, limits: Limits, **options: Any
) -> tuple[grpc.aio.Server, str, IngestService, GraphStore]:
    store = GraphStore.connect(url, graph)
    await store.ensure_schema()
    service = IngestService(store, collector_plugins.load(graph), limits=limits)
    server = grpc.aio.server(options=list(options.items()))
    add_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}", service, store


@pytest.fixture
async def limited(falkordb_url: str, graph_name: str) -> AsyncIterator[Any]:
    made: list[tuple[grpc.aio.Server, GraphStore]] = []

    async def make(limits: Limits, **options: Any) -> tuple[str, IngestService]:
        server, address, service, store = await serve(falkordb_url, graph_name, limits, **options)
        made.append((server, store))
        return address, service

    try:
        yield make
    finally:
        for server, store in made:
            await server.stop(grace=None)
            await store.close()


def rows(n: int, offset: int = 0) -> list[Any]:
    return [row(client=f"10.2.{(i + offset) // 250}.{(i + offset) % 250 + 1}") for i in range(n)]


async def test_rate_limit_slows_acks_and_loses_nothing(
    limited: Any, falkordb_url: str, graph_name: str
) -> None:
    address, service = await limited(Limits(rows_per_second=500))
    start = time.monotonic()
    # 2,500 rows at 500 rows/s with a 1,000-row burst: at least 3 s, of which the writes take a
    # small part (the time they take earns tokens too), so most of it is the limiter's.
    acks = await exchange(
        address, [hello(), *(batch(i + 1, *rows(500, i * 500)) for i in range(5))]
    )
    elapsed = time.monotonic() - start
    assert [a.acked_seq for a in acks] == [0, 1, 2, 3, 4, 5]
    assert elapsed >= 2.9, elapsed
    assert service.stats.throttled_seconds > 1.5, service.stats
    assert len(connects(falkordb_url, graph_name)) == 2_500


async def test_too_many_sensors_are_turned_away(limited: Any) -> None:
    address, service = await limited(Limits(max_streams=1))
    async with grpc.aio.insecure_channel(address) as channel:
        first = wire_pb2_grpc.IngestStub(channel).Stream()
        await first.write(hello("a"))
        assert (await first.read()).acked_seq == 0  # stream one is open and held
        details = await expect_status(address, [hello("b")], grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert "serves 1 sensors already" in details
        first.cancel()
    assert service.stats.shed == 1


async def test_oversized_message_is_refused(
    limited: Any, falkordb_url: str, graph_name: str
) -> None:
    address, _ = await limited(Limits(), **{"grpc.max_receive_message_length": 64 * 1024})
    await expect_status(
        address, [hello(), batch(1, *rows(3000))], grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert connects(falkordb_url, graph_name) == {}


async def test_slow_graph_database_sheds_with_a_clear_status(
    tmp_path: Path, graph_name: str
) -> None:
    """One write slot, FalkorDB paused: the write holding the slot waits, the next sensor is
    refused with RESOURCE_EXHAUSTED after write_wait, and the first completes once the database
    is back."""
    db = EmbeddedFalkorDB(tmp_path / "db")
    db.start()
    try:
        server, address, service, store = await serve(
            db.url, graph_name, Limits(max_writes=1, write_wait=0.5)
        )
        try:
            # Both sensors say hello first; then the database stops taking writes for 3 s.
            async with grpc.aio.insecure_channel(address) as channel:
                stub = wire_pb2_grpc.IngestStub(channel)
                a, b = stub.Stream(), stub.Stream()
                for call, name in ((a, "a"), (b, "b")):
                    await call.write(hello(name))
                    assert (await call.read()).acked_seq == 0
                redis.Redis(unix_socket_path=str(db.socket)).execute_command(
                    "CLIENT", "PAUSE", "3000", "WRITE"
                )
                await a.write(batch(1, row(), sensor="a"))  # takes the only write slot and waits
                await asyncio.sleep(0.3)
                await b.write(batch(1, row(), sensor="b"))
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await b.read()
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "too slow" in str(info.value.details())
                ack = await asyncio.wait_for(a.read(), timeout=20)
                assert ack.acked_seq == 1
            assert service.stats.shed == 1
        finally:
            await server.stop(grace=None)
            await store.close()
    finally:
        db.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_paused_database_slows_acks_without_exhausting_collector_memory(
    collector_factory: Any, tmp_path: Path
) -> None:
    db = EmbeddedFalkorDB(tmp_path / "db")
    db.start()
    try:
        c = collector_factory("--graph-url", db.url).start()
        assert c.proc is not None
        before = rss_kib(c.proc.pid)
        redis.Redis(unix_socket_path=str(db.socket)).execute_command(
            "CLIENT", "PAUSE", "5000", "WRITE"
        )
        start = time.monotonic()
        # Many small batches (one per 10 ms of packet time) pushed as fast as the sensor can.
        import threading

        peak = [before]
        done = threading.Event()

        def watch() -> None:
            assert c.proc is not None
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(c.proc.pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = run_sensor(
                "-r",
                str(PCAPS / "sample.pcap"),
                "--collector",
                c.address,
                "--flush-interval",
                "0.01",
                "--sensor-id",
                "slow",
            )
        finally:
            done.set()
            watcher.join()
        elapsed = time.monotonic() - start
        assert result.returncode == 0, result.stderr
        assert elapsed >= 4.5, f"acks should have waited for the paused database ({elapsed:.1f} s)"
        growth_mib = (peak[0] - before) / 1024
        print(
            f"collector RSS before {before / 1024:.1f} MiB, peak {peak[0] / 1024:.1f} MiB, growth {growth_mib:.1f} MiB"
        )
        assert growth_mib < 64, growth_mib
        assert_graph_matches(db.url, "net_gazer", expected("sample.expected.json"))
    finally:
        db.stop()
