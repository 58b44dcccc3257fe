"""The timeline plot as inline SVG: compact (coordinates to a tenth, no indentation, one font name)
without changing what it says (labels keep every digit)."""

from __future__ import annotations

import re

from reports.plots import timeline_svg
from reports.timeline import Span, Timeline


def timeline() -> Timeline:
    t = [float(i) for i in range(12)]
    return Timeline(
        bin_s=1.0,
        duration_s=12.0,
        t=t,
        delivered={"steady": [200.0 + (i % 3) for i in range(12)], "victims": [100.0] * 6 + [0.0] * 6},
        latency_p50_ms=[0.01 + i / 10000 for i in range(12)],  # ticks of two decimals: 0.01, 0.02
        latency_p99_ms=[0.04 + i / 1000 for i in range(12)],
        clients_server=[6.0] * 12,
        clients_client=[6] * 12,
        locust_users=None,
        faults=[Span("cut", "network_cut", 3.0, 7.5)],
    )


def test_the_svg_keeps_its_labels_and_drops_digits_no_eye_can_see() -> None:
    svg = timeline_svg(timeline())
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "cut (network_cut)" in svg and "messages/s" in svg and "victims" in svg
    ticks = re.findall(r">([0-9][0-9.]*)</text>", svg)
    assert any("." in tick and len(tick.split(".")[1]) >= 2 for tick in ticks), ticks  # 0.75, not 0.7
    for attribute in re.findall(r'\s(?:d|x|y|width|height)="([^"]*)"', svg):
        assert not re.search(r"\d\.\d\d", attribute), attribute
    assert "\n " not in svg
    assert "Bitstream Vera" not in svg and "DejaVu Sans" in svg
