"""Traffic for the lab: real TCP connections (HTTP- and SSH-like) and UDP exchanges from the client
to every server, at a rate and for a duration, then it stops by itself.

:func:`plan` picks the destinations (no I/O); :func:`run` makes the connections. ``net-gazer-lab
traffic`` runs this module inside the client's namespace::

    python -m net_gazer.lab.traffic RATE DURATION SEED [--json]

Each connection comes from a fresh ephemeral port, so the ECMP pair's L4 hash spreads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import socket
import sys
import time
from dataclasses import asdict, dataclass

from net_gazer.lab.topology import Topology, default

CONNECT_TIMEOUT = 3.0
EXCHANGE_TIMEOUT = 5.0  # a whole connection or UDP exchange, after which it counts as failed


@dataclass(frozen=True, slots=True)
class Target:
    node: str
    proto: str  # "tcp" or "udp"
    port: int
    kind: str  # "http", "ssh", "echo"
    #: A fixed address, or a prefix: then each connection picks an address in it (AnyIP).
    dst: str


@dataclass(slots=True)
class Result:
    node: str
    proto: str
    dst: str
    port: int
    sport: int
    ok: bool
    error: str = ""


def plan(topo: Topology) -> list[Target]:
    """Every service of every server on both families; AnyIP servers on their ranges."""
    out = []
    for name in topo.servers:
        node = topo.node(name)
        dsts = list(node.anyip) or [str(topo.address(name, f)) for f in (4, 6)]
        out += [Target(name, s.proto, s.port, s.kind, d) for s in node.services for d in dsts]
    return out


def pick(target: Target, rng: random.Random) -> str:
    """The address to connect to: a random host of an AnyIP range, or the fixed address."""
    if "/" not in target.dst:
        return target.dst
    net = ipaddress.ip_network(target.dst)
    last = min(net.num_addresses - 2, 0xFFFF)
    return str(net[rng.randint(1, last)])


async def _tcp(t: Target, dst: str) -> int:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(dst, t.port), CONNECT_TIMEOUT)
    sport = int(writer.get_extra_info("sockname")[1])
    try:
        if t.kind == "ssh":
            banner = await reader.readline()
            if not banner.startswith(b"SSH-"):
                raise ConnectionError(f"no SSH banner from {dst}:{t.port}")
            writer.write(b"SSH-2.0-net-gazer-lab-client\r\n")
        else:
            host = f"[{dst}]" if ":" in dst else dst
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            reply = await reader.read(65536)
            if not reply.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"no HTTP answer from {dst}:{t.port}")
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return sport


async def _udp(t: Target, dst: str, seq: int) -> int:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (dst, t.port))
        payload = f"net-gazer-lab {seq}".encode()
        await loop.sock_sendall(sock, payload)
        if await loop.sock_recv(sock, 2048) != payload:
            raise ConnectionError(f"a wrong echo from {dst}:{t.port}")
        return int(sock.getsockname()[1])


async def _one(t: Target, dst: str, seq: int) -> Result:
    sport = 0
    try:
        coro = _tcp(t, dst) if t.proto == "tcp" else _udp(t, dst, seq)
        sport = await asyncio.wait_for(coro, EXCHANGE_TIMEOUT)
        return Result(t.node, t.proto, dst, t.port, sport, True)
    except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return Result(t.node, t.proto, dst, t.port, sport, False, str(exc) or type(exc).__name__)


async def run(targets: list[Target], rate: float, duration: float, seed: int = 0) -> list[Result]:
    """``rate`` connections per second for ``duration`` seconds (at least one), round robin over
    ``targets`` in a shuffled order; returns when the last one has finished or timed out."""
    rng = random.Random(seed)
    order = list(targets)
    rng.shuffle(order)
    count = max(1, round(rate * duration))
    start = time.monotonic()
    tasks = []
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = order[i % len(order)]
        tasks.append(asyncio.create_task(_one(t, pick(t, rng), i)))
    return list(await asyncio.gather(*tasks))


def summary(results: list[Result], seconds: float) -> str:
    tcp = sum(r.proto == "tcp" for r in results)
    ok = sum(r.ok for r in results)
    line = (
        f"{len(results)} connections ({tcp} tcp, {len(results) - tcp} udp) in {seconds:.1f} s: "
        f"{ok} answered, {len(results) - ok} failed"
    )
    failed = [r for r in results if not r.ok]
    if failed:
        line += (
            f" (first: {failed[0].proto} {failed[0].dst} port {failed[0].port}: {failed[0].error})"
        )
    return line


def main(argv: list[str]) -> int:
    targets = plan(default())
    rate, duration, seed = float(argv[0]), float(argv[1]), int(argv[2])
    started = time.monotonic()
    try:
        results = asyncio.run(run(targets, rate, duration, seed))
    except KeyboardInterrupt:
        return 130
    if "--json" in argv[3:]:
        print(json.dumps([asdict(r) for r in results]))
    else:
        print(summary(results, time.monotonic() - started))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
