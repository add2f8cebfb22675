"""Path quality against tshark, on captures of real Linux TCP stacks (tests/pcaps/lab/, recorded
by tests/pcaps/lab/record.py: drops by ``iptables -m statistic``, ACK drops, ``htb`` reordering, a
slow reader; MTU-sized segments).

Each capture is replayed by a real ``net-gazer-sensor -r`` into a real collector and FalkorDB;
every counter stored on a ``CONNECTS`` edge, per direction and in total, must equal what tshark
(Debian's 4.0, run here) counts on the same file, and the continuous RTT must equal the one
computed from tshark's TSval/TSecr fields and frame times (tests/tshark_reference.py). The
documented differences from tshark (docs/quality.md) do not arise in these captures, so the
tolerance is none: every count is exact, and RTTs agree to rounding (the sensor reads pcap times
as floats, 1e-6 ms).
"""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import pytest
import tshark_reference as T
from conftest import PCAPS, Collector, graph_query, run_sensor

LAB = PCAPS / "lab"
CAPTURES = ("loss", "dsack", "reorder", "zerowin")
COUNTS = (*T.METRICS, "segments", "data_segments", "payload_bytes")
RTT_TOL_MS = 1e-6


@cache
def reference(name: str) -> dict[T.Key, list[T.Connection]]:
    return T.by_key(T.connections(LAB / f"{name}.pcap"))


def edges(url: str, graph: str) -> dict[T.Key, dict[str, Any]]:
    rows = graph_query(
        url,
        graph,
        "MATCH (c:Host)-[e:CONNECTS]->(s:Host) RETURN c.ip, s.ip, e.dport, properties(e)",
    )
    out: dict[T.Key, dict[str, Any]] = {}
    for c, s, port, props in rows:
        assert (c, s, port) not in out, f"two CONNECTS edges for {(c, s, port)}"
        out[(c, s, port)] = dict(props)
    return out


def want_direction(conns: list[T.Connection], d: str) -> dict[str, Any]:
    parts = [getattr(c, d) for c in conns]
    want: dict[str, Any] = {m: sum(p.counts[m] for p in parts) for m in T.METRICS}
    want["segments"] = sum(p.segments for p in parts)
    want["data_segments"] = sum(p.data_segments for p in parts)
    want["payload_bytes"] = sum(p.payload_bytes for p in parts)
    want["rtts"] = [x / 1000 for p in parts for x in p.rtts_us]
    return want


def check_edge(
    key: T.Key, e: dict[str, Any], conns: list[T.Connection], rtt_tol: float = RTT_TOL_MS
) -> None:
    want = {d: want_direction(conns, d) for d in ("c2s", "s2c")}
    for m in COUNTS:
        for d in ("c2s", "s2c"):
            assert e[f"{m}_{d}"] == want[d][m], (
                f"{key} {m}_{d}: graph {e[f'{m}_{d}']}, tshark {want[d][m]}"
            )
        assert e[m] == want["c2s"][m] + want["s2c"][m], f"{key} {m}"
    for suffix, rtts in (
        ("_c2s", want["c2s"]["rtts"]),
        ("_s2c", want["s2c"]["rtts"]),
        ("", want["c2s"]["rtts"] + want["s2c"]["rtts"]),
    ):
        assert e[f"ts_rtt_samples{suffix}"] == len(rtts), f"{key} ts_rtt_samples{suffix}"
        if rtts:
            assert e[f"ts_rtt_ms_min{suffix}"] == pytest.approx(min(rtts), abs=rtt_tol)
            assert e[f"ts_rtt_ms_max{suffix}"] == pytest.approx(max(rtts), abs=rtt_tol)
            assert e[f"ts_rtt_ms_sum{suffix}"] == pytest.approx(sum(rtts), abs=rtt_tol * len(rtts))
    n = len(want["c2s"]["rtts"]) + len(want["s2c"]["rtts"])
    total = sum(want["c2s"]["rtts"]) + sum(want["s2c"]["rtts"])
    assert e["ts_rtt_ms"] == pytest.approx(total / n, abs=rtt_tol)
    data = want["c2s"]["data_segments"] + want["s2c"]["data_segments"]
    retx = want["c2s"]["retransmits"] + want["s2c"]["retransmits"]
    assert e["loss_rate"] == pytest.approx(retx / data)
    assert e["quality_flows"] == len(conns)
    assert e["sample_rate"] == 1
    # tshark's retransmission flag covers its fast and spurious ones too, and so does ours.
    assert e["retransmits"] >= e["fast_retransmits"] + e["spurious_retransmits"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, falkordb_url: str) -> dict[str, str]:
    """Each capture replayed once by a real sensor into a real collector, each into a graph of
    its own; capture -> graph name."""
    graphs = {}
    workdir = tmp_path_factory.mktemp("quality")
    for name in CAPTURES:
        graph = f"q_{name}_{workdir.name[-8:]}"
        collector = Collector(
            workdir=workdir, args=["--graph-url", falkordb_url, "--graph", graph], env={}
        )
        try:
            collector.start()
            result = run_sensor(
                "-r", str(LAB / f"{name}.pcap"), "--collector", collector.address,
                "--sensor-id", f"lab-{name}",
            )  # fmt: skip
        finally:
            collector.stop()
        assert result.returncode == 0, result.stderr
        graphs[name] = graph
    return graphs


@pytest.mark.parametrize("name", CAPTURES)
def test_every_counter_equals_tshark(
    name: str, replayed: dict[str, str], falkordb_url: str
) -> None:
    got = edges(falkordb_url, replayed[name])
    ref = reference(name)
    assert set(got) == set(ref), f"edges {sorted(got)} != tshark's connections {sorted(ref)}"
    for key, conns in ref.items():
        check_edge(key, got[key], conns)


@pytest.mark.parametrize("name", CAPTURES)
def test_host_summary_rolls_up_the_edges(
    name: str, replayed: dict[str, str], falkordb_url: str
) -> None:
    """Each Host's loss rate covers every followed flow it took part in; its RTT is its own half:
    samples timed on the client's segments for a server, on the server's for a client."""
    ref = reference(name)
    rows = graph_query(
        falkordb_url, replayed[name],
        "MATCH (h:Host) WHERE h.quality_data_segments IS NOT NULL RETURN h.ip, h.loss_rate, "
        "h.quality_retransmits, h.quality_data_segments, h.ts_rtt_ms_min, h.ts_rtt_samples, h.ts_rtt_ms",
    )  # fmt: skip
    hosts = {r[0]: r[1:] for r in rows}
    expect: dict[str, dict[str, Any]] = {}
    for (client, server, _), conns in ref.items():
        for ip, own in ((client, "s2c"), (server, "c2s")):
            h = expect.setdefault(ip, {"retx": 0, "data": 0, "rtts": []})
            for d in ("c2s", "s2c"):
                w = want_direction(conns, d)
                h["retx"] += w["retransmits"]
                h["data"] += w["data_segments"]
            h["rtts"] += want_direction(conns, own)["rtts"]
    assert set(hosts) == set(expect)
    for ip, h in expect.items():
        loss, retx, data, rtt_min, samples, rtt_mean = hosts[ip]
        assert (retx, data) == (h["retx"], h["data"]), ip
        assert loss == pytest.approx(h["retx"] / h["data"]), ip
        assert samples == len(h["rtts"]), ip
        assert rtt_min == pytest.approx(min(h["rtts"]), abs=RTT_TOL_MS), ip
        assert rtt_mean == pytest.approx(sum(h["rtts"]) / len(h["rtts"]), abs=RTT_TOL_MS), ip


def test_every_metric_has_a_nonzero_reference_count() -> None:
    """0 = 0 proves nothing alone: each metric is provoked in at least one committed capture,
    and so is each kind of retransmission tshark tells apart."""
    totals = dict.fromkeys(T.METRICS, 0)
    rtts = 0
    for name in CAPTURES:
        for conns in reference(name).values():
            for d in ("c2s", "s2c"):
                w = want_direction(conns, d)
                for m in T.METRICS:
                    totals[m] += w[m]
                rtts += len(w["rtts"])
    assert all(totals.values()), totals
    assert rtts > 100


def test_tshark_is_the_debian_4_0_reference() -> None:
    out = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("TShark (Wireshark) 4.0."), out.stdout.splitlines()[0]


def test_captures_hold_mtu_sized_segments() -> None:
    """Offloads were off: the largest TCP payload is one Ethernet MSS with timestamps (1448 bytes
    over IPv4), never a GSO/GRO super-packet."""
    for name in ("loss", "dsack", "reorder"):
        assert max(f.length for f in T.frames(LAB / f"{name}.pcap")) == 1448, name


def test_rtt_halves_are_the_lab_path() -> None:
    """A sanity check of the reference itself against the lab's construction: the capture point
    is next to the server, the delay line sits on the client's side (10 ms each way), so the
    client half is about 20 ms and the server half well under 1 ms."""
    for conns in reference("loss").values():
        c2s = [x for c in conns for x in c.c2s.rtts_us]
        s2c = [x for c in conns for x in c.s2c.rtts_us]
        if c2s:
            assert min(c2s) < 1000
        assert 19_000 < min(s2c) < 40_000
