"""Authentication: clients to the proxy (scram, md5, plain, trust; wrong password, unknown user or
database) and the proxy to PostgreSQL (SCRAM, md5, trust, cleartext server users)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import asyncpg
import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER, MD5_PASSWORD, MD5_USER
from tests.harness.pgserver import PgServer, PgServerError
from tests.harness.proxy import REPO_ROOT


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _db(server: PgServer, name: str = APP_DB, database_name: str | None = None) -> dict:
    return {"name": name, "host": server.host, "port": server.port, "database_name": database_name or name}


async def _asyncpg_connect(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10, statement_cache_size=0)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def _asyncpg_error(url: str) -> asyncpg.PostgresError:
    with pytest.raises(asyncpg.PostgresError) as info:
        asyncio.run(_asyncpg_connect(url))
    return info.value


def _server_conns(pg: PgServer, user: str) -> int:
    return int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"))


def _events(proxy, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "pgdog_ev", "events", proxy.event_log_path, *args],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


# --------------------------------------------------------------------------- client -> proxy


@pytest.mark.parametrize("auth_type", ["scram", "md5", "plain", "trust"])
def test_client_auth_types(pg, proxy_factory, auth_type):
    proxy = proxy_factory(
        general={"auth_type": auth_type, "default_pool_size": 2},
        databases=[_db(pg)],
        users=[{"name": APP_USER, "database": APP_DB, "password": APP_PASSWORD}],
    )
    with psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (APP_USER, APP_DB)
    asyncio.run(_asyncpg_connect(proxy.url(APP_USER, APP_PASSWORD, APP_DB)))
    if auth_type == "trust":
        # No password asked at all.
        with psycopg.connect(proxy.dsn(APP_USER, None, APP_DB), connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        asyncio.run(_asyncpg_connect(proxy.url(APP_USER, "anything", APP_DB)))
        return
    err = _asyncpg_error(proxy.url(APP_USER, "wrong_pw", APP_DB))
    assert isinstance(err, asyncpg.InvalidPasswordError) and err.sqlstate == "28P01", err
    with pytest.raises(psycopg.OperationalError, match=f'password authentication failed for user "{APP_USER}"'):
        psycopg.connect(proxy.dsn(APP_USER, "wrong_pw", APP_DB), connect_timeout=10)
    # Still fine afterwards.
    with psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)


@pytest.mark.parametrize("auth_type", ["scram", "md5", "plain"])
def test_wrong_password_opens_no_server_connection(pg, proxy_factory, poll, auth_type):
    user, pw = f"authx_{_uid()}", "right_pw"
    pg.create_user(user, pw)
    proxy = proxy_factory(
        general={"auth_type": auth_type, "min_pool_size": 0, "default_pool_size": 2},
        databases=[_db(pg)],
        users=[{"name": user, "database": APP_DB, "password": pw}],
    )
    assert _server_conns(pg, user) == 0
    for _ in range(3):
        err = _asyncpg_error(proxy.url(user, "wrong_pw", APP_DB))
        assert err.sqlstate == "28P01", err
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(proxy.dsn(user, "wrong_pw", APP_DB), connect_timeout=10)
    # Wait until the failures are in the event log: then the log shows no server machine at all.
    poll(lambda: _events(proxy, "--machine", "client").count("AUTH_FAILED") >= 4, what="4 auth failures logged")
    assert _events(proxy, "--machine", "server").strip() == ""
    assert _server_conns(pg, user) == 0
    # A correct login does open one: the check above can see them.
    with psycopg.connect(proxy.dsn(user, pw, APP_DB), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)
        assert _server_conns(pg, user) >= 1


def test_unknown_user_and_unknown_database(pg, proxy_factory):
    proxy = proxy_factory(
        general={"default_pool_size": 1},
        databases=[_db(pg)],
        users=[{"name": APP_USER, "database": APP_DB, "password": APP_PASSWORD}],
    )
    err = _asyncpg_error(proxy.url("nobody_" + _uid(), "pw", APP_DB))
    assert err.sqlstate == "28P01", err
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(proxy.dsn("nobody", "pw", APP_DB), connect_timeout=10)
    # A user that exists but not for this database is unknown too.
    err = _asyncpg_error(proxy.url(MD5_USER, MD5_PASSWORD, APP_DB))
    assert err.sqlstate == "28P01", err

    err = _asyncpg_error(proxy.url(APP_USER, APP_PASSWORD, "no_such_db"))
    assert isinstance(err, asyncpg.InvalidCatalogNameError) and err.sqlstate == "3D000", err
    with pytest.raises(psycopg.OperationalError, match='database "no_such_db" does not exist'):
        psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, "no_such_db"), connect_timeout=10)
    with psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --------------------------------------------------------------------------- proxy -> server


def test_server_scram_and_md5_users(pg, proxy_factory):
    assert pg.psql(f"SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = '{MD5_USER}'") == "md5"
    proxy = proxy_factory(
        general={"default_pool_size": 1},
        databases=[_db(pg)],
        users=[
            {"name": APP_USER, "database": APP_DB, "password": APP_PASSWORD},
            {"name": MD5_USER, "database": APP_DB, "password": MD5_PASSWORD},
            # Client name and password differ from the server's.
            {"name": "front", "database": APP_DB, "password": "front_pw",
             "server_user": MD5_USER, "server_password": MD5_PASSWORD},
        ],
    )
    for client, pw, server_user in (
        (APP_USER, APP_PASSWORD, APP_USER),
        (MD5_USER, MD5_PASSWORD, MD5_USER),
        ("front", "front_pw", MD5_USER),
    ):
        with psycopg.connect(proxy.dsn(client, pw, APP_DB), connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (server_user,)


def test_server_wrong_password_is_a_clear_error(pg, proxy_factory):
    proxy = proxy_factory(
        general={"default_pool_size": 1, "min_pool_size": 0, "connect_timeout": 3000, "checkout_timeout": 3000},
        databases=[_db(pg)],
        users=[{"name": APP_USER, "database": APP_DB, "password": "client_pw", "server_password": "not_it"}],
    )
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(proxy.dsn(APP_USER, "client_pw", APP_DB), connect_timeout=10)
    assert "password authentication failed" in str(info.value) or "could not connect" in str(info.value)


@pytest.fixture(scope="module")
def other_servers():
    """A trust-auth and a cleartext-password PostgreSQL, each with user/database `other`."""
    servers = []
    try:
        for auth in ("trust", "password"):
            s = PgServer(name=f"auth-{auth}-{_uid()}", auth=auth)
            servers.append(s)
            s.start()
            s.create_user("other", "other_pw")
            s.create_database("other", owner="other")
    except PgServerError as e:
        for s in servers:
            s.cleanup()
        pytest.fail(f"could not start PostgreSQL:\n{e}", pytrace=False)
    yield dict(zip(("trust", "password"), servers, strict=True))
    for s in servers:
        s.cleanup()


@pytest.mark.parametrize("server_auth", ["trust", "password"])
def test_server_trust_and_cleartext(other_servers, proxy_factory, server_auth):
    server = other_servers[server_auth]
    users = [{"name": "other", "database": "other", "password": "client_pw"}]
    if server_auth == "password":
        users[0]["server_password"] = "other_pw"
    proxy = proxy_factory(general={"default_pool_size": 1}, databases=[_db(server, "other")], users=users)
    with psycopg.connect(proxy.dsn("other", "client_pw", "other"), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("other", "other")
    assert server.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'other'") == "1"
    asyncio.run(_asyncpg_connect(proxy.url("other", "client_pw", "other")))
    # The server really uses that method: trust takes any password, cleartext checks it.
    if server_auth == "password":
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.dsn("other", "other", "bad"), connect_timeout=10)
    else:
        psycopg.connect(server.dsn("other", "other", "bad"), connect_timeout=10).close()
