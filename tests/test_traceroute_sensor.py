"""The sensor half without the network: the exclusion hook, the triggers, replay safety."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from net_gazer.sensor import hookimpl
from net_gazer.sensor.build import build
from net_gazer.sensor.config import SensorConfig

PCAPS = Path(__file__).parent / "pcaps"
PCAP = PCAPS / "handshakes.pcap"
EXPECTED: list[dict[str, Any]] = json.loads((PCAPS / "handshakes.expected.json").read_text())


class Excluder:
    def __init__(self) -> None:
        self.ports: list[int] = []

    @hookimpl
    def ng_bpf_exclude(self, ctx: Any) -> str | None:
        return "tcp port 22"

    @hookimpl
    def ng_packet(self, ctx: Any, segment: Any) -> None:
        self.ports += [segment.sport, segment.dport]


def test_ng_bpf_exclude_drops_the_fragment_in_the_kernel() -> None:
    plugin = Excluder()
    sensor = build(SensorConfig(read=PCAP, sensor_id="t"), extra_plugins=[("x", plugin)])
    try:
        handle = sensor.handles[0]
        assert handle.filter.startswith("not (tcp port 22) and ")
        sensor.process(handle, handle.read(10_000))
        assert any(r["dport"] == 22 for r in EXPECTED), "the fixture has an ssh connection"
        assert plugin.ports and 22 not in plugin.ports
    finally:
        for h in sensor.handles:
            h.close()


def test_ng_bpf_exclude_of_the_traceroute_plugin_names_its_ports_and_addresses() -> None:
    from net_gazer.plugins.traceroute import sensor as tr
    from net_gazer.sensor.context import PluginContext

    ctx = PluginContext(
        name="traceroute", sensor_id="t", site="t", config={"flow_ports": [62000, 62009]},
        replay=False, probing_allowed=True, _emit=lambda n, m: None, direction=lambda c, s: 0,
        own_addresses=["198.51.100.1", "2001:db8:100::1"],
    )  # fmt: skip
    text = tr.ng_bpf_exclude(ctx)
    assert text == (
        "(tcp or udp) and (((src host 198.51.100.1 or src host 2001:db8:100::1) and src portrange "
        "62000-62009) or ((dst host 198.51.100.1 or dst host 2001:db8:100::1) and dst portrange "
        "62000-62009))"
    )


def test_replay_never_probes_without_probe_and_no_probe_wins() -> None:
    quiet = build(SensorConfig(read=PCAP, sensor_id="t"))
    asked = build(SensorConfig(read=PCAP, sensor_id="t", probe=True, no_probe=True))
    try:
        assert quiet.contexts["traceroute"].probing_allowed is False
        assert asked.contexts["traceroute"].probing_allowed is False
        quiet.host.safecall("ng_sensor_start", ctx=quiet.ctx)
        assert "runner" not in quiet.contexts["traceroute"].state
    finally:
        for s in (quiet, asked):
            for h in s.handles:
                h.close()


def test_the_example_config_and_the_docs_name_the_defaults() -> None:
    """deploy/net-gazer.toml's [plugins.traceroute] parses, and every default it and
    the settings table of the traceroute guide state is the code's."""
    import tomllib
    from dataclasses import fields

    from net_gazer.plugins.traceroute.options import Options, parse_options

    root = Path(__file__).resolve().parent.parent
    example = tomllib.loads((root / "deploy" / "net-gazer.toml").read_text())["plugins"][
        "traceroute"
    ]
    parsed, defaults = parse_options(example), Options()
    for key in example:
        got, want = getattr(parsed, key), getattr(defaults, key)
        assert (list(got) if isinstance(got, tuple) else got) == (
            list(want) if isinstance(want, tuple) else want
        ), key
    table = (root / "docs/traceroute.md").read_text().split("## Settings")[1].split("\n## ")[0]
    documented = set()
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        keys = [k.strip("` ") for k in line.split("|")[1].split(",")]
        values = (
            [v.strip("` ") for v in line.split("|")[2].split(",")]
            if "`" in line.split("|")[2]
            else []
        )
        documented.update(keys)
        for key, value in zip(keys, values if len(values) == len(keys) else [], strict=False):
            want = getattr(defaults, key)
            if isinstance(want, bool):
                assert value == str(want).lower(), key
            elif isinstance(want, int | float):
                assert float(value) == float(want), key
    assert documented == {f.name for f in fields(Options)} - {"allow_set", "deny_set"}


def test_bad_settings_are_one_sentence_and_probing_stays_off() -> None:
    import pytest

    from net_gazer.plugins.traceroute.options import parse_options

    for bad, words in (
        ({"method": "carrier-pigeon"}, "method must be one of tcp, udp, icmp"),
        ({"pps": 0}, "pps must be within"),
        ({"flow_ports": [10, 5]}, "flow_ports must be"),
        ({"deny": ["10.0.0.0/33"]}, "allow/deny"),
        ({"nonsense": 1}, "has no setting 'nonsense'"),
        ({"methods": {"53": "smoke"}}, "methods:"),
    ):
        with pytest.raises(ValueError, match=words) as info:
            parse_options(bad)
        assert "\n" not in str(info.value)


def test_dry_run_logs_and_sighup_settings_apply_to_new_requests(caplog: Any) -> None:
    """A dry run (which sends nothing, so it may run anywhere) logs each probe; new settings in
    ctx.config, as SIGHUP leaves them, apply at the next tick."""
    import logging

    from net_gazer.plugins.traceroute import sensor as tr
    from net_gazer.sensor import HandshakeEvent, Kind
    from net_gazer.sensor.context import PluginContext
    from net_gazer.v1 import wire_pb2

    emitted: list[Any] = []
    ctx = PluginContext(
        name="traceroute", sensor_id="t", site="t", config={}, replay=False, probing_allowed=True,
        _emit=lambda n, m: emitted.append(m), direction=lambda c, s: wire_pb2.DIRECTION_OUTGOING,
        dry_run=True,
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger="net_gazer.plugin.traceroute")
    tr.ng_sensor_start(ctx)

    def done(server: str, kind: Kind = Kind.COMPLETED) -> None:
        tr.ng_handshake(ctx, HandshakeEvent(kind, 1.0, 4, "10.77.1.10", 40000, server, 443, 0))

    done("192.0.2.10", Kind.SYN)  # a bare SYN aims nothing
    done("192.0.2.10")
    ctx.state["runner"].turn()
    assert "dry run: would send a tcp probe to 192.0.2.10 port 443 with TTL 1" in caplog.text
    assert ctx.counters["dry_run_probes"] == 8  # the first window
    ctx.config = {"deny": ["192.0.2.0/24"], "pps": 5.0}
    tr.ng_tick(ctx, 2.0, False)
    done("192.0.2.11")
    engine = ctx.state["runner"].engine
    assert engine.counters["denied"] == 1 and engine.budget.rate == 5.0
    ctx.config = {"pps": "fast"}
    tr.ng_tick(ctx, 3.0, False)
    assert "keeping the running traceroute settings" in caplog.text
    tr.ng_sensor_stop(ctx)
    assert emitted == []  # a dry run reports no traces


def test_the_remote_end_is_traced_by_direction() -> None:
    """Outgoing: the server, on its port; incoming: the client, on its port (unless
    ``incoming = false``); internal and transit connections: nothing."""
    from net_gazer.plugins.traceroute import sensor as tr
    from net_gazer.sensor import HandshakeEvent, Kind
    from net_gazer.sensor.context import PluginContext
    from net_gazer.v1 import wire_pb2

    for direction, config, want in (
        (wire_pb2.DIRECTION_OUTGOING, {}, ("192.0.2.10", 443)),
        (wire_pb2.DIRECTION_INCOMING, {}, ("10.77.1.10", 40000)),
        (wire_pb2.DIRECTION_INCOMING, {"incoming": False}, None),
        (wire_pb2.DIRECTION_INTERNAL, {}, None),
        (wire_pb2.DIRECTION_TRANSIT, {}, None),
    ):
        ctx = PluginContext(
            name="traceroute", sensor_id="t", site="t", config=config, replay=False,
            probing_allowed=True, _emit=lambda n, m: None,
            direction=lambda c, s, d=direction: d, dry_run=True,
        )  # fmt: skip
        tr.ng_sensor_start(ctx)
        event = HandshakeEvent(Kind.COMPLETED, 1.0, 4, "10.77.1.10", 40000, "192.0.2.10", 443, 0)
        tr.ng_handshake(ctx, event)
        engine = ctx.state["runner"].engine
        traced = [(t.dst, t.dport) for t in engine.active.values()]
        assert traced == ([want] if want else []), (direction, config)
        tr.ng_sensor_stop(ctx)
