"""End to end on real parts: a committed pcap, replayed by ``net-gazer-sensor -r`` through real
libpcap, streamed over real gRPC into a real collector writing to a real FalkorDB. The graph must
hold exactly the CONNECTS edges the fixture's scenario definitions say, with RTT minima equal to
the pcap timestamps within 1 µs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, Collector, connects, expected, graph_query, run_sensor

US_IN_MS = 0.001  # 1 µs, in milliseconds


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
            "rtt_samples",
            "client_rtt_samples",
        ):
            assert g[f] == e[f] * factor, f"{key} {f}: graph {g[f]} expected {e[f] * factor}"
        for f in ("rtt_ms_min", "rtt_ms_max", "client_rtt_ms_min", "client_rtt_ms_max"):
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
        assert 0 < counts["sensor_malformed"] <= expected("hostile.expected.json")["malformed"]
    else:
        assert counts["sensor_malformed"] == 0


def tcpdump_count(path: Path, expression: str) -> int:
    out = subprocess.run(
        ["tcpdump", "-nn", "-r", str(path), expression], capture_output=True, text=True, check=True
    )
    return len(out.stdout.splitlines())


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
    assert rows
    for ip, scope, family, private in rows:
        # The fixture uses documentation and private ranges only: all site-scoped.
        assert scope == "site-a" and private is True
        assert family == (6 if ":" in ip else 4)
    # Host keys are unique per (scope, ip).
    assert len({(r[0], r[1]) for r in rows}) == len(rows)
    directions = graph_query(
        falkordb_url, graph_name, "MATCH ()-[e:CONNECTS]->() RETURN DISTINCT e.direction"
    )
    assert {d for [d] in directions} <= {"outgoing", "incoming", "internal", "transit"}


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
