"""``wschaos analyze``: a stored run judged again from its histories alone gives the same verdicts, a
changed checker option gives the changed verdict, and a bad ``--check`` is a one-line error."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def wschaos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wschaos", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)  # fmt: skip


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    done = wschaos("run", "baseline", "--seed", "1", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return (out / "latest").resolve()


@pytest.fixture
def run_copy(stored_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(stored_run, tmp_path / "run", symlinks=True))


def statuses(summary_path: Path) -> dict[tuple[str, str], str]:
    summary = json.loads(summary_path.read_text())
    return {(s["name"], v["checker"]): v["status"] for s in summary["scenarios"] for v in s["verdicts"]}


def analyzed_dir(run: Path) -> Path:
    (out,) = run.glob("analyzed-*")
    return out


def test_a_stored_run_judged_again_gives_the_same_verdicts(run_copy: Path) -> None:
    done = wschaos("analyze", str(run_copy))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 verdict(s) changed" in done.stdout
    out = analyzed_dir(run_copy)
    assert statuses(out / "summary.json") == statuses(run_copy / "summary.json")
    assert all(s == "pass" for s in statuses(out / "summary.json").values())
    for name in ("report.json", "index.html", "junit.xml"):
        assert (out / name).is_file(), name
    assert (out / "baseline" / "history.jsonl.gz").is_symlink()  # linked, not copied


def test_a_changed_option_gives_the_changed_verdict(run_copy: Path) -> None:
    done = wschaos("analyze", str(run_copy), "--check", "delivery.latency_p99_ms=0.001")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "baseline delivery: pass -> fail" in done.stdout
    new = statuses(analyzed_dir(run_copy) / "summary.json")
    assert new[("baseline", "delivery")] == "fail"
    assert {k: v for k, v in new.items() if k[1] != "delivery"} == {
        k: v for k, v in statuses(run_copy / "summary.json").items() if k[1] != "delivery"
    }
    assert statuses(run_copy / "summary.json")[("baseline", "delivery")] == "pass", "the stored verdicts stay"


def test_an_older_run_with_a_plain_history_is_judged_from_its_scenario_file(run_copy: Path) -> None:
    """Runs written before the checks record carried the options, cohorts and faulted cohorts."""
    packed = run_copy / "baseline" / "history.jsonl.gz"
    records = [json.loads(line) for line in gzip.open(packed, "rt")]
    for record in records:
        if record["kind"] == "step" and record["name"] == "checks":
            for key in ("checks", "faulted", "cohorts"):
                del record[key]
    (run_copy / "baseline" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    packed.unlink()
    done = wschaos("analyze", str(run_copy))
    assert done.returncode == 0, done.stdout + done.stderr
    assert statuses(analyzed_dir(run_copy) / "summary.json") == statuses(run_copy / "summary.json")


@pytest.mark.parametrize(
    ("arg", "says"),
    [
        ("delivery.latency_p99_ms=quick", "option latency_p99_ms must be a number"),
        ("nosuch.bound=1", "no scenario of run has the check nosuch"),
        ("delivery", "expected CHECK.OPTION=VALUE"),
    ],
)
def test_a_bad_check_option_is_a_one_line_error(run_copy: Path, arg: str, says: str) -> None:
    done = wschaos("analyze", str(run_copy), "--check", arg)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not list(run_copy.glob("analyzed-*")), "nothing written"


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    done = wschaos("analyze", str(tmp_path))
    assert done.returncode == 2 and "summary.json: cannot read it" in done.stderr


def test_a_scenario_that_never_reached_its_checks_keeps_its_result(tmp_path: Path) -> None:
    from harness.targetspec import bundled_monitor
    from wschaos.analyze_cmd import judge

    old = {"name": "x", "status": "error", "error": "target did not start", "verdicts": []}
    assert judge(tmp_path, old, bundled_monitor(), None, []) is old
    skipped = {"name": "x", "status": "skipped", "reason": "no Chromium", "verdicts": []}
    assert judge(tmp_path, skipped, bundled_monitor(), None, []) is skipped
