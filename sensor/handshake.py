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
- Every answer is sequence-checked, so blind spoofing cannot steer an attempt: a SYN+ACK or RST+ACK
  must acknowledge the SYN, the final ACK the SYN+ACK, and a RST after the SYN+ACK must carry its
  sender's next sequence number (RFC 5961 section 3.2 asks the same exact match). TCP Fast Open
  (RFC 7413): a SYN that carries data may be acknowledged with ``ISN + 1 + len``, when the server
  took the data, or ``ISN + 1``, when it did not.
- The first captured interface that sees an attempt owns it; copies of its packets on other
  interfaces (the lan and wan side of one gateway, or NAT'd copies, which keep the client ISN and
  the server endpoint) are ignored, so a flow is counted once.
- Simultaneous open (both sides send a SYN) completes once, without RTT samples. A reverse SYN only
  makes it a candidate: when the server's SYN+ACK does not carry that SYN's ISN, the reverse SYN was
  not the server's (a spoofed one) and the handshake is an ordinary one, with its RTT samples.
- Every attempt gets exactly one verdict: completed, refused, unanswered, abandoned, or evicted.
  Verdicts by timeout carry the attempt's own last packet time, not the time the timeout was
  noticed.
- The table is bounded (pending attempts and tombstones, each by ``max_flows``); when full the
  oldest pending attempt is evicted with the verdict EVICTED, never counted as unanswered, so table
  pressure under a flood stays apart from real non-answers.
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
    EVICTED = "evicted"  # dropped from a full table before it had any other verdict


class State(enum.IntEnum):
    SYN_SENT = 1
    SYNACK_SEEN = 2
    DONE = 3  # kept briefly as a tombstone so late copies and retransmissions stay quiet


@dataclass(slots=True, frozen=True)
class HandshakeEvent:
    """Something that happened to one connection attempt.

    ``ts`` is when it happened: the packet that caused it, or for a verdict by timeout or
    eviction the attempt's last packet. ``started`` is the attempt's first SYN.
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
    started: float = 0.0


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
    #: Data carried by the SYN (TCP Fast Open), the largest of its transmissions, and by the
    #: SYN+ACK: an acknowledgement may cover it.
    syn_len: int = 0
    synack_len: int = 0
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


def _acks(ack: int, isn: int, data: int) -> bool:
    """Whether ``ack`` acknowledges a SYN with ``isn`` that carried ``data`` bytes: ``ISN + 1``,
    or up to ``ISN + 1 + data`` when the data was taken too (RFC 7413 section 4.2)."""
    return 1 <= (ack - isn) % SEQ_MOD <= 1 + data


def _next_seq(seq: int, isn: int, data: int) -> bool:
    """Whether ``seq`` is the next sequence number after a SYN with ``isn`` and ``data`` bytes."""
    return 1 <= (seq - isn) % SEQ_MOD <= 1 + data


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
                    flow.syn_len = max(flow.syn_len, seg.payload_len)
                    self.stats.syn_retransmits += 1
                    self._touch(key, flow, seg.ts)
                # A SYN retransmitted after the answer (lost SYN+ACK or ACK) changes nothing.
                return []
            # Same 5-tuple, new ISN: a new attempt. The old one gets its verdict first.
            events = self._forget(key, flow)
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
                # attempt, owned by the first SYN's sender, and yields no RTT samples. Only a
                # candidate until a SYN+ACK confirms it (see _synack): this SYN may be spoofed.
                rflow.simultaneous = True
                rflow.server_isn = seg.seq  # the peer's ISN, which the client's SYN+ACK acks
                rflow.synack_len = seg.payload_len
                self._touch(reverse, rflow, seg.ts)
                return []
        if len(self._flows) >= self.config.max_flows:
            old_key, old = next(iter(self._flows.items()))
            del self._flows[old_key]
            self._drop_isn(old_key, old)
            self.stats.evicted += 1
            events.append(self._event(Kind.EVICTED, old_key, old, old.last_ts))
        flow = _Flow(
            family=seg.family,
            iface=seg.iface,
            client_isn=seg.seq,
            syn_ts=seg.ts,
            last_ts=seg.ts,
            syn_len=seg.payload_len,
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
            if seg.seq == flow.server_isn or flow.state is not State.SYN_SENT:
                return self._simultaneous_synack(key, flow, seg)
            # The server answers with another ISN than the reverse SYN's: that SYN was not the
            # server's, and this is an ordinary handshake.
            flow.simultaneous = False
        if not _acks(seg.ack, flow.client_isn, flow.syn_len):
            self.stats.unmatched += 1
            return []
        if flow.state is State.SYN_SENT:
            flow.state = State.SYNACK_SEEN
            flow.server_isn = seg.seq
            flow.synack_len = seg.payload_len
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
        if from_client:
            acked = _acks(seg.ack, flow.server_isn, flow.synack_len)
        else:
            acked = _acks(seg.ack, flow.client_isn, flow.syn_len)
        if not acked:
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
        if not _acks(seg.ack, flow.server_isn, flow.synack_len):
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
            if not seg.flags & TH_ACK or not _acks(seg.ack, flow.client_isn, flow.syn_len):
                self.stats.unmatched += 1
                return []
            self._retire(key, flow, seg.ts)
            return [self._event(Kind.REFUSED, key, flow, seg.ts)]
        # A RST from either side after the SYN+ACK ends the attempt as abandoned, if it carries
        # its sender's next sequence number (RFC 9293 section 3.10.7.4, RFC 5961 section 3.2).
        from_server = flow is not None and flow.state is State.SYNACK_SEEN
        k = key if from_server else (seg.src, seg.sport, seg.dst, seg.dport)
        f = flow if from_server else self._flows.get(k)
        if f is None or f.state is not State.SYNACK_SEEN:
            return []
        if f.iface != seg.iface:
            self.stats.copies_ignored += 1
            return []
        in_order = (
            _next_seq(seg.seq, f.server_isn, f.synack_len)
            if from_server
            else _next_seq(seg.seq, f.client_isn, f.syn_len)
        )
        if not in_order:
            self.stats.unmatched += 1
            return []
        self._retire(k, f, seg.ts)
        return [self._event(Kind.ABANDONED, k, f, seg.ts)]

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
            events.extend(self._finish_events(key, flow))
        done = self._done
        while done:
            key, flow = next(iter(done.items()))
            if now - flow.last_ts < self.config.tombstone:
                break
            del done[key]
            self._drop_isn(key, flow)
        return events

    def close(self, now: float) -> list[HandshakeEvent]:
        """End of capture: every pending attempt gets its verdict now (stamped, like every
        verdict by timeout, with its own last packet time; ``now`` is kept for symmetry with
        :meth:`expire`)."""
        events: list[HandshakeEvent] = []
        for key, flow in self._flows.items():
            events.extend(self._finish_events(key, flow))
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

    def _forget(self, key: FlowKey, flow: _Flow) -> list[HandshakeEvent]:
        """Drop an entry (pending or tombstone) and return its verdict, if it still had none."""
        if self._flows.get(key) is flow:
            del self._flows[key]
        elif self._done.get(key) is flow:
            del self._done[key]
        self._drop_isn(key, flow)
        return self._finish_events(key, flow)

    def _finish_events(self, key: FlowKey, flow: _Flow) -> list[HandshakeEvent]:
        """The verdict of an attempt that ends without an answer to decide it, at its own last
        packet time."""
        if flow.state is State.SYN_SENT:
            return [self._event(Kind.UNANSWERED, key, flow, flow.last_ts)]
        if flow.state is State.SYNACK_SEEN:
            return [self._event(Kind.ABANDONED, key, flow, flow.last_ts)]
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
            started=flow.syn_ts,
        )
