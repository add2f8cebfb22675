"""Trace alerts through a real collector process, real gRPC and real FalkorDB: two consecutive
traces from one sensor to one destination whose responders differ at a TTL fire exactly one
``route_change`` alert (to a webhook receiver on 127.0.0.1) naming that TTL and the responders
before and after; a TTL that stayed silent in one of them is no change; a ``path_contains``
rule fires on a trace whose hops hold the address; a trace's RTT to its destination is an
``rtt`` sample. Expected values come from the runs the test defines."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from conftest import Collector
from google.protobuf.any_pb2 import Any as AnyMessage
from test_alerts import Receiver, receiver  # noqa: F401  (the fixture)
from test_ingest import exchange, hello

from net_gazer.v1 import traceroute_pb2, wire_pb2

SRC = "198.51.100.1"
DST = "192.0.2.10"
#: The scenario: t1, then t2 with another responder at TTL 3, then t3 (TTL 2 silent) and t4 (TTL 2
#: answers again, TTL 4 silent): a silent TTL in either trace is no evidence of a change.
T1 = ["198.51.100.2", "198.51.100.6", "198.51.100.18", "198.51.100.34", DST]
T2 = ["198.51.100.2", "198.51.100.6", "198.51.100.22", "198.51.100.34", DST]
T3 = ["198.51.100.2", "", "198.51.100.22", "198.51.100.34", DST]
T4 = ["198.51.100.2", "198.51.100.6", "198.51.100.22", "", DST]
OTHER = ["198.51.100.2", "198.51.100.9", "203.0.113.7"]  # a second destination, without VIA
VIA = "198.51.100.34"


def run(tid: str, path: list[str], started: float) -> traceroute_pb2.TraceRun:
    r = traceroute_pb2.TraceRun(
        id=tid, src=SRC, dst=path[-1], method="icmp", flow_id=7, started=started,
        finished=started + 1, reached=True, mode="paris",
    )  # fmt: skip
    for ttl, addr in enumerate(path, start=1):
        # The RTT at TTL k is k ms: 5 ms to DST (TTL 5), 3 ms to OTHER's destination (TTL 3).
        r.hops.add(ttl=ttl, addr=addr, rtt_ms=float(ttl) if addr else -1.0, sent=1,
                   answered=int(bool(addr)))  # fmt: skip
    return r


def envelope(seq: int, *runs: traceroute_pb2.TraceRun) -> wire_pb2.Envelope:
    env = wire_pb2.Envelope(sensor_id="s1", epoch="e1", seq=seq)
    payload = AnyMessage()
    payload.Pack(traceroute_pb2.TraceReport(traces=runs))
    env.batch.extensions.add(plugin="traceroute", payload=payload)
    return env


def toml_rules(rules: list[dict[str, Any]]) -> str:
    return "".join(
        "[[alert]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in r.items()) for r in rules
    )


def alerts(c: Collector) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{c.http_port}/api/alerts") as resp:
        body: dict[str, Any] = json.load(resp)
    return body


async def test_route_change_path_contains_and_trace_rtt_alerts(
    collector_factory: Any,
    falkordb_url: str,
    graph_name: str,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    hook = f"http://127.0.0.1:{receiver.port}/hook"
    conf = tmp_path / "collector.toml"
    conf.write_text(toml_rules([
        {"name": "moved", "when": "route_change", "hold_down": 0, "actions": ["log", "webhook"],
         "webhook": hook},
        {"name": "via", "when": "path_contains", "address": VIA, "hold_down": 3600},
        {"name": "slow-trace", "when": "rtt", "threshold_ms": 4.5, "x": 1, "n": 1,
         "hold_down": 3600},
    ]))  # fmt: skip
    c: Collector = collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "-c", str(conf)
    ).start()
    await exchange(c.address, [
        hello(own_addresses=[SRC]),
        envelope(1, run("t1", T1, 100.0)),
        envelope(2, run("t2", T2, 200.0)),
        envelope(3, run("t3", T3, 300.0), run("o1", OTHER, 300.0)),
        envelope(4, run("t4", T4, 400.0)),
    ])  # fmt: skip
    deadline = time.monotonic() + 20
    while not receiver.bodies:
        assert time.monotonic() < deadline, "no webhook delivery in 20 s"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    # Exactly one change (t1 -> t2 at TTL 3); t2 -> t3 and t3 -> t4 differ only where a TTL
    # stayed silent. The hold-down is 0, so a second candidate would have fired too.
    [body] = receiver.bodies
    assert body["rule"] == "moved" and body["sensor"] == "s1" and body["key"] == f"s1|{DST}"
    assert body["details"] == {"dst": DST, "ttl": 3, "before": T1[2], "after": T2[2]}
    assert f"changed at TTL 3: {T1[2]} -> {T2[2]}" in body["message"]
    got = alerts(c)
    status = {r["name"]: (r["fired"], r["suppressed"]) for r in got["rules"]}
    assert status["moved"] == (1, 0)
    # VIA is TTL 4 of t1, t2 and t3 (not of t4, silent there, nor of OTHER's trace): one alert,
    # two held down.
    assert status["via"] == (1, 2)
    # Traces to DST take 5 ms (over 4.5), OTHER's 3 ms: four samples over, one alert.
    assert status["slow-trace"] == (1, 3)
    by_rule = {a["rule"]: a for a in got["alerts"]}
    assert by_rule["via"]["details"] == {"dst": DST, "ttl": 4, "hop": VIA, "asn": None}
    assert by_rule["slow-trace"]["details"]["value"] == 5.0
    assert by_rule["slow-trace"]["details"]["source"] == "a trace"
    assert len(got["alerts"]) == 3
    assert f"alert moved: the route from sensor s1 to {DST} changed at TTL 3" in c.log_text()
