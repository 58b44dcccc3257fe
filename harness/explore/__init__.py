"""Exploration: seeded random fault schedules (``generate``), run one after another against a target
(``session``), and each distinct failure shrunk to a small schedule that still fails (``shrink``)."""
