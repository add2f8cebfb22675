"""Deployment files: the compose file validates, the example configs load and say the truth."""

from __future__ import annotations

import shutil
import subprocess
import tomllib

from conftest import ROOT

from net_gazer.collector import config as collector_config
from net_gazer.collector.cli import parser as collector_parser
from net_gazer.sensor import config as sensor_config
from net_gazer.sensor.cli import parser as sensor_parser


def test_compose_file_validates() -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is installed by 'make deps'"
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_example_sensor_config_loads_and_matches_the_defaults() -> None:
    args = sensor_parser().parse_args(
        ["-c", str(ROOT / "deploy" / "net-gazer.toml"), "-r", "x.pcap", "--sensor-id", "t"]
    )
    cfg = sensor_config.load(args)
    defaults = sensor_config.SensorConfig()
    for field in (
        "collector",
        "flush_interval",
        "ack_timeout",
        "max_envelopes",
        "handshake_timeout",
        "max_flows",
    ):
        assert getattr(cfg, field) == getattr(defaults, field), field
    assert cfg.max_buffer_bytes == defaults.max_buffer_bytes
    from net_gazer.plugins.handshake.sensor import MAX_UNVERIFIED_ROWS
    from net_gazer.plugins.quality.flows import TableConfig
    from net_gazer.plugins.udp.flows import TableConfig as UdpTableConfig
    from net_gazer.plugins.udp.sensor import MAX_UNANSWERED_ROWS

    quality, udp = TableConfig(), UdpTableConfig()
    # [plugins.traceroute] is checked against its defaults in tests/test_traceroute_sensor.py.
    assert {k: v for k, v in cfg.plugin_config.items() if k != "traceroute"} == {
        "handshake": {"max_unverified_rows": MAX_UNVERIFIED_ROWS},
        "quality": {
            "sample_rate": quality.sample_rate,
            "max_flows": quality.max_flows,
            "linger": quality.linger,
            "idle_timeout": quality.idle_timeout,
        },
        "udp": {
            "min_client_port": udp.rules.min_client_port,
            "max_server_port": udp.rules.max_server_port,
            "sample_rate": udp.sample_rate,
            "max_flows": udp.max_flows,
            "idle_timeout": udp.idle_timeout,
            "max_unanswered_rows": MAX_UNANSWERED_ROWS,
            "trace": False,
        },
    }
    assert (cfg.snaplen, cfg.dpi) == (defaults.snaplen, defaults.dpi)


def test_example_collector_config_loads() -> None:
    args = collector_parser().parse_args(["-c", str(ROOT / "deploy" / "collector.toml")])
    cfg = collector_config.load(args)
    assert cfg.listen == "127.0.0.1:50051" and cfg.graph == "net_gazer" and not cfg.insecure


def test_sensor_unit_grants_only_the_two_capabilities() -> None:
    unit = (ROOT / "deploy" / "net-gazer-sensor.service").read_text()
    assert "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN\n" in unit
    assert "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN\n" in unit
    assert "NoNewPrivileges=yes" in unit


def test_every_example_key_is_known() -> None:
    data = tomllib.loads((ROOT / "deploy" / "net-gazer.toml").read_text())
    # _apply_file rejects unknown keys; the example must not carry any.
    sensor_config._apply_file(sensor_config.SensorConfig(), data, "example")
