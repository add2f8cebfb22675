"""Least privilege: after opening its capture sockets, a sensor started as root becomes its user
and keeps only CAP_NET_RAW and CAP_NET_ADMIN (capabilities(7)).

Under systemd the unit starts the sensor as its user with those two ambient capabilities, and
nothing here is needed.

Before it drops, a root start hands the spool directory to the user. That directory may have been
the user's for a while, so whatever is in it is untrusted: the hand-over reaches it without
following links (:mod:`~net_gazer.sensor.safepath`), refuses it unless it belongs to root or the
user and nobody else can write to it, and changes the owner only of the directory and of the
plain files in it, through descriptors opened with ``O_NOFOLLOW`` and checked to have a single
name (a hard link to ``/etc/shadow`` keeps its owner). Links, FIFOs and the rest are left alone.

Capabilities are set through the C library's ``capset(2)`` wrapper, never a syscall number,
which differs between architectures.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import stat
from pathlib import Path

from net_gazer.errors import UserError
from net_gazer.sensor import safepath

log = logging.getLogger(__name__)

CAP_NET_ADMIN = 12  # linux/capability.h
CAP_NET_RAW = 13
KEEP = (CAP_NET_ADMIN, CAP_NET_RAW)
KEEP_MASK = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)

PR_CAPBSET_DROP = 24  # prctl(2)
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
DEFAULT_USER = "net-gazer"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
# glibc (and musl) export capset(2); the argument types keep ctypes from guessing.
_libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
_libc.capset.restype = ctypes.c_int


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def _capset(mask: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = mask & 0xFFFFFFFF
    data[1].effective = data[1].permitted = mask >> 32
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def capabilities() -> dict[str, int]:
    """CapEff/CapPrm/CapBnd/CapAmb of this process, from /proc."""
    caps: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Cap"):
            key, _, value = line.partition(":")
            caps[key] = int(value.strip(), 16)
    return caps


def target_user(configured: str) -> pwd.struct_passwd | None:
    """The user to become: the configured one, else ``net-gazer`` when it exists, else None."""
    if configured:
        try:
            return pwd.getpwnam(configured)
        except KeyError:
            raise UserError(
                f"user {configured!r} does not exist; create it or change --user"
            ) from None
    try:
        return pwd.getpwnam(DEFAULT_USER)
    except KeyError:
        return None


def drop(user: pwd.struct_passwd, writable: list[Path]) -> None:
    """Become ``user`` keeping only CAP_NET_RAW and CAP_NET_ADMIN. ``writable`` directories (the
    spool) are handed to the user first (see the module docstring)."""
    for path in writable:
        hand_over(path, user)
    try:
        for cap in range(_last_cap() + 1):  # the bounding set: no way back, even through exec
            if cap not in KEEP:
                _prctl(PR_CAPBSET_DROP, cap)
        _prctl(PR_SET_KEEPCAPS, 1)
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        _capset(KEEP_MASK)
        _prctl(PR_SET_KEEPCAPS, 0)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise UserError(f"cannot drop privileges to user {user.pw_name}: {exc.strerror}") from None
    caps = capabilities()
    if caps.get("CapEff") != KEEP_MASK or os.getuid() != user.pw_uid:
        raise UserError(
            f"dropping privileges to {user.pw_name} left capabilities {caps.get('CapEff', 0):#x}; refusing to run"
        )
    log.info("running as %s with only CAP_NET_RAW and CAP_NET_ADMIN", user.pw_name)


def hand_over(directory: Path, user: pwd.struct_passwd) -> None:
    """Give ``directory`` and the plain files in it to ``user``, following no link; refuse a
    directory that someone other than root or ``user`` owns or can write to."""
    try:
        fd = safepath.open_directory(directory)
    except FileNotFoundError:
        return
    except safepath.UnsafeLink as exc:
        raise UserError(
            f"the spool path {directory} goes through the symbolic link {exc.path}, which a user "
            "other than root can change; give --spool-dir a path without it"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot open the spool directory {directory}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid not in (0, user.pw_uid):
            raise UserError(
                f"the spool directory {directory} belongs to uid {st.st_uid}, neither root nor "
                f"{user.pw_name}; give it to {user.pw_name} (chown -R) or choose another --spool-dir"
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UserError(
                f"the spool directory {directory} is writable by other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); run chmod go-w on it"
            )
        for name in os.listdir(fd):
            try:
                entry = os.open(name, safepath.O_LOOK, dir_fd=fd)
            except OSError:  # a symbolic link (ELOOP), a socket (ENXIO), gone meanwhile
                log.warning(
                    "not handing %s to %s: not a plain file", directory / name, user.pw_name
                )
                continue
            try:
                est = os.fstat(entry)
                if (
                    stat.S_ISREG(est.st_mode)
                    and est.st_nlink == 1
                    and est.st_uid in (0, user.pw_uid)
                ):
                    os.fchown(entry, user.pw_uid, user.pw_gid)
                else:
                    log.warning(
                        "not handing %s to %s: not a plain file of the spool's",
                        directory / name,
                        user.pw_name,
                    )
            finally:
                os.close(entry)
        os.fchown(fd, user.pw_uid, user.pw_gid)
    finally:
        os.close(fd)


def drop_if_root(configured: str, writable: list[Path], *, warn: bool = True) -> None:
    """The sensor's start-up step: drop when running as root, warn when there is no user to become
    (``warn`` is off for replays, which need no capture privileges)."""
    if os.geteuid() != 0:
        if configured and pwd.getpwuid(os.geteuid()).pw_name != configured:
            raise UserError(
                f"switching to user {configured!r} needs root; start the sensor as root or drop --user"
            )
        return
    user = target_user(configured)
    if user is None:
        if not warn:
            return
        log.warning(
            "running as root: create the %s system user (the .deb does) or give --user, so the sensor "
            "keeps only CAP_NET_RAW and CAP_NET_ADMIN after opening its sockets", DEFAULT_USER,
        )  # fmt: skip
        return
    drop(user, writable)
