"""Scale-out on the engines we already use: collectors are stateless replicas on one FalkorDB,
sensors fail over between them (``--collector a,b``) mid-stream, and every count stays exact.

Real collector processes, real sensor processes replaying committed captures, real FalkorDB;
the expected counts are the captures' tshark-derived references (tests/pcaps/*.expected.json).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from conftest import PCAPS, expected, graph_query, tool

FIELDS = ("count", "attempts", "refused", "unanswered", "abandoned", "evicted", "syn_retransmits",
          "rtt_samples", "client_rtt_samples")  # fmt: skip


def sensor_edges(url: str, graph: str, sensor: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    rows = graph_query(
        url, graph,
        "MATCH (c:Host)-[e:CONNECTS {sensor: $sid}]->(s:Host) WHERE e.proto = 'tcp' "
        "RETURN c.ip, s.ip, e.dport, " + ", ".join(f"e.{f}" for f in FIELDS),
        {"sid": sensor},
    )  # fmt: skip
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r[0], r[1], r[2])
        assert key not in out, f"two CONNECTS edges of {sensor} for {key}"
        out[key] = dict(zip(FIELDS, r[3:], strict=True))
    return out


def assert_exact(url: str, graph: str, sensor: str, reference: str) -> None:
    want = {(e["client"], e["server"], e["dport"]): e for e in expected(reference)}
    got = sensor_edges(url, graph, sensor)
    assert set(got) == set(want), f"missing {set(want) - set(got)}, extra {set(got) - set(want)}"
    for key, e in want.items():
        for f in FIELDS:
            assert got[key][f] == e[f], f"{sensor} {key} {f}: graph {got[key][f]}, expected {e[f]}"
    [[acked, batches, gaps, lost]] = graph_query(
        url, graph,
        "MATCH (s:Sensor {id: $sid}) RETURN s.acked_seq, s.batches, s.gaps, s.lost_envelopes",
        {"sid": sensor},
    )  # fmt: skip
    assert acked == batches and gaps == 0 and lost == 0


def sensor(pcap: str, collectors: str, sid: str, speed: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [tool("net-gazer-sensor"), "-r", str(PCAPS / pcap), "--speed", speed,
         "--collector", collectors, "--sensor-id", sid, "--flush-interval", "0.2",
         "--ack-timeout", "120", "--no-spool", "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 150) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    return out


def test_sensors_move_between_two_collectors_mid_replay_with_exact_counts(
    collector_factory: Any, falkordb_url: str, graph_name: str
) -> None:
    args = ("--graph-url", falkordb_url, "--graph", graph_name)
    a = collector_factory(*args).start()
    b = collector_factory(*args).start()
    port_a = a.grpc_port
    # sample.pcap spans ~85 s of packet time: at 4x about 21 s. "one" starts on a, "two" on b.
    one = sensor("sample.pcap", f"{a.address},{b.address}", "one", "4")
    two = sensor("sample.pcap", f"{b.address},{a.address}", "two", "4")
    try:
        time.sleep(4)
        a.kill()  # "one" fails over to b mid-stream, unacknowledged batches and all
        time.sleep(4)
        a2 = collector_factory(*args).start(port=port_a)
        time.sleep(1)
        b.kill()  # now both move to a's replacement
        out_one, out_two = finish(one), finish(two)
    finally:
        for p in (one, two):
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert "failing over to collector" in out_one and "failing over to collector" in out_two
    assert f"collector {b.address}" in out_one and f"collector {a2.address}" in out_two
    for sid in ("one", "two"):
        assert_exact(falkordb_url, graph_name, sid, "sample.expected.json")


def test_a_bad_address_in_the_collector_list_is_one_sentence() -> None:
    from conftest import run_sensor

    res = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--collector", "127.0.0.1:1,nohost")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "'nohost' is not HOST:PORT or unix:/path" in res.stderr, res.stderr
