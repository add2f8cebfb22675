"""A JSON event log: one JSON object per line, appended to a file, for SIEMs and ``jq``.

Both hosts use it for ``--json-log FILE``. It plays well with logrotate: the file is reopened
when it was renamed or removed under the writer (its device or inode changed, checked at most
once a second, as ``logging.handlers.WatchedFileHandler`` does on every record), and on
:meth:`JsonLog.reopen` (SIGHUP), so both ``create`` and ``copytruncate`` rotations work. Each
line is written whole with one ``write`` in append mode, so lines of concurrent writers do not
interleave below the pipe-buffer size.

Values that JSON cannot hold are made safe: NaN and infinities become ``null``, bytes and other
objects their text form. A write that fails (disk full, the directory gone) drops that line,
counts it in ``dropped``, and is logged once per failure streak: an event log never stops the
process that writes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, TextIO

from net_gazer.errors import UserError

log = logging.getLogger(__name__)

#: Seconds between two checks that the file is still the one open.
CHECK_INTERVAL = 1.0


def _safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def dumps(obj: dict[str, Any]) -> str:
    """One line of JSON (no newline) for ``obj``."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:  # a NaN or infinity somewhere
        return json.dumps(_safe(obj), separators=(",", ":"), default=str)


class JsonLog:
    """Appends JSON lines to ``path``; see the module docstring."""

    def __init__(self, path: Path, clock: Any = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._file: TextIO | None = None
        self._ident: tuple[int, int] | None = None
        self._checked = 0.0
        self.lines = 0
        self.dropped = 0
        self.reopened = 0
        self._failing = False
        try:
            self._open()
        except OSError as exc:
            raise UserError(f"cannot open the JSON log {path}: {exc.strerror}") from None

    def _open(self) -> None:
        f = self.path.open("a", encoding="utf-8")
        st = os.fstat(f.fileno())
        self._file, self._ident = f, (st.st_dev, st.st_ino)
        self._checked = self._clock()

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def reopen(self) -> None:
        """Close and open the file again (SIGHUP; after a rotation)."""
        self._close()
        try:
            self._open()
            self.reopened += 1
        except OSError as exc:
            self._fail(exc)

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def write(self, obj: dict[str, Any]) -> None:
        now = self._clock()
        if self._file is None or now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            if self._file is None or self._rotated():
                self.reopen()
            if self._file is None:
                self.dropped += 1
                return
        try:
            self._file.write(dumps(obj) + "\n")
            self._file.flush()
        except OSError as exc:
            self.dropped += 1
            self._fail(exc)
            self._close()
            return
        self.lines += 1
        self._failing = False

    def _fail(self, exc: OSError) -> None:
        if not self._failing:
            log.error("cannot write the JSON log %s: %s; lines are dropped until it works again",
                      self.path, exc.strerror or exc)  # fmt: skip
        self._failing = True

    def close(self) -> None:
        self._close()
