"""Datagrams per second through the sensor's packet path with the udp plugin on, against tcpdump
reading the same file with the same kernel filter, in the same run.

    .venv/bin/python bench/bench_udp.py [--exchanges N] [--rounds N]

The capture is generated: ``--exchanges`` DNS-like exchanges (a query from a new client port,
an answer) from 240 clients to 4 servers, over IPv4, with a QUIC-like flow of 20 datagrams every
50 exchanges. The sensor side is ``Sensor.process`` plus its ticks (decode, the UDP decode, the
udp plugin's flow table and rows; no gRPC, no graph), CPU seconds by ``time.process_time``, as in
bench_quality.py; tcpdump reads the file with the sensor's own filter expression into /dev/null.
Best of ``--rounds``. No assertions.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import dpkt
from bench_quality import sensor_cpu, tcpdump_cpu


def _frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))),
                    p=17, ttl=64, data=udp)  # fmt: skip
    ip.len = 20 + udp.ulen
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)
    return bytes(eth)


def make_capture(path: Path, exchanges: int) -> int:
    n = 0
    t = 1_700_000_000.0
    with path.open("wb") as out:
        w = dpkt.pcap.Writer(out, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for i in range(exchanges):
            client = f"192.168.1.{10 + i % 240}"
            server = f"198.51.100.{1 + i % 4}"
            port = 20000 + i % 40000
            w.writepkt(_frame(client, server, port, 53, b"q" * 30), t)
            w.writepkt(_frame(server, client, 53, port, b"a" * 60), t + 0.0005)
            n += 2
            if i % 50 == 0:
                for k in range(20):
                    src, dst = (client, server) if k % 2 == 0 else (server, client)
                    sp, dp = (50000, 443) if k % 2 == 0 else (443, 50000)
                    w.writepkt(_frame(src, dst, sp, dp, b"Q" * 1200), t + 0.001 * k)
                    n += 1
            t += 0.0002
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "udp-bench.pcap"
        total = make_capture(path, args.exchanges)
        print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"capture: {total} frames ({path.stat().st_size / 1e6:.1f} MB)")
        cases = [
            ("udp (every flow)", {}, ["udp"]),
            ("udp, sample_rate 8", {"udp": {"sample_rate": 8}}, ["udp"]),
            ("udp + dpi (DNS answers)", {}, ["udp", "dpi"]),
        ]
        print(f"{'plugins':28} {'passed':>7} {'sensor s':>9} {'file pkt/s':>11} "
              f"{'tcpdump s':>10} {'tcpdump pkt/s':>14} {'ratio':>6}")  # fmt: skip
        for label, plugin_config, allow in cases:
            best_sensor, seen, expression = min(
                (sensor_cpu(path, plugin_config, allow) for _ in range(args.rounds)),
                key=lambda r: r[0],
            )
            best_dump = min(tcpdump_cpu(path, expression) for _ in range(args.rounds))
            print(f"{label:28} {seen:>7} {best_sensor:>9.3f} {total / best_sensor:>11,.0f} "
                  f"{best_dump:>10.3f} {total / best_dump:>14,.0f} {best_sensor / best_dump:>5.0f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
