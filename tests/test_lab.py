"""``net-gazer-lab``: the namespace network is what it claims, checked against references that do
not come from the lab's code: the kernel's own view (ip, ethtool, iptables counters), tcpdump read
by tshark, plain sockets and raw sockets. The tests share one lab (``lab_net``, lab_fixture.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, connects, graph_query
from lab_fixture import LAB_BIN, TTL_BURST, UDP_SPREAD, LabNet, sh, stop, unique_name, wait_for_text

from net_gazer.lab import locations, state, topology

#: Where lab addresses may come from: documentation and private ranges (and link-local).
ALLOWED = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32",
              "fd00::/8", "fe80::/10", "127.0.0.0/8", "::1/128")
]  # fmt: skip

#: Sensor and tshark differ by the client leg: the sensor's server half (SYN seen on lan0 to
#: SYN+ACK seen on wan0) is the client's SYN->SYN+ACK minus one round trip over the client's veth
#: and through the gateway's forwarding; its client half (SYN+ACK on wan0 to ACK on lan0) is the
#: client's SYN+ACK->ACK plus that round trip. Measured here: 20-250 µs per edge (means of 1-3
#: handshakes), from scheduling on two shared cores. 1 ms leaves room for a loaded machine and
#: stays well below the 2-3 ms by which the shaped client delays its ACKs, so that swapped or
#: mixed-up halves fail.
RTT_TOLERANCE_MS = 1.0


def allowed(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip in net for net in ALLOWED)


def jq(*cmd: str) -> Any:
    return json.loads(sh(*cmd).stdout or "[]")


# -- the topology as data (no root) --------------------------------------------------------


def test_topology_uses_documentation_and_private_ranges_only() -> None:
    topo = topology.default()
    for link in topo.links:
        v4, v6 = link.networks()
        assert v4.version == 4 and v6.version == 6, link  # both families on every link
        assert all(allowed(str(n.network_address)) for n in (v4, v6)), link
    for node in topo.nodes:
        assert all(allowed(str(ipaddress.ip_network(p).network_address)) for p in node.anyip)
        assert all(r.dst != ipaddress.ip_network("0.0.0.0/0") for r in topo.routes(node.name))
    # The ECMP pair: r2 reaches the servers behind r4 through both of them, and r4 answers back
    # the same way.
    [to_srv1] = [r for r in topo.routes("r2") if r.dst == ipaddress.ip_network("192.0.2.0/26")]
    assert set(to_srv1.via) == {topo.address("r3a", 4), topo.address("r3b", 4)}
    [back] = [r for r in topo.routes("r4") if r.dst == ipaddress.ip_network("fd00:77:1::/64")]
    assert len(back.via) == 2


def test_locations_file_places_every_router_address() -> None:
    topo = topology.default()
    data = tomllib.loads(locations.render(topo, "x"))
    entries = data["location"]
    prefixes = [ipaddress.ip_network(e["prefix"]) for e in entries]
    assert len(set(prefixes)) == len(prefixes)
    for e in entries:
        assert len(e["country_code"]) == 2 and -90 <= e["lat"] <= 90 and -180 <= e["lon"] <= 180
    for router in (*topo.routers, topology.GATEWAY):
        city = topo.node(router).city.name
        for _, iface in topo.addresses(router):
            [match] = [
                e
                for e in entries
                if ipaddress.ip_network(e["prefix"]) == ipaddress.ip_network(iface.ip)
            ]
            assert match["city"] == city
    assert len({e["city"] for e in entries}) >= 5


# -- the running lab -------------------------------------------------------------------------

#: Connects to each (proto, address, port, kind) from argv[1] (JSON) like an ordinary client and
#: prints which answered: an HTTP reply, an SSH banner, a UDP echo.
REACH = """
import json, socket, sys
out = []
for proto, dst, port, kind in json.loads(sys.argv[1]):
    fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
    try:
        if proto == 'udp':
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.settimeout(3)
                s.sendto(b'ping', (dst, port))
                ok = s.recvfrom(100)[0] == b'ping'
        else:
            with socket.create_connection((dst, port), timeout=3) as s:
                if kind == 'ssh':
                    ok = s.recv(100).startswith(b'SSH-2.0-')
                else:
                    s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
                    ok = s.recv(100).startswith(b'HTTP/1.1 200')
    except OSError:
        ok = False
    out.append(ok)
print(json.dumps(out))
"""


@pytest.mark.root
def test_every_server_answers_from_the_client(lab_net: LabNet) -> None:
    topo = lab_net.topo
    checks = []
    for name in topo.servers:
        node = topo.node(name)
        if node.anyip:  # the first, the last and a middle address of each range
            dsts = [str(net[i]) for p in node.anyip for net in [ipaddress.ip_network(p)]
                    for i in (1, 77, min(net.num_addresses - 2, 65_534))]  # fmt: skip
        else:
            dsts = [str(topo.address(name, 4)), str(topo.address(name, 6))]
        checks += [(s.proto, d, s.port, s.kind) for s in node.services for d in dsts]
    assert len(checks) == 26  # srv1 4 services, srv2 3, on 2 addresses; any 2 on 6
    answered = json.loads(lab_net.python("client", REACH, json.dumps(checks)))
    assert [c for c, ok in zip(checks, answered, strict=True) if not ok] == []


def tshark(pcap: Path, *fields: str, display: str = "") -> list[list[str]]:
    cmd = ["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=\t"]
    cmd += [a for f in fields for a in ("-e", f)] + (["-Y", display] if display else [])
    return [line.split("\t") for line in sh(*cmd).stdout.splitlines()]


def burst(lab_net: LabNet, dst: str, ttl: int, n: int, wait: float = 0.5) -> dict[str, int]:
    result: dict[str, int] = json.loads(lab_net.python("client", TTL_BURST, dst, ttl, n, wait))
    return result


@pytest.mark.root
def test_silent_router_sends_no_time_exceeded(lab_net: LabNet, tmp_path: Path) -> None:
    """From the client, TTL 2 expires at r1, 3 at r2 (the silent one), 4 at r3a or r3b. On the
    wire between r1 and r2, the probes reach r2 with one hop left, and nothing comes back."""
    topo, n = lab_net.topo, 8
    assert topo.silent == "r2"
    own = {(r, f): {str(i.ip) for _, i in topo.addresses(r) if i.version == f}
           for r in topo.routers for f in (4, 6)}  # fmt: skip
    pcap = tmp_path / "r1-r2.pcap"
    replies = {}
    with (
        lab_net.icmp_ratelimit(on=False),
        lab_net.tcpdump("r2", "to-r1", pcap, "udp or icmp or icmp6"),
    ):
        for family in (4, 6):
            dst = str(topo.address("srv1", family))
            for ttl in (2, 3, 4):
                replies[family, ttl] = burst(lab_net, dst, ttl, n)
    for f in (4, 6):
        assert sum(replies[f, 2].values()) == n and set(replies[f, 2]) <= own["r1", f]
        assert replies[f, 3] == {}
        assert sum(replies[f, 4].values()) == n
        assert set(replies[f, 4]) <= own["r3a", f] | own["r3b", f]
    rows = tshark(pcap, "ip.src", "ipv6.src", "ip.ttl", "ipv6.hlim", "udp.dstport", "icmp.type",
                  "icmpv6.type")  # fmt: skip
    arrived = Counter(
        4 if v4 else 6 for v4, v6, ttl, hlim, dport, *_ in rows if dport and (ttl or hlim) == "1"
    )
    assert arrived == {4: n, 6: n}  # the TTL-3 probes reach r2, one hop left
    r2 = own["r2", 4] | own["r2", 6]
    sent = [r for r in rows if (r[0] or r[1]) in r2 and (r[5] == "11" or r[6] == "3")]
    assert sent == []


@pytest.mark.root
def test_icmp_rate_limits_are_a_switch(lab_net: LabNet) -> None:
    """A burst of TTL-limited packets to one router: Linux's per-destination limit (a burst of 6)
    loses replies; with the limits off every one is answered."""
    n = 20
    for on in (True, False):
        with lab_net.icmp_ratelimit(on=on):
            for family in (4, 6):
                got = sum(burst(lab_net, str(lab_net.topo.address("srv2", family)), 2, n).values())
                if on:
                    assert got < n, (family, got)
                else:
                    assert got == n, (family, got)


def _counter_rules(lab_net: LabNet, action: str) -> None:
    for router in lab_net.topo.ecmp:
        for tool_, dst in (("iptables", "192.0.2.10"), ("ip6tables", "2001:db8:2:1::a")):
            lab_net.run(router, tool_, "-w", action, "FORWARD", "-p", "udp", "-d", dst,
                        "--dport", "53", "-m", "comment", "--comment", "ng-ecmp-test",
                        check=action == "-A")  # fmt: skip


def _forwarded(lab_net: LabNet) -> dict[tuple[str, int], int]:
    """Packets the counter rules saw, per (router, family): the kernel's own count."""
    out = {}
    for router in lab_net.topo.ecmp:
        for family, tool_ in ((4, "iptables"), (6, "ip6tables")):
            listing = lab_net.run(router, tool_, "-w", "-nvxL", "FORWARD")
            [line] = [x for x in listing.splitlines() if "ng-ecmp-test" in x]
            out[router, family] = int(line.split()[0])
    return out


@pytest.mark.root
def test_both_ecmp_branches_carry_traffic_when_ports_vary(lab_net: LabNet) -> None:
    a, b = lab_net.topo.ecmp
    n = 32
    _counter_rules(lab_net, "-A")
    try:
        for family in (4, 6):
            dst = str(lab_net.topo.address("srv1", family))
            assert lab_net.python("client", UDP_SPREAD, dst, 53, n, "varying").strip() == str(n)
        spread = _forwarded(lab_net)
        for family in (4, 6):
            assert spread[a, family] + spread[b, family] == n
            assert spread[a, family] > 0 and spread[b, family] > 0, spread
        # One 5-tuple stays on one branch.
        for family in (4, 6):
            dst = str(lab_net.topo.address("srv1", family))
            assert lab_net.python("client", UDP_SPREAD, dst, 53, n, "fixed").strip() == str(n)
        fixed = _forwarded(lab_net)
        for family in (4, 6):
            moved = sorted(fixed[r, family] - spread[r, family] for r in (a, b))
            assert moved == [0, n], fixed
    finally:
        _counter_rules(lab_net, "-D")


@pytest.mark.root
def test_no_lab_interface_peers_the_host_and_no_route_leads_out(lab_net: LabNet) -> None:
    lab_ns = set(lab_net.namespaces)
    assert lab_ns <= {e["name"] for e in jq("ip", "-j", "netns", "list")}
    # From the host: none of its interfaces has its peer inside the lab.
    host_ids = {e["nsid"]: e.get("name") for e in jq("ip", "-j", "netns", "list-id")}
    for link in jq("ip", "-j", "-d", "link", "show"):
        if "link_netnsid" in link:
            assert host_ids.get(link["link_netnsid"]) not in lab_ns, link["ifname"]
    lab_ifnames = {link.ifname(n) for link in lab_net.topo.links for n in (link.a, link.b)}
    assert lab_ifnames.isdisjoint(
        {link["ifname"] for link in jq("ip", "-j", "link", "show")} - {"eth0"}
    )
    for ns in lab_net.namespaces:
        # Seen from inside, each veth's peer is in a namespace that has a lab name; the host's
        # namespace has no name there.
        ids = {e["nsid"]: e.get("name") for e in jq("ip", "-n", ns, "-j", "netns", "list-id")}
        links = [x for x in jq("ip", "-n", ns, "-j", "-d", "link", "show") if x["ifname"] != "lo"]
        assert links
        for link in links:
            assert link["linkinfo"]["info_kind"] == "veth"
            assert ids.get(link["link_netnsid"]) in lab_ns, (ns, link["ifname"])
            features = sh("ip", "netns", "exec", ns, "ethtool", "-k", link["ifname"]).stdout
            for feature in ("tcp-segmentation-offload", "generic-segmentation-offload",
                            "generic-receive-offload"):  # fmt: skip
                assert f"{feature}: off" in features, (ns, link["ifname"], feature)
        addrs = [
            a["local"] for x in jq("ip", "-n", ns, "-j", "addr", "show") for a in x["addr_info"]
        ]
        assert {a for a in addrs if not allowed(a)} == set(), ns
        for family in ("-4", "-6"):
            for r in jq("ip", "-n", ns, family, "-j", "route", "show", "table", "all"):
                assert r["dst"] != "default", (ns, r)
                dst = r["dst"].split("/")[0]
                assert allowed(dst) or ipaddress.ip_address(dst).is_multicast, (ns, r)
        for outside in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"):
            got = sh("ip", "-n", ns, "route", "get", outside, check=False)
            assert got.returncode != 0 and "unreachable" in got.stderr, (ns, outside, got.stdout)


# -- a live sensor on the lab's gateway ------------------------------------------------------


def client_handshakes(pcap: Path) -> dict[tuple[str, str, int], list[tuple[float, float]]]:
    """tshark's reading of the client-side capture: for each (client, server, port), one
    (SYN->SYN+ACK, SYN->ACK) pair in ms per completed handshake; attempts under key[:2] + (-port)."""
    rows = tshark(pcap, "tcp.stream", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.dstport",
                  "tcp.flags.syn", "tcp.flags.ack", "tcp.analysis.ack_rtt",
                  "tcp.analysis.initial_rtt", display="tcp")  # fmt: skip
    streams: dict[str, dict[str, Any]] = defaultdict(dict)
    for stream, s4, s6, d4, d6, dport, syn, ack, ack_rtt, irtt in rows:
        s = streams[stream]
        if syn == "1" and ack == "0":
            s.setdefault("key", (s4 or s6, d4 or d6, int(dport)))
        elif syn == "1" and ack == "1" and ack_rtt:
            s.setdefault("synack", float(ack_rtt) * 1000)
        if irtt and "irtt" not in s:
            s["irtt"] = float(irtt) * 1000
    out: dict[tuple[str, str, int], list[tuple[float, float]]] = defaultdict(list)
    for s in streams.values():
        if "key" in s and "synack" in s and "irtt" in s:
            out[s["key"]].append((s["synack"], s["irtt"]))
    return out


@pytest.mark.root
def test_live_sensor_records_each_lab_connection_once(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    pcap = tmp_path / "client.pcap"
    log = tmp_path / "sensor.log"
    # The client's ACKs wait a few ms in a shaper, so that the client half is much longer than
    # the server half (about 0.1 ms through five routers): swapped halves would show.
    with (
        lab_net.shaped("client", "eth0", "200kbit"),
        lab_net.tcpdump("client", "eth0", pcap, "tcp"),
    ):
        with log.open("wb") as out:
            sensor = subprocess.Popen(
                [LAB_BIN, "sensor", "--lab", lab_net.name, "--", "--collector", f"unix:{sock}",
                 "--flush-interval", "0.2", "--no-spool", "-v"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_text(log, "connected to collector", sensor)
            results = lab_net.traffic(rate=20, duration=2, seed=7)
        finally:
            rc = stop(sensor)
    assert rc == 0, log.read_text()
    assert "without TLS" not in log.read_text()
    tcp = [r for r in results if r["proto"] == "tcp"]
    assert len(tcp) >= 30 and all(r["ok"] for r in tcp), [r for r in tcp if not r["ok"]]

    want = client_handshakes(pcap)
    got = connects(falkordb_url, graph_name)
    assert {k: v["count"] for k, v in got.items()} == {k: len(v) for k, v in want.items()}
    assert {k: v["attempts"] for k, v in got.items()} == {k: len(v) for k, v in want.items()}
    assert sum(len(v) for v in want.values()) == len(tcp)
    sums = {
        (c, s, p): (rtt, crtt)
        for c, s, p, rtt, crtt in graph_query(
            falkordb_url, graph_name,
            "MATCH (c:Host)-[e:CONNECTS]->(s:Host) RETURN c.ip, s.ip, e.dport, e.rtt_ms_sum, e.client_rtt_ms_sum",
        )
    }  # fmt: skip
    worst = slowest_client = 0.0
    for key, pairs in want.items():
        edge = got[key]
        assert edge["rtt_samples"] == edge["client_rtt_samples"] == len(pairs)
        server_half = sum(sa for sa, _ in pairs) / len(pairs)  # client: SYN -> SYN+ACK
        client_half = sum(ir - sa for sa, ir in pairs) / len(pairs)  # client: SYN+ACK -> ACK
        rtt, crtt = (x / len(pairs) for x in sums[key])
        assert rtt <= server_half + 0.05  # the sensor sits one veth closer to the server
        worst = max(worst, abs(rtt - server_half), abs(crtt - client_half))
        slowest_client = max(slowest_client, client_half)
    assert worst <= RTT_TOLERANCE_MS, f"a half differs by {worst:.3f} ms"
    assert slowest_client > 2 * RTT_TOLERANCE_MS  # the shaper did its part


# -- make run ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(sid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every process in session ``sid`` and of their descendants in other
    sessions (the embedded FalkorDB has one of its own)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), int(fields[3]), int(fields[19]))
    tree = {pid for pid, (_, session, _) in table.items() if session == sid}
    grown = True
    while grown:
        more = {pid for pid, (ppid, _, _) in table.items() if ppid in tree} - tree
        tree |= more
        grown = bool(more)
    return [(pid, table[pid][2]) for pid in sorted(tree)]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def lab_namespaces(name: str) -> list[str]:
    prefix = state.netns_name(name, "")
    return [e["name"] for e in jq("ip", "-j", "netns", "list") if e["name"].startswith(prefix)]


@pytest.mark.root
def test_make_run_demo(tmp_path: Path) -> None:
    """``make run`` on free ports: the lab's connections reach the graph, and one Ctrl-C (SIGINT
    to the whole process group, as a terminal sends it) removes everything within 5 s."""
    http = f"127.0.0.1:{free_port()}"
    lab = unique_name("demo")
    env = {**os.environ, "RUN_HTTP": http, "RUN_DIR": str(tmp_path / "run"), "LAB_NAME": lab,
           "RUN_TRAFFIC_RATE": "10", "RUN_TRAFFIC_SECONDS": "2", "RUN_TRAFFIC_PAUSE": "1"}  # fmt: skip
    out = tmp_path / "make.out"
    venv = Path(sys.executable).parent.parent
    with out.open("wb") as f:
        proc = subprocess.Popen(
            ["make", "run", f"VENV={venv}"], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_text(out, "net-gazer is up", proc, timeout=120)
        assert f"open http://{http} in a browser" in out.read_text()
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(
                f"http://{http}/api/connections?limit=1000", timeout=5
            ) as r:
                edges = json.load(r)["connections"]
            lab_edges = {(e["client"], e["server"], e["dport"]) for e in edges if e["client"] in
                         ("10.77.1.10", "fd00:77:1::a") and allowed(e["server"])}  # fmt: skip
            families = {":" in c for c, _, _ in lab_edges}
            if len(lab_edges) >= 10 and families == {False, True}:
                break
            assert time.monotonic() < deadline, edges
            time.sleep(0.5)
        lab_state = json.loads((state.STATE_ROOT / lab / "state.json").read_text())
        procs = process_tree(proc.pid) + [(p["pid"], p["start"]) for p in lab_state["processes"]]
        assert len(procs) >= 8  # make, bash, collector, FalkorDB, sensor, 3 servers, ...
        assert any(b"redis-server" in cmdline(pid) for pid, _ in procs)  # in a session of its own
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(10)
        while any(state.alive(*p) for p in procs) and time.monotonic() < started + 5:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        assert [p for p in procs if state.alive(*p)] == []
        assert elapsed < 5, f"stopping took {elapsed:.1f} s"
        assert lab_namespaces(lab) == []
        assert not (state.STATE_ROOT / lab).exists()
        text = out.read_text(errors="replace")
        assert f"lab {lab} removed" in text
        for log in [out, *(tmp_path / "run").glob("*.log")]:
            assert "Traceback" not in log.read_text(errors="replace"), log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        sh(LAB_BIN, "down", lab, check=False)


# -- up and down ---------------------------------------------------------------------------


@pytest.mark.root
def test_down_after_a_failed_up_and_twice() -> None:
    name = unique_name()
    # Someone else's namespace where the lab's last one would go: up fails and removes its own.
    foreign = state.netns_name(name, topology.default().nodes[-1].name)
    sh("ip", "netns", "add", foreign)
    try:
        up = sh(LAB_BIN, "up", "--name", name, check=False)
        assert up.returncode != 0
        [line] = up.stderr.splitlines()
        assert line.startswith(
            "net-gazer-lab: building the lab failed while creating the namespaces"
        )
        assert lab_namespaces(name) == [foreign]
        for _ in range(2):
            down = sh(LAB_BIN, "down", name, check=False)
            assert down.returncode == 0, down.stderr
        assert lab_namespaces(name) == [foreign]  # not ours: left alone
    finally:
        sh("ip", "netns", "del", foreign, check=False)

    # Killed half way (SIGKILL: no clean-up of its own), then down, twice.
    name = unique_name()
    up_proc = subprocess.Popen([LAB_BIN, "up", "--name", name], stdout=subprocess.DEVNULL)
    path = state.STATE_ROOT / name / "state.json"
    recorded: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 30
        while len(recorded.get("namespaces", [])) < len(topology.default().nodes):
            assert time.monotonic() < deadline and up_proc.poll() is None
            with contextlib.suppress(OSError, ValueError):  # not yet written, or mid-rename
                recorded = json.loads(path.read_text())
            time.sleep(0.002)
        up_proc.kill()
    finally:
        up_proc.wait(10)
    killed = json.loads(path.read_text())
    assert killed["status"] == "building"
    assert lab_namespaces(name)
    first = sh(LAB_BIN, "down", name, check=False)
    assert (first.returncode, first.stdout.strip()) == (0, f"lab {name} removed")
    second = sh(LAB_BIN, "down", name, check=False)
    assert second.returncode == 0 and "does not exist" in second.stdout
    assert lab_namespaces(name) == []
    assert not (state.STATE_ROOT / name).exists()
    assert [p for p in killed["processes"] if state.alive(p["pid"], p["start"])] == []


@pytest.mark.root
def test_lab_and_make_run_need_root_and_say_so() -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
              "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search"]  # fmt: skip
    lab = subprocess.run(
        [*nobody, LAB_BIN, "status"], capture_output=True, text=True, cwd="/", check=False
    )
    assert lab.returncode != 0
    assert lab.stderr.splitlines() == [
        "net-gazer-lab: the lab builds network namespaces and needs root; run it with sudo"
    ]
    demo = subprocess.run(
        [*nobody, "bash", str(ROOT / "scripts" / "run-demo.sh")],
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )
    assert demo.returncode == 1
    assert demo.stderr.splitlines() == [
        "The demo builds a network of namespaces (net-gazer-lab) and needs root: run 'sudo make run'."
    ]
