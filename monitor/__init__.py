"""The monitor: a live dashboard server for Storj storage nodes, and wschaos's reference target."""

__version__ = "0.1.0"
