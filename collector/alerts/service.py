"""Alert rules wired to the collector: every applied batch is read for samples and destinations,
gaps and the sensors' silence are watched, candidates go through the hold-down in the graph
(:mod:`.state`), and alerts to their actions (:mod:`.actions`).

Sample windows live in the collector that receives the sensor's stream (each sensor's stream
stays on one replica); the hold-down, the seen countries and the alert records live in the
graph, so replicas never each fire the same alert.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from net_gazer import tasks
from net_gazer.collector.events import CollectorEvents
from net_gazer.collector.graphwrite import SensorInfo
from net_gazer.netaddr import addr_info
from net_gazer.v1 import quality_pb2, traceroute_pb2, udp_pb2, wire_pb2

from . import state
from .actions import Dispatcher
from .engine import Candidate, Engine, Hop
from .rules import Rule

log = logging.getLogger("net_gazer.alerts")

#: Seconds between two checks for silent sensors.
CHECK_INTERVAL = 30.0
#: Alerts fired between two trims of the kept alert records (state.KEEP).
TRIM_EVERY = 100
#: Hold-downs remembered at most (the cache starts over past it).
MAX_HELD = 100_000
NEVER = -1e18
#: The longest trace read (as the traceroute plugin's collector half).
MAX_TRACE_HOPS = 255


class AlertService:
    def __init__(
        self,
        graph: Any,
        rules: list[Rule],
        events: CollectorEvents,
        country: Callable[[str, str], str] = lambda ip, site: "",
        asn: Callable[[str, str], int | None] = lambda ip, site: None,
        clock: Callable[[], float] = time.time,
        **dispatch: Any,
    ) -> None:
        self.graph = graph
        self.rules = rules
        self.engine = Engine(rules)
        self.events = events
        self.country = country
        self.asn = asn
        self.clock = clock
        self.dispatcher = Dispatcher(events, **dispatch)
        self.fired: dict[str, int] = {r.name: 0 for r in rules}
        self.suppressed: dict[str, int] = {r.name: 0 for r in rules}
        self.errors = 0
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._since_trim = 0
        #: (rule, key) -> until when it is held down, as last learned from the graph.
        self._held: dict[tuple[str, str], float] = {}

    async def start(self) -> None:
        if not self.rules:
            return
        await state.ensure_indexes(self.graph)
        if "sensor_silent" in self.engine.kinds():
            self._task = tasks.spawn(self._watch(), name="alerts: silent sensors")

    async def stop(self) -> None:
        await tasks.cancel(self._task, *self._pending)
        await self.dispatcher.close()

    # -- inputs -------------------------------------------------------------------------------
    async def observe(self, sensor: SensorInfo, batch: wire_pb2.Batch) -> None:
        """An applied batch (IngestService.observers)."""
        if not self.rules:
            return
        e, sid = self.engine, sensor.id
        found: list[Candidate] = []
        for h in batch.handshakes:
            if h.rtt.samples > 0:
                found += e.sample("rtt", sid, h.server, h.dport, h.rtt.min_ms, "a connection row")
            if h.completed:
                found += e.destination(sid, h.server, h.dport, self.country(h.server, sensor.site))
        for ext in batch.extensions:
            if ext.payload.Is(quality_pb2.QualityReport.DESCRIPTOR):
                report = quality_pb2.QualityReport()
                try:
                    ext.payload.Unpack(report)
                except DecodeError:
                    continue
                for q in report.rows:
                    data = q.c2s.data_segments + q.s2c.data_segments
                    if data:
                        loss = (q.c2s.retransmits + q.s2c.retransmits) / data
                        found += e.sample("loss", sid, q.server, q.dport, loss, "a connection row")
            elif ext.payload.Is(udp_pb2.UdpReport.DESCRIPTOR) and "new_country" in e.kinds():
                report_u = udp_pb2.UdpReport()
                try:
                    ext.payload.Unpack(report_u)
                except DecodeError:
                    continue
                for u in report_u.rows:
                    if u.packets_s2c:
                        found += e.destination(
                            sid, u.server, u.dport, self.country(u.server, sensor.site)
                        )
            elif ext.payload.Is(traceroute_pb2.TraceReport.DESCRIPTOR):
                report_t = traceroute_pb2.TraceReport()
                try:
                    ext.payload.Unpack(report_t)
                except DecodeError:
                    continue
                for run in report_t.traces:
                    found += self._trace(sensor, run)
        await self.handle(found)

    def _trace(self, sensor: SensorInfo, run: traceroute_pb2.TraceRun) -> list[Candidate]:
        """A finished trace: its hops (one per TTL, "" when silent) for ``path_contains``, and
        its RTT to the destination (the destination's own answer) as an ``rtt`` sample. A run
        the traceroute plugin skips as not sane is skipped here too."""
        if not run.id or len(run.hops) > MAX_TRACE_HOPS:
            return []
        try:
            dst = addr_info(run.dst)[0]
            ips = [addr_info(h.addr)[0] if h.addr else "" for h in run.hops]
        except ValueError:
            return []
        hops = [Hop(ip, self.asn(ip, sensor.site) if ip else None) for ip in ips]
        rtt: float | None = None
        if run.reached:
            for ip, h in zip(reversed(ips), reversed(run.hops), strict=True):
                if ip == dst and not h.inferred and math.isfinite(h.rtt_ms) and h.rtt_ms >= 0:
                    rtt = h.rtt_ms
                    break
        return self.engine.trace(sensor.id, dst, hops, rtt)

    async def on_route_changes(self, sensor: SensorInfo, changes: list[dict[str, Any]]) -> None:
        """Route changes the store recorded (GraphStore.route_changed): to ``route_change``
        rules."""
        if "route_change" not in self.engine.kinds():
            return
        found: list[Candidate] = []
        for c in changes:
            found += self.engine.route_change(
                str(c["sensor"]), str(c["dst"]), int(c["ttl"]), str(c["before"]),
                str(c["after"]),
            )  # fmt: skip
        await self.handle(found)

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        """The store's events (gaps, identity conflicts): to the event log, and gaps to rules."""
        self.events.emit(event, fields)
        if event == "gap" and "sensor_gaps" in self.engine.kinds():
            found = self.engine.gap(fields["sensor"], int(fields["lost_envelopes"]),
                                    int(fields["lost_items"]), str(fields["reason"]))  # fmt: skip
            t = tasks.spawn(self.handle(found), name="alerts: gap")
            self._pending.add(t)
            t.add_done_callback(self._pending.discard)

    async def check_silent(self, now: float | None = None) -> list[dict[str, Any]]:
        when = self.clock() if now is None else now
        found: list[Candidate] = []
        for sid, last_seen in await state.silent_sensors(self.graph):
            found += self.engine.silent(sid, last_seen, when)
        return await self.handle(found, when)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            try:
                await self.check_silent()
            except Exception:
                self.errors += 1
                log.exception("checking for silent sensors failed")

    # -- candidates -> alerts ----------------------------------------------------------------
    async def handle(
        self, found: list[Candidate], now: float | None = None
    ) -> list[dict[str, Any]]:
        """Candidates through the hold-down. A key known to be held down is suppressed without
        asking the graph again: the hold-down is the same for every collector, so none can fire
        it before it ends (a busy destination costs one query per hold-down, not per sample)."""
        fired: list[dict[str, Any]] = []
        for c in found:
            when = self.clock() if now is None else now
            held = (c.rule.name, c.key)
            if self._held.get(held, NEVER) > when:
                self.suppressed[c.rule.name] += 1
                continue
            alert, last_fired = await state.claim(self.graph, c, when)
            if len(self._held) >= MAX_HELD:
                self._held.clear()
            self._held[held] = last_fired + c.hold_down
            if alert is None:
                self.suppressed[c.rule.name] += 1
                continue
            self.fired[c.rule.name] += 1
            fired.append(alert)
            self.dispatcher.dispatch(c.rule, alert)
        self._since_trim += len(fired)
        if self._since_trim >= TRIM_EVERY:
            self._since_trim = 0
            await state.trim(self.graph)
        return fired

    def status(self) -> dict[str, Any]:
        s = self.dispatcher.stats
        return {
            "rules": [
                {**r.describe(), "fired": self.fired[r.name], "suppressed": self.suppressed[r.name]}
                for r in self.rules
            ],
            "webhook_sent": s.webhook_sent,
            "webhook_retries": s.webhook_retries,
            "webhook_dropped": s.webhook_dropped,
            "webhook_queued": self.dispatcher.pending(),
            "commands_run": s.commands_run,
            "command_failures": s.command_failures,
            "errors": self.errors,
        }
