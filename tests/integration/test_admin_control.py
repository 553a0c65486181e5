"""The admin console's commands that steer the proxy (SET, RELOAD, PAUSE/RESUME, MAINTENANCE,
RECONNECT, SHUTDOWN), its errors and protocol limits, who may log in to it, and the per-database and
per-user client limits it reports."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.admin import (
    ADMIN,
    ADMIN_DB,
    ADMIN_PASSWORD,
    ADMIN_USER,
    Poll,
    ProxyFactory,
    admin_connect,
    client_row,
    maxwait_us,
    only,
    pool_row,
    psql_argv,
    psql_env,
    show,
)
from tests.harness.clients import connect
from tests.harness.config import SESS_PASSWORD, SESS_USER, app_database, app_user, session_user
from tests.harness.pgserver import PgServer
from tests.harness.ports import port_open
from tests.harness.proxy import ProxyProcess
from tests.harness.rawclient import RawConn, error_fields, message, query


def _general(**extra: Any) -> dict[str, Any]:
    return {"min_pool_size": 0, "default_pool_size": 1, "checkout_timeout": 10000, **extra}


def _proxy(pg: PgServer, proxy_factory: ProxyFactory, **general: Any) -> ProxyProcess:
    return proxy_factory(general=_general(**general), databases=[app_database(pg)], users=[app_user()], admin=ADMIN)


def _two_databases(pg: PgServer, proxy_factory: ProxyFactory, **general: Any) -> ProxyProcess:
    return proxy_factory(
        general=_general(**general),
        databases=[app_database(pg), app_database(pg, "app2")],
        users=[app_user(), app_user("app2")],
        admin=ADMIN,
    )


def _config(admin: psycopg.Connection, key: str) -> str:
    return only(show(admin, "SHOW CONFIG"), name=key)["value"]


def _servers(admin: psycopg.Connection, database: str = APP_DB) -> list[dict[str, Any]]:
    return [r for r in show(admin, "SHOW SERVERS") if r["database"] == database]


def _backend_alive(pg: PgServer, pid: int) -> bool:
    return pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == "1"


def _admin_error(conn: psycopg.Connection, command: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(command)
    # The session stays usable after every error.
    assert show(conn, "SHOW VERSION")
    return info.value


def _asyncpg_error(url: str) -> BaseException:
    async def attempt() -> None:
        conn = await asyncpg.connect(url, ssl=False, timeout=10)
        await conn.close()

    try:
        asyncio.run(attempt())
    except Exception as e:
        return e
    raise AssertionError(f"{url} logged in")


# --------------------------------------------------------------------------- SET and RELOAD


def _queued_timeout(admin: psycopg.Connection, proxy: ProxyProcess) -> float:
    """With the pool's only server held: SET checkout_timeout TO 300, then how long a new client
    waits before its checkout times out."""
    assert admin.execute("SET checkout_timeout TO 300").statusmessage == "SET"
    assert _config(admin, "checkout_timeout") == "300"
    with connect(proxy) as waiter:
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="checkout timeout") as info:
            waiter.execute("SELECT 1")
        assert info.value.sqlstate == "08006"
        return time.monotonic() - t0


def test_set_changes_config_live_and_reload_restores_it(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    # min_pool_size 1: the pool's server is opened at start, so no login ever queued.
    proxy = _proxy(pg, proxy_factory, min_pool_size=1)
    admin = admin_connect(proxy)
    poll(lambda: pool_row(admin)["sv_idle"] == 1, what="the min_pool_size server")
    holder = connect(proxy, autocommit=False)
    try:
        holder.execute("SELECT 1")  # holds the only server in a transaction
        # A client queued now gives up after 0.3 s, not the 10 s of the file.
        waited = _queued_timeout(admin, proxy)
        assert 0.25 <= waited < 5, waited
        assert only(show(admin, "SHOW STATS"))["total_checkout_timeouts"] == 1
        # Quoted values and '=' are accepted too; a bigger pool serves a client beside the holder.
        assert admin.execute("SET default_pool_size = '2'").statusmessage == "SET"
        assert _config(admin, "default_pool_size") == "2"
        assert only(show(admin, "SHOW DATABASES"))["pool_size"] == 2
        with connect(proxy) as other:
            assert other.execute("SELECT 2").fetchone() == (2,)
        assert pool_row(admin)["sv_total"] == 2

        assert admin.execute("RELOAD").statusmessage == "RELOAD"
        assert (_config(admin, "checkout_timeout"), _config(admin, "default_pool_size")) == ("10000", "1")
        holder.commit()
    finally:
        holder.close()
        admin.close()


def test_set_checkout_timeout_applies_after_an_earlier_queued_checkout(
    pg: PgServer, proxy_factory: ProxyFactory
) -> None:
    # min_pool_size 0: the holder's login queues for the pool's first server (timer at +3 s).
    proxy = _proxy(pg, proxy_factory, checkout_timeout=3000)
    holder = connect(proxy, autocommit=False)
    admin = admin_connect(proxy)
    try:
        holder.execute("SELECT 1")
        waited = _queued_timeout(admin, proxy)
        assert waited < 1.5, waited
    finally:
        holder.close()
        admin.close()


def test_set_errors_name_the_key(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    proxy = _proxy(pg, proxy_factory)
    with admin_connect(proxy) as admin:
        err = _admin_error(admin, "SET no_such_key TO 1")
        assert err.sqlstate == "22023" and "no_such_key" in str(err) and "unknown setting" in str(err), err
        err = _admin_error(admin, "SET checkout_timeout TO soon")
        assert err.sqlstate == "22023" and "checkout_timeout" in str(err) and "soon" in str(err), err
        err = _admin_error(admin, "SET port TO 7000")
        assert err.sqlstate == "22023" and "port" in str(err) and "restart" in str(err), err
        err = _admin_error(admin, "SET min_pool_size TO 50")
        assert err.sqlstate == "22023" and "min_pool_size" in str(err), err
        err = _admin_error(admin, "SET checkout_timeout TO")
        assert err.sqlstate == "08P01" and "value is required" in str(err), err
        err = _admin_error(admin, "SET checkout_timeout")
        assert err.sqlstate == "08P01" and "SET <setting> TO <value>" in str(err), err
        # Nothing changed.
        assert (_config(admin, "checkout_timeout"), _config(admin, "port")) == ("10000", str(proxy.port))
        assert _config(admin, "min_pool_size") == "0"


def test_reload_picks_up_the_files_and_survives_a_broken_one(
    pg: PgServer, proxy_factory: ProxyFactory
) -> None:
    proxy = _proxy(pg, proxy_factory)
    with admin_connect(proxy) as admin:
        assert [r["name"] for r in show(admin, "SHOW DATABASES")] == [APP_DB]
        proxy.update(
            general={**proxy.general, "checkout_timeout": 7777},
            databases=[app_database(pg), app_database(pg, "app2")],
            users=[app_user(), app_user("app2")],
            reload=False,
        )
        assert _config(admin, "checkout_timeout") == "10000"  # not before RELOAD
        assert admin.execute("RELOAD").statusmessage == "RELOAD"
        assert _config(admin, "checkout_timeout") == "7777"
        assert sorted(r["name"] for r in show(admin, "SHOW DATABASES")) == [APP_DB, "app2"]
        with connect(proxy, dbname="app2") as c:
            assert c.execute("SELECT current_database()").fetchone() == (APP_DB,)

        with open(proxy.config_path, "w") as f:
            f.write("[general\nport = \n")
        err = _admin_error(admin, "RELOAD")
        assert err.sqlstate == "F0000" and "RELOAD failed" in str(err), err
        assert "pgdog.toml" in str(err), err
        # Still running with the configuration it had.
        assert _config(admin, "checkout_timeout") == "7777"
        assert proxy.returncode is None
        with connect(proxy, dbname="app2") as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        # Mended, it reloads again.
        proxy.write_config()
        assert admin.execute("RELOAD").statusmessage == "RELOAD"


# --------------------------------------------------------------------------- PAUSE and RESUME


def test_pause_waits_for_transactions_and_holds_clients_until_resume(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    proxy = _proxy(pg, proxy_factory, default_pool_size=2, checkout_timeout=500)
    holder = connect(proxy, autocommit=False, application_name="adm_holder")
    other = connect(proxy)
    pauser = admin_connect(proxy, application_name="adm_pauser")
    admin = admin_connect(proxy)
    try:
        (holder_pid,) = holder.execute("SELECT pg_backend_pid()").fetchone()
        other.execute("SELECT 1")  # a second server, idle afterwards
        assert pool_row(admin)["sv_total"] == 2
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            pause = ex.submit(lambda: pauser.execute("PAUSE").statusmessage)
            poll(lambda: client_row(admin, "adm_pauser")["state"] == "waiting", what="PAUSE waiting")
            # The idle server closes at once; the one in a transaction stays until it ends.
            row = poll(lambda: (r := pool_row(admin))["sv_total"] == 1 and r, what="idle server closed")
            assert row["paused"] is True
            assert only(show(admin, "SHOW DATABASES"))["paused"] is True
            assert [s["remote_pid"] for s in _servers(admin)] == [holder_pid]
            # New transactions are held.
            held = ex.submit(lambda: other.execute("SELECT 2").fetchone())
            poll(lambda: pool_row(admin)["cl_waiting"] == 1, what="a client held by PAUSE")
            # The open transaction goes on; PAUSE is still waiting for it.
            assert holder.execute("SELECT 3").fetchone() == (3,)
            assert not pause.done()
            holder.commit()
            assert pause.result(timeout=10) == "PAUSE"
            assert _servers(admin) == []
            poll(lambda: not _backend_alive(pg, holder_pid), what="the server connection closed")
            # A held client does not time out at checkout_timeout (0.5 s) while paused.
            poll(lambda: maxwait_us(pool_row(admin)) >= 1_200_000, what="held for 1.2 s")
            assert not held.done()
            assert pool_row(admin)["cl_waiting"] == 1
            assert admin.execute("RESUME").statusmessage == "RESUME"
            assert held.result(timeout=10) == (2,)
        row = pool_row(admin)
        assert (row["paused"], row["cl_waiting"]) == (False, 0)
        assert holder.execute("SELECT 4").fetchone() == (4,)
        holder.commit()
    finally:
        for c in (holder, other, pauser, admin):
            c.close()


def test_pause_and_resume_one_database(pg: PgServer, proxy_factory: ProxyFactory, poll: Poll) -> None:
    proxy = _two_databases(pg, proxy_factory)
    one = connect(proxy)
    two = connect(proxy, dbname="app2")
    admin = admin_connect(proxy)
    try:
        one.execute("SELECT 1")
        two.execute("SELECT 1")
        assert admin.execute("PAUSE app2").statusmessage == "PAUSE"  # nothing active: at once
        assert (pool_row(admin, "app2")["paused"], pool_row(admin)["paused"]) == (True, False)
        assert _servers(admin, "app2") == [] and len(_servers(admin)) == 1
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            held = ex.submit(lambda: two.execute("SELECT 2").fetchone())
            poll(lambda: pool_row(admin, "app2")["cl_waiting"] == 1, what="app2 client held")
            assert one.execute("SELECT 3").fetchone() == (3,)  # the other database is not paused
            assert not held.done()
            assert admin.execute("RESUME app2").statusmessage == "RESUME"
            assert held.result(timeout=10) == (2,)
        assert pool_row(admin, "app2")["paused"] is False
        # [user db] names one pool.
        assert admin.execute("PAUSE app app").statusmessage == "PAUSE"
        assert (pool_row(admin)["paused"], pool_row(admin, "app2")["paused"]) == (True, False)
        assert admin.execute("RESUME app app").statusmessage == "RESUME"
        assert one.execute("SELECT 4").fetchone() == (4,)
        for command in ("PAUSE nosuch", "RESUME nosuch", "RECONNECT nosuch", "MAINTENANCE ON nosuch"):
            err = _admin_error(admin, command)
            assert err.sqlstate == "3D000" and '"nosuch"' in str(err), (command, err)
        err = _admin_error(admin, "PAUSE a b c")
        assert err.sqlstate == "08P01" and "PAUSE [db]" in str(err), err
        assert not pool_row(admin)["paused"] and not pool_row(admin, "app2")["paused"]
    finally:
        for c in (one, two, admin):
            c.close()


@contextlib.contextmanager
def _waiting_pause(pg: PgServer, proxy_factory: ProxyFactory, poll: Poll) -> Iterator[tuple[Any, ...]]:
    """A PAUSE from client "adm_pauser" waiting on a transaction ``holder`` keeps open.

    Yields (proxy, holder, pauser, admin, the PAUSE's future); the caller ends the wait."""
    proxy = _proxy(pg, proxy_factory)
    holder = connect(proxy, autocommit=False)
    pauser = admin_connect(proxy, application_name="adm_pauser")
    admin = admin_connect(proxy)
    try:
        holder.execute("SELECT 1")
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            pause = ex.submit(lambda: pauser.execute("PAUSE"))
            poll(lambda: client_row(admin, "adm_pauser")["state"] == "waiting", what="PAUSE waiting")
            yield proxy, holder, pauser, admin, pause
    finally:
        for c in (holder, pauser, admin):
            c.close()


def test_resume_answers_a_waiting_pause_with_an_error(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    with _waiting_pause(pg, proxy_factory, poll) as (_, holder, pauser, admin, pause):
        assert admin.execute("RESUME").statusmessage == "RESUME"
        with pytest.raises(psycopg.errors.QueryCanceled, match="RESUME was issued") as info:
            pause.result(timeout=10)
        assert info.value.sqlstate == "57014"
        assert show(pauser, "SHOW VERSION")
        assert pool_row(admin)["paused"] is False
        assert holder.execute("SELECT 2").fetchone() == (2,)
        holder.commit()


def test_cancel_a_waiting_pause_from_psycopg_and_psql(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    with _waiting_pause(pg, proxy_factory, poll) as (proxy, holder, pauser, admin, pause):
        pauser.cancel_safe()
        with pytest.raises(psycopg.errors.QueryCanceled, match="canceling statement due to user request"):
            pause.result(timeout=10)
        assert client_row(admin, "adm_pauser")["state"] == "idle"
        assert show(pauser, "SHOW VERSION")
        # The pools stay paused: canceling stops the waiting, not the pause.
        assert pool_row(admin)["paused"] is True

        proc = subprocess.Popen(psql_argv(proxy, "PAUSE"), env=psql_env(ADMIN_PASSWORD, "adm_psql_pause"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            poll(lambda: client_row(admin, "adm_psql_pause")["state"] == "waiting", what="psql's PAUSE waiting")
            proc.send_signal(signal.SIGINT)  # psql sends a CancelRequest
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 1 and "canceling statement due to user request" in err, (proc.returncode, err)

        assert admin.execute("RESUME").statusmessage == "RESUME"
        assert holder.execute("SELECT 2").fetchone() == (2,)
        holder.commit()


# --------------------------------------------------------------------------- MAINTENANCE


def test_maintenance_parks_clients_between_transactions_and_keeps_servers(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    proxy = _two_databases(pg, proxy_factory)
    client = connect(proxy, autocommit=False)
    two = connect(proxy, dbname="app2")
    admin = admin_connect(proxy)
    try:
        (pid,) = client.execute("SELECT pg_backend_pid()").fetchone()
        # Immediate, even with a transaction open; the transaction carries on to its end.
        assert admin.execute("MAINTENANCE ON").statusmessage == "MAINTENANCE"
        row = pool_row(admin)
        assert (row["maintenance"], row["paused"]) == (True, False), row
        assert only(show(admin, "SHOW DATABASES"), name=APP_DB)["maintenance"] is True
        assert client.execute("SELECT 2").fetchone() == (2,)
        client.commit()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            parked = ex.submit(lambda: client.execute("SELECT pg_backend_pid()").fetchone())
            parked_two = ex.submit(lambda: two.execute("SELECT 3").fetchone())
            poll(lambda: pool_row(admin)["cl_waiting"] == 1 and pool_row(admin, "app2")["cl_waiting"] == 1,
                 what="both clients parked")
            # The server stays open, idle.
            server = only(_servers(admin))
            assert (server["remote_pid"], server["state"]) == (pid, "idle")
            assert _backend_alive(pg, pid)
            # OFF for one database releases only that one.
            assert admin.execute("MAINTENANCE OFF app2").statusmessage == "MAINTENANCE"
            assert parked_two.result(timeout=10) == (3,)
            assert not parked.done()
            assert admin.execute("MAINTENANCE OFF").statusmessage == "MAINTENANCE"
            # Released onto the very same server.
            assert parked.result(timeout=10) == (pid,)
        client.commit()
        assert pool_row(admin)["maintenance"] is False
        err = _admin_error(admin, "MAINTENANCE maybe")
        assert err.sqlstate == "08P01" and "MAINTENANCE ON|OFF" in str(err), err
    finally:
        for c in (client, two, admin):
            c.close()


# --------------------------------------------------------------------------- RECONNECT


def test_reconnect_replaces_idle_servers_now_and_busy_ones_after_their_transaction(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    proxy = _proxy(pg, proxy_factory, default_pool_size=2)
    busy = connect(proxy, autocommit=False)
    auto = connect(proxy)
    admin = admin_connect(proxy)
    try:
        (busy_pid,) = busy.execute("SELECT pg_backend_pid()").fetchone()
        (idle_pid,) = auto.execute("SELECT pg_backend_pid()").fetchone()
        assert idle_pid != busy_pid
        assert admin.execute("RECONNECT").statusmessage == "RECONNECT"
        poll(lambda: not _backend_alive(pg, idle_pid), what="the idle server closed")
        (new_pid,) = auto.execute("SELECT pg_backend_pid()").fetchone()
        assert new_pid not in (idle_pid, busy_pid)
        # The transaction in flight keeps its server to the end.
        assert busy.execute("SELECT pg_backend_pid()").fetchone() == (busy_pid,)
        busy.commit()
        poll(lambda: not _backend_alive(pg, busy_pid), what="the busy server closed after its transaction")
        (after,) = busy.execute("SELECT pg_backend_pid()").fetchone()
        assert after != busy_pid
        busy.commit()
        pids = {s["remote_pid"] for s in show(admin, "SHOW SERVERS")}
        assert busy_pid not in pids and idle_pid not in pids and new_pid in pids
        # RECONNECT for one database.
        assert admin.execute("RECONNECT app").statusmessage == "RECONNECT"
        poll(lambda: not _backend_alive(pg, new_pid), what="RECONNECT app replaced the idle server")
        assert auto.execute("SELECT pg_backend_pid()").fetchone() != (new_pid,)
    finally:
        for c in (busy, auto, admin):
            c.close()


# --------------------------------------------------------------------------- SHUTDOWN


def test_shutdown_answers_then_drains_and_exits_zero(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    proxy = _proxy(pg, proxy_factory)
    holder = connect(proxy, autocommit=False)
    admin = admin_connect(proxy)
    try:
        holder.execute("SELECT 1")
        assert admin.execute("SHUTDOWN").statusmessage == "SHUTDOWN"
        poll(lambda: not port_open(proxy.host, proxy.port), what="the listener closed")
        # Draining: the open transaction finishes first.
        assert proxy.returncode is None
        assert holder.execute("SELECT 2").fetchone() == (2,)
        holder.commit()
        assert proxy.wait(timeout=15) == 0
    finally:
        holder.close()
        admin.close()


# --------------------------------------------------------------------------- errors and protocol


def test_unknown_commands_and_sql_get_08p01_and_the_session_goes_on(
    pg: PgServer, proxy_factory: ProxyFactory
) -> None:
    proxy = _proxy(pg, proxy_factory)
    with admin_connect(proxy) as admin:
        for command, needle in (
            ("SELECT 1", '"SELECT"'),
            ("FROB the pools", '"FROB"'),
            ("SHOW NOTHING", 'unknown SHOW item "nothing"'),
            ("SHOW", "SHOW HELP"),
        ):
            err = _admin_error(admin, command)
            assert isinstance(err, psycopg.errors.ProtocolViolation) and err.sqlstate == "08P01", (command, err)
            assert needle in str(err), (command, err)
        err = _admin_error(admin, "SELECT 1")
        assert "SHOW HELP" in str(err) and "PAUSE" in str(err), err
        # Several commands in one Query: every result, in order.
        cur = admin.execute("SHOW VERSION; SHOW LISTS;")
        assert cur.fetchall()[0][0].startswith("pgdog-ev")
        assert cur.nextset() and cur.description is not None and cur.description[0].name == "databases"
        assert not cur.nextset()
        # The errors count in the console client's own row.
        assert only(show(admin, "SHOW CLIENTS"), admin=True)["errors"] == 5


def test_extended_protocol_is_refused_and_the_session_goes_on(
    pg: PgServer, proxy_factory: ProxyFactory
) -> None:
    proxy = _proxy(pg, proxy_factory)
    # A plain psycopg connection: parameters and prepare=True use the extended protocol.
    with psycopg.connect(proxy.dsn(ADMIN_USER, ADMIN_PASSWORD, ADMIN_DB), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ProtocolViolation, match="only the simple query protocol"):
            conn.execute("SHOW EVENTS %s", (5,))
        with pytest.raises(psycopg.errors.ProtocolViolation, match="only the simple query protocol"):
            conn.execute("SHOW VERSION", prepare=True)
        # Without parameters psycopg sends a simple Query, which works on the same session.
        assert conn.execute("SHOW VERSION").fetchone()[0].startswith("pgdog-ev")
        assert len(conn.execute("SHOW EVENTS 2").fetchall()) == 2


def test_raw_protocol_batches_errors_and_pause_in_a_query(
    pg: PgServer, proxy_factory: ProxyFactory, poll: Poll
) -> None:
    proxy = _proxy(pg, proxy_factory, auth_type="trust")
    raw = RawConn.trust_login(proxy.host, proxy.port, ADMIN_USER, ADMIN_DB)
    holder = connect(proxy, autocommit=False)
    admin = admin_connect(proxy)
    try:
        raw.sock.sendall(query("SHOW VERSION; SHOW LISTS"))
        msgs = raw.until(b"Z")
        assert [t for t, _ in msgs] == [b"T", b"D", b"C", b"T", b"D", b"C", b"Z"], msgs
        assert msgs[2][1] == b"SHOW\0" and msgs[-1][1] == b"I"
        # Commands run in order and stop at the first error.
        raw.sock.sendall(query("SHOW VERSION; NOPE; SHOW LISTS"))
        msgs = raw.until(b"Z")
        assert [t for t, _ in msgs] == [b"T", b"D", b"C", b"E", b"Z"], msgs
        assert error_fields(msgs[3][1])["C"] == "08P01"
        # An empty query.
        raw.sock.sendall(query(" ; ;"))
        assert [t for t, _ in raw.until(b"Z")] == [b"I", b"Z"]
        # Extended protocol: one error for the batch, then ReadyForQuery at its Sync.
        raw.sock.sendall(message(b"P", b"\0SHOW POOLS\0\0\0") + message(b"B", b"\0\0\0\0\0\0\0\0")
                         + message(b"E", b"\0\0\0\0\0") + message(b"S", b""))
        msgs = raw.until(b"Z")
        assert [t for t, _ in msgs] == [b"E", b"Z"], msgs
        assert error_fields(msgs[0][1])["C"] == "08P01"
        # What follows a PAUSE in the same Query runs once the PAUSE is done.
        holder.execute("SELECT 1")
        raw.sock.sendall(query("PAUSE; SHOW POOLS"))
        poll(lambda: only(show(admin, "SHOW CLIENTS"), admin=True, state="waiting"), what="PAUSE waiting")
        holder.commit()
        msgs = raw.until(b"Z")
        assert [t for t, _ in msgs] == [b"C", b"T", b"D", b"C", b"Z"], msgs
        assert (msgs[0][1], msgs[3][1]) == (b"PAUSE\0", b"SHOW\0")
        assert b"cl_waiting\0" in msgs[1][1] and pool_row(admin)["paused"] is True
        raw.sock.sendall(query("RESUME"))
        assert raw.until(b"Z")[0] == (b"C", b"RESUME\0")
        assert holder.execute("SELECT 2").fetchone() == (2,)
        holder.commit()
    finally:
        raw.close()
        holder.close()
        admin.close()


# --------------------------------------------------------------------------- who may log in


def test_admin_logins(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    proxy = _proxy(pg, proxy_factory)
    err = _asyncpg_error(proxy.url(ADMIN_USER, "wrong_pw", ADMIN_DB))
    assert isinstance(err, asyncpg.InvalidPasswordError) and err.sqlstate == "28P01", err
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "admin"'):
        admin_connect(proxy, password="wrong_pw")
    # The admin user is no user of the normal databases, and normal users cannot reach the console.
    err = _asyncpg_error(proxy.url(ADMIN_USER, ADMIN_PASSWORD, APP_DB))
    assert err.sqlstate == "28P01", err  # type: ignore[attr-defined]
    err = _asyncpg_error(proxy.url(APP_USER, APP_PASSWORD, ADMIN_DB))
    assert err.sqlstate == "28P01", err  # type: ignore[attr-defined]
    with admin_connect(proxy) as admin:
        assert show(admin, "SHOW VERSION")
        # The failed attempts never became clients of a pool.
        assert only(show(admin, "SHOW STATS"))["total_client_login_count"] == 0


def test_admin_console_locked_without_a_password(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    proxy = proxy_factory(general=_general(), databases=[app_database(pg)], users=[app_user()])
    for password in (ADMIN_PASSWORD, "", "admin"):
        err = _asyncpg_error(proxy.url(ADMIN_USER, password, ADMIN_DB))
        assert err.sqlstate == "28P01", (password, err)  # type: ignore[attr-defined]
    with connect(proxy) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_admin_console_name_and_user_from_config(pg: PgServer, proxy_factory: ProxyFactory) -> None:
    admin = {"name": "pgdog", "user": "boss", "password": "boss_pw"}
    proxy = proxy_factory(general=_general(), databases=[app_database(pg)], users=[app_user()], admin=admin)
    with psycopg.connect(proxy.dsn("boss", "boss_pw", "pgdog"), autocommit=True,
                         cursor_factory=psycopg.ClientCursor, connect_timeout=10) as conn:
        assert only(show(conn, "SHOW CLIENTS"), admin=True)["user"] == "boss"
    err = _asyncpg_error(proxy.url(ADMIN_USER, "boss_pw", "pgdog"))
    assert err.sqlstate == "28P01", err  # type: ignore[attr-defined]
    err = _asyncpg_error(proxy.url("boss", "boss_pw", ADMIN_DB))
    assert err.sqlstate == "3D000", err  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- client limits


LIMITS = {
    "general_db": ({"max_db_client_connections": 2}, {}, {}, "max_db_client_connections"),
    "database": ({}, {"max_db_client_connections": 2}, {}, "max_db_client_connections"),
    "general_user": ({"max_user_client_connections": 2}, {}, {}, "max_user_client_connections"),
    "user": ({}, {}, {"max_user_client_connections": 2}, "max_user_client_connections"),
}


@pytest.mark.parametrize("where", list(LIMITS))
def test_client_limits(pg: PgServer, proxy_factory: ProxyFactory, poll: Poll, where: str) -> None:
    general, database, user, key = LIMITS[where]
    proxy = proxy_factory(
        general=_general(**general),
        databases=[{**app_database(pg), **database}],
        users=[app_user(**user), session_user()],
        admin=ADMIN,
    )
    held = [connect(proxy), connect(proxy)]
    admin = admin_connect(proxy)  # the console's clients are not counted
    try:
        with pytest.raises(psycopg.OperationalError, match=key) as info:
            connect(proxy)
        assert "too many client connections" in str(info.value)
        err = _asyncpg_error(proxy.url(APP_USER, APP_PASSWORD, APP_DB))
        assert isinstance(err, asyncpg.TooManyConnectionsError) and err.sqlstate == "53300", err
        assert key in str(err)
        # A user limit is per user; a database limit covers every user of the database.
        other = proxy.dsn(SESS_USER, SESS_PASSWORD, APP_DB)
        if key == "max_user_client_connections":
            with psycopg.connect(other, connect_timeout=10) as c:
                assert c.execute("SELECT 1").fetchone() == (1,)
            assert only(show(admin, "SHOW USERS"), name=APP_USER)["max_user_client_connections"] == 2
        else:
            with pytest.raises(psycopg.OperationalError, match=key):
                psycopg.connect(other, connect_timeout=10)
            db = only(show(admin, "SHOW DATABASES"))
            assert (db["max_client_connections"], db["current_client_connections"]) == (2, 2), db
        # A slot frees when a client leaves.
        held.pop().close()

        def one_more() -> bool:
            try:
                held.append(connect(proxy))
            except psycopg.OperationalError:
                return False
            return True

        poll(one_more, what="a client fits again after one left")
        assert held[-1].execute("SELECT 1").fetchone() == (1,)
    finally:
        for c in held:
            c.close()
        admin.close()
