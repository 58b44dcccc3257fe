"""Real browsers as clients: the dashboard page in headless Chromium under a network cut, a server
restart and a 1 KB/s link, through a real Toxiproxy in front of the real monitor; the dashboard that
does not reconnect (a mutant) is caught. The browser checker is also shown, on small hand-built
histories, passing what it should and failing what it should."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import web

from harness import browser
from harness.checkers import CheckContext, CohortInfo, Verdict, check_browser
from harness.errors import HarnessError
from harness.history import History
from harness.runner import ScenarioResult, run_scenario
from harness.scenario import discover, load
from harness.target import free_port
from harness.targetspec import bundled_monitor
from harness.toxiproxy import Toxiproxy
from monitor.app import STATIC
from tests.mutants.matrix import CAUGHT_BY, run_matrix

# Chromium pages are heavy: the browser tests take turns on one worker (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("browser")

MISSING = browser.unavailable()
needs_browser = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
SCENARIOS = ["browser_network_cut", "browser_server_restart", "browser_slow_consumer"]
PNG = b"\x89PNG\r\n\x1a\n"


def describe(result: ScenarioResult) -> str:
    lines = [f"{result.name}: {result.status} ({result.error or ''}) in {result.run_dir}"]
    for v in result.verdicts:
        lines.append(f"  {v.checker}: {v.status} - {v.summary}")
        lines += [f"      {e}" for e in v.evidence[:3]]
    return "\n".join(lines)


def browser_processes() -> list[str]:
    """Chromium and Playwright driver processes this test process started and that are still alive."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and any(n in child.name() for n in ("chrom", "node")):
                alive.append(f"{child.pid} {child.name()}")
        except psutil.Error:
            continue
    return alive


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.alone
@needs_browser
@pytest.mark.parametrize("name", SCENARIOS)
async def test_browser_scenario_holds_on_the_monitor(name: str, toxiproxy: Toxiproxy, tmp_path: Path) -> None:
    scenario = load(discover([name])[0])
    assert not scenario.core, "browser scenarios stay out of the core suite"
    result = await run_scenario(scenario, bundled_monitor(), toxiproxy, tmp_path / name, seed=11)
    # A slow link fills only once Toxiproxy's and the kernel's buffers do, and the kernel sizes those to
    # the traffic before the fault: on a loaded machine the burst may not fill them, and eviction then
    # says honestly that its fault did not bite. Nothing may fail, and the pages must be judged and pass.
    unbitten = {v.checker for v in result.verdicts if v.status == "unknown" and v.unknown_reason == "did_not_bite"}
    held = all(v.status == "pass" or v.checker in unbitten for v in result.verdicts)
    assert result.error is None and held and "browser" not in unbitten, describe(result)
    verdict = next(v for v in result.verdicts if v.checker == "browser")
    pages = next(c.clients for c in scenario.cohorts if c.kind == "browser")
    assert verdict.figures["pages"] == pages and verdict.figures["reconnected"] == pages, verdict.figures
    history = History.load(result.run_dir / "history.jsonl")
    states = {r["state"] for r in history.of("browser_state")}
    assert {"live", "reconnecting"} <= states
    assert len(list(history.of("browser_seqs"))) == pages
    shots = result.run_dir / "screenshots"
    for i in range(pages):
        for label in ("before", "during", "after"):
            shot = shots / f"browser-{i}-{label}.png"
            assert shot.is_file(), f"missing {shot.name}; have {sorted(p.name for p in shots.glob('*'))}"
            assert shot.read_bytes()[:8] == PNG and shot.stat().st_size > 10_000
    assert browser_processes() == [], "the browser outlived its scenario"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.mutants
@pytest.mark.alone
@needs_browser
async def test_dashboard_that_does_not_reconnect_is_caught(tmp_path: Path) -> None:
    scenario, checker = CAUGHT_BY["dashboard_no_reconnect"]
    assert scenario in SCENARIOS
    (cell,) = await run_matrix(["dashboard_no_reconnect"], tmp_path, seed=7, progress=lambda _: None)
    assert cell.status == "fail", f"the mutant survived {scenario}: {cell.evidence or cell.status}"
    assert cell.caught_by == [checker], cell.evidence
    assert "did not reconnect" in cell.evidence
    assert browser_processes() == []


@pytest.mark.integration
@needs_browser
async def test_a_cohort_whose_page_cannot_load_fails_cleanly(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cohort = browser.build_cohort("page", 2, f"http://127.0.0.1:{port}/", History(), tmp_path)
    with pytest.raises(HarnessError, match="0 of 2 dashboard pages were live"):
        await cohort.start(timeout=10)
    assert browser_processes() == []
    await cohort.stop()  # a second stop is harmless


async def test_browser_scenario_is_skipped_with_an_install_hint(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    scenario = load(discover(["browser_network_cut"])[0])
    result = await run_scenario(scenario, bundled_monitor(), None, tmp_path / "run", seed=1)  # type: ignore[arg-type]
    assert result.status == "skipped" and result.verdicts == []
    assert result.reason is not None and "apt-get install chromium" in result.reason
    assert "playwright install" in result.reason  # says not to download a browser build
    assert not (tmp_path / "run" / "history.jsonl.gz").exists()


def batch(seq: int) -> str:
    return json.dumps({"type": "log_entry_batch", "seq": seq, "sent_at": 0, "events": [{"piece_id": f"p{seq}"}]})


def init(seq: int) -> str:
    return json.dumps({"type": "init", "epoch": "E", "seq": seq, "nodes": ["n1"], "view": "all", "heartbeat": 15})


@pytest.mark.integration
@needs_browser
async def test_a_live_batch_that_overtakes_the_replay_is_not_asked_for_twice(tmp_path: Path) -> None:
    """The page's first connection gets seqs 1..5 and drops; on the second, the init says seq 10 and a
    live batch 11 comes before the answer to the page's resume. The page must ask once, take 6..10 from
    the replay, and count no duplicates."""
    resumes: list[int] = []
    connections = 0
    last_sent = asyncio.Event()

    async def ws(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        if connections == 1:
            await sock.send_str(init(0))
            for seq in range(1, 6):
                await sock.send_str(batch(seq))
            await asyncio.sleep(0.3)
            await sock.close()
            return sock
        await sock.send_str(init(10))
        await sock.send_str(batch(11))
        async for msg in sock:
            request_ = json.loads(msg.data)
            if request_.get("type") == "resume":
                resumes.append(request_["since"])
                since = request_["since"]
                await sock.send_str(json.dumps({"type": "resumed", "epoch": "E", "from_seq": since + 1, "to_seq": 10}))
                for seq in range(since + 1, 11):
                    await sock.send_str(batch(seq))
                await sock.send_str(batch(12))
                last_sent.set()
        return sock

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/ws", ws)
    app.router.add_static("/static", STATIC)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    history = History()
    try:
        port = runner.addresses[0][1]
        cohort = browser.build_cohort("page", 1, f"http://127.0.0.1:{port}/", history, tmp_path)
        try:
            await cohort.start()
            async with asyncio.timeout(10):
                await last_sent.wait()
            await asyncio.sleep(0.3)  # the page reads it; stopping takes a last sample and the seqs
        finally:
            await cohort.stop()
    finally:
        await runner.cleanup()
    final = list(history.of("browser_state"))[-1]
    (seqs,) = [r["seqs"] for r in history.of("browser_seqs")]
    assert resumes == [5], "the page asked for the same batches twice"
    assert seqs == [1, 2, 3, 4, 5, 11, 6, 7, 8, 9, 10, 12]
    assert (final["gaps"], final["duplicates"], final["resent"], final["connects"]) == (1, 0, 0, 2)
    assert not list(history.of("browser_error"))


# --- the browser checker on hand-built histories ------------------------------------------------


class Page:
    """Writes one page's samples into a History: its state, epoch, lastSeq and seqs as it goes."""

    def __init__(self, h: History, name: str = "browser-0", cohort: str = "browser") -> None:
        self.h, self.name, self.cohort = h, name, cohort
        self.seqs: list[int] = []
        self.connects, self.epoch, self.last, self.gaps, self.duplicates = 1, "E1", 0, 0, 0

    def rec(self, t: float, kind: str, **fields: Any) -> None:
        entry = self.h.record(kind, **fields)
        entry["t"] = t

    def sample(self, t: float, state: str = "live", *, got: list[int] | None = None) -> None:
        got = got or []
        self.seqs += got
        if got:
            self.last = max(self.last, *got)
        self.rec(t, "browser_state", client=self.name, cohort=self.cohort, state=state, epoch=self.epoch,
                 lastSeq=self.last, gaps=self.gaps, duplicates=self.duplicates, resent=0, connects=self.connects,
                 events=len(self.seqs), errors=0, received=len(self.seqs))  # fmt: skip

    def finish(self, t: float) -> None:
        self.rec(t, "browser_seqs", client=self.name, cohort=self.cohort, seqs=list(self.seqs))


def judged(h: History, **options: Any) -> Verdict:
    ctx = CheckContext(h, {"browser": CohortInfo("browser", 1, "browser")})
    return check_browser(ctx, {"cohort": "browser", **options})


def cut(h: History, page: Page, *, refill: bool = True, reconnect: bool = True) -> None:
    """Live 1..10, a cut at t=2 healed at t=4, the page reconnects at 4.5 (resuming 11..20 unless
    ``refill`` is False) and follows 21..30."""
    page.sample(1.0, got=list(range(1, 11)))
    page.rec(2.0, "fault_start", fault="cut", type="network_cut", cohort="browser", params={})
    page.sample(2.5)
    page.sample(3.0, "reconnecting")
    page.sample(3.5, "connecting")
    page.rec(4.0, "fault_heal", fault="cut", type="network_cut", cohort="browser")
    if reconnect:
        page.connects += 1
        page.sample(4.5, got=[21] + (list(range(11, 21)) if refill else []))
        page.gaps = 1
        page.sample(5.0, got=list(range(22, 31)))
    else:
        page.sample(4.5, "reconnecting")
        page.sample(5.0, "reconnecting")
    page.finish(5.1)


def test_a_page_that_reconnects_and_resumes_passes() -> None:
    h = History()
    cut(h, Page(h))
    verdict = judged(h)
    assert verdict.status == "pass", verdict
    assert verdict.figures["reconnected"] == 1 and verdict.figures["gaps_detected"] == 1
    assert verdict.figures["after_heal_max_s"] == 0.5


def test_a_gap_the_resume_did_not_fill_fails() -> None:
    h = History()
    cut(h, Page(h), refill=False)
    verdict = judged(h)
    assert verdict.status == "fail"
    (gap,) = [e for e in verdict.evidence if e["problem"] == "unfilled gap"]
    assert gap["first_missing_seq"] == 11 and gap["missing"] == 10


def test_a_page_that_never_comes_back_fails() -> None:
    h = History()
    cut(h, Page(h), reconnect=False)
    verdict = judged(h)
    assert verdict.status == "fail"
    assert [e["problem"] for e in verdict.evidence] == ["did not reconnect"]


def test_a_page_that_never_shows_reconnecting_fails_when_required() -> None:
    h = History()
    page = Page(h)
    page.sample(1.0, got=[1, 2])
    page.rec(2.0, "fault_start", fault="cut", type="network_cut", cohort="browser", params={})
    page.rec(3.0, "fault_heal", fault="cut", type="network_cut", cohort="browser")
    page.sample(3.5, got=[3, 4])
    page.finish(3.6)
    assert "never shown" in judged(h).evidence[0]["problem"]
    assert judged(h, require_state_seen=[]).status == "pass"


def test_seqs_the_server_said_to_skip_are_not_a_gap() -> None:
    h = History()
    page = Page(h)
    page.sample(1.0, got=list(range(1, 6)))
    page.rec(2.0, "fault_start", fault="slow", type="slow_consumer", cohort="browser", params={})
    page.sample(2.5, "reconnecting")
    page.rec(3.0, "fault_heal", fault="slow", type="slow_consumer", cohort="browser")
    page.connects += 1
    page.last = 50  # resync_required: the page jumps to the server's seq
    page.sample(3.2, "resyncing", got=[51])
    page.sample(3.6, got=[52, 53])
    page.finish(3.7)
    verdict = judged(h)
    assert verdict.status == "pass", verdict.evidence


def test_a_resync_excuses_an_older_gap_the_page_gave_up_with_it() -> None:
    """The page came back once through a link still slow and got 20 with 6..19 missing; its next return
    was told to resync to 50: it dropped 6..19 with the rest and reloaded, so they are not due."""
    h = History()
    page = Page(h)
    page.sample(1.0, got=list(range(1, 6)))
    page.rec(2.0, "fault_start", fault="slow", type="slow_consumer", cohort="browser", params={})
    page.sample(2.5, "reconnecting")
    page.connects += 1
    page.sample(2.8, got=[20])
    page.gaps = 1
    page.sample(3.0, "reconnecting")
    page.rec(3.1, "fault_heal", fault="slow", type="slow_consumer", cohort="browser")
    page.connects += 1
    page.last = 50
    page.sample(3.3, "resyncing", got=[51])
    page.sample(3.6, got=[52, 53])
    page.finish(3.7)
    verdict = judged(h)
    assert verdict.status == "pass", verdict.evidence


def restart(h: History, page: Page, first_batches: list[int]) -> None:
    """Live 1..30 in epoch E1, a kill at t=2, the target ready at t=3; the page takes epoch E2 (init
    seq 0) and then receives ``first_batches`` and 4, 5."""
    page.sample(1.0, got=list(range(1, 31)))
    page.rec(2.0, "fault_start", fault="kill", type="server_kill", cohort=None, params={})
    page.rec(2.1, "target", event="killed", pid=1, code=None)
    page.sample(2.5, "reconnecting")
    page.rec(3.0, "target", event="ready", pid=2, code=None)
    page.connects, page.epoch, page.last = 2, "E2", 0
    page.sample(3.2)
    page.sample(3.4, got=first_batches)
    page.sample(3.8, got=[4, 5])
    page.rec(6.0, "fault_heal", fault="kill", type="server_kill", cohort=None)
    page.finish(6.1)


def test_a_new_epoch_starts_the_count_again() -> None:
    h = History()
    restart(h, Page(h), [1, 2, 3])
    verdict = judged(h, reconnect_within=1.0)
    assert verdict.status == "pass", verdict.evidence  # healed when the target was ready, not at t=6


def test_batches_missing_at_the_start_of_a_new_epoch_are_a_gap() -> None:
    h = History()
    restart(h, Page(h), [3])  # due from 1 (the init's seq 0 + 1)
    (gap,) = judged(h).evidence
    assert gap["problem"] == "unfilled gap" and gap["epoch"] == "E2" and gap["first_missing_seq"] == 1


def test_script_errors_fail_and_network_noise_does_not() -> None:
    h = History()
    page = Page(h)
    cut(h, page)
    noise = "WebSocket connection to 'ws://127.0.0.1:1/ws' failed: Connection closed before receiving a handshake"
    page.rec(3.6, "browser_error", client=page.name, cohort="browser", source="console", text=noise)
    assert judged(h).status == "pass"
    page.rec(4.6, "browser_error", client=page.name, cohort="browser", source="page", text="TypeError: x is null")
    verdict = judged(h)
    assert verdict.status == "fail" and verdict.evidence[0]["problem"] == "script error"
    assert verdict.figures["errors_allowed"] == 1


def test_duplicates_beyond_the_bound_fail() -> None:
    h = History()
    page = Page(h)
    page.duplicates = 3
    cut(h, page)
    assert [e["problem"] for e in judged(h).evidence] == ["duplicates"]
    assert judged(h, max_duplicates=3).status == "pass"


def test_nothing_to_ride_out_did_not_bite() -> None:
    h = History()
    page = Page(h)
    page.sample(1.0, got=[1])
    page.finish(1.1)
    verdict = judged(h)
    assert (verdict.status, verdict.unknown_reason) == ("unknown", "did_not_bite")
    assert verdict.evidence[0]["problem"] == "no trigger" and "did not take effect" in verdict.summary
