"""Defences against malformed client input on an open connection: bad HTTP requests logged
quietly, unmasked WebSocket frames refused (RFC 6455 5.1), resume positions parsed strictly."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_websocket import WebSocketError

log = logging.getLogger("monitor.guard")

MAX_SEQ_DIGITS = 18  # a seq fits in 63 bits; a longer "number" is not a position we ever gave out


def parse_since(text: str) -> int | str:
    """A resume position from the URL: ASCII digits only, and not absurdly long. Anything else is
    handed on as text, which the stream answers with ``resync_required`` (``bad_since``)."""
    if text.isascii() and text.isdigit() and len(text) <= MAX_SEQ_DIGITS:
        return int(text)
    return text


class QuietBadRequests(logging.Filter):
    """aiohttp logs every malformed request (oversized headers, bad request lines) as an ERROR
    with a traceback. They are the client's fault: count them and log one DEBUG line instead."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self.count += 1
        detail = str(getattr(exc, "message", "") or exc).strip().splitlines()
        log.debug("bad request #%d answered %s: %s", self.count, exc.code, detail[0][:200] if detail else "")
        return False


QUIET_BAD_REQUESTS = QuietBadRequests()


def install_log_filters() -> None:
    server = logging.getLogger("aiohttp.server")
    if QUIET_BAD_REQUESTS not in server.filters:
        server.addFilter(QUIET_BAD_REQUESTS)


class MaskCheck:
    """Follows frame boundaries in what a client sends and stops at the first unmasked frame.

    Wraps the connection's WebSocket parser: bytes up to that frame reach it; then the reader
    gets a protocol error, and aiohttp closes the connection with 1002.
    """

    def __init__(self, parser: Any, queue: Any) -> None:
        self.parser = parser
        self.queue = queue  # the parser's output queue, where the response reads messages
        self.head = b""  # the current frame's header, while incomplete
        self.payload_left = 0
        self.failed = False

    def feed_eof(self) -> None:
        self.parser.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.failed:
            return True, b""
        bad_at = self._scan(data)
        if bad_at is None:
            return self.parser.feed_data(data)
        self.failed = True
        if bad_at > 0:
            self.parser.feed_data(data[:bad_at])
        exc = WebSocketError(WSCloseCode.PROTOCOL_ERROR, "client frames must be masked")
        self.queue.set_exception(exc)
        log.debug("client sent an unmasked frame: closing with 1002")
        return False, b""

    def _scan(self, data: bytes) -> int | None:
        """Offset in ``data`` where an unmasked frame starts, or None."""
        pos, n = 0, len(data)
        while pos < n:
            if self.payload_left:
                step = min(self.payload_left, n - pos)
                self.payload_left -= step
                pos += step
                continue
            start = pos - len(self.head)
            take = min(14 - len(self.head), n - pos)
            self.head += data[pos : pos + take]
            size = header_size(self.head)
            if size is None or len(self.head) < size:
                pos += take
                continue
            if not self.head[1] & 0x80:
                return max(start, 0)
            pos += size - (len(self.head) - take)
            self.payload_left = payload_length(self.head)
            self.head = b""
        return None


def header_size(head: bytes) -> int | None:
    if len(head) < 2:
        return None
    flag = head[1] & 0x7F
    extra = 2 if flag == 126 else 8 if flag == 127 else 0
    return 2 + extra + (4 if head[1] & 0x80 else 0)


def payload_length(head: bytes) -> int:
    flag = head[1] & 0x7F
    if flag == 126:
        return int.from_bytes(head[2:4], "big")
    if flag == 127:
        return int.from_bytes(head[2:10], "big")
    return flag


def check_masks(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Put ``MaskCheck`` in front of the connection's WebSocket parser; call before ``prepare``.

    aiohttp has no hook for this: ``prepare`` makes the parser and at once feeds it whatever the
    client sent right after its request, so the check goes in at that moment (wrapping the
    response's ``_post_start``), with those early bytes held back and then fed through it. The
    parser, its queue and the early bytes are private attributes: if a new aiohttp moves them, the
    check is skipped rather than breaking the connection.
    """
    handler = request.protocol
    post_start = getattr(ws, "_post_start", None)
    if post_start is None or not hasattr(handler, "_message_tail"):
        return

    def post_start_checked(*args: Any) -> None:
        early = handler._message_tail  # type: ignore[union-attr]
        handler._message_tail = b""  # type: ignore[union-attr]
        post_start(*args)
        parser = getattr(handler, "_payload_parser", None)
        queue = getattr(ws, "_reader", None)
        if parser is not None and queue is not None:
            parser = handler._payload_parser = MaskCheck(parser, queue)  # type: ignore[union-attr]
        if early and parser is not None:
            parser.feed_data(early)

    ws._post_start = post_start_checked  # type: ignore[method-assign]
