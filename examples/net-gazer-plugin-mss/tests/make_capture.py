#!/usr/bin/env python3
"""Write ``mss.pcap`` and ``mss.expected.json`` from the scenario below (needs dpkt).

The expected values are computed from the scenario definition, not by the plugin: what each
host advertised, per host, with the plugin's default thresholds (1460 for IPv4, 1440 for IPv6).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
from pathlib import Path

import dpkt

HERE = Path(__file__).resolve().parent
T0 = 1_700_000_000.0
ETHERNET_MSS = {4: 1460, 6: 1440}
MALFORMED = b"\x02\x03\x05\xb4"  # an MSS option whose length says 3: malformed

# (seconds after T0, client, client port, server, server port, client MSS, server MSS); a client
# MSS of None sends no MSS option, MALFORMED a broken one. "retransmit" repeats the SYN 1 s later.
SCENARIO: list[dict[str, object]] = [
    {"t": 0.0, "c": "192.168.1.10", "cp": 40001, "s": "198.51.100.10", "sp": 443, "cm": 1460, "sm": 1460},
    {"t": 0.3, "c": "192.168.1.11", "cp": 40002, "s": "198.51.100.10", "sp": 80, "cm": 1452, "sm": 1460},
    {"t": 0.6, "c": "192.168.1.10", "cp": 40003, "s": "203.0.113.20", "sp": 443, "cm": 1460, "sm": 1360},
    {"t": 1.4, "c": "2001:db8:1::10", "cp": 40004, "s": "2001:db8:2::20", "sp": 443, "cm": 1440, "sm": 1220},
    {"t": 1.7, "c": "192.168.1.12", "cp": 40005, "s": "198.51.100.10", "sp": 443, "cm": None, "sm": 1460},
    {"t": 2.2, "c": "192.168.1.11", "cp": 40006, "s": "203.0.113.30", "sp": 22, "cm": 1452, "sm": 536},
    {"t": 2.5, "c": "192.168.1.13", "cp": 40007, "s": "198.51.100.10", "sp": 443, "cm": "malformed", "sm": 1460},
    {"t": 3.1, "c": "192.168.1.10", "cp": 40008, "s": "198.51.100.10", "sp": 443, "cm": 1460, "sm": 1460},
    {"t": 3.5, "c": "192.168.1.14", "cp": 40009, "s": "203.0.113.20", "sp": 443, "cm": 1460, "sm": 1360, "retransmit": True},
]  # fmt: skip

CLIENT_MAC, GATEWAY_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def options(mss: object) -> bytes:
    if mss is None:
        return b""
    if mss == "malformed":
        return MALFORMED
    assert isinstance(mss, int)
    return struct.pack("!BBH", 2, 4, mss) + b"\x01\x01\x04\x02"  # MSS, NOP, NOP, SACK-permitted


def frame(src: str, sport: int, dst: str, dport: int, flags: int, seq: int, ack: int,
          opts: bytes) -> bytes:  # fmt: skip
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=64240)
    tcp.opts = opts
    tcp.off = (20 + len(opts)) // 4
    version = ipaddress.ip_address(src).version
    if version == 4:
        ip: dpkt.Packet = dpkt.ip.IP(src=socket.inet_pton(socket.AF_INET, src),
                                     dst=socket.inet_pton(socket.AF_INET, dst),
                                     p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)  # fmt: skip
        ip.len = 20 + len(bytes(tcp))
        etype = dpkt.ethernet.ETH_TYPE_IP
    else:
        ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src),
                          dst=socket.inet_pton(socket.AF_INET6, dst),
                          nxt=dpkt.ip.IP_PROTO_TCP, hlim=64, data=tcp)  # fmt: skip
        ip.plen = len(bytes(tcp))
        etype = dpkt.ethernet.ETH_TYPE_IP6
    out = src.startswith(("192.168.", "2001:db8:1:"))
    eth = dpkt.ethernet.Ethernet(src=CLIENT_MAC if out else GATEWAY_MAC,
                                 dst=GATEWAY_MAC if out else CLIENT_MAC, type=etype, data=ip)  # fmt: skip
    return bytes(eth)


def _syn_or_ipv6(buf: bytes) -> bool:
    ip = dpkt.ethernet.Ethernet(buf).data
    return isinstance(ip, dpkt.ip6.IP6) or bool(ip.data.flags & dpkt.tcp.TH_SYN)


def main() -> None:
    frames: list[tuple[float, bytes]] = []
    seen: dict[str, list[tuple[float, int]]] = {}
    syn, synack, ack = dpkt.tcp.TH_SYN, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_ACK
    for i, c in enumerate(SCENARIO):
        t = T0 + float(c["t"])  # type: ignore[arg-type]
        cli, cp, srv, sp = str(c["c"]), int(c["cp"]), str(c["s"]), int(c["sp"])  # type: ignore[call-overload]
        iss, irs = 1000 * (i + 1), 900_000 * (i + 1)
        syns = [t, t + 1.0] if c.get("retransmit") else [t]
        for ts in syns:
            frames.append((ts, frame(cli, cp, srv, sp, syn, iss, 0, options(c["cm"]))))
            if isinstance(c["cm"], int):
                seen.setdefault(cli, []).append((ts, c["cm"]))
        t1 = syns[-1] + 0.02
        frames.append((t1, frame(srv, sp, cli, cp, synack, irs, iss + 1, options(c["sm"]))))
        seen.setdefault(srv, []).append((t1, int(c["sm"])))  # type: ignore[call-overload]
        frames.append((t1 + 0.001, frame(cli, cp, srv, sp, ack, iss + 1, irs + 1, b"")))
    frames.sort(key=lambda f: f[0])
    with (HERE / "mss.pcap").open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB, nano=False)
        for ts, buf in frames:
            writer.writepkt(buf, ts=ts)
    expected = []
    for ip, samples in sorted(seen.items()):
        values = [m for _, m in samples]
        family = ipaddress.ip_address(ip).version
        expected.append({
            "ip": ip, "samples": len(values), "min": min(values), "max": max(values),
            "sum": sum(values), "small": sum(1 for m in values if m < ETHERNET_MSS[family]),
            "first_seen": min(t for t, _ in samples), "last_seen": max(t for t, _ in samples),
        })  # fmt: skip
    counts = {
        "syn_without_mss": sum(1 for c in SCENARIO if c["cm"] is None),
        "options_malformed": sum(1 for c in SCENARIO if c["cm"] == "malformed"),
        "frames": len(frames),
        # what the plugin's BPF fragment alone lets through: IPv4 SYN-flagged, and IPv6 TCP
        "kernel_passed": sum(1 for _, buf in frames if _syn_or_ipv6(buf)),
    }
    (HERE / "mss.expected.json").write_text(
        json.dumps({"hosts": expected, "counters": counts}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
