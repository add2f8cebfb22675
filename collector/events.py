"""The collector's JSON event log (``--json-log FILE``): one JSON object per line for each
alert, sensor identity conflict (one sensor id claimed by two machines) and gap (a sensor had to
drop data), and, once traces are collected, each route change. The writer is
:class:`net_gazer.jsonlog.JsonLog` (reopened after rotation and on SIGHUP). docs/events.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from net_gazer.jsonlog import JsonLog


class CollectorEvents:
    """``emit(event, fields)``: a line with ``event``, ``ts`` (collector time) and ``fields``."""

    def __init__(self, log: JsonLog | None, clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.clock = clock
        self.counts: dict[str, int] = {}

    def emit(self, event: str, fields: dict[str, Any]) -> None:
        self.counts[event] = self.counts.get(event, 0) + 1
        if self.log is not None:
            self.log.write({"event": event, "ts": self.clock(), **fields})

    def reopen(self) -> None:
        if self.log is not None:
            self.log.reopen()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
