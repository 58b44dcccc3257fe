"""What the kernel holds in a TCP connection's queues, read from ``/proc/net/tcp`` and
``/proc/net/tcp6`` (any socket of this network namespace, found by its ports) and, for the harness's
own sockets, from the socket itself (FIONREAD, SO_RCVBUF).

``tx_queue`` is what the sender wrote and the peer has not yet acknowledged: on loopback, the bytes
held back because the peer's receive window is closed. ``rx_queue`` is what arrived and the owner has
not read."""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.wsframes import unread_bytes

PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
ESTABLISHED = 1
# The kernel's TCP states by number (include/net/tcp_states.h), as /proc/net/tcp prints them.
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}  # fmt: skip


@dataclass(frozen=True)
class TcpSocket:
    local: tuple[str, int]
    remote: tuple[str, int]
    state: int
    tx_queue: int
    rx_queue: int

    @property
    def established(self) -> bool:
        return self.state == ESTABLISHED


def parse_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` or a 32-digit IPv6 address with its port, as the kernel prints them: the
    address in host byte order, 32 bits at a time (little endian here), the port in hex."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(struct.pack("<I", int.from_bytes(raw[i : i + 4], "big")) for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port, 16)


def parse_table(text: str, ports: Collection[int] | None = None) -> list[TcpSocket]:
    """The sockets of one ``/proc/net/tcp``-style table (its header line skipped); with ``ports``, only
    those with a local or remote port among them (a busy machine has thousands: parsing them all costs
    more than reading the table)."""
    tokens = None if ports is None else [f":{port:04X} " for port in ports]
    sockets = []
    for line in text.splitlines()[1:]:
        if tokens is not None and not any(token in line for token in tokens):
            continue
        fields = line.split()
        if len(fields) < 5:
            continue
        tx, rx = fields[4].split(":")
        sockets.append(TcpSocket(parse_address(fields[1]), parse_address(fields[2]), int(fields[3], 16),
                                 int(tx, 16), int(rx, 16)))  # fmt: skip
    return sockets


def read_sockets(ports: Collection[int] | None = None, tables: Sequence[str] = PROC_TABLES) -> list[TcpSocket] | None:
    """The TCP sockets (with ``ports``: only those using one of them) of the tables that could be read;
    None when none could (no /proc here)."""
    found: list[TcpSocket] | None = None
    for table in tables:
        try:
            text = Path(table).read_text()
        except OSError:
            continue
        found = (found or []) + parse_table(text, ports)
    return found


def find(sockets: Iterable[TcpSocket], local_port: int | None = None, remote_port: int | None = None
         ) -> list[TcpSocket]:  # fmt: skip
    """The sockets bound to ``local_port`` and connected to ``remote_port`` (None: any)."""
    return [s for s in sockets
            if local_port in (None, s.local[1]) and remote_port in (None, s.remote[1])]  # fmt: skip


def receive_queue(sock: socket.socket) -> tuple[int, int]:
    """(unread bytes, SO_RCVBUF) of one of the harness's own sockets. The kernel counts its own
    overhead against SO_RCVBUF, so a full small buffer holds well under that many bytes of data."""
    return unread_bytes(sock), sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
