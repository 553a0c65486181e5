"""Operating a transaction-mode proxy: SIGHUP reloads (pool size growing under a waiting client,
broken files, databases and users added and removed), SIGTERM/SIGINT with transactions in flight,
and client_idle_in_transaction_timeout."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import os
import signal
import socket
import struct
import subprocess
import time
import uuid

import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.events import events_text
from tests.harness.ports import port_open
from tests.harness.rawclient import RawConn, error_fields, message, query, startup_packet
from tests.harness.tables import create_table

IDLE_TXN_MS = 800


def _general(**extra) -> dict:
    return {"pooler_mode": "transaction", "default_pool_size": 1, "checkout_timeout": 15000, **extra}


def _ids(pg, table: str) -> str:
    return pg.psql(f"SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM {table}", db=APP_DB)


def _events(proxy, kind: str) -> str:
    return events_text(proxy, "--kind", kind)


def _log_lines(proxy, needle: str) -> list[str]:
    return [ln for ln in proxy.log_text().splitlines() if needle in ln]


# --------------------------------------------------------------------------- raw protocol client


class Raw(RawConn):
    """A raw protocol client with its own SCRAM-SHA-256, to see the exact messages (SQLSTATEs)."""

    def __init__(self, proxy, user: str = APP_USER, password: str = APP_PASSWORD, dbname: str = APP_DB) -> None:
        super().__init__(socket.create_connection((proxy.host, proxy.port), timeout=15), reset_is_eof=True)
        self.user, self.password = user, password
        self.sock.sendall(startup_packet(user, dbname))
        self.error: dict[str, str] | None = None
        self.messages: list[tuple[bytes, bytes]] = []
        self._login()

    def _must_read(self) -> tuple[bytes, bytes]:
        m = self.read()
        assert m is not None, f"connection closed during login after {self.messages!r}"
        self.messages.append(m)
        return m

    def _login(self) -> None:
        while True:
            t, body = self._must_read()
            if t == b"E":
                self.error = error_fields(body)
                return
            if t == b"Z":
                return
            if t == b"R" and struct.unpack(">i", body[:4])[0] == 10:
                self._scram(body)

    def _scram(self, body: bytes) -> None:
        assert b"SCRAM-SHA-256\0" in body[4:], body
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = b"n,," + first_bare.encode()
        self.sock.sendall(message(b"p", b"SCRAM-SHA-256\0" + struct.pack(">i", len(first)) + first))
        t, body = self._must_read()
        if t == b"E":
            raise AssertionError(f"SCRAM refused: {error_fields(body)}")
        assert t == b"R" and struct.unpack(">i", body[:4])[0] == 11, (t, body)
        server_first = body[4:].decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(nonce)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.sock.sendall(message(b"p", f"{without_proof},p={base64.b64encode(proof).decode()}".encode()))


# --------------------------------------------------------------------------- server connections of a proxy


def _proxy_server_ports(proxy, pg) -> set[int]:
    """Local ports of the proxy process's TCP connections to `pg` (the client_port PostgreSQL sees)."""
    pid = proxy.pid
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.split(":")[1], 16) == pg.port:
                ports.add(int(local.split(":")[1], 16))
    return ports


def _backends(pg, ports: set[int], pids: set[int]) -> int:
    where = " OR ".join(
        [f"client_port IN ({','.join(map(str, sorted(ports)))})"] * bool(ports)
        + [f"pid IN ({','.join(map(str, sorted(pids)))})"] * bool(pids)
    )
    return int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE {where}"))


# --------------------------------------------------------------------------- SIGHUP


def test_sighup_pool_size_serves_waiting_client(pg, proxy_factory, poll):
    proxy = proxy_factory(general=_general(), databases=[app_database(pg)], users=[app_user()])
    survivor = connect(proxy)
    holder = connect(proxy, autocommit=False)
    waiter = connect(proxy)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        assert survivor.execute("SELECT 1").fetchone() == (1,)
        (held_pid,) = holder.execute("SELECT pg_backend_pid()").fetchone()  # BEGIN: the only server is held
        cid = waiter.info.backend_pid  # the proxy's id for this client
        future = pool.submit(lambda: waiter.execute("SELECT pg_backend_pid()").fetchone()[0])
        poll(lambda: f"ENQUEUE client={cid} " in _events(proxy, "enqueue"), what="second client queued")
        assert not future.done(), "the second client got a server while the only one was held"

        proxy.update(general={**proxy.general, "default_pool_size": 2})
        poll(lambda: _log_lines(proxy, "configuration reloaded"), what="reload logged")
        waiter_pid = future.result(timeout=10)
        assert waiter_pid != held_pid
        # The holder never let go of its server and its transaction is intact.
        assert holder.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert holder.execute("SELECT pg_backend_pid()").fetchone() == (held_pid,)
        holder.commit()
        # Clients connected before the reload carry on.
        assert survivor.execute("SELECT 5").fetchone() == (5,)
        assert waiter.execute("SELECT 6").fetchone() == (6,)
        assert proxy.returncode is None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for c in (holder, waiter, survivor):
            c.close()


def test_sighup_broken_config_keeps_running_config(pg, proxy_factory, poll):
    proxy = proxy_factory(general=_general(checkout_timeout=500), databases=[app_database(pg)], users=[app_user()])
    survivor = connect(proxy)
    good_general, good_users = dict(proxy.general), list(proxy.users)

    def pool_is_still_one() -> None:
        holder = connect(proxy, autocommit=False)
        try:
            holder.execute("SELECT 1")
            with connect(proxy) as other, pytest.raises(psycopg.OperationalError, match=r"(?i)checkout timeout"):
                other.execute("SELECT 1")
        finally:
            holder.close()

    try:
        assert survivor.execute("SELECT 1").fetchone() == (1,)
        # A bad value in pgdog.toml, next to a valid change that must not apply either.
        proxy.update(general={**good_general, "default_pool_size": 3, "checkout_timeout": "soon"})
        poll(lambda: len(_log_lines(proxy, "reload failed")) >= 1, what="first reload failure logged")
        line = _log_lines(proxy, "reload failed")[-1]
        assert "pgdog.toml" in line and "checkout_timeout" in line, line
        pool_is_still_one()
        assert survivor.execute("SELECT 2").fetchone() == (2,)

        # A bad value in users.toml.
        proxy.update(general=good_general, users=[{**app_user(), "pool_size": "big"}])
        poll(lambda: len(_log_lines(proxy, "reload failed")) >= 2, what="second reload failure logged")
        line = _log_lines(proxy, "reload failed")[-1]
        assert "users.toml" in line and "pool_size" in line, line
        assert survivor.execute("SELECT 3").fetchone() == (3,)

        # Not TOML at all.
        proxy.users = good_users
        proxy.write_config()
        with open(proxy.config_path, "a") as f:
            f.write("\n[general\ndefault_pool_size = = 4\n")
        proxy.signal(signal.SIGHUP)
        poll(lambda: len(_log_lines(proxy, "reload failed")) >= 3, what="third reload failure logged")
        line = _log_lines(proxy, "reload failed")[-1]
        assert "pgdog.toml" in line, line
        assert proxy.returncode is None
        pool_is_still_one()
        assert survivor.execute("SELECT 4").fetchone() == (4,)
        with connect(proxy) as c:
            assert c.execute("SELECT 5").fetchone() == (5,)
        assert not _log_lines(proxy, "configuration reloaded")

        # Fixed: the next reload applies.
        proxy.update(general={**good_general, "default_pool_size": 2})
        poll(lambda: _log_lines(proxy, "configuration reloaded"), what="reload logged")
        holder = connect(proxy, autocommit=False)
        try:
            holder.execute("SELECT 1")
            with connect(proxy) as other:
                assert other.execute("SELECT 6").fetchone() == (6,)
        finally:
            holder.close()
        assert "Traceback" not in proxy.log_text()
    finally:
        survivor.close()


def test_sighup_adds_and_removes_database_and_user(pg, proxy_factory, poll):
    table = create_table(pg, "reloaddb")
    new_db, new_user, new_pw = "app2", f"reload_{uuid.uuid4().hex[:6]}", "reload_pw"
    proxy = proxy_factory(general=_general(default_pool_size=2), databases=[app_database(pg)], users=[app_user()])
    survivor = connect(proxy)
    try:
        # Neither exists yet.
        r = Raw(proxy, new_user, new_pw, new_db)
        r.close()
        assert r.error is not None, r.messages
        r = Raw(proxy, APP_USER, APP_PASSWORD, new_db)
        r.close()
        assert r.error is not None and r.error["C"] == "3D000", r.error

        new_user_entry = {
            "name": new_user,
            "database": new_db,
            "password": new_pw,
            "server_user": APP_USER,
            "server_password": APP_PASSWORD,
        }
        proxy.update(
            databases=[app_database(pg), app_database(pg, new_db)],
            users=[app_user(), app_user(new_db), new_user_entry],
        )
        poll(lambda: len(_log_lines(proxy, "configuration reloaded")) >= 1, what="reload logged")
        with connect(proxy, new_user, new_pw, dbname=new_db) as c:
            assert c.execute("SELECT current_database(), current_user").fetchone() == (APP_DB, APP_USER)
        with pytest.raises(psycopg.OperationalError):
            connect(proxy, new_user, "wrong", dbname=new_db).close()

        # A transaction open on the database about to be removed.
        inflight = connect(proxy, dbname=new_db, autocommit=False)
        try:
            inflight.execute(f"INSERT INTO {table} VALUES (1)")
            proxy.update(databases=[app_database(pg)], users=[app_user()])
            poll(lambda: len(_log_lines(proxy, "configuration reloaded")) >= 2, what="second reload logged")
            r = Raw(proxy, APP_USER, APP_PASSWORD, new_db)
            r.close()
            assert r.error is not None and r.error["C"] == "3D000", r.error
            assert new_db in r.error["M"], r.error
            r = Raw(proxy, new_user, new_pw, new_db)
            r.close()
            assert r.error is not None, r.messages
            # The transaction in flight still finishes.
            inflight.execute(f"INSERT INTO {table} VALUES (2)")
            inflight.commit()
        finally:
            inflight.close()
        assert _ids(pg, table) == "{1,2}"
        assert survivor.execute("SELECT current_database()").fetchone() == (APP_DB,)
    finally:
        survivor.close()


# --------------------------------------------------------------------------- SIGTERM / SIGINT


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_lets_transaction_in_flight_commit(pg, proxy_factory, poll, sig):
    table = create_table(pg, "shutdown")
    proxy = proxy_factory(
        general=_general(default_pool_size=2, shutdown_timeout=30000), databases=[app_database(pg)], users=[app_user()]
    )
    busy = connect(proxy, autocommit=False)
    try:
        busy.execute(f"INSERT INTO {table} VALUES (1)")
        pids = {busy.execute("SELECT pg_backend_pid()").fetchone()[0]}
        with connect(proxy) as other:  # a second server, idle in the pool
            pids.add(other.execute("SELECT pg_backend_pid()").fetchone()[0])
        ports = _proxy_server_ports(proxy, pg)
        assert len(ports) == 2 and len(pids) == 2, (ports, pids)
        assert _backends(pg, ports, set()) == 2, "could not find the proxy's server connections"
        # Found by client port, not by application_name: a server's application_name follows
        # the client it serves (set_config/RESET), so it is not a reliable mark of the proxy.
        apps = pg.psql(
            f"SELECT string_agg(DISTINCT quote_literal(application_name), ',') FROM pg_stat_activity"
            f" WHERE client_port IN ({','.join(map(str, ports))})"
        )

        proxy.signal(sig)
        poll(lambda: not port_open(proxy.host, proxy.port), what="listener closed")
        with pytest.raises(psycopg.OperationalError):
            connect(proxy).close()
        assert proxy.returncode is None, "the proxy exited with a transaction in flight"
        busy.execute(f"INSERT INTO {table} VALUES (2)")
        busy.commit()
        t0 = time.monotonic()
        try:
            code = proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the proxy did not exit within 10s of its last transaction ending")
        assert code == 0
        assert time.monotonic() - t0 < 10
    finally:
        busy.close()
    assert _ids(pg, table) == "{1,2}"
    poll(lambda: _backends(pg, ports, pids) == 0, what=f"server connections ({apps}) closed")
    assert "Traceback" not in proxy.log_text()


def test_shutdown_timeout_rolls_back_unfinished_transaction(pg, proxy_factory, poll):
    table = create_table(pg, "shutdownto")
    proxy = proxy_factory(general=_general(shutdown_timeout=1000), databases=[app_database(pg)], users=[app_user()])
    busy = connect(proxy, autocommit=False)
    try:
        busy.execute(f"INSERT INTO {table} VALUES (1)")
        pids = {busy.execute("SELECT pg_backend_pid()").fetchone()[0]}
        ports = _proxy_server_ports(proxy, pg)
        assert _backends(pg, ports, pids) == 1
        t0 = time.monotonic()
        proxy.signal(signal.SIGTERM)
        try:
            assert proxy.wait(timeout=10) == 0
        except subprocess.TimeoutExpired:
            pytest.fail("the proxy did not exit within 10s with shutdown_timeout=1000")
        waited = time.monotonic() - t0
        assert 0.8 <= waited < 6, f"exited {waited:.2f}s after SIGTERM with shutdown_timeout=1000"
        with pytest.raises(psycopg.OperationalError):
            busy.execute(f"INSERT INTO {table} VALUES (2)")
            busy.commit()
    finally:
        busy.close()
    poll(lambda: _backends(pg, ports, pids) == 0, what="server connections closed")
    assert _ids(pg, table) == "{}"


# --------------------------------------------------------------------------- client_idle_in_transaction_timeout


@pytest.fixture
def idle_proxy(pg, proxy_factory):
    return proxy_factory(
        general=_general(client_idle_in_transaction_timeout=IDLE_TXN_MS),
        databases=[app_database(pg)],
        users=[app_user()],
    )


@pytest.mark.parametrize("failed", [False, True], ids=["open", "failed"])
def test_idle_in_transaction_timeout_disconnects_and_rolls_back(pg, idle_proxy, failed):
    table = create_table(pg, "idletxn")
    bystander = connect(idle_proxy)  # idle outside a transaction the whole time: not affected
    try:
        (pid,) = bystander.execute("SELECT pg_backend_pid()").fetchone()
        raw = Raw(idle_proxy)
        assert raw.error is None, raw.error
        try:
            raw.sock.sendall(query(f"BEGIN; INSERT INTO {table} VALUES (1); SELECT 1"))
            msgs = raw.until(b"Z")
            assert msgs[-1] == (b"Z", b"T"), msgs
            if failed:  # idle in an aborted transaction counts too
                raw.sock.sendall(query("SELECT 1/0"))
                msgs = raw.until(b"Z")
                assert msgs[-1] == (b"Z", b"E"), msgs
            t0 = time.monotonic()
            # Pool of one: this client waits for the server the idle transaction holds.
            with connect(idle_proxy) as other:
                got = other.execute(f"SELECT pg_backend_pid(), count(*) FROM {table}").fetchone()
            waited = time.monotonic() - t0
            rest = raw.rest()
        finally:
            raw.close()
        errors = [error_fields(body) for t, body in rest if t == b"E"]
        assert errors, f"no ErrorResponse before the disconnect: {rest!r}"
        assert errors[0]["C"] == "25P03", errors
        assert errors[0]["S"] == "FATAL", errors
        assert waited >= IDLE_TXN_MS / 1000 * 0.8, f"the idle transaction was cut after {waited:.2f}s"
        assert waited < IDLE_TXN_MS / 1000 + 5
        # Rolled back, and the same server went back to the pool.
        assert got == (pid, 0), got
        assert _ids(pg, table) == "{}"
        assert bystander.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
    finally:
        bystander.close()


def test_idle_in_transaction_timeout_psycopg_sees_error(pg, idle_proxy, poll):
    table = create_table(pg, "idletxnpg")
    client = connect(idle_proxy, autocommit=False)
    try:
        client.execute(f"INSERT INTO {table} VALUES (1)")
        (pid,) = client.execute("SELECT pg_backend_pid()").fetchone()
        state = f"SELECT coalesce(max(state), 'gone') FROM pg_stat_activity WHERE pid = {pid}"
        assert pg.psql(state) == "idle in transaction"
        poll(
            lambda: pg.psql(state) != "idle in transaction",
            timeout=IDLE_TXN_MS / 1000 + 10,
            what="idle transaction ended on the server",
        )
        with pytest.raises(psycopg.Error) as caught:
            client.execute("SELECT 1")
        assert caught.value.sqlstate == "25P03", repr(caught.value)
        assert client.closed
    finally:
        client.close()
    assert _ids(pg, table) == "{}"
    with connect(idle_proxy) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_short_idle_periods_in_transaction_are_fine(pg, idle_proxy):
    table = create_table(pg, "idleshort")
    client = connect(idle_proxy, autocommit=False)
    try:
        t0 = time.monotonic()
        client.execute(f"INSERT INTO {table} VALUES (1)")
        for i in range(4):
            time.sleep(IDLE_TXN_MS / 1000 / 4)  # the workload: idle, but well under the timeout
            client.execute(f"INSERT INTO {table} VALUES (%s)", (i + 2,))
        assert time.monotonic() - t0 > IDLE_TXN_MS / 1000, "the transaction should outlast one timeout"
        client.commit()
    finally:
        client.close()
    assert _ids(pg, table) == "{1,2,3,4,5}"


def test_long_query_in_transaction_is_not_idle(pg, idle_proxy):
    """The timer runs only while the client is idle: a statement running longer than the timeout
    inside a transaction is not cut."""
    table = create_table(pg, "idlebusy")
    client = connect(idle_proxy, autocommit=False)
    try:
        client.execute(f"INSERT INTO {table} VALUES (1)")
        client.execute("SELECT pg_sleep(%s)", (IDLE_TXN_MS / 1000 * 1.5,))
        client.execute(f"INSERT INTO {table} VALUES (2)")
        client.commit()
    finally:
        client.close()
    assert _ids(pg, table) == "{1,2}"
