"""wschaos's chaos engine: puts a WebSocket server behind Toxiproxy, injects faults, checks clients."""

__version__ = "0.1.0"
