"""The versions a report records: the target's, Toxiproxy's, the harness's, Python's and aiohttp's."""

from __future__ import annotations

import gzip
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import harness
from harness.errors import HarnessError
from harness.history import History
from harness.toxiproxy import find_server_binary

VERSION_TIMEOUT = 5.0


def versions(run_dir: Path, histories: list[History]) -> dict[str, str | None]:
    return {
        "target": target_version(histories),
        "toxiproxy": toxiproxy_version(run_dir),
        "harness": harness.__version__,
        "python": platform.python_version(),
        "aiohttp": _distribution("aiohttp"),
    }


def target_version(histories: list[History]) -> str | None:
    """The ``version`` the target reported (its /healthz answer, as the history recorded it), if any:
    a ``version`` field of a ``target`` or ``probe`` record, or inside its ``health`` or ``body``."""
    for history in histories:
        for record in history.of("target", "probe"):
            found = _version_in(record) or _version_in(record.get("health")) or _version_in(record.get("body"))
            if found:
                return found
    return None


def _version_in(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("version"), str | int | float) and value["version"] != "":
        return str(value["version"])
    return None


def toxiproxy_version(run_dir: Path) -> str | None:
    """From the first line of the run's toxiproxy.log (the server logs its version on start), else from
    ``toxiproxy-server -version``; None when neither says."""
    log = run_dir / "toxiproxy.log"
    return _version_from_log(log) or _version_from_log(log.with_name(log.name + ".gz")) or _version_from_binary()


def _version_from_log(path: Path) -> str | None:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            first = fh.readline().strip()
    except OSError:
        return None
    try:
        return _version_in(json.loads(first))
    except ValueError:
        return None


def _version_from_binary() -> str | None:
    try:
        binary = find_server_binary()
        done = subprocess.run(
            [str(binary), "-version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT, check=False
        )
    except (HarnessError, OSError, subprocess.SubprocessError):
        return None
    words = [w.lstrip("v") for w in (done.stdout or done.stderr).split()]  # "toxiproxy-server version 2.12.0"
    return next((w for w in words if w[:1].isdigit()), None)


def _distribution(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
