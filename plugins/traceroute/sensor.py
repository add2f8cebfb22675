"""The ``traceroute`` plugin, sensor half: trace the path to the remote end of every completed
handshake, and send each finished run as a ``TraceRun`` (docs/traceroute.md).

Only a COMPLETED handshake triggers a trace (the client answered the SYN+ACK, so its address
is real and spoofed SYNs cannot aim the prober): to the server of an outgoing connection, and
to the client of an incoming one unless ``incoming = false``. Probing happens only when the
sensor allows it (``ctx.probing_allowed``: off in a replay unless ``--probe``, off with
``--no-probe``); with ``--dry-run`` the probes are logged and none is sent.

The probes leave from source ports in ``flow_ports`` (above Linux's ephemeral range), and
:func:`ng_bpf_exclude` keeps them and the answers to them out of the capture, so a probe's SYN,
SYN+ACK or RST never reaches the handshake tracker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
from typing import Any

from net_gazer.sensor import HandshakeEvent, Kind, PluginContext, hookimpl
from net_gazer.v1 import traceroute_pb2, wire_pb2

from .engine import Engine, Send, Trace
from .matcher import Malformed, Reply, parse_icmp6, parse_ipv4, parse_tcp6
from .options import Options, parse_options
from .prober import Prober, Received

#: Seconds between two turns of the engine while traces are in flight.
TURN = 0.005
#: Traces per TraceReport message at most.
TRACES_PER_MESSAGE = 500


class Runner:
    """The engine, its sockets and its timer on the sensor's event loop."""

    def __init__(self, ctx: PluginContext, opts: Options, prober: Prober | None) -> None:
        self.ctx, self.opts, self.prober = ctx, opts, prober
        self.dry_run = prober is None
        source = prober.source if prober is not None else _dry_source
        self.engine = Engine(opts, source, time.time())
        self.payload = opts.contact.encode()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.malformed = 0

    def start(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop = asyncio.get_running_loop()
        if self.loop is not None and self.prober is not None:
            for fd in self.prober.fds():
                self.loop.add_reader(fd, self.on_readable, fd)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.loop is not None and self.prober is not None:
            for fd in self.prober.fds():
                self.loop.remove_reader(fd)
        if self.prober is not None:
            self.prober.close()

    def kick(self) -> None:
        """Run a turn soon (a request came in)."""
        if self.loop is not None and self.timer is None:
            self.timer = self.loop.call_later(0, self.turn)
        elif self.loop is None:
            self.turn()

    def turn(self) -> None:
        self.timer = None
        try:
            self._turn()
        except Exception:  # a callback outside any hook call: count it, keep going
            self.ctx.count("errors")
            self.ctx.log.exception("traceroute: a turn of the prober failed")
        if self.loop is not None and not self.engine.idle:
            self.timer = self.loop.call_later(TURN, self.turn)

    def _turn(self) -> None:
        now = time.time()
        for send in self.engine.poll(now):
            self._send(send)

    def _send(self, send: Send) -> None:
        if self.prober is None:
            self.ctx.count("dry_run_probes")
            self.ctx.log.info(
                "dry run: would send a %s probe to %s port %d with TTL %d from %s port %d",
                send.method, send.dst, send.dport, send.ttl, send.src, send.flow,
            )  # fmt: skip
            return
        self.engine.stamp(send, self.prober.send(send, self.payload))

    def on_readable(self, fd: int | None = None) -> None:
        if self.prober is None:
            return
        for got in self.prober.receive(fd):
            self.on_packet(got)

    def on_packet(self, got: Received) -> None:
        try:
            reply: Reply | None
            if got.family == 4:
                reply = parse_ipv4(got.buf, got.ts)
            elif got.proto == "tcp":
                reply = parse_tcp6(got.buf, got.src, got.ts)
            else:
                reply = parse_icmp6(got.buf, got.src, got.ts)
        except Malformed:
            self.malformed += 1
            return
        if reply is not None:
            self.engine.reply(reply, time.time())

    def drain(self, seconds: float) -> None:
        """Wait (blocking: the sensor is stopping) up to ``seconds`` for the traces in flight."""
        deadline = time.monotonic() + seconds
        fds = self.prober.fds() if self.prober is not None else []
        while not self.engine.idle and time.monotonic() < deadline:
            self._turn()
            if fds:
                ready, _, _ = select.select(fds, [], [], TURN)
                for fd in ready:
                    self.on_readable(fd)
            else:
                time.sleep(TURN)
        self.engine.close(time.time())


def _forbidden_netns() -> bool:
    """Whether ``NG_PROBE_NOT_IN_NETNS`` (a network namespace's inode number; the test suite
    sets its own) names the namespace this process runs in (True when unsure)."""
    forbidden = os.environ.get("NG_PROBE_NOT_IN_NETNS", "")
    if not forbidden:
        return False
    try:
        return str(os.stat("/proc/self/ns/net").st_ino) == forbidden
    except OSError:
        return True


def _dry_source(dst: str) -> str:
    return "::" if ":" in dst else "0.0.0.0"


def _runner(ctx: PluginContext) -> Runner | None:
    runner: Runner | None = ctx.state.get("runner")
    return runner


def _options(ctx: PluginContext) -> Options | None:
    if "options" not in ctx.state:
        try:
            ctx.state["options"] = parse_options(ctx.config)
        except ValueError as exc:
            ctx.log.error("%s; traceroute is off until it is fixed", exc)
            ctx.state["options"] = None
    opts: Options | None = ctx.state["options"]
    return opts


@hookimpl
def ng_bpf_exclude(ctx: PluginContext) -> str | None:
    opts = _options(ctx)
    if opts is None or not ctx.own_addresses:
        return None
    lo, hi = opts.flow_ports
    src = " or ".join(f"src host {a}" for a in ctx.own_addresses)
    dst = " or ".join(f"dst host {a}" for a in ctx.own_addresses)
    return (
        f"(tcp or udp) and ((({src}) and src portrange {lo}-{hi}) or "
        f"(({dst}) and dst portrange {lo}-{hi}))"
    )


@hookimpl
def ng_sensor_start(ctx: PluginContext) -> None:
    opts = _options(ctx)
    if opts is None:
        return
    if not ctx.probing_allowed:
        ctx.log.info("traceroute: probing is off (a replay without --probe, or --no-probe)")
        return
    prober: Prober | None = None
    if not ctx.dry_run:
        if _forbidden_netns():
            ctx.log.error(
                "traceroute: NG_PROBE_NOT_IN_NETNS forbids probing from this network namespace; "
                "the sensor runs without probing"
            )
            return
        prober = Prober()
        try:
            families = prober.open()
        except PermissionError:
            ctx.log.error(
                "traceroute needs CAP_NET_RAW for its raw sockets; run the sensor as root or "
                "with its systemd unit, or give --no-probe"
            )
            return
        if not families:
            ctx.log.error("traceroute: this host has no raw sockets for IPv4 or IPv6")
            return
    runner = Runner(ctx, opts, prober)
    runner.start()
    ctx.state["runner"] = runner
    ctx.state["config_seen"] = ctx.config


@hookimpl
def ng_handshake(ctx: PluginContext, event: HandshakeEvent) -> None:
    if event.kind is not Kind.COMPLETED:
        return
    runner = _runner(ctx)
    if runner is None:
        return
    direction = ctx.direction(event.client, event.server)
    if direction == wire_pb2.DIRECTION_OUTGOING:
        dst, port = event.server, event.port
    elif direction == wire_pb2.DIRECTION_INCOMING and runner.opts.incoming:
        dst, port = event.client, event.cport
    else:
        return
    if dst in ctx.own_addresses:
        return
    if runner.engine.request(dst, port, event.ts):
        runner.kick()


@hookimpl
def ng_tick(ctx: PluginContext, now: float, final: bool) -> None:
    runner = _runner(ctx)
    if runner is None:
        return
    if ctx.config is not ctx.state.get("config_seen"):
        _reload(ctx, runner)
    _report(ctx, runner)


def _reload(ctx: PluginContext, runner: Runner) -> None:
    """New settings after SIGHUP: budgets, pacing, windows and prefix lists apply at once; the
    flow ports stay (the kernel filter that leaves the probes out was compiled at start)."""
    ctx.state["config_seen"] = ctx.config
    try:
        opts = parse_options(ctx.config)
    except ValueError as exc:
        ctx.log.error("%s; keeping the running traceroute settings", exc)
        return
    if opts.flow_ports != runner.opts.flow_ports:
        ctx.log.warning("traceroute: changing flow_ports needs a restart; keeping the old ones")
        opts.flow_ports = runner.opts.flow_ports
    engine = runner.engine
    runner.opts = engine.opts = engine.stop_set.opts = opts
    runner.payload = opts.contact.encode()
    engine.budget.rate, engine.budget.burst = opts.pps, max(1.0, opts.pps)
    engine.routers.clear()  # new buckets at the new pacing, full (the routers' are refilling)
    ctx.state["options"] = opts
    ctx.log.info("traceroute: settings reloaded")


@hookimpl
def ng_sensor_stop(ctx: PluginContext) -> None:
    runner = _runner(ctx)
    if runner is None:
        return
    # A replay waits for its traces; a live sensor stops at once (the wait would block the
    # event loop while the collector stream is closing), its traces in flight as they stand.
    runner.drain(runner.opts.drain if ctx.replay else 0.0)
    runner.stop()
    _report(ctx, runner)


def _report(ctx: PluginContext, runner: Runner) -> None:
    engine = runner.engine
    for key, value in engine.counters.items():
        ctx.counters[key] = value
    ctx.counters["queue_depth"] = len(engine.queue)
    ctx.counters["traces_active"] = len(engine.active)
    ctx.counters["replies_malformed"] = runner.malformed
    if runner.prober is not None:
        ctx.counters["socket_errors"] = runner.prober.errors
    traces = engine.take()
    if runner.dry_run:
        return
    for i in range(0, len(traces), TRACES_PER_MESSAGE):
        report = traceroute_pb2.TraceReport()
        for trace in traces[i : i + TRACES_PER_MESSAGE]:
            report.traces.append(run_message(trace, runner.opts.mode))
        ctx.emit(report)
        ctx.count("reports_sent")


def run_message(trace: Trace, mode: str) -> traceroute_pb2.TraceRun:
    """One finished trace as it travels."""
    run = traceroute_pb2.TraceRun(
        id=trace.id,
        src=trace.src,
        dst=trace.dst,
        method=trace.method,
        flow_id=trace.flow,
        dport=trace.dport,
        started=trace.started,
        finished=trace.finished,
        reached=trace.reached,
        probes_saved=trace.saved,
        mode=mode,
    )
    for ttl, hop in enumerate(trace.path(), start=1):
        run.hops.add(
            ttl=ttl,
            addr=hop.addr,
            rtt_ms=hop.rtt_ms if hop.addr and not hop.inferred else -1.0,
            sent=hop.sent,
            answered=hop.answered,
            inferred=hop.inferred,
        )
    return run


def summary(trace: Trace) -> dict[str, Any]:
    """A trace as plain values (tests, logs)."""
    return {
        "dst": trace.dst,
        "method": trace.method,
        "reached": trace.reached,
        "hops": [h.addr for h in trace.path()],
    }
