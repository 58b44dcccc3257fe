"""Real browsers as clients: headless Chromium pages that open a target's dashboard through the
cohort's Toxiproxy proxy and report what the page itself received.

A ``browser`` cohort is one Chromium process (driven by Playwright for Python) with one page per
client. Each page opens ``http://<proxy>/``, so the dashboard and its WebSocket go through the same
proxy and suffer the cohort's faults. The page keeps its own account in ``window.wschaos``
(``state``, ``epoch``, ``lastSeq``, ``seqs``, ``gaps``, ``duplicates``, ``resent``, ``connects``,
``events``, ``errors``); every ``POLL_INTERVAL`` seconds the client reads it and records:

- ``browser_state``: one sample of the page's account (see ``harness/history.py``);
- ``connect`` when the page's ``connects`` grows, ``close`` when it leaves the live states, so the
  checkers that count connections (eviction) see browsers like any other client;
- ``browser_error``: every console error, uncaught page error, crash and new entry of
  ``window.wschaos.errors``;
- ``browser_seqs`` when the client stops: every batch seq the page received, in order.

Screenshots go to ``<run>/<scenario>/screenshots/<client>-<label>.png``. Chromium is Debian's
(``/usr/bin/chromium``, or the one ``CHROMIUM`` names); Playwright never downloads a browser here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from harness.clients import Cohort, describe
from harness.errors import HarnessError
from harness.history import History

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page, Playwright

log = logging.getLogger("harness.browser")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A hidden page must keep its timers running at full speed: the reconnect backoff is a timer.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)
INSTALL_HINT = (
    "install Debian's Chromium (apt-get install chromium, or set CHROMIUM to a Chromium binary) "
    "and Playwright for Python (.venv/bin/pip install -e '.[browser]', which scripts/bootstrap does); "
    "do not run `playwright install`, which downloads a browser build of its own"
)
POLL_INTERVAL = 0.2
EVALUATE_TIMEOUT = 2.0
CLOSE_TIMEOUT = 5.0
# A shot takes 0.25-0.5 s on an idle machine and was measured at 4.3 s with 2 cores 6-fold oversubscribed;
# a shot is evidence, not a timing, so it is given time rather than lost.
SHOT_TIMEOUT = 15.0
LIVE_STATES = frozenset({"live", "resyncing"})  # the page has an open connection that got its init
VIEWPORT = {"width": 1280, "height": 800}

# Read once per poll; ``known`` is how many of the page's own errors were already recorded.
STATE_JS = """(known) => {
  const w = window.wschaos;
  if (!w) return null;
  const errors = Array.isArray(w.errors) ? w.errors : [];
  return {
    state: w.state, epoch: w.epoch, lastSeq: w.lastSeq, gaps: w.gaps, duplicates: w.duplicates,
    resent: w.resent, connects: w.connects, events: w.events, errors: errors.length,
    received: Array.isArray(w.seqs) ? w.seqs.length : 0, newErrors: errors.slice(known),
  };
}"""
SEQS_JS = "() => (window.wschaos && Array.isArray(window.wschaos.seqs)) ? window.wschaos.seqs.slice() : []"


def unavailable() -> str | None:
    """Why browser cohorts cannot run on this machine (with how to fix it), or None when they can."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package is not installed")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and shutil.which(CHROMIUM) is None:
        missing.append(f"no Chromium at {CHROMIUM}")
    if not missing:
        return None
    return f"browser cohorts need Chromium and Playwright: {'; '.join(missing)}. To fix: {INSTALL_HINT}"


class BrowserClient:
    """One dashboard page. ``connected`` is True while the page says it is live."""

    def __init__(self, name: str, cohort: str, url: str, history: History, shots: Path | None = None) -> None:
        self.name = name
        self.cohort = cohort
        self.url = url
        self.history = history
        self.shots = shots
        self.page: Page | None = None
        self.sample: dict[str, Any] | None = None
        self.live_event = asyncio.Event()
        self._connects = 0
        self._open = False
        self._known_errors = 0
        self._poll_failed = False
        self._shot_reconnecting = False
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"BrowserClient({self.name!r}, cohort={self.cohort!r}, connected={self.connected})"

    @property
    def connected(self) -> bool:
        return self.sample is not None and self.sample.get("state") in LIVE_STATES

    @property
    def last_seq(self) -> int | None:
        return None if self.sample is None else self.sample.get("lastSeq")

    # lifecycle

    async def open(self, browser: Browser) -> None:
        """Open a page on the dashboard and start polling it (the runner's ``start`` is the cohort's)."""
        page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
        self.page = page
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("crash", lambda _: self._error("crash", "the page crashed"))
        await page.goto(self.url, wait_until="domcontentloaded", timeout=10_000)
        self._task = asyncio.create_task(self._poll_loop(), name=f"browser-{self.name}")

    async def start(self) -> None:
        """Pages open with their cohort's browser (``BrowserCohort.start``)."""

    async def wait_live(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.live_event.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Take a last sample, record every seq the page received, and close the page."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        for task in list(self._side_tasks):
            task.cancel()
        if self._side_tasks:
            await asyncio.wait(self._side_tasks)
        page, self.page = self.page, None
        if page is None:
            return
        try:
            async with asyncio.timeout(EVALUATE_TIMEOUT * 2):
                await self._poll(page)
                seqs = await page.evaluate(SEQS_JS)
            self.history.record("browser_seqs", client=self.name, cohort=self.cohort, seqs=seqs)
        except Exception as exc:  # the page or the browser may already be gone
            self._error("harness", f"final read of window.wschaos failed: {describe(exc)}")
        if self._open:
            self._open = False
            self.history.record("close", client=self.name, cohort=self.cohort, code=None, by="client", reason="stop")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await page.close()

    # polling

    async def _poll_loop(self) -> None:
        assert self.page is not None
        page = self.page
        while not page.is_closed():
            await self._poll(page)
            await asyncio.sleep(POLL_INTERVAL)

    async def _poll(self, page: Page) -> None:
        try:
            async with asyncio.timeout(EVALUATE_TIMEOUT):
                state = await page.evaluate(STATE_JS, self._known_errors)
        except Exception as exc:
            if not self._poll_failed:  # once per stretch of failures
                self._error("harness", f"reading window.wschaos failed: {describe(exc)}")
            self._poll_failed = True
            return
        self._poll_failed = False
        if state is None:
            return
        self._observe(state)

    def _observe(self, state: dict[str, Any]) -> None:
        # The page keeps its last 200 errors: past that, new ones shift old ones out and go unseen here
        # (the count in ``errors`` stays right).
        for text in state.pop("newErrors", []):
            self._error("app", str(text))
        self._known_errors = max(self._known_errors, int(state.get("errors") or 0))
        connects = int(state.get("connects") or 0)
        live = state.get("state") in LIVE_STATES
        if connects > self._connects:
            if self._open:  # the previous connection ended between two samples
                self._record_close("page opened a new connection")
            self._connects = connects
            self._open = True
            self.history.record("connect", client=self.name, cohort=self.cohort, attempt=connects, since=None,
                                epoch=state.get("epoch"), seq=state.get("lastSeq"))  # fmt: skip
        elif self._open and not live and self.connected:
            self._record_close(f"page state {state.get('state')}")
        self.sample = state
        self.history.record("browser_state", client=self.name, cohort=self.cohort, **state)
        if live:
            self.live_event.set()
        if state.get("state") == "reconnecting" and not self._shot_reconnecting and self.shots is not None:
            self._shot_reconnecting = True
            self._side(self.screenshot("reconnecting"))

    def _record_close(self, reason: str) -> None:
        self._open = False
        self.history.record("close", client=self.name, cohort=self.cohort, code=None, by="error", reason=reason)

    def _side(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # errors

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location or {}
        self._error("console", message.text, url=where.get("url"), line=where.get("lineNumber"))

    def _on_page_error(self, error: Any) -> None:
        self._error("page", getattr(error, "message", None) or str(error), stack=getattr(error, "stack", None))

    def _error(self, source: str, text: str, **fields: Any) -> None:
        self.history.record("browser_error", client=self.name, cohort=self.cohort, source=source,
                            text=text[:2000], **fields)  # fmt: skip

    # observations

    async def screenshot(self, label: str) -> Path | None:
        """``<shots>/<client>-<label>.png``; None (and a log line) when the page could not be shot."""
        page = self.page
        if page is None or self.shots is None:
            return None
        path = self.shots / f"{self.name}-{label}.png"
        began = time.monotonic()
        try:
            self.shots.mkdir(parents=True, exist_ok=True)
            async with asyncio.timeout(SHOT_TIMEOUT):
                shot = await page.screenshot(timeout=SHOT_TIMEOUT * 1000)
            await asyncio.to_thread(save_palette_png, shot, path)
        except Exception as exc:
            log.warning("screenshot %s failed after %.1f s: %s", path.name, time.monotonic() - began, describe(exc))
            return None
        log.debug("screenshot %s took %.2f s", path.name, time.monotonic() - began)
        return path

    def backlog(self) -> int:
        return 0

    async def abort(self, *, resume_after: bool = False) -> None:
        raise HarnessError(
            f"{self.name}: a browser client cannot drop its connection on cue",
            hint="fault a browser cohort through its network (network_cut, slow_consumer, latency, ...) or the server",
        )

    fin = abort


class BrowserCohort(Cohort):
    """A cohort of dashboard pages in one headless Chromium. ``start`` launches the browser, opens
    every page and waits until each is live; ``stop`` closes pages, browser and Playwright, whatever
    state they are in."""

    def __init__(self, name: str, clients: list[BrowserClient]) -> None:
        super().__init__(name, [])
        self.clients = list(clients)  # type: ignore[arg-type]
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    @property
    def pages(self) -> list[BrowserClient]:
        return [c for c in self.clients if isinstance(c, BrowserClient)]

    async def start(self, timeout: float = 60.0) -> None:  # Chromium may take long to start on a busy machine
        reason = unavailable()
        if reason is not None:
            raise HarnessError(f"cohort {self.name!r}: {reason}")
        try:
            async with asyncio.timeout(timeout):
                await self._launch()
                opened = await asyncio.gather(*(c.open(self._browser) for c in self.pages),  # type: ignore[arg-type]
                                              return_exceptions=True)  # fmt: skip
                failed = next((e for e in opened if isinstance(e, BaseException)), None)
                if failed is not None:
                    raise failed
                await asyncio.gather(*(c.wait_live(timeout) for c in self.pages))
        except BaseException as exc:  # cancelled too: the browser must not outlive a failed start
            ready = sum(c.live_event.is_set() for c in self.pages)
            await self.stop()
            if isinstance(exc, HarnessError) or not isinstance(exc, Exception):
                raise
            raise HarnessError(
                f"cohort {self.name!r}: only {ready} of {len(self.pages)} dashboard pages were live within "
                f"{timeout:g} s ({describe(exc) if not isinstance(exc, TimeoutError) else 'timed out'})",
                hint="see the browser_error and browser_state records in the history; " + INSTALL_HINT,
            ) from None

    async def _launch(self) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        try:
            self._browser = await self._playwright.chromium.launch(
                executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True, timeout=60_000
            )
        except PlaywrightError as exc:
            raise HarnessError(f"cohort {self.name!r}: Chromium did not start: {exc.message[:300]}",
                               hint=INSTALL_HINT) from None  # fmt: skip

    async def stop(self) -> None:
        """Every page, then the browser, then Playwright's driver: each under a timeout, each even
        when the one before failed."""
        await asyncio.gather(*(c.stop() for c in self.pages), return_exceptions=True)
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await browser.close()
        playwright, self._playwright = self._playwright, None
        if playwright is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await playwright.stop()

    def has_shot(self, label: str) -> bool:
        return any(c.shots is not None and (c.shots / f"{c.name}-{label}.png").exists() for c in self.pages)

    async def screenshots(self, label: str) -> list[Path]:
        shots = await asyncio.gather(*(c.screenshot(label) for c in self.pages))
        return [s for s in shots if s is not None]


async def screenshots(cohorts: Iterable[Cohort], label: str, fault: str | None = None) -> list[Path]:
    """Screenshots of every page of every browser cohort, as ``<client>-<label>.png`` (the first
    fault's), then ``<client>-<label>-<fault>.png`` for later faults."""
    taken: list[Path] = []
    for cohort in cohorts:
        if isinstance(cohort, BrowserCohort):
            taken += await cohort.screenshots(f"{label}-{fault}" if fault and cohort.has_shot(label) else label)
    return taken


def build_cohort(name: str, clients: int, url: str, history: History, shots: Path | None) -> BrowserCohort:
    return BrowserCohort(name, [BrowserClient(f"{name}-{i}", name, url, history, shots) for i in range(clients)])


def save_palette_png(shot: bytes, path: Path) -> None:
    """A dashboard screenshot in 256 colours: a fifth of the size of Chromium's PNG, and as readable
    (a page of text and flat colours has far fewer colours than that)."""
    with Image.open(io.BytesIO(shot)) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)
