"""The Toxiproxy adapter against a real toxiproxy-server, with real loopback sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from harness.errors import ToxiproxyError, ToxiproxyNotFound
from harness.toxiproxy import Proxy, Toxiproxy, ToxiproxyServer, find_server_binary, running_toxiproxy

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
QUIET = 0.3  # how long a read waits before we call the connection silent


# ---------------------------------------------------------------------------------------------
# Fixtures: an echo server as the upstream, a toxiproxy-server, a client and a proxy


class EchoServer:
    """A TCP server on loopback that sends back whatever it receives (or, as a firehose, sends
    data as fast as the connection takes it)."""

    def __init__(self, firehose: bool = False) -> None:
        self.port = 0
        self.firehose = firehose
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while data := b"z" * 65536 if self.firehose else await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture(autouse=True)
def _no_external_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def firehose() -> AsyncIterator[EchoServer]:
    server = EchoServer(firehose=True)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ToxiproxyServer]:
    async with ToxiproxyServer(tmp_path) as started:
        yield started


@pytest.fixture
async def toxiproxy(server: ToxiproxyServer) -> AsyncIterator[Toxiproxy]:
    assert server.url is not None
    async with Toxiproxy(server.url) as client:
        yield client


@pytest.fixture
async def proxy(toxiproxy: Toxiproxy, echo: EchoServer) -> Proxy:
    return await toxiproxy.create_proxy("echo", f"{LOOPBACK}:{echo.port}")


# ---------------------------------------------------------------------------------------------
# Helpers


class Connection:
    """A client connection through a proxy, closed by the test's ``async with``."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.proxy.listen_host, self.proxy.listen_port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.writer.close()

    async def roundtrip(self, data: bytes) -> bytes:
        self.writer.write(data)
        return await asyncio.wait_for(self.reader.readexactly(len(data)), 2)

    async def read(self, seconds: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.reader.read(65536), seconds)

    async def read_until_eof(self, seconds: float = 2.0) -> bytes:
        received = b""
        while chunk := await self.read(seconds):
            received += chunk
        return received


async def timed_transfer(proxy: Proxy, size: int) -> float:
    """Seconds to send ``size`` bytes through the proxy and get them all back."""
    async with Connection(proxy) as conn:
        started = time.monotonic()
        await conn.roundtrip(b"x" * size)
        return time.monotonic() - started


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def toxic_names(url: str, proxy: str) -> set[str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/proxies/{proxy}/toxics") as response:
        return {toxic["name"] for toxic in await response.json()}


# ---------------------------------------------------------------------------------------------
# The server's lifecycle


async def test_start_and_stop_leave_no_process(tmp_path: Path) -> None:
    server = ToxiproxyServer(tmp_path)
    await server.start()
    assert server.pid is not None and pid_exists(server.pid)
    assert server.version == "2.12.0"
    assert server.url == f"http://{LOOPBACK}:{server.url.rsplit(':', 1)[1]}"
    assert "Starting Toxiproxy" in (tmp_path / "toxiproxy.log").read_text()
    await server.stop()
    assert not pid_exists(server.pid)
    assert not server.running
    await server.stop()  # a second stop is harmless


async def test_api_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = ToxiproxyServer(port=port)
        started = time.monotonic()
        with pytest.raises(ToxiproxyError, match="address already in use") as caught:
            await server.start()
    assert time.monotonic() - started < 3
    assert f"{LOOPBACK}:{port}" in str(caught.value)
    assert caught.value.hint
    assert server.pid is not None and not pid_exists(server.pid)  # the failed server was stopped


async def test_external_server_from_env_is_used_not_started_or_stopped(
    server: ToxiproxyServer, echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.url is not None
    monkeypatch.setenv("TOXIPROXY_URL", server.url + "/")
    async with ToxiproxyServer() as external:
        assert external.external and external.pid is None
        assert external.url == server.url and external.version == "2.12.0"
        async with Toxiproxy(external.url) as client:
            await client.create_proxy("borrowed", f"{LOOPBACK}:{echo.port}")
    assert server.running  # the real server survived
    async with Toxiproxy(server.url) as client:
        assert await client.list_proxies() == []  # and the borrowed proxy was cleaned up


async def test_unreachable_toxiproxy_url_fails_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://{LOOPBACK}:{closed_port()}"
    monkeypatch.setenv("TOXIPROXY_URL", url)
    started = time.monotonic()
    with pytest.raises(ToxiproxyError, match="is not answering") as caught:
        await ToxiproxyServer().start()
    assert url in str(caught.value) and "TOXIPROXY_URL" in (caught.value.hint or "")
    async with Toxiproxy(url) as client:
        with pytest.raises(ToxiproxyError, match=f"Toxiproxy at {url} is not answering"):
            await client.list_proxies()
        with pytest.raises(ToxiproxyError, match=f"Toxiproxy at {url} is not answering"):
            await client.create_proxy("nowhere", f"{LOOPBACK}:1")
    assert time.monotonic() - started < 2


async def test_malformed_toxiproxy_url_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOXIPROXY_URL", "127.0.0.1:8474")
    with pytest.raises(ToxiproxyError, match="not a URL like http://"):
        await ToxiproxyServer().start()


def test_find_server_binary_rejects_bogus_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOXIPROXY_SERVER", str(tmp_path / "no-such-binary"))
    with pytest.raises(ToxiproxyNotFound, match="no-such-binary") as caught:
        find_server_binary()
    assert caught.value.hint == "run scripts/bootstrap (installs it with go install) or set TOXIPROXY_SERVER"
    not_executable = tmp_path / "toxiproxy-server"
    not_executable.write_text("")
    monkeypatch.setenv("TOXIPROXY_SERVER", str(not_executable))
    with pytest.raises(ToxiproxyNotFound, match="not an executable file"):
        find_server_binary()


def test_find_server_binary_falls_back_to_tools_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOXIPROXY_SERVER", raising=False)
    found = find_server_binary()
    assert found.name == "toxiproxy-server"
    assert found.stat().st_mode & stat.S_IXUSR


# ---------------------------------------------------------------------------------------------
# Proxies and toxics, observed from the client's side


async def test_proxy_passes_bytes_both_ways(proxy: Proxy, echo: EchoServer) -> None:
    assert proxy.listen_host == LOOPBACK and proxy.listen_port > 0
    assert proxy.upstream == f"{LOOPBACK}:{echo.port}"
    async with Connection(proxy) as conn:
        assert await conn.roundtrip(b"hello through toxiproxy") == b"hello through toxiproxy"


async def test_timeout_zero_cuts_silently_and_removing_it_closes(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    async with Connection(proxy) as conn:
        assert await conn.roundtrip(b"before") == b"before"
        for stream in ("upstream", "downstream"):
            await toxiproxy.add_toxic(proxy, f"cut-{stream}", "timeout", stream, attributes={"timeout": 0})
        conn.writer.write(b"during the cut")
        with pytest.raises(TimeoutError):
            await conn.read(QUIET)  # no data and no close: a silent cut
        await toxiproxy.remove_toxic(proxy, "cut-upstream")
        await toxiproxy.remove_toxic(proxy, "cut-downstream")
        assert await conn.read_until_eof() == b""  # healing the cut closes the connection


async def test_limit_data_closes_after_n_bytes(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    await toxiproxy.add_toxic(proxy, "cut-mid-frame", "limit_data", attributes={"bytes": 1000})
    async with Connection(proxy) as conn:
        conn.writer.write(b"y" * 5000)
        assert len(await conn.read_until_eof()) == 1000


async def test_reset_peer_resets_new_connections_only(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    async with Connection(proxy) as older:
        assert await older.roundtrip(b"ping") == b"ping"
        await toxiproxy.add_toxic(proxy, "rst", "reset_peer", attributes={"timeout": 0})
        async with Connection(proxy) as newer:
            newer.writer.write(b"ping")
            with pytest.raises(ConnectionResetError):
                await newer.read_until_eof()
        older.writer.write(b"ping")
        assert await older.read_until_eof() == b""  # an older connection gets a FIN, not an RST


async def test_bandwidth_slows_transfer(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    size = 16 * 1024
    unlimited = await timed_transfer(proxy, size)
    await toxiproxy.add_toxic(proxy, "slow-reader", "bandwidth", attributes={"rate": 32})  # KB/s
    limited = await timed_transfer(proxy, size)
    assert limited / unlimited > 10, f"{unlimited=:.4f}s {limited=:.4f}s"


async def test_update_toxic_changes_its_effect(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    await toxiproxy.add_toxic(proxy, "lag", "latency", attributes={"latency": 0})
    async with Connection(proxy) as conn:
        started = time.monotonic()
        await conn.roundtrip(b"fast")
        fast = time.monotonic() - started
        await toxiproxy.update_toxic(proxy, "lag", {"latency": 300})
        started = time.monotonic()
        await conn.roundtrip(b"slow")
        slow = time.monotonic() - started
    assert slow >= 0.3 > fast


async def test_disable_refuses_new_connections(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    async with Connection(proxy) as conn:
        await toxiproxy.set_enabled(proxy, False)
        assert await conn.read_until_eof() == b""  # existing connections are closed
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(proxy.listen_host, proxy.listen_port)
    await toxiproxy.set_enabled(proxy, True)  # listens again on the same port
    async with Connection(proxy) as conn:
        assert await conn.roundtrip(b"back") == b"back"


async def test_reset_enables_proxies_and_removes_toxics(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    await toxiproxy.add_toxic(proxy, "cut", "timeout", attributes={"timeout": 0})
    await toxiproxy.set_enabled(proxy, False)
    await toxiproxy.reset()
    async with Connection(proxy) as conn:
        assert await conn.roundtrip(b"healed") == b"healed"
    assert await toxiproxy.list_proxies() == [proxy]


async def test_close_deletes_only_the_proxies_this_client_created(server: ToxiproxyServer, echo: EchoServer) -> None:
    assert server.url is not None
    upstream = f"{LOOPBACK}:{echo.port}"
    async with Toxiproxy(server.url) as other:
        kept = await other.create_proxy("kept", upstream)
        client = Toxiproxy(server.url)
        await client.create_proxy("cohort-a", upstream)
        await client.create_proxy("cohort-b", upstream)
        assert {p.name for p in await other.list_proxies()} == {"kept", "cohort-a", "cohort-b"}
        await client.close()
        await client.close()  # a second close is harmless
        assert await other.list_proxies() == [kept]


async def test_clients_of_two_servers_work_concurrently(tmp_path: Path, echo: EchoServer) -> None:
    # toxiproxy-python keeps the server address in class attributes: calls must not cross over.
    upstream = f"{LOOPBACK}:{echo.port}"
    async with ToxiproxyServer(tmp_path / "one") as one, ToxiproxyServer(tmp_path / "two") as two:
        assert one.url is not None and two.url is not None
        async with Toxiproxy(one.url) as first, Toxiproxy(two.url) as second:
            await asyncio.gather(first.create_proxy("p", upstream), second.create_proxy("p", upstream))
            await asyncio.gather(
                *(first.add_toxic("p", f"one-{i}", "latency") for i in range(8)),
                *(second.add_toxic("p", f"two-{i}", "latency") for i in range(8)),
            )
            assert await toxic_names(one.url, "p") == {f"one-{i}" for i in range(8)}
            assert await toxic_names(two.url, "p") == {f"two-{i}" for i in range(8)}


# ---------------------------------------------------------------------------------------------
# Errors the API reports


async def test_bad_toxic_type_is_reported_with_the_server_message(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyError) as caught:
        await toxiproxy.add_toxic(proxy, "oops", "no_such_toxic")
    message = str(caught.value)
    assert caught.value.status == 400
    assert "bad toxic" in message and "invalid toxic type" in message
    assert "'oops'" in message and "'echo'" in message


async def test_bad_toxic_attribute_is_reported(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyError, match=r"bad toxic .*cannot unmarshal string"):
        await toxiproxy.add_toxic(proxy, "lag", "latency", attributes={"latency": "slow"})


async def test_duplicate_proxy_name_is_a_clear_error(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyError, match=r"cannot create proxy 'echo'.*already exists") as caught:
        await toxiproxy.create_proxy("echo", proxy.upstream)
    assert caught.value.status == 409


async def test_duplicate_toxic_name_is_a_clear_error(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    await toxiproxy.add_toxic(proxy, "lag", "latency")
    with pytest.raises(ToxiproxyError, match=r"toxic 'lag'.*toxic already exists"):
        await toxiproxy.add_toxic(proxy, "lag", "latency")


async def test_missing_proxy_and_toxic_are_not_found(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyError, match=r"proxy 'ghost'.*proxy not found"):
        await toxiproxy.add_toxic("ghost", "lag", "latency")
    with pytest.raises(ToxiproxyError, match=r"toxic 'ghost'.*toxic not found"):
        await toxiproxy.remove_toxic(proxy, "ghost")
    with pytest.raises(ToxiproxyError, match=r"toxic 'ghost'.*toxic not found"):
        await toxiproxy.update_toxic(proxy, "ghost", {"latency": 1})
    with pytest.raises(ToxiproxyError, match=r"disable proxy 'ghost'.*HTTP 404"):
        await toxiproxy.set_enabled("ghost", False)
    with pytest.raises(ToxiproxyError, match=r"delete proxy 'ghost'.*HTTP 404"):
        await toxiproxy.delete_proxy("ghost")


async def test_reenabling_onto_a_taken_port_reports_the_server_error(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    await toxiproxy.set_enabled(proxy, False)
    with socket.socket() as thief:
        thief.bind((proxy.listen_host, proxy.listen_port))
        thief.listen()
        with pytest.raises(ToxiproxyError, match=r"HTTP 500: .*address already in use") as caught:
            await toxiproxy.set_enabled(proxy, True)
    assert caught.value.status == 500


async def test_every_call_times_out_on_a_stuck_server(tmp_path: Path) -> None:
    server = ToxiproxyServer(tmp_path)
    await server.start()
    assert server.url is not None and server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)  # the kernel still accepts connections; nobody answers
    try:
        async with Toxiproxy(server.url, timeout=0.3, remove_timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(ToxiproxyError, match=r"list proxies: .* did not answer within 0\.3 s"):
                await client.list_proxies()  # through toxiproxy-python
            with pytest.raises(ToxiproxyError, match=r"create proxy 'p' .* did not answer within 0\.3 s"):
                await client.create_proxy("p", f"{LOOPBACK}:1")  # through the HTTP API
            with pytest.raises(ToxiproxyError, match=r"remove toxic 't' .* did not answer"):
                await client.remove_toxic("p", "t")
            assert time.monotonic() - started < 2
    finally:
        await server.stop()  # a stopped process ignores SIGTERM: this needs the SIGKILL
    assert not pid_exists(server.pid)


async def test_a_wedged_proxy_can_be_deleted_and_recreated_on_its_port(
    server: ToxiproxyServer, firehose: EchoServer, echo: EchoServer
) -> None:
    # Toxiproxy 2.12 bug (Shopify/toxiproxy#558): removing a latency toxic while the client behind
    # it does not read never completes; the server answers 503 after 25 s. A short removal
    # timeout keeps this test fast.
    assert server.url is not None
    async with Toxiproxy(server.url, remove_timeout=1) as client:
        proxy = await client.create_proxy("wedged", f"{LOOPBACK}:{firehose.port}")
        await client.add_toxic(proxy, "lag", "latency", attributes={"latency": 100})
        async with Connection(proxy):  # never reads
            await asyncio.sleep(0.5)  # socket buffers fill up
            with pytest.raises(ToxiproxyError, match=r"remove toxic 'lag'.* did not answer within 1 s") as caught:
                await client.remove_toxic(proxy, "lag")
        assert "wedged" in (caught.value.hint or "")
        await client.delete_proxy("wedged")
        again = await client.create_proxy("wedged", f"{LOOPBACK}:{echo.port}", listen_port=proxy.listen_port)
        assert again.listen_port == proxy.listen_port
        async with Connection(again) as conn:
            assert await conn.roundtrip(b"unstuck") == b"unstuck"


async def test_cancelling_stop_still_kills_the_server(tmp_path: Path) -> None:
    server = ToxiproxyServer(tmp_path)
    await server.start()
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)  # so that SIGTERM alone cannot end it
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.2)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert not pid_exists(server.pid)


# ---------------------------------------------------------------------------------------------
# running_toxiproxy and proxy addresses


async def test_running_toxiproxy_starts_a_server_and_stops_it(tmp_path: Path, echo: EchoServer) -> None:
    async with running_toxiproxy(tmp_path) as client:
        server = client.server
        assert server is not None and server.pid is not None and server.running
        assert client.url == server.url and os.getsid(server.pid) == server.pid
        proxy = await client.create_proxy("echo", f"{LOOPBACK}:{echo.port}")
        reader, writer = await asyncio.open_connection(proxy.listen_host, proxy.listen_port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()
    assert not pid_exists(server.pid) and not server.running
    assert "Starting Toxiproxy" in (tmp_path / "toxiproxy.log").read_text()


async def test_running_toxiproxy_uses_toxiproxy_url_and_cleans_up_only_its_proxies(
    server: ToxiproxyServer, echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.url is not None
    monkeypatch.setenv("TOXIPROXY_URL", server.url)
    async with running_toxiproxy() as client:
        assert client.server is not None and client.server.external and client.url == server.url
        await client.create_proxy("borrowed", f"{LOOPBACK}:{echo.port}")
    assert server.running
    async with Toxiproxy(server.url) as other:
        assert await other.list_proxies() == []


def test_proxy_url() -> None:
    proxy = Proxy("p", LOOPBACK, 4242, f"{LOOPBACK}:1")
    assert proxy.url("/ws") == "http://127.0.0.1:4242/ws"
    assert proxy.url("ws") == "http://127.0.0.1:4242/ws"
    assert proxy.url() == "http://127.0.0.1:4242/"
    assert proxy.url("") == "http://127.0.0.1:4242"
    assert proxy.url("/ws", scheme="ws") == "ws://127.0.0.1:4242/ws"
    assert Proxy.from_api("p", "[::1]:4242", "x").url("/") == "http://[::1]:4242/"
