"""The packet decoder: byte-literal cases per link type, malformed frames, and the fast path checked
against the dpkt reference, on hand-built frames and on Hypothesis-generated ones."""

from __future__ import annotations

import contextlib
import ipaddress
import struct
from typing import Any

import frames as F
import pytest
from dpkt_reference import decode_dpkt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from net_gazer.sensor.decode import check_linktype, decode
from net_gazer.sensor.packet import (
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_NULL,
    DLT_RAW,
    DLT_RAW_BSD,
    LINKTYPE_RAW,
    SUPPORTED_LINKTYPES,
    TH_ACK,
    TH_SYN,
    DecodeError,
    TcpSegment,
)

RAW_LINKTYPES = (DLT_RAW, DLT_RAW_BSD, LINKTYPE_RAW)

# --- Byte literals --------------------------------------------------------------------------------
# Checksums are left 0: the decoder does not verify them (the sensor only reads headers).

# IPv4, 192.0.2.1 -> 198.51.100.2, TCP 40000 -> 443 SYN with Linux-style options, no payload.
IPV4_SYN = bytes.fromhex(
    "4500 003c"  # version 4, IHL 5, TOS 0, total length 60
    "1c46 4000"  # id 0x1c46, DF, offset 0
    "4006 0000"  # TTL 64, protocol TCP, checksum
    "c000 0201"  # 192.0.2.1
    "c633 6402"  # 198.51.100.2
    "9c40 01bb"  # ports 40000 -> 443
    "0000 007b"  # seq 123
    "0000 0000"  # ack 0
    "a002 faf0"  # data offset 10, flags SYN, window 64240
    "0000 0000"  # checksum, urgent pointer
    "0204 05b4 0402 080a 0000 0001 0000 0000 0103 0307"  # MSS, SACK_PERM, TS, NOP, WS
)
SYN_OPTIONS = IPV4_SYN[40:60]

# IPv6, 2001:db8::2 -> 2001:db8::1, TCP 443 -> 40000 SYN+ACK, 4 payload bytes.
IPV6_SYNACK = bytes.fromhex(
    "6000 0000"  # version 6
    "0018 0640"  # payload length 24, next header TCP, hop limit 64
    "2001 0db8 0000 0000 0000 0000 0000 0002"
    "2001 0db8 0000 0000 0000 0000 0000 0001"
    "01bb 9c40"  # ports 443 -> 40000
    "0000 01c8"  # seq 456
    "0000 007c"  # ack 124
    "5012 ffff"  # data offset 5, SYN+ACK, window 65535
    "0000 0000"
    "dead beef"  # payload
)

MACS = bytes.fromhex("020000000002 020000000001")  # destination, source
ETH_IP = MACS + b"\x08\x00"
ETH_IP6 = MACS + b"\x86\xdd"

V4_SRC, V4_DST = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2])
V6_SRC = ipaddress.IPv6Address("2001:db8::2").packed
V6_DST = ipaddress.IPv6Address("2001:db8::1").packed


def v4_segment(iface: int = 0, ts: float = 1.5, payload_len: int = 0) -> TcpSegment:
    return TcpSegment(
        ts, iface, 4, V4_SRC, V4_DST, 40000, 443, 123, 0, TH_SYN, 64240, payload_len,
        SYN_OPTIONS, 64, 0x1C46,
    )  # fmt: skip


def v6_segment(iface: int = 0, ts: float = 1.5, payload_len: int = 4) -> TcpSegment:
    return TcpSegment(
        ts, iface, 6, V6_SRC, V6_DST, 443, 40000, 456, 124, TH_SYN | TH_ACK, 65535, payload_len,
        b"", 64, 0,
    )  # fmt: skip


def patch(buf: bytes, offset: int, value: bytes) -> bytes:
    return buf[:offset] + value + buf[offset + len(value) :]


def both(linktype: int, buf: bytes, iface: int = 0) -> TcpSegment | None:
    """Decode with the fast path, check the reference agrees, return the result."""
    fast = decode(linktype, 1.5, buf, iface)
    assert decode_dpkt(linktype, 1.5, buf, iface) == fast
    return fast


# --- Link types -----------------------------------------------------------------------------------


def test_ethernet_ipv4() -> None:
    seg = both(DLT_EN10MB, ETH_IP + IPV4_SYN, iface=3)
    assert seg == v4_segment(iface=3)
    assert seg is not None
    assert type(seg.options) is bytes
    assert seg.src_text == "192.0.2.1"


def test_ethernet_ipv6() -> None:
    assert both(DLT_EN10MB, ETH_IP6 + IPV6_SYNACK) == v6_segment()


def test_ethernet_8021q() -> None:
    frame = MACS + bytes.fromhex("8100 0064 0800") + IPV4_SYN  # VLAN 100
    assert both(DLT_EN10MB, frame) == v4_segment()


def test_ethernet_qinq() -> None:
    frame = MACS + bytes.fromhex("88a8 000a 8100 0014 86dd") + IPV6_SYNACK  # S-tag 10, C-tag 20
    assert both(DLT_EN10MB, frame) == v6_segment()


def test_ethernet_three_tags_legacy_tpid() -> None:
    frame = MACS + bytes.fromhex("9100 0001 88a8 0002 8100 0003 0800") + IPV4_SYN
    assert both(DLT_EN10MB, frame) == v4_segment()


def test_linux_sll_incoming_and_outgoing() -> None:
    header = bytes.fromhex("0000 0001 0006 020000000001 0000 0800")  # pkttype 0: to us
    assert both(DLT_LINUX_SLL, header + IPV4_SYN, iface=2) == v4_segment(iface=2 << 32)
    outgoing = patch(header, 0, b"\x00\x04")  # pkttype 4: PACKET_OUTGOING
    assert both(DLT_LINUX_SLL, outgoing + IPV4_SYN, iface=2) == v4_segment(
        iface=(2 << 32) | (1 << 31)
    )
    broadcast = patch(header, 0, b"\x00\x01")
    assert both(DLT_LINUX_SLL, broadcast + IPV4_SYN) == v4_segment(iface=0)


def test_linux_sll_ipv6_and_vlan() -> None:
    header = bytes.fromhex("0000 0001 0006 020000000001 0000 86dd")
    assert both(DLT_LINUX_SLL, header + IPV6_SYNACK) == v6_segment()
    tagged = bytes.fromhex("0000 0001 0006 020000000001 0000 8100 0064 0800")
    assert both(DLT_LINUX_SLL, tagged + IPV4_SYN) == v4_segment()


def test_linux_sll2_interface_index() -> None:
    header = bytes.fromhex("0800 0000 00000007 0001 00 06 0200000000010000")  # if_index 7
    assert both(DLT_LINUX_SLL2, header + IPV4_SYN, iface=1) == v4_segment(iface=(1 << 32) | 7)
    big = patch(header, 4, b"\xff\xff\xff\xfe")  # unsigned, not -2
    assert both(DLT_LINUX_SLL2, big + IPV4_SYN) == v4_segment(iface=0xFFFFFFFE)
    v6 = bytes.fromhex("86dd 0000 00000003 0001 04 06 0200000000010000")
    assert both(DLT_LINUX_SLL2, v6 + IPV6_SYNACK) == v6_segment(iface=3)


@pytest.mark.parametrize(
    ("header", "packet", "expected"),
    [
        (b"\x02\x00\x00\x00", IPV4_SYN, "v4"),  # AF_INET, little-endian writer
        (b"\x00\x00\x00\x02", IPV4_SYN, "v4"),  # AF_INET, big-endian writer
        (b"\x18\x00\x00\x00", IPV6_SYNACK, "v6"),  # 24: NetBSD/OpenBSD AF_INET6
        (b"\x00\x00\x00\x1c", IPV6_SYNACK, "v6"),  # 28: FreeBSD, big-endian
        (b"\x1e\x00\x00\x00", IPV6_SYNACK, "v6"),  # 30: Darwin
        (b"\x17\x00\x00\x00", IPV4_SYN, None),  # 23: not an IP family
    ],
)
def test_null_loopback(header: bytes, packet: bytes, expected: str | None) -> None:
    want = {"v4": v4_segment(), "v6": v6_segment(), None: None}[expected]
    assert both(DLT_NULL, header + packet) == want


@pytest.mark.parametrize("linktype", RAW_LINKTYPES)
def test_raw_ip_version_from_first_nibble(linktype: int) -> None:
    assert both(linktype, IPV4_SYN) == v4_segment()
    assert both(linktype, IPV6_SYNACK) == v6_segment()


def test_dlt_ipv4_and_ipv6() -> None:
    assert both(DLT_IPV4, IPV4_SYN) == v4_segment()
    assert both(DLT_IPV6, IPV6_SYNACK) == v6_segment()
    with pytest.raises(DecodeError):
        decode(DLT_IPV4, 0.0, IPV6_SYNACK)
    with pytest.raises(DecodeError):
        decode(DLT_IPV6, 0.0, IPV4_SYN)


def test_check_linktype() -> None:
    for linktype in SUPPORTED_LINKTYPES:
        check_linktype(linktype)
    with pytest.raises(ValueError, match="unsupported link type 105"):
        check_linktype(105)  # IEEE 802.11
    with pytest.raises(ValueError, match="unsupported link type 127"):
        decode(127, 0.0, IPV4_SYN)  # radiotap: decode does not guess either


# --- IPv4 and IPv6 details --------------------------------------------------------------------------


def test_ipv4_options_honour_ihl() -> None:
    packet = patch(IPV4_SYN[:20], 0, b"\x46") + b"\x01\x01\x01\x00" + IPV4_SYN[20:]  # IHL 6
    packet = patch(packet, 2, struct.pack("!H", 64))
    assert both(DLT_RAW, packet) == v4_segment()


def test_ipv4_first_fragment_decodes_non_first_does_not() -> None:
    first = patch(IPV4_SYN, 6, b"\x20\x00")  # MF set, offset 0
    assert both(DLT_RAW, first) == v4_segment()
    later = patch(IPV4_SYN, 6, b"\x00\xb9")  # offset 185 * 8
    assert both(DLT_RAW, later) is None
    later_mf = patch(IPV4_SYN, 6, b"\x20\x01")
    assert both(DLT_RAW, later_mf) is None


def test_ipv4_payload_length_comes_from_the_header() -> None:
    ack = patch(IPV4_SYN[:40], 2, struct.pack("!H", 40))  # header-only segment
    ack = patch(ack, 32, b"\x50\x10")  # data offset 5, ACK
    padded = ETH_IP + ack + b"\x00" * 6  # Ethernet minimum-size padding
    seg = both(DLT_EN10MB, padded)
    assert seg is not None
    assert (seg.payload_len, seg.options, seg.flags) == (0, b"", TH_ACK)
    # A payload cut by the snaplen still counts in full.
    big = patch(IPV4_SYN, 2, struct.pack("!H", 60 + 1400))
    assert both(DLT_RAW, big) == v4_segment(payload_len=1400)


def test_ipv4_total_length_zero_means_as_captured() -> None:
    tso = patch(IPV4_SYN, 2, b"\x00\x00") + b"x" * 3000  # a segmentation-offload super-packet
    assert both(DLT_RAW, tso) == v4_segment(payload_len=3000)


def test_ipv6_payload_length_zero_means_as_captured() -> None:
    jumbo = patch(IPV6_SYNACK, 4, b"\x00\x00") + b"y" * 100
    assert both(DLT_RAW, jumbo) == v6_segment(payload_len=104)


def test_tcp_flags_low_byte_only() -> None:
    all_flags = patch(IPV4_SYN, 32, b"\xa1\xff")  # NS bit (RFC 3540) + all eight flags
    seg = both(DLT_RAW, all_flags)
    assert seg is not None
    assert seg.flags == 0xFF


def _ipv6_with(ext: bytes, first_next: int, tail: bytes) -> bytes:
    hdr = IPV6_SYNACK[:40]
    hdr = patch(hdr, 4, struct.pack("!HB", len(ext) + len(tail), first_next))
    return hdr + ext + tail


def test_ipv6_hop_by_hop_then_first_fragment() -> None:
    ext = bytes.fromhex(
        "2c00 0104 0000 0000"  # hop-by-hop: next = fragment, PadN
        "0600 0001 0000 1234"  # fragment: next = TCP, offset 0, M=1, id 0x1234
    )
    packet = _ipv6_with(ext, 0, IPV6_SYNACK[40:])
    assert both(DLT_EN10MB, ETH_IP6 + packet) == v6_segment()


def test_ipv6_destination_routing_and_ah() -> None:
    ext = bytes.fromhex(
        "2b00 0104 0000 0000"  # destination options: next = routing
        "3302 0000 0000 0000" + "00" * 16 +  # routing, one address slot: next = AH
        "0604 0000 0000 0100 0000 0001" + "aa" * 12  # AH (len 4 -> 24 bytes): next = TCP
    )  # fmt: skip
    packet = _ipv6_with(ext, 60, IPV6_SYNACK[40:])
    assert both(DLT_RAW, packet) == v6_segment()


@pytest.mark.parametrize(
    ("ext", "first_next"),
    [
        (bytes.fromhex("0600 00b9 0000 1234"), 44),  # fragment, offset 23 * 8: not the first
        (bytes.fromhex("0000 0001 0000 0002"), 50),  # ESP: encrypted, no TCP to read
        (b"", 59),  # no next header
        (b"", 17),  # UDP
        (b"", 58),  # ICMPv6
        (bytes.fromhex("1100 0104 0000 0000"), 0),  # hop-by-hop, then UDP
    ],
)
def test_ipv6_not_tcp(ext: bytes, first_next: int) -> None:
    packet = _ipv6_with(ext, first_next, IPV6_SYNACK[40:])
    assert decode(DLT_RAW, 0.0, packet) is None
    assert decode_dpkt(DLT_RAW, 0.0, packet) is None


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(MACS + b"\x08\x06" + bytes(28), id="arp"),
        pytest.param(MACS + b"\x88\xcc" + bytes(30), id="lldp"),
        pytest.param(MACS + b"\x00\x2e" + bytes(46), id="802.3-length"),
        pytest.param(ETH_IP + patch(IPV4_SYN, 9, b"\x11"), id="udp"),
        pytest.param(ETH_IP + patch(IPV4_SYN, 9, b"\x01"), id="icmp"),
        pytest.param(ETH_IP + patch(IPV4_SYN, 9, b"\x32"), id="ipv4-esp"),
        pytest.param(MACS + b"\x81\x00\x00\x64\x08\x06" + bytes(28), id="arp-in-vlan"),
    ],
)
def test_not_tcp_is_none(frame: bytes) -> None:
    assert decode(DLT_EN10MB, 0.0, frame) is None
    assert decode_dpkt(DLT_EN10MB, 0.0, frame) is None


def test_sll_unknown_protocol_is_none() -> None:
    header = bytes.fromhex("0000 0001 0006 020000000001 0000 0004")  # 802.2 frames
    assert decode(DLT_LINUX_SLL, 0.0, header + IPV4_SYN) is None


# --- Malformed frames -------------------------------------------------------------------------------

V4 = ETH_IP + IPV4_SYN
V6 = ETH_IP6 + IPV6_SYNACK
E = 14  # start of the IP header in V4 / V6

MALFORMED = [
    pytest.param(DLT_EN10MB, b"", id="empty"),
    pytest.param(DLT_EN10MB, b"\x01", id="one-byte"),
    pytest.param(DLT_EN10MB, V4[:13], id="ethernet-truncated"),
    pytest.param(DLT_EN10MB, MACS + b"\x81\x00\x00", id="vlan-truncated"),
    pytest.param(DLT_EN10MB, ETH_IP, id="ipv4-missing"),
    pytest.param(DLT_EN10MB, V4[: E + 19], id="ipv4-header-truncated"),
    pytest.param(DLT_EN10MB, patch(V4, E, b"\x55"), id="ipv4-version-5"),
    pytest.param(DLT_EN10MB, ETH_IP + IPV6_SYNACK, id="ipv4-ethertype-ipv6-packet"),
    pytest.param(DLT_EN10MB, ETH_IP6 + IPV4_SYN, id="ipv6-ethertype-ipv4-packet"),
    pytest.param(DLT_EN10MB, patch(V4, E, b"\x43"), id="ihl-3"),
    pytest.param(DLT_EN10MB, patch(V4, E, b"\x40"), id="ihl-0"),
    pytest.param(DLT_EN10MB, patch(V4, E, b"\x46")[: E + 22], id="ipv4-options-truncated"),
    pytest.param(DLT_EN10MB, patch(V4, E + 2, b"\x00\x13"), id="total-length-19"),
    pytest.param(DLT_EN10MB, patch(V4, E + 2, b"\x00\x1e"), id="ip-payload-10"),
    pytest.param(DLT_EN10MB, patch(V4, E + 2, b"\x00\x28"), id="total-length-cuts-options"),
    pytest.param(DLT_EN10MB, patch(V4, E + 32, b"\x20"), id="tcp-data-offset-2"),
    pytest.param(DLT_EN10MB, patch(V4, E + 32, b"\x40"), id="tcp-data-offset-4"),
    pytest.param(DLT_EN10MB, patch(V4, E + 32, b"\xf0"), id="tcp-data-offset-15"),
    pytest.param(DLT_EN10MB, V4[: E + 30], id="tcp-header-10-bytes"),
    pytest.param(DLT_EN10MB, V4[: E + 50], id="tcp-options-truncated"),
    pytest.param(DLT_EN10MB, V6[: E + 39], id="ipv6-header-truncated"),
    pytest.param(DLT_EN10MB, patch(V6, E, b"\x40"), id="ipv6-version-4"),
    pytest.param(DLT_EN10MB, patch(V6, E + 4, b"\x00\x08"), id="ipv6-payload-length-8"),
    pytest.param(DLT_EN10MB, V6[: E + 50], id="ipv6-tcp-truncated"),
    pytest.param(
        DLT_EN10MB,
        ETH_IP6 + _ipv6_with(bytes.fromhex("0605 0104 0000 0000"), 0, IPV6_SYNACK[40:]),
        id="ipv6-hop-by-hop-past-payload",
    ),
    pytest.param(
        DLT_EN10MB,
        ETH_IP6 + patch(IPV6_SYNACK[:40], 4, b"\x00\x00\x00") + b"\x06",
        id="ipv6-ext-1-byte",
    ),
    pytest.param(
        DLT_EN10MB,
        ETH_IP6 + _ipv6_with(bytes.fromhex("0600 0001"), 44, b"")[:44],
        id="ipv6-fragment-truncated",
    ),
    pytest.param(DLT_LINUX_SLL, bytes(15), id="sll-truncated"),
    pytest.param(DLT_LINUX_SLL2, bytes(19), id="sll2-truncated"),
    pytest.param(DLT_NULL, b"\x02\x00\x00", id="null-truncated"),
    pytest.param(DLT_NULL, b"\x02\x00\x00\x00" + IPV4_SYN[:30], id="null-ipv4-truncated"),
    pytest.param(DLT_RAW, b"", id="raw-empty"),
    pytest.param(DLT_RAW, b"\x50" + IPV4_SYN[1:], id="raw-version-5"),
    pytest.param(LINKTYPE_RAW, IPV4_SYN[:20], id="raw-no-tcp"),
]


@pytest.mark.parametrize(("linktype", "frame"), MALFORMED)
def test_malformed_raises_decode_error(linktype: int, frame: bytes) -> None:
    with pytest.raises(DecodeError) as exc:
        decode(linktype, 0.0, frame)
    assert str(exc.value)  # a short reason
    with pytest.raises(DecodeError):
        decode_dpkt(linktype, 0.0, frame)


# --- Differential: frames built with dpkt (tests/frames.py) -------------------------------------------

V4C, V4S = "192.168.1.10", "198.51.100.7"
V6C, V6S = "2001:db8:1::10", "2001:db8:2::7"
BUILT = [
    ("v4-syn", V4C, V4S, {"flags": TH_SYN, "seq": 1, "options": F.syn_options()}),
    ("v4-data", V4C, V4S, {"flags": 0x18, "seq": 2, "ack": 3, "payload": b"a" * 700}),
    ("v4-ip-options", V4C, V4S, {"flags": TH_ACK, "ip_options": b"\x01" * 8, "ip_id": 77}),
    ("v4-first-fragment", V4C, V4S, {"flags": TH_ACK, "more_fragments": True, "ip_id": 9}),
    ("v6-synack", V6S, V6C, {"flags": TH_SYN | TH_ACK, "ack": 2**32 - 1, "ttl": 3}),
    (
        "v6-ext",
        V6C,
        V6S,
        {
            "flags": TH_ACK,
            "payload": b"b" * 33,
            "ext_headers": [
                (F.IPV6_HOPOPTS, F.hop_by_hop(16)),
                (F.IPV6_DSTOPTS, F.dest_options()),
                (F.IPV6_ROUTING, F.routing_header(addresses=2)),
                (F.IPV6_AH, F.ah_header()),
            ],
            "more_fragments": True,
        },
    ),
]


def _expected(src: str, dst: str, kw: dict[str, Any], iface: int) -> TcpSegment:
    v6 = ":" in src
    return TcpSegment(
        ts=1.5,
        iface=iface,
        family=6 if v6 else 4,
        src=ipaddress.ip_address(src).packed,
        dst=ipaddress.ip_address(dst).packed,
        sport=1234,
        dport=443,
        seq=kw.get("seq", 0),
        ack=kw.get("ack", 0),
        flags=kw["flags"],
        window=65535,
        payload_len=len(kw.get("payload", b"")),
        options=kw.get("options", b""),
        ttl=kw.get("ttl", 64),
        ip_id=0 if v6 else kw.get("ip_id", 0),
    )


@pytest.mark.parametrize(("name", "src", "dst", "kw"), BUILT, ids=[b[0] for b in BUILT])
def test_built_frames_all_link_types(name: str, src: str, dst: str, kw: dict[str, Any]) -> None:
    ip = F.tcp(src, dst, 1234, 443, **kw)
    raw_only = DLT_IPV6 if ":" in src else DLT_IPV4
    cases = [
        (DLT_EN10MB, F.ether(ip), 0),
        (DLT_EN10MB, F.ether(ip, vlans=[(F.ETH_TYPE_8021AD, 5), 6]), 0),
        (DLT_LINUX_SLL, F.sll(ip, pkttype=4), 1 << 31),
        (DLT_LINUX_SLL2, F.sll2(ip, ifindex=9), 9),
        (DLT_NULL, F.null(ip), 0),
        (DLT_RAW, ip, 0),
        (LINKTYPE_RAW, ip, 0),
        (raw_only, ip, 0),
    ]
    for linktype, frame, iface in cases:
        want = _expected(src, dst, kw, iface)
        assert decode(linktype, 1.5, frame) == want, (name, linktype)
        assert decode_dpkt(linktype, 1.5, frame) == want, (name, linktype)


# --- Hypothesis ---------------------------------------------------------------------------------------

LINKTYPES = sorted(SUPPORTED_LINKTYPES)


@settings(max_examples=2000, deadline=None)
@given(linktype=st.sampled_from(LINKTYPES), buf=st.binary(max_size=160))
def test_random_bytes_only_raise_decode_error(linktype: int, buf: bytes) -> None:
    try:
        seg = decode(linktype, 0.0, buf)
    except DecodeError:
        seg = None
    assert seg is None or isinstance(seg, TcpSegment)
    with contextlib.suppress(DecodeError):  # the reference keeps the same promise
        decode_dpkt(linktype, 0.0, buf)


u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
v4_addr = u32.map(lambda n: str(ipaddress.IPv4Address(n)))
v6_addr = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
TPIDS = (F.ETH_TYPE_8021Q, F.ETH_TYPE_8021AD, F.ETH_TYPE_QINQ1)


def _words(max_words: int) -> st.SearchStrategy[bytes]:
    return st.integers(0, max_words).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))


EXT_BUILDERS = {
    "hbh": lambda d: (F.IPV6_HOPOPTS, F.hop_by_hop(8 * d.draw(st.integers(1, 4)))),
    "dst": lambda d: (F.IPV6_DSTOPTS, F.dest_options(8 * d.draw(st.integers(1, 4)))),
    "rt": lambda d: (F.IPV6_ROUTING, F.routing_header(addresses=d.draw(st.integers(0, 2)))),
    "frag": lambda d: (F.IPV6_FRAGMENT, F.fragment_header(0, d.draw(st.booleans()))),
    "ah": lambda d: (F.IPV6_AH, F.ah_header(4 * d.draw(st.integers(1, 4)))),
}


@st.composite
def valid_tcp_frames(draw: st.DrawFn) -> tuple[int, bytes, int, TcpSegment]:
    """A random valid TCP frame on a random link type, and the segment it must decode to."""
    v6 = draw(st.booleans())
    addr = v6_addr if v6 else v4_addr
    src, dst = draw(addr), draw(addr)
    options = draw(_words(10))
    payload = bytes(draw(st.integers(0, 1500)))
    kw: dict[str, Any] = {
        "sport": draw(u16),
        "dport": draw(u16),
        "flags": draw(st.integers(0, 255)),
        "seq": draw(u32),
        "ack": draw(u32),
        "payload": payload,
        "options": options,
        "window": draw(u16),
        "ttl": draw(st.integers(0, 255)),
    }
    ip_id = 0
    if v6:
        kinds = draw(st.lists(st.sampled_from(sorted(EXT_BUILDERS)), max_size=4))
        kw["ext_headers"] = [EXT_BUILDERS[k](_Drawer(draw)) for k in kinds]
    else:
        ip_id = draw(u16)
        kw["ip_id"] = ip_id
        kw["ip_options"] = draw(_words(10))
        kw["more_fragments"] = draw(st.booleans())
    ip = F.tcp(src, dst, **kw)
    iface = draw(st.integers(0, 7))
    link = draw(st.sampled_from(["ether", "sll", "sll2", "null", "raw", "raw-family"]))
    if link == "ether":
        vlans = draw(st.lists(st.tuples(st.sampled_from(TPIDS), st.integers(0, 4095)), max_size=3))
        linktype, frame, want_iface = DLT_EN10MB, F.ether(ip, vlans=vlans), iface
    elif link == "sll":
        pkttype = draw(st.sampled_from([0, 1, 2, 3, 4]))
        linktype, frame = DLT_LINUX_SLL, F.sll(ip, pkttype=pkttype)
        want_iface = (iface << 32) | (1 << 31 if pkttype == 4 else 0)
    elif link == "sll2":
        ifindex = draw(u32)
        linktype, frame = DLT_LINUX_SLL2, F.sll2(ip, ifindex=ifindex)
        want_iface = (iface << 32) | ifindex
    elif link == "null":
        family = draw(st.sampled_from([24, 28, 30])) if v6 else 2
        linktype, frame, want_iface = DLT_NULL, F.null(ip, family=family), iface
    elif link == "raw":
        linktype, frame, want_iface = draw(st.sampled_from(RAW_LINKTYPES)), ip, iface
    else:
        linktype, frame, want_iface = (DLT_IPV6 if v6 else DLT_IPV4), ip, iface
    want = TcpSegment(
        ts=0.25,
        iface=want_iface,
        family=6 if v6 else 4,
        src=ipaddress.ip_address(src).packed,
        dst=ipaddress.ip_address(dst).packed,
        sport=kw["sport"],
        dport=kw["dport"],
        seq=kw["seq"],
        ack=kw["ack"],
        flags=kw["flags"],
        window=kw["window"],
        payload_len=len(payload),
        options=options,
        ttl=kw["ttl"],
        ip_id=ip_id,
    )
    return linktype, frame, iface, want


class _Drawer:
    """Lets the extension-header table draw its parameters."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=valid_tcp_frames())
def test_random_valid_frames_fast_path_matches_dpkt(
    case: tuple[int, bytes, int, TcpSegment],
) -> None:
    linktype, frame, iface, want = case
    fast = decode(linktype, 0.25, frame, iface)
    assert fast == want
    assert decode_dpkt(linktype, 0.25, frame, iface) == fast


@st.composite
def damaged_frames(draw: st.DrawFn) -> tuple[int, bytes]:
    """A valid frame, then cut short and/or with a few bytes overwritten."""
    linktype, frame, _iface, _want = draw(valid_tcp_frames())
    buf = bytearray(frame)
    for _ in range(draw(st.integers(0, 4))):
        if buf:
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(buf)))
    return linktype, bytes(buf[:cut] if draw(st.booleans()) else buf)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=damaged_frames())
def test_damaged_frames_only_raise_decode_error(case: tuple[int, bytes]) -> None:
    linktype, frame = case
    try:
        fast = decode(linktype, 0.0, frame)
    except DecodeError:
        fast = None
    assert fast is None or isinstance(fast, TcpSegment)
    try:  # the reference keeps the same promise
        ref = decode_dpkt(linktype, 0.0, frame)
    except DecodeError:
        ref = None
    if fast is not None and ref is not None:  # where both accept a damaged frame, they agree
        assert fast == ref
