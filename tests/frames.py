"""Frame builders for tests and fixtures: complete, well-formed frames as bytes, built with dpkt.

``tcp()``/``udp()`` build an IP packet (IPv4 or IPv6, chosen by the address family) with correct
lengths and checksums; ``ether()``, ``sll()``, ``sll2()`` and ``null()`` wrap it in a link layer;
``write_pcap()`` writes a classic pcap file. Nothing here depends on net-gazer code, so fixtures built
with it are an independent statement of what is on the wire.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

import dpkt

ETH_TYPE_IP = 0x0800  # RFC 894
ETH_TYPE_IP6 = 0x86DD  # RFC 2464
ETH_TYPE_ARP = 0x0806  # RFC 826
ETH_TYPE_8021Q = 0x8100  # IEEE 802.1Q
ETH_TYPE_8021AD = 0x88A8  # IEEE 802.1ad
ETH_TYPE_QINQ1 = 0x9100  # pre-standard QinQ

CLIENT_MAC = bytes.fromhex("020000000001")  # locally administered (IEEE 802 U/L bit set)
GATEWAY_MAC = bytes.fromhex("020000000002")

# IPv6 extension header numbers (RFC 8200 section 4).
IPV6_HOPOPTS = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_AH = 51
IPV6_DSTOPTS = 60
IPV6_NONXT = 59

# Realistic SYN options (RFC 9293 MSS, RFC 2018 SACK-permitted, RFC 7323 timestamps and window
# scale), in the order Linux sends them: MSS, SACK_PERM, TS, NOP, WS.


def syn_options(mss: int = 1460, tsval: int = 1, tsecr: int = 0, wscale: int = 7) -> bytes:
    """Linux-style SYN options: MSS, SACK permitted, timestamps, NOP, window scale (20 bytes)."""
    return (
        struct.pack("!BBH", 2, 4, mss)
        + b"\x04\x02"
        + struct.pack("!BBII", 8, 10, tsval, tsecr)
        + b"\x01"
        + struct.pack("!BBB", 3, 3, wscale)
    )


def ts_options(tsval: int, tsecr: int) -> bytes:
    """NOP, NOP, timestamps: what Linux puts on every segment after the handshake (12 bytes)."""
    return b"\x01\x01" + struct.pack("!BBII", 8, 10, tsval, tsecr)


def _family(addr: str) -> int:
    return ipaddress.ip_address(addr).version


def _checksum_tcp_udp(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    """RFC 9293 section 3.1 / RFC 8200 section 8.1 pseudo-header checksum."""
    if len(src) == 4:
        pseudo = struct.pack("!4s4sxBH", src, dst, proto, len(segment))
    else:
        pseudo = struct.pack("!16s16sIxxxB", src, dst, len(segment), proto)
    return dpkt.in_cksum(pseudo + segment)  # type: ignore[no-any-return]


def _ip(
    src: str,
    dst: str,
    proto: int,
    segment: bytes,
    *,
    ttl: int,
    ip_id: int,
    frag_offset: int = 0,
    more_fragments: bool = False,
    ext_headers: Sequence[tuple[int, bytes]] = (),
    ip_options: bytes = b"",
) -> bytes:
    family = _family(src)
    if family != _family(dst):
        raise ValueError(f"address families differ: {src} {dst}")
    if family == 4:
        if ext_headers:
            raise ValueError("extension headers are IPv6 only")
        if len(ip_options) % 4 or len(ip_options) > 40:
            raise ValueError("IPv4 options are a multiple of 4 bytes, at most 40")
        ip = dpkt.ip.IP(
            src=socket.inet_pton(socket.AF_INET, src),
            dst=socket.inet_pton(socket.AF_INET, dst),
            p=proto,
            ttl=ttl,
            id=ip_id,
            df=0 if (frag_offset or more_fragments) else 1,
            mf=int(more_fragments),
            offset=frag_offset // 8,
            hl=5 + len(ip_options) // 4,
            opts=ip_options,
            data=segment,
        )
        return bytes(ip)  # dpkt fills in the total length and header checksum
    if ip_options:
        raise ValueError("IPv4 options in an IPv6 packet")
    if frag_offset or more_fragments:
        ext_headers = (*ext_headers, (IPV6_FRAGMENT, fragment_header(frag_offset, more_fragments)))
    ext = b""
    nxt = proto
    for kind, body in reversed(ext_headers):  # chain the next-header fields back to front
        ext = bytes([nxt]) + body[1:] + ext
        nxt = kind
    ip6 = dpkt.ip6.IP6(
        src=socket.inet_pton(socket.AF_INET6, src),
        dst=socket.inet_pton(socket.AF_INET6, dst),
        nxt=nxt,
        hlim=ttl,
        plen=len(ext) + len(segment),
    )
    return ip6.pack_hdr() + ext + segment  # type: ignore[no-any-return]


def _padded_options(length: int) -> bytes:
    """An options header of ``length`` bytes (a multiple of 8) holding one PadN option."""
    if length % 8 or not 8 <= length <= 256:
        raise ValueError("an options header is 8..256 bytes, a multiple of 8")
    return bytes([0, length // 8 - 1, 1, length - 4]) + b"\x00" * (length - 4)


def hop_by_hop(length: int = 8) -> bytes:
    """A hop-by-hop options header (RFC 8200 section 4.3); the builder fills in next header."""
    return _padded_options(length)


def dest_options(length: int = 8) -> bytes:
    """A destination options header (RFC 8200 section 4.6)."""
    return _padded_options(length)


def routing_header(segments_left: int = 0, addresses: int = 1) -> bytes:
    """A type-0-shaped routing header with ``addresses`` 16-byte slots (RFC 8200 section 4.4)."""
    return bytes([0, 2 * addresses, 0, segments_left, 0, 0, 0, 0]) + b"\x00" * (16 * addresses)


def fragment_header(offset: int, more: bool, ident: int = 0x1234) -> bytes:
    """An IPv6 fragment header; ``offset`` in bytes (a multiple of 8)."""
    return struct.pack("!BBHI", 0, 0, (offset // 8) << 3 | int(more), ident)


def ah_header(icv_len: int = 12) -> bytes:
    """An authentication header with an ``icv_len``-byte ICV (RFC 4302 section 2)."""
    return struct.pack("!BBHII", 0, (12 + icv_len) // 4 - 2, 0, 0x100, 1) + b"\xaa" * icv_len


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    flags: int,
    seq: int = 0,
    ack: int = 0,
    payload: bytes = b"",
    options: bytes = b"",
    window: int = 65535,
    ttl: int = 64,
    *,
    ip_id: int = 0,
    frag_offset: int = 0,
    more_fragments: bool = False,
    ext_headers: Sequence[tuple[int, bytes]] = (),
    ip_options: bytes = b"",
    checksum: bool = True,
) -> bytes:
    """A TCP segment in an IPv4 or IPv6 packet (by the address family), lengths and checksums set.

    ``options`` are padded with EOL to a multiple of 4. ``ext_headers`` (IPv6 only) are
    ``(header number, header bytes)`` pairs whose first byte (next header) the builder fills in.
    ``ip_options`` (IPv4 only, a multiple of 4 bytes) raise the IHL. ``checksum=False`` leaves
    the TCP checksum 0.
    """
    if len(options) % 4:
        options += b"\x00" * (4 - len(options) % 4)
    if len(options) > 40:
        raise ValueError("TCP options are at most 40 bytes")
    seg = dpkt.tcp.TCP(
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=flags,
        win=window,
        off=5 + len(options) // 4,
        opts=options,
        data=payload,
    )
    raw = bytes(seg)
    if checksum:
        src_b = ipaddress.ip_address(src).packed
        dst_b = ipaddress.ip_address(dst).packed
        raw = raw[:16] + struct.pack("!H", _checksum_tcp_udp(src_b, dst_b, 6, raw)) + raw[18:]
    return _ip(
        src,
        dst,
        6,
        raw,
        ttl=ttl,
        ip_id=ip_id,
        frag_offset=frag_offset,
        more_fragments=more_fragments,
        ext_headers=ext_headers,
        ip_options=ip_options,
    )


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", ttl: int = 64) -> bytes:
    """A UDP datagram in an IPv4 or IPv6 packet, lengths and checksums set."""
    raw = bytes(dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload))
    src_b = ipaddress.ip_address(src).packed
    dst_b = ipaddress.ip_address(dst).packed
    cksum = _checksum_tcp_udp(src_b, dst_b, 17, raw) or 0xFFFF
    raw = raw[:6] + struct.pack("!H", cksum) + raw[8:]
    return _ip(src, dst, 17, raw, ttl=ttl, ip_id=0)


def icmp_echo(src: str, dst: str, ident: int = 1, seq: int = 1, ttl: int = 64) -> bytes:
    """An ICMP echo request in IPv4."""
    echo = dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=b"net-gazer")
    msg = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_ECHO, data=echo)
    return _ip(src, dst, 1, bytes(msg), ttl=ttl, ip_id=0)


def arp_request(sender_mac: bytes, sender_ip: str, target_ip: str) -> bytes:
    """An Ethernet broadcast ARP who-has frame (complete, with the link layer)."""
    arp = dpkt.arp.ARP(
        sha=sender_mac,
        spa=socket.inet_aton(sender_ip),
        tha=b"\x00" * 6,
        tpa=socket.inet_aton(target_ip),
        op=dpkt.arp.ARP_OP_REQUEST,
    )
    eth = dpkt.ethernet.Ethernet(src=sender_mac, dst=b"\xff" * 6, type=ETH_TYPE_ARP, data=arp)
    return bytes(eth)


def ethertype_of(ip_bytes: bytes) -> int:
    """The EtherType for an IP packet, from its version nibble."""
    return ETH_TYPE_IP6 if ip_bytes[:1] and ip_bytes[0] >> 4 == 6 else ETH_TYPE_IP


def ether(
    ip_bytes: bytes,
    vlans: Iterable[int | tuple[int, int]] = (),
    src_mac: bytes = CLIENT_MAC,
    dst_mac: bytes = GATEWAY_MAC,
    *,
    ethertype: int | None = None,
) -> bytes:
    """An Ethernet II frame; ``vlans`` outermost first, each a VLAN id (802.1Q) or ``(tpid, id)``."""
    inner = ethertype_of(ip_bytes) if ethertype is None else ethertype
    tags = [(ETH_TYPE_8021Q, v) if isinstance(v, int) else v for v in vlans]
    body = b""
    for i, (_tpid, vid) in enumerate(tags):
        next_type = tags[i + 1][0] if i + 1 < len(tags) else inner
        body += bytes(dpkt.ethernet.VLANtag8021Q(id=vid, type=next_type))
    outer = tags[0][0] if tags else inner
    hdr = dpkt.ethernet.Ethernet(dst=dst_mac, src=src_mac, type=outer).pack_hdr()
    return hdr + body + ip_bytes  # type: ignore[no-any-return]


def sll(ip_bytes: bytes, pkttype: int = 0, src_mac: bytes = CLIENT_MAC) -> bytes:
    """A Linux cooked (SLL v1) frame: pkttype 0 is 'to us', 4 is 'outgoing'."""
    hdr = dpkt.sll.SLL(
        type=pkttype, hrd=1, hlen=6, hdr=src_mac + b"\x00\x00", ethtype=ethertype_of(ip_bytes)
    )
    return hdr.pack_hdr() + ip_bytes  # type: ignore[no-any-return]


def sll2(ip_bytes: bytes, ifindex: int = 1, pkttype: int = 0, src_mac: bytes = CLIENT_MAC) -> bytes:
    """A Linux cooked v2 (SLL2) frame carrying the interface index."""
    if not 0 <= ifindex < 1 << 32:
        raise ValueError("an interface index is a 32-bit unsigned number")
    hdr = dpkt.sll2.SLL2(
        ethtype=ethertype_of(ip_bytes),
        intindex=ifindex - (1 << 32) if ifindex >= 1 << 31 else ifindex,  # dpkt packs it signed
        hrd=1,
        type=pkttype,
        hlen=6,
        hdr=src_mac + b"\x00\x00",
    )
    return hdr.pack_hdr() + ip_bytes  # type: ignore[no-any-return]


def null(ip_bytes: bytes, family: int | None = None) -> bytes:
    """A BSD loopback (DLT_NULL) frame: host-order family 2 (IPv4) or 24 (IPv6, NetBSD/OpenBSD)."""
    if family is None:
        family = 24 if ethertype_of(ip_bytes) == ETH_TYPE_IP6 else 2
    return dpkt.loopback.Loopback(family=family).pack_hdr() + ip_bytes  # type: ignore[no-any-return]


Frame = tuple[float | Decimal, bytes] | tuple[float | Decimal, bytes, int]


def write_pcap(
    path: str | Path, linktype: int, frames: Iterable[Frame], nano: bool = False
) -> None:
    """Write a classic little-endian pcap file (snaplen 65535).

    Each frame is ``(ts, bytes)`` or ``(ts, bytes, orig_len)`` for a frame cut short by the
    snaplen. The timestamp's decimal digits are kept exactly: ``1700000000.012345`` is written as
    12345 µs (or 12345000 ns), never as a float rounding of it. dpkt's record headers are used
    directly rather than ``dpkt.pcap.Writer`` because the writer cannot express ``orig_len``
    and goes through a float for the sub-second part.
    """
    scale = 10**9 if nano else 10**6
    magic = dpkt.pcap.TCPDUMP_MAGIC_NANO if nano else dpkt.pcap.TCPDUMP_MAGIC
    out = [bytes(dpkt.pcap.LEFileHdr(snaplen=65535, linktype=linktype, magic=magic))]
    for frame in frames:
        ts, buf = frame[0], frame[1]
        orig_len = frame[2] if len(frame) == 3 else len(buf)
        exact = Decimal(repr(ts)) if isinstance(ts, float) else Decimal(ts)
        sec = int(exact)
        frac = int((exact - sec) * scale)
        if (exact - sec) * scale != frac:
            raise ValueError(f"timestamp {ts} is finer than the file's precision")
        hdr = dpkt.pcap.LEPktHdr(tv_sec=sec, tv_usec=frac, caplen=len(buf), len=orig_len)
        out.append(bytes(hdr) + buf)
    Path(path).write_bytes(b"".join(out))
