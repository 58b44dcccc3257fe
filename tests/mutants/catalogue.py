"""The mutant catalogue: every mutant, what it breaks, and the scenario and checker expected to catch
it. ``python -m tests.mutants`` prints it as JSON for ``wschaos mutants``."""

from __future__ import annotations

import inspect
from typing import Any

from tests.mutants.mutants import MUTANTS

LAUNCHER = "tests.mutants.launch"

CAUGHT_BY: dict[str, tuple[str, str]] = {
    "send_json_direct": ("stuck_reader", "no_error_logs"),
    "gather_no_timeout": ("stuck_reader", "delivery"),
    "gather_uncapped": ("stuck_reader", "delivery"),
    "no_eviction": ("stuck_reader", "eviction"),
    "swallow_cancel": ("graceful_shutdown", "no_error_logs"),
    "unbounded_queue": ("stuck_reader", "eviction"),
    "error_log_on_disconnect": ("mass_drop", "no_error_logs"),
    "drop_when_ingest_full": ("ingest_burst", "persistence"),
    "forget_offsets": ("server_restart", "persistence"),
    "racy_broadcast": ("ingest_burst", "delivery"),
    "heartbeat_off": ("network_cut", "eviction"),
    "resume_silent_gap": ("network_cut", "recovery"),
    "dashboard_no_reconnect": ("browser_network_cut", "browser"),
}


def catalogue() -> dict[str, Any]:
    """The catalogue in the form ``wschaos mutants`` reads."""
    missing = sorted(set(MUTANTS) ^ set(CAUGHT_BY))
    if missing:
        raise RuntimeError(f"mutants without an expected catch, or catches without a mutant: {missing}")
    return {
        "launcher": LAUNCHER,
        "mutants": [
            {"name": name, "breaks": breaks(name), "scenario": CAUGHT_BY[name][0], "checker": CAUGHT_BY[name][1]}
            for name in MUTANTS
        ],
    }


def breaks(name: str) -> str:
    """The first paragraph of the mutant's docstring, on one line."""
    doc = inspect.getdoc(MUTANTS[name]) or ""
    return " ".join(doc.split("\n\n")[0].split())
