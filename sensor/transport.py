"""Delivery to the collector: a bounded outbox of unacknowledged envelopes, streamed over gRPC.

- Every data envelope gets the next ``seq`` of this sensor's epoch when it is cut.
- The streamer keeps one bidirectional stream open. On every (re)connect it sends the hello; the
  collector answers with the mark it holds for this epoch, and the streamer resends everything
  after it, in order. Acks trim the outbox.
- The outbox is bounded. When it is full, the oldest envelopes are dropped and replaced by one
  ``Gap`` envelope that says which seqs were lost and how many items they held, so the
  collector's mark can move on and the loss is counted where operators see it.
- A collector mark *above* the last seq this sensor can have sent means the spool is an older
  copy of itself (restored from a VM snapshot, or a cloned image): the collector holds seqs the
  spool never sent, and new batches would reuse them and be skipped as duplicates. The sensor
  then logs an error and moves to a fresh epoch (:meth:`Outbox.reconcile`): the envelopes the
  copy held when the sensor started were delivered from the original (same epoch, same seqs,
  same bytes) and are skipped; everything cut since is re-stamped into the new epoch, spool
  included, and delivered there. One case stays out of reach: a copy that cut batches, stopped
  before it ever reached the collector, and restarted holds them as if they were the original's.
- A collector that cannot be reached gets one clear warning, then quiet retries with capped
  exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import grpc.aio

from net_gazer import tasks
from net_gazer.sensor.spool import Spool
from net_gazer.v1 import wire_pb2, wire_pb2_grpc

log = logging.getLogger(__name__)

EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # the stubs lack the sentinel

#: Envelopes sent but not yet acknowledged, at most: bounds what a collector holds for us.
WINDOW = 64
MAX_MESSAGE = 64 * 1024 * 1024


def _items(env: wire_pb2.Envelope) -> int:
    if env.HasField("batch"):
        return len(env.batch.handshakes) + len(env.batch.extensions)
    if env.HasField("gap"):
        return int(env.gap.lost_items)
    return 0


@dataclass
class OutboxStats:
    cut: int = 0
    acked: int = 0
    dropped_envelopes: int = 0
    dropped_items: int = 0
    #: Times the collector's mark showed the spool to be an older copy (a new epoch began).
    forks: int = 0
    #: Envelopes of such a copy skipped because the original had delivered them.
    fork_skipped: int = 0
    #: Envelopes written to a stream again (after a reconnect) because no ack had come for them.
    resent: int = 0


class Outbox:
    """Envelopes of one epoch that the collector has not acknowledged yet, in seq order.

    Bounded by count and by bytes. With a :class:`~net_gazer.sensor.spool.Spool` every envelope is
    also on disk until acknowledged; :meth:`open` resumes the spool's epoch.
    """

    def __init__(
        self,
        sensor_id: str,
        epoch: str,
        max_envelopes: int,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        spool: Spool | None = None,
        pending: list[wire_pb2.Envelope] | None = None,
    ) -> None:
        self.sensor_id = sensor_id
        self.epoch = epoch
        self.max_envelopes = max_envelopes
        self.max_bytes = max_bytes
        self.spool = spool
        self.pending: deque[wire_pb2.Envelope] = deque(pending or ())
        self.bytes = sum(e.ByteSize() for e in self.pending)
        self.next_seq = (self.pending[-1].seq + 1) if self.pending else 1
        self.acked_seq = (self.pending[0].seq - 1) if self.pending else 0
        if self.pending and self.pending[0].HasField("gap"):
            self.acked_seq = self.pending[0].gap.first_seq - 1
        #: The last seq found in the spool at start: up to it, the collector may have the
        #: envelopes from an earlier run (or from the original of a restored copy).
        self.inherited = self.last_seq
        #: The highest seq the collector can have from us: what was inherited, or sent since.
        self.sent_high = self.inherited
        self.stats = OutboxStats()
        self.changed = asyncio.Event()  # something new to send, or an ack arrived

    @classmethod
    def open(
        cls, sensor_id: str, max_envelopes: int, *, max_bytes: int, spool: Spool | None
    ) -> Outbox:
        """A new epoch, or the spool's epoch with what is still waiting in it."""
        if spool is None:
            return cls(sensor_id, uuid.uuid4().hex, max_envelopes, max_bytes=max_bytes)
        epoch, pending = spool.load()
        return cls(
            sensor_id, epoch, max_envelopes, max_bytes=max_bytes, spool=spool, pending=pending
        )

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.max_envelopes

    def add(self, batch: wire_pb2.Batch) -> wire_pb2.Envelope:
        env = wire_pb2.Envelope(
            sensor_id=self.sensor_id, epoch=self.epoch, seq=self.next_seq, sent_at=time.time()
        )
        env.batch.CopyFrom(batch)
        self.next_seq += 1
        self.stats.cut += 1
        size = env.ByteSize()
        while self.pending and (
            len(self.pending) >= self.max_envelopes or self.bytes + size > self.max_bytes
        ):
            self._drop_oldest("the sensor's buffer was full (collector unreachable or slow)")
        if self.spool is not None:
            self.spool.put(env)
        self.pending.append(env)
        self.bytes += size
        self.changed.set()
        return env

    def _drop_oldest(self, reason: str) -> None:
        """Fold the two oldest envelopes into one Gap envelope (the bound stays exact)."""
        first = self.pending.popleft()
        dropped = [first, self.pending.popleft()] if self.pending else [first]
        last = dropped[-1]
        gap = wire_pb2.Envelope(
            sensor_id=self.sensor_id, epoch=self.epoch, seq=last.seq, sent_at=time.time()
        )
        gap.gap.first_seq = first.gap.first_seq if first.HasField("gap") else first.seq
        gap.gap.lost_envelopes = sum(
            e.gap.lost_envelopes if e.HasField("gap") else 1 for e in dropped
        )
        gap.gap.lost_items = sum(_items(e) for e in dropped)
        gap.gap.reason = reason
        for e in dropped:
            self.bytes -= e.ByteSize()
            if not e.HasField("gap"):
                self.stats.dropped_envelopes += 1
                self.stats.dropped_items += _items(e)
        if self.spool is not None:
            self.spool.put(gap)  # replaces the last dropped envelope's file (same seq)
            for e in dropped[:-1]:
                self.spool.remove(e)
        self.bytes += gap.ByteSize()
        self.pending.appendleft(gap)

    def sent(self, env: wire_pb2.Envelope) -> None:
        """``env`` was written to the stream."""
        if env.seq <= self.sent_high:
            self.stats.resent += 1
        self.sent_high = max(self.sent_high, env.seq)

    def reconcile(self, mark: int) -> bool:
        """Line the outbox up with the mark the collector answered the hello with; True when
        that started a new epoch (the stream must then begin again with a new hello).

        A mark below what the sensor already had acknowledged means the graph lost data that was
        acknowledged earlier (an external FalkorDB without AOF, restored from an old backup): the
        missing seqs are announced as a gap, so delivery can go on and the loss is counted.
        A mark above anything the sensor can have sent means this spool is an older copy of
        itself (see the module docstring): a new epoch begins.
        """
        if mark > self.sent_high:
            self._new_epoch(mark)
            return True
        first = self.pending[0] if self.pending else None
        first_seq = (
            (first.gap.first_seq if first.HasField("gap") else first.seq)
            if first
            else self.next_seq
        )
        if mark + 1 >= first_seq:
            self.ack(mark)
            return False
        log.error(
            "the collector's mark for epoch %s is %d but seqs up to %d were acknowledged before: "
            "the graph lost acknowledged data; announcing the hole as a gap", self.epoch, mark, first_seq - 1,
        )  # fmt: skip
        gap = wire_pb2.Envelope(
            sensor_id=self.sensor_id, epoch=self.epoch, seq=first_seq - 1, sent_at=time.time()
        )
        gap.gap.first_seq = mark + 1
        gap.gap.lost_envelopes = first_seq - 1 - mark
        gap.gap.reason = "the collector lost data it had acknowledged"
        self.pending.appendleft(gap)
        self.bytes += gap.ByteSize()
        self.acked_seq = mark
        self.changed.set()
        return False

    def _new_epoch(self, mark: int) -> None:
        old, epoch = self.epoch, uuid.uuid4().hex
        skipped = [e for e in self.pending if e.seq <= self.inherited]
        restamped: list[wire_pb2.Envelope] = []
        for env in self.pending:
            if env.seq <= self.inherited:
                continue
            new = wire_pb2.Envelope()
            new.CopyFrom(env)
            new.epoch, new.seq = epoch, len(restamped) + 1
            if new.HasField("gap"):
                new.gap.first_seq = new.seq
            restamped.append(new)
        if self.spool is not None:
            self.spool.restamp(epoch, restamped)
        log.error(
            "the collector holds epoch %s up to seq %d, but this sensor can have sent only up to "
            "%d: its spool is an older copy of itself (restored from a snapshot or a cloned "
            "image), and new batches would reuse seqs the collector already has. Starting epoch "
            "%s: %d batches the copy held were delivered from the original and are skipped, %d "
            "cut since are re-sent in the new epoch",
            old, mark, self.sent_high, epoch, len(skipped), len(restamped),
        )  # fmt: skip
        self.epoch = epoch
        self.pending = deque(restamped)
        self.bytes = sum(e.ByteSize() for e in restamped)
        self.next_seq = len(restamped) + 1
        self.acked_seq = self.inherited = self.sent_high = 0
        self.stats.forks += 1
        self.stats.fork_skipped += len(skipped)
        self.changed.set()

    def ack(self, seq: int) -> None:
        if seq <= self.acked_seq:
            return
        self.acked_seq = seq
        self.sent_high = max(self.sent_high, seq)
        removed = False
        while self.pending and self.pending[0].seq <= seq:
            env = self.pending.popleft()
            self.bytes -= env.ByteSize()
            self.stats.acked += 1
            if self.spool is not None:
                self.spool.remove(env)
                removed = True
        if removed and self.spool is not None:
            self.spool.sync()
        self.changed.set()

    async def wait_empty(self) -> None:
        """Return once the collector has acknowledged everything (bound it with wait_for)."""
        while self.pending:
            self.changed.clear()
            await self.changed.wait()

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1


class Streamer:
    """Keeps the stream to the collector alive and the outbox flowing."""

    def __init__(
        self,
        target: str,
        outbox: Outbox,
        hello: Callable[[], wire_pb2.Hello],
        *,
        backoff_min: float = 0.2,
        backoff_max: float = 15.0,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str = "",
        token: str = "",
    ) -> None:
        self.target = target
        self.credentials = credentials
        self.server_name = server_name
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self.outbox = outbox
        self.hello = hello
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.connected = asyncio.Event()
        self._epoch_changed = False
        self.reconnects = 0
        self.last_error = ""
        self._warned = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = tasks.spawn(self._run(), name="collector-stream")

    async def stop(self) -> None:
        await tasks.cancel(self._task)

    async def _run(self) -> None:
        delay = self.backoff_min
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    log.error(
                        "the collector at %s refused this sensor: %s", self.target, exc.details()
                    )
                    delay = self.backoff_max  # retrying fast will not fix credentials
                self._report(f"{exc.code().name}: {exc.details()}")
            except (OSError, grpc.RpcError) as exc:
                self._report(repr(exc))
            except Exception as exc:  # a bug must not end delivery: log it and reconnect
                log.exception("unexpected error in the collector stream")
                self._report(repr(exc))
            self.connected.clear()
            if self._epoch_changed:  # not a failure: say hello for the new epoch at once
                self._epoch_changed = False
                continue
            if time.monotonic() - started > 10:
                delay = self.backoff_min  # it was up for a while: start over
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max)
            self.reconnects += 1

    def _report(self, error: str) -> None:
        self.last_error = error
        if not self._warned:
            log.warning(
                "cannot deliver to the collector at %s (%s); capturing on and buffering up to %d "
                "batches, retrying with backoff",
                self.target,
                error,
                self.outbox.max_envelopes,
            )
            self._warned = True
        else:
            log.debug("collector %s: %s", self.target, error)

    async def _session(self) -> None:
        options: list[tuple[str, str | int]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.enable_retries", 0),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        if self.credentials is not None:
            channel = grpc.aio.secure_channel(self.target, self.credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(self.target, options=options)
        async with channel:
            stub = wire_pb2_grpc.IngestStub(channel)
            call = stub.Stream(metadata=self.metadata)  # type: ignore[call-arg]  # aio: read/write style
            outbox = self.outbox
            hello = wire_pb2.Envelope(
                sensor_id=outbox.sensor_id, epoch=outbox.epoch, seq=0, sent_at=time.time()
            )
            hello.hello.CopyFrom(self.hello())
            await call.write(hello)
            first = await call.read()
            if first is EOF:
                raise OSError("the collector closed the stream after the hello")
            assert isinstance(first, wire_pb2.Ack)
            if first.epoch != outbox.epoch:
                raise OSError(f"the collector answered for epoch {first.epoch!r}, not ours")
            if outbox.reconcile(first.acked_seq):
                self._epoch_changed = True
                return
            self.connected.set()
            if self._warned:
                log.warning(
                    "collector %s reachable again; resending %d batches", self.target, len(outbox)
                )
                self._warned = False
            else:
                log.info("connected to collector %s (mark %d)", self.target, first.acked_seq)
            reader = tasks.spawn(self._read_acks(call), name="collector-acks")
            try:
                await self._send(call, outbox, reader)
            finally:
                await tasks.cancel(reader)
                call.cancel()

    async def _read_acks(self, call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
        while True:
            ack = await call.read()
            if ack is EOF:
                return
            assert isinstance(ack, wire_pb2.Ack)
            if ack.epoch == self.outbox.epoch:
                self.outbox.ack(ack.acked_seq)

    async def _send(
        self,
        call: grpc.aio.StreamStreamCall,  # type: ignore[type-arg]
        outbox: Outbox,
        reader: asyncio.Task[None],
    ) -> None:
        sent = outbox.acked_seq
        while True:
            if reader.done():
                reader.result()  # re-raises the stream's error
                raise OSError("the collector ended the stream")
            outbox.changed.clear()
            for env in list(outbox.pending):
                if env.seq <= sent:
                    continue
                if env.seq - outbox.acked_seq > WINDOW:
                    break
                await call.write(env)
                outbox.sent(env)
                sent = env.seq
            waiter = asyncio.ensure_future(outbox.changed.wait())
            done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
