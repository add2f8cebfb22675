"""Rows read from the graph for the API: connections (CONNECTS with both hosts), hosts, sensors,
traces, and the graph revision. Reading only; the filter decides (see ``filterlang``).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator
from typing import Any

from net_gazer.collector.filterlang import Filter

#: Rows read per query while a filter is applied in Python.
PAGE = 5000

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


def connection_cypher(where: list[str], order: str = "e.last_seen DESC") -> str:
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    return (
        f"MATCH (c:Host)-[e:CONNECTS]->(s:Host){clause} "
        f"RETURN properties(c), properties(s), properties(e) ORDER BY {order} "
        "SKIP $skip LIMIT $page"
    )


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
    cypher = connection_cypher(where, order)
    skip, yielded = 0, 0
    if page is None:
        page = PAGE if limit is None or not flt.empty else min(PAGE, max(limit, 1))
    while True:
        rows = graph.query(cypher, {**params, "skip": skip, "page": page})
        for client, server, edge in rows:
            row = {"client": client or {}, "server": server or {}, "edge": edge or {}}
            if flt.matches(row):
                yield row
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
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
