"""``net-gazer-lab up|traffic|status|down|sensor``: the lab on this machine (needs root)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from net_gazer import __version__, logs
from net_gazer.errors import UserError
from net_gazer.lab import state, topology
from net_gazer.lab.topology import CLIENT, GATEWAY, LAN_IF, WAN_IF

PROG = "net-gazer-lab"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A multi-hop network of Linux network namespaces on this machine: a client "
        "LAN, a gateway for the sensor, routers (one silent, an ECMP pair, a branch) and servers. "
        "Documentation and private addresses only; nothing routes out.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("--version", action="version", version=f"net-gazer {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="build a lab (a new one each time; labs coexist)")
    up.add_argument("--name", help="the lab's name, 1-12 of a-z and 0-9 (default: random)")
    up.add_argument(
        "--silent",
        default="r2",
        metavar="ROUTER",
        help="the router that sends no ICMP time-exceeded, or 'none' (default r2)",
    )
    up.add_argument(
        "--icmp-ratelimit",
        choices=("default", "off"),
        default="default",
        help="ICMP error rate limits in the lab: Linux's defaults, or off (default: default)",
    )
    up.add_argument(
        "--nat", action="store_true", help="the gateway masquerades the client LAN (IPv4)"
    )

    traffic = sub.add_parser("traffic", help="real TCP and UDP from the client to every server")
    _lab_option(traffic)
    traffic.add_argument(
        "--rate", type=float, default=5.0, help="connections per second (default 5)"
    )
    traffic.add_argument(
        "--duration", type=float, default=10.0, help="seconds, then it stops (default 10)"
    )
    traffic.add_argument("--seed", type=int, default=0, help="shuffles targets and AnyIP picks")
    traffic.add_argument("--json", action="store_true", help="one JSON list of every connection")

    status = sub.add_parser("status", help="list the labs on this machine")
    status.add_argument("names", nargs="*", metavar="NAME")
    status.add_argument("--json", action="store_true", help="as JSON")

    down = sub.add_parser("down", help="remove labs (idempotent)")
    down.add_argument("names", nargs="*", metavar="NAME")
    down.add_argument("--all", action="store_true", help="every lab on this machine")

    sensor = sub.add_parser(
        "sensor",
        help="run net-gazer-sensor on the lab's gateway, capturing both its interfaces",
        description="Runs net-gazer-sensor in the gateway's namespace with -i lan0:lan -i "
        "wan0:wan and the client LAN as --local-networks; arguments after -- go to the sensor.",
    )
    _lab_option(sensor)
    sensor.add_argument("sensor_args", nargs=argparse.REMAINDER, metavar="-- SENSOR ARGS")
    return p


def _lab_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lab", metavar="NAME", help="which lab (default: the only one)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.verbose, name="lab")
    try:
        if os.geteuid() != 0:
            raise UserError("the lab builds network namespaces and needs root; run it with sudo")
        from net_gazer.lab import builder

        missing = builder.missing_tools()
        if missing:
            raise UserError(
                f"{PROG} needs these Debian packages: {', '.join(missing)} "
                f"(apt-get install {' '.join(missing)})"
            )
        return int(COMMANDS[args.command](args))
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def cmd_up(args: argparse.Namespace) -> int:
    from net_gazer.lab import builder

    name = args.name or state.new_name()
    if not state.NAME_RE.match(name):
        raise UserError(f"the lab name {name!r} must be 1-12 characters of a-z and 0-9")
    silent = "" if args.silent == "none" else args.silent
    try:
        topo = topology.default(silent=silent)
    except ValueError:
        routers = ", ".join(topology.default().routers)
        raise UserError(f"--silent {args.silent}: choose one of {routers} or none") from None
    lab = builder.up(name, topo, icmp_ratelimit=args.icmp_ratelimit == "default", nat=args.nat)
    limits = "Linux defaults" if args.icmp_ratelimit == "default" else "off"
    srv = topo.address("srv1", 4)
    print(
        f"lab {name} is up: {len(lab.namespaces)} namespaces ({state.netns_name(name, '*')}), "
        f"silent router {silent or 'none'}, ECMP over {'/'.join(topo.ecmp)}, "
        f"ICMP rate limits {limits}{', NAT on the gateway' if args.nat else ''}"
    )
    print(f"  try:     ip netns exec {state.netns_name(name, CLIENT)} curl -s http://{srv}/")
    print(f"  traffic: {PROG} traffic --lab {name} --rate 5 --duration 10")
    print(f"  sensor:  {PROG} sensor --lab {name} -- --collector unix:/path/to/collector.sock")
    print(f"  map:     net-gazer-collector --locations {lab.locations}")
    print(f"  remove:  {PROG} down {name}")
    return 0


def _resolve(name: str | None) -> tuple[state.LabState, topology.Topology]:
    labs = state.names()
    if name is None:
        if len(labs) != 1:
            raise UserError(
                "no lab is up; start one with: net-gazer-lab up"
                if not labs
                else f"several labs are up ({', '.join(labs)}); choose one with --lab NAME"
            )
        name = labs[0]
    lab = state.LabState.load(name)
    if lab is None or lab.status != "up":
        raise UserError(f"lab {name} is not up; see net-gazer-lab status")
    return lab, topology.default(silent=str(lab.options.get("silent", "")))


def cmd_traffic(args: argparse.Namespace) -> int:
    if not 0 < args.rate <= 1000:
        raise UserError("--rate must be more than 0 and at most 1000 connections per second")
    if not 0 < args.duration <= 86_400:
        raise UserError("--duration must be more than 0 and at most 86400 seconds")
    lab, _ = _resolve(args.lab)
    cmd = [
        "ip", "netns", "exec", state.netns_name(lab.name, CLIENT), sys.executable, "-m",
        "net_gazer.lab.traffic", str(args.rate), str(args.duration), str(args.seed),
        *(["--json"] if args.json else []),
    ]  # fmt: skip
    os.execvp(cmd[0], cmd)  # the traffic process takes this PID: signals reach it directly


def cmd_sensor(args: argparse.Namespace) -> int:
    lab, topo = _resolve(args.lab)
    extra = list(args.sensor_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    cmd = [
        "ip", "netns", "exec", state.netns_name(lab.name, GATEWAY), sys.executable, "-m",
        "net_gazer.sensor.cli", "-i", f"{LAN_IF}:lan", "-i", f"{WAN_IF}:wan",
        "--local-networks", ",".join(str(n) for n in topo.local_networks()),
        *([] if "--sensor-id" in extra else ["--sensor-id", f"lab-{lab.name}"]), *extra,
    ]  # fmt: skip
    os.execvp(cmd[0], cmd)


def describe(name: str) -> dict[str, Any]:
    from net_gazer.lab import builder

    lab = state.LabState.load(name)
    assert lab is not None
    present = builder.existing_namespaces()
    return {
        "name": name,
        "status": lab.status,
        "created": lab.created,
        "options": lab.options,
        "namespaces": lab.namespaces,
        "namespaces_present": sum(n in present for n in lab.namespaces),
        "processes": [{"node": p.node, "pid": p.pid, "running": p.alive()} for p in lab.processes],
        "locations": str(lab.locations) if lab.locations.exists() else "",
    }


def cmd_status(args: argparse.Namespace) -> int:
    names = args.names or state.names()
    unknown = [n for n in names if n not in state.names()]
    if unknown:
        raise UserError(f"no lab named {', '.join(unknown)}; see net-gazer-lab status")
    labs = [describe(n) for n in names]
    if args.json:
        print(json.dumps(labs, indent=1))
        return 0
    if not labs:
        print("no lab is up; start one with: net-gazer-lab up")
        return 0
    print(f"{'LAB':<12}  {'STATUS':<8}  {'AGE':>8}  {'NAMESPACES':>10}  {'SERVERS':>7}  OPTIONS")
    for d in labs:
        o = d["options"]
        age = _age(time.time() - d["created"])
        ns = f"{d['namespaces_present']}/{len(d['namespaces'])}"
        running = f"{sum(p['running'] for p in d['processes'])}/{len(d['processes'])}"
        opts = (
            f"silent {o.get('silent') or 'none'}, ICMP limits "
            f"{'on' if o.get('icmp_ratelimit', True) else 'off'}{', NAT' if o.get('nat') else ''}"
        )
        print(f"{d['name']:<12}  {d['status']:<8}  {age:>8}  {ns:>10}  {running:>7}  {opts}")
    return 0


def _age(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def cmd_down(args: argparse.Namespace) -> int:
    from net_gazer.lab import builder

    names = state.names() if args.all else args.names
    if not names and not args.all:
        labs = state.names()
        if len(labs) > 1:
            raise UserError(f"several labs are up ({', '.join(labs)}); name them or give --all")
        names = labs
    if not names:
        print("no lab is up; nothing to remove")
    for name in names:
        removed = builder.down(name)
        print(f"lab {name} removed" if removed else f"lab {name} does not exist; nothing to remove")
    return 0


COMMANDS = {
    "up": cmd_up,
    "traffic": cmd_traffic,
    "status": cmd_status,
    "down": cmd_down,
    "sensor": cmd_sensor,
}


if __name__ == "__main__":
    sys.exit(main())
