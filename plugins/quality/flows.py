"""The flows the quality plugin follows: their analysis, their counters per direction, and when
they are forgotten. No I/O: segments in, rows of counters out.

A flow is one TCP connection, seen on one captured interface: a copy of a segment on another
interface is ignored and counted, and so is a NAT'd copy (another 5-tuple on another interface
whose SYN carries the same server endpoint and initial sequence number, as the handshake tracker
recognises it). Its client is the side that sent the SYN; for a flow first seen mid-stream, the
side with the higher port (the lower address when the ports are equal).

Flows start out as *embryos*: a SYN, a SYN+ACK and their retransmissions are kept as they are,
in a table of their own, until a segment without SYN arrives; then the flow is built and the
kept segments are analysed first. A spoofed SYN flood therefore costs one small entry per SYN in
a bounded table and never pushes real flows out.

A flow is reported (its counters go into rows) only once it is *verified*: the sensor saw its
SYN, and each side has acknowledged exactly what the other had sent, which a sender of spoofed
segments cannot do without seeing the answers. Counters wait in the flow until then; a flow that
never gets there is forgotten and counted as unverified. A connection the sensor did not see open
(it was running when the sensor started, or was forgotten while idle) is analysed but never
reported: without its SYN, client and server are a guess, and the handshake plugin has no edge
for it either.

Memory is bounded: at most ``max_flows`` flows and ``max_embryos`` embryos, the oldest going
first when full. A flow is forgotten ``linger`` seconds after its RST or its second FIN (so the
last ACKs and retransmitted FINs are still analysed), after ``idle_timeout`` seconds without a
segment, or when a SYN with a new initial sequence number reuses its ports.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import analysis as A
from .options import DSACK, NO_SACK
from .options import parse as parse_options
from .sampling import followed
from .tsrtt import TsRtt

if TYPE_CHECKING:
    from net_gazer.sensor import TcpSegment

#: Segments an embryo keeps (a SYN retransmitted 6 times, and its SYN+ACKs).
MAX_EMBRYO_SEGMENTS = 16


@dataclass(frozen=True, slots=True)
class TableConfig:
    sample_rate: int = 1
    max_flows: int = 65_536
    max_embryos: int = 16_384
    #: Seconds after the RST or the second FIN before a flow is forgotten.
    linger: float = 3.0
    #: Seconds without a segment before a flow is forgotten.
    idle_timeout: float = 900.0
    #: Seconds a SYN waits for the rest of its handshake (as the handshake tracker does).
    embryo_timeout: float = 75.0
    #: Rows gathered before the table asks to be reported within an interval.
    max_rows: int = 20_000


@dataclass(slots=True)
class Counters:
    """One direction's counters (what its side sent), since they were last reported."""

    retransmits: int = 0
    fast_retransmits: int = 0
    spurious_retransmits: int = 0
    out_of_order: int = 0
    sack_packets: int = 0
    dsack: int = 0
    zero_windows: int = 0
    segments: int = 0
    data_segments: int = 0
    payload_bytes: int = 0
    #: Timestamp RTT samples timed on this direction's segments, milliseconds.
    rtt_sum: float = 0.0
    rtt_min: float = 0.0
    rtt_max: float = 0.0
    rtt_n: int = 0

    def add(self, o: Counters) -> None:
        self.retransmits += o.retransmits
        self.fast_retransmits += o.fast_retransmits
        self.spurious_retransmits += o.spurious_retransmits
        self.out_of_order += o.out_of_order
        self.sack_packets += o.sack_packets
        self.dsack += o.dsack
        self.zero_windows += o.zero_windows
        self.segments += o.segments
        self.data_segments += o.data_segments
        self.payload_bytes += o.payload_bytes
        if o.rtt_n:
            self.rtt_min = o.rtt_min if not self.rtt_n else min(self.rtt_min, o.rtt_min)
            self.rtt_max = o.rtt_max if not self.rtt_n else max(self.rtt_max, o.rtt_max)
            self.rtt_sum += o.rtt_sum
            self.rtt_n += o.rtt_n

    def sample(self, ms: float) -> None:
        self.rtt_min = ms if not self.rtt_n else min(self.rtt_min, ms)
        self.rtt_max = ms if not self.rtt_n else max(self.rtt_max, ms)
        self.rtt_sum += ms
        self.rtt_n += 1


@dataclass(slots=True)
class Row:
    """What one (client, server, server port) adds up to within an interval."""

    first: float
    last: float
    flows: int = 0
    c2s: Counters = field(default_factory=Counters)
    s2c: Counters = field(default_factory=Counters)


RowKey = tuple[str, str, int]
FlowKey = tuple[bytes, bytes, int, int]
#: A SYN's server endpoint and initial sequence number: what a NAT'd copy keeps.
IsnKey = tuple[bytes, int, int]


@dataclass(slots=True)
class Flow:
    key: FlowKey
    iface: int
    #: Side 0 is the client, side 1 the server.
    client: bytes
    cport: int
    server: bytes
    sport: int
    row_key: RowKey
    first: float
    last: float
    seq: A.SeqAnalysis = field(default_factory=A.SeqAnalysis)
    ts: TsRtt = field(default_factory=TsRtt)
    counts: tuple[Counters, Counters] = field(default_factory=lambda: (Counters(), Counters()))
    #: Whether each side has acknowledged exactly what the other had sent.
    acked: list[bool] = field(default_factory=lambda: [False, False])
    #: Whether the sensor saw the SYN that opened the connection.
    opened: bool = False
    fins: int = 0
    closing_at: float | None = None
    dirty: bool = False
    reported: bool = False
    isn_key: IsnKey | None = None

    @property
    def verified(self) -> bool:
        return self.opened and self.acked[0] and self.acked[1]


@dataclass(slots=True)
class Embryo:
    iface: int
    first: float
    isn: int  # the first SYN's sequence number (or the SYN+ACK's)
    segments: list[TcpSegment] = field(default_factory=list)
    isn_key: IsnKey | None = None


@dataclass(slots=True)
class TableStats:
    flows: int = 0
    embryos: int = 0
    copies_ignored: int = 0
    not_followed: int = 0
    evicted_full: int = 0
    embryos_evicted_full: int = 0
    embryos_expired: int = 0
    unverified: int = 0
    closed: int = 0
    idle: int = 0
    reused: int = 0
    ts_overflows: int = 0
    ts_negative: int = 0


def flow_key(src: bytes, dst: bytes, sport: int, dport: int) -> FlowKey:
    """The same key for both directions of a flow."""
    if (src, sport) <= (dst, dport):
        return (src, dst, sport, dport)
    return (dst, src, dport, sport)


def _text(addr: bytes) -> str:
    return str(ipaddress.ip_address(addr))


class FlowTable:
    def __init__(self, cfg: TableConfig | None = None) -> None:
        self.cfg = cfg or TableConfig()
        # OrderedDicts: the oldest entry goes first when a table is full, and popping the front
        # of a plain dict degrades to a scan over the holes it leaves behind.
        self.flows: OrderedDict[FlowKey, Flow] = OrderedDict()
        self.embryos: OrderedDict[FlowKey, Embryo] = OrderedDict()
        self.rows: dict[RowKey, Row] = {}
        self.stats = TableStats()
        #: Where each SYN's (server endpoint, ISN) belongs, to know NAT'd copies by.
        self._by_isn: dict[IsnKey, FlowKey] = {}
        #: Flows seen to be copies of another interface's flow: key -> last segment's time.
        self.copies: OrderedDict[FlowKey, float] = OrderedDict()
        #: Set when ``rows`` reached ``max_rows``: the caller should report now.
        self.full = False
        self._dirty: list[Flow] = []
        self._closing: list[Flow] = []
        self._next_idle_scan = 0.0

    def __len__(self) -> int:
        return len(self.flows)

    # -- segments ------------------------------------------------------------------------------
    def feed(self, seg: TcpSegment) -> None:
        key = flow_key(seg.src, seg.dst, seg.sport, seg.dport)
        flow = self.flows.get(key)
        if flow is not None:
            if seg.iface != flow.iface:
                self.stats.copies_ignored += 1
                return
            side = 0 if seg.src == flow.client and seg.sport == flow.cport else 1
            if flow.seq.starts_new_connection(side, seg.seq, seg.flags):
                self.stats.reused += 1
                self._forget(flow)
                self._embryo(key, seg)
                return
            self._segment(flow, side, seg)
            return
        embryo = self.embryos.get(key)
        if embryo is None:
            if key in self.copies:
                self.copies[key] = seg.ts
                self.stats.copies_ignored += 1
                return
            if not followed(seg.src, seg.dst, seg.sport, seg.dport, self.cfg.sample_rate):
                self.stats.not_followed += 1
                return
            if seg.flags & (A.SYN | A.ACK) == A.SYN and self._nat_copy(key, seg):
                return
            if seg.flags & A.SYN:
                self._embryo(key, seg)
            else:
                self._segment(self._new_flow(key, seg, seg.iface, seg.ts), -1, seg)
            return
        if seg.iface != embryo.iface:
            self.stats.copies_ignored += 1
            return
        if seg.flags & A.SYN and len(embryo.segments) < MAX_EMBRYO_SEGMENTS:
            if seg.flags & A.ACK or seg.seq == embryo.isn:
                embryo.segments.append(seg)
                return
            del self.embryos[key]  # a new SYN: the ports are reused by a new connection
            self._unindex(key, embryo.isn_key)
            self.stats.reused += 1
            self._embryo(key, seg)
            return
        del self.embryos[key]
        flow = self._new_flow(key, embryo.segments[0], embryo.iface, embryo.first)
        flow.opened = any(k.flags & (A.SYN | A.ACK) == A.SYN for k in embryo.segments)
        flow.isn_key = embryo.isn_key
        for kept in embryo.segments:
            self._segment(flow, -1, kept)
        self._segment(flow, -1, seg)

    def _nat_copy(self, key: FlowKey, seg: TcpSegment) -> bool:
        """Whether this SYN is a NAT'd copy of a flow seen on another interface; if so, its
        flow is remembered as a copy."""
        owner = self._by_isn.get((seg.dst, seg.dport, seg.seq))
        if owner is None or owner == key:
            return False
        other = self.flows.get(owner) or self.embryos.get(owner)
        if other is None or other.iface == seg.iface:
            return False
        if len(self.copies) >= self.cfg.max_embryos:
            self.copies.popitem(last=False)
        self.copies[key] = seg.ts
        self.stats.copies_ignored += 1
        return True

    def _embryo(self, key: FlowKey, seg: TcpSegment) -> None:
        if len(self.embryos) >= self.cfg.max_embryos:
            old_key, old = self.embryos.popitem(last=False)
            self._unindex(old_key, old.isn_key)
            self.stats.embryos_evicted_full += 1
        embryo = Embryo(seg.iface, seg.ts, seg.seq, [seg])
        if seg.flags & (A.SYN | A.ACK) == A.SYN:
            embryo.isn_key = (seg.dst, seg.dport, seg.seq)
            self._by_isn[embryo.isn_key] = key
        self.embryos[key] = embryo
        self.stats.embryos += 1

    def _unindex(self, key: FlowKey, isn_key: IsnKey | None) -> None:
        if isn_key is not None and self._by_isn.get(isn_key) == key:
            del self._by_isn[isn_key]

    def _new_flow(self, key: FlowKey, seg: TcpSegment, iface: int, first: float) -> Flow:
        """A flow whose first segment is ``seg``: its sender is the client when it is a SYN,
        the server when it is a SYN+ACK, and the side with the higher port otherwise."""
        if seg.flags & (A.SYN | A.ACK) == A.SYN:
            client_first = True
        elif seg.flags & A.SYN:
            client_first = False
        else:
            client_first = (seg.sport, seg.src) > (seg.dport, seg.dst)
        if client_first:
            client, cport, server, sport = seg.src, seg.sport, seg.dst, seg.dport
        else:
            client, cport, server, sport = seg.dst, seg.dport, seg.src, seg.sport
        if len(self.flows) >= self.cfg.max_flows:
            self.stats.evicted_full += 1
            self._forget(self.flows.popitem(last=False)[1])
        flow = Flow(
            key, iface, client, cport, server, sport,
            (_text(client), _text(server), sport), first, first,
        )  # fmt: skip
        self.flows[key] = flow
        self.stats.flows += 1
        return flow

    def _segment(self, flow: Flow, side: int, seg: TcpSegment) -> None:
        if side < 0:
            side = 0 if seg.src == flow.client and seg.sport == flow.cport else 1
        t = int(seg.ts * 1_000_000 + 0.5)
        flags, ack = seg.flags, seg.ack
        other = flow.seq.sides[1 - side]
        if flags & A.ACK and other.nextseq and ack == other.nextseq:
            flow.acked[side] = True
        verdict = flow.seq.segment(side, t, seg.seq, ack, seg.payload_len, flags, seg.window)
        c = flow.counts[side]
        c.segments += 1
        if seg.payload_len:
            c.data_segments += 1
            c.payload_bytes += seg.payload_len
        if verdict:
            if verdict & A.ANY_RETRANSMISSION:
                c.retransmits += 1
                if verdict & A.FAST_RETRANSMISSION:
                    c.fast_retransmits += 1
                elif verdict & A.SPURIOUS_RETRANSMISSION:
                    c.spurious_retransmits += 1
            if verdict & A.OUT_OF_ORDER:
                c.out_of_order += 1
            if verdict & A.ZERO_WINDOW:
                c.zero_windows += 1
        if seg.options:
            sack, tsval, tsecr = parse_options(seg.options, ack)
            if sack != NO_SACK:
                c.sack_packets += 1
                if sack == DSACK:
                    c.dsack += 1
            if tsval is not None:
                timed = bool(seg.payload_len or flags & (A.SYN | A.FIN))
                rtt = flow.ts.segment(side, t, tsval, tsecr, timed)
                if rtt is not None:
                    flow.counts[1 - side].sample(rtt / 1000.0)
        if flags & (A.FIN | A.RST) and flow.closing_at is None:
            flow.fins |= 1 << side
            if flags & A.RST or flow.fins == 3:
                flow.closing_at = seg.ts + self.cfg.linger
                self._closing.append(flow)
        flow.last = max(flow.last, seg.ts)
        if not flow.dirty:
            flow.dirty = True
            self._dirty.append(flow)

    # -- time ----------------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        """Forget the flows whose linger or idle time is over, and stale embryos."""
        keep = []
        for flow in self._closing:
            if self.flows.get(flow.key) is not flow:
                continue
            if flow.closing_at is not None and flow.closing_at <= now:
                self.stats.closed += 1
                self._forget(flow)
            else:
                keep.append(flow)
        self._closing = keep
        if now >= self._next_idle_scan:
            self._next_idle_scan = now + max(1.0, self.cfg.idle_timeout / 4)
            idle_before = now - self.cfg.idle_timeout
            for flow in [f for f in self.flows.values() if f.last < idle_before]:
                self.stats.idle += 1
                self._forget(flow)
            stale = now - self.cfg.embryo_timeout
            for key in [k for k, e in self.embryos.items() if e.first < stale]:
                self._unindex(key, self.embryos.pop(key).isn_key)
                self.stats.embryos_expired += 1
            for key in [k for k, t in self.copies.items() if t < idle_before]:
                del self.copies[key]

    def close(self) -> None:
        """Forget everything (the sensor stops): every verified flow's counters go to rows."""
        for flow in list(self.flows.values()):
            self._forget(flow)
        self.embryos.clear()
        self.copies.clear()
        self._by_isn.clear()
        self._closing.clear()

    def _forget(self, flow: Flow) -> None:
        self.flows.pop(flow.key, None)
        self._unindex(flow.key, flow.isn_key)
        self.stats.ts_overflows += flow.ts.overflows
        self.stats.ts_negative += flow.ts.negative
        if flow.verified:
            self._fold(flow)
        else:
            self.stats.unverified += 1
        flow.dirty = False

    # -- reports -------------------------------------------------------------------------------
    def report(self) -> dict[RowKey, Row]:
        """The rows gathered since the last report, with every verified flow's new counters."""
        for flow in self._dirty:
            if flow.dirty and flow.verified:
                self._fold(flow)
        self._dirty = [f for f in self._dirty if f.dirty]  # unverified ones wait
        rows, self.rows = self.rows, {}
        self.full = False
        return rows

    def _fold(self, flow: Flow) -> None:
        row = self.rows.get(flow.row_key)
        if row is None:
            row = self.rows[flow.row_key] = Row(flow.first, flow.last)
            if len(self.rows) >= self.cfg.max_rows:
                self.full = True
        else:
            row.first = min(row.first, flow.first)
            row.last = max(row.last, flow.last)
        if not flow.reported:
            flow.reported = True
            row.flows += 1
        row.c2s.add(flow.counts[0])
        row.s2c.add(flow.counts[1])
        flow.counts = (Counters(), Counters())
        flow.dirty = False
