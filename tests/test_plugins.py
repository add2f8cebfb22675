"""The plugin hosts: real pluggy, real entry points, the real sensor code path on a real pcap.

The installed distribution registers the built-in ``handshake`` plugin in the entry-point groups
``net_gazer.sensor`` and ``net_gazer.collector``. Test plugins are small objects registered through
``extra``, exactly as embedding code would. Every hook of both hosts has a test named for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from google.protobuf.any_pb2 import Any as AnyMessage

import net_gazer
from net_gazer import pluginhost
from net_gazer.collector import hookimpl as collector_hookimpl
from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.context import CollectorContext
from net_gazer.collector.graphwrite import GraphWrite, SensorInfo
from net_gazer.errors import ConfigError
from net_gazer.sensor import hookimpl, hookspecs, runner
from net_gazer.sensor.build import build
from net_gazer.sensor.config import SensorConfig
from net_gazer.sensor.context import PluginContext
from net_gazer.sensor.handshake import HandshakeEvent, Kind
from net_gazer.sensor.packet import TcpSegment
from net_gazer.sensor.pipeline import Sensor
from net_gazer.v1 import wire_pb2

PCAPS = Path(__file__).parent / "pcaps"
PCAP = PCAPS / "handshakes.pcap"
EXPECTED: list[dict[str, Any]] = json.loads((PCAPS / "handshakes.expected.json").read_text())
MANIFEST: dict[str, Any] = json.loads((PCAPS / "manifest.json").read_text())["handshakes.pcap"]
SENSOR_HOOKS = [
    "ng_sensor_start",
    "ng_sensor_stop",
    "ng_bpf_filter",
    "ng_packet",
    "ng_handshake",
    "ng_tick",
]
BUILTIN_SENSOR_HOOKS = ["ng_bpf_filter", "ng_handshake", "ng_tick"]
SENSOR = SensorInfo(id="t", site="lab", epoch="e1")


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NG_PLUGINS_ALLOW", "NG_PLUGIN_TRACE"):
        monkeypatch.delenv(name, raising=False)
    # The host is tested with the handshake plugin as its one built-in; the quality, dpi and
    # udp and traceroute plugins have tests of their own (tests/test_quality_*.py, test_dpi.py,
    # test_udp*.py, tests/test_traceroute_*.py).
    monkeypatch.setenv("NG_PLUGINS_BLOCK", "quality,dpi,udp,traceroute")


# --- test plugins -----------------------------------------------------------------------------


class SensorProbe:
    """Implements every sensor hook with the documented arguments and records each call."""

    def __init__(self, fragment: str | None = "tcp port 443") -> None:
        self.fragment = fragment
        self.calls: dict[str, list[dict[str, Any]]] = {h: [] for h in SENSOR_HOOKS}
        self.order: list[str] = []  # hook names in call order, repeats collapsed

    def _record(self, hook: str, **kwargs: Any) -> None:
        self.calls[hook].append(kwargs)
        if not self.order or self.order[-1] != hook:
            self.order.append(hook)

    @hookimpl
    def ng_sensor_start(self, ctx: PluginContext) -> None:
        self._record("ng_sensor_start", ctx=ctx)
        ctx.emit(wire_pb2.Gap(reason="probe start"))

    @hookimpl
    def ng_sensor_stop(self, ctx: PluginContext) -> None:
        self._record("ng_sensor_stop", ctx=ctx)
        ctx.emit(wire_pb2.Gap(reason="probe stop"))

    @hookimpl
    def ng_bpf_filter(self, ctx: PluginContext) -> str | None:
        self._record("ng_bpf_filter", ctx=ctx)
        return self.fragment

    @hookimpl
    def ng_packet(self, ctx: PluginContext, segment: TcpSegment) -> None:
        self._record("ng_packet", ctx=ctx, segment=segment)

    @hookimpl
    def ng_handshake(self, ctx: PluginContext, event: HandshakeEvent) -> None:
        self._record("ng_handshake", ctx=ctx, event=event)

    @hookimpl
    def ng_tick(self, ctx: PluginContext, now: float, final: bool) -> None:
        self._record("ng_tick", ctx=ctx, now=now, final=final)
        ctx.emit(wire_pb2.Gap(reason=f"probe tick final={final}"))


def build_sensor(probe: object, **cfg: Any) -> Sensor:
    config = SensorConfig(read=PCAP, sensor_id="t", **cfg)
    return build(config, extra_plugins=[("probe", probe)])


@pytest.fixture
def probe() -> SensorProbe:
    return SensorProbe()


@pytest.fixture
def sensor(probe: SensorProbe) -> Iterator[Sensor]:
    s = build_sensor(probe)
    yield s
    for h in s.handles:
        h.close()


def replay(sensor: Sensor) -> None:
    """What ``_replay`` does, in one interval: every frame, then the final tick."""
    handle = sensor.handles[0]
    frames = handle.read(10_000)
    assert len(frames) == MANIFEST["tcp_segments"]  # the kernel filter let TCP through, only
    assert handle.read(10_000) == []
    sensor.process(handle, frames)
    sensor.tick(sensor.now, final=True, close=True)


def probe_messages(batches: list[wire_pb2.Batch], reason_prefix: str = "probe") -> list[str]:
    out = []
    for batch in batches:
        for ext in batch.extensions:
            if ext.plugin != "probe":
                continue
            assert ext.payload.Is(wire_pb2.Gap.DESCRIPTOR)
            gap = wire_pb2.Gap()
            assert ext.payload.Unpack(gap)
            assert gap.reason.startswith(reason_prefix)
            out.append(gap.reason)
    return out


def outbox_batches(sensor: Sensor) -> list[wire_pb2.Batch]:
    return [env.batch for env in sensor.outbox.pending if env.HasField("batch")]


def expected_total(field: str) -> int:
    return sum(int(row[field]) for row in EXPECTED)


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- loading ----------------------------------------------------------------------------------


def test_builtin_handshake_plugin_loads_from_its_entry_point() -> None:
    host = pluginhost.create("net_gazer.sensor", hookspecs)
    info = host.infos["handshake"]
    assert info.name == "handshake"
    assert info.version == net_gazer.__version__
    assert info.module == "net_gazer.plugins.handshake.sensor"
    assert info.hooks == BUILTIN_SENSOR_HOOKS
    assert info.errors == 0 and info.disabled == ""
    assert host.failed == {}
    assert host.implemented_by("ng_handshake") == ["handshake"]
    assert [p.name for p in host.plugins()] == ["handshake"]


def test_builtin_handshake_plugin_registers_collector_hooks_in_the_collector_host() -> None:
    from net_gazer.collector import hookspecs as collector_hookspecs

    host = pluginhost.create("net_gazer.collector", collector_hookspecs)
    assert host.infos["handshake"].hooks == ["ng_graph_writes"]
    assert host.infos["handshake"].version == net_gazer.__version__
    assert host.infos["handshake"].module == "net_gazer.plugins.handshake.collector"


def test_block_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NG_PLUGINS_BLOCK", "handshake,traceroute")
    host = pluginhost.create("net_gazer.sensor", hookspecs)
    assert "handshake" not in host.infos
    assert host.implemented_by("ng_handshake") == []


def test_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NG_PLUGINS_ALLOW", "other")
    host = pluginhost.create("net_gazer.sensor", hookspecs)
    assert "handshake" not in host.infos
    monkeypatch.setenv("NG_PLUGINS_ALLOW", "other, handshake")
    assert "handshake" in pluginhost.create("net_gazer.sensor", hookspecs).infos


def test_misspelled_hook_is_a_config_error() -> None:
    class Misspelled:
        @hookimpl
        def ng_handshak(self, ctx: PluginContext, event: HandshakeEvent) -> None:
            raise AssertionError("never called")

    with pytest.raises(ConfigError, match="ng_handshak"):
        pluginhost.create("net_gazer.sensor", hookspecs, extra=[("typo", Misspelled())])


# --- safecall: errors and budgets -------------------------------------------------------------


def test_plugin_that_raises_is_logged_counted_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Boom:
        @hookimpl
        def ng_bpf_filter(self, ctx: object) -> str:
            raise RuntimeError("kaboom")

    class Ok:
        def __init__(self) -> None:
            self.ctxs: list[object] = []

        @hookimpl
        def ng_bpf_filter(self, ctx: object) -> str:
            self.ctxs.append(ctx)
            return "tcp port 80"

    # One well-behaved plugin registered before the failing one and one after: whichever order
    # the host calls them in, one of them runs after the failure.
    before, after = Ok(), Ok()
    host = pluginhost.create(
        "net_gazer.sensor",
        hookspecs,
        extra=[("before", before), ("boom", Boom()), ("after", after)],
    )
    assert sorted(host.implemented_by("ng_bpf_filter")) == ["after", "before", "boom", "handshake"]
    with caplog.at_level(logging.ERROR, logger="net_gazer.pluginhost"):
        results = host.safecall("ng_bpf_filter", ctx=lambda name: f"ctx-of-{name}")
        results += host.safecall("ng_bpf_filter", ctx=lambda name: f"ctx-of-{name}")

    assert sorted(results) == sorted(
        [("handshake", "tcp"), ("before", "tcp port 80"), ("after", "tcp port 80")] * 2
    )
    assert before.ctxs == ["ctx-of-before"] * 2  # each plugin gets its own context
    assert after.ctxs == ["ctx-of-after"] * 2
    assert host.infos["boom"].errors == 2
    assert [host.infos[n].errors for n in ("before", "after", "handshake")] == [0, 0, 0]
    failures = [r for r in caplog.records if "boom" in r.getMessage()]
    assert len(failures) == 2
    assert "ng_bpf_filter" in failures[0].getMessage()
    assert failures[0].exc_info is not None and "kaboom" in str(failures[0].exc_info[1])
    assert host.infos["boom"].disabled == ""  # errors alone do not disable


def test_plugin_that_keeps_overrunning_is_disabled(caplog: pytest.LogCaptureFixture) -> None:
    class Slow:
        calls = 0

        @hookimpl
        def ng_tick(self, ctx: object, now: float, final: bool) -> None:
            Slow.calls += 1
            time.sleep(0.005)

    host = pluginhost.create(
        "net_gazer.sensor", hookspecs, block=["handshake"], extra=[("slow", Slow())]
    )
    host.budget = 0.001
    host.max_overruns = 3
    with caplog.at_level(logging.ERROR, logger="net_gazer.pluginhost"):
        for i in range(3):
            assert host.infos["slow"].disabled == ""
            host.safecall("ng_tick", ctx=lambda name: None, now=float(i), final=False)
    info = host.infos["slow"]
    assert Slow.calls == 3
    assert info.overruns == 3
    assert info.disabled != ""
    assert "slow" in caplog.text and "disabled" in caplog.text
    for i in range(3):
        host.safecall("ng_tick", ctx=lambda name: None, now=float(10 + i), final=False)
    assert Slow.calls == 3  # no longer called
    assert host.implemented_by("ng_tick") == []
    assert "slow" in [p.name for p in host.plugins()]  # still listed, as disabled


def test_an_overrun_streak_is_broken_by_a_call_within_budget() -> None:
    class Sometimes:
        delays = [0.06, 0.06, 0.0, 0.06, 0.06]

        @hookimpl
        def ng_tick(self, ctx: object, now: float, final: bool) -> None:
            time.sleep(Sometimes.delays[int(now)])

    host = pluginhost.create(
        "net_gazer.sensor", hookspecs, block=["handshake"], extra=[("sometimes", Sometimes())]
    )
    host.budget = 0.05
    host.max_overruns = 3
    for i in range(5):
        host.safecall("ng_tick", ctx=lambda name: None, now=float(i), final=False)
    assert host.infos["sometimes"].overruns == 4
    assert host.infos["sometimes"].disabled == ""  # never three in a row


def test_hookimpl_taking_fewer_arguments_than_the_spec_is_called() -> None:
    # pluggy's contract: arguments are opt-in for implementations; an implementation may accept
    # any subset of the spec's arguments (pluggy passes only the ones it names). A third-party
    # plugin written that way registers fine, so safecall must call it the same way.
    class Minimal:
        def __init__(self) -> None:
            self.seen: list[float] = []

        @hookimpl
        def ng_tick(self, now: float) -> None:
            self.seen.append(now)

    minimal = Minimal()
    host = pluginhost.create(
        "net_gazer.sensor", hookspecs, block=["handshake"], extra=[("minimal", minimal)]
    )
    host.safecall("ng_tick", ctx=lambda name: None, now=12.5, final=False)
    assert host.infos["minimal"].errors == 0
    assert minimal.seen == [12.5]


# --- the sensor hooks, through the real sensor code path ----------------------------------------


def run_sensor(probe: SensorProbe) -> tuple[Sensor, int]:
    """``runner.run`` on handshakes.pcap against a collector address where nothing listens: the
    sensor replays, stops, and gives up waiting for acks after ``ack_timeout``."""
    sensor = build_sensor(
        probe, collector=f"127.0.0.1:{unused_port()}", ack_timeout=0.3, flush_interval=0.25
    )
    rc = asyncio.run(runner.run(sensor))
    return sensor, rc


def test_ng_sensor_start() -> None:
    probe = SensorProbe()
    sensor, rc = run_sensor(probe)
    assert rc == 1  # nothing acknowledged: the collector is not there

    (call,) = probe.calls["ng_sensor_start"]
    assert set(call) == {"ctx"}
    ctx = call["ctx"]
    assert isinstance(ctx, PluginContext)
    assert ctx is sensor.contexts["probe"]
    assert (ctx.name, ctx.sensor_id, ctx.replay) == ("probe", "t", True)
    # Once, after the filter was set and before the first packet.
    assert probe.order.index("ng_sensor_start") < probe.order.index("ng_packet")
    assert probe.order[:2] == ["ng_bpf_filter", "ng_sensor_start"]
    # What it emitted travels in the first batch.
    first = outbox_batches(sensor)[0]
    assert probe_messages([first])[0] == "probe start"


def test_ng_sensor_stop() -> None:
    probe = SensorProbe()
    sensor, rc = run_sensor(probe)
    assert rc == 1

    (call,) = probe.calls["ng_sensor_stop"]
    assert set(call) == {"ctx"}
    assert call["ctx"] is sensor.contexts["probe"]
    # Once, after the last tick, which was the final one.
    assert probe.order[-1] == "ng_sensor_stop"
    assert probe.order[-2] == "ng_tick"
    assert probe.calls["ng_tick"][-1]["final"] is True
    assert [c["final"] for c in probe.calls["ng_tick"][:-1]] == [False] * (
        len(probe.calls["ng_tick"]) - 1
    )
    # "Messages emitted here are still delivered": they are in the last envelope.
    assert probe_messages(outbox_batches(sensor))[-1] == "probe stop"
    assert probe_messages(outbox_batches(sensor)[-1:]) == ["probe stop"]


def test_ng_bpf_filter(probe: SensorProbe, sensor: Sensor) -> None:
    (call,) = probe.calls["ng_bpf_filter"]  # once, at build time
    assert set(call) == {"ctx"}
    assert call["ctx"] is sensor.contexts["probe"]
    # The kernel filter is the union of the fragments (the built-in plugin asks for "tcp").
    expression = sensor.handles[0].filter
    assert "(tcp port 443)" in expression
    assert "(tcp)" in expression
    assert "vlan" in expression  # Ethernet: tagged frames too


def test_ng_bpf_filter_fragment_alone_filters_in_the_kernel() -> None:
    probe = SensorProbe(fragment="tcp port 22")
    sensor = build_sensor(probe, plugins_block=["handshake"])
    try:
        assert sensor.handles[0].filter.startswith("((tcp port 22))")
        frames = sensor.handles[0].read(10_000)
        expected_22 = [row for row in EXPECTED if row["dport"] == 22]
        assert expected_22, "the fixture has an ssh connection"
        assert 0 < len(frames) < MANIFEST["tcp_segments"]
        sensor.process(sensor.handles[0], frames)
        segments = [c["segment"] for c in probe.calls["ng_packet"]]
        assert len(segments) == len(frames)
        assert all(22 in (s.sport, s.dport) for s in segments)
    finally:
        for h in sensor.handles:
            h.close()


def test_ng_bpf_filter_that_does_not_compile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not compile"):
        build_sensor(SensorProbe(fragment="tcp and and and"))


def test_ng_packet(probe: SensorProbe, sensor: Sensor) -> None:
    replay(sensor)
    calls = probe.calls["ng_packet"]
    assert len(calls) == MANIFEST["tcp_segments"]
    assert sensor.counters.tcp == MANIFEST["tcp_segments"]
    assert all(set(c) == {"ctx", "segment"} for c in calls)
    assert all(c["ctx"] is sensor.contexts["probe"] for c in calls)
    segments = [c["segment"] for c in calls]
    assert all(isinstance(s, TcpSegment) for s in segments)
    assert [s.ts for s in segments] == sorted(s.ts for s in segments)  # capture order
    # Every expected connection has segments, both ways.
    endpoints = {(s.src_text, s.dst_text, s.dport) for s in segments}
    for row in EXPECTED:
        assert (row["client"], row["server"], row["dport"]) in endpoints


# pcap timestamps reach the sensor as float seconds (about 0.24 us resolution at 1.7e9 s), and
# the expected RTTs are whole microseconds: compare within half a microsecond, in ms.
RTT_MS_TOL = 0.0005


def test_ng_handshake(probe: SensorProbe, sensor: Sensor) -> None:
    replay(sensor)
    calls = probe.calls["ng_handshake"]
    assert all(set(c) == {"ctx", "event"} for c in calls)
    assert all(c["ctx"] is sensor.contexts["probe"] for c in calls)
    events: list[HandshakeEvent] = [c["event"] for c in calls]
    assert all(isinstance(e, HandshakeEvent) for e in events)
    kinds = Counter(e.kind for e in events)
    assert kinds[Kind.COMPLETED] == expected_total("count")
    assert kinds[Kind.SYN] == expected_total("attempts")
    assert kinds[Kind.REFUSED] == expected_total("refused")
    assert kinds[Kind.UNANSWERED] == expected_total("unanswered")
    assert sensor.counters.events == len(events)

    # The built-in handshake plugin saw the same events and coalesced them into HandshakeRows,
    # which went out in the batch cut by the final tick.
    assert sensor.batch.handshakes == []  # cut
    rows: dict[tuple[str, str, int], list[wire_pb2.HandshakeRow]] = {}
    for batch in outbox_batches(sensor):
        for h in batch.handshakes:
            rows.setdefault((h.client, h.server, h.dport), []).append(h)
    assert sorted(rows) == sorted((r["client"], r["server"], r["dport"]) for r in EXPECTED)
    for want in EXPECTED:
        got = rows[(want["client"], want["server"], want["dport"])]
        assert sum(h.completed for h in got) == want["count"]
        assert sum(h.attempts for h in got) == want["attempts"]
        assert sum(h.refused for h in got) == want["refused"]
        assert sum(h.unanswered for h in got) == want["unanswered"]
        for part, prefix in (("rtt", "rtt_ms"), ("client_rtt", "client_rtt_ms")):
            samples = [getattr(h, part) for h in got if getattr(h, part).samples]
            assert sum(a.samples for a in samples) == want[f"{prefix.removesuffix('_ms')}_samples"]
            if samples:
                assert min(a.min_ms for a in samples) == pytest.approx(
                    want[f"{prefix}_min"], abs=RTT_MS_TOL
                )
                assert max(a.max_ms for a in samples) == pytest.approx(
                    want[f"{prefix}_max"], abs=RTT_MS_TOL
                )


def test_ng_tick(probe: SensorProbe, sensor: Sensor) -> None:
    handle = sensor.handles[0]
    sensor.process(handle, handle.read(10_000))
    t1 = sensor.now
    sensor.tick(t1)
    sensor.tick(t1 + 1.0, final=True, close=True)

    calls = probe.calls["ng_tick"]
    assert [set(c) for c in calls] == [{"ctx", "now", "final"}] * 2
    assert [(c["now"], c["final"]) for c in calls] == [(t1, False), (t1 + 1.0, True)]
    assert all(c["ctx"] is sensor.contexts["probe"] for c in calls)
    # Each tick cut a batch holding what the plugins emitted in it.
    batches = outbox_batches(sensor)
    assert len(batches) == 2
    assert probe_messages(batches[:1]) == ["probe tick final=False"]
    assert probe_messages(batches[1:]) == ["probe tick final=True"]
    assert sum(h.completed for h in batches[0].handshakes) == expected_total("count")
    # The unanswered attempt gets its verdict only from the closing tick.
    assert sum(h.unanswered for h in batches[0].handshakes) == 0
    assert sum(h.unanswered for h in batches[1].handshakes) == expected_total("unanswered")
    assert batches[1].counters["plugin_probe_errors"] == 0
    assert batches[1].counters["sensor_tcp"] == MANIFEST["tcp_segments"]


def test_emitted_messages_wait_in_the_batch_until_the_cut(
    probe: SensorProbe, sensor: Sensor
) -> None:
    sensor.host.safecall("ng_sensor_start", ctx=sensor.ctx)
    assert [c["ctx"] for c in probe.calls["ng_sensor_start"]] == [sensor.contexts["probe"]]
    assert len(sensor.outbox) == 0
    assert probe_messages([sensor.batch]) == ["probe start"]
    assert sensor.batch.extensions[0].plugin == "probe"
    sensor.cut()
    assert len(sensor.batch.extensions) == 0
    assert probe_messages(outbox_batches(sensor)) == ["probe start"]
    assert sensor.outbox.pending[0].seq == 1
    assert sensor.outbox.pending[0].sensor_id == "t"


# --- the collector hooks ----------------------------------------------------------------------


class CollectorProbe:
    def __init__(self) -> None:
        self.calls: dict[str, list[dict[str, Any]]] = {}

    def _record(self, hook: str, **kwargs: Any) -> None:
        self.calls.setdefault(hook, []).append(kwargs)

    @collector_hookimpl
    def ng_collector_start(self, ctx: CollectorContext) -> None:
        self._record("ng_collector_start", ctx=ctx)

    @collector_hookimpl
    def ng_collector_stop(self, ctx: CollectorContext) -> None:
        self._record("ng_collector_stop", ctx=ctx)

    @collector_hookimpl
    def ng_handle_extension(
        self, ctx: CollectorContext, sensor: SensorInfo, plugin: str, payload: AnyMessage
    ) -> list[GraphWrite] | None:
        self._record("ng_handle_extension", ctx=ctx, sensor=sensor, plugin=plugin, payload=payload)
        if not payload.Is(wire_pb2.Gap.DESCRIPTOR):
            return None
        gap = wire_pb2.Gap()
        payload.Unpack(gap)
        return [
            GraphWrite(
                cypher="FOREACH (r IN $rows | MERGE (:ProbeGap {sensor: $sid, first: r.first}))",
                rows=[{"first": gap.first_seq, "lost": gap.lost_items, "from": plugin}],
            )
        ]

    @collector_hookimpl
    def ng_enrich_host(
        self, ctx: CollectorContext, ip: str, scope: str, props: dict[str, Any]
    ) -> None:
        self._record("ng_enrich_host", ctx=ctx, ip=ip, scope=scope, props=props)
        props["city"] = f"probe-city-of-{ip}"
        props["site"] = ctx.config.get("site", "")

    @collector_hookimpl
    def ng_web_routes(self, ctx: CollectorContext, app: flask.Flask) -> None:
        self._record("ng_web_routes", ctx=ctx, app=app)

        @app.get("/probe/<name>")
        def probe_route(name: str) -> dict[str, str]:
            return {"hello": name, "plugin": ctx.name}


@pytest.fixture
def cprobe() -> CollectorProbe:
    return CollectorProbe()


@pytest.fixture
def cplugins(cprobe: CollectorProbe) -> collector_plugins.CollectorPlugins:
    return collector_plugins.load(
        "ng_test", config={"probe": {"site": "lab-7"}}, extra=[("probe", cprobe)]
    )


def handshake_row(**kw: Any) -> wire_pb2.HandshakeRow:
    base: dict[str, Any] = {
        "client": "192.168.1.10",
        "server": "198.51.100.10",
        "dport": 443,
        "proto": 6,
        "direction": wire_pb2.DIRECTION_OUTGOING,
    }
    base.update(kw)
    return wire_pb2.HandshakeRow(**base)


def test_ng_graph_writes() -> None:
    plugins = collector_plugins.load("ng_test")
    batch = wire_pb2.Batch(
        handshakes=[
            handshake_row(
                first_seen=100.0,
                last_seen=110.0,
                completed=2,
                attempts=3,
                refused=1,
                syn_retransmits=1,
                rtt=wire_pb2.RttAggregate(sum_ms=30.0, min_ms=10.0, max_ms=20.0, samples=2),
                client_rtt=wire_pb2.RttAggregate(),  # no sample in this interval
            ),
            handshake_row(dport=80, completed=1, attempts=1, first_seen=105.0, last_seen=105.0),
            handshake_row(
                first_seen=95.0,
                last_seen=108.0,
                completed=1,
                attempts=2,
                unanswered=1,
                abandoned=1,
                rtt=wire_pb2.RttAggregate(sum_ms=25.0, min_ms=5.0, max_ms=25.0, samples=1),
                client_rtt=wire_pb2.RttAggregate(sum_ms=0.5, min_ms=0.5, max_ms=0.5, samples=1),
            ),
        ]
    )
    writes = plugins.graph_writes(SENSOR, batch)
    assert len(writes) == 1
    (write,) = writes
    assert isinstance(write, GraphWrite)
    assert "$rows" in write.cypher and "CONNECTS" in write.cypher
    by_port = {r["dport"]: r for r in write.rows}
    assert sorted(by_port) == [80, 443]  # two keys: two rows, one of them merged
    merged = by_port[443]
    assert (merged["c"], merged["s"]) == ("192.168.1.10", "198.51.100.10")
    assert (merged["fs"], merged["ls"]) == (95.0, 110.0)
    assert merged["count"] == 3
    assert merged["attempts"] == 5
    assert merged["refused"] == 1 and merged["unanswered"] == 1 and merged["abandoned"] == 1
    assert merged["syn_retransmits"] == 1
    assert (merged["rsum"], merged["rmin"], merged["rmax"], merged["rn"]) == (55.0, 5.0, 25.0, 3)
    assert (merged["csum"], merged["cmin"], merged["cmax"], merged["cn"]) == (0.5, 0.5, 0.5, 1)
    assert merged["dir"] == "outgoing" and merged["proto"] == "tcp"
    assert merged["cs"] == "lab"  # a private client is scoped to the sensor's site
    assert merged["ss"] == "lab"  # so is a documentation-range server (not globally routable)
    assert {ip for ip, _ in write.hosts} == {"192.168.1.10", "198.51.100.10"}
    # A batch without handshakes is not this plugin's business.
    assert plugins.graph_writes(SENSOR, wire_pb2.Batch()) == []


def test_ng_handle_extension(
    cprobe: CollectorProbe, cplugins: collector_plugins.CollectorPlugins
) -> None:
    payload = AnyMessage()
    payload.Pack(wire_pb2.Gap(first_seq=7, lost_envelopes=2, lost_items=40, reason="x"))
    writes = cplugins.handle_extension(SENSOR, "lossy", payload)
    assert writes is not None and len(writes) == 1
    assert writes[0].rows == [{"first": 7, "lost": 40, "from": "lossy"}]
    (call,) = cprobe.calls["ng_handle_extension"]
    assert set(call) == {"ctx", "sensor", "plugin", "payload"}
    assert call["sensor"] is SENSOR and call["plugin"] == "lossy"
    assert call["ctx"].name == "probe"

    other = AnyMessage()
    other.Pack(wire_pb2.Ack(epoch="e", acked_seq=1))
    assert cplugins.handle_extension(SENSOR, "lossy", other) is None  # nobody handles it


def test_ng_handle_extension_from_a_sensor_batch(
    cplugins: collector_plugins.CollectorPlugins,
) -> None:
    # The payload as the sensor packs it (Sensor.emit), read back from the batch's Extension.
    batch = wire_pb2.Batch()
    batch.extensions.add(plugin="lossy").payload.Pack(wire_pb2.Gap(first_seq=3, lost_items=1))
    ext = batch.extensions[0]
    writes = cplugins.handle_extension(SENSOR, ext.plugin, ext.payload)
    assert writes is not None
    assert writes[0].rows[0]["first"] == 3


def test_ng_enrich_host(
    cprobe: CollectorProbe, cplugins: collector_plugins.CollectorPlugins
) -> None:
    props: dict[str, Any] = {"existing": 1}
    cplugins.enrich("198.51.100.7", "global", props)
    assert props == {"existing": 1, "city": "probe-city-of-198.51.100.7", "site": "lab-7"}
    (call,) = cprobe.calls["ng_enrich_host"]
    assert set(call) == {"ctx", "ip", "scope", "props"}
    assert (call["ip"], call["scope"]) == ("198.51.100.7", "global")
    assert call["props"] is props  # in place
    assert call["ctx"].config == {"site": "lab-7"}


def test_ng_web_routes(
    cprobe: CollectorProbe, cplugins: collector_plugins.CollectorPlugins
) -> None:
    app = flask.Flask(__name__)
    cplugins.web_routes(app)
    (call,) = cprobe.calls["ng_web_routes"]
    assert call["app"] is app and call["ctx"].name == "probe"
    client = app.test_client()
    resp = client.get("/probe/world")
    assert resp.status_code == 200
    assert resp.get_json() == {"hello": "world", "plugin": "probe"}
    assert client.get("/not-registered").status_code == 404


def test_ng_collector_start(
    cprobe: CollectorProbe, cplugins: collector_plugins.CollectorPlugins
) -> None:
    assert "ng_collector_start" not in cprobe.calls  # loading does not start anything
    cplugins.start()
    (call,) = cprobe.calls["ng_collector_start"]
    assert set(call) == {"ctx"}
    ctx = call["ctx"]
    assert isinstance(ctx, CollectorContext)
    assert (ctx.name, ctx.graph, ctx.config) == ("probe", "ng_test", {"site": "lab-7"})
    assert ctx.log.name == "net_gazer.plugin.probe"


def test_ng_collector_stop(
    cprobe: CollectorProbe, cplugins: collector_plugins.CollectorPlugins
) -> None:
    cplugins.start()
    cplugins.stop()
    (call,) = cprobe.calls["ng_collector_stop"]
    assert set(call) == {"ctx"}
    # The plugin keeps one context for its life.
    assert call["ctx"] is cprobe.calls["ng_collector_start"][0]["ctx"]
    names = {p["name"] for p in cplugins.describe()}
    assert names == {"handshake", "probe"}


# --- the command line -------------------------------------------------------------------------


def test_sensor_list_plugins(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "net-gazer-sensor"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NG_")}
    proc = subprocess.run(
        [str(exe), "--list-plugins"],
        cwd=tmp_path,  # no ./etc/net-gazer/net-gazer.toml here
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (line,) = [ln for ln in lines if ln.startswith("handshake ")]
    assert net_gazer.__version__ in line
    hooks_line = lines[lines.index(line) + 1]
    assert "hooks:" in hooks_line
    for hook in BUILTIN_SENSOR_HOOKS:
        assert hook in hooks_line


def test_replay_does_not_allow_probing_unless_asked() -> None:
    """Safety rule: replay mode (--read) does not probe unless --probe is given."""
    from net_gazer.sensor.config import SensorConfig

    pcap = Path(__file__).resolve().parent / "pcaps" / "raw.pcap"
    quiet = build(SensorConfig(read=pcap, sensor_id="t", site="t"))
    assert quiet.contexts["handshake"].probing_allowed is False
    asked = build(SensorConfig(read=pcap, sensor_id="t", site="t", probe=True))
    assert asked.contexts["handshake"].probing_allowed is True
    for s in (quiet, asked):
        for h in s.handles:
            h.close()
