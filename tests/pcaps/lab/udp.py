#!/usr/bin/env python3
"""Record tests/pcaps/lab/udp.pcap: real UDP exchanges between Linux sockets (root).

    sudo .venv/bin/python tests/pcaps/lab/udp.py [--out FILE]

Three namespaces (the ``Lab`` helper of tests/netns.py: documentation addresses, no route out,
processes killed by PID)::

    client 192.0.2.2 / 2001:db8:1::2 ─ lan ─ router ─ wan ─ server 198.51.100.2 / 2001:db8:2::2

The router masquerades IPv4 on its wan side (source NAT: new address, often a new port), and
tcpdump captures ``-i any`` on the router, so every datagram is in the file twice: on the lan as
the client sent it and on the wan as NAT made it (IPv6 unchanged). A sensor must count each once.

What the client does (``FLOWS``; the tests take the expected rows from these definitions and the
counts and bytes from tshark):

- ``dns``: DNS-like, ``DNS_QUERIES`` queries to port 53, each from a fresh ephemeral port, each
  answered once, over IPv4 and IPv6;
- ``quic``: QUIC-like, one socket to port 443 exchanging ``QUIC_ROUNDS`` rounds of a 1200-byte
  datagram and a 1200-byte answer, then a few short ones each way;
- ``oneway``: ``ONEWAY`` datagrams to port 5140, where a socket reads and never answers;
- ``closed``: one datagram to port 9 where nothing listens (the server's ICMP port unreachable
  is not UDP: unanswered);
- ``ntp``: from port 123 to port 123, answered: left out by ``min_client_port`` (2048);
- ``ephemeral``: from an ephemeral port to port 55000, answered: left out by ``max_server_port``
  (49151);
- ``server_first``: the server sends from port 1900 (SSDP-like) to the client's port 40001, which answers:
  the first datagram comes from the server, so its receiver is the client.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
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
    "2001:db8:1::2", "2001:db8:1::1", "2001:db8:2::1", "2001:db8:2::2",
)  # fmt: skip
DNS_QUERIES = 5
QUIC_ROUNDS = 4
ONEWAY = 3
DNS, QUIC, ONEWAY_PORT, CLOSED, NTP, EPHEMERAL, ANNOUNCE = 53, 443, 5140, 9, 123, 55000, 1900
CLIENT_FIXED = 40001

#: Expected rows (client, server, port) by flow name, and the flows left out by the port rules.
FLOWS = {
    "dns4": (CLIENT4, SERVER4, DNS),
    "dns6": (CLIENT6, SERVER6, DNS),
    "quic": (CLIENT4, SERVER4, QUIC),
    "oneway": (CLIENT4, SERVER4, ONEWAY_PORT),
    "closed": (CLIENT6, SERVER6, CLOSED),
    "server_first": (CLIENT4, SERVER4, ANNOUNCE),
}
LEFT_OUT = {"ntp": (CLIENT4, SERVER4, NTP), "ephemeral": (CLIENT4, SERVER4, EPHEMERAL)}
ANSWERED = {"dns4", "dns6", "quic", "server_first"}

SERVER = r"""
import select, socket, sys
socks = {}
for fam, host in ((socket.AF_INET, sys.argv[1]), (socket.AF_INET6, sys.argv[2])):
    for port in (53, 443, 5140, 123, 55000):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind((host, port))
        socks[s] = port
print("ready", flush=True)
while True:
    for s in select.select(list(socks), [], [])[0]:
        data, addr = s.recvfrom(2048)
        port = socks[s]
        if port == 5140:
            continue  # one way: read, never answer
        if port == 53:
            data = data + b"\x00" * 16  # an answer is longer than its query
        s.sendto(data, addr)
"""

CLIENT = r"""
import socket, sys, time
c4, s4, c6, s6 = sys.argv[1:5]
dns, rounds, oneway, fixed = map(int, sys.argv[5:9])
def ask(fam, src, dst, port, payload, sport=0, wait=True):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((src, sport))
    s.settimeout(2)
    s.sendto(payload, (dst, port))
    if wait:
        s.recvfrom(4096)
    return s
for i in range(dns):
    ask(socket.AF_INET, c4, s4, 53, b"q%d" % i * 10).close()
    ask(socket.AF_INET6, c6, s6, 53, b"six%d" % i * 7).close()
q = ask(socket.AF_INET, c4, s4, 443, b"I" * 1200)
for i in range(rounds - 1):
    q.sendto(b"Q" * 1200, (s4, 443)); q.recvfrom(4096)
for n in (40, 33, 25):
    q.sendto(b"s" * n, (s4, 443)); q.recvfrom(4096)
q.close()
o = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(oneway):
    o.sendto(b"log line %d" % i, (s4, 5140))
    time.sleep(0.01)
o.close()
ask(socket.AF_INET6, c6, s6, 9, b"nobody home", wait=False).close()
ask(socket.AF_INET, c4, s4, 123, b"N" * 48, sport=123).close()
ask(socket.AF_INET, c4, s4, 55000, b"E" * 20, sport=50001).close()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((c4, fixed)); s.settimeout(3)
print("ready", flush=True)
data, addr = s.recvfrom(4096)
s.sendto(b"thanks" + data, addr)
s.close()
"""

SERVER_FIRST = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 1900)); s.settimeout(3)
s.sendto(b"announce", (sys.argv[2], int(sys.argv[3])))
s.recvfrom(4096)
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=HERE / "udp.pcap")
    args = ap.parse_args()
    with Lab() as lab:
        c, r, s = lab.ns("c"), lab.ns("r"), lab.ns("s")
        lab.link(c, "lan0", f"{CLIENT4}/24", r, "lan", f"{ROUTER_LAN4}/24")
        lab.link(r, "wan", f"{ROUTER_WAN4}/24", s, "wan0", f"{SERVER4}/24")
        for ns, dev, addr in (
            (c, "lan0", CLIENT6),
            (r, "lan", ROUTER_LAN6),
            (r, "wan", ROUTER_WAN6),
            (s, "wan0", SERVER6),
        ):
            lab.run(ns, "ip", "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        lab.run(c, "ip", "route", "add", "198.51.100.0/24", "via", ROUTER_LAN4)
        lab.run(c, "ip", "-6", "route", "add", "2001:db8:2::/64", "via", ROUTER_LAN6)
        lab.run(s, "ip", "route", "add", "192.0.2.0/24", "via", ROUTER_WAN4)
        lab.run(s, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", ROUTER_WAN6)
        lab.run(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        lab.run(r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        lab.run(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
        for dst in (SERVER4, SERVER6):  # neighbours resolved before the capture starts
            lab.run(c, "ping", "-c", "3", "-i", "0.3", "-W", "2", dst, check=False)
        tmp = args.out.with_suffix(".tmp")
        dump = lab.popen(
            r,
            "tcpdump",
            "-i",
            "any",
            "-U",
            "--immediate-mode",
            "-w",
            str(tmp),
            "udp",
            stderr=subprocess.PIPE,
        )
        time.sleep(1.5)
        server = lab.popen(
            s, sys.executable, "-c", SERVER, SERVER4, SERVER6, stdout=subprocess.PIPE, text=True
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        client = lab.popen(
            c,
            sys.executable,
            "-c",
            CLIENT,
            CLIENT4,
            SERVER4,
            CLIENT6,
            SERVER6,
            *map(str, (DNS_QUERIES, QUIC_ROUNDS, ONEWAY, CLIENT_FIXED)),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        lab.run(s, sys.executable, "-c", SERVER_FIRST, SERVER4, CLIENT4, str(CLIENT_FIXED))
        assert client.wait(10) == 0, "the client failed"
        time.sleep(0.5)
        lab.stop(dump, timeout=10)
        tmp.rename(args.out)
    out = subprocess.run(
        ["tshark", "-n", "-r", str(args.out), "-q", "-z", "conv,udp"],
        capture_output=True,
        text=True,
        check=True,
    )
    print(out.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
