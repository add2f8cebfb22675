"""The server name of a TLS ClientHello (RFC 6066 section 3), from the first bytes a client sent
on a TCP connection, which may stop anywhere. No I/O; never raises, whatever the bytes.

The bytes are TLS records (RFC 8446 section 5.1) of content type handshake (22). The ClientHello
(RFC 8446 section 4.1.2) may span several TCP segments (post-quantum key shares make it larger
than one) and even several records; the caller hands over everything it has, from the start, and
asks again when more arrives. The walk stops at the first ``host_name`` of a ``server_name``
extension, so the rest of a large ClientHello is not needed once the name has passed.

With Encrypted ClientHello (``encrypted_client_hello``, draft-ietf-tls-esni) the real name is
encrypted; the visible one is the client-facing server's public name, which is what this
reports, flagging ``ech``. QUIC carries its ClientHello inside encrypted Initial packets, which
are not decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTENT_HANDSHAKE = 22  # RFC 8446 section 5.1
HANDSHAKE_CLIENT_HELLO = 1  # RFC 8446 section 4
RECORD_HLEN = 5  # type(1) legacy_record_version(2) length(2)
MAX_RECORD = 2**14 + 2048  # RFC 8446 section 5.2: TLSCiphertext.length limit
EXT_SERVER_NAME = 0  # RFC 6066 section 3
EXT_ECH = 0xFE0D  # draft-ietf-tls-esni: encrypted_client_hello
NAME_TYPE_HOST = 0  # RFC 6066 section 3
#: The largest ClientHello we assemble (a post-quantum one is about 1.8 KB).
MAX_HELLO = 1 << 16

#: Outcomes.
DONE = "done"  # the whole ClientHello was read (with or without a name)
FOUND = "found"  # the name was found before the ClientHello ended
MORE = "more"  # the bytes ended before the name or the end of the ClientHello
INVALID = "invalid"  # not a well-formed ClientHello


@dataclass(frozen=True, slots=True)
class Hello:
    outcome: str
    #: The first host_name of the server_name extension, as sent (checked by ``names``).
    sni: bytes | None = None
    ech: bool = False


def _handshake(data: bytes) -> tuple[bytes, bool]:
    """The handshake bytes carried by the records in ``data``, and whether they are valid so
    far. Stops at a record of another type (the ClientHello is over by then)."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        if len(data) - pos < RECORD_HLEN:
            break
        ctype, major, length = data[pos], data[pos + 1], data[pos + 3] << 8 | data[pos + 4]
        if ctype != CONTENT_HANDSHAKE or major != 3 or length == 0 or length > MAX_RECORD:
            return bytes(out), pos > 0  # another record type after the first: the hello ended
        out += data[pos + RECORD_HLEN : pos + RECORD_HLEN + length]
        pos += RECORD_HLEN + length
        if len(out) >= 4 and len(out) >= 4 + (out[1] << 16 | out[2] << 8 | out[3]):
            break
    return bytes(out), True


def client_hello(data: bytes) -> Hello:
    """Read the ClientHello at the start of ``data`` (everything the client sent so far)."""
    if not data:
        return Hello(MORE)
    if data[0] != CONTENT_HANDSHAKE:
        return Hello(INVALID)
    if len(data) >= 2 and data[1] != 3:
        return Hello(INVALID)
    hs, ok = _handshake(data)
    if not ok:
        return Hello(INVALID)
    if len(hs) < 4:
        return Hello(MORE)
    if hs[0] != HANDSHAKE_CLIENT_HELLO:
        return Hello(INVALID)
    size = hs[1] << 16 | hs[2] << 8 | hs[3]
    if size > MAX_HELLO:
        return Hello(INVALID)
    body = hs[4 : 4 + size]
    return _body(body, complete=len(body) == size, size=size)


def _body(b: bytes, *, complete: bool, size: int) -> Hello:
    """Walk a ClientHello body; ``complete``: ``b`` is all of it (``size`` bytes)."""
    short = Hello(INVALID if complete else MORE)
    n = len(b)
    p = 2 + 32  # legacy_version, random
    if n < p + 1:
        return short
    sid = b[p]
    if sid > 32:
        return Hello(INVALID)
    p += 1 + sid
    if n < p + 2:
        return short
    suites = b[p] << 8 | b[p + 1]
    if suites < 2 or suites % 2:
        return Hello(INVALID)
    p += 2 + suites
    if n < p + 1:
        return short
    p += 1 + b[p]  # legacy_compression_methods
    if p == size:
        return Hello(DONE)  # no extensions at all
    if n < p + 2:
        return short
    ext_end = p + 2 + (b[p] << 8 | b[p + 1])
    if ext_end != size:
        return Hello(INVALID)
    p += 2
    sni: bytes | None = None
    ech = False
    while p < ext_end:
        if n < p + 4:
            return Hello(FOUND, sni, ech) if sni is not None else short
        etype, elen = b[p] << 8 | b[p + 1], b[p + 2] << 8 | b[p + 3]
        p += 4
        if p + elen > ext_end:
            return Hello(INVALID)
        if etype == EXT_ECH:
            ech = True
        elif etype == EXT_SERVER_NAME and sni is None:
            if n < p + elen:
                return short
            sni = _server_name(b[p : p + elen])
            if sni is None:
                return Hello(INVALID)
        p += elen
    if p > n:
        return Hello(FOUND, sni, ech) if sni is not None else short
    return Hello(DONE, sni, ech)


def _server_name(ext: bytes) -> bytes | None:
    """The first host_name of a server_name extension's list; b"" when it names none; None when
    the extension is malformed."""
    if len(ext) < 2 or (ext[0] << 8 | ext[1]) != len(ext) - 2:
        return None
    p = 2
    while p < len(ext):
        if len(ext) < p + 3:
            return None
        kind, length = ext[p], ext[p + 1] << 8 | ext[p + 2]
        p += 3
        if p + length > len(ext):
            return None
        if kind == NAME_TYPE_HOST:
            return ext[p : p + length]
        p += length
    return b""
