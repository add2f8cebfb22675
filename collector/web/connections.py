"""``GET /api/connections``: the CONNECTS edges as JSON, CSV or XLSX, raw or aggregated.

- ``format=json|csv|xlsx`` (default json);
- ``q`` and the shorthand parameters (docs/filter.md);
- ``group=port|server|client``: aggregated per (port, proto), per server or per client instead
  of one row per (client, server, port, sensor);
- ``sort=<column>`` and ``order=asc|desc`` (default ``last_seen``, newest first);
- ``limit`` rows (default 1000 for JSON, 1,000,000 for the files).

CSV is streamed as it is read; XLSX is written by XlsxWriter in its ``constant_memory`` mode (one
row in memory at a time) into a temporary file, which is then streamed and removed.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue

from net_gazer.collector.web import rows
from net_gazer.collector.web.common import BadRequest, graph, int_arg, privacy, request_filter

bp = Blueprint("connections", __name__)

#: Raw columns: (name, where it comes from).
RAW = (
    ("sensor", "e"), ("client", "c"), ("client_scope", "c"), ("client_name", "c"),
    ("client_country", "c"), ("server", "s"), ("server_scope", "s"), ("server_name", "s"),
    ("server_country", "s"), ("server_city", "s"), ("server_asn", "s"), ("server_as_org", "s"),
    ("dport", "e"), ("proto", "e"), ("direction", "e"), ("first_seen", "e"), ("last_seen", "e"),
    ("count", "e"), ("attempts", "e"), ("refused", "e"), ("unanswered", "e"), ("abandoned", "e"),
    ("evicted", "e"), ("syn_retransmits", "e"), ("rtt_ms", "e"), ("rtt_ms_min", "e"),
    ("rtt_ms_max", "e"), ("rtt_samples", "e"), ("client_rtt_ms", "e"),
    ("client_rtt_ms_min", "e"), ("client_rtt_ms_max", "e"), ("client_rtt_samples", "e"),
    ("ts_rtt_ms", "e"), ("retransmits", "e"), ("loss_rate", "e"),
    # UDP edges (proto "udp", plugins/udp/collector.py); empty on TCP rows.
    ("flows", "e"), ("answered_flows", "e"), ("answered", "e"), ("packets_c2s", "e"),
    ("packets_s2c", "e"), ("bytes_c2s", "e"), ("bytes_s2c", "e"),
)  # fmt: skip
RAW_COLUMNS = tuple(name for name, _ in RAW)
#: What the raw rows read from the graph: fewer properties read faster.
READ: rows.Columns = (
    ("ip", "scope", "name", "country_code", "city", "asn", "as_org"),
    tuple(name for name, src in RAW if src == "e"),
)

SUMS = ("count", "attempts", "refused", "unanswered", "abandoned", "evicted", "retransmits")
GROUPS: dict[str, tuple[str, ...]] = {
    "port": ("dport", "proto"),
    "server": ("server", "server_scope", "server_name", "server_country", "server_asn"),
    "client": ("client", "client_scope", "client_name", "client_country"),
}
GROUP_EXTRA = ("connections", "clients", "servers", "ports", "sensors", *SUMS, "rtt_ms",
               "client_rtt_ms", "first_seen", "last_seen")  # fmt: skip

MIME = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def flat(row: dict[str, Any], masked: bool) -> dict[str, Any]:
    c, s, e = row["client"], row["server"], row["edge"]
    if masked:
        c = rows.mask_host(c)
    out: dict[str, Any] = {}
    for name, src in RAW:
        if src == "e":
            out[name] = e.get(name)
            continue
        host = c if src == "c" else s
        prop = name.split("_", 1)[1] if "_" in name else "ip"
        prop = {"country": "country_code"}.get(prop, prop)
        out[name] = host.get(prop)
    if out["proto"] is None:
        out["proto"] = "tcp"
    return out


def aggregate(items: Iterable[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    keys = GROUPS[group]
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in items:
        k = tuple(r.get(x) for x in keys)
        g = groups.get(k)
        if g is None:
            g = groups[k] = {x: r.get(x) for x in keys}
            g.update(connections=0, _clients=set(), _servers=set(), _ports=set(), _sensors=set(),
                     _rs=0.0, _rn=0, _cs=0.0, _cn=0, first_seen=None, last_seen=None)  # fmt: skip
            g.update(dict.fromkeys(SUMS, 0))
        g["connections"] += 1
        g["_clients"].add((r["client_scope"], r["client"]))
        g["_servers"].add((r["server_scope"], r["server"]))
        g["_ports"].add(r["dport"])
        g["_sensors"].add(r["sensor"])
        for x in SUMS:
            if isinstance(r.get(x), int | float):
                g[x] += r[x]
        if r.get("rtt_samples"):
            g["_rs"] += (r.get("rtt_ms") or 0.0) * r["rtt_samples"]
            g["_rn"] += r["rtt_samples"]
        if r.get("client_rtt_samples"):
            g["_cs"] += (r.get("client_rtt_ms") or 0.0) * r["client_rtt_samples"]
            g["_cn"] += r["client_rtt_samples"]
        if r.get("first_seen") is not None and (
            g["first_seen"] is None or r["first_seen"] < g["first_seen"]
        ):
            g["first_seen"] = r["first_seen"]
        if r.get("last_seen") is not None and (
            g["last_seen"] is None or r["last_seen"] > g["last_seen"]
        ):
            g["last_seen"] = r["last_seen"]
    out = []
    for g in groups.values():
        g["clients"] = len(g.pop("_clients"))
        g["servers"] = len(g.pop("_servers"))
        g["ports"] = ",".join(str(p) for p in sorted(x for x in g.pop("_ports") if x is not None))
        g["sensors"] = ",".join(sorted(str(x) for x in g.pop("_sensors")))
        rs, rn, cs, cn = g.pop("_rs"), g.pop("_rn"), g.pop("_cs"), g.pop("_cn")
        g["rtt_ms"] = rs / rn if rn else None
        g["client_rtt_ms"] = cs / cn if cn else None
        out.append(g)
    return out


def _sort_key(column: str) -> Any:
    def key(r: dict[str, Any]) -> tuple[int, Any]:
        v = r.get(column)
        if v is None:
            return (1, 0)
        return (0, v if isinstance(v, int | float) else str(v))

    return key


def _csv(columns: tuple[str, ...], items: Iterable[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for n, r in enumerate(items):
        writer.writerow(["" if r.get(c) is None else _cell(r.get(c)) for c in columns])
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a spreadsheet never runs what a sensor sent as a formula
    return value


def _xlsx(columns: tuple[str, ...], items: Iterable[dict[str, Any]]) -> Response:
    import xlsxwriter

    fd, path = tempfile.mkstemp(prefix="ng-export-", suffix=".xlsx")
    os.close(fd)
    try:
        book = xlsxwriter.Workbook(
            path, {"constant_memory": True, "strings_to_formulas": False,
                   "strings_to_urls": False, "strings_to_numbers": False},
        )  # fmt: skip
        sheet = book.add_worksheet("connections")
        bold = book.add_format({"bold": True})
        sheet.write_row(0, 0, columns, bold)
        for n, r in enumerate(items, 1):
            for i, c in enumerate(columns):
                v = r.get(c)
                if v is None:
                    continue
                if isinstance(v, bool):
                    sheet.write_boolean(n, i, v)
                elif isinstance(v, int | float):
                    sheet.write_number(n, i, v)
                else:
                    sheet.write_string(n, i, str(v))
        book.close()
        f = open(path, "rb")  # noqa: SIM115 - closed by the response below
    finally:
        os.unlink(path)  # the open file stays readable until it is closed

    def chunks() -> Iterator[bytes]:
        with f:
            while block := f.read(64 * 1024):
                yield block

    return Response(chunks(), mimetype=MIME["xlsx"])


@bp.get("/api/connections")
def connections() -> ResponseReturnValue:
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv", "xlsx"):
        raise BadRequest(f"format {fmt!r} is not supported; use json, csv or xlsx", "format")
    group = request.args.get("group") or None
    if group is not None and group not in GROUPS:
        raise BadRequest(f"group is one of {', '.join(GROUPS)}, not {group!r}", "group")
    columns = (*GROUPS[group], *GROUP_EXTRA) if group else RAW_COLUMNS
    sort = request.args.get("sort", "last_seen")
    if sort not in columns:
        raise BadRequest(f"sort must be one of the columns: {', '.join(columns)}", "sort")
    order = request.args.get("order", "desc").lower()
    if order not in ("asc", "desc"):
        raise BadRequest("order is asc or desc", "order")
    limit = int_arg("limit", 1000 if fmt == "json" else 1_000_000, 1, 1_000_000)
    flt = request_filter()
    masked = privacy()
    reader = graph()
    if group is None and sort in rows.SORTABLE:
        cypher_order = f"{rows.SORTABLE[sort]} {order.upper()}"
        items: Iterable[dict[str, Any]] = (
            flat(r, masked)
            for r in rows.connections(reader, flt, limit=limit, order=cypher_order, cols=READ)
        )
    else:
        found = [flat(r, masked) for r in rows.connections(reader, flt, limit=None, cols=READ)]
        if group is not None:
            found = aggregate(found, group)
        found.sort(key=_sort_key(sort), reverse=order == "desc")
        if order == "desc":  # missing values last either way
            found.sort(key=lambda r: r.get(sort) is None)
        items = found[:limit]
    if fmt == "json":
        out = list(items)
        return jsonify(connections=out, count=len(out), masked=masked)
    name = f"connections{'-by-' + group if group else ''}.{fmt}"
    if fmt == "csv":
        response = Response(stream_with_context(_csv(columns, items)), mimetype=MIME["csv"])
    else:
        response = _xlsx(columns, items)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
