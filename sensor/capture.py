"""Capture: a thin adapter over libpcap (pypcap) that yields ``(ts, frame)`` lists.

Live handles run in non-blocking mode and are read when their file descriptor is readable (a
blocking ``dispatch`` in a thread hung the whole interpreter). Files are read through the very
same libpcap, with the same kernel-syntax filter, so replay and live share one code path.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pcap

from net_gazer.errors import ConfigError, UserError
from net_gazer.sensor.decode import check_linktype
from net_gazer.sensor.packet import DLT_EN10MB

log = logging.getLogger(__name__)

Frames = list[tuple[float, bytes]]


def permission_hint(what: str) -> str:
    python = sys.executable or "python3"
    return (
        f"capturing on {what} needs CAP_NET_RAW and CAP_NET_ADMIN: run as root, use the "
        f"net-gazer-sensor systemd unit, or grant them with "
        f"'sudo setcap cap_net_raw,cap_net_admin=eip {os.path.realpath(python)}'"
    )


def bpf_union(fragments: list[str], linktype: int, exclude: list[str]) -> str:
    """One kernel filter: the union of the plugins' fragments, minus the excluded traffic.

    The exclusion comes first because the ``vlan`` keyword shifts the offsets of every test after
    it; the VLAN clause therefore stands last, and only on Ethernet, the one link type that has it.
    """
    frags = [f.strip() for f in fragments if f and f.strip()]
    want = "tcp" if not frags else " or ".join(f"({f})" for f in dict.fromkeys(frags))
    if linktype == DLT_EN10MB:
        want = f"({want}) or (vlan and ({want}))"
    if exclude:
        return " and ".join([*(f"not ({e})" for e in exclude), f"({want})"])
    return want


def exclusion_for(host: str, port: int) -> list[str]:
    """BPF clauses that exclude the sensor's own TCP connection to ``host:port``."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return []
    addrs = sorted({str(info[4][0]) for info in infos})
    return [f"tcp and host {a} and port {port}" for a in addrs]


@dataclass
class Handle:
    """One open capture: an interface or a file."""

    pc: Any
    name: str
    role: str
    index: int
    linktype: int
    live: bool
    filter: str = ""

    @classmethod
    def open_live(
        cls, name: str, role: str, index: int, snaplen: int, buffer_bytes: int = 0
    ) -> Handle:
        """``buffer_bytes`` sizes the kernel capture ring (0: libpcap's default, 2 MiB)."""
        if os.path.exists(name) and not os.path.exists(f"/sys/class/net/{name}"):
            raise ConfigError(f"{name!r} is a file, not an interface; replay files with -r/--read")
        if name != "any" and not os.path.exists(f"/sys/class/net/{name}"):
            raise UserError(
                f"interface {name!r} does not exist on this host; list the interfaces with 'ip link'"
            )
        try:
            pc = pcap.pcap(
                name=name, snaplen=snaplen, promisc=False, immediate=True, timeout_ms=50,
                buffer_size=buffer_bytes,
            )  # fmt: skip
        except OSError as exc:
            text = str(exc)
            if "ermission" in text or "not permitted" in text:
                raise UserError(permission_hint(name)) from None
            if "No such device" in text:
                raise UserError(
                    f"interface {name!r} does not exist on this host; list the interfaces with 'ip link'"
                ) from None
            raise UserError(f"cannot capture on {name}: {text}") from None
        pc.setnonblock(True)
        linktype = pc.datalink()
        try:
            check_linktype(linktype)
        except ValueError as exc:
            raise UserError(f"interface {name}: {exc}") from None
        return cls(pc=pc, name=name, role=role, index=index, linktype=linktype, live=True)

    @classmethod
    def open_file(cls, path: Path) -> Handle:
        if not path.exists():
            raise UserError(f"cannot read {path}: no such file")
        if not path.is_file():
            raise UserError(f"cannot read {path}: not a regular file")
        if not os.access(path, os.R_OK):
            raise UserError(f"cannot read {path}: permission denied")
        try:
            pc = pcap.pcap(name=str(path), timestamp_in_ns=False)
        except OSError as exc:
            raise UserError(
                f"{path} is not a capture libpcap can read (pcap or pcapng): {exc}"
            ) from None
        linktype = pc.datalink()
        try:
            check_linktype(linktype)
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None
        return cls(pc=pc, name=str(path), role="", index=0, linktype=linktype, live=False)

    def set_filter(self, expression: str) -> None:
        try:
            self.pc.setfilter(expression)
        except OSError as exc:
            raise ConfigError(
                f"the capture filter {expression!r} does not compile: {exc}"
            ) from None
        self.filter = expression

    def fileno(self) -> int:
        return int(self.pc.fileno())

    def read(self, limit: int = 4096) -> Frames:
        """Up to ``limit`` frames that are ready now (live) or next (file); [] at end of file."""
        frames: Frames = []
        try:
            self.pc.dispatch(limit, lambda ts, buf: frames.append((ts, bytes(buf))))
        except OSError as exc:
            if self.live and getattr(exc, "errno", None) in (errno.EAGAIN, errno.EINTR):
                return frames
            raise UserError(f"capture on {self.name} failed: {exc}") from None
        return frames

    def stats(self) -> tuple[int, int, int]:
        """libpcap's counters: received, dropped by the buffer, dropped by the interface."""
        if not self.live:
            return (0, 0, 0)
        try:
            recv, drop, ifdrop = self.pc.stats()
        except OSError:
            return (0, 0, 0)
        return int(recv), int(drop), int(ifdrop)

    def close(self) -> None:
        close = getattr(self.pc, "close", None)
        if close is not None:
            close()
