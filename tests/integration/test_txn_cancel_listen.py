"""Cancel requests through the proxy (of a running query, of a query waiting for a server, with a
wrong key) and LISTEN/NOTIFY in session and transaction mode."""

from __future__ import annotations

import asyncio
import select
import socket
import time
import uuid

import asyncpg
import psycopg
import pytest

from pgdog_ev.wire.startup import build_cancel_request
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.config import SESS_PASSWORD, SESS_USER, app_database, app_user, session_user

ONE_USER, ONE_PASSWORD = "app_one", "one_pw"  # transaction mode, pool of 1
SQLSTATE = psycopg.pq.DiagnosticField.SQLSTATE
CANCEL_WITHIN = 5.0


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    """`app`: transaction mode, pool of 2; `app_one`: transaction mode, pool of 1; `app_sess`:
    session mode (all log in to PostgreSQL as app)."""
    server = {"server_user": APP_USER, "server_password": APP_PASSWORD}
    return module_proxy_factory(
        general={"default_pool_size": 2, "pooler_mode": "transaction", "checkout_timeout": 20000},
        databases=[app_database(pg)],
        users=[
            app_user(),
            {"name": ONE_USER, "database": APP_DB, "password": ONE_PASSWORD, "pool_size": 1, **server},
            session_user(),
        ],
    )


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _send(conn: psycopg.Connection, sql: str) -> None:
    """Send a simple query without waiting for its result."""
    conn.pgconn.send_query(sql.encode())
    while conn.pgconn.flush():
        pass


def _result(conn: psycopg.Connection, timeout: float) -> tuple[str | None, list]:
    """Collect the results of a query sent with _send: (SQLSTATE of the error or None, rows)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        conn.pgconn.consume_input()
        if not conn.pgconn.is_busy():
            r = conn.pgconn.get_result()
            if r is None:
                break
            last = r
        else:
            left = deadline - time.monotonic()
            assert left > 0, f"no result within {timeout}s"
            select.select([conn.pgconn.socket], [], [], min(left, 0.5))
    assert last is not None
    code = last.error_field(SQLSTATE)
    rows = [last.get_value(i, 0) for i in range(last.ntuples)]
    return (code.decode() if code else None), rows


def _busy(conn: psycopg.Connection) -> bool:
    conn.pgconn.consume_input()
    return conn.pgconn.is_busy()


def _running(pg, mark: str) -> int:
    return int(
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
            f" AND query LIKE '%/* {mark} */%'"
        )
    )


# --------------------------------------------------------------------------- cancel


def test_cancel_hits_only_its_client(pg, proxy, poll):
    ma, mb = f"cancel_a_{_uid()}", f"cancel_b_{_uid()}"
    a, b = connect(proxy), connect(proxy)
    try:
        _send(a, f"SELECT pg_sleep(30) /* {ma} */")
        _send(b, f"SELECT pg_sleep(30) /* {mb} */")
        poll(lambda: _running(pg, ma) == 1 and _running(pg, mb) == 1, what="both sleeps running")
        t0 = time.monotonic()
        a.cancel_safe(timeout=CANCEL_WITHIN)  # libpq's new cancel API (SSL negotiation first)
        code, _ = _result(a, CANCEL_WITHIN)
        assert code == "57014"
        assert time.monotonic() - t0 < CANCEL_WITHIN
        # B was not touched.
        assert _busy(b)
        assert _running(pg, mb) == 1
        assert a.execute("SELECT 'a again'").fetchone() == ("a again",)
        assert _busy(b) and _running(pg, mb) == 1
        t0 = time.monotonic()
        b.cancel()  # the classic PQcancel
        code, _ = _result(b, CANCEL_WITHIN)
        assert code == "57014"
        assert b.execute("SELECT 'b again'").fetchone() == ("b again",)
        assert _running(pg, ma) == 0 and _running(pg, mb) == 0
    finally:
        a.close()
        b.close()


def test_cancel_while_waiting_for_a_server(pg, proxy):
    table = f"public.cq_{_uid()}"
    with connect(proxy) as setup:
        setup.execute(f"CREATE TABLE {table} (id int)")
    holder = connect(proxy, ONE_USER, ONE_PASSWORD)
    waiter = connect(proxy, ONE_USER, ONE_PASSWORD)
    try:
        holder.execute("BEGIN")
        (pid,) = holder.execute("SELECT pg_backend_pid()").fetchone()
        holder.execute(f"INSERT INTO {table} VALUES (1)")
        _send(waiter, "SELECT 42")
        # A round trip through the proxy after the waiter's query was sent: by then the proxy has
        # read it and queued the waiter (checkout_timeout is 20 s).
        assert holder.execute("SELECT 2").fetchone() == (2,)
        assert _busy(waiter)
        t0 = time.monotonic()
        waiter.cancel()
        code, rows = _result(waiter, CANCEL_WITHIN)
        assert (code, rows) == ("57014", [])
        assert time.monotonic() - t0 < CANCEL_WITHIN
        # The holder's transaction is untouched.
        assert holder.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert holder.execute(f"SELECT count(*), pg_backend_pid() FROM {table}").fetchone() == (1, pid)
        holder.execute(f"INSERT INTO {table} VALUES (2)")
        holder.execute("COMMIT")
        assert waiter.execute(f"SELECT array_agg(id ORDER BY id), pg_backend_pid() FROM {table}").fetchone() == (
            [1, 2],
            pid,
        )
    finally:
        holder.close()
        waiter.close()


def test_cancel_from_idle_client_does_not_hit_the_next_user_of_its_server(pg, proxy, poll):
    """Pool of 1: A used the server and is idle; B now runs a long query on it. A's cancel has
    nothing to cancel and must not reach B's query."""
    mark = f"idlecancel_{_uid()}"
    a = connect(proxy, ONE_USER, ONE_PASSWORD)
    b = connect(proxy, ONE_USER, ONE_PASSWORD)
    try:
        (pid,) = a.execute("SELECT pg_backend_pid()").fetchone()
        _send(b, f"SELECT pg_sleep(30), pg_backend_pid() /* {mark} */")
        poll(lambda: _running(pg, mark) == 1, what="B's sleep running")
        a.cancel()
        a.cancel_safe(timeout=CANCEL_WITHIN)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert _busy(b), "B's query ended after A (idle) sent a cancel"
            assert _running(pg, mark) == 1
        b.cancel()
        code, _ = _result(b, CANCEL_WITHIN)
        assert code == "57014"
        assert a.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
    finally:
        a.close()
        b.close()


def _raw_cancel(proxy, pid: int, secret: bytes) -> None:
    s = socket.create_connection((proxy.host, proxy.port), timeout=5)
    try:
        s.sendall(build_cancel_request(pid, secret))
        s.settimeout(5)
        assert s.recv(100) == b"", "the proxy answered a CancelRequest"
    finally:
        s.close()


def test_cancel_with_wrong_key_does_nothing(pg, proxy, poll):
    mark = f"wrongkey_{_uid()}"
    with connect(proxy) as a, connect(proxy) as b:
        fake_pid = a.info.backend_pid  # what the proxy announced, not a server pid
        _send(a, f"SELECT pg_sleep(30) /* {mark} */")
        poll(lambda: _running(pg, mark) == 1, what="sleep running")
        server_pid = int(pg.psql(
            f"SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE '%/* {mark} */%'"
        ))
        _raw_cancel(proxy, fake_pid, b"\x00\x00\x00\x01")
        _raw_cancel(proxy, fake_pid, b"\xfe\xdc\xba\x98")
        _raw_cancel(proxy, server_pid, b"\x00\x00\x00\x01")
        _raw_cancel(proxy, fake_pid + 1, b"\x00\x00\x00\x01")
        # Watch for a second: the query keeps running (a cancel would end it within milliseconds).
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert _busy(a), "the query ended after a cancel with a wrong key"
            assert _running(pg, mark) == 1
        assert b.execute("SELECT 'proxy fine'").fetchone() == ("proxy fine",)
        a.cancel()
        code, _ = _result(a, CANCEL_WITHIN)
        assert code == "57014"
        assert a.execute("SELECT 1").fetchone() == (1,)


# --------------------------------------------------------------------------- LISTEN / NOTIFY


def _notifies(conn: psycopg.Connection, n: int, timeout: float = 5.0) -> list[tuple[str, str]]:
    got = [(x.channel, x.payload) for x in conn.notifies(timeout=timeout, stop_after=n)]
    assert len(got) == n, f"expected {n} notifications within {timeout}s, got {got}"
    return got


def test_listen_notify_session_mode(proxy):
    ch = f"sess_{_uid()}"
    with connect(proxy, SESS_USER, SESS_PASSWORD) as listener, connect(proxy) as sender:
        listener.execute(f"LISTEN {ch}")
        sender.execute(f"NOTIFY {ch}, 'one'")
        assert _notifies(listener, 1) == [(ch, "one")]
        sender.execute("SELECT pg_notify(%s, %s)", (ch, "two"))
        with sender.transaction():
            sender.execute(f"NOTIFY {ch}, 'three'")
            sender.execute(f"NOTIFY {ch}, 'four'")
        assert _notifies(listener, 3) == [(ch, "two"), (ch, "three"), (ch, "four")]
        listener.execute(f"UNLISTEN {ch}")
        sender.execute(f"NOTIFY {ch}, 'unheard'")
        assert listener.execute("SELECT 1").fetchone() == (1,)
        assert list(listener.notifies(timeout=0.5)) == []

    async def main() -> None:
        got: asyncio.Queue = asyncio.Queue()
        lc = await asyncpg.connect(proxy.url(SESS_USER, SESS_PASSWORD, APP_DB), timeout=10)
        sc = await asyncpg.connect(proxy.url(APP_USER, APP_PASSWORD, APP_DB), timeout=10, statement_cache_size=0)
        try:
            await lc.add_listener(ch, lambda _c, _pid, channel, payload: got.put_nowait((channel, payload)))
            await sc.execute(f"NOTIFY {ch}, 'apg'")
            assert await asyncio.wait_for(got.get(), 5) == (ch, "apg")
        finally:
            await lc.close()
            await sc.close()

    asyncio.run(main())


def test_listen_notify_transaction_mode(proxy):
    ch = f"txn_{_uid()}"
    with connect(proxy) as listener, connect(proxy) as sender:
        listener.execute(f"LISTEN {ch}")
        (pid,) = listener.execute("SELECT pg_backend_pid()").fetchone()
        # Sent while the listener is idle (not waiting, no query running).
        sender.execute(f"NOTIFY {ch}, 'one'")
        sender.execute("SELECT pg_notify(%s, %s)", (ch, "two"))
        assert sender.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
        assert _notifies(listener, 2) == [(ch, "one"), (ch, "two")]
        for i in range(5):
            assert listener.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
            with sender.transaction():
                sender.execute(f"NOTIFY {ch}, 'tx{i}'")
            # Delivered during the listener's next query, or while it waits.
            assert listener.execute("SELECT 1").fetchone() == (1,)
            assert _notifies(listener, 1) == [(ch, f"tx{i}")]
        # Someone else's notifications on another channel are not delivered.
        sender.execute(f"NOTIFY other_{ch}, 'x'")
        sender.execute(f"NOTIFY {ch}, 'last'")
        assert _notifies(listener, 1) == [(ch, "last")]
