"""Limits and timers of [general]: client_login_timeout, client_idle_timeout, query_timeout,
max_client_conn, min_pool_size, idle_timeout, server_lifetime."""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import time
import uuid

import asyncpg
import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.config import app_database


def _user(name: str = APP_USER, password: str = APP_PASSWORD, **kw) -> dict:
    return {"name": name, "database": APP_DB, "password": password, **kw}


def _connect(proxy, user: str = APP_USER, password: str = APP_PASSWORD, **kw) -> psycopg.Connection:
    kw.setdefault("sslmode", "disable")
    return connect(proxy, user, password, **kw)


def _server_count(pg, user: str) -> int:
    return int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"))


def _read_error(s: socket.socket, timeout: float) -> tuple[dict[str, str], float]:
    t0 = time.monotonic()
    s.settimeout(timeout)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    assert buf[:1] == b"E", buf
    (n,) = struct.unpack(">I", buf[1:5])
    fields = {chr(p[0]): p[1:].decode() for p in buf[5 : 1 + n].split(b"\0") if p}
    return fields, time.monotonic() - t0


def test_client_login_timeout(pg, proxy_factory):
    proxy = proxy_factory(general={"client_login_timeout": 500}, databases=[app_database(pg)], users=[_user()])
    # Says nothing at all.
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        fields, waited = _read_error(s, 5)
    assert fields["C"] == "08P01" and "client_login_timeout" in fields["M"], fields
    assert 0.4 <= waited < 3, waited
    # Sends half a startup packet.
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(struct.pack(">II", 40, 196608) + b"user\0")
        fields, waited = _read_error(s, 5)
    assert fields["C"] == "08P01" and 0.3 <= waited < 3, (fields, waited)
    # Stuck in authentication (asked for a password, never sends it).
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        body = struct.pack(">I", 196608) + f"user\0{APP_USER}\0database\0{APP_DB}\0\0".encode()
        s.sendall(struct.pack(">I", len(body) + 4) + body)
        s.settimeout(5)
        first = s.recv(5)
        assert first[:1] == b"R"  # the authentication request
        s.recv(65536)
        fields, waited = _read_error(s, 5)
    assert fields["C"] == "08P01" and waited < 3, (fields, waited)
    with _connect(proxy) as c:  # normal logins are unaffected
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_client_idle_timeout(pg, proxy_factory):
    proxy = proxy_factory(general={"client_idle_timeout": 700}, databases=[app_database(pg)], users=[_user()])
    busy = _connect(proxy)
    idle = _connect(proxy)
    try:
        t0 = time.monotonic()
        # A busy client is not idle: it keeps working past the timeout.
        while time.monotonic() - t0 < 1.0:
            assert busy.execute("SELECT pg_sleep(0.05), 1").fetchone() == ("", 1)
        # The idle one is closed by the proxy: its socket becomes readable (error, then EOF).
        readable, _, _ = select.select([idle.pgconn.socket], [], [], 5)
        assert readable, "the idle client was not closed within 5s"
        with pytest.raises(psycopg.errors.IdleSessionTimeout, match="client_idle_timeout") as info:
            idle.execute("SELECT 1")
        assert info.value.sqlstate == "57P05"
    finally:
        busy.close()
        idle.close()


def test_query_timeout(pg, proxy_factory):
    proxy = proxy_factory(
        general={"query_timeout": 700, "default_pool_size": 1}, databases=[app_database(pg)], users=[_user()]
    )
    with _connect(proxy) as c:
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="query_timeout"):
            c.execute("SELECT pg_sleep(10)")
        assert 0.6 <= time.monotonic() - t0 < 3
    # The pool (of one) still serves the next client, quickly.
    with _connect(proxy) as c:
        t0 = time.monotonic()
        assert c.execute("SELECT pg_sleep(0.1), 2").fetchone() == ("", 2)
        assert time.monotonic() - t0 < 3


def test_max_client_conn_sslmode_disable(pg, proxy_factory, poll):
    proxy = proxy_factory(general={"max_client_conn": 2}, databases=[app_database(pg)], users=[_user()])
    held: list[psycopg.Connection] = []

    def one_more() -> bool:
        # The harness's readiness probe may still count as a client for a moment.
        try:
            held.append(_connect(proxy))
        except psycopg.OperationalError:
            return False
        return True

    try:
        poll(one_more, what="first client under max_client_conn")
        poll(one_more, what="second client under max_client_conn")
        with pytest.raises(psycopg.OperationalError, match="too many client connections"):
            _connect(proxy)

        async def attempt() -> None:
            conn = await asyncpg.connect(proxy.url(APP_USER, APP_PASSWORD, APP_DB), ssl=False, timeout=10)
            await conn.close()

        with pytest.raises(asyncpg.TooManyConnectionsError) as info:
            asyncio.run(attempt())
        assert info.value.sqlstate == "53300"
    finally:
        for c in held:
            c.close()
    # Room again once they left.
    with _connect(proxy) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_max_client_conn_reason_visible_with_default_sslmode(pg, proxy_factory, poll):
    proxy = proxy_factory(general={"max_client_conn": 1}, databases=[app_database(pg)], users=[_user()])
    holder: list[psycopg.Connection] = []

    def first_connects() -> bool:
        # The harness's readiness probe may still count as a client for a moment.
        try:
            holder.append(_connect(proxy))
        except psycopg.OperationalError:
            return False
        return True

    poll(first_connects, what="the first client fits under max_client_conn = 1")
    with holder[0]:
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10)  # sslmode=prefer
        assert "too many client connections" in str(info.value), str(info.value)


def test_min_pool_size_and_idle_timeout(pg, proxy_factory, poll):
    user = f"minpool_{uuid.uuid4().hex[:8]}"
    pg.create_user(user, "pw")
    proxy = proxy_factory(
        general={"default_pool_size": 3, "min_pool_size": 2, "idle_timeout": 500},
        databases=[app_database(pg)],
        users=[_user(user, "pw")],
    )
    # min_pool_size servers are opened without any client.
    poll(lambda: _server_count(pg, user) == 2, what="2 idle servers at start")
    # Three concurrent transactions: the pool grows to its size.
    conns = [_connect(proxy, user, "pw", autocommit=False) for _ in range(3)]
    try:
        pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns}
        assert len(pids) == 3
        assert _server_count(pg, user) == 3
    finally:
        for c in conns:
            c.close()
    # Idle beyond idle_timeout: closed down to min_pool_size, not below.
    poll(lambda: _server_count(pg, user) == 2, timeout=10, what="shrunk back to min_pool_size")


def test_server_lifetime_replaces_old_servers(pg, proxy_factory, poll):
    proxy = proxy_factory(
        general={"default_pool_size": 1, "server_lifetime": 300}, databases=[app_database(pg)], users=[_user()]
    )
    with _connect(proxy) as c:
        (first,) = c.execute("SELECT pg_backend_pid()").fetchone()
        # Each query checks the server out and in again: once old enough, it is replaced.
        poll(lambda: c.execute("SELECT pg_backend_pid()").fetchone()[0] != first, what="server replaced")
        assert c.execute("SELECT 1").fetchone() == (1,)
