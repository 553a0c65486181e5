"""checkout_timeout: a client that cannot get a server gets a clear error quickly, not a hang, and
its connection stays usable."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user

CHECKOUT_MS = 500


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={"default_pool_size": 1, "pooler_mode": "transaction", "checkout_timeout": CHECKOUT_MS},
        databases=[app_database(pg)],
        users=[app_user()],
    )


def _expect_checkout_timeout(conn: psycopg.Connection, sql: str = "SELECT 1") -> float:
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as info:
        conn.execute(sql)
    elapsed = time.monotonic() - t0
    assert "checkout timeout" in str(info.value).lower(), info.value
    assert CHECKOUT_MS / 1000 * 0.8 <= elapsed < 3.0, f"error after {elapsed:.2f}s"
    return elapsed


def test_checkout_timeout_error_then_usable(proxy):
    table = f"cko_{uuid.uuid4().hex[:8]}"
    with connect(proxy) as setup:  # also teaches the pool this kind of login: no server needed later
        setup.execute(f"CREATE TABLE {table} (id int)")
    a = connect(proxy, autocommit=False)
    b = connect(proxy)
    try:
        a.execute(f"INSERT INTO {table} VALUES (1)")  # holds the only server
        _expect_checkout_timeout(b)
        assert b.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # Again, with parameters (extended protocol), and a multi-statement simple query.
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match=r"(?i)checkout timeout"):
            b.execute("SELECT %s::int", (5,))
        assert time.monotonic() - t0 < 3.0
        _expect_checkout_timeout(b, f"SELECT 1; SELECT count(*) FROM {table}")
        a.commit()
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
        assert b.execute("SELECT %s::int", (6,)).fetchone() == (6,)
        # A (still connected, idle) and B take turns fine afterwards.
        a.execute(f"INSERT INTO {table} VALUES (2)")
        a.commit()
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
    finally:
        a.close()
        b.close()


def test_checkout_timeout_in_explicit_transaction(proxy):
    """The waiting client was itself starting a transaction: it gets the error and can retry."""
    a = connect(proxy, autocommit=False)
    b = connect(proxy, autocommit=False)
    try:
        a.execute("SELECT 1")  # BEGIN + SELECT: server held
        _expect_checkout_timeout(b)
        b.rollback()
        a.rollback()
        assert b.execute("SELECT 2").fetchone() == (2,)
        b.commit()
    finally:
        a.close()
        b.close()


def test_login_while_pool_busy_with_new_parameters(proxy):
    """A login whose settings the pool has not seen needs a server to check them: with none free,
    it fails with the checkout timeout instead of hanging; once free, the same login works."""
    a = connect(proxy, autocommit=False)
    try:
        a.execute("SELECT 1")
        tz = "Pacific/Auckland"
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match=r"(?i)checkout timeout"):
            psycopg.connect(
                proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10, options=f"-c TimeZone={tz}"
            )
        assert time.monotonic() - t0 < 3.0
        a.rollback()
        with psycopg.connect(
            proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10, options=f"-c TimeZone={tz}"
        ) as c:
            assert c.execute("SHOW TimeZone").fetchone() == (tz,)
    finally:
        a.close()
