"""Renders the monitor's counters in the Prometheus text format."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.hub import LIVE_CLIENTS, Hub
from monitor.metrics import Metrics


class MonitorCollector(Collector):
    def __init__(self, metrics: Metrics, hub: Hub, pending: Callable[[], int]) -> None:
        self.metrics = metrics
        self.hub = hub
        self.pending = pending

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield _gauge("monitor_clients", "WebSocket clients in the registry", len(self.hub.clients))
        yield _counter("monitor_connections", "WebSocket connections accepted", m.connections_total)
        yield _counter("monitor_messages_sent", "Messages written to clients", m.messages_sent)
        yield _counter("monitor_bytes_sent", "Bytes of message payload written to clients", m.bytes_sent)
        yield _counter("monitor_broadcasts", "Broadcasts fanned out", m.broadcasts)
        yield _labelled("monitor_send_failures", "Failed sends by outcome", "outcome", m.send_failures)
        yield _labelled("monitor_evictions", "Clients evicted by reason", "reason", m.evictions)
        yield _labelled("monitor_protocol_errors", "Bad requests by error code", "code", m.protocol_errors)
        yield _labelled("monitor_requests", "Requests by type", "type", m.requests)
        depths = [len(c.queue) for c in self.hub.clients.values()]
        yield _gauge("monitor_outbound_queue_max", "Longest client outbound queue", max(depths, default=0))
        yield _gauge("monitor_outbound_queue_total", "Messages queued for all clients", sum(depths))
        yield _gauge("monitor_client_objects", "Client objects alive, in the registry or not", len(LIVE_CLIENTS))
        yield _gauge("monitor_tasks", "asyncio tasks not yet done", _tasks())
        yield _gauge("monitor_stream_pending", "Persisted events not yet broadcast", self.pending())
        yield _gauge("monitor_ingest_queue", "Lines read and waiting to be stored", m.ingest_queue_depth)
        yield _counter("monitor_lines_read", "Log lines read", m.lines_read)
        yield _counter("monitor_parse_errors", "Log lines that could not be parsed", m.parse_errors)
        yield _counter("monitor_events_ingested", "Events parsed from logs", m.events_ingested)
        yield _counter("monitor_events_persisted", "Events written to the database", m.events_persisted)
        yield _counter("monitor_ingest_backpressure_waits", "Times a tailer waited on a full queue",
                       m.ingest_backpressure_waits)
        yield _counter("monitor_file_rotations", "Log rotations followed", m.file_rotations)
        yield _counter("monitor_file_truncations", "Log truncations followed", m.file_truncations)


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # scraped outside the event loop
        return 0


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def make_registry(metrics: Metrics, hub: Hub, pending: Callable[[], int]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(metrics, hub, pending))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
