"""Named prepared statements in transaction mode (`prepared_statements = "extended"`, the default):
each client keeps its own statement names, the proxy prepares them on whichever server the client
gets under proxy-global names (`__pgdog_ev_...`), the same text is prepared once per server,
Close / DEALLOCATE only affect the client that sent them, and `prepared_statements_limit` bounds
what stays prepared on a server. `prepared_statements = "disabled"` passes names through."""

from __future__ import annotations

import asyncio
import re
import uuid

import asyncpg
import psycopg
import psycopg2
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.pgbench import run_pgbench

SQLSTATE = psycopg.pq.DiagnosticField.SQLSTATE
OK = psycopg.pq.ExecStatus.COMMAND_OK
TUPLES = psycopg.pq.ExecStatus.TUPLES_OK
FATAL = psycopg.pq.ExecStatus.FATAL_ERROR
PROXY_PREFIX = "__pgdog_ev_"


def _db(pg, name: str = APP_DB) -> list[dict]:
    return [app_database(pg, name, name)]


def _users(name: str = APP_DB) -> list[dict]:
    return [app_user(name)]


def _txn(pool: int, **extra) -> dict:
    return {"default_pool_size": pool, "pooler_mode": "transaction", "checkout_timeout": 10000, **extra}


@pytest.fixture(scope="module")
def proxy1(pg, module_proxy_factory):
    return module_proxy_factory(general=_txn(1), databases=_db(pg), users=_users())


@pytest.fixture(scope="module")
def proxy4(pg, module_proxy_factory):
    return module_proxy_factory(general=_txn(4), databases=_db(pg), users=_users())


@pytest.fixture(scope="module")
def proxy_limit(pg, module_proxy_factory):
    return module_proxy_factory(general=_txn(1, prepared_statements_limit=2), databases=_db(pg), users=_users())


@pytest.fixture(scope="module")
def proxy_disabled(pg, module_proxy_factory):
    return module_proxy_factory(
        general={
            "default_pool_size": 2,
            "pooler_mode": "session",
            "checkout_timeout": 10000,
            "prepared_statements": "disabled",
        },
        databases=_db(pg),
        users=_users(),
    )


def _connect(proxy, prepare_threshold: int | None = 0, **kw) -> psycopg.Connection:
    """Unlike most tests, prepares every statement (psycopg's threshold 0) unless told otherwise."""
    return connect(proxy, prepare_threshold=prepare_threshold, **kw)


def _inspect(proxy) -> psycopg.Connection:
    """A client that never prepares anything itself (unnamed statements only)."""
    return _connect(proxy, prepare_threshold=None)


def _server_statements(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute("SELECT name, statement FROM pg_prepared_statements ORDER BY name").fetchall()


def _uid() -> str:
    return uuid.uuid4().hex[:8]


# --------------------------------------------------------------------------- asyncpg


def test_asyncpg_statement_cache_many_clients(proxy4):
    """32 asyncpg clients with their statement cache on over a pool of 4, landing on different
    servers from one query to the next: every result right, no missing / duplicate statement
    errors. (asyncpg's names are unique within a process; name clashes are tested below.)"""
    url = proxy4.url(APP_USER, APP_PASSWORD, APP_DB)
    uid = _uid()

    async def client(k: int) -> int:
        conn = await asyncpg.connect(url, timeout=15)
        done = 0
        try:
            for i in range(20):
                assert await conn.fetchval(f"SELECT $1::int + {k} /* {uid} */", i) == i + k
                assert await conn.fetchval(f"SELECT $1::int * 2 /* shared {uid} */", i) == 2 * i
                if i % 4 == 0:
                    row = await conn.fetchrow("SELECT $1::text AS s, $2::int AS n", f"t{k}", i)
                    assert (row["s"], row["n"]) == (f"t{k}", i)
                if i % 5 == 0:
                    async with conn.transaction():
                        assert await conn.fetchval(f"SELECT $1::int + {k} /* {uid} */", -i) == k - i
                        assert await conn.fetchval("SELECT $1::text || 'x'", str(k)) == f"{k}x"
                done += 1
            stmt = await conn.prepare(f"SELECT $1::int - $2::int /* {uid} */")
            for i in range(5):
                assert await stmt.fetchval(100, i + k) == 100 - i - k
            params = [t.name for t in stmt.get_parameters()]
            assert params == ["int4", "int4"]
        finally:
            await conn.close()
        return done

    async def main() -> list:
        return await asyncio.gather(*(client(k) for k in range(32)), return_exceptions=True)

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert results == [20] * 32
    with _inspect(proxy4) as c:
        for _ in range(8):  # whichever servers these land on, no client name is there
            names = [n for n, _ in _server_statements(c)]
            assert not [n for n in names if n.startswith("__asyncpg")], names


# --------------------------------------------------------------------------- psycopg 3


def test_psycopg_prepared_names_are_proxy_global(proxy1):
    uid = _uid()
    conns = [_connect(proxy1) for _ in range(3)]
    try:
        for i in range(8):
            for k, conn in enumerate(conns):
                cur = conn.cursor()
                got = cur.execute(f"SELECT %s::int + {100 * k} /* own {uid} */", (i,), prepare=True).fetchone()
                assert got == (i + 100 * k,)
                got = cur.execute(f"SELECT %s::int * 3 /* shared {uid} */", (i,), prepare=True).fetchone()
                assert got == (3 * i,)
                with conn.transaction():
                    got = cur.execute("SELECT %s::text || '!'", (f"c{k}",), prepare=True).fetchone()
                    assert got == (f"c{k}!",)
        with _inspect(proxy1) as c:
            stmts = _server_statements(c)
        names = [n for n, _ in stmts]
        assert names, "nothing prepared on the server"
        assert all(n.startswith(PROXY_PREFIX) for n in names), names
        assert not any(n.startswith("_pg3_") for n in names), names
        ours = [s for _, s in stmts if uid in s]
        # 3 own texts + 1 shared text of this test: each prepared once on the one server.
        assert len(ours) == 4, stmts
    finally:
        for conn in conns:
            conn.close()


def test_same_text_shares_one_server_statement(proxy1):
    marker = f"share_{_uid()}"
    text = f"SELECT %s::int + 424242 /* {marker} */"
    a, b = _connect(proxy1), _connect(proxy1)
    try:
        for i in range(5):
            assert a.execute(text, (i,), prepare=True).fetchone() == (i + 424242,)
            assert b.execute(text, (-i,), prepare=True).fetchone() == (424242 - i,)
        with _inspect(proxy1) as c:
            rows = c.execute(
                "SELECT name, statement FROM pg_prepared_statements WHERE statement LIKE %s", (f"%{marker}%",)
            ).fetchall()
        assert len(rows) == 1, rows
        assert rows[0][0].startswith(PROXY_PREFIX)
    finally:
        a.close()
        b.close()


def _err(res) -> str | None:
    code = res.error_field(SQLSTATE)
    return code.decode() if code else None


def test_close_and_deallocate_only_affect_their_client(proxy1):
    """Low-level libpq calls so the names are exactly ours: both clients call their statement
    "s1" (different texts) and "shared" (same text)."""
    a, b = _connect(proxy1, None), _connect(proxy1, None)
    pa, pb = a.pgconn, b.pgconn
    try:
        assert pa.prepare(b"s1", b"SELECT $1::int + 1").status == OK
        assert pb.prepare(b"s1", b"SELECT $1::int + 2").status == OK
        assert pa.prepare(b"shared", b"SELECT $1::int * 10").status == OK
        assert pb.prepare(b"shared", b"SELECT $1::int * 10").status == OK
        assert pa.exec_prepared(b"s1", [b"5"]).get_value(0, 0) == b"6"
        assert pb.exec_prepared(b"s1", [b"5"]).get_value(0, 0) == b"7"
        # Describe of a prepared statement.
        res = pb.describe_prepared(b"s1")
        assert (res.status, res.nparams, res.param_type(0), res.nfields, res.ftype(0)) == (OK, 1, 23, 1, 23)
        # Protocol Close of A's statements.
        assert pa.close_prepared(b"s1").status == OK
        assert pa.close_prepared(b"shared").status == OK
        res = pa.exec_prepared(b"s1", [b"5"])
        assert (res.status, _err(res)) == (FATAL, "26000")
        res = pa.exec_prepared(b"shared", [b"5"])
        assert (res.status, _err(res)) == (FATAL, "26000")
        assert pb.exec_prepared(b"s1", [b"5"]).get_value(0, 0) == b"7"
        assert pb.exec_prepared(b"shared", [b"5"]).get_value(0, 0) == b"50"
        # A prepares again (same name, new text), then DEALLOCATE ALL drops only A's.
        assert pa.prepare(b"s1", b"SELECT $1::int + 3").status == OK
        assert pa.exec_prepared(b"s1", [b"5"]).get_value(0, 0) == b"8"
        a.execute("DEALLOCATE ALL")
        res = pa.exec_prepared(b"s1", [b"5"])
        assert (res.status, _err(res)) == (FATAL, "26000")
        assert pb.exec_prepared(b"s1", [b"5"]).get_value(0, 0) == b"7"
        assert pb.exec_prepared(b"shared", [b"6"]).get_value(0, 0) == b"60"
        # DEALLOCATE of one name (SQL) too.
        b.execute("DEALLOCATE shared")
        res = pb.exec_prepared(b"shared", [b"5"])
        assert (res.status, _err(res)) == (FATAL, "26000")
        assert pb.exec_prepared(b"s1", [b"1"]).get_value(0, 0) == b"3"
        # Inside a transaction.
        a.execute("BEGIN")
        assert pa.prepare(b"tx", b"SELECT $1::text || 'y'").status == OK
        assert pa.exec_prepared(b"tx", [b"x"]).get_value(0, 0) == b"xy"
        a.execute("COMMIT")
        assert pa.exec_prepared(b"tx", [b"z"]).get_value(0, 0) == b"zy"
    finally:
        a.close()
        b.close()


def test_duplicate_name_in_one_client_is_an_error_like_postgres(pg, proxy1):
    """Parse of a name the client already uses fails with 42P05, as on PostgreSQL (the other
    client's equal name is no conflict), and the connection keeps working."""
    with psycopg.connect(pg.dsn(APP_USER, APP_DB, APP_PASSWORD), autocommit=True) as direct:
        assert direct.pgconn.prepare(b"dup", b"SELECT 1").status == OK
        res = direct.pgconn.prepare(b"dup", b"SELECT 2")
        assert (res.status, _err(res)) == (FATAL, "42P05")
    a, b = _connect(proxy1, None), _connect(proxy1, None)
    try:
        assert a.pgconn.prepare(b"dup", b"SELECT 1").status == OK
        assert b.pgconn.prepare(b"dup", b"SELECT 2").status == OK
        res = a.pgconn.prepare(b"dup", b"SELECT 3")
        assert (res.status, _err(res)) == (FATAL, "42P05")
        assert a.pgconn.exec_prepared(b"dup", []).get_value(0, 0) == b"1"
        assert b.pgconn.exec_prepared(b"dup", []).get_value(0, 0) == b"2"
        assert a.execute("SELECT 4").fetchone() == (4,)
    finally:
        a.close()
        b.close()


def _plan_change(a: psycopg.Connection, b: psycopg.Connection, table: str) -> list[object]:
    """Two clients prepare ``SELECT * FROM table``; the table gains a column; each runs its
    statement, then prepares the text again under a new name (as PgJDBC does on this error)."""
    def run(conn: psycopg.Connection, name: bytes) -> object:
        res = conn.pgconn.exec_prepared(name, [])
        return _err(res) or [res.get_value(0, i) for i in range(res.nfields)]

    sql = f"SELECT * FROM {table}".encode()
    got: list[object] = []
    for conn in (a, b):
        got.append(conn.pgconn.prepare(b"s1", sql).status == OK)
        got.append(run(conn, b"s1"))
    a.execute(f"ALTER TABLE {table} ADD COLUMN v text DEFAULT 'new'")
    got.append(run(a, b"s1"))
    got.append(a.pgconn.prepare(b"s2", sql).status == OK)
    got += [run(a, b"s2"), run(a, b"s2"), run(b, b"s1")]
    got.append(b.pgconn.prepare(b"s2", sql).status == OK)
    got += [run(b, b"s2"), run(a, b"s2")]
    return got


def test_a_statement_whose_plan_no_longer_fits_is_prepared_again_like_postgres(pg, proxy1):
    """After an ALTER TABLE, a statement over ``SELECT *`` fails with "cached plan must not change
    result type" (0A000) until the client prepares the text again. The proxy shares one server
    statement per text: the text prepared again must get a fresh one, not the broken one back
    (PgJDBC's retry failed the same way every time), while the other client's statement still
    fails as on PostgreSQL until it too prepares again."""
    results = []
    for target in ("direct", "proxy"):
        table = f"plan_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg.dsn(APP_USER, APP_DB, APP_PASSWORD), autocommit=True) as setup:
            setup.execute(f"CREATE TABLE {table} (id int)")
            setup.execute(f"INSERT INTO {table} VALUES (1)")
        if target == "direct":
            a, b = (psycopg.connect(pg.dsn(APP_USER, APP_DB, APP_PASSWORD), autocommit=True) for _ in range(2))
        else:
            a, b = _connect(proxy1, None), _connect(proxy1, None)
        try:
            results.append(_plan_change(a, b, table))
        finally:
            a.close()
            b.close()
    assert results[0][4] == "0A000" and results[0][6] == [b"1", b"new"], results[0]
    assert results[1] == results[0]


def test_same_text_with_different_parameter_types_is_not_shared(proxy1):
    """Parse carries parameter type OIDs: "SELECT pg_typeof($1)" as int4 and as text are two
    different statements even though the text is equal."""
    text = f"SELECT pg_typeof($1)::text /* {_uid()} */".encode()
    a, b = _connect(proxy1, None), _connect(proxy1, None)
    try:
        assert a.pgconn.prepare(b"typed", text, param_types=[23]).status == OK
        assert b.pgconn.prepare(b"typed", text, param_types=[25]).status == OK
        assert a.pgconn.exec_prepared(b"typed", [b"1"]).get_value(0, 0) == b"integer"
        assert b.pgconn.exec_prepared(b"typed", [b"1"]).get_value(0, 0) == b"text"
        assert a.pgconn.describe_prepared(b"typed").param_type(0) == 23
        assert b.pgconn.describe_prepared(b"typed").param_type(0) == 25
    finally:
        a.close()
        b.close()


def test_failed_parse_creates_no_name_and_two_names_share_a_text(proxy1):
    a, b = _connect(proxy1, None), _connect(proxy1, None)
    try:
        res = a.pgconn.prepare(b"bad", b"SELEC 1")
        assert (res.status, _err(res)) == (FATAL, "42601")
        res = a.pgconn.exec_prepared(b"bad", [])
        assert (res.status, _err(res)) == (FATAL, "26000")
        # The name is free: a correct statement can take it.
        assert a.pgconn.prepare(b"bad", b"SELECT 'good'").status == OK
        assert a.pgconn.exec_prepared(b"bad", []).get_value(0, 0) == b"good"
        # One client, two names for one text: closing one leaves the other.
        text = f"SELECT $1::int * 5 /* {_uid()} */".encode()
        assert a.pgconn.prepare(b"n1", text).status == OK
        assert a.pgconn.prepare(b"n2", text).status == OK
        assert b.pgconn.prepare(b"n1", text).status == OK
        assert a.pgconn.close_prepared(b"n1").status == OK
        assert a.pgconn.exec_prepared(b"n2", [b"2"]).get_value(0, 0) == b"10"
        assert b.pgconn.exec_prepared(b"n1", [b"3"]).get_value(0, 0) == b"15"
        res = a.pgconn.exec_prepared(b"n1", [b"2"])
        assert (res.status, _err(res)) == (FATAL, "26000")
        # Close of a name that does not exist is not an error (as on PostgreSQL).
        assert a.pgconn.close_prepared(b"never_prepared").status == OK
        assert a.execute("SELECT 1").fetchone() == (1,)
    finally:
        a.close()
        b.close()


def test_prepared_statements_in_transactions_and_sql_prepare(proxy1):
    """psycopg (not autocommit) binds its prepared statements right after a BEGIN the proxy may
    have answered itself; SQL PREPARE / EXECUTE / DEALLOCATE work too (pinned or not)."""
    uid = _uid()
    conn = _connect(proxy1, autocommit=False)
    other = _inspect(proxy1)
    try:
        for i in range(5):
            assert conn.execute(f"SELECT %s::int + 3 /* tx {uid} */", (i,), prepare=True).fetchone() == (i + 3,)
            conn.commit()
            assert other.execute("SELECT 1").fetchone() == (1,)
            assert conn.execute(f"SELECT %s::int + 3 /* tx {uid} */", (i,), prepare=True).fetchone() == (i + 3,)
            conn.rollback()
        # SQL PREPARE is session state the proxy may pin the client for; it must work either way.
        conn.autocommit = True
        conn.execute(f"PREPARE sqlprep_{uid} (int) AS SELECT $1 * 7")
        assert conn.execute(f"EXECUTE sqlprep_{uid} (6)").fetchone() == (42,)
        conn.execute("SELECT 1")
        assert conn.execute(f"EXECUTE sqlprep_{uid} (7)").fetchone() == (49,)
        conn.execute(f"DEALLOCATE sqlprep_{uid}")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            conn.execute(f"EXECUTE sqlprep_{uid} (6)")
        conn.execute(f"PREPARE sqlprep2_{uid} AS SELECT 1")
    finally:
        conn.close()
    try:
        # Nothing of it is left on the server for the next client.
        rows = other.execute(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE %s", (f"%{uid}",)
        ).fetchall()
        assert rows == []
    finally:
        other.close()


def test_psycopg_cache_eviction_close_keeps_other_clients(proxy1):
    """psycopg's own cache: A evicts the shared statement (protocol Close) and later sends
    DEALLOCATE ALL; B keeps using its prepared statements by name all along."""
    uid = _uid()
    shared = f"SELECT %s::int + 7 /* shared {uid} */"
    a, b = _connect(proxy1), _connect(proxy1)
    a.prepared_max = 1
    try:
        assert a.execute(shared, (1,), prepare=True).fetchone() == (8,)
        assert b.execute(shared, (2,), prepare=True).fetchone() == (9,)
        assert b.execute(f"SELECT %s::int + 8 /* b {uid} */", (2,), prepare=True).fetchone() == (10,)
        for j in range(4):  # each new text evicts A's previous one
            assert a.execute(f"SELECT %s::int + {j} /* a{j} {uid} */", (1,), prepare=True).fetchone() == (1 + j,)
            assert b.execute(shared, (j,), prepare=True).fetchone() == (j + 7,)
        a.execute("DEALLOCATE ALL")
        for j in range(3):
            assert b.execute(shared, (j,), prepare=True).fetchone() == (j + 7,)
            assert b.execute(f"SELECT %s::int + 8 /* b {uid} */", (j,), prepare=True).fetchone() == (j + 8,)
            assert a.execute(shared, (j,), prepare=True).fetchone() == (j + 7,)
    finally:
        a.close()
        b.close()


def test_asyncpg_cache_eviction_close(proxy1):
    """asyncpg with a cache of 1 closes evicted statements (protocol Close) while another asyncpg
    client keeps executing the same texts from its cache."""
    url = proxy1.url(APP_USER, APP_PASSWORD, APP_DB)
    uid = _uid()
    texts = [f"SELECT $1::int + {j} /* {uid} */" for j in range(4)]

    async def main() -> None:
        small = await asyncpg.connect(url, statement_cache_size=1, timeout=10)
        big = await asyncpg.connect(url, timeout=10)
        try:
            for i in range(5):
                for j, text in enumerate(texts):
                    assert await small.fetchval(text, i) == i + j
                    assert await big.fetchval(text, i) == i + j
                    assert await big.fetchval(texts[0], i) == i
        finally:
            await small.close()
            await big.close()

    asyncio.run(main())


def test_prepared_statements_limit(proxy_limit):
    uid = _uid()
    texts = [f"SELECT %s::int + {j} /* limit {uid} */" for j in range(10)]
    conn = _connect(proxy_limit)
    try:
        with _inspect(proxy_limit) as c:
            for rnd in range(5):
                for j, text in enumerate(texts):
                    assert conn.execute(text, (rnd,), prepare=True).fetchone() == (rnd + j,)
                    if j % 3 == 0:
                        (n,) = c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
                        assert n <= 3, f"round {rnd}, text {j}: {n} statements prepared on the server"
                with conn.transaction():
                    for j, text in enumerate(texts):
                        assert conn.execute(text, (-rnd,), prepare=True).fetchone() == (j - rnd,)
                (n,) = c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
                assert n <= 3, f"after round {rnd}: {n} statements prepared on the server"
    finally:
        conn.close()


def test_prepared_statements_disabled_session_mode(proxy_disabled):
    uid = _uid()
    with _connect(proxy_disabled) as conn:
        for i in range(3):
            assert conn.execute(f"SELECT %s::int + 1 /* {uid} */", (i,), prepare=True).fetchone() == (i + 1,)
        assert conn.pgconn.prepare(b"mine", b"SELECT $1::int").status == OK
        assert conn.pgconn.exec_prepared(b"mine", [b"4"]).get_value(0, 0) == b"4"
        names = [r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements", prepare=False).fetchall()]
        assert sorted(names) == ["_pg3_0", "mine"], names

    async def main() -> None:
        c = await asyncpg.connect(proxy_disabled.url(APP_USER, APP_PASSWORD, APP_DB), timeout=10)
        try:
            for i in range(5):
                assert await c.fetchval("SELECT $1::int + 2", i) == i + 2
            names = [r["name"] for r in await c.fetch("SELECT name FROM pg_prepared_statements")]
            assert any(n.startswith("__asyncpg_stmt_") for n in names), names
        finally:
            await c.close()

    asyncio.run(main())


def test_psycopg2_transaction_mode(proxy1):
    t = f"public.p2_{_uid()}"
    conn = psycopg2.connect(proxy1.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10)
    other = _inspect(proxy1)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE {t} (id int, s text)")
        cur.executemany(f"INSERT INTO {t} VALUES (%s, %s)", [(i, f"v{i}") for i in range(50)])
        conn.commit()
        assert other.execute(f"SELECT count(*) FROM {t}").fetchone() == (50,)
        cur.execute(f"DELETE FROM {t}")
        conn.rollback()
        cur.execute(f"SELECT count(*), sum(id) FROM {t} WHERE s LIKE %s", ("v%",))
        assert cur.fetchone() == (50, sum(range(50)))
        conn.commit()
        conn.autocommit = True
        for i in range(10):
            cur.execute("SELECT %s::int * 2", (i,))
            assert cur.fetchone() == (2 * i,)
            assert other.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    finally:
        conn.close()
        other.close()


# --------------------------------------------------------------------------- pgbench


def _pgbench_run(args: list[str], timeout: float) -> str:
    return run_pgbench(args, timeout, APP_PASSWORD, output_tail=4000)


@pytest.fixture(scope="module")
def bench(pg, module_proxy_factory):
    db = f"bench_{_uid()}"
    pg.create_database(db, owner=APP_USER)
    _pgbench_run(["-i", "-s", "1", "-q", "-h", pg.host, "-p", str(pg.port), "-U", APP_USER, db], timeout=120)
    proxy = module_proxy_factory(general=_txn(4, checkout_timeout=20000), databases=_db(pg, db), users=_users(db))
    return proxy, db


@pytest.mark.parametrize("mode", ["extended", "prepared"])
def test_pgbench_protocol_modes(pg, bench, mode):
    proxy, db = bench
    dsn = pg.dsn(APP_USER, db, APP_PASSWORD)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as c:
        (before,) = c.execute("SELECT count(*) FROM pgbench_history").fetchone()
    out = _pgbench_run(
        ["-M", mode, "-c", "32", "-j", "2", "-T", "5", "-n", "-h", proxy.host, "-p", str(proxy.port), "-U", APP_USER, db],
        timeout=90,
    )
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    assert processed and int(processed.group(1)) > 0, out
    assert failed is None or int(failed.group(1)) == 0, out
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as c:
        (after,) = c.execute("SELECT count(*) FROM pgbench_history").fetchone()
        # The pool's servers, counted from this connection, which is not one of them. (Counted
        # after it closed, its own backend could still be listed while it exits.) Client
        # backends only: after pgbench's updates an autovacuum worker may be on this database.
        (servers,) = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchone()
    assert after - before == int(processed.group(1)), out
    assert servers <= 4
