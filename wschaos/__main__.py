"""``python -m wschaos``: the ``wschaos`` command."""

from wschaos.cli import main

main()
