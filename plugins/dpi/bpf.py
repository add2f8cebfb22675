"""The DPI plugin's kernel filter fragment: only the packets it reads, on every flow.

- TCP segments whose payload starts a TLS handshake record holding a ClientHello: content type
  22, record version 3.x, handshake type 1 (RFC 8446 sections 5.1 and 4);
- TCP segments whose payload starts an HTTP/1.x request line (the first four bytes of a method,
  RFC 9110 section 9);
- DNS from port 53, over UDP or TCP (answers).

A BPF load past the end of a packet ends the whole filter program with "drop" (and libpcap keeps
the order of ``or`` alternatives), so a fragment that read the payload of a pure ACK would drop
packets other plugins ask for. Every payload load is therefore guarded: the IP length must cover
the bytes read, and so must the frame length (``len``), with room for the longest link header the
sensor reads before IP (SLL2 and two VLAN tags, 28 bytes). A capture file cut by a small snaplen
can still end the program early; live, the kernel filters whole packets.

``tcp[...]`` reaches only IPv4 (pcap-filter(7)); for IPv6 the TCP header is read at the fixed
offset after the 40-byte header, when the next header is TCP. IPv6 packets with extension headers
before TCP are not inspected by this fragment.
"""

from __future__ import annotations

#: The longest link-layer header before IP: Linux SLL2 (20 bytes) plus two VLAN tags.
MAX_LINK_HEADER = 28
#: First four bytes of the request methods (RFC 9110 section 9), as 32-bit words.
HTTP_WORDS = (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC")
#: Payload bytes a request needs at least ("GET / HTTP/1.1\r\n").
HTTP_MIN = 16
#: Payload bytes the ClientHello test reads (record header, handshake type).
TLS_MIN = 6


def _v4(need: int, test: str) -> str:
    ihl, thl = "((ip[0] & 0xf) << 2)", "((tcp[12] & 0xf0) >> 2)"
    return (
        f"(ip and tcp and ip[2:2] >= {ihl} + {thl} + {need}"
        f" and len >= {MAX_LINK_HEADER} + {ihl} + {thl} + {need}"
        f" and {test.format(p=thl, base='tcp')})"
    )


def _v6(need: int, test: str) -> str:
    thl = "((ip6[52] & 0xf0) >> 2)"
    return (
        f"(ip6 and ip6[6] = 6 and ip6[4:2] >= {thl} + {need}"
        f" and len >= {MAX_LINK_HEADER} + 40 + {thl} + {need}"
        f" and {test.format(p=f'40 + {thl}', base='ip6')})"
    )


TLS_TEST = "{base}[{p}] = 0x16 and {base}[{p} + 1] = 3 and {base}[{p} + 5] = 1"
HTTP_TEST = "(" + " or ".join(f"{{base}}[{{p}}:4] = 0x{w.hex()}" for w in HTTP_WORDS) + ")"


def bpf_fragment() -> str:
    return " or ".join(
        [
            "(udp src port 53)",
            "(tcp src port 53)",
            _v4(TLS_MIN, TLS_TEST),
            _v6(TLS_MIN, TLS_TEST),
            _v4(HTTP_MIN, HTTP_TEST),
            _v6(HTTP_MIN, HTTP_TEST),
        ]
    )
