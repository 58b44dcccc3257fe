"""A scenario's timeline drawn as one inline SVG (matplotlib, off-screen): messages per second per cohort,
delivery latency p50/p99, clients as the server and as the clients see them, and Locust users when there
were any, with fault windows shaded across every panel."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.timeline import Span, Timeline

matplotlib.use("Agg")  # never a window: reports are written by CLIs and CI

COHORT_COLOURS = ("#2563eb", "#0d9488", "#9333ea", "#d97706", "#db2777", "#4b5563", "#65a30d", "#0891b2")
FAULT_COLOUR = "#f97316"
DOWN_COLOUR = "#64748b"
INK = "#1f2937"
GRID = "#e5e7eb"
GEOMETRY = re.compile(r'(\s(?:d|x|y|x1|x2|y1|y2|width|height|transform)=")([^"]*)"')
DECIMALS = re.compile(r"(\d\.\d)\d+")
STYLE = {
    "svg.fonttype": "none",  # text stays text: small files, the page's font
    "svg.hashsalt": "wschaos",  # stable ids: the same run renders the same file
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # one name, not matplotlib's list of fifteen in every <text>
    "font.size": 9,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
}


def timeline_svg(timeline: Timeline) -> str:
    with matplotlib.rc_context(STYLE):
        figure = _figure(timeline)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})  # fixed margins: one draw, not two
    return _inline(buffer.getvalue())


def _figure(timeline: Timeline) -> Figure:
    panels = 4 if timeline.locust_users is not None else 3
    height = 1.75 * panels + 0.4
    figure = Figure(figsize=(11, height))
    # room for the fault labels above, the axis label below and the legends to the right
    figure.subplots_adjust(left=0.07, right=0.82, top=1 - 0.3 / height, bottom=0.5 / height)
    axes = figure.subplots(panels, 1, sharex=True, gridspec_kw={"hspace": 0.12})
    x = [t + timeline.bin_s / 2 for t in timeline.t]
    _messages(axes[0], x, timeline)
    _latency(axes[1], x, timeline)
    _clients(axes[2], x, timeline)
    if timeline.locust_users is not None:
        _line(axes[3], x, timeline.locust_users, "Locust users", COHORT_COLOURS[3])
        axes[3].set_ylabel("Locust users")
    for ax in axes:
        _shade(ax, timeline.faults, timeline.target_down)
        ax.grid(axis="y", color=GRID, linewidth=0.8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlim(0, max(timeline.duration_s, timeline.bin_s))
    _label_spans(axes[0], timeline.faults, timeline.target_down)
    axes[-1].set_xlabel("seconds since the scenario started")
    return figure


def _messages(ax: Axes, x: list[float], timeline: Timeline) -> None:
    for i, (cohort, values) in enumerate(timeline.delivered.items()):
        _line(ax, x, values, cohort, COHORT_COLOURS[i % len(COHORT_COLOURS)])
    ax.set_ylabel("messages/s")
    ax.set_ylim(bottom=0)
    _legend(ax, "cohort")


def _latency(ax: Axes, x: list[float], timeline: Timeline) -> None:
    _line(ax, x, timeline.latency_p50_ms, "p50", INK)
    _line(ax, x, timeline.latency_p99_ms, "p99", "#dc2626", dashed=True)
    values = [v for v in timeline.latency_p99_ms if v is not None]
    low = [v for v in timeline.latency_p50_ms if v is not None and v > 0]
    if values and low and max(values) > 20 * min(low):
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("latency ms")
    _legend(ax, "delivery latency")


def _clients(ax: Axes, x: list[float], timeline: Timeline) -> None:
    _line(ax, x, timeline.clients_server, "server registry", "#7c3aed")
    _line(ax, x, [float(v) for v in timeline.clients_client], "connected (clients' view)", "#059669", dashed=True)
    ax.set_ylabel("clients")
    ax.set_ylim(bottom=0)
    _legend(ax, "clients")


def _line(
    ax: Axes, x: list[float], values: Sequence[float | None], label: str, colour: str, dashed: bool = False
) -> None:
    y = [float("nan") if v is None else v for v in values]
    ax.plot(x, y, label=label, color=colour, linewidth=1.6, linestyle="--" if dashed else "-", marker="o",
            markersize=2.5)  # fmt: skip


def _legend(ax: Axes, title: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False, fontsize=8,
                  title_fontsize=8, alignment="left")  # fmt: skip


def _shade(ax: Axes, faults: list[Span], down: list[Span]) -> None:
    for span in faults:
        ax.axvspan(span.start, span.end, color=FAULT_COLOUR, alpha=0.16, linewidth=0)
    for span in down:
        ax.axvspan(span.start, span.end, color=DOWN_COLOUR, alpha=0.18, linewidth=0, hatch="//")


def _label_spans(ax: Axes, faults: list[Span], down: list[Span]) -> None:
    transform = ax.get_xaxis_transform()
    for start, text in _fault_labels(faults, ax.get_xlim()[1]):
        ax.text(start, 1.02, text, transform=transform, color="#c2410c", fontsize=8, va="bottom")
    for span in down:
        ax.text(span.start, 1.02, f"target {span.kind}", transform=transform, color=DOWN_COLOUR, fontsize=8,
                va="bottom", ha="right")  # fmt: skip


def _fault_labels(faults: list[Span], width: float) -> list[tuple[float, str]]:
    """One label per group of faults that start close together (within 8% of the axis), so that
    labels never print over each other: ``silent, ponging (stuck_reader)``."""
    groups: list[list[Span]] = []
    for span in sorted(faults, key=lambda s: s.start):
        if groups and span.start - groups[-1][0].start < 0.08 * width:
            groups[-1].append(span)
        else:
            groups.append([span])
    labels = []
    for group in groups:
        names = ", ".join(dict.fromkeys(s.label for s in group))
        kinds = ", ".join(dict.fromkeys(s.kind for s in group))
        unhealed = "" if all(s.healed for s in group) else ", never healed"
        labels.append((group[0].start, f"{names} ({kinds}{unhealed})"))
    return labels


def _inline(svg: str) -> str:
    """The SVG as an element for an HTML page: no XML prolog nor metadata nor indentation, coordinates to
    a tenth of a point (a report holds dozens of plots), sized by the page's CSS."""
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg") :], flags=re.S)
    svg = re.sub(r"\n[ \t]+", "\n", svg)
    svg = GEOMETRY.sub(lambda m: m[1] + DECIMALS.sub(r"\1", m[2]) + '"', svg)
    head, rest = svg.split(">", 1)
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    return f'{head} role="img" preserveAspectRatio="xMinYMin meet">{rest}'
