"""Session mode: one server per client for the client's lifetime, and no session state carried
over to the next client of that server (DISCARD ALL)."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.config import app_database, app_user

ONE_USER, ONE_PASSWORD = "app_one", "one_pw"  # session pool of size 1 (server user app)


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={"default_pool_size": 2, "pooler_mode": "session", "checkout_timeout": 10000},
        databases=[app_database(pg)],
        users=[
            app_user(),
            {"name": ONE_USER, "database": APP_DB, "password": ONE_PASSWORD, "pool_size": 1,
             "server_user": APP_USER, "server_password": APP_PASSWORD},
        ],
    )


def _connect(proxy, user=APP_USER, password=APP_PASSWORD, autocommit=True) -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(user, password, APP_DB), connect_timeout=10, autocommit=autocommit)


def _pid(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_one_server_per_client(proxy):
    a = _connect(proxy, autocommit=False)
    b = _connect(proxy, autocommit=False)
    try:
        pids_a, pids_b = set(), set()
        for _ in range(5):
            pids_a.add(_pid(a))
            a.commit()
            pids_b.add(_pid(b))
            b.rollback()
        assert len(pids_a) == 1 and len(pids_b) == 1
        assert pids_a != pids_b
        # Session state survives between transactions (it is the client's own server).
        a.execute("SET application_name = 'kept'")
        a.commit()
        a.execute("SELECT 1")
        a.commit()
        assert a.execute("SHOW application_name").fetchone() == ("kept",)
        a.commit()
    finally:
        a.close()
        b.close()


def test_concurrent_clients_each_keep_their_server(proxy):
    errors: list[BaseException] = []
    seen: dict[int, set[int]] = {}
    both_connected = threading.Barrier(2, timeout=30)

    def worker(k: int) -> None:
        try:
            with _connect(proxy) as conn:
                pids = seen.setdefault(k, set())
                pids.add(_pid(conn))
                both_connected.wait()  # both sessions hold their server from here on
                for i in range(20):
                    pids.add(_pid(conn))
                    assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)
                both_connected.wait()
        except BaseException as e:
            errors.append(e)
            both_connected.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    assert all(len(p) == 1 for p in seen.values()), seen
    assert seen[0] != seen[1]


def test_next_client_does_not_see_session_state(pg, proxy):
    uid = uuid.uuid4().hex[:8]
    default_work_mem = pg.psql("SHOW work_mem")
    with _connect(proxy, ONE_USER, ONE_PASSWORD) as first:
        pid = _pid(first)
        first.execute("SET work_mem = '7MB'")
        first.execute(f"CREATE TEMP TABLE tmp_{uid} (x int)")
        first.execute(f"PREPARE stmt_{uid} AS SELECT 1")
        first.execute(f"LISTEN chan_{uid}")
        first.execute("SELECT set_config('myapp.flag', 'on', false)")
        assert first.execute("SHOW work_mem").fetchone() == ("7MB",)
    with _connect(proxy, ONE_USER, ONE_PASSWORD) as second:
        assert _pid(second) == pid  # the same server, cleaned
        assert second.execute("SHOW work_mem").fetchone() == (default_work_mem,)
        assert second.execute(f"SELECT to_regclass('pg_temp.tmp_{uid}')").fetchone() == (None,)
        assert second.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
        assert second.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
        assert second.execute("SELECT current_setting('myapp.flag', true)").fetchone() in ((None,), ("",))
        # The name it may create again freely.
        second.execute(f"CREATE TEMP TABLE tmp_{uid} (x int)")


def test_client_leaving_mid_transaction_is_rolled_back(pg, proxy):
    table = f"sess_{uuid.uuid4().hex[:8]}"
    with _connect(proxy, ONE_USER, ONE_PASSWORD) as setup:
        setup.execute(f"CREATE TABLE {table} (id int)")
        pid = _pid(setup)
    first = _connect(proxy, ONE_USER, ONE_PASSWORD, autocommit=False)
    first.execute(f"INSERT INTO {table} VALUES (1)")
    first.execute("SET LOCAL work_mem = '9MB'")
    first.close()  # Terminate while the transaction is open
    with _connect(proxy, ONE_USER, ONE_PASSWORD) as second:
        assert _pid(second) == pid
        assert second.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert second.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    assert pg.psql(f"SELECT count(*) FROM {table}", db=APP_DB) == "0"
