"""Which side of a UDP datagram is the client: netracer-style port rules. No I/O.

UDP has no handshake, so the sensor decides from ports alone, once per flow, on the flow's first
datagram it sees (``orient``):

- a *client* port is at least ``min_client_port`` (default 2048: clients send from ephemeral
  ports, the well-known and low registered ports below it belong to services);
- a *server* port is at most ``max_server_port`` (default 49151: the dynamic range of RFC 6335
  section 6, from 49152 up, is ephemeral and never a service's);
- the datagram's sender is the client when its source port is a client port and its destination
  port a server port; failing that, its receiver is the client when the ports fit the other way
  round (the sensor saw a server's answer first, e.g. it started mid-exchange); failing both, the
  datagram is left out (two services talking, such as NTP from port 123 to port 123, or two
  ephemeral ports).

When both ways fit (a client on port 40000 to a service on 8080, where 8080 could be a client
port too), the sender of the first datagram is the client.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Client ports start here by default (netracer's rule).
MIN_CLIENT_PORT = 2048
#: RFC 6335 section 6: 49152-65535 are dynamic (ephemeral) ports, never a service's.
MAX_SERVER_PORT = 49151

SENDER_IS_CLIENT = 1
RECEIVER_IS_CLIENT = -1
LEFT_OUT = 0


@dataclass(frozen=True, slots=True)
class PortRules:
    min_client_port: int = MIN_CLIENT_PORT
    max_server_port: int = MAX_SERVER_PORT

    def orient(self, sport: int, dport: int) -> int:
        """SENDER_IS_CLIENT, RECEIVER_IS_CLIENT or LEFT_OUT for a flow's first datagram from
        ``sport`` to ``dport``."""
        lo, hi = self.min_client_port, self.max_server_port
        if sport >= lo and 0 < dport <= hi:
            return SENDER_IS_CLIENT
        if dport >= lo and 0 < sport <= hi:
            return RECEIVER_IS_CLIENT
        return LEFT_OUT
