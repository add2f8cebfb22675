"""``proto`` is part of the CONNECTS key: DNS over UDP and over TCP between the same two hosts on
port 53 stay two edges, and edges written before the key changed migrate to ``proto: "tcp"``.

The capture is tests/pcaps/lab/names.pcap (real Linux stacks: DNS answers over UDP and TCP from
one server), replayed by a real sensor into a real collector and FalkorDB; the expected counts
come from tshark.
"""

from __future__ import annotations

import subprocess
from typing import Any

from conftest import PCAPS, Collector, graph_query, run_sensor

from net_gazer.collector.store import SCHEMA_VERSION

NAMES_PCAP = PCAPS / "lab" / "names.pcap"
KEY = ("192.0.2.2", "198.51.100.2", 53)


def tshark(*args: str) -> list[list[str]]:
    out = subprocess.run(
        ["tshark", "-n", "-r", str(NAMES_PCAP), *args, "-T", "fields", "-E", "separator=\t"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


def tcp_handshakes_to_53() -> int:
    """Streams to 198.51.100.2:53 whose SYN, SYN+ACK and ACK tshark saw (tcp.completeness)."""
    rows = tshark("-Y", "ip.dst == 198.51.100.2 && tcp.dstport == 53", "-e", "tcp.stream",
                  "-e", "tcp.completeness")  # fmt: skip
    complete = {stream for stream, c in rows if int(c) & 7 == 7}
    return len(complete)


def udp_to_53() -> dict[str, int]:
    rows = tshark("-Y", "udp.port == 53 && ip", "-e", "ip.src", "-e", "udp.length")
    c2s = [int(n) - 8 for src, n in rows if src == KEY[0]]
    s2c = [int(n) - 8 for src, n in rows if src == KEY[1]]
    return {"packets_c2s": len(c2s), "packets_s2c": len(s2c), "bytes_c2s": sum(c2s),
            "bytes_s2c": sum(s2c)}  # fmt: skip


def graph_of(collector: Collector) -> str:
    return collector.args[collector.args.index("--graph") + 1]


def edges_53(collector: Collector) -> dict[str, dict[str, Any]]:
    rows = graph_query(
        collector.graph_url,
        graph_of(collector),
        "MATCH (c:Host {ip: $c})-[e:CONNECTS]->(s:Host {ip: $s}) WHERE e.dport = 53 "
        "RETURN e.proto, properties(e)",
        {"c": KEY[0], "s": KEY[1]},
    )
    out: dict[str, dict[str, Any]] = {}
    for proto, props in rows:
        assert proto not in out, f"two {proto} edges for {KEY}"
        out[proto] = dict(props)
    return out


def replay(collector: Collector) -> None:
    result = run_sensor(
        "-r", str(NAMES_PCAP), "--collector", collector.address, "--sensor-id", "proto",
        "--local-networks", "192.0.2.0/24",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_udp_and_tcp_on_one_port_stay_two_edges(collector: Collector) -> None:
    replay(collector)
    edges = edges_53(collector)
    assert set(edges) == {"tcp", "udp"}
    tcp, udp = edges["tcp"], edges["udp"]
    handshakes = tcp_handshakes_to_53()
    assert handshakes == 1
    assert tcp["count"] == tcp["attempts"] == handshakes
    assert "packets_c2s" not in tcp and "count" not in udp
    for field, value in udp_to_53().items():
        assert udp[field] == value, f"udp {field}: graph {udp[field]}, tshark {value}"
    assert udp["flows"] == 1 and udp["answered"] is True


def test_edges_from_before_the_key_change_migrate(
    collector_factory: Any, falkordb_url: str, graph_name: str
) -> None:
    # Documentation addresses are private: their scope is the site, the sensor id here.
    # The shapes older collectors wrote: the handshake plugin's (proto 'tcp'), and an edge the
    # store made ahead of a batch (no proto at all).
    graph_query(
        falkordb_url,
        graph_name,
        "CREATE (c:Host {scope: 'proto', ip: $c, family: 4})"
        "-[:CONNECTS {sensor: 'proto', dport: 53, count: 100, attempts: 100}]->"
        "(s:Host {scope: 'proto', ip: $s, family: 4}) "
        "CREATE (c)-[:CONNECTS {sensor: 'proto', dport: 80, proto: 'tcp', count: 7, attempts: 7}]->(s)",
        {"c": KEY[0], "s": KEY[1]},
    )
    collector = collector_factory("--graph-url", falkordb_url, "--graph", graph_name).start()
    [[missing, version]] = graph_query(
        falkordb_url,
        graph_name,
        "MATCH ()-[e:CONNECTS]->() WITH sum(CASE WHEN e.proto IS NULL THEN 1 ELSE 0 END) AS m "
        "MATCH (x:Schema {id: 'net_gazer'}) RETURN m, x.version",
    )
    assert (missing, version) == (0, SCHEMA_VERSION)
    replay(collector)
    edges = edges_53(collector)
    assert set(edges) == {"tcp", "udp"}
    assert edges["tcp"]["count"] == 100 + tcp_handshakes_to_53()
    [[n80, count80]] = graph_query(
        falkordb_url,
        graph_name,
        "MATCH (:Host {ip: $c})-[e:CONNECTS {dport: 80}]->() RETURN count(e), sum(e.count)",
        {"c": KEY[0]},
    )
    want80 = len({s for s, c in tshark("-Y", "ip.dst == 198.51.100.2 && tcp.dstport == 80",
                                         "-e", "tcp.stream", "-e", "tcp.completeness")
                  if int(c) & 7 == 7})  # fmt: skip
    assert (n80, count80) == (1, 7 + want80)
    assert "migrated to schema 2: 1 changed" in collector.log_text()
    collector.stop()
    # A second start finds the schema current and changes nothing.
    query = "MATCH (x:Schema) RETURN x.version, x.migrated_at"
    before = graph_query(falkordb_url, graph_name, query)
    collector_factory("--graph-url", falkordb_url, "--graph", graph_name).start().stop()
    assert graph_query(falkordb_url, graph_name, query) == before
