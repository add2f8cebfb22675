"""Errors a user can cause end in one clear sentence and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest
from conftest import PCAPS, run_sensor, tool

from net_gazer.v1 import wire_pb2, wire_pb2_grpc


def one_sentence(stderr: str, prog: str = "net-gazer-sensor") -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{prog}: "), stderr
    return lines[0]


def test_bad_read_path() -> None:
    result = run_sensor("-r", "/nonexistent/capture.pcap")
    assert result.returncode == 2
    assert "cannot read /nonexistent/capture.pcap: no such file" in one_sentence(result.stderr)


def test_read_file_that_is_not_a_capture(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("this is not a capture\n")
    result = run_sensor("-r", str(bogus))
    assert result.returncode == 2
    assert "is not a capture libpcap can read" in one_sentence(result.stderr)


def test_unknown_interface() -> None:
    result = run_sensor("-i", "ng-nosuch0", "--collector", "127.0.0.1:9")
    assert result.returncode == 2
    assert "interface 'ng-nosuch0' does not exist" in one_sentence(result.stderr)


@pytest.mark.root
def test_missing_capture_permission() -> None:
    """As the unprivileged user nobody (keeping only the right to traverse into the interpreter's
    directory, which lives under /root here), live capture is refused with a hint."""
    assert os.geteuid() == 0, (
        "this test needs root to switch to an unprivileged user; CI runs as root"
    )
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
         tool("net-gazer-sensor"), "-i", "lo", "--collector", "127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip
    assert result.returncode == 2
    line = one_sentence(result.stderr)
    assert "capturing on lo needs CAP_NET_RAW and CAP_NET_ADMIN" in line


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "net-gazer.toml"
    cfg.write_text("collector = [unclosed\n")
    result = run_sensor("-c", str(cfg), "-r", str(PCAPS / "raw.pcap"))
    assert result.returncode == 2
    assert "is not valid TOML" in one_sentence(result.stderr)
    cfg.write_text('colector = "127.0.0.1:50051"\n')
    result = run_sensor("-c", str(cfg), "-r", str(PCAPS / "raw.pcap"))
    assert "unknown key(s) colector" in one_sentence(result.stderr)
    cfg.write_text('flush_interval = "soon"\n')
    result = run_sensor("-c", str(cfg), "-r", str(PCAPS / "raw.pcap"))
    assert "flush_interval must be a int/float" in one_sentence(result.stderr)


def test_missing_config_file() -> None:
    result = run_sensor("-c", "/nonexistent/ng.toml", "-r", str(PCAPS / "raw.pcap"))
    assert result.returncode == 2
    assert "config file /nonexistent/ng.toml does not exist" in one_sentence(result.stderr)


def test_conflicting_flags() -> None:
    assert "not both" in one_sentence(run_sensor("-r", str(PCAPS / "raw.pcap"), "-i", "lo").stderr)
    assert "--loop only applies" in one_sentence(run_sensor("--loop", "-i", "lo").stderr)
    assert "not HOST:PORT" in one_sentence(
        run_sensor("-r", str(PCAPS / "raw.pcap"), "--collector", "nowhere").stderr
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_replay_without_collector_fails_after_ack_timeout() -> None:
    port = _free_port()  # nothing listens there
    result = run_sensor(
        "-r",
        str(PCAPS / "handshakes.pcap"),
        "--collector",
        f"127.0.0.1:{port}",
        "--ack-timeout",
        "2",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"the collector at 127.0.0.1:{port} acknowledged 0 of" in result.stderr
    assert "cannot deliver to the collector" in result.stderr  # the one warning while retrying


class _Silent(wire_pb2_grpc.IngestServicer):
    """A real gRPC server that takes the stream and never acknowledges anything."""

    async def Stream(
        self, request_iterator: AsyncIterator[wire_pb2.Envelope], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wire_pb2.Ack]:  # type: ignore[override, type-arg]
        async for _ in request_iterator:
            pass
        if False:  # pragma: no cover - makes this an async generator
            yield wire_pb2.Ack()


async def test_replay_whose_collector_never_acks() -> None:
    server = grpc.aio.server()
    wire_pb2_grpc.add_IngestServicer_to_server(_Silent(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            tool("net-gazer-sensor"), "-r", str(PCAPS / "handshakes.pcap"), "--collector", f"127.0.0.1:{port}",
            "--ack-timeout", "2", stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        await server.stop(grace=None)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    assert "acknowledged 0 of" in text and "within 2 s" in text


def test_collector_refuses_open_listener_without_insecure(tmp_path: Path) -> None:
    result = subprocess.run(
        [tool("net-gazer-collector"), "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "add --insecure" in one_sentence(result.stderr, "net-gazer-collector")


def test_collector_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [tool("net-gazer-collector"), "--data-dir", str(blocker / "data"), "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot create the data directory" in one_sentence(result.stderr, "net-gazer-collector")
