"""The registry size read from Prometheus samples: a gauge, labelled samples, sums and differences."""

from __future__ import annotations

import pytest

from harness.promexpr import parse_expr, registry_size
from harness.target import parse_metrics
from harness.targetspec import TargetError, parse_target

CENTRIFUGO_TEXT = """\
# TYPE centrifugo_node_action_count counter
centrifugo_node_action_count{action="add_client",channel_namespace=""} 7
centrifugo_node_action_count{action="remove_client",channel_namespace=""} 3
centrifugo_node_action_count{action="subscribe",channel_namespace="feed"} 7
# TYPE centrifugo_node_num_clients gauge
centrifugo_node_num_clients 6
"""
ADDED_MINUS_REMOVED = (
    'centrifugo_node_action_count{action="add_client"} - centrifugo_node_action_count{action="remove_client"}'
)


def test_a_plain_gauge() -> None:
    assert parse_metrics(CENTRIFUGO_TEXT, "centrifugo_node_num_clients")[0] == 6


def test_counters_added_minus_removed_match_labels_as_a_subset() -> None:
    clients, values = parse_metrics(CENTRIFUGO_TEXT, ADDED_MINUS_REMOVED)
    assert clients == 4 and isinstance(clients, int)
    assert values['centrifugo_node_action_count_total{action="add_client",channel_namespace=""}'] == 7


def test_a_term_without_samples_gives_no_size() -> None:
    assert parse_metrics(CENTRIFUGO_TEXT, "centrifugo_node_num_clients - nothing_here")[0] is None
    assert registry_size([], None) is None


def test_a_name_without_labels_sums_every_sample() -> None:
    assert parse_metrics(CENTRIFUGO_TEXT, "centrifugo_node_action_count + centrifugo_node_num_clients")[0] == 23
    assert parse_metrics(CENTRIFUGO_TEXT, "centrifugo_node_action_count_total")[0] == 17


@pytest.mark.parametrize("expr", ["a -b", "a{x=1}", "1a", "a{x=\"1\"} * b"])
def test_bad_expressions_are_refused(expr: str) -> None:
    with pytest.raises(ValueError):
        parse_expr(expr)
    with pytest.raises(TargetError, match=r"metrics\.clients: "):
        parse_target({"name": "t", "command": ["x"], "metrics": {"path": "/m", "clients": expr}}, "t.yaml")
