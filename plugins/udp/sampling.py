"""Which UDP flows the udp plugin follows: one in ``sample_rate``, chosen by a hash of the flow's
addresses and ports that is the same in both directions and is computed alike in the kernel
filter (BPF) and here, so both directions of a flow pass or fail together. No I/O.

The hash is the quality plugin's (docs/quality.md), on the UDP ports::

    a = src ^ dst                     # IPv4: the addresses; IPv6: the xor of all eight
                                      # 32-bit words of both addresses
    x = a ^ (a >> 16) ^ sport ^ dport
    h = (x * 2654435761) >> 16
    followed  <=>  h % rate == 0

``udp[...]`` reaches only IPv4 (pcap-filter(7)), so IPv6 reads the ports at the fixed offset after
the 40-byte header when the next header is UDP; an IPv6 packet with extension headers passes the
kernel filter when its first extension header is followed by UDP or another extension header,
and the sensor samples it with the same hash.
"""

from __future__ import annotations

MULTIPLIER = 2654435761  # 0x9E3779B1, Knuth's golden-ratio multiplier
#: RFC 8200 section 4: hop-by-hop, routing, fragment, AH (RFC 4302), destination options.
IPV6_EXTENSION_HEADERS = (0, 43, 44, 51, 60)
IPPROTO_UDP = 17
MAX_RATE = 65536  # the hash has 16 bits


def flow_hash(src: bytes, dst: bytes, sport: int, dport: int) -> int:
    """The 16-bit hash of a flow (the same for both directions)."""
    if len(src) == 4:
        a = int.from_bytes(src, "big") ^ int.from_bytes(dst, "big")
    else:
        both = int.from_bytes(src, "big") ^ int.from_bytes(dst, "big")
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


def _one_of(field: str, values: tuple[int, ...]) -> str:
    return " or ".join(f"{field} = {v}" for v in values)


def bpf_fragment(rate: int) -> str:
    """The kernel filter fragment that passes the followed flows' UDP datagrams."""
    if rate <= 1:
        return "udp"
    v4 = _hash_expr("ip[12:4] ^ ip[16:4]", "udp[0:2] ^ udp[2:2]")
    words = " ^ ".join(f"ip6[{off}:4]" for off in range(8, 40, 4))
    v6 = _hash_expr(words, "ip6[40:2] ^ ip6[42:2]")
    return (
        f"(ip and udp and ({v4} % {rate} = 0))"
        f" or (ip6 and ip6[6] = {IPPROTO_UDP} and ({v6} % {rate} = 0))"
        f" or (ip6 and ({_one_of('ip6[6]', IPV6_EXTENSION_HEADERS)})"
        f" and ({_one_of('ip6[40]', (IPPROTO_UDP, *IPV6_EXTENSION_HEADERS))}))"
    )
