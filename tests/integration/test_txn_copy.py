"""COPY through a transaction-mode pool: FROM STDIN / TO STDOUT in text, CSV and binary with
checksums, CopyFail, clients that vanish in the middle of COPY FROM STDIN, and the proxy's memory
staying bounded while a few hundred MB stream through it."""

from __future__ import annotations

import csv
import hashlib
import io
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgdog_ev.wire import frontend as fe
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.memory import RssSampler, rss
from tests.harness.proxy import REPO_ROOT, _child_env
from tests.harness.rawclient import RawConn, error_fields, message, query, startup_packet
from tests.harness.tables import create_table

ROWS = 100_000
ROLLBACK_MS = 3000
MB = 1024 * 1024
BIG_COPY_MB = 300
RSS_SLACK = 64 * MB
STALL_ROWS = 50_000


def _general(**extra) -> dict:
    return {
        "auth_type": "trust",
        "default_pool_size": 1,
        "pooler_mode": "transaction",
        "checkout_timeout": 15000,
        "rollback_timeout": ROLLBACK_MS,
        **extra,
    }


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(general=_general(), databases=[app_database(pg)], users=[app_user()])


def _direct(pg) -> psycopg.Connection:
    return psycopg.connect(pg.dsn(APP_USER, APP_DB, APP_PASSWORD), connect_timeout=10, autocommit=True)


def _table(pg, prefix: str, columns: str = "id int, s text, n int", unlogged: bool = False) -> str:
    return create_table(pg, prefix, columns, unlogged)


# --------------------------------------------------------------------------- data

_SPECIAL = [
    "plain",
    "tab\there",
    "new\nline",
    "back\\slash",
    'quote"d',
    "comma,sep",
    "cr\rret",
    "ünïcødé ✓ 雪",
    "\\N",
    "NULL",
    " lead and trail ",
]


def _row(i: int) -> tuple[int, str, int]:
    return i, f"{_SPECIAL[i % len(_SPECIAL)]} #{i} {'y' * (i % 37)}", (i * 7919) % 1000003 - 500000


def _rows() -> Iterator[tuple[int, str, int]]:
    return (_row(i) for i in range(1, ROWS + 1))


def _local_md5() -> str:
    h = hashlib.md5()
    for k, (i, s, n) in enumerate(_rows()):
        h.update(f"{chr(10) if k else ''}{i}|{s}|{n}".encode())
    return h.hexdigest()


_SERVER_MD5 = "SELECT count(*), md5(string_agg(id::text || '|' || s || '|' || n::text, E'\\n' ORDER BY id)) FROM {}"


def _text_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _text_chunks(size: int = 256 * 1024) -> Iterator[bytes]:
    buf = io.StringIO()
    for i, s, n in _rows():
        buf.write(f"{i}\t{_text_escape(s)}\t{n}\n")
        if buf.tell() >= size:
            yield buf.getvalue().encode()
            buf = io.StringIO()
    yield buf.getvalue().encode()


def _csv_chunks(size: int = 256 * 1024) -> Iterator[bytes]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    for row in _rows():
        w.writerow(row)
        if buf.tell() >= size:
            yield buf.getvalue().encode()
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    yield buf.getvalue().encode()


def _copy_out(conn: psycopg.Connection, sql: str) -> tuple[str, int, int]:
    """sha256 and size of everything COPY ... TO STDOUT sends, and the rowcount it reports."""
    h, size = hashlib.sha256(), 0
    cur = conn.cursor()
    with cur.copy(sql) as copy:
        for data in copy:
            h.update(data)
            size += len(data)
    return h.hexdigest(), size, cur.rowcount


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["text", "csv", "binary"])
def test_copy_round_trip(pg, proxy, fmt):
    table = _table(pg, f"copy_{fmt}")
    copy_in = f"COPY {table} (id, s, n) FROM STDIN (FORMAT {fmt})"
    copy_out = f"COPY (SELECT id, s, n FROM {table} ORDER BY id) TO STDOUT (FORMAT {fmt})"
    sent = hashlib.sha256()
    with connect(proxy) as conn:
        cur = conn.cursor()
        with cur.copy(copy_in) as copy:
            if fmt == "text":
                for chunk in _text_chunks():
                    sent.update(chunk)
                    copy.write(chunk)
            elif fmt == "csv":
                for chunk in _csv_chunks():
                    copy.write(chunk)
            else:
                copy.set_types(["int4", "text", "int4"])
                for row in _rows():
                    copy.write_row(row)
        assert cur.rowcount == ROWS, "CommandComplete 'COPY n' did not come through"
        # What arrived in the table is exactly what was written.
        assert conn.execute(_SERVER_MD5.format(table)).fetchone() == (ROWS, _local_md5())
        via_proxy = _copy_out(conn, copy_out)
    with _direct(pg) as direct:
        assert direct.execute(_SERVER_MD5.format(table)).fetchone() == (ROWS, _local_md5())
        straight = _copy_out(direct, copy_out)
    # COPY TO STDOUT through the proxy is byte for byte what PostgreSQL sends.
    assert via_proxy[2] == ROWS
    assert via_proxy[1] > 3 * MB
    assert via_proxy == straight
    if fmt == "text":
        assert via_proxy[0] == sent.hexdigest(), "text COPY read back differs from what was written"


def test_copy_in_and_out_inside_a_transaction_then_rollback(pg, proxy):
    table = _table(pg, "copy_txn")
    with connect(proxy, autocommit=False) as conn:
        cur = conn.cursor()
        sent = hashlib.sha256()
        with cur.copy(f"COPY {table} (id, s, n) FROM STDIN") as copy:
            for chunk in _text_chunks():
                sent.update(chunk)
                copy.write(chunk)
        digest, _size, count = _copy_out(conn, f"COPY (SELECT id, s, n FROM {table} ORDER BY id) TO STDOUT")
        assert (digest, count) == (sent.hexdigest(), ROWS)
        assert conn.execute(_SERVER_MD5.format(table)).fetchone() == (ROWS, _local_md5())
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    assert pg.psql(f"SELECT count(*) FROM {table}", db=APP_DB) == "0"


# --------------------------------------------------------------------------- CopyFail


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "in_transaction"])
def test_copy_fail_from_client_keeps_server(pg, proxy, autocommit):
    table = _table(pg, "copyfail")
    pg.psql(f"INSERT INTO {table} VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)", db=APP_DB)
    a = connect(proxy, autocommit=autocommit)
    try:
        (pid,) = a.execute("SELECT pg_backend_pid()").fetchone()
        if not autocommit:
            a.execute(f"INSERT INTO {table} VALUES (4, 'd', 4)")
        with pytest.raises(RuntimeError, match="client gave up"), a.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for i in range(10, 5000):
                copy.write_row((i, f"row {i}", i))
            raise RuntimeError("client gave up")
        if autocommit:
            assert a.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        else:
            assert a.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                a.execute("SELECT 1")
            a.rollback()
        # The same client carries on, on the same server, and nothing of the COPY stayed.
        assert a.execute(f"SELECT pg_backend_pid(), count(*) FROM {table}").fetchone() == (pid, 3)
        if not autocommit:
            a.commit()
        # Pool of one: another client gets that server right away, clean.
        with connect(proxy) as b:
            assert b.execute(f"SELECT pg_backend_pid(), count(*) FROM {table}").fetchone() == (pid, 3)
            assert b.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        a.close()
    assert pg.psql(f"SELECT count(*) FROM {table}", db=APP_DB) == "3"


def test_copy_fail_raw_gets_query_canceled(pg, proxy):
    table = _table(pg, "copyfailraw")
    raw = RawConn.trust_login(proxy.host, proxy.port, APP_USER, APP_DB)
    try:
        raw.sock.sendall(query(f"COPY {table} (id) FROM STDIN"))
        assert raw.until(b"G")[-1][0] == b"G"
        raw.sock.sendall(b"".join(message(b"d", f"{i}\n".encode()) for i in range(100)))
        raw.sock.sendall(message(b"f", b"raw client changed its mind\0"))
        msgs = raw.until(b"Z")
        errors = [error_fields(body) for t, body in msgs if t == b"E"]
        assert len(errors) == 1, msgs
        assert errors[0]["C"] == "57014", errors
        assert "raw client changed its mind" in errors[0]["M"], errors
        assert msgs[-1] == (b"Z", b"I")
        # The same connection runs the next query normally.
        raw.sock.sendall(query(f"SELECT count(*) FROM {table}"))
        msgs = raw.until(b"Z")
        rows = [body for t, body in msgs if t == b"D"]
        assert rows and rows[0].endswith(b"0"), msgs
        assert msgs[-1] == (b"Z", b"I")
    finally:
        raw.sock.close()
    with connect(proxy) as b:
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


# --------------------------------------------------------------------------- clients that vanish


_COPY_FOREVER = r"""
import sys, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True, prepare_threshold=None)
block = b"".join(b"%d\tvanishing client row\t%d\n" % (i, i) for i in range(20000))
with conn.cursor().copy(f"COPY {sys.argv[2]} (id, s, n) FROM STDIN") as copy:
    copy.write(block)
    print("copying", flush=True)
    while True:
        copy.write(block)
"""


def _copy_running(pg, table: str) -> bool:
    n = pg.psql(
        f"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY {table} %'",
        db=APP_DB,
    )
    return n == "1"


def test_killed_client_mid_copy_in_does_not_poison_server(pg, proxy, poll):
    table = _table(pg, "copykill")
    child = subprocess.Popen(
        [sys.executable, "-c", _COPY_FOREVER, proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), table],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=_child_env(None),
    )
    try:
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(child.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=20)
        assert line == [b"copying\n"], f"child did not start copying: {line!r} {child.poll()!r}"
        poll(lambda: _copy_running(pg, table), what="COPY active on the server")
    finally:
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()
    t0 = time.monotonic()
    with connect(proxy) as b:
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        with b.cursor().copy(f"COPY {table} (id, s, n) FROM STDIN") as copy:
            copy.write_row((1, "after", 1))
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
    assert time.monotonic() - t0 < ROLLBACK_MS / 1000 + 5
    poll(lambda: not _copy_running(pg, table), what="abandoned COPY gone from the server")


@pytest.mark.parametrize("half_message", [False, True], ids=["between_messages", "half_message"])
def test_raw_client_reset_mid_copy_in(pg, proxy, poll, half_message):
    table = _table(pg, "copyreset")
    raw = RawConn.trust_login(proxy.host, proxy.port, APP_USER, APP_DB)
    raw.sock.sendall(query(f"COPY {table} (id, s, n) FROM STDIN"))
    assert raw.until(b"G")[-1][0] == b"G"
    payload = b"".join(b"%d\treset\t%d\n" % (i, i) for i in range(5000))
    raw.sock.sendall(message(b"d", payload) * 20)
    if half_message:
        # A CopyData header announcing 1 MB of which only a few bytes ever arrive.
        raw.sock.sendall(b"d" + struct.pack(">I", MB + 4) + b"1\thalf\t1\n")
    poll(lambda: _copy_running(pg, table), what="COPY active on the server")
    raw.reset_close()
    t0 = time.monotonic()
    with connect(proxy) as b:
        assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        assert b.execute("SELECT 41 + 1").fetchone() == (42,)
    assert time.monotonic() - t0 < ROLLBACK_MS / 1000 + 5
    poll(lambda: not _copy_running(pg, table), what="abandoned COPY gone from the server")


def _extended_copy_in(table: str, end: bytes = fe.sync()) -> bytes:
    return (fe.parse("", f"COPY {table} (id, s, n) FROM STDIN") + fe.bind("", "", [], [], [])
            + fe.execute("") + end)


def test_extended_copy_in_ignores_a_sync_then_waits_for_one(pg):
    """What the proxy relies on below, checked on PostgreSQL: a Sync sent behind an Execute that
    starts COPY FROM STDIN is ignored by the COPY; after a CopyFail the server skips to the next
    Sync."""
    table = _table(pg, "copysync")
    raw = RawConn(socket.create_connection((pg.host, pg.port), timeout=15))
    raw.sock.sendall(startup_packet("postgres", APP_DB))
    raw.until(b"Z")
    raw.sock.sendall(_extended_copy_in(table))
    assert [t for t, _ in raw.until(b"G")] == [b"1", b"2", b"G"]
    raw.sock.sendall(fe.copy_fail("gone") + fe.query("SELECT 1"))  # skipped, as the Sync was
    raw.sock.sendall(fe.sync())
    assert [t for t, _ in raw.until(b"Z")] == [b"E", b"Z"]
    raw.close()


@pytest.mark.parametrize("end", ["done", "fail"])
def test_extended_copy_in_as_libpq_sends_it(pg, proxy, end):
    """COPY FROM STDIN sent with the extended protocol and its Sync (libpq's PQexecParams), then
    CopyDone or CopyFail and a second Sync: PostgreSQL ignored the first, so one ReadyForQuery
    comes for the two, and the server goes back to the pool (of one) right after it."""
    table = _table(pg, "copyext")
    with connect(proxy) as a:
        pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    raw = RawConn.trust_login(proxy.host, proxy.port, APP_USER, APP_DB)
    try:
        raw.sock.sendall(_extended_copy_in(table))
        assert [t for t, _ in raw.until(b"G")] == [b"1", b"2", b"G"]
        finish = fe.copy_done() if end == "done" else fe.copy_fail("changed my mind")
        raw.sock.sendall(message(b"d", b"1\tx\t1\n") + finish + fe.sync())
        got = [t for t, _ in raw.until(b"Z")]
        assert got == ([b"C", b"Z"] if end == "done" else [b"E", b"Z"])
        with connect(proxy) as b:  # the one server, while the raw client stays connected
            assert b.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
            assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (1 if end == "done" else 0,)
        raw.sock.sendall(query("SELECT 1"))
        assert [t for t, _ in raw.until(b"Z")] == [b"T", b"D", b"C", b"Z"]
    finally:
        raw.close()


def test_client_gone_before_its_extended_copy_began(pg, proxy, poll):
    """The client sends an extended-protocol COPY FROM STDIN with its Sync and leaves at once:
    the proxy ends the COPY and syncs again, and the one server is clean and reused (the same
    backend), not closed when rollback_timeout runs out."""
    table = _table(pg, "copygone")
    with connect(proxy) as a:
        pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    for _ in range(3):
        raw = RawConn.trust_login(proxy.host, proxy.port, APP_USER, APP_DB)
        raw.sock.sendall(_extended_copy_in(table))
        raw.close()
        with connect(proxy) as b:
            assert b.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    poll(lambda: not _copy_running(pg, table), what="abandoned COPY gone from the server")


# --------------------------------------------------------------------------- bounded memory


def test_large_copy_in_keeps_proxy_memory_bounded(pg, proxy_factory):
    table = _table(pg, "copybig", columns="id bigserial, s text", unlogged=True)
    # The server stalls now and then (every STALL_ROWS rows), so the client gets ahead of it: a
    # proxy that keeps reading from the client without waiting for the server to take the data
    # would buffer hundreds of MB.
    pg.psql(
        f"CREATE FUNCTION {table}_stall() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN IF NEW.id % {STALL_ROWS} = 0 THEN PERFORM pg_sleep(0.25); END IF; RETURN NEW; END $$;\n"
        f"GRANT USAGE ON SEQUENCE {table}_id_seq TO {APP_USER};\n"
        f"CREATE TRIGGER stall BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_stall();",
        db=APP_DB,
    )
    p = proxy_factory(general=_general(), databases=[app_database(pg)], users=[app_user()])
    row = b"z" * 1023 + b"\n"
    block = row * 1024  # 1 MiB, written over and over: the test never holds the whole stream
    with connect(p) as conn:
        # Warm up: login, a query and a small COPY, so the baseline includes the steady state.
        with conn.cursor().copy(f"COPY {table} (s) FROM STDIN") as copy:
            copy.write(block)
        conn.execute(f"TRUNCATE {table}")
        baseline = rss(p.pid)
        t0 = time.monotonic()
        cur = conn.cursor()
        with RssSampler(p.pid) as sampler, cur.copy(f"COPY {table} (s) FROM STDIN") as copy:
            for _ in range(BIG_COPY_MB):
                copy.write(block)
        elapsed = time.monotonic() - t0
        assert cur.rowcount == BIG_COPY_MB * 1024
        assert conn.execute(f"SELECT count(*), sum(length(s)) FROM {table}").fetchone() == (
            BIG_COPY_MB * 1024,
            BIG_COPY_MB * 1024 * 1023,
        )
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"DROP FUNCTION {table}_stall()")
    assert sampler.samples > 10
    growth = sampler.peak - baseline
    assert growth < RSS_SLACK, (
        f"proxy RSS grew by {growth / MB:.1f} MB (baseline {baseline / MB:.1f} MB, peak {sampler.peak / MB:.1f} MB)"
        f" while {BIG_COPY_MB} MB went through COPY FROM STDIN in {elapsed:.1f}s"
    )
    assert p.returncode is None, "the proxy died during the COPY"


# ------------------------------------------------ messages PostgreSQL reads (or eats) inside COPY

# Steps of a raw client around a COPY FROM STDIN: the COPY to start ("copy" by a Query, "xcopy"
# by Parse/Bind/Execute/Sync, "" none), bytes to send right behind it, then the message type to
# read up to (b"": until the connection closes). PostgreSQL ignores a Sync or Flush that arrives
# during the COPY (no ReadyForQuery of its own). Any other message but CopyData, CopyDone and
# CopyFail it answers with an error, and then ends the connection (it read only the type byte).
# The proxy must count neither as owing a ReadyForQuery, or it waits for one that never comes and
# the client (then the cleanup) holds the server. Where it sees the message coming inside a
# COPY it knows to be running, it answers as PostgreSQL would and keeps the server (the last
# field: the backend is reused); one pipelined behind the COPY's Query reaches PostgreSQL, which
# ends that connection.
_ROW = message(b"d", b"1\tx\t1\n")
_BAD_ROW = message(b"d", b"one\tx\t1\n")
_CALL = message(b"F", struct.pack(">Ihhh", 1598, 0, 0, 0))  # random(), no arguments
_EXTENDED = fe.parse("", "SELECT 1") + fe.bind("", "", [], [], []) + fe.execute("") + fe.sync()
_COPY_SCENARIOS: dict[str, tuple[list[tuple[str, bytes, bytes]], bool]] = {
    "sync_during_copy": ([("copy", b"", b"G"), ("", _ROW + fe.sync() + _ROW + fe.copy_done(), b"Z")], True),
    "sync_behind_copy_query": ([("copy", fe.sync() + _ROW + fe.copy_done(), b"Z")], True),
    "flush_and_sync_during_copy": (
        [("copy", b"", b"G"), ("", fe.flush() + fe.sync() + fe.sync() + fe.copy_fail("no"), b"Z")], True),
    "query_during_copy": ([("copy", b"", b"G"), ("", _ROW + query("SELECT 1"), b"")], True),
    "query_behind_copy_query": ([("copy", query("SELECT 1"), b"")], False),
    "function_call_during_copy": ([("copy", b"", b"G"), ("", _CALL, b"")], True),
    "parse_during_copy": ([("copy", b"", b"G"), ("", _EXTENDED, b"")], True),
    "query_during_extended_copy": ([("xcopy", b"", b"G"), ("", query("SELECT 1"), b"")], False),
    # Begun by an Execute with no Sync yet (Flush instead): the COPY reads the Syncs up to its end
    # too, and the Sync after its CopyDone or CopyFail is the Execute's own.
    "sync_during_unsynced_extended_copy": (
        [("xflush", b"", b"G"), ("", _ROW + fe.sync() + _ROW + fe.copy_done() + fe.sync(), b"Z")], True),
    # A bad row after a Sync: the COPY read the Sync before it parsed any row.
    "sync_then_bad_row_behind_copy_query": ([("copy", fe.sync() + _BAD_ROW + fe.copy_done(), b"Z")], True),
    "bad_row_in_extended_copy": ([("xcopy", b"", b"G"), ("", _BAD_ROW + fe.copy_done() + fe.sync(), b"Z")], True),
    "syncs_then_copyfail_in_unsynced_extended_copy": (
        [("xflush", b"", b"G"), ("", fe.sync() + fe.flush() + fe.sync() + fe.copy_fail("no") + fe.sync(), b"Z")],
        True),
    # Two COPYs begun by Executes in one stretch with no ReadyForQuery between them: each reads
    # its own Sync, and only the last Sync is answered.
    "two_extended_copies": ([("xcopy2", _ROW + fe.copy_done() + fe.sync(), b"Z")], True),
    "bad_row_in_second_extended_copy": ([("xcopy2", _BAD_ROW + fe.copy_done() + fe.sync(), b"Z")], True),
    "bad_row_in_first_of_two_extended_copies": (
        [("xcopy2bad", b"", b"Z"), ("", _ROW + fe.copy_done() + fe.sync(), b"Z")], True),
    # After an extended COPY ended (its Sync read, none since), what the server answers next
    # belongs to the messages after it: a Query's COPY that fails, a failing Query, a Parse.
    "bad_row_in_query_copy_after_extended_copy": (
        [("xcopy_q", _BAD_ROW + fe.copy_done() + fe.sync(), b"Z"), ("", b"", b"Z")], True),
    "copyfail_in_query_copy_after_extended_copy": (
        [("xcopy_q", fe.copy_fail("no") + fe.sync(), b"Z"), ("", b"", b"Z")], True),
    "failing_query_after_extended_copy": (
        [("xcopy", _ROW + fe.copy_done() + query("SELECT 1/0") + fe.sync(), b"Z"), ("", b"", b"Z")], True),
    "unsynced_execute_and_query_after_extended_copy": (
        [("xcopy", _ROW + fe.copy_done() + fe.parse("", "SELECT 1") + fe.bind("", "", [], [], []) + fe.execute("")
          + query("SELECT 1") + fe.sync(), b"Z"), ("", b"", b"Z")], True),
    # The first COPY's read Sync came after a row: no doubt about the second COPY's own.
    "bad_row_in_second_copy_after_a_row_and_sync_in_the_first": (
        [("xflush", _ROW + fe.sync() + fe.copy_done() + b"%XCOPY%" + _BAD_ROW + fe.copy_done() + fe.sync(), b"Z")],
        True),
    "parse_after_extended_copy": (
        [("xcopy", _ROW + fe.copy_done() + fe.parse("s41", "SELECT 41") + fe.sync(), b"Z"),
         ("", fe.bind("", "s41", [], [], []) + fe.execute("") + fe.sync(), b"Z")], True),
}


def _copy_steps(raw: RawConn, table: str, steps: list[tuple[str, bytes, bytes]]) -> list[tuple[bytes, str]]:
    """Run the steps; what came back: each message's type, an error's severity, SQLSTATE and
    text, and (b"", "closed") where the connection closed."""
    got: list[tuple[bytes, str]] = []
    for copy, data, until in steps:
        start = {"copy": query(f"COPY {table} (id, s, n) FROM STDIN"), "xcopy": _extended_copy_in(table),
                 "xflush": _extended_copy_in(table, fe.flush()),
                 "xcopy2": _extended_copy_in(table) + _ROW + fe.copy_done() + _extended_copy_in(table),
                 "xcopy2bad": _extended_copy_in(table) + _BAD_ROW + fe.copy_done() + _extended_copy_in(table),
                 "xcopy_q": _extended_copy_in(table) + _ROW + fe.copy_done() + query(f"COPY {table} (id, s, n) FROM STDIN")}
        raw.sock.sendall(start.get(copy, b"") + data.replace(b"%XCOPY%", _extended_copy_in(table)))
        while (m := raw.read()) is not None:
            t, body = m
            fields = error_fields(body) if t == b"E" else {}
            got.append((t, " ".join(fields.get(k, "") for k in "SCM").strip()))
            if t == until:
                break
        else:
            return [*got, (b"", "closed")]
    raw.sock.sendall(query("SELECT 2"))  # the connection goes on as usual
    got += [(t, "") for t, _ in raw.until(b"Z")]
    return got


@pytest.mark.parametrize("scenario", sorted(_COPY_SCENARIOS))
def test_what_a_copy_reads_or_eats_matches_postgres(pg, proxy, scenario):
    steps, kept = _COPY_SCENARIOS[scenario]
    table = _table(pg, "copyeat")
    direct = RawConn(socket.create_connection((pg.host, pg.port), timeout=15))
    direct.sock.sendall(startup_packet("postgres", APP_DB))
    direct.until(b"Z")
    try:
        want = _copy_steps(direct, table, steps)
    finally:
        direct.close()
    rows = int(pg.psql(f"SELECT count(*) FROM {table}", db=APP_DB))
    with connect(proxy) as a:
        pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    raw = RawConn.trust_login(proxy.host, proxy.port, APP_USER, APP_DB)
    try:
        assert _copy_steps(raw, table, steps) == want
        # The one server went back to the pool at the last ReadyForQuery (or when the proxy
        # ended the client): another client gets it at once, while this one stays connected.
        with connect(proxy) as b:
            assert (b.execute("SELECT pg_backend_pid()").fetchone()[0] == pid) is kept
            assert b.execute(f"SELECT count(*) FROM {table}").fetchone() == (2 * rows,)
    finally:
        raw.close()


@pytest.mark.parametrize("start", ["query", "extended"])
def test_a_copy_that_fails_as_it_begins_leaves_no_stray_ready_for_query(pg, proxy, start):
    """COPY into a view, with a Sync, a row, CopyDone (and a Sync) sent behind it at once.
    PostgreSQL fails the COPY after its CopyInResponse, before it reads anything, so that Sync
    gets a ReadyForQuery of its own. Lent to the next client, the server would hand it that
    ReadyForQuery as the whole answer to its query: the proxy closes it instead, after this
    client has had the error, and the next client's query is answered right."""
    table = _table(pg, "copyview")
    view = f"{table}_v"
    pg.psql(f"CREATE VIEW {view} AS SELECT * FROM {table}; GRANT ALL ON {view} TO {APP_USER}", db=APP_DB)
    sql = f"COPY {view} (id, s, n) FROM STDIN"
    copy = query(sql) if start == "query" else (
        fe.parse("", sql) + fe.bind("", "", [], [], []) + fe.execute("") + fe.sync())
    raw = RawConn.trust_login(proxy.host, proxy.port, APP_USER, APP_DB)
    try:
        raw.sock.sendall(copy + fe.sync() + _ROW + fe.copy_done() + fe.sync())
        got = []
        while (m := raw.read()) is not None:
            t, body = m
            got.append((t, error_fields(body).get("C", "") if t == b"E" else ""))
        assert (b"E", "42809") in got, got  # cannot copy to view
        with connect(proxy) as b:
            for i in range(3):
                assert b.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    finally:
        raw.close()
