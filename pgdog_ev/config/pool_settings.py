"""Resolve the settings of one pool from the three levels that may set them.

The pool, the server-connection state machine and the checkout path should each read one flat
record instead of re-implementing "user, else database, else general" (and getting the order
subtly different). Role-specific keys (``pool_size_replica`` ...) sit just above the generic key
of the same level, so a user's ``pool_size_replica`` beats the user's ``pool_size``, which beats
anything on the database entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .model import DatabaseEntry, General, UserEntry


@dataclass(frozen=True)
class PoolSettings:
    """Effective settings of the pool for one (user, database host entry)."""

    pool_size: int
    min_pool_size: int
    pooler_mode: str
    idle_timeout: int
    server_lifetime: int
    server_lifetime_jitter: int
    statement_timeout: int | None
    lock_timeout: int | None
    read_only: bool
    replication_mode: bool
    checkout_timeout: int
    connect_timeout: int
    connect_attempts: int
    connect_attempt_delay: int
    query_timeout: int | None
    rollback_timeout: int
    server_user: str
    server_password: str | None
    server_database: str
    prepared_statements: str = "extended"
    prepared_statements_limit: int | None = None
    session_state: str = "pin"
    # Health checks, in milliseconds (see state/pool.py).
    healthcheck_interval: int = 30000
    healthcheck_timeout: int = 5000
    idle_healthcheck_interval: int = 30000
    idle_healthcheck_delay: int = 5000


T = TypeVar("T")


def _first(*candidates: T | None) -> T | None:
    for candidate in candidates:
        if candidate is not None:
            return candidate
    return None


def _first_or(fallback: T, *candidates: T | None) -> T:
    found = _first(*candidates)
    return fallback if found is None else found


def _int_by_role(entry: UserEntry | DatabaseEntry, key: str, role: str) -> int | None:
    """The entry's role-specific value of ``key`` (if any) before its generic one."""
    specific: int | None = getattr(entry, f"{key}_{role}") if role in ("primary", "replica") else None
    generic: int | None = getattr(entry, key)
    return _first(specific, generic)


def resolve_pool_settings(general: General, user: UserEntry, db: DatabaseEntry) -> PoolSettings:
    def level(key: str, fallback: int) -> int:
        return _first_or(fallback, _int_by_role(user, key, db.role), _int_by_role(db, key, db.role))

    pool_size = level("pool_size", general.default_pool_size)
    return PoolSettings(
        pool_size=pool_size,
        # The loader rejects min > max; clamping keeps hand-built configs (tests) safe too.
        min_pool_size=min(level("min_pool_size", general.min_pool_size), pool_size),
        pooler_mode=_first_or(general.pooler_mode, user.pooler_mode, db.pooler_mode),
        idle_timeout=level("idle_timeout", general.idle_timeout),
        server_lifetime=_first_or(general.server_lifetime, user.server_lifetime, db.server_lifetime),
        server_lifetime_jitter=_first_or(
            general.server_lifetime_jitter, user.server_lifetime_jitter, db.server_lifetime_jitter
        ),
        statement_timeout=_first(user.statement_timeout, db.statement_timeout),
        lock_timeout=_first(user.lock_timeout, db.lock_timeout),
        read_only=_first_or(False, user.read_only, db.read_only),
        replication_mode=user.replication_mode,
        checkout_timeout=general.checkout_timeout,
        connect_timeout=general.connect_timeout,
        connect_attempts=general.connect_attempts,
        connect_attempt_delay=general.connect_attempt_delay,
        query_timeout=general.query_timeout,
        rollback_timeout=general.rollback_timeout,
        # A [[databases]] entry's credentials are for every pool of that host, so they win, the
        # same way PgDog lets the database password win over the user's server_password.
        server_user=db.user or user.server_user or user.name,
        server_password=_first(db.password, user.server_password, user.password),
        server_database=db.database_name,
        prepared_statements=general.prepared_statements,
        prepared_statements_limit=general.prepared_statements_limit,
        session_state=general.session_state,
        healthcheck_interval=general.healthcheck_interval,
        healthcheck_timeout=general.healthcheck_timeout,
        idle_healthcheck_interval=general.idle_healthcheck_interval,
        idle_healthcheck_delay=general.idle_healthcheck_delay,
    )
