"""The lab's network as plain data: nodes, links, addresses, routes and services. No I/O.

::

    client ── gw ── r1 ── r2 ──┬── r3a ──┬── r4 ── srv1
                     │  (silent)└── r3b ──┘   └─── any (AnyIP 203.0.113.0/24)
                     └── r5 ── srv2

Every link carries IPv4 and IPv6, from documentation and private ranges only. Routes are
computed from the links (shortest paths; equal-cost neighbours become ECMP nexthops), so that
adding a link never means editing route tables by hand. Nothing routes beyond these prefixes:
there is no default route anywhere.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from net_gazer.netaddr import IPAddress, IPInterface, IPNetwork

CLIENT, GATEWAY = "client", "gw"
#: The gateway's interfaces, as the sensor captures them (``-i lan0:lan -i wan0:wan``).
LAN_IF, WAN_IF = "lan0", "wan0"


@dataclass(frozen=True, slots=True)
class City:
    name: str
    country_code: str  # ISO 3166-1 alpha-2
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Service:
    proto: str  # "tcp" or "udp"
    port: int
    kind: str  # "http", "ssh" (TCP) or "echo" (UDP)


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kind: str  # "client", "gateway", "router" or "server"
    city: City
    services: tuple[Service, ...] = ()
    #: Prefixes this node answers on every address of (``ip route add local PREFIX dev lo``).
    anyip: tuple[str, ...] = ()

    @property
    def forwards(self) -> bool:
        return self.kind in ("gateway", "router")


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair between ``a`` and ``b``; host numbers pick the addresses in both networks."""

    a: str
    a_if: str
    b: str
    b_if: str
    v4: str
    v6: str
    a_host: int = 1
    b_host: int = 2

    def networks(self) -> tuple[IPNetwork, IPNetwork]:
        return ipaddress.ip_network(self.v4), ipaddress.ip_network(self.v6)

    def interfaces(self, node: str) -> list[IPInterface]:
        host = self.a_host if node == self.a else self.b_host
        return [ipaddress.ip_interface(f"{net[host]}/{net.prefixlen}") for net in self.networks()]

    def peer(self, node: str) -> str:
        return self.b if node == self.a else self.a

    def ifname(self, node: str) -> str:
        return self.a_if if node == self.a else self.b_if


@dataclass(frozen=True, slots=True)
class Route:
    dst: IPNetwork
    via: tuple[IPAddress, ...]  # several: ECMP


@dataclass(frozen=True)
class Topology:
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    #: The router that drops its own ICMP time-exceeded ("" for none).
    silent: str
    #: The two routers between which the path splits (ECMP, L4 hash).
    ecmp: tuple[str, str]
    #: The router where a second branch leaves the main chain.
    branch: str
    _by_name: dict[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {n.name: n for n in self.nodes})

    def node(self, name: str) -> Node:
        return self._by_name[name]

    @property
    def routers(self) -> list[str]:
        return [n.name for n in self.nodes if n.kind == "router"]

    @property
    def servers(self) -> list[str]:
        return [n.name for n in self.nodes if n.kind == "server"]

    def links_of(self, node: str) -> list[Link]:
        return [link for link in self.links if node in (link.a, link.b)]

    def addresses(self, node: str) -> list[tuple[str, IPInterface]]:
        """(interface, address) of every address the node holds on its links."""
        return [
            (link.ifname(node), i) for link in self.links_of(node) for i in link.interfaces(node)
        ]

    def address(self, node: str, family: int) -> IPAddress:
        """The node's first address of ``family`` (a server's service address)."""
        return next(i.ip for _, i in self.addresses(node) if i.version == family)

    def prefixes(self) -> dict[IPNetwork, set[str]]:
        """Every prefix of the lab, with the nodes directly attached to it."""
        out: dict[IPNetwork, set[str]] = {}
        for link in self.links:
            for net in link.networks():
                out.setdefault(net, set()).update((link.a, link.b))
        for n in self.nodes:
            for p in n.anyip:
                out.setdefault(ipaddress.ip_network(p), set()).add(n.name)
        return out

    def all_prefixes(self) -> list[IPNetwork]:
        return sorted(self.prefixes(), key=lambda n: (n.version, n))

    def routes(self, node: str) -> list[Route]:
        """The routes of ``node``: to every prefix it is not attached to, via the neighbours on
        its shortest paths there (two or more of them: ECMP). Only forwarding nodes carry
        transit traffic."""
        routes = []
        for net, attached in sorted(self.prefixes().items(), key=lambda kv: (kv[0].version, kv[0])):
            if node in attached:
                continue
            dist = self._distances(attached)
            hops = [
                (dist[peer], link)
                for link in self.links_of(node)
                if (peer := link.peer(node)) in dist
                and (dist[peer] == 0 or self.node(peer).forwards)
            ]
            if not hops:
                continue
            best = min(d for d, _ in hops)
            via = tuple(
                next(i.ip for i in link.interfaces(link.peer(node)) if i.version == net.version)
                for d, link in hops
                if d == best
            )
            routes.append(Route(net, via))
        return routes

    def _distances(self, sources: Iterable[str]) -> dict[str, int]:
        """Hops from each node to the nearest of ``sources``, through forwarding nodes only."""
        dist = dict.fromkeys(sources, 0)
        queue = deque(dist)
        while queue:
            here = queue.popleft()
            if dist[here] > 0 and not self.node(here).forwards:
                continue  # a host is an end, not a transit
            for link in self.links_of(here):
                peer = link.peer(here)
                if peer not in dist:
                    dist[peer] = dist[here] + 1
                    queue.append(peer)
        return dist

    def local_networks(self) -> list[IPNetwork]:
        """The client LAN: what the gateway's sensor counts as its own side."""
        link = next(link for link in self.links_of(GATEWAY) if link.ifname(GATEWAY) == LAN_IF)
        return list(link.networks())


WEB = (Service("tcp", 80, "http"), Service("tcp", 443, "http"), Service("tcp", 22, "ssh"))
DNS = Service("udp", 53, "echo")

BERLIN = City("Berlin", "DE", 52.52, 13.40)


def _transit(k: int, a: str, a_if: str, b: str, b_if: str) -> Link:
    """Transit link ``k``: 198.51.100.(8k)/29 and 2001:db8:100:k::/64, ``a`` is .1, ``b`` .2."""
    return Link(a, a_if, b, b_if, f"198.51.100.{8 * k}/29", f"2001:db8:100:{k:x}::/64")


def _lan(a: str, a_if: str, b: str, v4: str, v6: str) -> Link:
    """A server LAN: the router is host 1, the server host 10."""
    return Link(a, a_if, b, "eth0", v4, v6, a_host=1, b_host=10)


def default(silent: str = "r2") -> Topology:
    """The lab: a client LAN, the gateway, five routers (r3a/r3b are the ECMP pair, r5 the
    branch) and three servers, one of which answers a whole range of addresses."""
    nodes = (
        Node(CLIENT, "client", BERLIN),
        Node(GATEWAY, "gateway", BERLIN),
        Node("r1", "router", City("Frankfurt", "DE", 50.11, 8.68)),
        Node("r2", "router", City("Amsterdam", "NL", 52.37, 4.90)),
        Node("r3a", "router", City("London", "GB", 51.51, -0.13)),
        Node("r3b", "router", City("Paris", "FR", 48.86, 2.35)),
        Node("r4", "router", City("New York", "US", 40.71, -74.01)),
        Node("r5", "router", City("Vienna", "AT", 48.21, 16.37)),
        Node("srv1", "server", City("Ashburn", "US", 39.04, -77.49), (*WEB, DNS)),
        Node("srv2", "server", City("Zurich", "CH", 47.37, 8.54), (WEB[0], WEB[2], DNS)),
        Node(
            "any",
            "server",
            City("Chicago", "US", 41.88, -87.63),
            WEB[:2],
            anyip=("203.0.113.0/24", "2001:db8:203::/64"),
        ),
    )
    links = (
        Link(GATEWAY, LAN_IF, CLIENT, "eth0", "10.77.1.0/24", "fd00:77:1::/64", 1, 10),
        _transit(0, GATEWAY, WAN_IF, "r1", "to-gw"),
        _transit(1, "r1", "to-r2", "r2", "to-r1"),
        _transit(2, "r2", "to-r3a", "r3a", "to-r2"),
        _transit(3, "r2", "to-r3b", "r3b", "to-r2"),
        _transit(4, "r3a", "to-r4", "r4", "to-r3a"),
        _transit(5, "r3b", "to-r4", "r4", "to-r3b"),
        _transit(6, "r1", "to-r5", "r5", "to-r1"),
        _lan("r4", "to-srv1", "srv1", "192.0.2.0/26", "2001:db8:2:1::/64"),
        _lan("r4", "to-any", "any", "192.0.2.64/26", "2001:db8:2:2::/64"),
        _lan("r5", "to-srv2", "srv2", "192.0.2.128/26", "2001:db8:2:3::/64"),
    )
    if silent and silent not in {n.name for n in nodes if n.kind == "router"}:
        raise ValueError(f"{silent!r} is not a router of the lab")
    return Topology(nodes, links, silent=silent, ecmp=("r3a", "r3b"), branch="r1")
