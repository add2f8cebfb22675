"""``--metrics ADDR``: the sensor's Prometheus ``/metrics`` listener (off by default).

Everything is read from the running sensor at scrape time, so the listener costs nothing between
scrapes and never touches the packet path:

- ``net_gazer_sensor_packets_total``, ``..._malformed_total``, ``..._tcp_packets_total``,
  ``..._handshake_events_total``: the packet path;
- ``net_gazer_sensor_capture_dropped_total{kind="kernel"|"interface"}``: libpcap's drops;
- ``net_gazer_sensor_envelopes_buffered``, ``..._envelopes_cut_total``,
  ``..._envelopes_acked_total``, ``..._envelopes_resent_total``,
  ``..._envelopes_gapped_total``: delivery (gapped: dropped from a full buffer or spool and
  announced to the collector as a gap);
- ``net_gazer_sensor_collector_connected``, ``..._collector_reconnects_total``;
- ``net_gazer_sensor_plugin_errors_total{plugin}``, ``..._plugin_overruns_total{plugin}``,
  ``..._plugin_disabled{plugin}``;
- ``net_gazer_sensor_counter{name}``: every counter the sensor sends with its batches (plugins'
  own counters among them: the handshake plugin's ``plugin_handshake_completed``, a tracer's
  probes), under the names they have on the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from net_gazer.errors import ConfigError
from net_gazer.netaddr import parse_hostport

if TYPE_CHECKING:
    from net_gazer.sensor.pipeline import Sensor
    from net_gazer.sensor.transport import Streamer

log = logging.getLogger(__name__)


class SensorCollector:
    """A prometheus_client collector over a running sensor."""

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor
        self.streamer: Streamer | None = None

    def describe(self) -> list[Any]:
        return []  # unchecked: the set of plugin counters is known only at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.sensor
        c = s.counters
        p = "net_gazer_sensor_"

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(p + name, doc, value=value)

        yield counter("packets", "Frames read from the capture.", c.packets)
        yield counter("tcp_packets", "TCP segments decoded.", c.tcp)
        yield counter("malformed", "Frames that did not decode, counted and skipped.", c.malformed)
        yield counter("handshake_events", "Handshake verdicts (completed, refused, ...).", c.events)
        recv = drop = ifdrop = 0
        for h in s.handles:
            r, d, i = h.stats()
            recv, drop, ifdrop = recv + r, drop + d, ifdrop + i
        yield counter("capture_received", "Frames libpcap received.", recv)
        drops = CounterMetricFamily(
            p + "capture_dropped", "Frames libpcap dropped.", labels=["kind"]
        )
        drops.add_metric(["kernel"], drop)
        drops.add_metric(["interface"], ifdrop)
        yield drops
        o = s.outbox
        yield GaugeMetricFamily(p + "envelopes_buffered", "Batches not yet acknowledged.", len(o))
        yield counter("envelopes_cut", "Batches cut.", o.stats.cut)
        yield counter("envelopes_acked", "Batches the collector acknowledged.", o.stats.acked)
        yield counter(
            "envelopes_resent", "Batches written again after a reconnect.", o.stats.resent
        )
        yield counter(
            "envelopes_gapped", "Batches dropped and announced as a gap.", o.stats.dropped_envelopes
        )
        if self.streamer is not None:
            yield GaugeMetricFamily(
                p + "collector_connected", "1 while the stream to the collector is up.",
                1 if self.streamer.connected.is_set() else 0,
            )  # fmt: skip
            yield counter(
                "collector_reconnects", "Reconnects to the collector.", self.streamer.reconnects
            )
        errors = CounterMetricFamily(
            p + "plugin_errors", "Plugin calls that raised.", labels=["plugin"]
        )
        overruns = CounterMetricFamily(
            p + "plugin_overruns", "Plugin calls over their time budget.", labels=["plugin"]
        )
        disabled = GaugeMetricFamily(
            p + "plugin_disabled", "1 for a disabled plugin.", labels=["plugin"]
        )
        for info in s.host.plugins():
            errors.add_metric([info.name], info.errors)
            overruns.add_metric([info.name], info.overruns)
            disabled.add_metric([info.name], 1 if info.disabled else 0)
        yield errors
        yield overruns
        yield disabled
        wire = GaugeMetricFamily(
            p + "counter", "The sensor's counters as sent with its batches.", labels=["name"]
        )
        for name, value in sorted(s.all_counters().items()):
            wire.add_metric([name], value)
        yield wire


def parse_addr(addr: str) -> tuple[str, int]:
    try:
        return parse_hostport(addr, "--metrics address")
    except ConfigError:
        raise ConfigError(
            f"--metrics address {addr!r} is not HOST:PORT, e.g. 127.0.0.1:9108"
        ) from None


def serve(sensor: Sensor, addr: str) -> tuple[Any, SensorCollector, int]:
    """Start the listener in a thread; return (server, collector, bound port)."""
    from prometheus_client import CollectorRegistry, start_http_server

    host, port = parse_addr(addr)
    registry = CollectorRegistry(auto_describe=False)
    collector = SensorCollector(sensor)
    registry.register(collector)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {addr}: {exc.strerror}") from None
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return server, collector, bound
