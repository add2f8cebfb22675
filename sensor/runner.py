"""The sensor's main loop: start the stream, run live capture or a replay, then drain.

Live and replay share everything but the clock (``live.py``, ``replay.py``); the packet path itself
is in ``pipeline.py`` and the assembly in ``build.py``.

Stopping: the first SIGINT or SIGTERM stops capture; the sensor then flushes and waits for the
collector's acks. A live sensor with a spool waits only :data:`LIVE_DRAIN` seconds, because what is
not yet acknowledged stays in the spool for its next start; a replay (or a live sensor without a
spool) waits up to ``--ack-timeout``. A second signal ends the wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from net_gazer.sensor.credentials import channel_credentials
from net_gazer.sensor.hello import hello
from net_gazer.sensor.live import live
from net_gazer.sensor.pipeline import Sensor
from net_gazer.sensor.reload import reload
from net_gazer.sensor.replay import replay
from net_gazer.sensor.transport import Streamer

log = logging.getLogger(__name__)

#: Seconds a stopping live sensor with a spool waits for the collector's last acks.
LIVE_DRAIN = 2.0


class Signals:
    """What the signal handlers set: ``stop`` at the first SIGINT/SIGTERM, ``force`` at the
    second."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.force = asyncio.Event()

    def received(self) -> None:
        if self.stop.is_set():
            log.warning("second stop signal: not waiting for the collector any longer")
            self.force.set()
        else:
            self.stop.set()


async def run(sensor: Sensor, signals: Signals | None = None, metrics: Any = None) -> int:
    """Run until the capture ends (replay) or a stop signal arrives (live); return the exit
    code. ``metrics`` is the ``--metrics`` collector, told about the stream."""
    cfg = sensor.cfg
    signals = signals or Signals()
    streamer = Streamer(
        cfg.collector,
        sensor.outbox,
        lambda: hello(sensor),
        credentials=channel_credentials(cfg),
        server_name=cfg.tls_server_name,
        token=cfg.token,
    )
    if metrics is not None:
        metrics.streamer = streamer
    sensor.host.safecall("ng_sensor_start", ctx=sensor.ctx)
    streamer.start()
    try:
        if cfg.read is not None:
            await replay(sensor, signals.stop)
        else:
            await live(sensor, signals.stop)
        sensor.host.safecall("ng_sensor_stop", ctx=sensor.ctx)
        sensor.cut()
        return await _drain(sensor, streamer, signals.force)
    finally:
        await streamer.stop()
        for h in sensor.handles:
            h.close()


async def _drain(sensor: Sensor, streamer: Streamer, force: asyncio.Event) -> int:
    outbox, cfg = sensor.outbox, sensor.cfg
    spooled = outbox.spool is not None and not cfg.replay
    timeout = min(cfg.ack_timeout, LIVE_DRAIN) if spooled else cfg.ack_timeout
    empty = asyncio.ensure_future(outbox.wait_empty())
    forced = asyncio.ensure_future(force.wait())
    try:
        await asyncio.wait({empty, forced}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (empty, forced):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    _log_summary(sensor)
    if not len(outbox):
        return 0
    if spooled:
        assert outbox.spool is not None
        log.warning(
            "stopping with %d batches not yet acknowledged by %s; they stay in the spool %s and "
            "go out at the next start",
            len(outbox),
            cfg.collector,
            outbox.spool.dir,
        )
        return 0
    why = f" (last error: {streamer.last_error})" if streamer.last_error else ""
    log.error(
        "the collector at %s acknowledged %d of %d batches within %.0f s; %d are not delivered%s",
        cfg.collector,
        outbox.acked_seq,
        outbox.last_seq,
        timeout,
        len(outbox),
        why,
    )
    return 1


def _log_summary(sensor: Sensor) -> None:
    c = sensor.counters
    log.info(
        "packets %d (tcp %d, other %d, malformed %d), handshake events %d, batches %d acked %d",
        c.packets,
        c.tcp,
        c.non_tcp,
        c.malformed,
        c.events,
        sensor.outbox.last_seq,
        sensor.outbox.acked_seq,
    )


def install_signals(signals: Signals, sensor: Sensor | None = None) -> None:
    """SIGINT/SIGTERM stop (twice: at once); SIGHUP reloads the configuration."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signals.received)
    if sensor is not None:
        loop.add_signal_handler(signal.SIGHUP, reload, sensor)
