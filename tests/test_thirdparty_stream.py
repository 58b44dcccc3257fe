"""The views and resume_message scenarios against servers that have neither views nor resume by
message (the websockets broadcaster with and without seq, Centrifugo, Socket.IO): their checkers say
"not applicable", the other checkers judge as always, nothing fails for a feature the server lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runner import run_scenario
from harness.scenario import load
from harness.targetspec import load_target
from harness.toxiproxy import Toxiproxy
from tests.thirdparty_proc import missing_centrifugo, missing_socketio

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ROOT / "harness" / "targets"

pytestmark = pytest.mark.integration

SERVERS = [
    pytest.param(TARGETS / "ws_broadcaster.yaml", id="ws_broadcaster"),
    pytest.param(ROOT / "tests" / "data" / "ws_broadcaster_noseq.yaml", id="ws_broadcaster_noseq"),
    pytest.param(TARGETS / "centrifugo.yaml", id="centrifugo",
                 marks=pytest.mark.skipif(missing_centrifugo() is not None, reason=missing_centrifugo() or "")),
    pytest.param(TARGETS / "socketio.yaml", id="socketio",
                 marks=pytest.mark.skipif(missing_socketio() is not None, reason=missing_socketio() or "")),
]  # fmt: skip
NOT_APPLICABLE = ("unknown", "not_applicable")


@pytest.mark.parametrize("target", SERVERS)
async def test_views_and_resume_by_message_are_not_applicable_where_the_server_has_none(
    target: Path, toxiproxy: Toxiproxy, tmp_path: Path
) -> None:
    spec = load_target(target)
    for name, checker in (("views", "views"), ("resume_message", "resume")):
        result = await run_scenario(load(ROOT / "scenarios" / f"{name}.yaml"), spec, toxiproxy, tmp_path / name, 1)
        assert result.error is None, result.error
        verdicts = {v.checker: (v.status, v.unknown_reason) for v in result.verdicts}
        print({v.checker: v.summary for v in result.verdicts})  # shown when an assertion fails
        assert verdicts.pop(checker) == NOT_APPLICABLE
        assert verdicts["delivery"] == ("pass", None)
        assert all(status != "fail" for status, _ in verdicts.values()), verdicts
