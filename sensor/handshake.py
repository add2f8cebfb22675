"""TCP handshake tracking: SYN -> SYN+ACK -> ACK per connection, as pure logic.

Segments go in (:meth:`HandshakeTracker.feed`), :class:`HandshakeEvent` s come out. Time is whatever
the segments' timestamps say (:meth:`HandshakeTracker.expire` takes "now" from the caller), so the
same code runs on a live interface, on a pcap replay and in unit tests with byte literals.

Rules (RFC 9293 section 3.5 for the handshake itself):

- The SYN sender is the client. Its ISN identifies the attempt: a SYN with the same ISN again is a
  retransmission of the same attempt, a SYN with another ISN on the same 5-tuple a new attempt.
- RTT halves, as the sensor sees them: SYN -> SYN+ACK is the sensor-to-server half, SYN+ACK -> ACK
  the sensor-to-client half. Karn's rule: no sample across a retransmitted SYN (server half) or a
  retransmitted SYN+ACK (client half), because the answer cannot be matched to one transmission.
- A SYN+ACK or ACK whose start was not seen produces nothing: no bogus RTT.
- The first captured interface that sees an attempt owns it; copies of its packets on other
  interfaces (the lan and wan side of one gateway, or NAT'd copies, which keep the client ISN and
  the server endpoint) are ignored, so a flow is counted once.
- Simultaneous open (both sides send a SYN) completes once, without RTT samples.
- The table is bounded (pending attempts and tombstones, each by ``max_flows``); when full the
  oldest entry is evicted (counted).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from net_gazer.netaddr import ntop
from net_gazer.sensor.packet import TH_ACK, TH_RST, TH_SYN, TcpSegment

SEQ_MOD = 1 << 32  # RFC 9293 section 3.4: sequence arithmetic is modulo 2**32


class Kind(enum.Enum):
    SYN = "syn"  # a new attempt (retransmissions are not new attempts)
    SYNACK = "synack"  # the server answered the attempt
    COMPLETED = "completed"  # the client's ACK completed the handshake
    REFUSED = "refused"  # the server answered with RST
    UNANSWERED = "unanswered"  # no answer before the handshake timeout
    ABANDONED = "abandoned"  # answered by SYN+ACK, never completed by the client


class State(enum.IntEnum):
    SYN_SENT = 1
    SYNACK_SEEN = 2
    DONE = 3  # kept briefly as a tombstone so late copies and retransmissions stay quiet


@dataclass(slots=True, frozen=True)
class HandshakeEvent:
    """Something that happened to one connection attempt.

    ``rtt`` and ``client_rtt`` are seconds and only set on COMPLETED (``rtt`` also on SYNACK); None
    means no valid sample (Karn's rule, simultaneous open).
    """

    kind: Kind
    ts: float
    family: int
    client: str
    cport: int
    server: str
    port: int
    iface: int
    rtt: float | None = None
    client_rtt: float | None = None
    syn_retransmits: int = 0
    simultaneous: bool = False


FlowKey = tuple[bytes, int, bytes, int]  # client address, client port, server address, server port


@dataclass(slots=True)
class _Flow:
    family: int
    iface: int
    client_isn: int
    syn_ts: float
    last_ts: float
    state: State = State.SYN_SENT
    syn_retransmits: int = 0
    server_isn: int = 0
    synack_ts: float = 0.0
    synack_retransmitted: bool = False
    simultaneous: bool = False
    client_text: str = ""
    server_text: str = ""


@dataclass(slots=True)
class TrackerStats:
    segments: int = 0
    flows_created: int = 0
    evicted: int = 0
    syn_retransmits: int = 0
    synack_retransmits: int = 0
    copies_ignored: int = 0
    unmatched: int = 0  # SYN+ACK/ACK/RST that belong to no attempt we saw start
    tombstones_dropped: int = 0
    negative_rtt: int = 0
    events: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class TrackerConfig:
    #: Seconds after its last packet that an unfinished attempt is declared unanswered/abandoned.
    #: Linux gives up a SYN after about 127 s (6 retries); 75 s covers 5 retries.
    handshake_timeout: float = 75.0
    #: Seconds a finished attempt stays as a tombstone to absorb copies and late retransmissions.
    tombstone: float = 10.0
    #: Maximum tracked attempts; the oldest is evicted beyond it.
    max_flows: int = 262_144


class HandshakeTracker:
    """Follows handshakes; see the module docstring for the rules."""

    def __init__(
        self,
        config: TrackerConfig | None = None,
        ignore: Callable[[TcpSegment], bool] | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        self._ignore = ignore
        # Pending attempts and finished ones (tombstones), each ordered by last activity so the
        # stalest entry is at the front.
        self._flows: OrderedDict[FlowKey, _Flow] = OrderedDict()
        self._done: OrderedDict[FlowKey, _Flow] = OrderedDict()
        # (server address, server port, client ISN) -> key, to recognise copies on other interfaces
        # (including NAT'd copies, whose client address and port differ).
        self._by_isn: dict[tuple[bytes, int, int], FlowKey] = {}
        self.stats = TrackerStats()

    def __len__(self) -> int:
        return len(self._flows) + len(self._done)

    @property
    def pending(self) -> int:
        return len(self._flows)

    # -- input ------------------------------------------------------------------------------
    def feed(self, seg: TcpSegment) -> list[HandshakeEvent]:
        """Account one segment; return the events it caused (usually none)."""
        self.stats.segments += 1
        flags = seg.flags
        if not flags & (TH_SYN | TH_RST) and not self._flows:
            return []  # the common case on a busy link: data with nothing pending
        if self._ignore is not None and self._ignore(seg):
            return []
        if flags & TH_SYN:
            if flags & TH_ACK:
                return self._synack(seg)
            return self._syn(seg)
        if flags & TH_RST:
            return self._rst(seg)
        if flags & TH_ACK:
            return self._ack(seg)
        return []

    def _lookup(self, key: FlowKey) -> _Flow | None:
        flow = self._flows.get(key)
        return flow if flow is not None else self._done.get(key)

    def _syn(self, seg: TcpSegment) -> list[HandshakeEvent]:
        key: FlowKey = (seg.src, seg.sport, seg.dst, seg.dport)
        flow = self._lookup(key)
        events: list[HandshakeEvent] = []
        if flow is not None:
            if seg.iface != flow.iface:
                self.stats.copies_ignored += 1
                return []
            if seg.seq == flow.client_isn:
                if flow.state is State.SYN_SENT:
                    flow.syn_retransmits += 1
                    self.stats.syn_retransmits += 1
                    self._touch(key, flow, seg.ts)
                # A SYN retransmitted after the answer (lost SYN+ACK or ACK) changes nothing.
                return []
            # Same 5-tuple, new ISN: a new attempt. The old one gets its verdict first.
            events = self._forget(key, flow, seg.ts)
        else:
            other = self._by_isn.get((seg.dst, seg.dport, seg.seq))
            if other is not None and other != key:
                other_flow = self._lookup(other)
                if other_flow is not None and other_flow.iface != seg.iface:
                    self.stats.copies_ignored += 1  # NAT'd copy on the other side of the gateway
                    return []
            reverse: FlowKey = (seg.dst, seg.dport, seg.src, seg.sport)
            rflow = self._flows.get(reverse)
            if rflow is not None and rflow.state is State.SYN_SENT and rflow.iface == seg.iface:
                # Simultaneous open (RFC 9293 figure 8): both ends sent a SYN. It stays one
                # attempt, owned by the first SYN's sender, and yields no RTT samples.
                rflow.simultaneous = True
                rflow.server_isn = seg.seq  # the peer's ISN, which the client's SYN+ACK acks
                self._touch(reverse, rflow, seg.ts)
                return []
        if len(self._flows) >= self.config.max_flows:
            old_key, old = next(iter(self._flows.items()))
            events.extend(self._forget(old_key, old, old.last_ts))
            self.stats.evicted += 1
        flow = _Flow(
            family=seg.family,
            iface=seg.iface,
            client_isn=seg.seq,
            syn_ts=seg.ts,
            last_ts=seg.ts,
            client_text=ntop(seg.family, seg.src),
            server_text=ntop(seg.family, seg.dst),
        )
        self._flows[key] = flow
        self._by_isn[(seg.dst, seg.dport, seg.seq)] = key
        self.stats.flows_created += 1
        events.append(self._event(Kind.SYN, key, flow, seg.ts))
        return events

    def _synack(self, seg: TcpSegment) -> list[HandshakeEvent]:
        key: FlowKey = (seg.dst, seg.dport, seg.src, seg.sport)
        flow = self._lookup(key)
        if flow is None:
            # Maybe the SYN+ACK of a simultaneous open, sent by the first SYN's sender.
            rkey: FlowKey = (seg.src, seg.sport, seg.dst, seg.dport)
            rflow = self._lookup(rkey)
            if rflow is not None and rflow.simultaneous and rflow.iface == seg.iface:
                return self._simultaneous_synack(rkey, rflow, seg)
            self.stats.unmatched += 1
            return []
        if seg.iface != flow.iface:
            self.stats.copies_ignored += 1
            return []
        if flow.simultaneous:
            return self._simultaneous_synack(key, flow, seg)
        if seg.ack != (flow.client_isn + 1) % SEQ_MOD:
            self.stats.unmatched += 1
            return []
        if flow.state is State.SYN_SENT:
            flow.state = State.SYNACK_SEEN
            flow.server_isn = seg.seq
            flow.synack_ts = seg.ts
            self._touch(key, flow, seg.ts)
            rtt = None if flow.syn_retransmits else self._sample(seg.ts - flow.syn_ts)
            return [self._event(Kind.SYNACK, key, flow, seg.ts, rtt=rtt)]
        if flow.state is State.SYNACK_SEEN and seg.seq == flow.server_isn:
            flow.synack_retransmitted = True
            self.stats.synack_retransmits += 1
            self._touch(key, flow, seg.ts)
        return []

    def _simultaneous_synack(
        self, key: FlowKey, flow: _Flow, seg: TcpSegment
    ) -> list[HandshakeEvent]:
        # Each side's SYN+ACK acknowledges the other's SYN. The first one seen completes the
        # handshake: both SYNs crossed and one side has confirmed. No RTT: nothing is a reply.
        if flow.state is State.DONE:
            return []
        from_client = seg.src == key[0] and seg.sport == key[1]
        expected = flow.server_isn if from_client else flow.client_isn
        if seg.ack != (expected + 1) % SEQ_MOD:
            self.stats.unmatched += 1
            return []
        self._retire(key, flow, seg.ts)
        return [self._event(Kind.COMPLETED, key, flow, seg.ts)]

    def _ack(self, seg: TcpSegment) -> list[HandshakeEvent]:
        key: FlowKey = (seg.src, seg.sport, seg.dst, seg.dport)
        flow = self._flows.get(key)
        if flow is None or flow.state is not State.SYNACK_SEEN:
            return []
        if seg.iface != flow.iface:
            self.stats.copies_ignored += 1
            return []
        if seg.ack != (flow.server_isn + 1) % SEQ_MOD:
            return []
        self._retire(key, flow, seg.ts)
        rtt = None if flow.syn_retransmits else self._sample(flow.synack_ts - flow.syn_ts)
        client_rtt = None if flow.synack_retransmitted else self._sample(seg.ts - flow.synack_ts)
        return [self._event(Kind.COMPLETED, key, flow, seg.ts, rtt=rtt, client_rtt=client_rtt)]

    def _rst(self, seg: TcpSegment) -> list[HandshakeEvent]:
        # RST from the server in answer to the SYN: refused.
        key: FlowKey = (seg.dst, seg.dport, seg.src, seg.sport)
        flow = self._flows.get(key)
        if flow is not None and flow.state is State.SYN_SENT:
            if seg.iface != flow.iface:
                self.stats.copies_ignored += 1
                return []
            # RFC 9293 section 3.10.7.3: in SYN-SENT a reset is acceptable only if its ACK
            # acknowledges the SYN. A server refusing a SYN sends RST+ACK; a bare RST could be
            # blind spoofing, and the client ignores it too.
            if not seg.flags & TH_ACK or seg.ack != (flow.client_isn + 1) % SEQ_MOD:
                self.stats.unmatched += 1
                return []
            self._retire(key, flow, seg.ts)
            return [self._event(Kind.REFUSED, key, flow, seg.ts)]
        # A RST from either side after the SYN+ACK ends the attempt as abandoned.
        for k in (key, (seg.src, seg.sport, seg.dst, seg.dport)):
            f = self._flows.get(k)
            if f is not None and f.state is State.SYNACK_SEEN and f.iface == seg.iface:
                events = self._finish_events(k, f, seg.ts)
                self._retire(k, f, seg.ts)
                return events
        return []

    # -- time -------------------------------------------------------------------------------
    def expire(self, now: float) -> list[HandshakeEvent]:
        """Declare timed-out attempts unanswered/abandoned and forget stale tombstones."""
        events: list[HandshakeEvent] = []
        timeout = self.config.handshake_timeout
        flows = self._flows
        while flows:
            key, flow = next(iter(flows.items()))
            if now - flow.last_ts < timeout:
                break
            del flows[key]
            self._drop_isn(key, flow)
            events.extend(self._finish_events(key, flow, now))
        done = self._done
        while done:
            key, flow = next(iter(done.items()))
            if now - flow.last_ts < self.config.tombstone:
                break
            del done[key]
            self._drop_isn(key, flow)
        return events

    def close(self, now: float) -> list[HandshakeEvent]:
        """End of capture: every pending attempt gets its verdict now."""
        events: list[HandshakeEvent] = []
        for key, flow in self._flows.items():
            events.extend(self._finish_events(key, flow, now))
        self._flows.clear()
        self._done.clear()
        self._by_isn.clear()
        return events

    # -- helpers ----------------------------------------------------------------------------
    def _retire(self, key: FlowKey, flow: _Flow, ts: float) -> None:
        """Move a finished attempt to the tombstones."""
        flow.state = State.DONE
        flow.last_ts = max(flow.last_ts, ts)
        del self._flows[key]
        done = self._done
        if len(done) >= self.config.max_flows:
            # Tombstones are bounded too: the oldest goes early (it only absorbs late copies).
            old_key, old = next(iter(done.items()))
            del done[old_key]
            self._drop_isn(old_key, old)
            self.stats.tombstones_dropped += 1
        done[key] = flow

    def _forget(self, key: FlowKey, flow: _Flow, now: float) -> list[HandshakeEvent]:
        """Drop an entry (pending or tombstone) and return its verdict, if it still had none."""
        if self._flows.get(key) is flow:
            del self._flows[key]
        elif self._done.get(key) is flow:
            del self._done[key]
        self._drop_isn(key, flow)
        return self._finish_events(key, flow, now)

    def _finish_events(self, key: FlowKey, flow: _Flow, now: float) -> list[HandshakeEvent]:
        if flow.state is State.SYN_SENT:
            return [self._event(Kind.UNANSWERED, key, flow, now)]
        if flow.state is State.SYNACK_SEEN:
            return [self._event(Kind.ABANDONED, key, flow, now)]
        return []

    def _drop_isn(self, key: FlowKey, flow: _Flow) -> None:
        isn_key = (key[2], key[3], flow.client_isn)
        if self._by_isn.get(isn_key) == key:
            del self._by_isn[isn_key]

    def _sample(self, rtt: float) -> float | None:
        """An RTT sample, or None when time went backwards between the two packets (a clock step,
        or captures merged out of order): a negative RTT is no measurement."""
        if not rtt >= 0:  # negative, or NaN
            self.stats.negative_rtt += 1
            return None
        return rtt

    def _touch(self, key: FlowKey, flow: _Flow, ts: float) -> None:
        flow.last_ts = max(flow.last_ts, ts)
        self._flows.move_to_end(key)

    def _event(
        self,
        kind: Kind,
        key: FlowKey,
        flow: _Flow,
        ts: float,
        *,
        rtt: float | None = None,
        client_rtt: float | None = None,
    ) -> HandshakeEvent:
        counts = self.stats.events
        counts[kind.value] = counts.get(kind.value, 0) + 1
        return HandshakeEvent(
            kind=kind,
            ts=ts,
            family=flow.family,
            client=flow.client_text,
            cport=key[1],
            server=flow.server_text,
            port=key[3],
            iface=flow.iface,
            rtt=rtt,
            client_rtt=client_rtt,
            syn_retransmits=flow.syn_retransmits,
            simultaneous=flow.simultaneous,
        )
