"""UDP flows in the lab: a live sensor on the lab's gateway, real DNS-like UDP exchanges from the
lab's client (``net-gazer-lab traffic``: one datagram each way per exchange, each from a new
port, to port 53 of every server), and the UDP edges in the graph against tshark's reading of
a capture on the client's own interface."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import graph_query
from lab_fixture import LAB_BIN, LabNet, stop, wait_for_text


def client_udp(pcap: Path, client_addrs: set[str]) -> dict[tuple[str, str, int], dict[str, int]]:
    """Per (client, server, port): flows and datagrams and payload bytes each way, by tshark."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", "udp", "-T", "fields", "-E", "separator=\t",
         "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "ipv6.dst",
         "-e", "udp.dstport", "-e", "udp.length"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rows: dict[tuple[str, str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    ports: dict[tuple[str, str, int], set[int]] = defaultdict(set)
    for line in out.splitlines():
        s4, s6, sp, d4, d6, dp, length = line.split("\t")
        src, dst, payload = s4 or s6, d4 or d6, int(length) - 8
        if src in client_addrs:
            key, d = (src, dst, int(dp)), "c2s"
            ports[key].add(int(sp))
        else:
            key, d = (dst, src, int(sp)), "s2c"
        rows[key][f"packets_{d}"] += 1
        rows[key][f"bytes_{d}"] += payload
    for key, seen in ports.items():
        rows[key]["flows"] = len(seen)
    return {k: dict(v) for k, v in rows.items()}


@pytest.mark.root
def test_live_sensor_counts_the_lab_udp_exchanges(
    lab_net: LabNet, collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    sock = tmp_path / "c.sock"
    collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}"
    ).start()
    pcap, log = tmp_path / "client.pcap", tmp_path / "sensor.log"
    with lab_net.tcpdump("client", "eth0", pcap, "udp"):
        with log.open("wb") as out:
            sensor = subprocess.Popen(
                [LAB_BIN, "sensor", "--lab", lab_net.name, "--", "--collector", f"unix:{sock}",
                 "--flush-interval", "0.2", "--no-spool", "-v"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_text(log, "connected to collector", sensor)
            results = lab_net.traffic(rate=20, duration=2, seed=11)
        finally:
            rc = stop(sensor)
    assert rc == 0, log.read_text()
    udp = [r for r in results if r["proto"] == "udp"]
    assert len(udp) >= 5 and all(r["ok"] for r in udp), [r for r in udp if not r["ok"]]
    want = client_udp(pcap, _client_addrs(pcap))
    assert sum(w["flows"] for w in want.values()) == len(udp)  # the traffic's own count
    rows = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (c:Host)-[e:CONNECTS {proto: 'udp'}]->(s:Host) RETURN c.ip, s.ip, e.dport, "
        "e.flows, e.packets_c2s, e.packets_s2c, e.bytes_c2s, e.bytes_s2c, e.answered, e.direction",
    )
    got = {(c, s, p): {"flows": f, "packets_c2s": pc, "packets_s2c": ps, "bytes_c2s": bc,
                       "bytes_s2c": bs} for c, s, p, f, pc, ps, bc, bs, _, _ in rows}  # fmt: skip
    assert got == want
    assert all(ans is True and d == "outgoing" for *_, ans, d in rows)


def _client_addrs(pcap: Path) -> set[str]:
    """The client's addresses: the sources of datagrams to port 53."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", "udp.dstport == 53", "-T", "fields",
         "-e", "ip.src", "-e", "ipv6.src"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {a for line in out.splitlines() for a in line.split("\t") if a}
