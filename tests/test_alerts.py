"""Alert rules: bad rules are one sentence; the x-of-n condition from plain values; the hold-down
in a real FalkorDB (two collectors claiming one alert fire it once); a replayed capture with
rising RTT through a real sensor and collector fires the threshold rule once, to a webhook
receiver the test runs on 127.0.0.1, to the JSON event log and to /api/alerts, and the hold-down
suppresses the repeats the scenario predicts; a webhook receiver that is down loses no alert
within the queue's bound and counts the drops past it; a silent sensor fires with a controlled
clock; gaps and identity conflicts reach the collector's event log.

The route-change condition is tested here from plain values; trace alerts (route_change,
path_contains, trace RTT samples) through a real collector are in tests/test_alerts_traces.py."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import frames as F
import pytest
from conftest import Collector, run_sensor, tool
from test_events import lines

from net_gazer.collector.alerts.actions import Dispatcher
from net_gazer.collector.alerts.engine import Engine, Hop
from net_gazer.collector.alerts.rules import parse_rules
from net_gazer.collector.alerts.service import AlertService
from net_gazer.collector.events import CollectorEvents
from net_gazer.collector.graphwrite import SensorInfo
from net_gazer.collector.store import GraphStore
from net_gazer.errors import ConfigError
from net_gazer.jsonlog import JsonLog
from net_gazer.v1 import wire_pb2

# --- rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "sentence"),
    [
        ({"when": "rtt"}, "alert rule #1 needs a name"),
        ({"name": "a", "when": "fast"}, "alert rule 'a': when must be one of rtt, loss"),
        ({"name": "a", "when": "rtt", "x": 1, "n": 2}, "alert rule 'a': when = 'rtt' needs threshold_ms"),
        ({"name": "a", "when": "rtt", "threshold_ms": 5, "x": 6, "n": 5},
         "alert rule 'a': x must be a whole number from 1 to 5, not 6"),
        ({"name": "a", "when": "loss", "threshold": 2, "x": 1, "n": 1},
         "alert rule 'a': threshold must be a number from 0 to 1, not 2"),
        ({"name": "a", "when": "sensor_gaps", "prefix": "10.0.0.0/33"},
         "alert rule 'a': prefix '10.0.0.0/33' is not an IP prefix"),
        ({"name": "a", "when": "sensor_gaps", "actions": ["webhook"]},
         "alert rule 'a': the webhook action needs webhook ="),
        ({"name": "a", "when": "sensor_gaps", "actions": ["command"], "command": "rm -rf /"},
         "alert rule 'a': the command action needs command = [\"program\", \"arg\", ...] (run without a shell)"),
        ({"name": "a", "when": "path_contains"}, "alert rule 'a': when = 'path_contains' needs an address or an asn"),
        ({"name": "a", "when": "sensor_gaps", "threshold_ms": 3},
         "alert rule 'a': unknown setting(s) threshold_ms for when = 'sensor_gaps'"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_one_sentence(rule: dict[str, Any], sentence: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rules([rule])
    assert str(err.value).startswith(sentence), str(err.value)


def test_the_collector_refuses_a_bad_rule_at_start(tmp_path: Path) -> None:
    conf = tmp_path / "collector.toml"
    conf.write_text('[[alert]]\nname = "slow"\nwhen = "rtt"\nthreshold_ms = -1\nx = 1\nn = 1\n')
    out = subprocess.run([tool("net-gazer-collector"), "-c", str(conf)], capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert (
        "alert rule 'slow': threshold_ms must be a number from 0 to 3.6e+06, not -1" in out.stderr
    )


# --- conditions from plain values ---------------------------------------------------------------


def x_of_n(values: list[float], threshold: float, x: int, n: int) -> int:
    """How many samples arrive while at least x of the last n exceed the threshold."""
    return sum(sum(v > threshold for v in values[max(0, i - n + 1) : i + 1]) >= x
               for i in range(len(values)))  # fmt: skip


def test_x_of_n_counts_spikes_an_average_hides() -> None:
    rule = parse_rules([{"name": "r", "when": "rtt", "threshold_ms": 100, "x": 2, "n": 4}])
    e = Engine(rule)
    values = [10, 300, 10, 10, 250, 10, 10, 10, 10, 500, 600, 10]
    got = [len(e.sample("rtt", "gw", "192.0.2.1", 443, v, "test")) for v in values]
    assert sum(got) == x_of_n(values, 100, 2, 4) == 3  # samples 5, 11 and 12
    assert sum(values[:4]) / 4 < 100  # the first window's mean is under the threshold


def test_filters_route_change_and_path_conditions() -> None:
    rules = parse_rules([
        {"name": "web", "when": "rtt", "threshold_ms": 1, "x": 1, "n": 1, "prefix": "203.0.113.0/24", "port": 443, "sensor": "gw"},
        {"name": "moved", "when": "route_change", "prefix": "198.51.100.0/24"},
        {"name": "via", "when": "path_contains", "address": "192.0.2.254"},
        {"name": "as", "when": "path_contains", "asn": 64500},
    ])  # fmt: skip
    e = Engine(rules)
    assert len(e.sample("rtt", "gw", "203.0.113.5", 443, 5.0, "t")) == 1
    assert e.sample("rtt", "gw", "203.0.113.5", 80, 5.0, "t") == []
    assert e.sample("rtt", "other", "203.0.113.5", 443, 5.0, "t") == []
    assert e.sample("rtt", "gw", "198.51.100.5", 443, 5.0, "t") == []
    [c] = e.route_change("gw", "198.51.100.7", 3, "10.0.0.1", "10.0.0.2")
    assert c.rule.name == "moved" and c.key == "gw|198.51.100.7" and "TTL 3" in c.message
    assert e.route_change("gw", "203.0.113.7", 3, "a", "b") == []
    hops = [Hop("10.0.0.1"), Hop("192.0.2.254", 64501), Hop("203.0.113.1", 64500)]
    assert sorted(c.rule.name for c in e.trace("gw", "203.0.113.9", hops, None)) == ["as", "via"]


# --- the hold-down in the graph ---------------------------------------------------------------


@pytest.fixture
async def store(falkordb_url: str) -> AsyncIterator[GraphStore]:
    s = GraphStore.connect(falkordb_url, f"t_alerts_{uuid.uuid4().hex[:8]}")
    await s.ensure_schema()
    try:
        yield s
    finally:
        await s.graph.delete()
        await s.close()


async def test_two_collectors_claiming_one_alert_fire_it_once(
    store: GraphStore, falkordb_url: str
) -> None:
    rules = parse_rules([{"name": "gaps", "when": "sensor_gaps", "hold_down": 3600}])
    other = GraphStore.connect(falkordb_url, store.graph_name)
    try:
        a = AlertService(store.graph, rules, CollectorEvents(None))
        b = AlertService(other.graph, rules, CollectorEvents(None))
        await a.start()
        for _ in range(5):
            found_a = a.engine.gap("gw", 1, 10, "spool full")
            found_b = b.engine.gap("gw", 1, 10, "spool full")
            await asyncio.gather(a.handle(found_a), b.handle(found_b))
        assert a.fired["gaps"] + b.fired["gaps"] == 1
        assert a.suppressed["gaps"] + b.suppressed["gaps"] == 9
        res = await store.graph.ro_query("MATCH (x:Alert) RETURN count(x)")
        assert res.result_set[0][0] == 1
    finally:
        await other.close()


async def test_a_silent_sensor_fires_once_with_a_controlled_clock(store: GraphStore) -> None:
    sensor = SensorInfo(id="quiet", site="lab", epoch="e1")
    await store.hello(sensor, wire_pb2.Hello(hostname="h", site="lab"))
    [[last_seen]] = (await store.graph.ro_query("MATCH (s:Sensor) RETURN s.last_seen")).result_set
    rules = parse_rules([{"name": "silent", "when": "sensor_silent", "minutes": 5}])
    svc = AlertService(store.graph, rules, CollectorEvents(None))
    await svc.start()
    try:
        assert await svc.check_silent(now=last_seen + 299) == []
        [alert] = await svc.check_silent(now=last_seen + 301)
        assert alert["sensor"] == "quiet" and "silent for 5.0 minutes" in alert["message"]
        assert await svc.check_silent(now=last_seen + 900) == []  # the same silence: held down
        assert (svc.fired["silent"], svc.suppressed["silent"]) == (1, 1)
    finally:
        await svc.stop()


async def test_gaps_and_identity_conflicts_reach_the_event_log(
    store: GraphStore, tmp_path: Path
) -> None:
    path = tmp_path / "collector-events.json"
    rules = parse_rules([{"name": "gaps", "when": "sensor_gaps", "actions": ["json_log"]}])
    svc = AlertService(store.graph, rules, CollectorEvents(JsonLog(path)))
    store.events = svc.on_event
    sensor = SensorInfo(id="gw", site="lab", epoch="e1")
    await store.hello(sensor, wire_pb2.Hello(hostname="a", machine_id="m1"))
    await store.hello(sensor, wire_pb2.Hello(hostname="b", machine_id="m2"))
    gap = wire_pb2.Gap(first_seq=1, lost_envelopes=3, lost_items=40, reason="spool full")
    await store.gap(sensor, 3, gap)
    await asyncio.gather(*svc._pending)
    svc.events.close()
    events = lines(path)
    assert [e["event"] for e in events] == ["identity_conflict", "gap", "alert"]
    assert events[0]["machine_id"] == "m2" and events[0]["previous_machine_id"] == "m1"
    assert (events[1]["lost_envelopes"], events[1]["lost_items"], events[1]["seq"]) == (3, 40, 3)
    assert events[2]["rule"] == "gaps" and events[2]["details"]["lost_items"] == 40


# --- webhooks ---------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POSTed JSON body."""

    def __init__(self, port: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers["Content-Length"])
                owner.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_receiver_that_is_down_loses_nothing_within_the_bound() -> None:
    port = free_port()  # nothing listens there yet: connection refused
    [rule] = parse_rules([{"name": "w", "when": "sensor_gaps", "actions": ["webhook"],
                           "webhook": f"http://127.0.0.1:{port}/hook"}])  # fmt: skip
    d = Dispatcher(CollectorEvents(None), queue_size=5, backoff_min=0.05, backoff_max=0.2)
    for i in range(8):  # no await between: the queue takes 5, the other 3 are dropped
        d.dispatch(rule, {"rule": "w", "sensor": "gw", "message": f"alert {i}", "n": i})
    assert d.stats.webhook_dropped == 3
    await asyncio.sleep(0.5)  # retrying against the closed port
    assert d.stats.webhook_retries >= 2 and d.stats.webhook_sent == 0
    r = Receiver(port)
    try:
        deadline = time.monotonic() + 20
        while d.stats.webhook_sent < 5:
            assert time.monotonic() < deadline, d.stats
            await asyncio.sleep(0.05)
        assert [b["n"] for b in r.bodies] == [0, 1, 2, 3, 4]  # in order, none lost, none twice
    finally:
        r.close()
        await d.close()


# --- a replayed capture with rising RTT -------------------------------------------------------

CLIENT, SERVER, PORT = "192.168.7.10", "203.0.113.80", 443
#: The scenario: one handshake every 2 s (one flushed row each), its SYN -> SYN+ACK delay in ms.
RTTS_MS = [10, 20, 30, 40, 60, 80, 120, 150, 90, 200, 250, 300, 60, 40, 350, 20, 20, 20]
RULE = {"name": "slow-web", "when": "rtt", "threshold_ms": 100, "x": 3, "n": 5,
        "prefix": "203.0.113.0/24", "port": PORT, "hold_down": 3600}  # fmt: skip


def rising_rtt_pcap(path: Path) -> None:
    t0, frames_ = 1_700_000_000, []
    for i, rtt in enumerate(RTTS_MS):
        t, cport = t0 + 2 * i, 40000 + i
        syn = F.tcp(CLIENT, SERVER, cport, PORT, 0x02, seq=1000 * i)
        synack = F.tcp(SERVER, CLIENT, PORT, cport, 0x12, seq=5000, ack=1000 * i + 1)
        ack = F.tcp(CLIENT, SERVER, cport, PORT, 0x10, seq=1000 * i + 1, ack=5001)
        frames_ += [(f"{t}.100000", F.ether(syn)),
                    (f"{t}.{100000 + rtt * 1000:06d}", F.ether(synack)),
                    (f"{t}.{100500 + rtt * 1000:06d}", F.ether(ack))]  # fmt: skip
    F.write_pcap(path, 1, frames_)


def test_rising_rtt_fires_once_and_the_hold_down_suppresses_repeats(
    collector_factory: Any, falkordb_url: str, graph_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    conf = tmp_path / "collector.toml"
    rule = {**RULE, "actions": ["log", "json_log", "webhook"],
            "webhook": f"http://127.0.0.1:{receiver.port}/hook"}  # fmt: skip
    conf.write_text("[[alert]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in rule.items()))
    events = tmp_path / "collector-events.json"
    collector: Collector = collector_factory(
        "--graph-url", falkordb_url, "--graph", graph_name, "-c", str(conf), "--json-log", str(events)
    ).start()  # fmt: skip
    pcap = tmp_path / "rising.pcap"
    rising_rtt_pcap(pcap)
    result = run_sensor("-r", str(pcap), "--collector", collector.address, "--sensor-id", "gw")
    assert result.returncode == 0, result.stderr
    candidates = x_of_n([float(v) for v in RTTS_MS], 100, 3, 5)
    assert candidates == 6  # counted by hand: the samples of 200, 250, 300, 60, 40 and 350 ms
    deadline = time.monotonic() + 20
    while not receiver.bodies:
        assert time.monotonic() < deadline, "no webhook delivery in 20 s"
        time.sleep(0.05)
    with urllib.request.urlopen(f"http://127.0.0.1:{collector.http_port}/api/alerts") as resp:
        body = json.load(resp)
    [alert] = body["alerts"]
    assert (
        alert["rule"] == "slow-web" and alert["sensor"] == "gw" and alert["key"] == f"gw|{SERVER}"
    )
    assert alert["details"]["over"] == 3 and alert["details"]["value"] == pytest.approx(
        200, abs=1e-3
    )
    [status] = body["rules"]
    assert (status["fired"], status["suppressed"]) == (1, candidates - 1)
    time.sleep(0.3)
    assert len(receiver.bodies) == 1 and receiver.bodies[0]["id"] == alert["id"]
    with urllib.request.urlopen(
        f"http://127.0.0.1:{collector.http_port}/api/alerts/metrics"
    ) as resp:
        metrics = resp.read().decode()
    assert 'net_gazer_alerts_fired_total{rule="slow-web"} 1' in metrics
    assert f'net_gazer_alerts_suppressed_total{{rule="slow-web"}} {candidates - 1}' in metrics
    logged = [e for e in lines(events) if e["event"] == "alert"]
    assert len(logged) == 1 and logged[0]["id"] == alert["id"]
    assert (
        "alert slow-web: rtt to 203.0.113.80 from sensor gw: 3 of the last 5"
        in collector.log_text()
    )


# --- commands, countries and loss, on a real graph --------------------------------------------


async def test_a_command_gets_the_alert_without_a_shell(store: GraphStore, tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    script = "import json, os, sys; d = json.load(sys.stdin); d['env'] = os.environ['NG_ALERT_RULE']; open(sys.argv[1], 'w').write(json.dumps(d))"
    rules = parse_rules([{"name": "cmd", "when": "sensor_gaps", "actions": ["command"],
                          "command": [sys.executable, "-c", script, str(out) + "; touch x"]}])  # fmt: skip
    svc = AlertService(store.graph, rules, CollectorEvents(None))
    await svc.start()
    try:
        [alert] = await svc.handle(svc.engine.gap("gw", 2, 7, "spool full"))
        deadline = time.monotonic() + 20
        while svc.dispatcher._commands:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await svc.stop()
    # The argument with "; touch" reached the program as one argument: no shell split it.
    got = json.loads(await asyncio.to_thread(Path(str(out) + "; touch x").read_text))
    assert not (tmp_path / "x").exists()
    assert got["id"] == alert["id"] and got["env"] == "cmd" and got["details"]["lost_items"] == 7
    assert svc.dispatcher.stats.command_failures == 0


def handshake_batch(servers: list[str], rtt_ms: float = 1.0) -> wire_pb2.Batch:
    batch = wire_pb2.Batch()
    for s in servers:
        batch.handshakes.add(client="192.168.1.2", server=s, dport=443, proto=6, completed=1,
                             attempts=1, rtt=wire_pb2.RttAggregate(sum_ms=rtt_ms, min_ms=rtt_ms,
                             max_ms=rtt_ms, samples=1))  # fmt: skip
    return batch


async def test_a_new_country_fires_once_per_country(store: GraphStore) -> None:
    # The countries of a GeoIP lookup, as plain values (no GeoIP database ships with this release).
    countries = {"198.51.100.1": "DE", "198.51.100.2": "DE", "203.0.113.1": "US"}
    rules = parse_rules([{"name": "abroad", "when": "new_country"}])
    svc = AlertService(store.graph, rules, CollectorEvents(None),
                       country=lambda ip, site: countries.get(ip, ""))  # fmt: skip
    await svc.start()
    sensor = SensorInfo(id="gw", site="lab", epoch="e1")
    await svc.observe(sensor, handshake_batch(["198.51.100.1", "198.51.100.2", "192.0.2.9"]))
    await svc.observe(sensor, handshake_batch(["203.0.113.1", "198.51.100.1"]))
    await svc.observe(sensor, handshake_batch(["203.0.113.1"]))
    res = await store.graph.ro_query("MATCH (a:Alert) RETURN a.key ORDER BY a.key")
    assert [r[0] for r in res.result_set] == ["gw|DE", "gw|US"]
    assert (svc.fired["abroad"], svc.suppressed["abroad"]) == (2, 3)


async def test_loss_samples_come_from_quality_rows(store: GraphStore) -> None:
    from google.protobuf.any_pb2 import Any as AnyMessage

    from net_gazer.v1 import quality_pb2

    rules = parse_rules([{"name": "lossy", "when": "loss", "threshold": 0.05, "x": 2, "n": 3}])
    svc = AlertService(store.graph, rules, CollectorEvents(None))
    await svc.start()
    sensor = SensorInfo(id="gw", site="lab", epoch="e1")
    # (retransmits, data segments) per row: 1/100, 10/100, 0/0 (no sample), 6/100 -> 2 of 3 over 5 %.
    for retx, data in ((1, 100), (10, 100), (0, 0), (6, 100)):
        report = quality_pb2.QualityReport(sample_rate=1)
        report.rows.add(client="192.168.1.2", server="198.51.100.7", dport=443,
                        c2s=quality_pb2.QualityCounters(retransmits=retx, data_segments=data))  # fmt: skip
        batch = wire_pb2.Batch()
        payload = AnyMessage()
        payload.Pack(report)
        batch.extensions.add(plugin="quality", payload=payload)
        await svc.observe(sensor, batch)
    assert (svc.fired["lossy"], svc.suppressed["lossy"]) == (1, 0)
