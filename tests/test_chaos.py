"""Chaos with real processes. Each test ends with exact counts in the graph: zero lost, zero
duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from conftest import PCAPS, connects, expected, graph_query, tool
from netns import Lab
from test_e2e import assert_graph_matches
from test_ingest import row
from test_live import start_collector, wait_for
from test_spool import spool_files

from net_gazer.collector import plugins as collector_plugins
from net_gazer.collector.embedded import EmbeddedFalkorDB
from net_gazer.collector.graphwrite import SensorInfo
from net_gazer.collector.ingest import IngestService, add_to_server
from net_gazer.collector.store import GraphStore
from net_gazer.sensor.spool import Spool
from net_gazer.sensor.transport import Outbox, Streamer
from net_gazer.v1 import wire_pb2


def paced_sensor(port: int, sensor_id: str, speed: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [tool("net-gazer-sensor"), "-r", str(PCAPS / "sample.pcap"), "--speed", speed,
         "--collector", f"127.0.0.1:{port}", "--sensor-id", sensor_id, "--ack-timeout", "120", "-v", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(sensor: subprocess.Popen[str], timeout: float = 150) -> str:
    try:
        out, _ = sensor.communicate(timeout=timeout)
    finally:
        if sensor.poll() is None:
            sensor.kill()
            sensor.communicate()
    assert sensor.returncode == 0, out
    return out


def test_collector_down_for_30_seconds_during_paced_replay(
    collector_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = collector_factory("--data-dir", str(data)).start()
    port = first.grpc_port
    # sample.pcap spans ~90 s of packet time; at 3x the replay takes ~30 s, all of it while the
    # collector is away after the first 3 s.
    sensor = paced_sensor(port, "outage", "3")
    try:
        time.sleep(3)
        first.kill()
        time.sleep(30)
        second = collector_factory("--data-dir", str(data)).start(port=port)
        out = finish(sensor)
    finally:
        if sensor.poll() is None:
            sensor.kill()
            sensor.communicate()
    assert "cannot deliver to the collector" in out and "reachable again" in out
    assert_graph_matches(second.graph_url, "net_gazer", expected("sample.expected.json"))
    [[acked, batches, gaps]] = graph_query(
        second.graph_url,
        "net_gazer",
        "MATCH (s:Sensor {id: 'outage'}) RETURN s.acked_seq, s.batches, s.gaps",
    )
    assert acked == batches and gaps == 0


def test_falkordb_killed_and_restarted(collector_factory: Any, tmp_path: Path) -> None:
    dbdir = tmp_path / "falkordb"
    db = EmbeddedFalkorDB(dbdir)
    db.start()
    try:
        collector = collector_factory("--graph-url", db.url).start()
        sensor = paced_sensor(collector.grpc_port, "dbkill", "10")
        try:
            time.sleep(2.5)
            db.kill()  # SIGKILL: only the AOF (appendfsync always) survives
            time.sleep(4)
            db = EmbeddedFalkorDB(dbdir)
            db.start()
            out = finish(sensor)
        finally:
            if sensor.poll() is None:
                sensor.kill()
                sensor.communicate()
        assert "reachable again" in out, out
        assert "graph write failed for sensor dbkill" in collector.log_text()
        assert_graph_matches(db.url, "net_gazer", expected("sample.expected.json"))
    finally:
        db.stop()


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_collector_restarts_its_embedded_falkordb_when_it_dies(
    collector_factory: Any, tmp_path: Path
) -> None:
    """The collector owns its embedded server: SIGKILL it under a running collector and a paced
    replay, and /healthz goes back to 200 without anyone restarting anything, with exact counts."""
    data = tmp_path / "data"
    collector = collector_factory("--data-dir", str(data)).start()
    assert healthz(collector.http_port) == 200
    sensor = paced_sensor(collector.grpc_port, "ownkill", "10")
    try:
        time.sleep(2.5)
        pid = int((data / "falkordb.pid").read_text())
        assert b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        codes = []
        while time.monotonic() < deadline:
            codes.append(healthz(collector.http_port))
            if codes[-1] == 200 and len(codes) > 1:
                break
            time.sleep(0.2)
        assert codes[-1] == 200, codes
        out = finish(sensor)
    finally:
        if sensor.poll() is None:
            sensor.kill()
            sensor.communicate()
    new_pid = int((data / "falkordb.pid").read_text())
    assert new_pid != pid
    assert "the embedded FalkorDB exited" in collector.log_text()
    assert "the embedded FalkorDB is back" in collector.log_text()
    assert "reachable again" in out or "connected to collector" in out, out
    assert_graph_matches(collector.graph_url, "net_gazer", expected("sample.expected.json"))


@pytest.mark.root
def test_sensor_restart_with_its_spool_on_disk(tmp_path: Path) -> None:
    """A live sensor spools while the collector is away, is killed (SIGKILL), and a new sensor
    process resumes the spool's epoch and delivers everything exactly once."""
    assert os.geteuid() == 0, "needs root; CI runs as root"
    spool = tmp_path / "spool"
    with Lab() as lab:
        ns = lab.ns("spool")
        lab.tcp_server(ns, "127.0.0.1", 8083)
        args = [
            "-i",
            "lo",
            "--sensor-id",
            "spooler",
            "--spool-dir",
            str(spool),
            "--flush-interval",
            "0.2",
            "-v",
        ]
        # 1. No collector yet: the sensor warns, captures and spools.
        log1 = tmp_path / "sensor1.log"
        first = lab.popen(
            ns, tool("net-gazer-sensor"), "--collector", "127.0.0.1:50999", *args, log=log1
        )
        wait_for(log1, "cannot deliver to the collector", first)
        lab.connect(ns, "127.0.0.1", 8083, 7)
        deadline = time.monotonic() + 10
        while not list((spool / "spooler").glob("*.env")):
            assert time.monotonic() < deadline, log1.read_text()
            time.sleep(0.1)
        time.sleep(0.5)  # let the last flush land on disk
        epoch = spool_files(spool / "spooler")[0].epoch
        lab.stop(first, sig=9)
        # 2. The collector comes up; a new sensor process resumes the spool.
        port, url = start_collector(lab, ns, tmp_path)
        log2 = tmp_path / "sensor2.log"
        second = lab.popen(
            ns, tool("net-gazer-sensor"), "--collector", f"127.0.0.1:{port}", *args, log=log2
        )
        wait_for(log2, "connected to collector", second)
        assert f"resuming epoch {epoch}" in log2.read_text()
        lab.connect(ns, "127.0.0.1", 8083, 5)
        time.sleep(0.5)
        assert lab.stop(second) == 0, log2.read_text()
        edge = connects(url, "net_gazer")[("127.0.0.1", "127.0.0.1", 8083)]
        assert (edge["count"], edge["attempts"]) == (12, 12)
        [[stored_epoch, gaps]] = graph_query(
            url, "net_gazer", "MATCH (s:Sensor {id: 'spooler'}) RETURN s.epoch, s.gaps"
        )
        assert stored_epoch == epoch and gaps == 0
    assert not list((spool / "spooler").glob("*.env")), "acknowledged batches leave the spool"


async def test_spool_past_its_bound_announces_a_gap_and_delivers_the_rest_once(
    tmp_path: Path, falkordb_url: str, graph_name: str
) -> None:
    """25 batches into a spool bounded at 10 while no collector is there: the oldest go, folded
    into one gap. A restarted outbox then delivers the gap and the 9 newest batches exactly once.
    The batches carry their own timestamps; no wall-clock waiting is involved."""
    spool_dir = tmp_path / "spool"
    outbox = Outbox.open("bounded", 10, max_bytes=1 << 30, spool=Spool(spool_dir, "bounded"))
    for i in range(25):
        batch = wire_pb2.Batch()
        batch.handshakes.append(row(client=f"10.1.0.{i + 1}", n=1))
        outbox.add(batch)
    assert len(outbox) == 10 and len(list(spool_dir.glob("*.env"))) == 10
    assert outbox.pending[0].HasField("gap")
    lost = outbox.pending[0].gap.lost_envelopes
    assert lost == 16 and outbox.stats.dropped_envelopes == 16 and outbox.pending[0].seq == 16

    # The sensor restarts: a new outbox resumes the spool's epoch and contents.
    assert outbox.spool is not None
    outbox.spool.close()
    resumed = Outbox.open("bounded", 10, max_bytes=1 << 30, spool=Spool(spool_dir, "bounded"))
    assert resumed.epoch == outbox.epoch and [e.seq for e in resumed.pending] == [
        e.seq for e in outbox.pending
    ]

    store = GraphStore.connect(falkordb_url, graph_name)
    await store.ensure_schema()
    server = grpc.aio.server()
    add_to_server(IngestService(store, collector_plugins.load(graph_name)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    streamer = Streamer(f"127.0.0.1:{port}", resumed, lambda: wire_pb2.Hello(protocol_minor=1))
    streamer.start()
    try:
        await asyncio.wait_for(resumed.wait_empty(), timeout=20)
        assert len(resumed) == 0
    finally:
        await streamer.stop()
        await server.stop(grace=None)
        await store.close()
    edges = connects(falkordb_url, graph_name)
    delivered = {f"10.1.0.{i + 1}" for i in range(16, 25)}
    assert {c for c, _, _ in edges} == delivered
    assert all(e["count"] == 1 for e in edges.values())
    [[acked, gaps, lost_envelopes]] = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (s:Sensor {id: 'bounded'}) RETURN s.acked_seq, s.gaps, s.lost_envelopes",
    )
    assert (acked, gaps, lost_envelopes) == (25, 1, 16)
    assert not list(spool_dir.glob("*.env"))


async def test_collector_that_lost_acknowledged_data_gets_a_gap(
    tmp_path: Path, falkordb_url: str, graph_name: str
) -> None:
    """A graph restored from an old backup holds a lower mark than the sensor had acknowledged:
    the sensor announces the hole as a gap instead of being refused forever."""
    store = GraphStore.connect(falkordb_url, graph_name)
    await store.ensure_schema()
    server = grpc.aio.server()
    add_to_server(IngestService(store, collector_plugins.load(graph_name)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        spool = Spool(tmp_path / "spool", "restored")
        outbox = Outbox.open("restored", 100, max_bytes=1 << 30, spool=spool)
        for i in range(6):
            outbox.add(wire_pb2.Batch(handshakes=[row(client=f"10.3.0.{i + 1}")]))
        # The graph knows this epoch only up to seq 2 (as if restored from an old backup), while
        # the sensor's spool says seqs 1-4 were acknowledged: only 5 and 6 remain.
        sensor = SensorInfo(id="restored", site="restored", epoch=outbox.epoch)
        await store.hello(sensor, wire_pb2.Hello())
        plugins = collector_plugins.load(graph_name)
        for seq in (1, 2):
            await store.apply(
                sensor, seq, plugins.graph_writes(sensor, outbox.pending[seq - 1].batch)
            )
        outbox.ack(4)
        streamer = Streamer(f"127.0.0.1:{port}", outbox, lambda: wire_pb2.Hello(protocol_minor=1))
        streamer.start()
        try:
            await asyncio.wait_for(outbox.wait_empty(), timeout=20)
        finally:
            await streamer.stop()
    finally:
        await server.stop(grace=None)
        await store.close()
    [[acked, gaps, lost]] = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (s:Sensor {id: 'restored'}) RETURN s.acked_seq, s.gaps, s.lost_envelopes",
    )
    assert (acked, gaps, lost) == (6, 1, 2)
    clients = {c for c, _, _ in connects(falkordb_url, graph_name)}
    assert clients == {"10.3.0.1", "10.3.0.2", "10.3.0.5", "10.3.0.6"}
