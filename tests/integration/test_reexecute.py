"""Input capture on a real daemon, then `pgdog-ev replay --reexecute`: the captured run goes back
through the production state machines and must emit the very transitions of its event log.

One proxy with `capture_inputs = true` serves real drivers (psycopg, asyncpg, pgbench) against a real
PostgreSQL: logins, transactions, prepared statements, an error, a cancel, a client killed in the
middle of a transaction. After a clean stop the event log and its `.inputs` file are re-executed.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from io import StringIO

import asyncpg
import psycopg
import pytest

from pgdog_ev.capture.format import In, read_capture
from state.events import RECORD_SIZE, Kind, LogHeader, Machine, Record
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER, MD5_PASSWORD, MD5_USER
from tests.harness.config import app_database, app_user
from tests.harness.pgbench import run_pgbench
from tests.harness.proxy import REPO_ROOT, _child_env
from tests.harness.rawclient import reset_close, startup_packet

SQLSTATE = psycopg.pq.DiagnosticField.SQLSTATE


def _reexecute(*argv: str) -> tuple[int, str, str]:
    from sim.reexecute import reexecute_main

    out, err = StringIO(), StringIO()
    code = reexecute_main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgdog_ev", "replay", "--reexecute", *argv],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=_child_env(None),
                          stdin=subprocess.DEVNULL)


def _wait_result(conn: psycopg.Connection, timeout: float) -> str | None:
    """SQLSTATE of the last result of a query sent with send_query (None: it succeeded)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        conn.pgconn.consume_input()
        if not conn.pgconn.is_busy():
            r = conn.pgconn.get_result()
            if r is None:
                break
            last = r
            continue
        left = deadline - time.monotonic()
        assert left > 0, f"no result within {timeout}s"
        select.select([conn.pgconn.socket], [], [], min(left, 0.5))
    assert last is not None
    code = last.error_field(SQLSTATE)
    return code.decode() if code else None


def _running(pg, mark: str) -> int:
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                       f"AND pid <> pg_backend_pid() AND query LIKE '%/* {mark} */%'"))


def _psycopg_workload(pg, proxy, table: str, poll) -> None:
    dsn = proxy.dsn(APP_USER, APP_PASSWORD, APP_DB)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as c:
        c.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
        # A transaction.
        with c.transaction():
            c.execute(f"INSERT INTO {table} VALUES (1, 'one'), (2, 'two')")
            assert c.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
        # A prepared statement, used often enough for psycopg to prepare it on the server.
        for i in range(6):
            assert c.execute(f"SELECT v FROM {table} WHERE id = %s", (1 + i % 2,), prepare=True).fetchone()
        # An error, then the session goes on.
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1 / 0")
        assert c.execute("SELECT 'after the error'").fetchone() == ("after the error",)

    # A cancel of a running query.
    mark = f"rx_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as c:
        c.pgconn.send_query(f"SELECT pg_sleep(30) /* {mark} */".encode())
        while c.pgconn.flush():
            pass
        poll(lambda: _running(pg, mark) == 1, what="the sleep running")
        c.cancel()
        assert _wait_result(c, 10) == "57014"
        assert c.execute("SELECT 'after the cancel'").fetchone() == ("after the cancel",)

    # A client killed in the middle of a transaction (its socket closes with the process).
    code = textwrap.dedent(f"""
        import sys, time, psycopg
        c = psycopg.connect({dsn!r}, connect_timeout=10)
        c.execute("INSERT INTO {table} VALUES (99, 'never committed')")
        print("in transaction", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=_child_env(None), stdin=subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "in transaction"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    # A client that crashes in the middle of its login: the proxy's read fails with a reset.
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(startup_packet(APP_USER, APP_DB))
        assert s.recv(1) == b"R"  # the proxy asked for a password and waits
        reset_close(s)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as c:
        # The abandoned transaction was rolled back on its server.
        poll(lambda: c.execute(f"SELECT count(*) FROM {table} WHERE id = 99").fetchone() == (0,),
             what="the abandoned insert rolled back")


async def _asyncpg_workload(url: str, table: str) -> None:
    conn = await asyncpg.connect(url, timeout=10, statement_cache_size=0)
    try:
        assert await conn.fetchval("SELECT 41 + 1") == 42
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES (3, 'three')")
            assert await conn.fetchval(f"SELECT v FROM {table} WHERE id = $1", 3) == "three"
        stmt = await conn.prepare(f"SELECT v FROM {table} WHERE id = $1")
        assert [await stmt.fetchval(i) for i in (1, 2, 3)] == ["one", "two", "three"]
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(f"INSERT INTO {table} VALUES (1, 'again')")
        assert await conn.fetchval("SELECT 'still here'") == "still here"
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def captured(pg, module_proxy_factory, poll):
    """A proxy run with capture on, driven by psycopg, asyncpg and pgbench, then stopped cleanly."""
    bench = f"rxbench_{uuid.uuid4().hex[:8]}"
    pg.create_database(bench, owner=APP_USER)
    run_pgbench(["-i", "-s", "1", "-q", "-h", pg.host, "-p", str(pg.port), "-U", APP_USER, bench], 120,
                APP_PASSWORD)
    proxy = module_proxy_factory(
        general={"capture_inputs": True, "default_pool_size": 3, "pooler_mode": "transaction",
                 "checkout_timeout": 20000},
        databases=[app_database(pg), app_database(pg, bench, bench)],
        users=[app_user(), app_user(bench)],
    )
    table = f"public.rx_{uuid.uuid4().hex[:8]}"
    _psycopg_workload(pg, proxy, table, poll)
    # A reload (SIGHUP) that changes the pool size: the files on disk now differ from the start.
    proxy.update(general={**proxy.general, "default_pool_size": 4})
    poll(lambda: "configuration reloaded" in proxy.log_text(), what="the reload")
    asyncio.run(_asyncpg_workload(proxy.url(APP_USER, APP_PASSWORD, APP_DB), table))
    out = run_pgbench(["-M", "prepared", "-c", "4", "-j", "2", "-t", "25", "-n", "-h", proxy.host, "-p",
                       str(proxy.port), "-U", APP_USER, bench], 120, APP_PASSWORD)
    assert "number of transactions actually processed: 100/100" in out, out
    assert proxy.stop() == 0
    return proxy


def test_capture_file_holds_the_run(captured):
    capture = read_capture(captured.event_log_path + ".inputs")
    kinds = {rec.kind for rec in capture.records}
    assert capture.ending == "finished" and not capture.truncated
    assert capture.records[0].kind == In.INIT and capture.records[-1].kind == In.FINISH
    for kind in (In.START, In.ACCEPT, In.READ, In.EOF, In.ERROR, In.CONNECT, In.TIMER, In.CALLBACKS,
                 In.ENTROPY, In.SIGNAL, In.CONFIG):
        assert kind in kinds, kind.name
    # The captured files hold no password.
    for text in (capture.header.pgdog_toml or "", capture.header.users_toml or ""):
        assert APP_PASSWORD not in text
    assert capture.header.redactions >= 2
    with open(captured.event_log_path + ".inputs", "rb") as f:
        assert APP_PASSWORD.encode() not in f.read()
    assert os.stat(captured.event_log_path + ".inputs").st_mode & 0o077 == 0


def test_reexecution_is_identical(captured):
    code, out, err = _reexecute(captured.event_log_path, "-c", captured.config_path, "-u", captured.users_path)
    assert code == 0, out + err
    assert "result: identical" in out
    assert "the daemon stopped cleanly" in out
    # The files were edited for the reload: their passwords went into the captured start files.
    assert "their passwords were put into the captured files" in out
    compared = int(out.split("records compared: ")[1].split()[0])
    assert compared > 500, out
    assert "problem:" not in out, out


def test_reexecution_through_the_cli(captured):
    from pgdog_ev import cli

    if "replay" not in cli.COMMANDS:
        pytest.skip("`pgdog-ev replay` is not wired in this build")
    res = _cli(captured.event_log_path, "-c", captured.config_path, "-u", captured.users_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "result: identical" in res.stdout


def test_without_the_real_files_the_scram_logins_are_named(captured):
    """The capture's own files have their passwords masked: SCRAM logins (clients and servers)
    cannot be redone, and re-execution says so before it reports the divergence."""
    code, out, err = _reexecute(captured.event_log_path)
    assert code == 1, out + err
    assert "not re-executable: clients" in out and "SCRAM" in out
    assert "not re-executable: servers" in out
    assert "result: DIVERGENT" in out


def test_an_altered_log_is_divergent(captured, tmp_path):
    log_copy = tmp_path / "copy.evlog"
    shutil.copy(captured.event_log_path, log_copy)
    shutil.copy(captured.event_log_path + ".inputs", str(log_copy) + ".inputs")
    header_len = _header_length(str(log_copy))
    with open(log_copy, "r+b") as f:
        data = bytearray(f.read())
        count = (len(data) - header_len) // RECORD_SIZE
        # Flip the 'to' state of the 40th client transition.
        seen = 0
        for i in range(count):
            off = header_len + i * RECORD_SIZE
            rec = Record(*_unpack(data, off))
            if rec.kind == Kind.TRANSITION and rec.machine == Machine.CLIENT:
                seen += 1
                if seen == 40:
                    flipped = rec._replace(to=rec.to ^ 1)
                    data[off:off + RECORD_SIZE] = _pack(flipped)
                    target = rec.seq
                    break
        else:
            pytest.fail("fewer than 40 client transitions")
        f.seek(0)
        f.write(data)
    code, out, err = _reexecute(str(log_copy), "-c", captured.config_path, "-u", captured.users_path)
    assert code == 1, out + err
    assert f"result: DIVERGENT at record {target - 1} (event log #{target})" in out, out
    assert f"#{target} client:" in out


def test_reexecution_reports_usage_errors(captured, tmp_path):
    code, _, err = _reexecute(str(tmp_path / "missing.evlog"))
    assert code == 2 and "no input capture" in err
    other = tmp_path / "users.toml"
    other.write_text('[[users]]\nname = "someone"\ndatabase = "app"\npassword = "x"\n')
    code, _, err = _reexecute(captured.event_log_path, "-c", captured.config_path, "-u", str(other))
    assert code == 2 and "do not describe the captured configuration" in err


def test_md5_logins_are_masked_and_rebuilt(pg, proxy_factory):
    """auth_type = md5: the client's MD5 response never reaches the file; with the real users.toml
    re-execution rebuilds it (the log says the login succeeded) and the run is identical."""
    proxy = proxy_factory(
        general={"capture_inputs": True, "auth_type": "md5", "default_pool_size": 1},
        databases=[app_database(pg)],
        users=[{"name": MD5_USER, "database": APP_DB, "password": MD5_PASSWORD}],
    )
    dsn = proxy.dsn(MD5_USER, MD5_PASSWORD, APP_DB)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as c:
        assert c.execute("SELECT current_user").fetchone() == (MD5_USER,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxy.dsn(MD5_USER, "wrong_pw", APP_DB), connect_timeout=10).close()
    assert proxy.stop() == 0
    with open(proxy.event_log_path + ".inputs", "rb") as f:
        data = f.read()
    assert MD5_PASSWORD.encode() not in data
    masked = [r for r in read_capture(proxy.event_log_path + ".inputs").records if r.kind == In.READ_REDACTED]
    assert len(masked) == 2, masked  # the good and the wrong password
    code, out, err = _reexecute(proxy.event_log_path, "-c", proxy.config_path, "-u", proxy.users_path)
    assert code == 0, out + err
    assert "result: identical" in out


def _header_length(path: str) -> int:
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    return LogHeader.decode(data)[1]


def _unpack(data: bytearray, off: int) -> tuple:
    from state.events import RECORD

    return RECORD.unpack_from(data, off)


def _pack(rec: Record) -> bytes:
    from state.events import RECORD

    return RECORD.pack(*rec)


def test_a_full_budget_is_re_executed_as_a_prefix(pg, proxy_factory):
    """capture_max_bytes used up: the capture ends with END budget, the event log notes it, and
    re-execution covers the run up to there, identical."""
    proxy = proxy_factory(general={"capture_inputs": True, "capture_max_bytes": 16384, "default_pool_size": 2},
                          databases=[app_database(pg)], users=[app_user()])
    dsn = proxy.dsn(APP_USER, APP_PASSWORD, APP_DB)
    for _ in range(4):
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as c:
            for i in range(20):
                assert c.execute("SELECT %s::int, repeat('x', 200)", (i,)).fetchone()[0] == i
    assert proxy.stop() == 0
    capture = read_capture(proxy.event_log_path + ".inputs")
    assert capture.ending == "budget" and capture.records[-1].kind == In.END
    assert os.path.getsize(proxy.event_log_path + ".inputs") < 16384 + 4096
    code, out, err = _reexecute(proxy.event_log_path, "-c", proxy.config_path, "-u", proxy.users_path)
    assert code == 0, out + err
    assert "capture_max_bytes was used up" in out and "result: identical" in out
    assert "the event log goes on past the captured inputs" in out
    compared = int(out.split("records compared: ")[1].split()[0])
    assert compared > 20, out


def test_a_tls_client_ends_re_execution(pg, proxy_factory, tmp_path):
    """Nothing of a TLS connection is captured: re-execution stops where the client switched to TLS,
    and what came before is identical."""
    from tests.harness.certs import CertAuthority

    ca = CertAuthority(str(tmp_path / "ca"), "reexec CA")
    leaf = ca.issue("proxy")
    proxy = proxy_factory(general={"capture_inputs": True, "tls_certificate": leaf.cert, "tls_private_key": leaf.key},
                          databases=[app_database(pg)], users=[app_user()])
    dsn = proxy.dsn(APP_USER, APP_PASSWORD, APP_DB)
    with psycopg.connect(dsn + " sslmode=disable", autocommit=True, connect_timeout=10) as c:
        assert c.execute("SELECT 'before tls'").fetchone() == ("before tls",)
    with psycopg.connect(dsn + " sslmode=require", autocommit=True, connect_timeout=10) as c:
        assert c.pgconn.ssl_in_use
        # The comment reaches PostgreSQL (in plaintext) but does not come back: only TLS carried it.
        assert c.execute("SELECT 7 /* sent over tls only */").fetchone() == (7,)
    with psycopg.connect(dsn + " sslmode=disable", autocommit=True, connect_timeout=10) as c:
        assert c.execute("SELECT 'after tls'").fetchone() == ("after tls",)
    assert proxy.stop() == 0
    with open(proxy.event_log_path + ".inputs", "rb") as f:
        raw = f.read()
    assert b"before tls" in raw and b"after tls" in raw and b"sent over tls only" not in raw
    assert any(r.kind == In.TLS for r in read_capture(proxy.event_log_path + ".inputs").records)
    code, out, err = _reexecute(proxy.event_log_path, "-c", proxy.config_path, "-u", proxy.users_path)
    assert code == 0, out + err
    assert "switched to TLS" in out and "result: identical" in out
