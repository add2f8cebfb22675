"""End to end: the capture replayed by a real sensor into a real collector and FalkorDB, with both
halves of the plugin loaded from their entry points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from net_gazer.testing import RunningCollector, replay

HERE = Path(__file__).resolve().parent
EXPECTED: dict[str, Any] = json.loads((HERE / "mss.expected.json").read_text())


def test_replay_writes_advertised_mss_edges_and_serves_them(ng_collector: RunningCollector) -> None:
    replay(HERE / "mss.pcap", ng_collector, sensor_id="gw1")
    rows = ng_collector.query(
        "MATCH (s:Sensor)-[m:ADVERTISED_MSS]->(h:Host) RETURN s.id, h.ip, m.samples, m.sum, "
        "m.min, m.max, m.small, m.mean, m.first_seen, m.last_seen"
    )
    got = {r[1]: r for r in rows}
    want = {h["ip"]: h for h in EXPECTED["hosts"]}
    assert len(rows) == len(got) == len(want)  # one edge per (sensor, host)
    for ip, w in want.items():
        sid, _, samples, total, lo, hi, small, mean, first, last = got[ip]
        assert sid == "gw1"
        assert (samples, total, lo, hi, small) == (
            w["samples"],
            w["sum"],
            w["min"],
            w["max"],
            w["small"],
        )
        assert mean == pytest.approx(w["sum"] / w["samples"])
        assert first == pytest.approx(w["first_seen"], abs=1e-6)
        assert last == pytest.approx(w["last_seen"], abs=1e-6)

    status, body = ng_collector.get("/api/mss")
    assert status == 200
    assert body["count"] == len(want)
    served = {h["ip"]: h for h in body["hosts"]}
    for ip, w in want.items():
        assert served[ip]["sensor"] == "gw1"
        assert (served[ip]["samples"], served[ip]["min"], served[ip]["small"]) == (
            w["samples"],
            w["min"],
            w["small"],
        )
    assert [h["min"] for h in body["hosts"]] == sorted(h["min"] for h in body["hosts"])

    status, body = ng_collector.get("/api/mss?small=1")
    assert status == 200
    assert {h["ip"] for h in body["hosts"]} == {ip for ip, w in want.items() if w["small"]}
    assert ng_collector.get("/api/mss?limit=x")[0] == 400


def test_a_second_replay_merges_into_the_same_edges(ng_collector: RunningCollector) -> None:
    for _ in range(2):
        replay(HERE / "mss.pcap", ng_collector, sensor_id="gw1")
    replay(HERE / "mss.pcap", ng_collector, sensor_id="gw2")
    rows = ng_collector.query(
        "MATCH (s:Sensor)-[m:ADVERTISED_MSS]->(h:Host) RETURN s.id, h.ip, m.samples, m.min"
    )
    want = {h["ip"]: h for h in EXPECTED["hosts"]}
    assert len(rows) == 2 * len(want)  # keyed by sensor: one edge per sensor and host
    for sid, ip, samples, lo in rows:
        assert samples == want[ip]["samples"] * (2 if sid == "gw1" else 1)
        assert lo == want[ip]["min"]
