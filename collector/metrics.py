"""The collector's Prometheus metrics, served at ``/metrics`` on the web address.

Two parts:

- this collector process (:class:`CollectorMetrics`): batches applied, duplicates, gaps,
  rejected and refused batches, rows written, graph write latency and batch sizes (histograms),
  sensor streams, authentication failures, plugin errors and losses. They are read from the
  ingest service and the store at scrape time, except the two histograms, which the store
  observes per write;
- every sensor, from its ``Sensor`` node in the graph (:func:`sensor_metrics`), so any replica
  answers the same: batches, gaps, lost envelopes and items, identity conflicts, last seen, and
  each counter the sensor sent with its last batch as
  ``net_gazer_sensor_counter{sensor, name}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

P = "net_gazer_collector_"

#: Seconds; FalkorDB writes a batch of 1-5k rows in tens of milliseconds.
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ROW_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000)


class CollectorMetrics:
    """The process's registry; ``status`` gives the ingest and store objects at scrape time."""

    def __init__(self, service: Any, store: Any, plugins: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.service, self.store, self.plugins = service, store, plugins
        self.write_seconds = Histogram(
            P + "graph_write_seconds", "Time to write one batch into the graph.",
            buckets=WRITE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_rows = Histogram(
            P + "batch_rows", "Rows per applied batch.", buckets=ROW_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_Live(self))

    def observe(self, seconds: float, rows: int) -> None:
        self.write_seconds.observe(seconds)
        self.batch_rows.observe(rows)


class _Live:
    def __init__(self, m: CollectorMetrics) -> None:
        self.m = m

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        s, st = self.m.service.stats, self.m.store.stats

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(P + name, doc, value=value)

        yield counter("batches", "Batches applied to the graph.", st.batches)
        yield counter("batches_received", "Batches received, duplicates included.", s.batches)
        yield counter(
            "duplicate_batches", "Batches at or below the mark: acked, skipped.", s.duplicates
        )
        yield counter("handshakes", "Completed handshakes in applied batches.", s.handshakes)
        yield counter("gaps", "Gap messages applied.", s.gaps)
        yield counter("rejected_batches", "Envelopes refused as protocol errors.", s.rejected)
        yield counter(
            "refused_batches",
            "Batches the graph refused for good (kept as gaps).",
            s.refused_batches,
        )
        yield counter("retried_writes", "Writes that failed and were resent.", s.retried_writes)
        rows = CounterMetricFamily(
            P + "rows", "Rows written by applied batches, by plugin.", labels=["plugin"]
        )
        for name, n in sorted(st.rows_by_plugin.items()):
            rows.add_metric([name or "-"], n)
        yield rows
        yield counter("streams", "Sensor streams opened.", s.streams)
        yield GaugeMetricFamily(P + "streams_active", "Sensor streams open now.", value=s.active)
        yield counter("unauthenticated", "Streams without a valid credential.", s.unauthenticated)
        yield counter("denied", "Streams that claimed another sensor's id.", s.denied)
        yield counter("shed_streams", "Streams refused over --max-sensors.", s.shed)
        yield counter(
            "throttled_seconds",
            "Time acks were held back by --rows-per-second.",
            s.throttled_seconds,
        )
        yield counter(
            "unhandled_extensions", "Extensions no plugin handled.", st.unhandled_extensions
        )
        errors = CounterMetricFamily(
            P + "plugin_errors", "Plugin calls that raised.", labels=["plugin"]
        )
        lost = CounterMetricFamily(
            P + "plugin_lost", "Batch parts a plugin lost.", labels=["plugin"]
        )
        for info in self.m.plugins.describe():
            errors.add_metric([str(info["name"])], info.get("errors", 0) or 0)
        for name, n in st.plugin_lost.items():
            lost.add_metric([name], n)
        yield errors
        yield lost


SENSORS_CYPHER = (
    "MATCH (s:Sensor) RETURN s.id, s.batches, s.gaps, s.lost_envelopes, s.lost_items, "
    "s.machine_id_conflicts, s.last_seen, s.counters ORDER BY s.id LIMIT 10000"
)


def sensor_metrics(query: Callable[[str], list[list[Any]]]) -> CollectorRegistry:
    """A registry holding every sensor's metrics, read from the graph now."""
    rows = query(SENSORS_CYPHER)
    registry = CollectorRegistry(auto_describe=False)

    class _Sensors:
        def describe(self) -> list[Any]:
            return []

        def collect(self) -> Iterator[Any]:
            q = "net_gazer_sensor_"
            fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
                "batches": CounterMetricFamily(q + "batches", "Batches the graph applied.", labels=["sensor"]),
                "gaps": CounterMetricFamily(q + "gaps", "Gap messages.", labels=["sensor"]),
                "lost_envelopes": CounterMetricFamily(q + "lost_envelopes", "Envelopes announced lost.", labels=["sensor"]),
                "lost_items": CounterMetricFamily(q + "lost_items", "Rows announced lost.", labels=["sensor"]),
                "conflicts": CounterMetricFamily(q + "identity_conflicts", "Hellos from another machine id.", labels=["sensor"]),
                "last_seen": GaugeMetricFamily(q + "last_seen_seconds", "Unix time of the last hello or batch.", labels=["sensor"]),
            }  # fmt: skip
            wire = GaugeMetricFamily(
                q + "counter",
                "A sensor's counters as of its last batch.",
                labels=["sensor", "name"],
            )
            for sid, batches, gaps, le, li, conflicts, last, counters in rows:
                label = [str(sid)]
                for key, value in (("batches", batches), ("gaps", gaps), ("lost_envelopes", le),
                                   ("lost_items", li), ("conflicts", conflicts),
                                   ("last_seen", last)):  # fmt: skip
                    fams[key].add_metric(label, float(value or 0))
                for item in counters or []:
                    name, _, value = str(item).partition("=")
                    if value.lstrip("-").isdigit():
                        wire.add_metric([str(sid), name], float(value))
            yield from fams.values()
            yield wire

    registry.register(_Sensors())
    return registry
