"""The hello a sensor opens every stream with: who it is, what it captures, what it runs."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from net_gazer import PROTOCOL_MINOR, __version__
from net_gazer.netaddr import hosts, interface_addresses
from net_gazer.v1 import wire_pb2

if TYPE_CHECKING:
    from net_gazer.sensor.pipeline import Sensor


def machine_id() -> str:
    """``/etc/machine-id``, so the collector can flag two machines claiming one sensor id."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip()
    return ""


def hello(sensor: Sensor) -> wire_pb2.Hello:
    """The hello, read afresh at every (re)connect in one ``ip addr`` call: addresses change
    (DHCP, failover)."""
    live = [h.name for h in sensor.handles if h.live]
    current = interface_addresses(live) if live else {}

    def own(name: str) -> list[str]:
        return hosts(current if name == "any" else {name: current.get(name, [])})

    return wire_pb2.Hello(
        hostname=socket.gethostname(),
        machine_id=machine_id(),
        version=__version__,
        protocol_minor=PROTOCOL_MINOR,
        interfaces=[
            wire_pb2.Interface(
                name=h.name,
                role=h.role,
                linktype=h.linktype,
                addresses=own(h.name) if h.live else [],
            )
            for h in sensor.handles
        ],
        own_addresses=sensor.own_addresses,
        local_networks=[str(n) for n in sensor.direction.local.networks],
        site=sensor.cfg.site,
        plugins=[p.name for p in sensor.host.plugins()],
        replay=sensor.cfg.replay,
    )
