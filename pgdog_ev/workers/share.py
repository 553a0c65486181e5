"""What one worker process of ``[general] workers = N`` gets: its share of the sizes, its files.

Every worker builds the same pools from the same files, so without this N workers would open N
times the configured server connections and admit N times the configured clients. Each count
that bounds a resource is divided instead: worker ``i`` of ``N`` gets ``total // N``, plus one
while ``i < total % N``, so the shares add up to exactly the configured total. A worker with no
server connection at all could never serve a client, and one with a client limit of 0 would
refuse every client the kernel hands it, so a positive pool size or client limit gives every
worker at least 1 (a pool of 2 run by 4 workers opens up to 4). ``min_pool_size`` is split
exactly, 0 included: a worker without a warm connection still connects on demand.

The worker index is also encoded in the client ids (see :func:`client_id`), which is how any
worker tells from a CancelRequest's key which worker owns the client.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from pgdog_ev.config import Config, DatabaseEntry, General, UserEntry

#: [general] keys divided between workers; ``min_pool_size`` is the one that may divide to 0.
GENERAL_SIZES = ("default_pool_size", "max_client_conn", "max_db_client_connections", "max_user_client_connections")
#: The same for [[databases]] and [[users]] entries.
ENTRY_SIZES = ("pool_size", "pool_size_primary", "pool_size_replica")
DATABASE_LIMITS = ("max_db_client_connections",)
USER_LIMITS = ("max_user_client_connections",)
MINIMUMS = ("min_pool_size", "min_pool_size_primary", "min_pool_size_replica")


def share(total: int | None, index: int, count: int, *, at_least_one: bool = True) -> int | None:
    """Worker ``index``'s part of ``total`` (None, "unlimited", stays None)."""
    if total is None:
        return None
    if not 0 <= index < count:
        raise ValueError(f"worker index {index} outside 0..{count - 1}")
    part = total // count + (1 if index < total % count else 0)
    if at_least_one and total > 0:
        return max(part, 1)
    return part


def _divided(values: Mapping[str, int | None], sizes: tuple[str, ...], index: int, count: int) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name in sizes:
        out[name] = share(values[name], index, count)
    for name in MINIMUMS:
        if name in values:
            out[name] = share(values[name], index, count, at_least_one=False)
    return out


def worker_general(general: General, index: int, count: int) -> General:
    """``general`` with its sizes and client limits divided for worker ``index``."""
    if count == 1:
        return general
    values = {name: getattr(general, name) for name in (*GENERAL_SIZES, "min_pool_size")}
    return dataclasses.replace(general, **_divided(values, GENERAL_SIZES, index, count))


def _worker_database(entry: DatabaseEntry, index: int, count: int) -> DatabaseEntry:
    names = (*ENTRY_SIZES, *DATABASE_LIMITS, *MINIMUMS)
    values = {name: getattr(entry, name) for name in names}
    return dataclasses.replace(entry, **_divided(values, ENTRY_SIZES + DATABASE_LIMITS, index, count))


def _worker_user(entry: UserEntry, index: int, count: int) -> UserEntry:
    names = (*ENTRY_SIZES, *USER_LIMITS, *MINIMUMS)
    values = {name: getattr(entry, name) for name in names}
    return dataclasses.replace(entry, **_divided(values, ENTRY_SIZES + USER_LIMITS, index, count))


def worker_config(config: Config, index: int, count: int) -> Config:
    """The configuration worker ``index`` of ``count`` runs with: every size divided.

    The digest stays that of the files: it names the configuration the operator wrote, which is
    the same for every worker, in each worker's event-log header.
    """
    if count == 1:
        return config
    return dataclasses.replace(
        config,
        general=worker_general(config.general, index, count),
        databases=tuple(_worker_database(d, index, count) for d in config.databases),
        users=tuple(_worker_user(u, index, count) for u in config.users),
    )


def client_id(counter: int, index: int, count: int) -> int:
    """The ``counter``-th client id of worker ``index``: ids of different workers never collide,
    and ``id % count`` names the worker (see :func:`owner`)."""
    return counter * count + index


def owner(key_pid: int, count: int) -> int:
    """The worker that handed out the cancel key ``key_pid`` (a client id, see :func:`client_id`)."""
    return key_pid % count


def worker_path(path: str, index: int) -> str:
    """Worker ``index``'s own file for ``path`` (the event log): ``.w<i>`` before the extension.

    ``pgdog-ev.evlog`` -> ``pgdog-ev.w1.evlog`` (rotated as ``pgdog-ev.w1.evlog.1`` ...);
    a name without an extension gets the suffix at its end (``events`` -> ``events.w1``).
    """
    head, tail = os.path.split(path)
    stem, ext = os.path.splitext(tail)
    if not stem:  # ".evlog": splitext sees no extension in a dot file
        stem, ext = tail, ""
    return os.path.join(head, f"{stem}.w{index}{ext}")
