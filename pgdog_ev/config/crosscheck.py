"""Checks that need more than one table: duplicates and pool sizes across levels.

Each entry is checked on its own by :mod:`sections`; what remains are mistakes only visible in
combination, such as two identical host entries (two pools fighting over one slot in the load
balancer) or a user whose min_pool_size exceeds the pool size a database entry gives it (the pool
could never satisfy its own minimum).
"""

from __future__ import annotations

from collections.abc import Sequence

from .kinds import quote
from .model import DatabaseEntry, General, UserEntry
from .sections import Where


def check_duplicate_databases(databases: Sequence[DatabaseEntry], wheres: Sequence[Where]) -> None:
    seen: dict[tuple[str, str, str, int, int], Where] = {}
    for entry, where in zip(databases, wheres, strict=True):
        identity = (entry.name, entry.role, entry.host, entry.port, entry.shard)
        if identity in seen:
            raise where.error(
                f"duplicates {seen[identity].table}: same name, role, host, port and shard "
                f"({quote(entry.name)}, {entry.role}, {entry.host}:{entry.port}, shard {entry.shard})"
            )
        seen[identity] = where


def check_duplicate_users(users: Sequence[UserEntry], wheres: Sequence[Where]) -> None:
    seen: dict[tuple[str, str], Where] = {}
    for user, where in zip(users, wheres, strict=True):
        identity = (user.name, user.database)
        if identity in seen:
            first = seen[identity]
            other = "an earlier entry" if first == where else first.table
            raise where.error(
                f"user {quote(user.name)} for database {quote(user.database)} is already defined by {other}",
                "name",
            )
        seen[identity] = where


def check_general_pool_sizes(general: General, where: Where) -> None:
    if general.min_pool_size > general.default_pool_size:
        raise where.error(
            f"{general.min_pool_size} exceeds default_pool_size {general.default_pool_size}", "min_pool_size"
        )


def check_workers(general: General, where: Where) -> None:
    """Input capture records one process's inputs for re-execution, which replays one process:
    with several workers each would record a slice that nothing can run again."""
    if general.workers > 1 and general.capture_inputs:
        raise where.error(
            f"capture_inputs needs workers = 1 (re-execution replays one process), got workers = {general.workers}",
            "capture_inputs",
        )


def _sourced(
    key: str, user: UserEntry, db: DatabaseEntry, general_value: int, levels: tuple[Where, Where, Where]
) -> tuple[int, Where, str]:
    """The effective value of ``key`` and the table/key it comes from (mirrors pool_settings)."""
    user_where, db_where, general_where = levels
    for entry, where in ((user, user_where), (db, db_where)):
        for name in (f"{key}_{db.role}", key):
            value = getattr(entry, name, None)
            if value is not None:
                return value, where, name
    return general_value, general_where, "default_pool_size" if key == "pool_size" else key


def check_pool_sizes(
    general: General,
    general_where: Where,
    users: Sequence[UserEntry],
    user_wheres: Sequence[Where],
    databases: Sequence[DatabaseEntry],
    db_wheres: Sequence[Where],
) -> None:
    hosts_by_name: dict[str, list[tuple[DatabaseEntry, Where]]] = {}
    for db, where in zip(databases, db_wheres, strict=True):
        hosts_by_name.setdefault(db.name, []).append((db, where))
    for user, user_where in zip(users, user_wheres, strict=True):
        for db, db_where in hosts_by_name.get(user.database, []):
            levels = (user_where, db_where, general_where)
            size, size_where, size_key = _sourced("pool_size", user, db, general.default_pool_size, levels)
            low, low_where, low_key = _sourced("min_pool_size", user, db, general.min_pool_size, levels)
            if low > size:
                # Blame the more specific of the two settings: that is the one most likely to be
                # the recent, mistaken edit.
                blame_where, blame_key = (low_where, low_key)
                if _rank(size_where, levels) < _rank(low_where, levels):
                    blame_where, blame_key = (size_where, size_key)
                raise blame_where.error(
                    f"min_pool_size {low} (from {low_where.table} {low_key}) exceeds pool_size {size} "
                    f"(from {size_where.table} {size_key}) for user {quote(user.name)} on "
                    f"{db.host}:{db.port}",
                    blame_key,
                )


def _rank(where: Where, levels: tuple[Where, Where, Where]) -> int:
    return levels.index(where)
