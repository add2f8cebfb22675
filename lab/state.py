"""Which labs exist: one directory per lab under ``/run/net-gazer-lab`` (a tmpfs, emptied at boot
like the namespaces themselves), holding ``state.json``, the locations file and server logs.

The state is written before anything is created and updated after every namespace and process,
so ``down`` removes exactly what ``up`` made, even when ``up`` was killed half way. Processes are
recorded with their start time, so that a recycled PID is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_ROOT = Path(os.environ.get("NG_LAB_STATE_DIR", "/run/net-gazer-lab"))
NAME_RE = re.compile(r"^[a-z0-9]{1,12}$")
NETNS_PREFIX = "ng-"


def netns_name(lab: str, node: str) -> str:
    """The namespace of ``node`` in lab ``lab``: ``ng-LAB-NODE`` (``ip netns exec`` takes it)."""
    return f"{NETNS_PREFIX}{lab}-{node}"


def new_name() -> str:
    while True:
        name = secrets.token_hex(2)
        if not (STATE_ROOT / name).exists():
            return name


def proc_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


@dataclass
class Process:
    node: str
    pid: int
    start: int

    def alive(self) -> bool:
        return alive(self.pid, self.start)


def alive(pid: int, start: int | None) -> bool:
    """``pid`` is still the process that started at ``start`` (not a recycled PID), and is not
    a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return start is not None and int(fields[19]) == start and fields[0] != "Z"


@dataclass
class LabState:
    name: str
    status: str = "building"  # "building", "up"
    created: float = field(default_factory=time.time)
    options: dict[str, Any] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    #: The routers' ICMP rate-limit sysctls as Linux set them in a fresh namespace.
    icmp_defaults: dict[str, str] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def locations(self) -> Path:
        return self.dir / "locations.toml"

    def save(self) -> None:
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(self.dir / "state.json")

    @classmethod
    def create(cls, name: str, options: dict[str, Any]) -> LabState:
        """A new lab's directory; FileExistsError when the name is taken."""
        STATE_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        (STATE_ROOT / name).mkdir(mode=0o755)
        state = cls(name=name, options=options)
        state.save()
        return state

    @classmethod
    def load(cls, name: str) -> LabState | None:
        """The lab's state; None when it does not exist (or is unreadable: then only what the
        directory name tells is known)."""
        path = STATE_ROOT / name / "state.json"
        if not NAME_RE.match(name) or not (STATE_ROOT / name).is_dir():
            return None
        try:
            data = json.loads(path.read_text())
            procs = [Process(**p) for p in data.pop("processes", [])]
            return cls(**data, processes=procs)
        except (OSError, ValueError, TypeError):
            return cls(name=name, status="broken")

    def remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def names() -> list[str]:
    """Every lab with a state directory, by name."""
    with contextlib.suppress(FileNotFoundError):
        return sorted(p.name for p in STATE_ROOT.iterdir() if p.is_dir() and NAME_RE.match(p.name))
    return []
