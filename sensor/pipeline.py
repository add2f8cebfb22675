"""The packet path: frames -> decode -> handshake tracker -> plugins -> batches for the collector.

:class:`Sensor` holds a running sensor's parts and the packet path through them, in one place:
:meth:`Sensor.process` runs for every chunk of captured frames, :meth:`Sensor.tick` once per flush
interval, and :meth:`Sensor.cut` turns what the plugins emitted into an envelope in the outbox.
Live capture and replay (``live.py``, ``replay.py``) only decide when these run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import Message

from net_gazer import pluginhost
from net_gazer.sensor.capture import Frames, Handle
from net_gazer.sensor.config import SensorConfig
from net_gazer.sensor.context import PluginContext
from net_gazer.sensor.decode import decode
from net_gazer.sensor.direction import Direction
from net_gazer.sensor.events import SensorEvents
from net_gazer.sensor.handshake import HandshakeTracker
from net_gazer.sensor.packet import DecodeError
from net_gazer.sensor.transport import Outbox
from net_gazer.sensor.udp import decode_udp
from net_gazer.v1 import wire_pb2

#: Frames read from a capture at a time.
READ_CHUNK = 2048
#: Items per batch at most: one batch is one graph query, and one gRPC message well below the
#: collector's size limit.
MAX_BATCH_ITEMS = 5_000


@dataclass
class Counters:
    """The packet path's own counters; they travel with every batch (``sensor_*``)."""

    packets: int = 0
    malformed: int = 0
    non_tcp: int = 0
    tcp: int = 0
    events: int = 0
    #: UDP datagrams handed to ``ng_datagram`` (decoded only while a plugin implements it), and
    #: frames among the ``non_tcp`` ones that claimed UDP but were malformed.
    udp: int = 0
    udp_malformed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Sensor:
    """Everything a running sensor holds; built by :func:`net_gazer.sensor.build.build`."""

    cfg: SensorConfig
    host: pluginhost.PluginHost
    tracker: HandshakeTracker
    outbox: Outbox
    handles: list[Handle]
    direction: Direction
    own_addresses: list[str]
    counters: Counters = field(default_factory=Counters)
    contexts: dict[str, PluginContext] = field(default_factory=dict)
    batch: wire_pb2.Batch = field(default_factory=wire_pb2.Batch)
    #: Capture time of the newest frame processed.
    now: float = 0.0
    #: The JSON event log (--json-log), or None.
    events: SensorEvents | None = None

    def ctx(self, name: str) -> PluginContext:
        return self.contexts[name]

    def emit(self, plugin: str, message: Message) -> None:
        """A plugin's message into the current batch: a ``HandshakeRow`` as such, anything else
        as an ``Extension`` tagged with the plugin's name."""
        batch = self.batch
        if self.events is not None and isinstance(message, Message):
            self.events.message(plugin, message)
        if isinstance(message, wire_pb2.HandshakeRow):
            batch.handshakes.append(message)
        elif isinstance(message, Message):
            payload = AnyMessage()
            payload.Pack(message)  # before the batch holds anything of it
            batch.extensions.add(plugin=plugin, payload=payload)
        else:
            # Raised in the plugin's own hook call: counted as its error, and nothing is sent.
            raise TypeError(f"ctx.emit takes a protobuf message, not {type(message).__name__}")
        if len(batch.handshakes) + len(batch.extensions) >= MAX_BATCH_ITEMS:
            self.cut()  # FalkorDB writes best in batches of 1-5k rows; messages stay small

    # -- the packet path --------------------------------------------------------------------
    def process(self, handle: Handle, frames: Frames, offset: float = 0.0) -> None:
        """Decode, track and dispatch one chunk of frames from ``handle``; ``offset`` is added to
        every timestamp (a looping replay moves time forward)."""
        counters = self.counters
        linktype, index = handle.linktype, handle.index
        feed = self.tracker.feed
        packet_hook = self.host.implementations("ng_packet")
        datagram_hook = self.host.implementations("ng_datagram")
        safecall = self.host.safecall
        ctx = self.ctx
        events = self.events
        for raw_ts, buf in frames:
            counters.packets += 1
            try:
                seg = decode(linktype, raw_ts + offset, buf, index)
            except DecodeError:
                counters.malformed += 1
                continue
            if seg is None:
                counters.non_tcp += 1
                if datagram_hook:
                    self._datagram(linktype, raw_ts + offset, buf, index)
                continue
            counters.tcp += 1
            if packet_hook:
                safecall("ng_packet", ctx=ctx, segment=seg)
            for event in feed(seg):
                counters.events += 1
                safecall("ng_handshake", ctx=ctx, event=event)
                if events is not None:
                    events.verdict(event, self.direction(event.client, event.server))
        if frames:
            self.now = max(self.now, frames[-1][0] + offset)

    def _datagram(self, linktype: int, ts: float, buf: bytes, index: int) -> None:
        try:
            datagram = decode_udp(linktype, ts, buf, index)
        except DecodeError:
            self.counters.udp_malformed += 1
            return
        if datagram is not None:
            self.counters.udp += 1
            self.host.safecall("ng_datagram", ctx=self.ctx, datagram=datagram)

    def tick(self, now: float, *, final: bool = False, close: bool = False) -> None:
        """Expire attempts (all of them with ``close``), let plugins emit, and cut a batch if
        there is anything in it."""
        events = self.tracker.close(now) if close else self.tracker.expire(now)
        log = self.events
        for event in events:
            self.counters.events += 1
            self.host.safecall("ng_handshake", ctx=self.ctx, event=event)
            if log is not None:
                log.verdict(event, self.direction(event.client, event.server))
        self.host.safecall("ng_tick", ctx=self.ctx, now=now, final=final)
        self.cut()
        if log is not None:
            log.interval()

    def cut(self) -> None:
        """The current batch, with the counters, into the outbox (nothing when it is empty)."""
        if not self.batch.handshakes and not self.batch.extensions:
            return
        self.batch.counters.update(self.all_counters())
        self.outbox.add(self.batch)
        self.batch = wire_pb2.Batch()

    def all_counters(self) -> dict[str, int]:
        """Every counter of the sensor, its captures, its outbox and its plugins, by name."""
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
        if self.events is not None:
            out.update(self.events.counters())
        for info in self.host.plugins():
            out[f"plugin_{info.name}_errors"] = info.errors
            out[f"plugin_{info.name}_overruns"] = info.overruns
            out[f"plugin_{info.name}_disabled"] = int(bool(info.disabled))
            for k, v in self.contexts[info.name].counters.items():
                out[f"plugin_{info.name}_{k}"] = v
        return out
