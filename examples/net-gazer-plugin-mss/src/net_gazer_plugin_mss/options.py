"""TCP option parsing for the MSS plugin: bytes in, a value out, no I/O."""

from __future__ import annotations

TCPOPT_EOL = 0  # RFC 9293 section 3.2: end of option list
TCPOPT_NOP = 1  # RFC 9293 section 3.2: no-operation
TCPOPT_MSS = 2  # RFC 9293 section 3.2: maximum segment size, length 4
TCPOLEN_MSS = 4


def mss_option(options: bytes) -> int | None:
    """The MSS option's value in a TCP header's options, or None when there is none.

    Raises ValueError when the options are malformed (an option running past the end, a length
    below 2, an MSS option of the wrong length): the caller counts and skips the segment.
    """
    i, n = 0, len(options)
    while i < n:
        kind = options[i]
        if kind == TCPOPT_EOL:
            return None
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("TCP option without a length")
        length = options[i + 1]
        if length < 2 or i + length > n:
            raise ValueError(f"TCP option {kind} with a bad length {length}")
        if kind == TCPOPT_MSS:
            if length != TCPOLEN_MSS:
                raise ValueError(f"MSS option of length {length}")
            return options[i + 2] << 8 | options[i + 3]
        i += length
    return None
