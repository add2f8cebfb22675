"""Stopping as a user does it: SIGINT (Ctrl-C) once, and twice.

A live sensor with a spool stops within seconds even when its collector is gone, because what is
not acknowledged stays in the spool for its next start; a second Ctrl-C ends any wait at once. The
live cases capture on the loopback interface (no probing, nothing leaves the host).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PCAPS, tool

from net_gazer.sensor.runner import LIVE_DRAIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [tool("net-gazer-sensor"), "-v", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 30) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} not seen: {''.join(lines)}")


def stop_and_time(proc: subprocess.Popen[str], signals: int = 1) -> tuple[int, float, str]:
    start_at = time.monotonic()
    for n in range(signals):
        proc.send_signal(signal.SIGINT)
        if n + 1 < signals:
            time.sleep(0.3)
    try:
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, time.monotonic() - start_at, out


@pytest.mark.root
def test_live_sensor_with_a_spool_stops_promptly_when_its_collector_is_gone(
    tmp_path: Path,
) -> None:
    assert os.geteuid() == 0, "live capture needs root; CI runs as root"
    port = free_port()  # nothing listens there
    proc = start(
        "-i", "lo", "--collector", f"127.0.0.1:{port}", "--spool-dir", str(tmp_path / "spool"),
        "--flush-interval", "0.2", "--ack-timeout", "60", "--sensor-id", "stopper",
    )  # fmt: skip
    wait_for_line(proc, "cannot deliver to the collector")
    # Something to deliver: a connection on loopback, captured live.
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(server.getsockname()).close()
    time.sleep(0.5)
    rc, took, out = stop_and_time(proc)
    assert rc == 0, out
    assert took < LIVE_DRAIN + 3, f"took {took:.1f} s to stop: {out}"
    assert "they stay in the spool" in out, out
    assert "Traceback" not in out
    spooled = list((tmp_path / "spool" / "stopper").glob("*.env"))
    assert spooled, "the unacknowledged batches must stay in the spool"


def test_second_sigint_ends_the_wait_for_acks_at_once() -> None:
    port = free_port()
    proc = start(
        "-r", str(PCAPS / "handshakes.pcap"), "--speed", "0.05", "--collector", f"127.0.0.1:{port}",
        "--ack-timeout", "60",
    )  # fmt: skip
    wait_for_line(proc, "capturing on")
    time.sleep(0.5)
    rc, took, out = stop_and_time(proc, signals=2)
    assert rc == 1, out  # nothing was delivered, and the replay says so
    assert took < 5, f"took {took:.1f} s to stop: {out}"
    assert "second stop signal" in out, out
    assert "acknowledged 0 of" in out
    assert "Traceback" not in out
