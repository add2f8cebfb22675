"""The object each collector plugin receives as ``ctx``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CollectorContext:
    name: str
    config: dict[str, Any]
    graph: str
    counters: dict[str, int] = field(default_factory=dict)
    log: logging.Logger = field(init=False)

    def __post_init__(self) -> None:
        self.log = logging.getLogger(f"net_gazer.plugin.{self.name}")

    def count(self, key: str, n: int = 1) -> None:
        """Add to a counter of this plugin (shown in /healthz and /api/plugins)."""
        self.counters[key] = self.counters.get(key, 0) + n
