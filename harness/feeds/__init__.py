"""Where the feed's events go, one module per kind of ``feed`` in the target file: ``storagenode_log``
(storagenode lines appended to node log files), ``line`` (a line template appended to a file),
``http`` (requests to the target or another loopback URL) and ``command`` (a program run per batch
with the events on its stdin). ``harness.feed.Feed`` keeps the rate and the record; a sink only
delivers."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.feeds.base import Event, FeedError, FeedRejected, FileSink, Sink
from harness.feeds.command import CommandSink
from harness.feeds.http import HttpSink
from harness.feeds.line import LineSink
from harness.feeds.storagenode import StoragenodeSink
from harness.targetspec import FeedSpec


def make_sink(spec: FeedSpec, workdir: Path, rng: random.Random, placeholders: Mapping[str, Any]) -> Sink:
    """The sink for a feed of ``spec.kind``; ``placeholders`` are the target's (host, port, workdir...)."""
    if spec.kind == "storagenode_log":
        return StoragenodeSink(spec, workdir, rng)
    if spec.kind == "line":
        return LineSink(spec, workdir)
    if spec.kind == "http":
        return HttpSink(spec, placeholders)
    if spec.kind == "command":
        return CommandSink(spec, placeholders)
    raise FeedError(f"feed.kind: unknown kind {spec.kind!r}")


__all__ = ["CommandSink", "Event", "FeedError", "FeedRejected", "FileSink", "HttpSink", "LineSink", "Sink",
           "StoragenodeSink", "make_sink"]  # fmt: skip
