"""Browsers: the dashboard page itself rides out the fault (a ``browser`` cohort)."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from harness.checkers.base import (
    DID_NOT_BITE,
    FAIL,
    PASS,
    CheckContext,
    Figures,
    Record,
    Verdict,
    Window,
    cap_evidence,
    describe_item,
    hits,
    merge_windows,
    parse_options,
    register,
    rounded,
)

BROWSER_LIVE = frozenset({"live", "resyncing"})
# What Chromium itself logs to the console when a WebSocket or a load fails: a cut or a restart causes
# these by design, and they are not the page's script errors.
BROWSER_NETWORK_NOISE = (r"^WebSocket connection to .* failed", r"^Failed to load resource")


@register("browser", "Dashboard recovery")
def check_browser(ctx: CheckContext, options: dict[str, Any]) -> Verdict:
    """Every dashboard page of ``cohort`` (``browser_state`` samples of ``window.wschaos``) shows the fault,
    reconnects after it with backoff, resumes the live feed without an unfilled gap, and logs no script error.

    Episodes: each fault that hits the cohort (or has no cohort: server faults), from its ``fault_start`` to
    its heal. The heal of a server fault is the target's first ``ready`` after the fault started (the moment
    a restarted server is back); of any other fault, its ``fault_heal`` record. For each page and episode:

    - **shown**: every state in ``require_state_seen`` appears in a sample between the fault's start and
      the heal + ``reconnect_within`` ("reconnecting" is the page waiting out its backoff).
    - **reconnected**: a page the fault disturbed (a sample not live, or a new connection) is back for good
      by the heal + ``reconnect_within``: from some sample at or after the heal up to the next episode (or
      the end) every sample is live ("live" or "resyncing") and the first of them counts more connections
      than the last sample before the fault.
    - **live feed**: the page's last sample of the stretch is in the same epoch as that first one (for a
      page the fault did not disturb, as its last sample before the heal) and has a greater ``lastSeq``.

    No gap left unfilled (per page, over the whole run): each seq in the final ``browser_seqs`` belongs to
    the epoch of the first sample whose ``received`` count includes it. Within each epoch, every seq from
    the first one the page was due (the ``lastSeq`` + 1 of its first sample in that epoch when no batch of
    the epoch had come yet, which is the init's seq + 1; else the lowest received) to the highest received
    must have been received (``gaps`` may count a gap the page detected; the resume must fill it), except
    the seqs a resync told the page to give up: for each run of "resyncing" samples, every seq at most the
    ``lastSeq`` of the run's first sample (the page drops what it still missed, an older gap too, and
    reloads). The page's ``duplicates`` must not exceed ``max_duplicates``.

    No script error: every ``browser_error`` of the cohort from the page (uncaught errors, crashes, console
    errors, entries of ``window.wschaos.errors``) fails the check unless an ``allow_errors`` pattern matches
    its text. Errors of the harness's own reads (source "harness") are counted, not judged.

    Options:
      cohort (required): the browser cohort.
      reconnect_within: seconds after the heal by which each page must be live again (default 5.0).
      require_state_seen: page state(s) each page must show during each episode (default ["reconnecting"];
        [] requires none).
      allow_errors: regular expressions for error texts that are not script errors (default: Chromium's own
        lines for a failed WebSocket connection or load).
      max_duplicates: the most batches a page may count as duplicates (default 0).
    """
    opts = parse_options("browser", options, {"reconnect_within": 5.0, "require_state_seen": ["reconnecting"],
                                          "allow_errors": list(BROWSER_NETWORK_NOISE), "max_duplicates": 0},
                    required=("cohort",))  # fmt: skip
    cohort, within = opts["cohort"], float(opts["reconnect_within"])
    required = opts["require_state_seen"] or []
    required = [required] if isinstance(required, str) else list(required)
    allow = [re.compile(p) for p in opts["allow_errors"]]
    samples = _browser_samples(ctx, cohort)
    episodes = _browser_episodes(ctx, cohort)
    if not samples:
        return Verdict("browser", FAIL, f"no page of cohort {cohort!r} reported its state (no browser_state records)",
                       [{"cohort": cohort, "problem": "no samples"}])  # fmt: skip
    if not episodes:
        why = f"the fault did not take effect: nothing to ride out: no fault or restart hit cohort {cohort!r}"
        return Verdict.unknown("browser", DID_NOT_BITE, why, [{"cohort": cohort, "problem": "no trigger"}])
    tally: Counter[str] = Counter(dict.fromkeys(("disturbed", "reconnected", "unfilled", "script_errors"), 0))
    delays: list[float] = []
    evidence: list[dict[str, Any]] = []
    expected = ctx.cohorts[cohort].clients if cohort in ctx.cohorts else len(samples)
    evidence += [{"client": f"{cohort}-?", "problem": "page never reported", "pages": len(samples),
                  "expected": expected, "t": 0.0}] if len(samples) < expected else []  # fmt: skip
    for client, mine in samples.items():
        for i, episode in enumerate(episodes):
            until = episodes[i + 1].start if i + 1 < len(episodes) else math.inf
            evidence += _page_episode(client, mine, episode, until, within, required, tally, delays)
        evidence += _page_coverage(ctx, client, mine, int(opts["max_duplicates"]), tally)
    errors = [r for r in ctx.history.of("browser_error") if r.get("cohort") == cohort]
    evidence += _script_errors(errors, allow, tally)
    figures = _browser_figures(samples, episodes, errors, tally, delays)
    if evidence:
        first = cap_evidence(evidence)[0]
        return Verdict("browser", FAIL, f"{len(evidence)} problem(s) with the pages of cohort {cohort!r}; "
                       f"first: {describe_item(first)}", cap_evidence(evidence), figures)  # fmt: skip
    shown = f", showed {' and '.join(required)}" if required else ""
    return Verdict(
        "browser",
        PASS,
        f"{len(samples)} page(s) of cohort {cohort!r} rode out {len(episodes)} fault(s){shown}, "
        f"{tally['reconnected']} reconnect(s) within {within:g}s of the heal "
        f"(slowest {max(delays, default=0.0):.2f}s), live feed resumed, no unfilled gap, no script error",
        [],
        figures,
    )



def _script_errors(errors: list[Record], allow: list[re.Pattern[str]], tally: Counter) -> list[dict[str, Any]]:
    """The page's own errors that no ``allow_errors`` pattern forgives (the harness's reads are not judged)."""
    problems = []
    for error in errors:
        if error.get("source") == "harness" or any(p.search(str(error.get("text", ""))) for p in allow):
            continue
        tally["script_errors"] += 1
        problems.append({"client": error.get("client"), "problem": "script error", "source": error.get("source"),
                         "text": str(error.get("text"))[:300], "t": error["t"]})  # fmt: skip
    return problems


def _browser_figures(samples: dict[str, list[Record]], episodes: list[Window], errors: list[Record], tally: Counter,
                     delays: list[float]) -> Figures:  # fmt: skip
    finals = [mine[-1] for mine in samples.values()]
    return {
        "pages": len(samples),
        "episodes": len(episodes),
        **tally,
        "after_heal_max_s": rounded(max(delays, default=0.0)),
        "gaps_detected": sum(int(f.get("gaps") or 0) for f in finals),
        "duplicates": sum(int(f.get("duplicates") or 0) for f in finals),
        "resent": sum(int(f.get("resent") or 0) for f in finals),
        "connects": sum(int(f.get("connects") or 0) for f in finals),
        "errors_allowed": sum(1 for e in errors if e.get("source") != "harness") - tally["script_errors"],
        "harness_read_errors": sum(1 for e in errors if e.get("source") == "harness"),
    }

def _browser_samples(ctx: CheckContext, cohort: str) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for record in ctx.history.of("browser_state"):
        if record.get("cohort") == cohort:
            out.setdefault(str(record.get("client")), []).append(record)
    return out


def _browser_episodes(ctx: CheckContext, cohort: str) -> list[Window]:
    """(fault start, heal): a server fault heals when the target is next ready, any other at its fault_heal."""
    heals = list(ctx.history.of("fault_heal"))
    readies = [r["t"] for r in ctx.history.of("target") if r.get("event") == "ready"]
    spans = []
    for start in ctx.history.of("fault_start"):
        if not (hits(start, cohort) or start.get("cohort") is None):
            continue
        heal = next((h["t"] for h in heals if h.get("fault") == start.get("fault") and h["t"] >= start["t"]), math.inf)
        if start.get("cohort") is None:
            heal = min([heal, *(t for t in readies if t > start["t"])])
        spans.append(Window(start["t"], heal, str(start.get("fault"))))
    return merge_windows(spans)


def _page_episode(
    client: str,
    samples: list[Record],
    episode: Window,
    until: float,
    within: float,
    required: list[str],
    tally: Counter,
    delays: list[float],
) -> list[dict[str, Any]]:
    base = {"client": client, "fault": episode.event, "fault_t": rounded(episode.start), "heal_t": rounded(episode.end)}
    if math.isinf(episode.end):
        return [{**base, "problem": "fault never healed", "t": episode.start}]
    before = [s for s in samples if s["t"] < episode.start]
    connects_before = int(before[-1].get("connects") or 0) if before else 0
    window = [s for s in samples if episode.start <= s["t"] <= episode.end + within]
    problems = []
    seen = {s.get("state") for s in window}
    for state in required:
        if state not in seen:
            problems.append({**base, "problem": f"state {state!r} never shown", "states_seen": sorted(map(str, seen)),
                             "t": episode.end})  # fmt: skip
    after = [s for s in samples if episode.end <= s["t"] < until]
    disturbed = any(s.get("state") not in BROWSER_LIVE for s in window) or any(
        int(s.get("connects") or 0) > connects_before for s in window
    )
    if not after:
        return [*problems, {**base, "problem": "no sample after the heal", "t": episode.end}]
    # An undisturbed page's feed is judged from its last sample before the heal.
    back = ([s for s in samples if s["t"] <= episode.end] or after)[-1] if not disturbed else after[0]
    if disturbed:
        tally["disturbed"] += 1
        back = _back_for_good(after, connects_before)
        if back is None:
            last = after[-1]
            problems.append({**base, "problem": "did not reconnect", "state": last.get("state"),
                             "connects": last.get("connects"), "t": last["t"]})  # fmt: skip
            return problems
        delay = max(0.0, back["t"] - episode.end)
        if delay > within:
            problems.append({**base, "problem": "reconnected late", "after_heal_s": rounded(delay), "t": back["t"]})
        else:
            tally["reconnected"] += 1
            delays.append(delay)
    last = after[-1]
    if last.get("epoch") != back.get("epoch") or (last.get("lastSeq") or 0) <= (back.get("lastSeq") or 0):
        problems.append({**base, "problem": "live feed did not resume", "back_t": back["t"],
                         "last_seq_back": back.get("lastSeq"), "last_seq_end": last.get("lastSeq"),
                         "state": last.get("state"), "connects": last.get("connects"), "t": last["t"]})  # fmt: skip
    return problems


def _back_for_good(after: list[Record], connects_before: int) -> Record | None:
    """The first sample from which every later one is live, if it counts a new connection."""
    start = None
    for i in range(len(after) - 1, -1, -1):
        if after[i].get("state") not in BROWSER_LIVE:
            break
        start = i
    if start is None or int(after[start].get("connects") or 0) <= connects_before:
        return None
    return after[start]


def _page_coverage(
    ctx: CheckContext, client: str, samples: list[Record], max_duplicates: int, tally: Counter
) -> list[dict[str, Any]]:
    finals = [r for r in ctx.history.of("browser_seqs") if r.get("client") == client]
    final = finals[-1] if finals else None
    if final is None:
        return [{"client": client, "problem": "no final seqs (browser_seqs) recorded", "t": samples[-1]["t"]}]
    seqs = [s for s in final.get("seqs") or [] if isinstance(s, int)]
    epochs = _seq_epochs(samples, len(seqs))
    problems = []
    for epoch in dict.fromkeys(epochs):
        mine = [s for s, e in zip(seqs, epochs, strict=True) if e == epoch]
        got = set(mine)
        low = min([*mine, _epoch_floor(samples, epochs, epoch)])
        missing = [s for s in range(low, max(mine) + 1) if s not in got]
        excused = _resync_excuses(samples, epoch)
        unfilled = [s for s in missing if not any(lo < s <= hi for lo, hi in excused)]
        if unfilled:
            tally["unfilled"] += len(unfilled)
            problems.append({"client": client, "problem": "unfilled gap", "epoch": epoch,
                             "first_missing_seq": unfilled[0], "missing": len(unfilled),
                             "due_from": low, "received_range": [min(mine), max(mine)], "resyncs": len(excused),
                             "t": final["t"]})  # fmt: skip
    duplicates = int(samples[-1].get("duplicates") or 0)
    if duplicates > max_duplicates:
        problems.append({"client": client, "problem": "duplicates", "duplicates": duplicates,
                         "max_duplicates": max_duplicates, "t": samples[-1]["t"]})  # fmt: skip
    return problems


def _epoch_floor(samples: list[Record], epochs: list[Any], epoch: Any) -> float:
    """The first seq the page was due in ``epoch``: its init's seq + 1, when a sample shows the page in that
    epoch before any batch of it arrived (inf when none does)."""
    first = epochs.index(epoch)
    for sample in samples:
        if sample.get("epoch") != epoch:
            continue
        seq = sample.get("lastSeq")
        if int(sample.get("received") or 0) <= first and isinstance(seq, int):
            return seq + 1
        return math.inf
    return math.inf


def _seq_epochs(samples: list[Record], count: int) -> list[Any]:
    """The epoch of each received seq: that of the first sample whose ``received`` count includes it."""
    epochs: list[Any] = []
    for sample in samples:
        upto = min(count, int(sample.get("received") or 0))
        epochs += [sample.get("epoch")] * max(0, upto - len(epochs))
    return epochs + [samples[-1].get("epoch")] * (count - len(epochs))


def _resync_excuses(samples: list[Record], epoch: Any) -> list[tuple[int, int]]:
    """(lo, hi] ranges the server told the page to skip: one per run of "resyncing" samples in ``epoch``."""
    ranges = []
    for i, sample in enumerate(samples):
        if sample.get("state") != "resyncing" or sample.get("epoch") != epoch:
            continue
        if i > 0 and samples[i - 1].get("state") == "resyncing":
            continue
        # The page drops what it was still missing, an older gap included, and reloads: nothing at or
        # below the server's seq is due any more.
        hi = sample.get("lastSeq")
        if isinstance(hi, int):
            ranges.append((-1, hi))
    return ranges
