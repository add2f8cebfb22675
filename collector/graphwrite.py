"""What collector plugins hand to the store: parameterised Cypher fragments.

A batch from a sensor is applied as ONE graph query together with the sensor's delivery mark
(docs/architecture.md, "Delivery"). Plugins therefore do not write themselves: they return
:class:`GraphWrite` fragments, and the store joins them into that query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_PARAM = re.compile(r"\$rows\b")


@dataclass(slots=True)
class GraphWrite:
    """One updating clause over a list of rows.

    ``cypher`` is a FOREACH clause (or several) that reads its rows from ``$rows``; it may also use
    ``$sid`` (sensor id), ``$site`` and ``$now`` (collector clock, Unix seconds). Host nodes named
    in ``hosts`` as ``(ip, ts)`` pairs are merged, enriched and stamped by the store before the
    fragment runs, so fragments can simply ``MERGE (h:Host {scope: ..., ip: ...})``. Values are
    never pasted into the text: everything goes through parameters.

    ``edges`` names the ``CONNECTS`` edges the fragment merges, as ``(client, server, dport,
    ts)`` for TCP or ``(client, server, dport, ts, proto)``: the store makes sure they exist
    before the batch query (``proto`` is part of the edge's key). A relationship MERGE in
    FalkorDB (4.16) does not see a relationship that an earlier clause of the same query
    created, so two fragments merging one new edge in one query would make two edges.
    """

    cypher: str
    rows: list[dict[str, Any]]
    hosts: list[tuple[str, float]] = field(default_factory=list)
    #: The collector plugin that returned this write (set by the host, not by plugins).
    plugin: str = field(default="", compare=False)
    edges: Sequence[tuple[str, str, int, float] | tuple[str, str, int, float, str]] = field(
        default_factory=list
    )

    def bind(self, name: str) -> str:
        """The fragment with ``$rows`` renamed to ``$<name>``."""
        return _PARAM.sub(f"${name}", self.cypher)


@dataclass(slots=True, frozen=True)
class SensorInfo:
    """The sensor on the other end of a stream, as its hello described it."""

    id: str
    site: str
    epoch: str
    hostname: str = ""
    version: str = ""


@dataclass(slots=True, frozen=True)
class Loss:
    """A collector plugin's part of one batch that did not reach the graph, and why."""

    plugin: str
    reason: str
