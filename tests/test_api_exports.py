"""``/api/connections`` (JSON, CSV read back with ``csv``, XLSX read back with openpyxl; raw
and aggregated), ``/api/hosts/<ip>``, ``/api/traces`` and ``/api/sensors``, on a real FalkorDB.
Expected values are the scenario's (tests/api_fixture.py), summed by hand here."""

from __future__ import annotations

import csv
import io
from typing import Any

import openpyxl
import pytest
from api_fixture import GW1, GW2, load_scenario
from flask.testing import FlaskClient

from net_gazer.collector.web import WebConfig, create_app

ALL = GW1 + GW2


@pytest.fixture
def client(falkordb_url: str, graph_name: str) -> FlaskClient:
    load_scenario(falkordb_url, graph_name)
    return create_app(WebConfig(graph_url=falkordb_url, graph=graph_name)).test_client()


def read_xlsx(path: Any, sheet: str | None = None) -> list[tuple[Any, ...]]:
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return list((book[sheet] if sheet else book.active).iter_rows(values_only=True))
    finally:
        book.close()


def _json(client: FlaskClient, url: str, status: int = 200) -> Any:
    r = client.get(url)
    assert r.status_code == status, (url, r.get_data(as_text=True))
    return r.json


def test_json_raw_sorted_and_filtered(client: FlaskClient) -> None:
    body = _json(client, "/api/connections")
    assert body["count"] == len(ALL)
    got = [(r["client"], r["server"], r["dport"], r["sensor"]) for r in body["connections"]]
    newest_first = sorted(ALL, key=lambda c: c.last_seen, reverse=True)
    assert got[:3] == [(c.client, c.server, c.dport, s) for c, s in
                       zip(newest_first[:3], ["gw2", "gw2", "gw1"], strict=True)]  # fmt: skip
    asc = _json(client, "/api/connections?sort=rtt_ms&order=asc&q=sensor:gw2")["connections"]
    assert [r["rtt_ms"] for r in asc] == [80.0, None]  # refused: no RTT sample
    v6 = _json(client, "/api/connections?q=src:fd00::/16 not port:22")["connections"]
    assert [(r["client"], r["server"]) for r in v6] == [("fd00::1", "198.51.100.1")]
    assert _json(client, "/api/connections?limit=4")["count"] == 4
    assert _json(client, "/api/connections?sort=nope", 400)["parameter"] == "sort"
    assert _json(client, "/api/connections?q=port:", 400)["position"] == 5


def test_csv_opens_with_the_csv_reader(client: FlaskClient) -> None:
    r = client.get("/api/connections?format=csv&q=port:80")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    want = {(c.client, c.server) for c in ALL if c.dport == 80}
    assert {(t["client"], t["server"]) for t in table} == want
    assert all(t["dport"] == "80" and t["count"] == "1" for t in table)


def test_xlsx_opens_with_openpyxl(client: FlaskClient, tmp_path: Any) -> None:
    r = client.get("/api/connections?format=xlsx")
    assert r.status_code == 200 and r.mimetype.endswith("spreadsheetml.sheet")
    path = tmp_path / "c.xlsx"
    path.write_bytes(r.get_data())
    values = read_xlsx(path, "connections")
    header, data = values[0], values[1:]
    assert len(data) == len(ALL)
    rows = [dict(zip(header, v, strict=True)) for v in data]
    assert {(x["client"], x["server"], x["dport"]) for x in rows} == {
        (c.client, c.server, c.dport) for c in ALL
    }
    assert sum(x["count"] for x in rows) == sum(c.completed for c in ALL)


def test_aggregated_by_port_and_by_server(client: FlaskClient, tmp_path: Any) -> None:
    by_port = {r["dport"]: r for r in _json(client, "/api/connections?group=port")["connections"]}
    for port in (22, 80, 443):
        conns = [c for c in ALL if c.dport == port]
        assert by_port[port]["connections"] == len(conns)
        assert by_port[port]["count"] == sum(c.completed for c in conns)
        assert by_port[port]["clients"] == len({c.client for c in conns})
    r = client.get("/api/connections?group=server&format=xlsx&sort=connections&order=asc")
    path = tmp_path / "s.xlsx"
    path.write_bytes(r.get_data())
    values = read_xlsx(path)
    rows = [dict(zip(values[0], v, strict=True)) for v in values[1:]]
    # 198.51.100.1 is one host per site: gw1's (3 clients) and gw2's (1 client).
    got = {(x["server"], x["server_scope"], x["connections"]) for x in rows}
    assert got == {(f"198.51.100.{i}", "gw1", 3) for i in range(1, 6)} | {
        ("198.51.100.1", "gw2", 1),
        ("2001:db8:1::9", "gw2", 1),
    }
    assert [x["connections"] for x in rows] == [1, 1, 3, 3, 3, 3, 3]


def test_privacy_masks_clients_everywhere(
    falkordb_url: str, graph_name: str, tmp_path: Any
) -> None:
    load_scenario(falkordb_url, graph_name)
    c = create_app(WebConfig(graph_url=falkordb_url, graph=graph_name, privacy=True)).test_client()
    text = c.get("/api/connections?format=csv").get_data(as_text=True)
    graph = c.get("/api/graph").get_data(as_text=True)
    host = c.get("/api/hosts/198.51.100.5").get_data(as_text=True)
    path = tmp_path / "p.xlsx"
    path.write_bytes(c.get("/api/connections?format=xlsx").get_data())
    cells = str(read_xlsx(path))
    for out in (text, graph, host, cells):
        for client in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1"):
            assert (
                f'"{client}"' not in out and f"'{client}'" not in out and f"\n{client}," not in out
            )
        assert "10.0.0.0/24" in out or "fd00::/48" in out
    assert "198.51.100.5" in host  # servers are not masked


def test_host_detail(client: FlaskClient) -> None:
    body = _json(client, "/api/hosts/198.51.100.5")
    assert body["host"]["ip"] == "198.51.100.5" and body["host"]["scope"] == "gw1"
    assert {c["client"] for c in body["connections"]["as_server"]} == {
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    }
    assert body["connections"]["as_client"] == []
    (path,) = body["paths"]
    assert path["id"] == "t5" and path["sensor"] == "gw1"
    assert [h["ip"] for h in path["hop_list"]] == ["10.0.0.254", "203.0.113.1", "198.51.100.5"]
    assert [h["ttl"] for h in path["hop_list"]] == [1, 2, 4]
    two = _json(client, "/api/hosts/198.51.100.1")
    assert two["other_scopes"] == ["gw2"]
    assert _json(client, "/api/hosts/198.51.100.1?scope=gw2")["host"]["scope"] == "gw2"
    v6 = _json(client, "/api/hosts/2001:0db8:0001::0009")
    assert v6["host"]["ip"] == "2001:db8:1::9"
    assert _json(client, "/api/hosts/203.0.113.99", 404)["status"] == 404
    assert _json(client, "/api/hosts/not-an-ip", 400)["parameter"] == "ip"


def test_traces_and_sensors(client: FlaskClient) -> None:
    traces = _json(client, "/api/traces")["traces"]
    assert [t["id"] for t in traces] == ["t5", "t-old"]
    assert traces[0]["hops"] == ["10.0.0.254", "203.0.113.1", "", "198.51.100.5"]
    assert _json(client, "/api/traces?q=since:1000")["count"] == 1
    assert _json(client, "/api/traces?sensor=gw2")["count"] == 0
    sensors = {s["id"]: s for s in _json(client, "/api/sensors")["sensors"]}
    assert set(sensors) == {"gw1", "gw2"}
    # The fixture sends one batch per sensor, with sensor_packets = 10.
    assert sensors["gw1"]["batches"] == 1 and sensors["gw1"]["counters"]["sensor_packets"] == 10
    assert sensors["gw1"]["version"] == "0.1.0"
    assert sensors["gw1"]["drops"] == 0 and sensors["gw1"]["identity_conflicts"] == 0
