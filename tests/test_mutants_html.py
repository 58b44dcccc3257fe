"""The mutant matrix page shows which checker caught which mutant, and marks a survivor."""

from __future__ import annotations

from reports.mutants_html import write_mutants_html
from tests.mutants.matrix import Cell


def test_matrix_page_names_catches_and_survivors(tmp_path):
    cells = [
        Cell("heartbeat_off", "network_cut", "fail", ["eviction"], "eviction: 4 client(s) never left"),
        Cell("heartbeat_off", "baseline", "pass", [], ""),
        Cell("racy_broadcast", "baseline", "pass", [], ""),
    ]
    page = write_mutants_html(tmp_path, cells, seed=7).read_text()
    assert page.count('class="caught"') == 1 and "eviction: 4 client(s) never left" in page
    assert page.count('class="held"') == 2
    assert "racy_broadcast" in page and "<script" not in page
