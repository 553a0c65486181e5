"""One answer from the SHOW results of several workers (``[general] workers``).

Each worker runs the same SHOW on its own pools and sessions; the worker the admin client is
connected to merges the tables here, so the console shows the whole daemon with the columns it
always had (exporters written for PgBouncer keep reading them):

* per-pool results (POOLS, STATS*, DATABASES, USERS) have one row per pool key, its counts
  summed over the workers; flags say whether any worker's pool is paused (banned, in
  maintenance) and whether all of them are healthy; ``maxwait`` is the longest wait anywhere;
  averages of counts add up (they are rates) and averages of times are weighted by the counts
  they are averages over. Ids and other values are the first worker's, the one asked first.
* per-connection results (CLIENTS, SERVERS, PREPARED, EVENTS, BANS, REPLICATION) list every
  worker's rows with a ``worker`` column appended at the end (server ids, event numbers, bans
  and replication readings are per worker; client ids are unique across workers).

``sources`` are (worker index, table) pairs, the asking worker first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pgdog_ev.admin.resultset import Table, int8
from pgdog_ev.admin.show_misc import events_count
from pgdog_ev.admin.show_stats import AVERAGES, TOTALS
from pgdog_ev.admin.show_workers import WORKER_COLUMNS

Source = tuple[int, Table]
Post = Callable[[list[Any], list[list[Any]], Table], None]

SUM, ANY, ALL, MAX, FIRST_SET = "sum", "any", "all", "max", "first_set"


def _combine(rule: str | None, values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if rule is None:
        return values[0]
    if not present:
        return None
    if rule == SUM:
        return sum(present)
    if rule == ANY:
        return any(present)
    if rule == ALL:
        return all(present)
    if rule == MAX:
        return max(present)
    if rule == FIRST_SET:
        return present[0]
    raise ValueError(f"unknown merge rule {rule!r}")


def _columns(sources: Sequence[Source]) -> Table:
    first = sources[0][1]
    for worker, table in sources[1:]:
        if table.columns != first.columns:
            # Every worker runs the same code: different columns mean a mixed-version daemon.
            raise ValueError(f"worker {worker} answered with other columns than worker {sources[0][0]}")
    return first


def by_key(sources: Sequence[Source], key: Sequence[str], rules: Mapping[str, str], post: Post | None = None) -> Table:
    """One row per value of the ``key`` columns, in the order first seen; other columns combined
    by ``rules`` (the first worker's value where no rule is given), then adjusted by ``post``."""
    template = _columns(sources)
    key_at = [template.index(name) for name in key]
    groups: dict[tuple[Any, ...], list[list[Any]]] = {}
    for _, table in sources:
        for row in table.rows:
            groups.setdefault(tuple(row[i] for i in key_at), []).append(row)
    rows = []
    for group in groups.values():
        row = [_combine(rules.get(name), [r[i] for r in group]) for i, (name, _) in enumerate(template.columns)]
        if post is not None:
            post(row, group, template)
        rows.append(row)
    return Table(list(template.columns), rows)


def concat(sources: Sequence[Source], order: Callable[[list[Any], Table], Any] | None = None) -> Table:
    """Every worker's rows, each with its worker index in a ``worker`` column at the end."""
    template = _columns(sources)
    rows = [[*row, worker] for worker, table in sources for row in table.rows]
    if order is not None:
        rows.sort(key=lambda row: order(row, template))
    return Table([*template.columns, int8("worker")], rows)


# --- per-pool results -------------------------------------------------------------------------

POOL_KEY = ("database", "user", "addr", "port", "shard", "role")
POOL_RULES = {
    **dict.fromkeys(("cl_waiting", "sv_idle", "sv_active", "sv_idle_xact", "sv_total", "errors", "re_synced",
                     "out_of_sync", "force_closed", "cl_active", "sv_used", "sv_login"), SUM),
    **dict.fromkeys(("paused", "banned", "maintenance", "online"), ANY),
    "healthy": ALL,
    "last_error": FIRST_SET,
}


def _longest_wait(row: list[Any], group: list[list[Any]], table: Table) -> None:
    seconds, micros = table.index("maxwait"), table.index("maxwait_us")
    longest = max(r[seconds] * 1_000_000 + r[micros] for r in group)
    row[seconds], row[micros] = divmod(longest, 1_000_000)


def merge_pools(sources: Sequence[Source]) -> Table:
    return by_key(sources, POOL_KEY, POOL_RULES, _longest_wait)


# Mean times and the counts they are means over (see averages.py).
_MEANS = (("xact_time", "xact_count"), ("query_time", "query_count"), ("wait_time", "server_assignment_count"))


def _weighted_means(prefix: str) -> Post:
    def post(row: list[Any], group: list[list[Any]], table: Table) -> None:
        for time_name, count_name in _MEANS:
            t, c = table.index(prefix + time_name), table.index(prefix + count_name)
            weight = sum(r[c] for r in group)
            row[t] = round(sum(r[t] * r[c] for r in group) / weight) if weight > 0 else 0
        for name in AVERAGES:
            if not name.endswith("_time"):
                i = table.index(prefix + name)
                row[i] = round(row[i], 3)

    return post


def merge_stats(sources: Sequence[Source]) -> Table:
    rules = {f"total_{n}": SUM for n in TOTALS} | {f"avg_{n}": SUM for n in AVERAGES}
    return by_key(sources, POOL_KEY, rules, _weighted_means("avg_"))


def merge_stats_totals(sources: Sequence[Source]) -> Table:
    return by_key(sources, POOL_KEY, dict.fromkeys(TOTALS, SUM))


def merge_stats_averages(sources: Sequence[Source]) -> Table:
    return by_key(sources, POOL_KEY, dict.fromkeys(AVERAGES, SUM), _weighted_means(""))


def merge_databases(sources: Sequence[Source]) -> Table:
    rules = {
        **dict.fromkeys(("pool_size", "min_pool_size", "max_connections", "current_connections",
                         "max_client_connections", "current_client_connections"), SUM),
        **dict.fromkeys(("paused", "maintenance"), ANY),
    }
    return by_key(sources, ("name", "host", "port", "shard", "role"), rules)


def merge_users(sources: Sequence[Source]) -> Table:
    rules = dict.fromkeys(("pool_size", "min_pool_size", "current_connections", "max_user_client_connections",
                           "current_client_connections"), SUM)
    return by_key(sources, ("name", "database"), rules)


def merge_lists(sources: Sequence[Source]) -> Table:
    template = _columns(sources)
    # Configured objects are the same in every worker; pools, clients and servers add up.
    same = ("databases", "users", "pools")
    return by_key(sources, (), {name: SUM for name, _ in template.columns if name not in same})


def merge_query_cache(sources: Sequence[Source]) -> Table:
    return by_key(sources, ("query",), {"hits": SUM})


# --- per-connection results ----------------------------------------------------------------------


def _by(*names: str) -> Callable[[list[Any], Table], Any]:
    def order(row: list[Any], table: Table) -> tuple[Any, ...]:
        values = (row[-1] if n == "worker" else row[table.index(n)] for n in names)
        return tuple((v is None, v) for v in values)  # NULLs last, never compared with a value

    return order


def merge_events(sources: Sequence[Source], args: tuple[str, ...]) -> Table:
    """Every worker's last n, interleaved by time (wall clock, ms), then the last n of those."""
    table = concat(sources, _by("time", "worker", "seq"))
    table.rows = table.rows[len(table.rows) - events_count(args):] if table.rows else []
    return table


def merge_show(item: str, sources: Sequence[Source], args: tuple[str, ...] = ()) -> Table:
    """The daemon's answer to ``SHOW <item>`` from every worker's (see the module docstring)."""
    if not sources:
        raise ValueError("nothing to merge")
    if item == "events":
        return merge_events(sources, args)
    merger = MERGERS.get(item)
    if merger is None:
        return sources[0][1]  # the same in every worker (VERSION)
    return merger(sources)


MERGERS: dict[str, Callable[[Sequence[Source]], Table]] = {
    "pools": merge_pools,
    "stats": merge_stats,
    "stats_totals": merge_stats_totals,
    "stats_averages": merge_stats_averages,
    "databases": merge_databases,
    "users": merge_users,
    "lists": merge_lists,
    "query_cache": merge_query_cache,
    "clients": lambda s: concat(s, _by("id")),
    "servers": lambda s: concat(s, _by("worker", "id")),
    "prepared": lambda s: concat(s, _by("worker")),
    "bans": lambda s: concat(s, _by("id", "worker")),
    "replication": lambda s: concat(s, _by("id", "worker")),
}

#: SHOW items answered by every worker and merged; the rest (CONFIG, HELP) are the same everywhere.
GATHERED = frozenset(MERGERS) | {"events", "version", "workers"}


def merge_workers(sources: Sequence[Source], meta: Mapping[int, Mapping[str, Any]], count: int) -> Table:
    """SHOW WORKERS: a row per configured worker, answering or not, with what the supervisor
    knows of it (pid, state, restarts) where the worker itself did not answer."""
    answered = {worker: table.rows[0] for worker, table in sources if table.rows}
    names = [name for name, _ in WORKER_COLUMNS]
    rows = []
    for worker in range(count):
        known = meta.get(worker, {})
        row = list(answered.get(worker) or [None] * len(names))
        row[names.index("worker")] = worker
        if worker not in answered:
            row[names.index("pid")] = known.get("pid")
            state = known.get("state", "down")
            row[names.index("state")] = "no answer" if state == "up" else state
        row[names.index("restarts")] = known.get("restarts", row[names.index("restarts")] or 0)
        rows.append(row)
    return Table(list(WORKER_COLUMNS), rows)
