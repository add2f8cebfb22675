"""Logging set-up. Only entry points call this; modules use ``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging
import sys


def setup(verbosity: int, *, name: str) -> None:
    """Configure the root logger: WARNING by default, INFO with -v, DEBUG with -vv."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    fmt = f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Our own notices (connected, listening, ...) stay visible at the default verbosity.
    logging.getLogger("net_gazer").setLevel(min(level, logging.INFO))
