"""SHOW POOLS, SHOW DATABASES, SHOW USERS and SHOW LISTS.

Column names follow PgDog (which follows PgBouncer), so dashboards and
exporters written for them read these too; columns only one of them has are
appended after the shared ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgdog_ev.admin.clock import micros
from pgdog_ev.admin.resultset import Table, boolean, int8, text
from pgdog_ev.admin.snapshot import LOGGING_IN, PoolView, pool_views, server_state
from state.client import ClientState
from state.pool import PoolState

if TYPE_CHECKING:
    from pgdog_ev.admin.host import ConsoleHost

POOL_COLUMNS = [
    int8("id"), text("database"), text("user"), text("addr"), int8("port"), int8("shard"), text("role"),
    int8("cl_waiting"), int8("sv_idle"), int8("sv_active"), int8("sv_idle_xact"), int8("sv_total"),
    int8("maxwait"), int8("maxwait_us"), text("pool_mode"), boolean("paused"), boolean("banned"),
    boolean("healthy"), int8("errors"), int8("re_synced"), int8("out_of_sync"), int8("force_closed"),
    boolean("online"), boolean("schema_admin"),
    # PgBouncer's, and ours.
    int8("cl_active"), int8("sv_used"), int8("sv_login"), boolean("maintenance"), text("last_error"),
]


def _pool_row(host: ConsoleHost, view: PoolView, now: float) -> list[Any]:
    pool = view.pool
    key = pool.key
    counts = {"active": 0, "idle_xact": 0, "used": 0, "login": 0, "idle": 0}
    for server in pool.servers.values():
        state = server_state(server)
        if state in counts:
            counts[state] += 1
    wait = now - pool.waiters[0].wait_started if pool.waiters else 0.0
    wait_us = micros(max(wait, 0.0))
    user = host.config.user(key.user, key.database)
    active_clients = sum(
        1 for c in view.clients if c.state in (ClientState.IDLE, ClientState.ACTIVE)
    )
    stats = pool.stats
    return [
        pool.id, key.database, key.user, key.host, key.port, key.shard, pool.role,
        len(pool.waiters), len(pool.idle), counts["active"], counts["idle_xact"], len(pool.servers),
        wait_us // 1_000_000, wait_us % 1_000_000, pool.settings.pooler_mode, pool.paused, pool.banned,
        pool.healthy and pool.last_error is None, stats.connect_errors + stats.server_errors, stats.re_synced,
        stats.out_of_sync, stats.force_closed, pool.state is not PoolState.CLOSED,
        bool(user is not None and user.schema_admin),
        active_clients, counts["used"], counts["login"], pool.maintenance, pool.last_error,
    ]


def show_pools(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    now = host.now()
    rows = [_pool_row(host, view, now) for view in pool_views(host.directory)]
    return Table(list(POOL_COLUMNS), rows)


DATABASE_COLUMNS = [
    text("name"), text("host"), int8("port"), text("database"), int8("shard"), text("role"),
    text("force_user"), int8("pool_size"), int8("min_pool_size"), int8("server_lifetime"),
    text("pool_mode"), int8("max_connections"), int8("current_connections"),
    int8("max_client_connections"), int8("current_client_connections"), boolean("paused"),
    boolean("maintenance"),
]


def show_databases(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    config = host.config
    views = pool_views(host.directory)
    rows = []
    for entry in config.databases:
        mine = [v for v in views if v.pool.key.database == entry.name
                and (v.pool.key.host, v.pool.key.port, v.pool.key.shard) == (entry.host, entry.port, entry.shard)]
        settings = [v.pool.settings for v in mine]
        clients = sum(
            1 for c in host.directory.clients.values() if c.database == entry.name and c.state not in LOGGING_IN
            and c.state is not ClientState.CLOSED and not c.admin
        )
        limit = entry.max_db_client_connections
        if limit is None:
            limit = config.general.max_db_client_connections
        rows.append([
            entry.name, entry.host, entry.port, entry.database_name or entry.name, entry.shard, entry.role,
            entry.user, entry.pool_size if entry.pool_size is not None else config.general.default_pool_size,
            entry.min_pool_size if entry.min_pool_size is not None else config.general.min_pool_size,
            (settings[0].server_lifetime if settings else config.general.server_lifetime),
            settings[0].pooler_mode if settings else (entry.pooler_mode or config.general.pooler_mode),
            sum(s.pool_size for s in settings), sum(len(v.pool.servers) for v in mine),
            limit or 0, clients,
            any(v.pool.paused for v in mine), any(v.pool.maintenance for v in mine),
        ])
    return Table(list(DATABASE_COLUMNS), rows)


USER_COLUMNS = [
    text("name"), text("database"), int8("pool_size"), int8("min_pool_size"), text("pool_mode"),
    int8("current_connections"), int8("max_user_client_connections"), int8("current_client_connections"),
]


def show_users(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    config = host.config
    views = pool_views(host.directory)
    rows = []
    for user in config.users:
        mine = [v for v in views if (v.pool.key.user, v.pool.key.database) == (user.name, user.database)]
        settings = mine[0].pool.settings if mine else None
        limit = user.max_user_client_connections
        if limit is None:
            limit = config.general.max_user_client_connections
        rows.append([
            user.name, user.database,
            settings.pool_size if settings else (user.pool_size or config.general.default_pool_size),
            settings.min_pool_size if settings else (user.min_pool_size or config.general.min_pool_size),
            settings.pooler_mode if settings else (user.pooler_mode or config.general.pooler_mode),
            sum(len(v.pool.servers) for v in mine), limit or 0, sum(len(v.clients) for v in mine),
        ])
    return Table(list(USER_COLUMNS), rows)


LIST_COLUMNS = [
    int8("databases"), int8("users"), int8("pools"), int8("used_clients"), int8("login_clients"),
    int8("waiting_clients"), int8("free_servers"), int8("used_servers"), int8("login_servers"),
]


def show_lists(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    directory = host.directory
    clients = list(directory.clients.values())
    servers = [s for pool in directory.pools.values() for s in pool.servers.values()]
    states = [server_state(s) for s in servers]
    row = [
        len(host.config.database_names()), len({u.name for u in host.config.users}), len(directory.pools),
        sum(1 for c in clients if c.state not in LOGGING_IN and c.state is not ClientState.CLOSED),
        sum(1 for c in clients if c.state in LOGGING_IN),
        sum(1 for c in clients if c.state is ClientState.WAITING),
        states.count("idle"), sum(1 for s in states if s in ("active", "idle_xact", "used")), states.count("login"),
    ]
    return Table(list(LIST_COLUMNS), [row])
