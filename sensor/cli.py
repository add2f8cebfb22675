"""``net-gazer-sensor``: the gateway daemon."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from net_gazer import __version__, logs
from net_gazer.errors import UserError

log = logging.getLogger("net_gazer.sensor")

EPILOG = """\
examples:
  net-gazer-sensor -i eth1:lan -i eth0:wan --collector collector.example.net:50051
  net-gazer-sensor -r capture.pcap --collector 127.0.0.1:50051     # replay, no probing
  net-gazer-sensor --list-plugins

Configuration: TOML file (-c, NG_CONFIG, or ./etc/net-gazer/, /usr/local/etc/net-gazer/,
/etc/net-gazer/ net-gazer.toml), then environment (NG_IFACE, NG_COLLECTOR, NG_SENSOR_ID),
then flags.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="net-gazer-sensor",
        description="Watch the TCP handshakes crossing this gateway and report them to a collector.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("what to capture")
    src.add_argument(
        "-i",
        "--iface",
        action="append",
        metavar="IFACE[:ROLE]",
        help="interface to capture on, repeatable, with an optional role "
        "(-i eth1:lan -i eth0:wan); env NG_IFACE; default: the default route's",
    )
    src.add_argument(
        "-r",
        "--read",
        metavar="FILE.pcap",
        help="replay a capture file through the same code; packet timestamps drive all timing",
    )
    src.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="pace a replay: 1 = real time, 2 = twice as fast; default: as fast as possible",
    )
    src.add_argument(
        "--loop",
        action="store_true",
        help="replay the file again and again, moving time forward (the demo uses this)",
    )
    src.add_argument(
        "--local-networks",
        metavar="CIDR,...",
        help="the gateway's own networks, which decide direction; default: the captured "
        "interfaces' networks (private ranges when replaying)",
    )
    out = p.add_argument_group("where results go")
    out.add_argument(
        "--collector",
        metavar="HOST:PORT",
        help="collector gRPC address, or unix:/path for a Unix socket; env NG_COLLECTOR; "
        "default 127.0.0.1:50051",
    )
    out.add_argument(
        "--sensor-id",
        metavar="ID",
        help="this sensor's id; env NG_SENSOR_ID; default: the hostname",
    )
    out.add_argument(
        "--ack-timeout",
        type=float,
        metavar="SECONDS",
        help="at the end, how long to wait for the collector's acks (default 30)",
    )
    out.add_argument(
        "--flush-interval",
        type=float,
        metavar="SECONDS",
        help="how often results are batched for the collector (default 1)",
    )
    out.add_argument(
        "--spool-dir",
        metavar="DIR",
        help="keep unacknowledged batches on disk here, so an outage or a restart loses nothing "
        "up to the buffer bound; env NG_SPOOL_DIR; default for live capture: $STATE_DIRECTORY/spool, "
        "/var/lib/net-gazer/spool (root) or ~/.local/state/net-gazer/spool; replays keep batches "
        "in memory unless given",
    )
    out.add_argument(
        "--no-spool", action="store_true", help="keep unacknowledged batches in memory only"
    )
    sec = p.add_argument_group(
        "authentication (see scripts/make-certs.sh and scripts/make-token.sh)"
    )
    sec.add_argument(
        "--tls-ca", metavar="FILE", help="talk TLS to the collector and trust this CA (PEM)"
    )
    sec.add_argument(
        "--tls-cert", metavar="FILE", help="this sensor's certificate for mutual TLS (PEM)"
    )
    sec.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    sec.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name to expect in the collector's certificate",
    )
    sec.add_argument(
        "--token-file", metavar="FILE", help="a per-sensor token to present; env NG_TOKEN"
    )
    sec.add_argument(
        "--user",
        metavar="NAME",
        help="started as root, become this user after opening the capture, keeping only "
        "CAP_NET_RAW and CAP_NET_ADMIN (default: net-gazer, when that user exists)",
    )
    gen = p.add_argument_group("general")
    gen.add_argument(
        "-c", "--config", metavar="FILE", help="configuration file (TOML); env NG_CONFIG"
    )
    gen.add_argument(
        "--probe",
        action="store_true",
        help="allow active probing in replay mode (off by default when replaying; no built-in "
        "plugin probes yet: traceroute arrives with its own issue)",
    )
    gen.add_argument(
        "--no-dpi",
        action="store_true",
        help="no payload inspection: the dpi plugin (host names from TLS SNI, HTTP Host and DNS "
        "answers) is not loaded",
    )
    gen.add_argument(
        "--metrics",
        metavar="ADDR",
        help="serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9108 (off by default)",
    )
    gen.add_argument("--list-plugins", action="store_true", help="list the sensor plugins and exit")
    gen.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v, -vv)")
    gen.add_argument("--version", action="version", version=f"net-gazer {__version__}")
    return p


def list_plugins(allow: list[str], block: list[str], order: Sequence[str] = ()) -> int:
    from net_gazer import pluginhost
    from net_gazer.sensor import PROJECT, hookspecs

    host = pluginhost.create(PROJECT, hookspecs, allow=allow, block=block, order=order)
    for info in host.plugins():
        print(f"{info.name} {info.version}  ({info.module})")
        print(f"    hooks: {', '.join(info.hooks)}")
    for name, why in sorted(host.failed.items()):
        print(f"{name}  FAILED TO LOAD: {why}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.verbose, name="sensor")
    try:
        from net_gazer.sensor import config, runner
        from net_gazer.sensor.build import build

        cfg = config.load(args)
        if args.list_plugins:
            return list_plugins(cfg.plugins_allow, cfg.plugins_block, cfg.plugins_order)
        sensor = build(cfg)
        metrics = None
        if cfg.metrics:
            from net_gazer.sensor.metrics import serve

            _server, metrics, _port = serve(sensor, cfg.metrics)  # before dropping root
        from net_gazer.sensor import privileges

        privileges.drop_if_root(
            cfg.user, [sensor.outbox.spool.dir] if sensor.outbox.spool else [], warn=not cfg.replay
        )

        async def go() -> int:
            signals = runner.Signals()
            runner.install_signals(signals, sensor)
            return await runner.run(sensor, signals, metrics=metrics)

        return asyncio.run(go())
    except UserError as exc:
        print(f"net-gazer-sensor: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
