"""The CI templates in docs/ci: each is valid YAML, bootstraps with the Makefile's target, keeps the
run directory and the JUnit file the reports write, and every `wschaos` command it uses parses with
today's command line (a renamed option fails here, not in a user's pipeline)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from wschaos.cli import cli

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "docs" / "ci").glob("*.yml"))
COMMAND = re.compile(r"\.venv/bin/wschaos ([^;\n]*)")
VARIABLES = {"TARGET": "targets/my_server.yaml", "GITHUB_RUN_NUMBER": "17", "CI_PIPELINE_IID": "17"}


def shell_lines(document: object) -> list[str]:
    """Every string in the YAML document: run steps, scripts and before_scripts alike."""
    if isinstance(document, dict):
        return [line for value in document.values() for line in shell_lines(value)]
    if isinstance(document, list):
        return [line for value in document for line in shell_lines(value)]
    return [document] if isinstance(document, str) else []


def wschaos_commands(path: Path) -> list[list[str]]:
    text = "\n".join(shell_lines(yaml.safe_load(path.read_text(encoding="utf-8"))))
    found = []
    for match in COMMAND.finditer(text):
        line = re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES[m.group(1)], match.group(1))
        found.append(shlex.split(line))
    return found


def test_there_is_a_template_for_github_and_for_gitlab() -> None:
    assert [p.name for p in TEMPLATES] == ["github-actions.yml", "gitlab-ci.yml"]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_wschaos_command_in_the_template_parses(path: Path) -> None:
    commands = wschaos_commands(path)
    assert {c[0] for c in commands} >= {"run", "validate", "report"}, commands
    for args in commands:
        command = cli.commands.get(args[0])
        assert command is not None, f"{path.name}: no command `wschaos {args[0]}`"
        try:
            command.make_context(args[0], args[1:])
        except click.UsageError as exc:
            pytest.fail(f"{path.name}: `wschaos {shlex.join(args)}`: {exc.format_message()}")


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_the_template_bootstraps_caches_and_keeps_the_junit_file_and_run_directory(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = "\n".join(shell_lines(yaml.safe_load(text)))
    assert "make bootstrap" in lines and "bootstrap:" in (ROOT / "Makefile").read_text(encoding="utf-8")
    for cached in (".venv", ".tools"):
        assert cached in text, f"{path.name} does not cache {cached}"
    assert "runs/latest/junit.xml" in text and "runs/latest/" in text
    assert "--out runs" in lines  # where runs/latest comes from


def test_a_renamed_option_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("job:\n  script:\n    - .venv/bin/wschaos run --parallel 2\n", encoding="utf-8")
    (args,) = wschaos_commands(broken)
    with pytest.raises(click.UsageError, match="--parallel"):
        cli.commands[args[0]].make_context(args[0], args[1:])
