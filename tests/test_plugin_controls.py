"""Operator controls and version checks of both plugin hosts: order from config and environment,
the tracing switch, and plugins that need a newer net-gazer. Real pluggy, real entry points (a
distribution installed into a directory on sys.path), the real sensor path on a real pcap."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS

from net_gazer import __version__, pluginhost
from net_gazer.collector import CollectorContext
from net_gazer.collector import hookimpl as collector_hookimpl
from net_gazer.collector import hookspecs as collector_hookspecs
from net_gazer.collector import plugins as collector_plugins
from net_gazer.sensor import PluginContext, hookimpl, hookspecs
from net_gazer.sensor.cli import parser as sensor_parser
from net_gazer.sensor.config import load as load_sensor_config
from net_gazer.testing import sensor_run


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NG_PLUGINS_BLOCK", "NG_PLUGINS_ALLOW", "NG_PLUGINS_ORDER", "NG_PLUGIN_TRACE"):
        monkeypatch.delenv(name, raising=False)


class Ticker:
    def __init__(self, calls: list[str], name: str) -> None:
        self.calls, self.name = calls, name

    @hookimpl
    def ng_tick(self, ctx: PluginContext, now: float, final: bool) -> None:
        self.calls.append(self.name)


def tickers(calls: list[str]) -> list[tuple[str, object]]:
    return [(n, Ticker(calls, n)) for n in ("alpha", "bravo", "charlie")]


def test_plugins_are_called_in_the_configured_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    host = pluginhost.create(
        "net_gazer.sensor", hookspecs, block=["handshake"], extra=tickers(calls)
    )
    host.safecall("ng_tick", ctx=lambda name: None, now=1.0, final=False)
    assert calls == ["alpha", "bravo", "charlie"]  # unordered: by name, extras as given

    calls.clear()
    host = pluginhost.create(
        "net_gazer.sensor", hookspecs, order=["charlie", "alpha"], extra=tickers(calls)
    )
    host.safecall("ng_tick", ctx=lambda name: None, now=1.0, final=False)
    assert calls == ["charlie", "alpha", "bravo"]
    assert host.order[:2] == ["charlie", "alpha"]
    builtins = {ep.name for ep in metadata.entry_points(group="net_gazer.sensor")}
    assert set(host.order) == {"alpha", "bravo", "charlie"} | builtins

    # The environment replaces the configured order.
    monkeypatch.setenv("NG_PLUGINS_ORDER", "bravo")
    calls.clear()
    host = pluginhost.create(
        "net_gazer.sensor", hookspecs, order=["charlie", "alpha"], extra=tickers(calls)
    )
    host.safecall("ng_tick", ctx=lambda name: None, now=1.0, final=False)
    assert calls == ["bravo", "alpha", "charlie"]


def test_the_order_decides_which_enrichment_wins() -> None:
    class City:
        def __init__(self, city: str) -> None:
            self.city = city

        @collector_hookimpl
        def ng_enrich_host(
            self, ctx: CollectorContext, ip: str, scope: str, props: dict[str, Any]
        ) -> None:
            props["city"] = self.city

    extra = [("geo", City("from-geoip")), ("site", City("from-site-list"))]
    for order, winner in ((["geo", "site"], "from-site-list"), (["site", "geo"], "from-geoip")):
        plugins = collector_plugins.load("g", order=order, extra=extra)
        props: dict[str, Any] = {}
        plugins.enrich("198.51.100.7", "global", props)
        assert props["city"] == winner
        positions = {p["name"]: p["position"] for p in plugins.describe()}
        assert positions[order[0]] < positions[order[1]]


def test_sensor_order_and_budget_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "net-gazer.toml"
    path.write_text('[plugins]\norder = ["mss", "handshake"]\nbudget_ms = 40\n')
    cfg = load_sensor_config(sensor_parser().parse_args(["-c", str(path), "-r", "x.pcap"]))
    assert cfg.plugins_order == ["mss", "handshake"]
    assert cfg.plugin_budget == 0.04


def test_ng_plugin_trace_logs_every_hook_call(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NG_PLUGIN_TRACE", "1")
    with caplog.at_level(logging.INFO, logger="net_gazer.plugin.trace"):
        run = sensor_run(PCAPS / "handshakes.pcap", plugins=["handshake"])
    lines = [r.getMessage() for r in caplog.records if r.name == "net_gazer.plugin.trace"]
    handshakes = [line for line in lines if line.startswith("handshake.ng_handshake(event=")]
    assert len(handshakes) == run.counters["sensor_events"] > 0
    ticks = [line for line in lines if line.startswith("handshake.ng_tick(now=")]
    assert ticks and all(" -> None in " in t and t.endswith(" ms") for t in ticks)
    assert any(line.startswith("handshake.ng_bpf_filter() -> 'tcp' in ") for line in lines)


def test_no_trace_without_the_switch(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        sensor_run(PCAPS / "handshakes.pcap", plugins=["handshake"])
    assert not [r for r in caplog.records if r.name == "net_gazer.plugin.trace"]


# --- version checks ---------------------------------------------------------------------------

PLUGIN = """
from net_gazer.sensor import hookimpl

@hookimpl
def ng_tick(ctx, now, final):
    pass
"""


def install_dist(site: Path, name: str, requires: str) -> None:
    """A distribution as pip leaves it in site-packages: a module and its .dist-info."""
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(PLUGIN)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        f"Requires-Dist: {requires}\nRequires-Dist: pytest>=999; extra == 'test'\n"
    )
    (info / "entry_points.txt").write_text(f"[net_gazer.sensor]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_dist(tmp_path, "needs-future", "net-gazer>=99.0")
    install_dist(tmp_path, "fits-today", f"net-gazer>={__version__},<99")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_that_needs_a_newer_net_gazer_is_not_loaded(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = pluginhost.create("net_gazer.sensor", hookspecs)
    assert "fits_today" in host.infos  # its requirement holds (the test extra's does not count)
    assert host.infos["fits_today"].version == "1.0"
    assert "needs_future" not in host.infos
    why = host.failed["needs_future"]
    assert why == (
        f"needs-future 1.0 needs net-gazer>=99.0, but this is net-gazer {__version__}: upgrade "
        "net-gazer, or install a needs-future release made for it"
    )
    assert "needs_future" not in sys.modules  # refused before its code ran
    assert why in caplog.text
    collector = collector_plugins.load("g")  # not in this group: no effect there
    assert "needs_future" not in {p["name"] for p in collector.describe()}


def test_list_plugins_and_describe_show_the_refused_plugin(site: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NG_")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-m", "net_gazer.sensor.cli", "--list-plugins"],
        cwd=site, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    (line,) = [ln for ln in out.splitlines() if ln.startswith("needs_future")]
    assert "FAILED TO LOAD: needs-future 1.0 needs net-gazer>=99.0" in line
    assert any(ln.startswith("fits_today 1.0") for ln in out.splitlines())


def test_describe_lists_a_collector_plugin_that_failed_to_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_dist(tmp_path, "old-half", "net-gazer>=99")
    entry = tmp_path / "old_half-1.0.dist-info" / "entry_points.txt"
    entry.write_text("[net_gazer.collector]\nold_half = old_half\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (item,) = [p for p in collector_plugins.load("g").describe() if p["name"] == "old_half"]
    assert item["loaded"] is False
    assert "needs net-gazer>=99" in item["disabled"]
    assert pluginhost.create("net_gazer.collector", collector_hookspecs).failed["old_half"]
