"""Tests of the test harness itself (PgServer, ProxyProcess, ports), not of the proxy."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
import time
import tomllib

import asyncpg
import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER, MD5_PASSWORD, MD5_USER
from tests.harness import pgserver as pgserver_mod
from tests.harness.pgserver import PgServer, find_bindir
from tests.harness.ports import free_port, port_open
from tests.harness.proxy import ProxyError, ProxyProcess, dump_toml


def _poll(fn, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# --------------------------------------------------------------------------- PgServer


def test_bindir_has_server_binaries():
    d = find_bindir()
    for b in ("postgres", "initdb", "pg_ctl", "psql", "pg_basebackup"):
        assert os.access(os.path.join(d, b), os.X_OK), b


def test_pg_starts_and_psql_works(pg):
    assert pg.running and pg.host == "127.0.0.1"
    assert port_open(pg.host, pg.port)
    assert pg.psql("SELECT 1") == "1"
    assert pg.psql("SELECT 1; SELECT 2") == "1\n2"
    assert pg.psql("SHOW fsync") == "off"
    assert pg.psql("SHOW wal_level") == "replica"
    assert pg.psql("SELECT current_database()", db=APP_DB) == APP_DB
    assert os.path.isdir(pg.datadir) and os.path.isdir(pg.socket_dir)
    with pytest.raises(pgserver_mod.PgServerError, match="no_such_table"):
        pg.psql("SELECT * FROM no_such_table")
    assert "no_such_table" in pg.log_tail()


def test_scram_user_connects_over_tcp(pg):
    assert (
        pg.psql(f"SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = '{APP_USER}'")
        == "SCRAM-SHA-256$"
    )
    with psycopg.connect(pg.dsn(APP_USER, APP_DB, APP_PASSWORD), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (APP_USER, APP_DB)
    with psycopg.connect(pg.url(APP_USER, APP_DB, APP_PASSWORD), connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_md5_user_connects_over_tcp(pg):
    assert pg.psql(f"SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = '{MD5_USER}'") == "md5"
    with psycopg.connect(pg.dsn(MD5_USER, APP_DB, MD5_PASSWORD), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (MD5_USER,)


@pytest.mark.parametrize("user", [APP_USER, MD5_USER])
def test_wrong_password_fails_28P01(pg, user):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn(user, APP_DB, "wrong"), connect_timeout=10)

    async def attempt():
        conn = await asyncpg.connect(pg.url(user, APP_DB, "wrong"), timeout=10)
        await conn.close()

    with pytest.raises(asyncpg.PostgresError) as info:
        asyncio.run(attempt())
    assert info.value.sqlstate == "28P01"


def test_dsn_quoting(pg):
    pg.create_user("odd user", "p'w \\x")
    dsn = pg.dsn("odd user", "postgres", "p'w \\x")
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("odd user",)
    with psycopg.connect(pg.url("odd user", "postgres", "p'w \\x"), connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_replica_streams_promote_and_cleanup(pg_factory):
    primary = pg_factory(name="primary")
    primary.psql("CREATE TABLE t (id int primary key, v text)")
    replica = primary.make_replica()
    assert replica.psql("SELECT pg_is_in_recovery()") == "t"
    assert replica.port != primary.port and replica.datadir != primary.datadir
    primary.psql("INSERT INTO t VALUES (1, 'one')")
    _poll(lambda: replica.psql("SELECT v FROM t WHERE id = 1") == "one")
    primary.psql("INSERT INTO t VALUES (2, 'two')")
    replica.wait_for_replication(timeout=15)
    assert replica.psql("SELECT count(*) FROM t") == "2"

    primary.kill()
    replica.promote()
    assert replica.psql("SELECT pg_is_in_recovery()") == "f"
    replica.psql("INSERT INTO t VALUES (3, 'three')")
    assert replica.psql("SELECT count(*) FROM t") == "3"

    dirs = [primary.server_dir, replica.server_dir, primary.base_dir]
    primary.cleanup()  # also cleans its replicas
    primary.cleanup()
    for d in dirs:
        assert not os.path.exists(d), d
    assert not port_open("127.0.0.1", replica.port)


def test_restart_keeps_data_and_retries_busy_port(monkeypatch):
    # The first port handed out is taken: start() must retry once with a fresh one.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    ports = iter([busy.getsockname()[1]])
    monkeypatch.setattr(pgserver_mod, "free_port", lambda: next(ports, None) or free_port())
    with busy, PgServer(name="busy") as s:
        assert s.port != busy.getsockname()[1]
        s.psql("CREATE TABLE keep (x int); INSERT INTO keep VALUES (42)")
        s.restart()
        assert s.psql("SELECT x FROM keep") == "42"
        server_dir = s.server_dir
    assert not os.path.exists(server_dir)


def test_start_failure_reports_log():
    s = PgServer(name="bad", settings={"shared_buffers": "not_a_size"})
    try:
        with pytest.raises(pgserver_mod.PgServerError, match="shared_buffers"):
            s.start()
    finally:
        s.cleanup()
    assert not os.path.exists(s.server_dir)


# --------------------------------------------------------------------------- ProxyProcess


def test_dump_toml_round_trips():
    doc = {
        "general": {
            "host": "127.0.0.1",
            "port": 6432,
            "pooler_mode": "transaction",
            "checkout_timeout": 5000,
            "ratio": 0.5,
            "flag": True,
            "off": False,
            "tags": ["a", 'b"q', "c\\d\n\t\x01"],
            "skip": None,
            "weird key": "ünïcode 🐘",
        },
        "databases": [
            {"name": "app", "host": "127.0.0.1", "port": 5432, "database_name": "app"},
            {"name": "app", "host": "127.0.0.1", "port": 5433, "role": "replica"},
        ],
        "admin": {"name": "admin", "user": "admin", "password": "pw"},
    }
    parsed = tomllib.loads(dump_toml(doc))
    expected = dict(doc)
    expected["general"] = {k: v for k, v in doc["general"].items() if v is not None}
    assert parsed == expected
    assert tomllib.loads(dump_toml({"users": [{"name": "u", "pool_size": 3}]})) == {
        "users": [{"name": "u", "pool_size": 3}]
    }
    with pytest.raises(TypeError):
        dump_toml({"general": {"x": object()}})


def test_proxy_writes_configs(tmp_path):
    p = ProxyProcess(
        {"default_pool_size": 5},
        [{"name": "app", "host": "127.0.0.1", "port": 5432, "database_name": "app"}],
        [{"name": "app", "database": "app", "password": "pw", "pool_size": 2}],
        admin={"name": "admin", "user": "admin", "password": "admin"},
        base_dir=str(tmp_path),
    )
    with open(p.config_path, "rb") as f:
        cfg = tomllib.load(f)
    with open(p.users_path, "rb") as f:
        users = tomllib.load(f)
    assert cfg["general"]["host"] == "127.0.0.1" == p.host
    assert cfg["general"]["port"] == p.port > 0
    assert cfg["general"]["event_log"] == p.event_log_path
    assert os.path.dirname(p.event_log_path) == str(tmp_path)
    assert cfg["databases"][0]["database_name"] == "app"
    assert cfg["admin"]["user"] == "admin"
    assert users == {"users": [{"name": "app", "database": "app", "password": "pw", "pool_size": 2}]}
    assert p.dsn("app", "pw", "app") == f"host=127.0.0.1 port={p.port} user=app dbname=app password=pw"
    assert p.argv()[1:4] == ["-m", "pgdog_ev", "run"]
    p.cleanup()
    assert os.path.exists(str(tmp_path))  # not ours to remove


def test_proxy_early_exit_raises_with_log():
    p = ProxyProcess(
        {},
        [],
        [],
        argv=[sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"],
    )
    try:
        with pytest.raises(ProxyError, match=r"(?s)code 3.*boom: bad config"):
            p.start(timeout=10)
    finally:
        p.cleanup()
    assert not os.path.exists(p.dir)


# A stand-in proxy: listens on the configured port, logs SIGHUP, exits 0 on SIGTERM.
FAKE_PROXY = textwrap.dedent(
    """
    import signal, socket, sys, tomllib
    cfg = tomllib.load(open(sys.argv[1], "rb"))
    s = socket.socket()
    s.bind((cfg["general"]["host"], cfg["general"]["port"]))
    s.listen()
    print("listening", flush=True)
    signal.signal(signal.SIGHUP, lambda *a: print("reload", tomllib.load(open(sys.argv[1], "rb"))["general"]["default_pool_size"], flush=True))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        signal.pause()
    """
)


def test_proxy_factory_start_reload_stop(proxy_factory):
    p = proxy_factory(
        general={"default_pool_size": 1},
        argv=[sys.executable, "-c", FAKE_PROXY, "{config}", "{users}"],
    )
    assert p.pid and port_open(p.host, p.port)
    p.update(general={"default_pool_size": 7})
    _poll(lambda: "reload 7" in p.log_text())
    p.signal(signal.SIGHUP)
    _poll(lambda: p.log_text().count("reload 7") == 2)
    assert p.stop() == 0
    assert p.stop() == 0


def test_proxy_retries_busy_port():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused, binds fail
    with busy:
        p = ProxyProcess({}, [], [], argv=[sys.executable, "-c", FAKE_PROXY, "{config}"])
        p._auto_port = True
        p.general["port"] = busy.getsockname()[1]
        p.write_config()
        # The fake binds the busy port, dies with EADDRINUSE, and start() retries on a new port.
        with p:
            assert p.port != busy.getsockname()[1]
            assert "Address already in use" in p.log_text()
        assert p.returncode == 0
