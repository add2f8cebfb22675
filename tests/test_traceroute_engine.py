"""The probe engine as pure logic: a simulated path answers the probes it hands out. The
expected hop lists come from the scenario's definition."""

from __future__ import annotations

import random

from net_gazer.plugins.traceroute.engine import Engine, Send
from net_gazer.plugins.traceroute.matcher import Kind, Reply
from net_gazer.plugins.traceroute.options import parse_options

PATH = ["198.51.100.1", "198.51.100.2", "", "198.51.100.18", "198.51.100.34"]  # "" is silent


def answer(send: Send, path: list[str], ts: float) -> Reply | None:
    """What the scenario's network answers: a router per TTL, then the destination."""
    if send.ttl <= len(path):
        hop = path[send.ttl - 1]
        if not hop:
            return None
        return Reply(
            Kind.TIME_EXCEEDED, hop, send.dst, send.method, send.flow, send.dport, send.ident, ts=ts
        )
    kind = {"tcp": Kind.SYNACK, "icmp": Kind.ECHO_REPLY, "udp": Kind.UNREACHABLE}[send.method]
    code = 3 if send.method == "udp" else 0
    return Reply(kind, send.dst, send.dst, send.method, send.flow, send.dport, send.ident, code, ts)


def run(engine: Engine, path: list[str], start: float = 0.0, until: float = 30.0) -> float:
    now = start
    while now < until:
        for send in engine.poll(now):
            reply = answer(send, path, now + 0.001)
            if reply is not None:
                engine.reply(reply, now + 0.001)
        if engine.idle:
            break
        now += 0.01
    return now


def make(**config: object) -> Engine:
    opts = parse_options(dict(config))
    return Engine(opts, lambda dst: "198.51.100.1", 0.0, random.Random(1))


def test_a_trace_with_a_silent_hop_reaches_its_destination() -> None:
    for method in ("tcp", "udp", "icmp"):
        e = make(method=method, stop_set=False)
        assert e.request("192.0.2.10", 443, 0.0)
        run(e, PATH)
        (t,) = e.take()
        assert t.reached and [h.addr for h in t.path()] == [*PATH, "192.0.2.10"]
        assert t.path()[2].sent == 3  # the silent TTL was retried twice


def test_dedup_window_allow_deny_and_queue_cap() -> None:
    e = make(deny=["192.0.2.128/26"], allow=["192.0.2.0/24"], max_queue=2, dedup_window=600)
    assert not e.request("192.0.2.138", 80, 0)
    assert not e.request("203.0.113.5", 80, 0)
    assert e.request("192.0.2.10", 80, 0)
    assert not e.request("192.0.2.10", 80, 1)  # queued already
    assert e.request("192.0.2.11", 80, 0)
    assert not e.request("192.0.2.12", 80, 0)  # the queue is full
    assert e.counters["denied"] == 2 and e.counters["queue_dropped"] == 1
    run(e, PATH)
    assert not e.request("192.0.2.10", 80, 599)
    assert e.request("192.0.2.10", 80, 601)


def test_an_unreachable_path_stops_after_max_silent() -> None:
    e = make(max_silent=3, window=4, retries=0, timeout=0.1)
    e.request("192.0.2.10", 80, 0)
    run(e, ["198.51.100.1"] + [""] * 40)
    (t,) = e.take()
    assert not t.reached and t.end() == 1
    assert max(t.hops) < 10  # stopped probing after a few silent TTLs


def test_the_global_budget_bounds_probes_per_second() -> None:
    e = make(pps=20, max_traces=100, stop_set=False, router_rate=0)
    for i in range(50):
        e.request(f"203.0.113.{i}", 80, 0)
    sent_by_second: dict[int, int] = {}
    now = 0.0
    while not e.idle and now < 200:
        for send in e.poll(now):
            sent_by_second[int(now)] = sent_by_second.get(int(now), 0) + 1
            reply = answer(send, PATH, now)
            if reply is not None:
                e.reply(reply, now)
        now += 0.01
    assert e.idle
    assert max(sent_by_second.values()) <= 20 + 20  # the burst, then the rate
    assert all(n <= 21 for s, n in sent_by_second.items() if s > 0)


def test_router_pacing_keeps_each_ttl_within_the_rate_limit() -> None:
    e = make(stop_set=False, pps=10_000, max_traces=100)
    for i in range(20):
        e.request(f"203.0.113.{i}", 80, 0)
    per_ttl: dict[tuple[int, int], int] = {}
    now = 0.0
    while not e.idle and now < 200:
        for send in e.poll(now):
            if send.ttl <= len(PATH) and PATH[send.ttl - 1]:  # a silent router is not paced
                per_ttl[(send.ttl, int(now))] = per_ttl.get((send.ttl, int(now)), 0) + 1
            reply = answer(send, PATH, now)
            if reply is not None:
                e.reply(reply, now)
        now += 0.01
    traces = e.take()
    assert len(traces) == 20 and all(t.reached for t in traces)
    assert per_ttl[(1, 0)] <= 6 and all(n <= 1 for (ttl, s), n in per_ttl.items() if s > 0)


def test_the_stop_set_saves_probes_and_keeps_the_path_complete() -> None:
    e = make(stop_set_min_traces=2, full_every=100)
    for i in range(3):
        e.request(f"203.0.113.{i}", 80, 0)
        run(e, PATH)
    first, _, third = e.take()
    assert third.saved > 0 and [h.addr for h in third.path()] == [*PATH, "203.0.113.2"]
    assert any(h.inferred for h in third.path())
    sent = sum(h.sent for h in third.path())
    assert sent < sum(h.sent for h in first.path())


def test_a_moved_route_is_seen_by_the_overlap_probe() -> None:
    e = make(stop_set_min_traces=1, full_every=100, retries=0, timeout=0.1)
    e.request("203.0.113.1", 80, 0)
    run(e, PATH)
    moved = ["198.51.100.1", "198.51.100.50", "192.0.2.129"]
    e.request("203.0.113.2", 80, 0)
    run(e, moved)
    _, t = e.take()
    assert [h.addr for h in t.path()] == [*moved, "203.0.113.2"]
    assert e.counters.get("stop_set_misses") == 1
