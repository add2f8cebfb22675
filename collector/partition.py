"""Graphs partitioned by site: one graph per sensor site, for more writes than one primary takes.

With ``--partition-by-site`` the collector writes each sensor's batches to the graph
``<graph>_<site>`` (:func:`site_graph`) instead of ``<graph>``: the sensor's ``Sensor`` node,
its delivery mark, its hosts, edges and traces all live there. On a FalkorDB cluster (Redis
Cluster mode; the client finds out by itself from the server) each graph is one key, so the sites'
graphs spread over the primaries by their hash slot, and each graph's writes go to its primary.
Every site graph gets its indexes and migrations the first time a collector uses it.

The web reads across every site graph (:class:`SiteGraphsReader`): list-shaped answers are the
rows of each graph, concatenated.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any

import redis.exceptions
from falkordb import FalkorDB as SyncFalkorDB
from falkordb.asyncio import FalkorDB
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from net_gazer.collector.graphwrite import GraphWrite, Loss, SensorInfo
from net_gazer.collector.store import GraphStore, Outcome, open_db
from net_gazer.v1 import wire_pb2

SAFE = re.compile(r"[^A-Za-z0-9_-]")


def site_graph(base: str, site: str) -> str:
    """The graph name of ``site``'s sensors: ``<base>_<site>``, with characters outside
    ``[A-Za-z0-9_-]`` replaced, and a short hash of the site added when any was, so two sites
    never share a graph."""
    safe = SAFE.sub("_", site)[:64] or "_"
    if safe != site:
        safe += "_" + hashlib.sha256(site.encode()).hexdigest()[:8]
    return f"{base}_{safe}"


class SiteStores(GraphStore):
    """A GraphStore that routes each sensor to its site's graph (the ingest service needs no
    other change). Stats, enrichment and the lock owner are shared by all site graphs."""

    def __init__(self, db: FalkorDB, base: str) -> None:
        super().__init__(db, base)
        self._sites: dict[str, GraphStore] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def connect(cls, url: str, graph: str = "net_gazer") -> SiteStores:
        return cls(open_db(url), graph)

    async def ensure_schema(self) -> None:
        """Nothing for the base name: each site's graph is brought up on first use."""

    async def for_site(self, site: str) -> GraphStore:
        store = self._sites.get(site)
        if store is not None:
            return store
        async with self._lock:
            store = self._sites.get(site)
            if store is None:
                store = GraphStore(self.db, site_graph(self.graph_name, site))
                store.stats = self.stats
                store.owner = self.owner
                store.enrich = self.enrich
                await store.ensure_schema()
                self._sites[site] = store
        return store

    async def site_graphs(self) -> list[Any]:
        """Every site graph on the server (or cluster), for retention."""
        return [self.db.select_graph(n) for n in await site_graph_names(self.db, self.graph_name)]

    async def hello(self, sensor: SensorInfo, hello: wire_pb2.Hello) -> int:
        return await (await self.for_site(sensor.site)).hello(sensor, hello)

    async def apply(
        self,
        sensor: SensorInfo,
        seq: int,
        writes: list[GraphWrite],
        counters: dict[str, int] | None = None,
        losses: Iterable[Loss] = (),
        unhandled: int = 0,
    ) -> Outcome:
        store = await self.for_site(sensor.site)
        store.enrich = self.enrich
        return await store.apply(sensor, seq, writes, counters, losses=losses, unhandled=unhandled)

    async def gap(self, sensor: SensorInfo, seq: int, gap: wire_pb2.Gap) -> Outcome:
        return await (await self.for_site(sensor.site)).gap(sensor, seq, gap)


def _names(reply: Any) -> list[str]:
    """GRAPH.LIST's reply: a list, or (in a cluster, asked on every primary) a dict of lists."""
    if isinstance(reply, dict):
        return [n for part in reply.values() for n in (part or [])]
    return list(reply or [])


async def site_graph_names(db: FalkorDB, base: str) -> list[str]:
    """Every graph of ``base``'s sites on the server, or on every primary of a cluster (the
    client's own ``list_graphs`` sends GRAPH.LIST to a single node, which a cluster refuses
    for a command without a key)."""
    conn: Any = db.connection
    if isinstance(conn, AsyncRedisCluster):
        reply = await conn.execute_command("GRAPH.LIST", target_nodes=conn.get_primaries())
    else:
        reply = await conn.execute_command("GRAPH.LIST")
    return sorted(n for n in _names(reply) if n.startswith(base + "_"))


class SiteGraphsReader:
    """The web's reader across every site graph (like ``GraphReader``: ``query`` and ``ping``).
    A query runs on each graph, read-only, and the rows are concatenated: counts and sorts are
    per graph, so an endpoint that needs one global order sorts the rows again."""

    def __init__(self, url: str, base: str) -> None:
        self.url = url
        self.graph_name = base
        self._local = threading.local()

    def _db(self) -> Any:
        db = getattr(self._local, "db", None)
        if db is None:
            if self.url.startswith("unix://"):
                db = SyncFalkorDB(unix_socket_path=self.url.removeprefix("unix://"))
            else:  # not from_url: see store.open_db
                parts = urllib.parse.urlsplit(self.url)
                db = SyncFalkorDB(
                    host=parts.hostname or "localhost",
                    port=parts.port or 6379,
                    username=urllib.parse.unquote(parts.username) if parts.username else None,
                    password=urllib.parse.unquote(parts.password) if parts.password else None,
                    ssl=parts.scheme == "rediss",
                )
            self._local.db = db
        return db

    def graphs(self) -> list[str]:
        conn: Any = self._db().connection
        if isinstance(conn, RedisCluster):
            cluster: Any = conn  # redis-py's cluster client has no type hints
            reply = cluster.execute_command("GRAPH.LIST", target_nodes=cluster.get_primaries())
        else:
            reply = conn.execute_command("GRAPH.LIST")
        return sorted(n for n in _names(reply) if n.startswith(self.graph_name + "_"))

    def query(self, cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        db = self._db()
        rows: list[list[Any]] = []
        for name in self.graphs():
            try:
                rows += db.select_graph(name).ro_query(cypher, params or {}).result_set
            except redis.exceptions.ResponseError as exc:
                if "empty key" not in str(exc):
                    raise
        return rows

    def ping(self) -> bool:
        try:
            return bool(self._db().connection.ping())
        except Exception:
            return False
