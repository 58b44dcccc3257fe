"""A Centrifugo v6 configuration for the harness: one recoverable namespace on a loopback port.

``python -m harness.targets.centrifugo_config --port P --out FILE`` writes the JSON config; the HTTP API
key comes from the environment variable named by ``--api-key-env`` (``CENTRIFUGO_API_KEY`` by default).

Clients connect anonymously, without a token (``client.allow_anonymous_connect_without_token`` plus
``allow_subscribe_for_client`` and ``allow_subscribe_for_anonymous`` on the namespace), unless a token
secret is given: then connections need an HS256 JWT signed with it (see :func:`connection_token`) and
anonymous access is off. Channels are ``<namespace>:<name>``; the namespace keeps a history and forces
recovery, so a client that resubscribes with ``recover``, ``offset`` and ``epoch`` gets what it missed
(``recovered: true``) or is told it cannot (no ``recovered`` field).
``client.queue_max_size`` (bytes) is the slow-consumer limit: a client whose outgoing queue grows past
it is disconnected with code 3008 ("slow"). Prometheus metrics are on ``/metrics``, the health check on
``/health``, the HTTP API on ``/api`` (header ``X-API-Key``), the WebSocket on ``/connection/websocket``.
Anonymous usage statistics are off: the server sends nothing off the machine.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

NAMESPACE = "feed"
WS_PATH = "/connection/websocket"
API_PATH = "/api"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
DEFAULT_QUEUE_MAX_SIZE = 1048576  # Centrifugo's own default: 1 MiB per connection


def centrifugo_config(port: int, api_key: str, *, namespace: str = NAMESPACE, history_size: int = 1000,
                      history_ttl: str = "300s", queue_max_size: int = DEFAULT_QUEUE_MAX_SIZE,
                      ping_interval: str = "25s", pong_timeout: str = "8s", write_timeout: str = "1s",
                      token_secret: str | None = None) -> dict[str, Any]:
    """The config as a dict, with Centrifugo v6's nested option names."""
    if not api_key:
        raise ValueError("the HTTP API key must not be empty")
    anonymous = token_secret is None
    client: dict[str, Any] = {
        "allow_anonymous_connect_without_token": anonymous,
        "queue_max_size": queue_max_size,
        "ping_interval": ping_interval,
        "pong_timeout": pong_timeout,
    }
    if token_secret is not None:
        client["token"] = {"hmac_secret_key": token_secret}
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "info"},
        "client": client,
        "channel": {"namespaces": [{
            "name": namespace,
            "history_size": history_size,
            "history_ttl": history_ttl,
            "force_recovery": True,
            "allow_recovery": True,
            # Centrifugo lets an anonymous client subscribe only when both are on: the anonymous flag
            # narrows the client one, it does not stand alone.
            "allow_subscribe_for_client": True,
            "allow_subscribe_for_anonymous": anonymous,
        }]},
        "http_api": {"key": api_key},
        "websocket": {"write_timeout": write_timeout},  # a write to a client that takes longer drops it
        "prometheus": {"enabled": True},
        "health": {"enabled": True},
        "usage_stats": {"disabled": True},  # it would otherwise report to the Centrifugo developers
    }


def write_config(path: Path, port: int, api_key: str, **options: Any) -> Path:
    path.write_text(json.dumps(centrifugo_config(port, api_key, **options), indent=2) + "\n")
    return path


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def connection_token(secret: str, user: str, ttl: float = 3600.0) -> str:
    """An HS256 connection JWT for ``user`` (claims ``sub`` and ``exp``), as Centrifugo verifies it."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": user, "exp": int(time.time() + ttl)}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.targets.centrifugo_config", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the config file to write")
    parser.add_argument("--api-key-env", default="CENTRIFUGO_API_KEY",
                        help="environment variable holding the HTTP API key")
    parser.add_argument("--token-secret-env", default=None,
                        help="environment variable holding an HS256 secret; without it clients connect anonymously")
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--history-size", type=int, default=1000)
    parser.add_argument("--history-ttl", default="300s")
    parser.add_argument("--queue-max-size", type=int, default=DEFAULT_QUEUE_MAX_SIZE,
                        help="per-connection outgoing queue limit in bytes (slow consumers are disconnected)")
    parser.add_argument("--ping-interval", default="25s")
    parser.add_argument("--pong-timeout", default="8s")
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env, "")
    if not api_key:
        print(f"centrifugo_config: set {args.api_key_env} to the HTTP API key", file=sys.stderr)
        return 2
    secret = None
    if args.token_secret_env:
        secret = os.environ.get(args.token_secret_env, "")
        if not secret:
            print(f"centrifugo_config: set {args.token_secret_env} to the HS256 secret", file=sys.stderr)
            return 2
    write_config(args.out, args.port, api_key, namespace=args.namespace, history_size=args.history_size,
                 history_ttl=args.history_ttl, queue_max_size=args.queue_max_size,
                 ping_interval=args.ping_interval, pong_timeout=args.pong_timeout, token_secret=secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
