"""The admin console's SHOW commands through psycopg and psql, against a proxy with real clients:
column names (PgDog's, which follow PgBouncer's) and values that must match what the test did."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import psycopg
import pytest

from pgdog_ev import __version__
from tests.conftest import APP_DB, APP_USER
from tests.harness.admin import (
    ADMIN,
    Poll,
    ProxyFactory,
    admin_connect,
    as_text,
    client_row,
    columns,
    maxwait_us,
    only,
    pool_row,
    psql_show,
    show,
)
from tests.harness.clients import BackgroundClient, connect
from tests.harness.config import app_database, app_user
from tests.harness.pgserver import PgServer
from tests.harness.proxy import ProxyProcess

# --------------------------------------------------------------------------- expected columns

# PgDog's columns, in PgDog's order (pgdog/src/admin/show_*.rs).
PGDOG_POOLS = [
    "id", "database", "user", "addr", "port", "shard", "role", "cl_waiting", "sv_idle", "sv_active",
    "sv_idle_xact", "sv_total", "maxwait", "maxwait_us", "pool_mode", "paused", "banned", "healthy", "errors",
    "re_synced", "out_of_sync", "force_closed", "online", "schema_admin",
]
PGDOG_CLIENTS = [
    "id", "user", "database", "addr", "port", "state", "replication", "connect_time", "last_request", "queries",
    "transactions", "transactions_2pc", "wait_time", "query_time", "transaction_time", "bytes_received",
    "bytes_sent", "errors", "application_name", "locked", "prepared_statements",
]
PGDOG_SERVERS = [
    "pool_id", "database", "user", "addr", "port", "state", "connect_time", "request_time", "remote_pid",
    "client_id", "transactions", "queries", "rollbacks", "prepared_statements", "healthchecks", "errors",
    "bytes_received", "bytes_sent", "last_sent", "last_received", "age", "application_name",
]
_STAT_NAMES = [
    "xact_count", "xact_2pc_count", "query_count", "server_assignment_count", "received", "sent", "xact_time",
    "idle_xact_time", "query_time", "wait_time", "server_parse_count", "bind_count", "close_count", "errors",
    "cleaned", "rollbacks", "client_idle_xact_timeouts", "connect_time", "connect_count", "reads", "writes",
    "auth_attempts", "rows_inserted", "rows_updated", "rows_deleted",
]
PGDOG_STATS = ["database", "user", "addr", "port", "shard", "role"] + [
    f"{prefix}_{name}" for prefix in ("total", "avg") for name in _STAT_NAMES
]
# PgDog columns for features pgdog-ev does not have (two-phase commit, health checks, row counts by
# statement kind, averages of some totals). Every other PgDog column must be there.
NOT_PROVIDED = {
    "SHOW CLIENTS": {"transactions_2pc"},
    "SHOW SERVERS": {"healthchecks", "last_sent", "last_received"},
    "SHOW STATS": {
        f"{prefix}_{name}"
        for prefix in ("total", "avg")
        for name in ("xact_2pc_count", "close_count", "client_idle_xact_timeouts", "reads", "writes",
                     "auth_attempts", "rows_inserted", "rows_updated", "rows_deleted")
    } | {f"avg_{name}" for name in ("idle_xact_time", "cleaned", "rollbacks", "connect_time", "connect_count")},
}
PGDOG_COLUMNS = {
    "SHOW POOLS": PGDOG_POOLS,
    "SHOW CLIENTS": PGDOG_CLIENTS,
    "SHOW SERVERS": PGDOG_SERVERS,
    "SHOW STATS": PGDOG_STATS,
    "SHOW CONFIG": ["name", "value"],
    "SHOW DATABASES": ["name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
                       "server_lifetime", "pool_mode", "max_connections", "current_connections",
                       "max_client_connections", "current_client_connections", "paused"],
    "SHOW USERS": ["name", "pool_size", "pool_mode", "current_connections", "max_user_client_connections",
                   "current_client_connections"],
    "SHOW LISTS": ["databases", "users", "pools", "used_clients", "free_servers", "used_servers"],
    "SHOW VERSION": ["version"],
}
# Every SHOW item the console has, with the columns it answers with (the whole list: a column renamed,
# dropped or moved fails here).
ALL_COLUMNS = {
    "SHOW POOLS": [*PGDOG_POOLS, "cl_active", "sv_used", "sv_login", "maintenance", "last_error"],
    "SHOW CLIENTS": [c for c in PGDOG_CLIENTS if c != "transactions_2pc"] + ["server_id", "pool_mode", "admin"],
    "SHOW SERVERS": ["id", "pool_id", "database", "user", "addr", "port", "state", "connect_time", "request_time",
                     "remote_pid", "client_id", "transactions", "queries", "rollbacks", "prepared_statements",
                     "errors", "bytes_received", "bytes_sent", "age", "re_synced", "application_name"],
    "SHOW STATS": ["database", "user", "addr", "port", "shard", "role"]
    + [f"total_{n}" for n in ("xact_count", "query_count", "server_assignment_count", "received", "sent",
                              "xact_time", "idle_xact_time", "query_time", "wait_time", "client_parse_count",
                              "server_parse_count", "bind_count", "errors", "cleaned", "rollbacks",
                              "connect_time", "connect_count", "client_login_count", "checkout_timeouts")]
    + [f"avg_{n}" for n in ("xact_count", "query_count", "server_assignment_count", "received", "sent",
                            "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count",
                            "bind_count", "errors", "client_login_count")],
    "SHOW STATS_TOTALS": ["database", "user", "addr", "port", "shard", "role", "xact_count", "query_count",
                          "server_assignment_count", "received", "sent", "xact_time", "idle_xact_time",
                          "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count",
                          "errors", "cleaned", "rollbacks", "connect_time", "connect_count",
                          "client_login_count", "checkout_timeouts"],
    "SHOW STATS_AVERAGES": ["database", "user", "addr", "port", "shard", "role", "xact_count", "query_count",
                            "server_assignment_count", "received", "sent", "xact_time", "query_time",
                            "wait_time", "client_parse_count", "server_parse_count", "bind_count", "errors",
                            "client_login_count"],
    "SHOW CONFIG": ["name", "value", "default", "changeable"],
    "SHOW DATABASES": ["name", "host", "port", "database", "shard", "role", "force_user", "pool_size",
                       "min_pool_size", "server_lifetime", "pool_mode", "max_connections", "current_connections",
                       "max_client_connections", "current_client_connections", "paused", "maintenance"],
    "SHOW USERS": ["name", "database", "pool_size", "min_pool_size", "pool_mode", "current_connections",
                   "max_user_client_connections", "current_client_connections"],
    "SHOW LISTS": ["databases", "users", "pools", "used_clients", "login_clients", "waiting_clients",
                   "free_servers", "used_servers", "login_servers"],
    "SHOW VERSION": ["version"],
    "SHOW PREPARED": ["name", "statement", "used_by", "memory_used", "sql_level"],
    "SHOW QUERY_CACHE": ["query", "hits"],
    "SHOW EVENTS 5": ["seq", "time", "machine", "id", "kind", "event"],
    "SHOW HELP": ["command", "description"],
}
# Answers that do not change between two readings with nothing happening in between.
STABLE = ("SHOW CONFIG", "SHOW DATABASES", "SHOW USERS", "SHOW VERSION", "SHOW HELP", "SHOW POOLS")


def _general(**extra: Any) -> dict[str, Any]:
    return {"min_pool_size": 0, "checkout_timeout": 10000, **extra}


def _proxy(pg: PgServer, proxy_factory: ProxyFactory, **general: Any) -> ProxyProcess:
    return proxy_factory(general=_general(**general), databases=[app_database(pg)], users=[app_user()], admin=ADMIN)


def _is_subsequence(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(name in it for name in wanted)


# --------------------------------------------------------------------------- every SHOW, two clients


def test_every_show_command_through_psycopg_and_psql(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    proxy = _proxy(pg, proxy_factory)
    with connect(proxy, application_name="adm_every") as client, admin_connect(proxy) as admin:
        assert client.execute("SELECT 1").fetchone() == (1,)
        for command, expected in ALL_COLUMNS.items():
            got = columns(admin, command)
            assert got == expected, f"{command}: {got}"
            names, rows = psql_show(proxy, command)
            assert names == expected, f"{command} through psql: {names}"
            if command in STABLE:
                mine = [[as_text(v) for v in row.values()] for row in show(admin, command)]
                assert [list(r.values()) for r in rows] == mine, command
        for command, pgdog in PGDOG_COLUMNS.items():
            wanted = [c for c in pgdog if c not in NOT_PROVIDED.get(command, set())]
            assert _is_subsequence(wanted, ALL_COLUMNS[command]), f"{command}: PgDog's columns out of order"
        # The same SHOW in lower case and with a trailing semicolon.
        assert show(admin, "show version;") == show(admin, "SHOW VERSION")
        # What psql's client itself sees: its own row in SHOW CLIENTS, as an admin client.
        _, clients = psql_show(proxy, "SHOW CLIENTS")
        me = [r for r in clients if r["application_name"] == "psql"]
        assert len(me) == 1 and me[0]["admin"] == "t" and me[0]["user"] == "admin", clients
        assert only(clients, application_name="adm_every")["admin"] == "f"


def test_show_pools_clients_servers_while_a_client_waits(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    proxy = _proxy(pg, proxy_factory, default_pool_size=1)
    holder = connect(proxy, autocommit=False, application_name="adm_holder")
    waiter = connect(proxy, application_name="adm_waiter")
    admin = admin_connect(proxy)
    try:
        # The holder opens a transaction on the only server and stays in it.
        (holder_pid,) = holder.execute("SELECT pg_backend_pid()").fetchone()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            queued = ex.submit(lambda: waiter.execute("SELECT 42").fetchone())
            row = poll(lambda: (r := pool_row(admin))["cl_waiting"] == 1 and r, what="cl_waiting = 1")
            assert (row["sv_idle"], row["sv_active"], row["sv_idle_xact"], row["sv_total"]) == (0, 0, 1, 1), row
            assert (row["cl_active"], row["paused"], row["online"], row["pool_mode"]) == (1, False, True,
                                                                                          "transaction"), row
            # maxwait is the waiter's wait, and it keeps growing while the holder holds on.
            first = maxwait_us(row)
            poll(lambda: maxwait_us(pool_row(admin)) >= first + 200_000, what="maxwait grows by 0.2 s")

            holder_row = client_row(admin, "adm_holder")
            waiter_row = client_row(admin, "adm_waiter")
            assert (holder_row["state"], waiter_row["state"]) == ("active", "waiting")
            assert (holder_row["user"], holder_row["database"], holder_row["admin"]) == (APP_USER, APP_DB, False)
            assert waiter_row["server_id"] is None
            # The holder's server is the backend the holder saw.
            server = only(show(admin, "SHOW SERVERS"), client_id=holder_row["id"])
            assert server["id"] == holder_row["server_id"]
            assert (server["remote_pid"], server["state"]) == (holder_pid, "idle_xact")
            assert (server["database"], server["user"], server["port"]) == (APP_DB, APP_USER, pg.port)
            lists = only(show(admin, "SHOW LISTS"))
            assert (lists["waiting_clients"], lists["used_servers"], lists["free_servers"]) == (1, 1, 0), lists
            # psql reads the same numbers.
            _, pools = psql_show(proxy, "SHOW POOLS")
            assert (pools[0]["cl_waiting"], pools[0]["sv_idle_xact"]) == ("1", "1"), pools

            holder.commit()
            assert queued.result(timeout=10) == (42,)
        row = poll(lambda: (r := pool_row(admin))["sv_idle"] == 1 and r, what="the server back in the pool")
        assert (row["cl_waiting"], row["sv_idle_xact"], row["sv_active"], row["maxwait"], row["maxwait_us"]) == (
            0, 0, 0, 0, 0), row
        # The waiter waited at least the 0.2 s seen above, and the server is idle with no client.
        assert client_row(admin, "adm_waiter")["wait_time"] >= 200_000
        server = only(show(admin, "SHOW SERVERS"))
        assert (server["state"], server["client_id"], server["remote_pid"]) == ("idle", None, holder_pid)
    finally:
        for c in (holder, waiter, admin):
            c.close()


def test_show_pools_and_servers_while_a_query_runs(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    proxy = _proxy(pg, proxy_factory, default_pool_size=2)
    runner = connect(proxy, application_name="adm_runner")
    admin = admin_connect(proxy)
    try:
        (pid,) = runner.execute("SELECT pg_backend_pid()").fetchone()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            running = ex.submit(lambda: runner.execute("SELECT pg_sleep(30)"))
            row = poll(lambda: (r := pool_row(admin))["sv_active"] == 1 and r, what="sv_active = 1")
            assert (row["sv_idle"], row["sv_idle_xact"], row["sv_total"], row["cl_waiting"]) == (0, 0, 1, 0), row
            client = client_row(admin, "adm_runner")
            assert client["state"] == "active"
            server = only(show(admin, "SHOW SERVERS"))
            assert (server["state"], server["remote_pid"], server["client_id"]) == ("active", pid, client["id"])
            runner.cancel_safe()
            with pytest.raises(psycopg.errors.QueryCanceled):
                running.result(timeout=10)
        row = poll(lambda: (r := pool_row(admin))["sv_idle"] == 1 and r, what="the server idle again")
        assert (row["sv_active"], row["sv_total"]) == (0, 1), row
        assert client_row(admin, "adm_runner")["state"] == "idle"
    finally:
        runner.close()
        admin.close()


def test_show_clients_counters_and_column_choice(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    proxy = _proxy(pg, proxy_factory)
    with connect(proxy, application_name="adm_bytes") as client, admin_connect(proxy) as admin:
        client.execute("SELECT 1")
        before = client_row(admin, "adm_bytes")
        assert (before["state"], before["queries"], before["transactions"]) == ("idle", 1, 1), before
        assert client.execute("SELECT repeat('x', 10000)").fetchone() == ("x" * 10000,)
        after = client_row(admin, "adm_bytes")
        assert after["bytes_sent"] >= before["bytes_sent"] + 10000, (before, after)
        assert after["bytes_received"] > before["bytes_received"], (before, after)
        assert (after["queries"], after["transactions"], after["errors"]) == (2, 2, 0), after
        with pytest.raises(psycopg.errors.DivisionByZero):
            client.execute("SELECT 1/0")
        assert only(show(admin, "SHOW STATS"))["total_errors"] == 1
        assert after["last_request"] >= before["last_request"] >= before["connect_time"]
        assert after["connect_time"].endswith(" UTC")
        # PgDog's column choice: the columns asked for, in that order.
        cur = admin.execute("SHOW CLIENTS application_name, id")
        assert [d.name for d in cur.description or []] == ["application_name", "id"]
        assert ("adm_bytes", after["id"]) in cur.fetchall()
        cur = admin.execute("SHOW SERVERS remote_pid")
        assert [d.name for d in cur.description or []] == ["remote_pid"]
        (pid,) = client.execute("SELECT pg_backend_pid()").fetchone()
        assert cur.fetchall() == [(pid,)]
        with pytest.raises(psycopg.errors.ProtocolViolation, match="unknown column 'nope'"):
            admin.execute("SHOW CLIENTS id, nope")
        assert show(admin, "SHOW VERSION")  # still usable


def test_show_clients_errors_counts_server_errors(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    proxy = _proxy(pg, proxy_factory)
    with connect(proxy, application_name="adm_errors") as client, admin_connect(proxy) as admin:
        with pytest.raises(psycopg.errors.DivisionByZero):
            client.execute("SELECT 1/0")
        assert client_row(admin, "adm_errors")["errors"] == 1


# --------------------------------------------------------------------------- SHOW STATS


def test_show_stats_exact_counts_and_averages(pg: PgServer, proxy_factory: ProxyFactory, poll: Poll) -> None:
    proxy = _proxy(pg, proxy_factory, default_pool_size=1, stats_period=200)
    with connect(proxy) as auto, connect(proxy, autocommit=False) as txn, admin_connect(proxy) as admin:
        for i in range(10):
            assert auto.execute(f"SELECT {i}").fetchone() == (i,)
        for i in range(3):
            assert txn.execute(f"SELECT {i}").fetchone() == (i,)
        txn.commit()
        # Ten autocommit statements are ten transactions of one query each. The explicit transaction
        # is one more: BEGIN is answered by the proxy and replayed with the first statement, so the
        # server answers four client requests for it (three statements and COMMIT).
        stats = only(show(admin, "SHOW STATS"))
        totals = only(show(admin, "SHOW STATS_TOTALS"))
        assert (stats["total_xact_count"], stats["total_query_count"]) == (11, 14), stats
        assert (totals["xact_count"], totals["query_count"]) == (11, 14), totals
        assert (stats["database"], stats["user"], stats["port"], stats["role"]) == (APP_DB, APP_USER, pg.port,
                                                                                   "primary")
        assert stats["total_client_login_count"] == 2
        assert stats["total_connect_count"] == 1  # one server served everything
        assert stats["total_errors"] == 0 and stats["total_checkout_timeouts"] == 0
        assert stats["total_received"] > 0 and stats["total_sent"] > 0
        assert stats["total_query_time"] > 0 and stats["total_xact_time"] >= stats["total_query_time"]
        for name in ("received", "sent", "query_time", "server_assignment_count"):
            assert totals[name] == stats[f"total_{name}"], name
        _, rows = psql_show(proxy, "SHOW STATS")
        assert (rows[0]["total_xact_count"], rows[0]["total_query_count"]) == ("11", "14"), rows
        # Averages cover the last stats_period: with a client working, they become non-zero.
        with BackgroundClient(proxy) as background:
            background.wait_for_more(3)

            def averages() -> dict[str, Any] | None:
                row = only(show(admin, "SHOW STATS_AVERAGES"))
                busy = all(row[k] > 0 for k in ("xact_count", "query_count", "received", "sent", "query_time"))
                return row if busy else None

            avg = poll(averages, what="non-zero averages")
            assert avg["errors"] == 0
            stats = poll(lambda: (r := only(show(admin, "SHOW STATS")))["avg_query_count"] > 0 and r,
                         what="SHOW STATS avg_query_count > 0")
            assert stats["avg_received"] > 0 and stats["avg_xact_time"] > 0


# --------------------------------------------------------------------------- PREPARED, QUERY_CACHE, EVENTS


def test_show_prepared_and_query_cache(pg: PgServer, proxy_factory: ProxyFactory, poll: Poll) -> None:
    proxy = _proxy(pg, proxy_factory)
    admin = admin_connect(proxy)
    try:
        with connect(proxy, prepare_threshold=100) as client:
            assert client.execute("SELECT %s::int * 7", (6,), prepare=True).fetchone() == (42,)
            stmt = only(show(admin, "SHOW PREPARED"), statement="SELECT $1::int * 7")
            assert (stmt["used_by"], stmt["sql_level"]) == (1, False), stmt
            assert stmt["name"] and stmt["memory_used"] >= len("SELECT $1::int * 7")
            # A second client preparing the same text shares the statement.
            with connect(proxy, prepare_threshold=100) as other:
                assert other.execute("SELECT %s::int * 7", (2,), prepare=True).fetchone() == (14,)
                assert only(show(admin, "SHOW PREPARED"), statement="SELECT $1::int * 7")["used_by"] == 2
            _, rows = psql_show(proxy, "SHOW PREPARED")
            assert only(rows, statement="SELECT $1::int * 7")["used_by"] in ("1", "2")

            assert client.execute("SET statement_timeout TO 4321").statusmessage == "SET"
            assert client.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
            cache = show(admin, "SHOW QUERY_CACHE")
            only(cache, query="SET statement_timeout TO 4321")
            _, rows = psql_show(proxy, "SHOW QUERY_CACHE")
            assert any(r["query"] == "SET statement_timeout TO 4321" for r in rows), rows

        def released() -> bool:
            rows = [r for r in show(admin, "SHOW PREPARED") if r["statement"] == "SELECT $1::int * 7"]
            return all(r["used_by"] == 0 for r in rows)

        poll(released, what="the statement no longer used once its clients left")
    finally:
        admin.close()


def test_show_events(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    proxy = _proxy(pg, proxy_factory)
    with connect(proxy) as client, admin_connect(proxy) as admin:
        client.execute("SELECT 1")
        rows = show(admin, "SHOW EVENTS 5")
        assert len(rows) == 5
        seqs = [r["seq"] for r in rows]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5, seqs
        assert all(r["machine"] and r["kind"] and r["time"] for r in rows), rows
        # A client's query is recorded after them.
        client.execute("SELECT 2")
        later = show(admin, "SHOW EVENTS 3")
        assert len(later) == 3 and later[-1]["seq"] > seqs[-1]
        default = show(admin, "SHOW EVENTS")
        assert 5 < len(default) <= 50
        assert any(r["kind"] == "ACCEPT" and r["machine"] == "client" for r in default), default
        _, rows = psql_show(proxy, "SHOW EVENTS 5")
        assert len(rows) == 5 and [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
        with pytest.raises(psycopg.errors.ProtocolViolation, match=r"SHOW EVENTS \[n\]"):
            admin.execute("SHOW EVENTS many")
        assert show(admin, "SHOW EVENTS 0") == []


# --------------------------------------------------------------------------- configuration and inventory


def test_show_config_databases_users_lists_version_help(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    proxy = proxy_factory(
        general=_general(checkout_timeout=4321, default_pool_size=3, max_db_client_connections=40),
        databases=[app_database(pg), {**app_database(pg, "app2"), "pool_size": 2}],
        users=[app_user(), app_user("app2", max_user_client_connections=7)],
        admin=ADMIN,
    )
    with connect(proxy) as c1, connect(proxy, dbname="app2") as c2, admin_connect(proxy) as admin:
        c1.execute("SELECT 1")
        c2.execute("SELECT 1")
        config = {r["name"]: r for r in show(admin, "SHOW CONFIG")}
        assert (config["checkout_timeout"]["value"], config["checkout_timeout"]["default"]) == ("4321", "5000")
        assert config["checkout_timeout"]["changeable"] is True
        assert config["default_pool_size"]["value"] == "3"
        assert config["min_pool_size"]["value"] == "0"
        assert (config["port"]["value"], config["port"]["changeable"]) == (str(proxy.port), False)
        assert config["host"]["value"] == "127.0.0.1"
        assert config["max_db_client_connections"]["value"] == "40"
        assert list(config) == sorted(config)

        databases = {r["name"]: r for r in show(admin, "SHOW DATABASES")}
        assert set(databases) == {"app", "app2"}
        for name, size in (("app", 3), ("app2", 2)):
            row = databases[name]
            assert (row["host"], row["port"], row["database"]) == (pg.host, pg.port, APP_DB), row
            assert (row["pool_size"], row["max_connections"], row["current_connections"]) == (size, size, 1), row
            assert (row["max_client_connections"], row["current_client_connections"]) == (40, 1), row
            assert (row["paused"], row["maintenance"], row["pool_mode"]) == (False, False, "transaction"), row

        users = show(admin, "SHOW USERS")
        assert len(users) == 2
        app2 = only(users, name=APP_USER, database="app2")
        assert (app2["pool_size"], app2["max_user_client_connections"], app2["current_client_connections"]) == (
            2, 7, 1), app2
        assert only(users, name=APP_USER, database="app")["max_user_client_connections"] == 0  # no limit

        lists = only(show(admin, "SHOW LISTS"))
        # Three clients logged in: c1, c2 and this admin session.
        assert (lists["databases"], lists["users"], lists["pools"], lists["used_clients"]) == (2, 1, 2, 3), lists
        assert (lists["free_servers"], lists["used_servers"], lists["waiting_clients"]) == (2, 0, 0), lists

        assert show(admin, "SHOW VERSION") == [{"version": f"pgdog-ev {__version__}"}]
        help_text = " ".join(r["command"] for r in show(admin, "SHOW HELP"))
        for word in ("SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS", "STATS_AVERAGES", "SHOW CONFIG", "PREPARED",
                     "QUERY_CACHE", "SHOW EVENTS", "SET", "RELOAD", "RECONNECT", "PAUSE", "RESUME",
                     "MAINTENANCE", "SHUTDOWN"):
            assert word in help_text, word
        # The console's own ParameterStatus: drivers see a server version they can parse.
        assert admin.info.server_version >= 150000
