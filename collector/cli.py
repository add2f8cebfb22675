"""``net-gazer-collector``: gRPC ingest, the graph store and the web viewer in one process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from net_gazer import __version__, logs
from net_gazer.errors import UserError

if TYPE_CHECKING:
    from net_gazer.collector.embedded import EmbeddedFalkorDB

log = logging.getLogger("net_gazer.collector")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="net-gazer-collector",
        description="Receive sensors' results over gRPC, write the hop graph into FalkorDB, serve the viewer.",
        epilog="Without --graph-url the collector starts an embedded FalkorDB (AOF on) in --data-dir.",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="configuration file (TOML, see deploy/collector.toml)",
    )
    p.add_argument(
        "--listen",
        metavar="ADDR",
        help="gRPC address for sensors, or unix:/path for a Unix socket, mode 0660 "
        "(default 127.0.0.1:50051)",
    )
    p.add_argument(
        "--http", metavar="ADDR", help="web viewer and API address (default 127.0.0.1:8080)"
    )
    p.add_argument(
        "--graph-url",
        metavar="redis://HOST:PORT",
        help="an external FalkorDB instead of the embedded one",
    )
    p.add_argument("--graph", metavar="NAME", help="graph name (default net_gazer)")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the embedded FalkorDB keeps its data "
        "(default ~/.local/share/net-gazer/collector)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --listen without TLS and sensor authentication",
    )
    p.add_argument(
        "--tls-cert", metavar="FILE", help="serve gRPC over TLS with this certificate (PEM)"
    )
    p.add_argument("--tls-key", metavar="FILE", help="the TLS certificate's private key (PEM)")
    p.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="require sensor certificates signed by this CA (mutual TLS; identity = certificate CN)",
    )
    p.add_argument(
        "--tokens",
        metavar="FILE",
        help="per-sensor tokens, lines 'SENSOR_ID SHA256_OF_TOKEN' (scripts/make-token.sh)",
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        metavar="N",
        help="largest gRPC message accepted from a sensor (default 16 MiB)",
    )
    p.add_argument(
        "--max-sensors",
        type=int,
        metavar="N",
        help="concurrent sensor streams; more are refused with RESOURCE_EXHAUSTED (default 1024)",
    )
    p.add_argument(
        "--rows-per-second",
        type=float,
        metavar="N",
        help="per-sensor rate; above it acks slow down (backpressure); 0 = unlimited (default 20000)",
    )
    p.add_argument(
        "--graph-read-url",
        metavar="URL",
        help="a FalkorDB replica (redis://HOST:PORT) for the web's reads; default: --graph-url",
    )
    p.add_argument(
        "--partition-by-site",
        action="store_true",
        default=None,
        help="write each sensor site to its own graph, <graph>_<site> (for a FalkorDB cluster)",
    )
    p.add_argument(
        "--retention-days",
        type=float,
        metavar="DAYS",
        help="delete traces, edges, hosts and names older than DAYS (default 0: keep everything)",
    )
    p.add_argument(
        "--retention-interval",
        type=float,
        metavar="SECONDS",
        help="time between two retention passes over all collectors of a graph (default 3600)",
    )
    p.add_argument(
        "--json-log",
        metavar="FILE",
        help="write one JSON object per line to FILE for each alert, sensor identity conflict "
        "and gap (reopened after rotation and on SIGHUP); docs/events.md",
    )
    p.add_argument(
        "--geoip-city",
        metavar="FILE.mmdb",
        help="GeoIP city (or country) database (default: the GeoLite2 City database shipped by "
        "maxminddb-geolite2, built 2018)",
    )
    p.add_argument(
        "--geoip-asn",
        metavar="FILE.mmdb",
        help="GeoIP ASN database; without it the asn and as_org fields stay empty",
    )
    p.add_argument(
        "--locations",
        metavar="FILE",
        help="operator overrides per prefix (TOML [[location]] tables); they win over GeoIP",
    )
    p.add_argument("--no-geoip", action="store_true", help="no GeoIP enrichment at all")
    p.add_argument(
        "--privacy",
        action="store_true",
        help="mask client addresses (to their /24 or /48) in every API answer and export",
    )
    p.add_argument(
        "--http-tls-cert",
        metavar="FILE",
        help="serve the web side over HTTPS with this certificate",
    )
    p.add_argument("--http-tls-key", metavar="FILE", help="the HTTPS certificate's private key")
    p.add_argument(
        "--authfile",
        metavar="FILE",
        help="require HTTP Basic auth from this htpasswd file (bcrypt, apr1, SHA-crypt entries)",
    )
    p.add_argument(
        "--ready-file", metavar="FILE", help=argparse.SUPPRESS
    )  # for tests and supervisors
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v, -vv)")
    p.add_argument("--version", action="version", version=f"net-gazer {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.verbose, name="collector")
    from net_gazer.collector import config
    from net_gazer.collector.embedded import EmbeddedFalkorDB

    embedded: EmbeddedFalkorDB | None = None
    try:
        cfg = config.load(args)
        url = cfg.graph_url
        if not url:
            embedded = EmbeddedFalkorDB(cfg.data_dir)
            embedded.start()  # before any thread exists (see embedded.py)
            url = embedded.url
        return asyncio.run(serve(cfg, url, embedded))
    except UserError as exc:
        print(f"net-gazer-collector: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        if embedded is not None:
            embedded.stop()


def _unix_socket(listen: str) -> Path | None:
    """The socket file of a ``unix:/path`` listener; UserError when a live server holds it
    (gRPC would silently take the path over)."""
    from net_gazer.netaddr import UNIX_TARGET

    if not listen.startswith(UNIX_TARGET):
        return None
    path = Path(listen.removeprefix(UNIX_TARGET))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return path  # absent, or stale from a collector that died: gRPC replaces it
    finally:
        probe.close()
    raise UserError(f"another process listens on {listen}; stop it or choose another --listen")


#: Seconds open sensor streams get to finish when the collector stops; they resend on their next
#: connection whatever was not acknowledged, so a short grace loses nothing.
STOP_GRACE = 1.0


async def serve(cfg: Any, url: str, embedded: EmbeddedFalkorDB | None = None) -> int:
    import grpc
    import grpc.aio
    import redis.exceptions

    from net_gazer.collector import plugins as plugin_loader
    from net_gazer.collector.geoip import GeoEnricher
    from net_gazer.collector.ingest import IngestService, add_to_server
    from net_gazer.collector.partition import SiteGraphsReader, SiteStores
    from net_gazer.collector.store import GraphStore
    from net_gazer.collector.web import WebConfig, create_app

    if cfg.http_tls_cert is not None and cfg.http_tls_key is not None:
        from net_gazer.collector.web.serve import check_tls

        check_tls(cfg.http_tls_cert, cfg.http_tls_key)
    geo = (
        None
        if cfg.no_geoip
        else GeoEnricher.from_paths(cfg.geoip_city, cfg.geoip_asn, cfg.locations, default_city=True)
    )
    store = (SiteStores if cfg.partition_by_site else GraphStore).connect(url, cfg.graph)
    try:
        await store.ensure_schema()
        aof = await store.aof_enabled()
    except (redis.exceptions.RedisError, OSError) as exc:
        raise UserError(f"cannot reach the graph database at {url}: {exc}") from None
    if not aof:
        log.warning(
            "the graph database at %s runs WITHOUT AOF persistence: acknowledged data can be lost "
            "in a crash; start it with --appendonly yes",
            url,
        )
    plugins = plugin_loader.load(
        cfg.graph,
        allow=cfg.plugins_allow,
        block=cfg.plugins_block,
        order=cfg.plugins_order,
        budget=cfg.plugin_budget,
        config=cfg.plugin_config,
    )
    if geo is not None:
        geo_enrich, plugin_enrich = geo.enrich, plugins.enrich

        def enrich(ip: str, scope: str, props: dict[str, Any]) -> None:
            geo_enrich(ip, scope, props)  # first, so that a plugin may still change it
            plugin_enrich(ip, scope, props)

        store.enrich = enrich
    else:
        store.enrich = plugins.enrich
    from net_gazer.collector.alerts.service import AlertService
    from net_gazer.collector.events import CollectorEvents
    from net_gazer.jsonlog import JsonLog

    events = CollectorEvents(JsonLog(cfg.json_log) if cfg.json_log is not None else None)
    alerts = AlertService(store.graph, cfg.alert_rules, events, country=store.country_of,
                          asn=store.asn_of, queue_size=cfg.webhook_queue)  # fmt: skip
    store.events = alerts.on_event
    store.route_changed = alerts.on_route_changes
    await alerts.start()
    plugins.start()
    from net_gazer.collector.auth import Authenticator, load_tokens

    auth = Authenticator(
        tokens=load_tokens(cfg.tokens) if cfg.tokens is not None else {},
        mtls=cfg.tls_client_ca is not None,
    )
    from net_gazer.collector.ingest import Limits

    limits = Limits(max_streams=cfg.max_sensors, rows_per_second=cfg.rows_per_second)
    service = IngestService(store, plugins, auth, limits)
    service.observers.append(alerts.observe)
    from net_gazer.collector.metrics import CollectorMetrics

    metrics = CollectorMetrics(service, store, plugins)
    store.observe = metrics.observe
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
    )
    add_to_server(service, server)
    sock = _unix_socket(cfg.listen)
    try:
        if cfg.tls_cert is not None:
            creds = grpc.ssl_server_credentials(
                [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())],
                root_certificates=cfg.tls_client_ca.read_bytes() if cfg.tls_client_ca else None,
                # With tokens as well, a sensor may come without a certificate.
                require_client_auth=cfg.tls_client_ca is not None and cfg.tokens is None,
            )
            grpc_port = server.add_secure_port(cfg.listen, creds)
        else:
            grpc_port = server.add_insecure_port(cfg.listen)
    except RuntimeError:
        grpc_port = 0
    if not grpc_port:
        raise UserError(
            f"cannot listen on {cfg.listen} for sensors: "
            + (
                "its directory is missing or not writable, or a file is in the way"
                if sock
                else "the address is in use or not on this host"
            )
        )
    if sock is not None:
        sock.chmod(0o660)  # the collector's user and group (a sensor's user joins the group)
        grpc_port = 0  # no port to report

    started = time.time()

    def status() -> dict[str, Any]:
        s = service.stats
        return {
            "version": __version__,
            "uptime_s": round(time.time() - started, 1),
            "sensors_connected": s.active,
            "batches": s.batches,
            "duplicates": s.duplicates,
            "rejected": s.rejected,
            "unauthenticated": s.unauthenticated,
            "denied": s.denied,
            "shed": s.shed,
            "throttled_seconds": round(s.throttled_seconds, 3),
            "auth": "mtls+tokens"
            if auth.mtls and auth.tokens
            else "mtls"
            if auth.mtls
            else "tokens"
            if auth.tokens
            else "none",
            "plugins": plugins.describe(),
            "ingest": service.status(),
        }

    def plugin_status() -> dict[str, Any]:
        return {
            "plugins": plugins.describe(),
            "budget_ms": plugins.host.budget * 1000,
            "unhandled_extensions": dict(plugins.unhandled),
            "plugin_lost": dict(store.stats.plugin_lost),
        }

    read_url = cfg.graph_read_url or url
    app = create_app(
        WebConfig(
            graph_url=read_url,
            graph=cfg.graph,
            status=status,
            plugins=plugin_status,
            privacy=cfg.privacy,
            geoip=geo.describe if geo is not None else dict,
            metrics=metrics.registry,
        )
    )
    if isinstance(store, SiteStores):  # the web reads across every site's graph
        app.extensions["ng_graph"] = SiteGraphsReader(read_url, cfg.graph)
    from net_gazer.collector.alerts import web as alerts_web

    app.config["NG_ALERTS"] = alerts.status
    app.register_blueprint(alerts_web.bp)
    if cfg.authfile is not None:
        from net_gazer.collector.web import basicauth

        basicauth.install(app, cfg.authfile)
    plugins.web_routes(app)
    from net_gazer.collector.web import serve as web_serve

    http_host, http_port = cfg.http.rsplit(":", 1)
    web_port, web_stop = web_serve.start(
        app, http_host.strip("[]"), int(http_port), cert=cfg.http_tls_cert, key=cfg.http_tls_key
    )
    await server.start()
    log.info(
        "listening for sensors on %s (port %d), viewer on %s://%s:%d/",
        cfg.listen,
        grpc_port,
        "https" if cfg.http_tls_cert else "http",
        http_host,
        web_port,
    )
    if cfg.ready_file is not None:
        cfg.ready_file.write_text(
            json.dumps({"grpc_port": grpc_port, "http_port": web_port, "graph_url": url})
        )

    from net_gazer import tasks
    from net_gazer.collector import lifecycle

    supervisor = (
        tasks.spawn(embedded.supervise(), name="falkordb-supervisor")
        if embedded is not None
        else None
    )
    retention = (
        tasks.spawn(
            lifecycle.retention_loop(
                store.site_graphs if isinstance(store, SiteStores) else store.one_graph,
                days=cfg.retention_days,
                owner=store.owner,
                interval=cfg.retention_interval,
                batch=cfg.retention_batch,
            ),
            name="retention",
        )
        if cfg.retention_days > 0
        else None
    )
    watcher = (
        tasks.spawn(_watch_geoip(store, geo, cfg.geoip_reload_s), name="geoip-watch")
        if geo is not None
        else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # a second Ctrl-C: stop at once (the embedded server gets SIGTERM)
            log.warning("second stop signal: exiting at once")
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGHUP, events.reopen)  # logrotate's postrotate
    await stop.wait()
    log.info("stopping")
    await tasks.cancel(supervisor)
    await tasks.cancel(retention)
    await tasks.cancel(watcher)
    await server.stop(grace=STOP_GRACE)
    web_stop()
    await alerts.stop()
    events.close()
    plugins.stop()
    with contextlib.suppress(Exception):
        await store.close()
    return 0


#: Every this many checks, hosts that no batch of this collector enriched (written by another
#: replica, or by a plugin outside the host rows) are enriched too.
SWEEP_EVERY = 6


async def _watch_geoip(store: Any, geo: Any, interval: float) -> None:
    """Enrich what is not enriched yet, then watch the databases and re-enrich on a change."""
    import redis.exceptions

    from net_gazer.collector.geoip import reenrich

    checks = 0
    while True:
        try:
            if checks % SWEEP_EVERY == 0:
                await reenrich(store.graph, geo)
            await asyncio.sleep(interval)
            checks += 1
            if await asyncio.to_thread(geo.reload_if_changed):
                store.forget_enrichment()
                await reenrich(store.graph, geo)
        except asyncio.CancelledError:
            raise
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("GeoIP enrichment pass failed (%s); it runs again later", exc)
            await asyncio.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
