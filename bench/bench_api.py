"""Benchmark the query API on a graph of about 100k hosts, loaded through the public ingest path.

    .venv/bin/python bench/bench_api.py [--servers 50000] [--runs 30]

It starts an embedded FalkorDB, writes the graph of ``tests/api_fixture.py``'s ``big_graph``
(every server its own client, every tenth a second one: 2.1 hosts per server) through a real
gRPC ingest server, serves the API with waitress on a free loopback port, and times, in the same
run:

- ``GET /api/graph`` at its default limit (p50/p95), against the reference: FalkorDB alone
  answering the query that reads the newest edges by sorting every one of them;
- ``GET /api/graph?q=...`` with a filter applied in Python;
- ``GET /api/connections?format=xlsx`` for every connection (p50/p95 of a few runs), against the
  reference: XlsxWriter alone writing the same number of rows and columns of constant data.

Times are wall-clock on a shared machine: the ratios are the figures to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from api_fixture import big_graph, ingest  # noqa: E402

from net_gazer.collector.embedded import EmbeddedFalkorDB  # noqa: E402
from net_gazer.collector.store import GraphStore  # noqa: E402
from net_gazer.collector.web import WebConfig, create_app  # noqa: E402
from net_gazer.collector.web import serve as web_serve  # noqa: E402

REFERENCE_CYPHER = (
    "MATCH (c:Host)-[e:CONNECTS]->(s:Host) RETURN c.ip, s.ip, e.sensor, e.dport, e.last_seen "
    "ORDER BY e.last_seen DESC LIMIT 200"
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    return out


def report(name: str, times: list[float], ref: list[float] | None = None) -> None:
    p50, p95 = pct(times, 0.5) * 1000, pct(times, 0.95) * 1000
    line = f"{name:44s} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms"
    if ref:
        line += f"  (reference p50 {pct(ref, 0.5) * 1000:.1f} ms, ratio {p50 / (pct(ref, 0.5) * 1000):.2f})"
    print(line, flush=True)


def xlsx_reference(rows: int, cols: int) -> None:
    import xlsxwriter

    with tempfile.NamedTemporaryFile(suffix=".xlsx") as f:
        book = xlsxwriter.Workbook(f.name, {"constant_memory": True})
        sheet = book.add_worksheet()
        for r in range(rows):
            for c in range(cols):
                sheet.write_number(r, c, r + c)
        book.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--xlsx-runs", type=int, default=3)
    args = p.parse_args()
    data = Path(tempfile.mkdtemp(prefix="ng-bench-api-"))
    db = EmbeddedFalkorDB(data)
    db.start()
    try:

        async def schema() -> None:
            store = GraphStore.connect(db.url, "bench")
            await store.ensure_schema()
            await store.close()

        asyncio.run(schema())
        conns = big_graph(args.servers)
        start = time.perf_counter()
        ingest(db.url, "bench", conns, batch_size=5000)
        took = time.perf_counter() - start
        rows = len(conns["big"])
        from falkordb import FalkorDB

        g = FalkorDB(unix_socket_path=db.url.removeprefix("unix://")).select_graph("bench")
        [[hosts]] = g.ro_query("MATCH (h:Host) RETURN count(h)").result_set
        print(f"graph: {hosts} hosts, {rows} connections, ingested in {took:.1f} s "
              f"({rows / took:.0f} rows/s)", flush=True)  # fmt: skip
        app = create_app(WebConfig(graph_url=db.url, graph="bench"))
        port, stop = web_serve.start(app, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"

        def get(path: str) -> bytes:
            with urllib.request.urlopen(base + path, timeout=600) as r:
                return bytes(r.read())

        get("/api/graph")  # warm: connections, caches
        ref = timed(lambda: g.ro_query(REFERENCE_CYPHER), args.runs)
        report("/api/graph (default limit 200)", timed(lambda: get("/api/graph"), args.runs), ref)
        report("/api/graph?q=dst:2001:db8::/32 port:443",
               timed(lambda: get("/api/graph?q=dst:2001:db8::/32%20port:443"), args.runs), ref)  # fmt: skip
        report("/api/graph?limit=1000", timed(lambda: get("/api/graph?limit=1000"), 10), ref)
        report("/api/connections (json, 1000 rows)",
               timed(lambda: get("/api/connections"), 10))  # fmt: skip
        xref = timed(lambda: xlsx_reference(rows, 35), args.xlsx_runs)
        report(f"/api/connections?format=xlsx ({rows} rows)",
               timed(lambda: get("/api/connections?format=xlsx"), args.xlsx_runs), xref)  # fmt: skip
        stop()
    finally:
        db.stop()


if __name__ == "__main__":
    main()
