"""SHOW STATS (and PgBouncer's SHOW STATS_TOTALS / STATS_AVERAGES): per pool, totals and averages.

Times are microseconds. "received"/"sent" are bytes from and to the pool's
clients. Averages are per second for counts and bytes, per transaction, query
or checkout for times, over the last stats_period (see averages.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgdog_ev.admin.clock import micros
from pgdog_ev.admin.resultset import Column, Table, float8, int8, text

if TYPE_CHECKING:
    from pgdog_ev.admin.averages import StatsWindow
    from pgdog_ev.admin.host import ConsoleHost
    from state.pool import Pool

KEY_COLUMNS = [text("database"), text("user"), text("addr"), int8("port"), int8("shard"), text("role")]
TOTALS = (
    "xact_count", "query_count", "server_assignment_count", "received", "sent", "xact_time", "idle_xact_time",
    "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count", "errors", "cleaned",
    "rollbacks", "connect_time", "connect_count", "client_login_count", "checkout_timeouts",
)
AVERAGES = (
    "xact_count", "query_count", "server_assignment_count", "received", "sent", "xact_time", "query_time",
    "wait_time", "client_parse_count", "server_parse_count", "bind_count", "errors", "client_login_count",
)
# avg_ column name -> key in StatsWindow.get()
_AVG_SOURCE = {"client_login_count": "logins"}


def totals(pool: Pool) -> dict[str, int]:
    s = pool.stats
    return {
        "xact_count": s.xact_count, "query_count": s.query_count, "server_assignment_count": s.checkouts,
        "received": s.received, "sent": s.sent, "xact_time": micros(s.xact_time),
        # Time inside transactions not spent running a request: the client thinking.
        "idle_xact_time": max(micros(s.xact_time - s.query_time), 0), "query_time": micros(s.query_time),
        "wait_time": micros(s.wait_time_total), "client_parse_count": s.client_parse_count,
        "server_parse_count": s.server_parse_count, "bind_count": s.bind_count, "errors": s.errors,
        "cleaned": s.cleaned, "rollbacks": s.rollbacks, "connect_time": micros(s.connect_time),
        "connect_count": s.connects, "client_login_count": s.logins, "checkout_timeouts": s.checkout_timeouts,
    }


def _avg(window: StatsWindow, pool: Pool) -> list[Any]:
    values = window.get(pool.id)
    out: list[Any] = []
    for name in AVERAGES:
        value = values[_AVG_SOURCE.get(name, name)]
        out.append(round(value) if name.endswith("_time") else round(value, 3))
    return out


def _key(pool: Pool) -> list[Any]:
    k = pool.key
    return [k.database, k.user, k.host, k.port, k.shard, pool.role]


def _pools(host: ConsoleHost) -> list[Pool]:
    return sorted(host.directory.pools.values(), key=lambda p: p.id)


def _avg_columns(prefix: str) -> list[Column]:
    return [int8(f"{prefix}{n}") if n.endswith("_time") else float8(f"{prefix}{n}") for n in AVERAGES]


def show_stats(host: ConsoleHost, window: StatsWindow) -> Table:
    columns = KEY_COLUMNS + [int8(f"total_{n}") for n in TOTALS] + _avg_columns("avg_")
    rows = [_key(p) + list(totals(p).values()) + _avg(window, p) for p in _pools(host)]
    return Table(columns, rows)


def show_stats_totals(host: ConsoleHost, window: StatsWindow) -> Table:
    columns = KEY_COLUMNS + [int8(n) for n in TOTALS]
    return Table(columns, [_key(p) + list(totals(p).values()) for p in _pools(host)])


def show_stats_averages(host: ConsoleHost, window: StatsWindow) -> Table:
    columns = KEY_COLUMNS + _avg_columns("")
    return Table(columns, [_key(p) + _avg(window, p) for p in _pools(host)])
