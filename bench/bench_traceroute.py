"""Trace K destinations of the lab with net-gazer, scamper and sequential Linux traceroute.

    sudo .venv/bin/python bench/bench_traceroute.py [--k 20] [--keep]

Builds a lab (``net-gazer-lab up``, Linux's default ICMP rate limits in every router), then, in
turn and with the routers' buckets refilled in between, traces the same K addresses of the lab's
AnyIP range from the gateway:

- net-gazer: a collector (embedded FalkorDB) on a Unix socket and a live sensor on the gateway;
  the lab's client opens one TCP connection to each address, and the time runs from the first
  connection until the graph holds all K traces (handshake, flush and write included). Once with
  ICMP probes (to compare with scamper's icmp-paris), once with the default TCP probes;
- scamper: ``scamper -p 100 -c "trace -P icmp-paris" -i ADDR...`` (its default attempts, wait
  and gap limit; 100 probes per second, net-gazer's default budget);
- traceroute: ``traceroute -I -n -q1 ADDR`` for one address after the other.

For each it prints the wall time, how many traces were complete (every TTL but the lab's silent
router answered, and the destination), and the probes counted on the gateway's WAN side by tcpdump
per discovered hop. No assertions: tests/test_traceroute_lab.py checks behaviour; this measures.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from falkordb import FalkorDB

BIN = Path(sys.executable).parent
R1, R3, R4 = "198.51.100.2", {"198.51.100.18", "198.51.100.26"}, {"198.51.100.34", "198.51.100.42"}
GW = "198.51.100.1"
PROBES = (
    f"src host {GW} and (icmp[icmptype] = icmp-echo or udp or "
    "(tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn))"
)
CONNECT = """
import socket, sys
for host in sys.argv[1:]:
    with socket.socket() as s:
        s.settimeout(3)
        s.connect((host, 80))
"""
HOP = re.compile(r"^\s*(\d+)\s+(\S+)")


def sh(*cmd: str, timeout: float = 600) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout


def complete(hops: list[str], dst: str) -> bool:
    return (
        len(hops) == 5
        and hops[0] == R1
        and hops[1] == ""
        and hops[2] in R3
        and hops[3] in R4
        and hops[4] == dst
    )


class Capture:
    """tcpdump on the gateway's WAN side, counting our probes."""

    def __init__(self, ns: str, path: Path) -> None:
        self.path = path
        self.log = path.with_suffix(".log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, "tcpdump", "--immediate-mode", "-U", "-n", "-i", "wan0",
                 "-w", str(path), PROBES],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while "listening" not in self.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> int:
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        out = subprocess.run(
            ["tcpdump", "-n", "-r", str(self.path)], capture_output=True, text=True, check=False
        )
        return len(out.stdout.splitlines())


def parse_text(out: str) -> dict[str, list[str]]:
    """traceroute/scamper text output: destination -> hop list ("" for *)."""
    traces: dict[str, list[str]] = {}
    hops: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("traceroute"):
            dst = line.split(" to ")[1].split()[0]
            hops = traces.setdefault(dst, [])
            continue
        m = HOP.match(line)
        if m and hops is not None:
            hops.append("" if m[2] == "*" else m[2])
    return traces


def run_net_gazer(
    lab: str, ns: str, tmp: Path, dsts: list[str], method: str
) -> tuple[float, dict[str, list[str]], int]:
    ready = tmp / f"ready-{method}.json"
    sock = tmp / f"c-{method}.sock"
    with (tmp / f"collector-{method}.log").open("wb") as out:
        collector = subprocess.Popen(
            [str(BIN / "net-gazer-collector"), "--data-dir", str(tmp / f"data-{method}"),
             "--listen", f"unix:{sock}", "--http", "127.0.0.1:0", "--ready-file", str(ready)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        while not (ready.exists() and ready.read_text()):
            time.sleep(0.05)
        url = json.loads(ready.read_text())["graph_url"]
        cfg = tmp / f"sensor-{method}.toml"
        cfg.write_text(f'[plugins.traceroute]\nmethod = "{method}"\n')
        log = tmp / f"sensor-{method}.log"
        with log.open("wb") as out:
            sensor = subprocess.Popen(
                [str(BIN / "net-gazer-lab"), "sensor", "--lab", lab, "--", "--collector", f"unix:{sock}",
                 "--flush-interval", "0.2", "--no-spool", "-c", str(cfg)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        while "connected to collector" not in log.read_text():
            time.sleep(0.05)
        graph = FalkorDB.from_url(url).select_graph("net_gazer")
        cap = Capture(ns, tmp / f"ng-{method}.pcap")
        start = time.monotonic()
        subprocess.run(
            ["ip", "netns", "exec", f"ng-{lab}-client", sys.executable, "-c", CONNECT, *dsts],
            check=True,
        )
        rows: list[Any] = []
        while time.monotonic() - start < 600:
            try:
                rows = graph.ro_query("MATCH (t:Trace) RETURN t.dst, t.hops").result_set
            except Exception:  # the graph does not exist before the first write
                rows = []
            if len(rows) >= len(dsts):
                break
            time.sleep(0.05)
        wall = time.monotonic() - start
        probes = cap.stop()
        sensor.send_signal(signal.SIGTERM)
        sensor.wait(30)
        return wall, {d: list(h) for d, h in rows}, probes
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=20, help="destinations (default 20)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--methods", default="icmp,tcp", help="net-gazer's methods to run (icmp,tcp)")
    p.add_argument("--only-net-gazer", action="store_true", help="skip scamper and traceroute")
    args = p.parse_args()
    if not shutil.which("scamper") or not shutil.which("traceroute"):
        sys.exit("this benchmark needs scamper and traceroute (apt-get install scamper traceroute)")
    lab = "b" + uuid.uuid4().hex[:5]
    ns = f"ng-{lab}-gw"
    tmp = Path(tempfile.mkdtemp(prefix="bench-traceroute-"))
    dsts = [f"203.0.113.{i}" for i in range(10, 10 + args.k)]
    sh(str(BIN / "net-gazer-lab"), "up", "--name", lab)
    results = []
    try:
        for method in args.methods.split(","):
            wall, traces, probes = run_net_gazer(lab, ns, tmp, dsts, method)
            results.append((f"net-gazer ({method})", wall, traces, probes))
            time.sleep(8)  # the routers' ICMP buckets refill
        if args.only_net_gazer:
            return _report(args.k, dsts, results, args.keep, tmp)
        cap = Capture(ns, tmp / "scamper.pcap")
        start = time.monotonic()
        out = sh(
            "ip",
            "netns",
            "exec",
            ns,
            "scamper",
            "-p",
            "100",
            "-c",
            "trace -P icmp-paris",
            "-O",
            "text",
            "-i",
            *dsts,
        )
        results.append(
            ("scamper icmp-paris", time.monotonic() - start, parse_text(out), cap.stop())
        )
        time.sleep(8)
        cap = Capture(ns, tmp / "traceroute.pcap")
        start = time.monotonic()
        text = "".join(
            sh("ip", "netns", "exec", ns, "traceroute", "-I", "-n", "-q1", d) for d in dsts
        )
        results.append(
            ("traceroute -I, sequential", time.monotonic() - start, parse_text(text), cap.stop())
        )
    finally:
        subprocess.run([str(BIN / "net-gazer-lab"), "down", lab], capture_output=True, check=False)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return _report(args.k, dsts, results, args.keep, tmp)


def _report(k: int, dsts: list[str], results: list[Any], keep: bool, tmp: Path) -> int:
    scamper_wall = next((w for n, w, _, _ in results if n.startswith("scamper")), float("nan"))
    print(f"{k} destinations behind the lab's routers, Linux's default ICMP rate limits")
    print(
        f"{'tool':28} {'wall s':>8} {'x scamper':>9} {'complete':>9} {'probes':>7} {'hops':>5} {'probes/hop':>10}"
    )
    for name, wall, traces, probes in results:
        done = sum(complete(traces.get(d, []), d) for d in dsts)
        hops = sum(sum(1 for h in traces.get(d, []) if h) for d in dsts)
        print(f"{name:28} {wall:8.2f} {wall / scamper_wall:9.2f} {done:>5}/{k:<3} {probes:7d} {hops:5d} "
              f"{probes / max(hops, 1):10.2f}")  # fmt: skip
    for name, _, traces, _ in results:
        for d in [d for d in dsts if not complete(traces.get(d, []), d)][:3]:
            print(f"  incomplete, {name}: {d} {traces.get(d)}")
    if keep:
        print(f"work directory: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
