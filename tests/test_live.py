"""Live capture on real interfaces inside network namespaces the test builds itself.

client (192.168.77.2) ── lan0 [gateway] wan0 ── server (198.51.100.2)

The sensor runs in the gateway namespace on both interfaces; real TCP connections cross it. The
collector runs in the same namespace (on its loopback). Addresses are private and documentation
ranges; the namespaces have no route out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import connects, graph_query, tool
from netns import Lab

pytestmark = pytest.mark.root

SERVER = "198.51.100.2"
CLIENT = "192.168.77.2"
N = 12


@pytest.fixture
def lab() -> Iterator[Lab]:
    assert os.geteuid() == 0, "live capture tests need root; CI runs as root"
    with Lab() as lab:
        yield lab


def wait_for(path: Path, text: str, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if proc.poll() is not None:
            raise AssertionError(
                f"process exited {proc.returncode}: {path.read_text(errors='replace')}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{text!r} not seen in {timeout} s: {path.read_text(errors='replace')}"
            )
        time.sleep(0.05)


def start_collector(lab: Lab, ns: str, tmp: Path) -> tuple[int, str]:
    ready = tmp / "ready.json"
    proc = lab.popen(
        ns, tool("net-gazer-collector"), "--data-dir", str(tmp / "data"), "--listen", "127.0.0.1:0",
        "--http", "127.0.0.1:0", "--ready-file", str(ready), log=tmp / "collector.log",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text()):
        assert proc.poll() is None, (tmp / "collector.log").read_text()
        assert time.monotonic() < deadline, "collector not ready"
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    return int(info["grpc_port"]), str(info["graph_url"])


def start_sensor(
    lab: Lab, ns: str, tmp: Path, port: int, *args: str
) -> tuple[subprocess.Popen[Any], Path]:
    log = tmp / "sensor.log"
    proc = lab.popen(
        ns, tool("net-gazer-sensor"), "--collector", f"127.0.0.1:{port}", "--flush-interval", "0.2", "-v", *args,
        log=log,
    )  # fmt: skip
    wait_for(log, "connected to collector", proc)
    return proc, log


def gateway(lab: Lab, *, nat: bool) -> tuple[str, str, str]:
    client, gw, server = lab.ns("cl"), lab.ns("gw"), lab.ns("sv")
    lab.link(client, "eth0", f"{CLIENT}/24", gw, "lan0", "192.168.77.1/24")
    lab.link(gw, "wan0", "198.51.100.1/24", server, "eth0", f"{SERVER}/24")
    lab.run(client, "ip", "route", "add", "default", "via", "192.168.77.1")
    lab.run(server, "ip", "route", "add", "default", "via", "198.51.100.1")
    lab.run(gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    if nat:
        lab.run(gw, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE")
    return client, gw, server


@pytest.mark.parametrize("nat", [False, True], ids=["routed", "nat"])
def test_live_gateway_counts_each_handshake_once(lab: Lab, tmp_path: Path, nat: bool) -> None:
    client, gw, server = gateway(lab, nat=nat)
    lab.tcp_server(server, SERVER, 8080)
    port, url = start_collector(lab, gw, tmp_path)
    sensor, log = start_sensor(
        lab,
        gw,
        tmp_path,
        port,
        "-i",
        "lan0:lan",
        "-i",
        "wan0:wan",
        "--sensor-id",
        "gw",
        "--local-networks",
        "192.168.77.0/24",
    )
    lab.connect(client, SERVER, 8080, N)
    lab.connect(client, SERVER, 9, 1)  # closed port: RST
    time.sleep(0.5)
    assert lab.stop(sensor) == 0, log.read_text()

    edges = connects(url, "net_gazer")
    assert set(edges) == {(CLIENT, SERVER, 8080), (CLIENT, SERVER, 9)}, edges  # no NAT'd duplicate
    ok = edges[(CLIENT, SERVER, 8080)]
    assert (ok["count"], ok["attempts"], ok["refused"]) == (N, N, 0)
    assert ok["rtt_samples"] == N and ok["client_rtt_samples"] == N
    assert 0 < ok["rtt_ms_min"] <= ok["rtt_ms_max"] < 1000
    refused = edges[(CLIENT, SERVER, 9)]
    assert (refused["count"], refused["attempts"], refused["refused"]) == (0, 1, 1)
    [[direction]] = graph_query(
        url, "net_gazer", "MATCH ()-[e:CONNECTS {dport: 8080}]->() RETURN e.direction"
    )
    assert direction == "outgoing"
    origins = graph_query(
        url, "net_gazer", "MATCH (:Sensor {id: 'gw'})-[:ORIGIN]->(h:Host) RETURN h.ip ORDER BY h.ip"
    )
    assert [o for [o] in origins] == ["192.168.77.1", "198.51.100.1"]
    [[counters]] = graph_query(url, "net_gazer", "MATCH (s:Sensor {id: 'gw'}) RETURN s.counters")
    counts = {k: int(v) for k, v in (c.split("=", 1) for c in counters)}
    assert counts["pcap_received"] >= counts["sensor_tcp"] > 0  # libpcap's counters are read
    assert counts["pcap_dropped"] == 0
    assert counts["tracker_copies_ignored"] > 0  # the wan copies were seen and set aside


def test_live_sensor_excludes_its_own_collector_connection(lab: Lab, tmp_path: Path) -> None:
    ns = lab.ns("lo")
    lab.tcp_server(ns, "127.0.0.1", 8081)
    port, url = start_collector(lab, ns, tmp_path)
    # The sensor opens its capture before it connects, so its own SYN would be seen on lo.
    sensor, log = start_sensor(lab, ns, tmp_path, port, "-i", "lo", "--sensor-id", "self")
    lab.connect(ns, "127.0.0.1", 8081, 3)
    time.sleep(0.5)
    assert lab.stop(sensor) == 0, log.read_text()
    edges = connects(url, "net_gazer")
    assert set(edges) == {("127.0.0.1", "127.0.0.1", 8081)}
    assert edges[("127.0.0.1", "127.0.0.1", 8081)]["count"] == 3
    assert f"not (tcp and host 127.0.0.1 and port {port})" in log.read_text()


def test_sighup_reloads_prefix_lists_and_survives_a_bad_file(lab: Lab, tmp_path: Path) -> None:
    ns = lab.ns("hup")
    lab.tcp_server(ns, "127.0.0.1", 8084)
    port, url = start_collector(lab, ns, tmp_path)
    config = tmp_path / "sensor.toml"
    config.write_text('local_networks = ["10.9.0.0/16"]\n')
    sensor, log = start_sensor(
        lab, ns, tmp_path, port, "-i", "lo", "--sensor-id", "hup", "-c", str(config)
    )
    lab.connect(ns, "127.0.0.1", 8084, 2)
    time.sleep(0.5)  # a flush: these rows go out with the old prefix list
    # A broken file is refused and changes nothing.
    config.write_text("local_networks = [\n")
    sensor.send_signal(signal.SIGHUP)
    wait_for(log, "reload failed, keeping the running configuration", sensor)
    config.write_text('local_networks = ["127.0.0.0/8"]\n')
    sensor.send_signal(signal.SIGHUP)
    wait_for(log, "reloaded plugin settings, budgets and prefix lists", sensor)
    lab.connect(ns, "127.0.0.1", 8084, 1)
    time.sleep(0.5)
    assert lab.stop(sensor) == 0, log.read_text()
    [[count, direction]] = graph_query(
        url, "net_gazer", "MATCH ()-[e:CONNECTS {dport: 8084}]->() RETURN e.count, e.direction"
    )
    # The edge keeps the latest direction: the reload took effect and the sensor kept running.
    assert (count, direction) == (3, "internal")
