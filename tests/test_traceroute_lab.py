"""The traceroute plugin on the lab's gateway, against references that are not ours: the hop list
Linux ``traceroute -n -q1`` prints from the gateway with the same method and flow, tcpdump
captures on the gateway's WAN side read by tshark, and the lab's topology.

Every probe here stays inside the lab's namespaces (documentation ranges, no route out).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import graph_query
from lab_fixture import LAB_BIN, LabNet, stop, wait_for_text

#: The one source port (flow id) of every probe in the comparisons, as ``traceroute --sport``.
SPORT = 61234
TARGETS = {
    "srv1": ["192.0.2.10", "2001:db8:2:1::a"],
    "srv2": ["192.0.2.138", "2001:db8:2:3::a"],
    "any": ["203.0.113.77", "2001:db8:203::77"],
}
ALL = [a for addrs in TARGETS.values() for a in addrs]

#: Connects to each (address, port) given as arguments, completes the handshake and closes.
CONNECT = """
import socket, sys
for item in sys.argv[1:]:
    host, port = item.rsplit(',', 1)
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect((host, int(port)))
"""

#: SYNs from a forged client address that never completes a handshake (raw socket, IPv4).
SPOOF = """
import socket, struct, sys
src, dst, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for i in range(n):
    tcp = struct.pack('!HHIIBBHHH', 40000 + i, port, 1000 + i, 0, 5 << 4, 2, 64240, 0, 0)
    ph = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack('!H', csum(ph + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, i, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    raw.sendto(ip + tcp, (dst, 0))
"""

#: A traceroute hop line: " 3  198.51.100.18  0.061 ms" or " 3  *".
HOP_LINE = re.compile(r"^\s*(\d+)\s+(\S+)")


def config(tmp: Path, **settings: Any) -> Path:
    lines = ["[plugins.traceroute]"]
    for key, value in settings.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value!r}")
    path = tmp / "sensor.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def lab_sensor(
    lab_net: LabNet, sock: Path, log: Path, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [LAB_BIN, "sensor", "--lab", lab_net.name, "--", "--collector", f"unix:{sock}",
             "--flush-interval", "0.2", "--no-spool", "-v", *args],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_text(log, "connected to collector", proc)
        yield proc
    finally:
        stop(proc)


def traces(url: str, graph: str) -> dict[str, dict[str, Any]]:
    rows = graph_query(
        url,
        graph,
        "MATCH (:Sensor)-[:RAN]->(t:Trace) RETURN t.dst, t.hops, t.reached, t.method, t.flow_id, t.id",
    )
    return {
        r[0]: {"hops": r[1], "reached": r[2], "method": r[3], "flow": r[4], "id": r[5]}
        for r in rows
    }


def wait_traces(url: str, graph: str, n: int, timeout: float = 30) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    got = traces(url, graph)
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.2)
        got = traces(url, graph)
    return got


def reference(lab_net: LabNet, method: str, dst: str) -> list[str]:
    """Linux traceroute's hop list from the gateway, ``""`` for ``*``."""
    flags = {
        "tcp": ["-T", f"--sport={SPORT}", "-p", "80"],
        "udp": ["-U", f"--sport={SPORT}", "-p", "33434"],
        "icmp": ["-I"],
    }[method]
    family = "-6" if ":" in dst else "-4"
    out = lab_net.run("gw", "traceroute", family, "-n", "-q1", "-w", "1", "-m", "12", *flags, dst)
    hops: list[str] = []
    for line in out.splitlines()[1:]:
        m = HOP_LINE.match(line)
        if m:
            hops.append("" if m[2] == "*" else m[2])
    return hops


#: The ECMP pair and r4 behind it. traceroute -T sends from a raw socket, so the routers hash its
#: probes on the 5-tuple alone and it takes our probes' branch. traceroute -U sends from a
#: connected UDP socket, whose random socket hash (sk_txhash) travels with the packets through
#: the lab's veths and picks the branch: it changes from run to run with the same ports (seen
#: here: 6 runs, both branches). traceroute -I picks its own identifier. So UDP and ICMP paths are
#: compared up to the branch.
BRANCH = {"198.51.100.18": "r3", "198.51.100.26": "r3", "198.51.100.34": "r4", "198.51.100.42": "r4",
          "2001:db8:100:2::2": "r3", "2001:db8:100:3::2": "r3",
          "2001:db8:100:4::2": "r4", "2001:db8:100:5::2": "r4"}  # fmt: skip


@pytest.mark.root
@pytest.mark.parametrize("method", ["tcp", "udp", "icmp"])
def test_hop_lists_equal_linux_traceroute(
    method: str, lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    cfg = config(
        tmp_path,
        method=method,
        flow_ports=[SPORT, SPORT],
        router_rate=0,
        stop_set=False,
        timeout=0.5,
    )
    with lab_net.icmp_ratelimit(on=False):
        with lab_sensor(lab_net, sock, tmp_path / "sensor.log", "-c", str(cfg)):
            lab_net.python("client", CONNECT, *(f"{a},80" for a in ALL))
            got = wait_traces(falkordb_url, graph_name, len(ALL))
        want = {dst: reference(lab_net, method, dst) for dst in ALL}
    assert set(got) == set(ALL), (tmp_path / "sensor.log").read_text()[-3000:]
    for dst in ALL:
        ours, theirs = got[dst]["hops"], want[dst]
        # The AnyIP server answers UDP probes from its interface's address, in both tools.
        assert got[dst]["reached"] and theirs[-1] in (dst, "192.0.2.74", "2001:db8:2:2::a"), (
            dst,
            ours,
            theirs,
        )
        if method in ("udp", "icmp"):
            ours, theirs = [BRANCH.get(h, h) for h in ours], [BRANCH.get(h, h) for h in theirs]
        assert ours == theirs, (dst, method)
        assert got[dst]["method"] == method
        if method != "icmp":
            assert got[dst]["flow"] == SPORT
    # The silent router stays silent, and the branch at r1 gives srv2 another path.
    for dst in TARGETS["srv1"] + TARGETS["any"]:
        assert got[dst]["hops"][1] == ""
    assert got["192.0.2.138"]["hops"][1] == "198.51.100.50"
    assert got["192.0.2.10"]["hops"][0] == got["192.0.2.138"]["hops"][0] == "198.51.100.2"


GW_ADDRS = {"198.51.100.1", "2001:db8:100::1"}
LAB_PREFIXES = ("192.0.2.", "198.51.100.", "203.0.113.", "2001:db8:")
FLOW_PORTS = range(61000, 62000)


def tshark(pcap: Path, *fields: str, display: str = "") -> list[list[str]]:
    """Fields of each packet as tshark reads them; the first occurrence of each (the outer
    headers, not those an ICMP error quotes)."""
    cmd = ["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    cmd += [a for f in fields for a in ("-e", f)] + (["-Y", display] if display else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


def probes_on_wire(pcap: Path) -> list[str]:
    """The destination of every probe of ours that tshark finds in ``pcap``: from the gateway's
    own addresses, a TCP SYN or a UDP datagram from the flow ports, or an ICMP echo request."""
    out = []
    fields = ("ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "ip.proto", "ipv6.nxt", "tcp.flags",
              "tcp.srcport", "udp.srcport", "icmp.type", "icmpv6.type")  # fmt: skip
    for s4, s6, d4, d6, p4, p6, flags, tport, uport, itype, i6type in tshark(pcap, *fields):
        if (s4 or s6) not in GW_ADDRS:
            continue
        proto = int(p4 or p6 or 0)
        probe = (
            (proto == 6 and int(flags, 16) & 0x12 == 0x02 and int(tport) in FLOW_PORTS)
            or (proto == 17 and int(uport) in FLOW_PORTS)
            or (proto == 1 and itype == "8")
            or (proto == 58 and i6type == "128")
        )
        if probe:
            out.append(d4 or d6)
    return out


@pytest.mark.root
def test_safety_counted_on_the_wire(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    wan = tmp_path / "wan.pcap"
    real = ["192.0.2.10", "2001:db8:2:1::a"]
    with (
        lab_net.tcpdump("gw", "wan0", wan, "tcp or udp or icmp or icmp6"),
        lab_sensor(lab_net, sock, tmp_path / "sensor.log"),
    ):
        # SYNs from a forged client: answered by SYN+ACKs that nobody acknowledges.
        lab_net.python("client", SPOOF, "10.77.1.99", "203.0.113.200", 80, 5)
        lab_net.python("client", CONNECT, *(f"{a},80" for a in real))
        got = wait_traces(falkordb_url, graph_name, len(real))
    assert set(got) == set(real)
    on_wire = probes_on_wire(wan)
    assert on_wire and set(on_wire) == set(real)  # no probe to the forged SYNs' target
    assert all(d.startswith(LAB_PREFIXES) for d in on_wire)  # nothing leaves the lab's ranges
    # The probes, their SYN+ACKs and the gateway's RSTs are not connections.
    edges = graph_query(
        falkordb_url, graph_name, "MATCH (c:Host)-[e:CONNECTS]->(s:Host) RETURN c.ip, s.ip, e.dport"
    )
    assert sorted(tuple(e) for e in edges) == sorted(
        [
            ("10.77.1.10", "192.0.2.10", 80),
            ("fd00:77:1::a", "2001:db8:2:1::a", 80),
            ("10.77.1.99", "203.0.113.200", 80),
        ]
    )

    # --dry-run and --no-probe send nothing, live; the dry run says what it would have sent.
    for flag in ("--dry-run", "--no-probe"):
        quiet = tmp_path / f"{flag[2:]}.pcap"
        log = tmp_path / f"{flag[2:]}.log"
        with (
            lab_net.tcpdump("gw", "wan0", quiet, "tcp or udp or icmp or icmp6"),
            lab_sensor(lab_net, sock, log, flag),
        ):
            lab_net.python("client", CONNECT, "192.0.2.138,80", "2001:db8:2:3::a,22")
            time.sleep(1.5)
        assert probes_on_wire(quiet) == [], flag
        assert ("dry run: would send a tcp probe to 192.0.2.138" in log.read_text()) == (
            flag == "--dry-run"
        )

    # A replay of the first capture probes nothing without --probe, and probes with it.
    for extra, expect in (((), False), (("--probe",), True)):
        replayed = tmp_path / f"replay{len(extra)}.pcap"
        log = tmp_path / f"replay{len(extra)}.log"
        cmd = [str(Path(LAB_BIN).parent / "net-gazer-sensor"), "-r", str(wan), "--collector", f"unix:{sock}",
               "--local-networks", "10.77.1.0/24,fd00:77:1::/64", "--sensor-id", f"replay{len(extra)}", *extra]  # fmt: skip
        with (
            lab_net.tcpdump("gw", "wan0", replayed, "tcp or udp or icmp or icmp6"),
            lab_net.process("gw", *cmd, log=log) as proc,
        ):
            assert proc.wait(60) == 0, log.read_text()
        assert bool(probes_on_wire(replayed)) is expect, log.read_text()[-2000:]


#: What every path to the AnyIP range looks like, by the lab's topology: r1, the silent r2, one
#: of the ECMP pair, r4 (answering from the address towards either branch), the destination.
R3 = {"198.51.100.18", "198.51.100.26"}
R4 = {"198.51.100.34", "198.51.100.42"}


def complete(hops: list[str], dst: str) -> bool:
    return (
        len(hops) == 5
        and hops[:2] == ["198.51.100.2", ""]
        and hops[2] in R3
        and hops[3] in R4
        and hops[4] == dst
    )


def trace_burst(
    lab_net: LabNet, collector_factory: Any, url: str, graph: str, tmp: Path, dsts: list[str],
    name: str, **settings: Any,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    sock = tmp / f"{name}.sock"
    collector_factory("--graph-url", url, "--graph", graph, "--listen", f"unix:{sock}").start()
    cfg = config(tmp, **settings)
    with lab_sensor(lab_net, sock, tmp / f"{name}.log", "-c", str(cfg), "--sensor-id", name):
        lab_net.python("client", CONNECT, *(f"{a},80" for a in dsts), timeout=120)
        return wait_traces(url, graph, len(dsts), timeout=240)


@pytest.mark.root
def test_rate_limits_on_fifty_destinations_all_complete_with_pacing(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, tmp_path: Path
) -> None:
    """Linux's default ICMP rate limits in every router (the lab's default). Paced, 50 new
    destinations behind the same routers all get complete traces; the control run without
    pacing per router loses hops to the limits."""
    paced_dsts = [f"203.0.113.{i}" for i in range(1, 51)]
    got = trace_burst(lab_net, collector_factory, falkordb_url, "t_paced_" + tmp_path.name[-6:],
                      tmp_path, paced_dsts, "paced", method="tcp", stop_set=False)  # fmt: skip
    done = [d for d in paced_dsts if d in got and got[d]["reached"] and complete(got[d]["hops"], d)]
    assert len(done) == 50, {d: got.get(d) for d in paced_dsts if d not in done}
    time.sleep(2)  # the routers' buckets refill
    control_dsts = [f"203.0.113.{i}" for i in range(101, 151)]
    got = trace_burst(lab_net, collector_factory, falkordb_url, "t_unpaced_" + tmp_path.name[-6:],
                      tmp_path, control_dsts, "unpaced", method="tcp", stop_set=False,
                      router_rate=0)  # fmt: skip
    blanked = [d for d in control_dsts if d in got and not complete(got[d]["hops"], d)]
    assert len(blanked) >= 10, f"only {len(blanked)} of 50 unpaced traces lost hops"


@pytest.mark.root
def test_paris_traces_keep_one_branch_per_flow_and_flows_show_both(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    flows = list(range(61100, 61116))
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    cfg = config(tmp_path, method="tcp", flow_ports=[flows[0], flows[-1]], dedup_window=0,
                 stop_set=False, router_rate=0, timeout=0.5)  # fmt: skip
    n = 2 * len(flows)  # every flow id twice
    with (
        lab_net.icmp_ratelimit(on=False),
        lab_sensor(lab_net, sock, tmp_path / "s.log", "-c", str(cfg)),
    ):
        for _ in range(n):
            lab_net.python("client", CONNECT, "192.0.2.10,80")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = graph_query(
                falkordb_url, graph_name, "MATCH (t:Trace) RETURN t.flow_id, t.hops, t.reached"
            )
            if len(rows) >= n:
                break
            time.sleep(0.3)
    assert len(rows) == n and all(r[2] for r in rows)
    branch: dict[int, set[str]] = {}
    for flow, hops, _ in rows:
        assert hops[2] in R3, hops
        branch.setdefault(flow, set()).add(hops[2])
    assert sorted(branch) == flows
    assert all(len(b) == 1 for b in branch.values()), branch  # one flow id, one branch
    assert set().union(*branch.values()) == R3  # and the flow ids between them take both
    # Linux traceroute with the same flow (source port) takes the same branch.
    with lab_net.icmp_ratelimit(on=False):
        for flow in flows[:4]:
            out = lab_net.run("gw", "traceroute", "-4", "-n", "-q1", "-w", "1", "-f", "3", "-m", "3",
                              "-T", f"--sport={flow}", "-p", "80", "192.0.2.10")  # fmt: skip
            assert out.split()[-3] in branch[flow], (flow, out)


def traces_to(url: str, graph: str, dst: str, n: int, timeout: float = 30) -> list[list[Any]]:
    """The runs to ``dst`` in start order, once there are ``n``: id, hops, saved, sent."""
    cypher = (
        "MATCH (t:Trace) WHERE t.dst = $dst RETURN t.id, t.hops, t.probes_saved, t.probes_sent, "
        "t.reached ORDER BY t.started"
    )
    deadline = time.monotonic() + timeout
    while True:
        rows = graph_query(url, graph, cypher, {"dst": dst})
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


@pytest.mark.root
def test_stop_set_saves_probes_and_keeps_paths_complete(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    cfg = config(tmp_path, method="tcp", dedup_window=0, stop_set_min_traces=3, full_every=100,
                 router_rate=0, timeout=0.5)  # fmt: skip
    path = ["198.51.100.2", "198.51.100.50", "192.0.2.138"]  # r1, r5, srv2: the topology
    with (
        lab_net.icmp_ratelimit(on=False),
        lab_sensor(lab_net, sock, tmp_path / "s.log", "-c", str(cfg)),
    ):
        for i in range(5):
            lab_net.python("client", CONNECT, "192.0.2.138,80")
            rows = traces_to(falkordb_url, graph_name, "192.0.2.138", i + 1)
    assert len(rows) == 5 and all(r[4] and r[1] == path for r in rows), rows
    full, later = rows[:3], rows[3:]
    assert all(r[2] == 0 for r in full)
    assert all(r[2] == 1 for r in later)  # r1 is known: the trace starts at r5 (the overlap)
    assert all(r[3] < min(f[3] for f in full) for r in later)
    inferred = graph_query(
        falkordb_url, graph_name,
        "MATCH (t:Trace {id: $id})-[a:AT]->(h:Host) RETURN a.ttl, h.ip, a.inferred ORDER BY a.ttl",
        {"id": later[-1][0]},
    )  # fmt: skip
    assert inferred == [[1, path[0], True], [2, path[1], False], [3, path[2], False]]


@pytest.mark.root
def test_a_moved_route_is_seen_after_the_dedup_window(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    cfg = config(tmp_path, method="tcp", dedup_window=3, router_rate=0, timeout=0.5)

    def pin(via: str) -> None:
        lab_net.run("r2", "ip", "route", "replace", "192.0.2.0/26", "via", via)

    try:
        pin("198.51.100.18")  # r3a only
        with (
            lab_net.icmp_ratelimit(on=False),
            lab_sensor(lab_net, sock, tmp_path / "s.log", "-c", str(cfg)),
        ):
            lab_net.python("client", CONNECT, "192.0.2.10,80")
            first = traces_to(falkordb_url, graph_name, "192.0.2.10", 1)
            pin("198.51.100.26")  # the route moves to r3b
            lab_net.python("client", CONNECT, "192.0.2.10,80")  # within the window: no trace
            time.sleep(3.5)
            lab_net.python("client", CONNECT, "192.0.2.10,80")  # after it: traced again
            rows = traces_to(falkordb_url, graph_name, "192.0.2.10", 2)
    finally:
        lab_net.run("r2", "ip", "route", "replace", "192.0.2.0/26",
                    "nexthop", "via", "198.51.100.18", "nexthop", "via", "198.51.100.26")  # fmt: skip
    assert len(first) == 1 and first[0][1][2] == "198.51.100.18"
    assert len(rows) == 2 and rows[1][1][2] == "198.51.100.26", rows


def sensor_counters(url: str, graph: str, sid: str) -> dict[str, int]:
    rows = graph_query(url, graph, "MATCH (s:Sensor {id: $sid}) RETURN s.counters", {"sid": sid})
    if not rows or not rows[0][0]:
        return {}
    return {k: int(v) for k, v in (item.split("=", 1) for item in rows[0][0])}


#: Connects to N addresses of a range, as fast as the handshakes go (ten at a time).
CONNECT_MANY = """
import ipaddress, socket, sys
from concurrent.futures import ThreadPoolExecutor
net, n, port = ipaddress.ip_network(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def one(i):
    a = str(net[i + 1])
    with socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET) as s:
        s.settimeout(5)
        s.connect((a, port))
        return 1
with ThreadPoolExecutor(10) as pool:
    print(sum(pool.map(one, range(n))))
"""


@pytest.mark.root
def test_a_thousand_destination_burst_keeps_the_budget_and_the_queue_cap(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    pps, cap = 100, 150
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    cfg = config(tmp_path, method="tcp", pps=pps, max_queue=cap, max_traces=32, router_rate=0,
                 timeout=0.5, retries=1, stop_set=False)  # fmt: skip
    wan = tmp_path / "wan.pcap"
    with (
        lab_net.icmp_ratelimit(on=False),
        lab_net.tcpdump(
            "gw", "wan0", wan, "ip6 and src host 2001:db8:100::1 and tcp src portrange 61000-61999"
        ),
        lab_sensor(lab_net, sock, tmp_path / "s.log", "-c", str(cfg), "--sensor-id", "burst"),
    ):
        made = lab_net.python("client", CONNECT_MANY, "2001:db8:203::/64", 1000, 80, timeout=300)
        assert int(made) == 1000
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            c = sensor_counters(falkordb_url, graph_name, "burst")
            traced = graph_query(falkordb_url, graph_name, "MATCH (t:Trace) RETURN count(t)")[0][0]
            if c.get("plugin_traceroute_requested") and traced >= c["plugin_traceroute_requested"]:
                break
            time.sleep(0.5)
    c = sensor_counters(falkordb_url, graph_name, "burst")
    requested = c["plugin_traceroute_requested"]
    dropped = c.get("plugin_traceroute_queue_dropped", 0)
    # Every completed handshake was queued or dropped (counted), none lost silently.
    assert requested + dropped + c.get("plugin_traceroute_deduplicated", 0) == 1000, c
    assert dropped > 0 and c["plugin_traceroute_queue_peak"] <= cap
    assert requested <= cap + 32 + 32  # what the queue and the traces in flight can hold, roughly
    # The budget on the wire: within any second, at most the burst (one second's worth) plus one
    # second's rate, give or take one probe for the capture's own timestamps.
    times = sorted(float(t) for (t,) in tshark(wan, "frame.time_epoch", display=(
        "not icmpv6 and ipv6.src == 2001:db8:100::1 and tcp.flags.syn == 1 and tcp.flags.ack == 0 "
        "and tcp.srcport >= 61000 and tcp.srcport <= 61999")))  # fmt: skip
    assert len(times) == c["plugin_traceroute_probes_sent"]
    j = 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        assert i - j + 1 <= 2 * pps + 1, f"{i - j + 1} probes within one second"
    # Over the whole burst: the bucket's burst plus its rate over the time the capture saw, with
    # 50 ms for the capture's timestamps (taken at the wire, after the scheduler; on a loaded
    # 2-CPU machine the first probes' stamps lag their sends by tens of ms).
    assert len(times) <= pps + pps * (times[-1] - times[0] + 0.05) + 1
