"""Viewer benchmark: time to first render and time to apply a filter in real headless Chromium, at
500, 5,000 and 20,000 nodes, for the two candidate renderers: Cytoscape.js (canvas, the reference)
and sigma.js (WebGL through graphology, here on SwiftShader: no GPU on this machine).

    .venv/bin/python bench/bench_viewer.py [--sizes 500,5000,20000] [--repeat 3]

The elements have /api/graph's shape (sensors, routes by TTL with silent gaps, connections) and are
made here: a handful of sensors, paths of 3-9 hops that share their first hops, and clients that
connect to the paths' destinations. Both renderers get the graph page's own model and paths layout
(collector/web/ui/src/model.js), so what differs is the renderer alone.
  first  - elements parsed -> model, layout, renderer, first frame painted;
  filter - the answer to a filter (every path through one sensor's first hop, about half the
           nodes) applied: the elements that left it removed -> next frame painted.
Medians of --repeat runs, each in a fresh page; the ratio is sigma / Cytoscape.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UI = ROOT / "collector" / "web" / "ui"
sys.path.insert(0, str(ROOT / "tests"))

from viewer_browser import launch, loopback  # noqa: E402

#: The reference first: Cytoscape.js as the page draws small graphs, then as it draws large ones
#: (haystack edges, no arrows, labels only zoomed in), then sigma.js.
RENDERERS = ("cytoscape", "cytoscape-fast", "sigma")

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bench</title>
<style>html,body{margin:0}#stage{width:1400px;height:860px}</style></head>
<body><div id="stage"></div><script src="renderers.js"></script></body></html>"""


def elements(n_nodes: int, seed: int = 7) -> tuple[dict[str, Any], dict[str, Any]]:
    """/api/graph-shaped elements of about ``n_nodes`` nodes, and the answer to the bench's filter
    (the paths whose first hop is sensor 0's first router)."""
    rnd = random.Random(seed)
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[str, dict[str, Any]] = {}
    keep_nodes: set[str] = set()
    keep_edges: set[str] = set()
    sensors = [f"s|gw{i}" for i in range(max(2, n_nodes // 2500))]
    for s in sensors:
        nodes[s] = {"id": s, "kind": "sensor", "label": s[2:]}
    serial = 0

    def host(prefix: str) -> str:
        nonlocal serial
        serial += 1
        ip = f"{prefix}.{serial // 65536 % 256}.{serial // 256 % 256}.{serial % 256}"
        nid = f"h|global|{ip}"
        nodes[nid] = {"id": nid, "kind": "host", "ip": ip, "label": ip}
        return nid

    firsts = {s: [host("10") for _ in range(3)] for s in sensors}
    while len(nodes) < n_nodes:
        s = rnd.choice(sensors)
        first = rnd.choice(firsts[s])
        chain = [s, first] + [host("198") for _ in range(rnd.randint(2, 8))]
        path_edges = []
        ttl = 1
        for a, b in itertools.pairwise(chain):
            gap = 1 if rnd.random() < 0.1 else 0
            ttl += gap
            eid = f"r|{s}|{a}|{b}"
            edges[eid] = {"id": eid, "kind": "route", "source": a, "target": b, "sensor": s[2:],
                          "gap": gap, "ttl": ttl, "rtt_ms": round(rnd.uniform(1, 300), 1)}  # fmt: skip
            path_edges.append(eid)
            ttl += 1
        dst = chain[-1]
        conn = []
        for _ in range(rnd.randint(0, 2)):
            c = host("192")
            eid = f"c|{s}|{c}|{dst}|443|tcp"
            edges[eid] = {"id": eid, "kind": "connects", "source": c, "target": dst, "sensor": s[2:],
                          "dport": 443, "count": rnd.randint(1, 50), "rtt_ms": round(rnd.uniform(1, 300), 1)}  # fmt: skip
            conn.append((c, eid))
        if s == sensors[0] and first == firsts[s][0]:
            keep_nodes.update(chain)
            keep_edges.update(path_edges)
            for c, eid in conn:
                keep_nodes.add(c)
                keep_edges.add(eid)
    full = {
        "nodes": [{"data": d} for d in nodes.values()],
        "edges": [{"data": d} for d in edges.values()],
    }
    filtered = {
        "nodes": [{"data": nodes[i]} for i in keep_nodes],
        "edges": [{"data": edges[i]} for i in keep_edges],
    }
    return full, filtered


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="500,5000,20000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limit", type=float, default=120, help="seconds before a run is given up")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    subprocess.run(["node", str(UI / "build.mjs"), "--bench"], check=True)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "index.html").write_text(PAGE)
        (work / "renderers.js").write_bytes((UI / "bench" / "dist" / "renderers.js").read_bytes())
        for n in sizes:
            full, filtered = elements(n)
            (work / f"g{n}.json").write_text(json.dumps(full))
            (work / f"f{n}.json").write_text(json.dumps(filtered))
        srv, port = serve(work)
        outside: list[str] = []
        results: dict[tuple[int, str], list[dict[str, float]]] = {}
        try:
            with sync_playwright() as pw:
                browser = launch(pw)
                try:
                    for n in sizes:
                        for renderer in RENDERERS:
                            for _ in range(args.repeat):
                                ctx = browser.new_context(viewport={"width": 1400, "height": 860})
                                ctx.route("**/*", lambda r: r.continue_() if loopback(r.request.url) else (outside.append(r.request.url), r.abort()))  # fmt: skip
                                page = ctx.new_page()
                                page.goto(f"http://127.0.0.1:{port}/index.html")
                                page.wait_for_function("window.benchReady === true")
                                page.evaluate(
                                    "([r, g, f]) => window.benchStart(r, g, f)",
                                    [renderer, f"g{n}.json", f"f{n}.json"],
                                )
                                try:
                                    page.wait_for_function(
                                        "window.benchResult !== null", timeout=args.limit * 1000
                                    )
                                    got = page.evaluate("window.benchResult")
                                except PlaywrightTimeout:
                                    got = {"error": f"over {args.limit} s"}
                                print(n, renderer, got, flush=True)
                                results.setdefault((n, renderer), []).append(got)
                                ctx.close()
                finally:
                    browser.close()
        finally:
            srv.shutdown()
    assert not outside, outside
    print(
        f"{'nodes':>7} {'edges':>7} {'renderer':<10} {'first ms':>9} {'filter ms':>10} {'shown':>6}"
    )
    for n in sizes:
        med: dict[str, tuple[float, float]] = {}
        for renderer in RENDERERS:
            runs = [r for r in results[(n, renderer)] if "error" not in r]
            if not runs:
                print(f"{n:>7} {'':>7} {renderer:<10} {results[(n, renderer)][0]['error']}")
                continue
            first = statistics.median(r["first"] for r in runs)
            filt = statistics.median(r["filter"] for r in runs)
            med[renderer] = (first, filt)
            r0 = runs[0]
            print(
                f"{r0['nodes']:>7} {r0['edges']:>7} {renderer:<10} {first:>9.0f} {filt:>10.0f} {r0['shown']:>6}"
            )
        c = med.get("cytoscape")
        for other in RENDERERS[1:]:
            if c and other in med:
                o = med[other]
                print(
                    f"{'':>7} {'':>7} {other[:7] + '/cy':<10} {o[0] / c[0]:>9.2f} {o[1] / c[1]:>10.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
