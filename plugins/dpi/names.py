"""What counts as a host name, for every source (SNI, HTTP Host, DNS) and on both halves of the
plugin: the collector checks again what a sensor sends. No I/O.

A name is kept in its canonical form: ASCII, lower case, without the root's trailing dot, at most
253 characters in labels of 1 to 63 letters, digits, hyphens or underscores (RFC 1035 section
2.3.1 and RFC 1123 section 2.1, plus the underscore that service names use), with a last label
that is not all digits. Internationalised names arrive as their ``xn--`` A-labels (RFC 5890) and
stay so. An address literal is not a name. Anything else (control characters, spaces, quotes,
non-ASCII bytes, empty or overlong labels) is rejected and counted, never stored.
"""

from __future__ import annotations

import ipaddress

MAX_NAME = 253  # RFC 1035 section 2.3.4: 255 octets on the wire, 253 characters as text
MAX_LABEL = 63  # RFC 1035 section 2.3.4
_ALLOWED = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")


def hostname(raw: bytes | str) -> str | None:
    """The canonical form of the host name ``raw``, or None when it is not one."""
    if isinstance(raw, str):
        try:
            raw = raw.encode("ascii")
        except UnicodeEncodeError:
            return None
    name = raw.lower()
    if name.endswith(b"."):
        name = name[:-1]
    if not 0 < len(name) <= MAX_NAME:
        return None
    labels = name.split(b".")
    for label in labels:
        if not 0 < len(label) <= MAX_LABEL or not _ALLOWED.issuperset(label):
            return None
    if labels[-1].isdigit():
        return None  # an IPv4 literal, or a name no registry hands out
    text = name.decode("ascii")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text
    return None
