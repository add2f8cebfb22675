"""Alert rules from the collector's configuration file (``[[alert]]`` tables). No I/O.

Each rule has a ``name``, a condition (``when``), optional filters, a hold-down and actions::

    [[alert]]
    name = "slow-web"
    when = "rtt"              # see CONDITIONS
    threshold_ms = 150        # rtt: a sample over this counts
    x = 3                     # at least x ...
    n = 5                     # ... of the last n samples of one destination
    prefix = "203.0.113.0/24" # only destinations in this prefix (optional)
    port = 443                # only this server port (optional)
    sensor = "gw1"            # only this sensor (optional)
    hold_down = 3600          # seconds: one alert per destination per hold-down (default 600)
    actions = ["log", "json_log", "webhook"]
    webhook = "http://127.0.0.1:9000/hook"

A rule that is wrong stops the collector at start with one sentence naming the rule and what
is wrong (:class:`~net_gazer.errors.ConfigError`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from net_gazer.errors import ConfigError

#: Conditions, and the settings each needs (besides the common ones).
CONDITIONS: dict[str, tuple[str, ...]] = {
    "rtt": ("threshold_ms", "x", "n"),
    "loss": ("threshold", "x", "n"),
    "route_change": (),
    "path_contains": (),  # address or asn, checked below
    "new_country": (),
    "sensor_silent": ("minutes",),
    "sensor_gaps": (),
}
ACTIONS = ("log", "json_log", "webhook", "command")
COMMON = {"name", "when", "sensor", "prefix", "port", "hold_down", "actions", "webhook", "command"}
OPTIONAL = {"address", "asn"}
DEFAULT_HOLD_DOWN = 600.0
DEFAULT_ACTIONS = ("log", "json_log")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    when: str
    sensor: str | None = None
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None
    hold_down: float = DEFAULT_HOLD_DOWN
    actions: tuple[str, ...] = DEFAULT_ACTIONS
    webhook: str | None = None
    command: tuple[str, ...] = ()
    threshold: float = 0.0  # rtt: milliseconds; loss: a fraction
    x: int = 1
    n: int = 1
    minutes: float = 0.0
    address: str | None = None
    asn: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def matches(self, sensor: str, dst: str | None = None, port: int | None = None) -> bool:
        """Whether a sample from ``sensor`` to ``dst`` (and ``port``) is this rule's."""
        if self.sensor is not None and sensor != self.sensor:
            return False
        if self.port is not None and port is not None and port != self.port:
            return False
        if self.prefix is not None and dst is not None:
            try:
                addr = ipaddress.ip_address(dst)
            except ValueError:
                return False
            return addr.version == self.prefix.version and addr in self.prefix
        return True

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "when": self.when, "hold_down": self.hold_down,
                               "actions": list(self.actions)}  # fmt: skip
        for key in ("sensor", "port", "address", "asn"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.prefix is not None:
            out["prefix"] = str(self.prefix)
        if self.when == "rtt":
            out.update(threshold_ms=self.threshold, x=self.x, n=self.n)
        elif self.when == "loss":
            out.update(threshold=self.threshold, x=self.x, n=self.n)
        elif self.when == "sensor_silent":
            out["minutes"] = self.minutes
        return out


def _number(name: str, data: dict[str, Any], key: str, low: float, high: float) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(
            f"alert rule {name!r}: {key} must be a number from {low:g} to {high:g}, not {value!r}"
        )
    return float(value)


def _whole(name: str, data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"alert rule {name!r}: {key} must be a whole number from {low} to {high}, not {value!r}"
        )
    return value


def parse_rule(data: Any, index: int) -> Rule:
    if not isinstance(data, dict):
        raise ConfigError(f"alert rule #{index + 1} must be a table ([[alert]]), not {data!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"alert rule #{index + 1} needs a name")
    when = data.get("when")
    if when not in CONDITIONS:
        raise ConfigError(
            f"alert rule {name!r}: when must be one of {', '.join(CONDITIONS)}, not {when!r}"
        )
    allowed = (
        COMMON | OPTIONAL | set(CONDITIONS[when]) | ({"threshold"} if when == "loss" else set())
    )
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(
            f"alert rule {name!r}: unknown setting(s) {', '.join(sorted(unknown))} for when = {when!r}"
        )
    missing = [k for k in CONDITIONS[when] if k not in data]
    if missing:
        raise ConfigError(f"alert rule {name!r}: when = {when!r} needs {', '.join(missing)}")
    kw: dict[str, Any] = {"name": name, "when": when}
    if "sensor" in data:
        if not isinstance(data["sensor"], str) or not data["sensor"]:
            raise ConfigError(f"alert rule {name!r}: sensor must be a sensor id")
        kw["sensor"] = data["sensor"]
    if "prefix" in data:
        try:
            kw["prefix"] = ipaddress.ip_network(str(data["prefix"]), strict=False)
        except ValueError:
            raise ConfigError(
                f"alert rule {name!r}: prefix {data['prefix']!r} is not an IP prefix"
            ) from None
    if "port" in data:
        kw["port"] = _whole(name, data, "port", 1, 65535)
    if "hold_down" in data:
        kw["hold_down"] = _number(name, data, "hold_down", 0, 365 * 86400)
    if when == "rtt":
        kw["threshold"] = _number(name, data, "threshold_ms", 0, 3_600_000)
    if when == "loss":
        kw["threshold"] = _number(name, data, "threshold", 0, 1)
    if when in ("rtt", "loss"):
        kw["n"] = _whole(name, data, "n", 1, 10_000)
        kw["x"] = _whole(name, data, "x", 1, kw["n"])
    if when == "sensor_silent":
        kw["minutes"] = _number(name, data, "minutes", 0.1, 525_600)
    if when == "path_contains":
        if "address" in data:
            try:
                kw["address"] = str(ipaddress.ip_address(str(data["address"])))
            except ValueError:
                raise ConfigError(
                    f"alert rule {name!r}: address {data['address']!r} is not an IP address"
                ) from None
        if "asn" in data:
            kw["asn"] = _whole(name, data, "asn", 0, 2**32 - 1)
        if "address" not in kw and "asn" not in kw:
            raise ConfigError(
                f"alert rule {name!r}: when = 'path_contains' needs an address or an asn"
            )
    elif set(data) & OPTIONAL:
        raise ConfigError(f"alert rule {name!r}: address and asn belong to when = 'path_contains'")
    actions = data.get("actions", list(DEFAULT_ACTIONS))
    if not isinstance(actions, list) or not actions or any(a not in ACTIONS for a in actions):
        raise ConfigError(
            f"alert rule {name!r}: actions must be a list of {', '.join(ACTIONS)}, not {actions!r}"
        )
    kw["actions"] = tuple(dict.fromkeys(actions))
    if "webhook" in kw["actions"]:
        url = data.get("webhook")
        parsed = urlparse(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(
                f'alert rule {name!r}: the webhook action needs webhook = "http(s)://host/path", not {url!r}'
            )
        kw["webhook"] = url
    if "command" in kw["actions"]:
        cmd = data.get("command")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) and c for c in cmd):
            raise ConfigError(
                f'alert rule {name!r}: the command action needs command = ["program", "arg", ...] (run without a shell), not {cmd!r}'
            )
        kw["command"] = tuple(cmd)
    return Rule(**kw)


def parse_rules(items: Any) -> list[Rule]:
    """The ``[[alert]]`` tables, checked; ConfigError (one sentence) for the first bad one."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError("alert rules are [[alert]] tables")
    rules = [parse_rule(item, i) for i, item in enumerate(items)]
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise ConfigError(
                f"alert rule {r.name!r} is defined twice; give each rule its own name"
            )
        seen.add(r.name)
    return rules
