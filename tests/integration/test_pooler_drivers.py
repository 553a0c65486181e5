"""Client drivers through the proxy: psql, psycopg 3, asyncpg, psycopg2.

One proxy for the whole module, a pool of 2 server connections in transaction mode for user
`app` and a session-mode pool for `app_sess` (same server user), so clients really share servers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import uuid

import asyncpg
import psycopg
import psycopg2
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.config import SESS_PASSWORD, SESS_USER, app_database, app_user, session_user
from tests.harness.pgserver import find_bindir

POOL_SIZE = 2


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={"default_pool_size": POOL_SIZE, "pooler_mode": "transaction", "checkout_timeout": 10000},
        databases=[app_database(pg)],
        users=[app_user(), session_user()],
    )


def _connect(proxy, **kw) -> psycopg.Connection:
    kw.setdefault("connect_timeout", 10)
    kw.setdefault("prepare_threshold", None)  # no named prepared statements in transaction mode
    return psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), **kw)


def _psql_bin() -> str:
    p = os.path.join(find_bindir(), "psql")
    return p if os.access(p, os.X_OK) else (shutil.which("psql") or "psql")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


# --------------------------------------------------------------------------- psql


def test_psql_single_and_multi_statement(proxy):
    url = proxy.url(APP_USER, APP_PASSWORD, APP_DB)
    t = _name("psql")
    res = subprocess.run(
        [_psql_bin(), url, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", "SELECT current_user, current_database(), 40 + 2"],
        capture_output=True, text=True, timeout=30, env=_clean_env(), stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{APP_USER}|{APP_DB}|42"
    # Several statements in one simple Query message.
    sql = f"CREATE TABLE {t} (id int); INSERT INTO {t} SELECT generate_series(1, 10); SELECT sum(id) FROM {t}"
    res = subprocess.run(
        [_psql_bin(), url, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        capture_output=True, text=True, timeout=30, env=_clean_env(), stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "55"
    # An error comes back as an error with psql's exit code 1, and the pool survives it.
    res = subprocess.run(
        [_psql_bin(), url, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", "SELECT * FROM no_such_table_xyz"],
        capture_output=True, text=True, timeout=30, env=_clean_env(), stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 1 and "no_such_table_xyz" in res.stderr
    with _connect(proxy, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (10,)


# --------------------------------------------------------------------------- psycopg 3


def test_psycopg_autocommit_parameters(proxy):
    t = _name("pg3p")
    with _connect(proxy, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {t} (id int primary key, s text, b bytea, n numeric, f float8)")
        rows = [
            (1, "plain", b"\x00\x01\xff", 1.5, 2.25),
            (2, "quote ' and \\ backslash", b"", -3, 0.0),
            (3, "ünïcode 🐘", None, None, None),
            (4, None, b"x" * 1000, 10**20, -1e300),
        ]
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {t} VALUES (%s, %s, %s, %s, %s)", rows)
        got = conn.execute(f"SELECT id, s, b, n, f FROM {t} ORDER BY id").fetchall()
        assert [r[0] for r in got] == [1, 2, 3, 4]
        assert got[0][1:3] == ("plain", b"\x00\x01\xff")
        assert got[1][1] == "quote ' and \\ backslash"
        assert got[2][1:] == ("ünïcode 🐘", None, None, None)
        assert got[3][2] == b"x" * 1000 and int(got[3][3]) == 10**20 and got[3][4] == -1e300
        assert conn.execute(f"SELECT s FROM {t} WHERE id = %s", (2,)).fetchone() == (rows[1][1],)
        # Binary parameters and results.
        cur = conn.cursor(binary=True)
        assert cur.execute("SELECT %b::int + 1, %b::text", (41, "bin")).fetchone() == (42, "bin")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_psycopg_commit_visible_rollback_not(proxy):
    t = _name("pg3tx")
    with _connect(proxy, autocommit=True) as setup:
        setup.execute(f"CREATE TABLE {t} (id int)")
    with _connect(proxy) as writer, _connect(proxy, autocommit=True) as reader:
        writer.execute(f"INSERT INTO {t} VALUES (1)")
        assert writer.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        # Uncommitted: invisible to another client (which must use the other server of the pool).
        assert reader.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        writer.commit()
        assert reader.execute(f"SELECT count(*) FROM {t}").fetchone() == (1,)
        writer.execute(f"INSERT INTO {t} VALUES (2)")
        writer.execute(f"INSERT INTO {t} VALUES (3)")
        writer.rollback()
        assert reader.execute(f"SELECT array_agg(id ORDER BY id) FROM {t}").fetchone() == ([1],)
        # An error inside a transaction aborts it; rollback makes the connection usable again.
        with pytest.raises(psycopg.errors.DivisionByZero):
            writer.execute("SELECT 1 / 0")
        assert writer.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            writer.execute("SELECT 1")
        writer.rollback()
        assert writer.execute("SELECT 7").fetchone() == (7,)
        writer.commit()
        with writer.transaction():
            writer.execute(f"INSERT INTO {t} VALUES (4)")
        assert reader.execute(f"SELECT array_agg(id ORDER BY id) FROM {t}").fetchone() == ([1, 4],)


def test_psycopg_many_rows_streamed(proxy):
    n = 100_000
    with _connect(proxy, autocommit=True) as conn:
        cur = conn.execute("SELECT g, md5(g::text) FROM generate_series(1, %s) g", (n,))
        rows = cur.fetchall()
        assert len(rows) == n
        assert rows[0] == (1, "c4ca4238a0b923820dcc509a6f75849b")
        assert sum(r[0] for r in rows) == n * (n + 1) // 2
        assert [r[0] for r in rows[:5]] == [1, 2, 3, 4, 5] and rows[-1][0] == n
        # Single-row mode (libpq streaming).
        total = count = 0
        for (g,) in conn.cursor().stream("SELECT g FROM generate_series(1, %s) g", (n,)):
            total += g
            count += 1
        assert (count, total) == (n, n * (n + 1) // 2)
    # A server-side cursor inside a transaction, fetched in batches.
    with _connect(proxy) as conn, conn.cursor(name="big") as cur:
        cur.itersize = 7000
        cur.execute("SELECT g, repeat('x', 100) FROM generate_series(1, %s) g", (n,))
        seen = 0
        for g, pad in cur:
            seen += 1
            assert g == seen and len(pad) == 100
        assert seen == n
        conn.commit()
    # The wide results did not leave junk on the pooled servers.
    with _connect(proxy, autocommit=True) as conn:
        for i in range(2 * POOL_SIZE):
            assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)


def test_psycopg_copy_in_and_out(proxy):
    t = _name("pg3copy")
    with _connect(proxy, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {t} (id int, s text)")
        with conn.cursor().copy(f"COPY {t} (id, s) FROM STDIN") as copy:
            for i in range(20_000):
                copy.write_row((i, f"row {i}"))
        assert conn.execute(f"SELECT count(*), sum(id) FROM {t}").fetchone() == (20_000, sum(range(20_000)))
        out = bytearray()
        with conn.cursor().copy(f"COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT") as copy:
            for chunk in copy:
                out += chunk
        lines = bytes(out).decode().splitlines()
        assert len(lines) == 20_000 and lines[123] == "123\trow 123"


def test_psycopg_concurrent_clients_share_small_pool(proxy):
    """More clients than servers: every query of every client answered, with its own result."""
    errors: list[BaseException] = []
    pids: set[int] = set()
    lock = threading.Lock()

    def worker(k: int) -> None:
        try:
            with _connect(proxy, autocommit=True) as conn:
                for i in range(30):
                    v, pid = conn.execute("SELECT %s::int * 1000 + %s::int, pg_backend_pid()", (k, i)).fetchone()
                    assert v == k * 1000 + i
                    with lock:
                        pids.add(pid)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    assert 1 <= len(pids) <= POOL_SIZE, pids


# --------------------------------------------------------------------------- asyncpg


def test_asyncpg_transaction_mode(proxy):
    t = _name("apg")
    url = proxy.url(APP_USER, APP_PASSWORD, APP_DB)

    async def main() -> None:
        conns = [await asyncpg.connect(url, statement_cache_size=0, timeout=10) for _ in range(4)]
        try:
            c = conns[0]
            await c.execute(f"CREATE TABLE {t} (id int primary key, s text, j jsonb)")
            await c.executemany(
                f"INSERT INTO {t} VALUES ($1, $2, $3::jsonb)",
                [(i, f"s{i}", f'{{"k": {i}}}') for i in range(500)],
            )
            rows = await c.fetch(f"SELECT id, s FROM {t} WHERE id >= $1 AND s LIKE $2 ORDER BY id", 490, "s49%")
            assert [(r["id"], r["s"]) for r in rows] == [(i, f"s{i}") for i in range(490, 500)]
            assert await c.fetchval(f"SELECT count(*) FROM {t}") == 500
            assert await c.fetchval("SELECT $1::int[]", [1, 2, 3]) == [1, 2, 3]
            # Rollback through asyncpg's transaction context.
            with pytest.raises(RuntimeError):
                async with c.transaction():
                    await c.execute(f"DELETE FROM {t}")
                    raise RuntimeError("roll back")
            assert await c.fetchval(f"SELECT count(*) FROM {t}") == 500

            # Four clients on a pool of two, concurrently, each with its own parameters.
            async def client(k: int, conn: asyncpg.Connection) -> None:
                for i in range(25):
                    got = await conn.fetchrow(f"SELECT s, $2::int AS k FROM {t} WHERE id = $1", i * 4 + k, k)
                    assert got["s"] == f"s{i * 4 + k}" and got["k"] == k

            await asyncio.gather(*(client(k, cn) for k, cn in enumerate(conns)))
            big = await c.fetch("SELECT g FROM generate_series(1, 50000) g")
            assert len(big) == 50000 and big[-1]["g"] == 50000
        finally:
            for cn in conns:
                await cn.close()

    asyncio.run(main())


def test_asyncpg_session_mode_statement_cache(proxy):
    """Default statement cache (named prepared statements) works in session mode."""
    url = proxy.url(SESS_USER, SESS_PASSWORD, APP_DB)

    async def main() -> None:
        conns = [await asyncpg.connect(url, timeout=10) for _ in range(2)]
        try:
            for k, c in enumerate(conns):
                for i in range(20):  # repeated: served from the cache by name
                    assert await c.fetchval("SELECT $1::int + $2::int", i, k) == i + k
                stmt = await c.prepare("SELECT $1::text || '-' || $2::text")
                assert await stmt.fetchval("a", str(k)) == f"a-{k}"
                assert await stmt.fetchval("b", str(k)) == f"b-{k}"
            pids = [await c.fetchval("SELECT pg_backend_pid()") for c in conns]
            assert pids[0] != pids[1]
            async with conns[0].transaction():
                assert await conns[0].fetchval("SELECT pg_backend_pid()") == pids[0]
        finally:
            for c in conns:
                await c.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- psycopg2


def test_psycopg2(proxy):
    t = _name("pg2")
    conn = psycopg2.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE {t} (id int, s text)")
        cur.executemany(f"INSERT INTO {t} VALUES (%s, %s)", [(i, f"v{i}") for i in range(100)])
        conn.commit()
        cur.execute(f"INSERT INTO {t} VALUES (%s, %s)", (1000, "gone"))
        conn.rollback()
        cur.execute(f"SELECT count(*), max(id) FROM {t} WHERE s <> %s", ("nothing",))
        assert cur.fetchone() == (100, 99)
        cur.execute("SELECT g FROM generate_series(1, 100000) g")
        rows = cur.fetchall()
        assert len(rows) == 100000 and rows[-1] == (100000,)
        conn.rollback()
        conn.autocommit = True
        cur.execute("SELECT %s || %s", ("a'b", "c"))
        assert cur.fetchone() == ("a'bc",)
    finally:
        conn.close()
