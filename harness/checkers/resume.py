"""Resume by message: a client asks, on an open connection, for what came after a position.

A cohort's ``resume_after`` makes each client send the dialect's resume message some seconds after
each init, from the position that init announced (``resume_request`` records). The server must answer
(``resumed`` or ``resync_required``), and what it replays after a ``resumed`` must be new to the
client: after the position asked from, nothing the client already had, in order.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from harness.checkers.base import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    CheckContext,
    Connection,
    Record,
    Verdict,
    cap_evidence,
    describe_item,
    parse_options,
    register,
)

ANSWERS = ("resumed", "resync_required", "error")
SAMPLE = 5


@register("resume", "Resume")
def check_resume(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every resume request a client of ``cohort`` sent on an open connection is answered before the
    connection ends, by ``resumed`` or ``resync_required``; after a ``resumed``, the client receives no
    batch it already had (by seq within the epoch, and by event id), none at or below the seq it asked
    to resume after, and the replayed batches (those below the newest seq it had seen) in order.

    A target that answers no request at all, or only with errors, has no resume by message: not
    applicable. So is a cohort that sent none (its dialect has no resume message, its stream has no
    seq, or no connection lived ``resume_after`` seconds).

    Options:
      cohort (required): the cohort whose clients sent resume requests.
    """
    opts = parse_options("resume", options, {}, required=("cohort",))
    cohort = opts["cohort"]
    evidence: list[dict[str, Any]] = []
    tally = dict.fromkeys(("requests", "resumed", "resynced", "refused", "unanswered", "replayed"), 0)
    for client in ctx.clients_of(cohort):
        seen_seqs: set[tuple[Any, int]] = set()
        seen_ids: set[Any] = set()
        for conn in ctx.connections(client):
            evidence += _connection(client, conn, seen_seqs, seen_ids, tally)
    if not tally["requests"]:
        why = (f"not applicable: no client of cohort {cohort!r} sent a resume request (the target's dialect has "
               "no resume message, its stream has no seq, or no connection lived resume_after seconds)")  # fmt: skip
        return Verdict.unknown("resume", NOT_APPLICABLE, why, [], tally)
    if not tally["resumed"] and not tally["resynced"]:
        why = (f"not applicable: the target answered none of {tally['requests']} resume request(s) of cohort "
               f"{cohort!r} ({tally['refused']} with an error): it has no resume by message")  # fmt: skip
        return Verdict.unknown("resume", NOT_APPLICABLE, why, [], tally)
    if evidence:
        first = cap_evidence(evidence)[0]
        summary = (f"{first['problem']}: {len(evidence)} resume problem(s) in cohort {cohort!r}; "
                   f"first: {describe_item(first)}")  # fmt: skip
        return Verdict("resume", FAIL, summary, cap_evidence(evidence), tally)
    return Verdict("resume", PASS, f"cohort {cohort!r}: {tally['requests']} resume request(s) answered "
                   f"({tally['resumed']} resumed, {tally['resynced']} told to resync), {tally['replayed']} "
                   "batch(es) replayed, none twice or out of order", [], tally)  # fmt: skip


def _connection(
    client: str, conn: Connection, seen_seqs: set[tuple[Any, int]], seen_ids: set[Any], tally: dict[str, int]
) -> list[dict[str, Any]]:
    """The problems of one connection's resume requests; ``seen_*`` grow with its batches."""
    problems: list[dict[str, Any]] = []
    requests = sorted(conn.resume_requests, key=lambda r: r["t"])
    answers = [n for n in conn.notices if n.get("type") in ANSWERS]
    cursor = 0  # batches of the connection already scanned
    for i, request in enumerate(requests):
        tally["requests"] += 1
        answer = next((n for n in answers if n["t"] >= request["t"]), None)
        base = {"client": client, "since": request.get("since"), "epoch": request.get("epoch"), "t": request["t"]}
        if answer is None:
            tally["unanswered"] += 1
            problems.append({**base, "problem": "resume request not answered"})
            continue
        if answer.get("type") == "error":
            tally["refused"] += 1
            continue
        if answer.get("type") == "resync_required":
            tally["resynced"] += 1
            continue
        tally["resumed"] += 1
        until = requests[i + 1]["t"] if i + 1 < len(requests) else float("inf")
        cursor = _remember(conn.batches, cursor, answer["t"], conn.epoch, seen_seqs, seen_ids)
        after = [b for b in conn.batches[cursor:] if b["t"] < until]
        problems += _replay_problems({**base, "answered_t": answer["t"]}, after, conn.epoch, seen_seqs, seen_ids,
                                     tally)  # fmt: skip
        cursor += len(after)
    _remember(conn.batches, cursor, float("inf"), conn.epoch, seen_seqs, seen_ids)
    return problems


def _remember(batches: list[Record], start: int, before: float, epoch: Any, seqs: set, ids: set) -> int:
    """Add the seqs and ids of ``batches[start:]`` received before ``before``; returns the next index."""
    end = start
    while end < len(batches) and batches[end]["t"] < before:
        _add(batches[end], epoch, seqs, ids)
        end += 1
    return end


def _add(batch: Record, epoch: Any, seqs: set, ids: set) -> None:
    if isinstance(batch.get("seq"), int):
        seqs.add((epoch, batch["seq"]))
    ids.update(i for i in batch.get("ids") or [] if i is not None)


def _replay_problems(
    base: dict[str, Any], batches: list[Record], epoch: Any, seqs: set, ids: set, tally: dict[str, int]
) -> list[dict[str, Any]]:
    since = base.get("since")
    top = max((s for e, s in seqs if e == epoch), default=None)
    twice: list[Record] = []
    below: list[Record] = []
    replayed: list[int] = []
    again: list[Any] = []
    for batch in batches:
        seq = batch.get("seq")
        if isinstance(seq, int):
            if (epoch, seq) in seqs:
                twice.append(batch)
            elif isinstance(since, int) and seq <= since:
                below.append(batch)
            if top is not None and seq <= top:
                replayed.append(seq)
        again += [i for i in batch.get("ids") or [] if i in ids]
        _add(batch, epoch, seqs, ids)
    tally["replayed"] += len(replayed)
    problems = []
    if twice or again:
        first = twice[0] if twice else None
        problems.append({**base, "problem": "received again after resumed", "seqs_again": len(twice),
                         "first_seq_again": first.get("seq") if first else None, "ids_again": len(again),
                         "first_ids_again": ", ".join(map(str, again[:SAMPLE]))})  # fmt: skip
    if below:
        problems.append({**base, "problem": "replayed at or below the seq asked from", "seq": below[0].get("seq"),
                         "batches": len(below)})  # fmt: skip
    back = next((b for a, b in pairwise(replayed) if b <= a), None)
    if back is not None:
        problems.append({**base, "problem": "replay out of order", "seq": back, "replayed": len(replayed)})
    return problems
