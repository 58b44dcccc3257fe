"""Broken variants of the monitor, each a small documented change applied at start-up by
``python -m tests.mutants.launch NAME -- MONITOR ARGS``. The product has no flag for any of them."""
