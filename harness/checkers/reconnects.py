"""What a reconnect did to one client's stream, judged by fed event ids (so also for servers whose
batches carry no seq): the events it missed while away, and what came twice or out of order.

For each reconnect (connection A ends, connection B starts), unless the server told the client to
resync (a resync notice or a new epoch):

- **gap**: the events fed while it was away (after the feed time of the last fed id A received, less
  ``settle_s``, up to B's start less ``settle_s``) that A did not get and some client of the run did
  receive must reach the client on B (or a later connection).
- **duplicate**: an id received on B that the client had already received before B.
- **seq back**: within one epoch, a seq on B at or below the highest seq the client had seen before,
  or below the previous seq on B.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.checkers.base import CheckContext, Connection, Window, told_to_resync

SAMPLE = 5
GAP_PROBLEMS = frozenset({"silent gap", "gap after resume"})


@dataclass(frozen=True)
class FedIds:
    """When each fed id was fed (run time), and the ids any client of the run received."""

    fed_at: dict[str, float]
    received: frozenset[str]

    @classmethod
    def of(cls, ctx: CheckContext) -> FedIds:
        fed_at = {i: float(f["t"]) for f in ctx.history.of("feed") for i in f.get("ids") or []}
        received = frozenset(i for b in ctx.history.of("batch") for i in b.get("ids") or [] if i is not None)
        return cls(fed_at, received)


def reconnect_problems(
    client: str, conns: list[Connection], fed: FedIds, episodes: list[Window], settle_s: float
) -> list[dict[str, Any]]:
    """Every gap, duplicate and seq going back across this client's reconnects."""
    problems: list[dict[str, Any]] = []
    before: set[str] = set()
    top: int | None = None
    for i, nxt in enumerate(conns):
        if i == 0 or told_to_resync(conns[i - 1], nxt):
            top = None
        else:
            prev, later = conns[i - 1], conns[i:]
            base = {"client": client, "closed_t": round(prev.end_t, 3), "fault": _episode(prev.end_t, episodes),
                    "t": nxt.start_t}  # fmt: skip
            problems += _gap(base, prev, nxt, later, before, fed, settle_s)
            problems += _duplicates(base, nxt, before)
            problems += _seq_back(base, nxt, top)
        before.update(_ids(nxt.batches))
        top = max([*_seqs(nxt), *([nxt.init_seq] if isinstance(nxt.init_seq, int) else []),
                   *([top] if top is not None else [])], default=None)  # fmt: skip
    return problems


def _gap(
    base: dict[str, Any], prev: Connection, nxt: Connection, later: list[Connection], before: set[str],
    fed: FedIds, settle_s: float,
) -> list[dict[str, Any]]:  # fmt: skip
    got_on_prev = [fed.fed_at[i] for i in _ids(prev.batches) if i in fed.fed_at]
    away_from = max(got_on_prev, default=prev.start_t) - settle_s
    away_to = nxt.start_t - settle_s
    after = {i for conn in later for i in _ids(conn.batches)}
    missed = [i for i, t in fed.fed_at.items()  # in feed order
              if away_from < t < away_to and i in fed.received and i not in before and i not in after]  # fmt: skip
    if not missed:
        return []
    resumed = nxt.notice("resumed") is not None
    return [{**base, "problem": "gap after resume" if resumed else "silent gap", "missing": len(missed),
             "first_missing_ids": ", ".join(missed[:SAMPLE]),
             "away_from_t": round(away_from, 3), "away_to_t": round(away_to, 3)}]  # fmt: skip


def _duplicates(base: dict[str, Any], nxt: Connection, before: set[str]) -> list[dict[str, Any]]:
    again = [i for i in _ids(nxt.batches) if i in before]
    if not again:
        return []
    return [{**base, "problem": "duplicate after reconnect", "duplicated": len(again),
             "first_duplicated_ids": ", ".join(again[:SAMPLE])}]  # fmt: skip


def _seq_back(base: dict[str, Any], nxt: Connection, top: int | None) -> list[dict[str, Any]]:
    previous = top
    for seq in _seqs(nxt):
        if previous is not None and seq <= previous:
            return [{**base, "problem": "seq went back after reconnect", "seq": seq, "after_seq": previous}]
        previous = seq
    return []


def _ids(batches: Iterable[dict[str, Any]]) -> list[str]:
    return [i for b in batches for i in b.get("ids") or [] if i is not None]


def _seqs(conn: Connection) -> list[int]:
    return [b["seq"] for b in conn.batches if isinstance(b.get("seq"), int)]


def _episode(t: float, episodes: list[Window]) -> str | None:
    """The fault whose episode the break falls in (or follows most closely)."""
    before = [e for e in episodes if e.start <= t]
    return before[-1].event if before else None
