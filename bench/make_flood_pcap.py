"""Generate a spoofed-SYN-flood capture with real handshakes mixed in, plus its ground truth.

    .venv/bin/python bench/make_flood_pcap.py --syns 2000000 --real 200 --out /tmp/flood.pcap

Writes a classic microsecond pcap (Ethernet) as a gateway's LAN side would see it:

- ``--syns`` spoofed SYNs at ``--rate`` packets/s, each from a random address of ``--spoof-net``
  (default 10.0.0.0/8) and a random source port, with a random ISN and IP ID, to one of a few
  target servers in 198.51.100.0/24 on port 80 or 443. Nothing ever answers them.
- ``--real`` complete handshakes (SYN, SYN+ACK, ACK, with Linux-style options and realistic
  timestamps: 1-80 ms to the server, 0.05-2 ms to the client) from distinct clients in
  192.168.0.0/16 to the same targets, interleaved at random positions of the flood.

The ground truth goes to ``--truth`` (default: ``--out`` with the suffix ``.json``): every real
handshake's client, client port, server, port and its two RTT halves in milliseconds (exact at the
file's microsecond resolution), and the flood's parameters.

Frames are packed with ``struct`` straight into a buffer, with correct IPv4 and TCP checksums, so
two million SYNs take seconds; the output is a pure function of the arguments (seeded RNG).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

PCAP_MAGIC = 0xA1B2C3D4  # classic pcap, microsecond timestamps (written little-endian)
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
ETH_P_IP = 0x0800  # RFC 894
IPPROTO_TCP = 6
IP_DF = 0x4000  # RFC 791: don't fragment
TH_SYN, TH_ACK = 0x02, 0x10  # RFC 9293 section 3.1

ATTACKER_MAC = bytes.fromhex("02000000aa01")  # locally administered
CLIENT_MAC = bytes.fromhex("020000000001")
GATEWAY_MAC = bytes.fromhex("020000000002")

TARGETS = tuple((f"198.51.100.{h}", port) for h in (10, 20, 30, 40) for port in (80, 443))
START = 1_700_000_000  # seconds; the capture's first packet

FILE_HDR = struct.Struct("<IHHiIII")
REC_HDR = struct.Struct("<IIII")
ETH = struct.Struct("!6s6sH")
IP4 = struct.Struct("!BBHHHBBH4s4s")  # RFC 791, no options
TCP = struct.Struct("!HHIIBBHHH")  # RFC 9293 section 3.1, without options
# A spoofed SYN in one struct: Ethernet, IPv4, TCP and one MSS option (RFC 9293 section 3.2).
SYN_FRAME = struct.Struct("!6s6sH BBHHHBBH4s4s HHIIBBHHH BBH")
SYN_TCP_LEN = 24
SYN_IP_LEN = 20 + SYN_TCP_LEN
SYN_FRAME_LEN = 14 + SYN_IP_LEN
SYN_RECORD = REC_HDR.size + SYN_FRAME_LEN
TCPOPT_MSS = 2  # RFC 9293 section 3.2
MSS = 1460
CHUNK = 65536  # frames packed per write


def _fold(s: int) -> int:
    """One's complement of the folded 16-bit one's-complement sum (RFC 1071)."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _words(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _ip_words(ip: int) -> int:
    return (ip >> 16) + (ip & 0xFFFF)


def linux_syn_options(tsval: int, wscale: int = 7) -> bytes:
    """MSS, SACK permitted, timestamps, NOP, window scale: 20 bytes, as Linux sends them."""
    return (
        struct.pack("!BBH", TCPOPT_MSS, 4, MSS)
        + b"\x04\x02"  # RFC 2018 SACK permitted
        + struct.pack("!BBII", 8, 10, tsval, 0)  # RFC 7323 timestamps
        + b"\x01"
        + struct.pack("!BBB", 3, 3, wscale)  # RFC 7323 window scale
    )


def frame(
    src_mac: bytes,
    dst_mac: bytes,
    src: int,
    dst: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    options: bytes,
    *,
    window: int = 64240,
    ttl: int = 64,
    ip_id: int = 0,
) -> bytes:
    """One Ethernet/IPv4/TCP frame with both checksums (the slow, general builder)."""
    tcp_len = TCP.size + len(options)
    off = (tcp_len // 4) << 4
    tcp = TCP.pack(sport, dport, seq, ack, off, flags, window, 0, 0) + options
    pseudo = _ip_words(src) + _ip_words(dst) + IPPROTO_TCP + tcp_len
    tcp = tcp[:16] + struct.pack("!H", _fold(pseudo + _words(tcp))) + tcp[18:]
    total = IP4.size + tcp_len
    s, d = src.to_bytes(4, "big"), dst.to_bytes(4, "big")
    hdr = IP4.pack(0x45, 0, total, ip_id, IP_DF, ttl, IPPROTO_TCP, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", _fold(_words(hdr))) + hdr[12:]
    return ETH.pack(dst_mac, src_mac, ETH_P_IP) + hdr + tcp


def real_handshakes(rng: random.Random, count: int, first_us: int, last_us: int) -> list[Any]:
    """``count`` handshakes from distinct clients, their packets as ``(ts_us, frame)``."""
    truth: list[dict[str, Any]] = []
    packets: list[tuple[int, bytes]] = []
    if count > 250 * 250:
        raise ValueError("at most 62500 real handshakes (distinct clients in 192.168.0.0/16)")
    for i in range(count):
        client = f"192.168.{i // 250}.{i % 250 + 2}"
        server, port = TARGETS[rng.randrange(len(TARGETS))]
        cport = rng.randint(32768, 60999)  # Linux ip_local_port_range
        rtt_us = rng.randint(1_000, 80_000)
        crtt_us = rng.randint(50, 2_000)
        syn_us = rng.randint(first_us, max(first_us, last_us - rtt_us - crtt_us))
        c, s = int(ipaddress.IPv4Address(client)), int(ipaddress.IPv4Address(server))
        cisn, sisn = rng.getrandbits(32), rng.getrandbits(32)
        cts, sts = rng.getrandbits(31), rng.getrandbits(31)
        syn = frame(CLIENT_MAC, GATEWAY_MAC, c, s, cport, port, cisn, 0, TH_SYN,
                    linux_syn_options(cts), ip_id=rng.getrandbits(16))  # fmt: skip
        synack_opts = (
            struct.pack("!BBH", TCPOPT_MSS, 4, MSS)
            + b"\x04\x02"
            + struct.pack("!BBII", 8, 10, sts, cts)
            + b"\x01"
            + struct.pack("!BBB", 3, 3, 7)
        )
        synack = frame(GATEWAY_MAC, CLIENT_MAC, s, c, port, cport, sisn, (cisn + 1) % 2**32,
                       TH_SYN | TH_ACK, synack_opts, window=65160, ttl=63)  # fmt: skip
        ack_opts = b"\x01\x01" + struct.pack("!BBII", 8, 10, cts + 1, sts)
        ack = frame(CLIENT_MAC, GATEWAY_MAC, c, s, cport, port, (cisn + 1) % 2**32,
                    (sisn + 1) % 2**32, TH_ACK, ack_opts, window=502)  # fmt: skip
        packets += [(syn_us, syn), (syn_us + rtt_us, synack), (syn_us + rtt_us + crtt_us, ack)]
        truth.append(
            {"client": client, "cport": cport, "server": server, "port": port,
             "syn_ts": syn_us / 1e6, "rtt_ms": rtt_us / 1000, "client_rtt_ms": crtt_us / 1000}
        )  # fmt: skip
    packets.sort(key=lambda p: p[0])
    return [truth, packets]


def write_flood(
    out: BinaryIO,
    *,
    syns: int,
    real: int,
    seed: int = 1,
    rate: int = 100_000,
    spoof_net: str = "10.0.0.0/8",
) -> dict[str, Any]:
    """Write the capture to ``out``; return the ground truth."""
    if syns < 0 or real < 0 or rate <= 0:
        raise ValueError("--syns and --real must be >= 0 and --rate > 0")
    net = ipaddress.IPv4Network(spoof_net)
    base, hostmask = int(net.network_address), int(net.hostmask)
    rng = random.Random(seed)
    first_us = START * 1_000_000
    duration_us = max(1, (syns * 1_000_000) // rate)
    last_us = first_us + duration_us
    truth, real_packets = real_handshakes(rng, real, first_us, last_us)
    real_packets.append((1 << 62, b""))  # sentinel
    ri = 0
    next_real = real_packets[0][0]

    # Per-target constants of the TCP checksum: destination address, protocol, TCP length,
    # destination port, data offset and flags, and the MSS option.
    targets = []
    for server, port in TARGETS:
        dst = int(ipaddress.IPv4Address(server))
        const = (_ip_words(dst) + IPPROTO_TCP + SYN_TCP_LEN + port
                 + ((SYN_TCP_LEN // 4) << 12 | TH_SYN) + (TCPOPT_MSS << 8 | 4) + MSS)  # fmt: skip
        ip_const = 0x4500 + SYN_IP_LEN + IP_DF + IPPROTO_TCP + _ip_words(dst)
        targets.append((dst.to_bytes(4, "big"), port, const, ip_const))
    ntargets = len(targets)

    out.write(FILE_HDR.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
    buf = bytearray(CHUNK * SYN_RECORD)
    pack_syn, pack_rec = SYN_FRAME.pack_into, REC_HDR.pack_into
    getrandbits, fold = rng.getrandbits, _fold
    written = real_written = 0
    i = 0
    while i < syns:
        n = min(CHUNK, syns - i)
        off = 0
        parts: list[bytes] = []
        for j in range(i, i + n):
            ts = first_us + (j * 1_000_000) // rate
            while next_real <= ts:  # real packets due before this SYN go first
                if off:
                    parts.append(bytes(buf[:off]))
                    off = 0
                fr = real_packets[ri][1]
                parts.append(REC_HDR.pack(next_real // 1_000_000, next_real % 1_000_000,
                                          len(fr), len(fr)) + fr)  # fmt: skip
                ri += 1
                real_written += 1
                next_real = real_packets[ri][0]
            r = getrandbits(84)
            src = base | (r & hostmask)
            sport = (r >> 32) & 0xFFFF
            if sport < 1024:
                sport += 1024
            ip_id = (r >> 48) & 0xFFFF
            dst, dport, const, ip_const = targets[((r >> 24) & 0xFF) % ntargets]
            isn = getrandbits(32)
            window = 1024 + ((r >> 64) & 0xFFFF) % 64000
            ttl = 64 - (r >> 80)  # 49..64: senders at a few hops
            src_words = (src >> 16) + (src & 0xFFFF)
            tcp_sum = fold(const + src_words + sport + (isn >> 16) + (isn & 0xFFFF) + window)
            ip_sum = fold(ip_const + src_words + ip_id + (ttl << 8))
            pack_rec(buf, off, ts // 1_000_000, ts % 1_000_000, SYN_FRAME_LEN, SYN_FRAME_LEN)
            pack_syn(
                buf, off + 16,
                GATEWAY_MAC, ATTACKER_MAC, ETH_P_IP,
                0x45, 0, SYN_IP_LEN, ip_id, IP_DF, ttl, IPPROTO_TCP, ip_sum,
                src.to_bytes(4, "big"), dst,
                sport, dport, isn, 0, (SYN_TCP_LEN // 4) << 4, TH_SYN, window, tcp_sum, 0,
                TCPOPT_MSS, 4, MSS,
            )  # fmt: skip
            off += SYN_RECORD
        if off:
            parts.append(bytes(buf[:off]))
        out.write(b"".join(parts))
        written += n
        i += n
    while ri < len(real_packets) - 1:  # real packets after the last SYN
        ts_us, fr = real_packets[ri]
        out.write(REC_HDR.pack(ts_us // 1_000_000, ts_us % 1_000_000, len(fr), len(fr)) + fr)
        ri += 1
        real_written += 1
    return {
        "seed": seed,
        "syns": written,
        "real": len(truth),
        "packets": written + real_written,
        "rate": rate,
        "spoof_net": str(net),
        "first_ts": first_us / 1e6,
        "flood_duration": duration_us / 1e6,
        "targets": [[s, p] for s, p in TARGETS],
        "handshakes": truth,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syns", type=int, required=True, help="spoofed SYNs")
    parser.add_argument("--real", type=int, required=True, help="complete real handshakes")
    parser.add_argument("--out", type=Path, required=True, help="the pcap to write")
    parser.add_argument("--truth", type=Path, help="ground truth JSON (default: OUT.json)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=int, default=100_000, help="flood packets/s (timestamps)")
    parser.add_argument("--spoof-net", default="10.0.0.0/8", help="e.g. 100.64.0.0/10")
    args = parser.parse_args(argv)
    truth_path = args.truth or args.out.with_suffix(".json")
    start = time.perf_counter()
    try:
        with args.out.open("wb") as out:
            truth = write_flood(
                out, syns=args.syns, real=args.real, seed=args.seed, rate=args.rate,
                spoof_net=args.spoof_net,
            )  # fmt: skip
    except ValueError as exc:
        print(f"make_flood_pcap: {exc}", file=sys.stderr)
        return 2
    truth_path.write_text(json.dumps(truth, indent=1))
    took = time.perf_counter() - start
    print(
        f"{args.out}: {truth['packets']:,} packets ({truth['syns']:,} spoofed SYNs, "
        f"{truth['real']} real handshakes) in {took:.1f} s; truth in {truth_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
