"""The monitor's settings, as given on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from monitor.ingest import NodeSource


@dataclass
class Config:
    nodes: list[NodeSource] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8080
    db: Path = Path("monitor.db")
    from_start: bool = False
    heartbeat: float = 10.0
    send_timeout: float = 5.0
    close_timeout: float = 1.0
    queue_size: int = 512
    sndbuf: int = 128 * 1024
    batch_interval: float = 0.025
    max_batch: int = 200
    replay_size: int = 2000
    stats_interval: float = 2.0
    status_interval: float = 1.0
    max_message_bytes: int = 1024 * 1024
    rate_limit: float = 50.0
    rate_burst: float = 100.0
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    token: str | None = None
    max_clients: int = 0  # 0: no cap of its own (the command line derives one from the descriptor limit)
    header_timeout: float = 10.0
    verbose_health: bool = False
    replay_budget: int = 4 * 1024 * 1024  # replay bytes a second per client address; 0: unlimited
    demo_dir: Path | None = None
    demo_rate: float = 5.0
