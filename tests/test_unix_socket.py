"""The collector listens on a Unix socket and a sensor delivers to it (``unix:/path``): the way
the lab's sensor, inside a network namespace, reaches a collector in the host's namespace."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, connects, expected, run_sensor
from test_cli_errors import one_sentence

from net_gazer.collector import config as collector_config
from net_gazer.collector.auth import token_digest
from net_gazer.errors import ConfigError
from net_gazer.netaddr import collector_endpoint

TOKEN = "unix-sensor-token-0123456789abcdef"


def test_collector_endpoint_parses_both_kinds() -> None:
    assert collector_endpoint("unix:/run/ng/collector.sock") is None
    assert collector_endpoint("unix:///run/ng/collector.sock") is None
    assert collector_endpoint("[2001:db8::1]:50051") == ("2001:db8::1", 50051)
    for bad in ("unix:", "unix:///", "collector.example.net", "unix-abstract:ng"):
        with pytest.raises(ConfigError, match="unix:/"):
            collector_endpoint(bad)


def test_a_unix_listener_is_local_and_needs_no_insecure(tmp_path: Path) -> None:
    cfg = collector_config.CollectorConfig(listen=f"unix:{tmp_path}/c.sock")
    assert collector_config.validate(cfg).listen == f"unix:{tmp_path}/c.sock"
    with pytest.raises(ConfigError, match="reaches beyond loopback"):
        collector_config.validate(collector_config.CollectorConfig(listen="192.0.2.1:50051"))


def test_replay_delivered_over_a_unix_socket(
    collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    sock = tmp_path / "c.sock"
    # A socket file left by a collector that died holds no listener: it is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"unix-gw {token_digest(TOKEN)}\n")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    c = collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "--listen", f"unix:{sock}",
        "--tokens", str(tokens),
    ).start()  # fmt: skip
    mode = sock.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    # A token without TLS over a Unix socket stays on this machine: no warning, no error.
    result = run_sensor(
        "-r", str(PCAPS / "handshakes.pcap"), "--collector", f"unix:{sock}",
        "--sensor-id", "unix-gw", "--token-file", str(token_file), "-v",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "without TLS" not in result.stderr
    want = {
        (e["client"], e["server"], e["dport"]): e["count"]
        for e in expected("handshakes.expected.json")
    }
    got = {key: edge["count"] for key, edge in connects(falkordb_url, graph_name).items()}
    assert got == want
    # A second collector must not take over the path of a live one.
    second = collector_factory("--graph-url", falkordb_url, "--listen", f"unix:{sock}")
    with pytest.raises(AssertionError, match="collector exited 2"):
        second.start()
    last = [line for line in second.log_text().splitlines() if line.strip()][-1]
    assert last == (
        f"net-gazer-collector: another process listens on unix:{sock}; stop it or choose "
        "another --listen"
    )
    c.stop()
    assert not sock.exists()  # removed on a clean stop


def test_sensor_rejects_an_empty_unix_target() -> None:
    result = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--collector", "unix:")
    assert result.returncode == 2
    assert "names no socket file" in one_sentence(result.stderr)
