"""Crash between write and ack: SIGKILL the collector (and with it its embedded FalkorDB) right
after a graph write and before its ack, during a paced replay; restart it; the sensor reconnects
and the graph's counts are exact: nothing lost, nothing doubled."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import PCAPS, connects, expected, graph_query, tool
from test_e2e import assert_graph_matches

KILL_AFTER = 5
FAULT_COLLECTOR = Path(__file__).resolve().parent / "fault_collector.py"


def test_kill_collector_between_write_and_ack(collector_factory: Any, tmp_path: Path) -> None:
    data = tmp_path / "collector-data"
    first = collector_factory("--data-dir", str(data)).start(
        program=[sys.executable, str(FAULT_COLLECTOR), "--kill-after-write", str(KILL_AFTER)]
    )
    port = first.grpc_port
    # sample.pcap spans about 90 s of packet time: at 15x with 1 s batches, ~6 s and ~90 batches.
    sensor = subprocess.Popen(
        [tool("net-gazer-sensor"), "-r", str(PCAPS / "sample.pcap"), "--speed", "15",
         "--collector", f"127.0.0.1:{port}", "--sensor-id", "crashy", "--ack-timeout", "60", "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert first.proc is not None
        assert first.proc.wait(30) == -9, "the collector was not killed by the fault injection"
        assert f"killing the collector after write {KILL_AFTER}, before its ack" in first.log_text()
        time.sleep(0.5)
        second = collector_factory("--data-dir", str(data)).start(port=port)
        out, _ = sensor.communicate(timeout=90)
        assert sensor.returncode == 0, out
    finally:
        if sensor.poll() is None:
            sensor.kill()
            sensor.wait()
    # The restarted collector read the mark from the graph (recovered from the AOF): the write
    # that was never acknowledged is there, so the sensor did not send it again.
    assert f"mark {KILL_AFTER})" in second.log_text()
    assert "reachable again" in out
    url = second.graph_url
    assert_graph_matches(url, "net_gazer", expected("sample.expected.json"))
    [[acked, batches]] = graph_query(
        url, "net_gazer", "MATCH (s:Sensor {id: 'crashy'}) RETURN s.acked_seq, s.batches"
    )
    assert acked == batches

    # The sensor restarts with a new epoch: its data is accepted and adds up exactly.
    again = subprocess.run(
        [tool("net-gazer-sensor"), "-r", str(PCAPS / "sample.pcap"), "--collector", f"127.0.0.1:{port}",
         "--sensor-id", "crashy"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert_graph_matches(url, "net_gazer", expected("sample.expected.json"), factor=2)
    assert len(connects(url, "net_gazer")) == len(expected("sample.expected.json"))
