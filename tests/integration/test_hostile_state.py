"""Protocol messages in the wrong state, against the real daemon and against PostgreSQL itself.

Each sequence goes to PostgreSQL directly and through the proxy (transaction mode, a pool of one
server, so a message that damaged or kept the server would stall the bystander). The answers must
match where they matter: the same SQLSTATE and message for each error, the same results, and the
session closed, or usable afterwards, exactly when PostgreSQL's is.
"""

from __future__ import annotations

import struct
import uuid

import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.admin import ADMIN
from tests.harness.bystander import Bystander, assert_daemon_clean, attack_rounds, settled_pool
from tests.harness.clients import connect, connect_direct
from tests.harness.config import app_database, app_user
from tests.harness.rawclient import RawConn, error_fields, message, query, startup_packet

END = "SELECT 'end of sequence'"


@pytest.fixture
def proxy(pg, proxy_factory):
    return proxy_factory(
        general={"auth_type": "trust", "default_pool_size": 1, "pooler_mode": "transaction",
                 "checkout_timeout": 10000},
        databases=[app_database(pg)],
        users=[app_user()],
        admin=ADMIN,
    )


def _function_call(oid: int, arg: bytes) -> bytes:
    """FunctionCall: one text argument, text result."""
    body = struct.pack(">I", oid) + struct.pack(">HH", 1, 0) + struct.pack(">H", 1)
    body += struct.pack(">I", len(arg)) + arg + struct.pack(">H", 0)
    return message(b"F", body)


def _sequences(abs_oid: int) -> dict[str, bytes]:
    sync = message(b"S", b"")
    return {
        "Bind to an unknown statement": message(b"B", b"\0nosuch\0" + struct.pack(">HHH", 0, 0, 0)) + sync,
        "Execute an unknown portal": message(b"E", b"nosuch\0" + struct.pack(">I", 0)) + sync,
        "Describe an unknown statement": message(b"D", b"Snosuch\0") + sync,
        "Close an unknown statement": message(b"C", b"Snosuch\0") + sync,
        "CopyData outside COPY": message(b"d", b"1\t2\n"),
        "CopyDone outside COPY": message(b"c", b""),
        "CopyFail outside COPY": message(b"f", b"stray\0"),
        "Sync with nothing before it": sync,
        "Sync twice": sync + sync,
        "Flush alone": message(b"H", b""),
        "FunctionCall abs(-5)": _function_call(abs_oid, b"-5"),
        "Parse error, then Bind and Execute before Sync": message(b"P", b"\0SELEC 1\0\0\0")
        + message(b"B", b"\0\0" + struct.pack(">HHH", 0, 0, 0)) + message(b"E", b"\0" + struct.pack(">I", 0)) + sync,
        "a second StartupMessage": startup_packet(APP_USER, APP_DB),
        "a PasswordMessage": message(b"p", b"app_pw\0"),
        "a SASLResponse": message(b"p", b"c=biws,r=abc,p=xyz"),
        "unknown type 0x01": message(b"\x01", b"x"),
        "unknown type 'G' (CopyInResponse, a backend type)": message(b"G", b"\0\0\0"),
        "unknown type 'Z'": message(b"Z", b"I"),
        "unknown type 0xff": message(b"\xff", b""),
    }


def _normalized(conn: RawConn) -> tuple[list[tuple], bool]:
    """Messages until the end marker's ReadyForQuery (session usable) or the close, each reduced
    to what must match: (type,) or, for errors, (type, severity, SQLSTATE, message), for rows and
    function results the value too. ParameterStatus and notices are left out."""
    out: list[tuple] = []
    while True:
        m = conn.read()
        if m is None:
            return out, False
        t, body = m
        if t in (b"S", b"N"):
            continue
        if t == b"E":
            f = error_fields(body)
            out.append(("E", f["S"], f["C"], f["M"]))
        elif t in (b"D", b"V"):
            out.append((t.decode(), body))
        else:
            out.append((t.decode(),))
        if t == b"D" and b"end of sequence" in body:
            rest = conn.until(b"Z")
            out += [(x.decode(),) for x, _ in rest]
            return out, True


def _run(conn: RawConn, data: bytes) -> tuple[list[tuple], bool]:
    try:
        conn.sock.sendall(data + query(END))
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before the marker went out; the answer tells the rest
    try:
        return _normalized(conn)
    finally:
        conn.close()


def _direct(pg) -> RawConn:
    conn, msgs = RawConn.password_login(pg.host, pg.port, APP_USER, APP_DB, APP_PASSWORD)
    assert msgs[-1] == (b"Z", b"I"), msgs
    return conn


def test_messages_in_the_wrong_state_match_postgresql(pg, proxy, poll):
    with connect_direct(pg) as c:
        (abs_oid,) = c.execute("SELECT 'abs(int4)'::regprocedure::oid::int").fetchone()
    sequences = _sequences(abs_oid)
    expected = {label: _run(_direct(pg), data) for label, data in sequences.items()}
    # Sanity of the comparison itself: PostgreSQL refuses the bytes a client may never send after
    # login, and keeps the others' sessions.
    assert expected["unknown type 0x01"] == ([("E", "FATAL", "08P01", "invalid frontend message type 1")], False)
    assert expected["Bind to an unknown statement"][0][0][2] == "26000"
    assert expected["FunctionCall abs(-5)"][0][0] == ("V", b"\x00\x00\x00\x015")
    with Bystander(proxy) as by:
        by.baseline()
        with by.phase("wrong state"):
            for _ in attack_rounds(3):
                for label, data in sequences.items():
                    got = _run(RawConn.trust_login(proxy.host, proxy.port, APP_USER, APP_DB), data)
                    assert got == expected[label], f"{label}: proxy {got} != PostgreSQL {expected[label]}"
        by.check("wrong state")
        print(f"\n{by.report()}")
    assert_daemon_clean(proxy)
    row = settled_pool(proxy, poll)
    # Refused messages never reached the one server: it is the same one all along.
    assert row["sv_total"] == 1, row


def test_terminate_in_the_middle_of_a_transaction(pg, proxy, poll):
    """A Terminate inside a transaction (with bytes behind it): the server is rolled back and lent
    clean to the next client, which sees neither the open transaction nor its rows."""
    table = f"hostile_term_{uuid.uuid4().hex[:8]}"
    with connect(proxy) as c:
        c.execute(f"CREATE TABLE {table} (id int)")
        (pid,) = c.execute("SELECT pg_backend_pid()").fetchone()
    with Bystander(proxy) as by:
        by.baseline()
        with by.phase("terminate"):
            for i in attack_rounds(20):
                conn = RawConn.trust_login(proxy.host, proxy.port, APP_USER, APP_DB)
                conn.sock.sendall(query(f"BEGIN; INSERT INTO {table} VALUES ({i}); SET LOCAL work_mem = '7MB'"))
                msgs = conn.until(b"Z")
                assert msgs[-1] == (b"Z", b"T"), msgs
                tail = query(f"INSERT INTO {table} VALUES (-1)") + query("COMMIT") if i % 2 else b""
                conn.sock.sendall(message(b"X", b"") + tail)
                conn.close()
        by.check("terminate")
        print(f"\n{by.report()}")
    with connect(proxy) as c:
        got = c.execute(
            f"SELECT count(*), pg_backend_pid(), current_setting('work_mem'), "
            f"pg_current_xact_id_if_assigned() IS NULL FROM {table}"
        ).fetchone()
        assert got == (0, pid, "4MB", True), got
        c.execute(f"DROP TABLE {table}")
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)

