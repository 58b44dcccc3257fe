"""A store that cannot be written is visible (503 on /healthz, one ERROR with a count), and ingest
catches up once it can write again. Replays are limited per client address."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.error
import urllib.request

import pytest

from monitor.health import StorageHealth, storage_reason
from tests.hostile import frames, read_for, request
from tests.monitor_proc import monitor_process
from tests.test_shutdown import append_lines

pytestmark = pytest.mark.integration


def healthz(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


async def wait_for(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return result


async def test_a_locked_database_is_503_with_one_error_then_ingest_catches_up(tmp_path):
    log = tmp_path / "n1.log"
    log.touch()
    with monitor_process(tmp_path, {"n1": log}) as mon:
        blocker = sqlite3.connect(tmp_path / "monitor.db", isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")  # nobody else may write, as if the disk had gone away
            append_lines(log, 50)
            status, _, (_, writer) = await request(mon.port)  # a client still connects meanwhile
            assert status == 101
            _, body = await wait_for(lambda: (s := healthz(mon.base))[0] == 503 and s)
            assert body["status"] == "degraded" and body["storage"]["reason"] == "database is locked"
            await asyncio.sleep(6.0)  # a retry or two more: still one ERROR
            assert healthz(mon.base)[0] == 503
            writer.close()
        finally:
            blocker.close()  # ends the transaction and gives up the lock
        await wait_for(lambda: healthz(mon.base)[1]["events_persisted"] == 50)
        assert healthz(mon.base)[0] == 200
        errors = [r for r in mon.loud_records()]
        assert len(errors) == 1 and errors[0]["level"] == "ERROR" and "database is locked" in errors[0]["msg"]


def test_storage_errors_are_classified_without_paths():
    assert storage_reason(sqlite3.OperationalError("attempt to write a readonly database")) == "database is read-only"
    assert storage_reason(sqlite3.OperationalError("database or disk is full")) == "disk is full"
    assert storage_reason(sqlite3.DatabaseError("file is not a database")) == "database is corrupt"
    health = StorageHealth(every=60)
    for _ in range(5):
        health.failed(sqlite3.OperationalError("database is locked"))
    assert not health.ok and health.total_failures == 5
    health.succeeded()
    assert health.ok


async def resume_reply(port: int, epoch: str) -> dict:
    _, _, (reader, writer) = await request(port, f"/ws?epoch={epoch}&since=0")
    data, _ = await read_for(reader, 1.0)
    writer.close()
    kinds = [json.loads(p) for op, p in frames(data) if op == 0x1]
    return next(m for m in kinds if m["type"] in ("resumed", "resync_required"))


@pytest.mark.parametrize(("budget", "expected"), [("0", "resumed"), ("20000", "replay_rate_limited")])
async def test_replay_is_limited_per_address(tmp_path, budget, expected):
    log = tmp_path / "n1.log"
    log.touch()
    with monitor_process(tmp_path, {"n1": log}, "--replay-budget", budget) as mon:
        _, _, (reader, writer) = await request(mon.port)
        append_lines(log, 200)
        data = b""
        while data.count(b"log_entry_batch") < 1:
            chunk, ended = await read_for(reader, 1.0)
            data += chunk
            assert not ended
        writer.close()
        epoch = json.loads(frames(data)[0][1])["epoch"]
        await asyncio.sleep(0.3)
        replies = [await resume_reply(mon.port, epoch) for _ in range(5)]
        kinds = [r.get("reason", r["type"]) for r in replies]
        if expected == "resumed":
            assert kinds == ["resumed"] * 5
        else:
            assert "resumed" in kinds[:1] and expected in kinds, kinds
        assert mon.loud_records() == []
