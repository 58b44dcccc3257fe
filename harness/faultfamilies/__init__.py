"""Fault families beyond the core catalogue, one module each. A module defines ``Fault`` subclasses
(from ``harness.faultbase``) with a ``type``; importing ``harness.faults`` imports every module here,
which registers its faults in ``FAULTS``. Nothing else needs editing to add a family."""
