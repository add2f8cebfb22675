"""``net-gazer-lab``: a multi-hop network of Linux network namespaces on this machine.

A client LAN, a gateway (where a sensor runs), a chain of routers with one silent router, an ECMP
pair and a branch, and servers with real TCP and UDP listeners, one of them answering a whole
range of addresses. Addresses come from documentation and private ranges, and no route leads out.

- :mod:`.topology`: the network as data (no I/O);
- :mod:`.locations`: the ``--locations`` file that places the lab in real cities;
- :mod:`.state`: which labs exist, their namespaces and processes;
- :mod:`.builder`: builds and removes a lab with iproute2, sysctl, iptables and ethtool;
- :mod:`.servers`, :mod:`.traffic`: the processes that run inside the namespaces;
- :mod:`.cli`: the command.
"""
