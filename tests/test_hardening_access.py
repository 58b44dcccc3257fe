"""Host, Origin and token checks, and what /healthz shows, on a real monitor process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.hostile import request
from tests.monitor_proc import monitor_process

pytestmark = pytest.mark.integration


@pytest.fixture
def node_log(tmp_path):
    log = tmp_path / "n1.log"
    log.touch()
    return log


async def status_of(port: int, path: str = "/ws", upgrade: bool = True, **headers: str) -> int:
    status, _, (_, writer) = await request(port, path, {k.replace("_", "-"): v for k, v in headers.items()}, upgrade)
    writer.close()
    return status


async def test_origin_must_match_host_unless_allowed(tmp_path, node_log):
    with monitor_process(tmp_path, {"n1": node_log}) as mon:
        here = f"127.0.0.1:{mon.port}"
        assert await status_of(mon.port, Origin="http://evil.example") == 403
        assert await status_of(mon.port, Origin="http://127.0.0.1:1") == 403  # another port
        assert await status_of(mon.port, Origin=f"http://{here}") == 101
        assert await status_of(mon.port) == 101  # no Origin: not a browser
        # Through a proxy on another loopback port the page and the socket share the proxy's origin.
        assert await status_of(mon.port, Host="127.0.0.1:9", Origin="http://127.0.0.1:9") == 101
        assert await status_of(mon.port, Host="localhost:9", Origin="http://localhost:9") == 101
    with monitor_process(tmp_path, {"n1": node_log}, "--allow-origin", "*") as mon:
        assert await status_of(mon.port, Origin="http://evil.example") == 101
    with monitor_process(tmp_path, {"n1": node_log}, "--allow-origin", "http://good.example") as mon:
        assert await status_of(mon.port, Origin="http://good.example") == 101
        assert await status_of(mon.port, Origin="http://evil.example") == 403


async def test_host_names_other_than_loopback_need_allow_host(tmp_path, node_log):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1."""
    with monitor_process(tmp_path, {"n1": node_log}) as mon:
        rebound = {"Host": f"evil.example:{mon.port}", "Origin": f"http://evil.example:{mon.port}"}
        assert await status_of(mon.port, **rebound) == 421
        assert await status_of(mon.port, "/healthz", upgrade=False, Host="evil.example") == 421
        assert await status_of(mon.port, "/healthz", upgrade=False, Host="localhost:1234") == 200
        assert await status_of(mon.port, "/healthz", upgrade=False, Host="[::1]:80") == 200
        assert await status_of(mon.port, "/healthz", upgrade=False, Host="192.0.2.7:80") == 200
    with monitor_process(tmp_path, {"n1": node_log}, "--allow-host", "monitor.lan") as mon:
        assert await status_of(mon.port, Host="monitor.lan", Origin="http://monitor.lan") == 101
        assert await status_of(mon.port, Host="evil.example") == 421


async def test_token_guards_ws_and_metrics(tmp_path, node_log):
    with monitor_process(tmp_path, {"n1": node_log}, "--token", "s3cret") as mon:
        assert await status_of(mon.port) == 401
        assert await status_of(mon.port, "/ws?token=wrong") == 401
        assert await status_of(mon.port, "/ws?token=s3cret") == 101
        assert await status_of(mon.port, Authorization="Bearer s3cret") == 101
        assert await status_of(mon.port, "/metrics", upgrade=False) == 401
        assert await status_of(mon.port, "/metrics", upgrade=False, Authorization="Bearer s3cret") == 200
        assert await status_of(mon.port, "/healthz", upgrade=False) == 200
        assert mon.loud_records() == []


def healthz(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


async def test_healthz_shows_no_paths_or_raw_errors_unless_verbose(tmp_path, node_log):
    missing = tmp_path / "secret-dir" / "n2.log"
    with monitor_process(tmp_path, {"n1": node_log, "n2": missing}) as mon:
        status, body = healthz(mon.base)
        text = json.dumps(body)
        assert status == 200 and str(tmp_path) not in text and "secret-dir" not in text
        assert body["storage"] == {"ok": True}
    with monitor_process(tmp_path, {"n1": node_log, "n2": missing}, "--verbose-health") as mon:
        _, body = healthz(mon.base)
        assert str(missing) in json.dumps(body)
