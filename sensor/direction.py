"""Direction of a connection, from the gateway's local networks (``--local-networks``)."""

from __future__ import annotations

from net_gazer.netaddr import NetworkSet
from net_gazer.v1 import wire_pb2

#: Client/server pairs remembered at most; the cache starts over past it.
CACHE_SIZE = 100_000


class Direction:
    """``outgoing`` (client local), ``incoming`` (server local), ``internal`` (both) or ``transit``
    (neither), as ``wire_pb2.Direction`` values. Cached per pair: the same pairs recur."""

    def __init__(self, local: NetworkSet) -> None:
        self.local = local
        self._cache: dict[tuple[str, str], int] = {}

    def set_local(self, local: NetworkSet) -> None:
        self.local = local
        self._cache.clear()

    def __call__(self, client: str, server: str) -> int:
        key = (client, server)
        d = self._cache.get(key)
        if d is None:
            c, s = client in self.local, server in self.local
            d = (
                wire_pb2.DIRECTION_INTERNAL
                if c and s
                else wire_pb2.DIRECTION_OUTGOING
                if c
                else wire_pb2.DIRECTION_INCOMING
                if s
                else wire_pb2.DIRECTION_TRANSIT
            )
            if len(self._cache) > CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = d
        return d
