"""The built-in ``traceroute`` plugin: the path to every new remote peer, by UDP, ICMP echo or
TCP SYN probes (docs/traceroute.md).

``packets`` builds probes and ``matcher`` reads replies, both without I/O; ``engine`` decides
what to probe when (pacing, retries, the stop set); ``prober`` owns the raw sockets; ``sensor``
and ``collector`` are the two halves on the public plugin API.
"""
