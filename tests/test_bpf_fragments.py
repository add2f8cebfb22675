"""The quality and dpi plugins' kernel filter fragments, each on its own, through real libpcap
(``pcap.bpf``: libpcap compiles the expression and runs the BPF program on each frame).

What each fragment must pass is stated here from the frames themselves, parsed with dpkt (not
with the sensor's decoder): the quality fragment passes both directions of the sampled flows and
nothing else of TCP; the dpi fragment passes the segments that start a ClientHello record or an
HTTP request, and DNS from port 53. And since a BPF load past the end of a packet drops it for the
whole program, a fragment that reads payload must never hide another fragment's packets: the
union passes exactly what either part passes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import dpkt
import frames as F
import pcap
import pytest
from test_quality_sampling import hash16

from net_gazer.plugins.dpi.bpf import bpf_fragment as dpi_fragment
from net_gazer.plugins.quality.sampling import bpf_fragment as quality_fragment
from net_gazer.sensor.capture import bpf_union
from net_gazer.sensor.packet import SUPPORTED_LINKTYPES

PCAPS = Path(__file__).parent / "pcaps"
CAPTURES = sorted(PCAPS.glob("*.pcap")) + sorted((PCAPS / "lab").glob("*.pcap"))
HTTP = (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC")
LINKTYPE_RAW_DLT = 12  # libpcap's DLT_RAW on Linux (files say LINKTYPE_RAW, 101)


def read(path: Path) -> tuple[int, list[bytes]]:
    reader = pcap.pcap(name=str(path), timestamp_in_ns=False)
    return reader.datalink(), [bytes(buf) for _, buf in reader]


def network(linktype: int, buf: bytes) -> object | None:
    """The IP packet of a frame, by dpkt (None when it is not IP or does not parse)."""
    try:
        if linktype == dpkt.pcap.DLT_EN10MB:
            eth = dpkt.ethernet.Ethernet(buf)
            return eth.data if isinstance(eth.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
        if linktype == 113:
            return dpkt.sll.SLL(buf).data
        if linktype == 276:
            return dpkt.sll2.SLL2(buf).data
        if linktype == dpkt.pcap.DLT_NULL:
            return dpkt.loopback.Loopback(buf).data
        return dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    except (dpkt.UnpackError, IndexError, ValueError):
        return None


def tcp_of(ip: object) -> tuple[str, str, object] | None:
    if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and not ip.offset:
        return (
            ipaddress.ip_address(ip.src).compressed,
            ipaddress.ip_address(ip.dst).compressed,
            ip.data,
        )
    if isinstance(ip, dpkt.ip6.IP6) and ip.nxt == 6 and isinstance(ip.data, dpkt.tcp.TCP):
        return (
            ipaddress.ip_address(ip.src).compressed,
            ipaddress.ip_address(ip.dst).compressed,
            ip.data,
        )
    return None


def passes(expression: str, linktype: int, frames: list[bytes]) -> list[bool]:
    program = pcap.bpf(expression.encode(), linktype)
    return [bool(program.filter(f)) for f in frames]


def lab_and_fixture_frames() -> Iterator[tuple[str, int, list[bytes]]]:
    for path in CAPTURES:
        linktype, frames = read(path)
        yield path.name, linktype, frames


def test_fragments_compile_on_every_supported_link_type() -> None:
    for linktype in SUPPORTED_LINKTYPES - {101, 14}:  # files carry LINKTYPE_RAW as DLT_RAW
        for fragment in (quality_fragment(1), quality_fragment(8), dpi_fragment()):
            pcap.bpf(fragment.encode(), linktype)
            pcap.bpf(bpf_union([fragment, "tcp port 80"], linktype, []).encode(), linktype)


@pytest.mark.parametrize("rate", [2, 3, 8])
def test_quality_fragment_passes_exactly_the_sampled_flows(rate: int) -> None:
    seen = 0
    for name, linktype, frames in lab_and_fixture_frames():
        if name == "hostile.pcap":
            continue  # malformed on purpose: the decoder's business, not the filter's
        got = passes(quality_fragment(rate), linktype, frames)
        for i, buf in enumerate(frames):
            ip = network(linktype, buf)
            tcp = tcp_of(ip) if ip is not None else None
            if tcp is None:
                assert not got[i] or isinstance(ip, dpkt.ip6.IP6), (name, i)
                continue
            src, dst, seg = tcp
            want = hash16(src, dst, seg.sport, seg.dport) % rate == 0  # type: ignore[attr-defined]
            assert got[i] == want, (name, i, src, dst)
            seen += want
    assert seen > 100


def test_quality_fragment_passes_ipv6_with_extension_headers_for_the_sensor_to_sample() -> None:
    """BPF cannot reach the TCP ports behind extension headers: such packets all pass."""
    frames = [
        F.ether(
            F.tcp("2001:db8::1", "2001:db8::2", port, 443, 0x10, ext_headers=[(0, F.hop_by_hop())])
        )
        for port in range(40000, 40016)
    ]
    assert all(passes(quality_fragment(8), 1, frames))
    # ... but not the hop-by-hop ICMPv6 (MLD) that every IPv6 interface sends.
    mld = F.ether(
        F._ip(
            "fe80::1", "ff02::16", 58, bytes(28), ttl=1, ip_id=0, ext_headers=[(0, F.hop_by_hop())]
        )
    )
    assert passes(quality_fragment(8), 1, [mld]) == [False]
    plain = [
        F.ether(F.tcp("2001:db8::1", "2001:db8::2", port, 443, 0x10))
        for port in range(40000, 40016)
    ]
    assert 0 < sum(passes(quality_fragment(8), 1, plain)) < len(plain)


def dpi_reads(linktype: int, buf: bytes) -> bool:
    """What the dpi fragment is for, by dpkt: DNS from port 53, segments starting a TLS
    handshake record with a ClientHello, or an HTTP request line."""
    ip = network(linktype, buf)
    if ip is None:
        return False
    udp = ip.data
    if isinstance(udp, dpkt.udp.UDP):
        return bool(udp.sport == 53)
    tcp = tcp_of(ip)
    if tcp is None:
        return False
    seg = tcp[2]
    if seg.sport == 53:  # type: ignore[attr-defined]
        return True
    payload = bytes(seg.data)  # type: ignore[attr-defined]
    if isinstance(ip, dpkt.ip.IP):
        claimed = ip.len - ip.hl * 4 - seg.off * 4  # type: ignore[attr-defined]
    else:
        claimed = ip.plen - seg.off * 4  # type: ignore[attr-defined]
    tls = (
        len(payload) >= 6
        and claimed >= 6
        and payload[0] == 0x16
        and payload[1] == 3
        and payload[5] == 1
    )
    http = claimed >= 16 and payload[:4] in HTTP
    return tls or http


def test_dpi_fragment_passes_what_the_plugin_reads_and_nothing_else() -> None:
    counted = 0
    for name, linktype, frames in lab_and_fixture_frames():
        if name == "hostile.pcap":
            continue
        got = passes(dpi_fragment(), linktype, frames)
        want = [dpi_reads(linktype, f) for f in frames]
        assert got == want, (
            name,
            [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w],
        )
        counted += sum(want)
    assert counted > 40  # names.pcap: ClientHellos, requests, DNS answers


def test_a_fragment_reading_payload_never_hides_another_fragments_packets() -> None:
    """Pure ACKs, empty and tiny segments, VLAN tags, truncated lab frames: whichever order the
    fragments come in, the sensor's filter passes exactly what either fragment passes."""
    crafted = [
        F.ether(F.tcp("192.0.2.1", "198.51.100.2", 40000, 5001, 0x10)),  # a pure ACK
        F.ether(F.tcp("192.0.2.1", "198.51.100.2", 40000, 5001, 0x18, payload=b"\x16")),
        F.ether(F.tcp("2001:db8::1", "2001:db8::2", 40000, 5001, 0x18, payload=b"GE")),
        F.ether(F.tcp("192.0.2.1", "198.51.100.2", 40000, 5001, 0x10), vlans=[7]),
        F.ether(
            F.tcp(
                "192.0.2.1", "198.51.100.2", 40000, 443, 0x18, payload=b"\x16\x03\x01\x00\x05\x01"
            ),
            vlans=[7],
        ),
    ]
    others = ("tcp port 5001", "tcp[tcpflags] & tcp-syn != 0", quality_fragment(4), "tcp")
    checked = 0
    for name, linktype, frames in [*lab_and_fixture_frames(), ("crafted", 1, crafted)]:
        dpi = passes(bpf_union([dpi_fragment()], linktype, []), linktype, frames)
        for other in others:
            alone = passes(bpf_union([other], linktype, []), linktype, frames)
            want = [a or d for a, d in zip(alone, dpi, strict=True)]
            for order in ([dpi_fragment(), other], [other, dpi_fragment()]):
                union = passes(bpf_union(order, linktype, []), linktype, frames)
                assert union == want, (name, other, order[0] == other)
            checked += sum(alone)
    assert checked > 1000
