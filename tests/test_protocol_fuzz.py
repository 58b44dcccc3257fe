"""Generated bad input over the WebSocket: the monitor answers every frame, never crashes, logs no
error, and stays usable."""

from __future__ import annotations

import json
import uuid

import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.monitor_proc import monitor_process

pytestmark = pytest.mark.integration

REPLY_TYPES = {"error", "pong", "view_changed", "stats_update", "resumed", "resync_required"}
KNOWN = ["ping", "get_stats", "set_view", "resume"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {"type": st.sampled_from(KNOWN) | st.text(max_size=20)},
    optional={"view": json_values, "epoch": json_values, "since": json_values, "t": json_values},
)
frames = st.one_of(
    st.text(max_size=300),
    json_values.map(json.dumps),
    requests.map(json.dumps),
    st.binary(max_size=200),
)


def read_until_pong(ws: websocket.WebSocket, token: str) -> list[dict]:
    replies = []
    while True:
        msg = json.loads(ws.recv())
        if msg["type"] == "pong" and msg.get("t") == token:
            return replies
        if msg["type"] not in ("log_entry_batch", "connection_status"):
            replies.append(msg)


@pytest.fixture(scope="module")
def monitor(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    log = tmp / "n1.log"
    log.touch()
    with monitor_process(tmp, {"n1": log}, "--rate-limit", "100000") as mon:
        yield mon
    assert mon.loud_records() == []


@pytest.fixture(scope="module")
def conn(monitor):
    ws = websocket.create_connection(f"ws://127.0.0.1:{monitor.port}/ws", timeout=10)
    assert json.loads(ws.recv())["type"] == "init"
    yield ws
    ws.close()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames)
def test_every_frame_is_answered_and_the_server_stays_usable(conn, monitor, frame):
    if isinstance(frame, bytes):
        conn.send_binary(frame)
    else:
        conn.send(frame)
    token = uuid.uuid4().hex
    conn.send(json.dumps({"type": "ping", "t": token}))
    replies = read_until_pong(conn, token)
    assert replies, f"no answer to {frame!r}"
    assert {r["type"] for r in replies} <= REPLY_TYPES
    for r in replies:
        if r["type"] == "error":
            assert r["code"] and r["message"]
    assert monitor.proc.poll() is None
