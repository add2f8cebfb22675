"""Limits on a graph of 100k hosts, loaded through the public ingest path (a real gRPC ingest
server, the real store and plugins, real FalkorDB). The expected paths come from the scenario's
definition (``api_fixture.big_graph``: server i is last seen at start + i)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from api_fixture import big_graph, ingest
from conftest import graph_query
from flask.testing import FlaskClient

from net_gazer.collector.store import GraphStore
from net_gazer.collector.web import WebConfig, create_app

SERVERS = 48_000  # and as many clients, and a second client for every tenth: 100,800 hosts


@pytest.fixture(scope="module")
def big(falkordb_url: str) -> Iterator[tuple[FlaskClient, list[Any]]]:
    graph = "t_scale"

    async def schema() -> None:
        store = GraphStore.connect(falkordb_url, graph)
        await store.ensure_schema()
        await store.close()

    asyncio.run(schema())
    conns = big_graph(SERVERS)["big"]
    ingest(falkordb_url, graph, {"big": conns}, batch_size=5000)
    try:
        client = create_app(WebConfig(graph_url=falkordb_url, graph=graph)).test_client()
        yield client, conns
    finally:
        graph_query(falkordb_url, graph, "MATCH (n) DETACH DELETE n")


def _servers(body: Any) -> dict[str, set[str]]:
    """Server address -> its clients, from the connects edges."""
    out: dict[str, set[str]] = {}
    for e in body["edges"]:
        d = e["data"]
        if d["kind"] == "connects":
            out.setdefault(d["target"].rsplit("|", 1)[1], set()).add(d["source"].rsplit("|", 1)[1])
    return out


def _expected(conns: list[Any], n: int, keep: Any = lambda c: True) -> dict[str, set[str]]:
    """The ``n`` newest servers among the connections ``keep`` accepts, with their clients."""
    by_server: dict[str, tuple[float, set[str]]] = {}
    for c in conns:
        if not keep(c):
            continue
        last, clients = by_server.get(c.server, (0.0, set()))
        by_server[c.server] = (max(last, c.last_seen), clients | {c.client})
    newest = sorted(by_server.items(), key=lambda kv: kv[1][0], reverse=True)[:n]
    return {server: clients for server, (_, clients) in newest}


@pytest.mark.timeout(900)
def test_a_100k_host_graph_is_there(big: tuple[FlaskClient, list[Any]], falkordb_url: str) -> None:
    [[hosts]] = graph_query(falkordb_url, "t_scale", "MATCH (h:Host) RETURN count(h)")
    assert hosts == SERVERS * 2 + SERVERS // 10


@pytest.mark.parametrize("limit", [1, 50, 200, 5000])
def test_limit_cuts_whole_paths_newest_first(
    big: tuple[FlaskClient, list[Any]], limit: int
) -> None:
    client, conns = big
    body = client.get(f"/api/graph?limit={limit}").json
    assert body["meta"]["paths"] == limit and body["meta"]["truncated"] is True
    assert _servers(body) == _expected(conns, limit)


def test_filtered_limit(big: tuple[FlaskClient, list[Any]]) -> None:
    client, conns = big
    body = client.get("/api/graph?limit=20&q=port:80").json
    assert _servers(body) == _expected(conns, 20, lambda c: c.dport == 80)
    v6 = client.get("/api/graph?limit=30&q=dst:2001:db8::/32 port:443").json
    net = ipaddress.ip_network("2001:db8::/32")
    assert _servers(v6) == _expected(
        conns,
        30,
        lambda c: c.dport == 443 and ":" in c.server and ipaddress.ip_address(c.server) in net,
    )


def test_connections_limit(big: tuple[FlaskClient, list[Any]]) -> None:
    client, conns = big
    rows = client.get("/api/connections?limit=1000").json["connections"]
    newest = sorted(conns, key=lambda c: c.last_seen, reverse=True)[:1000]
    assert [(r["client"], r["server"]) for r in rows] == [(c.client, c.server) for c in newest]
