#!/usr/bin/env python3
"""Record the TCP path-quality captures in tests/pcaps/lab/ from real Linux TCP stacks (root).

    sudo .venv/bin/python tests/pcaps/lab/record.py [--out DIR] [--only NAME ...]

Each capture is one scenario in network namespaces that this script builds and deletes (the
``Lab`` helper of tests/netns.py: documentation addresses, no route out, processes killed by PID)::

    client 192.0.2.2      router (forwards; tcpdump on wan)     server 198.51.100.2
    2001:db8:1::2  ─ lan0 ─ lan │ delay line │ wan ─ wan0 ─  2001:db8:2::2

There is no netem in this kernel, so the router delays packets itself: its routes send both
directions through a TUN device read by a small Python delay line, which writes every packet back
after ``DELAY_MS`` (policy routing on the TUN's input then forwards it on). The capture point is
the router's server-side interface, like a sensor in front of servers: the server's half of the
path is short, the client's half carries the delay (twice ``DELAY_MS``). Offloads are off on the
veths, so segments are MTU-sized as on a wire. What each scenario does to the packets:

- ``loss.pcap``: downloads and uploads, IPv4 and IPv6, with every Nth segment dropped by
  ``iptables -m statistic`` after the capture point (retransmissions, fast retransmissions, SACK);
- ``dsack.pcap``: downloads whose ACKs are dropped for a while after the capture point, so the
  server times out and retransmits what the client had (spurious retransmissions, D-SACK);
- ``reorder.pcap``: the server's egress through two ``htb`` classes, every Nth segment put in the
  slow one by ``iptables -j CLASSIFY`` (this kernel has no ``fw`` classifier): out-of-order
  segments;
- ``zerowin.pcap``: a slow reader with a small receive buffer (zero windows, window probes);
- ``names.pcap`` (whole packets): TLS ClientHellos in one segment and split over two or three
  (OpenSSL's own bytes, written in pieces), HTTP requests, DNS answers over UDP and TCP, hostile
  names among them.

The quality captures keep 128 bytes of each frame (all headers and options); tshark and the
sensor take segment lengths from the IP header. The tests compare the sensor with tshark on these
files, so a recording needs no exact outcome, only non-zero counts of what it provokes: the script
prints tshark's counts for each file.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/: netns.py

from netns import Lab  # noqa: E402

CLIENT4, ROUTER_LAN4, ROUTER_WAN4, SERVER4 = (
    "192.0.2.2",
    "192.0.2.1",
    "198.51.100.1",
    "198.51.100.2",
)
CLIENT6, ROUTER_LAN6, ROUTER_WAN6, SERVER6 = (
    "2001:db8:1::2",
    "2001:db8:1::1",
    "2001:db8:2::1",
    "2001:db8:2::2",
)
DELAY_MS = 10
SNAPLEN = 128
DOWNLOAD, UPLOAD = 5001, 5002

#: A delay line on a TUN device: every packet read is written back DELAY ms later, in order.
DELAY_LINE = r"""
import collections, fcntl, os, select, struct, sys, time
name, delay = sys.argv[1], float(sys.argv[2]) / 1000
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
os.set_blocking(fd, False)
print("ready", flush=True)
queue = collections.deque()
while True:
    timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
    readable, _, _ = select.select([fd], [], [], timeout)
    if readable:
        now = time.monotonic()
        for _ in range(256):
            try:
                queue.append((now + delay, os.read(fd, 65535)))
            except BlockingIOError:
                break
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        os.write(fd, queue.popleft()[1])
"""

#: TCP servers: on DOWNLOAD each connection gets SIZE bytes then a FIN; on UPLOAD everything is
#: read until the client's FIN.
SERVE = r"""
import socket, sys, threading
host, size = sys.argv[1], int(sys.argv[2])
def serve(port, handle):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(64)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
def send(c):
    try:
        c.sendall(b"x" * size); c.shutdown(socket.SHUT_WR)
        while c.recv(65536): pass
    except OSError: pass
    c.close()
def sink(c):
    try:
        while c.recv(65536): pass
    except OSError: pass
    c.close()
serve(int(sys.argv[3]), send); serve(int(sys.argv[4]), sink)
print("ready", flush=True)
threading.Event().wait()
"""

#: N parallel clients: "get" reads until EOF (optionally with a small receive buffer, reading
#: CHUNK bytes every PACE seconds), "put" sends SIZE bytes and closes.
CLIENTS = r"""
import socket, sys, threading, time
host, port, mode, n, size, rcvbuf, chunk, pace = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
def one():
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    if rcvbuf: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(60); s.connect((host, port))
    if mode == "put":
        s.sendall(b"y" * size); s.shutdown(socket.SHUT_WR)
    while True:
        data = s.recv(chunk)
        if not data: break
        if pace: time.sleep(pace)
    s.close()
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads: t.start(); time.sleep(0.01)
for t in threads: t.join()
"""


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=30)


class Topology:
    def __init__(self, lab: Lab, delay_ms: int = DELAY_MS) -> None:
        self.lab = lab
        self.c, self.r, self.s = lab.ns("c"), lab.ns("r"), lab.ns("s")
        lab.link(self.c, "lan0", f"{CLIENT4}/24", self.r, "lan", f"{ROUTER_LAN4}/24")
        lab.link(self.r, "wan", f"{ROUTER_WAN4}/24", self.s, "wan0", f"{SERVER4}/24")
        for ns, dev, addr in (
            (self.c, "lan0", CLIENT6), (self.r, "lan", ROUTER_LAN6),
            (self.r, "wan", ROUTER_WAN6), (self.s, "wan0", SERVER6),
        ):  # fmt: skip
            lab.run(ns, "ip", "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        lab.run(self.c, "ip", "route", "add", "198.51.100.0/24", "via", ROUTER_LAN4)
        lab.run(self.c, "ip", "-6", "route", "add", "2001:db8:2::/64", "via", ROUTER_LAN6)
        lab.run(self.s, "ip", "route", "add", "192.0.2.0/24", "via", ROUTER_WAN4)
        lab.run(self.s, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", ROUTER_WAN6)
        r = self.r
        for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                    "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):  # fmt: skip
            lab.run(r, "sysctl", "-qw", key)
        line = lab.popen(
            r, sys.executable, "-c", DELAY_LINE, "dly0", str(delay_ms),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert line.stdout is not None and line.stdout.readline().strip() == "ready"
        lab.run(r, "ip", "link", "set", "dly0", "up", "txqueuelen", "10000")
        for dev in ("lan", "wan", "dly0"):
            lab.run(r, "sysctl", "-qw", f"net.ipv4.conf.{dev}.rp_filter=0")
        for fam, client, server in (("-4", CLIENT4, SERVER4), ("-6", CLIENT6, SERVER6)):
            plen = "32" if fam == "-4" else "128"
            for addr in (client, server):  # both directions into the delay line ...
                lab.run(r, "ip", fam, "route", "add", f"{addr}/{plen}", "dev", "dly0")
            # ... and out of it, by the routes of table 100
            lab.run(r, "ip", fam, "route", "add", f"{client}/{plen}", "dev", "lan", "table", "100")
            lab.run(r, "ip", fam, "route", "add", f"{server}/{plen}", "dev", "wan", "table", "100")
            lab.run(r, "ip", fam, "rule", "add", "iif", "dly0", "table", "100")

    def serve(self, size: int) -> None:
        """The bulk servers, on both families (an IPv6 wildcard socket takes IPv4 too)."""
        proc = self.lab.popen(
            self.s, sys.executable, "-c", SERVE, "::", str(size), str(DOWNLOAD), str(UPLOAD),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def clients(
        self, host: str, port: int, mode: str, n: int, size: int = 0,
        rcvbuf: int = 0, chunk: int = 65536, pace: float = 0.0, wait: bool = True,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        proc = self.lab.popen(
            self.c, sys.executable, "-c", CLIENTS, host, str(port), mode, str(n), str(size),
            str(rcvbuf), str(chunk), str(pace),
        )  # fmt: skip
        if wait:
            assert proc.wait(120) == 0, f"clients {mode} to {host}:{port} failed"
        return proc

    def capture(self, path: Path, snaplen: int, expression: str) -> subprocess.Popen[bytes]:
        proc = self.lab.popen(
            self.r, "tcpdump", "-i", "wan", "-nn", "-U", "-Z", "root", "-s", str(snaplen),
            "-w", str(path), expression, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert "listening on" in line, line
        return proc

    def stop_capture(self, proc: subprocess.Popen[bytes]) -> None:
        time.sleep(0.5)  # the last ACKs and FINs, through the delay line
        self.lab.stop(proc, signal.SIGINT)


def record_loss(topo: Topology, path: Path) -> None:
    lab = topo.lab
    for tool in ("iptables", "ip6tables"):
        # Downloads: every 23rd segment from the server is lost on the client's side.
        lab.run(topo.c, tool, "-A", "INPUT", "-p", "tcp", "--sport", str(DOWNLOAD), "-m",
                "statistic", "--mode", "nth", "--every", "23", "--packet", "0", "-j", "DROP")  # fmt: skip
        # Uploads: every 19th segment from the client is lost on the server's side.
        lab.run(topo.s, tool, "-A", "INPUT", "-p", "tcp", "--dport", str(UPLOAD), "-m",
                "statistic", "--mode", "nth", "--every", "19", "--packet", "0", "-j", "DROP")  # fmt: skip
    topo.serve(60_000)
    cap = topo.capture(path, SNAPLEN, "tcp")
    waves = [
        topo.clients(SERVER4, DOWNLOAD, "get", 8, wait=False),
        topo.clients(SERVER6, DOWNLOAD, "get", 2, wait=False),
        topo.clients(SERVER4, UPLOAD, "put", 3, size=60_000, wait=False),
    ]
    for proc in waves:
        assert proc.wait(120) == 0
    topo.clients(SERVER4, DOWNLOAD, "get", 6)
    topo.stop_capture(cap)


def record_dsack(topo: Topology, path: Path) -> None:
    lab = topo.lab
    # A slower server, so that the transfer is still running when its ACKs stop arriving.
    lab.run(topo.s, "tc", "qdisc", "add", "dev", "wan0", "root", "tbf", "rate", "8mbit",
            "burst", "16kb", "latency", "50ms")  # fmt: skip
    topo.serve(400_000)
    cap = topo.capture(path, SNAPLEN, "tcp")
    procs = [topo.clients(SERVER4, DOWNLOAD, "get", 2, wait=False)]
    time.sleep(0.25)
    for _ in range(2):  # ACKs from the client are dropped at the server, twice for a while
        lab.run(
            topo.s, "iptables", "-I", "INPUT", "-p", "tcp", "--dport", str(DOWNLOAD), "-j", "DROP"
        )
        time.sleep(0.3)
        lab.run(
            topo.s, "iptables", "-D", "INPUT", "-p", "tcp", "--dport", str(DOWNLOAD), "-j", "DROP"
        )
        time.sleep(0.25)
    procs.append(topo.clients(SERVER6, DOWNLOAD, "get", 1, wait=False))
    time.sleep(0.3)
    lab.run(topo.s, "ip6tables", "-I", "INPUT", "-p", "tcp", "--dport", str(DOWNLOAD), "-j", "DROP")
    time.sleep(0.3)
    lab.run(topo.s, "ip6tables", "-D", "INPUT", "-p", "tcp", "--dport", str(DOWNLOAD), "-j", "DROP")
    for proc in procs:
        assert proc.wait(120) == 0
    topo.stop_capture(cap)


def record_reorder(topo: Topology, path: Path) -> None:
    lab, s = topo.lab, topo.s
    # Two htb classes on the server's egress; every 5th data segment waits in the slow one.
    for args in (
        ("qdisc", "add", "dev", "wan0", "root", "handle", "1:", "htb", "default", "10"),
        ("class", "add", "dev", "wan0", "parent", "1:", "classid", "1:1", "htb", "rate", "40mbit"),
        ("class", "add", "dev", "wan0", "parent", "1:1", "classid", "1:10", "htb", "rate",
         "30mbit", "ceil", "40mbit", "prio", "0"),
        ("class", "add", "dev", "wan0", "parent", "1:1", "classid", "1:20", "htb", "rate",
         "3mbit", "ceil", "3mbit", "prio", "7"),
    ):  # fmt: skip
        lab.run(s, "tc", *args)
    # This kernel has no fw classifier: CLASSIFY sets skb->priority, which htb reads as a class.
    for tool in ("iptables", "ip6tables"):
        lab.run(s, tool, "-t", "mangle", "-A", "POSTROUTING", "-p", "tcp", "--sport",
                str(DOWNLOAD), "-m", "length", "--length", "1000:65535", "-m", "statistic",
                "--mode", "nth", "--every", "5", "--packet", "2", "-j", "CLASSIFY",
                "--set-class", "1:20")  # fmt: skip
    topo.serve(150_000)
    cap = topo.capture(path, SNAPLEN, "tcp")
    procs = [
        topo.clients(SERVER4, DOWNLOAD, "get", 2, wait=False),
        topo.clients(SERVER6, DOWNLOAD, "get", 1, wait=False),
    ]
    for proc in procs:
        assert proc.wait(120) == 0
    topo.stop_capture(cap)


def record_zerowin(topo: Topology, path: Path) -> None:
    topo.serve(64_000)
    cap = topo.capture(path, SNAPLEN, "tcp")
    # A slow reader: an 8 KB receive buffer (the kernel doubles it), 4 KB every 150 ms.
    topo.clients(SERVER4, DOWNLOAD, "get", 1, rcvbuf=8192, chunk=4096, pace=0.15)
    topo.clients(SERVER6, DOWNLOAD, "get", 1, rcvbuf=8192, chunk=4096, pace=0.15)
    topo.stop_capture(cap)


def record_names(topo: Topology, path: Path) -> None:
    names = HERE / "names.py"
    lab = topo.lab
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=www.example.test", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        server = lab.popen(
            topo.s, sys.executable, str(names), "serve", str(cert), str(key),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        cap = topo.capture(path, 0, "tcp or udp")
        for server_addr in (SERVER4, SERVER6):
            lab.run(topo.c, sys.executable, str(names), "client", server_addr)
        topo.stop_capture(cap)


SCENARIOS: dict[str, Callable[[Topology, Path], None]] = {
    "loss.pcap": record_loss,
    "dsack.pcap": record_dsack,
    "reorder.pcap": record_reorder,
    "zerowin.pcap": record_zerowin,
    "names.pcap": record_names,
}

TSHARK_COUNTS = (
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "tcp.analysis.out_of_order",
    "tcp.options.sack_le",
    "tcp.options.sack.dsack",
    "tcp.analysis.zero_window",
)


def tshark_counts(path: Path) -> dict[str, int]:
    out = {}
    for field in TSHARK_COUNTS:
        res = subprocess.run(
            ["tshark", "-n", "-r", str(path), "-Y", field, "-T", "fields", "-e", "frame.number"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        out[field.rsplit(".", 1)[1]] = len(res.stdout.split())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    for name in args.only:
        with tempfile.TemporaryDirectory() as tmp, Lab() as lab:
            capture = Path(tmp) / name
            SCENARIOS[name](Topology(lab), capture)
            shutil.copyfile(capture, args.out / name)
        print(name, (args.out / name).stat().st_size, "bytes", tshark_counts(args.out / name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
