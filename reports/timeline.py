"""A scenario's history as time series, one value per bin (a second unless asked otherwise).

- ``delivered``: messages (batches) clients received per second, per cohort;
- ``latency_p50_ms`` / ``latency_p99_ms``: delivery latency (recv_at - sent_at) of the live batches
  received in the bin (replays after a resume excluded), None where none arrived;
- ``clients_server``: the server's registry size (``metrics.clients``), the last sample in the bin (held
  through bins without a sample);
- ``clients_client``: clients the harness held connected (from connect to close) at the end of the bin;
- ``locust_users``: Locust's user count (its ``locust`` sample records), None when the run had no Locust load;
- ``faults``: fault windows, ``fault_start`` to its ``fault_heal`` (or the end), and ``target_down``:
  stretches when the target was killed, paused or stopping.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.checkers import client_cohorts, connected_counts, latency_quantiles, live_latencies, target_down_windows
from harness.history import History

Series = list[float | None]


@dataclass(frozen=True)
class Span:
    label: str
    kind: str  # the fault's type, or the target event that opened it
    start: float
    end: float
    cohort: Any = None
    healed: bool = True


@dataclass
class Timeline:
    bin_s: float
    duration_s: float
    t: list[float]
    delivered: dict[str, list[float]]
    latency_p50_ms: Series
    latency_p99_ms: Series
    clients_server: Series
    clients_client: list[int]
    locust_users: Series | None
    faults: list[Span] = field(default_factory=list)
    target_down: list[Span] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["delivered_per_s"] = data.pop("delivered")
        return data


def build_timeline(history: History, bin_s: float = 1.0) -> Timeline:
    duration = max((float(r["t"]) for r in history.records), default=0.0)
    bins = max(1, math.ceil(duration / bin_s))
    p50, p99 = _latency(history, bins, bin_s)
    return Timeline(
        bin_s=bin_s,
        duration_s=round(duration, 3),
        t=[round(i * bin_s, 3) for i in range(bins)],
        delivered=_delivered(history, bins, bin_s, duration),
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        clients_server=_gauge(list(history.of("metrics")), "clients", bins, bin_s),
        clients_client=_connected(history, bins, bin_s, duration),
        locust_users=_locust(history, bins, bin_s),
        faults=fault_spans(history, duration),
        target_down=[Span(w.event, w.event, w.start, min(w.end, duration), None, w.end != math.inf)
                     for w in target_down_windows(history)],
    )  # fmt: skip


def _bin(t: float, bins: int, bin_s: float) -> int:
    return min(bins - 1, max(0, int(t // bin_s)))


def _delivered(history: History, bins: int, bin_s: float, duration: float) -> dict[str, list[float]]:
    counts: dict[str, list[int]] = {}
    cohorts = client_cohorts(history)
    for record in history.of("batch"):
        cohort = cohorts.get(str(record.get("client")), "unknown")
        counts.setdefault(cohort, [0] * bins)[_bin(record["t"], bins, bin_s)] += 1
    widths = [max(min(bin_s, duration - i * bin_s), bin_s / 4) for i in range(bins)]  # the last bin may be short
    return {c: [round(n / w, 3) for n, w in zip(row, widths, strict=True)] for c, row in sorted(counts.items())}


def _latency(history: History, bins: int, bin_s: float) -> tuple[Series, Series]:
    samples: dict[int, list[float]] = defaultdict(list)
    for t, ms in live_latencies(history):
        samples[_bin(t, bins, bin_s)].append(ms)
    p50: Series = [None] * bins
    p99: Series = [None] * bins
    for i, values in samples.items():
        q = latency_quantiles(values)
        p50[i], p99[i] = round(q["p50"], 3), round(q["p99"], 3)
    return p50, p99


def _gauge(records: list[dict[str, Any]], key: str, bins: int, bin_s: float) -> Series:
    """A sampled level: the last sample in each bin, held through the bins that have none (None before
    the first sample)."""
    out: Series = [None] * bins
    for record in records:
        if record.get(key) is not None:
            out[_bin(record["t"], bins, bin_s)] = record[key]
    for i in range(1, bins):
        if out[i] is None:
            out[i] = out[i - 1]
    return out


def _connected(history: History, bins: int, bin_s: float, duration: float) -> list[int]:
    return connected_counts(history, [min((i + 1) * bin_s, duration) for i in range(bins)])


def _locust(history: History, bins: int, bin_s: float) -> Series | None:
    """Users in Locust's samples (``locust`` records; a distributed run's workers are left out, their
    master counts them all); None when the run had no Locust load."""
    records = [r for r in history.of("locust") if r.get("role") != "worker"]
    if not records:
        return None
    return _gauge([r for r in records if r.get("phase", "sample") == "sample"], "users", bins, bin_s)


def fault_spans(history: History, duration: float) -> list[Span]:
    """Each ``fault_start`` to the first ``fault_heal`` of the same fault after it (or the end of the run)."""
    heals = list(history.of("fault_heal"))
    spans = []
    for start in history.of("fault_start"):
        heal = next((h for h in heals if h.get("fault") == start.get("fault") and h["t"] >= start["t"]), None)
        spans.append(
            Span(
                label=str(start.get("fault")),
                kind=str(start.get("type")),
                start=float(start["t"]),
                end=float(heal["t"]) if heal else duration,
                cohort=start.get("cohort"),
                healed=heal is not None,
            )
        )
    return spans
