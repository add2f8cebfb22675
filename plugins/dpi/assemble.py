"""ClientHellos that span several TCP segments, put back together. No I/O.

A connection's first client segment that starts a TLS handshake record is read at once; when the
ClientHello goes on past it (and the name has not been seen yet), the bytes wait here, keyed by
the connection's direction, and each following segment that continues them exactly (the next
sequence number) is appended and read again. Duplicates and retransmissions of what is already
here are ignored; a gap ends the wait, and so do :data:`MAX_SEGMENTS` segments, the ClientHello's
own length limit and a timeout.

Continuations must reach the sensor to be read: the DPI kernel filter can pass only segments
that *start* a record (a stateless filter cannot know which segment continues one), so they come
through other plugins' filters (the handshake plugin's, or the quality plugin's when it follows
the flow). Without them, a name is still found when it lies in the first segment.

Memory is bounded: at most ``max_pending`` waiting ClientHellos, the oldest dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from . import tls

MAX_SEGMENTS = 16
SEQ_MASK = 0xFFFF_FFFF

Key = tuple[bytes, bytes, int, int]


@dataclass(slots=True)
class Pending:
    next_seq: int
    data: bytearray
    started: float
    segments: int = 1


@dataclass(slots=True)
class AssemblerStats:
    hellos: int = 0
    reassembled: int = 0
    incomplete: int = 0
    evicted: int = 0


class Assembler:
    def __init__(self, max_pending: int = 4096, timeout: float = 10.0) -> None:
        self.max_pending = max_pending
        self.timeout = timeout
        self.pending: OrderedDict[Key, Pending] = OrderedDict()  # the oldest goes first
        self.stats = AssemblerStats()

    def start(self, key: Key, ts: float, seq: int, payload: bytes, payload_len: int) -> tls.Hello:
        """The first segment of a ClientHello: its result, or MORE while it waits here."""
        self.stats.hellos += 1
        hello = tls.client_hello(payload)
        if hello.outcome != tls.MORE:
            return hello
        if len(payload) < payload_len:  # cut by the snaplen: what follows cannot be appended
            self.stats.incomplete += 1
            return hello
        if len(self.pending) >= self.max_pending:
            self.pending.popitem(last=False)
            self.stats.evicted += 1
        self.pending[key] = Pending((seq + payload_len) & SEQ_MASK, bytearray(payload), ts)
        return hello

    def more(
        self, key: Key, ts: float, seq: int, payload: bytes, payload_len: int
    ) -> tls.Hello | None:
        """A later segment of a waiting direction: None while it keeps waiting (or for a
        duplicate), else the outcome (the wait is over)."""
        p = self.pending[key]
        if seq != p.next_seq:
            if (p.next_seq - seq) & SEQ_MASK < 1 << 31:
                return None  # a copy or retransmission of bytes already here
            del self.pending[key]
            self.stats.incomplete += 1
            return tls.Hello(tls.MORE)
        p.data += payload
        p.segments += 1
        p.next_seq = (seq + payload_len) & SEQ_MASK
        hello = tls.client_hello(bytes(p.data))
        if hello.outcome == tls.MORE and (
            len(payload) == payload_len and p.segments < MAX_SEGMENTS
        ):
            return None
        del self.pending[key]
        if hello.outcome == tls.MORE:
            self.stats.incomplete += 1
        elif hello.outcome != tls.INVALID:
            self.stats.reassembled += 1
        return hello

    def expire(self, now: float) -> None:
        stale = now - self.timeout
        for key in [k for k, p in self.pending.items() if p.started < stale]:
            del self.pending[key]
            self.stats.incomplete += 1
