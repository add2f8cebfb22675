"""UDP flows: the port rules and the flow table from plain values, and the lab capture
tests/pcaps/lab/udp.pcap (real Linux sockets, recorded by tests/pcaps/lab/udp.py on both sides of
a NAT'ing router) replayed by a real ``net-gazer-sensor -r`` into a real collector and FalkorDB.

The expected edges come from the scenario's definitions (udp.py: which flows exist, which are
answered, which the port rules leave out); their packet and byte counts come from tshark, read
on the lan side of the capture only (every datagram is in the file twice, once per interface,
and the wan copies of IPv4 are NAT'd), with the port rules of docs/udp.md implemented again
here. Nothing expected is taken from net-gazer's own output.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import defaultdict
from functools import cache
from typing import Any

import pytest
from conftest import PCAPS, Collector, graph_query, run_sensor

from net_gazer.plugins.udp.flows import FlowTable, TableConfig
from net_gazer.plugins.udp.rules import LEFT_OUT, RECEIVER_IS_CLIENT, SENDER_IS_CLIENT, PortRules
from net_gazer.plugins.udp.sampling import bpf_fragment, flow_hash, followed

_spec = importlib.util.spec_from_file_location("lab_udp", PCAPS / "lab" / "udp.py")
assert _spec is not None and _spec.loader is not None
scenario = importlib.util.module_from_spec(_spec)
sys.modules["lab_udp"] = scenario
_spec.loader.exec_module(scenario)

UDP_PCAP = PCAPS / "lab" / "udp.pcap"
Key = tuple[str, str, int]

C4 = bytes([192, 0, 2, 2])
S4 = bytes([198, 51, 100, 2])
C4_NAT = bytes([198, 51, 100, 1])


# --- the port rules and the table, from plain values ------------------------------------------


@pytest.mark.parametrize(
    ("sport", "dport", "want"),
    [
        (40000, 53, SENDER_IS_CLIENT),  # a query
        (53, 40000, RECEIVER_IS_CLIENT),  # an answer seen first
        (40000, 8080, SENDER_IS_CLIENT),  # both ways fit: the sender started
        (123, 123, LEFT_OUT),  # two services
        (50000, 55000, LEFT_OUT),  # two ephemeral ports
        (2048, 49151, SENDER_IS_CLIENT),  # the bounds are inclusive
        (2047, 2047, LEFT_OUT),
        (49152, 49152, LEFT_OUT),
        (2047, 49152, RECEIVER_IS_CLIENT),  # a service on 2047 answering
        (40000, 0, LEFT_OUT),  # port 0 is no service
    ],
)
def test_port_rules(sport: int, dport: int, want: int) -> None:
    assert PortRules().orient(sport, dport) == want


def test_port_rules_are_configurable() -> None:
    assert PortRules(min_client_port=100).orient(123, 123) == SENDER_IS_CLIENT
    assert PortRules(max_server_port=65535).orient(50000, 55000) == SENDER_IS_CLIENT
    assert PortRules(max_server_port=1024).orient(40000, 8080) == LEFT_OUT


def test_table_counts_both_directions_and_answers() -> None:
    t = FlowTable()
    t.feed(1.0, 0, C4, S4, 40000, 53, 30, b"q")
    t.feed(1.1, 0, S4, C4, 53, 40000, 46, b"a")
    t.feed(1.2, 0, C4, S4, 40001, 53, 30, b"q")  # a second flow, unanswered
    rows = t.report()
    r = rows[("192.0.2.2", "198.51.100.2", 53)]
    assert (r.flows, r.answered_flows, r.packets_c2s, r.packets_s2c) == (2, 1, 2, 1)
    assert (r.bytes_c2s, r.bytes_s2c, r.first, r.last) == (60, 46, 1.0, 1.2)
    assert t.report() == {}
    t.feed(2.0, 0, S4, C4, 53, 40001, 46, b"a")  # a late answer: that flow is answered now
    r = t.report()[("192.0.2.2", "198.51.100.2", 53)]
    assert (r.flows, r.answered_flows, r.packets_s2c) == (0, 1, 1)


def test_copies_on_another_interface_count_once() -> None:
    t = FlowTable()
    t.feed(1.0, 0, C4, S4, 40000, 53, 30, b"query")
    t.feed(1.0001, 1, C4, S4, 40000, 53, 30, b"query")  # the same 5-tuple on the wan
    t.feed(1.0002, 1, C4_NAT, S4, 61000, 53, 30, b"query")  # a NAT'd copy
    t.feed(1.1, 1, S4, C4_NAT, 53, 61000, 46, b"answer")
    t.feed(1.1001, 0, S4, C4, 53, 40000, 46, b"answer")
    rows = t.report()
    assert list(rows) == [("192.0.2.2", "198.51.100.2", 53)]
    r = rows[("192.0.2.2", "198.51.100.2", 53)]
    assert (r.flows, r.packets_c2s, r.packets_s2c) == (1, 1, 1)
    assert t.stats.copies_ignored == 3


def test_a_different_payload_on_another_interface_is_no_copy() -> None:
    t = FlowTable()
    t.feed(1.0, 0, C4, S4, 40000, 53, 30, b"query one")
    t.feed(1.0002, 1, C4_NAT, S4, 61000, 53, 30, b"query two")
    assert len(t.report()) == 2


def test_flows_are_bounded_and_expire_without_losing_counts() -> None:
    t = FlowTable(TableConfig(max_flows=16, idle_timeout=10.0))
    for i in range(40):
        t.feed(float(i), 0, C4, S4, 10000 + i, 53, 10, bytes([i]))
    assert len(t) == 16 and t.stats.evicted_full == 24
    r = t.report()[("192.0.2.2", "198.51.100.2", 53)]
    assert (r.flows, r.packets_c2s, r.bytes_c2s) == (40, 40, 400)
    t.expire(45.0)
    assert len(t) == 5 and t.stats.idle == 11


def test_sampling_is_symmetric_and_matches_the_kernel_filter() -> None:
    for sport in range(1000, 1400):
        assert flow_hash(C4, S4, sport, 53) == flow_hash(S4, C4, 53, sport)
    kept = sum(followed(C4, S4, p, 53, 4) for p in range(10000, 14000))
    assert 800 < kept < 1200
    assert bpf_fragment(1) == "udp"
    for rate in (2, 7):
        subprocess.run(
            ["tcpdump", "-d", "-y", "EN10MB", bpf_fragment(rate)], check=True, capture_output=True
        )


# --- the lab capture against tshark -----------------------------------------------------------

FIELDS = (
    "frame.number", "sll.ifindex", "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst",
    "udp.dstport", "udp.length",
)  # fmt: skip


def orient(sport: int, dport: int, lo: int = 2048, hi: int = 49151) -> int:
    """docs/udp.md's rule, again: 1 the sender is the client, -1 the receiver, 0 left out."""
    if sport >= lo and 0 < dport <= hi:
        return 1
    if dport >= lo and 0 < sport <= hi:
        return -1
    return 0


@cache
def tshark_rows() -> dict[Key, dict[str, Any]]:
    """What the port rules make of tshark's reading of the lan side of udp.pcap."""
    args = ["tshark", "-n", "-r", str(UDP_PCAP), "-Y", "udp", "-T", "fields", "-E", "separator=\t"]
    for f in FIELDS:
        args += ["-e", f]
    lines = subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()
    frames = [line.split("\t") for line in lines]
    lan = frames[0][1]  # the first frame is the first query, as it entered the router
    flows: dict[tuple[str, int, str, int], dict[str, Any]] = {}
    rows: dict[Key, dict[str, Any]] = defaultdict(
        lambda: dict.fromkeys(
            ("flows", "answered_flows", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c"), 0
        )
    )
    for _, ifindex, src4, src6, sport, dst4, dst6, dport, length in frames:
        if ifindex != lan:
            continue
        src, dst, sp, dp = src4 or src6, dst4 or dst6, int(sport), int(dport)
        payload = int(length) - 8
        if (src, sp, dst, dp) in flows:
            flow, c2s = flows[(src, sp, dst, dp)], True
        elif (dst, dp, src, sp) in flows:
            flow, c2s = flows[(dst, dp, src, sp)], False
        else:
            side = orient(sp, dp)
            if side == 0:
                continue
            c2s = side == 1
            key = (src, sp, dst, dp) if c2s else (dst, dp, src, sp)
            flow = flows[key] = {"row": (key[0], key[2], key[3]), "answered": False}
            rows[flow["row"]]["flows"] += 1
        row = rows[flow["row"]]
        d = "c2s" if c2s else "s2c"
        row[f"packets_{d}"] += 1
        row[f"bytes_{d}"] += payload
        if not c2s and not flow["answered"]:
            flow["answered"] = True
            row["answered_flows"] += 1
    return dict(rows)


def udp_edges(collector: Collector) -> dict[Key, dict[str, Any]]:
    rows = graph_query(
        collector.graph_url,
        collector.args[collector.args.index("--graph") + 1],
        "MATCH (c:Host)-[e:CONNECTS]->(s:Host) RETURN c.ip, s.ip, e.dport, properties(e)",
    )
    out: dict[Key, dict[str, Any]] = {}
    for c, s, port, props in rows:
        assert props["proto"] == "udp", f"a {props['proto']} edge from a UDP-only capture"
        assert (c, s, port) not in out, f"two CONNECTS edges for {(c, s, port)}"
        out[(c, s, port)] = dict(props)
    return out


def replay(collector: Collector, *args: str) -> str:
    result = run_sensor(
        "-r", str(UDP_PCAP), "--collector", collector.address, "--sensor-id", "udp-lab",
        "--local-networks", "192.0.2.0/24,2001:db8:1::/64", "-v", *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_the_reference_reads_the_scenario() -> None:
    """tshark's reading of the capture holds exactly the scenario's flows (a check of the
    capture and of the reference, before the sensor is compared with them)."""
    rows = tshark_rows()
    assert set(rows) == set(scenario.FLOWS.values())
    dns4 = rows[scenario.FLOWS["dns4"]]
    assert dns4["flows"] == dns4["answered_flows"] == scenario.DNS_QUERIES
    assert rows[scenario.FLOWS["oneway"]]["packets_c2s"] == scenario.ONEWAY


def test_lab_capture_gives_exactly_the_scenario_rows(collector: Collector) -> None:
    replay(collector)
    edges = udp_edges(collector)
    want = tshark_rows()
    assert set(edges) == set(scenario.FLOWS.values())
    for name in scenario.LEFT_OUT:
        assert scenario.LEFT_OUT[name] not in edges, f"{name} should be left out"
    for name, key in scenario.FLOWS.items():
        e = edges[key]
        for field, value in want[key].items():
            assert e[field] == value, f"{name} {field}: graph {e[field]}, tshark {value}"
        assert e["answered"] is (name in scenario.ANSWERED), name
        assert e["sensor"] == "udp-lab" and e["direction"] == "outgoing", name
        assert "count" not in e and "attempts" not in e, f"{name} carries TCP counters"
    total = sum(r["packets_c2s"] + r["packets_s2c"] for r in want.values())
    assert total == sum(e["packets_c2s"] + e["packets_s2c"] for e in edges.values())


def test_port_rules_from_the_config_file(collector: Collector, tmp_path: Any) -> None:
    conf = tmp_path / "net-gazer.toml"
    conf.write_text("[plugins.udp]\nmin_client_port = 100\nmax_server_port = 65535\n")
    replay(collector, "-c", str(conf))
    edges = udp_edges(collector)
    assert scenario.LEFT_OUT["ntp"] in edges and scenario.LEFT_OUT["ephemeral"] in edges
    ntp = edges[scenario.LEFT_OUT["ntp"]]
    assert (ntp["packets_c2s"], ntp["packets_s2c"], ntp["bytes_c2s"]) == (1, 1, 48)


def test_a_bad_setting_is_one_sentence_and_the_default(collector: Collector, tmp_path: Any) -> None:
    conf = tmp_path / "net-gazer.toml"
    conf.write_text('[plugins.udp]\nmin_client_port = "high"\n')
    log = replay(collector, "-c", str(conf))
    assert "[plugins.udp] min_client_port must be an integer from 0 to 65535, not 'high'" in log
    assert "Traceback" not in log
    assert set(udp_edges(collector)) == set(scenario.FLOWS.values())


# --- flood bounds -----------------------------------------------------------------------------

FLOOD_SOURCES = 3_000
FLOOD_BUDGET = 100


def test_a_spoofed_flood_is_folded_past_the_budget(tmp_path: Any) -> None:
    """3,000 forged sources send one datagram each to 198.51.100.53:53, unanswered, within one
    flush interval; one real client gets its answer. With max_unanswered_rows = 100, the
    sensor sends the answered row, 100 unanswered rows and one row from 0.0.0.0 holding the
    other 2,900 flows."""
    import frames as F

    from net_gazer.testing import payloads, sensor_run
    from net_gazer.v1 import udp_pb2

    server = "198.51.100.53"
    t0 = 1_700_000_000
    frames_ = [(f"{t0}.000100", F.ether(F.udp("192.0.2.7", server, 40000, 53, b"real")))]
    frames_.append((f"{t0}.000200", F.ether(F.udp(server, "192.0.2.7", 53, 40000, b"answer"))))
    for i in range(FLOOD_SOURCES):
        src = f"10.{i // 250}.{i % 250}.1"
        frames_.append(
            (f"{t0}.{300 + i:06d}", F.ether(F.udp(src, server, 30000 + i, 53, b"x" * 8)))
        )
    pcap = tmp_path / "flood.pcap"
    F.write_pcap(pcap, 1, frames_)
    run = sensor_run(pcap, plugins=["udp"], config={"udp": {"max_unanswered_rows": FLOOD_BUDGET}})
    rows = [r for rep in payloads(run.batches, "udp", udp_pb2.UdpReport) for r in rep.rows]
    answered = [r for r in rows if r.packets_s2c]
    folded = [r for r in rows if r.client == "0.0.0.0"]
    itemized = [r for r in rows if not r.packets_s2c and r.client != "0.0.0.0"]
    assert [(r.client, r.flows) for r in answered] == [("192.0.2.7", 1)]
    assert len(itemized) == FLOOD_BUDGET and all(r.flows == 1 for r in itemized)
    assert [(r.flows, r.packets_c2s, r.bytes_c2s) for r in folded] == [
        (
            FLOOD_SOURCES - FLOOD_BUDGET,
            FLOOD_SOURCES - FLOOD_BUDGET,
            8 * (FLOOD_SOURCES - FLOOD_BUDGET),
        )
    ]
    assert run.counters["plugin_udp_unanswered_rows_folded"] == FLOOD_SOURCES - FLOOD_BUDGET - 1


UDP_COLUMNS = ("flows", "answered_flows", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c")


def test_api_connections_carry_the_udp_fields_in_json_csv_and_xlsx(
    collector: Collector, tmp_path: Any
) -> None:
    """/api/connections (JSON, CSV and XLSX) holds the scenario's UDP rows with tshark's
    counts."""
    import csv
    import io
    import json
    import urllib.request

    import openpyxl

    replay(collector)
    want = tshark_rows()
    base = f"http://127.0.0.1:{collector.http_port}/api/connections"
    with urllib.request.urlopen(base) as resp:
        body = json.load(resp)
    with urllib.request.urlopen(base + "?format=csv") as resp:
        text = resp.read().decode()
    table = list(csv.DictReader(io.StringIO(text)))
    assert body["count"] == len(body["connections"]) == len(table) == len(want)
    by_json = {(r["client"], r["server"], r["dport"]): r for r in body["connections"]}
    by_csv = {(r["client"], r["server"], int(r["dport"])): r for r in table}
    assert set(by_json) == set(by_csv) == set(want)
    for name, key in scenario.FLOWS.items():
        j, c = by_json[key], by_csv[key]
        assert j["proto"] == c["proto"] == "udp", name
        answered = name in scenario.ANSWERED
        assert j["answered"] is answered and c["answered"] == str(answered), name
        for field in UDP_COLUMNS:
            assert j[field] == int(c[field]) == want[key][field], f"{name} {field}"
        assert j["count"] is None and c["count"] == "", f"{name} carries TCP counters"
    path = tmp_path / "udp.xlsx"
    with urllib.request.urlopen(base + "?format=xlsx") as resp:
        path.write_bytes(resp.read())
    workbook = openpyxl.load_workbook(path, read_only=True)  # read-only keeps the file open
    try:
        header, *cells = list(workbook["connections"].iter_rows(values_only=True))
    finally:
        workbook.close()
    book = [dict(zip(header, r, strict=True)) for r in cells]
    by_xlsx = {(r["client"], r["server"], r["dport"]): r for r in book}
    assert set(by_xlsx) == set(want) and len(book) == len(want)
    for name, key in scenario.FLOWS.items():
        x = by_xlsx[key]
        assert x["proto"] == "udp" and x["answered"] is (name in scenario.ANSWERED), name
        assert {f: x[f] for f in UDP_COLUMNS} == want[key], name
