"""Clients that vanish: an open transaction is rolled back, a running query is cancelled, and the
(single) server is handed to the next client clean and promptly."""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import time
import uuid

import psycopg
import pytest

from tests.conftest import APP_DB
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.events import events_text

IDLE = psycopg.pq.TransactionStatus.IDLE


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={"default_pool_size": 1, "pooler_mode": "transaction", "checkout_timeout": 15000},
        databases=[app_database(pg)],
        users=[app_user()],
    )


def _vanish(conn: psycopg.Connection, how: str) -> None:
    """Drop the client's TCP connection without a Terminate message.

    "fin": shutdown(SHUT_RDWR) on a duplicate of libpq's socket; "rst": SO_LINGER 0 and the last
    descriptor closed, so the proxy gets a reset. libpq's descriptor is left pointing at /dev/null
    (never a closed number another file could reuse)."""
    fd = conn.pgconn.socket
    dup = socket.socket(fileno=os.dup(fd))
    if how == "fin":
        dup.shutdown(socket.SHUT_RDWR)
        dup.close()
        return
    dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, fd)
    os.close(null)
    dup.close()


def _table(proxy, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with connect(proxy) as c:
        c.execute(f"CREATE TABLE {name} (id int)")
    return name


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_abandoned_transaction_rolled_back(pg, proxy, how):
    table = _table(proxy, f"aband_{how}")
    a = connect(proxy, autocommit=False)
    try:
        a.execute(f"INSERT INTO {table} VALUES (1)")
        (pid,) = a.execute("SELECT pg_backend_pid()").fetchone()
        assert a.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        _vanish(a, how)
        with connect(proxy) as b:
            t0 = time.monotonic()
            assert b.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
            assert time.monotonic() - t0 < 5
            assert b.info.transaction_status == IDLE
            assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
            # Not inside a leftover transaction: now() moves between statements.
            t1 = b.execute("SELECT now()").fetchone()[0]
            t2 = b.execute("SELECT pg_sleep(0.01), now()").fetchone()[1]
            assert t2 > t1
            b.execute(f"INSERT INTO {table} VALUES (2)")
        assert pg.psql(f"SELECT array_agg(id) FROM {table}", db=APP_DB) == "{2}"
    finally:
        a.close()


@pytest.mark.parametrize("in_transaction", [False, True])
def test_client_killed_mid_query_server_cancelled_and_reused(pg, proxy, poll, in_transaction):
    table = _table(proxy, "midq")
    mark = f"midq_{uuid.uuid4().hex[:8]}"
    a = connect(proxy, autocommit=not in_transaction)
    try:
        if in_transaction:
            a.execute(f"INSERT INTO {table} VALUES (1)")
        (pid,) = a.execute("SELECT pg_backend_pid()").fetchone()
        a.pgconn.send_query(f"SELECT pg_sleep(30) /* {mark} */".encode())
        running = f"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%/* {mark} */%'" \
                  f" AND pid = {pid}"
        poll(lambda: pg.psql(running) == "1", what="pg_sleep running on the server")
        _vanish(a, "rst")
        t0 = time.monotonic()
        with connect(proxy) as b:
            assert b.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
            waited = time.monotonic() - t0
            assert waited < 4, f"server handed on after {waited:.1f}s"
            assert b.info.transaction_status == IDLE
            assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        assert pg.psql(running) == "0"
    finally:
        a.close()


def test_terminate_in_transaction_rolls_back(pg, proxy):
    table = _table(proxy, "term")
    a = connect(proxy, autocommit=False)
    a.execute(f"INSERT INTO {table} VALUES (1)")
    (pid,) = a.execute("SELECT pg_backend_pid()").fetchone()
    a.close()  # a polite Terminate, transaction still open
    with connect(proxy) as b:
        assert b.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
        assert b.info.transaction_status == IDLE
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_client_leaving_while_queued_is_dequeued(proxy, poll):
    table = _table(proxy, "queued")
    holder = connect(proxy, autocommit=False)
    waiter = connect(proxy)
    cid = waiter.info.backend_pid  # the proxy's BackendKeyData pid is its client id
    try:
        holder.execute(f"INSERT INTO {table} VALUES (1)")  # the only server is taken
        (pid,) = holder.execute("SELECT pg_backend_pid()").fetchone()
        waiter.pgconn.send_query(f"INSERT INTO {table} VALUES (2)".encode())
        while waiter.pgconn.flush():
            pass
        poll(lambda: re.search(rf"ENQUEUE client={cid}\b", events_text(proxy, "--kind", "enqueue")),
             what="waiter queued")
        _vanish(waiter, "rst")  # leaves while queued for the server
        poll(lambda: re.search(rf"DEQUEUE client={cid}\b", events_text(proxy, "--kind", "dequeue")),
             timeout=3, what="waiter dequeued")
        holder.commit()
        t0 = time.monotonic()
        with connect(proxy) as c:
            # The waiter's query was never run: it left before a server was free.
            assert c.execute(f"SELECT pg_backend_pid(), array_agg(id) FROM {table}").fetchone() == (pid, [1])
        assert time.monotonic() - t0 < 3
    finally:
        holder.close()
        waiter.close()


def test_cancel_request_through_proxy(pg, proxy, poll):
    mark = f"cancel_{uuid.uuid4().hex[:8]}"
    with connect(proxy) as c:
        (pid,) = c.execute("SELECT pg_backend_pid()").fetchone()
        c.pgconn.send_query(f"SELECT pg_sleep(30) /* {mark} */".encode())
        while c.pgconn.flush():
            pass
        running = (
            f"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%/* {mark} */%'"
            f" AND pid = {pid}"
        )
        poll(lambda: pg.psql(running) == "1", what="pg_sleep running")
        t0 = time.monotonic()
        c.cancel()
        res = None
        while True:  # collect the results of the cancelled query
            c.pgconn.consume_input()
            if not c.pgconn.is_busy():
                r = c.pgconn.get_result()
                if r is None:
                    break
                res = r
            else:
                select.select([c.pgconn.socket], [], [], 1)
            assert time.monotonic() - t0 < 5, "query not cancelled within 5s"
        assert res is not None and res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"57014"
        # The connection and its server are fine afterwards.
        assert c.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
    # A cancel with a wrong key does nothing (and does not disturb the proxy).
    with connect(proxy) as c:
        s = socket.create_connection((proxy.host, proxy.port), timeout=5)
        s.sendall(struct.pack(">IIII", 16, 80877102, c.info.backend_pid, 12345))
        s.settimeout(5)
        assert s.recv(100) == b""
        s.close()
        assert c.execute("SELECT pg_sleep(0.1), 1").fetchone() == ("", 1)


def test_server_killed_while_idle_in_pool_is_replaced(pg, proxy, poll):
    with connect(proxy) as c:
        (pid,) = c.execute("SELECT pg_backend_pid()").fetchone()
        assert pg.psql(f"SELECT pg_terminate_backend({pid})") == "t"
        poll(lambda: pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == "0",
             what="backend gone")
        # The proxy notices the closed socket; the next query runs on a new server.
        new = poll(lambda: c.execute("SELECT pg_backend_pid()").fetchone()[0], what="query on a new server")
        assert new != pid


def test_server_killed_mid_transaction_errors_the_client(pg, proxy):
    table = _table(proxy, "killed")
    a = connect(proxy, autocommit=False)
    try:
        a.execute(f"INSERT INTO {table} VALUES (1)")
        (pid,) = a.execute("SELECT pg_backend_pid()").fetchone()
        assert pg.psql(f"SELECT pg_terminate_backend({pid})") == "t"
        with pytest.raises(psycopg.OperationalError):
            a.execute("SELECT 1")
    finally:
        a.close()
    with connect(proxy) as b:
        (new,) = b.execute("SELECT pg_backend_pid()").fetchone()
        assert new != pid
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
