"""Work that runs once across collector replicas: locks, schema migration, retention.

Collectors are stateless and any number may share one graph, so what must happen once keeps
its state in the graph itself, on the graph's ``(:Schema {id: "net_gazer"})`` node:

- **Locks** are leases on that node: ``lock_<job>`` holds the owner (a collector's random id)
  and ``lock_<job>_until`` the time the lease ends. Taking one is a single write query, and
  FalkorDB runs the write queries of one graph one at a time, so two collectors never both hold
  it. A holder renews its lease between steps; one that dies loses it when the lease runs out.
- **Schema version**: ``version`` and ``migrated_at``. A collector at start takes the
  ``migration`` lock, reads the version again under it, runs each step above it in order and
  records each step's version as it completes; a collector that finds the lock taken waits for
  the holder, then finds the graph current.
- **Retention** keeps ``retention_at`` (the last pass), ``retention_cutoff`` and the counts it
  deleted (``retention_deleted``, by kind). See :func:`retention_pass` for the order.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from net_gazer.collector.cypher import with_params
from net_gazer.collector.history import Graph

log = logging.getLogger(__name__)

SCHEMA_ID = "net_gazer"
JOB_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")

#: A migration step: Cypher returning one count, or a coroutine function of the graph returning
#: what it changed.
Migration = str | Callable[[Graph], Awaitable[int]]

DEFAULT_LEASE = 120.0


class LifecycleError(Exception):
    """A once-only job that cannot run (a lock another collector keeps renewing)."""


def new_owner() -> str:
    """A collector's id as a lock owner: random, so that two processes never share one."""
    return secrets.token_hex(8)


def _lock_props(job: str) -> tuple[str, str]:
    if not JOB_NAME.fullmatch(job):
        raise ValueError(f"lock name {job!r} is not a lower-case identifier")
    return f"lock_{job}", f"lock_{job}_until"


#: How one Schema node is made sure of: two concurrent MERGEs of a node that does not exist yet
#: may both create it (FalkorDB 4.16.3: 8 collectors racing on a fresh graph made up to 8, and
#: each took "the" lock), while updates of one existing node are serialised. So a unique
#: constraint on Schema.id turns a second creation into an error, and the node is made once at
#: start (:func:`ensure_schema_node`) before any lock is taken.
UNIQUE_VIOLATION = "unique constraint violation"


async def ensure_schema_node(
    graph: Graph, execute: Callable[..., Awaitable[Any]], name: str
) -> None:
    """The unique constraint on ``Schema.id`` (its index must exist) and the Schema node."""
    import redis.exceptions

    try:
        await execute("GRAPH.CONSTRAINT", "CREATE", name, "UNIQUE", "NODE", "Schema",
                      "PROPERTIES", 1, "id")  # fmt: skip
    except redis.exceptions.ResponseError as exc:
        if "already" not in str(exc).lower():
            log.warning("graph %s: no unique constraint on Schema.id (%s)", name, exc)
    for _ in range(100):  # the constraint is built in the background: PENDING, then OPERATIONAL
        res = await graph.query("CALL db.constraints() YIELD label, status RETURN label, status")
        if any(label == "Schema" and status != "PENDING" for label, status in res.result_set):
            break
        await asyncio.sleep(0.05)
    for _ in range(3):
        try:
            await graph.query(with_params("MERGE (:Schema {id: $id})", {"id": SCHEMA_ID}))
            return
        except redis.exceptions.ResponseError as exc:
            if UNIQUE_VIOLATION not in str(exc):
                raise


async def acquire(graph: Graph, job: str, owner: str, *, lease: float, now: float) -> bool:
    """Take (or renew) the lock ``job`` for ``lease`` seconds from ``now``; False when another
    owner holds an unexpired lease. The Schema node exists (:func:`ensure_schema_node`)."""
    who, until = _lock_props(job)
    res = await graph.query(
        with_params(
            f"""
            MATCH (x:Schema {{id: $id}})
            WITH x, (x.{who} IS NULL OR x.{until} < $now OR x.{who} = $me) AS free
            SET x.{who} = CASE WHEN free THEN $me ELSE x.{who} END,
              x.{until} = CASE WHEN free THEN $now + $lease ELSE x.{until} END
            RETURN free
            """,
            {"id": SCHEMA_ID, "me": owner, "now": now, "lease": lease},
        )
    )
    return bool(res.result_set and res.result_set[0][0])


async def release(graph: Graph, job: str, owner: str) -> None:
    """Give the lock back (only if ``owner`` still holds it)."""
    who, until = _lock_props(job)
    await graph.query(
        with_params(
            f"MATCH (x:Schema {{id: $id}}) WHERE x.{who} = $me SET x.{who} = NULL, x.{until} = NULL",
            {"id": SCHEMA_ID, "me": owner},
        )
    )


async def holder(graph: Graph, job: str) -> tuple[str | None, float | None]:
    """Who holds ``job`` and until when (None, None when nobody ever took it)."""
    who, until = _lock_props(job)
    res = await graph.query(
        with_params(f"MATCH (x:Schema {{id: $id}}) RETURN x.{who}, x.{until}", {"id": SCHEMA_ID})
    )
    if not res.result_set:
        return None, None
    owner, ends = res.result_set[0]
    return owner, ends


async def schema_version(graph: Graph) -> int:
    """The version the graph records; 1 for a graph from before versions were recorded."""
    res = await graph.query(
        with_params("MATCH (x:Schema {id: $id}) RETURN x.version", {"id": SCHEMA_ID})
    )
    return int(res.result_set[0][0] or 1) if res.result_set else 1


async def migrate(
    graph: Graph,
    migrations: Mapping[int, Migration],
    target: int,
    *,
    owner: str,
    name: str = "",
    lease: float = DEFAULT_LEASE,
    clock: Callable[[], float] = time.time,
    poll: float = 0.2,
) -> dict[int, int]:
    """Bring the graph to schema ``target`` under the ``migration`` lock; return what each step
    that ran changed (empty when the graph was current)."""
    if await schema_version(graph) >= target:
        return {}
    waited_for: str | None = None
    while not await acquire(graph, "migration", owner, lease=lease, now=clock()):
        other, _ = await holder(graph, "migration")
        if other != waited_for:
            log.info("graph %s: collector %s is migrating the schema; waiting", name, other)
            waited_for = other
        await asyncio.sleep(poll)
    ran: dict[int, int] = {}
    try:
        version = await schema_version(graph)
        for step in sorted(migrations):
            if not version < step <= target:
                continue
            how = migrations[step]
            if isinstance(how, str):
                out = await graph.query(how)
                changed = int(out.result_set[0][0]) if out.result_set else 0
            else:
                changed = await how(graph)
            await graph.query(
                with_params(
                    "MERGE (x:Schema {id: $id}) SET x.version = $version, x.migrated_at = $now",
                    {"id": SCHEMA_ID, "version": step, "now": clock()},
                )
            )
            ran[step] = changed
            log.info("graph %s migrated to schema %d: %d changed", name, step, changed)
            if not await acquire(graph, "migration", owner, lease=lease, now=clock()):
                raise LifecycleError(
                    f"graph {name}: the migration lock passed to another collector after step "
                    f"{step}; it goes on from there"
                )
        if version < target:
            await graph.query(
                with_params(
                    "MERGE (x:Schema {id: $id}) SET x.version = CASE WHEN x.version IS NULL OR "
                    "x.version < $version THEN $version ELSE x.version END, x.migrated_at = $now",
                    {"id": SCHEMA_ID, "version": target, "now": clock()},
                )
            )
    finally:
        await release(graph, "migration", owner)
    return ran


# -- retention ---------------------------------------------------------------------------------

#: Retention's first step, per trace: the AT edges of a few old traces (a trace has up to 255),
#: then those traces once they have none left (with RAN, TO and CHANGED). The two queries
#: alternate, so emptied traces go at once and the next scan does not walk over them again.
TRACE_AT_CYPHER = """
MATCH (t:Trace)-[:AT]->() WHERE t.finished < $cutoff
WITH DISTINCT t LIMIT $traces
MATCH (t)-[a:AT]->()
WITH a LIMIT $n
DELETE a
RETURN count(a)
"""
TRACE_CYPHER = """
MATCH (t:Trace) WHERE t.finished < $cutoff AND NOT (t)-[:AT]->()
WITH t LIMIT $n
DETACH DELETE t
RETURN count(t)
"""

#: The steps after the traces, in order. Each query deletes at most ``$n`` items and returns
#: how many; a step repeats until it deletes fewer than ``$n``.
RETENTION_STEPS: tuple[tuple[str, str], ...] = (
    (
        "connects",
        """
        MATCH ()-[e:CONNECTS]->() WHERE e.last_seen < $cutoff
        WITH e LIMIT $n
        DELETE e
        RETURN count(e)
        """,
    ),
    (
        "routes",
        """
        MATCH ()-[e:ROUTE]->() WHERE e.last_seen < $cutoff
        WITH e LIMIT $n
        DELETE e
        RETURN count(e)
        """,
    ),
    (
        "hosts",
        """
        MATCH (h:Host) WHERE h.last_seen < $cutoff AND NOT (h)--()
        WITH h LIMIT $n
        DELETE h
        RETURN count(h)
        """,
    ),
    (
        "names",
        """
        MATCH (h:Host) WHERE h.name_seen < $cutoff
        WITH h LIMIT $n
        SET h.name = NULL, h.names = NULL, h.name_source = NULL, h.name_seen = NULL
        RETURN count(h)
        """,
    ),
)


@dataclass
class RetentionResult:
    ran: bool
    cutoff: float
    deleted: dict[str, int] = field(default_factory=dict)
    queries: int = 0
    #: The most items one query deleted (never more than the batch).
    largest: int = 0


async def retention_pass(
    graph: Graph,
    *,
    days: float,
    owner: str,
    batch: int = 1000,
    now: float | None = None,
    clock: Callable[[], float] = time.time,
    lease: float = DEFAULT_LEASE,
    pause: float = 0.0,
    max_queries: int = 1_000_000,
) -> RetentionResult:
    """Delete what is older than ``days`` (relative to ``now``, default the clock), in
    batches of ``batch`` items per query, under the ``retention`` lock. ``pause`` seconds pass
    between two queries, so ingest's writes interleave. Returns ``ran=False`` when another
    collector holds the lock."""
    start = clock() if now is None else now
    cutoff = start - days * 86400.0
    result = RetentionResult(ran=False, cutoff=cutoff)
    if not await acquire(graph, "retention", owner, lease=lease, now=clock()):
        return result
    result.ran = True
    traces_per_query = max(1, batch // 32)
    params = {"cutoff": cutoff, "n": batch, "traces": traces_per_query}

    async def step(cypher: str) -> int:
        res = await graph.query(with_params(cypher, params))
        result.queries += 1
        done = int(res.result_set[0][0]) if res.result_set else 0
        result.largest = max(result.largest, done)
        if not await acquire(graph, "retention", owner, lease=lease, now=clock()):
            raise LifecycleError("the retention lock passed to another collector")
        if pause:
            await asyncio.sleep(pause)
        return done

    try:
        result.deleted = {"at": 0, "traces": 0}
        while result.queries < max_queries:
            at = await step(TRACE_AT_CYPHER)
            result.deleted["at"] += at
            if result.queries >= max_queries:
                break
            traces = await step(TRACE_CYPHER)
            result.deleted["traces"] += traces
            if at == 0 and traces < batch:
                break
        for kind, cypher in RETENTION_STEPS:
            total = 0
            while result.queries < max_queries:
                done = await step(cypher)
                total += done
                if done < batch:
                    break
            result.deleted[kind] = total
        state: dict[str, Any] = {"id": SCHEMA_ID, "at": clock(), "cutoff": cutoff}
        state["deleted"] = [f"{k}={v}" for k, v in result.deleted.items()]
        await graph.query(
            with_params(
                "MATCH (x:Schema {id: $id}) SET x.retention_at = $at, "
                "x.retention_cutoff = $cutoff, x.retention_deleted = $deleted",
                state,
            )
        )
    finally:
        await release(graph, "retention", owner)
    if any(result.deleted.values()):
        log.info("retention: deleted %s older than %.0f", result.deleted, cutoff)
    return result


async def last_retention(graph: Graph) -> float | None:
    """When the last retention pass (by any collector) ended, from the Schema node."""
    res = await graph.query(
        with_params("MATCH (x:Schema {id: $id}) RETURN x.retention_at", {"id": SCHEMA_ID})
    )
    value = res.result_set[0][0] if res.result_set else None
    return float(value) if isinstance(value, int | float) else None


async def retention_due(
    graph: Graph,
    *,
    days: float,
    owner: str,
    interval: float,
    batch: int = 1000,
    pause: float = 0.0,
    clock: Callable[[], float] = time.time,
) -> RetentionResult | None:
    """One pass when the last one (by whichever collector) is ``interval`` old; else None."""
    last = await last_retention(graph)
    if last is not None and clock() - last < interval:
        return None
    return await retention_pass(
        graph, days=days, owner=owner, batch=batch, pause=pause, clock=clock
    )


async def retention_loop(
    graphs: Callable[[], Awaitable[list[Any]]],
    *,
    days: float,
    owner: str,
    interval: float,
    batch: int = 1000,
    pause: float = 0.01,
    check: float = 60.0,
) -> None:
    """Keep ``days`` of history in each graph ``graphs()`` returns (one, or every site graph):
    every ``check`` seconds, run a pass where one is due (see :func:`retention_due`); database
    errors are logged and the next check tries again."""
    import redis.exceptions

    while True:
        try:
            for graph in await graphs():
                await retention_due(
                    graph, days=days, owner=owner, interval=interval, batch=batch, pause=pause
                )
        except (redis.exceptions.RedisError, OSError, LifecycleError) as exc:
            log.warning("retention pass stopped (%s); the next check tries again", exc)
        await asyncio.sleep(min(check, interval))
