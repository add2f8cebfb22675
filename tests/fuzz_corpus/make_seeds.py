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
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt
from google.protobuf.any_pb2 import Any as AnyMessage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: frames.py and fuzz_targets.py

import frames as F  # noqa: E402
import fuzz_targets as T  # noqa: E402

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


SEEDS: dict[str, Callable[[], Seeds]] = {
    "decode": decode_seeds,
    "tracker": tracker_seeds,
    "envelope": envelope_seeds,
    "handshake_rows": handshake_rows_seeds,
    "spool": spool_seeds,
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
