"""Assemble a sensor from its configuration: plugins, captures (opened while still privileged),
the kernel filter, the spool and outbox, and each plugin's context."""

from __future__ import annotations

import logging

from net_gazer import pluginhost
from net_gazer.errors import UserError
from net_gazer.jsonlog import JsonLog
from net_gazer.netaddr import (
    PRIVATE_NETWORKS,
    NetworkSet,
    collector_endpoint,
    collector_targets,
    default_route_interface,
    hosts,
    interface_addresses,
    networks,
    parse_networks,
)
from net_gazer.sensor import PROJECT, hookspecs
from net_gazer.sensor.capture import Handle, bpf_union, exclusion_for
from net_gazer.sensor.config import Interface, SensorConfig
from net_gazer.sensor.context import PluginContext
from net_gazer.sensor.direction import Direction
from net_gazer.sensor.events import SensorEvents
from net_gazer.sensor.handshake import HandshakeTracker, TrackerConfig
from net_gazer.sensor.pipeline import Sensor
from net_gazer.sensor.spool import Spool
from net_gazer.sensor.transport import Outbox

log = logging.getLogger(__name__)


def build(cfg: SensorConfig, extra_plugins: list[tuple[str, object]] | None = None) -> Sensor:
    """Load plugins, open the captures and set the filter. ``extra_plugins`` are registered
    directly (tests, embedding)."""
    host = pluginhost.create(
        PROJECT,
        hookspecs,
        allow=cfg.plugins_allow,
        block=cfg.plugins_block,
        order=cfg.plugins_order,
        extra=extra_plugins or (),
    )
    host.budget = cfg.plugin_budget
    if not host.infos:
        raise UserError("no sensor plugin is loaded; check [plugins] allow/block and NG_PLUGINS_*")
    # Captures first: errors about interfaces and permissions come before anything else.
    handles = _open_captures(cfg)
    addrs = interface_addresses([h.name for h in handles]) if cfg.read is None else {}
    if cfg.local_networks:
        local = NetworkSet(cfg.local_networks)
    elif cfg.read is None:
        local = NetworkSet(networks(addrs))
    else:
        local = NetworkSet(parse_networks(PRIVATE_NETWORKS))
    spool = None
    if cfg.spool_dir is not None:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in cfg.sensor_id)
        spool = Spool(cfg.spool_dir / safe, cfg.sensor_id)
    outbox = Outbox.open(
        cfg.sensor_id, cfg.max_envelopes, max_bytes=cfg.max_buffer_bytes, spool=spool
    )
    sensor = Sensor(
        cfg=cfg,
        host=host,
        tracker=HandshakeTracker(
            TrackerConfig(handshake_timeout=cfg.handshake_timeout, max_flows=cfg.max_flows)
        ),
        outbox=outbox,
        handles=handles,
        direction=Direction(local),
        own_addresses=hosts(addrs),
    )
    if cfg.json_log is not None:  # opened while still privileged, like the captures
        sensor.events = SensorEvents(JsonLog(cfg.json_log), cfg.sensor_id)
    for name in host.infos:
        sensor.contexts[name] = PluginContext(
            name=name,
            sensor_id=cfg.sensor_id,
            site=cfg.site,
            config=cfg.plugin_config.get(name, {}),
            replay=cfg.replay,
            probing_allowed=(cfg.probe or not cfg.replay) and not cfg.no_probe,
            _emit=sensor.emit,
            direction=sensor.direction,
            dry_run=cfg.dry_run,
            own_addresses=list(sensor.own_addresses),
        )
    fragments = [str(f) for _, f in host.safecall("ng_bpf_filter", ctx=sensor.ctx)]
    exclude = []
    for target in collector_targets(cfg.collector):  # every collector it may fail over to
        tcp = collector_endpoint(target)  # None for a unix: socket, nothing to exclude
        exclude += exclusion_for(*tcp) if tcp is not None and cfg.read is None else []
    # The plugins' own traffic (the traceroute plugin's probes and the answers to them).
    exclude += [str(f) for _, f in host.safecall("ng_bpf_exclude", ctx=sensor.ctx) if f]
    for h in handles:
        h.set_filter(bpf_union(fragments, h.linktype, exclude))
        log.info("capturing on %s (link type %d) with filter: %s", h.name, h.linktype, h.filter)
    return sensor


def _open_captures(cfg: SensorConfig) -> list[Handle]:
    if cfg.read is not None:
        return [Handle.open_file(cfg.read)]
    names = cfg.interfaces
    if not names:
        dev = default_route_interface()
        if dev is None:
            raise UserError("there is no default route to pick an interface from; give -i IFACE")
        names = [Interface(dev)]
    return [
        Handle.open_live(iface.name, iface.role, index, cfg.snaplen, cfg.capture_buffer)
        for index, iface in enumerate(names)
    ]
