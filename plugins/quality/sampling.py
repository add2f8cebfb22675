"""Which flows the quality plugin follows: one in ``rate``, chosen by a hash of the flow's
addresses and ports that is the same in both directions, so that both halves of a flow pass or
fail together, and computed alike in the kernel filter (BPF) and here. No I/O.

The hash, on unsigned 32-bit integers (``^`` xor, ``*`` wraps modulo 2**32)::

    a = src ^ dst                     # IPv4: the addresses; IPv6: the xor of all eight
                                      # 32-bit words of both addresses
    x = a ^ (a >> 16) ^ sport ^ dport
    h = (x * 2654435761) >> 16        # Knuth's multiplicative hash: the high bits mix all of x
    followed  <=>  h % rate == 0

Swapping source and destination changes none of it. The multiplication matters: Linux picks even
ephemeral ports for ``connect()``, so the low bits of the ports alone would follow half the
residues or none.

In the kernel filter, ``tcp[...]`` reaches only IPv4 (pcap-filter(7)), so IPv6 reads the TCP ports
at the fixed offset after a 40-byte header (``ip6[40:2]``, ``ip6[42:2]``) when the next header is
TCP. An IPv6 packet with extension headers before TCP cannot be hashed in BPF: every IPv6 packet
whose first extension header is followed by TCP or by another extension header passes the kernel
filter (``ip6[40]`` is the first extension header's next-header field, whatever its type), and
the sensor samples those with the same hash, so a followed flow is complete either way.
(``ip6 protochain 6`` would say "TCP" exactly, but libpcap cannot compile it after the ``vlan``
keyword on a live interface, where VLAN tags make the header offsets variable.)
"""

from __future__ import annotations

MULTIPLIER = 2654435761  # 0x9E3779B1, Knuth's golden-ratio multiplier
#: RFC 8200 section 4: hop-by-hop, routing, fragment, AH (RFC 4302), destination options.
IPV6_EXTENSION_HEADERS = (0, 43, 44, 51, 60)
MAX_RATE = 65536  # the hash has 16 bits


def flow_hash(src: bytes, dst: bytes, sport: int, dport: int) -> int:
    """The 16-bit hash of a flow (the same for both directions)."""
    if len(src) == 4:
        a = int.from_bytes(src, "big") ^ int.from_bytes(dst, "big")
    else:
        both = int.from_bytes(src, "big") ^ int.from_bytes(dst, "big")  # 128 bits
        a = 0
        while both:
            a ^= both & 0xFFFF_FFFF
            both >>= 32
    x = a ^ (a >> 16) ^ sport ^ dport
    return ((x * MULTIPLIER) & 0xFFFF_FFFF) >> 16


def followed(src: bytes, dst: bytes, sport: int, dport: int, rate: int) -> bool:
    return rate <= 1 or flow_hash(src, dst, sport, dport) % rate == 0


def _hash_expr(addr: str, ports: str) -> str:
    return f"((((({addr}) ^ (({addr}) >> 16)) ^ ({ports})) * {MULTIPLIER}) >> 16)"


def bpf_fragment(rate: int) -> str:
    """The kernel filter fragment that passes the followed flows' TCP segments."""
    if rate <= 1:
        return "tcp"
    v4 = _hash_expr("ip[12:4] ^ ip[16:4]", "tcp[0:2] ^ tcp[2:2]")
    words = " ^ ".join(f"ip6[{off}:4]" for off in range(8, 40, 4))
    v6 = _hash_expr(words, "ip6[40:2] ^ ip6[42:2]")
    return (
        f"(ip and tcp and ({v4} % {rate} = 0))"
        f" or (ip6 and ip6[6] = 6 and ({v6} % {rate} = 0))"
        f" or (ip6 and ({_one_of('ip6[6]', IPV6_EXTENSION_HEADERS)})"
        f" and ({_one_of('ip6[40]', (6, *IPV6_EXTENSION_HEADERS))}))"
    )


def _one_of(field: str, values: tuple[int, ...]) -> str:
    return " or ".join(f"{field} = {v}" for v in values)
