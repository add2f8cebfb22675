#!/usr/bin/env python3
"""Write the committed pcap fixtures and their expected outcomes.

    python tests/pcaps/make_pcaps.py [--out DIR]      # default: this file's folder

Every scenario is data in this file. The expected JSON next to each pcap is computed from that data
alone (never by running net-gazer code), so a fixture states what the tracker must find. The output
is deterministic (fixed seeds, exact timestamps); tests/test_fixtures.py regenerates everything into
a temporary folder and compares bytes, so the committed files cannot go stale.

Handshake semantics (the tracker's contract):

- the client sends SYN (seq = ISN_c), the server SYN+ACK (ack = ISN_c + 1 mod 2**32), the client
  ACK (ack = ISN_s + 1 mod 2**32);
- ``rtt`` = first SYN+ACK - SYN (the sensor-to-server half); ``client_rtt`` = final ACK - SYN+ACK;
- Karn's rule: a retransmitted SYN (same ISN) gives no ``rtt`` sample, a retransmitted SYN+ACK no
  ``client_rtt`` sample;
- ``attempts`` counts distinct SYNs (a retransmission is the same attempt); ``refused`` the attempts
  answered by RST+ACK (ack = ISN_c + 1); ``unanswered`` those that got nothing; ``abandoned`` those
  answered by SYN+ACK that the client never completed; ``count`` the completed handshakes;
  ``evicted`` is 0 (no fixture fills the table). ``syn_retransmits`` counts the SYNs after the
  first of every attempt. RTT samples come from completed handshakes only, and ``rtt_ms`` /
  ``client_rtt_ms`` are their means. A connection first seen mid-flow (no SYN) yields nothing.
- A flow captured on two interfaces (sll.pcap, sll2.pcap: every packet appears twice) is counted
  once, keyed by the interface its first SYN was seen on, and timed with the copies seen on that
  interface. In sll2.pcap the copies on the second interface trail by ``SLL2_COPY_DELAY_US``; the
  server's packets reach the first interface (the LAN) that much after the second (the WAN), so
  there ``rtt`` is longer, and ``client_rtt`` shorter, by that delay than at the WAN. In sll.pcap
  the first copy of every packet is the incoming one (pkttype 0), so all are timed on it.

Expected JSON: one object per (client, server, dport), sorted, with RTTs in milliseconds rounded to
3 decimals (timestamps are whole microseconds, so these are exact). hostile.pcap's expected file is
``{"connections": [...], "malformed": N}``. manifest.json gives, per file, the link type and how many
frames are TCP segments, malformed, or other (well-formed, not TCP), again from the definitions.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for frames.py

import frames as F

# TCP flags (RFC 9293 section 3.1).
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MOD32 = 1 << 32

# libpcap link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

BASE_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z, in microseconds
SLL2_LAN_IFINDEX, SLL2_WAN_IFINDEX = 2, 3
SLL2_COPY_DELAY_US = 7  # the forwarded copy appears on the other interface 7 µs later
SLL_COPY_DELAY_US = 4
PACKET_HOST, PACKET_OUTGOING = 0, 4  # linux/if_packet.h
RETX_US = 1_000_000  # Linux initial RTO (RFC 6298 section 2.1: 1 s)


@dataclass(frozen=True)
class Flow:
    """One TCP connection as the sensor sees it. Offsets are µs after ``start_us``.

    ``syn``: offsets of each SYN sent (more than one = retransmitted, same ISN); empty for a
    connection first seen mid-flow. ``synack``: offsets of each SYN+ACK (more than one =
    retransmitted). ``ack``: the client's handshake-completing ACK. ``rst``: the server's RST+ACK
    refusing the SYN. ``data``: ``(offset, "c" | "s", payload bytes)`` after the handshake; 0 bytes
    is a pure ACK. ``fin``: offsets of client FIN, server FIN, client last ACK.
    """

    client: str
    server: str
    sport: int
    dport: int
    start_us: int
    isn_c: int
    isn_s: int
    syn: tuple[int, ...] = (0,)
    synack: tuple[int, ...] = ()
    ack: int | None = None
    rst: int | None = None
    data: tuple[tuple[int, str, int], ...] = ()
    fin: tuple[int, int, int] | None = None
    vlans: tuple[int | tuple[int, int], ...] = ()
    server_ttl: int = 52


def completed(
    client: str,
    server: str,
    sport: int,
    dport: int,
    start_us: int,
    rtt_us: int,
    client_rtt_us: int,
    *,
    isn_c: int,
    isn_s: int,
    exchange: Iterable[tuple[str, int]] = (("c", 120), ("s", 900), ("c", 0)),
    close: bool = True,
    vlans: tuple[int | tuple[int, int], ...] = (),
) -> Flow:
    """A clean handshake, then a request/response exchange and a FIN close, timed by the RTTs."""
    ack = rtt_us + client_rtt_us
    t = ack + 150
    data = []
    for side, size in exchange:
        data.append((t, side, size))
        t += rtt_us + client_rtt_us if side == "c" else 400
    fin = (t, t + rtt_us, t + rtt_us + client_rtt_us) if close else None
    return Flow(
        client,
        server,
        sport,
        dport,
        start_us,
        isn_c,
        isn_s,
        syn=(0,),
        synack=(rtt_us,),
        ack=ack,
        data=tuple(data),
        fin=fin,
        vlans=vlans,
    )


# --- Packets of a flow ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pkt:
    t_us: int
    c2s: bool  # client to server
    ip: bytes  # the IP packet
    vlans: tuple[int | tuple[int, int], ...] = ()


def flow_packets(f: Flow) -> list[Pkt]:
    """Every IP packet of ``f``, in the order they were sent (the list is sorted later)."""
    out: list[Pkt] = []
    seed = int.from_bytes(ipaddress.ip_address(f.client).packed[-2:], "big") ^ f.sport
    ip_id = [seed * 7 % 65536, 0]  # client / server IP ID counters (Linux: per-flow start)
    ts_c0, ts_s0 = (seed * 131) % 100_000_000, (seed * 977) % 100_000_000 + 5_000

    def tsval(side: int, off: int) -> int:
        return ((ts_c0, ts_s0)[side] + (f.start_us + off) // 1000) % MOD32

    def send(
        off: int,
        c2s: bool,
        flags: int,
        seq: int,
        ack: int,
        payload: int = 0,
        syn_opts: bool = False,
    ) -> None:
        side = 0 if c2s else 1
        src, dst = (f.client, f.server) if c2s else (f.server, f.client)
        sport, dport = (f.sport, f.dport) if c2s else (f.dport, f.sport)
        if flags & RST:
            opts, window = b"", 0
        elif syn_opts:
            opts = F.syn_options(
                mss=1460 if ":" not in f.client else 1440,
                tsval=tsval(side, off),
                tsecr=0 if c2s else tsval(0, f.syn[-1]),
                wscale=7,
            )
            window = 64240 if c2s else 65160
        else:
            opts = F.ts_options(tsval(side, off), tsval(1 - side, max(0, off - 1000)))
            window = 502 if c2s else 509
        ip = F.tcp(
            src,
            dst,
            sport,
            dport,
            flags,
            seq=seq % MOD32,
            ack=ack % MOD32,
            payload=bytes((i * 37 + seed) % 256 for i in range(payload)),
            options=opts,
            window=window,
            ttl=64 if c2s else f.server_ttl,
            ip_id=ip_id[side],
        )
        ip_id[side] = (ip_id[side] + 1) % 65536 if c2s else 0
        out.append(Pkt(f.start_us + off, c2s, ip, f.vlans))

    c_nxt, s_nxt = f.isn_c, f.isn_s
    if f.syn:
        for off in f.syn:
            send(off, True, SYN, f.isn_c, 0, syn_opts=True)
        c_nxt += 1
        if f.rst is not None:
            send(f.rst, False, RST | ACK, 0, c_nxt)
        for off in f.synack:
            send(off, False, SYN | ACK, f.isn_s, c_nxt, syn_opts=True)
        if f.synack:
            s_nxt += 1
        if f.ack is not None:
            send(f.ack, True, ACK, c_nxt, s_nxt)
    for off, side, size in f.data:
        if side == "c":
            send(off, True, (PSH | ACK) if size else ACK, c_nxt, s_nxt, payload=size)
            c_nxt += size
        else:
            send(off, False, (PSH | ACK) if size else ACK, s_nxt, c_nxt, payload=size)
            s_nxt += size
    if f.fin is not None:
        send(f.fin[0], True, FIN | ACK, c_nxt, s_nxt)
        c_nxt += 1
        send(f.fin[1], False, FIN | ACK, s_nxt, c_nxt)
        s_nxt += 1
        send(f.fin[2], True, ACK, c_nxt, s_nxt)
    return out


# --- Expected outcome -----------------------------------------------------------------------------


def _ms(us: int) -> float:
    return round(us / 1000, 3)


def _sort_key(key: tuple[str, str, int]) -> tuple[int, bytes, int, bytes, int]:
    c, sv = ipaddress.ip_address(key[0]), ipaddress.ip_address(key[1])
    return (c.version, c.packed, sv.version, sv.packed, key[2])


def expected(flows: Iterable[Flow], s2c_delay_us: int = 0) -> list[dict[str, Any]]:
    """Aggregate per (client, server, dport), straight from the flow definitions.

    ``s2c_delay_us``: how much later than defined the server's packets are seen on the interface
    the flow is keyed by (sll2.pcap); 0 elsewhere.
    """
    agg: dict[tuple[str, str, int], dict[str, Any]] = {}
    rtts: dict[tuple[str, str, int], tuple[list[int], list[int]]] = {}
    for f in flows:
        if not f.syn:
            continue  # first seen mid-flow: not a handshake
        key = (
            str(ipaddress.ip_address(f.client)),
            str(ipaddress.ip_address(f.server)),
            f.dport,
        )
        e = agg.setdefault(
            key,
            {"client": key[0], "server": key[1], "dport": key[2], "count": 0, "attempts": 0,
             "refused": 0, "unanswered": 0, "abandoned": 0, "evicted": 0, "syn_retransmits": 0},
        )  # fmt: skip
        rtt, crtt = rtts.setdefault(key, ([], []))
        e["attempts"] += 1
        e["syn_retransmits"] += len(f.syn) - 1
        done = bool(f.synack) and f.ack is not None
        if done:
            e["count"] += 1
        elif f.rst is not None:
            e["refused"] += 1
        elif f.synack:
            e["abandoned"] += 1
        else:
            e["unanswered"] += 1
        if done and len(f.syn) == 1:
            rtt.append(f.synack[0] + s2c_delay_us - f.syn[0])
        if done and len(f.synack) == 1:
            assert f.ack is not None
            crtt.append(f.ack - f.synack[0] - s2c_delay_us)
    result = []
    for key in sorted(agg, key=_sort_key):
        e = agg[key]
        rtt, crtt = rtts[key]
        e["rtt_ms_min"] = _ms(min(rtt)) if rtt else None
        e["rtt_ms_max"] = _ms(max(rtt)) if rtt else None
        e["rtt_samples"] = len(rtt)
        e["client_rtt_ms_min"] = _ms(min(crtt)) if crtt else None
        e["client_rtt_ms_max"] = _ms(max(crtt)) if crtt else None
        e["client_rtt_samples"] = len(crtt)
        e["rtt_ms"] = round(sum(rtt) / len(rtt) / 1000, 6) if rtt else None
        e["client_rtt_ms"] = round(sum(crtt) / len(crtt) / 1000, 6) if crtt else None
        result.append(e)
    return result


# --- Writing ----------------------------------------------------------------------------------------


def _ts(us: int) -> Decimal:
    return Decimal(us).scaleb(-6)


@dataclass
class Capture:
    """Frames of one pcap, with the counts the manifest reports."""

    linktype: int
    #: t_us, order, buf, original length, kind ("tcp", "malformed" or "other")
    frames: list[tuple[int, int, bytes, int, str]] = field(default_factory=list)
    tcp: int = 0
    malformed: int = 0
    other: int = 0

    def add(self, t_us: int, buf: bytes, kind: str, orig_len: int | None = None) -> None:
        self.frames.append(
            (t_us, len(self.frames), buf, len(buf) if orig_len is None else orig_len, kind)
        )
        setattr(self, kind, getattr(self, kind) + 1)

    def write(self, path: Path, nano: bool = False) -> None:
        ordered = sorted(self.frames)
        F.write_pcap(
            path, self.linktype, [(_ts(t), buf, n) for t, _, buf, n, _ in ordered], nano=nano
        )

    def manifest(self) -> dict[str, int]:
        return {
            "linktype": self.linktype,
            "frames": len(self.frames),
            "tcp_segments": self.tcp,
            "malformed": self.malformed,
            "other": self.other,
        }


def ether_for(p: Pkt) -> bytes:
    src, dst = (F.CLIENT_MAC, F.GATEWAY_MAC) if p.c2s else (F.GATEWAY_MAC, F.CLIENT_MAC)
    return F.ether(p.ip, vlans=p.vlans, src_mac=src, dst_mac=dst)


def add_flows_ether(cap: Capture, flows: Iterable[Flow]) -> None:
    for f in flows:
        for p in flow_packets(f):
            cap.add(p.t_us, ether_for(p), "tcp")


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


# --- handshakes.pcap ----------------------------------------------------------------------------------


def ms(x: float) -> int:
    """Milliseconds as a whole number of microseconds (scenario tables read in ms)."""
    return round(x * 1000)


def s(x: float) -> int:
    """Seconds after BASE_US, as absolute microseconds."""
    return BASE_US + round(x * 1_000_000)


HANDSHAKES: list[Flow] = [
    # Three clean completions between different pairs, distinct RTTs.
    completed("192.168.1.10", "198.51.100.10", 40001, 443, s(0.1), ms(23.456), ms(0.321),
              isn_c=0x1A2B3C4D, isn_s=0x5E6F7081),
    completed("192.168.1.11", "203.0.113.20", 40002, 80, s(0.15), ms(87.654), ms(1.234),
              isn_c=0x00000100, isn_s=0x7FFFFFFF),
    completed("10.1.2.3", "10.20.0.5", 40003, 22, s(0.2), ms(1.111), ms(0.055),
              isn_c=0xDEADBEEF, isn_s=0x0BADF00D),
    # Two completions on one (client, server, dport), different source ports: count 2.
    completed("192.168.1.12", "198.51.100.30", 41000, 8080, s(0.25), ms(12.345), ms(0.4),
              isn_c=0x11111111, isn_s=0x22222222),
    completed("192.168.1.12", "198.51.100.30", 41001, 8080, s(0.3), ms(15.678), ms(0.45),
              isn_c=0x33333333, isn_s=0x44444444),
    # SYN retransmitted (same ISN) before the answer: no rtt sample (Karn), client_rtt present.
    Flow("192.168.1.13", "203.0.113.40", 42000, 443, s(0.35), 0x55555555, 0x66666666,
         syn=(0, RETX_US), synack=(RETX_US + ms(31.0),), ack=RETX_US + ms(31.0) + ms(0.222),
         fin=(RETX_US + ms(40), RETX_US + ms(71), RETX_US + ms(71.3))),
    # SYN+ACK retransmitted (the first was lost past the sensor): rtt present, no client_rtt.
    Flow("192.168.1.10", "203.0.113.41", 42001, 443, s(0.4), 0x77777777, 0x88888888,
         synack=(ms(44.444), ms(44.444) + RETX_US), ack=ms(44.444) + RETX_US + ms(0.5),
         data=((ms(44.444) + RETX_US + ms(1), "c", 300), (ms(44.444) + RETX_US + ms(47), "s", 0))),
    # Refused: RST+ACK (ack = ISN_c + 1).
    Flow("192.168.1.11", "198.51.100.50", 42002, 8443, s(0.45), 0x99999999, 0,
         rst=ms(30.303)),
    # Unanswered: the SYN retransmitted twice (1 s, then 2 s later), still one attempt.
    Flow("192.168.1.12", "203.0.113.99", 42003, 443, s(0.5), 0xAAAAAAAA, 0,
         syn=(0, RETX_US, 3 * RETX_US)),
    # Abandoned: answered by SYN+ACK (retransmitted once by the server), never completed.
    Flow("192.168.1.14", "198.51.100.31", 42004, 443, s(0.52), 0x13131313, 0x14141414,
         synack=(ms(20.2), ms(20.2) + RETX_US)),
    # Abandoned after a retransmitted SYN.
    Flow("192.168.1.14", "198.51.100.31", 42005, 443, s(0.53), 0x15151515, 0x16161616,
         syn=(0, RETX_US), synack=(RETX_US + ms(21.0),)),
    # IPv6.
    completed("2001:db8:1::10", "2001:db8:2::20", 43000, 443, s(0.55), ms(33.333), ms(0.444),
              isn_c=0xBBBBBBBB, isn_s=0xCCCCCCCC),
    # 802.1Q-tagged (VLAN 100).
    completed("192.168.100.10", "198.51.100.60", 43001, 80, s(0.6), ms(5.555), ms(0.111),
              isn_c=0xDDDDDDDD, isn_s=0xEEEEEEEE, vlans=(100,)),
    # Client ISN 2**32 - 1: the SYN+ACK acknowledges 0.
    completed("192.168.1.13", "198.51.100.70", 43002, 443, s(0.65), ms(9.876), ms(0.5),
              isn_c=0xFFFFFFFF, isn_s=0x12345678),
    # Server ISN 2**32 - 1: the final ACK acknowledges 0, and the data wraps too.
    completed("192.168.1.13", "198.51.100.71", 43003, 443, s(0.7), ms(19.876), ms(0.6),
              isn_c=0x87654321, isn_s=0xFFFFFFFF),
    # Mid-flow: data with ACK only, no SYN seen: must produce nothing.
    Flow("192.168.1.10", "203.0.113.50", 50000, 443, s(0.75), 0x31415926, 0x27182818, syn=(),
         data=((0, "c", 200), (ms(20), "s", 1200), (ms(20.3), "c", 0), (ms(25), "s", 600),
               (ms(25.2), "c", 0)),
         fin=(ms(30), ms(50), ms(50.4))),
]  # fmt: skip


def make_handshakes(out: Path) -> Capture:
    cap = Capture(LINKTYPE_ETHERNET)
    add_flows_ether(cap, HANDSHAKES)
    # Noise: ARP, DNS over UDP (query and answer), ICMP echo.
    cap.add(s(0.05), F.arp_request(F.CLIENT_MAC, "192.168.1.10", "192.168.1.1"), "other")
    query = F.udp("192.168.1.10", "10.0.0.53", 53001, 53, payload=b"\x12\x34\x01\x00" + bytes(8))
    cap.add(s(0.06), F.ether(query), "other")
    answer = F.udp("10.0.0.53", "192.168.1.10", 53, 53001, payload=b"\x12\x34\x81\x80" + bytes(8))
    cap.add(s(0.061), F.ether(answer, src_mac=F.GATEWAY_MAC, dst_mac=F.CLIENT_MAC), "other")
    cap.add(s(0.07), F.ether(F.icmp_echo("192.168.1.11", "198.51.100.10")), "other")
    q6 = F.udp("2001:db8:1::10", "2001:db8:2::53", 53002, 53, payload=bytes(12))
    cap.add(s(0.08), F.ether(q6), "other")
    cap.write(out / "handshakes.pcap")
    write_json(out / "handshakes.expected.json", expected(HANDSHAKES))
    return cap


# --- sll2.pcap / sll.pcap: every packet seen on two interfaces -------------------------------------

DUAL_IFACE: list[Flow] = [
    completed("192.168.1.10", "198.51.100.80", 44000, 443, s(1.0), ms(17.5), ms(0.25),
              isn_c=0x0A0A0A0A, isn_s=0x0B0B0B0B),
    completed("192.168.1.11", "203.0.113.81", 44001, 80, s(1.02), ms(61.0), ms(0.75),
              isn_c=0x0C0C0C0C, isn_s=0x0D0D0D0D),
    completed("192.168.1.11", "203.0.113.81", 44002, 80, s(1.2), ms(58.25), ms(0.5),
              isn_c=0x0E0E0E0E, isn_s=0x0F0F0F0F),
    completed("2001:db8:1::11", "2001:db8:2::82", 44003, 22, s(1.05), ms(40.0), ms(0.1),
              isn_c=0xFFFFFFF0, isn_s=0x10101010),
    Flow("192.168.1.12", "198.51.100.83", 44004, 25, s(1.1), 0x12121212, 0, rst=ms(11.0)),
]  # fmt: skip


def make_sll2(out: Path) -> Capture:
    cap = Capture(LINKTYPE_LINUX_SLL2)
    for f in DUAL_IFACE:
        for p in flow_packets(f):
            first, second = (
                (SLL2_LAN_IFINDEX, SLL2_WAN_IFINDEX)
                if p.c2s
                else (SLL2_WAN_IFINDEX, SLL2_LAN_IFINDEX)
            )
            cap.add(p.t_us, F.sll2(p.ip, ifindex=first, pkttype=PACKET_HOST), "tcp")
            cap.add(
                p.t_us + SLL2_COPY_DELAY_US,
                F.sll2(p.ip, ifindex=second, pkttype=PACKET_OUTGOING),
                "tcp",
            )
    cap.write(out / "sll2.pcap")
    write_json(out / "sll2.expected.json", expected(DUAL_IFACE, s2c_delay_us=SLL2_COPY_DELAY_US))
    return cap


def make_sll(out: Path) -> Capture:
    """``-i any`` with SLL v1: a forwarded packet is seen incoming (0), then outgoing (4)."""
    cap = Capture(LINKTYPE_LINUX_SLL)
    for f in DUAL_IFACE:
        for p in flow_packets(f):
            cap.add(p.t_us, F.sll(p.ip, pkttype=PACKET_HOST), "tcp")
            cap.add(p.t_us + SLL_COPY_DELAY_US, F.sll(p.ip, pkttype=PACKET_OUTGOING), "tcp")
    cap.write(out / "sll.pcap", nano=True)  # also exercises nanosecond files
    write_json(out / "sll.expected.json", expected(DUAL_IFACE))
    return cap


# --- raw.pcap ----------------------------------------------------------------------------------------

RAW: list[Flow] = [
    completed("10.0.0.2", "203.0.113.90", 45000, 443, s(2.0), ms(71.234), ms(0.08),
              isn_c=0x01020304, isn_s=0x05060708),
    completed("2001:db8:1::12", "2001:db8:2::91", 45001, 8080, s(2.01), ms(8.765), ms(0.09),
              isn_c=0x090A0B0C, isn_s=0x0D0E0F10),
]  # fmt: skip


def make_raw(out: Path) -> Capture:
    cap = Capture(LINKTYPE_RAW)
    for f in RAW:
        for p in flow_packets(f):
            cap.add(p.t_us, p.ip, "tcp")
    cap.add(s(2.005), F.udp("10.0.0.2", "10.0.0.53", 53003, 53, payload=bytes(12)), "other")
    cap.write(out / "raw.pcap")
    write_json(out / "raw.expected.json", expected(RAW))
    return cap


# --- hostile.pcap -------------------------------------------------------------------------------------

HOSTILE_GOOD: list[Flow] = [
    completed("192.168.1.10", "198.51.100.100", 46000, 443, s(3.0), ms(25.0), ms(0.3),
              isn_c=0x13579BDF, isn_s=0x2468ACE0),
    completed("192.168.1.11", "203.0.113.101", 46001, 80, s(3.01), ms(45.5), ms(0.7),
              isn_c=0x0F1E2D3C, isn_s=0x4B5A6978),
    completed("2001:db8:1::13", "2001:db8:2::102", 46002, 443, s(3.02), ms(35.125), ms(0.2),
              isn_c=0x11223344, isn_s=0x55667788, exchange=(("c", 50), ("s", 60))),
]  # fmt: skip


def _patch(buf: bytes, offset: int, value: bytes) -> bytes:
    return buf[:offset] + value + buf[offset + len(value) :]


def hostile_frames() -> list[tuple[str, bytes, int | None, str]]:
    """``(reason, frame, orig_len or None, kind)`` for the frames between the good handshakes.

    kind ``malformed``: the frame claims IPv4/IPv6/TCP (or its link header is cut) and is broken,
    so the decoder must raise DecodeError. kind ``other``: well-formed, not TCP (must give None).
    """
    eth = F.ETH_TYPE_IP
    v4 = F.tcp("192.168.1.20", "198.51.100.110", 47000, 443, SYN, seq=1, options=F.syn_options())
    v6 = F.tcp("2001:db8:1::20", "2001:db8:2::110", 47001, 443, SYN, seq=1, options=F.syn_options())
    garbage = random.Random(1993).randbytes(60)
    garbage = bytes([0xF0 | (garbage[0] & 0x0F)]) + garbage[1:]  # version 15: never IPv4
    ihl3 = _patch(v4, 0, b"\x43")
    short_total = _patch(v4, 2, struct.pack("!H", 16))
    doff2 = _patch(v4, 20 + 12, b"\x20")
    doff15 = _patch(v4, 20 + 12, b"\xf0")  # a 60-byte TCP header in a 40-byte IP payload
    cut_tcp = F.ether(v4)[: 14 + 20 + 10]
    bogus_plen = _patch(v6, 4, struct.pack("!H", 8))  # payload length 8 < the TCP header
    v6_hbh = F.tcp(
        "2001:db8:1::20", "2001:db8:2::110", 47002, 443, SYN, seq=1,
        ext_headers=[(F.IPV6_HOPOPTS, F.hop_by_hop(64))],
    )  # fmt: skip
    v4_opts = _patch(v4, 0, b"\x4f")  # IHL 15: 60-byte header, options then run into TCP
    frag2 = F.tcp("192.168.1.20", "198.51.100.110", 47003, 443, ACK, payload=bytes(64),
                  frag_offset=1480)  # fmt: skip
    return [
        ("empty frame", b"", None, "malformed"),
        ("a 1-byte frame", b"\x01", None, "malformed"),
        ("truncated Ethernet header", F.ether(v4)[:10], None, "malformed"),
        ("truncated VLAN tag", F.ether(v4, vlans=(7,))[:16], None, "malformed"),
        ("truncated IPv4 header", F.ether(v4)[: 14 + 12], None, "malformed"),
        ("IPv4 IHL 3", F.ether(ihl3), None, "malformed"),
        ("IPv4 total length 16 < header", F.ether(short_total), None, "malformed"),
        ("IPv4 options past the capture", F.ether(v4_opts)[: 14 + 40], None, "malformed"),
        ("TCP data offset 2", F.ether(doff2), None, "malformed"),
        ("TCP data offset 15 > IP payload", F.ether(doff15), None, "malformed"),
        (
            "TCP options past the capture",
            F.ether(v4)[: 14 + 20 + 30],
            len(F.ether(v4)),
            "malformed",
        ),
        ("TCP header cut at 10 bytes", cut_tcp, len(F.ether(v4)), "malformed"),
        ("IPv6 payload length 8", F.ether(bogus_plen), None, "malformed"),
        ("IPv6 hop-by-hop header cut", F.ether(v6_hbh)[: 14 + 40 + 20], None, "malformed"),
        ("IPv4 EtherType, IPv6 packet", F.ether(v6, ethertype=eth), None, "malformed"),
        ("random garbage, IPv4 EtherType", F.ether(garbage, ethertype=eth), None, "malformed"),
        ("IPv4 non-first fragment", F.ether(frag2), None, "other"),
        ("ARP", F.arp_request(F.CLIENT_MAC, "192.168.1.20", "192.168.1.1"), None, "other"),
        ("802.3 length field (LLC)", F.ether(bytes(46), ethertype=46), None, "other"),
        ("UDP", F.ether(F.udp("192.168.1.20", "10.0.0.53", 53004, 53, bytes(20))), None, "other"),
    ]


def make_hostile(out: Path) -> Capture:
    cap = Capture(LINKTYPE_ETHERNET)
    add_flows_ether(cap, HOSTILE_GOOD)
    for i, (_reason, buf, orig_len, kind) in enumerate(hostile_frames()):
        cap.add(s(3.0) + 3_000 + i * 5_003, buf, kind, orig_len)  # interleaved with the good
    cap.write(out / "hostile.pcap")
    write_json(
        out / "hostile.expected.json",
        {
            "connections": expected(HOSTILE_GOOD),
            "malformed": cap.malformed,
            # Each frame's time (µs) and kind: tests see which frames pass the kernel filter
            # (tcpdump -tt prints their times) and expect exactly those malformed ones.
            "frames": [[t, kind] for t, _, _, _, kind in sorted(cap.frames)],
        },
    )
    return cap


# --- sample.pcap ----------------------------------------------------------------------------------------

SAMPLE_SEED = 20231114
SAMPLE_SECONDS = 90
SAMPLE_HANDSHAKES = 300


def sample_flows() -> list[Flow]:
    """About 300 connections from 4 LAN clients to 25 servers over 90 s, from a seeded RNG."""
    rng = random.Random(SAMPLE_SEED)
    clients = [f"192.168.1.{10 + i}" for i in range(4)]
    servers: list[tuple[str, int, int]] = []  # (address, dport, base rtt µs)
    hosts = (
        [f"198.51.100.{h}" for h in rng.sample(range(2, 250), 10)]
        + [f"203.0.113.{h}" for h in rng.sample(range(2, 250), 11)]
        + ["10.0.0.53", "10.10.1.20", "10.20.5.7", "10.30.0.40"]
    )
    for h in hosts:
        if h == "10.0.0.53":
            dport = 53  # DNS over TCP
        elif h.startswith("10."):
            dport = rng.choice((22, 8080, 443))
        else:
            dport = rng.choice((443, 443, 443, 80, 22, 8080))
        base = rng.randint(5_000, 12_000) if h.startswith("10.") else rng.randint(15_000, 140_000)
        servers.append((h, dport, base))
    # Sensor-to-client RTTs: wired, Wi-Fi, a busy Wi-Fi, a powersaving phone.
    client_rtt = dict(zip(clients, (80, 350, 900, 1_400), strict=True))
    next_port = dict.fromkeys(clients, 33_000)
    flows: list[Flow] = []
    for _ in range(SAMPLE_HANDSHAKES):
        client = rng.choice(clients)
        server, dport, base = rng.choice(servers)
        sport = next_port[client] = next_port[client] + rng.randint(1, 40)
        start = BASE_US + 10_000_000 + rng.randint(0, (SAMPLE_SECONDS - 6) * 1_000_000)
        rtt = min(150_000, max(5_000, base + rng.randint(-2_000, 8_000)))
        crtt = min(2_000, max(50, client_rtt[client] + rng.randint(-40, 600)))
        isn_c, isn_s = rng.getrandbits(32), rng.getrandbits(32)
        roll = rng.random()
        if roll < 0.03:  # refused
            flows.append(Flow(client, server, sport, dport, start, isn_c, 0, rst=rtt))
        elif roll < 0.05:  # unanswered: two retransmissions, then the client gives up
            flows.append(
                Flow(client, server, sport, dport, start, isn_c, 0, syn=(0, RETX_US, 3 * RETX_US))
            )
        else:
            syn: tuple[int, ...] = (0,)
            if roll < 0.08:  # the first SYN was lost past the sensor
                syn = (0, RETX_US)
            synack: tuple[int, ...] = (syn[-1] + rtt,)
            if 0.08 <= roll < 0.10:  # the first SYN+ACK was lost past the sensor
                synack = (synack[0], synack[0] + RETX_US)
            ack = synack[-1] + crtt
            t = ack + rng.randint(100, 2_000)
            data: list[tuple[int, str, int]] = []
            for _req in range(rng.randint(1, 3)):
                data.append((t, "c", rng.randint(60, 500)))
                t += rtt + crtt + rng.randint(200, 20_000)
                for _seg in range(rng.randint(1, 3)):
                    data.append((t, "s", rng.choice((rng.randint(40, 600), 1448))))
                    t += rng.randint(10, 300)
                data.append((t + crtt, "c", 0))
                t += crtt + rng.randint(1_000, 500_000)
            fin = (t, t + rtt, t + rtt + crtt)
            flows.append(
                Flow(client, server, sport, dport, start, isn_c, isn_s, syn=syn, synack=synack,
                     ack=ack, data=tuple(data), fin=fin)
            )  # fmt: skip
    # A few clients that give up after the SYN+ACK (scanners, closed laptops): abandoned.
    for i in range(3):
        flows.append(
            Flow("192.168.1.13", "198.51.100.7", 60_000 + i, 443,
                 BASE_US + 20_000_000 + i * 7_000_000, 0x60000000 + i, 0x70000000 + i,
                 synack=(ms(31.5 + i),))
        )  # fmt: skip
    return flows


def make_sample(out: Path) -> Capture:
    cap = Capture(LINKTYPE_ETHERNET)
    flows = sample_flows()
    add_flows_ether(cap, flows)
    rng = random.Random(SAMPLE_SEED + 1)
    for i in range(40):  # DNS lookups and ARP now and then
        t = BASE_US + 10_000_000 + i * 2_000_000 + rng.randint(0, 999_999)
        client = f"192.168.1.{10 + i % 4}"
        q = F.udp(client, "10.0.0.53", 50_000 + i, 53, payload=bytes(rng.randint(20, 60)))
        cap.add(t, F.ether(q), "other")
        a = F.udp("10.0.0.53", client, 53, 50_000 + i, payload=bytes(rng.randint(40, 200)))
        cap.add(t + 900, F.ether(a, src_mac=F.GATEWAY_MAC, dst_mac=F.CLIENT_MAC), "other")
        if i % 10 == 0:
            cap.add(t + 5_000, F.arp_request(F.CLIENT_MAC, client, "192.168.1.1"), "other")
    cap.write(out / "sample.pcap")
    write_json(out / "sample.expected.json", expected(flows))
    return cap


MAKERS = {
    "handshakes.pcap": make_handshakes,
    "sll2.pcap": make_sll2,
    "sll.pcap": make_sll,
    "raw.pcap": make_raw,
    "hostile.pcap": make_hostile,
    "sample.pcap": make_sample,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {name: make(args.out).manifest() for name, make in MAKERS.items()}
    write_json(args.out / "manifest.json", manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
