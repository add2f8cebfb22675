"""Decode every frame of tests/pcaps/sample.pcap with the fast path and with the dpkt reference.

    .venv/bin/python bench/bench_decode.py [--rounds N] [--pcap FILE]

Prints microseconds per packet for each decoder (best of the rounds, to shed scheduler noise) and
the ratio. No assertions: this measures, the tests check correctness.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pcap

from net_gazer.sensor.decode import decode
from net_gazer.sensor.packet import DecodeError, TcpSegment

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the dpkt reference decoder is test code
from dpkt_reference import decode_dpkt  # noqa: E402

SAMPLE = TESTS / "pcaps" / "sample.pcap"
Decoder = Callable[[int, float, bytes, int], "TcpSegment | None"]


def load(path: Path) -> tuple[int, list[tuple[float, bytes]]]:
    p = pcap.pcap(name=str(path), promisc=False, immediate=True, timeout_ms=0)
    try:
        return p.datalink(), [(ts, bytes(buf)) for ts, buf in p]
    finally:
        p.close()


def one_pass(fn: Decoder, linktype: int, frames: list[tuple[float, bytes]]) -> int:
    decoded = 0
    for ts, buf in frames:
        try:
            if fn(linktype, ts, buf, 0) is not None:
                decoded += 1
        except DecodeError:
            pass
    return decoded


def best_of(fn: Decoder, linktype: int, frames: list[tuple[float, bytes]], rounds: int) -> float:
    """Best seconds per packet over ``rounds`` passes."""
    one_pass(fn, linktype, frames)  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        one_pass(fn, linktype, frames)
        best = min(best, time.perf_counter() - start)
    return best / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pcap", type=Path, default=SAMPLE)
    args = parser.parse_args()
    linktype, frames = load(args.pcap)
    tcp = one_pass(decode, linktype, frames)
    print(f"{args.pcap.name}: {len(frames)} frames, {tcp} TCP segments, link type {linktype}")
    print(f"python {platform.python_version()}, best of {args.rounds} rounds")
    fast = best_of(decode, linktype, frames, args.rounds)
    ref = best_of(decode_dpkt, linktype, frames, args.rounds)
    print(f"decode (fast path)   {fast * 1e6:8.3f} µs/packet  {1 / fast:12,.0f} packets/s")
    print(f"decode_dpkt (ref)    {ref * 1e6:8.3f} µs/packet  {1 / ref:12,.0f} packets/s")
    print(f"ratio dpkt / fast    {ref / fast:8.2f}x")


if __name__ == "__main__":
    main()
