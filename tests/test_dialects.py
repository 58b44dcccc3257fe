"""The protocol dialects on real frames recorded from Centrifugo and Socket.IO (tests/data/frames), and
the monitor and json dialects on hand-written ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.dialects import (
    RESUMED,
    RESYNC,
    UNPARSABLE,
    Batch,
    DialectError,
    Info,
    Notice,
    Position,
    Ready,
    Record,
    Reply,
    make_dialect,
)
from harness.targetspec import TargetError, parse_target

FRAMES = Path(__file__).resolve().parent / "data" / "frames"


def recorded(server: str, exchange: str, direction: str = "in") -> list[str]:
    data = json.loads((FRAMES / server / f"{exchange}.json").read_text())
    return [f["text"] for f in data["frames"] if f["dir"] == direction and "text" in f]


def parse_all(dialect: Any, texts: list[str]) -> list[Record]:
    return [r for text in texts for r in dialect.parse(text)]


def of(kind: type, records: list[Record]) -> list[Any]:
    return [r for r in records if type(r) is kind]


# --- centrifugo -----------------------------------------------------------------------------------


def test_centrifugo_publications_carry_offsets_and_ids_several_to_a_frame() -> None:
    records = parse_all(make_dialect("centrifugo"), recorded("centrifugo", "publications"))
    assert of(Ready, records) == [Ready("RyvuKqSg", 0)]
    assert [(b.seq, b.ids) for b in of(Batch, records)] == [(1, ["e1"]), (2, ["e2"]), (3, ["e3"])]


def test_centrifugo_event_id_is_an_option() -> None:
    records = parse_all(make_dialect({"name": "centrifugo", "event_id": "n"}), recorded("centrifugo", "publications"))
    assert [b.ids for b in of(Batch, records)] == [[1], [2], [3]]


def test_centrifugo_recover_resumes_with_the_missed_publications_or_says_resync() -> None:
    frames = recorded("centrifugo", "recover")
    dialect = make_dialect("centrifugo")
    resumed = dialect.parse(frames[4])
    assert resumed[0] == Ready("QYhBVLCq", 2)
    assert type(resumed[1]) is Notice and resumed[1].type == RESUMED
    assert [(b.seq, b.ids) for b in of(Batch, resumed)] == [(3, ["r3"]), (4, ["r4"])]
    refused = dialect.parse(frames[6])
    assert refused[0] == Ready("QYhBVLCq", 4)
    assert [n.type for n in of(Notice, refused)] == [RESYNC] and not of(Batch, refused)


def test_centrifugo_opening_connects_then_subscribes_with_recover_when_resuming() -> None:
    dialect = make_dialect({"name": "centrifugo", "channel": "feed:x", "token": "T"})
    fresh = [json.loads(t) for t in dialect.opening(None)]
    assert fresh == [{"id": 1, "connect": {"name": "wschaos", "token": "T"}},
                     {"id": 2, "subscribe": {"channel": "feed:x"}}]  # fmt: skip
    again = json.loads(dialect.opening(Position("E1", 7))[1])
    assert again == {"id": 2, "subscribe": {"channel": "feed:x", "recover": True, "epoch": "E1", "offset": 7}}
    # what the recorder sent to resume, and the ping answered as the real client did
    plain = make_dialect({"name": "centrifugo", "channel": "feed:recover"})
    sent = json.loads(recorded("centrifugo", "recover", "out")[3])
    assert json.loads(plain.opening(Position("QYhBVLCq", 2))[1]) == sent
    assert of(Reply, parse_all(dialect, recorded("centrifugo", "ping_pong"))) == [Reply("{}")] * 2
    assert recorded("centrifugo", "ping_pong", "out")[-2:] == ["{}", "{}"]
    assert dialect.heartbeat_text == "{}"


def test_centrifugo_errors_are_notices() -> None:
    records = make_dialect("centrifugo").parse('{"id":2,"error":{"code":103,"message":"permission denied"}}')
    assert [n.type for n in of(Notice, records)] == ["error"]


# --- socket.io ------------------------------------------------------------------------------------


def test_socketio_events_ready_on_namespace_connect_and_pong_on_ping() -> None:
    dialect = make_dialect("socketio")
    records = parse_all(dialect, recorded("socketio", "events"))
    assert type(records[0]) is Info and records[1] == Ready()
    assert [(b.seq, b.ids) for b in of(Batch, records)] == [(None, ["e1"]), (None, ["e2"]), (None, ["e3"])]
    pings = parse_all(dialect, recorded("socketio", "ping_pong"))
    assert of(Reply, pings) == [Reply("3")] * 2 and recorded("socketio", "ping_pong", "out")[1:] == ["3", "3"]


def test_socketio_url_opening_and_options() -> None:
    dialect = make_dialect({"name": "socketio", "event": "log", "namespace": "/live", "auth": {"k": 1},
                            "seq": "n"})  # fmt: skip
    url = dialect.connect_url("ws://127.0.0.1:9/socket.io/", Position("x", 3))
    assert url == "ws://127.0.0.1:9/socket.io/?EIO=4&transport=websocket"
    assert dialect.opening(None) == ['40/live,{"k": 1}']
    assert make_dialect("socketio").opening(None) == recorded("socketio", "events", "out")[:1] == ["40"]
    records = dialect.parse('42/live,["log",[{"id":"a","n":5},{"id":"b","n":6}]]')
    assert [(b.seq, b.ids) for b in records] == [(5, ["a"]), (6, ["b"])]
    assert dialect.parse('42/live,["other",{"id":"a"}]') == [Info("event")]
    assert dialect.parse('42["log",{"id":"a"}]') == [Info("other namespace")]
    assert [n.type for n in of(Notice, dialect.parse('44/live,{"message":"no"}'))] == ["error"]


# --- monitor --------------------------------------------------------------------------------------


def test_monitor_dialect_reads_init_batches_and_notices() -> None:
    dialect = make_dialect()
    assert dialect.parse('{"type":"init","epoch":"E","seq":4,"nodes":["a","b"]}') == [Ready("E", 4, ("a", "b"))]
    batch = dialect.parse('{"type":"log_entry_batch","seq":5,"sent_at":1.5,"events":[{"piece_id":"p1"},{"x":1}]}')
    assert batch == [Batch(5, ["p1", None], 1.5)]
    assert [n.type for n in dialect.parse('{"type":"resync_required"}')] == [RESYNC]
    assert dialect.parse('{"type":"view_changed","view":"all"}') == [Info("view_changed")]
    assert dialect.parse("{nope") == [Notice(UNPARSABLE, "{nope")]
    assert dialect.connect_url("ws://h:1/ws", Position("E", 9)) == "ws://h:1/ws?epoch=E&since=9"
    assert dialect.connect_url("ws://h:1/ws", None) == "ws://h:1/ws" and dialect.opening(None) == []
    assert dialect.quick_batch(b'{"type":"log_entry_batch","seq":12,"sent_at":3.25,"events":[]}') == (12, 3.25)


def test_monitor_dialect_follows_a_targets_messages_block() -> None:
    dialect = make_dialect(None, {"batch_type": "entries", "event_id": "id", "events": "items"})
    assert dialect.parse('{"type":"entries","seq":1,"items":[{"id":7}]}') == [Batch(1, [7], None)]
    assert dialect.batch_name == "entries"


# --- json -----------------------------------------------------------------------------------------

JSON_OPTIONS: dict[str, Any] = {
    "name": "json", "type": "kind", "event_types": ["news"], "init_types": ["hello"], "resync_types": ["reset"],
    "notice_types": ["resumed"], "events": "payload.items", "id": "/meta/id", "seq": "pos", "epoch": "gen",
    "sent_at": "ts", "subscribe": [{"op": "sub", "topic": "t"}, "hi"],
    "resume": {"message": {"op": "resume", "from": "{since}", "gen": "{epoch}", "note": "after {since}"}},
    "ping": {"match": {"kind": "ping"}, "reply": {"kind": "pong"}},
}  # fmt: skip


def test_json_dialect_reads_configured_paths_and_types() -> None:
    dialect = make_dialect(JSON_OPTIONS)
    assert not dialect.ready_on_open
    assert dialect.parse('{"kind":"hello","gen":"g1","pos":3}') == [Ready("g1", 3)]
    frame = '{"kind":"news","pos":4,"gen":"g1","ts":2.5,"payload":{"items":[{"meta":{"id":"a"}},{"meta":{"id":"b"}}]}}'
    assert dialect.parse(frame) == [Batch(4, ["a", "b"], 2.5, "g1")]
    assert dialect.parse('{"kind":"news","payload":{"items":{"meta":{"id":"solo"}}}}') == [Batch(None, ["solo"])]
    assert [n.type for n in dialect.parse('{"kind":"reset"}')] == [RESYNC]
    assert [n.type for n in dialect.parse('{"kind":"resumed"}')] == [RESUMED]
    assert dialect.parse('{"kind":"ping"}') == [Reply('{"kind":"pong"}')]
    assert dialect.parse('{"kind":"chatter"}') == [Info("chatter")]


def test_json_dialect_opening_with_placeholders_and_query_resume() -> None:
    dialect = make_dialect(JSON_OPTIONS)
    assert dialect.opening(None) == ['{"op":"sub","topic":"t"}', "hi"]
    resume = json.loads(dialect.opening(Position("g1", 8))[-1])
    assert resume == {"op": "resume", "from": 8, "gen": "g1", "note": "after 8"}
    by_query = make_dialect({"name": "json", "resume": {"query": {"epoch": "e", "since": "after"}}})
    assert by_query.connect_url("ws://h/s?x=1", Position("g", 2)) == "ws://h/s?x=1&e=g&after=2"


def test_json_dialect_without_types_every_frame_is_an_event_and_ready_on_open() -> None:
    dialect = make_dialect({"name": "json", "type": None, "seq": None, "per_event": True,
                            "ping": {"match": "PING", "reply": "PONG"}})  # fmt: skip
    assert dialect.ready_on_open and not dialect.resumes and dialect.heartbeat_text == "PONG"
    assert dialect.parse('{"id":1,"seq":9}') == [Batch(None, [1])]
    assert dialect.parse("PING") == [Reply("PONG")]


@pytest.mark.parametrize(
    "dialect, words",
    [
        ("nosuch", "unknown dialect 'nosuch'"),
        ({"name": "centrifugo", "chanel": "x"}, "unknown option(s) chanel"),
        ({"name": "json", "ping": {"match": "x"}}, "ping needs both match and reply"),
    ],
)
def test_bad_dialects_are_refused(dialect: Any, words: str) -> None:
    with pytest.raises(DialectError, match=words.replace("(", r"\(").replace(")", r"\)")):
        make_dialect(dialect)


def test_target_file_names_its_dialect() -> None:
    spec = parse_target({"name": "c", "command": ["x"], "dialect": {"name": "centrifugo", "channel": "feed:a"}}, "t")
    assert spec.make_dialect().channel == "feed:a"  # type: ignore[attr-defined]
    assert parse_target({"name": "m", "command": ["x"]}, "t").make_dialect().name == "monitor"
    with pytest.raises(TargetError, match="unknown option"):
        parse_target({"name": "c", "command": ["x"], "dialect": {"name": "socketio", "bogus": 1}}, "t")
    with pytest.raises(TargetError, match="messages: is for the monitor dialect"):
        parse_target({"name": "c", "command": ["x"], "dialect": "socketio", "messages": {"seq": "n"}}, "t")
    with pytest.raises(TargetError, match="dialect"):
        parse_target({"name": "c", "command": ["x"], "dialect": "nosuch"}, "t")


def test_dialects_never_import_aiohttp() -> None:
    code = "import sys, harness.dialects; print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert out.stdout.strip() == "[]"
