"""Turn one captured frame into a :class:`~net_gazer.sensor.packet.TcpSegment`.

:func:`decode` is the fast path that runs on every captured packet. It reads fixed offsets with
``struct.unpack_from`` and byte indexing, and allocates nothing but the result (plus the packed
addresses and option bytes that the result holds). Its reference, built on dpkt, is test code
(``tests/dpkt_reference.py``): the tests check that both agree on every valid frame.

The contract, for every link type in ``SUPPORTED_LINKTYPES``:

- a TCP segment over IPv4 or IPv6 returns a ``TcpSegment``;
- a well-formed frame that is not TCP (ARP, UDP, ICMP, ESP, a non-first fragment, an unknown
  ethertype or address family) returns ``None``;
- a truncated link-layer header, or a frame that claims IPv4/IPv6/TCP but is malformed or truncated,
  raises :class:`~net_gazer.sensor.packet.DecodeError` with a short reason. Nothing else is ever
  raised, whatever the bytes.

An IPv4 total length or IPv6 payload length of 0 is taken to mean "as captured": Linux reports
segmentation-offload super-packets (and IPv6 jumbograms) that way, and Wireshark and dpkt read them
the same way.

The link type itself is checked once, when a capture is opened, with :func:`check_linktype`;
:func:`decode` assumes a supported one.
"""

from __future__ import annotations

import struct

from .packet import (
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_NULL,
    DLT_RAW,
    DLT_RAW_BSD,
    IPPROTO_TCP,
    LINKTYPE_RAW,
    SUPPORTED_LINKTYPES,
    DecodeError,
    TcpSegment,
)

__all__ = ["check_linktype", "decode"]

# --- Link layer ---------------------------------------------------------------------------------
ETH_HLEN = 14  # IEEE 802.3 clause 3.1: destination(6) source(6) EtherType/length(2)
ETH_TYPE_OFF = 12
ETH_MAX_LENGTH = 1500  # IEEE 802.3 clause 3.2.6: values up to 1500 are a length (802.2 LLC follows)
ETH_P_IP = 0x0800  # RFC 894: IPv4 over Ethernet
ETH_P_IPV6 = 0x86DD  # RFC 2464: IPv6 over Ethernet
ETH_P_8021Q = 0x8100  # IEEE 802.1Q customer VLAN tag (C-tag)
ETH_P_8021AD = 0x88A8  # IEEE 802.1ad service VLAN tag (S-tag, QinQ)
ETH_P_QINQ1 = 0x9100  # pre-standard QinQ S-tag (vendor practice)
ETH_P_QINQ2 = 0x9200  # pre-standard QinQ S-tag (vendor practice; dpkt also peels it)
VLAN_TPIDS = frozenset({ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1, ETH_P_QINQ2})
VLAN_TAG_LEN = 4  # IEEE 802.1Q clause 9.3: TCI(2) then the next EtherType(2)

# Linux cooked captures, https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html and _SLL2.html
SLL_HLEN = 16  # pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
SLL_PROTO_OFF = 14
SLL2_HLEN = 20  # protocol(2) reserved(2) if_index(4) hatype(2) pkttype(1) halen(1) addr(8)
SLL2_IFINDEX_OFF = 4
PACKET_OUTGOING = 4  # linux/if_packet.h: the packet was sent by this host
SLL_OUTGOING_BIT = 1 << 31  # iface discriminator bit for an SLL (v1) outgoing copy
IFACE_SHIFT = 32  # the capture index sits above the 32-bit SLL/SLL2 discriminator

# BSD loopback (DLT_NULL), https://www.tcpdump.org/linktypes/LINKTYPE_NULL.html: a 4-byte address
# family in the byte order of the host that wrote the capture.
NULL_HLEN = 4
BSD_AF_INET = 2
BSD_AF_INET6 = frozenset({24, 28, 30})  # NetBSD/OpenBSD/BSD-OS, FreeBSD/DragonFly, Darwin

# --- Network layer -------------------------------------------------------------------------------
IPV4_MIN_HLEN = 20  # RFC 791 section 3.1: IHL >= 5 32-bit words
IPV4_PROTO_OFF = 9  # RFC 791 section 3.1: the protocol field
IPV4_VERSION_IHL5 = 0x45  # RFC 791 section 3.1: version 4, IHL 5 (no options), the common case
IPV4_OFFMASK = 0x1FFF  # RFC 791 section 3.1: fragment offset, low 13 bits of flags/offset
IPV6_HLEN = 40  # RFC 8200 section 3
IPPROTO_HOPOPTS = 0  # RFC 8200 section 4.3: hop-by-hop options
IPPROTO_ROUTING = 43  # RFC 8200 section 4.4: routing header
IPPROTO_FRAGMENT = 44  # RFC 8200 section 4.5: fragment header
IPPROTO_ESP = 50  # RFC 4303: encapsulating security payload (opaque: never TCP we can read)
IPPROTO_AH = 51  # RFC 4302 section 2.2: payload length in 4-octet units, minus 2
IPPROTO_NONE = 59  # RFC 8200 section 4.7: no next header
IPPROTO_DSTOPTS = 60  # RFC 8200 section 4.6: destination options
_IPV6_OPTS_LIKE = frozenset({IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_ROUTING})  # (len + 1) * 8
IPV6_FRAG_HLEN = 8  # RFC 8200 section 4.5
IPV6_FRAG_OFFMASK = 0xFFF8  # RFC 8200 section 4.5: offset, high 13 bits of the 16-bit word

# --- Transport layer -----------------------------------------------------------------------------
TCP_MIN_HLEN = 20  # RFC 9293 section 3.1: data offset >= 5 32-bit words

# Precompiled layouts (network byte order).
# IPv4: ver/IHL, TOS, total length, id, flags/offset, TTL, protocol, checksum, src, dst.
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
# IPv6: version/class/flow, payload length, next header, hop limit, src, dst.
_IPV6 = struct.Struct("!IHBB16s16s")
# TCP: sport, dport, seq, ack, data offset byte, flags byte, window.
_TCP = struct.Struct("!HHIIBBH")
# IPv4 without options, then TCP: the common case in one unpack.
_IPV4_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBH")


def check_linktype(linktype: int) -> None:
    """Raise ``ValueError`` unless :func:`decode` supports ``linktype`` (a DLT/LINKTYPE value)."""
    if linktype not in SUPPORTED_LINKTYPES:
        raise ValueError(
            f"unsupported link type {linktype}: net-gazer reads Ethernet, Linux cooked (SLL, "
            "SLL2), raw IP and BSD loopback captures; capture on an interface of one of those kinds"
        )


def decode(linktype: int, ts: float, buf: bytes, iface: int = 0) -> TcpSegment | None:
    """Decode one frame of ``linktype`` captured at ``ts`` on capture ``iface``.

    Returns the TCP segment, ``None`` for a frame that is not TCP over IP, and raises
    :class:`DecodeError` (only that) for a malformed one. See the module docstring. ``buf`` is
    ``bytes`` (what pypcap yields), so the segment's addresses and options are ``bytes`` too.
    """
    try:
        n = len(buf)
        if linktype == DLT_EN10MB:
            if n < ETH_HLEN:
                raise DecodeError("truncated Ethernet header")
            etype = buf[ETH_TYPE_OFF] << 8 | buf[ETH_TYPE_OFF + 1]
            off = ETH_HLEN
        elif linktype == DLT_LINUX_SLL2:
            if n < SLL2_HLEN:
                raise DecodeError("truncated Linux SLL2 header")
            etype = buf[0] << 8 | buf[1]
            iface = (iface << IFACE_SHIFT) | int.from_bytes(
                buf[SLL2_IFINDEX_OFF : SLL2_IFINDEX_OFF + 4], "big"
            )
            off = SLL2_HLEN
        elif linktype == DLT_LINUX_SLL:
            if n < SLL_HLEN:
                raise DecodeError("truncated Linux SLL header")
            etype = buf[SLL_PROTO_OFF] << 8 | buf[SLL_PROTO_OFF + 1]
            outgoing = (buf[0] << 8 | buf[1]) == PACKET_OUTGOING
            iface = (iface << IFACE_SHIFT) | (SLL_OUTGOING_BIT if outgoing else 0)
            off = SLL_HLEN
        elif linktype == DLT_NULL:
            if n < NULL_HLEN:
                raise DecodeError("truncated loopback header")
            family = int.from_bytes(buf[:NULL_HLEN], "little")
            if family > 0xFFFF:  # written by a host of the other byte order
                family = int.from_bytes(buf[:NULL_HLEN], "big")
            if family == BSD_AF_INET:
                return _ipv4(ts, iface, buf, NULL_HLEN, n)
            if family in BSD_AF_INET6:
                return _ipv6(ts, iface, buf, NULL_HLEN, n)
            return None
        elif linktype in (DLT_RAW, LINKTYPE_RAW, DLT_RAW_BSD, DLT_IPV4, DLT_IPV6):
            if n == 0:
                raise DecodeError("empty raw IP packet")
            version = buf[0] >> 4
            if version == 4 and linktype != DLT_IPV6:
                return _ipv4(ts, iface, buf, 0, n)
            if version == 6 and linktype != DLT_IPV4:
                return _ipv6(ts, iface, buf, 0, n)
            raise DecodeError("bad IP version")
        else:
            check_linktype(linktype)  # raises ValueError for an unsupported one
            raise AssertionError(f"link type {linktype} is supported but not decoded")

        # Ethernet, SLL and SLL2 carry an EtherType; any number of VLAN tags may follow it.
        while etype in VLAN_TPIDS:
            if n < off + VLAN_TAG_LEN:
                raise DecodeError("truncated VLAN tag")
            etype = buf[off + 2] << 8 | buf[off + 3]
            off += VLAN_TAG_LEN
        if etype == ETH_P_IP:
            return _ipv4(ts, iface, buf, off, n)
        if etype == ETH_P_IPV6:
            return _ipv6(ts, iface, buf, off, n)
        return None
    except (struct.error, IndexError) as exc:  # a length check above has a hole: still malformed
        raise DecodeError(f"truncated frame ({exc})") from None


def _ipv4(ts: float, iface: int, buf: bytes, off: int, n: int) -> TcpSegment | None:
    if (
        n - off >= _IPV4_TCP.size
        and buf[off] == IPV4_VERSION_IHL5
        and buf[off + IPV4_PROTO_OFF] == IPPROTO_TCP
    ):
        # The common case, no IPv4 options: one unpack for both headers, the checks of _tcp inline.
        (_, _, total, ip_id, frag, ttl, _, _, src, dst,
         sport, dport, seq, ack, doff, flags, window) = _IPV4_TCP.unpack_from(buf, off)  # fmt: skip
        if total == 0:  # segmentation offload: the length is what was captured
            total = n - off
        elif total < IPV4_MIN_HLEN:
            raise DecodeError("IPv4 total length < header length")
        if frag & IPV4_OFFMASK:
            return None
        avail = total - IPV4_MIN_HLEN
        if avail < TCP_MIN_HLEN:
            raise DecodeError("IP payload shorter than a TCP header")
        thl = (doff >> 4) << 2
        if thl < TCP_MIN_HLEN:
            raise DecodeError("TCP data offset < 5")
        if thl > avail:
            raise DecodeError("TCP header longer than the IP payload")
        off += IPV4_MIN_HLEN
        if n - off < thl:
            raise DecodeError("truncated TCP options")
        return TcpSegment(
            ts, iface, 4, src, dst, sport, dport, seq, ack, flags, window, avail - thl,
            buf[off + TCP_MIN_HLEN : off + thl], ttl, ip_id, buf, off + thl,
        )  # fmt: skip
    if n - off < IPV4_MIN_HLEN:
        raise DecodeError("truncated IPv4 header")
    vihl, _tos, total, ip_id, frag, ttl, proto, _sum, src, dst = _IPV4.unpack_from(buf, off)
    if vihl >> 4 != 4:
        raise DecodeError("bad IP version")
    ihl = (vihl & 0x0F) << 2
    if ihl < IPV4_MIN_HLEN:
        raise DecodeError("IPv4 IHL < 5")
    if n - off < ihl:
        raise DecodeError("truncated IPv4 options")
    if total == 0:  # segmentation offload: the length is what was captured
        total = n - off
    elif total < ihl:
        raise DecodeError("IPv4 total length < header length")
    if proto != IPPROTO_TCP or frag & IPV4_OFFMASK:
        return None
    return _tcp(ts, iface, 4, src, dst, ttl, ip_id, buf, off + ihl, total - ihl, n)


def _ipv6(ts: float, iface: int, buf: bytes, off: int, n: int) -> TcpSegment | None:
    if n - off < IPV6_HLEN:
        raise DecodeError("truncated IPv6 header")
    vcf, plen, nxt, hlim, src, dst = _IPV6.unpack_from(buf, off)
    if vcf >> 28 != 6:
        raise DecodeError("bad IP version")
    p = off + IPV6_HLEN
    end = p + (plen or n - p)  # 0: jumbogram or segmentation offload, the length is as captured
    while nxt != IPPROTO_TCP:
        if nxt in _IPV6_OPTS_LIKE:
            if n < p + 2:
                raise DecodeError("truncated IPv6 extension header")
            hlen = (buf[p + 1] + 1) << 3  # RFC 8200 section 4.3: 8-octet units, minus 1
        elif nxt == IPPROTO_FRAGMENT:
            if n < p + IPV6_FRAG_HLEN:
                raise DecodeError("truncated IPv6 fragment header")
            if (buf[p + 2] << 8 | buf[p + 3]) & IPV6_FRAG_OFFMASK:
                return None  # a non-first fragment: no TCP header here
            hlen = IPV6_FRAG_HLEN
        elif nxt == IPPROTO_AH:
            if n < p + 2:
                raise DecodeError("truncated IPv6 AH header")
            hlen = (buf[p + 1] + 2) << 2
        else:  # ESP, no next header, UDP, ICMPv6, ...
            return None
        nxt = buf[p]
        p += hlen
        if p > end:
            raise DecodeError("IPv6 extension headers run past the payload length")
    return _tcp(ts, iface, 6, src, dst, hlim, 0, buf, p, end - p, n)


def _tcp(
    ts: float,
    iface: int,
    family: int,
    src: bytes,
    dst: bytes,
    ttl: int,
    ip_id: int,
    buf: bytes,
    off: int,
    avail: int,
    n: int,
) -> TcpSegment:
    """Decode the TCP header at ``off``; ``avail`` is the IP payload length the IP header claims."""
    if avail < TCP_MIN_HLEN:
        raise DecodeError("IP payload shorter than a TCP header")
    if n - off < TCP_MIN_HLEN:
        raise DecodeError("truncated TCP header")
    sport, dport, seq, ack, doff, flags, window = _TCP.unpack_from(buf, off)
    thl = (doff >> 4) << 2
    if thl < TCP_MIN_HLEN:
        raise DecodeError("TCP data offset < 5")
    if thl > avail:
        raise DecodeError("TCP header longer than the IP payload")
    if n - off < thl:
        raise DecodeError("truncated TCP options")
    return TcpSegment(
        ts,
        iface,
        family,
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flags,
        window,
        avail - thl,
        buf[off + TCP_MIN_HLEN : off + thl],
        ttl,
        ip_id,
        buf,
        off + thl,
    )
