"""The quality analysis from byte literals: each metric in a small hand-made connection whose
expected counts follow from the definitions in plugins/quality/analysis.py (tshark's), checked
against tshark too, since each scenario is also written to a pcap; then the timestamp RTT, the
sampling hash, the flow table's bounds, and Hypothesis on arbitrary segment orders.

Segments are real frames (tests/frames.py builds them with dpkt), decoded by the sensor's decoder
and fed to the flow table, as on the packet path.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import frames as F
import pytest
import tshark_reference as T
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from net_gazer.plugins.quality import analysis as A
from net_gazer.plugins.quality import options as O
from net_gazer.plugins.quality.flows import FlowTable, Row, TableConfig, flow_key
from net_gazer.plugins.quality.sampling import flow_hash, followed
from net_gazer.plugins.quality.tsrtt import MAX_PENDING, TsRtt
from net_gazer.sensor.decode import decode
from net_gazer.sensor.packet import LINKTYPE_RAW, TcpSegment

SYN, ACK, FIN, RST, PSH = A.SYN, A.ACK, A.FIN, A.RST, 0x08
C, S, CP, SP = "192.0.2.10", "198.51.100.20", 40000, 443
T0 = 1_700_000_000.0
MSS = 1000


@dataclass(frozen=True)
class P:
    """One segment: time (ms after T0), from the client?, flags, seq, ack, payload length,
    window, extra TCP options (the timestamps option comes from ``ts``)."""

    ms: float
    c2s: bool
    flags: int
    seq: int
    ack: int = 0
    length: int = 0
    window: int = 65535
    sack: tuple[tuple[int, int], ...] = ()
    ts: tuple[int, int] | None = None


def frame(p: P, client: str = C, server: str = S) -> bytes:
    src, dst, sport, dport = (client, server, CP, SP) if p.c2s else (server, client, SP, CP)
    opts = b""
    if p.ts is not None:
        opts += F.ts_options(*p.ts)
    if p.sack:
        opts += b"\x01\x01" + struct.pack("!BB", 5, 2 + 8 * len(p.sack))
        opts += b"".join(struct.pack("!II", le % 2**32, re % 2**32) for le, re in p.sack)
    return F.tcp(
        src, dst, sport, dport, p.flags, p.seq % 2**32, p.ack % 2**32, b"z" * p.length, opts,
        p.window,
    )  # fmt: skip


def segments(pkts: list[P], client: str = C, server: str = S) -> list[TcpSegment]:
    out = []
    for p in pkts:
        seg = decode(LINKTYPE_RAW, T0 + p.ms / 1000, frame(p, client, server))
        assert seg is not None
        out.append(seg)
    return out


def run(pkts: list[P], cfg: TableConfig | None = None) -> Row:
    table = FlowTable(cfg)
    for seg in segments(pkts):
        table.feed(seg)
    table.close()
    rows = table.report()
    assert list(rows) == [(C, S, SP)], rows
    return rows[(C, S, SP)]


def tshark_counts(pkts: list[P], tmp: Path) -> dict[str, dict[str, int]]:
    path = tmp / "scenario.pcap"
    F.write_pcap(path, LINKTYPE_RAW, [(round(T0 + p.ms / 1000, 6), frame(p)) for p in pkts])
    [conn] = T.connections(path).values()
    return {"c2s": conn.c2s.counts, "s2c": conn.s2c.counts}


def counts(row: Row) -> dict[str, dict[str, int]]:
    return {d: {m: getattr(getattr(row, d), m) for m in T.METRICS} for d in ("c2s", "s2c")}


def handshake(ic: int, is_: int, rtt_ms: float = 20.0) -> list[P]:
    """SYN at 0, SYN+ACK 0.1 ms later (the sensor is next to the server), ACK one RTT after."""
    return [
        P(0, True, SYN, ic, window=64240),
        P(0.1, False, SYN | ACK, is_, ic + 1),
        P(rtt_ms, True, ACK, ic + 1, is_ + 1),
    ]


def close(ms: float, c: int, s: int) -> list[P]:
    return [
        P(ms, True, FIN | ACK, c, s),
        P(ms + 0.1, False, FIN | ACK, s, c + 1),
        P(ms + 20, True, ACK, c + 1, s + 1),
    ]


def expect(**nonzero: int) -> dict[str, dict[str, int]]:
    """Expected counts: keys like ``retransmits_s2c=1``; everything else 0."""
    out = {d: dict.fromkeys(T.METRICS, 0) for d in ("c2s", "s2c")}
    for key, n in nonzero.items():
        metric, _, d = key.rpartition("_")
        out[d][metric] = n
    return out


IC, IS = 1000, 5000  # initial sequence numbers
WRAP_C, WRAP_S = 2**32 - 1500, 2**32 - 2500  # ... and ones the data wraps around


def scenario_clean(ic: int = IC, is_: int = IS) -> list[P]:
    s1 = is_ + 1
    return [
        *handshake(ic, is_),
        P(21, True, PSH | ACK, ic + 1, s1, 100),
        P(21.2, False, ACK, s1, ic + 101, MSS),
        P(21.3, False, ACK, s1 + MSS, ic + 101, MSS),
        P(21.4, False, PSH | ACK, s1 + 2 * MSS, ic + 101, MSS),
        P(41, True, ACK, ic + 101, s1 + 2 * MSS),
        P(42, True, ACK, ic + 101, s1 + 3 * MSS),
        *close(60, ic + 101, s1 + 3 * MSS),
    ]


SCENARIOS: dict[str, tuple[list[P], dict[str, dict[str, int]]]] = {}


def scenario(name: str, want: dict[str, dict[str, int]]) -> object:
    def register(fn: object) -> object:
        SCENARIOS[name] = (fn(), want)  # type: ignore[operator]
        return fn

    return register


@scenario("clean", expect())
def _clean() -> list[P]:
    return scenario_clean()


@scenario("timeout-retransmission", expect(retransmits_s2c=1))
def _rto() -> list[P]:
    s1 = IS + 1
    return [
        *handshake(IC, IS),
        P(21, False, ACK, s1, IC + 1, MSS),
        P(21.1, False, ACK, s1 + MSS, IC + 1, MSS),
        P(41, True, ACK, IC + 1, s1),  # the first segment was lost on the way
        P(250, False, ACK, s1, IC + 1, MSS),  # RTO: long after the first RTT (20 ms)
        P(270, True, ACK, IC + 1, s1 + 2 * MSS),
    ]


@scenario(
    "fast-retransmission-after-dup-acks",
    expect(retransmits_s2c=1, fast_retransmits_s2c=1, sack_packets_c2s=3),
)
def _fast() -> list[P]:
    s1 = IS + 1
    data = [P(21 + i * 0.1, False, ACK, s1 + i * MSS, IC + 1, MSS) for i in range(5)]
    dup = [
        P(41 + i, True, ACK, IC + 1, s1 + MSS, sack=((s1 + 2 * MSS, s1 + (3 + i) * MSS),))
        for i in range(3)
    ]
    return [
        *handshake(IC, IS),
        *data,
        P(40.5, True, ACK, IC + 1, s1 + MSS),  # acks the first segment; the second is lost
        *dup,  # three duplicate ACKs with SACK blocks (RFC 2018)
        P(44, False, ACK, s1 + MSS, IC + 1, MSS),  # within 20 ms of the last one
        P(64, True, ACK, IC + 1, s1 + 5 * MSS),
    ]


@scenario("out-of-order", expect(out_of_order_s2c=1))
def _ooo() -> list[P]:
    s1 = IS + 1
    return [
        *handshake(IC, IS),
        P(21, False, ACK, s1 + MSS, IC + 1, MSS),  # the second segment overtakes the first ...
        P(22, False, ACK, s1, IC + 1, MSS),  # ... which comes 1 ms later, within the first RTT
        P(42, True, ACK, IC + 1, s1 + 2 * MSS),
    ]


@scenario(
    "spurious-retransmission-and-dsack",
    expect(retransmits_s2c=1, spurious_retransmits_s2c=1, sack_packets_c2s=1, dsack_c2s=1),
)
def _spurious() -> list[P]:
    s1 = IS + 1
    return [
        *handshake(IC, IS),
        P(21, False, ACK, s1, IC + 1, MSS),
        P(41, True, ACK, IC + 1, s1 + MSS),  # received and acknowledged; the ACK is lost after us
        P(250, False, ACK, s1, IC + 1, MSS),  # the server times out: data the client had
        # RFC 2883 section 4.1.1: the first block reports the duplicate, below the ACK
        P(270, True, ACK, IC + 1, s1 + MSS, sack=((s1, s1 + MSS),)),
    ]


@scenario("dsack-inside-second-block", expect(sack_packets_c2s=2, dsack_c2s=1))
def _dsack_second() -> list[P]:
    s1 = IS + 1
    return [
        *handshake(IC, IS),
        *[P(21 + i * 0.1, False, ACK, s1 + i * MSS, IC + 1, MSS) for i in (1, 2, 3)],
        P(41, True, ACK, IC + 1, s1, sack=((s1 + MSS, s1 + 4 * MSS),)),
        # RFC 2883 section 4.1.3: a duplicate inside the second block
        P(42, True, ACK, IC + 1, s1, sack=((s1 + 2 * MSS, s1 + 3 * MSS), (s1 + MSS, s1 + 4 * MSS))),
    ]


@scenario("zero-window-and-probe", expect(zero_windows_c2s=2))
def _zero() -> list[P]:
    s1 = IS + 1
    return [
        *handshake(IC, IS),
        P(21, False, ACK, s1, IC + 1, MSS),
        P(41, True, ACK, IC + 1, s1 + MSS, window=0),  # the reader stalls
        P(250, False, ACK, s1 + MSS, IC + 1, 1),  # a zero-window probe: not a retransmission
        P(270, True, ACK, IC + 1, s1 + MSS, window=0),  # the probe's ACK, still zero
        P(500, True, ACK, IC + 1, s1 + MSS, window=65535),  # window update
        P(501, False, ACK, s1 + MSS, IC + 1, MSS),  # new data where the probe was
    ]


@scenario("keep-alive-is-no-retransmission", expect())
def _keepalive() -> list[P]:
    c1, s1 = IC + 1, IS + 1
    return [
        *handshake(IC, IS),
        P(21, True, ACK, c1, s1, 10),
        P(41, False, ACK, s1, c1 + 10),
        P(5000, True, ACK, c1 + 9, s1, 1),  # one byte one below nextseq (RFC 9293 3.8.4)
        P(5020, False, ACK, s1, c1 + 10),
    ]


@scenario("syn-and-fin-each-take-one-and-repeat-as-retransmissions", expect(retransmits_c2s=2))
def _syn_fin() -> list[P]:
    c1, s1 = IC + 1, IS + 1
    return [
        P(0, True, SYN, IC),
        P(1000, True, SYN, IC),  # the SYN again, same ISN
        P(1000.1, False, SYN | ACK, IS, c1),
        P(1020, True, ACK, c1, s1),
        P(1030, True, FIN | ACK, c1, s1),
        P(1300, True, FIN | ACK, c1, s1),  # the FIN again, after an RTO
        P(1300.1, False, FIN | ACK, s1, c1 + 1),
        P(1320, True, ACK, c1 + 1, s1 + 1),
    ]


@scenario("sequence-numbers-wrap-around", expect(retransmits_s2c=1, out_of_order_s2c=1))
def _wrap() -> list[P]:
    s1 = WRAP_S + 1  # 2**32 - 2499: the third segment crosses 0
    return [
        *handshake(WRAP_C, WRAP_S),
        *[P(21 + i * 0.1, False, ACK, s1 + i * MSS, WRAP_C + 1, MSS) for i in (0, 1, 3)],
        P(21.5, False, ACK, s1 + 2 * MSS, WRAP_C + 1, MSS),  # across the wrap, late: out of order
        P(41, True, ACK, WRAP_C + 1, s1 + 3 * MSS),  # the fourth was lost after the sensor
        P(300, False, ACK, s1 + 3 * MSS, WRAP_C + 1, MSS),  # after the wrap, repeated
        P(320, True, ACK, WRAP_C + 1, s1 + 4 * MSS),
    ]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_metric_from_byte_literals(name: str, tmp_path: Path) -> None:
    pkts, want = SCENARIOS[name]
    assert tshark_counts(pkts, tmp_path) == want, "the hand-made expectation is tshark's too"
    assert counts(run(pkts)) == want


def test_clean_connection_segments_and_bytes() -> None:
    row = run(scenario_clean())
    assert row.flows == 1
    assert (row.c2s.segments, row.c2s.data_segments, row.c2s.payload_bytes) == (7, 1, 100)
    assert (row.s2c.segments, row.s2c.data_segments, row.s2c.payload_bytes) == (5, 3, 3 * MSS)


def test_a_new_isn_on_the_same_ports_is_a_new_connection() -> None:
    first = scenario_clean()
    again = [
        P(p.ms + 100, p.c2s, p.flags, p.seq, p.ack, p.length)
        for p in scenario_clean(IC + 77_777, IS + 99_999)
    ]
    table = FlowTable()
    for seg in segments(first + again):
        table.feed(seg)
    table.close()
    row = table.report()[(C, S, SP)]
    assert row.flows == 2
    assert table.stats.reused == 1
    assert counts(row) == expect()  # neither connection's numbers make the other's look repeated


# --- timestamps ---------------------------------------------------------------------------------


def test_ts_rtt_times_the_first_segment_with_a_tsval_and_its_first_echo() -> None:
    m = TsRtt()
    assert m.segment(1, 1_000, tsval=50, tsecr=7, timed=True) is None
    assert m.segment(1, 1_500, tsval=50, tsecr=7, timed=True) is None  # same TSval: not restarted
    assert m.segment(0, 21_000, tsval=8, tsecr=50, timed=False) == 20_000  # from the first
    assert m.segment(0, 22_000, tsval=8, tsecr=50, timed=False) is None  # each TSval once


def test_ts_rtt_pure_acks_are_not_timed() -> None:
    m = TsRtt()
    m.segment(0, 0, tsval=10, tsecr=0, timed=False)
    assert m.segment(1, 90_000_000, tsval=99, tsecr=10, timed=True) is None


def test_ts_rtt_an_echo_forgets_older_tsvals_and_they_are_not_timed_again() -> None:
    m = TsRtt()
    for t, v in ((0, 1), (1_000, 2), (2_000, 3)):
        m.segment(1, t, tsval=v, tsecr=0, timed=True)
    assert m.segment(0, 30_000, tsval=5, tsecr=2, timed=False) == 29_000
    assert list(m.pending[1]) == [3]  # 1 went with the echo of 2
    assert m.segment(0, 31_000, tsval=5, tsecr=1, timed=False) is None  # an older echo: nothing
    m.segment(1, 32_000, tsval=2, tsecr=0, timed=True)  # at or before an echoed value: not timed
    assert 2 not in m.pending[1]


def test_ts_rtt_wraps_and_stays_bounded() -> None:
    m = TsRtt()
    base = 2**32 - 10
    for i in range(MAX_PENDING + 5):
        m.segment(0, i, tsval=(base + i) % 2**32, tsecr=0, timed=True)
    assert len(m.pending[0]) == MAX_PENDING and m.overflows == 5
    # An echo after the wrap forgets everything before it in sequence order.
    echo = (base + 40) % 2**32
    assert m.segment(1, 1_000, tsval=1, tsecr=echo, timed=False) == 1_000 - 40
    assert all(A.seq_gt(v, echo) for v in m.pending[0])


def test_ts_rtt_negative_samples_are_dropped_and_counted() -> None:
    m = TsRtt()
    m.segment(0, 10_000, tsval=3, tsecr=0, timed=True)
    assert m.segment(1, 9_000, tsval=4, tsecr=3, timed=False) is None
    assert m.negative == 1


# --- options ----------------------------------------------------------------------------------


def test_options_fast_path_and_general_walk_agree() -> None:
    ts = F.ts_options(123456, 654321)
    assert O.parse(ts, 0) == (O.NO_SACK, 123456, 654321)
    # The same timestamps behind a SACK block: the general walk.
    sack = ts + b"\x01\x01\x05\x0a" + struct.pack("!II", 100, 200)
    assert O.parse(sack, 50) == (O.SACK, 123456, 654321)
    assert O.parse(sack, 200) == (O.DSACK, 123456, 654321)  # right edge at or below the ACK


def test_options_malformed_stop_the_walk_without_raising() -> None:
    assert O.parse(b"\x05\x01", 0) == (O.NO_SACK, None, 0)  # length < 2
    assert O.parse(b"\x05\x30" + bytes(8), 0) == (O.NO_SACK, None, 0)  # past the end
    assert O.parse(b"\x05\x02", 0) == (O.NO_SACK, None, 0)  # no block: not a SACK packet here
    assert O.parse(b"\x05\x06" + struct.pack("!I", 9), 0) == (O.SACK, None, 0)  # a left edge only
    assert O.parse(b"\x00\x08\x0a" + bytes(9), 0) == (O.NO_SACK, None, 0)  # EOL first


# --- sampling ---------------------------------------------------------------------------------


def test_sampling_hash_is_symmetric_and_spreads_even_ports() -> None:
    a, b = ipaddress.ip_address(C).packed, ipaddress.ip_address(S).packed
    for port in range(32768, 33768):
        assert flow_hash(a, b, port, 443) == flow_hash(b, a, 443, port)
    # Linux gives connect() even ports: the residues must not collapse to half of them.
    residues = {flow_hash(a, b, port, 443) % 8 for port in range(32768, 34768, 2)}
    assert residues == set(range(8))
    share = sum(followed(a, b, port, 443, 8) for port in range(32768, 48768, 2)) / 8000
    assert 0.1 < share < 0.15


def test_sampling_hash_ipv6_folds_every_word() -> None:
    a = ipaddress.ip_address("2001:db8::1").packed
    b = ipaddress.ip_address("2001:db8::2").packed
    c = ipaddress.ip_address("2001:db8:0:1::2").packed
    assert flow_hash(a, b, 1, 2) == flow_hash(b, a, 2, 1)
    assert flow_hash(a, b, 1, 2) != flow_hash(a, c, 1, 2)


def test_unfollowed_flows_leave_no_state() -> None:
    cfg = TableConfig(sample_rate=7)
    table = FlowTable(cfg)
    a, b = ipaddress.ip_address(C).packed, ipaddress.ip_address(S).packed
    port = next(p for p in range(40000, 41000) if not followed(a, b, p, SP, 7))
    for seg in segments(scenario_clean()):
        seg.sport, seg.dport = (port, SP) if seg.src == a else (SP, port)
        table.feed(seg)
    assert len(table) == 0 and not table.embryos and table.stats.not_followed == 12


# --- the table's bounds -------------------------------------------------------------------------


def test_spoofed_syns_stay_embryos_and_are_never_reported() -> None:
    table = FlowTable(TableConfig(max_embryos=100))
    for i in range(1_000):
        p = P(i * 0.01, True, SYN, i * 7919)
        seg = decode(LINKTYPE_RAW, T0 + p.ms / 1000, frame(p, client=f"10.0.{i // 250}.{i % 250}"))
        assert seg is not None
        table.feed(seg)
    assert len(table.embryos) == 100 and len(table) == 0
    assert table.stats.embryos_evicted_full == 900
    table.close()
    assert table.report() == {}


def test_unverified_flows_are_not_reported() -> None:
    """A SYN+ACK answered by nothing but spoofed data (no ACK of what the server sent)."""
    pkts = [
        P(0, True, SYN, IC),
        P(0.1, False, SYN | ACK, IS, IC + 1),
        P(10, True, ACK, IC + 1, IS + 777, 50),  # acknowledges nothing the server sent
    ]
    table = FlowTable()
    for seg in segments(pkts):
        table.feed(seg)
    table.close()
    assert table.report() == {} and table.stats.unverified == 1


def test_midstream_connections_are_analysed_but_not_reported() -> None:
    pkts = scenario_clean()[3:]  # from the first data segment on
    table = FlowTable()
    for seg in segments(pkts):
        table.feed(seg)
    assert len(table) == 1
    table.close()
    assert table.report() == {} and table.stats.unverified == 1


def test_flows_are_forgotten_after_their_linger_and_when_idle() -> None:
    table = FlowTable(TableConfig(linger=2.0, idle_timeout=60.0))
    for seg in segments(scenario_clean()):
        table.feed(seg)
    assert len(table) == 1
    table.expire(T0 + 1.0)
    assert len(table) == 1  # closed at 80 ms: lingers
    table.expire(T0 + 3.0)
    assert len(table) == 0 and table.stats.closed == 1
    assert table.report()[(C, S, SP)].flows == 1
    for seg in segments(scenario_clean()[:5]):  # another, left open
        table.feed(seg)
    table.expire(T0 + 30.0)
    assert len(table) == 1
    table.expire(T0 + 100.0)
    assert len(table) == 0 and table.stats.idle == 1


def test_the_table_is_bounded_and_reports_what_it_pushes_out() -> None:
    table = FlowTable(TableConfig(max_flows=16))
    for i in range(40):
        pkts = [P(p.ms + i, p.c2s, p.flags, p.seq, p.ack, p.length) for p in scenario_clean()[:5]]
        for seg in segments(pkts, client=f"192.0.2.{100 + i}"):
            table.feed(seg)
    assert len(table) == 16 and table.stats.evicted_full == 24
    rows = table.report()
    assert sum(r.flows for r in rows.values()) == 40  # evicted ones were reported, not lost


def test_copies_on_another_interface_are_ignored() -> None:
    table = FlowTable()
    for seg in segments(scenario_clean()):
        table.feed(seg)
        copy = decode(LINKTYPE_RAW, seg.ts + 0.00001, seg.frame, iface=1)
        assert copy is not None
        table.feed(copy)
    table.close()
    assert counts(table.report()[(C, S, SP)]) == expect()
    assert table.stats.copies_ignored == len(scenario_clean())


def test_flow_key_is_direction_free() -> None:
    a, b = b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"
    assert flow_key(a, b, 1, 2) == flow_key(b, a, 2, 1)


# --- Hypothesis -----------------------------------------------------------------------------------

ORDERS = st.permutations(list(range(len(scenario_clean()))))


def _check(table: FlowTable) -> None:
    table.close()
    for row in table.report().values():
        for c in (row.c2s, row.s2c):
            for m in (*T.METRICS, "segments", "data_segments", "payload_bytes"):
                assert getattr(c, m) >= 0
            assert c.rtt_n >= 0
            if c.rtt_n:
                assert 0 <= c.rtt_min <= c.rtt_max and c.rtt_sum >= 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.lists(st.integers(0, 40), min_size=1, max_size=60),
    jitter=st.lists(st.floats(-50, 50), min_size=60, max_size=60),
    base=st.sampled_from([IC, WRAP_C, 0, 2**32 - 1]),
)
def test_any_order_of_segments_never_crashes_or_gives_a_negative_rtt(
    order: list[int], jitter: list[float], base: int
) -> None:
    """Segments of several real scenarios, in any order, repeated or missing, at times that may
    go backwards."""
    pool: list[P] = []
    for pkts, _ in SCENARIOS.values():
        pool.extend(pkts)
    table = FlowTable()
    for i, k in enumerate(order):
        p = pool[(k * 7 + base) % len(pool)]
        ts = (max(1, p.ts[0] + k), p.ts[1]) if p.ts else (k + 1, (k * 13) % 5)
        q = P(
            max(0.0, p.ms + jitter[i % len(jitter)]),
            p.c2s,
            p.flags,
            p.seq + base,
            p.ack + base,
            p.length,
            p.window,
            p.sack,
            ts,
        )
        seg = decode(LINKTYPE_RAW, T0 + q.ms / 1000, frame(q))
        assert seg is not None
        table.feed(seg)
    _check(table)


@settings(max_examples=300, deadline=None)
@given(
    segs=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, 255),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 3000),
            st.integers(0, 65535),
            st.binary(max_size=40),
            st.floats(0, 10),
        ),
        max_size=40,
    )
)
def test_arbitrary_segments_never_crash(
    segs: list[tuple[bool, int, int, int, int, int, bytes, float]],
) -> None:
    """Flags, numbers, options and times from nowhere (options as raw bytes, malformed too)."""
    table = FlowTable()
    a, b = ipaddress.ip_address(C).packed, ipaddress.ip_address(S).packed
    for c2s, flags, seq, ack, length, window, opts, dt in segs:
        src, dst, sport, dport = (a, b, CP, SP) if c2s else (b, a, SP, CP)
        seg = TcpSegment(
            T0 + dt, 0, 4, src, dst, sport, dport, seq, ack, flags, window, length,
            opts[: len(opts) // 4 * 4], 64, 0,
        )  # fmt: skip
        table.feed(seg)
        for flow in table.flows.values():
            assert len(flow.ts.pending[0]) <= MAX_PENDING and len(flow.ts.pending[1]) <= MAX_PENDING
    _check(table)


def test_shuffled_real_capture_never_crashes() -> None:
    """A lab capture's segments shuffled (a worst case for reordering)."""
    lab = Path(__file__).parent / "pcaps" / "lab" / "reorder.pcap"
    import pcap

    reader = pcap.pcap(name=str(lab), timestamp_in_ns=False)
    linktype = reader.datalink()
    segs = [s for ts, buf in reader if (s := decode(linktype, ts, bytes(buf))) is not None]
    rng = random.Random(7)
    rng.shuffle(segs)
    table = FlowTable()
    for seg in segs:
        table.feed(seg)
    _check(table)


def test_bad_settings_are_one_sentence_and_the_default(caplog: pytest.LogCaptureFixture) -> None:
    from net_gazer.plugins.quality.sensor import table_config
    from net_gazer.sensor import PluginContext

    ctx = PluginContext(
        name="quality", sensor_id="t", site="t", replay=True, probing_allowed=False,
        config={"sample_rate": 0, "max_flows": "many", "linger": 2, "idle_timeout": True},
        _emit=lambda name, msg: None, direction=lambda c, s: 0,
    )  # fmt: skip
    with caplog.at_level("ERROR"):
        cfg = table_config(ctx)
    assert cfg == TableConfig(linger=2.0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and all(m.startswith("[plugins.quality] ") for m in messages)
    assert "sample_rate must be an integer from 1 to 65536, not 0" in messages[0]


def test_nat_copies_on_the_other_interface_are_ignored() -> None:
    """A gateway doing NAT shows each flow twice: the client's on the LAN, and on the WAN from
    the gateway's address and another port, with the same server endpoint and ISNs."""
    table = FlowTable()
    pkts = scenario_clean()
    for p in pkts:
        lan = decode(LINKTYPE_RAW, T0 + p.ms / 1000, frame(p))
        wan_frame = frame(p, client="198.51.100.1", server=S)
        wan = decode(LINKTYPE_RAW, T0 + p.ms / 1000 + 0.00002, wan_frame, iface=1)
        assert lan is not None and wan is not None
        if wan.src != lan.src:  # the client's side: NAT moves the port too
            wan.sport = 61000
        else:
            wan.dport = 61000
        table.feed(lan)
        table.feed(wan)
    table.close()
    rows = table.report()
    assert list(rows) == [(C, S, SP)] and rows[(C, S, SP)].flows == 1
    assert counts(rows[(C, S, SP)]) == expect()
    assert table.stats.copies_ignored == len(pkts) and not table.copies
