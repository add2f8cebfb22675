"""Address helpers shared by sensor and collector: scope, direction, and this host's addresses.

Plugins reach these through the public APIs, ``net_gazer.sensor`` and ``net_gazer.collector``,
which re-export them; this module is shared by both processes and imports neither.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import shutil
import socket
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

from net_gazer.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

GLOBAL_SCOPE = "global"

# Fallback "local" networks when none are configured and there are no interfaces to read them from
# (pcap replay): the private, CGNAT, ULA and link-local ranges.
PRIVATE_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # RFC 6598 shared address space (CGNAT)
    "169.254.0.0/16",
    "fc00::/7",  # RFC 4193 unique local
    "fe80::/10",
)


@functools.lru_cache(maxsize=65_536)
def addr_info(ip: str) -> tuple[str, int, bool]:
    """(canonical text, family, globally routable) of an address; ValueError if it is none.
    Cached: the collector sees the same addresses over and over."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 6 and addr.scope_id is not None:
        raise ValueError(f"{ip!r} carries a scope id, which means nothing beyond its host")
    return str(addr), addr.version, addr.is_global


def scope_of(ip: str, site: str) -> str:
    """``"global"`` for globally routable addresses, else the sensor's site: 10.0.0.1 at two sites
    stays two hosts (docs/schema.md)."""
    return GLOBAL_SCOPE if addr_info(ip)[2] else site


def ntop(family: int, packed: bytes) -> str:
    """The text form of a packed address (4 or 16 bytes) of ``family`` 4 or 6.

    ``inet_ntop`` is about ten times cheaper than :mod:`ipaddress` and runs for every new attempt
    (a flood makes one per packet); its output is the same canonical text for IPv4, and for IPv6
    the RFC 5952 form that ``ipaddress`` also prints.
    """
    return socket.inet_ntop(socket.AF_INET if family == 4 else socket.AF_INET6, packed)


def parse_hostport(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) split and checked; a ConfigError names ``what`` and
    gives an example."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {value!r} is not HOST:PORT, e.g. 127.0.0.1:50051")
    return host, int(port)


#: A gRPC target naming a Unix socket: ``unix:/path`` (``unix:relative/path`` is relative to the
#: working directory). A socket file crosses network namespaces, which the lab relies on.
UNIX_TARGET = "unix:"


def collector_endpoint(value: str, what: str = "collector address") -> tuple[str, int] | None:
    """The ``(host, port)`` of a TCP address, or None for a Unix socket (``unix:/path``), which
    is local to the machine. Either way ``value`` is what gRPC takes as its target."""
    if value.startswith(UNIX_TARGET):
        path = value.removeprefix(UNIX_TARGET)
        if not path.strip("/") or "\0" in path:
            raise ConfigError(
                f"{what} {value!r} names no socket file, e.g. unix:/run/net-gazer.sock"
            )
        return None
    try:
        return parse_hostport(value, what)
    except ConfigError:
        raise ConfigError(
            f"{what} {value!r} is not HOST:PORT or unix:/path, e.g. 127.0.0.1:50051"
        ) from None


def collector_targets(value: str, what: str = "collector address") -> list[str]:
    """The addresses of ``--collector A[,B...]``, each checked by :func:`collector_endpoint`;
    the sensor fails over from one to the next in turn."""
    targets = [t.strip() for t in value.split(",") if t.strip()]
    if not targets:
        raise ConfigError(f"{what} {value!r} names no collector, e.g. 127.0.0.1:50051")
    for t in targets:
        collector_endpoint(t, what)
    return targets


def parse_networks(items: Iterable[str]) -> list[IPNetwork]:
    """Parse CIDRs (host bits allowed); raise ValueError naming the bad item."""
    nets: list[IPNetwork] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"{text!r} is not an IP network in CIDR form such as 192.168.1.0/24"
            ) from None
    return nets


class NetworkSet:
    """Membership test for a set of networks, fast for the handful a gateway has."""

    def __init__(self, networks: Sequence[IPNetwork]) -> None:
        self.networks = list(networks)
        self._v4 = [(int(n.network_address), int(n.netmask)) for n in networks if n.version == 4]
        self._v6 = [(int(n.network_address), int(n.netmask)) for n in networks if n.version == 6]

    def __contains__(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        value = int(addr)
        nets = self._v4 if addr.version == 4 else self._v6
        return any(value & mask == net for net, mask in nets)

    def __bool__(self) -> bool:
        return bool(self.networks)


def _ip_json(*args: str) -> list[dict[str, Any]]:
    """``ip -json ARGS`` parsed; [] when iproute2 is missing or fails."""
    ip = shutil.which("ip")
    if ip is None:
        return []
    out = subprocess.run([ip, "-json", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return []
    result: list[dict[str, Any]] = json.loads(out.stdout or "[]")
    return result


def interface_addresses(names: Iterable[str] | None = None) -> dict[str, list[IPInterface]]:
    """The addresses (as interface networks, e.g. 192.168.1.1/24) of this host's interfaces,
    all of them when ``names`` is None or holds ``any``. One ``ip -json addr`` call."""
    wanted = None if names is None else set(names)
    if wanted is not None and "any" in wanted:
        wanted = None
    result: dict[str, list[IPInterface]] = {}
    for link in _ip_json("addr"):
        name = link.get("ifname", "")
        if wanted is not None and name not in wanted:
            continue
        found: list[IPInterface] = []
        for a in link.get("addr_info", []):
            try:
                found.append(ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}"))
            except (KeyError, ValueError):
                continue
        result[name] = found
    return result


def networks(addresses: dict[str, list[IPInterface]]) -> list[IPNetwork]:
    """The networks of interface addresses, for direction."""
    return [a.network for found in addresses.values() for a in found]


def hosts(addresses: dict[str, list[IPInterface]]) -> list[str]:
    """The host addresses of interface addresses, without link-local ones: those never start a
    traced path."""
    return [str(a.ip) for found in addresses.values() for a in found if not a.ip.is_link_local]


def default_route_interface() -> str | None:
    """The interface of the IPv4 (else IPv6) default route, or None."""
    for family in ("-4", "-6"):
        for route in _ip_json(family, "route", "show", "default"):
            dev = route.get("dev")
            if dev:
                return str(dev)
    return None
