"""Counters shared by ingest, store and hub, exposed at /metrics.

Plain integers on the hot path; prometheus_client only formats them when scraped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Metrics:
    lines_read: int = 0
    parse_errors: int = 0
    events_ingested: int = 0
    events_persisted: int = 0
    ingest_queue_depth: int = 0
    ingest_backpressure_waits: int = 0
    file_rotations: int = 0
    file_truncations: int = 0
    clients_connected: int = 0
    connections_total: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    broadcasts: int = 0
    send_failures: Counter[str] = field(default_factory=Counter)
    evictions: Counter[str] = field(default_factory=Counter)
    protocol_errors: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
