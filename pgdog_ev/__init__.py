"""pgdog-ev: a PostgreSQL pooler, load balancer and sharding router built as explicit state machines."""

from pgdog_ev import native as _native  # noqa: F401  (before any compiled module: see native.py)

__version__ = "0.1.0"
