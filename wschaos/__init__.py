"""wschaos's front ends: the ``wschaos`` command and the pytest plugin, on top of the harness and the reports."""

from harness import __version__

__all__ = ["__version__"]
