"""Replay a spoofed SYN flood through the sensor, with tcpdump on the same file as the reference.

    .venv/bin/python bench/bench_flood.py [--syns 2000000] [--real 200] [--pcap FILE] [--keep]

Generates the capture with bench/make_flood_pcap.py (into a temporary directory, unless --pcap
names an existing one), starts a collector with an embedded FalkorDB there, and replays the file
with ``net-gazer-sensor -r`` at full speed, to the collector's last ack. Then it reads the same
file with ``tcpdump -r FILE -w /dev/null`` and the very filter the sensor compiled (best of three).
Prints packets/s for both, their ratio, and the sensor's peak RSS. No assertions: this measures,
tests/test_flood.py checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from make_flood_pcap import write_flood

from net_gazer.sensor.capture import bpf_union
from net_gazer.sensor.packet import DLT_EN10MB

BIN = Path(sys.executable).parent


def start_collector(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    ready = workdir / "ready.json"
    with (workdir / "collector.log").open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "net-gazer-collector"), "--data-dir", str(workdir / "data"),
             "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--ready-file", str(ready)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"the collector did not start; see {workdir / 'collector.log'}")
        time.sleep(0.05)
    return proc, int(json.loads(ready.read_text())["grpc_port"])


def replay(pcap: Path, port: int, log: Path) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak RSS (MiB, from wait4) of one sensor replay."""
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "net-gazer-sensor"), "-r", str(pcap), "--collector", f"127.0.0.1:{port}",
             "--sensor-id", "bench-flood", "--ack-timeout", "600", "-v"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - start, usage.ru_maxrss / 1024


def tcpdump(pcap: Path, expression: str, rounds: int = 3) -> float:
    """Best wall seconds of ``tcpdump -r FILE -w /dev/null EXPRESSION``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.monotonic()
        subprocess.run(
            ["tcpdump", "-r", str(pcap), "-w", "/dev/null", expression],
            check=True, capture_output=True,
        )  # fmt: skip
        best = min(best, time.monotonic() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syns", type=int, default=2_000_000)
    parser.add_argument("--real", type=int, default=200)
    parser.add_argument("--pcap", type=Path, help="replay this capture (made if it is missing)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    if shutil.which("tcpdump") is None:
        sys.exit("tcpdump is the reference and is not installed; run 'sudo make deps'")
    workdir = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    try:
        pcap = args.pcap or workdir / "flood.pcap"
        start = time.monotonic()
        if not pcap.exists():
            with pcap.open("wb") as out:
                truth = write_flood(out, syns=args.syns, real=args.real)
            pcap.with_suffix(".json").write_text(json.dumps(truth))
            print(f"generated {truth['packets']:,} packets in {time.monotonic() - start:.1f} s")
        truth = json.loads(pcap.with_suffix(".json").read_text())
        packets = int(truth["packets"])
        print(
            f"{pcap.name}: {packets:,} packets ({truth['syns']:,} spoofed SYNs, {truth['real']} "
            f"real handshakes, {pcap.stat().st_size / 1e6:.0f} MB); python "
            f"{platform.python_version()}, {os.cpu_count()} CPUs"
        )
        collector, port = start_collector(workdir)
        try:
            log = workdir / "sensor.log"
            code, sensor_s, rss = replay(pcap, port, log)
        finally:
            collector.terminate()
            collector.wait(30)
        text = log.read_text(errors="replace")
        m = re.search(r"with filter: (.*)$", text, re.M)
        expression = m.group(1) if m else bpf_union(["tcp"], DLT_EN10MB, [])
        summary = re.search(r"packets \d+ .*$", text, re.M)
        ref_s = tcpdump(pcap, expression)
        print(f"filter               {expression}")
        print(f"sensor exit          {code}" + (f"  ({summary.group(0)})" if summary else ""))
        print(
            f"net-gazer-sensor -r  {sensor_s:8.2f} s  {packets / sensor_s:12,.0f} packets/s  "
            f"peak RSS {rss:.0f} MiB  (to the collector's last ack)"
        )
        print(
            f"tcpdump -r -w null   {ref_s:8.2f} s  {packets / ref_s:12,.0f} packets/s  (best of 3)"
        )
        print(f"ratio tcpdump/sensor {sensor_s / ref_s:8.1f}x")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
