"""The lab's servers: real TCP listeners (HTTP- and SSH-like) and a UDP echo, on every address of
the namespace they run in (IPv4 and IPv6, and a whole AnyIP range where the namespace has one).

``net-gazer-lab up`` starts one per server namespace::

    python -m net_gazer.lab.servers '[{"proto": "tcp", "port": 80, "kind": "http"}, ...]' READY

and the process writes its PID to ``READY`` once every socket listens. It runs until it is signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import cast

from net_gazer.lab.topology import Service

log = logging.getLogger(__name__)

READ_TIMEOUT = 5.0  # seconds a client may take to speak
BODY = b"net-gazer lab\n"
SSH_BANNER = b"SSH-2.0-net-gazer-lab\r\n"


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(
        OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError
    ):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
        await writer.drain()
    await _close(writer)


async def _ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(
        OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError
    ):
        writer.write(SSH_BANNER)
        await writer.drain()
        await asyncio.wait_for(reader.readline(), READ_TIMEOUT)  # the client's banner
    await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.transport.sendto(data, addr)


def _udp_socket(family: socket.AddressFamily, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    return sock


async def serve(services: list[Service], ready: Path) -> None:
    loop = asyncio.get_running_loop()
    keep: list[object] = []
    for s in services:
        if s.proto == "tcp":
            handler = _http if s.kind == "http" else _ssh
            # host=None: one socket per family, on every local address (AnyIP ranges included).
            keep.append(await asyncio.start_server(handler, port=s.port, backlog=1024))
        else:
            for family in (socket.AF_INET, socket.AF_INET6):
                keep.append(
                    await loop.create_datagram_endpoint(_Echo, sock=_udp_socket(family, s.port))
                )
    # The PID: started through setsid --fork, the process that started it never learns it.
    await asyncio.to_thread(ready.write_text, f"{os.getpid()}\n")
    log.info("serving %s", ", ".join(f"{s.proto}/{s.port} ({s.kind})" for s in services))
    await asyncio.Event().wait()  # until signalled


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s lab-server %(message)s")
    services = [Service(**s) for s in json.loads(argv[0])]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(services, Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
