"""Replies to probes, read from raw sockets: bytes in, :class:`Reply` out. No I/O here.

What identifies the probe a reply answers (see ``packets``):

- ICMP time exceeded and destination unreachable (RFC 792; ICMPv6: RFC 4443 sections 3.1 and
  3.3) quote the probe's IP header and at least 8 bytes of its transport header: the quoted
  destination, ports (TCP, UDP) or identifier (ICMP), and the TCP sequence number, UDP checksum
  or ICMP sequence number;
- an ICMP echo reply carries the request's identifier and sequence number;
- a TCP SYN+ACK or RST+ACK acknowledges the probe's sequence number plus one (RFC 9293
  section 3.5); its source is the destination.

The IPv4 raw sockets hand over the IP header, the IPv6 ones do not (the source address comes
from ``recvfrom``). Packets too short for what their headers claim raise :class:`Malformed`;
packets that are simply not replies to probes give None.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from net_gazer.plugins.traceroute.packets import (
    ICMP6_ECHO,
    ICMP6_ECHO_REPLY,
    ICMP6_TIME_EXCEEDED,
    ICMP6_UNREACH,
    ICMP6_UNREACH_PORT,
    ICMP_ECHO,
    ICMP_ECHO_REPLY,
    ICMP_TIME_EXCEEDED,
    ICMP_UNREACH,
    ICMP_UNREACH_PORT,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TH_ACK,
    TH_RST,
    TH_SYN,
)

IPV6_HEADER = 40
#: IPv6 extension headers a quoted probe may carry before its transport header (RFC 8200 4.1).
IPV6_EXTENSIONS = {0, 43, 60}


class Malformed(ValueError):
    """A packet shorter than its own headers say."""


class Kind(enum.Enum):
    TIME_EXCEEDED = "time-exceeded"
    UNREACHABLE = "unreachable"  # any destination unreachable; ``code`` says which
    ECHO_REPLY = "echo-reply"
    SYNACK = "syn-ack"
    RST = "rst"


PROTOS = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp", IPPROTO_ICMPV6: "icmp"}


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply, and the probe fields it names."""

    kind: Kind
    responder: str
    #: The probe's destination, method ("tcp", "udp", "icmp") and flow identity: the source port
    #: for TCP and UDP, the identifier for ICMP.
    dst: str
    method: str
    flow: int
    #: The probe's destination port (0 for ICMP) and its own identity: the TCP sequence number,
    #: the UDP checksum or the ICMP sequence number.
    dport: int
    ident: int
    code: int = 0
    ts: float = 0.0

    @property
    def port_unreachable(self) -> bool:
        v6 = ":" in self.responder
        return self.kind is Kind.UNREACHABLE and self.code == (
            ICMP6_UNREACH_PORT if v6 else ICMP_UNREACH_PORT
        )


def _need(buf: bytes, n: int, what: str) -> None:
    if len(buf) < n:
        raise Malformed(f"{what}: {len(buf)} bytes, {n} needed")


def _quoted_transport(proto: int, body: bytes) -> tuple[str, int, int, int] | None:
    """(method, flow, dport, ident) of a quoted probe's first transport bytes."""
    if proto == IPPROTO_TCP:
        _need(body, 8, "quoted TCP header")
        sport, dport, seq = struct.unpack_from("!HHI", body)
        return "tcp", sport, dport, seq
    if proto == IPPROTO_UDP:
        _need(body, 8, "quoted UDP header")
        sport, dport, _length, csum = struct.unpack_from("!HHHH", body)
        return "udp", sport, dport, csum
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        _need(body, 8, "quoted ICMP header")
        kind, _code, _csum, ident, seq = struct.unpack_from("!BBHHH", body)
        if kind not in (ICMP_ECHO, ICMP6_ECHO):
            return None
        return "icmp", ident, 0, seq
    return None


def _quoted_v4(inner: bytes) -> tuple[str, str, int, int, int] | None:
    _need(inner, 20, "quoted IPv4 header")
    if inner[0] >> 4 != 4:
        return None
    ihl = (inner[0] & 0x0F) * 4
    _need(inner, max(ihl, 20), "quoted IPv4 header")
    dst = str(ipaddress.IPv4Address(inner[16:20]))
    t = _quoted_transport(inner[9], inner[ihl:])
    return None if t is None else (dst, *t)


def _quoted_v6(inner: bytes) -> tuple[str, str, int, int, int] | None:
    _need(inner, IPV6_HEADER, "quoted IPv6 header")
    if inner[0] >> 4 != 6:
        return None
    dst = str(ipaddress.IPv6Address(inner[24:40]))
    nh, off = inner[6], IPV6_HEADER
    while nh in IPV6_EXTENSIONS:
        _need(inner, off + 2, "quoted IPv6 extension header")
        nh, off = inner[off], off + (inner[off + 1] + 1) * 8
    t = _quoted_transport(nh, inner[off:])
    return None if t is None else (dst, *t)


def _tcp_answer(src: str, seg: bytes, ts: float) -> Reply | None:
    _need(seg, 20, "TCP header")
    sport, dport, _seq, ack, _off, flags = struct.unpack_from("!HHIIBB", seg)
    if not flags & TH_ACK:
        return None  # only an acknowledgement names the probe
    if flags & TH_RST:
        kind = Kind.RST
    elif flags & TH_SYN:
        kind = Kind.SYNACK
    else:
        return None
    return Reply(kind, src, src, "tcp", dport, sport, (ack - 1) & 0xFFFFFFFF, 0, ts)


def parse_ipv4(buf: bytes, ts: float = 0.0) -> Reply | None:
    """A packet from an IPv4 raw socket (ICMP or TCP), IP header included."""
    _need(buf, 20, "IPv4 header")
    if buf[0] >> 4 != 4:
        return None
    ihl = (buf[0] & 0x0F) * 4
    _need(buf, max(ihl, 20), "IPv4 header")
    src = str(ipaddress.IPv4Address(buf[12:16]))
    proto, body = buf[9], buf[ihl:]
    if proto == IPPROTO_TCP:
        return _tcp_answer(src, body, ts)
    if proto != IPPROTO_ICMP:
        return None
    _need(body, 8, "ICMP header")
    kind, code = body[0], body[1]
    if kind == ICMP_ECHO_REPLY:
        ident, seq = struct.unpack_from("!HH", body, 4)
        return Reply(Kind.ECHO_REPLY, src, src, "icmp", ident, 0, seq, code, ts)
    if kind not in (ICMP_TIME_EXCEEDED, ICMP_UNREACH):
        return None
    quoted = _quoted_v4(body[8:])
    if quoted is None:
        return None
    rkind = Kind.TIME_EXCEEDED if kind == ICMP_TIME_EXCEEDED else Kind.UNREACHABLE
    return Reply(rkind, src, *quoted, code=code, ts=ts)


def parse_icmp6(buf: bytes, src: str, ts: float = 0.0) -> Reply | None:
    """A message from an ICMPv6 raw socket (no IPv6 header), sent by ``src``."""
    _need(buf, 8, "ICMPv6 header")
    kind, code = buf[0], buf[1]
    if kind == ICMP6_ECHO_REPLY:
        ident, seq = struct.unpack_from("!HH", buf, 4)
        return Reply(Kind.ECHO_REPLY, src, src, "icmp", ident, 0, seq, code, ts)
    if kind not in (ICMP6_TIME_EXCEEDED, ICMP6_UNREACH):
        return None
    quoted = _quoted_v6(buf[8:])
    if quoted is None:
        return None
    rkind = Kind.TIME_EXCEEDED if kind == ICMP6_TIME_EXCEEDED else Kind.UNREACHABLE
    return Reply(rkind, src, *quoted, code=code, ts=ts)


def parse_tcp6(buf: bytes, src: str, ts: float = 0.0) -> Reply | None:
    """A segment from an IPv6 TCP raw socket (no IPv6 header), sent by ``src``."""
    return _tcp_answer(src, buf, ts)
