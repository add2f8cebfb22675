"""The built-in ``udp`` plugin: UDP flows per (client, server, port), with packets and bytes in
each direction and whether the server answered, as ``CONNECTS {proto: "udp"}`` edges.

The sensor half (:mod:`.sensor`) follows the flows (:mod:`.flows`), decides client and server
by netracer-style port rules (:mod:`.rules`) and samples flows in the kernel (:mod:`.sampling`);
the collector half (:mod:`.collector`) writes the rows. See docs/udp.md.
"""
