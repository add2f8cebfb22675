"""The collector's HTTP side with a real FalkorDB behind it (Flask test client, no mocks)."""

from __future__ import annotations

import asyncio

from net_gazer.collector.graphwrite import SensorInfo
from net_gazer.collector.store import GraphStore
from net_gazer.collector.web import WebConfig, create_app
from net_gazer.v1 import wire_pb2

HOSTILE = "<script>alert('x')</script>&\"gw\""


async def _hello(url: str, graph: str) -> None:
    store = GraphStore.connect(url, graph)
    try:
        await store.ensure_schema()
        await store.hello(
            SensorInfo(id=HOSTILE, site="s", epoch="e"),
            wire_pb2.Hello(hostname=HOSTILE, version="0.1.0"),
        )
    finally:
        await store.close()


def test_pages_are_served_with_a_same_origin_policy(falkordb_url: str, graph_name: str) -> None:
    asyncio.run(_hello(falkordb_url, graph_name))
    app = create_app(WebConfig(graph_url=falkordb_url, graph=graph_name))
    client = app.test_client()
    for path, title in (
        ("/", "Graph"),
        ("/map", "Map"),
        ("/connections", "Connections"),
        ("/sensors", "Sensors"),
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        html = page.get_data(as_text=True)
        assert f"<title>{title} · net-gazer</title>" in html
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        # sensor ids reach the pages only through the JSON API, never pasted into the HTML
        assert "<script>alert" not in html


def test_healthz_and_connections(falkordb_url: str, graph_name: str) -> None:
    app = create_app(
        WebConfig(graph_url=falkordb_url, graph=graph_name, status=lambda: {"batches": 7})
    )
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json == {
        "status": "ok",
        "graph": True,
        "batches": 7,
    }
    empty = client.get("/api/connections")
    assert empty.status_code == 200 and empty.json == {
        "connections": [],
        "count": 0,
        "masked": False,
    }
    assert client.get("/api/connections?limit=x").status_code == 400
    bad = client.get("/api/connections?format=xml")
    assert bad.status_code == 400 and "not supported" in bad.json["error"]


def test_healthz_reports_an_unreachable_graph(tmp_path: object) -> None:
    app = create_app(WebConfig(graph_url="unix:///nonexistent/falkordb.sock", graph="g"))
    health = app.test_client().get("/healthz")
    assert health.status_code == 503 and health.json["status"] == "degraded"
