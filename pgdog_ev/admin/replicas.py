"""BAN, UNBAN, HEALTHCHECK, SHOW BANS and SHOW REPLICATION: steering the hosts of clusters.

Pools are named by the ids SHOW POOLS prints. A manual BAN takes a host out of the read
rotation until UNBAN (writes still reach a banned primary: they have nowhere else to go);
HEALTHCHECK runs the ``;`` check now instead of at the next idle-check tick, and its outcome
shows in SHOW POOLS (healthy) and SHOW BANS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgdog_ev.admin.control import AdminError
from pgdog_ev.admin.parser import AdminSyntaxError
from pgdog_ev.admin.resultset import Table, boolean, done, float8, int8, text
from state.cluster import BAN_REASONS, INF
from state.reasons import Reason
from state.replication import format_lsn

if TYPE_CHECKING:
    from pgdog_ev.admin.host import ConsoleHost
    from state.pool import Pool


UNDEFINED_OBJECT = "42704"


def _pools(host: ConsoleHost) -> list[Pool]:
    return sorted(host.directory.pools.values(), key=lambda p: p.id)


def chosen(host: ConsoleHost, verb: str, args: tuple[str, ...]) -> list[Pool]:
    """The pool named by ``[id]``, or every pool."""
    pools = _pools(host)
    if not args:
        return pools
    if len(args) != 1 or not args[0].isdigit():
        raise AdminSyntaxError(f"expected {verb} [id], with a pool id from SHOW POOLS")
    wanted = int(args[0])
    for pool in pools:
        if pool.id == wanted:
            return [pool]
    raise AdminError(UNDEFINED_OBJECT, f"{verb}: there is no pool with id {wanted} (see SHOW POOLS)")


def key_of(pool: Pool) -> list[Any]:
    """A pool's key as a list: how one worker names a pool to another (their ids may differ)."""
    k = pool.key
    return [k.user, k.database, k.host, k.port, k.shard, k.role]


def pools_with_keys(host: ConsoleHost, keys: list[list[Any]]) -> list[Pool]:
    """This worker's pools among ``keys`` (from :func:`key_of` in another worker), by id."""
    wanted = {tuple(k) for k in keys}
    return [pool for pool in _pools(host) if tuple(key_of(pool)) in wanted]


def ban(host: ConsoleHost, args: tuple[str, ...]) -> bytes:
    return ban_pools(host, chosen(host, "BAN", args))


def unban(host: ConsoleHost, args: tuple[str, ...]) -> bytes:
    return unban_pools(host, chosen(host, "UNBAN", args))


def healthcheck(host: ConsoleHost, args: tuple[str, ...]) -> bytes:
    return healthcheck_pools(host, chosen(host, "HEALTHCHECK", args))


def ban_pools(host: ConsoleHost, pools: list[Pool]) -> bytes:
    now = host.now()
    for pool in pools:
        if pool.owner is not None:
            pool.owner.ban(now, pool, Reason.BAN_MANUAL, "banned by an administrator")  # type: ignore[attr-defined]
    return done("BAN")


def unban_pools(host: ConsoleHost, pools: list[Pool]) -> bytes:
    now = host.now()
    for pool in pools:
        if pool.owner is not None:
            pool.owner.unban(now, pool, Reason.UNBAN_MANUAL)  # type: ignore[attr-defined]
    return done("UNBAN")


def healthcheck_pools(host: ConsoleHost, pools: list[Pool]) -> bytes:
    now = host.now()
    for pool in pools:
        if pool.state.name != "CLOSED":
            pool.health_check(now)
    return done("HEALTHCHECK")


def _key(pool: Pool) -> list[Any]:
    k = pool.key
    return [pool.id, k.database, k.user, k.host, k.port, k.shard, pool.role]


KEY_COLUMNS = [int8("id"), text("database"), text("user"), text("addr"), int8("port"), int8("shard"), text("role")]
BAN_COLUMNS = [*KEY_COLUMNS, text("ban_reason"), float8("ban_time_left"), text("error")]


def show_bans(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    """Banned hosts; ban_time_left is seconds (NULL for a ban with no expiry: a manual one, or a
    new host's waiting for its first health check; 0 once expired but the host has not answered
    yet)."""
    now = host.now()
    rows = []
    for pool in _pools(host):
        owner = pool.owner
        found = owner.bans.get(pool.id) if owner is not None else None  # type: ignore[attr-defined]
        if found is None:
            continue
        left = None if found.until is None or found.until == INF else round(max(0.0, found.until - now), 3)
        rows.append([*_key(pool), BAN_REASONS.get(found.reason, found.reason.name.lower()), left, found.error])
    return Table(list(BAN_COLUMNS), rows)


REPLICATION_COLUMNS = [
    *KEY_COLUMNS, float8("replica_lag"), int8("replica_lag_bytes"), text("pg_lsn"), float8("lsn_age"),
    boolean("pg_is_in_recovery"), text("error"),
]


def show_replication(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    """Per host: lag behind the primary (seconds and bytes), the WAL position last seen, how
    long ago it was polled, and whether it is in recovery. NULL where the monitor has no answer
    (it runs when lsn_check_delay or a ban_replica_lag* key is set, for multi-host databases)."""
    now = host.now()
    rows = []
    for pool in _pools(host):
        cluster = pool.owner
        monitor = cluster.monitor if cluster is not None else None  # type: ignore[attr-defined]
        status = monitor.status.get(pool.id) if monitor is not None else None
        good = monitor.last_good.get(pool.id) if monitor is not None else None
        lag_s: float | None = None
        lag_b: int | None = None
        if monitor is not None and pool is not cluster.primary:  # type: ignore[attr-defined]
            lag = monitor.lag(pool, cluster.primary)  # type: ignore[attr-defined]
            if lag is not None:
                lag_b, seconds = lag
                lag_s = None if seconds is None else round(seconds, 3)
        elif monitor is not None and good is not None:
            lag_s, lag_b = 0.0, 0
        rows.append([
            *_key(pool), lag_s, lag_b,
            format_lsn(good.lsn) if good is not None else None,
            round(now - good.checked_at, 3) if good is not None else None,
            good.in_recovery if good is not None else None,
            status.error if status is not None and not status.ok else None,
        ])
    return Table(list(REPLICATION_COLUMNS), rows)
