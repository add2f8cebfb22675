"""Alert conditions, from plain values to candidates. No I/O.

A *candidate* is a condition that holds now; whether it becomes an alert is the hold-down's
decision (:mod:`.state`), kept in the graph database so that replicas agree.

Samples (``rtt`` and ``loss`` rules): "x of the last n samples over the threshold", per rule and
destination (sensor, server address), never an average, which hides spikes. A sample is

- one flushed connection row: a handshake row's RTT minimum (SYN -> SYN+ACK, the
  sensor-to-server half; rows without an RTT sample give none), or a quality row's loss
  (retransmitted / data segments, both directions; rows without data segments give none);
- one trace: its RTT to the destination (:meth:`Engine.trace`).

Every sample that arrives while x of the last n are over the threshold makes a candidate; the
hold-down turns the first into an alert and counts the others as suppressed.

The other conditions: ``route_change`` (:meth:`Engine.route_change`, fed by the route change
detection of traces), ``path_contains`` (an address or AS in a trace's hops, :meth:`Engine.trace`),
``new_country`` (a destination in a country the sensor has not reached before; the hold-down
is forever, so each country fires once), ``sensor_silent`` (:meth:`Engine.silent`) and
``sensor_gaps`` (:meth:`Engine.gap`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .rules import Rule

#: The hold-down of new_country: forever (each country fires once per sensor).
FOREVER = 1e18
#: Sample windows kept at most per rule; past it the oldest destination's window goes.
MAX_WINDOWS = 100_000


@dataclass(frozen=True, slots=True)
class Candidate:
    rule: Rule
    key: str
    sensor: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def hold_down(self) -> float:
        return FOREVER if self.rule.when == "new_country" else self.rule.hold_down


@dataclass(frozen=True, slots=True)
class Hop:
    ip: str
    asn: int | None = None


class Engine:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._by_kind: dict[str, list[Rule]] = {}
        for r in self.rules:
            self._by_kind.setdefault(r.when, []).append(r)
        self._windows: dict[str, dict[tuple[str, str], deque[bool]]] = {
            r.name: {} for r in self.rules
        }

    def kinds(self) -> set[str]:
        return set(self._by_kind)

    # -- samples ------------------------------------------------------------------------------
    def sample(
        self, kind: str, sensor: str, dst: str, port: int | None, value: float, source: str
    ) -> list[Candidate]:
        """One ``rtt`` (milliseconds) or ``loss`` (fraction) sample for (sensor, dst)."""
        out: list[Candidate] = []
        if not math.isfinite(value):
            return out
        for rule in self._by_kind.get(kind, ()):
            if not rule.matches(sensor, dst, port):
                continue
            windows = self._windows[rule.name]
            key = (sensor, dst)
            window = windows.get(key)
            if window is None:
                if len(windows) >= MAX_WINDOWS:
                    del windows[next(iter(windows))]
                window = windows[key] = deque(maxlen=rule.n)
            window.append(value > rule.threshold)
            over = sum(window)
            if over >= rule.x:
                unit = "ms" if kind == "rtt" else ""
                shown = f"{value:.1f} ms" if kind == "rtt" else f"{value:.1%}"
                out.append(
                    Candidate(
                        rule,
                        f"{sensor}|{dst}",
                        sensor,
                        f"{kind} to {dst} from sensor {sensor}: {over} of the last {len(window)} "
                        f"samples over {rule.threshold:g}{unit} (latest {shown}, from {source})",
                        {
                            "dst": dst,
                            "port": port,
                            "value": value,
                            "over": over,
                            "samples": len(window),
                            "threshold": rule.threshold,
                            "source": source,
                        },
                    )
                )
        return out

    # -- traces (fed by AlertService: each trace, and each route change the store records) -
    def trace(
        self, sensor: str, dst: str, hops: list[Hop], rtt_ms: float | None
    ) -> list[Candidate]:
        """One finished trace: its RTT to the destination is an ``rtt`` sample, and its hops
        are checked against ``path_contains`` rules."""
        out: list[Candidate] = []
        if rtt_ms is not None:
            out += self.sample("rtt", sensor, dst, None, rtt_ms, "a trace")
        for rule in self._by_kind.get("path_contains", ()):
            if not rule.matches(sensor, dst):
                continue
            for ttl, hop in enumerate(hops, 1):
                if (rule.address is not None and hop.ip == rule.address) or (
                    rule.asn is not None and hop.asn == rule.asn
                ):
                    what = hop.ip if rule.address is not None else f"AS{rule.asn} ({hop.ip})"
                    out.append(
                        Candidate(
                            rule,
                            f"{sensor}|{dst}|{hop.ip}",
                            sensor,
                            f"{what} is in the path from sensor {sensor} to {dst} at TTL {ttl}",
                            {"dst": dst, "ttl": ttl, "hop": hop.ip, "asn": hop.asn},
                        )
                    )
                    break
        return out

    def route_change(
        self, sensor: str, dst: str, ttl: int, before: str, after: str
    ) -> list[Candidate]:
        """A route change between two consecutive traces from ``sensor`` to ``dst``."""
        return [
            Candidate(
                rule,
                f"{sensor}|{dst}",
                sensor,
                f"the route from sensor {sensor} to {dst} changed at TTL {ttl}: "
                f"{before or '*'} -> {after or '*'}",
                {"dst": dst, "ttl": ttl, "before": before, "after": after},
            )
            for rule in self._by_kind.get("route_change", ())
            if rule.matches(sensor, dst)
        ]

    # -- destinations and sensors -------------------------------------------------------------
    def destination(self, sensor: str, dst: str, port: int | None, country: str) -> list[Candidate]:
        """A destination reached (an answered connection) in ``country`` (ISO code)."""
        if not country:
            return []
        return [
            Candidate(
                rule,
                f"{sensor}|{country}",
                sensor,
                f"sensor {sensor} reached a destination in a new country: {country} ({dst})",
                {"dst": dst, "port": port, "country_code": country},
            )
            for rule in self._by_kind.get("new_country", ())
            if rule.matches(sensor, dst, port)
        ]

    def silent(self, sensor: str, last_seen: float, now: float) -> list[Candidate]:
        out: list[Candidate] = []
        for rule in self._by_kind.get("sensor_silent", ()):
            quiet = now - last_seen
            if rule.matches(sensor) and quiet >= rule.minutes * 60:
                # One alert per silence: its key names when the sensor was last seen.
                out.append(
                    Candidate(
                        rule,
                        f"{sensor}|{last_seen!r}",
                        sensor,
                        f"sensor {sensor} has been silent for {quiet / 60:.1f} minutes",
                        {"last_seen": last_seen, "silent_s": quiet},
                    )
                )
        return out

    def gap(
        self, sensor: str, lost_envelopes: int, lost_items: int, reason: str
    ) -> list[Candidate]:
        return [
            Candidate(
                rule,
                sensor,
                sensor,
                f"sensor {sensor} reported a gap: {lost_envelopes} batches ({lost_items} items) "
                f"lost: {reason}",
                {"lost_envelopes": lost_envelopes, "lost_items": lost_items, "reason": reason},
            )
            for rule in self._by_kind.get("sensor_gaps", ())
            if rule.matches(sensor)
        ]
