"""``python -m monitor --demo`` serves a dashboard that shows live events in a real browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitor_proc import MonitorProcess, free_port, wait_healthy

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def demo(tmp_path):
    port = free_port()
    log = tmp_path / "monitor.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "--demo", "--demo-dir", str(tmp_path / "demo"),
                                 "--demo-rate", "20", "--port", str(port), "--log-format", "json"],
                                stdout=err, stderr=err, cwd=Path(__file__).parent.parent)  # fmt: skip
    mon = MonitorProcess(proc, port, log)
    try:
        wait_healthy(mon)
        yield mon
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_demo_dashboard_shows_live_events(demo, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Chromium is missing: run scripts/bootstrap (apt-get install chromium) or set CHROMIUM")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is missing: run scripts/bootstrap")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(f"{demo.base}/")
            page.wait_for_function("window.wschaos && window.wschaos.state === 'live' && window.wschaos.events >= 5",
                                   timeout=15_000)  # fmt: skip
            rows = page.locator("tbody tr").count()
            state = page.evaluate("({...window.wschaos, seqs: window.wschaos.seqs.length})")
            page.screenshot(path=str(tmp_path / "dashboard.png"))
        finally:
            browser.close()
    assert rows >= 5
    assert state["gaps"] == 0 and state["duplicates"] == 0 and state["seqs"] > 0
    assert errors == []
    assert demo.loud_records() == []
