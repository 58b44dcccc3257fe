"""Who may talk to the monitor: the Host it is asked for, the page a WebSocket comes from, an
optional token, and how many WebSocket clients it takes.

- Host (DNS rebinding): a page on an attacker's name that resolves to 127.0.0.1 reaches the monitor
  with that name in Host. Loopback names and IP literals (any port) are always served; other names
  only with ``--allow-host``. A missing Host (not a browser) is served.
- Origin (cross-site WebSocket): a browser sends the page's origin. Without ``--allow-origin`` an
  upgrade is accepted only from the origin the monitor is served as (Origin host:port equal to
  Host); ``--allow-origin '*'`` accepts any. No Origin header means a non-browser client: accepted.
- ``--token``: /ws and /metrics need it as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from monitor.config import Config

log = logging.getLogger("monitor.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROTECTED = ("/ws", "/metrics")
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def split_host(value: str, default_port: int = 80) -> tuple[str, int] | None:
    """``name[:port]`` or ``[v6]:port`` as (lower-case name, port); None if it does not parse."""
    try:
        parts = urlsplit(f"//{value.strip()}")
        port = parts.port if parts.port is not None else default_port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port


def is_ip_or_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host_header: str | None, config: Config) -> bool:
    if host_header is None:
        return True
    parsed = split_host(host_header)
    if parsed is None:
        return False
    name, _ = parsed
    allowed = [h.lower() for h in config.allowed_hosts]
    return is_ip_or_loopback(name) or "*" in allowed or name in allowed or name == config.host.lower()


def origin_allowed(origin: str | None, host_header: str | None, allowed: list[str]) -> bool:
    if origin is None or "*" in allowed or origin in allowed:
        return True
    if allowed and host_header is None:
        return False
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
    except ValueError:
        return False
    if not parts.hostname or host_header is None:
        return False
    here = split_host(host_header)
    return here is not None and (parts.hostname.lower(), origin_port) == here


def token_given(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def refusal(status: type[web.HTTPException], reason: str) -> web.HTTPException:
    return status(text=reason)


def make_access_middleware(config: Config, clients: Callable[[], int]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        denied = check(request, config, clients())
        if denied is not None:
            log.debug("refused %s %s from %s: %s", request.method, request.path, request.remote, denied.text)
            raise denied
        return await handler(request)

    return access


def check(request: web.Request, config: Config, clients: int) -> web.HTTPException | None:
    host = request.headers.get("Host")
    if not host_allowed(host, config):
        return refusal(web.HTTPMisdirectedRequest, "host not served here (see --allow-host)")
    if request.path not in PROTECTED:
        return None
    if config.token and not token_given(request, config.token):
        return refusal(web.HTTPUnauthorized, "a token is required")
    if request.path != "/ws":
        return None
    if not origin_allowed(request.headers.get("Origin"), host, config.allowed_origins):
        return refusal(web.HTTPForbidden, "origin not allowed")
    if clients >= config.max_clients > 0:
        return refusal(web.HTTPServiceUnavailable, "too many clients")
    return None


def warn_if_exposed(config: Config) -> None:
    if is_loopback(config.host):
        return
    log.warning(
        "listening on %s, not loopback: anyone who can reach it can watch the dashboard%s",
        config.host, "" if config.token else " (give --token to require one)",
    )  # fmt: skip


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
