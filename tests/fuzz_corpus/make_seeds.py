"""Write the seed corpora of the fuzz targets: ``tests/fuzz_corpus/<target>/seed-*.bin``.

Deterministic: the same files, byte for byte, on every run (``tests/test_fuzz.py`` checks that the
committed seeds are what this script makes). Run it after changing a target's interpretation::

    .venv/bin/python tests/fuzz_corpus/make_seeds.py

It replaces every ``seed-*.bin`` and never touches ``crash-*.bin``: those are crashing inputs
found by fuzzing, kept verbatim as regression fixtures.

Seeds are valid inputs that reach deep into each target (complete frames, whole handshakes,
well-formed envelopes and spools) and their interesting damaged forms; the fuzz tests mutate
them, which finds far more than random bytes alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt
import pcap
from google.protobuf.any_pb2 import Any as AnyMessage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: frames.py and fuzz_targets.py

import frames as F  # noqa: E402
import fuzz_targets as T  # noqa: E402

from net_gazer.sensor.decode import decode  # noqa: E402
from net_gazer.sensor.packet import (  # noqa: E402
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_NULL,
    DLT_RAW,
    LINKTYPE_RAW,
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
)
from net_gazer.v1 import wire_pb2  # noqa: E402

SYN, SYNACK, ACK, RST = TH_SYN, TH_SYN | TH_ACK, TH_ACK, TH_RST

Seeds = Iterator[tuple[str, bytes]]


# --- decode: the first byte picks the link type ----------------------------------------------------


def _lt(linktype: int, frame: bytes) -> bytes:
    return bytes([T.LINKTYPES.index(linktype)]) + frame


def decode_seeds() -> Seeds:
    v4 = F.tcp("192.0.2.1", "198.51.100.1", 40001, 443, SYN, seq=1, options=F.syn_options())
    v6 = F.tcp("2001:db8::1", "2001:db8::2", 40001, 443, SYNACK, seq=7, ack=2, payload=b"hi")
    yield "eth-ipv4-syn", _lt(DLT_EN10MB, F.ether(v4))
    yield "eth-ipv6-synack", _lt(DLT_EN10MB, F.ether(v6))
    yield "eth-vlan-qinq", _lt(DLT_EN10MB, F.ether(v4, vlans=[(F.ETH_TYPE_8021AD, 5), 6]))
    yield "sll-outgoing", _lt(DLT_LINUX_SLL, F.sll(v4, pkttype=4))
    yield "sll2-ipv6", _lt(DLT_LINUX_SLL2, F.sll2(v6, ifindex=3))
    yield "null-ipv4", _lt(DLT_NULL, F.null(v4))
    yield "null-ipv6-darwin", _lt(DLT_NULL, F.null(v6, family=30))
    yield "raw-ipv4", _lt(DLT_RAW, v4)
    yield "linktype-raw-ipv6", _lt(LINKTYPE_RAW, v6)
    yield "ipv4-only", _lt(DLT_IPV4, v4)
    yield "ipv6-only", _lt(DLT_IPV6, v6)
    yield (
        "ipv4-options",
        _lt(DLT_RAW, F.tcp("10.0.0.1", "10.0.0.2", 1, 2, ACK, ip_options=b"\x01" * 8)),
    )
    yield "ipv4-fragment", _lt(DLT_RAW, F.tcp("10.0.0.1", "10.0.0.2", 1, 2, ACK, frag_offset=8))
    ext = [(F.IPV6_HOPOPTS, F.hop_by_hop()), (F.IPV6_ROUTING, F.routing_header()),
           (F.IPV6_DSTOPTS, F.dest_options()), (F.IPV6_AH, F.ah_header())]  # fmt: skip
    yield (
        "ipv6-ext-chain",
        _lt(DLT_RAW, F.tcp("2001:db8::1", "2001:db8::2", 1, 2, SYN, ext_headers=ext)),
    )
    yield (
        "ipv6-fragment",
        _lt(DLT_RAW, F.tcp("2001:db8::1", "2001:db8::2", 1, 2, SYN, frag_offset=16)),
    )
    yield "udp", _lt(DLT_EN10MB, F.ether(F.udp("192.0.2.1", "192.0.2.2", 53, 53, b"q")))
    yield "icmp", _lt(DLT_RAW, F.icmp_echo("192.0.2.1", "192.0.2.2"))
    yield "arp", _lt(DLT_EN10MB, F.arp_request(F.CLIENT_MAC, "192.0.2.1", "192.0.2.2"))
    # Every truncation of two rich frames: each length check of the fast path sits on one.
    rich4 = F.ether(
        F.tcp(
            "192.0.2.1", "198.51.100.1", 1, 2, SYN, options=F.syn_options(), ip_options=b"\x01" * 4
        ),
        vlans=[(F.ETH_TYPE_8021AD, 1), 2],
    )
    rich6 = F.sll2(
        F.tcp("2001:db8::1", "2001:db8::2", 1, 2, SYN, options=F.syn_options(),
              ext_headers=[(F.IPV6_HOPOPTS, F.hop_by_hop()), (F.IPV6_FRAGMENT, F.fragment_header(0, True))]),
    )  # fmt: skip
    for n in range(len(rich4)):
        yield f"cut-eth-vlan-ipv4-{n:03d}", _lt(DLT_EN10MB, rich4[:n])
    for n in range(len(rich6)):
        yield f"cut-sll2-ipv6-{n:03d}", _lt(DLT_LINUX_SLL2, rich6[:n])
    # The committed hostile capture: malformed, truncated and lying frames.
    with (HERE.parent / "pcaps" / "hostile.pcap").open("rb") as f:
        for i, (_ts, buf) in enumerate(dpkt.pcap.Reader(f)):
            yield f"hostile-pcap-{i:02d}", _lt(DLT_EN10MB, bytes(buf))


# --- tracker ---------------------------------------------------------------------------------------

Op = T.TrackerOp


def _handshake(family: int = 4, iface: int = 0, client: int = 0, cport: int = 1) -> list[Op]:
    base = {"family": family, "iface": iface, "client": client, "cport": cport, "step": 2}
    return [
        Op(SYN, seq=1, **base),
        Op(SYNACK, from_server=True, seq=2, ack=1, ack_plus_one=True, **base),
        Op(ACK, seq=1, ack=2, ack_plus_one=True, **base),
    ]


def tracker_seeds() -> Seeds:
    yield "handshake-v4", T.encode_tracker(4, _handshake())
    yield "handshake-v6", T.encode_tracker(4, _handshake(family=6))
    yield "handshake-isn-wraps", T.encode_tracker(4, [
        Op(SYN, seq=2), Op(SYNACK, from_server=True, seq=3, ack=2, ack_plus_one=True),
        Op(ACK, seq=0, ack=3, ack_plus_one=True),
    ])  # fmt: skip
    yield (
        "copies-on-two-ifaces",
        T.encode_tracker(
            4, [op for pair in zip(_handshake(), _handshake(iface=1), strict=True) for op in pair]
        ),
    )
    yield (
        "refused",
        T.encode_tracker(
            4, [Op(SYN, seq=1), Op(RST | ACK, from_server=True, ack=1, ack_plus_one=True)]
        ),
    )
    yield "blind-rst", T.encode_tracker(4, [Op(SYN, seq=1), Op(RST, from_server=True)])
    yield (
        "syn-retransmitted",
        T.encode_tracker(4, [Op(SYN, seq=1), Op(SYN, seq=1, step=3), *_handshake()[1:]]),
    )
    yield (
        "new-isn-same-tuple",
        T.encode_tracker(4, [Op(SYN, seq=3), Op(SYN, seq=1), *_handshake()[1:]]),
    )
    yield (
        "synack-retransmitted",
        T.encode_tracker(4, [*_handshake()[:2], _handshake()[1], _handshake()[2]]),
    )
    yield "simultaneous-open", T.encode_tracker(4, [
        Op(SYN, seq=1), Op(SYN, from_server=True, seq=2),
        Op(SYNACK, seq=1, ack=2, ack_plus_one=True),
    ])  # fmt: skip
    yield "abandoned-by-rst", T.encode_tracker(4, [*_handshake()[:2], Op(RST, seq=1)])
    yield "timeouts", T.encode_tracker(4, [
        Op(SYN, seq=1), Op(SYN, client=2, seq=2), Op(SYNACK, from_server=True, seq=2, ack=1, ack_plus_one=True),
        Op(TH_FIN | ACK, step=5, expire=True), Op(ACK, step=4, expire=True),
    ])  # fmt: skip
    yield (
        "flood-evicts",
        T.encode_tracker(
            1,
            [Op(SYN, client=c, cport=p, seq=c) for c in range(4) for p in range(4)] + _handshake(),
        ),
    )
    yield (
        "tombstones-full",
        T.encode_tracker(1, [op for c in range(4) for op in _handshake(client=c)] + _handshake()),
    )


# --- protobuf --------------------------------------------------------------------------------------


def _row(client: str, server: str, **kw: int | float) -> wire_pb2.HandshakeRow:
    return wire_pb2.HandshakeRow(
        client=client, server=server, dport=443, proto=6, direction=wire_pb2.DIRECTION_OUTGOING,
        first_seen=1.7e9, last_seen=1.7e9 + 1, completed=1, attempts=1,
        rtt=wire_pb2.RttAggregate(sum_ms=12.5, min_ms=12.5, max_ms=12.5, samples=1),
        client_rtt=wire_pb2.RttAggregate(sum_ms=0.4, min_ms=0.4, max_ms=0.4, samples=1), **kw,
    )  # fmt: skip


def _batch() -> wire_pb2.Batch:
    batch = wire_pb2.Batch(
        handshakes=[
            _row("192.168.1.10", "198.51.100.1"),
            _row("2001:db8::1", "2001:db8::2", refused=1),
            _row("10.0.0.1", "10.0.0.2", unanswered=2, syn_retransmits=2),
        ]
    )
    batch.counters["packets"] = 1000
    batch.counters["malformed"] = 2
    return batch


def envelope_seeds() -> Seeds:
    env = wire_pb2.Envelope(sensor_id="gw1", epoch="e" * 32, seq=0, sent_at=1.7e9)
    env.hello.CopyFrom(
        wire_pb2.Hello(
            hostname="gw1", machine_id="m" * 32, version="0.1.0", protocol_minor=1,
            interfaces=[wire_pb2.Interface(name="eth0", role="wan", addresses=["192.0.2.1"], linktype=1)],
            own_addresses=["192.0.2.1", "2001:db8::1"], local_networks=["192.168.1.0/24"],
            site="lab", plugins=["handshake"], replay=True,
        )
    )  # fmt: skip
    yield "hello", env.SerializeToString(deterministic=True)
    env = wire_pb2.Envelope(sensor_id="gw1", epoch="e" * 32, seq=1)
    env.batch.CopyFrom(_batch())
    env.batch.extensions.add(
        plugin="third-party", payload=AnyMessage(type_url="type.example/x.Y", value=b"\x08\x01")
    )
    yield "batch", env.SerializeToString(deterministic=True)
    env = wire_pb2.Envelope(sensor_id="gw1", epoch="e" * 32, seq=9)
    env.gap.CopyFrom(
        wire_pb2.Gap(first_seq=2, lost_envelopes=8, lost_items=80, reason="spool full")
    )
    yield "gap", env.SerializeToString(deterministic=True)
    # An unknown field (number 99, varint) after a known one: kept on a round trip.
    yield (
        "unknown-field",
        wire_pb2.Envelope(sensor_id="gw1").SerializeToString(deterministic=True) + b"\x98\x06\x01",
    )
    yield "empty", b""


def handshake_rows_seeds() -> Seeds:
    yield "batch", _batch().SerializeToString(deterministic=True)
    yield (
        "one-row",
        wire_pb2.Batch(handshakes=[_row("192.0.2.1", "192.0.2.2")]).SerializeToString(
            deterministic=True
        ),
    )
    yield (
        "same-key-twice",
        wire_pb2.Batch(
            handshakes=[_row("192.0.2.1", "192.0.2.2"), _row("192.0.2.1", "192.0.2.2", refused=1)]
        ).SerializeToString(deterministic=True),
    )
    yield (
        "folded-flood",
        wire_pb2.Batch(
            handshakes=[_row("0.0.0.0", "192.0.2.2"), _row("::", "2001:db8::2")]
        ).SerializeToString(deterministic=True),
    )
    yield (
        "scoped-ipv6",
        wire_pb2.Batch(handshakes=[_row("fe80::1%eth0", "fe80::2")]).SerializeToString(
            deterministic=True
        ),
    )
    yield (
        "counters-only",
        wire_pb2.Batch(counters={"packets": 1}).SerializeToString(deterministic=True),
    )


# --- spool -----------------------------------------------------------------------------------------

K = T.SpoolEntry
STATE_OK = (K.STATE, 0, 0, b"")  # state.json naming this sensor and the spool's epoch


def _whole(seq: int) -> tuple[int, int, int, bytes]:
    return (K.ENVELOPE, seq, 255, b"")


def spool_seeds() -> Seeds:
    yield "resume-three", T.encode_spool([STATE_OK, _whole(1), _whole(2), _whole(3)])
    yield "resume-with-tmp", T.encode_spool([STATE_OK, _whole(4), (K.TMP, 5, 20, b"")])
    yield "other-sensor-state", T.encode_spool([(K.STATE, 1, 0, b""), _whole(1)])
    yield (
        "other-sensor-envelope",
        T.encode_spool([STATE_OK, (K.OTHER_SENSOR, 1, 0, b""), _whole(2)]),
    )
    yield "no-state", T.encode_spool([_whole(1), _whole(2)])
    yield "garbage-file", T.encode_spool([STATE_OK, _whole(1), (K.RAW, 2, 8, b"\xff" * 8)])
    whole = T.spool_envelope(3)
    yield "raw-valid-envelope", T.encode_spool([STATE_OK, (K.RAW, 3, len(whole), whole)])
    yield "foreign-file", T.encode_spool([STATE_OK, _whole(1), (K.FOREIGN, 0, 5, b"hello")])
    yield "state-truncated", T.encode_spool([(K.STATE, 10, 0, b""), _whole(1)])
    yield "state-not-utf8", T.encode_spool([(K.STATE, 11, 0, b""), _whole(1)])
    state = T.STATE_TEMPLATES[0]
    yield "state-raw", T.encode_spool([(K.STATE, 200, len(state), state), _whole(1)])
    for i in range(2, 6):
        yield f"state-template-{i}", T.encode_spool([(K.STATE, i, 0, b""), _whole(1)])
    # Damage a checksum cannot see: whole records (CRC right) that are cut at a field boundary,
    # filed under another seq, or without a body.
    env = wire_pb2.Envelope(sensor_id=T.SPOOL_SENSOR, epoch=T.SPOOL_EPOCH)
    for name, seq, record in (
        ("crc-cut-after-epoch", 1, T.spool_record(env.SerializeToString(deterministic=True))),
        ("crc-misnumbered", 2, T.spool_envelope(5)),
        ("crc-no-body", 3, T.spool_record(wire_pb2.Envelope(
            sensor_id=T.SPOOL_SENSOR, epoch=T.SPOOL_EPOCH, seq=3).SerializeToString(deterministic=True))),
    ):  # fmt: skip
        yield name, T.encode_spool([STATE_OK, (K.RAW, seq, len(record), record), _whole(4)])
    yield "dangling-symlink", T.encode_spool([STATE_OK, (0xF8 | K.DANGLING, 1, 0, b""), _whole(2)])


# --- the quality analysis --------------------------------------------------------------------------

Q = T.QualityOp
SA = TH_SYN | TH_ACK
PA = 0x18  # PSH+ACK


def _connection(
    family: int = 4, base: int = 1, cport: int = 0, options: int = 1
) -> list[T.QualityOp]:
    """A handshake (client ISN = QUALITY_SEQS[base], server's 4000 above), data both ways, a
    repeated segment, a lost one and a close."""
    kw = {"family": family, "seq_base": base, "ack_base": base, "cport": cport, "options": options}
    c = {**kw, "from_server": False}
    s_ = {**kw, "from_server": True}
    return [
        Q(TH_SYN, **{**c, "ack_base": 0}, seq_off=0, ack_off=0, ts_pick=0),
        Q(SA, **s_, seq_off=4000, ack_off=1, step=2, ts_pick=1),
        Q(TH_ACK, **c, seq_off=1, ack_off=4001, step=3, ts_pick=1),
        Q(PA, **c, seq_off=1, ack_off=4001, length=2, step=1, ts_pick=1),
        Q(TH_ACK, **s_, seq_off=4001, ack_off=101, length=20, step=2, ts_pick=1),
        Q(TH_ACK, **s_, seq_off=5001, ack_off=101, length=20, step=1, ts_pick=1),
        Q(TH_ACK, **c, seq_off=101, ack_off=5001, step=3, ts_pick=1),
        Q(TH_ACK, **{**c, "options": 2}, seq_off=101, ack_off=5001, step=1, ts_pick=1),
        Q(TH_ACK, **s_, seq_off=5001, ack_off=101, length=20, step=1, ts_pick=2),  # fast
        Q(TH_ACK, **s_, seq_off=4001, ack_off=101, length=20, step=4, ts_pick=2),  # spurious
        Q(TH_ACK, **c, seq_off=101, ack_off=6001, step=3, zero_window=True, ts_pick=1),
        Q(TH_FIN | TH_ACK, **c, seq_off=101, ack_off=6001, step=2, ts_pick=1),
        Q(TH_FIN | TH_ACK, **s_, seq_off=6001, ack_off=102, step=1, ts_pick=1),
        Q(TH_ACK, **c, seq_off=102, ack_off=6002, step=3, expire=True, ts_pick=1),
    ]


def quality_flows_seeds() -> Seeds:
    yield "connection-v4", T.encode_quality(_connection())
    yield "connection-v6", T.encode_quality(_connection(family=6))
    yield "connection-wraps", T.encode_quality(_connection(base=2))
    yield "connection-no-options", T.encode_quality(_connection(options=0))
    yield "connection-bad-options", T.encode_quality(_connection(options=3))
    two = _connection() + _connection(cport=1)
    yield "two-connections", T.encode_quality(two, max_flows=4)
    yield "table-of-one", T.encode_quality(two, max_flows=1)
    copies = [op for o in _connection() for op in (o, Q(**{**o.__dict__, "iface": 1}))]
    yield "copies-on-two-interfaces", T.encode_quality(copies)
    yield "syn-flood", T.encode_quality([Q(TH_SYN, cport=i % 4, seq_off=i) for i in range(40)])


# --- DPI ---------------------------------------------------------------------------------------------

_lab_spec = importlib.util.spec_from_file_location(
    "lab_names", HERE.parent / "pcaps" / "lab" / "names.py"
)
assert _lab_spec is not None and _lab_spec.loader is not None
LAB = importlib.util.module_from_spec(_lab_spec)
_lab_spec.loader.exec_module(LAB)


def _lab_hellos() -> list[bytes]:
    """The ClientHellos recorded in names.pcap (OpenSSL's), first segments."""
    reader = pcap.pcap(
        name=str(HERE.parent / "pcaps" / "lab" / "names.pcap"), timestamp_in_ns=False
    )
    linktype = reader.datalink()
    out = []
    for ts, buf in reader:
        seg = decode(linktype, ts, bytes(buf))
        if seg is not None and seg.payload[:1] == b"\x16" and seg.payload[5:6] == b"\x01":
            out.append(seg.payload)
    return out


def dpi_parsers_seeds() -> Seeds:
    for i, hello in enumerate(_lab_hellos()[:6]):
        yield f"tls-lab-{i}", b"\x00" + hello
    yield "tls-ech", b"\x00" + LAB.crafted_hello(b"public.example.test", True)
    yield "tls-hostile-name", b"\x00" + LAB.crafted_hello(b"bad\x01name", False)
    for i, host in enumerate(LAB.HTTP_HOSTS):
        yield f"http-{i}", b"\x01" + f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for name in LAB.DNS_ZONE:
        label = name.split(b".")[0].decode("ascii", "replace").replace("\x00", "nul")
        label = "".join(ch if ch.isalnum() else "-" for ch in label)
        yield f"dns-{label}", b"\x02" + LAB.dns_response(LAB.dns_query(name))
    for i, name in enumerate(
        (b"www.example.test", b"xn--bcher-kva.example", b"a." * 127 + b"b", b"bad name")
    ):
        yield f"name-{i}", b"\x03" + name
    hello = LAB.crafted_hello(b"pieces.example.test", False)
    pieces = b"".join(bytes([len(c)]) + c + b"\x00" for c in (hello[:40], hello[40:]))
    yield "assemble-two", b"\x04" + pieces


def _quality_batch() -> wire_pb2.Batch:
    from google.protobuf.any_pb2 import Any as AnyMessage

    from net_gazer.v1 import quality_pb2

    counters = quality_pb2.QualityCounters(
        retransmits=3, fast_retransmits=1, spurious_retransmits=1, out_of_order=2, sack_packets=4,
        dsack=1, zero_windows=2, segments=100, data_segments=60, payload_bytes=86_000,
        ts_rtt=wire_pb2.RttAggregate(sum_ms=40.0, min_ms=19.5, max_ms=20.5, samples=2),
    )  # fmt: skip
    report = quality_pb2.QualityReport(sample_rate=8)
    for client, server in (("192.168.1.10", "198.51.100.1"), ("2001:db8::1", "2001:db8::2")):
        report.rows.add(
            client=client, server=server, dport=443, direction=wire_pb2.DIRECTION_OUTGOING,
            first_seen=1.7e9, last_seen=1.7e9 + 1, flows=1, c2s=counters, s2c=counters,
        )  # fmt: skip
    names = quality_pb2.NameReport()
    names.names.add(ip="198.51.100.1", name="www.example.test", source=1, seen=1.7e9)
    names.names.add(ip="198.51.100.1", name="bad\x01name", source=2, seen=1.7e9 + 1)
    names.names.add(ip="203.0.113.7", name="shop.example.test", source=3, seen=1.7e9)
    batch = wire_pb2.Batch()
    for plugin, message in (
        ("quality", report),
        ("dpi", names),
        ("other", wire_pb2.Gap(reason="x")),
    ):
        any_ = AnyMessage()
        any_.Pack(message, deterministic=True)
        batch.extensions.add(plugin=plugin, payload=any_)
    return batch


def quality_rows_seeds() -> Seeds:
    yield "quality-and-names", _quality_batch().SerializeToString(deterministic=True)


def reply_match_seeds() -> Seeds:
    """Replies to real probes (``packets``), built with dpkt: time exceeded, unreachable, echo
    reply, SYN+ACK, RST, for both families, and truncations of them."""
    from net_gazer.plugins.traceroute import packets as P

    src4, dst4, hop4 = "198.51.100.1", "192.0.2.10", "198.51.100.2"
    src6, dst6 = "2001:db8:100::1", "2001:db8:2:1::a"

    def ip4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
        ip = dpkt.ip.IP(
            src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=1, data=payload
        )
        ip.len = 20 + len(payload)
        return bytes(ip)

    def ip6(src: str, dst: str, nh: int, payload: bytes) -> bytes:
        return (struct.pack("!IHBB", 6 << 28, len(payload), nh, 1)
                + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + payload)  # fmt: skip

    probes4 = {
        "tcp": ip4(src4, dst4, 6, P.tcp_syn(src4, dst4, 61001, 80, 0x10001)),
        "udp": ip4(src4, dst4, 17, P.udp_probe(src4, dst4, 61001, 33434, 7, b"c")),
        "icmp": ip4(src4, dst4, 1, P.icmp_echo(src4, dst4, 61001, 7, 0x1234, b"c")),
    }
    for method, probe in probes4.items():
        for kind, code in ((11, 0), (3, 3), (3, 13)):
            msg = bytes(dpkt.icmp.ICMP(type=kind, code=code, data=b"\0\0\0\0" + probe[:28]))
            whole = b"\0" + ip4(hop4, src4, 1, msg)
            yield f"v4-{method}-{kind}-{code}", whole
            yield f"v4-{method}-{kind}-{code}-cut", whole[:40]
    yield (
        "v4-echo-reply",
        b"\0"
        + ip4(dst4, src4, 1, bytes(dpkt.icmp.ICMP(type=0, data=struct.pack("!HH", 61001, 7)))),
    )
    synack = dpkt.tcp.TCP(
        sport=80, dport=61001, ack=0x10002, flags=dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
    )
    yield "v4-synack", b"\0" + ip4(dst4, src4, 6, bytes(synack))
    rst = dpkt.tcp.TCP(sport=80, dport=61001, ack=0x10002, flags=dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK)
    yield "v4-rst", b"\0" + ip4(dst4, src4, 6, bytes(rst))
    syn6 = ip6(src6, dst6, 6, P.tcp_syn(src6, dst6, 61001, 80, 0x10001))
    yield "v6-tcp-3", b"\1" + struct.pack("!BBHI", 3, 0, 0, 0) + syn6
    udp6 = ip6(src6, dst6, 17, P.udp_probe(src6, dst6, 61001, 33434, 7, b"c"))
    yield "v6-udp-1-4", b"\1" + struct.pack("!BBHI", 1, 4, 0, 0) + udp6
    yield "v6-echo-reply", b"\1" + struct.pack("!BBHHH", 129, 0, 0, 61001, 7)
    yield "v6-synack", b"\2" + bytes(synack)


def trace_rows_seeds() -> Seeds:
    """Trace reports as the sensor sends them: a reached run with a silent TTL and an inferred
    hop, an incomplete one, and one with a bad address."""
    from net_gazer.v1 import traceroute_pb2

    report = traceroute_pb2.TraceReport()
    run = report.traces.add(id="a", src="198.51.100.1", dst="192.0.2.10", method="tcp", flow_id=61001,
                            dport=80, started=1.0, finished=2.0, reached=True, mode="paris")  # fmt: skip
    for ttl, addr in enumerate(["198.51.100.2", "", "198.51.100.18", "192.0.2.10"], start=1):
        run.hops.add(ttl=ttl, addr=addr, rtt_ms=0.5 * ttl if addr else -1, sent=1, answered=int(bool(addr)),
                     inferred=ttl == 1)  # fmt: skip
    yield "reached", report.SerializeToString()
    run.reached = False
    del run.hops[3:]
    yield "incomplete", report.SerializeToString()
    run.dst = "999.1.1.1"
    yield "bad-address", report.SerializeToString()


SEEDS: dict[str, Callable[[], Seeds]] = {
    "decode": decode_seeds,
    "tracker": tracker_seeds,
    "envelope": envelope_seeds,
    "handshake_rows": handshake_rows_seeds,
    "spool": spool_seeds,
    "quality_flows": quality_flows_seeds,
    "dpi_parsers": dpi_parsers_seeds,
    "quality_rows": quality_rows_seeds,
    "reply_match": reply_match_seeds,
    "trace_rows": trace_rows_seeds,
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def build() -> dict[str, dict[str, bytes]]:
    """Every target's seeds, ``{target: {file name: bytes}}``."""
    out: dict[str, dict[str, bytes]] = {}
    for target, make in SEEDS.items():
        files: dict[str, bytes] = {}
        seen: set[str] = set()
        for name, data in make():
            assert _NAME.match(name) and f"seed-{name}.bin" not in files, name
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                continue  # the same bytes under two names: keep the first
            seen.add(digest)
            files[f"seed-{name}.bin"] = data
        out[target] = files
    return out


def write(root: Path = HERE) -> None:
    for target, files in build().items():
        d = root / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*.bin"):
            if old.name not in files:
                old.unlink()
        for name, data in files.items():
            (d / name).write_bytes(data)


if __name__ == "__main__":
    write()
    for target, files in build().items():
        print(f"{target}: {len(files)} seeds")
