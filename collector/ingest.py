"""The gRPC ingest service: one bidirectional stream per sensor.

The first envelope must be a hello; the answer is the mark the graph holds for the hello's epoch.
Every later envelope is applied through the store (exactly once, with the mark, in one query) and
only then acknowledged. Errors end the stream with a status the sensor can act on:
``INVALID_ARGUMENT`` for malformed streams, ``FAILED_PRECONDITION`` for delivery holes,
``UNAVAILABLE`` while the graph database is down (the sensor resends later).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import redis.exceptions
from google.protobuf.message import DecodeError

from net_gazer import PROTOCOL_MINOR
from net_gazer.collector.auth import Authenticator
from net_gazer.collector.graphwrite import GraphWrite, SensorInfo
from net_gazer.collector.plugins import CollectorPlugins
from net_gazer.collector.store import DeliveryError, GraphStore, Outcome
from net_gazer.v1 import wire_pb2, wire_pb2_grpc

log = logging.getLogger(__name__)

MAX_ID = 128

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[wire_pb2.Envelope, wire_pb2.Ack]

#: Fault injection for the crash tests: SIGKILL this process right after the Nth applied batch,
#: before its ack is sent. Only read from the environment; never set it in production.
FAULT_KILL_AFTER = "NG_FAULT_KILL_AFTER_WRITE"


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
    unauthenticated: int = 0
    denied: int = 0
    shed: int = 0
    refused_batches: int = 0
    throttled_seconds: float = 0.0


#: Largest seq accepted: FalkorDB integers are signed 64-bit, and 2**53 keeps every seq exact in
#: any JSON consumer too. A sensor cutting a batch a millisecond would need 285,000 years.
MAX_SEQ = 2**53

#: Prefixes of FalkorDB/Redis errors that mean "try again later", not "this query is bad".
TRANSIENT_ERRORS = ("OOM", "READONLY", "MASTERDOWN", "NOREPLICAS", "LOADING", "BUSY", "TRYAGAIN")


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


def _transient(exc: redis.exceptions.ResponseError) -> bool:
    return str(exc).lstrip().upper().startswith(TRANSIENT_ERRORS)


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
        kill = os.environ.get(FAULT_KILL_AFTER, "")
        self._kill_after = int(kill) if kill.isdigit() else 0

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
        except redis.exceptions.ResponseError as exc:
            if _transient(exc):
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"graph database busy: {exc}")
            await self._reject(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the graph database refused this hello: {exc}",
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"graph database unavailable: {exc}")
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
                    try:
                        await asyncio.wait_for(
                            self._writes_sem.acquire(), timeout=self.limits.write_wait
                        )
                    except TimeoutError:
                        self.stats.shed += 1
                        await self._reject(
                            context,
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "the graph database is too slow to take more writes; the sensor keeps its batches and retries",
                        )
                    try:
                        outcome = await self.store.apply(
                            sensor,
                            env.seq,
                            self._writes(sensor, env.batch),
                            dict(env.batch.counters),
                        )
                    finally:
                        self._writes_sem.release()
                    self.stats.batches += 1
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
            except redis.exceptions.ResponseError as exc:
                if _transient(exc):
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"graph database busy: {exc}")
                # The database refuses this batch and would refuse it again: resending cannot
                # help. Record it as lost, visibly, and go on (the mark moves past it).
                outcome = await self._record_refused(context, sensor, env, exc)
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("graph write failed for sensor %s: %s", sensor.id, exc)
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"graph database unavailable: {exc}"
                )
            if outcome.value == "duplicate":
                self.stats.duplicates += 1
            elif self._kill_after and self.store.stats.batches >= self._kill_after:
                log.error(
                    "fault injection: killing the collector after write %d, before its ack",
                    self.store.stats.batches,
                )
                os.kill(os.getpid(), signal.SIGKILL)
            yield wire_pb2.Ack(epoch=sensor.epoch, acked_seq=env.seq)

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
        try:
            return await self.store.gap(sensor, env.seq, gap)
        except DeliveryError as err:
            await self._reject(context, grpc.StatusCode.FAILED_PRECONDITION, str(err))
        except (redis.exceptions.RedisError, OSError) as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"graph database unavailable: {err}")
        raise AssertionError("unreachable")  # abort raises

    def _writes(self, sensor: SensorInfo, batch: wire_pb2.Batch) -> list[GraphWrite]:
        writes = self.plugins.graph_writes(sensor, batch)
        for ext in batch.extensions:
            handled = self.plugins.handle_extension(sensor, ext.plugin, ext.payload)
            if handled is None:
                unhandled = self.plugins.unhandled
                # Names come from the network: past 256 of them, count the rest together.
                name = ext.plugin if ext.plugin in unhandled or len(unhandled) < 256 else "<other>"
                unhandled[name] = unhandled.get(name, 0) + 1
            else:
                writes.extend(handled)
        return writes
