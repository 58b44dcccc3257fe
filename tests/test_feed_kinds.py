"""The feed kinds beyond storagenode log files: an integer id in another storagenode field, a line
template appended to a file, HTTP requests to a real server on the loopback (batched, headers from
the environment, refusals recorded) and a real command run per batch. Each keeps the rate, records
what it fed with its ids, and stops by itself."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from harness.feed import Feed, FeedError
from harness.history import History
from harness.target import free_port
from harness.targetspec import FeedSpec, TargetError, TargetSpec, parse_target
from monitor.logparse import parse_line


def feed_of(tmp_path: Path, rate: float = 0, max_events: int = 1_000_000, port: int = 0, **feed: Any) -> Feed:
    spec = TargetSpec(name="t", command=["true"], feed=FeedSpec(**feed))
    return Feed(spec, tmp_path, History(), rate, random.Random(1), max_events=max_events,
                placeholders={"host": "127.0.0.1", "port": port, "python": sys.executable})  # fmt: skip


async def stopped_by_itself(feed: Feed, within: float = 10.0) -> None:
    for _ in range(int(within / 0.02)):
        if not feed.running:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the feed did not stop by itself")


def recorded_ids(feed: Feed) -> list[Any]:
    return [i for r in feed.history.of("feed") for i in r["ids"]]


async def test_storagenode_id_in_size_is_a_unique_integer_the_parser_reads(tmp_path: Path) -> None:
    feed = feed_of(tmp_path, kind="storagenode_log", files={"n1": "n1.log"}, id_field="Size")
    await feed.start()
    ids = feed.write(30)
    await feed.stop()
    assert len(set(ids)) == 30 and all(isinstance(i, int) and i > 0 for i in ids)
    parsed = [parse_line(line) for line in (tmp_path / "n1.log").read_text().splitlines()]
    assert [p.fields["Size"] for p in parsed if p is not None] == ids == recorded_ids(feed)
    assert len({p.fields["Piece ID"] for p in parsed if p is not None}) == 30  # still a piece id each


async def test_storagenode_id_in_a_new_field(tmp_path: Path) -> None:
    feed = feed_of(tmp_path, kind="storagenode_log", files={"n1": "n1.log"}, id_field="Event ID")
    await feed.start()
    ids = feed.write(3)
    await feed.stop()
    parsed = [parse_line(line) for line in (tmp_path / "n1.log").read_text().splitlines()]
    assert [p.fields["Event ID"] for p in parsed if p is not None] == ids


async def test_line_template_round_robin_over_nodes_at_the_rate_and_bounded(tmp_path: Path) -> None:
    feed = feed_of(tmp_path, rate=400, max_events=60, kind="line", file="{workdir}/in/events.txt",
                   template='{"id": "{id}", "n": {n}, "node": "{node}", "t": {t}}', nodes=["a", "b"])  # fmt: skip
    loop = asyncio.get_running_loop()
    started = loop.time()
    await feed.start()
    await stopped_by_itself(feed)
    assert loop.time() - started >= 60 / 400 - 0.05  # kept the rate: no faster than 400 a second
    await feed.stop()
    lines = [json.loads(line) for line in (tmp_path / "in" / "events.txt").read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(feed.fed) == sorted(recorded_ids(feed))
    assert sorted(line["n"] for line in lines) == list(range(60)) and len(feed.fed) == 60
    assert [line["node"] for line in lines].count("a") == 30 and all(line["t"] > 1e9 for line in lines)


class Receiver:
    """A real HTTP server on the loopback that keeps what it was sent."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str], Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, dict(request.headers), await request.json()))
        return web.json_response({"ok": self.status == 200}, status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    got = Receiver()
    app = web.Application()
    app.router.add_route("*", "/publish", got.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield got, port
    finally:
        await runner.cleanup()


async def test_http_batches_with_env_headers_and_typed_body(
    receiver: tuple[Receiver, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got, port = receiver
    monkeypatch.setenv("FEED_TOKEN", "s3cret")
    feed = feed_of(tmp_path, rate=500, max_events=45, port=port, kind="http", method="PUT", path="/publish",
                   headers={"Authorization": "Bearer ${FEED_TOKEN}"}, batch=10,
                   body={"id": "{id}", "n": "{n}", "meta": {"where": "node {node}"}, "fixed": [1, True]})  # fmt: skip
    await feed.start()
    await stopped_by_itself(feed)
    await feed.stop()
    assert all(method == "PUT" and headers["Authorization"] == "Bearer s3cret" for method, headers, _ in got.requests)
    bodies = [body for _, _, body in got.requests]
    assert all(isinstance(body, list) and 1 <= len(body) <= 10 for body in bodies)
    events = [event for body in bodies for event in body]
    assert [e["n"] for e in events] == list(range(45))  # "{n}" alone stays a number
    assert [e["id"] for e in events] == feed.fed == recorded_ids(feed)
    assert events[0]["meta"] == {"where": "node n1"} and events[0]["fixed"] == [1, True]


async def test_http_batch_body_wraps_the_batch(receiver: tuple[Receiver, int], tmp_path: Path) -> None:
    """Centrifugo's /api/batch takes {"commands": [...]}: the batch goes where "{events}" stands."""
    got, port = receiver
    feed = feed_of(tmp_path, rate=500, max_events=25, port=port, kind="http", path="/publish", batch=10,
                   body={"publish": {"channel": "c", "data": {"id": "{id}"}}},
                   batch_body={"commands": "{events}", "parallel": False})  # fmt: skip
    await feed.start()
    await stopped_by_itself(feed)
    await feed.stop()
    bodies = [body for _, _, body in got.requests]
    assert all(set(body) == {"commands", "parallel"} and body["parallel"] is False for body in bodies)
    ids = [c["publish"]["data"]["id"] for body in bodies for c in body["commands"]]
    assert ids == feed.fed == recorded_ids(feed) and len(ids) == 25


async def test_http_one_event_a_request_to_a_url(receiver: tuple[Receiver, int], tmp_path: Path) -> None:
    got, port = receiver
    feed = feed_of(tmp_path, kind="http", url=f"http://127.0.0.1:{port}/publish")
    await feed.start()
    assert await feed.emit(3) == feed.fed
    await feed.stop()
    bodies = [body for _, _, body in got.requests]
    assert [{k: v for k, v in body.items() if k != "t"} for body in bodies] == [
        {"id": i, "n": n, "node": "n1"} for n, i in enumerate(feed.fed)
    ]
    assert len(feed.fed) == 3 and all(isinstance(body["t"], float) for body in bodies)


async def test_http_wrong_status_is_recorded_and_reported(receiver: tuple[Receiver, int], tmp_path: Path) -> None:
    got, port = receiver
    got.status = 503
    feed = feed_of(tmp_path, rate=200, max_events=10, port=port, kind="http", path="/publish", status=[200, 202])
    await feed.start()
    await stopped_by_itself(feed)
    with pytest.raises(FeedError, match=r"no delivery succeeded, 10 event\(s\) refused; first: POST http://127\.0\.0"
                                        r"\.1:\d+/publish: status 503, expected 200 or 202"):  # fmt: skip
        await feed.stop()
    errors = list(feed.history.of("feed_error"))
    assert sum(len(r["ids"]) for r in errors) == 10 and not feed.fed and list(feed.history.of("feed")) == []


async def test_http_refused_connections_are_recorded_and_the_feed_goes_on(
    receiver: tuple[Receiver, int], tmp_path: Path
) -> None:
    got, port = receiver
    feed = feed_of(tmp_path, port=port, kind="http", path="/publish")
    await feed.start()
    first = await feed.emit(2)
    feed.sink.url = f"http://127.0.0.1:{free_port()}/publish"  # type: ignore[union-attr]  # nobody listens
    assert await feed.emit(3) == []
    await feed.stop()  # something was delivered: refusals are reported, not raised
    assert first == feed.fed and len(got.requests) == 2 and feed.rejected == 3
    error = next(feed.history.of("feed_error"))
    assert "cannot connect" in error["error"] and len(error["ids"]) == 1


async def test_http_header_from_a_missing_variable_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match=r"feed\.headers\.X-Key: environment variable NO_SUCH_VAR_X is not set"):
        feed_of(tmp_path, kind="http", path="/p", headers={"X-Key": "${NO_SUCH_VAR_X}"})


async def test_command_gets_each_batch_on_stdin_as_json_lines(tmp_path: Path) -> None:
    sink = tmp_path / "got.jsonl"
    script = f"import sys; open({str(sink)!r}, 'a').write(sys.stdin.read())"
    feed = feed_of(tmp_path, rate=300, max_events=25, kind="command", argv=["{python}", "-c", script], batch=7,
                   nodes=["x", "y"])  # fmt: skip
    await feed.start()
    await stopped_by_itself(feed)
    await feed.stop()
    events = [json.loads(line) for line in sink.read_text().splitlines()]
    assert sorted(e["id"] for e in events) == sorted(feed.fed) == sorted(recorded_ids(feed))
    assert sorted(e["n"] for e in events) == list(range(25)) and {e["node"] for e in events} == {"x", "y"}
    assert all(len(r["ids"]) <= 7 for r in feed.history.of("feed"))


async def test_a_failing_command_is_recorded_with_its_stderr(tmp_path: Path) -> None:
    script = "import sys; sys.stdin.read(); sys.exit('no room for events')"
    feed = feed_of(tmp_path, kind="command", argv=[sys.executable, "-c", script])
    await feed.start()
    assert await feed.emit(4) == []
    with pytest.raises(FeedError, match=r"exit status 1: no room for events"):
        await feed.stop()
    assert [len(r["ids"]) for r in feed.history.of("feed_error")] == [4]


async def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    feed = feed_of(tmp_path, kind="command", argv=[sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    await feed.start()
    assert await feed.emit(1) == []
    with pytest.raises(FeedError, match=r"still running after 0\.3 s, killed"):
        await feed.stop()


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({"kind": "line", "file": "x.log"}, r"feed: 'template' is a required property"),
        ({"kind": "line", "file": "x.log", "template": "{id} {who}"}, r"feed\.template: unknown placeholder \{who\}"),
        ({"kind": "storagenode_log", "files": {"n1": "a"}, "template": "x"}, r"feed: 'template' is not one of"),
        ({"kind": "http", "path": "/p", "url": "http://127.0.0.1:1/p"}, r"feed\.path: give path .* or url"),
        ({"kind": "http", "url": "http://10.0.0.8:80/p"}, r"feed\.url: 10\.0\.0\.8 is not a loopback address"),
        ({"kind": "http", "path": "/p", "status": 99}, r"feed\.status: 99 is not valid"),
        ({"kind": "http", "path": "/p", "body": {"a": "{nope}"}}, r"feed\.body: unknown placeholder \{nope\}"),
        ({"kind": "http", "path": "/p", "batch": 5, "batch_body": {"c": "x"}}, r"feed\.batch_body: needs the string"),
        ({"kind": "http", "path": "/p", "batch_body": {"c": "{events}"}}, r"feed\.batch_body: only with batch"),
        ({"kind": "command"}, r"feed: 'argv' is a required property"),
        ({"kind": "command", "argv": ["x"], "batch": 0}, r"feed\.batch: 0 is less than the minimum of 1"),
        ({"kind": "mqtt"}, r"feed\.kind: 'mqtt' is not one of"),
    ],
)
def test_feed_schema_errors_name_the_field(feed: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_target({"name": "t", "command": ["x"], "feed": feed}, "t.yaml")
