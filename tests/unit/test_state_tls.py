"""The TLS negotiation the state machines do themselves: a client's SSLRequest answered 'S' (or
refused), tls_client_required, plaintext smuggled behind an SSLRequest; a server asked for TLS
before the StartupMessage and what each of its answers leads to."""

from __future__ import annotations

import pytest

from pgdog_ev.wire import backend as be
from pgdog_ev.wire.startup import build_cancel_request, build_gssenc_request, build_ssl_request, build_startup
from state.client import ClientSession, ClientState
from state.events import Kind, Machine
from state.pool import Pool
from state.reasons import Reason
from state.server import ServerSession, ServerState
from tests.unit.statekit import (
    FakeBackend,
    FakePoolIO,
    FakeStream,
    Recorder,
    World,
    error_fields,
    feed,
    rig,
    types,
)

STARTUP = build_startup({"user": "app", "database": "app"})


class TlsFakeStream(FakeStream):
    """A FakeStream that records where in the byte stream TLS began."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.tls_at: int | None = None

    def start_tls(self) -> None:
        assert self.tls_at is None, "start_tls twice"
        self.tls_at = len(self.sent)
        self.log.append("start_tls")


def notes(world: World, machine: Machine, mid: int) -> list[int]:
    return [r.a for r in world.log.records() if r.kind == Kind.NOTE and r.machine == machine and r.id == mid]


def tls_client(world: World, **kw: bool) -> tuple[ClientSession, TlsFakeStream]:
    client = world.new_client(**kw)
    stream = TlsFakeStream(f"client{client.id}")
    client.io = stream
    return client, stream


# -- clients ------------------------------------------------------------------------------------


def test_ssl_request_is_answered_s_and_the_stream_switches() -> None:
    r = rig()
    client, stream = tls_client(r.world, tls_available=True)
    feed(client, 0.0, build_ssl_request())
    assert stream.take_raw() == b"S"
    assert stream.tls_at == 1, "TLS starts right after the 'S', which leaves in plaintext"
    assert client.tls and notes(r.world, Machine.CLIENT, client.id) == [Reason.TLS_ACCEPTED]
    # What arrives now is the decrypted StartupMessage.
    feed(client, 0.0, STARTUP)
    assert types(stream.take()) == "R" and client.state is ClientState.LOGIN


@pytest.mark.parametrize("required", [False, True])
def test_without_a_certificate_ssl_is_refused(required: bool) -> None:
    r = rig()
    client, stream = tls_client(r.world, tls_available=False)
    feed(client, 0.0, build_ssl_request())
    assert stream.take_raw() == b"N" and stream.tls_at is None and not client.tls
    assert notes(r.world, Machine.CLIENT, client.id) == [Reason.SSL_REFUSED]


def test_gssenc_is_refused_even_with_tls_then_ssl_accepted() -> None:
    r = rig()
    client, stream = tls_client(r.world, tls_available=True)
    feed(client, 0.0, build_gssenc_request())
    assert stream.take_raw() == b"N"
    feed(client, 0.0, build_ssl_request())
    assert stream.take_raw() == b"S" and client.tls


def test_plaintext_pipelined_behind_ssl_request_is_refused() -> None:
    r = rig()
    client, stream = tls_client(r.world, tls_available=True)
    feed(client, 0.0, build_ssl_request() + STARTUP)
    (fields,) = error_fields(stream.take())
    assert fields["C"] == "08P01" and fields["S"] == "FATAL"
    assert "unencrypted data after SSL request" in fields["M"]
    assert stream.tls_at is None and client.state is ClientState.CLOSED and stream.closed


def test_a_second_ssl_request_inside_tls_is_a_protocol_violation() -> None:
    r = rig()
    client, stream = tls_client(r.world, tls_available=True)
    feed(client, 0.0, build_ssl_request())
    stream.take_raw()
    feed(client, 0.0, build_ssl_request())
    (fields,) = error_fields(stream.take())
    assert fields["C"] == "08P01" and client.state is ClientState.CLOSED


def test_tls_required_refuses_a_plaintext_startup() -> None:
    r = rig()
    client, stream = tls_client(r.world, tls_available=True, tls_required=True)
    feed(client, 0.0, STARTUP)
    (fields,) = error_fields(stream.take())
    assert fields["C"] == "28000" and fields["S"] == "FATAL"
    assert "tls_client_required" in fields["M"]
    assert client.state is ClientState.CLOSED
    assert r.world.transitions(Machine.CLIENT, client.id)[-1].a == Reason.TLS_REQUIRED


def test_tls_required_after_refusing_is_still_refused() -> None:
    # An SSLRequest answered 'N' (say GSSENC first, then a plaintext startup) is not TLS.
    r = rig()
    client, stream = tls_client(r.world, tls_available=True, tls_required=True)
    feed(client, 0.0, build_gssenc_request(), STARTUP)
    assert stream.take_raw(1) == b"N"
    (fields,) = error_fields(stream.take())
    assert fields["C"] == "28000"


def test_tls_required_lets_encrypted_clients_and_cancel_requests_in() -> None:
    r = rig()
    client, stream = tls_client(r.world, tls_available=True, tls_required=True)
    feed(client, 0.0, build_ssl_request())
    feed(client, 0.0, STARTUP)
    assert stream.take_raw(1) == b"S" and types(stream.take()) == "R"
    # CancelRequests never carry TLS (PostgreSQL reads them before any negotiation).
    canceller, _ = tls_client(r.world, tls_available=True, tls_required=True)
    feed(canceller, 0.0, build_cancel_request(7, b"abcd"))
    assert r.world.directory.cancels == [(0.0, 7, b"abcd")]


# -- servers ------------------------------------------------------------------------------------


class TlsPoolIO(FakePoolIO):
    """Opens servers over TlsFakeStreams with the given tls_verify."""

    def __init__(self, world: World, tls_verify: str) -> None:
        super().__init__(world)
        self.tls_verify = tls_verify

    def open_server(self, pool: Pool) -> ServerSession:
        w = self.world
        sid = 100 + len(self.opened) + 1
        server = ServerSession(
            sid, pool, TlsFakeStream(f"server{sid}"), w.log, w.scheduler, w.entropy, w.now, tls_verify=self.tls_verify
        )
        self.opened.append(server)
        return server


def connecting(tls_verify: str) -> tuple[World, Pool, ServerSession, TlsFakeStream, Recorder]:
    world = World()
    world.pool_io = TlsPoolIO(world, tls_verify)
    pool = world.make_pool()
    waiter = Recorder(1)
    assert pool.checkout(world.now, waiter) is None
    (server,) = world.pool_io.opened
    server.on_connected(world.now)
    return world, pool, server, server.io, waiter  # type: ignore[return-value]


def test_disabled_sends_the_startup_message_first() -> None:
    _, _, _, stream, _ = connecting("disabled")
    assert stream.take_startup().user == "pg_app"


@pytest.mark.parametrize("mode", ["prefer", "verify_ca", "verify_full"])
def test_s_starts_tls_then_the_startup_message_goes_encrypted(mode: str) -> None:
    world, _, server, stream, waiter = connecting(mode)
    assert stream.take_raw() == build_ssl_request()
    feed(server, 0.0, b"S")
    assert stream.tls_at == len(build_ssl_request()) and server.tls
    assert stream.take_startup().user == "pg_app"
    assert notes(world, Machine.SERVER, server.id) == [Reason.TLS_ACCEPTED]
    FakeBackend(world, server).send(*FakeBackend.login_tail())
    assert [granted for _, granted in waiter.granted] == [server] and not waiter.failed


def test_n_under_prefer_goes_on_in_plaintext() -> None:
    world, _, server, stream, _ = connecting("prefer")
    stream.take_raw()
    feed(server, 0.0, b"N")
    assert stream.tls_at is None and not server.tls
    assert stream.take_startup().database == "appdb"
    assert notes(world, Machine.SERVER, server.id) == [Reason.SSL_REFUSED]


@pytest.mark.parametrize("mode", ["verify_ca", "verify_full"])
def test_n_under_verify_is_a_connect_error_for_the_waiters(mode: str) -> None:
    _, pool, server, stream, waiter = connecting(mode)
    stream.take_raw()
    feed(server, 0.0, b"N")
    assert server.state is ServerState.CLOSED and stream.closed
    assert server.error == f"server does not support TLS (tls_verify = {mode})"
    ((_, message, timeout),) = waiter.failed
    assert not timeout and f"server does not support TLS (tls_verify = {mode})" in message
    assert pool.last_error == server.error


def test_plaintext_after_s_is_refused() -> None:
    _, _, server, stream, waiter = connecting("prefer")
    stream.take_raw()
    feed(server, 0.0, b"S" + be.ready_for_query(b"I"))
    assert server.state is ServerState.CLOSED and stream.tls_at is None
    assert "unencrypted data" in (server.error or "")
    assert waiter.failed


def test_an_error_response_instead_of_an_answer_is_reported() -> None:
    _, _, server, stream, waiter = connecting("prefer")
    stream.take_raw()
    feed(server, 0.0, be.error_response("53300", "sorry, too many clients already", severity="FATAL"))
    assert server.state is ServerState.CLOSED
    assert server.error == "sorry, too many clients already"
    assert "too many clients" in waiter.failed[0][1]


def test_a_failed_handshake_reaches_the_waiters_as_a_connect_error() -> None:
    # What ServerConnection does when the TLS layer reports a failed handshake.
    _, _, server, stream, waiter = connecting("verify_full")
    stream.take_raw()
    feed(server, 0.0, b"S")
    server.on_connect_failed(0.0, "TLS handshake with the server failed: certificate verify failed")
    assert server.state is ServerState.CLOSED
    assert "certificate verify failed" in waiter.failed[0][1]
