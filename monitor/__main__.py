"""``python -m monitor``: serve the dashboard for one or more storage nodes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import sqlite3
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from monitor import listener
from monitor.access import warn_if_exposed
from monitor.app import create_app
from monitor.config import Config
from monitor.demo import DEMO_NODES, write_demo_logs
from monitor.guard import install_log_filters
from monitor.ingest import NodeSource
from monitor.logsetup import setup_logging
from monitor.options import add_guard_options, guard_settings, non_negative

log = logging.getLogger("monitor")


def node_source(text: str) -> NodeSource:
    name, sep, path = text.partition(":")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME:PATH, got {text!r}")
    return NodeSource(name, Path(path))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m monitor", description=__doc__)
    p.add_argument("--node", action="append", type=node_source, default=[], metavar="NAME:PATH",
                   help="a storage node's name and the log file to tail (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=non_negative(int), default=8080, help="port to listen on; 0 picks a free one")
    p.add_argument("--db", type=Path, default=None, help="SQLite database (default monitor.db)")
    p.add_argument("--from-start", action="store_true", help="read new log files from the start, not the end")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--heartbeat", type=non_negative(float), default=10.0, help="WebSocket ping interval (s)")
    p.add_argument("--send-timeout", type=non_negative(float), default=5.0,
                   help="evict a client whose send takes longer")
    p.add_argument("--queue-size", type=non_negative(int), default=512,
                   help="messages queued per client before eviction")
    p.add_argument("--sndbuf", type=non_negative(int), default=128 * 1024,
                   help="kernel send buffer per client in bytes (0 keeps the system's); bounds memory "
                        "and how long a stuck client goes unnoticed")
    p.add_argument("--rate-limit", type=non_negative(float), default=50.0, help="requests a second a client may send")
    add_guard_options(p)
    p.add_argument("--demo", action="store_true", help="write synthetic storagenode logs and serve them")
    p.add_argument("--demo-dir", type=Path, default=None, help="where --demo writes its logs")
    p.add_argument("--demo-rate", type=non_negative(float), default=5.0, help="demo transfers a second per node")
    args = p.parse_args(argv)
    if not args.node and not args.demo:
        p.error("give at least one --node NAME:PATH, or --demo")
    return args


def build_config(args: argparse.Namespace) -> Config:
    nodes = list(args.node)
    demo_dir = None
    if args.demo:
        demo_dir = args.demo_dir or Path(tempfile.mkdtemp(prefix="monitor-demo-"))
        try:
            demo_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SystemExit(f"monitor: --demo-dir {demo_dir}: {exc.strerror or exc}") from None
        nodes += [NodeSource(name, demo_dir / f"{name}.log") for name in DEMO_NODES]
    db = args.db or (demo_dir / "monitor.db" if demo_dir else Path("monitor.db"))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise SystemExit(f"monitor: node names must be unique, got {', '.join(names)}")
    return Config(
        nodes=nodes, host=args.host, port=args.port, db=db, from_start=args.from_start or args.demo,
        heartbeat=args.heartbeat, send_timeout=args.send_timeout, queue_size=args.queue_size, sndbuf=args.sndbuf,
        rate_limit=args.rate_limit, rate_burst=max(2 * args.rate_limit, 1.0),
        demo_dir=demo_dir, demo_rate=args.demo_rate, **guard_settings(args),
    )  # fmt: skip


async def stop_runner(runner: web.AppRunner) -> None:
    """Stop listening, let connections already accepted start, then shut down gracefully.

    aiohttp's cleanup closes every connection right after it stops listening. A connection accepted
    a few loop iterations earlier whose handler task has not run yet misses that close, then ignores
    its request and holds the exit for the whole shutdown timeout. Letting the loop run briefly first
    means that connection is either answered or closed at once.
    """
    for site in list(runner.sites):
        await site.stop()
    await asyncio.sleep(0.01)
    await runner.cleanup()


async def serve(config: Config) -> None:
    # Every WebSocket client has been closed (or aborted) by then, so a handler still running after
    # a second is cancelled rather than holding the exit.
    # keepalive_timeout: an idle keep-alive connection holds a descriptor (aiohttp's default is an hour).
    runner = web.AppRunner(
        create_app(config), handle_signals=False, shutdown_timeout=1.0, access_log=None, keepalive_timeout=15.0
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(listener.AcceptErrors())
    install_log_filters()
    counts = listener.ConnectionCounts(listener.connection_cap(listener.descriptor_limit()), config.header_timeout)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo = None
    try:
        site = listener.GuardedSite(runner, config.host, config.port, counts, reuse_address=True)
        await site.start()
        port = runner.addresses[0][1]
        log.info("monitor listening on http://%s:%d (db %s)", config.host, port, config.db)
        warn_if_exposed(config)
        if config.demo_dir is not None:
            paths = {n.name: n.path for n in config.nodes if n.path.parent == config.demo_dir}
            demo = asyncio.create_task(write_demo_logs(paths, config.demo_rate))
            log.info("demo logs in %s", config.demo_dir)
        await stop.wait()
        log.info("shutting down")
    finally:
        if demo is not None:
            demo.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await demo
        await stop_runner(runner)
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    config = build_config(args)
    try:
        asyncio.run(serve(config))
    except sqlite3.Error as exc:
        print(f"monitor: cannot use the database {config.db}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"monitor: port {config.port} on {config.host} is already in use; "
                "choose another with --port (0 picks a free one)",
                file=sys.stderr,
            )
            return 2
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            print(f"monitor: cannot listen on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
            return 2
        print(
            f"monitor: cannot listen on {config.host}:{config.port} (--host/--port): {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
