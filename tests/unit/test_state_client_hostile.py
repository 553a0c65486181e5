"""ClientSession against hostile input: type bytes PostgreSQL does not accept, encryption requests
repeated, bytes behind a Terminate, and malformed bytes that wait in the hold until a server is lent.

Each must end in the client's own clear error, never in an exception that escapes into the caller
(a check-in or a server's answer, which would take an innocent server connection down with it).
"""

from __future__ import annotations

import struct

import pytest

from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.startup import build_startup
from state.client import FRONTEND_TYPES, ClientState
from state.events import Machine
from state.reasons import Reason
from state.server import ServerState
from tests.unit.statekit import (
    FakeBackend,
    client_transitions,
    error_fields,
    feed,
    only_server,
    ready_client,
    rig,
    types,
)

C = ClientState
SSL_REQUEST = struct.pack(">II", 8, 80877103)
GSSENC_REQUEST = struct.pack(">II", 8, 80877104)


def _message(t: int, body: bytes = b"") -> bytes:
    return bytes((t,)) + struct.pack(">I", len(body) + 4) + body


def _refused(client, code: str, words: str) -> None:
    msgs = client.io.take()
    errors = error_fields(msgs)
    assert errors and errors[-1]["C"] == code and errors[-1]["S"] == "FATAL", msgs
    assert words in errors[-1]["M"], errors
    assert "Z" not in types(msgs)
    assert client.state is C.CLOSED and client.io.closed


@pytest.mark.parametrize("mtype", [0, 1, ord("p"), ord("G"), ord("Z"), 0xFF])
def test_invalid_type_after_login_is_refused_without_a_server(mtype: int) -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)  # the login's settings check; idle again
    backend = r.backend(server)
    backend.take()
    driver.send(_message(mtype, b"abc\0") + fe.query("select 1"))
    _refused(client, "08P01", f"invalid frontend message type {mtype}")
    assert backend.take() == []  # nothing reached PostgreSQL
    assert server.state is ServerState.IDLE and server in r.pool.idle
    client_transitions(r.world)


def test_invalid_type_is_refused_by_its_header() -> None:
    """As PostgreSQL, the type byte alone decides: a huge declared length is not waited for."""
    r = rig()
    client, driver = ready_client(r)
    driver.send(b"\x00" + struct.pack(">I", 4096))  # a StartupMessage sent again, say
    _refused(client, "08P01", "invalid frontend message type 0")


def test_every_valid_type_passes_the_check() -> None:
    r = rig()
    client, _driver = ready_client(r)
    for t in FRONTEND_TYPES:
        assert client._on_header(t, 4) in (True, False)  # no ProtocolViolation


def test_invalid_type_in_session_mode_is_not_forwarded() -> None:
    r = rig(mode="session")
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("select 1"))
    assert backend.take_queries() == ["select 1"]
    backend.send(FakeBackend.result())
    driver.take()
    driver.send(_message(ord("p"), b"secret\0"))
    _refused(client, "08P01", "invalid frontend message type 112")
    assert all(t != "p" for t, _ in backend.take())


def test_bytes_behind_a_terminate_are_not_read() -> None:
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    backend.take()
    driver.send(fe.terminate() + fe.query("select 1") + fe.sync())
    assert client.state is C.CLOSED and client.io.closed
    assert r.world.transitions(Machine.CLIENT, client.id)[-1].a == Reason.CLIENT_TERMINATE
    assert backend.take() == []
    client_transitions(r.world)


def test_terminate_mid_transaction_with_bytes_behind_it() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; select 1"))
    backend.send(FakeBackend.done("BEGIN", b"T"))
    backend.take()
    driver.send(fe.terminate() + fe.query("insert into t values (1)"))
    assert client.state is C.CLOSED
    assert backend.take_queries() == ["ROLLBACK"]  # cleaned; the Query behind the Terminate never went
    backend.send(FakeBackend.done("ROLLBACK"))
    assert server in r.pool.idle


@pytest.mark.parametrize("bad", [b"Q" + struct.pack(">I", 3), _message(0x01), b"Q" + struct.pack(">I", 0x7FFFFFFF)])
def test_malformed_bytes_held_while_waiting_fail_their_own_client(bad: bytes) -> None:
    """Pool of one, busy: B's query and the bad bytes behind it are held until A's server comes
    back. Scanning them then, inside A's check-in, must end B alone, with its own error."""
    r = rig(pool_size=1)
    a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    backend.take()
    da.send(fe.query("select pg_sleep(1)"))
    assert a.state is C.ACTIVE
    assert backend.take_queries() == ["select pg_sleep(1)"]
    db.send(fe.query("select 2") + bad)
    assert b.state is C.WAITING
    backend.send(FakeBackend.result())  # A's answer: the server goes back and on to B
    assert a.state is C.IDLE
    msgs = db.take()
    errors = error_fields(msgs)
    assert errors and errors[-1]["C"] in ("08P01", "54000") and errors[-1]["S"] == "FATAL", msgs
    assert b.state is C.CLOSED and b.close_reason is Reason.PROTOCOL_VIOLATION
    # B's complete query had gone out before the bad bytes were read: the server is cleaned (its
    # query canceled, as for any client that leaves one running), not lost.
    assert backend.take_queries() == ["select 2"]
    assert len(server.io.cancels) == 1
    backend.send(FakeBackend.error("57014", "canceling statement due to user request"))
    server.on_cancel_done(r.now)
    assert server in r.pool.idle
    client_transitions(r.world)


@pytest.mark.parametrize(("first", "again", "code"), [
    (SSL_REQUEST, SSL_REQUEST, "1234.5679"),
    (GSSENC_REQUEST, GSSENC_REQUEST, "1234.5680"),
    (SSL_REQUEST + GSSENC_REQUEST, SSL_REQUEST, "1234.5679"),
])
def test_encryption_request_refused_once_then_fatal(first: bytes, again: bytes, code: str) -> None:
    r = rig()
    client = r.world.new_client()
    feed(client, 0.0, first)
    assert client.io.take_raw() == b"N" * (len(first) // 8)
    feed(client, 0.0, again)
    msgs = client.io.take()
    ((fields),) = error_fields(msgs)
    assert fields["C"] == "0A000" and f"unsupported frontend protocol {code}" in fields["M"], fields
    assert client.state is C.CLOSED


def test_ssl_then_gssenc_then_startup_logs_in() -> None:
    r = rig()
    client = r.world.new_client()
    feed(client, 0.0, SSL_REQUEST, GSSENC_REQUEST, build_startup({"user": "app", "database": "app"}))
    assert client.io.take_raw(2) == b"NN"
    assert types(client.io.take()) == "R"
    assert client.state is C.LOGIN


@pytest.mark.parametrize("msg", [fe.copy_done(), fe.copy_fail("stray"), fe.copy_data(b"1\n")])
def test_copy_messages_outside_copy_take_no_server(msg: bytes) -> None:
    """PostgreSQL ignores CopyData, CopyDone and CopyFail outside COPY (the tail of a COPY that
    failed); with no server attached the proxy drops them too, instead of lending one to forward
    them (and leaving it lent until the client's next request)."""
    r = rig(pool_size=1)
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    backend.take()
    driver.send(msg)
    assert client.state is C.IDLE and client.server is None
    assert server in r.pool.idle and backend.take() == []
    assert driver.take() == []
    driver.send(fe.query("select 1"))
    assert backend.take_queries() == ["select 1"]


def test_copy_done_after_a_failed_copy_in() -> None:
    r = rig(pool_size=1)
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    backend.take()
    driver.send(fe.query("copy t from stdin"))
    backend.send(b"G" + struct.pack(">IbH", 7, 0, 0))  # CopyInResponse, text, no columns
    driver.send(fe.copy_data(b"oops\n"))
    backend.send(FakeBackend.error("22P02", "invalid input syntax"))  # the COPY failed: server back
    assert client.server is None and server in r.pool.idle
    backend.take()
    driver.send(fe.copy_data(b"more\n") + fe.copy_done())  # the client was still streaming
    assert client.server is None and server in r.pool.idle
    assert backend.take() == []
