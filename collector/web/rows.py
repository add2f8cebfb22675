"""Rows read from the graph for the API: connections (CONNECTS with both hosts), hosts, sensors,
traces, and the graph revision. Reading only; the filter decides (see ``filterlang``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Iterator
from typing import Any

from net_gazer.collector.filterlang import Filter

#: Rows read per query while a filter is applied in Python.
PAGE = 2000

#: CONNECTS properties a connection sorts by (``sort=``), and host columns.
SORTABLE = {
    "last_seen": "e.last_seen", "first_seen": "e.first_seen", "count": "e.count",
    "attempts": "e.attempts", "refused": "e.refused", "unanswered": "e.unanswered",
    "rtt_ms": "e.rtt_ms", "client_rtt_ms": "e.client_rtt_ms", "retransmits": "e.retransmits",
    "dport": "e.dport", "sensor": "e.sensor", "client": "c.ip", "server": "s.ip",
}  # fmt: skip

REVISION_CYPHER = (
    "MATCH (s:Sensor) RETURN sum(coalesce(s.batches, 0)) + sum(coalesce(s.gaps, 0)), count(s), "
    "max(s.last_seen)"
)
META_CYPHER = "MATCH (m:Meta) RETURN m.id, m.revision"


#: Host and CONNECTS properties read for a connection row. Named columns: FalkorDB returns them
#: several times faster than ``properties()`` maps.
HOST_COLUMNS = ("ip", "scope", "family", "private", "name", "names", "country_code", "country",
                "city", "lat", "lon", "asn", "as_org", "site", "geo_source")  # fmt: skip
EDGE_COLUMNS = ("sensor", "dport", "proto", "direction", "first_seen", "last_seen", "count",
                "attempts", "refused", "unanswered", "abandoned", "evicted", "syn_retransmits",
                "rtt_ms", "rtt_ms_min", "rtt_ms_max", "rtt_ms_sum", "rtt_samples",
                "client_rtt_ms", "client_rtt_ms_min", "client_rtt_ms_max", "client_rtt_ms_sum",
                "client_rtt_samples", "ts_rtt_ms", "retransmits", "loss_rate")  # fmt: skip
RETURN = ", ".join(
    [f"c.{k}" for k in HOST_COLUMNS] + [f"s.{k}" for k in HOST_COLUMNS]
    + [f"e.{k}" for k in EDGE_COLUMNS]
)  # fmt: skip
NH = len(HOST_COLUMNS)

#: Newest-first reads go back in time in slices of CONNECTS.last_seen (an indexed range), each
#: SLICE_GROWTH times longer than the one before, so the newest rows of a big graph cost a
#: slice, not a sort of every edge.
FIRST_SLICE = 600.0
SLICE_GROWTH = 8.0
COUNT_CYPHER = "MATCH ()-[e:CONNECTS]->() RETURN count(e)"


def _row(values: list[Any]) -> dict[str, Any]:
    client = {k: v for k, v in zip(HOST_COLUMNS, values[:NH], strict=True) if v is not None}
    server = {k: v for k, v in zip(HOST_COLUMNS, values[NH : 2 * NH], strict=True) if v is not None}
    edge = {k: v for k, v in zip(EDGE_COLUMNS, values[2 * NH :], strict=True) if v is not None}
    return {"client": client, "server": server, "edge": edge}


def connection_cypher(where: list[str], order: str = "e.last_seen DESC") -> str:
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    return (
        f"MATCH (c:Host)-[e:CONNECTS]->(s:Host){clause} "
        f"WITH c, e, s ORDER BY {order} SKIP $skip LIMIT $page RETURN {RETURN}"
    )


def _sliced(graph: Any, where: list[str], params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every connection matching ``where``, newest first: slices of ``last_seen`` going back in
    time, each read in pages of :data:`PAGE` (a sort over one slice, not over every edge)."""
    total = graph.query(COUNT_CYPHER)
    if not total or not total[0][0]:
        return
    extra = (" AND " + " AND ".join(where)) if where else ""
    # The edge pattern stays unlabelled so that FalkorDB scans the edge index alone.
    base = "MATCH (c)-[e:CONNECTS]->(s) WHERE e.last_seen < $hi"
    tail = f"{extra} WITH c, e, s ORDER BY e.last_seen DESC SKIP $skip LIMIT $page RETURN {RETURN}"
    bounded = base + " AND e.last_seen >= $lo" + tail
    older = "MATCH ()-[e:CONNECTS]->() WHERE e.last_seen < $lo RETURN count(e)"
    hi = 1e300  # the first slice also holds what clocks ahead of the collector's stamped
    lo: float | None = time.time() - FIRST_SLICE
    width = FIRST_SLICE
    while True:
        skip = 0
        while True:
            page = {**params, "hi": hi, "skip": skip, "page": PAGE}
            if lo is None:
                rows = graph.query(base + tail, page)
            else:
                rows = graph.query(bounded, {**page, "lo": lo})
            for values in rows:
                yield _row(values)
            if len(rows) < PAGE:
                break
            skip += PAGE
        if lo is None:
            return
        left = graph.query(older, {"lo": lo})
        if not left or not left[0][0]:
            return
        width *= SLICE_GROWTH
        hi, lo = lo, (lo - width if lo - width > 0 else None)


def connections(
    graph: Any,
    flt: Filter,
    *,
    limit: int | None,
    order: str = "e.last_seen DESC",
    extra_where: list[str] | None = None,
    extra_params: dict[str, Any] | None = None,
    page: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Matching connection rows (``{"client", "server", "edge"}``), in ``order``; at most
    ``limit`` (None: all)."""
    push = flt.pushdown()
    where = [*push.where, *(extra_where or [])]
    params = {**push.params, **(extra_params or {})}
    yielded = 0
    if order == "e.last_seen DESC" and not extra_where:
        source: Iterator[dict[str, Any]] = _sliced(graph, where, params)
    else:
        source = _paged(graph, where, params, order, limit, flt, page)
    for row in source:
        if flt.matches(row):
            yield row
            yielded += 1
            if limit is not None and yielded >= limit:
                return


def _paged(
    graph: Any,
    where: list[str],
    params: dict[str, Any],
    order: str,
    limit: int | None,
    flt: Filter,
    page: int | None,
) -> Iterator[dict[str, Any]]:
    cypher = connection_cypher(where, order)
    skip = 0
    if page is None:
        page = PAGE if limit is None or not flt.empty else min(PAGE, max(limit, 1))
    while True:
        rows = graph.query(cypher, {**params, "skip": skip, "page": page})
        for values in rows:
            yield _row(values)
        if len(rows) < page:
            return
        skip += page


def revision(graph: Any) -> tuple[Any, ...]:
    """What changes whenever the graph does: applied batches and gaps over all sensors, the
    number of sensors, their latest hello or batch, and the collector's own revisions (``Meta``
    nodes: GeoIP re-enrichment)."""
    rows = graph.query(REVISION_CYPHER)
    meta = sorted((str(k), v) for k, v in graph.query(META_CYPHER))
    return (*(rows[0] if rows else ()), *meta)


def etag(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:24]


# -- privacy -------------------------------------------------------------------------------------
def mask_ip(ip: str) -> str:
    """A client address with its host part cut: a /24 for IPv4, a /48 for IPv6."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "masked"
    bits = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


MASKED_HOST_PROPS = ("name", "names", "name_source", "name_seen", "lat", "lon", "city")


def mask_host(host: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in host.items() if k not in MASKED_HOST_PROPS}
    if out.get("ip"):
        out["ip"] = mask_ip(str(out["ip"]))
    out["masked"] = True
    return out
