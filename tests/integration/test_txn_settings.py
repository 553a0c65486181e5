"""Transaction mode: session settings a client changes with SET (and set_config) follow that client
from server to server and never leak to other clients; transaction-scoped changes (SET LOCAL, SET
in a rolled-back transaction or savepoint) do not stick; RESET returns to the client's startup
values; BEGIN alone does not take a server; session state the proxy cannot move (temp tables,
session advisory locks, LISTEN) pins the client to its server, or is refused with
`session_state = "refuse"`.

Most checks compare against a "disturber" client that sets the same parameters to other values on
the same server (pool of 1): a proxy that does not track SET shows the disturber's values."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable

import asyncpg
import psycopg
import psycopg2
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect, connect_direct
from tests.harness.config import SESS_PASSWORD, SESS_USER, app_database, app_user, session_user

GUCS = ("search_path", "application_name", "TimeZone", "statement_timeout", "work_mem")
INTRANS = psycopg.pq.TransactionStatus.INTRANS
IDLE = psycopg.pq.TransactionStatus.IDLE
INERROR = psycopg.pq.TransactionStatus.INERROR


@pytest.fixture(scope="module")
def proxy1(pg, module_proxy_factory):
    """One server shared by every client; short checkout_timeout (for the bare-BEGIN test)."""
    return module_proxy_factory(
        general={"default_pool_size": 1, "pooler_mode": "transaction", "checkout_timeout": 2000},
        databases=[app_database(pg)],
        users=[app_user()],
    )


@pytest.fixture(scope="module")
def proxy2(pg, module_proxy_factory):
    return module_proxy_factory(
        general={"default_pool_size": 2, "pooler_mode": "transaction", "checkout_timeout": 10000},
        databases=[app_database(pg)],
        users=[app_user()],
    )


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _read(conn: psycopg.Connection) -> dict[str, str]:
    """The client's view of GUCS, with current_setting() and with SHOW (which must agree)."""
    sql = "SELECT " + ", ".join(f"current_setting('{g}')" for g in GUCS)
    values = dict(zip(GUCS, conn.execute(sql).fetchone(), strict=True))
    for g in GUCS:
        (shown,) = conn.execute(f"SHOW {g}").fetchone()
        assert shown == values[g], f"SHOW {g} = {shown!r} but current_setting = {values[g]!r}"
    return values


def _pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


class Disturber:
    """A client of the same pool that sets every tracked parameter to values of its own, so a proxy
    that leaves settings on the server (or restores the wrong ones) shows them to the next client."""

    VALUES = {
        "search_path": "disturber_schema",
        "TimeZone": "Asia/Tokyo",
        "statement_timeout": "9min",
        "work_mem": "9MB",
    }

    def __init__(self, proxy) -> None:
        self.name = f"disturber_{_uid()}"
        self.conn = connect(proxy)
        self.conn.execute(f"SET application_name = '{self.name}'")
        for k, v in self.VALUES.items():
            self.conn.execute(f"SET {k} TO '{v}'")
        self.want = {**self.VALUES, "application_name": self.name}

    def __call__(self) -> None:
        assert _read(self.conn) == self.want, "the disturber lost its own settings"

    def close(self) -> None:
        self.conn.close()


def _assert_clean_probe(conn: psycopg.Connection, key: int | None = None) -> int:
    """A client's server has no temp table t, no advisory lock and no LISTEN. Returns its pid."""
    pid, temp, locks, channels = conn.execute(
        "SELECT pg_backend_pid(), to_regclass('pg_temp.t')::text,"
        " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),"
        " ARRAY(SELECT pg_listening_channels())"
    ).fetchone()
    assert (temp, locks, channels) == (None, 0, []), f"server {pid}: temp={temp} locks={locks} listen={channels}"
    return pid


# --------------------------------------------------------------------------- SET follows the client


def test_set_persists_for_its_client_and_never_leaks(pg, proxy1):
    uid = _uid()
    b = connect(proxy1)
    a = connect(proxy1)
    d = None
    try:
        base_b = _read(b)
        b_app = b.info.parameter_status("application_name")
        a.execute(f"SET search_path TO a_{uid}, b_{uid}")
        a.execute(f"SET application_name = 'x_{uid}'")
        a.execute("SET TimeZone TO 'UTC'")
        a.execute("SET statement_timeout = '5s'")
        assert a.execute("SELECT set_config('work_mem', '8MB', false)").fetchone() == ("8MB",)
        want_a = {
            "search_path": f"a_{uid}, b_{uid}",
            "application_name": f"x_{uid}",
            "TimeZone": "UTC",
            "statement_timeout": "5s",
            "work_mem": "8MB",
        }
        assert _read(a) == want_a
        assert a.info.parameter_status("application_name") == f"x_{uid}"
        assert a.info.parameter_status("TimeZone") == "UTC"
        # B, on the same (only) server right after A, sees none of it.
        assert _read(b) == base_b
        assert b.info.parameter_status("application_name") == b_app
        d = Disturber(proxy1)
        pids = set()
        for _ in range(3):
            for conn, want in ((a, want_a), (b, base_b), (d.conn, d.want), (a, want_a), (b, base_b)):
                assert _read(conn) == want
                pids.add(_pid(conn))
            with a.transaction():
                assert _read(a) == want_a
            with b.transaction():
                assert _read(b) == base_b
            # The time zone is really applied, not just reported.
            hour = "SELECT to_char(timestamptz '2024-01-01 12:00:00+00', 'HH24')"
            assert a.execute(hour).fetchone() == ("12",)
            assert d.conn.execute(hour).fetchone() == ("21",)
        assert len(pids) == 1, f"pool of 1 expected one server, saw {pids}"
        assert a.info.parameter_status("application_name") == f"x_{uid}"
        assert b.info.parameter_status("application_name") == b_app
        assert b.info.parameter_status("TimeZone") == base_b["TimeZone"]
    finally:
        for c in (a, b):
            c.close()
        if d:
            d.close()
    # A newcomer after A left sees the defaults.
    with connect(proxy1) as c:
        assert _read(c) == {**base_b, "application_name": c.info.parameter_status("application_name")}


def test_set_follows_client_to_other_servers(proxy2):
    """Pool of 2: two holders take both servers in turn, so A runs on each of them."""
    uid = _uid()
    a, x, y = connect(proxy2), connect(proxy2), connect(proxy2)
    try:
        base_x, base_y = _read(x), _read(y)
        a.execute(f"SET search_path TO a_{uid}, b_{uid}")
        a.execute(f"SET application_name = 'x_{uid}'")
        a.execute("SET TimeZone TO 'UTC'")
        a.execute("SET statement_timeout = '5s'")
        a.execute("SELECT set_config('work_mem', '8MB', false)")
        want_a = {
            "search_path": f"a_{uid}, b_{uid}",
            "application_name": f"x_{uid}",
            "TimeZone": "UTC",
            "statement_timeout": "5s",
            "work_mem": "8MB",
        }
        seen_a: set[int] = set()
        for first, second in ((x, y), (y, x), (x, y), (y, x)):
            x.execute("BEGIN")
            y.execute("BEGIN")
            px, py = _pid(x), _pid(y)
            assert px != py
            # Both servers were used by A (from the second round on): the holders see their own.
            assert _read(x) == base_x
            assert _read(y) == base_y
            freed = _pid(first)
            first.execute("COMMIT")
            # A can only get the server `first` released.
            with a.transaction():
                assert _pid(a) == freed
                assert _read(a) == want_a
            assert _read(a) == want_a
            seen_a.add(freed)
            second.execute("COMMIT")
        assert len(seen_a) == 2, f"A should have run on both servers, saw {seen_a}"
        assert a.info.parameter_status("application_name") == f"x_{uid}"
        assert x.info.parameter_status("application_name") != f"x_{uid}"
    finally:
        for c in (a, x, y):
            c.close()


def test_concurrent_clients_each_see_their_own_settings(proxy2):
    """8 threads on a pool of 2, each with its own search_path / application_name / timeout."""
    uid = _uid()
    n_clients, iterations = 8, 40
    errors: list[BaseException] = []
    start = threading.Barrier(n_clients, timeout=30)

    def worker(k: int) -> None:
        try:
            with connect(proxy2) as conn:
                path, app, timeout = f"s{k}_{uid}, public", f"app{k}_{uid}", f"{k + 1}s"
                conn.execute(f"SET search_path TO s{k}_{uid}, public")
                conn.execute(f"SET application_name = '{app}'")
                conn.execute(f"SET statement_timeout = '{timeout}'")
                start.wait()
                for i in range(iterations):
                    if i == iterations // 2:
                        app = f"app{k}_{uid}_v2"
                        conn.execute(f"SET application_name = '{app}'")
                    sql = (
                        "SELECT current_setting('search_path'), current_setting('application_name'),"
                        " current_setting('statement_timeout')"
                    )
                    if i % 5 == 0:
                        with conn.transaction():
                            got = conn.execute(sql).fetchone()
                            assert conn.execute("SHOW application_name").fetchone() == (app,)
                    else:
                        got = conn.execute(sql).fetchone()
                    assert got == (path, app, timeout), f"client {k} iteration {i}: {got}"
                    assert conn.execute("SHOW search_path").fetchone() == (path,)
                    assert conn.info.parameter_status("application_name") == app
        except BaseException as e:
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "worker threads hung"
    assert not errors, errors[:3]


# --------------------------------------------------------------------------- transaction-scoped SET


def test_set_local_rollback_commit_and_savepoints(proxy1):
    a = connect(proxy1)
    d = Disturber(proxy1)
    try:
        default_work_mem = _read(a)["work_mem"]
        a.execute("SET statement_timeout = '5s'")

        def check(timeout: str, work_mem: str = default_work_mem) -> None:
            got = _read(a)
            assert (got["statement_timeout"], got["work_mem"]) == (timeout, work_mem)
            d()  # another client uses the server in between
            got = _read(a)
            assert (got["statement_timeout"], got["work_mem"]) == (timeout, work_mem)

        check("5s")
        # SET LOCAL lasts until the end of the transaction.
        a.execute("BEGIN")
        a.execute("SET LOCAL statement_timeout = '7s'")
        a.execute("SET LOCAL work_mem = '3MB'")
        assert a.execute("SHOW statement_timeout").fetchone() == ("7s",)
        a.execute("COMMIT")
        check("5s")
        # A SET in a transaction that is rolled back is discarded.
        a.execute("BEGIN")
        a.execute("SET statement_timeout = '8s'")
        assert a.execute("SHOW statement_timeout").fetchone() == ("8s",)
        a.execute("ROLLBACK")
        check("5s")
        # ... also when the transaction failed.
        a.execute("BEGIN")
        a.execute("SET statement_timeout = '13s'")
        with pytest.raises(psycopg.errors.DivisionByZero):
            a.execute("SELECT 1/0")
        a.execute("ROLLBACK")
        check("5s")
        # A SET in a committed transaction persists.
        a.execute("BEGIN")
        a.execute("SET statement_timeout = '6s'")
        a.execute("COMMIT")
        check("6s")
        # ROLLBACK TO SAVEPOINT discards what was set after the savepoint only.
        a.execute("BEGIN")
        a.execute("SET statement_timeout = '11s'")
        a.execute("SAVEPOINT s1")
        a.execute("SET statement_timeout = '12s'")
        a.execute("SET work_mem = '4MB'")
        a.execute("ROLLBACK TO SAVEPOINT s1")
        assert a.execute("SHOW statement_timeout").fetchone() == ("11s",)
        a.execute("COMMIT")
        check("11s")
        # RELEASE keeps it.
        a.execute("BEGIN")
        a.execute("SAVEPOINT s1")
        a.execute("SET work_mem = '5MB'")
        a.execute("RELEASE SAVEPOINT s1")
        a.execute("COMMIT")
        check("11s", "5MB")
        # psycopg's own transaction handling (non-autocommit), commit and rollback.
        a.autocommit = False
        a.execute("SET statement_timeout = '14s'")
        a.rollback()
        a.autocommit = True
        check("11s", "5MB")
        a.autocommit = False
        a.execute("SET statement_timeout = '15s'")
        a.commit()
        a.autocommit = True
        check("15s", "5MB")
    finally:
        a.close()
        d.close()


# --------------------------------------------------------------------------- RESET


def _reset_scenario(conn: psycopg.Connection, disturb: Callable[[], None]) -> list[dict[str, str]]:
    snaps = []

    def snap() -> None:
        snaps.append(_read(conn))
        disturb()
        snaps.append(_read(conn))

    snap()
    conn.execute("SET search_path TO other_schema")
    conn.execute("SET application_name = 'other_app'")
    conn.execute("SET statement_timeout = '7s'")
    conn.execute("SET work_mem = '6MB'")
    conn.execute("SET TimeZone TO 'UTC'")
    snap()
    conn.execute("RESET search_path")
    snap()
    conn.execute("RESET ALL")
    snap()
    conn.execute("SET statement_timeout = '9s'")
    conn.execute("SET application_name = 'again'")
    conn.execute("SET work_mem = '7MB'")
    snap()
    conn.execute("SET statement_timeout TO DEFAULT")
    conn.execute("SET application_name TO DEFAULT")
    conn.execute("SET work_mem = DEFAULT")
    snap()
    snaps.append({"application_name (ParameterStatus)": conn.info.parameter_status("application_name")})
    return snaps


def test_reset_returns_to_startup_values(pg, proxy1):
    uid = _uid()
    params = {"application_name": f"start_{uid}", "options": f"-c search_path=start_{uid} -c statement_timeout=4s"}
    with connect_direct(pg, **params) as direct:
        want = _reset_scenario(direct, lambda: None)
    # What PostgreSQL itself does: RESET goes back to the startup packet's values.
    assert want[2]["search_path"] == "other_schema" and want[4]["search_path"] == f"start_{uid}"
    assert want[4]["application_name"] == "other_app"
    assert want[6]["application_name"] == f"start_{uid}" and want[6]["statement_timeout"] == "4s"
    assert want[8]["statement_timeout"] == "9s" and want[10]["statement_timeout"] == "4s"
    assert want[12] == {"application_name (ParameterStatus)": f"start_{uid}"}
    d = Disturber(proxy1)
    try:
        with connect(proxy1, **params) as conn:
            got = _reset_scenario(conn, d)
    finally:
        d.close()
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"snapshot {i}: proxy {g} != PostgreSQL {w}"


# --------------------------------------------------------------------------- simple-query forms


def _multi_scenario(conn, disturb: Callable[[], None]) -> list[dict[str, str]]:
    snaps = []
    conn.execute("SET statement_timeout = '6s'; SET work_mem = '7MB'; SET search_path TO multi_schema")
    disturb()
    snaps.append(_read(conn))
    # An implicit transaction (several statements, one Query) that fails is rolled back whole.
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SET work_mem = '13MB'; SELECT 1/0")
    disturb()
    snaps.append(_read(conn))
    # SET inside an explicit transaction within one Query.
    conn.execute("BEGIN; SET statement_timeout = '17s'; COMMIT")
    conn.execute("BEGIN; SET work_mem = '18MB'; ROLLBACK")
    disturb()
    snaps.append(_read(conn))
    return snaps


def test_multi_statement_set_is_tracked(pg, proxy1):
    with connect_direct(pg) as direct:
        want = _multi_scenario(direct, lambda: None)
    assert want[0]["work_mem"] == "7MB" and want[1]["work_mem"] == "7MB" and want[2]["statement_timeout"] == "17s"
    d = Disturber(proxy1)
    try:
        with connect(proxy1) as conn:
            got = _multi_scenario(conn, d)
        assert got == want
        # psycopg2 (always the simple protocol), autocommit and not.
        p2 = psycopg2.connect(proxy1.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10)
        try:
            p2.autocommit = True
            cur = p2.cursor()
            cur.execute("SET application_name = 'p2_app'; SET work_mem = '12MB'")
            d()
            cur.execute("SELECT current_setting('application_name'), current_setting('work_mem')")
            assert cur.fetchone() == ("p2_app", "12MB")
            p2.autocommit = False
            cur.execute("SET statement_timeout = '3s'")
            p2.commit()
            cur.execute("SET work_mem = '2MB'")
            p2.rollback()
            d()
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone() == ("3s",)
            cur.execute("SHOW work_mem")
            assert cur.fetchone() == ("12MB",)
            p2.rollback()
        finally:
            p2.close()
    finally:
        d.close()


def test_invalid_set_returns_server_error_and_keeps_old_value(proxy1):
    d = Disturber(proxy1)
    try:
        with connect(proxy1) as a:
            a.execute("SET statement_timeout = '5s'")
            with pytest.raises(psycopg.errors.InvalidParameterValue) as ei:
                a.execute("SET statement_timeout = 'banana'")
            assert ei.value.sqlstate == "22023"
            assert "statement_timeout" in str(ei.value)
            assert a.info.transaction_status == IDLE
            assert a.execute("SHOW statement_timeout").fetchone() == ("5s",)
            d()
            assert a.execute("SHOW statement_timeout").fetchone() == ("5s",)
            with pytest.raises(psycopg.errors.UndefinedObject):
                a.execute("SET no_such_parameter_xyz = 1")
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                a.execute("SELECT set_config('work_mem', 'lots', false)")
            d()
            assert a.execute("SELECT current_setting('statement_timeout'), 41 + 1").fetchone() == ("5s", 42)
    finally:
        d.close()


# --------------------------------------------------------------------------- BEGIN and transactions


def test_bare_begin_does_not_hold_the_only_server(proxy1):
    table = f"public.begin_{_uid()}"
    with connect(proxy1) as setup:
        setup.execute(f"CREATE TABLE {table} (id int)")
    a, b = connect(proxy1), connect(proxy1)
    try:
        a.execute("BEGIN")
        assert a.info.transaction_status == INTRANS
        # checkout_timeout is 2 s: B would get 08006 if A's BEGIN had taken the server.
        assert b.execute("SELECT 1").fetchone() == (1,)
        assert b.execute("SELECT 2").fetchone() == (2,)
        a.execute(f"INSERT INTO {table} VALUES (1)")
        pid = _pid(a)
        assert a.info.transaction_status == INTRANS
        a.execute("COMMIT")
        assert a.info.transaction_status == IDLE
        assert b.execute(f"SELECT count(*), pg_backend_pid() FROM {table}").fetchone() == (1, pid)

        # BEGIN with options: replayed as given when the first query comes.
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert b.execute("SELECT 3").fetchone() == (3,)
        assert a.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        a.execute("COMMIT")
        a.execute("START TRANSACTION READ ONLY")
        assert b.execute("SELECT 4").fetchone() == (4,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            a.execute(f"INSERT INTO {table} VALUES (2)")
        assert a.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        a.execute("ROLLBACK")
        # BEGIN then COMMIT / ROLLBACK with nothing in between.
        a.execute("BEGIN")
        a.execute("COMMIT")
        a.execute("BEGIN")
        a.execute("ROLLBACK")
        assert a.info.transaction_status == IDLE
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
        # psycopg (not autocommit) with an isolation level and read-only flag.
        c = connect(proxy1, autocommit=False)
        try:
            c.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
            assert c.execute("SELECT current_setting('transaction_isolation')").fetchone() == ("serializable",)
            c.execute(f"INSERT INTO {table} VALUES (3)")
            c.commit()
            c.read_only = True
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                c.execute(f"INSERT INTO {table} VALUES (4)")
            c.rollback()
        finally:
            c.close()
        assert b.execute(f"SELECT array_agg(id ORDER BY id) FROM {table}").fetchone() == ([1, 3],)
    finally:
        a.close()
        b.close()


def test_asyncpg_transactions(proxy2):
    table = f"public.apg_tx_{_uid()}"
    url = proxy2.url(APP_USER, APP_PASSWORD, APP_DB)

    async def main() -> None:
        c1 = await asyncpg.connect(url, statement_cache_size=0, timeout=10)
        c2 = await asyncpg.connect(url, statement_cache_size=0, timeout=10)
        try:
            await c1.execute(f"CREATE TABLE {table} (id int)")
            async with c1.transaction():
                await c1.execute(f"INSERT INTO {table} VALUES (1)")
                assert await c2.fetchval(f"SELECT count(*) FROM {table}") == 0
            assert await c2.fetchval(f"SELECT count(*) FROM {table}") == 1
            with pytest.raises(ZeroDivisionError):
                async with c1.transaction():
                    await c1.execute(f"INSERT INTO {table} VALUES (2)")
                    raise ZeroDivisionError
            async with c1.transaction(isolation="repeatable_read", readonly=True):
                assert await c1.fetchval("SELECT current_setting('transaction_isolation')") == "repeatable read"
                with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                    await c1.execute(f"INSERT INTO {table} VALUES (3)")
            async with c1.transaction(), c1.transaction():  # nested: a savepoint
                await c1.execute(f"INSERT INTO {table} VALUES (4)")
            assert await c2.fetch(f"SELECT id FROM {table} ORDER BY id") == [(1,), (4,)]
        finally:
            await c1.close()
            await c2.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- pinning


PIN_KINDS = {
    "temp_table": ["CREATE TEMP TABLE t (v int)", "INSERT INTO t VALUES (1)"],
    "advisory_lock": ["SELECT pg_advisory_lock(1)"],
    "listen": ["LISTEN pin_channel"],
}


def _probe_both_servers(proxy) -> set[int]:
    """Run the clean-server probe on both servers of the pool of 2 (two concurrent transactions)."""
    c1, c2 = connect(proxy), connect(proxy)
    try:
        c1.execute("BEGIN")
        c2.execute("BEGIN")
        pids = {_assert_clean_probe(c1), _assert_clean_probe(c2)}
        c1.execute("COMMIT")
        c2.execute("COMMIT")
        return pids
    finally:
        c1.close()
        c2.close()


@pytest.mark.parametrize("kind", list(PIN_KINDS))
def test_session_state_pins_client_to_its_server(pg, proxy2, poll, kind):
    p = connect(proxy2)
    o1, o2 = connect(proxy2), connect(proxy2)
    try:
        for sql in PIN_KINDS[kind]:
            p.execute(sql)
        pinned = _pid(p)
        for i in range(10):
            # The pinned client keeps its server (and its state) across transactions.
            if i % 2:
                with p.transaction():
                    assert _pid(p) == pinned
            assert _pid(p) == pinned
            if kind == "temp_table":
                assert p.execute("SELECT count(*) FROM pg_temp.t").fetchone() == (i + 1,)
                p.execute("INSERT INTO t VALUES (%s)", (i,))
            elif kind == "advisory_lock":
                assert p.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                ).fetchone() == (1,)
            else:
                assert p.execute("SELECT ARRAY(SELECT pg_listening_channels())").fetchone() == (["pin_channel"],)
            # Everyone else works on the other server and never sees the pinned state.
            for o in (o1, o2):
                assert _assert_clean_probe(o) != pinned
            if kind == "advisory_lock":
                # Tried from outside the proxy: pg_try_advisory_lock through it would pin the
                # trying client too (the proxy cannot see whether the lock was granted).
                got = pg.psql("SELECT pg_try_advisory_lock(1)", db=APP_DB)
                assert got == "f", "another session acquired the pinned client's advisory lock"
        # With the other server held in a transaction, the pinned client still runs.
        o1.execute("BEGIN")
        other = _assert_clean_probe(o1)
        assert other != pinned
        assert _pid(p) == pinned
        o1.execute("COMMIT")
    finally:
        o1.close()
        o2.close()
        p.close()
    # Once it left, its server is clean for the next clients.
    pids = poll(lambda: _probe_both_servers(proxy2), timeout=15, what="both servers clean")
    assert len(pids) == 2
    if kind == "advisory_lock":
        poll(
            lambda: pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0",
            what="no advisory lock left on PostgreSQL",
        )
    with connect(proxy2) as c:
        assert c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)


def test_session_state_refuse(pg, proxy_factory):
    proxy = proxy_factory(
        general={
            "default_pool_size": 2,
            "pooler_mode": "transaction",
            "checkout_timeout": 10000,
            "session_state": "refuse",
        },
        databases=[app_database(pg)],
        users=[app_user(), session_user()],
    )
    with connect(proxy) as conn:
        for sql in ("LISTEN refused_channel", "SELECT pg_advisory_lock(1)", "CREATE TEMP TABLE t (v int)"):
            # As a Query, and prepared with the extended protocol (as JDBC sends everything).
            for prepare in (False, True):
                with pytest.raises(psycopg.errors.FeatureNotSupported) as ei:
                    conn.execute(sql, prepare=prepare)
                assert ei.value.sqlstate == "0A000", (sql, prepare)
                assert conn.info.transaction_status == IDLE
                assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
        # Inside a transaction block too, with its server held: as at any error in PostgreSQL
        # the transaction fails, and its COMMIT rolls back.
        conn.execute("CREATE TABLE refuse_probe (v int)")
        for prepare in (False, True):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO refuse_probe VALUES (1)")
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                conn.execute("LISTEN refused_channel", prepare=prepare)
            assert conn.info.transaction_status == INERROR, prepare
            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                conn.execute("SELECT 1")
            conn.execute("COMMIT")
            assert conn.info.transaction_status == IDLE
            assert conn.execute("SELECT count(*) FROM refuse_probe").fetchone() == (0,), prepare
        # And in a transaction the proxy began without a server: the same, whether the next
        # statement is answered here (COMMIT) or on a server the failure is replayed on.
        for prepare in (False, True):
            for then_select in (False, True):
                conn.execute("BEGIN")
                with pytest.raises(psycopg.errors.FeatureNotSupported):
                    conn.execute("LISTEN refused_channel", prepare=prepare)
                assert conn.info.transaction_status == INERROR, prepare
                if then_select:
                    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                        conn.execute("INSERT INTO refuse_probe VALUES (2)", prepare=prepare)
                assert conn.execute("COMMIT").statusmessage == "ROLLBACK"
                assert conn.info.transaction_status == IDLE
        assert conn.execute("SELECT count(*) FROM refuse_probe").fetchone() == (0,)
        # In a pipeline, behind statements already on their way: refused in its turn, and the
        # batch's implicit transaction fails with it, as at any error in PostgreSQL.
        for sql in ("LISTEN refused_channel", "SELECT pg_advisory_lock(1)"):
            for prepare in (False, True):
                with pytest.raises(psycopg.errors.FeatureNotSupported), conn.pipeline():
                    conn.execute("INSERT INTO refuse_probe VALUES (3)", prepare=prepare)
                    conn.execute(sql, prepare=prepare)
                assert conn.info.transaction_status == IDLE
                assert conn.execute("SELECT count(*) FROM refuse_probe").fetchone() == (0,), (sql, prepare)
        # Nothing of it reached a server.
        assert _probe_both_servers(proxy)
    assert pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0"
    # Session mode is not affected.
    with connect(proxy, SESS_USER, SESS_PASSWORD) as s:
        s.execute("LISTEN session_channel")
        s.execute("CREATE TEMP TABLE t (v int)")
        assert s.execute("SELECT ARRAY(SELECT pg_listening_channels())").fetchone() == (["session_channel"],)


# --------------------------------------------------------------------------- scripts compared with PostgreSQL

SCRIPT_GUCS = (
    "search_path",
    "application_name",
    "TimeZone",
    "DateStyle",
    "IntervalStyle",
    "statement_timeout",
    "lock_timeout",
    "work_mem",
    "extra_float_digits",
    "default_transaction_isolation",
)

SET_FORMS = [
    "SET TIME ZONE 'Europe/Paris'",
    "SET SESSION statement_timeout TO 3000",
    "SET SCHEMA 'sch_x'",
    'SET search_path = "Quoted", public',
    "SET work_mem TO '2MB'",
    "SET application_name TO 'with '' quote'",
    "SET DateStyle = 'German'",
    "SET IntervalStyle = iso_8601",
    "SET extra_float_digits = 1",
    "SET lock_timeout = '2s'",
    "SET search_path = DEFAULT",
    "SET TIME ZONE LOCAL",
    "SET default_transaction_isolation = 'repeatable read'",
    "BEGIN",
    "SHOW transaction_isolation",
    "COMMIT",
    "SELECT set_config('work_mem', '11MB', false)",
    "RESET ALL",
]

TRANSACTION_FORMS = [
    # Transaction blocks with no other statement in them (a proxy may answer these itself).
    "BEGIN", "SET work_mem = '3MB'", "ROLLBACK",
    "BEGIN", "SET LOCAL work_mem = '3MB'", "COMMIT",
    "BEGIN", "SET work_mem = '5MB'", "COMMIT",
    "BEGIN", "SET statement_timeout = '4s'", "SAVEPOINT a", "SET statement_timeout = '6s'", "ROLLBACK TO a", "COMMIT",
    "BEGIN", "SET statement_timeout = '7s'", "SAVEPOINT a", "SET lock_timeout = '6s'", "RELEASE a", "ROLLBACK",
    "BEGIN", "SET statement_timeout = 'banana'", "SHOW statement_timeout", "ROLLBACK",
    "BEGIN", "SELECT 1/0", "SET work_mem = '7MB'", "ROLLBACK",
    "START TRANSACTION", "SET LOCAL statement_timeout = '8s'", "SHOW statement_timeout",
    "SET SESSION work_mem = '6MB'", "ROLLBACK",
    "BEGIN", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SHOW transaction_isolation", "COMMIT",
    "BEGIN", "SET LOCAL lock_timeout = '9s'", "COMMIT AND CHAIN", "SHOW lock_timeout", "SET lock_timeout = '10s'",
    "END",
    "BEGIN", "BEGIN", "SET application_name = 'in_tx'", "ABORT",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT outside",
    "SET LOCAL work_mem = '12MB'",
    "BEGIN ISOLATION LEVEL READ COMMITTED, READ ONLY", "SET work_mem = '13MB'", "COMMIT",
    "RESET work_mem",
]


def _run_script(conn: psycopg.Connection, script: list, disturb: Callable[[], None], extended: bool) -> list:
    """Run each statement; record its outcome, notices, transaction status and ParameterStatus,
    and (outside transactions, after another client used the server) the client's settings."""
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(f"{d.severity_nonlocalized}:{d.message_primary}"))
    out = []
    gucs = "SELECT " + ", ".join(f"current_setting('{g}')" for g in SCRIPT_GUCS)
    for step in script:
        sql, params = step if isinstance(step, tuple) else (step, None)
        notices.clear()
        try:
            if extended:
                with conn.pipeline():
                    cur = conn.execute(sql, params)
            else:
                cur = conn.execute(sql, params)
            outcome = cur.fetchall() if cur.description else cur.statusmessage
        except psycopg.Error as e:
            outcome = f"error {e.sqlstate}"
        status = conn.info.transaction_status.name
        record = [sql, outcome, status, list(notices), conn.info.parameter_status("application_name"),
                  conn.info.parameter_status("TimeZone"), conn.info.parameter_status("DateStyle")]
        if status == "IDLE":
            disturb()
            record.append(conn.execute(gucs).fetchone())
        out.append(record)
    return out


@pytest.mark.parametrize("extended", [False, True], ids=["simple", "extended"])
@pytest.mark.parametrize("script", ["set_forms", "transaction_forms"])
def test_set_script_matches_postgres(pg, proxy1, script, extended):
    steps = {"set_forms": SET_FORMS, "transaction_forms": TRANSACTION_FORMS}[script]
    params = {"application_name": "script_start", "options": "-c search_path=start_path -c work_mem=1MB"}
    with connect_direct(pg, **params) as direct:
        want = _run_script(direct, steps, lambda: None, extended)
    d = Disturber(proxy1)
    try:
        with connect(proxy1, **params) as conn:
            got = _run_script(conn, steps, d, extended)
    finally:
        d.close()
    for g, w in zip(got, want, strict=True):
        assert g == w, f"after {w[0]!r}:\n  proxy      {g[1:]}\n  PostgreSQL {w[1:]}"


def _pipeline_scenario(conn: psycopg.Connection, disturb: Callable[[], None]) -> list:
    out = []

    def settings() -> tuple:
        disturb()
        return conn.execute("SELECT current_setting('work_mem'), current_setting('statement_timeout')").fetchone()

    # An error before the Sync rolls back the SET of the same implicit transaction.
    try:
        with conn.pipeline():
            conn.execute("SET work_mem = '3MB'")
            conn.execute("SELECT 1/0")
    except psycopg.errors.DivisionByZero:
        out.append("error")
    out.append(settings())
    # Two Sync blocks: the first one's SET stays, the failed second one's does not.
    try:
        with conn.pipeline() as p:
            conn.execute("SET work_mem = '4MB'")
            conn.execute("SELECT 1")
            p.sync()
            conn.execute("SET statement_timeout = '2s'")
            conn.execute("SELECT 1/0")
    except psycopg.errors.DivisionByZero:
        out.append("error")
    out.append(settings())
    # SET and a query in one block, no error.
    with conn.pipeline():
        conn.execute("SET statement_timeout = '3s'")
        conn.execute("SET LOCAL work_mem = '5MB'")
    out.append(settings())
    return out


def test_set_in_pipelines_matches_postgres(pg, proxy1):
    with connect_direct(pg) as direct:
        want = _pipeline_scenario(direct, lambda: None)
    assert want[0] == "error" and want[1][0] != "3MB" and want[3] == ("4MB", "0")
    d = Disturber(proxy1)
    try:
        with connect(proxy1) as conn:
            assert _pipeline_scenario(conn, d) == want
    finally:
        d.close()


def test_set_session_characteristics_is_tracked_not_pinned(proxy1):
    """PgJDBC's setTransactionIsolation() sends this outside transactions; it is a plain setting
    (default_transaction_isolation), so the client should not be pinned for it."""
    a, b = connect(proxy1), connect(proxy1)
    try:
        a.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # Pool of 1, checkout_timeout 2 s: B gets 08006 if A was pinned to the only server.
        assert b.execute("SHOW default_transaction_isolation").fetchone() == ("read committed",)
        assert a.execute("SHOW default_transaction_isolation").fetchone() == ("repeatable read",)
        with a.transaction():
            assert a.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        with b.transaction():
            assert b.execute("SHOW transaction_isolation").fetchone() == ("read committed",)
    finally:
        a.close()
        b.close()


def test_set_config_with_bound_parameters_pins(proxy1):
    """set_config() with a bound value cannot be replayed from the query text, so the client is
    pinned to its server (documented): it keeps its value across transactions, and once it
    leaves, the next client on that server (pool of 1) starts clean."""
    uid = _uid()
    a = connect(proxy1)
    try:
        a.execute(f"SET myapp.tenant = 'sql_{uid}'")
        assert a.execute("SELECT current_setting('myapp.tenant')").fetchone() == (f"sql_{uid}",)
        assert a.execute("SELECT set_config('myapp.tenant', %s, false)", (f"bound_{uid}",)).fetchone() == (
            f"bound_{uid}",
        )
        pid = _pid(a)
        for _ in range(3):
            with a.transaction():
                assert a.execute("SELECT current_setting('myapp.tenant')").fetchone() == (f"bound_{uid}",)
            assert _pid(a) == pid
    finally:
        a.close()
    with connect(proxy1) as b:
        assert b.execute("SELECT current_setting('myapp.tenant', true)").fetchone()[0] in (None, "")
        assert _pid(b) == pid
