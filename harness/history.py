"""One ordered record of a run: what was fed, which faults ran, what every client observed, what the
target logged and reported. Written as JSON lines while the run goes; the checkers read it back.

Every record has ``t`` (seconds since the run started, monotonic), ``w`` (wall-clock time, comparable
with a server's ``sent_at``) and ``kind``. The kinds and their fields:

- ``step``: ``name`` (steady_before, method, heal, steady_after, checks), ``detail``
- ``feed``: ``ids`` (event ids appended to the target's input), ``node``
- ``feed_rate``: ``rate`` (events a second the feed starts at), ``share_percent``, ``capacity`` and ``key``
  (when the scenario gave the rate as a share of the target's stored capacity)
- ``fault_start`` / ``fault_heal``: ``fault`` (its name in the scenario), ``type``, ``cohort``, ``params``
- ``connect``: ``client``, ``cohort``, ``attempt``, ``since`` (the seq it resumes after, None for a fresh
  start), ``view`` (when it asked for one)
- ``connect_error``: ``client``, ``cohort``, ``error``
- ``init``: ``client``, ``epoch``, ``seq``, ``view`` (when the server says which view it applied)
- ``resume_request``: ``client``, ``cohort``, ``epoch``, ``since`` (a resume message sent on an open connection)
- ``batch``: ``client``, ``seq``, ``ids``, ``sent_at`` (server wall time), ``recv_at`` (client wall time)
- ``notice``: ``client``, ``type`` (resumed, resync_required, error), ``body``
- ``close``: ``client``, ``cohort``, ``code`` (None when the connection just broke), ``by`` (server,
  client, error), ``reason``, and from raw stuck clients ``how`` (reset, fin: what the kernel saw)
- ``client_fault``: ``client``, ``action`` (rst, stop_reading, mid_frame, garbage, ...)
- ``target``: ``event`` (started, ready, killed, paused, resumed, stopped, exited), ``pid``, ``code``
- ``metrics``: ``clients`` (the server's registry size, when it exposes one), ``values``
- ``log``: ``level``, ``line``, ``lineno`` (the target's own log records)
- ``probe``: ``check`` (ws, health), ``ok``, ``latency_s``, ``error``
- ``harness_cpu``: ``percent`` (the harness process), ``backlog`` (largest client receive backlog)
- ``server_stats``: the target's own counts, read once the feed stopped (``harness/serverstats.py``):
  ``declared``, ``total``, ``nodes`` (node: count), or ``error``; ``attempts``, ``took_s``
- ``bad_input``: one client of a ``malformed_input`` fault: ``fault``, ``client``, ``sent``, ``replies``,
  ``close`` (the code if the target closed first), ``error``

Browser cohorts (``harness/browser.py``: dashboard pages in headless Chromium) record ``connect`` when
the page's ``connects`` grows (with its ``epoch`` and ``seq``: its ``lastSeq``), ``close`` when it
leaves the live states (``by`` "error", or "client" when the harness closes it), and:

- ``browser_state``: one sample of the page's ``window.wschaos`` every ~200 ms: ``client``, ``cohort``,
  ``state`` (connecting, live, reconnecting, resyncing), ``epoch``, ``lastSeq``, ``gaps``,
  ``duplicates``, ``resent``, ``connects``, ``events``, ``errors`` (how many the page logged),
  ``received`` (batches received so far: the length of its ``seqs``)
- ``browser_seqs``: ``client``, ``cohort``, ``seqs`` (every batch seq the page received, in order,
  duplicates included), once when the client stops
- ``browser_error``: ``client``, ``cohort``, ``source`` (console, page, crash, app: an entry of
  ``window.wschaos.errors``; harness: the harness could not read the page), ``text``, and for console
  errors ``url`` and ``line``
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class History:
    def __init__(self, path: Path | None = None) -> None:
        self.started = time.monotonic()
        self.records: list[dict[str, Any]] = []
        self.path = path
        self._file: IO[str] | None = path.open("w", encoding="utf-8") if path is not None else None

    def now(self) -> float:
        return time.monotonic() - self.started

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        entry = {"t": round(self.now(), 6), "w": time.time(), "kind": kind, **fields}
        self.records.append(entry)
        if self._file is not None:
            self._file.write(json.dumps(entry, default=str) + "\n")
        return entry

    def of(self, *kinds: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.records if r["kind"] in kinds)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @classmethod
    def load(cls, path: Path) -> History:
        history = cls()
        with path.open(encoding="utf-8") as fh:
            history.records = [json.loads(line) for line in fh if line.strip()]
        return history
