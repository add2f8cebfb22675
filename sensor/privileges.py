"""Least privilege: after opening its capture sockets, a sensor started as root becomes its user
and keeps only CAP_NET_RAW and CAP_NET_ADMIN (capabilities(7)).

Under systemd the unit starts the sensor as its user with those two ambient capabilities, and
nothing here is needed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
from pathlib import Path

from net_gazer.errors import UserError

log = logging.getLogger(__name__)

CAP_NET_ADMIN = 12  # linux/capability.h
CAP_NET_RAW = 13
KEEP = (CAP_NET_ADMIN, CAP_NET_RAW)
KEEP_MASK = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)

PR_CAPBSET_DROP = 24  # prctl(2)
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPSET = 126  # x86_64; aarch64 is 91
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
    syscall = SYS_CAPSET if os.uname().machine == "x86_64" else 91
    if _libc.syscall(syscall, ctypes.byref(header), ctypes.byref(data)) != 0:
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
    """Become ``user`` keeping only CAP_NET_RAW and CAP_NET_ADMIN. ``writable`` paths (the spool)
    are handed to the user first."""
    for path in writable:
        for p in [path, *path.rglob("*")] if path.exists() else []:
            os.chown(p, user.pw_uid, user.pw_gid)
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
