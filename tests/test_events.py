"""The JSON event log (``--json-log``): the writer from plain values (rotation with a controlled
clock, SIGHUP-style reopen, values JSON cannot hold, a full disk), and real replays whose lines
must equal the fixtures' own totals: handshakes.pcap's scenario definition (one line per
verdict) and tshark's counts of tests/pcaps/lab/udp.pcap (one line per UDP row)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import PCAPS, Collector, expected, run_sensor, tool
from test_udp import UDP_PCAP, tshark_rows

from net_gazer.errors import UserError
from net_gazer.jsonlog import CHECK_INTERVAL, JsonLog, dumps

VERDICTS = {"completed": "count", "refused": "refused", "unanswered": "unanswered",
            "abandoned": "abandoned", "evicted": "evicted"}  # fmt: skip


def lines(*paths: Path) -> list[dict[str, Any]]:
    """Every line of the files, each parsed on its own (a line that is not one object fails)."""
    out = []
    for p in paths:
        for n, line in enumerate(p.read_text().splitlines(), 1):
            obj = json.loads(line)
            assert isinstance(obj, dict), f"{p}:{n} is not one object"
            out.append(obj)
    return out


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# --- the writer -------------------------------------------------------------------------------


def test_lines_survive_a_rotation_by_rename(tmp_path: Path) -> None:
    path, clock = tmp_path / "events.json", Clock()
    log = JsonLog(path, clock=clock)
    log.write({"n": 1})
    path.rename(tmp_path / "events.json.1")  # logrotate's default: move, then a new file
    log.write({"n": 2})  # within the check interval: still the old file
    clock.t += CHECK_INTERVAL
    log.write({"n": 3})
    log.close()
    assert [o["n"] for o in lines(tmp_path / "events.json.1")] == [1, 2]
    assert [o["n"] for o in lines(path)] == [3]
    assert (log.lines, log.reopened, log.dropped) == (3, 1, 0)


def test_reopen_follows_a_removed_file_and_copytruncate(tmp_path: Path) -> None:
    path, clock = tmp_path / "events.json", Clock()
    log = JsonLog(path, clock=clock)
    log.write({"n": 1})
    path.unlink()
    log.reopen()  # SIGHUP
    log.write({"n": 2})
    os.truncate(path, 0)  # copytruncate: the same file, emptied; append mode goes on at its end
    log.write({"n": 3})
    log.close()
    assert [o["n"] for o in lines(path)] == [3]


def test_values_json_cannot_hold(tmp_path: Path) -> None:
    line = dumps({"nan": float("nan"), "inf": [float("inf")], "raw": b"\x00", "ok": 1.5})
    assert json.loads(line) == {"nan": None, "inf": [None], "raw": "b'\\x00'", "ok": 1.5}
    assert "\n" not in dumps({"s": "two\nlines"})


def test_a_full_disk_drops_lines_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    log = JsonLog(Path("/dev/full"))
    for i in range(3):
        log.write({"n": i})
    assert (log.lines, log.dropped) == (0, 3)
    assert sum("cannot write the JSON log /dev/full" in r.message for r in caplog.records) == 1


def test_an_unopenable_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"cannot open the JSON log .*/nowhere/events.json: No such"
    ):
        JsonLog(tmp_path / "nowhere" / "events.json")
    result = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--json-log",
                        str(tmp_path / "nowhere" / "x.json"))  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "cannot open the JSON log" in result.stderr


# --- real replays -----------------------------------------------------------------------------


def want_verdicts() -> Counter[tuple[str, str, int, str]]:
    want: Counter[tuple[str, str, int, str]] = Counter()
    for e in expected("handshakes.expected.json"):
        for verdict, field in VERDICTS.items():
            if e[field]:
                want[(e["client"], e["server"], e["dport"], verdict)] += e[field]
    return want


def test_one_line_per_handshake_verdict(collector: Collector, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    result = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--collector", collector.address,
                        "--json-log", str(path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = lines(path)
    shakes = [e for e in events if e["event"] == "handshake"]
    got = Counter((e["client"], e["server"], e["dport"], e["verdict"]) for e in shakes)
    assert got == want_verdicts()
    by_key = {
        (e["client"], e["server"], e["dport"]): e for e in expected("handshakes.expected.json")
    }
    for e in shakes:
        assert e["proto"] == "tcp" and e["sensor"] and e["ts"] >= e["first_seen"]
        want = by_key[(e["client"], e["server"], e["dport"])]
        if e["verdict"] == "completed" and e["rtt_ms"] is not None:
            assert want["rtt_ms_min"] - 0.001 <= e["rtt_ms"] <= want["rtt_ms_max"] + 0.001
    udp = {(e["client"], e["server"], e["dport"]) for e in events if e["event"] == "udp"}
    assert udp == {("192.168.1.10", "10.0.0.53", 53), ("2001:db8:1::10", "2001:db8:2::53", 53)}


def test_udp_lines_equal_tshark(collector: Collector, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    result = run_sensor("-r", str(UDP_PCAP), "--collector", collector.address,
                        "--json-log", str(path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    totals: dict[tuple[str, str, int], Counter[str]] = {}
    for e in lines(path):
        assert e["event"] == "udp" and e["proto"] == "udp", e
        c = totals.setdefault((e["client"], e["server"], e["dport"]), Counter())
        for k in (
            "flows",
            "answered_flows",
            "packets_c2s",
            "packets_s2c",
            "bytes_c2s",
            "bytes_s2c",
        ):
            c[k] += e[k]
    want = tshark_rows()
    assert set(totals) == set(want)
    for key, row in want.items():
        assert {k: totals[key][k] for k in row} == row, key


def test_a_running_sensor_reopens_on_sighup_and_after_a_move(
    collector: Collector, tmp_path: Path
) -> None:
    """A replay in real time (3.45 s): the log is moved away twice while the sensor runs, once
    followed by SIGHUP; the three files together hold every verdict exactly once."""
    path = tmp_path / "events.json"
    proc = subprocess.Popen(
        [tool("net-gazer-sensor"), "-r", str(PCAPS / "handshakes.pcap"), "--speed", "1",
         "--collector", collector.address, "--json-log", str(path), "-v"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (path.exists() and path.stat().st_size) and proc.poll() is None:
            assert time.monotonic() < deadline, "no line in 30 s"
            time.sleep(0.02)
        path.rename(tmp_path / "events.json.1")
        time.sleep(0.4)
        if path.exists():  # reopened within CHECK_INTERVAL, or nothing written yet
            path.rename(tmp_path / "events.json.2")
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    files = [
        p for p in (tmp_path / "events.json.1", tmp_path / "events.json.2", path) if p.exists()
    ]
    assert path.exists() and path.stat().st_size, "nothing written after the SIGHUP"
    shakes = [e for e in lines(*files) if e["event"] == "handshake"]
    got = Counter((e["client"], e["server"], e["dport"], e["verdict"]) for e in shakes)
    assert got == want_verdicts()


def test_the_collector_log_holds_one_alert_per_destination_and_reopens_on_sighup(
    collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path
) -> None:
    """A rule that fires on any RTT sample: one alert per (sensor, destination with an RTT
    sample in handshakes.pcap's definition). Between two replays the log is moved away and the
    collector gets SIGHUP: the second replay's alerts are in the new file."""
    conf = tmp_path / "collector.toml"
    conf.write_text('[[alert]]\nname = "any"\nwhen = "rtt"\nthreshold_ms = 0\nx = 1\nn = 1\n'
                    'actions = ["json_log"]\n')  # fmt: skip
    path = tmp_path / "collector-events.json"
    collector = collector_factory("--graph-url", falkordb_url, "--graph", graph_name,
                                  "-c", str(conf), "--json-log", str(path)).start()  # fmt: skip
    servers = {e["server"] for e in expected("handshakes.expected.json") if e["rtt_samples"]}
    for sid in ("first", "second"):
        result = run_sensor("-r", str(PCAPS / "handshakes.pcap"), "--collector",
                            collector.address, "--sensor-id", sid)  # fmt: skip
        assert result.returncode == 0, result.stderr
        if sid == "first":
            path.rename(tmp_path / "collector-events.json.1")
            assert collector.proc is not None
            collector.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while not path.exists():
                assert time.monotonic() < deadline, "not reopened after SIGHUP"
                time.sleep(0.05)
    for name, sid in (("collector-events.json.1", "first"), ("collector-events.json", "second")):
        alerts = [e for e in lines(tmp_path / name) if e["event"] == "alert"]
        assert {e["details"]["dst"] for e in alerts} == servers, name
        assert len(alerts) == len(servers) and {e["sensor"] for e in alerts} == {sid}
