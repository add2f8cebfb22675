"""Two plugins' fragments merging one new CONNECTS edge in one batch make one edge.

FalkorDB (4.16) does not let a relationship MERGE see a relationship that an earlier clause of the
same query created: the first half of this file shows it on a real FalkorDB, so that the day it
changes, the work-around can go. ``GraphWrite.edges`` is that work-around: the store creates the
named edges before the batch query.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from net_gazer.collector import GraphWrite, SensorInfo
from net_gazer.collector.store import GraphStore
from net_gazer.v1 import wire_pb2

SENSOR = SensorInfo(id="s1", site="lab", epoch="e1")
ADD = """
FOREACH (r IN $rows |
  MERGE (c:Host {{scope: 'lab', ip: r.c}})
  MERGE (v:Host {{scope: 'lab', ip: r.s}})
  MERGE (c)-[e:CONNECTS {{sensor: $sid, dport: r.dport}}]->(v)
  SET e.{prop} = coalesce(e.{prop}, 0) + 1
)
"""
ROW = {"c": "192.0.2.1", "s": "198.51.100.1", "dport": 443}


@pytest.fixture
async def store(falkordb_url: str) -> AsyncIterator[GraphStore]:
    s = GraphStore.connect(falkordb_url, f"t_edges_{uuid.uuid4().hex[:8]}")
    await s.ensure_schema()
    await s.hello(SENSOR, wire_pb2.Hello(hostname="h", site="lab"))
    try:
        yield s
    finally:
        await s.graph.delete()
        await s.close()


async def edges(store: GraphStore) -> list[dict[str, object]]:
    res = await store.graph.ro_query("MATCH ()-[e:CONNECTS]->() RETURN properties(e)")
    return [dict(r[0]) for r in res.result_set]


def writes(named: bool) -> list[GraphWrite]:
    hosts = [(ROW["c"], 1.0), (ROW["s"], 1.0)]
    named_edges = [(ROW["c"], ROW["s"], ROW["dport"], 1.0)] if named else []
    return [
        GraphWrite(cypher=ADD.format(prop=p), rows=[ROW], hosts=hosts, edges=named_edges)
        for p in ("one", "two")
    ]


async def test_falkordb_merge_misses_an_edge_created_earlier_in_the_same_query(
    store: GraphStore,
) -> None:
    await store.apply(SENSOR, 1, writes(named=False))
    got = await edges(store)
    assert len(got) == 2, "FalkorDB merges relationships across clauses now: drop the work-around"


async def test_named_edges_are_made_first_so_both_fragments_merge_one(store: GraphStore) -> None:
    await store.apply(SENSOR, 1, writes(named=True))
    await store.apply(SENSOR, 2, writes(named=True))  # known edge: no extra query needed
    [edge] = await edges(store)
    assert (edge["one"], edge["two"]) == (2, 2)
    res = await store.graph.ro_query(
        "MATCH (h:Host) RETURN h.ip, h.first_seen, h.family, h.private ORDER BY h.ip"
    )
    assert [tuple(r) for r in res.result_set] == [
        ("192.0.2.1", 1.0, 4, True),
        ("198.51.100.1", 1.0, 4, True),
    ]
