"""The TCP options the quality analysis reads: SACK blocks and timestamps. No I/O.

Definitions (and how they relate to tshark 4.0):

- A segment is a **SACK packet** when it carries a SACK option (RFC 2018 section 3) with at
  least one left edge: tshark's ``tcp.options.sack_le`` is then present. A malformed option ends
  the walk, as in tshark.
- A SACK packet is a **D-SACK** when its first block reports data below the segment's
  acknowledgement number (the block's right edge is at or before the ACK), or lies inside its
  second block (RFC 2883 section 4). These are tshark's two tests (``tcp.options.sack.dsack``),
  including its reading of "inside" as: the second block starts before the first block's right
  edge and ends at or after it. tshark 4.0 also calls a SACK option without any complete block a
  D-SACK (it compares an edge it never read); we do not.
"""

from __future__ import annotations

import struct

from .analysis import seq_ge, seq_le, seq_lt

TCPOPT_EOL = 0  # RFC 9293 section 3.2
TCPOPT_NOP = 1  # RFC 9293 section 3.2
TCPOPT_SACK = 5  # RFC 2018 section 3
TCPOPT_TIMESTAMP = 8  # RFC 7323 section 3.2
TCPOLEN_TIMESTAMP = 10  # kind, length, TSval(4), TSecr(4)

#: The options Linux sends on almost every segment: NOP, NOP, timestamps.
_NOP_NOP_TS = b"\x01\x01\x08\x0a"
_TS = struct.Struct("!II")
_EDGE = struct.Struct("!I")

#: No SACK option; a SACK option; a SACK option whose first block is a D-SACK.
NO_SACK, SACK, DSACK = 0, 1, 2


def parse(options: bytes, ack: int) -> tuple[int, int | None, int]:
    """Read ``options`` (the bytes after the fixed TCP header) of a segment acknowledging
    ``ack``. Returns ``(sack, tsval, tsecr)``: :data:`NO_SACK`, :data:`SACK` or :data:`DSACK`,
    and the timestamps (``tsval`` None without a timestamps option)."""
    if len(options) == 12 and options[:4] == _NOP_NOP_TS:
        val, ecr = _TS.unpack_from(options, 4)
        return NO_SACK, val, ecr
    sack = NO_SACK
    tsval: int | None = None
    tsecr = 0
    edges: list[int] = []
    i, n = 0, len(options)
    while i < n:
        kind = options[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = options[i + 1]
        if length < 2 or i + length > n:
            break  # malformed: tshark stops here too
        if kind == TCPOPT_TIMESTAMP and length == TCPOLEN_TIMESTAMP:
            tsval, tsecr = _TS.unpack_from(options, i + 2)
        elif kind == TCPOPT_SACK and length >= 6:
            sack = SACK
            end = i + length
            j = i + 2
            while j + 8 <= end and len(edges) < 4:
                edges.append(_EDGE.unpack_from(options, j)[0])
                edges.append(_EDGE.unpack_from(options, j + 4)[0])
                j += 8
        i += length
    if edges and is_dsack(edges, ack):
        sack = DSACK
    return sack, tsval, tsecr


def is_dsack(edges: list[int], ack: int) -> bool:
    """RFC 2883 section 4 as tshark tests it; ``edges`` is [left0, right0, left1, right1, ...]."""
    if seq_le(edges[1], ack):
        return True
    return len(edges) >= 4 and seq_lt(edges[2], edges[1]) and seq_ge(edges[3], edges[1])
