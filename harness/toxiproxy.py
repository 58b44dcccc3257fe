"""The one adapter around Toxiproxy: find and run its server, create proxies, add and remove toxics.

The rest of the harness talks to Toxiproxy only through this module. It builds on
``toxiproxy-python`` where that library does the job, and calls the HTTP API itself (aiohttp) where
the library lacks an operation or hides the server's answer. Every call has a timeout, and every
failure becomes a ``ToxiproxyError`` that names the proxy or toxic and the HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import psutil
import requests
import toxiproxy as toxiproxy_lib
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from harness.errors import ToxiproxyError, ToxiproxyNotFound
from harness.process import Child, start_child
from harness.tasks import within

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVER_ENV = "TOXIPROXY_SERVER"
URL_ENV = "TOXIPROXY_URL"
BINARY_NAME = "toxiproxy-server"
LOOPBACK = "127.0.0.1"
DEFAULT_TIMEOUT = 10.0
# The API gives up on a request after 25 s (HTTP 503), and removing a toxic can take that long:
# removals wait a little longer, to get the server's answer rather than a timeout of our own.
REMOVE_TIMEOUT = 30.0
START_TIMEOUT = 10.0
STOP_GRACE = 3.0
PROBE_TIMEOUT = 2.0
LOG_TAIL_LINES = 15
# toxiproxy-server 2.12 does not exit when it cannot bind its API port: it logs this and waits.
SERVER_FAILED_MARK = "Server finished with error"

_REASONS = {
    400: "bad request",
    404: "not found",
    409: "already exists",
    500: "Toxiproxy server error",
    503: "Toxiproxy gave up after its 25 s limit",
}
# Measured on 2.12 (and Shopify/toxiproxy#558): removing a latency toxic while a client behind it
# does not read blocks that proxy for good. The DELETE answers 503 "Timeout" after 25 s, the toxic
# stays, and every later call that touches the proxy (disable, GET /proxies, POST /reset) hangs;
# closing the connections does not help. Deleting the proxy still works, and frees its port.
_WEDGED_HINT = (
    "a proxy may be wedged: removing a latency toxic while a client behind it is not reading "
    "blocks the proxy for good (Shopify/toxiproxy#558); delete that proxy and create it again "
    "(same listen_port), or restart toxiproxy-server"
)


# ---------------------------------------------------------------------------------------------
# Finding the server binary


def find_server_binary() -> Path:
    """The toxiproxy-server to run: $TOXIPROXY_SERVER, else one on PATH, else <repo>/.tools/bin."""
    configured = os.environ.get(SERVER_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not _is_executable(path):
            raise ToxiproxyNotFound(f"{SERVER_ENV}={configured} is not an executable file")
        return path
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        return Path(on_path)
    bundled = Path(__file__).resolve().parent.parent / ".tools" / "bin" / BINARY_NAME
    if _is_executable(bundled):
        return bundled
    raise ToxiproxyNotFound(
        f"{BINARY_NAME} not found: {SERVER_ENV} is not set, it is not on PATH and {bundled} does not exist"
    )


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


# ---------------------------------------------------------------------------------------------
# Running the server


class ToxiproxyServer:
    """A toxiproxy-server process listening on a loopback port, stopped by pid.

    If $TOXIPROXY_URL is set, that server is used instead: nothing is started or stopped.
    Use as ``async with ToxiproxyServer(run_dir) as server: ... server.url ...``.
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        port: int | None = None,
        binary: Path | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.run_dir = run_dir
        self.requested_port = port
        self.binary = binary
        self.start_timeout = start_timeout
        self.url: str | None = None
        self.version: str | None = None
        self.pid: int | None = None
        self.log_path: Path | None = None
        self.external = False
        self._process: Child | None = None
        self._log_is_temporary = False
        self._log_start = 0

    async def __aenter__(self) -> ToxiproxyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    async def start(self) -> None:
        """Start the server (or check the one at $TOXIPROXY_URL) and wait until its API answers."""
        if self.url is not None:
            return
        external = os.environ.get(URL_ENV)
        if external:
            await self._use_external(external)
            return
        binary = self.binary or find_server_binary()
        # A port we picked ourselves can be taken between picking and binding: try a few.
        attempts = 1 if self.requested_port else 3
        for attempt in range(attempts):
            try:
                await self._start_process(binary, self.requested_port or _free_loopback_port())
                return
            except _ApiPortInUse:
                if attempt == attempts - 1:
                    raise

    async def stop(self) -> None:
        """Stop the server this object started: SIGTERM, then SIGKILL after 3 s. Safe to call twice."""
        process, self._process = self._process, None
        self.url = None
        if process is not None:
            await process.stop(STOP_GRACE, kill_wait=STOP_GRACE)
            log.debug("toxiproxy-server (pid %d) exited with code %s", process.pid, process.returncode)
        if self._log_is_temporary and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self._log_is_temporary = False

    async def _use_external(self, url: str) -> None:
        url = normalize_url(url, source=URL_ENV)
        async with _probe_session() as session:
            try:
                self.version = await _fetch_version(session, url)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ToxiproxyError(
                    f"Toxiproxy at {url} (from {URL_ENV}) is not answering ({_describe(_root_cause(exc))})",
                    hint=f"start toxiproxy-server there, or unset {URL_ENV} to let the harness start one",
                ) from exc
        self.url = url
        self.external = True

    async def _start_process(self, binary: Path, port: int) -> None:
        url = f"http://{LOOPBACK}:{port}"
        self._process = self._launch(binary, port)
        self.pid = self._process.pid
        try:
            self.version = await self._wait_until_ready(url, port)
        except BaseException:
            await self.stop()
            raise
        self.url = url
        log.info("toxiproxy-server %s started on %s (pid %d)", self.version, url, self.pid)

    def _launch(self, binary: Path, port: int) -> Child:
        log_file = self._open_log()
        env = {**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "info")}
        command = [str(binary), "-host", LOOPBACK, "-port", str(port)]
        try:
            return start_child(command, name="toxiproxy-server", output=log_file, env=env,
                               die_with_parent=signal.SIGTERM)  # fmt: skip
        except OSError as exc:
            raise ToxiproxyError(f"cannot run {binary}: {exc}", hint=ToxiproxyNotFound.default_hint) from exc
        finally:
            log_file.close()

    def _open_log(self) -> IO[bytes]:
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self.run_dir / "toxiproxy.log"
            handle: IO[bytes] = self.log_path.open("ab")
        else:
            handle = tempfile.NamedTemporaryFile(prefix="toxiproxy-", suffix=".log", delete=False)
            self.log_path = Path(handle.name)
            self._log_is_temporary = True
        self._log_start = handle.tell()  # a reused run directory keeps older runs' lines
        return handle

    async def _wait_until_ready(self, url: str, port: int) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        async with _probe_session() as session:
            while True:
                self._raise_if_failed(port)
                # Check the port is ours: another server there could answer /version too.
                if self._listens_on(port):
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        return await _fetch_version(session, url)
                if loop.time() > deadline:
                    raise ToxiproxyError(
                        f"toxiproxy-server did not answer on {url} within {self.start_timeout:g} s{self._log_tail()}"
                    )
                await asyncio.sleep(0.02)

    def _raise_if_failed(self, port: int) -> None:
        assert self._process is not None
        code = self._process.returncode
        tail = self._log_tail()
        if code is None and SERVER_FAILED_MARK not in tail:
            return
        what = f"exited with code {code}" if code is not None else "failed"
        error_type = _ApiPortInUse if "address already in use" in tail else ToxiproxyError
        raise error_type(
            f"toxiproxy-server {what} while starting on {LOOPBACK}:{port}{tail}",
            hint="another process may hold that port; choose another or leave the port unset",
        )

    def _listens_on(self, port: int) -> bool:
        assert self._process is not None
        try:
            connections = psutil.Process(self._process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)

    def _log_tail(self) -> str:
        if self.log_path is None:
            return ""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._log_start)
                lines = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        tail = lines[-LOG_TAIL_LINES:]
        return f"\n--- last lines of {self.log_path} ---\n" + "\n".join(tail) if tail else ""


class _ApiPortInUse(ToxiproxyError):
    """The server could not bind its API port."""


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _probe_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT))


async def _fetch_version(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/version") as response:
        response.raise_for_status()
        text = (await response.text()).strip()
    try:  # 2.12 answers {"version": "2.12.0"}; older servers answer the bare version
        return str(json.loads(text)["version"])
    except (ValueError, KeyError, TypeError):
        return text


# ---------------------------------------------------------------------------------------------
# The API client


@dataclass(frozen=True)
class Proxy:
    """A Toxiproxy proxy: clients connect to listen_host:listen_port, it forwards to upstream."""

    name: str
    listen_host: str
    listen_port: int
    upstream: str

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    def url(self, path: str = "/", scheme: str = "http") -> str:
        """Where clients of this proxy connect: ``url("/ws")`` is ``http://127.0.0.1:PORT/ws``;
        ``url("")`` is the bare origin."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        if path and not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{host}:{self.listen_port}{path}"

    @classmethod
    def from_api(cls, name: str, listen: str, upstream: str) -> Proxy:
        host, _, port = listen.rpartition(":")
        return cls(name=name, listen_host=host.strip("[]"), listen_port=int(port), upstream=upstream)


ProxyRef = Proxy | str


class Toxiproxy:
    """Client for one Toxiproxy server. ``close()`` deletes every proxy this object created."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, remove_timeout: float = REMOVE_TIMEOUT) -> None:
        self.url = normalize_url(url)
        self.timeout = timeout
        self.remove_timeout = remove_timeout
        parts = urlsplit(self.url)
        host = parts.hostname or LOOPBACK
        self._library_address = (f"[{host}]" if ":" in host else host, parts.port or 80)
        self._session: aiohttp.ClientSession | None = None
        self._created: dict[str, None] = {}
        self.server: ToxiproxyServer | None = None  # set by running_toxiproxy

    async def __aenter__(self) -> Toxiproxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- operations ---------------------------------------------------------------------------

    async def create_proxy(self, name: str, upstream: str, listen_port: int = 0) -> Proxy:
        """Create a proxy on loopback in front of ``upstream`` ("127.0.0.1:PORT").

        ``listen_port`` 0 lets the server pick a free port; the returned Proxy says which.
        """
        # HTTP, not the library: it turns a 500 (e.g. port in use) into KeyError, losing the
        # server's message, and makes an extra GET /proxies first.
        body = {"name": name, "upstream": upstream, "listen": f"{LOOPBACK}:{listen_port}", "enabled": True}
        answer = await self._http(f"create proxy {name!r} (upstream {upstream})", "POST", "/proxies", body)
        self._created[name] = None
        return Proxy.from_api(answer["name"], answer["listen"], answer["upstream"])

    async def add_toxic(
        self,
        proxy: ProxyRef,
        name: str,
        type: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """Add a toxic. ``stream`` is downstream (server to client) or upstream (client to server)."""
        proxy_name = _proxy_name(proxy)
        action = f"add toxic {name!r} (type {type!r}, {stream}) to proxy {proxy_name!r}"
        toxic = {"name": name, "type": type, "stream": stream, "toxicity": toxicity}
        toxic["attributes"] = dict(attributes or {})
        await self._library(action, lambda: _library_proxy(proxy_name).add_toxic(**toxic), toxic=True)

    async def remove_toxic(self, proxy: ProxyRef, name: str) -> None:
        # HTTP: the library reduces the answer to a bool, so the 503 of a wedged proxy (see
        # _WEDGED_HINT) could not be told apart from any other failure.
        proxy_name = _proxy_name(proxy)
        action = f"remove toxic {name!r} from proxy {proxy_name!r}"
        path = f"/proxies/{proxy_name}/toxics/{name}"
        await self._http(action, "DELETE", path, seconds=self.remove_timeout)

    async def update_toxic(
        self, proxy: ProxyRef, name: str, attributes: dict[str, Any], toxicity: float | None = None
    ) -> None:
        """Change a toxic's attributes (those not given keep their value) and optionally its toxicity."""
        # HTTP: the library cannot update a toxic.
        proxy_name = _proxy_name(proxy)
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = f"/proxies/{proxy_name}/toxics/{name}"
        action = f"update toxic {name!r} on proxy {proxy_name!r}"
        await self._http(action, "PATCH", path, body, toxic=True)

    async def set_enabled(self, proxy: ProxyRef, enabled: bool) -> None:
        """Disabling closes every connection and refuses new ones; enabling listens again (same port)."""
        # HTTP: the library posts with a deprecated method and ignores a 500 (re-enabling fails
        # if another process took the port meanwhile).
        proxy_name = _proxy_name(proxy)
        action = f"{'enable' if enabled else 'disable'} proxy {proxy_name!r}"
        await self._http(action, "PATCH", f"/proxies/{proxy_name}", {"enabled": enabled})

    async def list_proxies(self) -> list[Proxy]:
        """Every proxy on the server. Hangs (then times out) while any proxy is wedged."""
        found = await self._library("list proxies", lambda: toxiproxy_lib.Toxiproxy().proxies())
        return [Proxy.from_api(p.name, p.listen, p.upstream) for p in found.values()]

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic (POST /reset). Proxies are not deleted."""
        # HTTP: the library reduces the answer to a bool (see remove_toxic).
        await self._http(f"reset Toxiproxy at {self.url}", "POST", "/reset", seconds=self.remove_timeout)

    async def delete_proxy(self, name: str) -> None:
        """Delete a proxy, closing its connections. Works even on a wedged proxy."""
        # HTTP: the library reduces the answer to a bool (see remove_toxic). Deleting removes the
        # proxy's toxics too, so it gets the removal timeout.
        await self._http(f"delete proxy {name!r}", "DELETE", f"/proxies/{name}", seconds=self.remove_timeout)
        self._created.pop(name, None)

    async def close(self) -> None:
        """Delete the proxies this client created (best effort) and close its HTTP session."""
        await asyncio.gather(*(self._delete_quietly(name) for name in list(self._created)))
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _delete_quietly(self, name: str) -> None:
        try:
            await self.delete_proxy(name)
        except ToxiproxyError as exc:
            log.debug("while closing: %s", exc)
            if exc.status == 404:
                self._created.pop(name, None)

    # -- direct HTTP ----------------------------------------------------------------------------

    async def _http(
        self,
        action: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        seconds: float | None = None,
        toxic: bool = False,
    ) -> Any:
        seconds = seconds or self.timeout
        try:
            async with asyncio.timeout(seconds):
                async with self._http_session().request(method, self.url + path, json=body) as response:
                    status, text = response.status, await response.text()
        except TimeoutError:
            raise self._timeout_error(action, seconds) from None
        except aiohttp.ClientConnectionError as exc:
            raise self._unreachable_error(action, exc) from exc
        except aiohttp.ClientError as exc:
            raise ToxiproxyError(f"cannot {action}: {_describe(exc)}") from exc
        if status >= 300:
            raise _api_error(action, status, _server_message(text), toxic)
        try:
            return json.loads(text) if text else None
        except ValueError as exc:
            raise ToxiproxyError(f"cannot {action}: the answer is not JSON: {text[:200]!r}") from exc

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Each call sets its own deadline (removals get longer); this only bounds connecting.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout))
        return self._session

    # -- toxiproxy-python -------------------------------------------------------------------------

    async def _library(self, action: str, call: Callable[[], T], *, toxic: bool = False) -> T:
        """Run a toxiproxy-python call off the event loop, under a timeout, with errors mapped."""
        seconds = self.timeout
        address = self._library_address
        try:
            return await within(seconds, _in_daemon_thread(lambda: _LIBRARY_GATE.run(address, call)))
        except TimeoutError:
            raise self._timeout_error(action, seconds) from None
        except (ProxyExists, NotFound, InvalidToxic) as exc:
            status = {ProxyExists: 409, NotFound: 404, InvalidToxic: 400}[type(exc)]
            raise _api_error(action, status, _library_message(exc), toxic) from exc
        except KeyError as exc:  # how the library reports a 500: it reads fields of the error body
            raise _api_error(action, 500, "(message lost by toxiproxy-python)", toxic) from exc
        except requests.ConnectionError as exc:
            raise self._unreachable_error(action, exc) from exc
        except ValueError as exc:  # e.g. the HTML page of a 503: the library hides the status
            raise ToxiproxyError(f"cannot {action}: the answer is not JSON ({exc})", _WEDGED_HINT) from exc
        except requests.RequestException as exc:
            raise ToxiproxyError(f"cannot {action}: {_describe(exc)}") from exc

    # -- errors ---------------------------------------------------------------------------------

    def _timeout_error(self, action: str, timeout: float) -> ToxiproxyError:
        return ToxiproxyError(
            f"cannot {action}: Toxiproxy at {self.url} did not answer within {timeout:g} s",
            hint=f"toxiproxy-server may be stopped or overloaded; or {_WEDGED_HINT}",
        )

    def _unreachable_error(self, action: str, exc: BaseException) -> ToxiproxyError:
        return ToxiproxyError(
            f"cannot {action}: Toxiproxy at {self.url} is not answering ({_describe(_root_cause(exc))})",
            hint=f"check that toxiproxy-server runs there (or unset {URL_ENV})",
        )


@contextlib.asynccontextmanager
async def running_toxiproxy(run_dir: Path | None = None) -> AsyncIterator[Toxiproxy]:
    """A client for a toxiproxy-server started for the block (its log in ``run_dir``), or for the one
    at $TOXIPROXY_URL. On the way out the client deletes the proxies it created, then the server it
    started is stopped. The client's ``server`` says which server it is (pid, log, version)."""
    async with ToxiproxyServer(run_dir) as server:
        assert server.url is not None
        async with Toxiproxy(server.url) as client:
            client.server = server
            yield client


def _api_error(action: str, status: int, message: str, toxic: bool = False) -> ToxiproxyError:
    reason = _REASONS.get(status, "unexpected answer")
    if status == 400 and toxic:
        reason = "bad toxic"
    hint = _WEDGED_HINT if status == 503 else None
    return ToxiproxyError(f"cannot {action}: {reason} (HTTP {status}: {message})", hint, status)


def _server_message(text: str) -> str:
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        pass
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)  # the 503 is an HTML page
    return (title.group(1) if title else text).strip() or "no message"


def _library_message(exc: BaseException) -> str:
    content = exc.args[0] if exc.args else b""
    text = content.decode(errors="replace") if isinstance(content, bytes) else str(content)
    return _server_message(text)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception (e.g. ConnectionRefusedError under the HTTP library's wrappers)."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc


def _proxy_name(proxy: ProxyRef) -> str:
    return proxy.name if isinstance(proxy, Proxy) else proxy


def _library_proxy(name: str) -> toxiproxy_lib.Proxy:
    # The library's toxic and destroy calls use only the name: building the object locally
    # saves a GET /proxies round trip.
    return toxiproxy_lib.Proxy(name=name, upstream="", enabled=True, listen="")


def normalize_url(url: str, source: str = "Toxiproxy URL") -> str:
    """``http://host:port`` without a trailing slash, or a ToxiproxyError naming ``source``."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ToxiproxyError(f"{source}={url!r} is not a URL like http://127.0.0.1:8474")
    return f"http://{parts.netloc}"


class _LibraryGate:
    """toxiproxy-python keeps the server's address in class attributes (``APIConsumer.host``).

    Calls to the same address may run together; a call to another address waits until they end.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._address: tuple[str, int] | None = None
        self._busy = 0

    def run(self, address: tuple[str, int], call: Callable[[], T]) -> T:
        with self._entered(address):
            return call()

    @contextlib.contextmanager
    def _entered(self, address: tuple[str, int]) -> Iterator[None]:
        with self._condition:
            free = self._condition.wait_for(lambda: self._busy == 0 or self._address == address, REMOVE_TIMEOUT)
            if not free:
                raise TimeoutError("toxiproxy-python is busy with another Toxiproxy server")
            APIConsumer.host, APIConsumer.port = address
            self._address = address
            self._busy += 1
        try:
            yield
        finally:
            with self._condition:
                self._busy -= 1
                self._condition.notify_all()


_LIBRARY_GATE = _LibraryGate()


async def _in_daemon_thread(call: Callable[[], T]) -> T:
    """Like ``asyncio.to_thread``, but in a daemon thread.

    toxiproxy-python has no timeouts: a call to a stuck server can block its thread for good. In
    the default executor such a thread would also block the event loop's shutdown and the exit of
    the interpreter; a daemon thread is simply left behind.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (call(), None)
        except BaseException as exc:
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=work, name="toxiproxy-python", daemon=True).start()
    return await future
