"""``python -m tests.mutants``: print the mutant catalogue as JSON."""

from __future__ import annotations

import json

from tests.mutants.catalogue import catalogue

print(json.dumps(catalogue(), indent=2))
