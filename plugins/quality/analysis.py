"""Sequence-number analysis of one TCP connection, per direction: which segments are
retransmissions, fast or spurious ones, out of order, or advertise a zero window.

The definitions are tshark's (Wireshark 4.0, ``tcp.analysis.*``), so that a count here can be
checked against tshark on the same capture: the same packets in the same order give the same
verdicts. Each verdict below says how tshark defines it and where ours differs. "The sender" is
the side that sent the segment; ``nextseq`` is the highest sequence number the sender has used so
far plus one (the next one it should send); ``lastack`` is the acknowledgement number of the
receiver's latest segment. SYN and FIN occupy one sequence number each (RFC 9293 section 3.4), and
every comparison is modulo 2**32 (RFC 9293 section 3.4: "the sequence number space ... wraps").

- :data:`RETRANSMISSION` (``tcp.analysis.retransmission``): a segment with data, SYN or FIN whose
  sequence number lies below the sender's ``nextseq`` (it repeats what was sent before) and which
  is none of the more specific kinds below; tshark then also flags the fast and the spurious
  ones as retransmissions, and so does our ``retransmits`` count, which is the union of the three.
  A one-byte segment one below ``nextseq`` is a keep-alive, never a retransmission; a longer
  segment starting there is new data (it follows a zero-window probe).
- :data:`FAST_RETRANSMISSION` (``tcp.analysis.fast_retransmission``): a retransmission of exactly
  the byte that at least two duplicate ACKs of the receiver asked for, sent within 20 ms of the
  receiver's latest segment. tshark's "duplicate ACK" is a segment without data, SYN, FIN or RST
  that repeats the sender's previous sequence number, acknowledgement number and (non-zero)
  window. RFC 5681 waits for three duplicate ACKs; tshark flags from the second seen, so that a
  missed duplicate ACK does not hide the event.
- :data:`SPURIOUS_RETRANSMISSION` (``tcp.analysis.spurious_retransmission``): a segment with data
  that ends at or below what the receiver has already acknowledged: it repeats data the receiver
  had. This is what triggers a D-SACK from the receiver (RFC 2883 section 4.1), although tshark
  flags it from the ACK alone.
- :data:`OUT_OF_ORDER` (``tcp.analysis.out_of_order``): a segment below ``nextseq`` that arrives
  within the connection's first RTT (SYN to the first ACK without SYN; 3 ms while that is not
  known) after the segment that set ``nextseq``, and that does not end exactly at ``nextseq``.
  The time rule is tshark's heuristic, not a property of the packets: a late segment is called a
  retransmission instead. It is counted on the direction the segment travels.
- :data:`ZERO_WINDOW` (``tcp.analysis.zero_window``): a segment without SYN, FIN or RST that
  advertises a receive window of 0, except a zero-window probe. Every such segment counts, so a
  stalled receiver counts once per ACK it sends while stalled.
- :data:`ZERO_WINDOW_PROBE`, :data:`KEEP_ALIVE`, :data:`DUPLICATE_ACK` and the others are the
  helper verdicts tshark uses to decide the ones above; they are not counted.

Where ours differs from tshark, knowingly:

- tshark remembers every connection for the whole capture; the sensor forgets one after its FIN
  or RST (plus a linger), or when it has been idle, or when the flow table is full. A segment of
  a forgotten connection starts a new one that knows nothing, so its first segments are never
  retransmissions. Ports reused with a new initial sequence number start a new connection, as in
  tshark.
- tshark stops adding the SYN/FIN sequence number to ``nextseq`` after 10,000 segments without an
  acknowledgement (its list of unacknowledged segments is full); here it always counts.
- A copy of a segment seen on a second captured interface is not analysed at all (the flow table
  keeps to the interface a connection was first seen on); tshark calls such copies
  retransmissions.

Like tshark, a ``nextseq``, ``lastack`` or ``maxseqtobeacked`` of exactly 0 reads as "not yet
seen". Times are integer microseconds. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# TCP flags, RFC 9293 section 3.1.
FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10

SEQ_MASK = 0xFFFF_FFFF  # RFC 9293 section 3.4: sequence numbers are modulo 2**32
_HALF = 0x8000_0000

#: Verdict bits for one segment.
RETRANSMISSION = 1 << 0
FAST_RETRANSMISSION = 1 << 1
SPURIOUS_RETRANSMISSION = 1 << 2
OUT_OF_ORDER = 1 << 3
ZERO_WINDOW = 1 << 4
ZERO_WINDOW_PROBE = 1 << 5
KEEP_ALIVE = 1 << 6
DUPLICATE_ACK = 1 << 7
ZERO_WINDOW_PROBE_ACK = 1 << 8
KEEP_ALIVE_ACK = 1 << 9
#: A gap before this segment: something the capture never saw ("previous segment not captured").
LOST_SEGMENT = 1 << 10
#: An acknowledgement of data the capture never saw ("ACKed unseen segment").
ACKED_UNSEEN = 1 << 11

#: Any kind of retransmission: what the ``retransmits`` count adds up.
ANY_RETRANSMISSION = RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION

#: A fast retransmission follows the receiver's latest segment within this time (tshark: 20 ms).
FAST_RETRANSMIT_WINDOW_US = 20_000
#: Out-of-order window while the connection's first RTT is unknown (tshark: 3 ms).
DEFAULT_REORDER_WINDOW_US = 3_000
#: The window a direction has before its first segment: never equal to a 16-bit window.
WINDOW_UNSEEN = 0xFFFF_FFFF


def seq_lt(a: int, b: int) -> bool:
    """``a`` before ``b`` in sequence space (RFC 9293 section 3.4, modulo 2**32)."""
    return ((a - b) & SEQ_MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    d = (a - b) & SEQ_MASK
    return d == 0 or d >= _HALF


def seq_gt(a: int, b: int) -> bool:
    return ((b - a) & SEQ_MASK) >= _HALF


def seq_ge(a: int, b: int) -> bool:
    d = (b - a) & SEQ_MASK
    return d == 0 or d >= _HALF


@dataclass(slots=True)
class Side:
    """What the analysis remembers of one direction (the segments one side sends)."""

    #: The first sequence number (the ISN for a SYN; one below the first segment otherwise).
    base_seq: int | None = None
    nextseq: int = 0
    nextseq_time: int = 0
    #: The highest sequence number sent without a gap before it.
    maxseqtobeacked: int = 0
    #: The acknowledgement number and window of this side's latest segment, and when.
    lastack: int = 0
    lastack_time: int = 0
    window: int = WINDOW_UNSEEN
    #: Duplicate ACKs this side has sent in a row (-1: just after an ACK of unseen data).
    dupacks: int = 0
    #: The verdict bits of this side's latest segment.
    lastflags: int = 0


@dataclass(slots=True)
class SeqAnalysis:
    """The analysis of one connection. Side 0 and side 1 are the two directions; the caller
    decides which is which and passes the sending side of every segment."""

    sides: tuple[Side, Side] = field(default_factory=lambda: (Side(), Side()))
    #: The latest SYN without ACK, and the first RTT (that SYN to the first ACK without SYN);
    #: 0 while not known, as in tshark.
    syn_time: int = 0
    first_rtt: int = 0

    def starts_new_connection(self, side: int, seq: int, flags: int) -> bool:
        """A SYN (without ACK) from a side whose first sequence number was another: the ports
        are reused by a new connection (tshark: "TCP port numbers reused")."""
        if flags & (SYN | ACK) != SYN:
            return False
        base = self.sides[side].base_seq
        return base is not None and seq != base

    def segment(
        self, side: int, t: int, seq: int, ack: int, seglen: int, flags: int, window: int
    ) -> int:
        """Analyse one segment sent by ``side`` at ``t`` µs; return its verdict bits.

        ``seglen`` is the payload length (without SYN/FIN), ``window`` the raw 16-bit window
        field. Call :meth:`starts_new_connection` first: a SYN that starts a new connection
        belongs to a fresh analysis.
        """
        fwd, rev = self.sides[side], self.sides[1 - side]
        syn_ack = flags & (SYN | ACK)
        if fwd.base_seq is not None:
            if syn_ack == SYN:  # the same SYN again: where the connection stood after it
                fwd.nextseq = fwd.maxseqtobeacked
            elif syn_ack == SYN | ACK and seq != fwd.base_seq:
                fwd.base_seq = seq
        else:
            fwd.base_seq = seq if flags & SYN else (seq - 1) & SEQ_MASK
        if rev.base_seq is None and flags & ACK:
            rev.base_seq = (ack - 1) & SEQ_MASK
        verdict = self._verdict(fwd, rev, t, seq, ack, seglen, flags, window)
        if syn_ack == SYN:
            self.syn_time = t
        elif syn_ack == ACK and self.syn_time and not self.first_rtt:
            self.first_rtt = t - self.syn_time
        return verdict

    def _verdict(
        self,
        fwd: Side,
        rev: Side,
        t: int,
        seq: int,
        ack: int,
        seglen: int,
        flags: int,
        window: int,
    ) -> int:
        verdict = 0
        control = flags & (SYN | FIN | RST)
        if seglen == 1 and seq == fwd.nextseq and rev.window == 0:
            verdict = ZERO_WINDOW_PROBE  # and none of the checks up to the duplicate ACK
        else:
            if window == 0 and not control:
                verdict |= ZERO_WINDOW
            if fwd.nextseq and seq_gt(seq, fwd.nextseq) and not flags & RST:
                verdict |= LOST_SEGMENT
            if seglen <= 1 and seq == (fwd.nextseq - 1) & SEQ_MASK and not control:
                verdict |= KEEP_ALIVE
            repeat = seglen == 0 and seq == fwd.nextseq and ack == fwd.lastack and not control
            if repeat and window and window == fwd.window and rev.lastflags & KEEP_ALIVE:
                verdict |= KEEP_ALIVE_ACK
            elif repeat and window == 0 and fwd.window == 0 and rev.lastflags & ZERO_WINDOW_PROBE:
                verdict |= ZERO_WINDOW_PROBE_ACK
            elif repeat and window and window == fwd.window:
                fwd.dupacks = 1 if fwd.dupacks == -1 else fwd.dupacks + 1
                verdict |= DUPLICATE_ACK
        if ack != fwd.lastack:
            fwd.dupacks = 0
        if rev.maxseqtobeacked and flags & ACK and seq_gt(ack, rev.maxseqtobeacked):
            if seq_lt(rev.maxseqtobeacked, rev.nextseq):
                rev.maxseqtobeacked = rev.nextseq
                verdict |= ACKED_UNSEEN
            else:
                if rev.dupacks == 0:
                    verdict |= ACKED_UNSEEN
                rev.dupacks = -1
        occupies = 1 if flags & (SYN | FIN) else 0
        if (seglen or occupies) and not verdict & KEEP_ALIVE:
            behind = fwd.nextseq != 0 and seq_lt(seq, fwd.nextseq)
            if seglen > 1 and (fwd.nextseq - 1) & SEQ_MASK == seq:
                behind = False  # new data after a zero-window probe
            if seglen and rev.lastack and seq_le((seq + seglen) & SEQ_MASK, rev.lastack):
                verdict |= SPURIOUS_RETRANSMISSION
            elif (
                behind
                and rev.dupacks >= 2
                and rev.lastack == seq
                and 0 <= t - rev.lastack_time < FAST_RETRANSMIT_WINDOW_US
            ):
                verdict |= FAST_RETRANSMISSION
            elif (
                behind
                and self._soon_after(t - fwd.nextseq_time)
                and (fwd.nextseq != (seq + seglen + occupies) & SEQ_MASK)
            ):
                verdict |= OUT_OF_ORDER
            elif behind:
                verdict |= RETRANSMISSION
        if not verdict & ZERO_WINDOW_PROBE:  # a probe does not advance the sequence
            nextseq = (seq + seglen + occupies) & SEQ_MASK
            if not fwd.nextseq or seq_gt(nextseq, fwd.nextseq):
                fwd.nextseq = nextseq
                fwd.nextseq_time = t
            if not fwd.maxseqtobeacked or seq == fwd.maxseqtobeacked:
                fwd.maxseqtobeacked = fwd.nextseq
        fwd.window = window
        fwd.lastack = ack
        fwd.lastack_time = t
        fwd.lastflags = verdict
        return verdict

    def _soon_after(self, elapsed: int) -> bool:
        """Within the out-of-order window after the segment that set ``nextseq``."""
        if elapsed < 0:
            return False
        window = self.first_rtt or DEFAULT_REORDER_WINDOW_US
        return window < 0 or elapsed < window  # tshark reads a negative RTT as unsigned: huge
