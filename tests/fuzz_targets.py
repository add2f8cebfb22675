"""Fuzz targets: every parser and state machine that hostile bytes can reach, behind one signature.

A target is a function taking ``bytes``. It interprets the bytes (as a frame, a segment sequence,
a spool directory...), runs the code under test, and checks that code's contract itself: it
returns a short outcome label (Hypothesis shows them with ``--hypothesis-show-statistics``) and
raises on a contract violation, so any exception out of a target is a finding. The target's
docstring states the contract.

``TARGETS`` is the registry. ``tests/test_fuzz.py`` runs every registered target under Hypothesis
and replays its corpus (``tests/fuzz_corpus/<name>/*.bin``). A new target (the TCP quality
analysis, the traceroute ICMP reply matcher) joins by adding one decorated function here, and
seeds for it in ``tests/fuzz_corpus/make_seeds.py``::

    @target("icmp_match", max_len=512)
    def icmp_match(data: bytes) -> str:
        '''Contract: ...'''

A crash that is known and not fixed yet is listed as a :class:`KnownBug` of its target, with its
crashing input kept as ``tests/fuzz_corpus/<name>/crash-<bug id>.bin``: the fuzz run then counts
it instead of failing, and the corpus replay expects it to fail (strict xfail), so the fix is
noticed. Remove the ``KnownBug`` with the fix; the crash file stays as a regression fixture.

Triage a file by hand: ``python tests/fuzz_targets.py TARGET FILE...``.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import math
import re
import struct
import sys
import tempfile
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpkt_reference import decode_dpkt
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import DecodeError as ProtobufDecodeError

from net_gazer.collector.context import CollectorContext
from net_gazer.collector.graphwrite import GraphWrite, SensorInfo
from net_gazer.plugins.dpi import collector as dpi_collector
from net_gazer.plugins.dpi import dns as dpi_dns
from net_gazer.plugins.dpi import http as dpi_http
from net_gazer.plugins.dpi import tls as dpi_tls
from net_gazer.plugins.dpi.assemble import Assembler
from net_gazer.plugins.dpi.names import hostname as dpi_hostname
from net_gazer.plugins.handshake import collector as handshake_plugin
from net_gazer.plugins.quality import collector as quality_collector
from net_gazer.plugins.quality.flows import FlowTable, Row, TableConfig
from net_gazer.plugins.quality.tsrtt import MAX_PENDING as TS_MAX_PENDING
from net_gazer.plugins.traceroute import collector as tr_collector
from net_gazer.plugins.traceroute import engine as tr_engine
from net_gazer.plugins.traceroute import matcher as tr_matcher
from net_gazer.plugins.traceroute import options as tr_options
from net_gazer.sensor.decode import decode
from net_gazer.sensor.handshake import HandshakeEvent, HandshakeTracker, Kind, TrackerConfig
from net_gazer.sensor.packet import SUPPORTED_LINKTYPES, DecodeError, TcpSegment
from net_gazer.sensor.spool import Spool
from net_gazer.v1 import traceroute_pb2 as tr_pb2
from net_gazer.v1 import wire_pb2

__all__ = [
    "STATE_TEMPLATES",
    "TARGETS",
    "FuzzTarget",
    "KnownBug",
    "QualityOp",
    "SpoolEntry",
    "TrackerOp",
    "encode_quality",
    "encode_spool",
    "encode_tracker",
    "host_address",
    "spool_envelope",
    "spool_record",
    "target",
]

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # FalkorDB integers are signed 64-bit


@dataclass(frozen=True)
class KnownBug:
    """A crash found by fuzzing and not fixed yet. It matches an exception by type, by a frame of
    its traceback (``where`` is ``"file.py:function"``), and by a regex on its message."""

    id: str
    exc: type[BaseException]
    summary: str
    where: str = ""
    match: str = ""

    def matches(self, exc: BaseException) -> bool:
        if not isinstance(exc, self.exc):
            return False
        if self.match and not re.search(self.match, str(exc)):
            return False
        if self.where:
            file, _, func = self.where.partition(":")
            frames = traceback.extract_tb(exc.__traceback__)
            if not any(f.filename.endswith(file) and f.name == func for f in frames):
                return False
        return True


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    run: Callable[[bytes], str]
    #: Longest input worth generating; the interpretation ignores bytes past what it needs.
    max_len: int = 4096
    known_bugs: tuple[KnownBug, ...] = ()

    @property
    def contract(self) -> str:
        return self.run.__doc__ or ""

    def known_bug(self, exc: BaseException) -> KnownBug | None:
        return next((b for b in self.known_bugs if b.matches(exc)), None)


TARGETS: dict[str, FuzzTarget] = {}


def target(
    name: str, *, max_len: int = 4096, known_bugs: Sequence[KnownBug] = ()
) -> Callable[[Callable[[bytes], str]], Callable[[bytes], str]]:
    """Register a function ``bytes -> outcome label`` as the fuzz target ``name``."""

    def register(func: Callable[[bytes], str]) -> Callable[[bytes], str]:
        if name in TARGETS:
            raise ValueError(f"fuzz target {name!r} registered twice")
        if not (func.__doc__ or "").strip():
            raise ValueError(f"fuzz target {name!r} needs a docstring stating its contract")
        TARGETS[name] = FuzzTarget(name, func, max_len, tuple(known_bugs))
        return func

    return register


class _Reader:
    """Consumes fuzz bytes; past the end it yields zeros, so every input has a meaning."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def __bool__(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


# --- decode ---------------------------------------------------------------------------------------

LINKTYPES = tuple(sorted(SUPPORTED_LINKTYPES))


def _reason(exc: BaseException) -> str:
    return str(exc).split(" (", 1)[0]


def _check_segment(seg: TcpSegment) -> None:
    size = {4: 4, 6: 16}.get(seg.family)
    assert size is not None, f"family {seg.family}"
    assert len(seg.src) == size and len(seg.dst) == size, "address length does not fit the family"
    assert 0 <= seg.sport <= 0xFFFF and 0 <= seg.dport <= 0xFFFF
    assert 0 <= seg.seq < 1 << 32 and 0 <= seg.ack < 1 << 32
    assert 0 <= seg.flags <= 0xFF and 0 <= seg.window <= 0xFFFF and 0 <= seg.ttl <= 0xFF
    assert seg.payload_len >= 0, f"negative payload length {seg.payload_len}"
    assert len(seg.options) % 4 == 0 and len(seg.options) <= 40, "options are whole words, <= 40"
    assert seg.src_text and seg.dst_text


@target("decode", max_len=600)
def decode_target(data: bytes) -> str:
    """``decode(linktype, ts, frame)``; the first byte picks the link type, the rest is the frame.

    Contract (sensor/decode.py): it returns a well-formed ``TcpSegment`` or ``None``, or raises
    ``DecodeError``; nothing else, whatever the bytes. The dpkt reference keeps the same promise,
    and where both decoders return a segment they return the same one.
    """
    if not data:
        return "empty input"
    linktype = LINKTYPES[data[0] % len(LINKTYPES)]
    frame = data[1:]
    try:
        seg = decode(linktype, 1.5, frame)
    except DecodeError as exc:
        seg, outcome = None, f"DecodeError: {_reason(exc)}"
    else:
        outcome = "not TCP" if seg is None else f"TCP over IPv{seg.family}"
    assert seg is None or isinstance(seg, TcpSegment), f"decode returned {type(seg).__name__}"
    if seg is not None:
        _check_segment(seg)
    try:
        ref = decode_dpkt(linktype, 1.5, frame)
    except DecodeError:
        ref = None
    assert ref is None or isinstance(ref, TcpSegment)
    if seg is not None and ref is not None:
        assert seg == ref, f"fast path and dpkt disagree:\n{seg}\n{ref}"
    return outcome


# --- handshake tracker ----------------------------------------------------------------------------

#: Interpretation of the tracker target's bytes. Small pools make the segments collide the way
#: real flows do (same 5-tuples, reversed 5-tuples, the same ISN on two ports).
TRACKER_ADDRS = {
    4: tuple(ipaddress.ip_address(a).packed for a in ("192.0.2.1", "192.0.2.2", "10.0.0.1", "0.0.0.0")),
    6: tuple(ipaddress.ip_address(a).packed for a in ("2001:db8::1", "2001:db8::2", "fe80::1", "::")),
}  # fmt: skip
TRACKER_PORTS = (443, 40000, 40001, 0)
TRACKER_ISNS = (0, 1000, 0xFFFFFFFF, 0x7FFFFFFF)
#: Seconds between segments; the last one steps back, as merged or re-timed captures can.
TRACKER_STEPS = (0.0, 1e-6, 0.01, 1.0, 9.0, 61.0, 200.0, -0.5)
TRACKER_TIMEOUT, TRACKER_TOMBSTONE = 60.0, 5.0
T0 = 1_700_000_000.0


@dataclass(frozen=True)
class TrackerOp:
    """One record of the tracker target's input (4 bytes), in readable form."""

    flags: int
    client: int = 0  # index into TRACKER_ADDRS[family]
    server: int = 1
    from_server: bool = False  # the segment travels server -> client
    iface: int = 0
    family: int = 4
    expire: bool = False  # call expire(now) after feeding it
    seq: int = 0  # index into TRACKER_ISNS
    ack: int = 0  # index into TRACKER_ISNS ...
    ack_plus_one: bool = False  # ... plus one, as a reply acknowledges an ISN
    step: int = 0  # index into TRACKER_STEPS: time before this segment
    cport: int = 1  # index into TRACKER_PORTS
    sport: int = 0

    def encode(self) -> bytes:
        b1 = (
            self.client | self.server << 2 | self.from_server << 4 | self.iface << 5
            | (self.family == 6) << 6 | self.expire << 7
        )  # fmt: skip
        b2 = self.seq | self.ack << 2 | self.ack_plus_one << 4 | self.step << 5
        return bytes((self.flags, b1, b2, self.cport | self.sport << 2))

    @classmethod
    def decode(cls, rec: bytes) -> TrackerOp:
        flags, b1, b2, b3 = rec
        return cls(
            flags=flags, client=b1 & 3, server=b1 >> 2 & 3, from_server=bool(b1 & 0x10),
            iface=b1 >> 5 & 1, family=6 if b1 & 0x40 else 4, expire=bool(b1 & 0x80),
            seq=b2 & 3, ack=b2 >> 2 & 3, ack_plus_one=bool(b2 & 0x10), step=b2 >> 5,
            cport=b3 & 3, sport=b3 >> 2 & 3,
        )  # fmt: skip


def encode_tracker(max_flows: int, ops: Iterable[TrackerOp]) -> bytes:
    """The tracker target's input for ``ops`` with a table of ``max_flows`` (1..4)."""
    return bytes([max_flows - 1]) + b"".join(op.encode() for op in ops)


class _Grammar:
    """Checks the tracker's event stream: per connection, SYN opens an attempt, at most one
    SYNACK follows, and exactly one verdict (COMPLETED, REFUSED, UNANSWERED, ABANDONED,
    EVICTED) closes it; EVICTED may close either state. No COMPLETED without its SYN: that event is what may trigger active probing."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, int, str, int], list[Kind]] = {}
        self.counts: Counter[str] = Counter()

    def check(self, events: Iterable[HandshakeEvent]) -> None:
        for e in events:
            self.counts[e.kind.value] += 1
            key = (e.client, e.cport, e.server, e.port)
            for rtt in (e.rtt, e.client_rtt):
                assert rtt is None or rtt >= 0, f"negative RTT {rtt} for {key}"
            seen = self.open.get(key)
            if e.kind is Kind.SYN:
                assert seen is None, f"a second SYN event while {key} is open"
                self.open[key] = [Kind.SYN]
                continue
            assert seen is not None, f"{e.kind.name} for {key} without its SYN event"
            if e.kind is Kind.SYNACK:
                assert seen == [Kind.SYN], f"SYNACK after {seen} for {key}"
                seen.append(Kind.SYNACK)
                continue
            if e.kind is Kind.COMPLETED:
                assert Kind.SYNACK in seen or e.simultaneous, f"COMPLETED without SYNACK: {key}"
            elif e.kind is Kind.ABANDONED:
                assert Kind.SYNACK in seen
            elif e.kind is not Kind.EVICTED:
                assert Kind.SYNACK not in seen, f"{e.kind.name} after a SYNACK for {key}"
            del self.open[key]


def _check_bounds(tracker: HandshakeTracker, max_flows: int) -> None:
    assert tracker.pending <= max_flows, f"{tracker.pending} pending > max_flows {max_flows}"
    assert len(tracker) - tracker.pending <= max_flows, "tombstones exceed max_flows"
    # White-box: the ISN index only ever points at live entries, so it cannot grow on its own.
    live = set(tracker._flows) | set(tracker._done)
    assert set(tracker._by_isn.values()) <= live, "the ISN index points at forgotten flows"


@target("tracker", max_len=1 + 4 * 200)
def tracker_target(data: bytes) -> str:
    """``HandshakeTracker.feed/expire/close`` over segments read from the bytes.

    Byte 0: ``max_flows = 1 + (b & 3)``. Then 4-byte records (:class:`TrackerOp`): TCP flags;
    client/server address indexes, direction, iface, family, expire-after; seq/ack from a pool of
    ISNs (+1), time step; client/server port indexes. ``close()`` at the end.

    Contract (sensor/handshake.py): feed/expire/close never raise; pending attempts and
    tombstones each stay within ``max_flows``; the events follow the handshake grammar (no
    COMPLETED without a SYN event for that connection, one verdict per attempt); the stats count
    every event; RTT samples are never negative; after ``close`` nothing is left.
    """
    r = _Reader(data)
    max_flows = 1 + (r.byte() & 3)
    tracker = HandshakeTracker(
        TrackerConfig(
            handshake_timeout=TRACKER_TIMEOUT, tombstone=TRACKER_TOMBSTONE, max_flows=max_flows
        )
    )
    grammar = _Grammar()
    now = T0
    while len(r.data) - r.pos >= 4:
        op = TrackerOp.decode(r.take(4))
        now += TRACKER_STEPS[op.step]
        addrs = TRACKER_ADDRS[op.family]
        c, s = (
            (addrs[op.client], TRACKER_PORTS[op.cport]),
            (addrs[op.server], TRACKER_PORTS[op.sport]),
        )
        (src, sport), (dst, dport) = (s, c) if op.from_server else (c, s)
        ack = (TRACKER_ISNS[op.ack] + op.ack_plus_one) % (1 << 32)
        seg = TcpSegment(
            now, op.iface, op.family, src, dst, sport, dport, TRACKER_ISNS[op.seq], ack,
            op.flags, 65535, 0, b"", 64, 0,
        )  # fmt: skip
        grammar.check(tracker.feed(seg))
        if op.expire:
            grammar.check(tracker.expire(now))
        _check_bounds(tracker, max_flows)
    grammar.check(tracker.close(now + 1.0))
    assert not grammar.open, f"attempts left without a verdict: {sorted(grammar.open)}"
    assert len(tracker) == 0 and not tracker._by_isn, "close() left state behind"
    assert tracker.stats.events == dict(grammar.counts), "stats.events miscounts the events"
    return "+".join(k.value for k in Kind if grammar.counts[k.value]) or "no events"


# --- protobuf: the envelope -----------------------------------------------------------------------


@target("envelope", max_len=2048)
def envelope_target(data: bytes) -> str:
    """``Envelope.FromString(bytes)``: what the collector's gRPC server does with every request.

    Contract: it returns an Envelope or raises protobuf's ``DecodeError``, nothing else; a parsed
    envelope serialises to ``ByteSize()`` bytes and parses back equal (unknown fields included).
    """
    try:
        env = wire_pb2.Envelope.FromString(data)
    except ProtobufDecodeError:
        return "DecodeError"
    out = env.SerializeToString()
    assert len(out) == env.ByteSize()
    assert wire_pb2.Envelope.FromString(out) == env, "an envelope does not survive a round trip"
    return f"envelope ({env.WhichOneof('body') or 'no body'})"


# --- protobuf: the collector's handshake rows -----------------------------------------------------

_FUZZ_SENSOR = SensorInfo(id="fuzz", site="fuzz-site", epoch="e")
_FUZZ_CTX = CollectorContext(name="handshake", config={}, graph="fuzz")


def _storable(value: Any, path: str) -> None:
    """Assert that FalkorDB takes ``value`` as a query parameter and stores it as given. Floats
    may be anything: the store writes NaN and infinities as null."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return
    if isinstance(value, str):
        assert "\x00" not in value, (
            f"{path}: {value!r}: a NUL is not storable (FalkorDB rejects it)"
        )
    elif isinstance(value, int):
        assert INT64_MIN <= value <= INT64_MAX, f"{path}: {value} is not storable as int64"
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _storable(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str) and k.isidentifier(), f"{path}: bad map key {k!r}"
            _storable(v, f"{path}.{k}")
    else:
        raise AssertionError(f"{path}: {type(value).__name__} is not a parameter type")


def host_address(text: str) -> str | None:
    """The canonical form of a host address; None for anything else. An IPv6 scope id
    (``fe80::1%eth0``) means nothing beyond the sensor's host, so such an address is none."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return None if addr.version == 6 and addr.scope_id is not None else str(addr)


@target("handshake_rows", max_len=2048)
def handshake_rows_target(data: bytes) -> str:
    """``Batch.FromString`` then the handshake plugin's ``ng_graph_writes`` (collector side).

    Contract: a parsed batch becomes None or GraphWrites without raising. A row without two
    host addresses (a scoped IPv6 address is none), with a port outside 1..65535 or with a
    protocol other than TCP (0 or 6) is skipped; every other row is written, keyed by
    the canonical addresses, since (scope, ip) is the Host key. Every parameter is one FalkorDB
    stores as given (no NUL in strings, int64 integers, identifier map keys).
    """
    try:
        batch = wire_pb2.Batch.FromString(data)
    except ProtobufDecodeError:
        return "DecodeError"
    writes = handshake_plugin.ng_graph_writes(_FUZZ_CTX, _FUZZ_SENSOR, batch)
    if writes is None:
        assert not batch.handshakes, "handshakes without writes"
        return "no handshakes"
    assert all(isinstance(w, GraphWrite) for w in writes)
    keys = set()
    for w in writes:
        _storable(w.rows, "rows")
        for i, row in enumerate(w.rows):
            assert host_address(row["c"]) == row["c"] and host_address(row["s"]) == row["s"], (
                f"rows[{i}]: {row['c']!r} -> {row['s']!r} is not a pair of canonical addresses"
            )
            assert 0 < row["dport"] <= 0xFFFF, f"rows[{i}]: port {row['dport']}"
            keys.add((row["c"], row["s"], row["dport"]))
        for ip, _ts in w.hosts:
            assert host_address(ip) == ip, f"host {ip!r} is not canonical"
    want = {
        (host_address(h.client), host_address(h.server), h.dport)
        for h in batch.handshakes
        if host_address(h.client)
        and host_address(h.server)
        and 0 < h.dport <= 0xFFFF
        and h.proto in (0, 6)
    }
    assert keys == want, f"rows written {sorted(keys)} != valid rows {sorted(want)}"
    return f"{len(keys)} rows of {len(batch.handshakes)}"


# --- the quality analysis -------------------------------------------------------------------------

QUALITY_ADDRS = {
    4: (TRACKER_ADDRS[4][0], TRACKER_ADDRS[4][1]),
    6: (TRACKER_ADDRS[6][0], TRACKER_ADDRS[6][1]),
}
QUALITY_PORTS = (40000, 40001, 40002, 443)
QUALITY_SEQS = (0, 1000, 0xFFFFFE0C, 0x7FFFFFFF)  # 0xFFFFFE0C: 500 below the wrap
#: Seconds before a segment; the last one steps back.
QUALITY_STEPS = (0.0, 1e-6, 1e-3, 0.01, 0.2, 5.0, 400.0, -0.3)


@dataclass(frozen=True)
class QualityOp:
    """One segment of the quality target's input (8 bytes), in readable form."""

    flags: int
    from_server: bool = False
    iface: int = 0
    expire: bool = False  # call expire(now) after it
    family: int = 4
    step: int = 0  # index into QUALITY_STEPS
    seq_base: int = 0  # index into QUALITY_SEQS
    ack_base: int = 0
    cport: int = 0  # index into QUALITY_PORTS (the server's port is 443)
    options: int = 0  # 0 none, 1 timestamps, 2 timestamps + SACK, 3 a malformed option
    seq_off: int = 0  # added to the base, 16 bits
    ack_off: int = 0
    length: int = 0  # payload length / 50, 5 bits
    zero_window: bool = False
    ts_pick: int = 0  # 2 bits: which TSval/TSecr pair the options carry

    def encode(self) -> bytes:
        b1 = (
            self.from_server | self.iface << 1 | self.expire << 3 | (self.family == 6) << 4
            | self.step << 5
        )  # fmt: skip
        b2 = self.seq_base | self.ack_base << 2 | self.cport << 4 | self.options << 6
        b7 = self.length | self.zero_window << 5 | self.ts_pick << 6
        return (
            bytes((self.flags, b1, b2))
            + struct.pack("!HH", self.seq_off, self.ack_off)
            + bytes((b7,))
        )

    @classmethod
    def decode(cls, rec: bytes) -> QualityOp:
        flags, b1, b2 = rec[0], rec[1], rec[2]
        seq_off, ack_off = struct.unpack("!HH", rec[3:7])
        b7 = rec[7]
        return cls(
            flags=flags, from_server=bool(b1 & 1), iface=b1 >> 1 & 3, expire=bool(b1 & 8),
            family=6 if b1 & 0x10 else 4, step=b1 >> 5, seq_base=b2 & 3, ack_base=b2 >> 2 & 3,
            cport=b2 >> 4 & 3, options=b2 >> 6, seq_off=seq_off, ack_off=ack_off,
            length=b7 & 0x1F, zero_window=bool(b7 & 0x20), ts_pick=b7 >> 6,
        )  # fmt: skip


def encode_quality(ops: Iterable[QualityOp], max_flows: int = 2) -> bytes:
    """The quality target's input: table bounds (byte 0), then 8-byte segment records."""
    return bytes([max_flows - 1]) + b"".join(op.encode() for op in ops)


def _quality_options(op: QualityOp, clock: int) -> bytes:
    if op.options == 0:
        return b""
    tsval = (clock + op.ts_pick * 997) & 0xFFFFFFFF
    tsecr = ((clock - op.ts_pick) & 0xFFFFFFFF) if op.ts_pick else 0
    ts = b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, tsecr)
    if op.options == 1:
        return ts
    if op.options == 2:
        le = (QUALITY_SEQS[op.ack_base] + op.ack_off) & 0xFFFFFFFF
        return ts + b"\x01\x01\x05\x0a" + struct.pack("!II", le, (le + 50 * op.length) & 0xFFFFFFFF)
    return b"\x05\x01\x08\x0b" + bytes(8)  # lengths that lie


@target("quality_flows", max_len=1 + 8 * 120)
def quality_flows_target(data: bytes) -> str:
    """``FlowTable.feed/expire/report/close`` (the quality plugin's analysis) over segments read
    from the bytes: byte 0 bounds the table (1-4 flows and embryos), then 8-byte
    :class:`QualityOp` records (flags, direction, interface, family, time step that may go back,
    sequence and acknowledgement numbers from a pool that wraps, payload, zero windows,
    timestamps, SACK and malformed options).

    Contract (plugins/quality/flows.py, analysis.py, tsrtt.py): nothing raises; flows and
    embryos stay within their bounds and each connection keeps at most MAX_PENDING timed TSvals
    per direction; every reported counter is a non-negative integer and every RTT aggregate has
    0 <= min <= max; after ``close`` nothing is left.
    """
    r = _Reader(data)
    bound = 1 + (r.byte() & 3)
    table = FlowTable(
        TableConfig(max_flows=bound, max_embryos=bound, linger=0.5, idle_timeout=30.0)
    )
    now, clock = T0, 1
    rows: list[Row] = []
    while len(r.data) - r.pos >= 8:
        op = QualityOp.decode(r.take(8))
        now += QUALITY_STEPS[op.step]
        clock += 1
        client, server = QUALITY_ADDRS[op.family]
        cport = QUALITY_PORTS[op.cport]
        src, dst, sport, dport = (
            (server, client, 443, cport) if op.from_server else (client, server, cport, 443)
        )
        seg = TcpSegment(
            now, op.iface, op.family, src, dst, sport, dport,
            (QUALITY_SEQS[op.seq_base] + op.seq_off) & 0xFFFFFFFF,
            (QUALITY_SEQS[op.ack_base] + op.ack_off) & 0xFFFFFFFF,
            op.flags, 0 if op.zero_window else 65535, 50 * op.length, _quality_options(op, clock),
            64, 0,
        )  # fmt: skip
        table.feed(seg)
        if op.expire:
            table.expire(now)
            rows.extend(table.report().values())
        assert len(table.flows) <= bound and len(table.embryos) <= bound, "a bound does not hold"
        assert len(table.copies) <= bound, "the copies table is unbounded"
        live = set(table.flows) | set(table.embryos)
        assert set(table._by_isn.values()) <= live, "the ISN index points at forgotten flows"
        for flow in table.flows.values():
            assert all(len(p) <= TS_MAX_PENDING for p in flow.ts.pending), "TS table unbounded"
    table.close()
    rows.extend(table.report().values())
    assert not (table.flows or table.embryos or table.copies), "close() left state behind"
    assert not table._by_isn, "the ISN index points at forgotten flows"
    for row in rows:
        assert row.flows >= 0
        for c in (row.c2s, row.s2c):
            for name in ("retransmits", "fast_retransmits", "spurious_retransmits", "out_of_order",
                         "sack_packets", "dsack", "zero_windows", "segments", "data_segments",
                         "payload_bytes", "rtt_n"):  # fmt: skip
                value = getattr(c, name)
                assert isinstance(value, int) and value >= 0, f"{name} = {value!r}"
            assert c.fast_retransmits + c.spurious_retransmits <= c.retransmits
            if c.rtt_n:
                assert 0 <= c.rtt_min <= c.rtt_max and c.rtt_sum >= 0, "a negative RTT"
    return f"{len(rows)} rows" if rows else "no rows"


# --- DPI: the parsers -----------------------------------------------------------------------------


@target("dpi_parsers", max_len=2048)
def dpi_parsers_target(data: bytes) -> str:
    """The dpi plugin's parsers: byte 0 picks one, the rest is its input. 0: the TLS
    ClientHello parser; 1: the HTTP Host header; 2: a DNS answer; 3: a host name; 4: ClientHello
    reassembly, the rest cut into segments (a length byte each) at consecutive or repeated
    sequence numbers.

    Contract (plugins/dpi/): nothing raises; a ClientHello outcome is one of the four; a name
    found is bytes; DNS addresses are 4 or 16 bytes; a host name is None or canonical
    (``hostname(name) == name``, lower-case ASCII, at most 253 characters); the reassembler
    keeps at most its bound of waiting ClientHellos.
    """
    kind, rest = (data[0] % 5, data[1:]) if data else (0, b"")
    if kind == 0:
        hello = dpi_tls.client_hello(rest)
        assert hello.outcome in (dpi_tls.DONE, dpi_tls.FOUND, dpi_tls.MORE, dpi_tls.INVALID)
        assert hello.sni is None or isinstance(hello.sni, bytes)
        if hello.outcome == dpi_tls.FOUND:
            assert hello.sni is not None
        return f"tls {hello.outcome}"
    if kind == 1:
        host = dpi_http.host(rest)
        assert host is None or isinstance(host, bytes)
        return "http host" if host else "http none"
    if kind == 2:
        answer = dpi_dns.answer(rest)
        if answer is None:
            return "dns none"
        assert all(len(a) in (4, 16) for a in answer.addresses)
        return f"dns {min(len(answer.addresses), 3)}"
    if kind == 3:
        name = dpi_hostname(rest)
        if name is None:
            return "name rejected"
        assert name == dpi_hostname(name) and name.isascii() and name == name.lower()
        assert len(name) <= 253 and ".." not in name
        return "name"
    asm = Assembler(max_pending=2, timeout=1.0)
    r, seq, outcomes = _Reader(rest), 0xFFFFFF00, set()
    while r:
        size = r.byte()
        chunk = r.take(size)
        key = (b"\x01", b"\x02", r.byte() & 3, 443)
        if key in asm.pending:
            got = asm.more(key, 1.0, seq, chunk, len(chunk) + (size & 1))
            outcomes.add(got.outcome if got else "wait")
        else:
            outcomes.add(asm.start(key, 1.0, seq, chunk, len(chunk)).outcome)
        if not size & 2:
            seq = (seq + len(chunk)) & 0xFFFFFFFF
        assert len(asm.pending) <= 2
    asm.expire(10.0)
    assert not asm.pending
    return "assemble " + "+".join(sorted(outcomes))


# --- protobuf: the quality and dpi collector halves -----------------------------------------------

_QUALITY_CTX = CollectorContext(name="quality", config={}, graph="fuzz")
_DPI_CTX = CollectorContext(name="dpi", config={}, graph="fuzz")


@target("quality_rows", max_len=2048)
def quality_rows_target(data: bytes) -> str:
    """``Batch.FromString`` then the quality and dpi plugins' ``ng_handle_extension`` (collector
    side) on every extension.

    Contract: nothing raises; an extension of another type is left alone (None). Quality rows
    are keyed by canonical addresses and a port in 1..65535, every count is an integer from 0 to
    2**53 and every RTT part with samples is finite with 0 <= min <= max; name rows hold a
    canonical address and only names that pass ``hostname``, at most MAX_NAMES of them; every
    parameter is one FalkorDB stores as given.
    """
    try:
        batch = wire_pb2.Batch.FromString(data)
    except ProtobufDecodeError:
        return "DecodeError"
    outcomes = Counter()
    for ext in batch.extensions:
        for ctx, plugin in ((_QUALITY_CTX, quality_collector), (_DPI_CTX, dpi_collector)):
            writes = plugin.ng_handle_extension(ctx, _FUZZ_SENSOR, ext.plugin, ext.payload)
            if writes is None:
                continue
            outcomes[ctx.name] += 1
            for w in writes:
                _storable(w.rows, "rows")
                for row in w.rows:
                    if ctx.name == "quality":
                        assert (
                            host_address(row["c"]) == row["c"]
                            and host_address(row["s"]) == row["s"]
                        )
                        assert 0 < row["dport"] <= 0xFFFF
                        for k, v in row.items():
                            if isinstance(v, int) and not isinstance(v, bool) and k != "dport":
                                assert 0 <= v <= 2**53, f"{k} = {v}"
                        for suffix in ("", "_c2s", "_s2c"):
                            if row[f"rn{suffix}"]:
                                lo, hi = row[f"rmin{suffix}"], row[f"rmax{suffix}"]
                                assert 0 <= lo <= hi < float("inf"), f"rtt {lo}..{hi}"
                    else:
                        assert host_address(row["ip"]) == row["ip"]
                        assert row["names"] and len(row["names"]) <= dpi_collector.MAX_NAMES
                        assert all(dpi_hostname(n) == n for n in row["names"]), row["names"]
                        assert row["name"] == row["names"][-1]
    return "+".join(f"{k}:{min(v, 3)}" for k, v in sorted(outcomes.items())) or "no extensions"


# --- traceroute: the reply matcher and the collector half ----------------------------------------

_TRACE_CTX = CollectorContext(name="traceroute", config={}, graph="fuzz")


@target("reply_match", max_len=1024)
def reply_match_target(data: bytes) -> str:
    """The traceroute reply matcher: byte 0 picks the socket the bytes came from (0: IPv4 raw,
    header included; 1: ICMPv6; 2: IPv6 TCP), the rest is the packet; the reply found goes into
    an engine with probes in flight to its destination.

    Contract (plugins/traceroute/matcher.py): only ``Malformed`` is raised; a reply names
    canonical addresses, a known method, ports and identifiers within their field sizes; the
    engine takes any reply without raising, and a reply that matches no probe leaves its
    probes in flight.
    """
    kind, rest = (data[0] % 3, data[1:]) if data else (0, b"")
    src = "2001:db8:100::2"
    try:
        if kind == 0:
            reply = tr_matcher.parse_ipv4(rest, 1.0)
        elif kind == 1:
            reply = tr_matcher.parse_icmp6(rest, src, 1.0)
        else:
            reply = tr_matcher.parse_tcp6(rest, src, 1.0)
    except tr_matcher.Malformed:
        return "malformed"
    if reply is None:
        return "not a reply"
    assert host_address(reply.responder) == reply.responder
    assert host_address(reply.dst) == reply.dst
    assert reply.method in ("tcp", "udp", "icmp")
    assert 0 <= reply.flow <= 0xFFFF and 0 <= reply.dport <= 0xFFFF
    assert 0 <= reply.ident <= 0xFFFFFFFF
    engine = tr_engine.Engine(tr_options.Options(stop_set=False), lambda d: "198.51.100.1", 0.0)
    engine.request(reply.dst, reply.dport or 80, 0.0)
    sent = engine.poll(0.0)
    matched = engine.reply(reply, 0.5)
    assert len(engine.inflight) == len(sent) - int(matched)
    engine.poll(100.0)
    return f"{reply.kind.value} {'matched' if matched else 'unmatched'}"


@target("trace_rows", max_len=4096)
def trace_rows_target(data: bytes) -> str:
    """``TraceReport.FromString`` then the traceroute plugin's ``ng_handle_extension``.

    Contract: nothing raises but a DecodeError of the report; hosts and rows hold canonical
    addresses; TTLs are 1..255; every RTT is finite and -1 or at least 0; every parameter is one
    FalkorDB stores as given.
    """
    try:
        report = tr_pb2.TraceReport.FromString(data)
    except ProtobufDecodeError:
        return "DecodeError"
    payload = AnyMessage()
    payload.Pack(report)
    writes = tr_collector.ng_handle_extension(_TRACE_CTX, _FUZZ_SENSOR, "traceroute", payload)
    assert writes is not None
    for w in writes:
        _storable(w.rows, "rows")
        for ip, _ in w.hosts:
            assert host_address(ip) == ip
        for row in w.rows:
            for rtt in row.get("rtts", []):
                assert math.isfinite(rtt) and (rtt == -1.0 or rtt >= 0)
            for at in row.get("at", []):
                assert 1 <= at["ttl"] <= 255 and host_address(at["ip"]) == at["ip"]
    return f"{len(writes[0].rows) if writes else 0} traces"


# --- the spool ------------------------------------------------------------------------------------

SPOOL_SENSOR, SPOOL_EPOCH = "gw-fuzz", "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0"


class SpoolEntry:
    """Kinds of directory entry the spool target can make; the second byte is the seq, the
    third a length. See :func:`spool_target`."""

    RAW = 0  # <seq>.env holding the next `length` fuzz bytes
    ENVELOPE = 1  # <seq>.env holding a valid envelope of this sensor and epoch, cut to `length`
    STATE = 2  # state.json (older versions'): template `seq`, or raw bytes past the list
    TMP = 3  # <seq>.tmp (a write interrupted before its rename)
    OTHER_SENSOR = 4  # <seq>.env holding another sensor's valid envelope
    DIRECTORY = 5  # a directory named <seq>.env (kind byte 0xFD only, see RARE_MIN)
    DANGLING = 6  # a symlink <seq>.env pointing nowhere (kind byte 0xFE only)
    FOREIGN = 7  # a file the spool does not own (notes.txt)


#: state.json contents (older versions kept one): valid, another sensor's, and JSON that is not
#: the expected object. The spool must ignore all of them.
STATE_TEMPLATES: tuple[bytes, ...] = (
    json.dumps({"sensor_id": SPOOL_SENSOR, "epoch": SPOOL_EPOCH}).encode(),
    json.dumps({"sensor_id": "other", "epoch": SPOOL_EPOCH}).encode(),
    json.dumps({"sensor_id": SPOOL_SENSOR}).encode(),
    json.dumps({"sensor_id": SPOOL_SENSOR, "epoch": None}).encode(),
    json.dumps({"sensor_id": SPOOL_SENSOR, "epoch": 7}).encode(),
    b"{}",
    b"[]",
    b"null",
    b"1",
    b'"x"',
    b'{"sensor_id": "gw-fuzz", "epoch": "e0e0',
    b"\xff\xfe",
)


def spool_record(payload: bytes) -> bytes:
    """A spool file's bytes: the serialized envelope, then its CRC-32, big-endian (spool.py;
    ``test_fuzz.py`` checks this against ``Spool.put``)."""
    return payload + zlib.crc32(payload).to_bytes(4, "big")


def spool_envelope(seq: int, sensor_id: str = SPOOL_SENSOR, epoch: str = SPOOL_EPOCH) -> bytes:
    """A valid spool file: a batch with one handshake row and a counter."""
    env = wire_pb2.Envelope(sensor_id=sensor_id, epoch=epoch, seq=seq, sent_at=T0 + seq)
    env.batch.handshakes.add(client="192.0.2.1", server="198.51.100.1", dport=443, attempts=1)
    env.batch.counters["packets"] = seq
    return spool_record(env.SerializeToString(deterministic=True))


def encode_spool(entries: Iterable[tuple[int, int, int, bytes]]) -> bytes:
    """The spool target's input for ``(kind, seq, length, content)`` entries; ``content`` is
    used by the kinds that read it (RAW, FOREIGN, STATE past the templates) and padded to
    ``length``."""
    out = b""
    for kind, seq, length, content in entries:
        out += bytes((kind, seq, length))
        reads = kind in (SpoolEntry.RAW, SpoolEntry.FOREIGN) or (
            kind == SpoolEntry.STATE and seq >= len(STATE_TEMPLATES)
        )
        if reads:
            out += content[:length].ljust(length, b"\0")
    return out


#: A directory or a symlink in place of a file is rare: only a kind byte >= RARE_MIN makes one
#: (else the entry is RAW), so that while a crash on them is a known bug it hides little else.
RARE_KINDS = frozenset({SpoolEntry.DIRECTORY, SpoolEntry.DANGLING})
RARE_MIN = 0xF8
STATE_AS_DIRECTORY = 0xFF  # a STATE entry with this seq makes state.json a directory


def _make_spool(r: _Reader, root: Path) -> set[int]:
    """Fill ``root`` from the fuzz bytes; return the seqs of the intact envelope files."""
    intact: set[int] = set()
    state = root / "state.json"
    while r:
        b, seq, length = r.byte(), r.byte(), r.byte()
        kind = b & 7
        if kind in RARE_KINDS and b < RARE_MIN:
            kind = SpoolEntry.RAW
        path = root / f"{seq:020d}.env"
        if kind == SpoolEntry.STATE:
            content = STATE_TEMPLATES[seq] if seq < len(STATE_TEMPLATES) else r.take(length)
            if state.is_dir():
                continue
            if seq == STATE_AS_DIRECTORY:
                state.unlink(missing_ok=True)
                state.mkdir()
            else:
                state.write_bytes(content)
            continue
        if kind == SpoolEntry.TMP:
            (root / f"{seq:020d}.tmp").write_bytes(spool_envelope(seq)[:length])
            continue
        if kind == SpoolEntry.FOREIGN:
            (root / "notes.txt").write_bytes(r.take(length))
            continue
        content = r.take(length) if kind == SpoolEntry.RAW else b""
        if path.is_symlink() or path.is_dir():
            continue  # the name is taken by a link or a directory: keep what is there
        intact.discard(seq)
        if kind == SpoolEntry.RAW:
            path.write_bytes(content)
        elif kind == SpoolEntry.ENVELOPE:
            full = spool_envelope(seq)
            path.write_bytes(full[:length])
            if length >= len(full) and seq >= 1:  # seq 0 is the hello's, never spooled
                intact.add(seq)
        elif kind == SpoolEntry.OTHER_SENSOR:
            path.write_bytes(spool_envelope(seq, sensor_id="other"))
        elif kind == SpoolEntry.DIRECTORY:
            path.unlink(missing_ok=True)
            path.mkdir()
        else:  # DANGLING
            path.unlink(missing_ok=True)
            path.symlink_to(root / "nowhere" / path.name)
    return intact


@target("spool", max_len=4096)
def spool_target(data: bytes) -> str:
    """``Spool.load()`` on a spool directory built from the bytes.

    Entries of ``kind, seq, length`` bytes (:class:`SpoolEntry`), raw kinds followed by
    ``length`` content bytes: raw or truncated ``<seq>.env`` files, ``state.json`` files (which
    older versions kept, and which must not matter), ``.tmp`` leftovers, another sensor's
    envelopes, a directory or a dangling symlink in place of a file, a foreign file.

    Contract (sensor/spool.py): load never raises on any directory content; it returns a
    non-empty epoch and only this sensor's envelopes of that epoch, each a whole one (the seq
    its file name says, at least 1, with a batch or gap), in seq order and without holes (a
    missing seq becomes a gap envelope, on disk too); ``.tmp`` leftovers and ``state.json``
    files are gone. Whatever ``state.json`` holds, every intact envelope file is returned
    unless a later gap accounts for it.
    """
    r = _Reader(data)
    with tempfile.TemporaryDirectory(prefix="ng-fuzz-spool-") as tmp:
        root = Path(tmp) / "spool"
        root.mkdir()
        intact = _make_spool(r, root)
        spool = Spool(root, SPOOL_SENSOR)
        try:
            epoch, envelopes = spool.load()
        finally:
            spool.close()
        assert isinstance(epoch, str) and epoch, "load returned no epoch"
        seqs = [e.seq for e in envelopes]
        for env in envelopes:
            assert env.sensor_id == SPOOL_SENSOR and env.epoch == epoch, "a foreign envelope"
            assert (
                env.seq >= 1
                and (root / f"{env.seq:020d}.env").is_file()
                and env.WhichOneof("body")
                in (
                    "batch",
                    "gap",
                )
            ), f"a truncated or misnumbered spool file was loaded as seq {env.seq}"
        assert seqs == sorted(set(seqs)), f"envelopes out of seq order: {seqs}"
        for before, env in itertools.pairwise(envelopes):
            first = env.gap.first_seq if env.HasField("gap") else env.seq
            assert first == before.seq + 1, f"a hole before seq {env.seq}: {seqs}"
        assert not list(root.glob("*.tmp")), ".tmp leftovers survived load"
        assert not (root / "state.json").is_file(), "a state file survived load"
        covered = {
            n for e in envelopes if e.HasField("gap") for n in range(e.gap.first_seq, e.seq + 1)
        }
        if intact:
            assert epoch == SPOOL_EPOCH, "the waiting envelopes' epoch was not resumed"
            assert set(seqs) | covered >= intact, "an intact envelope was lost"
        return f"{len(envelopes)} resumed" if envelopes else "fresh epoch"


# --- triage ---------------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    """``fuzz_targets.py TARGET FILE...``: run files through a target and report each."""
    if len(argv) < 2 or argv[0] not in TARGETS:
        print(f"usage: fuzz_targets.py {{{','.join(TARGETS)}}} FILE...", file=sys.stderr)
        return 2
    t = TARGETS[argv[0]]
    failed = 0
    for name in argv[1:]:
        try:
            print(f"{name}: {t.run(Path(name).read_bytes())}")
        except Exception as exc:
            bug = t.known_bug(exc)
            failed += bug is None
            label = f"known bug {bug.id}" if bug else "NEW CRASH"
            print(f"{name}: {label}: {type(exc).__name__}: {exc}")
            if bug is None:
                traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
