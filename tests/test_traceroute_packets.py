"""Probe building and reply matching, with byte literals and dpkt as the independent parser."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import dpkt
import pytest

from net_gazer.plugins.traceroute import packets
from net_gazer.plugins.traceroute.matcher import (
    Kind,
    Malformed,
    parse_icmp6,
    parse_ipv4,
    parse_tcp6,
)

SRC4, DST4, HOP4 = "198.51.100.1", "192.0.2.10", "198.51.100.2"
SRC6, DST6, HOP6 = "2001:db8:100::1", "2001:db8:2:1::a", "2001:db8:100::2"


def _ip4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 1) -> dpkt.ip.IP:
    ip = dpkt.ip.IP(
        src=ipaddress.ip_address(src).packed, dst=ipaddress.ip_address(dst).packed,
        p=proto, ttl=ttl, id=7, data=payload,
    )  # fmt: skip
    ip.len = 20 + len(payload)
    return ip


def _ip6(src: str, dst: str, nh: int, payload: bytes) -> bytes:
    hdr = struct.pack("!IHBB", 6 << 28, len(payload), nh, 1)
    return hdr + ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + payload


def _ok_checksum(src: str, dst: str, proto: int, seg: bytes) -> bool:
    return (
        packets.checksum(seg, packets.ones_sum(packets.pseudo_header(src, dst, proto, len(seg))))
        == 0
    )


def test_tcp_syn_is_a_valid_syn_by_dpkt() -> None:
    seg = packets.tcp_syn(SRC4, DST4, 61001, 443, 0x12345678)
    tcp = dpkt.tcp.TCP(seg)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.flags) == (61001, 443, 0x12345678, dpkt.tcp.TH_SYN)
    assert _ok_checksum(SRC4, DST4, 6, seg)
    assert _ok_checksum(SRC6, DST6, 6, packets.tcp_syn(SRC6, DST6, 61001, 443, 1))


@pytest.mark.parametrize(("src", "dst"), [(SRC4, DST4), (SRC6, DST6)])
@pytest.mark.parametrize("token", [1, 2, 0x1234, 0x8000, 0xFFFE])
def test_udp_checksum_is_the_token_and_valid(src: str, dst: str, token: int) -> None:
    seg = packets.udp_probe(src, dst, 61001, 33434, token, b"contact me")
    udp = dpkt.udp.UDP(seg)
    assert (udp.sport, udp.dport, udp.sum, udp.ulen) == (61001, 33434, token, len(seg))
    assert _ok_checksum(src, dst, 17, seg)
    assert seg.endswith(b"contact me")


@pytest.mark.parametrize(("src", "dst"), [(SRC4, DST4), (SRC6, DST6)])
def test_icmp_echo_keeps_its_checksum_constant(src: str, dst: str) -> None:
    proto = 58 if ":" in dst else 1
    for seq in (1, 2, 300, 65534):
        msg = packets.icmp_echo(src, dst, 4242, seq, 0xBEEF, b"x")
        assert struct.unpack_from("!HHH", msg, 2) == (0xBEEF, 4242, seq)
        if proto == 1:
            assert packets.checksum(msg) == 0
        else:
            assert _ok_checksum(src, dst, proto, msg)


def test_udp_token_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"1\.\.65534"):
        packets.udp_probe(SRC4, DST4, 1, 2, 0, b"")


def _time_exceeded4(probe: dpkt.ip.IP, kind: int = 11, code: int = 0, quote: int = 8) -> bytes:
    quoted = bytes(probe)[: 20 + quote]
    icmp = dpkt.icmp.ICMP(type=kind, code=code, data=b"\0\0\0\0" + quoted)
    return bytes(_ip4(HOP4, SRC4, 1, bytes(icmp), ttl=64))


def test_ipv4_time_exceeded_for_each_method() -> None:
    syn = _ip4(SRC4, DST4, 6, packets.tcp_syn(SRC4, DST4, 61001, 443, 0xAB0001))
    r = parse_ipv4(_time_exceeded4(syn), 5.0)
    assert r is not None
    assert (r.kind, r.responder, r.dst, r.method, r.flow, r.dport, r.ident, r.ts) == (
        Kind.TIME_EXCEEDED, HOP4, DST4, "tcp", 61001, 443, 0xAB0001, 5.0,
    )  # fmt: skip
    udp = _ip4(SRC4, DST4, 17, packets.udp_probe(SRC4, DST4, 61002, 33434, 77, b"c"))
    r = parse_ipv4(_time_exceeded4(udp))
    assert r is not None and (r.method, r.flow, r.dport, r.ident) == ("udp", 61002, 33434, 77)
    echo = _ip4(SRC4, DST4, 1, packets.icmp_echo(SRC4, DST4, 9, 33, 0x1111, b"c"))
    r = parse_ipv4(_time_exceeded4(echo, quote=28))
    assert r is not None and (r.method, r.flow, r.ident) == ("icmp", 9, 33)


def test_ipv4_port_unreachable_and_echo_reply_and_synack() -> None:
    udp = _ip4(SRC4, DST4, 17, packets.udp_probe(SRC4, DST4, 61002, 33434, 77, b"c"))
    r = parse_ipv4(_time_exceeded4(udp, kind=3, code=3))
    assert r is not None and r.kind is Kind.UNREACHABLE and r.port_unreachable
    reply = dpkt.icmp.ICMP(type=0, code=0, data=struct.pack("!HH", 9, 33) + b"c")
    r = parse_ipv4(bytes(_ip4(DST4, SRC4, 1, bytes(reply), ttl=60)))
    assert r is not None and (r.kind, r.dst, r.flow, r.ident) == (Kind.ECHO_REPLY, DST4, 9, 33)
    synack = dpkt.tcp.TCP(sport=443, dport=61001, seq=5, ack=0xAB0002,
                          flags=dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)  # fmt: skip
    r = parse_ipv4(bytes(_ip4(DST4, SRC4, 6, bytes(synack), ttl=60)))
    assert r is not None and (r.kind, r.flow, r.dport, r.ident) == (
        Kind.SYNACK,
        61001,
        443,
        0xAB0001,
    )
    rst = dpkt.tcp.TCP(sport=443, dport=61001, ack=0, flags=dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK)
    r = parse_ipv4(bytes(_ip4(DST4, SRC4, 6, bytes(rst), ttl=60)))
    assert r is not None and r.kind is Kind.RST and r.ident == 0xFFFFFFFF
    bare = dpkt.tcp.TCP(sport=443, dport=61001, flags=dpkt.tcp.TH_RST)
    assert parse_ipv4(bytes(_ip4(DST4, SRC4, 6, bytes(bare), ttl=60))) is None


def test_ipv6_replies() -> None:
    syn = _ip6(SRC6, DST6, 6, packets.tcp_syn(SRC6, DST6, 61003, 80, 0xCD0009))
    r = parse_icmp6(struct.pack("!BBHI", 3, 0, 0, 0) + syn, HOP6, 1.5)
    assert r is not None
    assert (r.kind, r.responder, r.dst, r.method, r.flow, r.dport, r.ident) == (
        Kind.TIME_EXCEEDED, HOP6, DST6, "tcp", 61003, 80, 0xCD0009,
    )  # fmt: skip
    udp = _ip6(SRC6, DST6, 17, packets.udp_probe(SRC6, DST6, 61004, 33434, 5, b"c"))
    r = parse_icmp6(struct.pack("!BBHI", 1, 4, 0, 0) + udp, DST6)
    assert r is not None and r.port_unreachable and r.ident == 5
    r = parse_icmp6(struct.pack("!BBHHH", 129, 0, 0, 9, 44), DST6)
    assert r is not None and (r.kind, r.flow, r.ident) == (Kind.ECHO_REPLY, 9, 44)
    synack = dpkt.tcp.TCP(
        sport=80, dport=61003, ack=0xCD000A, flags=dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
    )
    r = parse_tcp6(bytes(synack), DST6)
    assert r is not None and (r.kind, r.ident, r.dst) == (Kind.SYNACK, 0xCD0009, DST6)


@pytest.mark.parametrize("cut", [0, 5, 19, 27, 30, 35])
def test_truncated_replies_are_malformed_or_ignored(cut: int) -> None:
    syn = _ip4(SRC4, DST4, 6, packets.tcp_syn(SRC4, DST4, 61001, 443, 1))
    buf = _time_exceeded4(syn)[: 20 + cut] if cut else b"\x45"
    with contextlib.suppress(Malformed):
        assert parse_ipv4(buf) is None


def test_unrelated_icmp_is_ignored() -> None:
    redirect = dpkt.icmp.ICMP(type=5, code=1, data=b"\0" * 32)
    assert parse_ipv4(bytes(_ip4(HOP4, SRC4, 1, bytes(redirect)))) is None
    assert parse_icmp6(struct.pack("!BBHI", 135, 0, 0, 0) + b"\0" * 16, HOP6) is None
