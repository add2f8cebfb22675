"""The handshake tracker, driven from byte literals.

Every case builds real frames with ``frames.py``, decodes them with the sensor's fast-path decoder and
feeds the segments to a :class:`HandshakeTracker`, so what is checked is what the sensor would do with
those bytes on the wire. The rules under test are the module docstring of
``net_gazer.sensor.handshake``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import frames as F
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from net_gazer.sensor.decode import decode
from net_gazer.sensor.handshake import (
    HandshakeEvent,
    HandshakeTracker,
    Kind,
    TrackerConfig,
)
from net_gazer.sensor.packet import (
    DLT_EN10MB,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    TH_ACK,
    TH_PUSH,
    TH_RST,
    TH_SYN,
    DecodeError,
    TcpSegment,
)

MOD32 = 1 << 32  # RFC 9293 section 3.4
SYN, SYNACK, ACK, RST = TH_SYN, TH_SYN | TH_ACK, TH_ACK, TH_RST
T0 = 1_700_000_000.0
TIGHT = 1e-9  # RTTs are differences of the very timestamps fed in

CLIENT, SERVER = "192.168.1.10", "198.51.100.10"
CPORT, SPORT = 40001, 443
ISN_C, ISN_S = 0x1A2B3C4D, 0x5E6F7081

TERMINAL = {Kind.COMPLETED, Kind.REFUSED, Kind.UNANSWERED, Kind.ABANDONED, Kind.EVICTED}

Wrap = Callable[[bytes], bytes]


# --- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    ts: float
    buf: bytes
    linktype: int = DLT_EN10MB
    iface: int = 0


def segment(frame: Frame) -> TcpSegment:
    seg = decode(frame.linktype, frame.ts, frame.buf, frame.iface)
    assert seg is not None, "a TCP frame decoded to None"
    return seg


def run(tracker: HandshakeTracker, frames: Iterable[Frame]) -> list[HandshakeEvent]:
    events: list[HandshakeEvent] = []
    for frame in frames:
        events.extend(tracker.feed(segment(frame)))
    return events


def kinds(events: Iterable[HandshakeEvent]) -> list[Kind]:
    return [e.kind for e in events]


def of(events: Iterable[HandshakeEvent], kind: Kind) -> list[HandshakeEvent]:
    return [e for e in events if e.kind is kind]


@dataclass(frozen=True)
class Conn:
    """One client/server pair and its ISNs; builds the IP packets of its handshake."""

    client: str = CLIENT
    server: str = SERVER
    cport: int = CPORT
    sport: int = SPORT
    isn_c: int = ISN_C
    isn_s: int = ISN_S

    def c2s(self, flags: int, seq: int, ack: int = 0, payload: bytes = b"") -> bytes:
        opts = F.syn_options() if flags & TH_SYN else b""
        return F.tcp(
            self.client, self.server, self.cport, self.sport, flags, seq, ack, payload, opts
        )

    def s2c(self, flags: int, seq: int, ack: int = 0, payload: bytes = b"") -> bytes:
        opts = F.syn_options() if flags & TH_SYN else b""
        return F.tcp(
            self.server, self.client, self.sport, self.cport, flags, seq, ack, payload, opts, ttl=52
        )

    def syn(self, isn: int | None = None) -> bytes:
        return self.c2s(SYN, self.isn_c if isn is None else isn)

    def synack(self, ack: int | None = None) -> bytes:
        return self.s2c(SYNACK, self.isn_s, (self.isn_c + 1) % MOD32 if ack is None else ack)

    def ack(self, ack: int | None = None) -> bytes:
        seq = (self.isn_c + 1) % MOD32
        return self.c2s(ACK, seq, (self.isn_s + 1) % MOD32 if ack is None else ack)

    def rst(self, ack: int | None = None, flags: int = RST | ACK) -> bytes:
        return self.s2c(flags, 0, (self.isn_c + 1) % MOD32 if ack is None else ack)

    def data(self, seq_off: int = 1, size: int = 100) -> bytes:
        seq = (self.isn_c + seq_off) % MOD32
        return self.c2s(ACK | TH_PUSH, seq, (self.isn_s + 1) % MOD32, bytes(size))

    def handshake(self, t_syn: float, t_synack: float, t_ack: float) -> list[tuple[float, bytes]]:
        return [(t_syn, self.syn()), (t_synack, self.synack()), (t_ack, self.ack())]


def ether_frames(packets: Sequence[tuple[float, bytes]], wrap: Wrap = F.ether) -> list[Frame]:
    return [Frame(ts, wrap(ip)) for ts, ip in packets]


def assert_completed(
    event: HandshakeEvent,
    conn: Conn,
    *,
    rtt: float | None,
    client_rtt: float | None,
    family: int = 4,
) -> None:
    assert event.kind is Kind.COMPLETED
    assert (event.client, event.cport, event.server, event.port) == (
        conn.client,
        conn.cport,
        conn.server,
        conn.sport,
    )
    assert event.family == family
    if rtt is None:
        assert event.rtt is None
    else:
        assert event.rtt == pytest.approx(rtt, abs=TIGHT)
    if client_rtt is None:
        assert event.client_rtt is None
    else:
        assert event.client_rtt == pytest.approx(client_rtt, abs=TIGHT)


# --- the normal handshake and Karn's rule -------------------------------------------------------


def test_normal_handshake_gives_syn_synack_completed_with_both_rtt_halves() -> None:
    conn = Conn()
    t_syn, t_synack, t_ack = T0, T0 + 0.023456, T0 + 0.023456 + 0.000321
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames(conn.handshake(t_syn, t_synack, t_ack)))

    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    syn, synack, done = events
    assert (syn.client, syn.cport, syn.server, syn.port) == (CLIENT, CPORT, SERVER, SPORT)
    assert syn.ts == t_syn
    assert synack.rtt == pytest.approx(t_synack - t_syn, abs=TIGHT)
    assert_completed(done, conn, rtt=t_synack - t_syn, client_rtt=t_ack - t_synack)
    assert done.ts == t_ack
    assert done.syn_retransmits == 0
    assert not done.simultaneous
    # The attempt is finished: nothing more comes out at expiry or at the end of capture.
    assert tracker.pending == 0
    assert tracker.expire(t_ack + 1000) == []
    assert tracker.close(t_ack + 1000) == []


def test_retransmitted_syn_is_one_attempt_and_gives_no_server_rtt() -> None:
    conn = Conn()
    t_synack = T0 + 1.031
    t_ack = t_synack + 0.000222
    packets = [(T0, conn.syn()), (T0 + 1.0, conn.syn()), (t_synack, conn.synack())]
    packets.append((t_ack, conn.ack()))
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames(packets))

    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert events[1].rtt is None  # Karn: the SYN+ACK answers one of two SYNs
    assert_completed(events[2], conn, rtt=None, client_rtt=t_ack - t_synack)
    assert events[2].syn_retransmits == 1
    assert tracker.stats.syn_retransmits == 1


def test_retransmitted_synack_gives_server_rtt_but_no_client_rtt() -> None:
    conn = Conn()
    t_synack = T0 + 0.044444
    packets = [
        (T0, conn.syn()),
        (t_synack, conn.synack()),
        (t_synack + 1.0, conn.synack()),  # the first SYN+ACK was lost past the sensor
        (t_synack + 1.0005, conn.ack()),
    ]
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames(packets))

    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert_completed(events[2], conn, rtt=t_synack - T0, client_rtt=None)
    assert tracker.stats.synack_retransmits == 1


# --- verdicts without completion ---------------------------------------------------------------


def test_syn_without_answer_is_unanswered_only_after_the_timeout() -> None:
    conn = Conn()
    config = TrackerConfig(handshake_timeout=75.0)
    tracker = HandshakeTracker(config)
    assert kinds(run(tracker, ether_frames([(T0, conn.syn())]))) == [Kind.SYN]

    assert tracker.expire(T0 + 10.0) == []
    assert tracker.expire(T0 + 74.9) == []
    events = tracker.expire(T0 + 75.0 + 0.1)
    assert kinds(events) == [Kind.UNANSWERED]
    assert (events[0].client, events[0].server, events[0].port) == (CLIENT, SERVER, SPORT)
    assert tracker.pending == 0
    assert tracker.expire(T0 + 1000.0) == []  # a verdict is given once


def test_syn_without_answer_is_unanswered_at_close() -> None:
    conn = Conn()
    tracker = HandshakeTracker()
    run(tracker, ether_frames([(T0, conn.syn()), (T0 + 1.0, conn.syn())]))
    events = tracker.close(T0 + 2.0)
    assert kinds(events) == [Kind.UNANSWERED]
    assert events[0].syn_retransmits == 1
    assert len(tracker) == 0


def test_synack_never_acked_is_abandoned_at_expiry() -> None:
    conn = Conn()
    tracker = HandshakeTracker(TrackerConfig(handshake_timeout=30.0))
    events = run(tracker, ether_frames([(T0, conn.syn()), (T0 + 0.01, conn.synack())]))
    assert kinds(events) == [Kind.SYN, Kind.SYNACK]
    assert tracker.expire(T0 + 20.0) == []
    events = tracker.expire(T0 + 31.0)
    assert kinds(events) == [Kind.ABANDONED]
    assert events[0].rtt is None and events[0].client_rtt is None


def test_rst_ack_answering_the_syn_is_refused() -> None:
    conn = Conn()
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames([(T0, conn.syn()), (T0 + 0.030303, conn.rst())]))
    assert kinds(events) == [Kind.SYN, Kind.REFUSED]
    refused = events[1]
    assert (refused.client, refused.server, refused.port) == (CLIENT, SERVER, SPORT)
    assert refused.ts == T0 + 0.030303
    assert tracker.pending == 0
    assert tracker.close(T0 + 100) == []


def test_rst_with_a_wrong_ack_number_is_not_a_refusal() -> None:
    conn = Conn()
    tracker = HandshakeTracker()
    wrong = (conn.isn_c + 2) % MOD32
    events = run(tracker, ether_frames([(T0, conn.syn()), (T0 + 0.03, conn.rst(ack=wrong))]))
    assert kinds(events) == [Kind.SYN]
    assert tracker.stats.unmatched == 1
    # The attempt is still open: the real answer completes it.
    t_synack, t_ack = T0 + 0.05, T0 + 0.0505
    events = run(tracker, ether_frames([(t_synack, conn.synack()), (t_ack, conn.ack())]))
    assert kinds(events) == [Kind.SYNACK, Kind.COMPLETED]
    assert_completed(events[1], conn, rtt=t_synack - T0, client_rtt=t_ack - t_synack)


def test_bare_rst_without_ack_is_not_a_refusal() -> None:
    # RFC 9293 section 3.10.7.1: a closed port answers a SYN with <CTL=RST,ACK> and
    # ACK = ISN + 1. Section 3.10.7.3: in SYN-SENT, a RST without an acceptable ACK is dropped by
    # the client (Linux: tcp_rcv_synsent_state_process discards it), so the attempt goes on. A bare
    # RST needs no ISN to forge: counting it as "refused" lets anyone who knows the ports end an
    # attempt in the sensor's books, and the real SYN+ACK/ACK that follow are then lost.
    conn = Conn()
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames([(T0, conn.syn()), (T0 + 0.01, conn.rst(ack=0, flags=RST))]))
    assert kinds(events) == [Kind.SYN]
    t_synack, t_ack = T0 + 0.05, T0 + 0.0505
    events = run(tracker, ether_frames([(t_synack, conn.synack()), (t_ack, conn.ack())]))
    assert kinds(events) == [Kind.SYNACK, Kind.COMPLETED]


# --- simultaneous open ------------------------------------------------------------------------


def simultaneous_packets(
    a: Conn, synack_ack_a: int, synack_ack_b: int
) -> list[tuple[float, bytes]]:
    """A sends SYN(x), B sends SYN(y); then A's SYN+ACK and B's SYN+ACK (RFC 9293 figure 8)."""
    return [
        (T0, a.c2s(SYN, a.isn_c)),
        (T0 + 0.001, a.s2c(SYN, a.isn_s)),
        (T0 + 0.002, a.c2s(SYNACK, a.isn_c, synack_ack_a)),
        (T0 + 0.003, a.s2c(SYNACK, a.isn_s, synack_ack_b)),
    ]


def test_simultaneous_open_completes_once_without_rtt() -> None:
    a = Conn(client="192.0.2.1", server="192.0.2.2", cport=5000, sport=6000)
    packets = simultaneous_packets(a, (a.isn_s + 1) % MOD32, (a.isn_c + 1) % MOD32)
    packets.append((T0 + 0.004, a.c2s(ACK, a.isn_c + 1, a.isn_s + 1)))
    packets.append((T0 + 0.005, a.s2c(ACK, a.isn_s + 1, a.isn_c + 1)))
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames(packets))

    assert kinds(events) == [Kind.SYN, Kind.COMPLETED]  # one attempt, completed once
    done = events[1]
    assert done.simultaneous
    assert done.rtt is None and done.client_rtt is None
    assert (done.client, done.cport, done.server, done.port) == (
        "192.0.2.1",
        5000,
        "192.0.2.2",
        6000,
    )
    assert tracker.close(T0 + 1) == []


def test_simultaneous_open_synack_with_wrong_ack_does_not_complete() -> None:
    # Every SYN+ACK of a simultaneous open acknowledges the other side's SYN (RFC 9293 figure 8:
    # <SEQ=100><ACK=301><CTL=SYN,ACK> answers <SEQ=300><CTL=SYN>). A SYN+ACK that acknowledges
    # neither SYN is not an answer to this attempt, so it must not complete it.
    a = Conn(client="192.0.2.1", server="192.0.2.2", cport=5000, sport=6000)
    bogus_a = (a.isn_s + 12345) % MOD32
    bogus_b = (a.isn_c + 12345) % MOD32
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames(simultaneous_packets(a, bogus_a, bogus_b)))
    assert of(events, Kind.COMPLETED) == []


# --- spoofed answers and TCP Fast Open ----------------------------------------------------------


def test_spoofed_reverse_syn_does_not_suppress_the_rtt_samples() -> None:
    # A blind spoofer sends a SYN "from the server" while the client's SYN is pending. The real
    # server's SYN+ACK carries another ISN than that SYN, so there was no simultaneous open: the
    # handshake completes as an ordinary one, with both RTT halves.
    conn = Conn()
    spoofed_isn = (conn.isn_s + 0x10000) % MOD32
    tracker = HandshakeTracker()
    events = run(
        tracker,
        ether_frames(
            [
                (T0, conn.syn()),
                (T0 + 0.001, conn.s2c(SYN, spoofed_isn)),
                (T0 + 0.020, conn.synack()),
                (T0 + 0.023, conn.ack()),
            ]
        ),
    )
    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert not events[-1].simultaneous
    assert_completed(
        events[-1], conn, rtt=(T0 + 0.020) - T0, client_rtt=(T0 + 0.023) - (T0 + 0.020)
    )


def test_rst_after_synack_with_a_wrong_sequence_number_is_ignored() -> None:
    # RFC 5961 section 3.2: a RST is taken only with its sender's exact next sequence number.
    conn = Conn()
    tracker = HandshakeTracker()
    blind_server = conn.s2c(RST, (conn.isn_s + 5000) % MOD32)
    blind_client = conn.c2s(RST, (conn.isn_c + 5000) % MOD32)
    events = run(
        tracker,
        ether_frames(
            [
                (T0, conn.syn()),
                (T0 + 0.010, conn.synack()),
                (T0 + 0.011, blind_server),
                (T0 + 0.012, blind_client),
                (T0 + 0.015, conn.ack()),
            ]
        ),
    )
    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert_completed(
        events[-1], conn, rtt=(T0 + 0.010) - T0, client_rtt=(T0 + 0.015) - (T0 + 0.010)
    )
    assert tracker.stats.unmatched == 2


@pytest.mark.parametrize("side", ["server", "client"])
def test_rst_after_synack_with_the_next_sequence_number_is_abandoned(side: str) -> None:
    conn = Conn()
    rst = (
        conn.s2c(RST, (conn.isn_s + 1) % MOD32)
        if side == "server"
        else conn.c2s(RST, (conn.isn_c + 1) % MOD32)
    )
    tracker = HandshakeTracker()
    events = run(
        tracker, ether_frames([(T0, conn.syn()), (T0 + 0.01, conn.synack()), (T0 + 0.02, rst)])
    )
    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.ABANDONED]
    assert events[-1].ts == T0 + 0.02
    assert tracker.pending == 0


@pytest.mark.parametrize("taken", [True, False])
def test_tcp_fast_open_syn_with_data_completes(taken: bool) -> None:
    # RFC 7413: the SYN carries data; a server that takes it acknowledges ISN + 1 + len, one that
    # does not (no valid cookie) acknowledges ISN + 1 only. Either way the handshake completes.
    conn = Conn()
    data = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"
    ack = (conn.isn_c + 1 + (len(data) if taken else 0)) % MOD32
    tracker = HandshakeTracker()
    events = run(
        tracker,
        ether_frames(
            [
                (T0, conn.c2s(SYN, conn.isn_c, payload=data)),
                (T0 + 0.040, conn.synack(ack=ack)),
                (T0 + 0.041, conn.c2s(ACK, ack, (conn.isn_s + 1) % MOD32)),
            ]
        ),
    )
    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert_completed(
        events[-1], conn, rtt=(T0 + 0.040) - T0, client_rtt=(T0 + 0.041) - (T0 + 0.040)
    )


def test_tcp_fast_open_ack_beyond_the_data_is_not_an_answer() -> None:
    conn = Conn()
    data = b"hello"
    tracker = HandshakeTracker()
    events = run(
        tracker,
        ether_frames(
            [
                (T0, conn.c2s(SYN, conn.isn_c, payload=data)),
                (T0 + 0.04, conn.synack(ack=(conn.isn_c + 2 + len(data)) % MOD32)),
            ]
        ),
    )
    assert kinds(events) == [Kind.SYN]
    assert tracker.stats.unmatched == 1


def test_tcp_fast_open_refusal_acknowledges_the_data() -> None:
    conn = Conn()
    data = b"hello"
    tracker = HandshakeTracker()
    rst = conn.rst(ack=(conn.isn_c + 1 + len(data)) % MOD32)
    events = run(
        tracker,
        ether_frames([(T0, conn.c2s(SYN, conn.isn_c, payload=data)), (T0 + 0.01, rst)]),
    )
    assert kinds(events) == [Kind.SYN, Kind.REFUSED]


def test_verdicts_by_timeout_carry_the_attempts_own_time() -> None:
    # Stamping a verdict with the time the timeout was noticed would move last_seen up to a
    # whole timeout later than anything on the wire.
    unanswered, abandoned = Conn(cport=1111), Conn(cport=2222)
    tracker = HandshakeTracker(TrackerConfig(handshake_timeout=30.0))
    run(
        tracker,
        ether_frames(
            [
                (T0, unanswered.syn()),
                (T0 + 1.0, unanswered.syn()),
                (T0 + 3.0, unanswered.syn()),
                (T0 + 4.0, abandoned.syn()),
                (T0 + 4.1, abandoned.synack()),
            ]
        ),
    )
    events = tracker.expire(T0 + 100.0)
    assert kinds(events) == [Kind.UNANSWERED, Kind.ABANDONED]
    assert [e.ts for e in events] == [T0 + 3.0, T0 + 4.1]
    assert [e.started for e in events] == [T0, T0 + 4.0]
    assert events[0].syn_retransmits == 2


def test_verdicts_at_close_carry_the_attempts_own_time() -> None:
    conn = Conn()
    tracker = HandshakeTracker()
    run(tracker, ether_frames([(T0, conn.syn())]))
    (event,) = tracker.close(T0 + 50.0)
    assert event.kind is Kind.UNANSWERED and event.ts == T0 and event.started == T0


# --- families and link layers -----------------------------------------------------------------


def test_ipv6_handshake() -> None:
    conn = Conn(client="2001:db8:1::10", server="2001:db8:2::20", cport=43000, sport=443)
    t_synack, t_ack = T0 + 0.033333, T0 + 0.033333 + 0.000444
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames(conn.handshake(T0, t_synack, t_ack)))
    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert_completed(events[2], conn, rtt=t_synack - T0, client_rtt=t_ack - t_synack, family=6)


@pytest.mark.parametrize(
    "vlans",
    [(100,), ((F.ETH_TYPE_8021AD, 10), 100), ((F.ETH_TYPE_QINQ1, 7), (F.ETH_TYPE_8021Q, 300))],
    ids=["802.1Q", "802.1ad-QinQ", "9100-QinQ"],
)
def test_vlan_tagged_handshake_over_ethernet(vlans: tuple[int | tuple[int, int], ...]) -> None:
    conn = Conn(client="192.168.100.10", server="198.51.100.60", cport=43001, sport=80)
    t_synack, t_ack = T0 + 0.005555, T0 + 0.005555 + 0.000111
    tracker = HandshakeTracker()
    frames = ether_frames(conn.handshake(T0, t_synack, t_ack), lambda ip: F.ether(ip, vlans=vlans))
    assert frames[0].buf[12:14] != b"\x08\x00"  # really tagged
    events = run(tracker, frames)
    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert_completed(events[2], conn, rtt=t_synack - T0, client_rtt=t_ack - t_synack)


LAN_IFINDEX, WAN_IFINDEX = 2, 3
COPY_DELAY = 0.000007


def test_sll2_any_interface_copies_are_counted_once() -> None:
    # -i any on a gateway: each forwarded packet is seen on the LAN and on the WAN interface.
    conn = Conn()
    t_synack, t_ack = T0 + 0.0175, T0 + 0.0175 + 0.00025
    frames: list[Frame] = []
    for ts, ip, c2s in [
        (T0, conn.syn(), True),
        (t_synack, conn.synack(), False),
        (t_ack, conn.ack(), True),
    ]:
        first, second = (LAN_IFINDEX, WAN_IFINDEX) if c2s else (WAN_IFINDEX, LAN_IFINDEX)
        frames.append(Frame(ts, F.sll2(ip, ifindex=first), DLT_LINUX_SLL2))
        frames.append(Frame(ts + COPY_DELAY, F.sll2(ip, ifindex=second, pkttype=4), DLT_LINUX_SLL2))
    tracker = HandshakeTracker()
    events = run(tracker, frames)

    assert Counter(kinds(events)) == Counter({Kind.SYN: 1, Kind.SYNACK: 1, Kind.COMPLETED: 1})
    assert tracker.stats.copies_ignored > 0
    # The SYN's copy and the SYN+ACK's WAN copy at least (the ACK's copy trails the completion).
    assert tracker.stats.copies_ignored >= 2
    done = of(events, Kind.COMPLETED)[0]
    # Timed on the interface that saw the SYN first (the LAN), where the server's packets come
    # in a copy delay after the WAN.
    assert_completed(
        done, conn, rtt=t_synack + COPY_DELAY - T0, client_rtt=t_ack - (t_synack + COPY_DELAY)
    )
    assert done.iface & 0xFFFFFFFF == LAN_IFINDEX


def test_sll_v1_incoming_and_outgoing_copies_are_counted_once() -> None:
    # SLL v1 has no interface index: a forwarded packet is seen incoming (pkttype 0), then
    # outgoing (pkttype 4).
    conn = Conn()
    t_synack, t_ack = T0 + 0.0611, T0 + 0.0611 + 0.00075
    frames: list[Frame] = []
    for ts, ip in conn.handshake(T0, t_synack, t_ack):
        frames.append(Frame(ts, F.sll(ip, pkttype=0), DLT_LINUX_SLL))
        frames.append(Frame(ts + 0.000004, F.sll(ip, pkttype=4), DLT_LINUX_SLL))
    tracker = HandshakeTracker()
    events = run(tracker, frames)

    assert Counter(kinds(events)) == Counter({Kind.SYN: 1, Kind.SYNACK: 1, Kind.COMPLETED: 1})
    assert tracker.stats.copies_ignored > 0
    assert_completed(
        of(events, Kind.COMPLETED)[0], conn, rtt=t_synack - T0, client_rtt=t_ack - t_synack
    )


def test_natd_copy_on_another_interface_is_ignored() -> None:
    lan = Conn(client="192.168.1.10", cport=40000)
    wan = Conn(client="203.0.113.1", cport=61000)  # same ISNs and server endpoint, after SNAT
    t_synack, t_ack = T0 + 0.02, T0 + 0.0203
    frames = [
        Frame(T0, F.ether(lan.syn()), iface=0),
        Frame(T0 + 0.00001, F.ether(wan.syn()), iface=1),
        Frame(t_synack - 0.00001, F.ether(wan.synack()), iface=1),
        Frame(t_synack, F.ether(lan.synack()), iface=0),
        Frame(t_ack, F.ether(lan.ack()), iface=0),
        Frame(t_ack + 0.00001, F.ether(wan.ack()), iface=1),
    ]
    tracker = HandshakeTracker()
    events = run(tracker, frames)

    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert {e.client for e in events} == {"192.168.1.10"}
    assert tracker.stats.copies_ignored >= 1
    assert_completed(events[2], lan, rtt=t_synack - T0, client_rtt=t_ack - t_synack)
    assert tracker.close(T0 + 10) == []  # the copy left no pending attempt behind


# --- malformed input, sequence arithmetic, mid-flow ---------------------------------------------


def test_truncated_frames_raise_decode_error_and_the_handshake_still_completes() -> None:
    conn = Conn()
    t_synack, t_ack = T0 + 0.01, T0 + 0.0102
    syn, synack, ack = (F.ether(ip) for ip in (conn.syn(), conn.synack(), conn.ack()))
    ip_end = 14 + 20  # Ethernet + IPv4 without options
    cut_header = syn[: ip_end + 10]  # 10 of the 20 bytes of the TCP header
    cut_options = synack[: ip_end + 24]  # a full fixed header, but only 4 of 20 option bytes
    with pytest.raises(DecodeError):
        decode(DLT_EN10MB, T0, cut_header, 0)
    with pytest.raises(DecodeError):
        decode(DLT_EN10MB, T0, cut_options, 0)

    stream = [
        (T0, syn),
        (T0 + 0.001, cut_header),
        (t_synack, synack),
        (t_synack + 0.0001, cut_options),
        (t_ack, ack),
    ]
    tracker = HandshakeTracker()
    events: list[HandshakeEvent] = []
    malformed = 0
    for ts, buf in stream:  # as Sensor.process does: count and skip
        try:
            seg = decode(DLT_EN10MB, ts, buf, 0)
        except DecodeError:
            malformed += 1
            continue
        assert seg is not None
        events.extend(tracker.feed(seg))
    assert malformed == 2
    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert_completed(events[2], conn, rtt=t_synack - T0, client_rtt=t_ack - t_synack)


@pytest.mark.parametrize(
    ("isn_c", "isn_s"),
    [(0xFFFFFFFF, 0x12345678), (0x87654321, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF)],
    ids=["client-isn-wraps", "server-isn-wraps", "both-wrap"],
)
def test_sequence_numbers_wrap(isn_c: int, isn_s: int) -> None:
    conn = Conn(isn_c=isn_c, isn_s=isn_s)
    t_synack, t_ack = T0 + 0.009876, T0 + 0.009876 + 0.0005
    packets = conn.handshake(T0, t_synack, t_ack)
    if isn_c == 0xFFFFFFFF:
        assert segment(Frame(t_synack, F.ether(packets[1][1]))).ack == 0
    if isn_s == 0xFFFFFFFF:
        assert segment(Frame(t_ack, F.ether(packets[2][1]))).ack == 0
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames(packets))
    assert kinds(events) == [Kind.SYN, Kind.SYNACK, Kind.COMPLETED]
    assert_completed(events[2], conn, rtt=t_synack - T0, client_rtt=t_ack - t_synack)


def test_connection_whose_start_was_not_seen_gives_nothing() -> None:
    conn = Conn()
    tracker = HandshakeTracker()
    # Only the SYN+ACK and the ACK.
    events = run(tracker, ether_frames([(T0, conn.synack()), (T0 + 0.001, conn.ack())]))
    # Only data, both ways.
    mid = Conn(client="192.168.1.10", server="203.0.113.50", cport=50000)
    data = [
        (T0 + 0.01, mid.data(1, 200)),
        (T0 + 0.03, mid.s2c(ACK | TH_PUSH, mid.isn_s + 1, mid.isn_c + 201, bytes(1200))),
        (T0 + 0.0303, mid.c2s(ACK, mid.isn_c + 201, mid.isn_s + 1201)),
    ]
    events += run(tracker, ether_frames(data))
    assert events == []
    assert tracker.stats.unmatched >= 1  # the SYN+ACK was noticed as belonging to nothing
    assert tracker.expire(T0 + 1000) == []
    assert tracker.close(T0 + 1000) == []
    assert tracker.stats.events == {}


def test_new_isn_on_the_same_5_tuple_is_a_new_attempt() -> None:
    old = Conn(isn_c=1000)
    new = Conn(isn_c=900_000)
    t_new = T0 + 3.0
    tracker = HandshakeTracker()
    events = run(tracker, ether_frames([(T0, old.syn())]))
    assert kinds(events) == [Kind.SYN]

    events = run(tracker, ether_frames([(t_new, new.syn())]))
    assert kinds(events) == [Kind.UNANSWERED, Kind.SYN]
    assert events[1].ts == t_new
    # A late SYN+ACK for the old attempt belongs to nothing now.
    assert run(tracker, ether_frames([(t_new + 0.001, old.synack())])) == []
    t_synack, t_ack = t_new + 0.02, t_new + 0.0203
    events = run(tracker, ether_frames([(t_synack, new.synack()), (t_ack, new.ack())]))
    assert kinds(events) == [Kind.SYNACK, Kind.COMPLETED]
    assert_completed(events[1], new, rtt=t_synack - t_new, client_rtt=t_ack - t_synack)
    assert tracker.stats.flows_created == 2


# --- bounds -----------------------------------------------------------------------------------


def flood_syns(n: int) -> list[Frame]:
    out = []
    for i in range(n):
        client = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        conn = Conn(client=client, cport=1024 + i % 60000, isn_c=(i * 2_654_435_761) % MOD32)
        out.append(Frame(T0 + i * 0.0001, F.ether(conn.syn())))
    return out


def test_bounded_table_evicts_the_oldest_attempts_with_their_own_verdict() -> None:
    n, bound = 1000, 16
    tracker = HandshakeTracker(TrackerConfig(max_flows=bound))
    frames = flood_syns(n)
    events: list[HandshakeEvent] = []
    for frame in frames:
        events.extend(tracker.feed(segment(frame)))
        assert tracker.pending <= bound
        assert len(tracker) <= bound
    assert tracker.stats.evicted == n - bound
    assert len(of(events, Kind.SYN)) == n
    assert of(events, Kind.UNANSWERED) == []  # table pressure is not a non-answer
    evicted = of(events, Kind.EVICTED)
    assert len(evicted) == n - bound  # every eviction is a verdict
    assert evicted[0].client == "10.0.0.0"  # the oldest goes first
    assert len({(e.client, e.cport) for e in evicted}) == n - bound
    # Stamped with the evicted attempt's own time, not the time of the SYN that pushed it out.
    assert [e.ts for e in evicted] == [f.ts for f in frames[: n - bound]]
    assert [e.started for e in evicted] == [f.ts for f in frames[: n - bound]]
    rest = tracker.close(T0 + 10_000)
    assert kinds(rest) == [Kind.UNANSWERED] * bound


def test_half_open_syn_flood_never_completes() -> None:
    n = 1000
    tracker = HandshakeTracker(TrackerConfig(max_flows=16))
    events: list[HandshakeEvent] = []
    for frame in flood_syns(n):
        events.extend(tracker.feed(segment(frame)))
    # The flooder follows up with ACKs it cannot match to a SYN+ACK it never saw.
    for i in range(0, n, 7):
        conn = Conn(client=f"10.0.{i >> 8 & 255}.{i & 255}", cport=1024 + i, isn_c=i)
        events.extend(tracker.feed(segment(Frame(T0 + 1 + i * 0.0001, F.ether(conn.ack(ack=1))))))
    events += tracker.expire(T0 + 10_000)
    events += tracker.close(T0 + 10_000)
    counts = Counter(kinds(events))
    assert counts[Kind.COMPLETED] == 0
    assert set(counts) == {Kind.SYN, Kind.EVICTED, Kind.UNANSWERED}
    assert counts[Kind.EVICTED] == n - 16
    assert counts[Kind.UNANSWERED] == 16  # every attempt got its verdict, once


# --- property: arbitrary segment sequences ------------------------------------------------------

POOL_V4 = ("192.0.2.1", "192.0.2.2", "198.51.100.9")
POOL_V6 = ("2001:db8::1", "2001:db8::2")
PORTS = (1000, 443)
FLAGS = (SYN, SYNACK, ACK, RST, RST | ACK)
# Small pools so that acks often do acknowledge an ISN (x + 1), including across the wrap.
ISNS = (0, 100, 0xFFFFFFFF)
ACKS = (1, 101, 0)
isns = st.one_of(st.sampled_from(ISNS), st.integers(0, MOD32 - 1))
acks = st.one_of(st.sampled_from(ACKS), st.sampled_from(ISNS), st.integers(0, MOD32 - 1))


@st.composite
def random_segment(draw: st.DrawFn) -> bytes:
    """Any flags from the handshake's alphabet, any numbers, between a few endpoints."""
    pool = draw(st.sampled_from((POOL_V4, POOL_V6)))
    src, dst = draw(st.permutations(pool))[:2]
    return F.tcp(
        src,
        dst,
        draw(st.sampled_from(PORTS)),
        draw(st.sampled_from(PORTS)),
        draw(st.sampled_from(FLAGS)),
        seq=draw(isns),
        ack=draw(acks),
    )


# A few fixed connections; two share a client ISN and the server endpoint, as NAT'd copies do.
CONNS = (
    Conn(client="192.0.2.1", server="198.51.100.9", cport=1000, isn_c=0xFFFFFFFF, isn_s=100),
    Conn(client="192.0.2.2", server="198.51.100.9", cport=1000, isn_c=0xFFFFFFFF, isn_s=0),
    Conn(client="192.0.2.1", server="198.51.100.9", cport=443, isn_c=100, isn_s=0xFFFFFFFF),
    Conn(client="2001:db8::1", server="2001:db8::2", cport=1000, isn_c=0, isn_s=0),
)
PIECES = ("syn", "synack", "ack", "rst", "server-syn", "client-synack", "new-isn-syn")


def piece_bytes(conn: Conn, piece: str) -> bytes:
    """One packet of one of a few fixed connections: in any order, any number of times, these
    make complete, retransmitted, refused, simultaneous and half-finished handshakes."""
    if piece == "syn":
        return conn.syn()
    if piece == "synack":
        return conn.synack()
    if piece == "ack":
        return conn.ack()
    if piece == "rst":
        return conn.rst()
    if piece == "server-syn":  # simultaneous open
        return conn.s2c(SYN, conn.isn_s)
    if piece == "client-synack":
        return conn.c2s(SYNACK, conn.isn_c, (conn.isn_s + 1) % MOD32)
    return conn.syn(isn=(conn.isn_c + 7) % MOD32)


SCRIPTS = (
    ("syn", "synack", "ack"),
    ("syn", "syn", "synack", "ack"),
    ("syn", "synack", "synack", "ack"),
    ("syn", "rst"),
    ("syn", "server-syn", "client-synack", "synack"),
    ("syn", "synack"),
    ("syn",),
    ("synack", "ack"),
)


@st.composite
def segment_frames(draw: st.DrawFn) -> list[Frame]:
    """Handshake scripts of the fixed connections, each perturbed (extra pieces anywhere),
    interleaved with each other and with random segments; some packets on a second interface."""
    streams: list[list[bytes]] = []
    for conn in draw(st.lists(st.sampled_from(CONNS), max_size=5)):
        script = [*draw(st.sampled_from(SCRIPTS))]
        for piece in draw(st.lists(st.sampled_from(PIECES), max_size=3)):
            script.insert(draw(st.integers(0, len(script))), piece)
        streams.append([piece_bytes(conn, p) for p in script])
    streams.append(draw(st.lists(random_segment(), max_size=15)))
    schedule = draw(st.permutations([i for i, s in enumerate(streams) for _ in s]))
    position = [0] * len(streams)
    out = []
    for i in schedule:  # an interleaving that keeps each stream's own order
        ip = streams[i][position[i]]
        position[i] += 1
        out.append(Frame(ts=0.0, buf=F.ether(ip), iface=draw(st.sampled_from((0, 0, 0, 1)))))
    return out


def check_event_grammar(events: Sequence[HandshakeEvent], *, closed: bool) -> None:
    """Per (client, cport, server, port): SYN, an optional SYNACK, one verdict; and again."""
    open_: dict[tuple[str, int, str, int], list[Kind]] = {}
    for e in events:
        key = (e.client, e.cport, e.server, e.port)
        seen = open_.get(key)
        if e.kind is Kind.SYN:
            assert seen is None, f"a new attempt before the verdict on the last: {key}"
            open_[key] = [Kind.SYN]
            continue
        assert seen is not None, f"{e.kind} with no SYN before it: {key}"
        if e.kind is Kind.SYNACK:
            assert seen == [Kind.SYN]
            seen.append(Kind.SYNACK)
            continue
        assert e.kind in TERMINAL
        answered = Kind.SYNACK in seen
        if e.kind is Kind.COMPLETED:
            assert answered or e.simultaneous
            if e.rtt is not None:
                assert e.rtt >= 0
            if e.client_rtt is not None:
                assert e.client_rtt >= 0
        elif e.kind is Kind.ABANDONED:
            assert answered
        elif e.kind is not Kind.EVICTED:  # REFUSED, UNANSWERED; eviction takes either state
            assert not answered
        del open_[key]
    if closed:
        assert open_ == {}, f"attempts left without a verdict: {sorted(open_)}"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    frames=segment_frames(),
    gaps=st.lists(st.sampled_from((0.0, 0.0001, 0.5, 40.0)), min_size=50, max_size=50),
    max_flows=st.sampled_from((2, 4, 1000)),
)
def test_arbitrary_segment_sequences(
    frames: list[Frame], gaps: list[float], max_flows: int
) -> None:
    tracker = HandshakeTracker(
        TrackerConfig(handshake_timeout=60.0, tombstone=5.0, max_flows=max_flows)
    )
    events: list[HandshakeEvent] = []
    now = T0
    for frame, gap in zip(frames, gaps, strict=False):
        now += gap
        events.extend(tracker.feed(segment(Frame(now, frame.buf, frame.linktype, frame.iface))))
        if gap == 40.0:
            events.extend(tracker.expire(now))
        assert tracker.pending <= max_flows

    check_event_grammar(events, closed=False)
    # The property the brief states: no COMPLETED without a SYN for that connection before it.
    syn_seen: set[tuple[str, int, str, int]] = set()
    for e in events:
        key = (e.client, e.cport, e.server, e.port)
        if e.kind is Kind.SYN:
            syn_seen.add(key)
        elif e.kind is Kind.COMPLETED:
            assert key in syn_seen

    events.extend(tracker.close(now + 1))
    check_event_grammar(events, closed=True)
    assert len(tracker) == 0
    assert tracker.stats.events == {k.value: n for k, n in Counter(kinds(events)).items()}
