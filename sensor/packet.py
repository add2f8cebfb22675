"""The decoded TCP segment that the handshake tracker and packet plugins consume.

Decoding (``decode.py``) turns a captured frame into a :class:`TcpSegment`; nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# libpcap link types (https://www.tcpdump.org/linktypes.html). DLT_RAW is 12 on Linux headers and
# 14 on some BSDs; the LINKTYPE_ value written to files is 101.
DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW = 12
DLT_RAW_BSD = 14
LINKTYPE_RAW = 101
DLT_LINUX_SLL = 113
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = frozenset(
    {
        DLT_NULL,
        DLT_EN10MB,
        DLT_RAW,
        DLT_RAW_BSD,
        LINKTYPE_RAW,
        DLT_LINUX_SLL,
        DLT_IPV4,
        DLT_IPV6,
        DLT_LINUX_SLL2,
    }
)

# TCP flags, RFC 9293 section 3.1 (plus ECE/CWR from RFC 3168).
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40
TH_CWR = 0x80

IPPROTO_TCP = 6
IPPROTO_UDP = 17


@dataclass(slots=True)
class TcpSegment:
    """One TCP segment as seen on the wire.

    ``src``/``dst`` are packed addresses (4 bytes for IPv4, 16 for IPv6). ``iface`` tells apart the
    copies of one packet seen on several captured interfaces: the capture index, refined by the
    SLL2 interface index or the SLL packet direction for ``-i any``.

    ``payload_len`` is the length the IP header gives; :attr:`payload` is what was captured of it
    (the snaplen may cut it short). The frame is kept by reference, so reading no payload costs
    nothing; the two fields behind it take no part in comparisons.
    """

    ts: float
    iface: int
    family: int  # 4 or 6
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload_len: int
    options: bytes
    ttl: int
    ip_id: int
    #: The captured frame, and where the TCP payload starts in it.
    frame: bytes = field(default=b"", repr=False, compare=False)
    payload_off: int = field(default=0, repr=False, compare=False)

    @property
    def payload(self) -> bytes:
        """The captured part of the TCP payload (at most ``payload_len`` bytes)."""
        return self.frame[self.payload_off : self.payload_off + self.payload_len]

    @property
    def src_text(self) -> str:
        return str(ipaddress.ip_address(self.src))

    @property
    def dst_text(self) -> str:
        return str(ipaddress.ip_address(self.dst))


@dataclass(slots=True)
class UdpDatagram:
    """One UDP datagram as seen on the wire (for plugins that read UDP, such as DNS answers).

    ``length`` is the payload length the UDP header gives; ``payload`` is what was captured of it.
    """

    ts: float
    iface: int
    family: int  # 4 or 6
    src: bytes
    dst: bytes
    sport: int
    dport: int
    length: int
    payload: bytes

    @property
    def src_text(self) -> str:
        return str(ipaddress.ip_address(self.src))

    @property
    def dst_text(self) -> str:
        return str(ipaddress.ip_address(self.dst))


class DecodeError(ValueError):
    """A frame that claims to be TCP/IP but is malformed or truncated. Counted and skipped."""
