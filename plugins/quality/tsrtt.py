"""Continuous RTT from TCP timestamps (RFC 7323), measured at the sensor, pping-style.

A segment carries its sender's clock (TSval) and echoes the latest TSval it received (TSecr). The
sensor notes when it first saw each TSval of a direction; when a segment of the other direction
echoes it, the time between is one RTT sample: from the sensor to the far side and back,
including the far side's delayed-ACK time. A sample belongs to the direction whose TSval was
timed, so samples of the client's direction measure the sensor-to-server half of the path (like
the handshake's ``rtt_ms``), and those of the server's direction the sensor-to-client half.

The definition, exactly (tests compute a reference from tshark's fields with it):

- Only segments that occupy sequence space (payload, SYN or FIN) are timed: they elicit a prompt
  acknowledgement. A pure ACK's TSval is echoed whenever the other side next sends, which may be
  much later, so pping's samples from them measure the application, not the path. This is where we
  differ from pping (which times every TSval).
- A TSval is timed at the first segment that carries it; later segments with the same value (the
  sender's clock did not tick) do not restart it. A TSval at or before one already echoed in that
  direction is not timed again, so each TSval gives at most one sample.
- A segment with a TSecr other than 0 (RFC 7323 section 3.2: 0 means "no echo") echoes the
  other direction: if that TSval was timed, the sample is taken. Then every TSval of that
  direction that was timed at or before the echoed value is forgotten, oldest first (a receiver's
  echo never goes back, RFC 7323 section 4.3, so they can no longer be echoed).
- A negative sample (capture timestamps that go backwards) is dropped and counted.

Memory per connection is bounded: at most :data:`MAX_PENDING` timed TSvals per direction; past
that the oldest is forgotten and counted as an overflow. TSvals compare modulo 2**32
(RFC 7323 section 5.2). Times are integer microseconds. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .analysis import seq_gt, seq_le

#: Timed TSvals kept per direction. At a 1 ms timestamp clock this covers 64 ms of segments in
#: flight without an echo; more only after losses, whose TSvals are then never echoed anyway.
MAX_PENDING = 64


@dataclass(slots=True)
class TsRtt:
    """The timestamp matcher of one connection; sides 0 and 1 as in the sequence analysis."""

    #: Per side: TSval -> capture time it was first seen, in the order first seen.
    pending: tuple[dict[int, int], dict[int, int]] = field(default_factory=lambda: ({}, {}))
    #: Per side: the newest TSval echoed by the other side (None: none yet).
    echoed: list[int | None] = field(default_factory=lambda: [None, None])
    overflows: int = 0
    negative: int = 0

    def segment(self, side: int, t: int, tsval: int, tsecr: int, timed: bool) -> int | None:
        """One segment of ``side`` at ``t`` µs with a timestamps option; ``timed``: it occupies
        sequence space. Returns an RTT sample in µs for the *other* side, or None."""
        sample = None
        if tsecr:
            other = 1 - side
            table = self.pending[other]
            first = table.pop(tsecr, None)
            if first is not None:
                if t >= first:
                    sample = t - first
                else:
                    self.negative += 1
            last = self.echoed[other]
            if last is None or seq_gt(tsecr, last):
                self.echoed[other] = tsecr
            while table:
                oldest = next(iter(table))
                if not seq_le(oldest, tsecr):
                    break
                del table[oldest]
        if timed:
            table = self.pending[side]
            if tsval not in table:
                last = self.echoed[side]
                if last is None or seq_gt(tsval, last):
                    if len(table) >= MAX_PENDING:
                        del table[next(iter(table))]
                        self.overflows += 1
                    table[tsval] = t
        return sample
