"""Replay (``-r``): a capture file through the packet path on packet time.

``--speed`` paces it against the wall clock; ``--loop`` starts over with time moved forward (and
rebased to now, so the demo's data looks live). Replay waits for the collector instead of dropping
when the outbox is full: nothing is lost by pausing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from net_gazer.sensor.capture import Handle
from net_gazer.sensor.pipeline import READ_CHUNK, Sensor


async def replay(sensor: Sensor, stop: asyncio.Event) -> None:
    cfg = sensor.cfg
    assert cfg.read is not None
    handle = sensor.handles[0]
    interval = cfg.flush_interval
    offset = 0.0  # added to every packet timestamp
    first_raw: float | None = None
    last_raw = 0.0
    v0 = 0.0  # virtual time of the first packet
    wall0 = 0.0
    next_tick = 0.0
    while not stop.is_set():
        frames = handle.read(READ_CHUNK)
        if not frames:
            if not cfg.loop or first_raw is None:
                break
            offset += (last_raw - first_raw) + interval
            expression = handle.filter
            handle.close()
            handle = sensor.handles[0] = Handle.open_file(cfg.read)
            handle.set_filter(expression)
            continue
        if first_raw is None:
            first_raw = frames[0][0]
            if cfg.loop:
                offset = time.time() - first_raw
            v0 = first_raw + offset
            wall0 = time.monotonic()
            next_tick = v0 + interval
        last_raw = frames[-1][0]
        start = 0
        while start < len(frames) and not stop.is_set():
            end = start
            while end < len(frames) and frames[end][0] + offset < next_tick:
                end += 1
            if end > start:
                if cfg.speed > 0:
                    await _pace(frames[start][0] + offset - v0, wall0, cfg.speed, stop)
                sensor.process(handle, frames[start:end], offset)
            if end < len(frames):  # the next packet lies past a tick boundary
                if cfg.speed > 0:
                    await _pace(next_tick - v0, wall0, cfg.speed, stop)
                sensor.tick(next_tick)
                next_tick += interval
                upcoming = frames[end][0] + offset
                if upcoming >= next_tick + interval:  # skip empty intervals
                    next_tick += ((upcoming - next_tick) // interval) * interval
                await _room(sensor, stop)
            start = end
        await asyncio.sleep(0)  # let the stream run
    sensor.tick(sensor.now, final=True, close=True)


async def _pace(packet_elapsed: float, wall0: float, speed: float, stop: asyncio.Event) -> None:
    delay = wall0 + packet_elapsed / speed - time.monotonic()
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


async def _room(sensor: Sensor, stop: asyncio.Event) -> None:
    while sensor.outbox.full and not stop.is_set():
        sensor.outbox.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sensor.outbox.changed.wait(), timeout=1.0)
