"""Builds a lab from its :class:`~net_gazer.lab.topology.Topology` with iproute2, sysctl, iptables
and ethtool, and removes it again.

Veth pairs are created directly inside the lab's namespaces (``ip link add … netns A type veth
peer … netns B``): no lab interface ever exists in the host's namespace, not even for a moment.
Processes are started detached (``setsid --fork``), so that a Ctrl-C in the terminal that ran
``up`` does not reach them; ``down`` stops them by their recorded PID.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from net_gazer.errors import UserError
from net_gazer.lab import locations
from net_gazer.lab.state import LabState, Process, alive, netns_name, proc_start_time
from net_gazer.lab.topology import GATEWAY, WAN_IF, Topology

log = logging.getLogger(__name__)

TOOLS = {"ip": "iproute2", "ethtool": "ethtool", "iptables": "iptables", "ip6tables": "iptables",
         "sysctl": "procps", "setsid": "util-linux"}  # fmt: skip

#: ICMP error rate limits, per namespace. ``icmp_ratelimit`` is the per-destination token bucket
#: (burst 6); ``icmp_msgs_*`` the namespace-wide budget that IPv6 shares. Off lifts both.
ICMP_KEYS = ("net.ipv4.icmp_ratelimit", "net.ipv6.icmp.ratelimit", "net.ipv4.icmp_msgs_per_sec",
             "net.ipv4.icmp_msgs_burst")  # fmt: skip
ICMP_OFF = {"net.ipv4.icmp_ratelimit": "0", "net.ipv6.icmp.ratelimit": "0",
            "net.ipv4.icmp_msgs_per_sec": "100000", "net.ipv4.icmp_msgs_burst": "100000"}  # fmt: skip

COMMON_SYSCTLS = ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
FORWARDING_SYSCTLS = (
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.forwarding=1",
    "net.ipv4.fib_multipath_hash_policy=1",  # L4: ECMP spreads flows by port
    "net.ipv6.fib_multipath_hash_policy=1",
)
SERVER_WAIT = 20.0  # seconds for the servers to listen
STOP_WAIT = 1.0  # seconds between SIGTERM and SIGKILL in down


class StepError(Exception):
    def __init__(self, cmd: Sequence[str], stderr: str) -> None:
        super().__init__(f"'{' '.join(cmd[:6])}' failed: {stderr.strip() or 'no message'}")


def missing_tools() -> list[str]:
    return sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})


def _run(cmd: Sequence[str], stdin: str | None = None, log: Path | None = None) -> str:
    """Run ``cmd`` and return its output; StepError with its message when it fails. With
    ``log``, the output goes to that file instead (a detached process keeps writing to it)."""
    try:
        if log is None:
            proc = subprocess.run(
                list(cmd), input=stdin, capture_output=True, text=True, timeout=60, check=False
            )
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            with log.open("ab") as f:
                code = subprocess.run(
                    list(cmd), stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=60, check=False
                ).returncode
            out, err = "", f"see {log}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepError(cmd, str(exc)) from None
    if code != 0:
        raise StepError(cmd, err)
    return out


def _in(ns: str, *cmd: str) -> str:
    return _run(["ip", "netns", "exec", ns, *cmd])


def _batch(ns: str | None, lines: list[str]) -> None:
    if lines:
        _run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], stdin="\n".join(lines) + "\n")


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    try:
        yield
    except StepError as exc:
        raise UserError(f"building the lab failed while {what}: {exc}") from None


def up(name: str, topo: Topology, *, icmp_ratelimit: bool = True, nat: bool = False) -> LabState:
    """Build lab ``name``. On any failure (or Ctrl-C) everything built so far is removed again
    and the error re-raised."""
    options = {"silent": topo.silent, "icmp_ratelimit": icmp_ratelimit, "nat": nat}
    try:
        state = LabState.create(name, options)
    except FileExistsError:
        raise UserError(
            f"a lab named {name} exists; choose another name or remove it: net-gazer-lab down {name}"
        ) from None
    try:
        _build(state, topo, icmp_ratelimit=icmp_ratelimit, nat=nat)
    except BaseException:
        down(name)
        raise
    return state


def _build(state: LabState, topo: Topology, *, icmp_ratelimit: bool, nat: bool) -> None:
    lab = state.name
    ns = {n.name: netns_name(lab, n.name) for n in topo.nodes}
    with _step("creating the namespaces"):
        for netns in ns.values():
            state.namespaces.append(netns)  # recorded first: down removes it even if we die now
            state.save()
            try:
                _run(["ip", "netns", "add", netns])
            except StepError:
                state.namespaces.remove(netns)  # someone else's: never ours to delete
                state.save()
                raise
        first = ns[topo.nodes[0].name]
        state.icmp_defaults = dict(
            zip(ICMP_KEYS, _in(first, "sysctl", "-n", *ICMP_KEYS).split(), strict=True)
        )
        state.save()
    with _step("setting sysctls"):
        for node in topo.nodes:
            keys = COMMON_SYSCTLS + (FORWARDING_SYSCTLS if node.forwards else ())
            _in(ns[node.name], "sysctl", "-qw", *keys)
    with _step("creating the veth pairs"):
        _batch(
            None,
            [
                f"link add name {k.a_if} netns {ns[k.a]} type veth peer name {k.b_if} netns {ns[k.b]}"
                for k in topo.links
            ],
        )
    with _step("configuring addresses"):
        for node in topo.nodes:
            lines = ["link set lo up"]
            for ifname, iface in topo.addresses(node.name):
                nodad = " nodad" if iface.version == 6 else ""
                lines.append(f"addr add {iface} dev {ifname}{nodad}")
            lines += [f"link set {link.ifname(node.name)} up" for link in topo.links_of(node.name)]
            lines += [f"route add local {p} dev lo" for p in node.anyip]
            _batch(ns[node.name], lines)
    with _step("turning offloads off"):
        for node in topo.nodes:
            for link in topo.links_of(node.name):
                _in(ns[node.name], "ethtool", "-K", link.ifname(node.name),
                    "tso", "off", "gso", "off", "gro", "off")  # fmt: skip
    with _step("adding routes"):
        for node in topo.nodes:
            lines = []
            for r in topo.routes(node.name):
                hops = (
                    f"via {r.via[0]}"
                    if len(r.via) == 1
                    else " ".join(f"nexthop via {v}" for v in r.via)
                )
                lines.append(f"route add {r.dst} {hops}")
            _batch(ns[node.name], lines)
    with _step("configuring the firewall"):
        if topo.silent:
            _in(ns[topo.silent], "iptables", "-w", "-A", "OUTPUT", "-p", "icmp",
                "--icmp-type", "time-exceeded", "-j", "DROP")  # fmt: skip
            _in(ns[topo.silent], "ip6tables", "-w", "-A", "OUTPUT", "-p", "ipv6-icmp",
                "--icmpv6-type", "time-exceeded", "-j", "DROP")  # fmt: skip
        if nat:
            _in(ns[GATEWAY], "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", WAN_IF,
                "-j", "MASQUERADE")  # fmt: skip
    if not icmp_ratelimit:
        with _step("lifting the ICMP rate limits"):
            set_icmp_ratelimit(state, on=False)
    with _step("starting the servers"):
        _start_servers(state, topo, ns)
    try:
        state.locations.write_text(locations.render(topo, lab))
    except OSError as exc:
        raise UserError(f"cannot write {state.locations}: {exc.strerror}") from None
    state.status = "up"
    state.save()


def _start_servers(state: LabState, topo: Topology, ns: dict[str, str]) -> None:
    pending = {}
    for name in topo.servers:
        node = topo.node(name)
        ready = state.dir / f"{name}.ready"
        spec = json.dumps(
            [{"proto": s.proto, "port": s.port, "kind": s.kind} for s in node.services]
        )
        _run(["setsid", "--fork", "ip", "netns", "exec", ns[name], sys.executable, "-m",
              "net_gazer.lab.servers", spec, str(ready)], log=state.dir / f"{name}.log")  # fmt: skip
        pending[name] = ready
    deadline = time.monotonic() + SERVER_WAIT
    while pending:
        for name, ready in list(pending.items()):
            text = ready.read_text() if ready.exists() else ""
            if text.endswith("\n"):
                pid = int(text.split()[0])
                start = proc_start_time(pid)
                if start is None:
                    raise StepError(["server", name], f"it exited; see {state.dir / name}.log")
                state.processes.append(Process(name, pid, start))
                state.save()
                del pending[name]
        if pending and time.monotonic() > deadline:
            logs = ", ".join(str(state.dir / f"{n}.log") for n in pending)
            raise StepError(
                ["server", *pending], f"not listening after {SERVER_WAIT:.0f} s; see {logs}"
            )
        time.sleep(0.02)


def set_icmp_ratelimit(state: LabState, *, on: bool) -> None:
    """Linux's ICMP error rate limits in every namespace of the lab (on), or none (off)."""
    values = state.icmp_defaults if on else ICMP_OFF
    for netns in state.namespaces:
        _in(netns, "sysctl", "-qw", *(f"{k}={values[k]}" for k in ICMP_KEYS))
    state.options["icmp_ratelimit"] = on
    state.save()


def existing_namespaces() -> set[str]:
    out = subprocess.run(
        ["ip", "-j", "netns", "list"], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    return {entry["name"] for entry in json.loads(out or "[]")}


def down(name: str) -> bool:
    """Remove lab ``name``: its processes (by recorded PID and start time), every process left
    inside its namespaces, the namespaces (and so their veths) and its state. Idempotent;
    False when there was nothing to remove."""
    with _uninterrupted():
        return _down(name)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored (by the ``ip`` children too) while a lab is removed: the
    removal is short and bounded, and half a lab left behind is worse than a second's wait."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _down(name: str) -> bool:
    state = LabState.load(name)
    if state is None:
        return False
    present = existing_namespaces()
    namespaces = [n for n in state.namespaces if n in present]
    victims = [p.pid for p in state.processes if p.alive()]
    for netns in namespaces:
        out = subprocess.run(
            ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False, timeout=30
        ).stdout
        victims += [int(pid) for pid in out.split()]
    _terminate(sorted(set(victims)))
    for netns in namespaces:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False, timeout=30)
    state.remove_dir()
    return True


def _terminate(pids: list[int]) -> None:
    """SIGTERM, a bounded wait, then SIGKILL for what is left."""
    starts = {pid: proc_start_time(pid) for pid in pids}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline and any(alive(p, s) for p, s in starts.items()):
        time.sleep(0.02)
    for pid, start in starts.items():
        if alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
