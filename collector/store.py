"""The graph store: FalkorDB, written in batches, one query per sensor batch.

Delivery (docs/architecture.md, "Delivery"): a batch is applied together with the sensor's
delivery mark in ONE query, guarded by that mark::

    MATCH (s:Sensor {id: $sid}) WHERE s.epoch = $epoch AND s.acked_seq = $prev
    SET s.acked_seq = $seq, ...
    FOREACH (...)   -- hosts, then each plugin's fragment

If the guard does not hold, nothing at all is written; the store then reads the mark to tell a
replay (at or below the mark: acknowledge and skip) from a hole (a protocol error). A crash between
the write and the ack therefore costs a resend, never a double count.

**What a batch loses on the way is counted in the same query**, on the ``Sensor`` node, so it is
counted once, exactly when the batch applies:

- ``plugin_lost_<name>``: parts of batches that collector plugin ``<name>`` did not get into the
  graph: its ``ng_graph_writes`` raised, returned something that is not a list of writes, or it
  is disabled (once per batch); its ``ng_handle_extension`` raised (once per extension); or its
  rows hold a value that cannot be passed to the database (a map key that is no identifier, an
  object of an unsupported type) or that the database refuses for its data (a map as a
  property, a type mismatch), once per batch. Such a part is dropped alone; the rest of the
  batch, other plugins' parts and the mark, applies. ``<name>`` is the plugin's name with every
  character outside ``[A-Za-z0-9_]`` replaced by ``_`` (plugin names are the collector's own
  installed entry points, never the network's).
- ``plugin_lost``: the sum over all plugins; ``last_plugin_loss``: the latest reason, naming the
  plugin.
- ``unhandled_extensions``: extensions that no collector plugin handled.

The collector's status shows the same counts since its start (``IngestService.status``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions
from falkordb.asyncio import FalkorDB

from net_gazer.collector import history, lifecycle
from net_gazer.collector.cypher import literal, with_params
from net_gazer.collector.graphwrite import GraphWrite, Loss, SensorInfo
from net_gazer.netaddr import GLOBAL_SCOPE, addr_info, scope_of
from net_gazer.v1 import wire_pb2

log = logging.getLogger(__name__)

DEFAULT_GRAPH = "net_gazer"

# Every property a MERGE or a lookup uses gets an index (FalkorDB range indexes).
INDEXES: tuple[tuple[str, str], ...] = (
    ("Sensor", "id"),
    ("Host", "ip"),
    ("Host", "scope"),
    ("Trace", "id"),
    ("Trace", "dst"),
    ("Trace", "sensor"),
    ("Trace", "started"),
    ("Trace", "finished"),
    ("Host", "last_seen"),
    ("Host", "name_seen"),
    ("Schema", "id"),
)
#: Relationship properties that lookups filter on: retention's age scans, the change history.
#: CONNECTS.last_seen is not indexed by default: such an index changes how FalkorDB 4.16 merges
#: edges within one query (tests/test_store_edges.py) and slows every batch's writes. An operator
#: may create it; the API's newest-first reads then go by time slices (web/rows.py), and
#: retention's CONNECTS scan uses it.
REL_INDEXES: tuple[tuple[str, str], ...] = (
    ("ROUTE", "last_seen"),
    ("CHANGED", "at"),
)

HOSTS_CYPHER = """
FOREACH (h IN $hosts |
  MERGE (x:Host {scope: h.scope, ip: h.ip})
  ON CREATE SET x.first_seen = h.ts, x.last_seen = h.ts, x.family = h.family,
    x.private = h.private
  SET x.last_seen = CASE WHEN h.ts > x.last_seen THEN h.ts ELSE x.last_seen END
  SET x += h.props
)
"""

#: CONNECTS edges that fragments merge, created (with their hosts) before the batch query when
#: they are new: a relationship MERGE does not see one created earlier in the same query
#: (FalkorDB 4.16), so two fragments of one batch merging one new edge would make two. Outside
#: the delivery guard, and harmless there: it only creates what the batch is about to fill.
EDGES_CYPHER = """
FOREACH (k IN $edges |
  MERGE (c:Host {scope: k.c.scope, ip: k.c.ip})
  ON CREATE SET c.first_seen = k.c.ts, c.last_seen = k.c.ts, c.family = k.c.family,
    c.private = k.c.private
  MERGE (v:Host {scope: k.s.scope, ip: k.s.ip})
  ON CREATE SET v.first_seen = k.s.ts, v.last_seen = k.s.ts, v.family = k.s.family,
    v.private = k.s.private
  MERGE (c)-[e:CONNECTS {sensor: $sid, dport: k.dport, proto: k.proto}]->(v)
  ON CREATE SET e.first_seen = k.c.ts, e.last_seen = k.c.ts
)
"""

#: Schema steps (collector/lifecycle.py runs them once, under a lock in the graph):
#:
#: - 2: ``proto`` became part of the CONNECTS key (with the udp plugin): edges written before
#:   carry no ``proto`` (an edge made by EDGES_CYPHER) or ``'tcp'``, and every one of them is TCP.
#: - 3: route changes (``CHANGED`` between consecutive traces) for the traces already stored.
SCHEMA_VERSION = 3
MIGRATIONS: dict[int, lifecycle.Migration] = {
    2: "MATCH ()-[e:CONNECTS]->() WHERE e.proto IS NULL SET e.proto = 'tcp' RETURN count(e)",
    3: history.backfill,
}

HELLO_CYPHER = """
MERGE (s:Sensor {id: $sid})
ON CREATE SET s.first_seen = $now, s.epoch = $epoch, s.acked_seq = 0, s.lost_envelopes = 0,
  s.lost_items = 0, s.gaps = 0, s.batches = 0
WITH s, s.machine_id AS previous_machine
SET s.acked_seq = CASE WHEN s.epoch = $epoch THEN s.acked_seq ELSE 0 END,
  s.machine_id_conflicts = coalesce(s.machine_id_conflicts, 0) + CASE
    WHEN previous_machine IS NOT NULL AND previous_machine <> '' AND $machine_id <> ''
      AND previous_machine <> $machine_id THEN 1 ELSE 0 END
SET s.epoch = $epoch, s.hostname = $hostname, s.machine_id = $machine_id, s.version = $version,
  s.ifaces = $ifaces, s.site = $site, s.last_seen = $now, s.plugins = $plugins,
  s.replay = $replay, s.local_networks = $local_networks
FOREACH (h IN $origins |
  MERGE (x:Host {scope: h.scope, ip: h.ip})
  ON CREATE SET x.first_seen = $now, x.last_seen = $now, x.family = h.family,
    x.private = h.private
  MERGE (s)-[:ORIGIN]->(x)
)
RETURN s.acked_seq, previous_machine
"""

GUARD_CYPHER = """
MATCH (s:Sensor {id: $sid}) WHERE s.epoch = $epoch AND s.acked_seq = $prev
SET s.acked_seq = $seq, s.last_seen = $now, s.batches = s.batches + 1, s.counters = $counters
"""

GAP_CYPHER = """
MATCH (s:Sensor {id: $sid}) WHERE s.epoch = $epoch AND s.acked_seq >= $first - 1
  AND s.acked_seq < $seq
SET s.acked_seq = $seq, s.last_seen = $now, s.gaps = s.gaps + 1,
  s.lost_envelopes = CASE WHEN $lost_envelopes > 9007199254740992 - s.lost_envelopes
    THEN 9007199254740992 ELSE s.lost_envelopes + $lost_envelopes END,
  s.lost_items = CASE WHEN $lost_items > 9007199254740992 - s.lost_items
    THEN 9007199254740992 ELSE s.lost_items + $lost_items END,
  s.last_gap_reason = $reason
"""


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # at or below the mark: acknowledge, write nothing


class DeliveryError(Exception):
    """A batch that cannot be applied: wrong epoch, or a hole before it."""


class PoisonBatch(ValueError):
    """A batch whose own parameters (outside any plugin's part) cannot be passed to the
    database: resending cannot help."""


@dataclass(slots=True)
class StoreStats:
    batches: int = 0
    duplicates: int = 0
    rows: int = 0
    #: Rows of applied batches, by the collector plugin that wrote them.
    rows_by_plugin: dict[str, int] = field(default_factory=dict)
    write_seconds: float = 0.0
    #: Parts of applied batches each collector plugin lost (see the module docstring).
    plugin_lost: dict[str, int] = field(default_factory=dict)
    unhandled_extensions: int = 0
    #: Route changes recorded between consecutive traces (collector/history.py).
    route_changes: int = 0
    route_change_errors: int = 0


def loss_property(plugin: str) -> str:
    """The Sensor property that counts ``plugin``'s losses."""
    return "plugin_lost_" + (re.sub(r"[^A-Za-z0-9_]", "_", plugin) or "_")


def _admissible(w: GraphWrite, addresses: set[str]) -> str:
    """The serialised rows of ``w``; ValueError/TypeError when the write cannot be sent.
    ``addresses`` holds host addresses known to parse (a cache: hosts recur in every batch)."""
    if not isinstance(w.cypher, str) or not isinstance(w.rows, list):
        raise TypeError("a GraphWrite needs a str cypher and a list of rows")
    if not isinstance(w.hosts, list | tuple):
        raise TypeError("GraphWrite.hosts must be a list of (ip, timestamp) pairs")
    for host in w.hosts:
        if not (
            isinstance(host, tuple | list)
            and len(host) == 2
            and isinstance(host[0], str)
            and isinstance(host[1], int | float)
        ):
            raise TypeError(f"GraphWrite.hosts holds {host!r}, not an (ip, timestamp) pair")
        if host[0] not in addresses:
            addr_info(host[0])  # ValueError for what is not an address
            if len(addresses) > 1_000_000:
                addresses.clear()
            addresses.add(host[0])
    return literal(w.rows)


Enricher = Callable[[str, str, dict[str, Any]], None]


#: Seconds between two refreshes of one host's last_seen by one collector: hosts recur in every
#: batch, and re-merging each of them each time would halve the write rate.
HOST_REFRESH = 60.0


def host_row(ip: str, site: str, ts: float, props: dict[str, Any]) -> dict[str, Any]:
    canonical, family, is_global = addr_info(ip)
    return {
        "ip": canonical,
        "scope": GLOBAL_SCOPE if is_global else site,
        "family": family,
        "private": not is_global,
        "ts": ts,
        "props": props,
    }


def open_db(url: str) -> FalkorDB:
    """A client for ``unix:///path``, ``redis://[user:password@]host:port`` or ``rediss://``.
    Host and credentials are passed one by one rather than through ``FalkorDB.from_url``: the
    client's cluster detection (a FalkorDB cluster in Redis Cluster mode) fails with a
    KeyError for a connection built from a URL (falkordb 1.8.1)."""
    if url.startswith("unix://"):
        return FalkorDB(unix_socket_path=url.removeprefix("unix://"))
    parts = urllib.parse.urlsplit(url)
    return FalkorDB(
        host=parts.hostname or "localhost",
        port=parts.port or 6379,
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss",
    )


#: Awaited with (sensor, route changes) by :attr:`GraphStore.route_changed`.
RouteChanged = Callable[[SensorInfo, list[dict[str, Any]]], Awaitable[None]]


class GraphStore:
    """Async access to one graph. Build with :meth:`connect`."""

    def __init__(self, db: FalkorDB, graph: str = DEFAULT_GRAPH) -> None:
        self.db = db
        self.graph_name = graph
        self.graph = db.select_graph(graph)
        self.stats = StoreStats()
        #: This collector's id in the graph's locks (collector/lifecycle.py).
        self.owner = lifecycle.new_owner()
        self.enrich: Enricher | None = None
        #: Called with (event, fields) for what the collector's event log records: sensor
        #: identity conflicts and gaps (collector/events.py).
        self.events: Callable[[str, dict[str, Any]], None] | None = None
        #: Awaited with (sensor, changes) after a batch's traces made route changes
        #: (collector/history.py's record_changes; the alert rules' route_change).
        self.route_changed: RouteChanged | None = None
        #: Called with (seconds, rows) after each applied batch (the metrics' histograms).
        self.observe: Callable[[float, int], None] | None = None
        self._enriched: dict[tuple[str, str], dict[str, Any]] = {}
        self._host_written: dict[tuple[str, str], float] = {}
        self._addresses: set[str] = set()
        self._edges_made: set[tuple[str, str, str, int, str]] = set()

    def forget_enrichment(self) -> None:
        """Enrich every host afresh from now on (the enrichment databases changed)."""
        self._enriched.clear()

    @classmethod
    def connect(cls, url: str, graph: str = DEFAULT_GRAPH) -> GraphStore:
        return cls(open_db(url), graph)

    async def close(self) -> None:
        await self.db.aclose()

    async def one_graph(self) -> list[Any]:
        """This store's graph, as the list the retention loop takes."""
        return [self.graph]

    async def ping(self) -> bool:
        try:
            return bool(await self.db.connection.ping())
        except (redis.exceptions.RedisError, OSError):
            return False

    async def aof_enabled(self) -> bool:
        conf = await self.db.connection.config_get("appendonly")
        return str(conf.get("appendonly", "no")).lower() == "yes"

    async def ensure_schema(self) -> None:
        existing = set()
        try:
            res = await self.graph.ro_query("CALL db.indexes() YIELD label, properties")
            for label, props in res.result_set:
                for p in props:
                    existing.add((label, p))
        except redis.exceptions.ResponseError:
            pass  # empty graph: no indexes yet
        wanted = [(label, prop, f"(n:{label})") for label, prop in INDEXES]
        wanted += [(rel, prop, f"()-[n:{rel}]-()") for rel, prop in REL_INDEXES]
        for label, prop, pattern in wanted:
            if (label, prop) in existing:
                continue
            try:
                await self.graph.query(f"CREATE INDEX FOR {pattern} ON (n.{prop})")
            except redis.exceptions.ResponseError as exc:
                if "already indexed" not in str(exc):
                    raise
        await self._indexes_built()
        await lifecycle.ensure_schema_node(
            self.graph, self.db.connection.execute_command, self.graph_name
        )
        await self.migrate()

    async def _indexes_built(self, wait: float = 600.0) -> None:
        """Wait while FalkorDB builds new indexes over existing data (in the background): a
        lookup meanwhile misses what is not indexed yet, and migrations and retention must not
        (an old trace was not found by the first retention pass after the index was added)."""
        deadline = time.monotonic() + wait
        said = False
        while time.monotonic() < deadline:
            res = await self.graph.ro_query("CALL db.indexes() YIELD label, status")
            pending = [label for label, status in res.result_set if status != "OPERATIONAL"]
            if not pending:
                return
            if not said:
                log.info("graph %s: waiting for indexes being built on %s", self.graph_name,
                         ", ".join(sorted(set(pending))))  # fmt: skip
                said = True
            await asyncio.sleep(0.1)
        log.warning("graph %s: indexes still being built after %.0f s", self.graph_name, wait)

    async def migrate(self) -> dict[int, int]:
        """Bring the graph to SCHEMA_VERSION (see MIGRATIONS) under the migration lock; return
        what each step that ran changed."""
        return await lifecycle.migrate(
            self.graph, MIGRATIONS, SCHEMA_VERSION, owner=self.owner, name=self.graph_name
        )

    # -- delivery ---------------------------------------------------------------------------
    async def hello(self, sensor: SensorInfo, hello: wire_pb2.Hello) -> int:
        """Record the sensor's hello; return the mark stored for its epoch (0 for a new epoch)."""
        origins = []
        for ip in dict.fromkeys(hello.own_addresses):
            try:
                row = host_row(ip, sensor.site, 0.0, {})
            except ValueError:
                log.warning("sensor %s names %r among its own addresses; ignored", sensor.id, ip)
                continue
            origins.append({k: v for k, v in row.items() if k not in ("ts", "props")})
        ifaces = [f"{i.name}:{i.role}" if i.role else i.name for i in hello.interfaces]
        res = await self.graph.query(
            with_params(
                HELLO_CYPHER,
                {
                    "sid": sensor.id,
                    "epoch": sensor.epoch,
                    "now": time.time(),
                    "hostname": hello.hostname,
                    "machine_id": hello.machine_id,
                    "version": hello.version,
                    "ifaces": ifaces,
                    "site": sensor.site,
                    "plugins": list(hello.plugins),
                    "replay": hello.replay,
                    "local_networks": list(hello.local_networks),
                    "origins": origins,
                },
            )
        )
        acked, previous_machine = res.result_set[0]
        if previous_machine and hello.machine_id and previous_machine != hello.machine_id:
            log.warning(
                "sensor id %r is claimed by two machines (machine-id %s, before %s): give each "
                "sensor its own --sensor-id",
                sensor.id,
                hello.machine_id,
                previous_machine,
            )
            if self.events is not None:
                self.events("identity_conflict", {"sensor": sensor.id,
                            "machine_id": hello.machine_id, "previous_machine_id": previous_machine,
                            "hostname": hello.hostname})  # fmt: skip
        return int(acked)

    async def mark(self, sensor_id: str) -> tuple[str, int] | None:
        res = await self.graph.ro_query(
            with_params(
                "MATCH (s:Sensor {id: $sid}) RETURN s.epoch, s.acked_seq", {"sid": sensor_id}
            )
        )
        if not res.result_set:
            return None
        epoch, acked = res.result_set[0]
        return str(epoch), int(acked)

    def _hosts(self, sensor: SensorInfo, writes: list[GraphWrite]) -> list[dict[str, Any]]:
        """Host rows to write: new hosts, and known ones whose last_seen is HOST_REFRESH old."""
        latest: dict[str, float] = {}
        for w in writes:
            for ip, seen in w.hosts:
                ts = seen if math.isfinite(seen) else 0.0
                if ip not in latest or ts > latest[ip]:
                    latest[ip] = ts
        rows = []
        for ip, ts in latest.items():
            scope = scope_of(ip, sensor.site)
            written = self._host_written.get((scope, ip))
            if written is not None and ts - written < HOST_REFRESH:
                continue
            props = self._enriched.get((scope, ip))
            if props is None:
                props = {}
                if self.enrich is not None:
                    self.enrich(ip, scope, props)
                try:
                    literal(props)
                except (ValueError, TypeError) as exc:
                    log.error("host properties for %s from ng_enrich_host dropped: %s", ip, exc)
                    props = {}
                if len(self._enriched) > 1_000_000:
                    self._enriched.clear()
                self._enriched[(scope, ip)] = props
            rows.append(host_row(ip, sensor.site, ts, props))
        return rows

    def country_of(self, ip: str, site: str) -> str:
        """The country code this collector enriched ``ip`` with ("" when unknown)."""
        try:
            props = self._enriched.get((scope_of(ip, site), addr_info(ip)[0]))
        except ValueError:
            return ""
        return str((props or {}).get("country_code") or "")

    def asn_of(self, ip: str, site: str) -> int | None:
        """The AS number this collector enriched ``ip`` with (None when unknown)."""
        try:
            props = self._enriched.get((scope_of(ip, site), addr_info(ip)[0]))
        except ValueError:
            return None
        asn = (props or {}).get("asn")
        return asn if isinstance(asn, int) and not isinstance(asn, bool) else None

    def _hosts_written(self, rows: list[dict[str, Any]]) -> None:
        if len(self._host_written) > 1_000_000:
            self._host_written.clear()
        for r in rows:
            self._host_written[(r["scope"], r["ip"])] = r["ts"]

    async def _ensure_edges(self, sensor: SensorInfo, writes: list[GraphWrite]) -> None:
        """Create the CONNECTS edges (and their hosts) that the writes name and that this
        collector has not made or seen yet (see EDGES_CYPHER)."""
        edges: dict[tuple[str, str, str, int, str], dict[str, Any]] = {}
        for w in writes:
            for edge in w.edges:
                client, server, dport, ts = edge[:4]
                proto = str(edge[4]) if len(edge) > 4 else "tcp"
                key = (sensor.id, client, server, dport, proto)
                if key in self._edges_made or key in edges:
                    continue
                when = ts if math.isfinite(ts) else 0.0
                try:
                    c, s = (
                        host_row(client, sensor.site, when, {}),
                        host_row(server, sensor.site, when, {}),
                    )
                except ValueError:
                    continue
                for row in (c, s):
                    del row["props"]
                edges[key] = {"c": c, "s": s, "dport": dport, "proto": proto}
        if not edges:
            return
        await self.graph.query(
            with_params(EDGES_CYPHER, {"sid": sensor.id, "edges": list(edges.values())})
        )
        if len(self._edges_made) > 1_000_000:
            self._edges_made.clear()
        self._edges_made.update(edges)

    async def apply(
        self,
        sensor: SensorInfo,
        seq: int,
        writes: list[GraphWrite],
        counters: dict[str, int] | None = None,
        losses: Iterable[Loss] = (),
        unhandled: int = 0,
    ) -> Outcome:
        """Apply one batch exactly once (see the module docstring), counting ``losses`` (and
        the parts this drops: rows that cannot be passed to the database) with it."""
        lost = list(losses)
        literals: dict[str, str] = {}
        texts: dict[int, str] = {}
        refused: set[str] = set()
        for w in writes:
            if w.plugin in refused:
                continue
            try:
                texts[id(w)] = _admissible(w, self._addresses)
            except (ValueError, TypeError) as exc:
                refused.add(w.plugin)
                lost.append(Loss(w.plugin, f"rows the graph database cannot take: {exc}"))
                log.error(
                    "collector plugin %s gave sensor %s's batch %d rows that cannot be passed "
                    "to the graph database (%s); its part is dropped, the rest applies",
                    w.plugin or "(unnamed)", sensor.id, seq, exc,
                )  # fmt: skip
        writes = [w for w in writes if w.plugin not in refused]
        params: dict[str, Any] = {
            "sid": sensor.id,
            "site": sensor.site,
            "epoch": sensor.epoch,
            "seq": seq,
            "prev": seq - 1,
            "now": time.time(),
            "counters": [f"{k}={v}" for k, v in sorted((counters or {}).items())],
            "hosts": self._hosts(sensor, writes),
        }
        await self._ensure_edges(sensor, writes)
        parts = [GUARD_CYPHER]
        per_plugin: dict[str, int] = {}
        for loss in lost:
            per_plugin[loss.plugin] = per_plugin.get(loss.plugin, 0) + 1
        if per_plugin or unhandled:
            sets = [
                "s.plugin_lost = coalesce(s.plugin_lost, 0) + $lost",
                "s.unhandled_extensions = coalesce(s.unhandled_extensions, 0) + $unhandled",
            ]
            for i, (plugin, n) in enumerate(per_plugin.items()):
                prop = loss_property(plugin)
                sets.append(f"s.`{prop}` = coalesce(s.`{prop}`, 0) + $lost{i}")
                params[f"lost{i}"] = n
            if lost:
                sets.append("s.last_plugin_loss = $loss_reason")
                last = lost[-1]
                params["loss_reason"] = f"plugin {last.plugin}: {last.reason}"[:500]
            params["lost"] = len(lost)
            params["unhandled"] = unhandled
            parts.append("SET " + ", ".join(sets))
        parts.append(HOSTS_CYPHER)
        for i, w in enumerate(writes):
            name = f"w{i}"
            literals[name] = texts[id(w)]
            parts.append(w.bind(name))
        try:
            query = with_params("\n".join(parts), params, literals)
        except (ValueError, TypeError) as exc:
            raise PoisonBatch(str(exc)) from None
        start = time.perf_counter()
        res = await self.graph.query(query)
        elapsed = time.perf_counter() - start
        self.stats.write_seconds += elapsed
        if res.properties_set > 0:
            self._hosts_written(params["hosts"])
            self.stats.batches += 1
            rows = 0
            by_plugin = self.stats.rows_by_plugin
            for w in writes:
                rows += len(w.rows)
                by_plugin[w.plugin] = by_plugin.get(w.plugin, 0) + len(w.rows)
            self.stats.rows += rows
            if self.observe is not None:
                self.observe(elapsed, rows)
            for plugin, n in per_plugin.items():
                self.stats.plugin_lost[plugin] = self.stats.plugin_lost.get(plugin, 0) + n
            self.stats.unhandled_extensions += unhandled
            await self._record_changes(sensor, writes)
            return Outcome.APPLIED
        return await self._explain(sensor, seq)

    async def _record_changes(self, sensor: SensorInfo, writes: list[GraphWrite]) -> None:
        """Route changes around the batch's new traces (collector/history.py). The batch has
        applied: a failure here is logged and costs only the CHANGED edges of these traces."""
        ids = history.trace_ids(writes)
        if not ids:
            return
        try:
            changes = await history.record_changes(self.graph, ids)
        except redis.exceptions.RedisError as exc:
            self.stats.route_change_errors += 1
            log.error("route changes for sensor %s's traces not recorded: %s", sensor.id, exc)
            return
        self.stats.route_changes += len(changes)
        if changes and self.route_changed is not None:
            try:
                await self.route_changed(sensor, changes)
            except Exception:
                log.exception("a reader of sensor %s's route changes failed", sensor.id)

    async def gap(self, sensor: SensorInfo, seq: int, gap: wire_pb2.Gap) -> Outcome:
        """Move the mark past envelopes the sensor had to drop, and count the loss."""
        res = await self.graph.query(
            with_params(
                GAP_CYPHER,
                {
                    "sid": sensor.id,
                    "epoch": sensor.epoch,
                    "seq": seq,
                    "first": gap.first_seq,
                    "now": time.time(),
                    "lost_envelopes": gap.lost_envelopes,
                    "lost_items": gap.lost_items,
                    "reason": gap.reason,
                },
            )
        )
        if res.properties_set > 0:
            log.warning(
                "sensor %s dropped %d envelopes (%d items): %s",
                sensor.id,
                gap.lost_envelopes,
                gap.lost_items,
                gap.reason,
            )
            if self.events is not None:
                self.events("gap", {"sensor": sensor.id, "epoch": sensor.epoch,
                            "first_seq": gap.first_seq, "seq": seq,
                            "lost_envelopes": gap.lost_envelopes, "lost_items": gap.lost_items,
                            "reason": gap.reason})  # fmt: skip
            return Outcome.APPLIED
        return await self._explain(sensor, seq)

    async def _explain(self, sensor: SensorInfo, seq: int) -> Outcome:
        mark = await self.mark(sensor.id)
        if mark is None:
            raise DeliveryError(f"sensor {sensor.id!r} sent a batch before its hello")
        epoch, acked = mark
        if epoch != sensor.epoch:
            raise DeliveryError(
                f"sensor {sensor.id!r} sent epoch {sensor.epoch} but the graph holds {epoch}"
            )
        if seq <= acked:
            self.stats.duplicates += 1
            return Outcome.DUPLICATE
        raise DeliveryError(
            f"sensor {sensor.id!r} sent seq {seq} but the graph holds {acked}: seqs "
            f"{acked + 1}..{seq - 1} are missing"
        )
