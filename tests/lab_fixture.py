"""The shared lab: one ``net-gazer-lab`` network for the whole test session.

Any test that takes the ``lab_net`` fixture gets the same lab, built once (through the real
command) on first use and always removed at the end of the session, even when tests fail.
Tests that change it (ICMP rate limits, firewall counters) put it back before they return.

``tests/netns.py`` stays the small helper for tests that build their own two or three
namespaces; this one is the project's own lab, the one users run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from net_gazer.lab import builder, state, topology

LAB_BIN = str(Path(sys.executable).parent / "net-gazer-lab")

#: Sends N UDP datagrams with one TTL (hop limit), each from its own source port, and counts the
#: ICMP time-exceeded replies per source address, read on a raw socket for WAIT seconds.
TTL_BURST = """
import json, select, socket, sys, time
dst, ttl, n, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
v6 = ':' in dst
fam = socket.AF_INET6 if v6 else socket.AF_INET
raw = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
udp = socket.socket(fam, socket.SOCK_DGRAM)
udp.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP,
               socket.IPV6_UNICAST_HOPS if v6 else socket.IP_TTL, ttl)
for i in range(n):
    udp.sendto(b'net-gazer-test', (dst, 33434 + i))
got = {}
end = time.monotonic() + wait
while (left := end - time.monotonic()) > 0:
    if not select.select([raw], [], [], left)[0]:
        break
    data, addr = raw.recvfrom(2048)
    kind = data[0] if v6 else data[(data[0] & 15) * 4]  # the v6 raw socket strips the header
    if kind == (3 if v6 else 11):  # time exceeded
        got[addr[0]] = got.get(addr[0], 0) + 1
print(json.dumps(got))
"""

#: UDP datagrams to DST:PORT from N source ports (or one fixed port with --fixed), each waiting
#: for its echo; prints how many were answered.
UDP_SPREAD = """
import socket, sys
dst, port, n, fixed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == 'fixed'
fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
answered = 0
for i in range(n):
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('', 40999 if fixed else 0))
        s.settimeout(2)
        s.sendto(b'spread %d' % i, (dst, port))
        try:
            answered += s.recvfrom(2048)[0] == b'spread %d' % i
        except OSError:
            pass
print(answered)
"""


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class LabNet:
    """A running lab, with what tests need to work inside it."""

    name: str
    topo: topology.Topology = field(default_factory=topology.default)

    def ns(self, node: str) -> str:
        return state.netns_name(self.name, node)

    @property
    def namespaces(self) -> list[str]:
        return [self.ns(n.name) for n in self.topo.nodes]

    def run(self, node: str, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        return sh("ip", "netns", "exec", self.ns(node), *cmd, check=check, timeout=timeout).stdout

    def python(self, node: str, script: str, *args: object, timeout: float = 60) -> str:
        return self.run(node, sys.executable, "-c", script, *map(str, args), timeout=timeout)

    @contextlib.contextmanager
    def process(self, node: str, *cmd: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
        """A process inside ``node``'s namespace for the duration of the block; stopped (SIGTERM,
        then SIGKILL) by its PID when the block ends, however it ends."""
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(node), *cmd], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            yield proc
        finally:
            stop(proc)

    @contextlib.contextmanager
    def tcpdump(self, node: str, ifname: str, pcap: Path, expression: str) -> Iterator[None]:
        """An independent capture: tcpdump writing ``pcap`` while the block runs, and a moment
        after, so that the last segments are in. Immediate mode: without it libpcap hands over
        packets in blocks, and the last block is lost when tcpdump stops. Fails unless tcpdump
        wrote every packet its filter took."""
        log = pcap.with_suffix(".log")
        cmd = ["tcpdump", "--immediate-mode", "-U", "-n", "-i", ifname, "-w", str(pcap), expression]
        with self.process(node, *cmd, log=log) as proc:
            wait_for_text(log, "listening on", proc)
            yield
            time.sleep(0.3)
        text = log.read_text()
        counts = {
            m[1]: int(m[0])
            for m in re.findall(
                r"(\d+) packets? (captured|received by filter|dropped by kernel)", text
            )
        }
        assert counts.get("captured") == counts.get("received by filter") and not counts.get(
            "dropped by kernel"
        ), text

    @contextlib.contextmanager
    def shaped(self, node: str, ifname: str, rate: str) -> Iterator[None]:
        """Everything ``node`` sends on ``ifname`` through an htb class of ``rate`` with a 1-byte
        burst: after each packet the next one waits for its predecessor's bytes at that rate (the
        lab has no netem). Removed when the block ends."""
        self.run(
            node,
            "tc",
            "qdisc",
            "add",
            "dev",
            ifname,
            "root",
            "handle",
            "1:",
            "htb",
            "default",
            "10",
        )
        try:
            self.run(node, "tc", "class", "add", "dev", ifname, "parent", "1:", "classid", "1:10",
                     "htb", "rate", rate, "burst", "1", "cburst", "1")  # fmt: skip
            yield
        finally:
            self.run(node, "tc", "qdisc", "del", "dev", ifname, "root", check=False)

    @contextlib.contextmanager
    def icmp_ratelimit(self, *, on: bool) -> Iterator[None]:
        """ICMP rate limits on (Linux defaults) or off for the block; put back afterwards."""
        lab = state.LabState.load(self.name)
        assert lab is not None
        before = bool(lab.options.get("icmp_ratelimit", True))
        builder.set_icmp_ratelimit(lab, on=on)
        try:
            yield
        finally:
            builder.set_icmp_ratelimit(lab, on=before)

    def traffic(self, rate: float, duration: float, seed: int = 0) -> list[dict[str, Any]]:
        """``net-gazer-lab traffic --json``: what it did, connection by connection."""
        out = sh(LAB_BIN, "traffic", "--lab", self.name, "--rate", str(rate), "--duration",
                 str(duration), "--seed", str(seed), "--json", check=False)  # fmt: skip
        assert out.returncode in (0, 1), out.stderr
        result: list[dict[str, Any]] = json.loads(out.stdout)
        return result


def stop(proc: subprocess.Popen[Any], timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


def wait_for_text(path: Path, text: str, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in {path} after {timeout} s")
        time.sleep(0.05)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def lab_net() -> Iterator[LabNet]:
    """The session's lab, built by ``net-gazer-lab up`` and removed by ``down`` at the end."""
    assert os.geteuid() == 0, "the lab needs root (namespaces); CI runs as root"
    name = unique_name()
    try:
        up = sh(LAB_BIN, "up", "--name", name, check=False)
        assert up.returncode == 0, up.stderr
        yield LabNet(name)
    finally:
        down = sh(LAB_BIN, "down", name, check=False)
        assert down.returncode == 0, down.stderr
