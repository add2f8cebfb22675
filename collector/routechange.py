"""Route change detection between two traces: pure logic, no I/O.

A trace's ``hops`` list holds the responder at each TTL (``""`` for a silent TTL). Two
consecutive traces from one sensor to one destination differ in route when, at some TTL, both
have a responder and the responders differ. A silent TTL in either trace, or a TTL past the end
of the shorter one, is no evidence either way and is ignored: a router that stayed silent once
has not moved the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RouteChange:
    """Where two paths part: the first TTL whose responder differs, and every such TTL."""

    ttl: int
    before: str
    after: str
    ttls: tuple[int, ...]


def route_change(before: Sequence[str], after: Sequence[str]) -> RouteChange | None:
    """The change from path ``before`` to path ``after`` (hop lists by TTL, from TTL 1), or
    None when every TTL that answered in both has the same responder."""
    ttls = tuple(
        ttl
        for ttl, (a, b) in enumerate(zip(before, after, strict=False), start=1)
        if a and b and a != b
    )
    if not ttls:
        return None
    first = ttls[0]
    return RouteChange(ttl=first, before=before[first - 1], after=after[first - 1], ttls=ttls)
