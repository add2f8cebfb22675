"""``/api/hosts/<ip>``, ``/api/traces`` and ``/api/sensors``."""

from __future__ import annotations

import ipaddress
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from net_gazer.collector.web import rows
from net_gazer.collector.web.common import BadRequest, config, graph, int_arg, privacy
from net_gazer.collector.web.common import request_filter as _request_filter

bp = Blueprint("hosts", __name__)

HOST_CYPHER = "MATCH (h:Host {ip: $ip}) RETURN properties(h) ORDER BY h.scope"
AS_CLIENT_CYPHER = (
    "MATCH (h:Host {scope: $scope, ip: $ip})-[e:CONNECTS]->(s:Host) "
    "RETURN properties(h), properties(s), properties(e) ORDER BY e.last_seen DESC LIMIT $limit"
)
AS_SERVER_CYPHER = (
    "MATCH (c:Host)-[e:CONNECTS]->(h:Host {scope: $scope, ip: $ip}) "
    "RETURN properties(c), properties(h), properties(e) ORDER BY e.last_seen DESC LIMIT $limit"
)
PATHS_CYPHER = "MATCH (t:Trace {dst: $ip}) RETURN properties(t) ORDER BY t.sensor, t.finished DESC"
HOPS_CYPHER = (
    "MATCH (t:Trace {id: $tid})-[a:AT]->(h:Host) RETURN a.ttl, a.rtt_ms, a.inferred, "
    "h.ip, h.scope, h.name, h.country_code, h.asn ORDER BY a.ttl"
)
CHANGES_CYPHER = (
    "MATCH (a:Trace {dst: $ip})-[c:CHANGED]->(b:Trace) "
    "RETURN a.sensor, a.id, b.id, coalesce(b.finished, b.started), c.ttl, c.before, c.after "
    "ORDER BY coalesce(b.finished, b.started) DESC LIMIT 500"
)
TRACE_FIELDS = ("id", "sensor", "src", "dst", "method", "flow_id", "started", "finished",
                "reached", "hop_count", "hops", "rtts")  # fmt: skip
TRACES_CYPHER = (
    "MATCH (t:Trace) RETURN properties(t) ORDER BY coalesce(t.finished, t.started) DESC "
    "SKIP $skip LIMIT $page"
)
SENSORS_CYPHER = "MATCH (s:Sensor) RETURN properties(s) ORDER BY s.id LIMIT 10000"


def _conn(row: list[Any], masked: bool) -> dict[str, Any]:
    client, server, edge = row[0] or {}, row[1] or {}, row[2] or {}
    if masked:
        client = rows.mask_host(client)
    return {
        "client": client.get("ip"),
        "client_scope": client.get("scope"),
        "server": server.get("ip"),
        "server_scope": server.get("scope"),
        **{k: v for k, v in edge.items() if not k.endswith(("_c2s", "_s2c"))},
    }


@bp.get("/api/hosts/<path:ip>")
def host(ip: str) -> ResponseReturnValue:
    try:
        canonical = str(ipaddress.ip_address(ip.strip("[]")))
    except ValueError:
        raise BadRequest(f"{ip!r} is not an IP address", "ip") from None
    reader = graph()
    found = [h for (h,) in reader.query(HOST_CYPHER, {"ip": canonical}) if h]
    scope = request.args.get("scope")
    if scope:
        found = [h for h in found if h.get("scope") == scope]
    if not found:
        return jsonify(error=f"no host {canonical} in the graph", status=404), 404
    h = found[0]
    limit = int_arg("limit", 500, 1, 100_000)
    params = {"scope": h["scope"], "ip": canonical, "limit": limit}
    masked = privacy()
    as_client = [_conn(r, masked) for r in reader.query(AS_CLIENT_CYPHER, params)]
    as_server = [_conn(r, masked) for r in reader.query(AS_SERVER_CYPHER, params)]
    if masked and as_client:
        # The host is someone's client: its own address is masked like every client's.
        h = rows.mask_host(h)
    paths: dict[str, dict[str, Any]] = {}
    for (t,) in reader.query(PATHS_CYPHER, {"ip": canonical}):
        if not t or t.get("sensor") in paths:
            continue  # the newest trace per sensor
        hops = [
            {"ttl": ttl, "rtt_ms": rtt, "inferred": inferred, "ip": hip, "scope": hscope,
             "name": name, "country_code": cc, "asn": asn}
            for ttl, rtt, inferred, hip, hscope, name, cc, asn in reader.query(
                HOPS_CYPHER, {"tid": t["id"]}
            )
        ]  # fmt: skip
        paths[str(t.get("sensor"))] = {
            **{k: t.get(k) for k in TRACE_FIELDS},
            "hop_list": hops,
        }
    changes = [
        {"sensor": s, "from_trace": a, "to_trace": b, "at": when, "ttl": ttl,
         "before": before, "after": after}
        for s, a, b, when, ttl, before, after in reader.query(CHANGES_CYPHER, {"ip": canonical})
    ]  # fmt: skip
    return jsonify(
        host=h,
        other_scopes=[x["scope"] for x in found[1:]],
        connections={"as_client": as_client, "as_server": as_server},
        paths=list(paths.values()),
        route_changes=changes,
        masked=masked,
    )


@bp.get("/api/traces")
def traces() -> ResponseReturnValue:
    """Trace runs, newest first; ``q`` and the shorthands apply to the destination (``dst:``,
    ``host:``), the sensor and ``since``; ``limit`` (default 200)."""
    limit = int_arg("limit", 200, 1, 100_000)
    flt = _request_filter()
    reader = graph()
    out: list[dict[str, Any]] = []
    skip = 0
    while len(out) < limit:
        page = reader.query(TRACES_CYPHER, {"skip": skip, "page": 2000})
        for (props,) in page:
            t = props or {}
            row = {
                "client": {"ip": t.get("src")},
                "server": {"ip": t.get("dst")},
                "edge": {"sensor": t.get("sensor"), "last_seen": t.get("finished")},
            }
            if flt.matches(row):
                out.append({k: t.get(k) for k in TRACE_FIELDS})
                if len(out) >= limit:
                    break
        if len(page) < 2000:
            break
        skip += 2000
    return jsonify(traces=out, count=len(out))


def _counters(items: Any) -> dict[str, int]:
    values: dict[str, int] = {}
    for item in items or []:
        key, _, value = str(item).partition("=")
        if value.lstrip("-").isdigit():
            values[key] = int(value)
    return values


def sensor_json(props: dict[str, Any]) -> dict[str, Any]:
    counters = _counters(props.get("counters"))
    drops = sum(
        v for k, v in counters.items()
        if k in ("pcap_dropped", "pcap_ifdropped", "outbox_dropped_envelopes")
    )  # fmt: skip
    plugin_errors = sum(
        v for k, v in counters.items() if k.startswith("plugin_") and k.endswith("_errors")
    )
    out = {k: v for k, v in props.items() if k != "counters"}
    out.update(
        counters=counters,
        drops=drops,
        plugin_errors=plugin_errors,
        identity_conflicts=props.get("machine_id_conflicts", 0) or 0,
        gaps=props.get("gaps", 0) or 0,
    )
    return out


@bp.get("/api/sensors")
def sensors() -> ResponseReturnValue:
    out = [sensor_json(p or {}) for (p,) in graph().query(SENSORS_CYPHER)]
    geo = config().geoip() or {}
    return jsonify(sensors=out, count=len(out), geoip=geo)


@bp.get("/api/geoip")
def geoip() -> ResponseReturnValue:
    """The GeoIP databases in use: path, type, build date, attribution; and the locations file."""
    return jsonify(config().geoip() or {})
