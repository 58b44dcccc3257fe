"""Start Centrifugo for a target file: write its config into the workdir from the params, then exec it.

    python -m harness.targets.centrifugo_launch --port P --workdir DIR [--heartbeat S] [--pong-timeout S]
        [--send-timeout S] [--queue-max-size BYTES] [--history-size N] [--binary PATH]

The HTTP API key comes from ``WSCHAOS_CENTRIFUGO_API_KEY`` (a target file's ``generated_env`` sets it per run).
The process becomes Centrifugo itself (``exec``), so its pid is the server's and signals reach it.
The binary is ``--binary``, else ``CENTRIFUGO``, else ``.tools/bin/centrifugo``, else ``centrifugo`` on PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from harness.targets.centrifugo_config import DEFAULT_QUEUE_MAX_SIZE, write_config

API_KEY_ENV = "WSCHAOS_CENTRIFUGO_API_KEY"  # not CENTRIFUGO_*: the server warns of unknown vars of its own prefix
BUNDLED = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "centrifugo"


def seconds(value: str) -> str:
    """A duration in seconds (``1``, ``0.5``) as Centrifugo writes it (``1000ms``)."""
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: a duration must be positive")
    return f"{round(number * 1000)}ms"


def find_binary(given: str | None) -> str | None:
    for candidate in (given, os.environ.get("CENTRIFUGO"), str(BUNDLED) if BUNDLED.is_file() else None):
        if candidate:
            return candidate
    return shutil.which("centrifugo")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.targets.centrifugo_launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--heartbeat", type=seconds, default="25000ms", help="client.ping_interval, seconds")
    parser.add_argument("--pong-timeout", type=seconds, default="8000ms", help="client.pong_timeout, seconds")
    parser.add_argument("--send-timeout", type=seconds, default="1000ms", help="websocket.write_timeout, seconds")
    parser.add_argument("--queue-max-size", type=int, default=DEFAULT_QUEUE_MAX_SIZE,
                        help="client.queue_max_size, bytes: past it a client is disconnected (3008 slow)")
    parser.add_argument("--history-size", type=int, default=10000)
    parser.add_argument("--binary", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key:
        print(f"centrifugo_launch: set {API_KEY_ENV} to the HTTP API key", file=sys.stderr)
        return 2
    binary = find_binary(args.binary)
    if binary is None:
        print("centrifugo_launch: no centrifugo binary (scripts/bootstrap builds it into .tools/bin)", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(args.workdir / "centrifugo.json", args.port, api_key, history_size=args.history_size,
                          queue_max_size=args.queue_max_size, ping_interval=args.heartbeat,
                          pong_timeout=args.pong_timeout, write_timeout=args.send_timeout)  # fmt: skip
    sys.stdout.flush()
    os.execv(binary, [binary, "--config", str(config)])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
