"""``/metrics`` on the collector and (``--metrics``) on the sensor, parsed with
prometheus_client's own parser. After a replay the counters equal the fixture's totals: the
pcap's manifest and expected edges, or the batches and rows this test sent."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import time
import urllib.request
from typing import Any

import grpc.aio
from api_fixture import Conn
from conftest import PCAPS, Collector, expected, graph_query, run_sensor, tool
from prometheus_client.parser import text_string_to_metric_families

from net_gazer.v1 import wire_pb2, wire_pb2_grpc


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_collector_metrics_equal_what_was_sent(collector: Collector) -> None:
    batches = [[Conn(f"10.0.{b}.{i}", "198.51.100.1", completed=2, attempts=3) for i in range(n)]
               for b, n in enumerate((5, 40, 1))]  # fmt: skip

    async def send() -> None:
        async with grpc.aio.insecure_channel(collector.address) as ch:
            call = wire_pb2_grpc.IngestStub(ch).Stream()
            env = wire_pb2.Envelope(sensor_id="m1", epoch="e", seq=0)
            env.hello.CopyFrom(wire_pb2.Hello(hostname="m1", protocol_minor=1))
            await call.write(env)
            await call.read()
            for seq, rows in enumerate(batches, 1):
                env = wire_pb2.Envelope(sensor_id="m1", epoch="e", seq=seq)
                env.batch.handshakes.extend(c.row() for c in rows)
                env.batch.counters["sensor_packets"] = 100 * seq
                await call.write(env)
                await call.read()
            # A resent batch is acknowledged and skipped: a duplicate, not a batch.
            await call.write(env)
            await call.read()
            await call.done_writing()

    asyncio.run(send())
    m = scrape(f"http://127.0.0.1:{collector.http_port}/metrics")
    p = "net_gazer_collector_"
    assert m[(p + "batches_total", ())] == 3
    assert m[(p + "handshakes_total", ())] == 2 * 46
    assert m[(p + "duplicate_batches_total", ())] == 1
    assert m[(p + "rows_total", (("plugin", "handshake"),))] == 46
    assert m[(p + "batch_rows_count", ())] == 3 and m[(p + "batch_rows_sum", ())] == 46
    assert m[(p + "graph_write_seconds_count", ())] == 3
    assert m[(p + "batch_rows_bucket", (("le", "5.0"),))] == 2  # the batches of 5 rows and 1 row
    assert m[("net_gazer_sensor_batches_total", (("sensor", "m1"),))] == 3
    assert m[("net_gazer_sensor_counter", (("name", "sensor_packets"), ("sensor", "m1")))] == 300


def test_collector_metrics_after_a_pcap_replay(
    collector: Collector, falkordb_url: str, graph_name: str
) -> None:
    result = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--collector", collector.address,
                        "--sensor-id", "replay1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    m = scrape(f"http://127.0.0.1:{collector.http_port}/metrics")
    edges = expected("handshakes.expected.json")
    manifest = expected("manifest.json")["handshakes.pcap"]
    sensor = (("sensor", "replay1"),)

    def wire(name: str) -> float:
        return m[("net_gazer_sensor_counter", (("name", name), *sensor))]

    assert m[("net_gazer_collector_handshakes_total", ())] == sum(e["count"] for e in edges)
    assert wire("sensor_tcp") == manifest["tcp_segments"]
    # The rows the handshake plugin sent are the rows the collector wrote for it.
    assert m[("net_gazer_collector_rows_total", (("plugin", "handshake"),))] == wire(
        "plugin_handshake_rows_sent"
    )
    [[batches]] = graph_query(falkordb_url, graph_name,
                              "MATCH (s:Sensor {id: 'replay1'}) RETURN s.batches")  # fmt: skip
    assert m[("net_gazer_collector_batches_total", ())] == batches > 0
    assert m[("net_gazer_sensor_batches_total", sensor)] == batches


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sensor_metrics_listener() -> None:
    port = _free_port()
    dead = _free_port()  # nothing listens: the sensor keeps its batches and waits for acks
    proc = subprocess.Popen(
        [tool("net-gazer-sensor"), "-r", str(PCAPS / "handshakes.pcap"), "--collector",
         f"127.0.0.1:{dead}", "--ack-timeout", "8", "--no-spool", "--metrics", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
    )  # fmt: skip
    try:
        manifest = expected("manifest.json")["handshakes.pcap"]
        deadline = time.monotonic() + 6
        m: dict[Any, float] = {}
        while time.monotonic() < deadline:
            try:
                m = scrape(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                time.sleep(0.1)
                continue
            if m.get(("net_gazer_sensor_tcp_packets_total", ())) == manifest["tcp_segments"]:
                break
            time.sleep(0.1)
        p = "net_gazer_sensor_"
        assert m[(p + "tcp_packets_total", ())] == manifest["tcp_segments"]
        assert m[(p + "malformed_total", ())] == manifest["malformed"]
        assert m[(p + "handshake_events_total", ())] > 0
        assert m[(p + "envelopes_buffered", ())] == m[(p + "envelopes_cut_total", ())] > 0
        assert m[(p + "envelopes_acked_total", ())] == 0
        assert m[(p + "collector_connected", ())] == 0
        assert m[(p + "plugin_errors_total", (("plugin", "handshake"),))] == 0
    finally:
        proc.kill()
        proc.wait(10)


def test_sensor_metrics_bad_address_is_one_sentence() -> None:
    result = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--metrics", "nowhere")
    assert result.returncode == 2
    assert re.fullmatch(r"net-gazer-sensor: --metrics address 'nowhere' is not HOST:PORT, .*\n",
                        result.stderr)  # fmt: skip
