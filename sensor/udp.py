"""Turn one captured frame into a :class:`~net_gazer.sensor.packet.UdpDatagram`.

The packet path calls :func:`decode_udp` only for frames that :func:`~net_gazer.sensor.decode.decode`
found not to be TCP, and only when a plugin implements ``ng_datagram``, so the TCP fast path pays
nothing for it. The contract mirrors ``decode``'s: a UDP datagram over IPv4 or IPv6 returns a
``UdpDatagram``; a well-formed frame that is not UDP (or a non-first fragment) returns ``None``;
a frame that claims IPv4/IPv6/UDP but is malformed raises
:class:`~net_gazer.sensor.packet.DecodeError`, and nothing else is ever raised.
"""

from __future__ import annotations

import struct

from .decode import (
    _IPV6_OPTS_LIKE,
    BSD_AF_INET,
    BSD_AF_INET6,
    ETH_HLEN,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_TYPE_OFF,
    IFACE_SHIFT,
    IPPROTO_AH,
    IPPROTO_FRAGMENT,
    IPV4_MIN_HLEN,
    IPV4_OFFMASK,
    IPV6_FRAG_HLEN,
    IPV6_FRAG_OFFMASK,
    IPV6_HLEN,
    NULL_HLEN,
    PACKET_OUTGOING,
    SLL2_HLEN,
    SLL2_IFINDEX_OFF,
    SLL_HLEN,
    SLL_OUTGOING_BIT,
    SLL_PROTO_OFF,
    VLAN_TAG_LEN,
    VLAN_TPIDS,
)
from .packet import (
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_NULL,
    IPPROTO_UDP,
    DecodeError,
    UdpDatagram,
)

__all__ = ["decode_udp"]

UDP_HLEN = 8  # RFC 768: source port, destination port, length, checksum

_UDP = struct.Struct("!HHH")


def decode_udp(linktype: int, ts: float, buf: bytes, iface: int = 0) -> UdpDatagram | None:
    """Decode one frame of a supported ``linktype`` as UDP (see the module docstring)."""
    try:
        n = len(buf)
        if linktype == DLT_NULL:
            if n < NULL_HLEN:
                raise DecodeError("truncated loopback header")
            family = int.from_bytes(buf[:NULL_HLEN], "little")
            if family > 0xFFFF:
                family = int.from_bytes(buf[:NULL_HLEN], "big")
            if family == BSD_AF_INET:
                return _ipv4(ts, iface, buf, NULL_HLEN, n)
            if family in BSD_AF_INET6:
                return _ipv6(ts, iface, buf, NULL_HLEN, n)
            return None
        if linktype == DLT_EN10MB:
            if n < ETH_HLEN:
                raise DecodeError("truncated Ethernet header")
            etype, off = buf[ETH_TYPE_OFF] << 8 | buf[ETH_TYPE_OFF + 1], ETH_HLEN
        elif linktype == DLT_LINUX_SLL2:
            if n < SLL2_HLEN:
                raise DecodeError("truncated Linux SLL2 header")
            etype, off = buf[0] << 8 | buf[1], SLL2_HLEN
            # The interface refines the capture index, as decode() does for TCP, so the copies
            # of one datagram on two interfaces of a ``-i any`` capture can be told apart.
            iface = (iface << IFACE_SHIFT) | int.from_bytes(
                buf[SLL2_IFINDEX_OFF : SLL2_IFINDEX_OFF + 4], "big"
            )
        elif linktype == DLT_LINUX_SLL:
            if n < SLL_HLEN:
                raise DecodeError("truncated Linux SLL header")
            etype, off = buf[SLL_PROTO_OFF] << 8 | buf[SLL_PROTO_OFF + 1], SLL_HLEN
            outgoing = (buf[0] << 8 | buf[1]) == PACKET_OUTGOING
            iface = (iface << IFACE_SHIFT) | (SLL_OUTGOING_BIT if outgoing else 0)
        else:  # raw IP of either family, or of one
            if n == 0:
                raise DecodeError("empty raw IP packet")
            version = buf[0] >> 4
            if version == 4 and linktype != DLT_IPV6:
                return _ipv4(ts, iface, buf, 0, n)
            if version == 6 and linktype != DLT_IPV4:
                return _ipv6(ts, iface, buf, 0, n)
            raise DecodeError("bad IP version")
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
    except (struct.error, IndexError) as exc:
        raise DecodeError(f"truncated frame ({exc})") from None


def _ipv4(ts: float, iface: int, buf: bytes, off: int, n: int) -> UdpDatagram | None:
    if n - off < IPV4_MIN_HLEN:
        raise DecodeError("truncated IPv4 header")
    if buf[off] >> 4 != 4:
        raise DecodeError("bad IP version")
    ihl = (buf[off] & 0x0F) << 2
    if ihl < IPV4_MIN_HLEN or n - off < ihl:
        raise DecodeError("bad IPv4 header length")
    if buf[off + 9] != IPPROTO_UDP or (buf[off + 6] << 8 | buf[off + 7]) & IPV4_OFFMASK:
        return None
    total = buf[off + 2] << 8 | buf[off + 3]
    if total == 0:  # segmentation offload: as captured
        total = n - off
    if total < ihl:
        raise DecodeError("IPv4 total length < header length")
    src, dst = buf[off + 12 : off + 16], buf[off + 16 : off + 20]
    return _udp(ts, iface, 4, src, dst, buf, off + ihl, total - ihl, n)


def _ipv6(ts: float, iface: int, buf: bytes, off: int, n: int) -> UdpDatagram | None:
    if n - off < IPV6_HLEN:
        raise DecodeError("truncated IPv6 header")
    if buf[off] >> 4 != 6:
        raise DecodeError("bad IP version")
    plen, nxt = buf[off + 4] << 8 | buf[off + 5], buf[off + 6]
    src, dst = buf[off + 8 : off + 24], buf[off + 24 : off + 40]
    p = off + IPV6_HLEN
    end = p + (plen or n - p)
    while nxt != IPPROTO_UDP:
        if nxt in _IPV6_OPTS_LIKE:
            if n < p + 2:
                raise DecodeError("truncated IPv6 extension header")
            hlen = (buf[p + 1] + 1) << 3
        elif nxt == IPPROTO_FRAGMENT:
            if n < p + IPV6_FRAG_HLEN:
                raise DecodeError("truncated IPv6 fragment header")
            if (buf[p + 2] << 8 | buf[p + 3]) & IPV6_FRAG_OFFMASK:
                return None
            hlen = IPV6_FRAG_HLEN
        elif nxt == IPPROTO_AH:
            if n < p + 2:
                raise DecodeError("truncated IPv6 AH header")
            hlen = (buf[p + 1] + 2) << 2
        else:
            return None
        nxt = buf[p]
        p += hlen
        if p > end:
            raise DecodeError("IPv6 extension headers run past the payload length")
    return _udp(ts, iface, 6, src, dst, buf, p, end - p, n)


def _udp(
    ts: float,
    iface: int,
    family: int,
    src: bytes,
    dst: bytes,
    buf: bytes,
    off: int,
    avail: int,
    n: int,
) -> UdpDatagram:
    if avail < UDP_HLEN or n - off < UDP_HLEN:
        raise DecodeError("truncated UDP header")
    sport, dport, length = _UDP.unpack_from(buf, off)
    if length == 0 and family == 6:  # RFC 2675 jumbogram: the IP payload length rules
        length = avail
    if length < UDP_HLEN or length > avail:
        raise DecodeError("UDP length outside its IP payload")
    size = length - UDP_HLEN
    start = off + UDP_HLEN
    return UdpDatagram(ts, iface, family, src, dst, sport, dport, size, buf[start : start + size])
