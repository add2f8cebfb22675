"""``GET /api/graph``: Cytoscape ``elements`` (``{"nodes": [...], "edges": [...]}``), bounded.

The unit of the limit is a *path*: one server as one sensor sees it, with the hops of that
sensor's latest trace to it (sensor -> hop -> ... -> server) and every matching connection to it
(client -> server). ``limit`` paths are taken newest first (by the connections' ``last_seen``),
and a path is always whole: its hops and its connections come together or not at all.

Parameters: ``q`` (docs/filter.md) and the shorthands ``sensor host cidr port country asn since``,
``limit`` (paths, default :data:`DEFAULT_LIMIT`), ``collapse=1`` (parallel edges between two
nodes, one per sensor and port, become one edge with ``sensors`` and ``dports`` lists and summed
counts). The ETag comes from the graph's revision (see ``rows.revision``), so a poller's
``If-None-Match`` gets a 304 while nothing changed.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from net_gazer.collector.web import rows
from net_gazer.collector.web.common import bool_arg, graph, int_arg, privacy, request_filter

bp = Blueprint("graph", __name__)

DEFAULT_LIMIT = 200
MAX_LIMIT = 5000

HOST_DATA = ("ip", "scope", "family", "private", "name", "country_code", "country", "city",
             "lat", "lon", "asn", "as_org", "site", "geo_source", "first_seen", "last_seen",
             "masked")  # fmt: skip
EDGE_COUNTS = ("count", "attempts", "refused", "unanswered", "abandoned", "evicted",
               "retransmits", "rtt_ms_sum", "rtt_samples", "client_rtt_ms_sum",
               "client_rtt_samples")  # fmt: skip
EDGE_DATA = ("sensor", "dport", "proto", "direction", "first_seen", "last_seen", "rtt_ms",
             "rtt_ms_min", "rtt_ms_max", "client_rtt_ms", "loss_rate", *EDGE_COUNTS)  # fmt: skip

TRACES_CYPHER = (
    "MATCH (t:Trace) WHERE t.dst IN $ips "
    "RETURN t.id, t.sensor, t.dst, coalesce(t.finished, t.started, 0), t.reached"
)
HOPS_CYPHER = (
    "MATCH (t:Trace)-[a:AT]->(h:Host) WHERE t.id IN $ids "
    "RETURN t.id, a.ttl, a.rtt_ms, properties(h)"
)
SENSORS_CYPHER = (
    "MATCH (x:Sensor) WHERE x.id IN $ids RETURN x.id, x.hostname, x.version, x.site, x.last_seen"
)


def host_id(host: dict[str, Any]) -> str:
    return f"h|{host.get('scope', '')}|{host.get('ip', '')}"


def sensor_id(sid: str) -> str:
    return f"s|{sid}"


class Elements:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[str, dict[str, Any]] = {}

    def host(self, host: dict[str, Any], role: str) -> str:
        nid = host_id(host)
        node = self.nodes.get(nid)
        if node is None:
            data = {k: host[k] for k in HOST_DATA if host.get(k) is not None}
            data.update(id=nid, kind="host", label=host.get("name") or host.get("ip"), roles=[])
            node = self.nodes[nid] = data
        if role not in node["roles"]:
            node["roles"].append(role)
        return nid

    def sensor(self, sid: str, info: dict[str, Any]) -> str:
        nid = sensor_id(sid)
        if nid not in self.nodes:
            self.nodes[nid] = {"id": nid, "kind": "sensor", "label": sid, "sensor": sid, **info}
        return nid

    def edge(self, eid: str, data: dict[str, Any]) -> None:
        self.edges.setdefault(eid, {"id": eid, **data})

    def json(self, collapse: bool) -> dict[str, list[dict[str, Any]]]:
        edges = list(self.edges.values())
        if collapse:
            edges = _collapse(edges)
        for e in edges:
            for k in ("rtt_ms_sum", "rtt_samples", "client_rtt_ms_sum", "client_rtt_samples"):
                e.pop(k, None)
        return {
            "nodes": [{"data": n} for n in self.nodes.values()],
            "edges": [{"data": e} for e in edges],
        }


def _collapse(edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e in edges:
        key = (e["kind"], e["source"], e["target"])
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                "id": f"{e['kind'][0]}|{e['source']}|{e['target']}",
                "kind": e["kind"],
                "source": e["source"],
                "target": e["target"],
                "sensors": [],
                "edges": 0,
            }
            if e["kind"] == "connects":
                g["dports"] = []
                g.update(dict.fromkeys(EDGE_COUNTS, 0))
        g["edges"] += 1
        if e.get("sensor") not in g["sensors"]:
            g["sensors"].append(e.get("sensor"))
        if e["kind"] == "connects":
            if e.get("dport") not in g["dports"]:
                g["dports"].append(e.get("dport"))
            for k in EDGE_COUNTS:
                value = e.get(k)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    g[k] += value
            for k in ("first_seen",):
                if e.get(k) is not None and (g.get(k) is None or e[k] < g[k]):
                    g[k] = e[k]
            if e.get("last_seen") is not None and (
                g.get("last_seen") is None or e["last_seen"] > g["last_seen"]
            ):
                g["last_seen"] = e["last_seen"]
        else:
            for k in ("gap", "rtt_ms"):
                if k in e and k not in g:
                    g[k] = e[k]
    out = []
    for g in groups.values():
        if g["kind"] == "connects":
            g["rtt_ms"] = g["rtt_ms_sum"] / g["rtt_samples"] if g["rtt_samples"] else None
            g["client_rtt_ms"] = (
                g["client_rtt_ms_sum"] / g["client_rtt_samples"]
                if g["client_rtt_samples"]
                else None
            )
            g["dports"].sort()
        g["sensors"].sort(key=str)
        out.append(g)
    return out


def build(limit: int, collapse: bool, masked: bool) -> tuple[dict[str, Any], int, bool]:
    """The elements, the number of paths, and whether more paths matched than ``limit``."""
    reader = graph()
    flt = request_filter()
    # Phase 1: the newest ``limit`` paths (sensor, server).
    keys: dict[tuple[str, str, str], None] = {}
    truncated = False
    for row in rows.connections(reader, flt, limit=None, page=max(4 * limit, 1000)):
        key = (row["edge"].get("sensor", ""), row["server"].get("scope", ""), row["server"]["ip"])
        if key in keys:
            continue
        if len(keys) >= limit:
            truncated = True
            break
        keys[key] = None
    el = Elements()
    if not keys:
        return el.json(collapse), 0, False
    ips = sorted({k[2] for k in keys})
    # Phase 2: every matching connection of those paths, whole.
    for row in rows.connections(
        reader, flt, limit=None, extra_where=["s.ip IN $ips"], extra_params={"ips": ips}
    ):
        edge = row["edge"]
        key = (edge.get("sensor", ""), row["server"].get("scope", ""), row["server"]["ip"])
        if key not in keys:
            continue
        client = rows.mask_host(row["client"]) if masked else row["client"]
        src = el.host(client, "client")
        dst = el.host(row["server"], "server")
        data = {k: edge[k] for k in EDGE_DATA if edge.get(k) is not None}
        eid = f"c|{edge.get('sensor')}|{src}|{dst}|{edge.get('dport')}|{edge.get('proto', 'tcp')}"
        if eid in el.edges:  # masked clients of one network: one edge, counts added
            old = el.edges[eid]
            for k in EDGE_COUNTS:
                if isinstance(data.get(k), int | float):
                    old[k] = old.get(k, 0) + data[k]
            continue
        el.edge(eid, {**data, "kind": "connects", "source": src, "target": dst})
    # The latest trace of each path, and its hops.
    latest: dict[tuple[str, str], tuple[float, str, bool]] = {}
    for tid, sensor, dst_ip, when, reached in reader.query(TRACES_CYPHER, {"ips": ips}):
        tk = (str(sensor), str(dst_ip))
        if tk not in latest or (when or 0) > latest[tk][0]:
            latest[tk] = (when or 0, str(tid), bool(reached))
    wanted = {(k[0], k[2]) for k in keys}
    trace_ids = {v[1]: k for k, v in latest.items() if k in wanted}
    hops: dict[str, list[tuple[int, Any, dict[str, Any]]]] = {}
    if trace_ids:
        for tid, ttl, rtt, props in reader.query(HOPS_CYPHER, {"ids": list(trace_ids)}):
            hops.setdefault(str(tid), []).append((int(ttl or 0), rtt, props or {}))
    sensors = {k[0] for k in keys}
    info = {
        str(sid): {"hostname": h, "version": v, "site": site, "last_seen": seen}
        for sid, h, v, site, seen in reader.query(SENSORS_CYPHER, {"ids": sorted(sensors)})
    }
    for sensor, scope, ip in keys:
        tid = latest.get((sensor, ip), (0, "", False))[1]
        if not tid or tid not in trace_ids:
            continue
        prev = el.sensor(sensor, info.get(sensor, {}))
        prev_ttl = 0
        dst_id = host_id({"scope": scope, "ip": ip})
        for ttl, rtt, props in sorted(hops.get(tid, []), key=lambda h: h[0]):
            if host_id(props) == dst_id:
                continue  # the destination closes the path below
            nid = el.host(props, "hop")
            el.edge(
                f"r|{sensor}|{prev}|{nid}",
                {"kind": "route", "source": prev, "target": nid, "sensor": sensor,
                 "gap": max(ttl - prev_ttl - 1, 0), "ttl": ttl, "rtt_ms": rtt},
            )  # fmt: skip
            prev, prev_ttl = nid, ttl
        reached = latest[(sensor, ip)][2]
        roles = el.nodes[dst_id]["roles"] if dst_id in el.nodes else []
        if "destination" not in roles:
            roles.append("destination")
        el.edge(
            f"r|{sensor}|{prev}|{dst_id}",
            {"kind": "route", "source": prev, "target": dst_id, "sensor": sensor,
             "reached": reached, "trace": tid},
        )  # fmt: skip
    return el.json(collapse), len(keys), truncated


@bp.get("/api/graph")
def graph_elements() -> ResponseReturnValue:
    limit = int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    collapse = bool_arg("collapse")
    masked = privacy()
    rev = rows.revision(graph())
    tag = rows.etag("graph", rev, request.full_path, masked)
    if request.if_none_match.contains(tag):
        not_modified = Response(status=304)
        not_modified.set_etag(tag)
        return not_modified
    elements, paths, truncated = build(limit, collapse, masked)
    body = {
        **elements,
        "meta": {
            "revision": rev[0] if rev else 0,
            "paths": paths,
            "limit": limit,
            "truncated": truncated,
            "masked": masked,
            "generated": time.time(),
        },
    }
    response = jsonify(body)
    response.set_etag(tag)
    response.headers["Cache-Control"] = "no-cache"
    return response
