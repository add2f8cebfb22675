"""Flood resistance (issue 3): a spoofed SYN flood, replayed from a capture and sent live.

Under the flood the sensor's memory stays bounded, the real handshakes mixed into it are still
recorded, and a half-open flow never produces a completed-handshake event (the only event allowed
to trigger active probing). Both tests print a ``FLOOD`` figures line (run pytest with ``-s``) and
record the figures as JUnit properties.

The replay test needs no privileges. The live test builds its own namespaces::

    client (192.168.77.2) ── lan0 [gateway: collector + live sensor] wan0 ── server (198.51.100.2:443)

The spoofed SYNs come from 10.0.0.0/8 and go only to 198.51.100.2, inside namespaces that have no
route out; the flood is bounded in count and time and stops by itself. The server answers them
(SYN cookies once its queue is full); the SYN+ACKs are routed back to the client, which drops
them: half-open flows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Collector, graph_query, tool
from netns import Lab

from net_gazer.plugins.handshake.sensor import MAX_ROWS, MAX_UNVERIFIED_ROWS
from net_gazer.sensor.handshake import TrackerConfig

MAKE_FLOOD = ROOT / "bench" / "make_flood_pcap.py"
MAX_FLOWS = TrackerConfig().max_flows
MIB = 1024 * 1024
FLUSH_INTERVAL = 1.0  # seconds; the sensor's default, given explicitly for the arithmetic

# -- replay --------------------------------------------------------------------------------------
REPLAY_SYNS = 1_000_000
REPLAY_REAL = 200
#: Peak RSS of the replaying sensor. Measured: 312-318 MiB (Python 3.11, 2 cores), and 312 MiB
#: with 2,000,000 SYNs (bench/bench_flood.py), because the tracker is full at max_flows = 262,144
#: pending attempts (about 1 KiB each with the OrderedDict, the ISN index and the address texts)
#: on top of a 49 MiB sensor (the sample pcap), plus at most MAX_ROWS plugin rows and a batch. 1.5x
#: the measurement leaves room for allocator and library-version noise; an unbounded table (one
#: entry per spoofed SYN) would need about 1 GiB here and fail loudly.
REPLAY_RSS_BOUND_MIB = 480

# -- live ----------------------------------------------------------------------------------------
SERVER = "198.51.100.2"
CLIENT = "192.168.77.2"
PORT = 443
LIVE_SYNS = 200_000
LIVE_REAL = 50
#: SYNs per second: 200,000 in about 27 s, under LIVE_TIME_LIMIT. The sensor sees four frames per
#: spoofed SYN here (the SYN and the server's SYN+ACK, each on lan0 and wan0), about 30k frames/s,
#: and needs about half a core for them; what limits it is the kernel capture ring (below).
LIVE_RATE = 7_500
LIVE_TIME_LIMIT = 30.0  # the flood stops after this many seconds, whatever happens
#: The capture ring matters here: libpcap's 2 MiB default holds about 1,500 frames per interface
#: at snaplen 1024, and with it 38-47k of 813k frames were dropped at 7,000 SYN/s, real handshakes
#: with them. The sensor now asks for a 32 MiB ring (capture_buffer); the test runs on defaults.
#: Peak RSS of the live sensor. Measured 219-225 MiB with libpcap's 2 MiB rings and 301-321 MiB
#: with the sensor's 32 MiB rings on two interfaces (the rings are mapped into the process); the
#: tracker holds every spoofed attempt (200,000 < max_flows, none times out within 75 s). 1.5x
#: the measurement, as for the replay.
LIVE_RSS_BOUND_MIB = 480


# Spoofed SYNs through a raw socket (IPPROTO_RAW implies IP_HDRINCL), paced at RATE, stopping at
# COUNT or after LIMIT seconds. It refuses to run in the test's own network namespace (given as the
# last argument) or towards
# anything but the documentation range, and never sends from outside 10.0.0.0/8.
FLOOD = r"""
import ipaddress, os, random, socket, struct, sys, time
dst, dport, count, rate, limit, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
if os.readlink('/proc/self/ns/net') == sys.argv[7]:
    sys.exit('refusing to flood from the network namespace of the test itself')
if ipaddress.ip_address(dst) not in ipaddress.ip_network('198.51.100.0/24'):
    sys.exit('refusing to flood outside 198.51.100.0/24')
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rng = random.Random(seed)
d = socket.inet_aton(dst)
dwords = sum(struct.unpack('!HH', d))
def fold(x):
    x = (x & 0xFFFF) + (x >> 16)
    x = (x & 0xFFFF) + (x >> 16)
    return ~x & 0xFFFF
sent = errors = 0
t0 = time.monotonic()
print('flooding', flush=True)
while sent < count:
    now = time.monotonic() - t0
    if now > limit:
        break
    due = min(count, int(now * rate) + 1)
    while sent < due:
        src = 0x0A000000 | rng.getrandbits(24)
        sport = rng.randint(1024, 65535)
        isn = rng.getrandbits(32)
        win = rng.randint(1024, 65535)
        # TCP (RFC 9293 3.1) with an MSS option; checksum over the pseudo-header.
        tsum = ((src >> 16) + (src & 0xFFFF) + dwords + 6 + 24 + sport + dport + (isn >> 16)
                + (isn & 0xFFFF) + (0x6000 | 0x02) + win + 0x0204 + 1460)
        tcp = struct.pack('!HHIIBBHHHBBH', sport, dport, isn, 0, 0x60, 0x02, win, fold(tsum), 0,
                          2, 4, 1460)
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 44, rng.getrandbits(16), 0x4000, 64, 6, 0,
                         src.to_bytes(4, 'big'), d)  # the kernel fills in the header checksum
        try:
            s.sendto(ip + tcp, (dst, 0))
        except OSError:
            errors += 1
            time.sleep(0.001)
            continue
        sent += 1
    time.sleep(0.001)
print(f'sent {sent} in {time.monotonic() - t0:.3f} errors {errors}', flush=True)
"""

# N real connections in parallel, each sending a few bytes; prints how many succeeded.
CONNECT_PARALLEL = """
import socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = []
def one():
    try:
        c = socket.create_connection((host, port), timeout=10)
        c.sendall(b'hello')
        c.close()
        ok.append(1)
    except OSError as exc:
        print('failed', exc, flush=True)
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print('ok', len(ok), flush=True)
"""


# -- helpers -------------------------------------------------------------------------------------
def vm_hwm_kib(pid: int) -> int:
    """The peak resident set size (VmHWM) of a running process, in KiB; 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def real_pid(proc: subprocess.Popen[Any]) -> int:
    """The PID of the program a ``Popen`` started. ``ip netns exec`` execs in place (iproute2 6.x),
    but should a version fork instead, the program is its only child."""
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    if cmdline[:3] != [b"ip", b"netns", b"exec"]:
        return proc.pid
    for task in Path(f"/proc/{proc.pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    raise AssertionError(f"no child of 'ip netns exec' (pid {proc.pid})")


def reap(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, int]:
    """Wait for a child with ``wait4``; return its exit code and its peak RSS (ru_maxrss, KiB).

    ``wait4`` reports the usage of exactly that child, unlike ``RUSAGE_CHILDREN``, which mixes in
    every process this test session has reaped (collectors too).
    """
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_maxrss
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"pid {proc.pid} still running after {timeout:.0f} s")
        time.sleep(0.05)


def edge_totals(url: str, graph: str, sensor: str) -> dict[str, dict[str, int]]:
    """CONNECTS totals by kind of client: ``real`` (192.168/16), ``spoofed`` (10/8), ``folded``
    (the unspecified address) and ``other`` (must stay empty)."""
    rows = graph_query(
        url,
        graph,
        """
        MATCH (c:Host)-[e:CONNECTS {sensor: $sid}]->(:Host)
        WITH CASE WHEN c.ip = '0.0.0.0' THEN 'folded'
                  WHEN c.ip STARTS WITH '10.' THEN 'spoofed'
                  WHEN c.ip STARTS WITH '192.168.' THEN 'real'
                  ELSE 'other' END AS kind, e
        RETURN kind, count(e), sum(e.count), sum(e.attempts), sum(e.unanswered),
               sum(e.refused), sum(e.abandoned), sum(e.evicted)
        """,
        {"sid": sensor},
    )
    names = ("edges", "count", "attempts", "unanswered", "refused", "abandoned", "evicted")
    out = {k: dict.fromkeys(names, 0) for k in ("real", "spoofed", "folded", "other")}
    for kind, *values in rows:
        out[kind] = {n: int(v or 0) for n, v in zip(names, values, strict=True)}
    return out


def sensor_counters(url: str, graph: str, sensor: str) -> tuple[int, dict[str, int]]:
    [[acked, counters]] = graph_query(
        url,
        graph,
        "MATCH (s:Sensor {id: $sid}) RETURN s.acked_seq, s.counters",
        {"sid": sensor},
    )
    return int(acked), {k: int(v) for k, v in (c.split("=", 1) for c in counters)}


def max_sends(ticks: int, counters: dict[str, int]) -> int:
    """An upper bound on the handshake plugin's sends, each of which itemizes at most the budget
    of unverified rows: one per tick, plus the early sends, each of which empties a table of
    exactly MAX_ROWS rows out of all the rows the plugin built (sent or folded)."""
    built = counters["plugin_handshake_rows_sent"] + counters.get(
        "plugin_handshake_unverified_rows_folded", 0
    )
    return ticks + built // MAX_ROWS


def figures(record_property: Any, title: str, items: dict[str, Any]) -> None:
    for key, value in items.items():
        record_property(key, value)
    print(f"\nFLOOD {title}: " + ", ".join(f"{k}={v}" for k, v in items.items()), flush=True)


# -- replay --------------------------------------------------------------------------------------
def test_replayed_flood_keeps_real_handshakes_and_bounded_memory(
    collector: Collector, tmp_path: Path, graph_name: str, record_property: Any
) -> None:
    pcap = tmp_path / "flood.pcap"
    made = subprocess.run(
        [sys.executable, str(MAKE_FLOOD), "--syns", str(REPLAY_SYNS), "--real", str(REPLAY_REAL),
         "--out", str(pcap)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    truth = json.loads(pcap.with_suffix(".json").read_text())
    assert (truth["syns"], truth["real"]) == (REPLAY_SYNS, REPLAY_REAL)
    sid = f"flood-replay-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "sensor.log"
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [tool("net-gazer-sensor"), "-r", str(pcap), "--collector", collector.address,
             "--sensor-id", sid, "--flush-interval", str(FLUSH_INTERVAL), "-v"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    hwm = 0
    try:
        deadline = start + 240
        while True:  # watch VmHWM while it runs; wait4 gives the exact peak at the end
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            hwm = max(hwm, vm_hwm_kib(proc.pid))
            assert time.monotonic() < deadline, "the replay did not finish in 240 s"
            time.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait(10)
    took = time.monotonic() - start
    peak_mib = max(hwm, usage.ru_maxrss) * 1024 / MIB
    assert proc.returncode == 0, log.read_text()[-3000:]

    url = collector.graph_url
    # Every real handshake is one CONNECTS edge, completed once, with both RTT halves exactly as
    # generated (the capture has microsecond timestamps).
    rows = graph_query(
        url,
        graph_name,
        """
        MATCH (c:Host)-[e:CONNECTS {sensor: $sid}]->(s:Host) WHERE c.ip STARTS WITH '192.168.'
        RETURN c.ip, s.ip, e.dport, e.count, e.attempts, e.rtt_samples, e.rtt_ms_min,
               e.client_rtt_samples, e.client_rtt_ms_min
        """,
        {"sid": sid},
    )
    real = {(r[0], r[1], r[2]): r[3:] for r in rows}
    want = {(h["client"], h["server"], h["port"]): h for h in truth["handshakes"]}
    assert set(real) == set(want)
    recorded = 0
    for key, (count, _attempts, rn, rtt, cn, crtt) in real.items():
        h = want[key]
        assert (count, rn, cn) == (1, 1, 1), (key, real[key])
        assert abs(rtt - h["rtt_ms"]) < 0.01 and abs(crtt - h["client_rtt_ms"]) < 0.01, key
        recorded += 1
    # A real handshake whose SYN and ACK fall into different flushes has its attempt folded
    # into the 0.0.0.0 row with the flood's (the SYN's row was unverified then); reported.
    attempts_elsewhere = sum(1 for r in real.values() if r[1] != 1)

    totals = edge_totals(url, graph_name, sid)
    everything = {n: sum(t[n] for t in totals.values()) for n in totals["real"]}
    acked, counters = sensor_counters(url, graph_name, sid)
    budget = MAX_UNVERIFIED_ROWS
    # Replay ticks on packet time: one per interval the capture spans, and the final one.
    ticks = int(truth["flood_duration"] / FLUSH_INTERVAL) + 2
    sends = max_sends(ticks, counters)
    # No half-open flow completed: every completed handshake in the graph is a real one.
    half_open_completed = everything["count"] - REPLAY_REAL
    figures(
        record_property,
        "replay",
        {
            "handshakes_recorded": f"{recorded}/{REPLAY_REAL}",
            "peak_rss_mib": round(peak_mib, 1),
            "rss_bound_mib": REPLAY_RSS_BOUND_MIB,
            "half_open_completed": half_open_completed,
            "syns_replayed": REPLAY_SYNS,
            "seconds": round(took, 1),
            "syns_per_s": round(REPLAY_SYNS / took),
            "packets_per_s": round(truth["packets"] / took),
            "spoofed_edges": totals["spoofed"]["edges"],
            "spoofed_edges_bound": budget * sends,
            "ticks_at_most": ticks,
            "batches": acked,
            "folded_edges": totals["folded"]["edges"],
            "folded_attempts": totals["folded"]["attempts"],
            "tracker_evicted": counters["tracker_evicted"],
            "real_edges_attempts_not_1": attempts_elsewhere,
        },
    )
    assert half_open_completed == 0 and totals["real"]["count"] == REPLAY_REAL
    # Every SYN is one attempt, whatever became of it: the SYNs that the full tracker evicted got
    # their own verdict, EVICTED (table pressure, not a non-answer), the rest UNANSWERED at the end
    # of the capture. Nothing disappears in the folding.
    assert everything["attempts"] == REPLAY_SYNS + REPLAY_REAL
    assert everything["evicted"] == counters["tracker_evicted"]
    assert everything["unanswered"] + everything["evicted"] == REPLAY_SYNS
    assert everything["refused"] == everything["abandoned"] == 0
    assert (
        REPLAY_SYNS - MAX_FLOWS
        <= counters["tracker_evicted"]
        <= REPLAY_SYNS + REPLAY_REAL - MAX_FLOWS
    )
    # The spoofed sources are itemized only within the per-send budget; the rest is one row per
    # target from 0.0.0.0.
    assert totals["other"]["edges"] == 0
    assert totals["spoofed"]["count"] == totals["folded"]["count"] == 0
    assert totals["spoofed"]["edges"] <= budget * sends
    assert 0 < totals["folded"]["edges"] <= len(truth["targets"])
    assert (
        totals["folded"]["attempts"]
        == REPLAY_SYNS + REPLAY_REAL - totals["spoofed"]["attempts"] - totals["real"]["attempts"]
    )
    assert peak_mib < REPLAY_RSS_BOUND_MIB


# -- live ----------------------------------------------------------------------------------------
@pytest.mark.root
def test_live_flood_through_gateway_keeps_real_handshakes(
    falkordb_url: str, graph_name: str, tmp_path: Path, record_property: Any
) -> None:
    assert os.geteuid() == 0, "the live flood test needs root; CI runs as root"
    sid = f"flood-live-{uuid.uuid4().hex[:6]}"
    with Lab() as lab:
        client, gw, server = lab.ns("cl"), lab.ns("gw"), lab.ns("sv")
        lab.link(client, "eth0", f"{CLIENT}/24", gw, "lan0", "192.168.77.1/24")
        lab.link(gw, "wan0", "198.51.100.1/24", server, "eth0", f"{SERVER}/24")
        lab.run(client, "ip", "route", "add", "default", "via", "192.168.77.1")
        lab.run(server, "ip", "route", "add", "default", "via", "198.51.100.1")
        lab.run(gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # Forward the spoofed sources, and send the server's SYN+ACKs for them back to the client
        # LAN, where the client (not a router) drops them: nobody answers, the flows stay open.
        for key in ("all", "default", "lan0"):
            lab.run(gw, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")
        lab.run(gw, "ip", "route", "add", "10.0.0.0/8", "via", CLIENT)

        lab.tcp_server(server, SERVER, PORT)
        ready = tmp_path / "ready.json"
        col = lab.popen(
            gw, tool("net-gazer-collector"), "--graph-url", falkordb_url, "--graph", graph_name,
            "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--ready-file", str(ready),
            log=tmp_path / "collector.log",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (ready.exists() and ready.read_text()):
            assert col.poll() is None, (tmp_path / "collector.log").read_text()
            assert time.monotonic() < deadline, "collector not ready in 30 s"
            time.sleep(0.05)
        port = json.loads(ready.read_text())["grpc_port"]
        log = tmp_path / "sensor.log"
        sensor = lab.popen(
            gw, tool("net-gazer-sensor"), "--collector", f"127.0.0.1:{port}", "-i", "lan0:lan",
            "-i", "wan0:wan", "--sensor-id", sid, "--local-networks", "192.168.77.0/24",
            "--spool-dir", str(tmp_path / "spool"), "--flush-interval", str(FLUSH_INTERVAL),
            "-v",
            log=log,
        )  # fmt: skip
        sensor_start = time.monotonic()
        deadline = time.monotonic() + 30
        while "connected to collector" not in log.read_text(errors="replace"):
            assert sensor.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        pid = real_pid(sensor)

        flood = lab.popen(
            client, sys.executable, "-c", FLOOD, SERVER, str(PORT), str(LIVE_SYNS),
            str(LIVE_RATE), str(LIVE_TIME_LIMIT), "7", os.readlink("/proc/self/ns/net"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert flood.stdout is not None
        assert flood.stdout.readline().strip() == "flooding", flood.stdout.read()
        time.sleep(2.0)  # well into the flood
        real = lab.run(client, sys.executable, "-c", CONNECT_PARALLEL, SERVER, str(PORT),
                       str(LIVE_REAL))  # fmt: skip
        out, _ = flood.communicate(timeout=LIVE_TIME_LIMIT + 15)
        m = re.search(r"sent (\d+) in ([\d.]+) errors (\d+)", out)
        assert flood.returncode == 0 and m, out
        sent, flood_s, send_errors = int(m.group(1)), float(m.group(2)), int(m.group(3))

        # Let the sensor drain the capture buffers: it is done when it goes idle.
        deadline = time.monotonic() + 60
        last = cpu_seconds(pid)
        while True:
            time.sleep(0.5)
            now = cpu_seconds(pid)
            if now - last < 0.05 or time.monotonic() > deadline:
                break
            last = now
        hwm = vm_hwm_kib(pid)  # just before stopping: the peak under the flood
        sensor_cpu = cpu_seconds(pid)
        sensor_wall = time.monotonic() - sensor_start
        if pid == sensor.pid:
            sensor.send_signal(signal.SIGTERM)
            code, maxrss = reap(sensor, 60)
        else:
            code, maxrss = lab.stop(sensor, timeout=60), 0
        peak_mib = max(hwm, maxrss) * 1024 / MIB
        assert code == 0, log.read_text()[-3000:]
        # Live ticks on the wall clock: one per interval the sensor ran, and the final one.
        ticks = int((time.monotonic() - sensor_start) / FLUSH_INTERVAL) + 2

    rows = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (c:Host {ip: $c})-[e:CONNECTS {sensor: $sid, dport: $port}]->(s:Host {ip: $s}) "
        "RETURN e.count, e.attempts, e.rtt_samples, e.client_rtt_samples",
        {"c": CLIENT, "s": SERVER, "port": PORT, "sid": sid},
    )
    totals = edge_totals(falkordb_url, graph_name, sid)
    everything = {n: sum(t[n] for t in totals.values()) for n in totals["real"]}
    _, counters = sensor_counters(falkordb_url, graph_name, sid)
    recorded = int(rows[0][0]) if rows else 0
    half_open_completed = everything["count"] - recorded
    spoofed_attempts = totals["spoofed"]["attempts"] + totals["folded"]["attempts"]
    figures(
        record_property,
        "live",
        {
            "handshakes_recorded": f"{recorded}/{LIVE_REAL}",
            "real_edge": rows[0] if rows else None,
            "client_connections": real.stdout.strip().splitlines()[-1],
            "peak_rss_mib": round(peak_mib, 1),
            "rss_bound_mib": LIVE_RSS_BOUND_MIB,
            "half_open_completed": half_open_completed,
            "syns_sent": sent,
            "seconds": round(flood_s, 1),
            "syns_per_s": round(sent / flood_s),
            "send_errors": send_errors,
            "spoofed_attempts_seen": spoofed_attempts,
            "spoofed_edges": totals["spoofed"]["edges"],
            "spoofed_edges_bound": MAX_UNVERIFIED_ROWS * max_sends(ticks, counters),
            "ticks_at_most": ticks,
            "folded_edges": totals["folded"]["edges"],
            "sensor_cpu_s": round(sensor_cpu, 1),
            "sensor_wall_s": round(sensor_wall, 1),
            "pcap_received": counters["pcap_received"],
            "pcap_dropped": counters["pcap_dropped"],
            "sensor_packets": counters["sensor_packets"],
        },
    )
    assert real.stdout.strip().splitlines()[-1] == f"ok {LIVE_REAL}", real.stdout
    assert recorded == LIVE_REAL, rows
    assert half_open_completed == 0 and everything["count"] == LIVE_REAL
    # The flood really crossed the gateway and reached the sensor (else the test proves nothing).
    assert sent > 0.9 * LIVE_SYNS  # unless the time limit cut it short on a starved machine
    assert 0.9 * sent <= spoofed_attempts <= sent
    assert totals["other"]["edges"] == 0
    assert totals["spoofed"]["count"] == totals["folded"]["count"] == 0
    assert totals["spoofed"]["edges"] <= MAX_UNVERIFIED_ROWS * max_sends(ticks, counters)
    assert peak_mib < LIVE_RSS_BOUND_MIB
