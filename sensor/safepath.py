"""Directories opened without following a link that a less privileged user planted.

A sensor started as root works, for a moment, in a spool directory that belongs to its
unprivileged user (it handed the directory over at an earlier start). Whoever controls that user
can put anything there: a symbolic link named like a spool file and pointing to ``/etc/shadow``,
a hard link to a root-owned file, a FIFO, or a link in place of the spool directory itself. So:

- :func:`open_directory` walks a path from ``/`` one component at a time with ``O_NOFOLLOW``.
  A symbolic link on the way is followed only where it lies in a directory that nobody but root
  (or the running user) can change, such as ``/var/run -> /run``; any other link ends the walk
  with :class:`UnsafeLink`.
- Files inside are then opened relative to that directory's descriptor (``dir_fd``), always with
  ``O_NOFOLLOW``, created with ``O_EXCL``, and checked with ``fstat`` on the open descriptor
  before anything is written or handed over, so a swap between check and use changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Opening an entry to look at it: never follow a link, never block on a FIFO, never become a
#: controlling terminal.
O_LOOK = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
MAX_LINKS = 16


class UnsafeLink(Exception):
    """A symbolic link on the path lies in a directory that another user can change."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def trusted(st: os.stat_result) -> bool:
    """Only root, or the user running this, can change a directory with this status."""
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def open_directory(path: Path, *, create_mode: int | None = None) -> int:
    """A descriptor of the directory ``path`` (close it), reached without following untrusted
    links. With ``create_mode`` missing components are created: the last one with that mode, the
    others with 0o755 (both under the umask). Raises :class:`UnsafeLink` or an ``OSError``."""
    parts = list(Path(os.path.abspath(path)).parts[1:])
    fd = os.open("/", O_DIR)
    walked = ""
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            try:
                nfd = os.open(part, O_DIR | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                with contextlib.suppress(FileExistsError):  # made meanwhile: open it next round
                    os.mkdir(part, create_mode if not parts else 0o755, dir_fd=fd)
                parts.insert(0, part)
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise
                here = f"{walked}/{part}"
                if not trusted(os.fstat(fd)):
                    raise UnsafeLink(here) from None
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), here) from None
                target = os.readlink(part, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", O_DIR)
                    walked = ""
                parts = [p for p in Path(target).parts if p != "/"] + parts
                continue
            os.close(fd)
            fd = nfd
            walked = f"{walked}/{part}"
        return fd
    except BaseException:
        os.close(fd)
        raise
