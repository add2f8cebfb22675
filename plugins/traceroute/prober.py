"""The raw sockets: probes out, replies in. Only bytes move here; ``engine`` decides.

One raw socket per family and protocol. The kernel writes the IP header (TTL and hop limit are
set per probe); the transport header, with its checksum, is ours (``packets``). Replies are read
from the ICMP and TCP raw sockets, which receive what is addressed to this host only (never the
traffic it forwards); the UDP ones only send, and a filter that accepts nothing keeps their
receive queues empty. Receive times are the kernel's (``SO_TIMESTAMPNS``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from net_gazer.plugins.traceroute import packets
from net_gazer.plugins.traceroute.engine import Send

log = logging.getLogger(__name__)

SO_TIMESTAMPNS = 35  # linux/asm-generic/socket.h; SCM_TIMESTAMPNS is the same number
SO_ATTACH_FILTER = 26
BPF_RET_K = 0x06  # "ret #0": accept nothing
RECV_BATCH = 256
#: Source addresses remembered per destination (a route lookup is a syscall or two).
MAX_SOURCES = 10_000


@dataclass
class Received:
    buf: bytes
    src: str
    family: int
    proto: str  # "icmp" or "tcp": the socket it came from
    ts: float


def _drop_all(sock: socket.socket) -> None:
    prog = ctypes.create_string_buffer(struct.pack("HBBI", BPF_RET_K, 0, 0, 0))
    fprog = struct.pack("HL", 1, ctypes.addressof(prog))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class Prober:
    """Raw sockets for the families this host has; open them while still privileged."""

    def __init__(self) -> None:
        self.send_socks: dict[tuple[int, str], socket.socket] = {}
        self.recv_socks: list[tuple[socket.socket, int, str]] = []
        self.sources: OrderedDict[str, str | None] = OrderedDict()
        self.errors = 0

    def open(self) -> list[int]:
        """Open the sockets; return the families that work. PermissionError without
        CAP_NET_RAW."""
        families = []
        for family, af in ((4, socket.AF_INET), (6, socket.AF_INET6)):
            icmp = packets.IPPROTO_ICMP if family == 4 else packets.IPPROTO_ICMPV6
            try:
                socks = {
                    "icmp": socket.socket(af, socket.SOCK_RAW, icmp),
                    "tcp": socket.socket(af, socket.SOCK_RAW, packets.IPPROTO_TCP),
                    "udp": socket.socket(af, socket.SOCK_RAW, packets.IPPROTO_UDP),
                }
            except PermissionError:
                self.close()
                raise
            except OSError as exc:  # this family is not available (IPv6 disabled)
                log.info("traceroute: no IPv%d raw sockets (%s)", family, exc)
                continue
            for name, sock in socks.items():
                sock.setblocking(False)
                if name == "udp":
                    _drop_all(sock)
                else:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                    self.recv_socks.append((sock, family, name))
                self.send_socks[(family, name)] = sock
            families.append(family)
        return families

    def close(self) -> None:
        for sock in self.send_socks.values():
            sock.close()
        self.send_socks.clear()
        self.recv_socks.clear()

    def fds(self) -> list[int]:
        return [s.fileno() for s, _, _ in self.recv_socks]

    def source(self, dst: str) -> str | None:
        """The source address the kernel would use towards ``dst``; None without a route."""
        if dst in self.sources:
            return self.sources[dst]
        af = socket.AF_INET6 if ":" in dst else socket.AF_INET
        src: str | None
        try:
            with socket.socket(af, socket.SOCK_DGRAM) as s:
                s.connect((dst, 9))  # no packet: a route lookup
                src = str(s.getsockname()[0])
        except OSError:
            src = None
        self.sources[dst] = src
        while len(self.sources) > MAX_SOURCES:
            self.sources.popitem(last=False)
        return src

    def send(self, probe: Send, payload: bytes) -> float:
        """Put one probe on the wire; return the time just before it left."""
        family = 6 if ":" in probe.dst else 4
        if probe.method == "tcp":
            data = packets.tcp_syn(probe.src, probe.dst, probe.flow, probe.dport, probe.ident)
        elif probe.method == "udp":
            data = packets.udp_probe(
                probe.src, probe.dst, probe.flow, probe.dport, probe.ident, payload
            )
        else:
            data = packets.icmp_echo(
                probe.src, probe.dst, probe.flow, probe.ident, probe.checksum, payload
            )
        sock = self.send_socks[(family, probe.method)]
        if family == 4:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, probe.ttl)
            addr: tuple[str, int] | tuple[str, int, int, int] = (probe.dst, 0)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, probe.ttl)
            addr = (probe.dst, 0, 0, 0)
        ts = time.time()
        try:
            sock.sendto(data, addr)
        except OSError as exc:
            self.errors += 1
            if exc.errno not in (
                errno.EAGAIN,
                errno.ENOBUFS,
                errno.EHOSTUNREACH,
                errno.ENETUNREACH,
            ):
                log.warning("traceroute: a probe to %s could not be sent: %s", probe.dst, exc)
        return ts

    def receive(self, fd: int | None = None) -> Iterator[Received]:
        """Everything waiting on the receive sockets (or the one with ``fd``)."""
        space = socket.CMSG_SPACE(16)
        for sock, family, proto in self.recv_socks:
            if fd is not None and sock.fileno() != fd:
                continue
            for _ in range(RECV_BATCH):
                try:
                    buf, anc, _flags, addr = sock.recvmsg(65535, space)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.errors += 1
                    break
                ts = 0.0
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                        sec, nsec = struct.unpack("qq", data[:16])
                        ts = sec + nsec / 1e9
                with contextlib.suppress(IndexError):
                    yield Received(buf, str(addr[0]), family, proto, ts or time.time())
