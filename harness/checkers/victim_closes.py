"""How the victims of an eviction saw their connection end: a close frame from the server (its code),
a connection reset, a FIN, or the harness closing the socket itself, and whether before the heal."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from harness.checkers.base import CheckContext, Record

SERVER_SIDE = frozenset({"server", "error"})


@dataclass
class Seen:
    """What the victims saw, counted by kind; ``before_heal``: one saw the server end it before the heal."""

    kinds: Counter[str] = field(default_factory=Counter)
    before_heal: bool = False
    heal_t: float | None = None
    times: list[float] = field(default_factory=list)  # of the victims' closes

    def describe(self) -> str:
        if not self.kinds:
            return "the victims saw no close"
        seen = ", ".join(f"{n} {kind}" for kind, n in self.kinds.most_common())
        if self.heal_t is not None and self.times and min(self.times) >= self.heal_t:
            seen += f", only at or after the heal at t={self.heal_t:.2f}s"
        return f"as the victims saw it: {seen}"


def seen_by_victims(ctx: CheckContext, victims: frozenset[str], t0: float, heal_t: float | None) -> Seen:
    seen = Seen(heal_t=heal_t)
    for client in sorted(victims):
        close = next((r for r in ctx.by_client.get(client, []) if r["kind"] == "close" and r["t"] >= t0), None)
        seen.kinds[how_closed(close)] += 1
        seen.times += [close["t"]] if close is not None else []
        if close is not None and close.get("by") in SERVER_SIDE and (heal_t is None or close["t"] < heal_t):
            seen.before_heal = True
    return seen


def how_closed(close: Record | None) -> str:
    """One close record in words: "close code 1006", "connection reset", "FIN", "closed by the harness"."""
    if close is None:
        return "still open as far as they saw"
    by, how = close.get("by"), close.get("how")
    if by == "server":
        return f"close code {close.get('code')}"
    if by == "client":
        return f"closed by the harness ({close.get('reason') or 'close'})"
    reason = str(close.get("reason") or "")
    if how == "fin":
        return "FIN"
    if how == "reset" or "reset" in reason.lower():
        return "connection reset"
    return f"connection error ({how or reason or 'unknown'})"[:80]
