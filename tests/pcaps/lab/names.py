#!/usr/bin/env python3
"""The names scenario of record.py: what the client asks for, what the server answers, and which
host names a sensor must therefore find (``EXPECTED``), from these definitions alone.

    names.py serve CERT KEY     # in the server namespace: TLS (443), HTTP (80), DNS (53 UDP+TCP)
    names.py client SERVER      # in the client namespace, once per server address

The TLS ClientHellos are OpenSSL's own (Python's ``ssl``), written to the socket whole or in
pieces (``TCP_NODELAY``, a pause between the pieces), so that they arrive in one, two or three
segments. What OpenSSL will not send is made by hand and sent over the same real connections: a
ClientHello with an ``encrypted_client_hello`` extension, ones with hostile server names, DNS
answers with CNAME chains, a compression loop, an unrelated record and hostile names.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import sys
import threading
import time

TLS_PORT, HTTP_PORT, DNS_PORT = 443, 80, 53

#: ClientHellos: (server_name, how OpenSSL's bytes are cut: byte offsets, or a position relative
#: to the server_name extension). Sent in this order.
HELLOS = (
    ("www.example.test", ()),  # one segment
    ("split.example.test", ("before-sni",)),  # two segments, the name in the second
    ("first.example.test", ("after-sni",)),  # two segments, the name in the first
    ("three.example.test", ("before-sni", "inside-sni")),  # three segments, the name cut in two
)
#: Hand-made ClientHellos: (server_name bytes, with an ECH extension).
CRAFTED_HELLOS = (
    (b"public.example.test", True),
    (b"bad\x01name.example.test", False),
    (b"'}) MATCH (n) DETACH DELETE n //", False),
    (b"x" * 64 + b".example.test", False),  # a label longer than 63
)
#: HTTP requests: the Host header sent.
HTTP_HOSTS = ("intranet.example.test", "api.example.test:8080", "198.51.100.2", "bad name.test")
#: DNS: question name -> the answer records (owner, type, data); None: NXDOMAIN.
DNS_ZONE: dict[bytes, list[tuple[bytes, str, bytes | str]] | None] = {
    b"www.example.test": [(b"www.example.test", "A", "203.0.113.10")],
    b"shop.example.test": [
        (b"shop.example.test", "CNAME", b"edge.cdn.example.net"),
        (b"edge.cdn.example.net", "A", "203.0.113.11"),
        (b"edge.cdn.example.net", "A", "203.0.113.12"),
        (b"other.example.test", "A", "203.0.113.99"),  # not in the chain: names nothing
    ],
    b"v6.example.test": [(b"v6.example.test", "AAAA", "2001:db8:2::10")],
    b"private.example.test": [(b"private.example.test", "A", "10.9.8.7")],
    b"missing.example.test": None,
    b"bad\x00name.example.test": [(b"bad\x00name.example.test", "A", "203.0.113.66")],
    b"loop.example.test": [(b"", "LOOP", b"")],  # a compression pointer to itself
}
#: Asked over TCP (RFC 7766) instead of UDP.
DNS_TCP = (b"tcp.example.test",)
DNS_ZONE[b"tcp.example.test"] = [(b"tcp.example.test", "A", "203.0.113.13")]


def expected(server: str) -> dict[str, list[str]]:
    """Names per address that the client run against ``server`` must leave, latest last."""
    tls = [name for name, _ in HELLOS] + ["public.example.test"]
    http = ["intranet.example.test", "api.example.test"]
    return {server: tls + http}


#: What a sensor must find in names.pcap (both runs, IPv4 then IPv6), per address, in order.
EXPECTED: dict[str, list[str]] = {
    **expected("198.51.100.2"),
    **expected("2001:db8:2::2"),
    "203.0.113.10": ["www.example.test"],
    "203.0.113.11": ["shop.example.test"],
    "203.0.113.12": ["shop.example.test"],
    "2001:db8:2::10": ["v6.example.test"],
    "10.9.8.7": ["private.example.test"],
    "203.0.113.13": ["tcp.example.test"],
}
#: Names that must never be stored anywhere.
REJECTED = ("bad", "match", "x" * 64, "other.example.test", "edge.cdn.example.net")


# --- the server -----------------------------------------------------------------------------------


def _encode_name(name: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in name.split(b".") if label) + b"\0"


def dns_response(query: bytes) -> bytes:
    qid = query[:2]
    pos, labels = 12, []
    while query[pos]:
        labels.append(query[pos + 1 : pos + 1 + query[pos]])
        pos += 1 + query[pos]
    qname = b".".join(labels)
    question = query[12 : pos + 5]
    records = DNS_ZONE.get(qname)
    if records is None:
        return qid + b"\x81\x83" + struct.pack("!HHHH", 1, 0, 0, 0) + question
    answers = b""
    count = 0
    for owner, rtype, data in records:
        if rtype == "LOOP":
            # An answer whose owner is a pointer to itself (offset of this very name).
            here = 12 + len(question) + len(answers)
            answers += struct.pack("!H", 0xC000 | here) + struct.pack("!HHIH", 1, 1, 60, 4)
            answers += socket.inet_aton("203.0.113.77")
            count += 1
            continue
        if rtype == "CNAME":
            assert isinstance(data, bytes)
            rdata, code = _encode_name(data), 5
        elif rtype == "A":
            assert isinstance(data, str)
            rdata, code = socket.inet_pton(socket.AF_INET, data), 1
        else:
            assert isinstance(data, str)
            rdata, code = socket.inet_pton(socket.AF_INET6, data), 28
        # The owner as a pointer to the question when it is the question's name.
        name = b"\xc0\x0c" if owner == qname else _encode_name(owner)
        answers += name + struct.pack("!HHIH", code, 1, 60, len(rdata)) + rdata
        count += 1
    return qid + b"\x81\x80" + struct.pack("!HHHH", 1, count, 0, 0) + question + answers


def serve(cert: str, key: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def listener(port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        if kind == socket.SOCK_STREAM:
            s.listen(64)
        return s

    def tls_conn(c: socket.socket) -> None:
        c.settimeout(2)
        try:
            with ctx.wrap_socket(c, server_side=True) as t:
                t.recv(100)
        except (OSError, ssl.SSLError):
            pass
        c.close()

    def http_conn(c: socket.socket) -> None:
        c.settimeout(2)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            c.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        except OSError:
            pass
        c.close()

    def dns_tcp_conn(c: socket.socket) -> None:
        c.settimeout(2)
        try:
            size = struct.unpack("!H", c.recv(2))[0]
            query = c.recv(size)
            reply = dns_response(query)
            c.sendall(struct.pack("!H", len(reply)) + reply)
            c.recv(10)
        except OSError:
            pass
        c.close()

    def accept(s: socket.socket, handle: object) -> None:
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()  # type: ignore[arg-type]

    for port, handle in ((TLS_PORT, tls_conn), (HTTP_PORT, http_conn), (DNS_PORT, dns_tcp_conn)):
        threading.Thread(target=accept, args=(listener(port), handle), daemon=True).start()
    udp = listener(DNS_PORT, socket.SOCK_DGRAM)
    print("ready", flush=True)
    while True:
        query, peer = udp.recvfrom(4096)
        udp.sendto(dns_response(query), peer)


# --- the client -----------------------------------------------------------------------------------


def openssl_hello(name: str) -> bytes:
    """The ClientHello OpenSSL sends for ``name`` (its first flight)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def sni_offset(hello: bytes, name: bytes) -> int:
    return hello.index(name)


def crafted_hello(name: bytes, ech: bool) -> bytes:
    """A minimal TLS 1.3 ClientHello with ``name`` as its server_name (and an ECH extension)."""
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    exts = struct.pack("!HH", 0, len(sni)) + sni
    exts += struct.pack("!HHBH", 43, 3, 2, 0x0304)  # supported_versions: TLS 1.3
    if ech:
        exts += struct.pack("!HH", 0xFE0D, 8) + b"\x00\x00\x01\x00\x01\x2a\x00\x00"
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def send_pieces(server: str, data: bytes, cuts: list[int], port: int = TLS_PORT) -> None:
    s = socket.create_connection((server, port), timeout=3)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = 0
    for cut in [*cuts, len(data)]:
        s.sendall(data[start:cut])
        start = cut
        time.sleep(0.05)  # each piece leaves as its own segment
    try:
        s.settimeout(1)
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()


def dns_query(name: bytes, qtype: int = 1) -> bytes:
    return (
        b"\x12\x34\x01\x00"
        + struct.pack("!HHHH", 1, 0, 0, 0)
        + _encode_name(name)
        + (struct.pack("!HH", qtype, 1))
    )


def client(server: str) -> None:
    for name, plan in HELLOS:
        hello = openssl_hello(name)
        at = sni_offset(hello, name.encode())
        cuts = []
        for step in plan:
            cuts.append(
                {"before-sni": at - 20, "after-sni": at + len(name) + 8, "inside-sni": at + 5}[step]
            )
        send_pieces(server, hello, cuts)
    for raw, ech in CRAFTED_HELLOS:
        send_pieces(server, crafted_hello(raw, ech), [])
    for host in HTTP_HOSTS:
        s = socket.create_connection((server, HTTP_PORT), timeout=3)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lab\r\n\r\n".encode())
        s.recv(1024)
        s.close()
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    udp.settimeout(2)
    for name in DNS_ZONE:
        if name in DNS_TCP:
            continue
        udp.sendto(dns_query(name, 28 if name.startswith(b"v6.") else 1), (server, DNS_PORT))
        udp.recvfrom(4096)
    udp.close()
    for name in DNS_TCP:
        s = socket.create_connection((server, DNS_PORT), timeout=3)
        query = dns_query(name)
        s.sendall(struct.pack("!H", len(query)) + query)
        size = struct.unpack("!H", s.recv(2))[0]
        s.recv(size)
        s.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        client(sys.argv[2])
