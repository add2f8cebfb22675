"""Live capture: frames from the interfaces as they arrive, ticks on the wall clock.

With several interfaces, a :class:`Merger` holds frames for a few milliseconds so that copies of one
packet seen on two interfaces are processed in timestamp order, not in the order the sockets were
read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from net_gazer.sensor.capture import Frames, Handle
from net_gazer.sensor.pipeline import READ_CHUNK, Sensor

#: How long frames wait in the merger (seconds).
REORDER_DELAY = 0.005


class Merger:
    """Merges the frames of several live handles into timestamp order (a small reorder window)."""

    def __init__(self, sensor: Sensor, delay: float = REORDER_DELAY) -> None:
        self.sensor = sensor
        self.delay = delay
        self.pending: list[tuple[float, int, bytes]] = []

    def add(self, index: int, frames: Frames) -> None:
        self.pending.extend((ts, index, buf) for ts, buf in frames)

    def flush(self, now: float | None = None) -> None:
        """Process the frames older than the window (all of them when ``now`` is None)."""
        if not self.pending:
            return
        self.pending.sort(key=lambda f: f[0])
        cut = len(self.pending)
        if now is not None:
            limit = now - self.delay
            cut = next((i for i, f in enumerate(self.pending) if f[0] > limit), cut)
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        handles = self.sensor.handles
        start = 0
        while start < len(ready):  # runs of one handle go through process() together
            index = ready[start][1]
            end = start
            while end < len(ready) and ready[end][1] == index:
                end += 1
            self.sensor.process(handles[index], [(ts, buf) for ts, _, buf in ready[start:end]])
            start = end


async def live(sensor: Sensor, stop: asyncio.Event) -> None:
    """Capture until ``stop`` is set; then process what is still buffered and give every pending
    attempt its verdict (a restarted sensor could not match their answers anyway)."""
    loop = asyncio.get_running_loop()
    interval = sensor.cfg.flush_interval
    merger = Merger(sensor) if len(sensor.handles) > 1 else None
    timer: asyncio.TimerHandle | None = None

    def flush_merger() -> None:
        nonlocal timer
        timer = None
        assert merger is not None
        merger.flush(time.time())
        if merger.pending:
            timer = loop.call_later(merger.delay, flush_merger)

    def reader(position: int, h: Handle) -> Callable[[], None]:
        def on_readable() -> None:
            nonlocal timer
            for _ in range(8):  # bounded, so ticks and the stream get their turn
                frames = h.read(READ_CHUNK)
                if not frames:
                    break
                if merger is None:
                    sensor.process(h, frames)
                else:
                    merger.add(position, frames)
            if merger is not None and merger.pending and timer is None:
                timer = loop.call_later(merger.delay, flush_merger)

        return on_readable

    for position, h in enumerate(sensor.handles):
        loop.add_reader(h.fileno(), reader(position, h))
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                break
            if merger is not None:
                merger.flush(time.time())
            sensor.tick(time.time())
    finally:
        if timer is not None:
            timer.cancel()
        for h in sensor.handles:
            loop.remove_reader(h.fileno())
        for position, h in enumerate(sensor.handles):  # what is still buffered
            if merger is None:
                sensor.process(h, h.read(READ_CHUNK))
            else:
                merger.add(position, h.read(READ_CHUNK))
        if merger is not None:
            merger.flush()
    # After the last frames, so their events travel too.
    sensor.tick(time.time(), final=True, close=True)
