"""Packets per second through the sensor's packet path with the quality and dpi plugins on,
against tcpdump reading the same file with the same kernel filter, in the same run.

    .venv/bin/python bench/bench_quality.py [--copies N] [--rounds N]

The capture is the committed lab captures (tests/pcaps/lab/: loss, D-SACK, reordering, zero
windows, names) repeated ``--copies`` times with the clients' ports moved, so that every copy is
a connection of its own, and time moved on. The sensor side is ``Sensor.process`` plus its ticks
over every frame libpcap's filter lets through, in this process (decode, handshake tracking, the
plugins; no gRPC, no graph): CPU seconds by ``time.process_time``. tcpdump reads the file with the
sensor's own filter expression and writes to /dev/null: its CPU seconds from ``getrusage`` of
children. Both rates are frames of the file per CPU second (what the filter drops costs each
of them its share of the reading). Best of ``--rounds`` each. No assertions: this measures, the
tests check correctness.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dpkt
import pcap

from net_gazer.sensor.build import build
from net_gazer.sensor.config import SensorConfig
from net_gazer.sensor.pipeline import READ_CHUNK

LAB = Path(__file__).resolve().parent.parent / "tests" / "pcaps" / "lab"
SOURCES = ("loss", "dsack", "reorder", "zerowin", "names")
SERVER_PORTS = {5001, 5002, 443, 80, 53}
ETH_HLEN = 14


def _client_port_offset(buf: bytes) -> int | None:
    """Offset of the client's port in an Ethernet frame of the lab captures (None: keep it)."""
    etype = buf[12] << 8 | buf[13]
    if etype == 0x0800:
        off = ETH_HLEN + ((buf[ETH_HLEN] & 0x0F) << 2)
        proto = buf[ETH_HLEN + 9]
    elif etype == 0x86DD:
        off, proto = ETH_HLEN + 40, buf[ETH_HLEN + 6]
    else:
        return None
    if proto not in (6, 17) or len(buf) < off + 4:
        return None
    sport = buf[off] << 8 | buf[off + 1]
    return off + 2 if sport in SERVER_PORTS else off


def make_capture(path: Path, copies: int) -> int:
    """The lab captures, ``copies`` times over, one after the other; returns the frame count."""
    frames: list[tuple[float, bytes]] = []
    for name in SOURCES:
        reader = pcap.pcap(name=str(LAB / f"{name}.pcap"), timestamp_in_ns=False)
        frames.extend((ts, bytes(buf)) for ts, buf in reader)
    frames.sort(key=lambda f: f[0])
    span = frames[-1][0] - frames[0][0] + 1.0
    with path.open("wb") as out:
        w = dpkt.pcap.Writer(out, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for k in range(copies):
            for ts, buf in frames:
                off = _client_port_offset(buf)
                frame = buf
                if off is not None and k:
                    port = buf[off] << 8 | buf[off + 1]
                    moved = 1024 + (port - 1024 + k * 61) % (65536 - 1024)
                    frame = buf[:off] + moved.to_bytes(2, "big") + buf[off + 2 :]
                w.writepkt(frame, ts + k * span)
    return len(frames) * copies


def sensor_cpu(
    path: Path, plugin_config: dict[str, dict[str, int]], allow: list[str]
) -> tuple[float, int, str]:
    """CPU seconds of the packet path over the file; the frames it saw; its filter."""
    os.environ.pop("NG_PLUGINS_ALLOW", None)
    cfg = SensorConfig(
        read=path, sensor_id="bench", plugin_config=plugin_config, plugins_allow=allow
    )
    cfg.max_envelopes = 1_000_000
    sensor = build(cfg)
    handle = sensor.handles[0]
    start = time.process_time()
    seen = 0
    next_tick = None
    while frames := handle.read(READ_CHUNK):
        seen += len(frames)
        sensor.process(handle, frames)
        if next_tick is None:
            next_tick = frames[0][0] + 1.0
        while sensor.now >= next_tick:
            sensor.tick(next_tick)
            next_tick += 1.0
    sensor.tick(sensor.now, final=True, close=True)
    cpu = time.process_time() - start
    expression = handle.filter
    handle.close()
    return cpu, seen, expression


def tcpdump_cpu(path: Path, expression: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        ["tcpdump", "-r", str(path), "-w", "/dev/null", expression],
        check=True, capture_output=True,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "quality-bench.pcap"
        total = make_capture(path, args.copies)
        print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(
            f"capture: {total} frames ({path.stat().st_size / 1e6:.1f} MB), {args.copies} copies of the lab captures"
        )
        cases = [
            ("handshake only", {}, ["handshake"]),
            ("handshake + quality (every flow)", {}, ["handshake", "quality"]),
            ("default: handshake + quality + dpi", {}, []),
            ("quality alone, sample_rate 8", {"quality": {"sample_rate": 8}}, ["quality"]),
            ("dpi alone", {}, ["dpi"]),
        ]
        print(
            f"{'plugins':38} {'passed':>7} {'sensor s':>9} {'file pkt/s':>11} "
            f"{'tcpdump s':>10} {'tcpdump pkt/s':>14} {'ratio':>6}"
        )
        for label, plugin_config, allow in cases:
            best_sensor, seen, expression = min(
                (sensor_cpu(path, plugin_config, allow) for _ in range(args.rounds)),
                key=lambda r: r[0],
            )
            best_dump = min(tcpdump_cpu(path, expression) for _ in range(args.rounds))
            print(
                f"{label:38} {seen:>7} {best_sensor:>9.3f} {total / best_sensor:>11,.0f} "
                f"{best_dump:>10.3f} {total / best_dump:>14,.0f} {best_sensor / best_dump:>5.0f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
