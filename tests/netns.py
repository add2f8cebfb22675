"""Network namespaces for tests: unique names, private/documentation addresses, no route out, and
everything deleted in ``close()`` (processes first, by PID), even when the test fails.

Used as a context manager::

    with Lab() as lab:
        client = lab.ns("client")
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A TCP server for lab namespaces: accepts, reads a little, closes. Prints "ready" once listening.
ACCEPT_LOOP = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1024)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        c.recv(100)
    except OSError:
        pass
    c.close()
"""

#: N sequential TCP connections (a refused one is fine: that is a RST to count).
CONNECT = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    try:
        c = socket.create_connection((host, port), timeout=5)
        c.sendall(b'hello')
        c.close()
    except ConnectionRefusedError:
        pass
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        name = f"ng{self.tag}{role}"[:15]
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.run(name, "ip", "link", "set", "lo", "up")
        return name

    def run(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *args, check=check)

    def popen(
        self, ns: str, *args: str, log: Path | None = None, **kw: Any
    ) -> subprocess.Popen[Any]:
        """Start a process in ``ns``; with ``log``, its stdout and stderr go to that file."""
        if log is not None:
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", ns, *args], stdout=out, stderr=subprocess.STDOUT, **kw
                )
        else:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *args], **kw)
        self.procs.append(proc)
        return proc

    def tcp_server(self, ns: str, host: str, port: int) -> subprocess.Popen[Any]:
        """Start ACCEPT_LOOP in ``ns`` and wait until it listens."""
        proc = self.popen(
            ns,
            sys.executable,
            "-c",
            ACCEPT_LOOP,
            host,
            str(port),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
            "TCP server did not start"
        )
        return proc

    def connect(self, ns: str, host: str, port: int, n: int) -> None:
        """Make ``n`` real TCP connections from ``ns``."""
        self.run(ns, sys.executable, "-c", CONNECT, host, str(port), str(n))

    def link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        """A veth pair between namespaces a and b, with addresses (CIDR), offloads off so that
        segments are MTU-sized like on a real wire."""
        tmp_a, tmp_b = f"v{uuid.uuid4().hex[:8]}", f"v{uuid.uuid4().hex[:8]}"
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        sh("ip", "link", "set", tmp_a, "netns", a, "name", a_if)
        sh("ip", "link", "set", tmp_b, "netns", b, "name", b_if)
        for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            self.run(ns, "ip", "addr", "add", addr, "dev", ifname)
            self.run(ns, "ip", "link", "set", ifname, "up")
            self.run(
                ns, "ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off", check=False
            )

    def stop(
        self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 30
    ) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return int(proc.returncode)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for ns in reversed(self.namespaces):
            # Any process still inside (started by something else in the test) goes first.
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
