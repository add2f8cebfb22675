"""The sensor half on the committed capture, through net-gazer's real packet path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from net_gazer.testing import payloads, sensor_run

from net_gazer_plugin_mss import mss_pb2

HERE = Path(__file__).resolve().parent
PCAP = HERE / "mss.pcap"
EXPECTED: dict[str, Any] = json.loads((HERE / "mss.expected.json").read_text())


def per_host(reports: list[mss_pb2.MssReport]) -> dict[str, dict[str, Any]]:
    """The reports' rows folded per host, as the graph folds them."""
    out: dict[str, dict[str, Any]] = {}
    for report in reports:
        ips = [h.ip for h in report.hosts]
        assert len(ips) == len(set(ips)), "each host once per report"
        for h in report.hosts:
            agg = out.setdefault(h.ip, {"samples": 0, "sum": 0, "small": 0, "min": h.min,
                                        "max": h.max, "first_seen": h.first_seen,
                                        "last_seen": h.last_seen})  # fmt: skip
            agg["samples"] += h.samples
            agg["sum"] += h.sum
            agg["small"] += h.small
            agg["min"], agg["max"] = min(agg["min"], h.min), max(agg["max"], h.max)
            agg["first_seen"] = min(agg["first_seen"], h.first_seen)
            agg["last_seen"] = max(agg["last_seen"], h.last_seen)
    return out


def test_every_advertised_mss_is_reported_once_per_interval() -> None:
    run = sensor_run(PCAP, plugins=["mss"])
    reports = payloads(run.batches, "mss", mss_pb2.MssReport)
    assert len(reports) >= 4  # the capture spans four flush intervals of one second
    assert len(reports) == len(run.batches)  # one report per batch
    got = per_host(reports)
    want = {h["ip"]: h for h in EXPECTED["hosts"]}
    assert sorted(got) == sorted(want)
    for ip, w in want.items():
        for key in ("samples", "sum", "small", "min", "max"):
            assert got[ip][key] == w[key], (ip, key)
        for key in ("first_seen", "last_seen"):
            assert got[ip][key] == pytest.approx(w[key], abs=1e-6), (ip, key)
    counters = EXPECTED["counters"]
    assert run.counters["plugin_mss_syn_without_mss"] == counters["syn_without_mss"]
    assert run.counters["plugin_mss_options_malformed"] == counters["options_malformed"]
    assert run.counters["plugin_mss_errors"] == 0
    assert run.counters["plugin_mss_hosts_sent"] == sum(len(r.hosts) for r in reports)


def test_the_bpf_fragment_lets_only_syns_through_on_ipv4() -> None:
    run = sensor_run(PCAP, plugins=["mss"])
    # Alone, the plugin's fragment is the kernel filter: no IPv4 ACK reaches Python.
    counters = EXPECTED["counters"]
    assert run.counters["sensor_packets"] == counters["kernel_passed"] < counters["frames"]


def test_small_below_comes_from_the_plugin_config() -> None:
    run = sensor_run(PCAP, plugins=["mss"], config={"mss": {"small_below": 1400}})
    got = per_host(payloads(run.batches, "mss", mss_pb2.MssReport))
    for h in EXPECTED["hosts"]:
        want = h["samples"] if h["max"] < 1400 else 0 if h["min"] >= 1400 else None
        if want is not None:
            assert got[h["ip"]]["small"] == want, h["ip"]


def test_a_bad_small_below_is_logged_and_the_defaults_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = sensor_run(PCAP, plugins=["mss"], config={"mss": {"small_below": "tiny"}})
    assert "small_below must be a whole number" in caplog.text
    got = per_host(payloads(run.batches, "mss", mss_pb2.MssReport))
    assert {ip: g["small"] for ip, g in got.items()} == {
        h["ip"]: h["small"] for h in EXPECTED["hosts"]
    }
