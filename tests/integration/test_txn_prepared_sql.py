"""prepared_statements = "full": SQL-level PREPARE / EXECUTE / DEALLOCATE share servers the way
protocol-level statements do, without pinning the client."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect_direct
from tests.harness.config import app_database, app_user
from tests.harness.rawclient import RawConn


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={
            "default_pool_size": 1,
            "pooler_mode": "transaction",
            "checkout_timeout": 3000,
            "prepared_statements": "full",
        },
        databases=[app_database(pg)],
        users=[app_user()],
    )


def _connect(proxy) -> psycopg.Connection:
    return psycopg.connect(
        proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10, autocommit=True, prepare_threshold=None
    )


def test_same_name_different_clients_on_one_server(proxy):
    a, b = _connect(proxy), _connect(proxy)
    try:
        assert a.execute("PREPARE q (int) AS SELECT $1 + 1").statusmessage == "PREPARE"
        assert b.execute("PREPARE q (int) AS SELECT $1 * 10").statusmessage == "PREPARE"
        for i in range(20):
            assert a.execute(f"EXECUTE q({i})").fetchone() == (i + 1,)
            assert b.execute(f"EXECUTE q({i})").fetchone() == (i * 10,)
        # Pool of one: both ran on the same server, neither pinned it.
        assert a.execute("SELECT pg_backend_pid()").fetchone() == b.execute("SELECT pg_backend_pid()").fetchone()
        names = [r[0] for r in a.execute("SELECT name FROM pg_prepared_statements").fetchall()]
        assert names and all(n.startswith("__pgdog_ev_") for n in names), names
        assert "q" not in names
    finally:
        a.close()
        b.close()


def test_deallocate_and_duplicates_are_per_client(proxy):
    a, b = _connect(proxy), _connect(proxy)
    try:
        a.execute("PREPARE two (int, text) AS SELECT $1, $2")
        b.execute("PREPARE two (int, text) AS SELECT $1, $2")
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            a.execute("PREPARE two AS SELECT 2")
        assert a.execute("EXECUTE two(1, 'x')").fetchone() == (1, "x")
        a.execute("DEALLOCATE two")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            a.execute("EXECUTE two(1, 'x')")
        assert b.execute("EXECUTE two(2, 'y')").fetchone() == (2, "y")
        b.execute("DEALLOCATE ALL")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            b.execute("EXECUTE two(2, 'y')")
    finally:
        a.close()
        b.close()


def test_bad_statement_fails_at_execute_and_leaves_nothing(proxy):
    with _connect(proxy) as a:
        a.execute("PREPARE broken AS SELECT * FROM no_such_table_here")
        with pytest.raises(psycopg.errors.UndefinedTable):
            a.execute("EXECUTE broken")
        with pytest.raises(psycopg.errors.UndefinedTable):
            a.execute("EXECUTE broken")
        assert a.execute("SELECT 1").fetchone() == (1,)


def test_execute_inside_transactions(proxy):
    with _connect(proxy) as a:
        a.execute("PREPARE ins AS SELECT $1::int * 2")
        with a.transaction():
            assert a.execute("EXECUTE ins(21)").fetchone() == (42,)
        a.execute("BEGIN")
        assert a.execute("EXECUTE ins(5)").fetchone() == (10,)
        a.execute("ROLLBACK")
        assert a.execute("EXECUTE ins(6)").fetchone() == (12,)


def _duplicate_in_a_transaction(conn: psycopg.Connection) -> list:
    out: list = []
    conn.execute("PREPARE dup_t AS SELECT 1")
    conn.execute("BEGIN")
    conn.execute("SELECT 1")
    for sql in ("PREPARE dup_t AS SELECT 2", "SELECT 3"):
        try:
            conn.execute(sql)
            out.append("no error")
        except psycopg.Error as e:
            out.append(e.sqlstate)
        out.append(conn.info.transaction_status.name)
    conn.execute("ROLLBACK")
    out.append(conn.execute("EXECUTE dup_t").fetchone())
    conn.execute("DEALLOCATE dup_t")
    return out


def test_a_duplicate_prepare_fails_its_transaction_like_postgres(pg, proxy):
    """The proxy answers a duplicate name itself (42P05), as PostgreSQL would, and fails the
    transaction as PostgreSQL's error does: the next statement gets 25P02. It used to leave the
    transaction open."""
    with connect_direct(pg) as direct:
        want = _duplicate_in_a_transaction(direct)
    assert want == ["42P05", "INERROR", "25P02", "INERROR", (1,)]
    with _connect(proxy) as conn:
        assert _duplicate_in_a_transaction(conn) == want


def test_a_prepare_the_proxy_sends_before_the_execute_keeps_the_client_on_its_server(pg, proxy):
    """SET, unsynced, then EXECUTE of a statement this server lacks: the proxy's PREPARE goes
    first and ends the SET's implicit transaction, committing it or (here: its table is gone)
    rolling it back, out of the client's sight. The client then keeps that server, whose
    settings are the truth: another client cannot take it meanwhile (checkout_timeout), and the
    client sees what PostgreSQL shows. It used to count the SET as done, and got it replayed
    after another client had had the server."""
    table = f"gone_{uuid.uuid4().hex[:8]}"
    direct, _ = RawConn.password_login(pg.host, pg.port, APP_USER, APP_DB, APP_PASSWORD)
    try:
        _set_then_execute(direct, table)
        want = _show(direct)
    finally:
        direct.close()
    assert want == "4MB"
    conn, login = RawConn.password_login(proxy.host, proxy.port, APP_USER, APP_DB, APP_PASSWORD)
    assert login[-1] == (b"Z", b"I"), login
    try:
        _set_then_execute(conn, table)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(_show_work_mem, proxy).exception(timeout=20)  # (times out: the server is kept)
        assert _show(conn) == want
    finally:
        conn.close()


def _set_then_execute(conn: RawConn, table: str) -> None:
    """PREPARE over a table then dropped; SET work_mem (Parse/Bind/Execute), a Query EXECUTE
    of it, a Sync."""
    for sql in (f"CREATE TABLE {table} (a int)", f"PREPARE q_gone AS SELECT * FROM {table}", f"DROP TABLE {table}"):
        conn.sock.sendall(fe.query(sql))
        assert b"E" not in [t for t, _ in conn.until(b"Z")], sql
    conn.sock.sendall(fe.parse("", "SET work_mem = '11MB'") + fe.bind("", "", [], [], []) + fe.execute("")
                      + fe.query("EXECUTE q_gone") + fe.sync())
    first = conn.until(b"Z")
    assert b"E" in [t for t, _ in first], first
    conn.until(b"Z")


def _show(conn: RawConn) -> str:
    conn.sock.sendall(fe.query("SHOW work_mem"))
    rows = [body for t, body in conn.until(b"Z") if t == b"D"]
    return bytes(be.parse_data_row(rows[0])[0]).decode()


def _show_work_mem(proxy) -> str:
    with _connect(proxy) as conn:
        return conn.execute("SHOW work_mem").fetchone()[0]


def test_a_statement_whose_plan_no_longer_fits_works_once_prepared_again(pg, proxy):
    """PREPARE over ``SELECT *``, ALTER TABLE, EXECUTE fails (0A000, as on PostgreSQL); after
    DEALLOCATE and the same PREPARE, EXECUTE sees the new column, not the broken statement."""
    table = "plan_sql_t"
    a = _connect(proxy)
    try:
        a.execute(f"DROP TABLE IF EXISTS {table}")
        a.execute(f"CREATE TABLE {table} (id int)")
        a.execute(f"INSERT INTO {table} VALUES (1)")
        a.execute(f"PREPARE q AS SELECT * FROM {table}")
        assert a.execute("EXECUTE q").fetchall() == [(1,)]
        a.execute(f"ALTER TABLE {table} ADD COLUMN v text DEFAULT 'new'")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            a.execute("EXECUTE q")
        a.execute("DEALLOCATE q")
        a.execute(f"PREPARE q AS SELECT * FROM {table}")
        assert a.execute("EXECUTE q").fetchall() == [(1, "new")]
        a.execute(f"DROP TABLE {table}")
    finally:
        a.close()
