"""The addresses a DNS answer gives for the name asked (RFC 1035 section 4). No I/O; never
raises, whatever the bytes.

A response (QR set, opcode QUERY, RCODE NOERROR) names its first question's QNAME; every A
(RFC 1035 section 3.4.1) and AAAA (RFC 3596) record of class IN in the answer section whose owner
is that name, or a name that a CNAME of the answer leads to from it, gives an address for the
QNAME: the name the client asked for, not the CDN's name behind it.

Hostile bytes are bounded: names follow at most :data:`MAX_POINTERS` compression pointers, each
pointing strictly backwards (so a loop cannot be built), and at most :data:`MAX_RECORDS` answer
records are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEADER_LEN = 12  # RFC 1035 section 4.1.1
QR = 0x8000
OPCODE_MASK = 0x7800
RCODE_MASK = 0x000F
TYPE_A = 1  # RFC 1035 section 3.2.2
TYPE_CNAME = 5
TYPE_AAAA = 28  # RFC 3596 section 2.1
CLASS_IN = 1
MAX_POINTERS = 16
MAX_RECORDS = 64
MAX_NAME_WIRE = 255  # RFC 1035 section 2.3.4
POINTER = 0xC0  # RFC 1035 section 4.1.4


class Malformed(ValueError):
    """A DNS message that cannot be read."""


@dataclass(slots=True)
class Answer:
    #: The first question's name, lower case, without the trailing dot (checked by ``names``).
    name: bytes
    addresses: list[bytes] = field(default_factory=list)


def _name(msg: bytes, off: int) -> tuple[bytes, int]:
    """The name at ``off`` (lower case, dotted) and the offset after it in the message."""
    labels: list[bytes] = []
    size = 0
    end = -1
    jumps = 0
    pos = off
    while True:
        if pos >= len(msg):
            raise Malformed("name runs past the message")
        length = msg[pos]
        if length == 0:
            if end < 0:
                end = pos + 1
            break
        if length & POINTER == POINTER:
            if pos + 1 >= len(msg):
                raise Malformed("truncated pointer")
            target = (length & 0x3F) << 8 | msg[pos + 1]
            jumps += 1
            if target >= pos or jumps > MAX_POINTERS:
                raise Malformed("pointer that does not point back")
            if end < 0:
                end = pos + 2
            pos = target
            continue
        if length & POINTER:
            raise Malformed("reserved label type")
        label = msg[pos + 1 : pos + 1 + length]
        if len(label) != length:
            raise Malformed("truncated label")
        size += length + 1
        if size > MAX_NAME_WIRE:
            raise Malformed("name longer than 255 octets")
        labels.append(label.lower())
        pos += 1 + length
    return b".".join(labels), end


def answer(msg: bytes) -> Answer | None:
    """The name asked and the addresses answered; None for anything that is not a successful
    response with a question."""
    try:
        return _answer(msg)
    except Malformed:
        return None


def _answer(msg: bytes) -> Answer | None:
    if len(msg) < HEADER_LEN:
        return None
    flags = msg[2] << 8 | msg[3]
    if not flags & QR or flags & OPCODE_MASK or flags & RCODE_MASK:
        return None
    qdcount, ancount = msg[4] << 8 | msg[5], msg[6] << 8 | msg[7]
    if qdcount == 0:
        return None
    qname, pos = _name(msg, HEADER_LEN)
    pos += 4  # QTYPE, QCLASS
    for _ in range(min(qdcount, 4) - 1):  # further questions (rare): skipped
        pos = _name(msg, pos)[1] + 4
    if pos > len(msg):
        return None
    result = Answer(qname)
    chain = {qname}
    for _ in range(min(ancount, MAX_RECORDS)):
        owner, pos = _name(msg, pos)
        if pos + 10 > len(msg):
            break
        rtype, rclass = msg[pos] << 8 | msg[pos + 1], msg[pos + 2] << 8 | msg[pos + 3]
        rdlength = msg[pos + 8] << 8 | msg[pos + 9]
        rdata = pos + 10
        pos = rdata + rdlength
        if pos > len(msg):
            break
        if rclass != CLASS_IN or owner not in chain:
            continue
        if rtype == TYPE_CNAME:
            chain.add(_name(msg, rdata)[0])
        elif (rtype == TYPE_A and rdlength == 4) or (rtype == TYPE_AAAA and rdlength == 16):
            result.addresses.append(msg[rdata:pos])
    return result
