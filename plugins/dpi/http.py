"""The Host header of an HTTP/1.x request (RFC 9112 section 3.2), from the segment that starts
it. No I/O; never raises, whatever the bytes.

Only a segment that begins with a request line (``METHOD SP target SP HTTP/1.x CRLF``) is read,
and only its own bytes: a Host header that arrives in a later segment is not found. HTTP/2 and
HTTP/3 carry the name as ``:authority`` inside binary (and, for HTTP/3, encrypted) frames, which
are not decoded; over TLS the SNI names the server anyway.
"""

from __future__ import annotations

#: RFC 9110 section 9: the methods, with the space that ends them.
METHODS = (
    b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ",
    b"TRACE ",
)  # fmt: skip
#: First bytes of a request, for the quick test on every segment.
FIRST_BYTES = frozenset(m[0] for m in METHODS)
#: Bytes of a request we read at most (the request line and headers, RFC 9112 leaves the limit
#: to implementations; 8 KiB is common).
MAX_HEAD = 8192


def host(payload: bytes) -> bytes | None:
    """The Host header's host (without a port) of the request starting ``payload``, as sent;
    None when ``payload`` does not start a request with one, or names an address literal."""
    if not payload.startswith(METHODS):
        return None
    head = payload[:MAX_HEAD]
    line_end = head.find(b"\r\n")
    if line_end < 0:
        return None
    line = head[:line_end]
    if not (line.endswith((b" HTTP/1.1", b" HTTP/1.0")) and line.count(b" ") == 2):
        return None
    end = head.find(b"\r\n\r\n", line_end)
    headers = head[line_end + 2 : end if end >= 0 else len(head)]
    for field in headers.split(b"\r\n"):
        name, colon, value = field.partition(b":")
        if colon and name.lower() == b"host":  # RFC 9112 section 5.1: no space before the colon
            return _without_port(value.strip(b" \t"))
    return None


def _without_port(value: bytes) -> bytes | None:
    if value.startswith(b"["):
        return None  # an IPv6 literal (RFC 3986 section 3.2.2): an address, not a name
    name, colon, port = value.rpartition(b":")
    if colon and port.isdigit():
        return name
    return value if not colon else None
