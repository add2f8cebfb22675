"""The sensor's main loop: capture -> decode -> handshakes -> plugins -> batches -> collector.

Live and replay share everything but the clock: live capture ticks on the wall clock, replay on
packet timestamps (paced by ``--speed`` when given).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.message import Message

from net_gazer import PROTOCOL_MINOR, __version__, pluginhost
from net_gazer.errors import ConfigError, UserError
from net_gazer.netaddr import (
    PRIVATE_NETWORKS,
    NetworkSet,
    hosts,
    interface_addresses,
    networks,
    parse_networks,
)
from net_gazer.sensor import PROJECT, hookspecs
from net_gazer.sensor.capture import Frames, Handle, bpf_union, exclusion_for
from net_gazer.sensor.config import SensorConfig, parse_hostport
from net_gazer.sensor.config import reload as reload_config
from net_gazer.sensor.context import PluginContext
from net_gazer.sensor.decode import decode
from net_gazer.sensor.handshake import HandshakeTracker, TrackerConfig
from net_gazer.sensor.packet import DecodeError
from net_gazer.sensor.spool import Spool
from net_gazer.sensor.transport import Outbox, Streamer
from net_gazer.v1 import wire_pb2

log = logging.getLogger(__name__)

READ_CHUNK = 2048
#: Items per batch at most: one batch is one graph query, and one gRPC message well below the
#: collector's size limit.
MAX_BATCH_ITEMS = 5_000


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip()
    return ""


@dataclass
class Counters:
    packets: int = 0
    malformed: int = 0
    non_tcp: int = 0
    tcp: int = 0
    events: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Sensor:
    """Everything a running sensor holds; built by :func:`build`."""

    cfg: SensorConfig
    host: pluginhost.PluginHost
    tracker: HandshakeTracker
    outbox: Outbox
    handles: list[Handle]
    local: NetworkSet
    own_addresses: list[str]
    counters: Counters = field(default_factory=Counters)
    contexts: dict[str, PluginContext] = field(default_factory=dict)
    batch: wire_pb2.Batch = field(default_factory=wire_pb2.Batch)
    now: float = 0.0
    _direction_cache: dict[tuple[str, str], int] = field(default_factory=dict)

    # -- plugin plumbing --------------------------------------------------------------------
    def ctx(self, name: str) -> PluginContext:
        return self.contexts[name]

    def emit(self, plugin: str, message: Message) -> None:
        batch = self.batch
        if isinstance(message, wire_pb2.HandshakeRow):
            batch.handshakes.append(message)
        else:
            ext = batch.extensions.add(plugin=plugin)
            ext.payload.Pack(message)
        if len(batch.handshakes) + len(batch.extensions) >= MAX_BATCH_ITEMS:
            self.cut()  # FalkorDB writes best in batches of 1-5k rows; messages stay small

    def direction(self, client: str, server: str) -> int:
        key = (client, server)
        d = self._direction_cache.get(key)
        if d is None:
            c, s = client in self.local, server in self.local
            d = (
                wire_pb2.DIRECTION_INTERNAL
                if c and s
                else wire_pb2.DIRECTION_OUTGOING
                if c
                else wire_pb2.DIRECTION_INCOMING
                if s
                else wire_pb2.DIRECTION_TRANSIT
            )
            if len(self._direction_cache) > 100_000:
                self._direction_cache.clear()
            self._direction_cache[key] = d
        return d

    def hello(self) -> wire_pb2.Hello:
        # Read afresh at every (re)connect, in one call: addresses change (DHCP, failover).
        live = [h.name for h in self.handles if h.live]
        current = interface_addresses(live) if live else {}

        def own(name: str) -> list[str]:
            return hosts(current if name == "any" else {name: current.get(name, [])})

        return wire_pb2.Hello(
            hostname=socket.gethostname(),
            machine_id=machine_id(),
            version=__version__,
            protocol_minor=PROTOCOL_MINOR,
            interfaces=[
                wire_pb2.Interface(
                    name=h.name,
                    role=h.role,
                    linktype=h.linktype,
                    addresses=own(h.name) if h.live else [],
                )
                for h in self.handles
            ],
            own_addresses=self.own_addresses,
            local_networks=[str(n) for n in self.local.networks],
            site=self.cfg.site,
            plugins=[p.name for p in self.host.plugins()],
            replay=self.cfg.replay,
        )

    def reload(self) -> None:
        """SIGHUP: take plugin settings, budgets and prefix lists from the config file again.
        Interfaces and the collector need a restart. A bad file changes nothing."""
        cfg = self.cfg
        if cfg.config_file is None:
            log.warning("SIGHUP: no configuration file to reload")
            return
        try:
            fresh = reload_config(cfg)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        cfg.plugin_config = fresh.plugin_config
        for name, ctx in self.contexts.items():
            ctx.config = cfg.plugin_config.get(name, {})
        cfg.plugin_budget = self.host.budget = fresh.plugin_budget
        if "local_networks" not in cfg.pinned and fresh.local_networks:
            cfg.local_networks = fresh.local_networks
            self.local = NetworkSet(fresh.local_networks)
            self._direction_cache.clear()
        if [i.name for i in fresh.interfaces] and [i.name for i in fresh.interfaces] != [
            h.name for h in self.handles
        ]:
            log.warning(
                "the configuration names other interfaces now; changing interfaces needs a restart"
            )
        log.info("reloaded plugin settings, budgets and prefix lists from %s", cfg.config_file)

    # -- the packet path --------------------------------------------------------------------
    def process(self, handle: Handle, frames: Frames, offset: float = 0.0) -> None:
        counters = self.counters
        linktype, index = handle.linktype, handle.index
        feed = self.tracker.feed
        packet_hook = self.host.implementations("ng_packet")
        safecall = self.host.safecall
        ctx = self.ctx
        for raw_ts, buf in frames:
            counters.packets += 1
            try:
                seg = decode(linktype, raw_ts + offset, buf, index)
            except DecodeError:
                counters.malformed += 1
                continue
            if seg is None:
                counters.non_tcp += 1
                continue
            counters.tcp += 1
            if packet_hook:
                safecall("ng_packet", ctx=ctx, segment=seg)
            for event in feed(seg):
                counters.events += 1
                safecall("ng_handshake", ctx=ctx, event=event)
        if frames:
            self.now = max(self.now, frames[-1][0] + offset)

    def tick(self, now: float, *, final: bool = False, close: bool = False) -> None:
        """Expire attempts, let plugins emit, and cut a batch if there is anything in it."""
        events = self.tracker.close(now) if close else self.tracker.expire(now)
        for event in events:
            self.counters.events += 1
            self.host.safecall("ng_handshake", ctx=self.ctx, event=event)
        self.host.safecall("ng_tick", ctx=self.ctx, now=now, final=final)
        self.cut()

    def cut(self) -> None:
        if not self.batch.handshakes and not self.batch.extensions:
            return
        self.batch.counters.update(self.all_counters())
        self.outbox.add(self.batch)
        self.batch = wire_pb2.Batch()

    def all_counters(self) -> dict[str, int]:
        out = {f"sensor_{k}": v for k, v in self.counters.as_dict().items()}
        t = self.tracker.stats
        out.update(
            tracker_flows=len(self.tracker),
            tracker_evicted=t.evicted,
            tracker_copies_ignored=t.copies_ignored,
            tracker_unmatched=t.unmatched,
            tracker_syn_retransmits=t.syn_retransmits,
        )
        recv = drop = ifdrop = 0
        for h in self.handles:
            r, d, i = h.stats()
            recv, drop, ifdrop = recv + r, drop + d, ifdrop + i
        out.update(pcap_received=recv, pcap_dropped=drop, pcap_ifdropped=ifdrop)
        out.update(outbox_dropped_envelopes=self.outbox.stats.dropped_envelopes)
        for info in self.host.plugins():
            out[f"plugin_{info.name}_errors"] = info.errors
            for k, v in self.contexts[info.name].counters.items():
                out[f"plugin_{info.name}_{k}"] = v
        return out


def build(cfg: SensorConfig, extra_plugins: list[tuple[str, object]] | None = None) -> Sensor:
    """Load plugins, open the captures (while privileged) and set the filter."""
    host = pluginhost.create(
        PROJECT,
        hookspecs,
        allow=cfg.plugins_allow,
        block=cfg.plugins_block,
        extra=extra_plugins or (),
    )
    host.budget = cfg.plugin_budget
    if not host.infos:
        raise UserError("no sensor plugin is loaded; check [plugins] allow/block and NG_PLUGINS_*")
    # Open captures first: errors about interfaces and permissions come before anything else.
    handles: list[Handle] = []
    if cfg.read is not None:
        handles.append(Handle.open_file(cfg.read))
    else:
        names = cfg.interfaces
        if not names:
            from net_gazer.netaddr import default_route_interface
            from net_gazer.sensor.config import Interface

            dev = default_route_interface()
            if dev is None:
                raise UserError(
                    "there is no default route to pick an interface from; give -i IFACE"
                )
            names = [Interface(dev)]
        for index, iface in enumerate(names):
            handles.append(
                Handle.open_live(iface.name, iface.role, index, cfg.snaplen, cfg.capture_buffer)
            )
    addrs = interface_addresses([h.name for h in handles]) if cfg.read is None else {}
    if cfg.local_networks:
        local = NetworkSet(cfg.local_networks)
    elif cfg.read is None:
        local = NetworkSet(networks(addrs))
    else:
        local = NetworkSet(parse_networks(PRIVATE_NETWORKS))
    own = hosts(addrs)
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
        local=local,
        own_addresses=own,
    )
    for name in host.infos:
        sensor.contexts[name] = PluginContext(
            name=name,
            sensor_id=cfg.sensor_id,
            site=cfg.site,
            config=cfg.plugin_config.get(name, {}),
            replay=cfg.replay,
            probing_allowed=cfg.probe or not cfg.replay,
            _emit=sensor.emit,
            direction=sensor.direction,
        )
    fragments = [str(f) for _, f in host.safecall("ng_bpf_filter", ctx=sensor.ctx)]
    host_, port = parse_hostport(cfg.collector, "collector address")
    exclude = exclusion_for(host_, port) if cfg.read is None else []
    for h in handles:
        h.set_filter(bpf_union(fragments, h.linktype, exclude))
        log.info("capturing on %s (link type %d) with filter: %s", h.name, h.linktype, h.filter)
    return sensor


async def run(sensor: Sensor, stop: asyncio.Event | None = None) -> int:
    """Run until the capture ends (replay) or ``stop`` is set (live); return the exit code."""
    cfg = sensor.cfg
    stop = stop or asyncio.Event()
    streamer = Streamer(
        cfg.collector,
        sensor.outbox,
        sensor.hello,
        credentials=channel_credentials(cfg),
        server_name=cfg.tls_server_name,
        token=cfg.token,
    )
    sensor.host.safecall("ng_sensor_start", ctx=sensor.ctx)
    streamer.start()
    try:
        if cfg.read is not None:
            await _replay(sensor, stop)
        else:
            await _live(sensor, stop)
        sensor.host.safecall("ng_sensor_stop", ctx=sensor.ctx)
        sensor.cut()
        return await _drain(sensor, streamer)
    finally:
        await streamer.stop()
        for h in sensor.handles:
            h.close()


def channel_credentials(cfg: SensorConfig) -> grpc.ChannelCredentials | None:
    if not cfg.tls:
        if cfg.token:
            host, _ = parse_hostport(cfg.collector, "collector address")
            if host not in ("127.0.0.1", "::1", "localhost"):
                log.warning(
                    "sending the sensor token without TLS to %s: give --tls-ca", cfg.collector
                )
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=cfg.tls_ca.read_bytes() if cfg.tls_ca else None,
        private_key=cfg.tls_key.read_bytes() if cfg.tls_key else None,
        certificate_chain=cfg.tls_cert.read_bytes() if cfg.tls_cert else None,
    )


async def _drain(sensor: Sensor, streamer: Streamer) -> int:
    outbox, cfg = sensor.outbox, sensor.cfg
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(outbox.wait_empty(), timeout=cfg.ack_timeout)
    _log_summary(sensor)
    if len(outbox):
        why = f" (last error: {streamer.last_error})" if streamer.last_error else ""
        log.error(
            "the collector at %s acknowledged %d of %d batches within %.0f s; %d are not delivered%s",
            cfg.collector,
            outbox.acked_seq,
            outbox.last_seq,
            cfg.ack_timeout,
            len(outbox),
            why,
        )
        return 1
    return 0


def _log_summary(sensor: Sensor) -> None:
    c = sensor.counters
    log.info(
        "packets %d (tcp %d, other %d, malformed %d), handshake events %d, batches %d acked %d",
        c.packets,
        c.tcp,
        c.non_tcp,
        c.malformed,
        c.events,
        sensor.outbox.last_seq,
        sensor.outbox.acked_seq,
    )


async def _replay(sensor: Sensor, stop: asyncio.Event) -> None:
    """Feed the file through the sensor on packet time; ``--speed`` paces it against the wall
    clock, ``--loop`` starts over with time moved forward (and rebased to now, so the demo's
    data looks live)."""
    cfg = sensor.cfg
    assert cfg.read is not None
    handle = sensor.handles[0]
    interval = cfg.flush_interval
    offset = 0.0  # added to every packet timestamp
    first_raw: float | None = None
    last_raw = 0.0
    v0 = 0.0  # virtual time of the first packet
    wall0 = 0.0
    next_tick = 0.0
    while not stop.is_set():
        frames = handle.read(READ_CHUNK)
        if not frames:
            if not cfg.loop or first_raw is None:
                break
            offset += (last_raw - first_raw) + interval
            expression = handle.filter
            handle.close()
            handle = sensor.handles[0] = Handle.open_file(cfg.read)
            handle.set_filter(expression)
            continue
        if first_raw is None:
            first_raw = frames[0][0]
            if cfg.loop:
                offset = time.time() - first_raw
            v0 = first_raw + offset
            wall0 = time.monotonic()
            next_tick = v0 + interval
        last_raw = frames[-1][0]
        start = 0
        while start < len(frames) and not stop.is_set():
            end = start
            while end < len(frames) and frames[end][0] + offset < next_tick:
                end += 1
            if end > start:
                if cfg.speed > 0:
                    await _pace(frames[start][0] + offset - v0, wall0, cfg.speed, stop)
                sensor.process(handle, frames[start:end], offset)
            if end < len(frames):  # the next packet lies past a tick boundary
                if cfg.speed > 0:
                    await _pace(next_tick - v0, wall0, cfg.speed, stop)
                sensor.tick(next_tick)
                next_tick += interval
                upcoming = frames[end][0] + offset
                if upcoming >= next_tick + interval:  # skip empty intervals
                    next_tick += ((upcoming - next_tick) // interval) * interval
                await _room(sensor, stop)
            start = end
        await asyncio.sleep(0)  # let the stream run
    sensor.tick(sensor.now, final=True, close=True)


async def _pace(packet_elapsed: float, wall0: float, speed: float, stop: asyncio.Event) -> None:
    delay = wall0 + packet_elapsed / speed - time.monotonic()
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


async def _room(sensor: Sensor, stop: asyncio.Event) -> None:
    """Replay can wait for the collector instead of dropping: nothing is lost by pausing."""
    while sensor.outbox.full and not stop.is_set():
        sensor.outbox.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sensor.outbox.changed.wait(), timeout=1.0)


#: With several live interfaces, frames wait this long so that copies of one packet seen on two
#: interfaces are processed in timestamp order, not in the order the sockets were read.
REORDER_DELAY = 0.005


class Merger:
    """Merges the frames of several live handles into timestamp order (a small reorder window)."""

    def __init__(self, sensor: Sensor, delay: float = REORDER_DELAY) -> None:
        self.sensor = sensor
        self.delay = delay
        self.pending: list[tuple[float, int, bytes]] = []

    def add(self, index: int, frames: Frames) -> None:
        self.pending.extend((ts, index, buf) for ts, buf in frames)

    def flush(self, now: float | None = None) -> None:
        """Process the frames older than the window (all of them when ``now`` is None)."""
        if not self.pending:
            return
        self.pending.sort(key=lambda f: f[0])
        cut = len(self.pending)
        if now is not None:
            limit = now - self.delay
            cut = next((i for i, f in enumerate(self.pending) if f[0] > limit), cut)
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        handles = self.sensor.handles
        start = 0
        while start < len(ready):  # runs of one handle go through process() together
            index = ready[start][1]
            end = start
            while end < len(ready) and ready[end][1] == index:
                end += 1
            self.sensor.process(handles[index], [(ts, buf) for ts, _, buf in ready[start:end]])
            start = end


async def _live(sensor: Sensor, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    interval = sensor.cfg.flush_interval
    merger = Merger(sensor) if len(sensor.handles) > 1 else None
    timer: asyncio.TimerHandle | None = None

    def flush_merger() -> None:
        nonlocal timer
        timer = None
        assert merger is not None
        merger.flush(time.time())
        if merger.pending:
            timer = loop.call_later(merger.delay, flush_merger)

    def reader(position: int, h: Handle) -> Callable[[], None]:
        def on_readable() -> None:
            nonlocal timer
            for _ in range(8):  # bounded, so ticks and the stream get their turn
                frames = h.read(READ_CHUNK)
                if not frames:
                    break
                if merger is None:
                    sensor.process(h, frames)
                else:
                    merger.add(position, frames)
            if merger is not None and merger.pending and timer is None:
                timer = loop.call_later(merger.delay, flush_merger)

        return on_readable

    for position, h in enumerate(sensor.handles):
        loop.add_reader(h.fileno(), reader(position, h))
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                break
            if merger is not None:
                merger.flush(time.time())
            sensor.tick(time.time())
    finally:
        if timer is not None:
            timer.cancel()
        for h in sensor.handles:
            loop.remove_reader(h.fileno())
        for position, h in enumerate(sensor.handles):  # what is still buffered
            if merger is None:
                sensor.process(h, h.read(READ_CHUNK))
            else:
                merger.add(position, h.read(READ_CHUNK))
        if merger is not None:
            merger.flush()
    # After the last frames, so their events travel too; pending attempts get their verdict now,
    # as at the end of a replay (a restarted sensor could not match their answers anyway).
    sensor.tick(time.time(), final=True, close=True)


def install_signals(stop: asyncio.Event, sensor: Sensor | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if sensor is not None:
        loop.add_signal_handler(signal.SIGHUP, sensor.reload)
