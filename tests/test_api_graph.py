"""``/api/graph`` on a real FalkorDB, with the graph written through the ingest path: whole
paths, newest first, filters, collapse, ETags, JSON errors. Expected values come from the
scenario below, not from the API."""

from __future__ import annotations

from typing import Any

import pytest
from api_fixture import GW1, GW2, Conn, ingest, load_scenario
from flask.testing import FlaskClient

from net_gazer.collector.web import WebConfig, create_app


@pytest.fixture
def client(falkordb_url: str, graph_name: str) -> FlaskClient:
    load_scenario(falkordb_url, graph_name)
    app = create_app(WebConfig(graph_url=falkordb_url, graph=graph_name))
    return app.test_client()


def _get(client: FlaskClient, url: str, status: int = 200) -> Any:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.get_data(as_text=True))
    return r.json


def _nodes(body: Any) -> dict[str, dict[str, Any]]:
    return {n["data"]["id"]: n["data"] for n in body["nodes"]}


def _conn_edges(body: Any) -> set[tuple[str, str, int]]:
    out = set()
    for e in body["edges"]:
        d = e["data"]
        if d["kind"] == "connects":
            src = d["source"].rsplit("|", 1)[1]
            dst = d["target"].rsplit("|", 1)[1]
            out.add((src, dst, d["dport"]))
    return out


def test_whole_graph_shape(client: FlaskClient) -> None:
    body = _get(client, "/api/graph")
    assert set(body) == {"nodes", "edges", "meta"}
    expected = {(c.client, c.server, c.dport) for c in GW1 + GW2}
    assert _conn_edges(body) == expected
    nodes = _nodes(body)
    for e in body["edges"]:
        assert e["data"]["source"] in nodes and e["data"]["target"] in nodes
    assert body["meta"]["paths"] == 5 + 2 and body["meta"]["truncated"] is False


def test_limit_takes_whole_paths_newest_first(client: FlaskClient) -> None:
    body = _get(client, "/api/graph?limit=2")
    # Newest paths: gw2 -> 2001:db8:1::9 (2000), then gw2 -> 198.51.100.1 (1500).
    assert _conn_edges(body) == {("fd00::1", "2001:db8:1::9", 22), ("fd00::1", "198.51.100.1", 443)}
    assert body["meta"] == {**body["meta"], "paths": 2, "truncated": True}
    body = _get(client, "/api/graph?limit=3&sensor=gw1")
    # gw1's newest servers are .5, .4, .3, each with all three of its clients.
    assert _conn_edges(body) == {
        (f"10.0.0.{c}", f"198.51.100.{i}", 443 if i % 2 else 80)
        for i in (3, 4, 5)
        for c in (1, 2, 3)
    }


def test_path_hops_come_from_the_latest_trace(client: FlaskClient) -> None:
    body = _get(client, "/api/graph?sensor=gw1&limit=1")
    routes = [e["data"] for e in body["edges"] if e["data"]["kind"] == "route"]
    chain = [(r["source"], r["target"]) for r in routes]
    assert chain == [
        ("s|gw1", "h|gw1|10.0.0.254"),
        ("h|gw1|10.0.0.254", "h|gw1|203.0.113.1"),
        ("h|gw1|203.0.113.1", "h|gw1|198.51.100.5"),
    ]
    assert [r.get("gap") for r in routes[:2]] == [0, 0]
    assert routes[2]["reached"] is True
    nodes = _nodes(body)
    assert "h|gw1|192.0.2.1" not in nodes  # only in the older trace
    assert "destination" in nodes["h|gw1|198.51.100.5"]["roles"]
    assert nodes["s|gw1"]["kind"] == "sensor"


def test_filters(client: FlaskClient) -> None:
    v6 = _get(client, "/api/graph?q=dst:2001:db8::/32")
    assert _conn_edges(v6) == {("fd00::1", "2001:db8:1::9", 22)}
    assert _conn_edges(_get(client, "/api/graph?q=src:fd00::/8 port:443")) == {
        ("fd00::1", "198.51.100.1", 443)
    }
    assert _conn_edges(_get(client, "/api/graph?q=state:refused")) == {
        ("fd00::1", "2001:db8:1::9", 22)
    }
    assert _conn_edges(_get(client, "/api/graph?q=rtt>50")) == {("fd00::1", "198.51.100.1", 443)}
    port80 = _conn_edges(_get(client, "/api/graph?port=80&cidr=10.0.0.2/32"))
    assert port80 == {("10.0.0.2", f"198.51.100.{i}", 80) for i in (2, 4)}
    either = _conn_edges(
        _get(client, "/api/graph?q=port:22 or (sensor:gw1 not port:443 src:10.0.0.1)")
    )
    assert either == {("fd00::1", "2001:db8:1::9", 22)} | {
        ("10.0.0.1", f"198.51.100.{i}", 80) for i in (2, 4)
    }
    assert _get(client, "/api/graph?q=country:DE")["nodes"] == []


def test_collapse_merges_parallel_edges(client: FlaskClient) -> None:
    body = _get(client, "/api/graph?collapse=1&q=dst:198.51.100.1")
    conns = [e["data"] for e in body["edges"] if e["data"]["kind"] == "connects"]
    assert len(conns) == 4  # 10.0.0.1-3 (gw1) and fd00::1 (gw2), one edge each
    assert all(c["edges"] == 1 for c in conns)
    assert {c["sensors"][0] for c in conns} == {"gw1", "gw2"}


def test_etag_gives_304_until_the_graph_changes(
    client: FlaskClient, falkordb_url: str, graph_name: str
) -> None:
    first = client.get("/api/graph")
    tag = first.headers["ETag"]
    assert client.get("/api/graph", headers={"If-None-Match": tag}).status_code == 304
    other = client.get("/api/graph?limit=3")
    assert other.headers["ETag"] != tag
    ingest(falkordb_url, graph_name, {"gw3": [Conn("10.9.0.1", "198.51.100.77")]})
    again = client.get("/api/graph", headers={"If-None-Match": tag})
    assert again.status_code == 200 and again.headers["ETag"] != tag
    assert ("10.9.0.1", "198.51.100.77", 443) in _conn_edges(again.json)


@pytest.mark.parametrize(
    ("query", "position"),
    [("q=port:abc", 5), ("q=rtt>", 4), ("q=(port:1", 0), ("q=port:1 or", 7),
     ("q=src:10.0.0.0/33", 4), ("q=dst:2001:db8:::1", 4), ("q=bogus:1", 0),
     ("q=port:1 )", 7), ('q="open', 0)],
)  # fmt: skip
def test_malformed_filter_is_a_400_with_the_position(
    client: FlaskClient, query: str, position: int
) -> None:
    body = _get(client, f"/api/graph?{query}", 400)
    assert body["parameter"] == "q" and body["position"] == position
    assert body["error"] and "Traceback" not in body["error"]


def test_bad_shorthand_and_limit(client: FlaskClient) -> None:
    assert _get(client, "/api/graph?port=x", 400)["parameter"] == "port"
    assert _get(client, "/api/graph?limit=0", 400)["parameter"] == "limit"


def test_unknown_api_path_is_json_404(client: FlaskClient) -> None:
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.is_json and r.json["status"] == 404
    assert client.post("/api/graph").json["status"] == 405
