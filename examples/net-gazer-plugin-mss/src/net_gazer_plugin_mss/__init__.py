"""net-gazer-plugin-mss: the TCP MSS each host advertises.

An MSS below what Ethernet allows (1460 bytes over IPv4, 1440 over IPv6) means a tunnel, PPPoE or
an MSS-clamping middlebox on that host's side; where the path's MTU is smaller than the MSS, with
ICMP filtered, connections stall: an MTU black hole.

Two halves, each with its own entry point: :mod:`.sensor` runs in the sensor, :mod:`.collector`
in the collector. This module imports neither, so each process loads only its own half.
"""
