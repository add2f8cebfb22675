"""Flow sampling: with ``sample_rate = N`` the quality plugin follows one flow in N, whole, and the
kernel filter is what drops the others.

Which flows are followed is computed here from the formula in docs/quality.md, again (not with
the plugin's code), on tshark's fields. The followed flows' counters must equal tshark's for
exactly those flows; with the quality plugin alone loaded, no segment of another flow reaches the
sensor's Python at all: its packet counters equal the followed flows' segments (from tshark) and
its "not followed" counter stays 0. Replayed from a committed lab capture through libpcap, and
live on a real interface in namespaces, where the kernel runs the filter.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_live as live
import tshark_reference as T
from conftest import PCAPS, Collector, graph_query, run_sensor, tool
from netns import Lab
from test_quality_tshark import check_edge, edges

LAB = PCAPS / "lab"
RATE = 4
GOLDEN = 2654435761


def hash16(a: str, b: str, pa: int, pb: int) -> int:
    """docs/quality.md: x = a ^ (a >> 16) ^ sport ^ dport, h = (x * 2654435761 mod 2**32) >> 16,
    where a is the xor of the addresses (IPv6: of all their 32-bit words)."""
    x = int(ipaddress.ip_address(a)) ^ int(ipaddress.ip_address(b))
    word = 0
    while x:
        word ^= x & 0xFFFFFFFF
        x >>= 32
    mixed = word ^ (word >> 16) ^ pa ^ pb
    return ((mixed * GOLDEN) % 2**32) >> 16


def followed(conn: T.Connection, rate: int) -> bool:
    client, cport = conn.client
    server, sport = conn.key[1], conn.key[2]
    return hash16(client, server, cport, sport) % rate == 0


def config(tmp: Path, rate: int) -> Path:
    path = tmp / "sensor.toml"
    path.write_text(f"[plugins.quality]\nsample_rate = {rate}\n")
    return path


def sensor_counters(url: str, graph: str, sid: str) -> dict[str, int]:
    [[counters]] = graph_query(
        url, graph, "MATCH (s:Sensor {id: $id}) RETURN s.counters", {"id": sid}
    )
    return {k: int(v) for k, v in (c.split("=", 1) for c in counters)}


def followed_reference(pcap: Path, rate: int) -> tuple[dict[T.Key, list[T.Connection]], int, int]:
    """tshark's connections that the rate follows, by key; their segments; all segments."""
    conns = T.connections(pcap)
    chosen = [c for c in conns.values() if followed(c, rate)]
    segs = sum(c.c2s.segments + c.s2c.segments for c in chosen)
    total = sum(c.c2s.segments + c.s2c.segments for c in conns.values())
    return T.by_key({i: c for i, c in enumerate(chosen)}), segs, total


def test_followed_flows_are_complete_and_the_filter_drops_the_rest(
    collector: Collector, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    pcap = LAB / "loss.pcap"
    want, segs, total = followed_reference(pcap, RATE)
    conns = T.connections(pcap)
    assert 0 < sum(len(v) for v in want.values()) < len(conns), "the rate follows some, not all"
    result = run_sensor(
        "-r", str(pcap), "--collector", collector.address, "--sensor-id", "sampled",
        "-c", str(config(tmp_path, RATE)), env={"NG_PLUGINS_ALLOW": "quality"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = edges(falkordb_url, graph_name)
    assert set(got) == set(want)
    for key, chosen in want.items():
        e = {**got[key], "sample_rate": 1}  # check_edge knows the unsampled case
        check_edge(key, e, chosen)
        assert got[key]["sample_rate"] == RATE
    counts = sensor_counters(falkordb_url, graph_name, "sampled")
    # Only the followed flows' segments reached Python: libpcap's filter dropped the others.
    assert counts["sensor_packets"] == counts["sensor_tcp"] == segs < total
    assert counts["plugin_quality_not_followed"] == 0


def test_with_other_plugins_on_the_sampling_holds_in_python(
    collector: Collector, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    """The handshake plugin asks for every TCP segment, so the others reach the sensor too; the
    quality plugin still follows exactly the sampled flows, and counts what it set aside."""
    pcap = LAB / "loss.pcap"
    want, segs, total = followed_reference(pcap, RATE)
    result = run_sensor(
        "-r", str(pcap), "--collector", collector.address, "--sensor-id", "sampled-all",
        "-c", str(config(tmp_path, RATE)),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = edges(falkordb_url, graph_name)
    everything = T.by_key(T.connections(pcap))
    assert set(got) == set(everything)  # the handshake plugin's edges
    for key, conns in everything.items():
        e, chosen = got[key], want.get(key, [])
        assert e["count"] == len(conns)
        if not chosen:
            assert e.get("quality_flows") is None, key
            continue
        assert e["quality_flows"] == len(chosen) and e["sample_rate"] == RATE
        for m in T.METRICS:
            assert e[m] == sum(c.c2s.counts[m] + c.s2c.counts[m] for c in chosen), (key, m)
    counts = sensor_counters(falkordb_url, graph_name, "sampled-all")
    assert counts["sensor_tcp"] == total
    assert counts["plugin_quality_not_followed"] == total - segs


# --- live: the kernel runs the filter ----------------------------------------------------------

SERVER, CLIENT = live.SERVER, live.CLIENT
FLOWS = 24
LIVE_RTT_TOL_MS = 0.05
PORT = 5001

BULK = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
print("ready", flush=True)
def send(c):
    try:
        c.sendall(b"x" * 20000); c.shutdown(socket.SHUT_WR)
        while c.recv(4096): pass
    except OSError: pass
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=send, args=(c,), daemon=True).start()
"""
GET = r"""
import socket, sys
for _ in range(int(sys.argv[3])):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    while c.recv(65536): pass
    c.close()
"""


@pytest.mark.root
def test_live_kernel_filter_passes_only_the_followed_flows(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "live capture tests need root; CI runs as root"
    with Lab() as lab:
        client, gw, server = live.gateway(lab, nat=False)
        srv = lab.popen(
            server, sys.executable, "-c", BULK, SERVER, str(PORT), stdout=subprocess.PIPE, text=True
        )
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        reference = tmp_path / "wan0.pcap"
        dump = lab.popen(
            gw, "tcpdump", "-i", "wan0", "-nn", "-U", "-Z", "root", "-w", str(reference), "tcp",
            stderr=subprocess.PIPE,
        )  # fmt: skip
        assert dump.stderr is not None and "listening on" in dump.stderr.readline().decode()
        port, url = live.start_collector(lab, gw, tmp_path)
        log = tmp_path / "sensor.log"
        sensor = lab.popen(
            gw, tool("net-gazer-sensor"), "--collector", f"127.0.0.1:{port}", "-i", "wan0:wan",
            "--sensor-id", "live-sampled", "--flush-interval", "0.2", "-v",
            "-c", str(config(tmp_path, RATE)), log=log, env={**os.environ, "NG_PLUGINS_ALLOW": "quality"},
        )  # fmt: skip
        live.wait_for(log, "connected to collector", sensor)
        lab.run(client, sys.executable, "-c", GET, SERVER, str(PORT), str(FLOWS))
        time.sleep(1.0)
        assert lab.stop(sensor) == 0, log.read_text()
        lab.stop(dump, signal.SIGINT)
        want, segs, total = followed_reference(reference, RATE)
        got = edges(url, "net_gazer")
        assert set(got) == set(want) and 0 < sum(e["quality_flows"] for e in got.values()) < FLOWS
        for key, chosen in want.items():
            # The reference is a second capture of the same packets: its timestamps differ from
            # the sensor's by microseconds, so RTTs agree to LIVE_RTT_TOL_MS, counts exactly.
            check_edge(key, {**got[key], "sample_rate": 1}, chosen, rtt_tol=LIVE_RTT_TOL_MS)
        counts = sensor_counters(url, "net_gazer", "live-sampled")
        # The kernel passed exactly the followed flows' segments (libpcap's received count is
        # what passed the socket filter), so the rest never reached user space.
        assert counts["pcap_received"] == counts["sensor_tcp"] == segs < total
        assert counts["plugin_quality_not_followed"] == 0 and counts["pcap_dropped"] == 0
