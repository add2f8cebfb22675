"""The gRPC ingest service: one bidirectional stream per sensor.

The first envelope must be a hello; the answer is the mark the graph holds for the hello's epoch.
Every later envelope is applied through the store (exactly once, with the mark, in one query) and
only then acknowledged. Errors end the stream with a status the sensor can act on:
``INVALID_ARGUMENT`` for malformed streams, ``FAILED_PRECONDITION`` for delivery holes,
``UNAVAILABLE`` while the graph database is down or refuses a write for a reason that may pass
(the sensor resends later).

Which database errors may cost data: only those known to be permanent *for that batch*
(:data:`PERMANENT_ERRORS`: FalkorDB rejecting the query for its text or its data, as a parse
error, a type mismatch, a map as a property value). Everything else, timeouts, memory limits,
a read-only replica, anything unknown, is retried: the stream ends with ``UNAVAILABLE`` after a
pause that doubles with each consecutive failure of that sensor (0.5 s up to 30 s), so neither
side loops hot. A permanent refusal first costs only the part of the plugin it comes from: the
batch is tried again without each plugin's part in turn, and the first that applies counts
the dropped part on the ``Sensor`` node (``store.py``). Only when none applies does the batch
become a counted gap. A part whose rows cannot even be serialised (a third-party plugin's map
key that is no identifier, an object of an unsupported type) is dropped and counted the same
way before the query is sent, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import redis.exceptions
from google.protobuf.message import DecodeError

from net_gazer import PROTOCOL_MINOR
from net_gazer.collector.auth import Authenticator
from net_gazer.collector.graphwrite import Loss, SensorInfo
from net_gazer.collector.plugins import CollectorPlugins
from net_gazer.collector.store import DeliveryError, GraphStore, Outcome, PoisonBatch
from net_gazer.v1 import wire_pb2, wire_pb2_grpc

log = logging.getLogger(__name__)

MAX_ID = 128

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[wire_pb2.Envelope, wire_pb2.Ack]


@dataclass
class Limits:
    """What one collector accepts before it pushes back (docs/architecture.md, "Scale")."""

    #: Concurrent sensor streams; more are turned away with RESOURCE_EXHAUSTED.
    max_streams: int = 1024
    #: Rows per second per sensor; above it the collector waits before applying, which slows the
    #: sensor's acks (backpressure) instead of buffering. 0: unlimited.
    rows_per_second: float = 20_000.0
    #: Graph writes in flight at once, over all sensors.
    max_writes: int = 8
    #: How long a batch may wait for a write slot before it is refused with RESOURCE_EXHAUSTED
    #: (the sensor keeps it and retries later).
    write_wait: float = 30.0


class RateLimiter:
    """A token bucket per sensor: ``rate`` rows/s with a burst of two seconds' worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate * 2
        self.stamp = time.monotonic()

    def delay(self, rows: int) -> float:
        """Take ``rows`` tokens; return how long to wait for them to be earned."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.rate * 2, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= rows
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class IngestStats:
    streams: int = 0
    active: int = 0
    batches: int = 0
    duplicates: int = 0
    gaps: int = 0
    rejected: int = 0
    #: Batches the graph database refused for good: recorded as gaps.
    refused_batches: int = 0
    #: Writes that failed for a reason that may pass; the sensor resent them later.
    retried_writes: int = 0
    #: Batches applied without the part of a plugin that the database refused.
    salvaged_batches: int = 0
    unauthenticated: int = 0
    denied: int = 0
    shed: int = 0
    throttled_seconds: float = 0.0
    #: Completed handshakes in applied batches' rows (for /metrics).
    handshakes: int = 0


#: Largest seq accepted: FalkorDB integers are signed 64-bit, and 2**53 keeps every seq exact in
#: any JSON consumer too. A sensor cutting a batch a millisecond would need 285,000 years.
MAX_SEQ = 2**53

#: FalkorDB errors that refuse a query for its text or its data, and so would refuse it again
#: (messages of FalkorDB 4.16, checked against the server in tests/test_ingest_errors.py). Only
#: these may cost a batch, or a plugin's part of it; every other error is retried.
PERMANENT_ERRORS = (
    "errMsg: Invalid input",  # the query does not parse
    "Property values can only be of primitive types or arrays of primitive types",
    "Type mismatch:",
    "Division by zero",
    "Cannot merge node using null property value",
    "Cannot merge relationship using null property value",
    "Unknown function '",
    " not defined",  # an unknown variable: "'x' not defined"
)
#: The pause before a failed write ends the stream, doubling per consecutive failure.
RETRY_MIN = 0.5
RETRY_MAX = 30.0


class Undecodable:
    """What a request that is not an Envelope deserialises to (instead of an exception that would
    end the stream as UNKNOWN)."""


UNDECODABLE = Undecodable()


def _parse(data: bytes) -> wire_pb2.Envelope | Undecodable:
    try:
        return wire_pb2.Envelope.FromString(data)
    except DecodeError:
        return UNDECODABLE


def add_to_server(service: IngestService, server: grpc.aio.Server) -> None:
    """Register the service like the generated ``add_IngestServicer_to_server``, with a request
    parser that turns undecodable bytes into an INVALID_ARGUMENT instead of an UNKNOWN."""
    handlers = {
        "Stream": grpc.stream_stream_rpc_method_handler(
            service.Stream,
            request_deserializer=_parse,
            response_serializer=wire_pb2.Ack.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("net_gazer.v1.Ingest", handlers),)
    )


def _permanent(exc: redis.exceptions.RedisError) -> bool:
    """True only for a refusal that resending the same batch cannot change."""
    if type(exc) is not redis.exceptions.ResponseError:  # OOM, LOADING, READONLY, ... subclasses
        return False
    message = str(exc)
    return any(marker in message for marker in PERMANENT_ERRORS)


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID and value.isprintable()


class IngestService(wire_pb2_grpc.IngestServicer):
    def __init__(
        self,
        store: GraphStore,
        plugins: CollectorPlugins,
        auth: Authenticator | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.auth = auth or Authenticator()
        self.limits = limits or Limits()
        self._writes_sem = asyncio.Semaphore(self.limits.max_writes)
        self.stats = IngestStats()
        self._failures: dict[str, int] = {}  # consecutive failed writes, by sensor id

    async def _reject(self, context: Context, code: grpc.StatusCode, why: str) -> None:
        self.stats.rejected += 1
        log.warning("rejected a sensor stream from %s: %s", context.peer(), why)
        await context.abort(code, why)

    async def Stream(
        self,
        request_iterator: AsyncIterator[wire_pb2.Envelope],
        context: Context,
    ) -> AsyncIterator[wire_pb2.Ack]:
        self.stats.streams += 1
        if self.stats.active >= self.limits.max_streams:
            self.stats.shed += 1
            await self._reject(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the collector serves {self.limits.max_streams} sensors already; retry later or add a replica",
            )
        self.stats.active += 1
        try:
            async for ack in self._stream(request_iterator, context):
                yield ack
        finally:
            self.stats.active -= 1

    async def _stream(
        self,
        request_iterator: AsyncIterator[wire_pb2.Envelope],
        context: Context,
    ) -> AsyncIterator[wire_pb2.Ack]:
        identity = self.auth.identify(context)
        if self.auth.required and identity is None:
            self.stats.unauthenticated += 1
            await self._reject(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "no valid sensor certificate or token; check the sensor's --tls-cert/--token-file",
            )
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        if isinstance(first, Undecodable):
            await self._reject(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the stream does not carry net-gazer envelopes",
            )
        assert isinstance(first, wire_pb2.Envelope)
        if not first.HasField("hello") or first.seq != 0:
            await self._reject(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first envelope must be a hello with seq 0",
            )
        if not _valid_id(first.sensor_id) or not _valid_id(first.epoch):
            await self._reject(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "sensor_id and epoch must be 1-128 printable characters",
            )
        if self.auth.required and first.sensor_id != identity:
            self.stats.denied += 1
            await self._reject(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"credentials of sensor {identity!r} cannot write as sensor {first.sensor_id!r}",
            )
        hello = first.hello
        if hello.protocol_minor + 1 < PROTOCOL_MINOR:
            await self._reject(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"sensor protocol 1.{hello.protocol_minor} is too old for this collector (1.{PROTOCOL_MINOR}); upgrade the sensor",
            )
        site = hello.site if _valid_id(hello.site) else first.sensor_id
        sensor = SensorInfo(
            id=first.sensor_id,
            site=site,
            epoch=first.epoch,
            hostname=hello.hostname,
            version=hello.version,
        )
        try:
            acked = await self.store.hello(sensor, hello)
        except redis.exceptions.RedisError as exc:
            if _permanent(exc):
                await self._reject(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the graph database refused this hello: {exc}",
                )
            await self._retry_later(context, sensor, f"graph database unavailable: {exc}")
        except OSError as exc:
            await self._retry_later(context, sensor, f"graph database unavailable: {exc}")
        log.info(
            "sensor %s connected from %s (epoch %s, mark %d)",
            sensor.id,
            context.peer(),
            sensor.epoch,
            acked,
        )
        yield wire_pb2.Ack(epoch=sensor.epoch, acked_seq=acked)
        limiter = RateLimiter(self.limits.rows_per_second)
        async for env in request_iterator:
            if isinstance(env, Undecodable):
                await self._reject(
                    context, grpc.StatusCode.INVALID_ARGUMENT, "an envelope could not be decoded"
                )
            assert isinstance(env, wire_pb2.Envelope)
            gap = env.gap if env.HasField("gap") else None
            if not 0 < env.seq <= MAX_SEQ or (
                gap is not None
                and not (
                    0 < gap.first_seq <= env.seq
                    and gap.lost_envelopes <= MAX_SEQ
                    and gap.lost_items <= MAX_SEQ
                )
            ):
                await self._reject(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"seq {env.seq} or its gap is out of range (seq 1..2**53, a gap's first_seq "
                    "up to its seq, its loss counts up to 2**53)",
                )
            if env.sensor_id != sensor.id or env.epoch != sensor.epoch:
                await self._reject(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "an envelope names another sensor or epoch than the stream's hello",
                )
            try:
                if env.HasField("batch"):
                    wait = limiter.delay(len(env.batch.handshakes) + len(env.batch.extensions))
                    if wait > 0:
                        self.stats.throttled_seconds += wait
                        await asyncio.sleep(wait)  # backpressure: the ack comes later
                    outcome = await self._apply_batch(context, sensor, env)
                    self.stats.batches += 1
                    if outcome.value == "applied":
                        self.stats.handshakes += sum(h.completed for h in env.batch.handshakes)
                elif env.HasField("gap"):
                    outcome = await self.store.gap(sensor, env.seq, env.gap)
                    self.stats.gaps += 1
                else:
                    await self._reject(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "an envelope after the hello must hold a batch or a gap",
                    )
                    return
            except DeliveryError as exc:
                await self._reject(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
                return
            except (redis.exceptions.RedisError, OSError) as exc:
                await self._retry_later(context, sensor, f"graph database unavailable: {exc}")
            self._failures.pop(sensor.id, None)
            if outcome.value == "duplicate":
                self.stats.duplicates += 1
            yield wire_pb2.Ack(epoch=sensor.epoch, acked_seq=env.seq)

    async def _apply_batch(
        self, context: Context, sensor: SensorInfo, env: wire_pb2.Envelope
    ) -> Outcome:
        """Apply a batch with its plugins' writes; what the database refuses for good costs the
        refusing plugin's part, or the batch as a gap (see the module docstring)."""
        try:
            await asyncio.wait_for(self._writes_sem.acquire(), timeout=self.limits.write_wait)
        except TimeoutError:
            self.stats.shed += 1
            await self._reject(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "the graph database is too slow to take more writes; the sensor keeps its batches and retries",
            )
        try:
            writes, losses, unhandled = self.plugins.collect(sensor, env.batch)
            counters = dict(env.batch.counters)
            try:
                return await self.store.apply(
                    sensor, env.seq, writes, counters, losses=losses, unhandled=unhandled
                )
            except PoisonBatch as exc:
                return await self._record_refused(context, sensor, env, exc)
            except redis.exceptions.RedisError as exc:
                if not _permanent(exc):
                    raise
                refusal = exc
            for plugin in dict.fromkeys(w.plugin for w in writes):
                without = [w for w in writes if w.plugin != plugin]
                lost = [*losses, Loss(plugin, f"refused by the graph database: {refusal}")]
                try:
                    outcome = await self.store.apply(
                        sensor, env.seq, without, counters, losses=lost, unhandled=unhandled
                    )
                except redis.exceptions.RedisError as exc:
                    if not _permanent(exc):
                        raise
                    continue
                self.stats.salvaged_batches += 1
                log.error(
                    "the graph database refused collector plugin %s's part of batch %d of sensor "
                    "%s (%s); the rest of the batch is applied and the loss counted",
                    plugin, env.seq, sensor.id, refusal,
                )  # fmt: skip
                return outcome
            return await self._record_refused(context, sensor, env, refusal)
        finally:
            self._writes_sem.release()

    async def _retry_later(self, context: Context, sensor: SensorInfo, why: str) -> None:
        """End the stream UNAVAILABLE after a pause that grows with consecutive failures."""
        failures = self._failures[sensor.id] = self._failures.get(sensor.id, 0) + 1
        if len(self._failures) > 100_000:
            self._failures.clear()
        self.stats.retried_writes += 1
        pause = min(RETRY_MIN * 2 ** (failures - 1), RETRY_MAX)
        log.warning(
            "graph write failed for sensor %s (%s); the sensor resends after %.1f s",
            sensor.id, why, pause,
        )  # fmt: skip
        await asyncio.sleep(pause)
        await context.abort(grpc.StatusCode.UNAVAILABLE, why)

    async def _record_refused(
        self, context: Context, sensor: SensorInfo, env: wire_pb2.Envelope, exc: Exception
    ) -> Outcome:
        self.stats.refused_batches += 1
        log.error(
            "the graph database refused batch %d of sensor %s: %s; recorded as a gap",
            env.seq,
            sensor.id,
            exc,
        )
        items = len(env.batch.handshakes) + len(env.batch.extensions)
        gap = wire_pb2.Gap(
            first_seq=env.seq,
            lost_envelopes=1,
            lost_items=items,
            reason=f"refused by the graph database: {exc}"[:500],
        )
        return await self.store.gap(sensor, env.seq, gap)

    def status(self) -> dict[str, Any]:
        """Delivery health for the collector's status (/healthz): what was retried, refused and
        lost since this collector started."""
        s, store = self.stats, self.store.stats
        return {
            "retried_writes": s.retried_writes,
            "refused_batches": s.refused_batches,
            "salvaged_batches": s.salvaged_batches,
            "plugin_lost": dict(store.plugin_lost),
            "unhandled_extensions": dict(self.plugins.unhandled),
        }
