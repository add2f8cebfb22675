"""What to probe, and when: traces, pacing, retries, the stop set. No I/O here.

The :class:`Engine` takes requests (a destination seen in a completed handshake), replies
(:class:`~net_gazer.plugins.traceroute.matcher.Reply`) and the time, and hands out the probes to
send (:class:`Send`) and the traces that finished (:class:`Trace`). The prober around it only
moves bytes, so tests drive the engine with plain values.

- All TTLs of a trace that are not known are probed at once (``window`` of them while the
  distance is unknown), and up to ``max_traces`` traces run at once; more wait in a bounded
  queue, and past it requests are dropped and counted.
- Two token buckets decide whether a probe may leave now: the global probes-per-second budget,
  and one per router, matched to Linux's ICMP error rate limit (a burst of 6, then one per
  second per destination of its errors, which is us). A probe's router is the responder the
  stop set expects at its TTL, else "whoever is at this TTL"; probes the destination itself
  answers (TCP, ICMP echo) are not paced per router.
- A TTL that stays silent for ``timeout`` is probed again up to ``retries`` times. A trace ends
  at the destination, at an unreachable from a router, or after ``max_silent`` silent TTLs past
  the last answer; ``reached`` says whether the destination itself answered.
- The stop set (Doubletree, Donnet et al., SIGMETRICS 2005): the hops at the start of the path
  that every trace of the sensor found alike (at least ``stop_set_min_traces`` traces that probed
  from TTL 1, and none that disagreed) are not probed again; a trace starts at the last of them
  (one probe of overlap, to check it) and fills in the rest as inferred. If the overlap probe
  disagrees, the trace probes the known part too and the stop set forgets it. Every
  ``full_every``-th trace probes from TTL 1, and the stop set forgets what it has not seen for
  ``stop_set_lifetime`` seconds.
"""

from __future__ import annotations

import random
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from net_gazer.plugins.traceroute.matcher import Kind, Reply
from net_gazer.plugins.traceroute.options import Options

#: Destinations remembered for the de-duplication window, at most (oldest forgotten first).
MAX_REMEMBERED = 100_000
#: Router buckets kept at most (idle ones are full anyway, so forgetting them is harmless).
MAX_BUCKETS = 10_000
#: Unanswered probes, and not one answer, after which a TTL's bucket counts as a silent router.
SILENT_AFTER = 3


class Bucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` per second."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.last = rate, burst, burst, now

    def ready(self, now: float) -> bool:
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        return self.tokens >= 1.0

    def take(self) -> None:
        self.tokens -= 1.0


@dataclass(slots=True)
class Hop:
    addr: str = ""
    rtt_ms: float = -1.0
    sent: int = 0
    answered: int = 0
    inferred: bool = False


@dataclass(slots=True)
class Probe:
    trace: Trace
    ttl: int
    ident: int
    flow: int
    sent: float
    key: tuple[str, str, int]
    #: The pacing bucket it was sent under (None: not paced).
    bucket: tuple[object, ...] | None = None


@dataclass(slots=True)
class Send:
    """One probe to put on the wire now."""

    method: str
    src: str
    dst: str
    ttl: int
    flow: int  # source port (TCP, UDP) or identifier (ICMP)
    dport: int
    ident: int  # TCP sequence number, UDP checksum, ICMP sequence number
    checksum: int  # the constant ICMP checksum of the trace (ICMP only)
    key: tuple[str, str, int] = ("", "", 0)


@dataclass
class Trace:
    id: str
    dst: str
    src: str
    family: int
    method: str
    dport: int
    flow: int
    started: float
    first_ttl: int
    limit: int
    checksum: int = 0
    hops: dict[int, Hop] = field(default_factory=dict)
    dest_ttl: int | None = None
    stop_ttl: int | None = None
    pending: deque[int] = field(default_factory=deque)
    outstanding: dict[int, Probe] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    #: TTL -> responder filled in from the stop set ("" for a TTL known to be silent).
    inferred: dict[int, str] = field(default_factory=dict)
    saved: int = 0
    full: bool = True
    finished: float = 0.0
    overlap_checked: bool = False
    #: The responder the stop set expects at ``first_ttl``.
    overlap: str = ""

    @property
    def reached(self) -> bool:
        return self.dest_ttl is not None

    def end(self) -> int:
        """The last TTL the run spans."""
        if self.dest_ttl is not None:
            return self.dest_ttl
        if self.stop_ttl is not None:
            return self.stop_ttl
        answered = [t for t, h in self.hops.items() if h.addr]
        return max(answered, default=0)

    def path(self) -> list[Hop]:
        """TTL 1..end: the inferred hops first, then what was probed."""
        out = []
        for ttl in range(1, self.end() + 1):
            if ttl in self.inferred:
                out.append(Hop(addr=self.inferred[ttl], inferred=True))
            else:
                out.append(self.hops.get(ttl) or Hop())
        return out


@dataclass(slots=True)
class _Request:
    dst: str
    method: str
    dport: int


class StopSet:
    """The start of the path that the sensor's full traces agree on, per address family."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        #: family -> (agreed prefix of the path, full traces that agreed, last confirmation)
        self.trunk: dict[int, tuple[list[str], int, float]] = {}

    def known(self, family: int, now: float) -> list[str]:
        """The hops TTL 1..n the stop set trusts now ([] when none)."""
        entry = self.trunk.get(family)
        if entry is None or not self.opts.stop_set:
            return []
        hops, n, seen = entry
        if now - seen > self.opts.stop_set_lifetime:
            del self.trunk[family]
            return []
        return hops if n >= self.opts.stop_set_min_traces else []

    def learn(self, trace: Trace, now: float) -> None:
        """Fold in a trace that probed from TTL 1."""
        path = trace.path()
        stop = len(path) - 1 if trace.reached else len(path)  # never the destination itself
        hops = [h.addr for h in path[:stop]]
        entry = self.trunk.get(trace.family)
        if entry is None or now - entry[2] > self.opts.stop_set_lifetime:
            self.trunk[trace.family] = (hops, 1, now)
            return
        old, n, _ = entry
        common = 0
        while common < min(len(old), len(hops)) and old[common] == hops[common]:
            common += 1
        self.trunk[trace.family] = (old[:common], n + 1, now)

    def forget(self, family: int) -> None:
        self.trunk.pop(family, None)


class Engine:
    """Traces in flight; see the module docstring."""

    def __init__(
        self,
        opts: Options,
        source: Callable[[str], str | None],
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        self.opts = opts
        #: source(dst) -> the sensor's source address towards dst, None when there is no route.
        self.source = source
        self.rng = rng or random.Random()
        self.queue: deque[_Request] = deque()
        self.queued: set[str] = set()
        self.seen: OrderedDict[str, float] = OrderedDict()
        self.active: dict[str, Trace] = {}
        self.inflight: dict[tuple[str, str, int], Probe] = {}
        self.budget = Bucket(opts.pps, max(1.0, opts.pps), now)
        self.routers: OrderedDict[tuple[object, ...], Bucket] = OrderedDict()
        self.stop_set = StopSet(opts)
        self.finished: list[Trace] = []
        self.counters: dict[str, int] = {}
        self._token = self.rng.randrange(1, 0xFFFF)
        self._salt = self.rng.randrange(0, 0x10000)
        self._flow = 0
        self._traces = 0
        self.distance: OrderedDict[tuple[int, str], int] = OrderedDict()
        #: Per pacing bucket: [answers, timeouts]. A bucket whose probes have never been
        #: answered (a router that sends no time exceeded at all) is not paced: there is no
        #: rate limit to respect, only probes to delay.
        self.outcomes: OrderedDict[tuple[object, ...], list[int]] = OrderedDict()

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    # -- requests ---------------------------------------------------------------------------
    def request(self, dst: str, port: int, ts: float) -> bool:
        """A destination from a completed handshake at time ``ts``; True when it is queued."""
        opts = self.opts
        if dst in opts.deny_set or (opts.allow_set is not None and dst not in opts.allow_set):
            self.count("denied")
            return False
        last = self.seen.get(dst)
        if dst in self.queued or (last is not None and ts - last < opts.dedup_window):
            self.count("deduplicated")
            return False
        if len(self.queue) >= opts.max_queue:
            self.count("queue_dropped")
            return False
        self.seen[dst] = ts
        self.seen.move_to_end(dst)
        while len(self.seen) > MAX_REMEMBERED:
            self.seen.popitem(last=False)
        method = opts.method_for(port)
        dport = port if method == "tcp" else opts.udp_port if method == "udp" else 0
        self.queue.append(_Request(dst, method, dport))
        self.queued.add(dst)
        if len(self.queue) > self.counters.get("queue_peak", 0):
            self.counters["queue_peak"] = len(self.queue)
        self.count("requested")
        return True

    # -- time -------------------------------------------------------------------------------
    def poll(self, now: float) -> list[Send]:
        """Start traces, time out probes, finish traces; return the probes to send now."""
        self._start(now)
        self._timeouts(now)
        sends = self._sends(now)
        for trace in list(self.active.values()):
            self._maybe_finish(trace, now)
        return sends

    def _start(self, now: float) -> None:
        opts = self.opts
        while self.queue and len(self.active) < opts.max_traces:
            req = self.queue.popleft()
            self.queued.discard(req.dst)
            src = self.source(req.dst)
            if src is None:
                self.count("no_route")
                continue
            family = 6 if ":" in req.dst else 4
            self._traces += 1
            full = self._traces % opts.full_every == 1 or opts.full_every == 1
            known = [] if full else self.stop_set.known(family, now)
            # The last known hop that answers is probed again (the overlap); silent ones after
            # it are known to stay silent.
            first = max((i + 1 for i, a in enumerate(known) if a), default=1)
            inferred = {i + 1: a for i, a in enumerate(known) if i + 1 != first}
            dist = self.distance.get((family, _prefix(req.dst)))
            limit = min(
                opts.max_ttl,
                dist if dist is not None and dist >= first else first + opts.window - 1,
            )
            trace = Trace(
                id=str(uuid.uuid4()),
                dst=req.dst,
                src=src,
                family=family,
                method=req.method,
                dport=req.dport,
                flow=self._next_flow(),
                started=now,
                first_ttl=first,
                limit=limit,
                inferred=inferred,
                full=not inferred,
            )
            trace.overlap_checked = not inferred
            trace.overlap = known[first - 1] if inferred else ""
            if req.method == "icmp":
                trace.checksum = self.rng.randrange(1, 0xFFFF)
            limit = max(limit, len(known) + 1)
            trace.limit = limit
            trace.saved = len(inferred)
            self.count("probes_saved", trace.saved)
            trace.pending.extend(t for t in range(first, limit + 1) if t not in inferred)
            self.active[trace.id] = trace
            self.count("traces_started")

    def _next_flow(self) -> int:
        lo, hi = self.opts.flow_ports
        self._flow = (self._flow + 1) % (hi - lo + 1)
        return lo + self._flow

    def _timeouts(self, now: float) -> None:
        timeout = self.opts.timeout
        for key, probe in list(self.inflight.items()):
            if now - probe.sent < timeout:
                continue
            del self.inflight[key]
            self._outcome(probe.bucket, answered=False)
            self._outcome(_spot(probe.trace, probe.ttl), answered=False)
            trace = probe.trace
            if trace.outstanding.get(probe.ttl) is probe:
                del trace.outstanding[probe.ttl]
                if (
                    self._wanted(trace, probe.ttl)
                    and trace.attempts.get(probe.ttl, 0) <= self.opts.retries
                    and not self._silent(probe.bucket)
                ):
                    trace.pending.append(probe.ttl)
                    self.count("retries")

    def _wanted(self, trace: Trace, ttl: int) -> bool:
        """Whether ``ttl`` still needs an answer."""
        if trace.dest_ttl is not None and ttl >= trace.dest_ttl:
            return False
        if trace.stop_ttl is not None and ttl >= trace.stop_ttl:
            return False
        hop = trace.hops.get(ttl)
        return hop is None or not hop.addr

    def _router_key(self, trace: Trace, ttl: int) -> tuple[object, ...] | None:
        dist = self.distance.get((trace.family, _prefix(trace.dst)))
        if trace.method != "udp" and (
            (dist is not None and ttl >= dist)
            or (trace.dest_ttl is not None and ttl >= trace.dest_ttl)
        ):
            return None  # the destination answers: a SYN+ACK, RST or echo reply is not rate-limited
        known = self.stop_set.known(trace.family, trace.started)
        if ttl <= len(known) and known[ttl - 1]:
            return ("router", known[ttl - 1])
        return ("ttl", trace.family, ttl)

    def _silent(self, key: tuple[object, ...] | None) -> bool:
        """Whether the probes of bucket ``key`` have timed out SILENT_AFTER times and never
        been answered: a router that sends no time exceeded (not paced, not retried)."""
        seen = self.outcomes.get(key) if key is not None else None
        return seen is not None and seen[0] == 0 and seen[1] >= SILENT_AFTER

    def _outcome(self, key: tuple[object, ...] | None, *, answered: bool) -> None:
        if key is None:
            return
        seen = self.outcomes.get(key)
        if seen is None:
            seen = self.outcomes[key] = [0, 0]
            while len(self.outcomes) > MAX_BUCKETS:
                self.outcomes.popitem(last=False)
        seen[0 if answered else 1] += 1

    def _sends(self, now: float) -> list[Send]:
        opts = self.opts
        out: list[Send] = []
        pace = opts.router_rate > 0 and opts.router_burst > 0
        for trace in list(self.active.values()):
            waiting: deque[int] = deque()
            while trace.pending:
                ttl = trace.pending.popleft()
                if not self._wanted(trace, ttl) or ttl in trace.outstanding:
                    continue
                if self.opts.stop_set and self._silent(_spot(trace, ttl)):
                    # Nothing ever answered at this TTL towards this prefix: known silence.
                    trace.inferred[ttl] = ""
                    trace.saved += 1
                    self.count("probes_saved")
                    continue
                dist = self.distance.get((trace.family, _prefix(trace.dst)))
                if dist is not None and ttl > dist and trace.dest_ttl is None:
                    trace.limit = min(trace.limit, max(dist, ttl - 1))
                    self.count("probes_skipped_past_distance")
                    continue
                if not self.budget.ready(now):
                    waiting.append(ttl)
                    waiting.extend(trace.pending)
                    trace.pending.clear()
                    break
                key = self._router_key(trace, ttl)
                if pace and key is not None and not self._silent(key):
                    bucket = self.routers.get(key)
                    if bucket is None:
                        bucket = self.routers[key] = Bucket(
                            opts.router_rate, opts.router_burst, now
                        )
                        while len(self.routers) > MAX_BUCKETS:
                            self.routers.popitem(last=False)
                    if not bucket.ready(now):
                        waiting.append(ttl)
                        self.count("paced_waits")
                        continue
                    bucket.take()
                self.budget.take()
                out.append(self._probe(trace, ttl, now, key))
            trace.pending = waiting
        return out

    def _probe(
        self, trace: Trace, ttl: int, now: float, bucket: tuple[object, ...] | None = None
    ) -> Send:
        ident = self._ident(trace)
        flow = trace.flow if self.opts.mode == "paris" else self._next_flow()
        probe = Probe(trace, ttl, ident, flow, now, (trace.dst, trace.method, ident), bucket)
        self.inflight[probe.key] = probe
        trace.outstanding[ttl] = probe
        trace.attempts[ttl] = trace.attempts.get(ttl, 0) + 1
        hop = trace.hops.setdefault(ttl, Hop())
        hop.sent += 1
        self.count("probes_sent")
        return Send(
            trace.method, trace.src, trace.dst, ttl, flow, trace.dport, ident, trace.checksum,
            probe.key,
        )  # fmt: skip

    def stamp(self, send: Send, ts: float) -> None:
        """The time the probe of ``send`` actually left."""
        probe = self.inflight.get(send.key)
        if probe is not None:
            probe.sent = ts

    def _ident(self, trace: Trace) -> int:
        for _ in range(0xFFFF):
            self._token = self._token % 0xFFFE + 1  # 1..0xfffe: a UDP checksum is never 0
            ident = (self._salt << 16 | self._token) if trace.method == "tcp" else self._token
            if (trace.dst, trace.method, ident) not in self.inflight:
                return ident
        raise RuntimeError("every probe identity is in flight")  # max_traces bounds this

    # -- replies ----------------------------------------------------------------------------
    def reply(self, reply: Reply, now: float) -> bool:
        """Match a reply to its probe; True when it answered one."""
        probe = self.inflight.get((reply.dst, reply.method, reply.ident))
        if probe is None or probe.flow != reply.flow or probe.trace.dport != reply.dport:
            self.count("replies_unmatched")
            return False
        del self.inflight[probe.key]
        self._outcome(probe.bucket, answered=True)
        self._outcome(_spot(probe.trace, probe.ttl), answered=True)
        trace, ttl = probe.trace, probe.ttl
        if trace.outstanding.get(ttl) is probe:
            del trace.outstanding[ttl]
        hop = trace.hops.setdefault(ttl, Hop())
        rtt = max(0.0, ((reply.ts or now) - probe.sent) * 1000.0)
        hop.answered += 1
        self.count("replies_matched")
        if not hop.addr or rtt < hop.rtt_ms:
            hop.addr, hop.rtt_ms = reply.responder, rtt
        # A port unreachable means the probe reached a host that holds the destination address,
        # even when the host answers from another of its addresses (AnyIP, as in the lab).
        from_dst = reply.responder == trace.dst or reply.port_unreachable
        if reply.kind in (Kind.SYNACK, Kind.RST, Kind.ECHO_REPLY) or (
            from_dst and reply.kind is Kind.UNREACHABLE
        ):
            if trace.dest_ttl is None or ttl < trace.dest_ttl:
                trace.dest_ttl = ttl
                # Traces to the same prefix in flight need not probe past it (they extend their
                # window again if their destination turns out farther).
                self.distance[(trace.family, _prefix(trace.dst))] = ttl
        elif reply.kind is Kind.UNREACHABLE and (trace.stop_ttl is None or ttl < trace.stop_ttl):
            trace.stop_ttl = ttl
        if not trace.overlap_checked and ttl == trace.first_ttl:
            self._check_overlap(trace, hop.addr)
        return True

    def _check_overlap(self, trace: Trace, addr: str) -> None:
        trace.overlap_checked = True
        known = trace.inferred
        if addr == trace.overlap:
            return
        # The path near the sensor moved: probe what was inferred, and forget the stop set.
        self.count("stop_set_misses")
        self.stop_set.forget(trace.family)
        self.count("probes_saved", -trace.saved)
        trace.saved = 0
        trace.pending.extend(known)
        trace.first_ttl = 1
        trace.full = True
        known.clear()

    def _maybe_finish(self, trace: Trace, now: float) -> None:
        if trace.pending or trace.outstanding:
            return
        opts = self.opts
        if trace.dest_ttl is None and trace.stop_ttl is None:
            answered = max((t for t, h in trace.hops.items() if h.addr), default=0)
            if trace.limit < opts.max_ttl and trace.limit - answered < opts.max_silent:
                new = min(opts.max_ttl, trace.limit + opts.window)
                trace.pending.extend(range(trace.limit + 1, new + 1))
                trace.limit = new
                return
        self._finish(trace, now)

    def _finish(self, trace: Trace, now: float) -> None:
        trace.finished = now
        del self.active[trace.id]
        for probe in trace.outstanding.values():
            self.inflight.pop(probe.key, None)
        trace.outstanding.clear()
        if trace.reached:
            assert trace.dest_ttl is not None
            self.distance[(trace.family, _prefix(trace.dst))] = trace.dest_ttl
            while len(self.distance) > MAX_REMEMBERED:
                self.distance.popitem(last=False)
        if trace.full and trace.end():
            self.stop_set.learn(trace, now)
        self.count("traces_finished")
        self.count("traces_reached" if trace.reached else "traces_incomplete")
        self.finished.append(trace)

    def close(self, now: float) -> None:
        """Finish every trace in flight as it stands, and drop the queue (counted)."""
        self.count("queue_dropped", len(self.queue))
        self.queue.clear()
        self.queued.clear()
        for trace in list(self.active.values()):
            trace.pending.clear()
            self._finish(trace, now)

    def take(self) -> list[Trace]:
        out, self.finished = self.finished, []
        return out

    @property
    def idle(self) -> bool:
        return not self.active and not self.queue


def _spot(trace: Trace, ttl: int) -> tuple[object, ...]:
    """A TTL on the way to the trace's prefix: where silence is remembered."""
    return ("at", trace.family, _prefix(trace.dst), ttl)


def _prefix(dst: str) -> str:
    """The destination's /24 (IPv4) or /64 (IPv6): hosts there are usually as far away."""
    if ":" in dst:
        import ipaddress

        return str(ipaddress.ip_network(f"{dst}/64", strict=False))
    return dst.rsplit(".", 1)[0]
