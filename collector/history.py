"""Path history: route changes between consecutive traces, and the reads that show them.

Every ``Trace`` is kept (up to retention, :mod:`.lifecycle`). After a batch with traces applies,
:func:`record_changes` links each new trace with its neighbours in time from the same sensor to
the same destination: the trace just before it and the one just after it (by ``started``, then
``id``). Where the route differs (:func:`~.routechange.route_change`), a
``(:Trace)-[:CHANGED {ttl, before, after, ttls, sensor, dst, at}]->(:Trace)`` joins the two;
``ttl``/``before``/``after`` describe the first TTL whose responder differs, ``ttls`` lists every
such TTL, and ``at`` is the later trace's ``started``.

Traces may arrive out of order (a spool replayed late): a trace that lands between two older
ones makes them no longer consecutive, so every ``CHANGED`` edge leaving its predecessor or
entering its successor that does not touch it is removed. Running this twice, or on two
collectors, gives the same edges: each is MERGEd and every decision is made from the graph as
it is. A sensor's stream is served by one collector at a time, and all traces of one
(sensor, destination) come from that stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from net_gazer.collector.cypher import with_params
from net_gazer.collector.graphwrite import GraphWrite
from net_gazer.collector.routechange import route_change

log = logging.getLogger(__name__)


class Graph(Protocol):
    async def query(self, q: str, params: dict[str, Any] | None = ...) -> Any: ...

    async def ro_query(self, q: str, params: dict[str, Any] | None = ...) -> Any: ...


#: The trace before and the trace after each of ``$ids``. The tie-break on ``id`` for equal
#: ``started`` is a second filter after the index scan: FalkorDB 4.16.3 returns wrong rows for
#: an ``OR`` of two comparisons on indexed properties (``p.started < t.started OR (p.started =
#: t.started AND ...)`` also yielded ``t`` itself), tests/test_history.py shows the right ones.
NEIGHBOURS_CYPHER = """
UNWIND $ids AS tid
MATCH (t:Trace {id: tid})
OPTIONAL MATCH (p:Trace {dst: t.dst})
WHERE p.sensor = t.sensor AND p.started <= t.started AND p.id <> t.id
WITH t, p ORDER BY p.started DESC, p.id DESC
WITH t, collect(CASE WHEN p.started < t.started OR p.id < t.id THEN p END)[0] AS prev
OPTIONAL MATCH (n:Trace {dst: t.dst})
WHERE n.sensor = t.sensor AND n.started >= t.started AND n.id <> t.id
WITH t, prev, n ORDER BY n.started, n.id
WITH t, prev, collect(CASE WHEN n.started > t.started OR n.id > t.id THEN n END)[0] AS next
RETURN t.id, t.hops, prev.id, prev.hops, next.id, next.hops
"""

#: Consecutive pairs (a, b): any CHANGED edge out of ``a`` or into ``b`` that is not a->b is
#: stale, since b is a's successor now.
STALE_CYPHER = """
UNWIND $pairs AS r
MATCH (a:Trace {id: r.a})-[c:CHANGED]->(o:Trace)
WHERE o.id <> r.b
DELETE c
"""
STALE_IN_CYPHER = """
UNWIND $pairs AS r
MATCH (o:Trace)-[c:CHANGED]->(b:Trace {id: r.b})
WHERE o.id <> r.a
DELETE c
"""
CHANGED_CYPHER = """
UNWIND $changes AS r
MATCH (a:Trace {id: r.a}), (b:Trace {id: r.b})
MERGE (a)-[c:CHANGED]->(b)
SET c.ttl = r.ttl, c.before = r.before, c.after = r.after, c.ttls = r.ttls,
  c.sensor = b.sensor, c.dst = b.dst, c.at = b.started
RETURN r.a, r.b, b.sensor, b.dst, r.ttl, r.before, r.after, r.ttls
"""

#: The keys of each change :func:`record_changes` returns.
CHANGE_KEYS = ("from", "to", "sensor", "dst", "ttl", "before", "after", "ttls")


def trace_ids(writes: Iterable[GraphWrite]) -> list[str]:
    """The ids of the ``Trace`` rows in a batch's writes (the traceroute plugin's rows)."""
    ids: list[str] = []
    for w in writes:
        if w.plugin != "traceroute":
            continue
        for row in w.rows:
            tid = row.get("id") if isinstance(row, dict) else None
            if isinstance(tid, str) and "hops" in row:
                ids.append(tid)
    return ids


def consecutive_changes(
    rows: Sequence[Sequence[Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """From NEIGHBOURS_CYPHER's rows: the consecutive pairs, and the changes among them."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    hops: dict[str, list[str]] = {}
    for tid, thops, pid, phops, nid, nhops in rows:
        hops[tid] = list(thops or [])
        if pid is not None:
            hops[pid] = list(phops or [])
            pairs[(pid, tid)] = {"a": pid, "b": tid}
        if nid is not None:
            hops[nid] = list(nhops or [])
            pairs[(tid, nid)] = {"a": tid, "b": nid}
    changes = []
    for a, b in pairs:
        ch = route_change(hops[a], hops[b])
        if ch is not None:
            changes.append({
                "a": a, "b": b, "ttl": ch.ttl, "before": ch.before, "after": ch.after,
                "ttls": list(ch.ttls),
            })  # fmt: skip
    return list(pairs.values()), changes


async def record_changes(graph: Graph, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Link the traces ``ids`` (already in the graph) with their neighbours; return the route
    changes among the consecutive pairs they are part of, each with the keys of
    :data:`CHANGE_KEYS` (trace ``from`` -> trace ``to``, the later trace's sensor and
    destination, and where the routes part)."""
    if not ids:
        return []
    res = await graph.query(with_params(NEIGHBOURS_CYPHER, {"ids": list(dict.fromkeys(ids))}))
    pairs, changes = consecutive_changes(res.result_set)
    if pairs:
        await graph.query(with_params(STALE_CYPHER, {"pairs": pairs}))
        await graph.query(with_params(STALE_IN_CYPHER, {"pairs": pairs}))
    if not changes:
        return []
    res = await graph.query(with_params(CHANGED_CYPHER, {"changes": changes}))
    return [dict(zip(CHANGE_KEYS, r, strict=True)) for r in res.result_set]


ALL_PAIRS_CYPHER = """
MATCH (t:Trace) WHERE t.id > $after
RETURN t.id ORDER BY t.id LIMIT $limit
"""


async def backfill(graph: Graph, batch: int = 500) -> int:
    """Record the changes among every trace in the graph, in batches (the migration that
    introduced CHANGED runs this once)."""
    after, total = "", 0
    while True:
        res = await graph.query(with_params(ALL_PAIRS_CYPHER, {"after": after, "limit": batch}))
        ids = [r[0] for r in res.result_set]
        if not ids:
            return total
        total += len(await record_changes(graph, ids))
        after = ids[-1]


# -- reads (for the API and the viewer) --------------------------------------------------------

HISTORY_CYPHER = """
MATCH (t:Trace {dst: $dst})
WHERE ($sensor IS NULL OR t.sensor = $sensor) AND t.started >= $since AND t.started <= $until
OPTIONAL MATCH (p:Trace)-[c:CHANGED]->(t)
RETURN t.id, t.sensor, t.src, t.dst, t.method, t.flow_id, t.started, t.finished, t.reached,
  t.hops, t.rtts, p.id, c.ttl, c.before, c.after, c.ttls
ORDER BY t.started DESC, t.id DESC
LIMIT $limit
"""

CHANGES_CYPHER = """
MATCH (p:Trace)-[c:CHANGED]->(t:Trace)
WHERE ($dst IS NULL OR c.dst = $dst) AND ($sensor IS NULL OR c.sensor = $sensor)
  AND c.at >= $since AND c.at <= $until
RETURN t.id, p.id, c.sensor, c.dst, c.at, c.ttl, c.before, c.after, c.ttls
ORDER BY c.at DESC, t.id DESC
LIMIT $limit
"""

PATHS_AT_CYPHER = """
MATCH (t:Trace)
WHERE t.started <= $at AND ($sensor IS NULL OR t.sensor = $sensor)
  AND ($dst IS NULL OR t.dst = $dst)
WITH t.sensor AS sensor, t.dst AS dst, max(t.started) AS started
MATCH (t:Trace {dst: dst})
WHERE t.sensor = sensor AND t.started = started
RETURN t.id, t.sensor, t.src, t.dst, t.started, t.reached, t.hops, t.rtts
ORDER BY t.started DESC, t.id DESC
LIMIT $limit
"""

FOREVER = 1e18

#: A synchronous read: Cypher text and parameters in, result rows out; the web's
#: ``GraphReader.query`` (read-only, a replica with ``--graph-read-url``) is one.
Query = Callable[[str, dict[str, Any]], list[list[Any]]]


def path_history(
    query: Query,
    dst: str,
    *,
    sensor: str | None = None,
    since: float = 0.0,
    until: float = FOREVER,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The traces to ``dst`` (canonical address text), newest first, each with ``change``: the
    route change from the trace before it (``None`` when the route stayed)."""
    rows = query(
        HISTORY_CYPHER,
        {"dst": dst, "sensor": sensor, "since": since, "until": until, "limit": limit},
    )
    out = []
    for r in rows:
        tid, sid, src, dst_, method, flow, started, finished, reached, hops, rtts = r[:11]
        prev, ttl, before, after, ttls = r[11:]
        out.append({
            "id": tid, "sensor": sid, "src": src, "dst": dst_, "method": method, "flow_id": flow,
            "started": started, "finished": finished, "reached": reached, "hops": hops,
            "rtts": rtts,
            "change": None if prev is None else {
                "from": prev, "ttl": ttl, "before": before, "after": after, "ttls": ttls,
            },
        })  # fmt: skip
    return out


def route_changes(
    query: Query,
    *,
    dst: str | None = None,
    sensor: str | None = None,
    since: float = 0.0,
    until: float = FOREVER,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Recorded route changes, newest first: where (``ttl``, ``before`` -> ``after``) and when
    (``at``, the later trace's start), between trace ``from`` and trace ``to``."""
    rows = query(
        CHANGES_CYPHER,
        {"dst": dst, "sensor": sensor, "since": since, "until": until, "limit": limit},
    )
    keys = ("to", "from", "sensor", "dst", "at", "ttl", "before", "after", "ttls")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def paths_at(
    query: Query,
    at: float,
    *,
    sensor: str | None = None,
    dst: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The path each (sensor, destination) had at time ``at``: its latest trace started at or
    before ``at``. This is what ``/api/graph`` draws for a moment in the past."""
    rows = query(PATHS_AT_CYPHER, {"at": at, "sensor": sensor, "dst": dst, "limit": limit})
    keys = ("id", "sensor", "src", "dst", "started", "reached", "hops", "rtts")
    return [dict(zip(keys, r, strict=True)) for r in rows]
