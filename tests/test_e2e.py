"""End to end on real parts: a committed pcap, replayed by ``net-gazer-sensor -r`` through real
libpcap, streamed over real gRPC into a real collector writing to a real FalkorDB. The graph must
hold exactly the CONNECTS edges the fixture's scenario definitions say, with RTT minima equal to
the pcap timestamps within 1 µs."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, Collector, connects, expected, graph_query, run_sensor

US_IN_MS = 0.001  # 1 µs, in milliseconds
#: RFC 1918, RFC 6598 (CGNAT), link-local, RFC 4193 (ULA) and IPv6 link-local: what a replay takes
#: as local when no --local-networks is given (docs/architecture.md).
PRIVATE_RANGES = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "fc00::/7", "fe80::/10",
)  # fmt: skip


#: The UDP noise of handshakes.pcap (tests/pcaps/make_pcaps.py, make_handshakes): a DNS query
#: and its answer, and an IPv6 query without one; 12-byte payloads. The udp plugin makes them
#: ``proto: "udp"`` edges: (packets_c2s, packets_s2c, bytes_c2s, bytes_s2c, answered).
HANDSHAKES_UDP = {
    ("192.168.1.10", "10.0.0.53", 53): (1, 1, 12, 12, True),
    ("2001:db8:1::10", "2001:db8:2::53", 53): (1, 0, 12, 0, False),
}


def _expected_edges(name: str) -> list[dict[str, Any]]:
    data = expected(name)
    return data["connections"] if isinstance(data, dict) else data


def assert_graph_matches(
    url: str, graph: str, edges: list[dict[str, Any]], factor: int = 1
) -> None:
    got = connects(url, graph)
    want = {(e["client"], e["server"], e["dport"]): e for e in edges}
    assert set(got) == set(want), f"missing {set(want) - set(got)}, extra {set(got) - set(want)}"
    for key, e in want.items():
        g = got[key]
        for f in (
            "count",
            "attempts",
            "refused",
            "unanswered",
            "abandoned",
            "evicted",
            "syn_retransmits",
            "rtt_samples",
            "client_rtt_samples",
        ):
            assert g[f] == e[f] * factor, f"{key} {f}: graph {g[f]} expected {e[f] * factor}"
        # Every attempt has exactly one verdict.
        verdicts = ("count", "refused", "unanswered", "abandoned", "evicted")
        assert g["attempts"] == sum(g[v] for v in verdicts), key
        # The means as FalkorDB computed them in its SET (from the parts before the clause).
        for f in (
            "rtt_ms_min",
            "rtt_ms_max",
            "client_rtt_ms_min",
            "client_rtt_ms_max",
            "rtt_ms",
            "client_rtt_ms",
        ):
            if e[f] is None:
                assert g[f] is None, f"{key} {f}: graph {g[f]} expected no sample"
            else:
                assert g[f] == pytest.approx(e[f], abs=US_IN_MS), f"{key} {f}"


@pytest.mark.parametrize("pcap", ["handshakes", "sll", "sll2", "raw", "hostile"])
def test_replay_builds_exact_graph(
    pcap: str, collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    result = run_sensor(
        "-r",
        str(PCAPS / f"{pcap}.pcap"),
        "--collector",
        collector.address,
        "--sensor-id",
        f"e2e-{pcap}",
        "-v",
    )
    assert result.returncode == 0, result.stderr
    assert_graph_matches(falkordb_url, graph_name, _expected_edges(f"{pcap}.expected.json"))
    # The sensor node carries the delivery mark and the counters of the last batch.
    [[acked, batches, counters]] = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (s:Sensor {id: $id}) RETURN s.acked_seq, s.batches, s.counters",
        {"id": f"e2e-{pcap}"},
    )
    assert acked == batches > 0
    counts = {k: int(v) for k, v in (item.split("=", 1) for item in counters)}
    manifest = expected("manifest.json")[f"{pcap}.pcap"]
    # The kernel filter drops what no plugin asked for before decoding; tcpdump, another libpcap
    # consumer, applies the same filter (from the sensor's log) and must see as many frames.
    [expression] = re.findall(r"with filter: (.*)$", result.stderr, re.MULTILINE)
    assert counts["sensor_packets"] == tcpdump_count(PCAPS / f"{pcap}.pcap", expression)
    assert counts["sensor_tcp"] == manifest["tcp_segments"]
    assert (
        counts["sensor_malformed"]
        == counts["sensor_packets"] - counts["sensor_tcp"] - counts["sensor_non_tcp"]
    )
    if pcap == "hostile":
        # Exactly the malformed frames that pass the kernel filter reach the decoder; tcpdump
        # tells which frames pass, the fixture's definitions which frames are malformed.
        kinds = {t: kind for t, kind in expected("hostile.expected.json")["frames"]}
        passed = tcpdump_times(PCAPS / "hostile.pcap", expression)
        want = sum(1 for t in passed if kinds[t] == "malformed")
        assert want > 0
        assert counts["sensor_malformed"] == want
    else:
        assert counts["sensor_malformed"] == 0


def tcpdump_count(path: Path, expression: str) -> int:
    out = subprocess.run(
        ["tcpdump", "-nn", "-r", str(path), expression],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(out.stdout.splitlines())


def tcpdump_times(path: Path, expression: str) -> list[int]:
    """Capture times (µs) of the frames that pass the sensor's filter, as tcpdump reads them."""
    out = subprocess.run(
        ["tcpdump", "-tt", "-nn", "-r", str(path), expression],
        capture_output=True,
        text=True,
        check=True,
    )
    times = []
    for line in out.stdout.splitlines():
        sec, _, usec = line.split(" ", 1)[0].partition(".")
        times.append(int(sec) * 1_000_000 + int(usec))
    assert len(set(times)) == len(times), "frame times must tell frames apart"
    return times


def test_sample_capture_replays_completely(
    collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    """The demo's sample capture (hundreds of handshakes, several batches) lands exactly."""
    result = run_sensor(
        "-r", str(PCAPS / "sample.pcap"), "--collector", collector.address, "--sensor-id", "sample"
    )
    assert result.returncode == 0, result.stderr
    assert_graph_matches(falkordb_url, graph_name, _expected_edges("sample.expected.json"))


def test_hosts_scopes_and_directions(
    collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    result = run_sensor(
        "-r",
        str(PCAPS / "handshakes.pcap"),
        "--collector",
        collector.address,
        "--sensor-id",
        "site-a",
    )
    assert result.returncode == 0, result.stderr
    rows = graph_query(
        falkordb_url, graph_name, "MATCH (h:Host) RETURN h.ip, h.scope, h.family, h.private"
    )
    edges = _expected_edges("handshakes.expected.json")
    want_hosts = {e["client"] for e in edges} | {e["server"] for e in edges}
    want_hosts |= {ip for c, s, _ in HANDSHAKES_UDP for ip in (c, s)}
    # Host keys are unique per (scope, ip), and every endpoint of an edge is one.
    assert sorted(r[0] for r in rows) == sorted(want_hosts)
    for ip, scope, family, private in rows:
        # The fixture uses documentation and private ranges only: all site-scoped.
        assert (scope, private, family) == ("site-a", True, ip_address(ip).version), ip
    # A replay's local networks are the private ranges: direction follows from them alone.
    local = [ip_network(n) for n in PRIVATE_RANGES]

    def is_local(ip: str) -> bool:
        return any(ip_address(ip) in n for n in local if n.version == ip_address(ip).version)

    got = connects(falkordb_url, graph_name)
    for e in edges:
        c, s = is_local(e["client"]), is_local(e["server"])
        want = "internal" if c and s else "outgoing" if c else "incoming" if s else "transit"
        assert got[(e["client"], e["server"], e["dport"])]["direction"] == want, e
    udp = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (c:Host)-[e:CONNECTS {proto: 'udp'}]->(s:Host) RETURN c.ip, s.ip, e.dport, "
        "e.packets_c2s, e.packets_s2c, e.bytes_c2s, e.bytes_s2c, e.answered",
    )
    assert {(c, s, p): tuple(rest) for c, s, p, *rest in udp} == HANDSHAKES_UDP


def test_replaying_twice_counts_twice_with_new_epoch(
    collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    """A restarted sensor (new epoch) is accepted: its data adds up, nothing is skipped."""
    for _ in range(2):
        result = run_sensor(
            "-r",
            str(PCAPS / "handshakes.pcap"),
            "--collector",
            collector.address,
            "--sensor-id",
            "twice",
        )
        assert result.returncode == 0, result.stderr
    assert_graph_matches(
        falkordb_url, graph_name, _expected_edges("handshakes.expected.json"), factor=2
    )


def test_api_connections_answers_what_the_fixture_defines(collector: Collector) -> None:
    """/api/connections over the collector's real HTTP listener, after a real replay: one row per
    expected edge, with the fixture's counts and RTTs."""
    result = run_sensor(
        "-r", str(PCAPS / "handshakes.pcap"), "--collector", collector.address, "--sensor-id", "api"
    )
    assert result.returncode == 0, result.stderr
    url = f"http://127.0.0.1:{collector.http_port}/api/connections?limit=1000"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    want = {
        (e["client"], e["server"], e["dport"]): e
        for e in _expected_edges("handshakes.expected.json")
    }
    rows = body["connections"]
    got = {(r["client"], r["server"], r["dport"]): r for r in rows if r["proto"] == "tcp"}
    udp = {(r["client"], r["server"], r["dport"]) for r in rows if r["proto"] == "udp"}
    assert body["count"] == len(want) + len(HANDSHAKES_UDP) and set(got) == set(want)
    assert udp == set(HANDSHAKES_UDP)
    for key, e in want.items():
        row = got[key]
        assert row["sensor"] == "api" and row["proto"] == "tcp"
        for f in ("count", "attempts", "refused", "unanswered", "abandoned", "syn_retransmits"):
            assert row[f] == e[f], (key, f)
        for f in ("rtt_ms", "rtt_ms_min", "client_rtt_ms", "client_rtt_ms_max"):
            if e[f] is None:
                assert row[f] is None, (key, f)
            else:
                assert row[f] == pytest.approx(e[f], abs=US_IN_MS), (key, f)
