"""Command-line options that guard the monitor against hostile clients, and number parsing that
rejects negative values with a one-line error."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from monitor import listener


def non_negative(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            whole = "whole " if kind is int else ""
            raise argparse.ArgumentTypeError(f"expected a {whole}number, got {text!r}") from None
        if value < 0 or value != value:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_guard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept WebSocket connections from pages of this origin (repeatable; '*' "
        "accepts any). By default only the monitor's own page (same origin) may connect",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="serve requests for this host name (repeatable); loopback names and IP addresses "
        "are always served. Guards against DNS rebinding",
    )
    p.add_argument(
        "--token", default=None, help="require this token on /ws and /metrics (Authorization: Bearer TOKEN, or ?token=)"
    )
    p.add_argument(
        "--max-clients",
        type=non_negative(int),
        default=None,
        help="WebSocket clients at once; more are refused with 503 (0: no cap; default: half "
        "of what the descriptor limit allows)",
    )
    p.add_argument(
        "--header-timeout",
        type=non_negative(float),
        default=10.0,
        help="close a connection whose request headers are not complete in this many seconds",
    )
    p.add_argument(
        "--replay-budget",
        type=non_negative(int),
        default=4 * 1024 * 1024,
        metavar="BYTES",
        help="replayed bytes a second per client address on resume (0: unlimited)",
    )
    p.add_argument("--verbose-health", action="store_true", help="show file paths and error text in /healthz")


def guard_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Config`` fields the options above set."""
    max_clients = args.max_clients
    if max_clients is None:
        max_clients = listener.default_max_clients(listener.descriptor_limit())
    return {
        "allowed_origins": args.allow_origin, "allowed_hosts": args.allow_host, "token": args.token,
        "max_clients": max_clients, "header_timeout": args.header_timeout,
        "replay_budget": args.replay_budget, "verbose_health": args.verbose_health,
    }  # fmt: skip
