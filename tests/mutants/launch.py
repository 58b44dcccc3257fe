"""``python -m tests.mutants.launch NAME [MONITOR ARGS...]``: the monitor with one mutant applied."""

from __future__ import annotations

import sys

from monitor.__main__ import main
from tests.mutants.catalogue import MUTANTS


def run(argv: list[str]) -> int:
    if not argv or argv[0] not in MUTANTS:
        print(f"usage: python -m tests.mutants.launch NAME [monitor args]; names: {', '.join(MUTANTS)}",
              file=sys.stderr)
        return 2
    MUTANTS[argv[0]]()
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
