"""The reference decoder, built on dpkt: the same contract as the sensor's fast path
(:func:`net_gazer.sensor.decode.decode`), against which the tests check it frame by frame.

It is test code: the sensor never runs it, and dpkt is a development dependency only.
"""

from __future__ import annotations

import struct
from typing import Any

import dpkt

from net_gazer.sensor.decode import (
    BSD_AF_INET,
    BSD_AF_INET6,
    ETH_HLEN,
    ETH_MAX_LENGTH,
    ETH_P_IP,
    ETH_P_IPV6,
    IFACE_SHIFT,
    IPPROTO_ESP,
    IPPROTO_FRAGMENT,
    IPV4_MIN_HLEN,
    NULL_HLEN,
    PACKET_OUTGOING,
    SLL2_HLEN,
    SLL_HLEN,
    SLL_OUTGOING_BIT,
    TCP_MIN_HLEN,
    VLAN_TAG_LEN,
    VLAN_TPIDS,
    check_linktype,
)
from net_gazer.sensor.packet import (
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
    DecodeError,
    TcpSegment,
)

# --- Reference decoder ---------------------------------------------------------------------------
#
# dpkt parses every header here; this code only chooses the layering, for two reasons. dpkt's
# automatic decoding peels at most two VLAN tags (the inner one only if it is 0x8100), and its IPv6
# decoding fails with AttributeError on a fragment header followed by another extension header (a
# legal order: RFC 8200 section 4.1 puts AH after Fragment). So the link layers and IPv6 are
# unpacked one header at a time with dpkt's header classes, and IPv4 (and TCP inside it) with
# dpkt.ip.IP itself.


def decode_dpkt(linktype: int, ts: float, buf: bytes, iface: int = 0) -> TcpSegment | None:
    """The reference decoder, built on dpkt: the same contract as :func:`decode`.

    It agrees with :func:`decode` on every valid frame. On malformed frames it raises
    :class:`DecodeError` for what it detects, which need not be exactly the frames :func:`decode`
    rejects (dpkt is lenient by design; the checks here add what the contract requires).
    """
    try:
        return _decode_dpkt(linktype, ts, buf, iface)
    except DecodeError:
        raise
    except (dpkt.Error, struct.error, IndexError, KeyError, AttributeError, ValueError) as exc:
        raise DecodeError(f"malformed frame (dpkt: {type(exc).__name__}: {exc})") from None


def _header(cls: Any, buf: bytes) -> Any:
    """Unpack only the fixed header of dpkt packet class ``cls``; ``.data`` is the rest."""
    pkt = cls.__new__(cls)
    dpkt.Packet.unpack(pkt, buf)
    return pkt


def _decode_dpkt(linktype: int, ts: float, buf: bytes, iface: int) -> TcpSegment | None:
    if linktype == DLT_EN10MB:
        eth = _header(dpkt.ethernet.Ethernet, buf)
        if eth.type <= ETH_MAX_LENGTH:
            return None  # 802.3 length: LLC/SNAP, not IP
        etype, off = eth.type, ETH_HLEN
    elif linktype == DLT_LINUX_SLL:
        sll = _header(dpkt.sll.SLL, buf)
        etype, off = sll.ethtype, SLL_HLEN
        iface = (iface << IFACE_SHIFT) | (SLL_OUTGOING_BIT if sll.type == PACKET_OUTGOING else 0)
    elif linktype == DLT_LINUX_SLL2:
        sll2 = _header(dpkt.sll2.SLL2, buf)
        etype, off = sll2.ethtype, SLL2_HLEN
        iface = (iface << IFACE_SHIFT) | (sll2.intindex & 0xFFFFFFFF)
    elif linktype == DLT_NULL:
        family = _header(dpkt.loopback.Loopback, buf).family  # host order, as dpkt reads it
        if family in (BSD_AF_INET, BSD_AF_INET << 24):  # either writer byte order
            etype = ETH_P_IP
        elif family in BSD_AF_INET6 or (family >> 24 in BSD_AF_INET6 and not family & 0xFFFFFF):
            etype = ETH_P_IPV6
        else:
            return None
        off = NULL_HLEN
    elif linktype in (DLT_RAW, LINKTYPE_RAW, DLT_RAW_BSD, DLT_IPV4, DLT_IPV6):
        if not buf:
            raise DecodeError("empty raw IP packet")
        version = _header(dpkt.ip.IP, buf).v
        if version == 4 and linktype != DLT_IPV6:
            etype = ETH_P_IP
        elif version == 6 and linktype != DLT_IPV4:
            etype = ETH_P_IPV6
        else:
            raise DecodeError("bad IP version")
        off = 0
    else:
        check_linktype(linktype)
        raise AssertionError(f"link type {linktype} is supported but not decoded")

    while etype in VLAN_TPIDS:
        tag = _header(dpkt.ethernet.VLANtag8021Q, buf[off:])
        etype, off = tag.type, off + VLAN_TAG_LEN
    if etype == ETH_P_IP:
        return _dpkt_ipv4(ts, iface, buf[off:])
    if etype == ETH_P_IPV6:
        return _dpkt_ipv6(ts, iface, buf[off:])
    return None


def _dpkt_ipv4(ts: float, iface: int, net: bytes) -> TcpSegment | None:
    hdr = _header(dpkt.ip.IP, net)
    if hdr.v != 4:
        raise DecodeError("bad IP version")
    # dpkt.ip.IP decodes TCP too (and rejects IHL < 5 itself); anything else gets header checks.
    ip = dpkt.ip.IP(net) if hdr.p == IPPROTO_TCP and not hdr.offset else hdr
    ihl = ip.hl * 4
    if ihl < IPV4_MIN_HLEN:
        raise DecodeError("IPv4 IHL < 5")
    if len(net) < ihl:
        raise DecodeError("truncated IPv4 options")
    total = ip.len or len(net)
    if total < ihl:
        raise DecodeError("IPv4 total length < header length")
    if ip is hdr:
        return None
    return _dpkt_tcp(
        ts=ts,
        iface=iface,
        family=4,
        src=ip.src,
        dst=ip.dst,
        ttl=ip.ttl,
        ip_id=ip.id,
        data=ip.data,
        avail=total - ihl,
    )


def _dpkt_ipv6(ts: float, iface: int, net: bytes) -> TcpSegment | None:
    ip6 = _header(dpkt.ip6.IP6, net)
    if ip6.v != 6:
        raise DecodeError("bad IP version")
    rest = ip6.data[: ip6.plen] if ip6.plen else ip6.data  # 0: jumbogram or offload, as captured
    avail = len(rest) if ip6.plen == 0 else ip6.plen
    nxt = ip6.nxt
    while nxt != IPPROTO_TCP:
        if nxt not in dpkt.ip6.EXT_HDRS_CLS or nxt == IPPROTO_ESP:
            return None
        ext = dpkt.ip6.EXT_HDRS_CLS[nxt](rest)
        if nxt == IPPROTO_FRAGMENT and ext.frag_off:
            return None
        if ext.length > len(rest):
            raise DecodeError("IPv6 extension headers run past the payload length")
        rest, avail, nxt = rest[ext.length :], avail - ext.length, ext.nxt
    return _dpkt_tcp(
        ts=ts,
        iface=iface,
        family=6,
        src=ip6.src,
        dst=ip6.dst,
        ttl=ip6.hlim,
        ip_id=0,
        data=rest,
        avail=avail,
    )


def _dpkt_tcp(
    *,
    ts: float,
    iface: int,
    family: int,
    src: bytes,
    dst: bytes,
    ttl: int,
    ip_id: int,
    data: object,
    avail: int,
) -> TcpSegment:
    # dpkt slices the IP payload to the IP length, so a too-short payload fails to parse here.
    tcp = data if isinstance(data, dpkt.tcp.TCP) else dpkt.tcp.TCP(data)
    thl = tcp.off * 4
    if len(tcp.opts) < thl - TCP_MIN_HLEN or avail < thl:
        raise DecodeError("truncated TCP options")
    return TcpSegment(
        ts=ts,
        iface=iface,
        family=family,
        src=bytes(src),
        dst=bytes(dst),
        sport=tcp.sport,
        dport=tcp.dport,
        seq=tcp.seq,
        ack=tcp.ack,
        flags=tcp.flags & 0xFF,
        window=tcp.win,
        payload_len=avail - thl,
        options=bytes(tcp.opts),
        ttl=ttl,
        ip_id=ip_id,
    )
