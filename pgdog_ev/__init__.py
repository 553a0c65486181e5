"""pgdog-ev: a PostgreSQL pooler, load balancer and sharding router built as explicit state machines."""

__version__ = "0.1.0"
