"""The sensor's JSON event log (``--json-log FILE``): one JSON object per line for each
handshake verdict, each UDP and quality summary and each host name, with the graph's field names.

Every line has ``event`` (what it is), ``sensor`` and ``ts`` (capture time, Unix seconds):

- ``handshake``: one per verdict (completed, refused, unanswered, abandoned, evicted), as the
  tracker gives it: ``verdict``, ``client``, ``cport``, ``server``, ``dport``, ``proto``,
  ``direction``, ``first_seen`` (the attempt's SYN), ``rtt_ms`` and ``client_rtt_ms`` (null
  without a sample), ``syn_retransmits``;
- ``quality``: one per row the quality plugin sends (per (client, server, port) and flush
  interval), with the ``CONNECTS`` counter names: ``retransmits_c2s`` ... and their totals;
- ``udp``: one per row the udp plugin sends: ``flows``, ``answered_flows``, ``packets_c2s`` ...;
- ``name``: one per host name the dpi plugin sends (``ip``, ``name``, ``source``);
- any other plugin's message: ``event`` is the plugin's name, ``type`` the message's protobuf
  name and ``data`` its fields.

The handshake verdicts are logged one by one, at most ``max_lines`` (default 10,000) per flush
interval: past it, lines are counted as ``eventlog_suppressed`` (a SYN flood must not fill the
disk). The writer is :class:`net_gazer.jsonlog.JsonLog` (rotation, SIGHUP). docs/events.md.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from net_gazer.jsonlog import JsonLog
from net_gazer.sensor.handshake import HandshakeEvent, Kind
from net_gazer.v1 import quality_pb2, udp_pb2, wire_pb2

DIRECTIONS: dict[int, str] = {
    wire_pb2.DIRECTION_OUTGOING: "outgoing",
    wire_pb2.DIRECTION_INCOMING: "incoming",
    wire_pb2.DIRECTION_INTERNAL: "internal",
    wire_pb2.DIRECTION_TRANSIT: "transit",
}
QUALITY_COUNTS = (
    "retransmits", "fast_retransmits", "spurious_retransmits", "out_of_order", "sack_packets",
    "dsack", "zero_windows", "segments", "data_segments", "payload_bytes",
)  # fmt: skip
UDP_COUNTS = ("flows", "answered_flows", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c")
NAME_SOURCES = {
    quality_pb2.NAME_SOURCE_TLS_SNI: "tls_sni",
    quality_pb2.NAME_SOURCE_HTTP_HOST: "http_host",
    quality_pb2.NAME_SOURCE_DNS: "dns",
}
MAX_LINES = 10_000
_SILENT = (Kind.SYN, Kind.SYNACK)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


class SensorEvents:
    """What the packet path hands the event log."""

    def __init__(self, log: JsonLog, sensor_id: str, max_lines: int = MAX_LINES) -> None:
        self.log = log
        self.sensor_id = sensor_id
        self.max_lines = max_lines
        self.suppressed = 0
        self._left = max_lines

    def interval(self) -> None:
        """A new flush interval: a new budget of verdict lines."""
        self._left = self.max_lines

    def verdict(self, event: HandshakeEvent, direction: int) -> None:
        if event.kind in _SILENT:
            return
        if self._left <= 0:
            self.suppressed += 1
            return
        self._left -= 1
        self.log.write(
            {
                "event": "handshake",
                "sensor": self.sensor_id,
                "ts": event.ts,
                "verdict": event.kind.value,
                "client": event.client,
                "cport": event.cport,
                "server": event.server,
                "dport": event.port,
                "proto": "tcp",
                "direction": DIRECTIONS.get(direction, "unknown"),
                "first_seen": event.started or event.ts,
                "rtt_ms": _ms(event.rtt),
                "client_rtt_ms": _ms(event.client_rtt),
                "syn_retransmits": event.syn_retransmits,
            }
        )

    def message(self, plugin: str, message: Message) -> None:
        if isinstance(message, wire_pb2.HandshakeRow):
            return  # its verdicts were logged one by one
        if isinstance(message, quality_pb2.QualityReport):
            for row in message.rows:
                self.log.write(self._quality(row, message.sample_rate))
        elif isinstance(message, udp_pb2.UdpReport):
            for u in message.rows:
                self.log.write(self._udp(u, message.sample_rate))
        elif isinstance(message, quality_pb2.NameReport):
            for n in message.names:
                self.log.write(
                    {"event": "name", "sensor": self.sensor_id, "ts": n.seen, "ip": n.ip,
                     "name": n.name, "source": NAME_SOURCES.get(n.source, "unknown")}
                )  # fmt: skip
        else:
            self.log.write(
                {
                    "event": plugin,
                    "sensor": self.sensor_id,
                    "type": message.DESCRIPTOR.full_name,
                    "data": MessageToDict(message, preserving_proto_field_name=True),
                }
            )

    def _row(self, event: str, r: Any, proto: str) -> dict[str, Any]:
        return {
            "event": event,
            "sensor": self.sensor_id,
            "ts": r.last_seen,
            "client": r.client,
            "server": r.server,
            "dport": r.dport,
            "proto": proto,
            "direction": DIRECTIONS.get(r.direction, "unknown"),
            "first_seen": r.first_seen,
            "last_seen": r.last_seen,
        }

    def _quality(self, q: quality_pb2.QualityRow, rate: int) -> dict[str, Any]:
        out = self._row("quality", q, "tcp")
        out["flows"] = q.flows
        out["sample_rate"] = rate
        for m in QUALITY_COUNTS:
            c2s, s2c = getattr(q.c2s, m), getattr(q.s2c, m)
            out[f"{m}_c2s"], out[f"{m}_s2c"], out[m] = c2s, s2c, c2s + s2c
        for d, part in (("_c2s", q.c2s.ts_rtt), ("_s2c", q.s2c.ts_rtt)):
            out[f"ts_rtt_samples{d}"] = part.samples
            out[f"ts_rtt_ms_sum{d}"] = part.sum_ms
            out[f"ts_rtt_ms_min{d}"] = part.min_ms if part.samples else None
            out[f"ts_rtt_ms_max{d}"] = part.max_ms if part.samples else None
        return out

    def _udp(self, u: udp_pb2.UdpRow, rate: int) -> dict[str, Any]:
        out = self._row("udp", u, "udp")
        for c in UDP_COUNTS:
            out[c] = getattr(u, c)
        out["answered"] = u.packets_s2c > 0
        out["sample_rate"] = rate
        return out

    def counters(self) -> dict[str, int]:
        return {
            "eventlog_lines": self.log.lines,
            "eventlog_dropped": self.log.dropped,
            "eventlog_suppressed": self.suppressed,
            "eventlog_reopened": self.log.reopened,
        }
