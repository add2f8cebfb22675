"""The ``dpi`` plugin, collector half: ``NameReport`` names -> ``Host.name`` and ``Host.names``.

``name`` is the name seen last (by capture time, so the order in which reports arrive does not
matter), with ``name_source`` (``sni``, ``http`` or ``dns``) and ``name_seen``. ``names`` holds the
:data:`MAX_NAMES` names stored most recently, without repeats, the latest last. Every name is
checked again here (:mod:`.names`): the collector stores nothing a sensor could not have seen.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import DecodeError

from net_gazer.collector import (
    GLOBAL_SCOPE,
    CollectorContext,
    GraphWrite,
    SensorInfo,
    addr_info,
    hookimpl,
)
from net_gazer.v1 import quality_pb2

from .names import hostname

#: Names kept per host.
MAX_NAMES = 16

SOURCES = {
    quality_pb2.NAME_SOURCE_TLS_SNI: "sni",
    quality_pb2.NAME_SOURCE_HTTP_HOST: "http",
    quality_pb2.NAME_SOURCE_DNS: "dns",
}

NAMES_CYPHER = f"""
FOREACH (r IN $rows |
  MERGE (h:Host {{scope: r.scope, ip: r.ip}})
  SET h.name = CASE WHEN h.name_seen IS NULL OR r.ts >= h.name_seen THEN r.name ELSE h.name END,
    h.name_source = CASE WHEN h.name_seen IS NULL OR r.ts >= h.name_seen THEN r.source
      ELSE h.name_source END,
    h.name_seen = CASE WHEN h.name_seen IS NULL OR r.ts >= h.name_seen THEN r.ts
      ELSE h.name_seen END,
    h.names = ([n IN coalesce(h.names, []) WHERE NOT n IN r.names] + r.names)[-{MAX_NAMES}..]
)
"""


@hookimpl
def ng_handle_extension(
    ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
) -> list[GraphWrite] | None:
    if not payload.Is(quality_pb2.NameReport.DESCRIPTOR):
        return None
    report = quality_pb2.NameReport()
    try:
        payload.Unpack(report)
    except DecodeError:
        ctx.count("reports_rejected")
        ctx.log.warning("sensor %s sent a name report that does not decode", sensor.id)
        return []
    hosts: dict[str, dict[str, Any]] = {}
    for item in report.names:
        name = hostname(item.name)
        try:
            ip, _, is_global = addr_info(item.ip)
        except ValueError:
            ip = ""
        if name is None or not ip or not math.isfinite(item.seen):
            ctx.count("names_rejected")
            continue
        row = hosts.get(ip)
        if row is None:
            row = hosts[ip] = {
                "ip": ip,
                "scope": GLOBAL_SCOPE if is_global else sensor.site,
                "seen": {},
            }
        seen: dict[str, tuple[float, str]] = row["seen"]
        sighting = (item.seen, SOURCES.get(item.source, "unknown"))
        if name not in seen or sighting > seen[name]:
            seen[name] = sighting
    rows = []
    for row in hosts.values():
        seen = row.pop("seen")
        # Latest last; equal times in name order, so that the result never depends on the
        # order of the report.
        names = sorted(seen, key=lambda n: (seen[n][0], n))
        latest = names[-1]
        row.update(
            names=names[-MAX_NAMES:], name=latest, ts=seen[latest][0], source=seen[latest][1]
        )
        rows.append(row)
    if not rows:
        return []
    ctx.count("names_stored", sum(len(r["names"]) for r in rows))
    return [GraphWrite(cypher=NAMES_CYPHER, rows=rows, hosts=[(r["ip"], r["ts"]) for r in rows])]
