"""Broken variants of the monitor, each a small documented change applied at start-up by
``python -m tests.mutants.launch NAME MONITOR ARGS``. The product has no flag for any of them.
``python -m tests.mutants`` prints the catalogue (what each breaks, what must catch it) as JSON."""
