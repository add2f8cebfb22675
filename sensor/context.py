"""The object each sensor plugin receives as ``ctx``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message


@dataclass
class PluginContext:
    """A plugin's view of the sensor.

    ``emit(message)`` queues a protobuf message for the collector: a ``HandshakeRow`` goes into
    the batch as such, any other message travels as an ``Extension`` (``google.protobuf.Any``)
    tagged with the plugin's name, for a collector-side plugin to handle.
    """

    name: str
    sensor_id: str
    site: str
    config: dict[str, Any]
    replay: bool
    #: Whether active probing is allowed: False when replaying unless --probe was given. Plugins
    #: that probe must check it (docs/architecture.md, "Safety").
    probing_allowed: bool
    _emit: Callable[[str, Message], None]
    #: direction(client, server) -> wire_pb2.Direction value, from --local-networks.
    direction: Callable[[str, str], int]
    counters: dict[str, int] = field(default_factory=dict)
    #: --dry-run: a probing plugin logs the probes it would send and sends none.
    dry_run: bool = False
    #: The sensor's own addresses (those of the captured interfaces; empty in a replay), so a
    #: plugin can leave its own traffic out (``ng_bpf_exclude``).
    own_addresses: list[str] = field(default_factory=list)
    #: The plugin's own state, kept for the life of this sensor (module globals would be shared
    #: by every sensor in one process).
    state: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(init=False)

    def __post_init__(self) -> None:
        self.log = logging.getLogger(f"net_gazer.plugin.{self.name}")

    def emit(self, message: Message) -> None:
        self._emit(self.name, message)

    def count(self, key: str, n: int = 1) -> None:
        """Add to a counter of this plugin; counters travel with every batch."""
        self.counters[key] = self.counters.get(key, 0) + n


def bounded_settings(
    ctx: PluginContext, section: str, limits: dict[str, tuple[type, float, float]]
) -> dict[str, Any]:
    """The numbers of ``[plugins.NAME]`` that ``limits`` names (key: (int or float, low, high)),
    checked. A bad value is logged in one sentence and left out, so its default applies: a plugin
    cannot stop the sensor. ``section`` names the table in the message."""
    values: dict[str, Any] = {}
    for key, (kind, low, high) in limits.items():
        if key not in ctx.config:
            continue
        value = ctx.config[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)) or not low <= value <= high:
            ctx.log.error(
                "[%s] %s must be a%s %s from %s to %s, not %r; using the default",
                section,
                key,
                "n" if kind is int else "",
                "integer" if kind is int else "number",
                low if kind is float else int(low),
                high if kind is float else int(high),
                value,
            )
            continue
        values[key] = kind(value)
    return values
