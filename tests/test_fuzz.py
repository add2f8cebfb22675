"""Fuzzing: every registered target of ``fuzz_targets.py`` under Hypothesis, its corpus replayed,
and the collector's ingest service fed structured-random envelope streams over real gRPC into a
real FalkorDB, checked against a model of the delivery rules.

Budgets (the defaults keep this file well under a minute):

- ``NG_FUZZ_PROFILE``: ``ci`` (default) or ``long`` (``make fuzz``), Hypothesis settings profiles;
- ``NG_FUZZ_EXAMPLES``: examples per byte target (default 1000 in ``ci``, 100 000 in ``long``);
- ``NG_FUZZ_INGEST_EXAMPLES``: envelope scenarios for the ingest fuzz (default 50 / 500);
- ``NG_FUZZ_INGEST_FAMILIES=all`` (or a list such as ``lost-counts-int64``): also draw the
  inputs of known, unfixed ingest bugs (``KNOWN_INGEST_BUGS``).

A failure prints the falsifying input. Keep it: save the bytes as
``tests/fuzz_corpus/<target>/crash-<what>.bin`` and fix the bug; while it is not fixed, list it as
a ``KnownBug`` of the target (see ``fuzz_targets.py``) so the run goes on and the corpus replay
holds it as a strict xfail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import logging
import math
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import redis.exceptions
from fuzz_targets import TARGETS, FuzzTarget, KnownBug, host_address, spool_envelope
from google.protobuf.message import DecodeError as ProtobufDecodeError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from net_gazer import PROTOCOL_MINOR
from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.ingest import MAX_ID, MAX_SEQ, IngestService, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.sensor.spool import Spool
from net_gazer.v1 import wire_pb2

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
sys.path.insert(0, str(CORPUS))
import make_seeds  # noqa: E402

# --- budgets and profiles -------------------------------------------------------------------------

PROFILE = os.environ.get("NG_FUZZ_PROFILE", "ci")
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", settings.get_profile("ci"), max_examples=100_000)
if PROFILE not in ("ci", "long"):
    raise pytest.UsageError(f"NG_FUZZ_PROFILE must be ci or long, not {PROFILE!r}")
BASE = settings.get_profile(PROFILE)


def _budget(env: str, default: int) -> int:
    value = os.environ.get(env, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


EXAMPLES = _budget("NG_FUZZ_EXAMPLES", BASE.max_examples)
INGEST_EXAMPLES = _budget("NG_FUZZ_INGEST_EXAMPLES", 500 if PROFILE == "long" else 50)


# --- the byte targets -----------------------------------------------------------------------------


def corpus_files(name: str) -> list[Path]:
    return sorted((CORPUS / name).glob("*.bin"))


def _mutate(seed: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    """Apply byte-level mutations to ``seed``: each op is (kind, position, value, bytes)."""
    buf = bytearray(seed)
    for kind, pos, value, chunk in ops:
        at = pos % (len(buf) + 1)
        if kind == 0 and buf:  # flip bits of one byte
            buf[at % len(buf)] ^= value or 1
        elif kind == 1 and buf:  # an interesting value
            buf[at % len(buf)] = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0x40)[value % 6]
        elif kind == 2:  # truncate
            del buf[at:]
        elif kind == 3:  # insert bytes
            buf[at:at] = chunk
        elif kind == 4:  # delete a range
            del buf[at : at + 1 + value % 16]
        elif kind == 5:  # duplicate a range (repeated headers, records)
            buf[at:at] = buf[at : at + 1 + value % 32]
    return bytes(buf)


@functools.cache
def inputs(t: FuzzTarget) -> st.SearchStrategy[bytes]:
    """Random bytes, and the target's corpus mutated: mutation reaches past the first checks."""
    raw = st.binary(max_size=t.max_len)
    seeds = [p.read_bytes() for p in corpus_files(t.name)]
    if not seeds:
        return raw
    op = st.tuples(
        st.integers(0, 5), st.integers(0, t.max_len), st.integers(0, 255), st.binary(max_size=8)
    )
    mutated = st.builds(_mutate, st.sampled_from(seeds), st.lists(op, min_size=1, max_size=4))
    # One input in four is random bytes, the rest mutated seeds (shrinking goes to the seeds).
    both = st.integers(0, 3).flatmap(lambda i: raw if i == 3 else mutated)
    return both.map(lambda b: b[: t.max_len])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep net-gazer's warnings about skipped input (one per bad spool file, row, stream) out of
    a run of 100 000 examples: they would pile up in pytest's log capture."""
    logger = logging.getLogger("net_gazer")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_target(t: FuzzTarget, data: bytes) -> str:
    """Run one input; a known bug is reported as such, anything else raised propagates."""
    try:
        return t.run(data)
    except Exception as exc:
        bug = t.known_bug(exc)
        if bug is None:
            raise
        return f"known bug {bug.id}"


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(BASE, max_examples=EXAMPLES)
@given(data=st.data())
def test_fuzz_target(name: str, data: st.DataObject) -> None:
    """The contract in the target's docstring holds for arbitrary and mutated inputs."""
    t = TARGETS[name]
    buf = data.draw(inputs(t), label="input")
    with quiet():
        event(run_target(t, buf))


def _divide(data: bytes) -> str:
    """Contract: never raises (it does, on empty input)."""
    return str(1 / len(data))


def test_harness_reports_a_new_crash_and_absorbs_only_known_ones() -> None:
    known = KnownBug("div", ZeroDivisionError, "x", where="test_fuzz.py:_divide", match="zero")
    assert run_target(FuzzTarget("t", _divide, known_bugs=(known,)), b"") == "known bug div"
    assert run_target(FuzzTarget("t", _divide, known_bugs=(known,)), b"ab") == "0.5"
    elsewhere = KnownBug("div", ZeroDivisionError, "x", where="test_fuzz.py:_mutate")
    for bugs in ((), (elsewhere,), (KnownBug("div", ValueError, "x"),)):
        with pytest.raises(ZeroDivisionError):
            run_target(FuzzTarget("t", _divide, known_bugs=bugs), b"")


# --- the corpora ----------------------------------------------------------------------------------


def _corpus_params() -> list[Any]:
    params = []
    for name, t in sorted(TARGETS.items()):
        for path in corpus_files(name):
            marks = []
            for bug in t.known_bugs:
                if path.name.startswith(f"crash-{bug.id}"):
                    marks.append(pytest.mark.xfail(raises=bug.exc, strict=True, reason=bug.summary))
            params.append(pytest.param(name, path, id=f"{name}/{path.name}", marks=marks))
    return params


@pytest.mark.parametrize(("name", "path"), _corpus_params())
def test_corpus_replays(name: str, path: Path) -> None:
    """Seeds pass; a crasher passes once fixed (a known, unfixed one is a strict xfail)."""
    outcome = TARGETS[name].run(path.read_bytes())
    assert isinstance(outcome, str) and outcome


def test_every_target_has_a_contract_and_a_corpus() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and p.name != "__pycache__") == (
        sorted(TARGETS)
    )
    for name, t in TARGETS.items():
        assert "Contract" in t.contract, f"{name}: its docstring must state the contract"
        assert any(p.name.startswith("seed-") for p in corpus_files(name)), name
        for bug in t.known_bugs:  # an unfixed crash keeps its input as a regression fixture
            assert any(p.name.startswith(f"crash-{bug.id}") for p in corpus_files(name)), bug.id


def test_spool_target_writes_files_as_the_spool_does(tmp_path: Path) -> None:
    """The spool target makes its intact files the way Spool.put does (format in sync)."""
    spool = Spool(tmp_path, "gw-fuzz")
    env = wire_pb2.Envelope.FromString(spool_envelope(3)[:-4])
    spool.put(env)
    assert (tmp_path / f"{3:020d}.env").read_bytes() == spool_envelope(3)
    assert spool.load() == (env.epoch, [env]), "the envelope's own epoch is resumed"
    spool.close()


def test_seeds_are_what_make_seeds_makes() -> None:
    """The committed seeds are exactly the script's output (it is deterministic)."""
    built = make_seeds.build()
    assert built == make_seeds.build()
    for name, files in built.items():
        committed = {p.name: p.read_bytes() for p in (CORPUS / name).glob("seed-*.bin")}
        assert sorted(committed) == sorted(files), f"{name}: run tests/fuzz_corpus/make_seeds.py"
        for fname, data in files.items():
            assert hashlib.sha256(committed[fname]).digest() == hashlib.sha256(data).digest(), fname


# --- the ingest service ---------------------------------------------------------------------------
#
# Each example is a scenario of one to three streams (reconnects) into a fresh graph that already
# holds other data (a victim sensor, hosts, an edge, a canary node with a Cypher payload). The
# model below states the delivery rules of collector/ingest.py and collector/store.py; after every
# stream the acks and the status must be the model's, and after the scenario the whole graph.

Frame = wire_pb2.Envelope | bytes  # raw bytes go on the wire as they are

DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
}

#: Input families that trigger an ingest bug not fixed yet (see the regressions at the end of the
#: file). The scenarios leave them out, so that the fuzz keeps finding other things; remove a
#: family here with its fix, and teach the model the fixed behaviour. None is open: every family
#: the fuzz found (``hello-not-an-ip``, ``nul``, ``seq-int64``, ``lost-counts-int64``,
#: ``undecodable``, ``host-ts``) is fixed and drawn, and the model states the fixed behaviour.
KNOWN_INGEST_BUGS: frozenset[str] = frozenset()
#: ``NG_FUZZ_INGEST_FAMILIES=all`` (or a comma-separated list) draws them too: to check a fix,
#: or to watch the fuzz find them.
_DRAWN = os.environ.get("NG_FUZZ_INGEST_FAMILIES", "")
SKIPPED_FAMILIES = frozenset() if _DRAWN == "all" else KNOWN_INGEST_BUGS - set(_DRAWN.split(","))

HOSTILE = (
    "'}) MATCH (n) DETACH DELETE n //",
    '"}) MATCH (n) DETACH DELETE n //',
    "x'}) WITH 1 AS x MATCH (n) SET n.pwned = true //",
    "\\",
    "\\'",
    'quote"inside',
    "back\\slash\\n",
    "line\nbreak",
    "tab\tand\r\nCRLF",
    "ünïcødé 传感器 🛰",
    "\u202e\u2066bidi",
    "$sid",
    "${sid}",
    "`backtick`",
    "{sid: 1}",
    "CYPHER sid='x' MATCH (n) DETACH DELETE n",
    "null",
    "true",
    "1e400",
    " ",
    "",
    "x" * (MAX_ID + 1),
)
IDS = ("s1", "gw-2", *HOSTILE)
#: Sensor ids and epochs the collector accepts (1-128 printable characters), hostile ones
#: included, and ones it refuses; drawn so that most streams get past the hello.
GOOD_IDS = st.sampled_from([i for i in IDS if 0 < len(i) <= MAX_ID and i.isprintable()])
BAD_IDS = st.sampled_from([i for i in IDS if not (0 < len(i) <= MAX_ID and i.isprintable())])
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
NUL_STRINGS = ("nul\x00byte", "\x00", "a\x00'}) MATCH (n) DETACH DELETE n //")
NUL_TEXT = st.sampled_from(NUL_STRINGS)
IPS = tuple(
    str(ipaddress.ip_address(a))
    for a in (
        "192.0.2.1", "198.51.100.7", "203.0.113.9", "8.8.8.8", "10.0.0.1", "192.168.1.10",
        "100.64.0.1", "169.254.1.1", "127.0.0.1", "0.0.0.0", "255.255.255.255", "2001:db8::1",
        "2606:4700::1111", "fe80::1", "fd00::1", "::", "::1", "::ffff:192.0.2.1", "fe80::1%eth0",
        "fe80::1%'}) MATCH (n) DETACH DELETE n", "fe80::1%a\nb", "fe80::1%a\x00b",
    )
)  # fmt: skip
NOT_AN_IP = ("not-an-ip", "192.0.2.256", "1.2.3", "'}) MATCH (n) DETACH DELETE n //", "")
NOT_CANONICAL = ("2001:DB8::1", "0:0:0:0:0:0:0:1", "::FFFF:192.0.2.1", "FE80::1")
U32 = st.integers(0, 2**32 - 1)
SMALL_U64 = st.integers(0, 2**40)
BIG_U64 = st.sampled_from((2**63 - 1, 2**63, 2**64 - 1))


@dataclass(frozen=True)
class Families:
    """Which hostile input families the scenarios draw (all but the known, unfixed bugs)."""

    skip: frozenset[str] = SKIPPED_FAMILIES

    def text(self) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(HOSTILE), TEXT, NUL_TEXT)

    def ident(self) -> st.SearchStrategy[str]:
        """Seven in ten from the accepted ids, then refused ones and any text."""
        return st.integers(0, 9).flatmap(
            lambda i: GOOD_IDS if i < 7 else BAD_IDS if i < 8 else TEXT
        )

    def ip(self) -> st.SearchStrategy[str]:
        """Addresses: canonical, not canonical, scoped (no host address), and not addresses."""
        return st.one_of(
            st.sampled_from(IPS),
            st.ip_addresses().map(str),
            st.sampled_from(NOT_CANONICAL),
            st.sampled_from(NOT_AN_IP),
        )

    def real(self) -> st.SearchStrategy[float]:
        return st.floats()

    def u64(self) -> st.SearchStrategy[int]:
        return st.one_of(SMALL_U64, BIG_U64)

    def lost(self) -> st.SearchStrategy[int]:
        """A gap's loss counts, summed in the graph."""
        return SMALL_U64 if "lost-counts-int64" in self.skip else self.u64()


@st.composite
def handshake_rows(draw: st.DrawFn, f: Families) -> wire_pb2.HandshakeRow:
    def rtt() -> wire_pb2.RttAggregate:
        return wire_pb2.RttAggregate(
            sum_ms=draw(f.real()), min_ms=draw(f.real()), max_ms=draw(f.real()), samples=draw(U32)
        )

    return wire_pb2.HandshakeRow(
        client=draw(f.ip()), server=draw(f.ip()), dport=draw(st.sampled_from((443, 0, 65535, 2**32 - 1))),
        proto=draw(st.sampled_from((0, 6, 17, 2**32 - 1))), direction=draw(st.integers(0, 7)),
        first_seen=draw(f.real()), last_seen=draw(f.real()), completed=draw(U32),
        attempts=draw(U32), refused=draw(U32), unanswered=draw(U32), abandoned=draw(U32),
        syn_retransmits=draw(U32), rtt=rtt(), client_rtt=rtt(),
    )  # fmt: skip


@st.composite
def hellos(draw: st.DrawFn, f: Families) -> wire_pb2.Hello:
    text = f.text()
    ifaces = st.builds(
        wire_pb2.Interface,
        name=text,
        role=text,
        addresses=st.lists(f.ip(), max_size=2),
        linktype=st.integers(-(2**31), 2**31 - 1),
    )
    return wire_pb2.Hello(
        hostname=draw(text), machine_id=draw(text), version=draw(text),
        protocol_minor=draw(st.sampled_from((PROTOCOL_MINOR, 0, 2**32 - 1))),
        interfaces=draw(st.lists(ifaces, max_size=2)),
        own_addresses=draw(st.lists(f.ip(), max_size=3)),
        local_networks=draw(st.lists(text, max_size=2)), site=draw(st.one_of(st.sampled_from(IDS), text)),
        plugins=draw(st.lists(text, max_size=3)), replay=draw(st.booleans()),
    )  # fmt: skip


def _envelope(sid: str, epoch: str, seq: int) -> wire_pb2.Envelope:
    return wire_pb2.Envelope(sensor_id=sid, epoch=epoch, seq=seq)


def _undecodable(data: bytes) -> bool:
    try:
        wire_pb2.Envelope.FromString(data)
    except ProtobufDecodeError:
        return True
    return False


GARBAGE = st.one_of(
    st.sampled_from((b"\xff", b"\x0a\x05ab", b"\x0a\x02\xc3\x28")),  # truncated, bad UTF-8
    st.binary(min_size=1, max_size=24).filter(_undecodable),
)


@st.composite
def scenarios(draw: st.DrawFn, f: Families = Families()) -> list[list[Frame]]:
    """One to three streams, sensor ids and epochs shared between them (reconnects)."""
    ids = draw(st.lists(GOOD_IDS, min_size=1, max_size=2, unique=True))
    epochs = draw(st.lists(GOOD_IDS, min_size=1, max_size=2, unique=True))
    for pool in (ids, epochs):  # now and then one the collector must refuse
        if draw(st.integers(0, 3)) == 0:
            pool.append(draw(f.ident()))
    sent: dict[tuple[str, str], int] = {}  # highest seq sent per (sensor, epoch): "next" follows it
    streams = []
    for _ in range(draw(st.integers(1, 3))):
        sid, epoch = draw(st.sampled_from(ids)), draw(st.sampled_from(epochs))
        first = draw(st.sampled_from(("hello",) * 12 + ("hello-seq", "batch", "empty", "none")))
        envs: list[Frame] = []
        if first != "none":
            env = _envelope(sid, epoch, 1 if first == "hello-seq" else 0)
            if first.startswith("hello"):
                env.hello.CopyFrom(draw(hellos(f)))
            elif first == "batch":
                env.seq = 1
                env.batch.SetInParent()
            envs.append(env)
            for _ in range(draw(st.integers(0, 5))):
                envs.append(draw(_later(sid, epoch, sent, ids, epochs, f)))
            if draw(st.sampled_from((False,) * 9 + (True,))):  # now and then, bytes no Envelope
                envs.insert(draw(st.integers(0, len(envs))), draw(GARBAGE))
        streams.append(envs)
    return streams


@st.composite
def _later(
    draw: st.DrawFn,
    sid: str,
    epoch: str,
    sent: dict[tuple[str, str], int],
    ids: list[str],
    epochs: list[str],
    f: Families,
) -> wire_pb2.Envelope:
    kind = draw(st.sampled_from(("batch",) * 12 + ("gap",) * 3 + ("empty", "hello", "foreign")))
    last = sent.get((sid, epoch), 0)
    pick = draw(st.sampled_from(("next",) * 10 + ("same", "skip", "small", "any")))
    seq = {"next": last + 1, "same": last, "skip": last + 2}.get(pick)
    if seq is None:
        seq = draw(st.integers(0, 6) if pick == "small" else f.u64())
    env = _envelope(sid, epoch, seq)
    if kind == "foreign":
        env.sensor_id = draw(st.one_of(st.sampled_from(ids), f.ident()))
        env.epoch = draw(st.one_of(st.sampled_from(epochs), f.ident()))
        if (env.sensor_id, env.epoch) == (sid, epoch):
            env.epoch += "-other"
    if kind in ("batch", "foreign"):
        env.batch.SetInParent()
        env.batch.handshakes.extend(draw(st.lists(handshake_rows(f), max_size=3)))
        for k, v in draw(st.dictionaries(f.text(), f.u64(), max_size=2)).items():
            env.batch.counters[k] = v
        for plugin in draw(st.lists(f.text(), max_size=2)):
            env.batch.extensions.add(plugin=plugin).payload.value = plugin.encode()
    elif kind == "gap":
        env.gap.CopyFrom(
            wire_pb2.Gap(
                first_seq=draw(
                    st.sampled_from(("next",) * 4 + ("small", "any")).flatmap(
                        lambda p: (
                            st.just(last + 1)
                            if p == "next"
                            else st.integers(0, 6)
                            if p == "small"
                            else f.u64()
                        )
                    )
                ),
                lost_envelopes=draw(f.lost()),
                lost_items=draw(f.lost()),
                reason=draw(f.text()),
            )
        )
    elif kind == "hello":
        env.hello.CopyFrom(draw(hellos(f)))
    if kind in ("batch", "gap") and pick == "next":  # a sensor's own counter moves in order
        sent[(sid, epoch)] = seq
    return env


# --- the model ------------------------------------------------------------------------------------


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID and value.isprintable()


def stored(text: str) -> str:
    """A string as the graph keeps it: verbatim, but for NUL (which FalkorDB cannot take in a
    string), kept visible as U+FFFD (collector/cypher.py)."""
    return text.replace("\x00", "\ufffd")


@dataclass
class SensorState:
    epoch: str
    acked_seq: int = 0
    props: dict[str, Any] = field(default_factory=dict)
    batches: int = 0
    gaps: int = 0
    lost_envelopes: int = 0
    lost_items: int = 0
    counters: list[str] | None = None
    last_gap_reason: str | None = None


@dataclass
class Expected:
    acks: list[tuple[str, int]]
    code: grpc.StatusCode


@dataclass
class GraphModel:
    """What the graph must hold: the delivery rules of ingest.py and store.py, restated."""

    sensors: dict[str, SensorState] = field(default_factory=dict)
    hosts: dict[tuple[str, str], int] = field(default_factory=dict)  # (scope, ip) -> family
    origins: set[tuple[str, str, str]] = field(default_factory=set)  # (sensor, scope, ip)
    edges: Counter[tuple[Any, ...]] = field(default_factory=Counter)

    def _host(self, ip: str, site: str) -> tuple[str, str] | None:
        """The Host key of a host address (merged into the model), None for anything else."""
        text = host_address(ip)
        if text is None:
            return None
        addr = ipaddress.ip_address(text)
        key = ("global" if addr.is_global else site, text)
        self.hosts[key] = addr.version
        return key

    def stream(self, envs: list[Frame]) -> Expected:
        acks: list[tuple[str, int]] = []
        bad = grpc.StatusCode
        if not envs:
            return Expected(acks, bad.OK)
        if any(isinstance(e, bytes) for e in envs):  # once fixed: refused where it comes
            cut = next(i for i, e in enumerate(envs) if isinstance(e, bytes))
            want = self.stream(envs[:cut]) if cut else Expected([], bad.OK)
            code = want.code if want.code != bad.OK else bad.INVALID_ARGUMENT
            return Expected(want.acks, code)
        first = envs[0]
        if first.WhichOneof("body") != "hello" or first.seq != 0:
            return Expected(acks, bad.INVALID_ARGUMENT)
        sid, epoch = first.sensor_id, first.epoch
        if not _valid_id(sid) or not _valid_id(epoch):
            return Expected(acks, bad.INVALID_ARGUMENT)
        hello = first.hello
        if hello.protocol_minor + 1 < PROTOCOL_MINOR:
            return Expected(acks, bad.FAILED_PRECONDITION)
        site = hello.site if _valid_id(hello.site) else sid
        s = self.sensors.get(sid)
        if s is None:
            s = self.sensors[sid] = SensorState(epoch)
        elif s.epoch != epoch:
            s.epoch, s.acked_seq = epoch, 0
        s.props = {
            "hostname": stored(hello.hostname), "machine_id": stored(hello.machine_id),
            "version": stored(hello.version),
            "ifaces": [stored(f"{i.name}:{i.role}" if i.role else i.name) for i in hello.interfaces],
            "site": site, "plugins": [stored(p) for p in hello.plugins], "replay": hello.replay,
            "local_networks": [stored(n) for n in hello.local_networks],
        }  # fmt: skip
        for ip in hello.own_addresses:  # what is not a host address is left out
            key = self._host(ip, site)
            if key is not None:
                self.origins.add((sid, *key))
        acks.append((epoch, s.acked_seq))
        for env in envs[1:]:
            gap = env.gap if env.WhichOneof("body") == "gap" else None
            gap_ok = gap is None or (
                0 < gap.first_seq <= env.seq and max(gap.lost_envelopes, gap.lost_items) <= MAX_SEQ
            )
            if not 0 < env.seq <= MAX_SEQ or not gap_ok:
                return Expected(acks, bad.INVALID_ARGUMENT)
            if env.sensor_id != sid or env.epoch != epoch:
                return Expected(acks, bad.PERMISSION_DENIED)
            body = env.WhichOneof("body")
            if body == "batch":
                if env.seq == s.acked_seq + 1:
                    s.acked_seq, s.batches = env.seq, s.batches + 1
                    s.counters = [stored(f"{k}={v}") for k, v in sorted(env.batch.counters.items())]
                    self._apply(sid, site, env.batch)
                elif env.seq > s.acked_seq:
                    return Expected(acks, bad.FAILED_PRECONDITION)
            elif body == "gap":
                gap = env.gap
                if s.acked_seq >= gap.first_seq - 1 and s.acked_seq < env.seq:
                    s.acked_seq, s.gaps = env.seq, s.gaps + 1
                    s.lost_envelopes += gap.lost_envelopes
                    s.lost_items += gap.lost_items
                    s.last_gap_reason = stored(gap.reason)
                elif env.seq > s.acked_seq:
                    return Expected(acks, bad.FAILED_PRECONDITION)
            else:
                return Expected(acks, bad.INVALID_ARGUMENT)
            acks.append((epoch, env.seq))
        return Expected(acks, bad.OK)

    def _apply(self, sid: str, site: str, batch: wire_pb2.Batch) -> None:
        for h in batch.handshakes:
            # A row without two host addresses, without a port, or claiming another protocol
            # than TCP (handshakes are TCP; UDP flows are the udp plugin's) is skipped (and
            # counted).
            if not (host_address(h.client) and host_address(h.server) and 0 < h.dport <= 0xFFFF):
                continue
            if h.proto not in (0, 6):
                continue
            c, s = self._host(h.client, site), self._host(h.server, site)
            assert c is not None and s is not None
            self.edges[(*c, *s, h.dport, sid, "count")] += h.completed
            self.edges[(*c, *s, h.dport, sid, "attempts")] += h.attempts
            self.edges[(*c, *s, h.dport, sid, "refused")] += h.refused


# The data already in the graph before every scenario; it must come out unchanged.
SETUP_CYPHER = """
CREATE (:Sensor {id: 'victim', epoch: 'ev', acked_seq: 7, batches: 7, gaps: 0,
  lost_envelopes: 0, lost_items: 0, hostname: 'victim-host', machine_id: 'm', version: 'v',
  ifaces: ['eth0'], site: 'victim', plugins: ['handshake'], replay: false, local_networks: []})
  -[:ORIGIN]->(a:Host {scope: 'victim', ip: '10.9.9.9', family: 4})
CREATE (a)-[:CONNECTS {sensor: 'victim', dport: 22, count: 3, attempts: 3, refused: 0}]->
  (:Host {scope: 'global', ip: '192.0.2.99', family: 4})
CREATE (:Canary {payload: $payload})
"""
CANARY = "'}) MATCH (n) DETACH DELETE n //"


def _baseline() -> GraphModel:
    m = GraphModel()
    m.sensors["victim"] = SensorState(
        "ev", 7, batches=7,
        props={"hostname": "victim-host", "machine_id": "m", "version": "v", "ifaces": ["eth0"],
               "site": "victim", "plugins": ["handshake"], "replay": False, "local_networks": []},
    )  # fmt: skip
    m.hosts = {("victim", "10.9.9.9"): 4, ("global", "192.0.2.99"): 4}
    m.origins = {("victim", "victim", "10.9.9.9")}
    key = ("victim", "10.9.9.9", "global", "192.0.2.99", 22, "victim")
    m.edges.update({(*key, "count"): 3, (*key, "attempts"): 3, (*key, "refused"): 0})
    return m


async def _rows(store: GraphStore, cypher: str) -> list[list[Any]]:
    return list((await store.graph.ro_query(cypher)).result_set)


async def _mark(store: GraphStore, sid: str) -> tuple[str, int] | None:
    # No parameter: the id may be one the collector refuses, a NUL in it included.
    marks = await _rows(store, "MATCH (s:Sensor) RETURN s.id, s.epoch, s.acked_seq")
    return next(((epoch, acked) for i, epoch, acked in marks if i == sid), None)


async def check_graph(store: GraphStore, model: GraphModel) -> None:
    props = ("hostname", "machine_id", "version", "ifaces", "site", "plugins", "replay",
             "local_networks")  # fmt: skip
    got = {
        r[0]: r[1:]
        for r in await _rows(
            store,
            "MATCH (s:Sensor) RETURN s.id, s.epoch, s.acked_seq, s.batches, s.gaps, "
            "s.lost_envelopes, s.lost_items, s.counters, s.last_gap_reason, "
            + ", ".join(f"s.{p}" for p in props),
        )
    }
    want = {
        sid: [s.epoch, s.acked_seq, s.batches, s.gaps, s.lost_envelopes, s.lost_items,
              s.counters, s.last_gap_reason, *(s.props[p] for p in props)]
        for sid, s in model.sensors.items()
    }  # fmt: skip
    assert got == want, "Sensor nodes differ from the model (ids, marks or stored strings)"
    hosts = await _rows(store, "MATCH (h:Host) RETURN h.scope, h.ip, h.family")
    assert len(hosts) == len(model.hosts), "Host nodes were lost or duplicated"
    assert {(sc, ip): fam for sc, ip, fam in hosts} == model.hosts
    origins = await _rows(store, "MATCH (s:Sensor)-[:ORIGIN]->(h:Host) RETURN s.id, h.scope, h.ip")
    assert sorted(map(tuple, origins)) == sorted(model.origins)
    edges: Counter[tuple[Any, ...]] = Counter()
    for *key, count, attempts, refused in await _rows(
        store,
        "MATCH (c:Host)-[e:CONNECTS]->(v:Host) RETURN c.scope, c.ip, v.scope, v.ip, e.dport, "
        "e.sensor, e.count, e.attempts, e.refused",
    ):
        assert (*key, "count") not in edges, f"two CONNECTS edges for {key}"
        edges.update(
            {(*key, "count"): count, (*key, "attempts"): attempts, (*key, "refused"): refused}
        )
    assert +edges == +model.edges, "CONNECTS edges differ from the model"
    assert await _rows(store, "MATCH (c:Canary) RETURN c.payload") == [[CANARY]]
    labels = await _rows(store, "MATCH (n) RETURN labels(n)[0], count(n) ORDER BY labels(n)[0]")
    want_labels = sorted(
        [["Canary", 1], ["Host", len(model.hosts)], ["Sensor", len(model.sensors)]]
    )
    assert labels == want_labels, "nodes other than the model's appeared"


@dataclass
class Ingest:
    address: str
    service: IngestService
    base: GraphStore


@pytest.fixture
async def ingest(falkordb_url: str) -> AsyncIterator[Ingest]:
    """One real grpc.aio server for the whole fuzz run; each scenario gets a fresh graph."""
    base = GraphStore.connect(falkordb_url, f"fuzz_{uuid.uuid4().hex[:8]}")
    service = IngestService(base, collector_plugins.load(base.graph_name))
    server = grpc.aio.server()
    add_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Ingest(f"127.0.0.1:{port}", service, base)
    finally:
        await server.stop(grace=None)
        await base.close()


def _wire(frame: Frame) -> bytes:
    return frame if isinstance(frame, bytes) else frame.SerializeToString()


async def drive(
    address: str, envs: Iterable[Frame]
) -> tuple[list[tuple[str, int]], grpc.StatusCode, str]:
    """Send envelopes one at a time, reading the answer to each; the acks and the final status."""
    acks: list[tuple[str, int]] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stream = channel.stream_stream(
            "/net_gazer.v1.Ingest/Stream",
            request_serializer=_wire,
            response_deserializer=wire_pb2.Ack.FromString,
        )
        call = stream(timeout=30)
        try:
            for env in envs:
                await call.write(env)
                ack = await call.read()
                if ack is grpc.aio.EOF:
                    break
                acks.append((ack.epoch, ack.acked_seq))
            await call.done_writing()
            assert await call.read() is grpc.aio.EOF, "an ack without an envelope"
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass
        return acks, await call.code(), str(await call.details())


async def run_scenario(ingest: Ingest, streams: list[list[Frame]]) -> str:
    store = GraphStore(ingest.base.db, f"fuzz_{uuid.uuid4().hex[:12]}")
    await store.graph.query(SETUP_CYPHER, {"payload": CANARY})
    ingest.service.store = store
    model = _baseline()
    codes = []
    try:
        for envs in streams:
            sid = envs[0].sensor_id if envs and not isinstance(envs[0], bytes) else ""
            before = await _mark(store, sid)
            acks, code, details = await drive(ingest.address, envs)
            assert code in DOCUMENTED, f"{code.name} ({details}): an unhandled exception"
            # Stated on its own: the graph's mark never passes what was acknowledged to the
            # sensor in this stream, or what it held before.
            after = await _mark(store, sid)
            if after is not None and after != before:
                assert after[1] <= max(seq for epoch, seq in acks if epoch == after[0]), (
                    f"mark {after} for acks {acks}"
                )
            want = model.stream(envs)
            assert (acks, code) == (want.acks, want.code), f"{code.name}: {details}"
            codes.append(code.name)
        await check_graph(store, model)
    finally:
        await store.graph.delete()
    return "+".join(codes)


@settings(
    BASE,
    max_examples=INGEST_EXAMPLES,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # one server for all examples, by design
    ],
)
@given(streams=scenarios())
async def test_ingest_fuzz(ingest: Ingest, streams: list[list[Frame]]) -> None:
    """Every stream ends in acks or a documented status, exactly as the delivery rules say;
    hostile strings are stored verbatim or refused; what the graph held before stays."""
    with quiet():
        event(await run_scenario(ingest, streams))


def _hello(sid: str = "s1", epoch: str = "e1", **kw: Any) -> wire_pb2.Envelope:
    env = _envelope(sid, epoch, 0)
    env.hello.CopyFrom(wire_pb2.Hello(protocol_minor=PROTOCOL_MINOR, **kw))
    return env


def _batch(
    seq: int, *rows: wire_pb2.HandshakeRow, sid: str = "s1", epoch: str = "e1"
) -> wire_pb2.Envelope:
    env = _envelope(sid, epoch, seq)
    env.batch.handshakes.extend(rows)
    return env


def _row(
    client: str = "192.0.2.1", server: str = "198.51.100.1", **kw: Any
) -> wire_pb2.HandshakeRow:
    return wire_pb2.HandshakeRow(
        client=client, server=server, dport=443, completed=1, attempts=1, **kw
    )


async def test_hostile_strings_are_stored_verbatim(ingest: Ingest) -> None:
    """Every hostile string in every string field: stored as sent, or the stream refused; and
    the scoped addresses holding Cypher or a NUL are no host addresses: left out."""
    streams = []
    for i, text in enumerate((*HOSTILE, *NUL_STRINGS)):
        hello = _hello(
            sid=text or "empty-id", epoch=f"e{i}", hostname=text, machine_id=text, version=text,
            site=text, plugins=[text], local_networks=[text],
            interfaces=[wire_pb2.Interface(name=text, role=text)],
            own_addresses=["192.0.2.1", *IPS[-3:]],
        )  # fmt: skip
        rows = (_row("192.0.2.1", "2001:db8::1"), _row(IPS[-3], IPS[-1]))
        batch = _batch(1, *rows, sid=hello.sensor_id, epoch=f"e{i}")
        batch.batch.counters[text or "empty"] = i
        batch.batch.extensions.add(plugin=text)
        gap = _envelope(hello.sensor_id, f"e{i}", 3)
        gap.gap.CopyFrom(wire_pb2.Gap(first_seq=2, reason=text))
        streams.append([hello, batch, gap])
    outcome = await run_scenario(ingest, streams)
    assert "OK" in outcome.split("+") and "INVALID_ARGUMENT" in outcome.split("+")


@contextlib.asynccontextmanager
async def fresh_graph(ingest: Ingest, setup: bool = False) -> AsyncIterator[GraphStore]:
    """A graph of its own for one test, behind the running service; deleted afterwards."""
    store = GraphStore(ingest.base.db, f"fuzz_{uuid.uuid4().hex[:12]}")
    if setup:
        await store.graph.query(SETUP_CYPHER, {"payload": CANARY})
    ingest.service.store = store
    try:
        yield store
    finally:
        with contextlib.suppress(redis.exceptions.ResponseError):  # nothing written: no graph
            await store.graph.delete()


async def test_undecodable_request_bytes_write_nothing(ingest: Ingest) -> None:
    """Bytes that are no Envelope, first or after a hello: nothing from them or after them is
    written (the status: ``test_undecodable_request_bytes_are_invalid_argument``)."""
    async with fresh_graph(ingest, setup=True) as store:
        model = _baseline()
        for frames in ([b"\xff\xff\xff"], [_hello(), b"\x0a\x05ab", _batch(1, _row())]):
            acks, _, _ = await drive(ingest.address, frames)
            assert acks == model.stream(frames).acks
        await check_graph(store, model)
        assert await _rows(store, "MATCH ()-[e:CONNECTS {sensor: 's1'}]->() RETURN count(e)") == [
            [0]
        ]


# --- regressions: ingest bugs found by the fuzz ---------------------------------------------------
#
# Found against cc16568; the first three were fixed by a171d3b, the next five by 19ef335, the
# last by f9f14f6. Each test asserts the fixed behaviour. A bug found and not fixed yet gets a
# test like these marked ``pytest.mark.xfail(strict=True)``, asserting the behaviour it should
# have, and its input family in KNOWN_INGEST_BUGS: both go with the fix.


async def test_row_that_is_not_an_address_does_not_drop_its_batch(ingest: Ingest) -> None:
    """The handshake plugin raised on it (netaddr.scope_of) and safecall swallowed that: the
    batch was acknowledged with all its handshakes missing. The row alone is skipped."""
    async with fresh_graph(ingest) as store:
        envs = [_hello(), _batch(1, _row(), _row(client="not-an-ip"), _row(server="1.2.3"))]
        acks, code, details = await drive(ingest.address, envs)
        assert (code, acks[-1]) == (grpc.StatusCode.OK, ("e1", 1)), details
        edges = await _rows(store, "MATCH ()-[e:CONNECTS]->() RETURN e.count")
        assert edges == [[1]], f"the valid row of the batch: {edges}"


async def test_non_canonical_address_is_one_host(ingest: Ingest) -> None:
    """CONNECTS merged its endpoints by the row's raw text and the store merged Hosts by the
    canonical form: '2001:DB8::1' made two Host nodes, one without family or first_seen."""
    async with fresh_graph(ingest) as store:
        rows = (_row("2001:DB8::1", "2001:db8::2"), _row("2001:db8::1", "2001:db8::2"))
        await drive(ingest.address, [_hello(), _batch(1, rows[0]), _batch(2, rows[1])])
        hosts = await _rows(store, "MATCH (h:Host) RETURN h.ip, h.family ORDER BY h.ip")
        assert hosts == [["2001:db8::1", 6], ["2001:db8::2", 6]], hosts
        assert await _rows(store, "MATCH ()-[e:CONNECTS]->() RETURN e.count") == [[2]]


async def test_non_finite_float_is_not_a_database_outage(ingest: Ingest) -> None:
    """NaN and infinities reached the query text as 'nan'/'inf', which FalkorDB cannot parse:
    UNAVAILABLE, and the batch resent forever."""
    async with fresh_graph(ingest) as store:
        rtt = wire_pb2.RttAggregate(sum_ms=math.inf, samples=1)
        env = _batch(1, _row(first_seen=math.nan, rtt=rtt))
        acks, code, details = await drive(ingest.address, [_hello(), env])
        assert (code, acks[-1]) == (grpc.StatusCode.OK, ("e1", 1)), f"{code.name}: {details}"
        assert await _rows(store, "MATCH ()-[e:CONNECTS]->() RETURN e.count") == [[1]]


async def test_hello_own_address_that_is_not_an_address(ingest: Ingest) -> None:
    """store.hello -> host_row -> ipaddress raised ValueError, unhandled: the stream ended
    UNKNOWN, and the sensor sent the same hello forever. The address is left out."""
    async with fresh_graph(ingest) as store:
        hello = _hello(own_addresses=["not-an-ip", "192.0.2.1"])
        acks, code, details = await drive(ingest.address, [hello])
        assert (code, acks) == (grpc.StatusCode.OK, [("e1", 0)]), f"{code.name}: {details}"
        origins = "MATCH (:Sensor)-[:ORIGIN]->(h:Host) RETURN h.ip"
        assert await _rows(store, origins) == [["192.0.2.1"]]


async def test_undecodable_request_bytes_are_invalid_argument(ingest: Ingest) -> None:
    """grpc.aio deserialises requests lazily, inside the servicer's ``async for``: the protobuf
    DecodeError escaped IngestService.Stream and the stream ended UNKNOWN, with a traceback in
    the log."""
    async with fresh_graph(ingest):
        for frames in ([b"\xff\xff\xff"], [_hello(), b"\x0a\x05ab"]):
            _, code, details = await drive(ingest.address, frames)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code.name}: {details}"


async def test_nul_in_a_string_is_not_a_database_outage(ingest: Ingest) -> None:
    """FalkorDB's query parser rejects a NUL inside a string parameter (hello strings, counter
    names, a gap's reason, an IPv6 scope id): ingest reported UNAVAILABLE ('graph database
    unavailable'), so the sensor resent the same envelope forever. Now the NUL is kept visible
    as U+FFFD, and a scoped address is no host address."""
    gap = _envelope("s1", "e1", 2)
    gap.gap.CopyFrom(wire_pb2.Gap(first_seq=2, reason="r\x00"))
    counter = _batch(1, _row(client="fe80::1%a\x00b"), _row())
    counter.batch.counters["c\x00"] = 1
    async with fresh_graph(ingest) as store:
        acks, code, details = await drive(ingest.address, [_hello(hostname="gw\x00"), counter, gap])
        assert (code, acks[-1]) == (grpc.StatusCode.OK, ("e1", 2)), f"{code.name}: {details}"
        got = await _rows(
            store, "MATCH (s:Sensor) RETURN s.hostname, s.counters, s.last_gap_reason"
        )
        assert got == [["gw\ufffd", ["c\ufffd=1"], "r\ufffd"]]
        assert await _rows(store, "MATCH ()-[e:CONNECTS]->() RETURN e.count") == [[1]]


async def test_seq_beyond_int64_is_refused(ingest: Ingest) -> None:
    """FalkorDB clamps integers at 2**63-1: after a gap to 2**63-1, batch 2**63 was applied, and
    applied again when resent, while the graph's mark stayed below the acked seq. Seqs past
    2**53 are refused now."""
    gap = _envelope("s1", "e1", 2**63 - 1)
    gap.gap.CopyFrom(wire_pb2.Gap(first_seq=1, lost_envelopes=1))
    async with fresh_graph(ingest) as store:
        for envs in (
            [_hello(), gap],
            [_hello(), _batch(2**63, _row())],
            [_hello(), _batch(MAX_SEQ + 1)],
        ):
            acks, code, details = await drive(ingest.address, envs)
            assert (code, acks) == (grpc.StatusCode.INVALID_ARGUMENT, [("e1", 0)]), details
        assert await _mark(store, "s1") == ("e1", 0)
        assert await _rows(store, "MATCH ()-[e:CONNECTS]->() RETURN count(e)") == [[0]]


async def test_row_seen_at_a_negative_time_keeps_its_hosts_whole(ingest: Ingest) -> None:
    """GraphStore._hosts kept the latest ts per address starting from a sentinel of -1.0, so an
    address whose rows all had last_seen NaN, -1.0 or less got no Host row: the CONNECTS MERGE
    then created a bare Host node, without family, private or first_seen."""
    async with fresh_graph(ingest) as store:
        rows = (
            _row(last_seen=-5.0),
            _row("192.0.2.7", last_seen=math.nan),
            _row("192.0.2.8", last_seen=-1.0),
        )
        await drive(ingest.address, [_hello(), _batch(1, *rows)])
        hosts = await _rows(store, "MATCH (h:Host) RETURN h.ip, h.family ORDER BY h.ip")
        assert [ip for ip, _ in hosts] == ["192.0.2.1", "192.0.2.7", "192.0.2.8", "198.51.100.1"]
        assert all(family == 4 for _, family in hosts), hosts


async def test_gap_loss_counts_beyond_2_53_are_refused(ingest: Ingest) -> None:
    """A gap's lost_envelopes and lost_items are uint64 and went to the graph unchecked:
    FalkorDB clamped 2**64-1 to 2**63-1, and adding to it wrapped negative (-1 envelopes lost).
    Counts past 2**53 are refused now, and nothing moves."""
    async with fresh_graph(ingest) as store:
        for lost in (2**64 - 1, MAX_SEQ + 1):
            gap = _envelope("s1", "e1", 2)
            gap.gap.CopyFrom(wire_pb2.Gap(first_seq=2, lost_envelopes=lost, lost_items=1))
            acks, code, details = await drive(ingest.address, [_hello(), _batch(1), gap])
            assert (code, acks[-1]) == (grpc.StatusCode.INVALID_ARGUMENT, ("e1", 1)), details
        got = await _rows(store, "MATCH (s:Sensor) RETURN s.acked_seq, s.lost_envelopes, s.gaps")
        assert got == [[1, 0, 0]]
