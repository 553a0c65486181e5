"""sim."""

import pgdog_ev.native  # noqa: F401  (before any compiled module: see pgdog_ev/native.py)
