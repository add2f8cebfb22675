"""Retention, locks and the schema version on a real FalkorDB, with a controlled clock.

The graphs are built by the tests with known ages, so what must go and what must stay follows
from each test's own definition; the order of the steps is checked by stopping a pass after a
fixed number of queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import graph_query

from net_gazer.collector import lifecycle
from net_gazer.collector.store import INDEXES, REL_INDEXES, SCHEMA_VERSION, GraphStore

DAY = 86400.0
NOW = 1_800_000_000.0  # the controlled clock: "now" for every pass below
OLD, NEW = NOW - 40 * DAY, NOW - 1 * DAY


@pytest.fixture
async def store(falkordb_url: str, graph_name: str) -> AsyncIterator[GraphStore]:
    s = GraphStore.connect(falkordb_url, graph_name)
    await s.ensure_schema()
    try:
        yield s
    finally:
        await s.close()


def build(url: str, graph: str, traces: int = 5, hops: int = 4) -> None:
    """One old and one new world: per age, hosts with CONNECTS and ROUTE edges, ``traces``
    traces of ``hops`` AT edges each, and a named host. A sensor's ORIGIN host is old but
    still linked, and so stays."""
    for tag, ts in (("old", OLD), ("new", NEW)):
        graph_query(
            url, graph,
            "CREATE (c:Host {scope: 'global', ip: $tag + '-c', last_seen: $ts}), "
            "(v:Host {scope: 'global', ip: $tag + '-v', last_seen: $ts, name: 'x.example', "
            "names: ['x.example'], name_seen: $ts, name_source: 'sni'}), "
            "(c)-[:CONNECTS {sensor: 's1', dport: 443, proto: 'tcp', last_seen: $ts}]->(v), "
            "(c)-[:ROUTE {sensor: 's1', gap: 0, last_seen: $ts}]->(v)",
            {"tag": tag, "ts": ts},
        )  # fmt: skip
        for i in range(traces):
            graph_query(
                url, graph,
                "MATCH (v:Host {ip: $tag + '-v'}) "
                "CREATE (t:Trace {id: $tag + toString($i), sensor: 's1', dst: v.ip, started: $ts, "
                "finished: $ts})-[:TO]->(v) "
                "WITH t UNWIND range(1, $hops) AS ttl "
                "CREATE (t)-[:AT {ttl: ttl}]->(:Host {scope: 'global', ip: $tag + toString($i) + "
                "'-h' + toString(ttl), last_seen: $ts})",
                {"tag": tag, "ts": ts, "i": i, "hops": hops},
            )  # fmt: skip
    graph_query(
        url, graph,
        "CREATE (:Sensor {id: 's1'})-[:ORIGIN]->(:Host {scope: 'global', ip: 'origin', "
        "last_seen: $ts})",
        {"ts": OLD},
    )  # fmt: skip


def counts(url: str, graph: str) -> dict[str, int]:
    q = {
        "traces": "MATCH (t:Trace) RETURN count(t)",
        "at": "MATCH ()-[a:AT]->() RETURN count(a)",
        "connects": "MATCH ()-[e:CONNECTS]->() RETURN count(e)",
        "routes": "MATCH ()-[e:ROUTE]->() RETURN count(e)",
        "hosts": "MATCH (h:Host) RETURN count(h)",
        "names": "MATCH (h:Host) WHERE h.names IS NOT NULL RETURN count(h)",
    }
    return {k: graph_query(url, graph, v)[0][0] for k, v in q.items()}


async def test_a_pass_deletes_what_is_older_than_n_days_and_keeps_the_rest(
    store: GraphStore, falkordb_url: str, graph_name: str
) -> None:
    build(falkordb_url, graph_name)
    result = await lifecycle.retention_pass(
        store.graph, days=30, owner="me", batch=3, now=NOW, clock=lambda: NOW
    )
    assert result.ran and result.cutoff == NOW - 30 * DAY
    # Per age: 5 traces x 4 AT edges (and their 20 hop hosts), 1 CONNECTS, 1 ROUTE, 2 hosts.
    assert result.deleted == {
        "at": 20, "traces": 5, "connects": 1, "routes": 1, "hosts": 22, "names": 0,
    }  # fmt: skip
    assert counts(falkordb_url, graph_name) == {
        "traces": 5, "at": 20, "connects": 1, "routes": 1, "hosts": 2 + 20 + 1, "names": 1,
    }  # fmt: skip
    left = graph_query(
        falkordb_url, graph_name, "MATCH (h:Host) WHERE h.ip STARTS WITH 'old' RETURN h.ip"
    )
    assert left == []
    assert graph_query(
        falkordb_url, graph_name, "MATCH (h:Host {ip: 'origin'}) RETURN count(h)"
    ) == [[1]]
    [[at, cutoff, deleted]] = graph_query(
        falkordb_url, graph_name,
        "MATCH (x:Schema {id: 'net_gazer'}) RETURN x.retention_at, x.retention_cutoff, x.retention_deleted",
    )  # fmt: skip
    assert (at, cutoff) == (NOW, NOW - 30 * DAY) and "traces=5" in deleted


async def test_old_names_go_from_hosts_that_stay(
    store: GraphStore, falkordb_url: str, graph_name: str
) -> None:
    graph_query(
        falkordb_url, graph_name,
        "CREATE (a:Host {ip: 'a', last_seen: $new, name: 'old.example', names: ['old.example'], "
        "name_seen: $old})-[:CONNECTS {last_seen: $new}]->(:Host {ip: 'b', last_seen: $new})",
        {"new": NEW, "old": OLD},
    )  # fmt: skip
    result = await lifecycle.retention_pass(
        store.graph, days=30, owner="me", now=NOW, clock=lambda: NOW
    )
    assert result.deleted["names"] == 1 and result.deleted["hosts"] == 0
    assert graph_query(
        falkordb_url, graph_name, "MATCH (h:Host {ip: 'a'}) RETURN h.name, h.names"
    ) == [[None, None]]


async def test_batches_are_bounded_and_run_in_the_issue_s_order(
    store: GraphStore, falkordb_url: str, graph_name: str
) -> None:
    build(falkordb_url, graph_name, traces=8, hops=6)
    # A pass cut short after a few queries has deleted AT edges only, never a Trace first.
    cut = await lifecycle.retention_pass(
        store.graph, days=30, owner="me", batch=4, now=NOW, clock=lambda: NOW, max_queries=3
    )
    assert cut.queries == 3 and set(cut.deleted) == {
        "at",
        "traces",
        "connects",
        "routes",
        "hosts",
        "names",
    }
    assert 0 < cut.deleted["at"] <= 3 * 4 and cut.largest <= 4
    assert cut.deleted["traces"] == 0 and cut.deleted["hosts"] == 0
    assert counts(falkordb_url, graph_name)["traces"] == 16
    # The whole pass: no query deleted more than the batch.
    full = await lifecycle.retention_pass(
        store.graph, days=30, owner="me", batch=4, now=NOW, clock=lambda: NOW
    )
    assert full.deleted["at"] == 8 * 6 - cut.deleted["at"] and full.deleted["traces"] == 8
    assert full.largest == 4 and full.deleted["hosts"] == 8 * 6 + 2
    assert counts(falkordb_url, graph_name)["traces"] == 8


async def test_a_held_lock_keeps_a_second_collector_out_until_its_lease_ends(
    store: GraphStore,
) -> None:
    g = store.graph
    assert await lifecycle.acquire(g, "retention", "a", lease=60, now=NOW)
    assert not await lifecycle.acquire(g, "retention", "b", lease=60, now=NOW + 30)
    assert await lifecycle.acquire(g, "retention", "a", lease=60, now=NOW + 30)  # renewed
    assert not await lifecycle.acquire(g, "retention", "b", lease=60, now=NOW + 80)
    assert await lifecycle.acquire(g, "retention", "b", lease=60, now=NOW + 91)  # a died
    assert await lifecycle.holder(g, "retention") == ("b", NOW + 151)
    await lifecycle.release(g, "retention", "a")  # not a's any more: nothing changes
    assert await lifecycle.holder(g, "retention") == ("b", NOW + 151)
    await lifecycle.release(g, "retention", "b")
    assert await lifecycle.holder(g, "retention") == (None, None)
    # While b holds it, a's pass does nothing.
    assert await lifecycle.acquire(g, "retention", "b", lease=1e9, now=NOW)
    out = await lifecycle.retention_pass(g, days=30, owner="a", now=NOW, clock=lambda: NOW)
    assert not out.ran and out.deleted == {}


async def test_concurrent_acquires_give_the_lock_to_exactly_one(
    falkordb_url: str, graph_name: str
) -> None:
    stores = [GraphStore.connect(falkordb_url, graph_name) for _ in range(8)]
    try:
        # Collectors starting together: one Schema node, whatever the interleaving.
        await asyncio.gather(*(s.ensure_schema() for s in stores))
        assert graph_query(falkordb_url, graph_name, "MATCH (x:Schema) RETURN count(x)") == [[1]]
        got = await asyncio.gather(*(
            lifecycle.acquire(s.graph, "migration", f"o{i}", lease=60, now=NOW)
            for i, s in enumerate(stores)
        ))  # fmt: skip
    finally:
        for s in stores:
            await s.close()
    assert sum(got) == 1


async def test_a_pass_is_due_only_when_the_last_one_by_any_collector_is_old(
    store: GraphStore,
) -> None:
    clock = [NOW]
    first = await lifecycle.retention_due(
        store.graph, days=30, owner="a", interval=3600, clock=lambda: clock[0]
    )
    assert first is not None and first.ran
    clock[0] = NOW + 600
    assert await lifecycle.retention_due(
        store.graph, days=30, owner="b", interval=3600, clock=lambda: clock[0]
    ) is None  # fmt: skip
    clock[0] = NOW + 3601
    again = await lifecycle.retention_due(
        store.graph, days=30, owner="b", interval=3600, clock=lambda: clock[0]
    )
    assert again is not None and again.ran


async def test_two_collectors_migrating_at_once_run_each_step_once(
    store: GraphStore, falkordb_url: str, graph_name: str
) -> None:
    graph_query(falkordb_url, graph_name, "MATCH (x:Schema) SET x.version = 1")
    runs: list[str] = []

    def step(tag: str) -> Any:
        async def run(graph: Any) -> int:
            runs.append(tag)
            await asyncio.sleep(0.3)  # long enough for the other collector to try meanwhile
            return 1

        return run

    stores = [GraphStore.connect(falkordb_url, graph_name) for _ in range(2)]
    try:
        got = await asyncio.gather(*(
            lifecycle.migrate(s.graph, {2: step("two"), 3: step("three")}, 3, owner=f"c{i}",
                              poll=0.05)
            for i, s in enumerate(stores)
        ))  # fmt: skip
    finally:
        for s in stores:
            await s.close()
    assert runs == ["two", "three"]
    assert sorted(got, key=len) == [{}, {2: 1, 3: 1}]
    assert graph_query(
        falkordb_url, graph_name, "MATCH (x:Schema) RETURN x.version, x.lock_migration"
    ) == [[3, None]]


async def test_every_lookup_key_has_an_index(store: GraphStore) -> None:
    res = await store.graph.ro_query("CALL db.indexes() YIELD label, properties")
    have = {(label, p) for label, props in res.result_set for p in props}
    assert set(INDEXES) | set(REL_INDEXES) <= have
    assert ("Trace", "finished") in have and ("ROUTE", "last_seen") in have
    # Left to the operator: an index on it changes FalkorDB's in-query MERGE and slows writes.
    assert ("CONNECTS", "last_seen") not in have
    res = await store.graph.query("MATCH (x:Schema) RETURN x.version")
    assert res.result_set == [[SCHEMA_VERSION]]


def test_a_collector_with_retention_days_applies_them(
    collector_factory: Any, falkordb_url: str, graph_name: str
) -> None:
    import time

    now = time.time()
    for tag, ts in (("old", now - 40 * DAY), ("new", now - DAY)):
        graph_query(
            falkordb_url, graph_name,
            "CREATE (t:Trace {id: $tag, sensor: 's1', dst: 'd', started: $ts, finished: $ts})"
            "-[:AT {ttl: 1}]->(:Host {scope: 'global', ip: $tag, last_seen: $ts})",
            {"tag": tag, "ts": ts},
        )  # fmt: skip
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--retention-days", "30"
    ).start()
    deadline = time.monotonic() + 20
    # The pass is over once the Schema node records it (hosts go after traces).
    while time.monotonic() < deadline:
        done = graph_query(falkordb_url, graph_name, "MATCH (x:Schema) RETURN x.retention_at")
        if done and done[0][0] is not None:
            break
        time.sleep(0.2)
    assert graph_query(falkordb_url, graph_name, "MATCH (t:Trace) RETURN t.id") == [["new"]]
    assert graph_query(falkordb_url, graph_name, "MATCH (h:Host) RETURN h.ip") == [["new"]]
