"""Probe packets, built by hand with ``struct``: no I/O here.

Paris traceroute (Augustin et al., IMC 2006): the fields that load balancers hash on stay
constant for a whole trace, and probes are told apart by fields they do not hash on:

- TCP SYN: the sequence number (RFC 9293 section 3.1). An ICMP error quotes it (RFC 792 quotes
  the first 8 bytes of the transport header, RFC 4443 as much as fits), a SYN+ACK or RST+ACK
  acknowledges it plus one.
- UDP: the checksum (RFC 768), steered to the wanted value by two bytes of payload; the ports
  and the length stay constant.
- ICMP echo: the sequence number (RFC 792, RFC 4443 section 4.1), with two bytes of payload
  keeping the checksum constant, since some load balancers hash on the first four bytes of the
  ICMP header.
"""

from __future__ import annotations

import ipaddress
import struct

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

ICMP_ECHO_REPLY = 0  # RFC 792
ICMP_UNREACH = 3
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_UNREACH_PORT = 3
ICMP6_UNREACH = 1  # RFC 4443 section 3.1
ICMP6_TIME_EXCEEDED = 3  # RFC 4443 section 3.3
ICMP6_UNREACH_PORT = 4
ICMP6_ECHO = 128  # RFC 4443 section 4.1
ICMP6_ECHO_REPLY = 129

TH_SYN = 0x02
TH_RST = 0x04
TH_ACK = 0x10
TCPOPT_MSS = 2  # RFC 9293 section 3.2
SYN_WINDOW = 64240
SYN_MSS = 1460


def ones_sum(data: bytes, start: int = 0) -> int:
    """The 16-bit one's complement sum of ``data`` (RFC 1071), folded, added to ``start``."""
    if len(data) % 2:
        data += b"\0"
    total: int = start + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes, start: int = 0) -> int:
    """The Internet checksum of ``data`` (RFC 1071)."""
    return ~ones_sum(data, start) & 0xFFFF


def pseudo_header(src: str, dst: str, proto: int, length: int) -> bytes:
    """The pseudo header of the TCP/UDP/ICMPv6 checksum: RFC 9293 3.1, RFC 768, RFC 8200 8.1."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, proto, length)
    return s + d + struct.pack("!IxxxB", length, proto)


def _compensate(partial: int, want: int) -> int:
    """The 16-bit word that, added to a one's complement sum ``partial``, makes the checksum
    ``want``: checksum = ~(partial + word), so word = ~want - partial."""
    word = ones_sum(struct.pack("!HH", ~want & 0xFFFF, ~partial & 0xFFFF))
    return word & 0xFFFF


def tcp_syn(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    """A TCP SYN with an MSS option, the way a connecting host sends it, and no payload
    (middleboxes drop SYNs that carry data)."""
    opts = struct.pack("!BBH", TCPOPT_MSS, 4, SYN_MSS)
    offset = (20 + len(opts)) // 4
    hdr = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, offset << 4, TH_SYN, SYN_WINDOW, 0, 0
    )
    seg = hdr + opts
    csum = checksum(seg, ones_sum(pseudo_header(src, dst, IPPROTO_TCP, len(seg))))
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def udp_probe(src: str, dst: str, sport: int, dport: int, token: int, payload: bytes) -> bytes:
    """A UDP datagram whose checksum is ``token`` (1..0xfffe), steered by its first two payload
    bytes; ``payload`` (the contact string) follows them."""
    if not 0 < token < 0xFFFF:
        raise ValueError(f"a UDP token must be within 1..65534, not {token}")
    length = 8 + 2 + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    partial = ones_sum(
        hdr + b"\0\0" + payload, ones_sum(pseudo_header(src, dst, IPPROTO_UDP, length))
    )
    word = _compensate(partial, token)
    return struct.pack("!HHHH", sport, dport, length, token) + struct.pack("!H", word) + payload


def icmp_echo(
    src: str, dst: str, ident: int, seq: int, fixed_checksum: int, payload: bytes
) -> bytes:
    """An ICMP (IPv4) or ICMPv6 echo request whose checksum is ``fixed_checksum`` whatever
    ``seq`` is; the first two payload bytes steer it, ``payload`` follows."""
    v6 = ":" in dst
    kind = ICMP6_ECHO if v6 else ICMP_ECHO
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + b"\0\0" + payload
    start = ones_sum(pseudo_header(src, dst, IPPROTO_ICMPV6, len(body))) if v6 else 0
    word = _compensate(ones_sum(body, start), fixed_checksum)
    return (
        body[:2] + struct.pack("!H", fixed_checksum) + body[4:8] + struct.pack("!H", word) + payload
    )
