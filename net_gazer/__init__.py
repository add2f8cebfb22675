"""net-gazer: see the network paths behind a gateway's traffic.

The distribution installs these packages:

- ``net_gazer.sensor``: the gateway daemon (capture, handshake tracking, plugin host, transport);
- ``net_gazer.plugins``: the built-in plugins, registered through entry points like any other;
- ``net_gazer.collector``: gRPC ingest, graph store (FalkorDB) and the web viewer;
- ``net_gazer.v1``: the wire protocol, generated from ``proto/net_gazer/v1/*.proto``.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: Minor version of the wire protocol. A collector accepts sensors one minor version older.
PROTOCOL_MINOR = 1
