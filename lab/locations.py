"""The ``--locations`` file for the collector: the lab's prefixes placed in real cities. No I/O.

Each router's own addresses get a host entry (``/32``, ``/128``) in the router's city, since a
link is shared by two routers in two cities; the client LAN, each server LAN and the AnyIP range
get one entry per prefix. The longest match wins, so a host entry beats the link's network.
"""

from __future__ import annotations

import ipaddress

from net_gazer.lab.topology import Node, Topology
from net_gazer.netaddr import IPNetwork


def entries(topo: Topology, lab: str) -> list[tuple[IPNetwork, str, Node]]:
    """(prefix, site, node) for every placed prefix, in file order."""
    out: list[tuple[IPNetwork, str, Node]] = []
    for node in topo.nodes:
        site = f"lab-{lab}-{node.name}"
        if node.forwards:
            for _, iface in topo.addresses(node.name):
                out.append((ipaddress.ip_network(iface.ip), site, node))
        else:
            for _, iface in topo.addresses(node.name):
                out.append((iface.network, site, node))
            out.extend((ipaddress.ip_network(p), site, node) for p in node.anyip)
    seen: set[IPNetwork] = set()
    unique = []
    for entry in out:  # the client LAN is the client's, not the gateway's too
        if entry[0] not in seen:
            seen.add(entry[0])
            unique.append(entry)
    return unique


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(topo: Topology, lab: str) -> str:
    """The TOML text: one ``[[location]]`` table per prefix."""
    lines = [
        f"# net-gazer-lab {lab}: where the lab's routers and servers are drawn on the map.",
        "# Give it to the collector: net-gazer-collector --locations FILE",
        "",
    ]
    for prefix, site, node in entries(topo, lab):
        c = node.city
        lines += [
            "[[location]]",
            f"prefix = {_quote(str(prefix))}",
            f"site = {_quote(site)}",
            f"city = {_quote(c.name)}",
            f"country_code = {_quote(c.country_code)}",
            f"lat = {c.lat}",
            f"lon = {c.lon}",
            "",
        ]
    return "\n".join(lines)
