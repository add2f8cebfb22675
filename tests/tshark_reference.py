"""tshark as the reference for the quality plugin: per connection and direction, what tshark 4.0's
``tcp.analysis`` counts on a capture, and the continuous RTT computed from tshark's timestamp
fields (``tcp.options.timestamp.tsval``/``tsecr``) and frame times.

Nothing here uses net-gazer code: the connections, their clients and their directions come from
tshark's fields, and the RTT definition is implemented again from docs/quality.md.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

#: Our metric -> the tshark field whose presence in a frame counts it.
METRICS = {
    "retransmits": "tcp.analysis.retransmission",
    "fast_retransmits": "tcp.analysis.fast_retransmission",
    "spurious_retransmits": "tcp.analysis.spurious_retransmission",
    "out_of_order": "tcp.analysis.out_of_order",
    "sack_packets": "tcp.options.sack_le",
    "dsack": "tcp.options.sack.dsack",
    "zero_windows": "tcp.analysis.zero_window",
}
FIELDS = (
    "frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
    "tcp.stream", "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.len",
    "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", *METRICS.values(),
)  # fmt: skip

Key = tuple[str, str, int]  # client, server, server port


@dataclass
class Frame:
    t_us: int
    src: str
    sport: int
    dst: str
    dport: int
    stream: int
    syn: bool
    ack: bool
    fin: bool
    length: int
    tsval: int | None
    tsecr: int | None
    flags: dict[str, bool]


def frames(pcap: Path) -> list[Frame]:
    args = ["tshark", "-n", "-r", str(pcap), "-Y", "tcp", "-T", "fields", "-E", "separator=\t"]
    for f in FIELDS:
        args += ["-e", f]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    result = []
    for line in out.splitlines():
        v = line.split("\t")
        d = dict(zip(FIELDS, v, strict=True))
        t = Decimal(d["frame.time_epoch"])
        result.append(
            Frame(
                t_us=int(t * 1_000_000),
                src=d["ip.src"] or d["ipv6.src"],
                sport=int(d["tcp.srcport"]),
                dst=d["ip.dst"] or d["ipv6.dst"],
                dport=int(d["tcp.dstport"]),
                stream=int(d["tcp.stream"]),
                syn=d["tcp.flags.syn"] in ("1", "True"),
                ack=d["tcp.flags.ack"] in ("1", "True"),
                fin=d["tcp.flags.fin"] in ("1", "True"),
                length=int(d["tcp.len"] or 0),
                tsval=int(d["tcp.options.timestamp.tsval"])
                if d["tcp.options.timestamp.tsval"]
                else None,
                tsecr=int(d["tcp.options.timestamp.tsecr"])
                if d["tcp.options.timestamp.tsecr"]
                else None,
                flags={m: bool(d[f]) for m, f in METRICS.items()},
            )
        )
    return result


@dataclass
class Direction:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))
    segments: int = 0
    data_segments: int = 0
    payload_bytes: int = 0
    rtts_us: list[int] = field(default_factory=list)


@dataclass
class Connection:
    key: Key
    client: tuple[str, int]
    c2s: Direction = field(default_factory=Direction)
    s2c: Direction = field(default_factory=Direction)


def connections(pcap: Path) -> dict[int, Connection]:
    """tshark's streams that begin with a SYN (the ones the sensor reports), with tshark's
    counts per direction and the reference RTT samples."""
    by_stream: dict[int, list[Frame]] = defaultdict(list)
    for f in frames(pcap):
        by_stream[f.stream].append(f)
    out: dict[int, Connection] = {}
    for stream, fs in by_stream.items():
        first = fs[0]
        if not (first.syn and not first.ack):
            continue
        conn = Connection((first.src, first.dst, first.dport), (first.src, first.sport))
        for f in fs:
            d = conn.c2s if (f.src, f.sport) == conn.client else conn.s2c
            d.segments += 1
            if f.length:
                d.data_segments += 1
                d.payload_bytes += f.length
            for m, present in f.flags.items():
                d.counts[m] += present
        c2s, s2c = ts_rtt(fs, conn.client)
        conn.c2s.rtts_us, conn.s2c.rtts_us = c2s, s2c
        out[stream] = conn
    return out


def _before_or_at(a: int, b: int) -> bool:
    """a at or before b, modulo 2**32 (RFC 7323 section 5.2)."""
    return (b - a) % 2**32 < 2**31


def ts_rtt(
    fs: list[Frame], client: tuple[str, int], max_pending: int = 64
) -> tuple[list[int], list[int]]:
    """The continuous RTT samples (µs) of one connection, per direction whose TSvals were timed,
    as docs/quality.md defines them: a TSval is timed at the first segment with payload, SYN or
    FIN that carries it (unless one at or after it was echoed already); the first segment of the
    other direction echoing it gives one sample; an echo forgets every timed TSval of that
    direction at or before it, oldest first."""
    pending: list[dict[int, int]] = [{}, {}]
    echoed: list[int | None] = [None, None]
    samples: list[list[int]] = [[], []]
    for f in fs:
        if f.tsval is None or f.tsecr is None:
            continue
        side = 0 if (f.src, f.sport) == client else 1
        other = 1 - side
        if f.tsecr:
            table = pending[other]
            if f.tsecr in table:
                first = table.pop(f.tsecr)
                if f.t_us >= first:
                    samples[other].append(f.t_us - first)
            if echoed[other] is None or not _before_or_at(f.tsecr, echoed[other]):
                echoed[other] = f.tsecr
            while table and _before_or_at(next(iter(table)), f.tsecr):
                del table[next(iter(table))]
        if f.length or f.syn or f.fin:
            table = pending[side]
            last = echoed[side]
            if f.tsval not in table and (last is None or not _before_or_at(f.tsval, last)):
                if len(table) >= max_pending:
                    raise AssertionError(
                        "the reference's bound binds: pick a capture where it does not"
                    )
                table[f.tsval] = f.t_us
    return samples[0], samples[1]


def by_key(conns: dict[int, Connection]) -> dict[Key, list[Connection]]:
    out: dict[Key, list[Connection]] = defaultdict(list)
    for c in conns.values():
        out[c.key].append(c)
    return out
