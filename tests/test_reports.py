"""The reports of real runs: ``wschaos run`` writes report.json (valid against its schema), junit.xml
(valid against the Jenkins JUnit XSD) and index.html, which opens in headless Chromium without errors; a run
against a broken monitor names the broken guarantee and its first evidence on the first screen; two runs
compare."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import xmlschema
import yaml

import harness
from harness.history import History
from harness.scenario import discover, load
from harness.targetspec import TARGETS_DIR
from reports.compare import compare_runs
from reports.json_report import load_schema
from reports.run import ReportError, load_run
from reports.timeline import build_timeline
from tests.mutants.matrix import mutant_target

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
XSD = Path(__file__).resolve().parent / "data" / "junit-10.xsd"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [  # --headless comes from headless=True, --user-data-dir from the persistent context
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREEN = {"width": 1400, "height": 900}
MUTANT = "error_log_on_disconnect"  # logs at ERROR when a client vanishes: mass_drop's no_error_logs catches it


def wschaos(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wschaos", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def mutant_target_file(folder: Path, name: str) -> Path:
    """A target file for the monitor with one mutant, made from mutant_target's command."""
    raw = yaml.safe_load((TARGETS_DIR / "monitor.yaml").read_text(encoding="utf-8"))
    raw["name"] = f"monitor-{name}"
    raw["command"] = mutant_target(name).command
    path = folder / f"monitor-{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def passing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    done = wschaos("run", "baseline", "mass_drop", "--seed", "1", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Reports:" in done.stdout
    return (out / "latest").resolve()


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mutant")
    target = mutant_target_file(out, MUTANT)
    done = wschaos("run", "mass_drop", "--seed", "1", "--target", str(target), "--out", str(out / "runs"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "first evidence:" in done.stdout
    return (out / "runs" / "latest").resolve()


def read_report(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "report.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# report.json


def test_every_report_is_written_at_the_end_of_a_run(passing_run: Path) -> None:
    for name in ("report.json", "index.html", "junit.xml"):
        assert (passing_run / name).stat().st_size > 0, name


@pytest.mark.parametrize("which", ["passing_run", "failing_run"])
def test_report_json_is_valid_against_its_schema(which: str, request: pytest.FixtureRequest) -> None:
    report = read_report(request.getfixturevalue(which))
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(report)
    assert report["schema"] == schema["properties"]["schema"]["const"] == "wschaos.report/2"


def test_report_json_says_how_to_reproduce_and_what_ran(passing_run: Path) -> None:
    report = read_report(passing_run)
    assert report["run"]["reproduce"] == "wschaos run baseline mass_drop --seed 1 --target harness/targets/monitor.yaml"
    assert report["run"]["passed"]
    assert report["totals"] == {"scenarios": 2, "passed": 2, "failed": 0, "errors": 0, "unknown": 0, "skipped": 0}
    versions = report["versions"]
    assert versions["harness"] == harness.__version__
    assert versions["python"].count(".") == 2 and versions["aiohttp"].startswith("3.")
    assert versions["toxiproxy"] and versions["toxiproxy"][0].isdigit()
    mass_drop = next(s for s in report["scenarios"] if s["name"] == "mass_drop")
    assert mass_drop["reproduce"].startswith("wschaos run mass_drop --seed 1 ")
    assert {"setup_s", "method_s", "drain_s", "checks_s", "total_s"} <= set(mass_drop["timings"])
    assert mass_drop["delivery"]["lost"] == 0 and mass_drop["evictions"][0]["evicted_after_s"] is not None


def test_failing_report_names_the_guarantee_and_its_first_evidence(failing_run: Path) -> None:
    report = read_report(failing_run)
    failure = next(f for f in report["failures"] if f["checker"] == "no_error_logs")
    assert failure["scenario"] == "mass_drop" and failure["guarantee"] == "Safe send"
    evidence = report["scenarios"][0]["verdicts"]
    first_line = next(v for v in evidence if v["checker"] == "no_error_logs")["evidence"][0]["line"]
    assert failure["first_evidence"].startswith("log line ") and first_line in failure["first_evidence"]
    assert MUTANT in report["run"]["reproduce"] and "--target" in report["run"]["reproduce"]


# ---------------------------------------------------------------------------------------------
# timeline


def test_timeline_follows_the_history(passing_run: Path) -> None:
    history = History.load(passing_run / "mass_drop" / "history.jsonl")
    timeline = build_timeline(history)
    duration = max(r["t"] for r in history.records)
    assert len(timeline.t) == math.ceil(duration) and timeline.bin_s == 1.0
    starts = list(history.of("fault_start"))
    assert [(s.label, s.start) for s in timeline.faults] == [(r["fault"], r["t"]) for r in starts]
    assert all(s.healed and s.end > s.start for s in timeline.faults)
    batches = sum(1 for _ in history.of("batch"))
    assert batches > 0 and set(timeline.delivered) == {"crowd", "steady"}
    assert all(lo <= hi for lo, hi in zip(timeline.latency_p50_ms, timeline.latency_p99_ms, strict=True) if lo)
    samples = [(r["t"], r["clients"]) for r in history.of("metrics") if r.get("clients") is not None]
    for i, value in enumerate(timeline.clients_server):  # the last sample in each bin that has one
        in_bin = [clients for t, clients in samples if i <= t < i + 1]
        if in_bin:
            assert value == in_bin[-1], (i, value, in_bin)
    ends = [min((i + 1) * timeline.bin_s, duration) for i in range(len(timeline.t))]
    assert timeline.clients_client == [_held_at(history, t) for t in ends]
    drop = starts[0]["t"]
    assert _held_at(history, drop - 0.01) > _held_at(history, duration - 0.1)  # the mass drop is in it
    assert timeline.locust_users is None


def _held_at(history: History, t: float) -> int:
    """Clients connected at ``t`` by their own connect and close records."""
    state: dict[str, bool] = {}
    for record in history.records:
        if record["t"] <= t and record["kind"] in ("connect", "close"):
            state[record["client"]] = record["kind"] == "connect"
    return sum(state.values())


# ---------------------------------------------------------------------------------------------
# junit.xml


@pytest.mark.parametrize("which", ["passing_run", "failing_run"])
def test_junit_xml_is_valid_against_the_junit_xsd(which: str, request: pytest.FixtureRequest) -> None:
    xmlschema.XMLSchema(XSD).validate(request.getfixturevalue(which) / "junit.xml")


def test_junit_failure_says_what_broke(failing_run: Path) -> None:
    root = ET.parse(failing_run / "junit.xml").getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == "mass_drop::no_error_logs")
    assert case.get("classname") == "wschaos.mass_drop"
    failure = case.find("failure")
    assert failure is not None and "first evidence: log line" in failure.get("message", "")
    names = [c.get("name") for c in root.iter("testcase")]
    assert "mass_drop" in names and "mass_drop::delivery" in names
    assert int(root.get("failures")) == 2  # the scenario's case and its checker's case


# ---------------------------------------------------------------------------------------------
# index.html


class _Text(HTMLParser):
    """The page's visible text up to the first scenario section: what sits above the details."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.done = False
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section" and "scenario" in (dict(attrs).get("class") or "").split():
            self.done = True
        self.skip += tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("style", "title")

    def handle_data(self, data: str) -> None:
        if not self.done and not self.skip:
            self.parts.append(data)


def top_of_page(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_index_html_is_self_contained(passing_run: Path) -> None:
    html = (passing_run / "index.html").read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html
    for reference in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import"):
        assert reference not in html
    assert html.count("<svg") >= 2  # a timeline per scenario


def test_failing_page_leads_with_the_broken_guarantee(failing_run: Path) -> None:
    report = read_report(failing_run)
    top = top_of_page((failing_run / "index.html").read_text(encoding="utf-8"))
    first = report["failures"][0]
    assert top.index("What broke") < top.index("Verdicts")
    assert "Safe send broken in mass_drop" in top and "no_error_logs" in top
    assert " ".join(first["first_evidence"].split()) in top


@contextmanager
def chromium_page() -> Iterator[tuple[Any, list[str]]]:
    """A page in Debian's headless Chromium, and the console errors, page errors and outside requests it saw."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium: apt-get install -y chromium (as scripts/bootstrap)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install -e '.[test]'")
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, viewport=SCREEN
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(r.url))
            yield page, problems
        finally:
            context.close()


def test_index_html_opens_in_chromium(passing_run: Path) -> None:
    with chromium_page() as (page, problems):
        page.goto((passing_run / "index.html").as_uri(), wait_until="load")
        text = page.inner_text("body")
        page.screenshot(path=str(passing_run / "screenshot.png"))
        page.screenshot(path=str(passing_run / "screenshot-full.png"), full_page=True)
    assert problems == []
    for scenario in ("baseline", "mass_drop"):
        assert scenario in text
    assert "Every guarantee held" in text
    assert (passing_run / "screenshot.png").stat().st_size > 10_000


def test_failing_run_shows_its_first_evidence_on_the_first_screen(failing_run: Path) -> None:
    report = read_report(failing_run)
    with chromium_page() as (page, problems):
        page.goto((failing_run / "index.html").as_uri(), wait_until="load")
        box = page.locator("#what-broke .first-evidence").first.bounding_box()
        headline = page.locator("#what-broke .failure").first.inner_text()
        page.screenshot(path=str(failing_run / "screenshot.png"))
    assert problems == []
    assert box is not None and box["y"] + box["height"] <= SCREEN["height"]
    assert "Safe send" in headline and "no_error_logs" in headline
    assert report["failures"][0]["first_evidence"][:80] in " ".join(headline.split())


# ---------------------------------------------------------------------------------------------
# wschaos report


def test_report_command_writes_the_reports_again(passing_run: Path) -> None:
    (passing_run / "index.html").unlink()
    done = wschaos("report", str(passing_run))
    assert done.returncode == 0, done.stderr
    assert (passing_run / "index.html").is_file()
    assert "2 of 2 scenario(s) held" in done.stdout and "Reproduce: wschaos run baseline mass_drop" in done.stdout


def test_compare_says_what_changed(passing_run: Path, failing_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.html"
    done = wschaos("report", "--compare", str(passing_run), str(failing_run), "--out", str(out))
    assert done.returncode == 0, done.stderr
    row = next(line.split() for line in done.stdout.splitlines() if line.split()[:2] == ["mass_drop", "no_error_logs"])
    assert row == ["mass_drop", "no_error_logs", "pass", "fail", "worse"]
    assert "latency_p99_ms" in done.stdout and "baseline" in done.stdout
    assert "no_error_logs" in out.read_text(encoding="utf-8")
    changed = {(v.scenario, v.checker): v.direction for v in compare_runs(passing_run, failing_run).changed}
    assert changed[("mass_drop", "no_error_logs")] == "worse" and changed[("mass_drop", "(scenario)")] == "worse"
    assert changed[("baseline", "delivery")] == "only in A"


def test_a_target_that_cannot_start_is_an_error_in_every_report(tmp_path: Path) -> None:
    raw = yaml.safe_load((TARGETS_DIR / "monitor.yaml").read_text(encoding="utf-8"))
    raw["name"] = "exits-at-once"
    raw["command"] = ["{python}", "-c", "print('cannot open the database'); raise SystemExit(3)"]
    target = tmp_path / "exits.yaml"
    target.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    done = wschaos("run", "baseline", "--seed", "1", "--target", str(target), "--out", str(tmp_path / "runs"))
    assert done.returncode == 1, done.stdout + done.stderr
    run_dir = (tmp_path / "runs" / "latest").resolve()
    report = read_report(run_dir)
    jsonschema.Draft202012Validator(load_schema()).validate(report)
    assert report["totals"]["errors"] == 1 and report["failures"][0]["status"] == "error"
    xmlschema.XMLSchema(XSD).validate(run_dir / "junit.xml")
    case = next(c for c in ET.parse(run_dir / "junit.xml").getroot().iter("testcase") if c.get("name") == "baseline")
    assert case.find("error") is not None and "exited with code 3" in case.find("error").get("message", "")
    top = top_of_page((run_dir / "index.html").read_text(encoding="utf-8"))
    assert "did not run to the end" in top and "cannot open the database" in top


def test_a_skipped_scenario_is_reported_with_its_reason(tmp_path: Path) -> None:
    browser = [p.stem for p in discover() if any(c.kind == "browser" for c in load(p).cohorts)]
    if not browser:
        pytest.skip("no scenario with a browser cohort to skip")
    no_chromium = {"CHROMIUM": str(tmp_path / "no-chromium")}  # browser cohorts skip without one
    done = wschaos("run", browser[0], "--seed", "1", "--out", str(tmp_path / "runs"), env=no_chromium)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = (tmp_path / "runs" / "latest").resolve()
    report = read_report(run_dir)
    jsonschema.Draft202012Validator(load_schema()).validate(report)
    scenario = report["scenarios"][0]
    assert scenario["status"] == "skipped" and "Chromium" in scenario["reason"] and report["totals"]["skipped"] == 1
    xmlschema.XMLSchema(XSD).validate(run_dir / "junit.xml")
    case = next(ET.parse(run_dir / "junit.xml").getroot().iter("testcase"))
    assert case.find("skipped") is not None and "Chromium" in case.find("skipped").get("message", "")
    top = top_of_page((run_dir / "index.html").read_text(encoding="utf-8"))
    assert "1 skipped" in top and "Nothing was judged" in top


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"summary\.json does not exist"):
        load_run(tmp_path)
