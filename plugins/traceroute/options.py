"""The plugin's settings (``[plugins.traceroute]``), checked once: a bad value is one sentence."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from net_gazer.sensor import NetworkSet, parse_networks

METHODS = ("tcp", "udp", "icmp")
MODES = ("paris", "classic")
#: Source ports of TCP and UDP probes: above Linux's ephemeral range (32768-60999), so no local
#: connection ever shares one, and the sensor's filter can leave the probes out.
FLOW_PORTS = (61000, 61999)
DEFAULT_CONTACT = "net-gazer traceroute; the operator of this gateway has not set a contact"


@dataclass
class Options:
    #: The default method, and methods per observed destination port.
    method: str = "tcp"
    methods: dict[int, str] = field(default_factory=dict)
    #: "paris" keeps the flow fields constant for a whole trace; "classic" varies the source
    #: port (TCP, UDP) or the identifier (ICMP) per probe, as traditional traceroute does.
    mode: str = "paris"
    #: The destination port of UDP probes (traceroute's 33434: usually closed, so the
    #: destination answers port unreachable).
    udp_port: int = 33434
    flow_ports: tuple[int, int] = FLOW_PORTS
    max_ttl: int = 30
    #: TTLs probed at once when the distance to a destination is not known yet.
    window: int = 8
    #: Consecutive silent TTLs after which a trace that did not reach its destination stops.
    max_silent: int = 4
    #: Seconds to wait for a reply, and how many times a silent TTL is probed again.
    timeout: float = 1.0
    retries: int = 2
    #: The global budget: probes per second (and the burst it allows).
    pps: float = 100.0
    #: Pacing per router, matched to Linux's default ICMP rate limit (a burst of 6, then one per
    #: second for each destination of its errors: us), with a 10 % margin: pacing at exactly the
    #: router's rate loses the probes that arrive a moment before its token. 0 turns it off.
    router_burst: int = 6
    router_rate: float = 0.9
    #: Traces in flight at once, and traces waiting (beyond it, new ones are dropped, counted).
    max_traces: int = 64
    max_queue: int = 1024
    #: A destination is traced again only after this many seconds (while traffic continues).
    dedup_window: float = 600.0
    #: The stop set: hops known from earlier traces are not probed again.
    stop_set: bool = True
    stop_set_lifetime: float = 3600.0
    #: Every Nth trace probes from TTL 1 whatever the stop set knows (route changes near the
    #: sensor are seen); traces that agree before the stop set trusts a hop.
    full_every: int = 10
    stop_set_min_traces: int = 3
    #: Trace the client of incoming connections too (the server of outgoing ones always).
    incoming: bool = True
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    contact: str = DEFAULT_CONTACT
    #: Seconds the stopping sensor waits for the traces in flight.
    drain: float = 1.0
    allow_set: NetworkSet | None = field(default=None, repr=False)
    deny_set: NetworkSet = field(default_factory=lambda: NetworkSet([]), repr=False)

    def method_for(self, port: int) -> str:
        return self.methods.get(port, self.method)


def _number(key: str, value: Any, kind: type, low: float, high: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"[plugins.traceroute] {key} must be a number, not {value!r}")
    if kind is int and value != int(value):
        raise ValueError(f"[plugins.traceroute] {key} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise ValueError(
            f"[plugins.traceroute] {key} must be within {low:g}..{high:g}, not {value!r}"
        )
    return kind(value)


RANGES: dict[str, tuple[type, float, float]] = {
    "udp_port": (int, 1, 65535),
    "max_ttl": (int, 1, 255),
    "window": (int, 1, 64),
    "max_silent": (int, 1, 64),
    "timeout": (float, 0.01, 60),
    "retries": (int, 0, 10),
    "pps": (float, 0.1, 100_000),
    "router_burst": (int, 0, 1000),
    "router_rate": (float, 0, 10_000),
    "max_traces": (int, 1, 100_000),
    "max_queue": (int, 0, 10_000_000),
    "dedup_window": (float, 0, 30 * 86400),
    "stop_set_lifetime": (float, 0, 30 * 86400),
    "full_every": (int, 1, 1_000_000),
    "stop_set_min_traces": (int, 1, 1000),
    "drain": (float, 0, 60),
}


def parse_options(config: dict[str, Any]) -> Options:
    """``[plugins.traceroute]`` as Options; ValueError with one sentence when a value is bad."""
    opts = Options()
    known = {f.name for f in fields(Options)} - {"allow_set", "deny_set"}
    for key, value in config.items():
        if key in ("enabled",):
            continue
        if key not in known:
            raise ValueError(f"[plugins.traceroute] has no setting {key!r}")
        if key in RANGES:
            setattr(opts, key, _number(key, value, *RANGES[key]))
        elif key in ("method", "mode"):
            choices = METHODS if key == "method" else MODES
            if value not in choices:
                raise ValueError(
                    f"[plugins.traceroute] {key} must be one of {', '.join(choices)}, not {value!r}"
                )
            setattr(opts, key, value)
        elif key == "methods":
            if not isinstance(value, dict):
                raise ValueError("[plugins.traceroute] methods must be a table of port = method")
            for port, method in value.items():
                if not str(port).isdigit() or not 0 < int(port) <= 65535 or method not in METHODS:
                    raise ValueError(
                        f"[plugins.traceroute] methods: {port!r} = {method!r} is not a port and "
                        f"one of {', '.join(METHODS)}"
                    )
                opts.methods[int(port)] = str(method)
        elif key == "flow_ports":
            ok = (
                isinstance(value, list)
                and len(value) == 2
                and all(isinstance(v, int) and 1024 <= v <= 65535 for v in value)
                and value[0] <= value[1]
            )
            if not ok:
                raise ValueError(
                    "[plugins.traceroute] flow_ports must be [first, last], two ports within "
                    f"1024..65535, not {value!r}"
                )
            opts.flow_ports = (int(value[0]), int(value[1]))
        elif key in ("allow", "deny"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"[plugins.traceroute] {key} must be a list of prefixes")
            setattr(opts, key, list(value))
        elif key in ("stop_set", "incoming"):
            if not isinstance(value, bool):
                raise ValueError(f"[plugins.traceroute] {key} must be true or false")
            setattr(opts, key, value)
        elif key == "contact":
            if not isinstance(value, str) or len(value.encode()) > 512:
                raise ValueError(
                    "[plugins.traceroute] contact must be a string of 512 bytes at most"
                )
            opts.contact = value
    try:
        if opts.allow:
            opts.allow_set = NetworkSet(parse_networks(opts.allow))
        opts.deny_set = NetworkSet(parse_networks(opts.deny) if opts.deny else [])
    except ValueError as exc:
        raise ValueError(f"[plugins.traceroute] allow/deny: {exc}") from None
    return opts
