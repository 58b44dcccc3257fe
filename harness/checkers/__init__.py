"""Judges a chaos run from its History: one checker per guarantee, each giving a Verdict.

``base`` holds what they share (the verdict and its statuses, the context, the registry); each other
module is one checker that registers itself with ``@register(name, guarantee)``. They are imported here
in the order of the guarantees, and any further module of this package after them, so a new checker is
a new module and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from harness.checkers.base import (
    CHECKERS,
    DID_NOT_BITE,
    ERROR,
    FAIL,
    GUARANTEES,
    NOT_APPLICABLE,
    PASS,
    SKIPPED,
    UNKNOWN,
    UNKNOWN_REASONS,
    UNRELIABLE,
    CheckContext,
    CohortInfo,
    Connection,
    Verdict,
    Window,
    checker_name,
    client_cohorts,
    connected_counts,
    guarantee_of,
    latency_quantiles,
    live_latencies,
    merge_windows,
    read_status,
    register,
    run_checks,
    saturation_reason,
    scenario_status,
    split_connections,
    target_down_windows,
)

# The checkers register in the order of the guarantees.
# isort: off
from harness.checkers.no_error_logs import check_no_error_logs
from harness.checkers.delivery import check_delivery
from harness.checkers.eviction import check_eviction
from harness.checkers.liveness import check_liveness
from harness.checkers.persistence import check_persistence
from harness.checkers.recovery import check_recovery
from harness.checkers.shutdown import check_shutdown
from harness.checkers.browser import check_browser
from harness.checkers.load import check_load
# isort: on

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


class _OptionsParsed(Exception):
    """Raised by the dry-run context the moment a checker, done parsing its options, reads the run."""


class _DryRunContext:
    def __getattr__(self, name: str) -> Any:
        raise _OptionsParsed


def option_problem(name: str, options: dict[str, Any]) -> str | None:
    """What a checker would reject in ``options``, found before any run: the checker is called with a
    context that stops it at its first look at the run, after it parsed its options (a checker that
    looks at the run first is not checked here, only when it runs)."""
    try:
        CHECKERS[checker_name(name)](_DryRunContext(), options)  # type: ignore[arg-type]
    except _OptionsParsed:
        return None
    except ValueError as exc:
        return str(exc)
    except Exception:  # the checker used the context in a way the dry run cannot follow
        return None
    return None

__all__ = [
    "CHECKERS",
    "DID_NOT_BITE",
    "ERROR",
    "FAIL",
    "GUARANTEES",
    "NOT_APPLICABLE",
    "PASS",
    "SKIPPED",
    "UNKNOWN",
    "UNKNOWN_REASONS",
    "UNRELIABLE",
    "CheckContext",
    "CohortInfo",
    "Connection",
    "Verdict",
    "Window",
    "check_browser",
    "check_delivery",
    "check_eviction",
    "check_liveness",
    "check_load",
    "check_no_error_logs",
    "check_persistence",
    "check_recovery",
    "check_shutdown",
    "checker_name",
    "client_cohorts",
    "connected_counts",
    "guarantee_of",
    "latency_quantiles",
    "live_latencies",
    "merge_windows",
    "option_problem",
    "read_status",
    "register",
    "run_checks",
    "saturation_reason",
    "scenario_status",
    "split_connections",
    "target_down_windows",
]
