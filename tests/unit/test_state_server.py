"""ServerSession: login, settings sync, ReadyForQuery bookkeeping and cleaning before reuse."""

from __future__ import annotations

import pytest

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from state.events import Kind, Machine
from state.pool import Pool
from state.prepared import GlobalStatement
from state.reasons import Reason
from state.server import TRANSITIONS, IllegalTransition, ServerSession, ServerState
from tests.unit.statekit import (
    AUTH_METHODS,
    DEFAULT_SERVER_PARAMS,
    FakeBackend,
    FakeStream,
    Recorder,
    World,
    check_transitions,
    feed,
    queries,
    types,
)

S = ServerState


# -- helpers ----------------------------------------------------------------------------------


def new_server(world: World, pool: Pool, auth: str = "trust", **login) -> tuple[ServerSession, FakeBackend]:
    """A logged-in server sitting idle in ``pool``."""
    before = len(world.pool_io.opened)
    rec = Recorder(900 + before)
    assert pool.checkout(world.now, rec) is None
    server = world.pool_io.opened[-1]
    assert len(world.pool_io.opened) == before + 1
    backend = FakeBackend(world, server)
    backend.login(auth, **login)
    # The pool granted it to the waiter; hand it straight back through the public path.
    ((_, granted),) = rec.granted
    assert granted is server
    pool.waiters.clear()
    server.link(world.now, rec)
    server.release(world.now, session_mode=False)
    assert server.state is S.IDLE and server in pool.idle
    backend.take()
    return server, backend


def lend(world: World, pool: Pool, server: ServerSession, cid: int = 1, **params: str) -> Recorder:
    rec = Recorder(cid, params=dict(params))
    got = pool.checkout(world.now, rec)
    assert got is server
    server.link(world.now, rec)
    return rec


def client_query(server: ServerSession, backend: FakeBackend, sql: str = "select 1") -> None:
    """What ClientSession does for a client's Query: count one owed ReadyForQuery, forward it."""
    server.expect_response()
    server.io.send(fe.query(sql))


def server_transitions(world: World) -> None:
    check_transitions(world, Machine.SERVER, TRANSITIONS, S.CONNECTING)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def pool(world: World) -> Pool:
    return world.make_pool(pool_size=3)


# -- login --------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", AUTH_METHODS)
def test_login_with_each_auth_method(world: World, pool: Pool, auth: str) -> None:
    rec = Recorder(1)
    assert pool.checkout(world.now, rec) is None
    (server,) = world.pool_io.opened
    assert server.state is S.CONNECTING
    backend = FakeBackend(world, server)
    backend.login(auth, pid=777, secret=b"\xaa\xbb\xcc\xdd")
    assert backend.startup is not None
    assert backend.startup.params["database"] == "appdb"
    assert backend.startup.params["application_name"] == "pgdog-ev"
    assert server.state is S.IDLE
    assert server.reported == DEFAULT_SERVER_PARAMS
    assert (server.pid, server.secret) == (777, b"\xaa\xbb\xcc\xdd")
    assert pool.server_params == DEFAULT_SERVER_PARAMS
    assert pool.connecting == 0 and pool.last_error is None
    assert rec.granted == [(world.now, server)]  # the waiter got it
    server_transitions(world)
    reasons = [r.a for r in world.transitions(Machine.SERVER, server.id)]
    assert reasons == [Reason.CONNECTED, Reason.SERVER_READY]


@pytest.mark.parametrize("auth", ["md5", "scram"])
def test_login_tail_byte_at_a_time(world: World, pool: Pool, auth: str) -> None:
    pool.checkout(world.now, Recorder(1))
    (server,) = world.pool_io.opened
    FakeBackend(world, server).login(auth, chunk=1)
    assert server.state is S.IDLE
    assert server.reported == DEFAULT_SERVER_PARAMS


def test_statement_timeout_goes_in_startup_packet(world: World) -> None:
    pool = world.make_pool(statement_timeout=1500)
    pool.checkout(world.now, Recorder(1))
    (server,) = world.pool_io.opened
    server.on_connected(world.now)
    startup = server.io.take_startup()  # type: ignore[attr-defined]
    assert startup.params == {
        "user": "pg_app",
        "database": "appdb",
        "application_name": "pgdog-ev",
        "statement_timeout": "1500",
    }


def test_scram_server_with_wrong_signature_is_refused(world: World, pool: Pool) -> None:
    rec = Recorder(1)
    pool.checkout(world.now, rec)
    (server,) = world.pool_io.opened
    backend = FakeBackend(world, server)
    server.on_connected(world.now)
    server.io.take_startup()  # type: ignore[attr-defined]
    backend.send(be.authentication_sasl(["SCRAM-SHA-256"]))
    ((_, body),) = backend.take()
    _, first = fe.parse_sasl_initial_response(body)
    nonce = first.decode().split("r=", 1)[1]
    backend.send(be.authentication_sasl_continue(f"r={nonce}xyz,s=c2FsdHNhbHQ=,i=64".encode()))
    backend.take()
    backend.send(be.authentication_sasl_final(b"v=" + b"A" * 43 + b"="))  # not the server's proof
    assert server.state is S.CLOSED
    assert server.io.closed  # type: ignore[attr-defined]
    assert "signature" in (server.error or "")
    assert server.id not in pool.servers
    assert rec.failed and "signature" in rec.failed[0][1]
    server_transitions(world)


def test_server_error_during_login_closes_and_pool_learns(world: World, pool: Pool) -> None:
    waiters = [Recorder(1), Recorder(2)]
    for w in waiters:
        pool.checkout(world.now, w)
    assert len(world.pool_io.opened) == 2
    first, second = world.pool_io.opened
    fatal = be.error_response("28P01", 'password authentication failed for user "pg_app"', severity="FATAL")
    first.on_connected(world.now)
    FakeBackend(world, first).send(fatal)
    assert first.state is S.CLOSED and first.io.closed  # type: ignore[attr-defined]
    assert pool.last_error == 'password authentication failed for user "pg_app"'
    assert pool.stats.connect_errors == 1
    assert all(not w.failed for w in waiters)  # the second connect may still succeed
    second.on_connect_failed(world.now, "connection refused")
    assert pool.last_error == "connection refused"
    assert [len(w.failed) for w in waiters] == [1, 1]
    assert "connection refused" in waiters[0].failed[0][1]
    assert not pool.waiters and pool.total == 0 and pool.connecting == 0
    reasons = [r.a for r in world.transitions(Machine.SERVER, first.id)]
    assert reasons[-1] == Reason.SERVER_ERROR
    server_transitions(world)


def test_password_request_without_configured_password_fails_login(world: World) -> None:
    pool = world.make_pool(server_password=None)
    rec = Recorder(1)
    pool.checkout(world.now, rec)
    (server,) = world.pool_io.opened
    server.on_connected(world.now)
    FakeBackend(world, server).send(be.authentication_cleartext())
    assert server.state is S.CLOSED
    assert "server_password" in (server.error or "")
    assert rec.failed


def test_unexpected_message_during_login_closes(world: World, pool: Pool) -> None:
    pool.checkout(world.now, Recorder(1))
    (server,) = world.pool_io.opened
    server.on_connected(world.now)
    FakeBackend(world, server).send(be.authentication_ok(), be.command_complete("SELECT 1"))
    assert server.state is S.CLOSED
    assert pool.stats.connect_errors == 1


def test_server_closing_socket_while_idle_leaves_pool(world: World, pool: Pool) -> None:
    server, _ = new_server(world, pool)
    server.on_closed(world.now)
    assert server.state is S.CLOSED
    assert server not in pool.idle and server.id not in pool.servers


# -- settings sync on link -------------------------------------------------------------------------


def test_link_sends_sync_query_only_when_settings_differ(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)

    rec = lend(world, pool, server, 1)
    assert backend.take() == []  # nothing applied, nothing wanted
    server.release(world.now, session_mode=False)

    rec = lend(world, pool, server, 2, application_name="two", search_path="a, b")
    assert backend.take_queries() == [
        "SELECT pg_catalog.set_config(E'application_name', E'two', false), "
        "pg_catalog.set_config(E'search_path', E'a, b', false)"
    ]
    backend.send(FakeBackend.result())
    assert server.clean
    server.release(world.now, session_mode=False)

    lend(world, pool, server, 3, application_name="two", search_path="a, b")
    assert backend.take() == []  # same settings: no round trip
    server.release(world.now, session_mode=False)

    rec = lend(world, pool, server, 4, search_path="it's")
    assert backend.take_queries() == [
        "RESET \"application_name\"; SELECT pg_catalog.set_config(E'search_path', E'it\\'s', false)"
    ]
    backend.send(FakeBackend.result())
    server.release(world.now, session_mode=False)

    lend(world, pool, server, 5)
    assert backend.take_queries() == ['RESET "search_path"']
    assert server.applied == {}
    assert rec.io.sent == b""
    server_transitions(world)


def test_sync_responses_are_swallowed_client_responses_forwarded(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1, application_name="app1")
    client_query(server, backend, "select 42")
    sent = backend.take()
    assert queries(sent)[1] == "select 42" and queries(sent)[0].startswith("SELECT pg_catalog.set_config")
    hidden = be.parameter_status("application_name", "app1") + FakeBackend.result("SELECT 1")
    hidden_error_free = hidden
    client = be.notice_response("01000", "hi") + FakeBackend.result("SELECT 3", rows=3)
    # Split the two responses at every byte: whatever the chunking, only the client's is seen.
    data = hidden_error_free + client
    backend.send(data, chunk=3)
    assert bytes(rec.io.sent) == client
    assert rec.ready == [(world.now, server.id, b"I")]
    assert server.clean


def test_error_from_hidden_query_is_not_forwarded(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1, search_path="x")
    client_query(server, backend)
    backend.take()
    backend.send(FakeBackend.error("22023", "bad value"), FakeBackend.result())
    assert types(rec.io.take()) == "TDCZ"


def test_pipeline_releases_only_after_last_ready_for_query(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    # Parse/Bind/Execute/Sync twice, then a simple Query: three ReadyForQuery owed.
    for _ in range(2):
        server.unsynced = True
        server.expect_sync()
    server.expect_response()
    assert len(server.owed) == 3
    ext = be.parse_complete() + be.bind_complete() + be.command_complete("SELECT 0")
    backend.send(ext + be.ready_for_query(b"I"))
    backend.send(ext + be.ready_for_query(b"I"))
    assert rec.ready == [] and server.state is S.ACTIVE and len(server.owed) == 1
    backend.send(FakeBackend.result())
    assert rec.ready == [(world.now, server.id, b"I")]
    assert types(rec.io.take()) == "12CZ12CZTDCZ"  # every response went to the client


def test_ready_for_query_with_unsynced_batch_pending_does_not_release(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    server.expect_response()  # a Query ...
    server.unsynced = True  # ... followed by a Parse without Sync yet
    backend.send(FakeBackend.result())
    assert rec.ready == []
    assert not server.clean


# -- requests behind an unsynced batch ---------------------------------------------------------


def behind_batch(server: ServerSession, backend: FakeBackend, sql: str = "select 1") -> None:
    """An Execute with no Sync yet, then a Query behind it (no Sync either)."""
    server.unsynced = True
    server.io.send(fe.execute(""))
    client_query(server, backend, sql)


def sync(server: ServerSession) -> None:
    server.expect_sync()
    server.io.send(fe.sync())


def test_query_behind_a_failed_batch_owes_no_ready_for_query(world: World, pool: Pool) -> None:
    """PostgreSQL skips a Query sent behind messages that failed (up to the Sync): only the
    Sync's ReadyForQuery comes, and the server goes back to the pool after it."""
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    behind_batch(server, backend)
    sync(server)
    # A no-op Close went ahead of the Query: its CloseComplete would say the batch succeeded.
    assert [t for t, _ in backend.take()] == ["E", "C", "Q", "S"]
    backend.send(be.error_response("34000", "portal does not exist"), be.ready_for_query(b"I"))
    assert types(rec.io.take()) == "EZ"
    assert rec.ready == [(world.now, server.id, b"I")] and not server.owed
    server.release(world.now, session_mode=False)
    assert server.state is S.IDLE


def test_query_behind_a_batch_that_succeeded_fails_on_its_own(world: World, pool: Pool) -> None:
    """Once the no-op Close came back, an error is the Query's own: its ReadyForQuery follows,
    then the Sync's."""
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    behind_batch(server, backend, "select 1/0")
    sync(server)
    backend.take()
    backend.send(be.command_complete("SELECT 0"), be.close_complete(),
                 be.error_response("22012", "division by zero"), be.ready_for_query(b"I"))
    assert types(rec.io.take()) == "CEZ"  # the CloseComplete is the proxy's: not forwarded
    assert rec.ready == [] and len(server.owed) == 1
    backend.send(be.ready_for_query(b"I"))
    assert types(rec.io.take()) == "Z" and rec.ready == [(world.now, server.id, b"I")]


def test_answer_behind_an_unsynced_batch_waits_for_its_turn(world: World, pool: Pool) -> None:
    """A Query the proxy answers itself behind unsynced messages: an empty query gives it its
    turn, and the messages' own answers still reach the client first."""
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    server.unsynced = True
    server.io.send(fe.execute(""))
    server.answer(be.command_complete("DEALLOCATE ALL"))
    assert rec.io.take() == []
    assert queries(backend.take()) == [""]
    backend.send(be.data_row([b"1"]), be.command_complete("SELECT 1"), be.close_complete(),
                 be.empty_query_response(), be.ready_for_query(b"I"))
    assert types(rec.io.take()) == "DCCZ"
    # Behind a batch that fails, the answer goes with the Query the server skips.
    server.answer(be.command_complete("DEALLOCATE ALL"))
    sync(server)
    backend.take()
    backend.send(be.error_response("34000", "portal does not exist"), be.ready_for_query(b"I"))
    assert types(rec.io.take()) == "EZ" and not server.owed


def test_skipped_named_parse_is_forgotten_by_the_client(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    server.unsynced = True
    server.io.send(fe.execute(""))
    stmt = GlobalStatement("__pgdog_ev_7", "select 2", ())
    server.forward_parse(stmt, "mine")
    sync(server)
    backend.take()
    backend.send(be.error_response("34000", "portal does not exist"), be.ready_for_query(b"I"))
    assert rec.forgotten == ["mine"] and stmt.name not in server.prepared


# -- release and cleaning ------------------------------------------------------------------


def test_extended_copy_ends_at_the_sync_after_it(world: World, pool: Pool) -> None:
    """libpq's extended-protocol COPY: Parse/Bind/Execute/Sync, the COPY (which ignores that
    Sync), CopyDone and another Sync. One ReadyForQuery comes for the two Syncs."""
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    server.unsynced = True
    server.io.send(fe.parse("", "copy t from stdin", []) + fe.bind("", "", [], [], []) + fe.execute(""))
    server.expect_sync()
    server.io.send(fe.sync())
    backend.send(be.parse_complete(), be.bind_complete(), be.copy_in_response(0, [0]))
    assert types(rec.io.take()) == "12G"
    server.copy_end_sent(False)  # (as the client does for its CopyDone)
    server.io.send(fe.copy_data(b"1\n") + fe.copy_done())
    server.expect_sync()
    server.io.send(fe.sync())
    assert len(server.owed) == 2  # (the first Sync's entry goes with the one ReadyForQuery)
    backend.send(be.command_complete("COPY 1"), be.ready_for_query(b"I"))
    assert types(rec.io.take()) == "CZ"
    assert rec.ready == [(world.now, server.id, b"I")] and not server.owed


def test_client_leaves_before_its_extended_copy_begins(world: World, pool: Pool) -> None:
    """Parse/Bind/Execute of a COPY FROM STDIN, and the client leaves before the server answers:
    the Sync sent for the unsynced messages goes into the COPY, which ignores it, so after the
    CopyFail's error the server waits for another Sync, which the proxy sends."""
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    server.unsynced = True
    server.io.send(fe.parse("", "copy t from stdin", []) + fe.bind("", "", [], [], []) + fe.execute(""))
    server.release(world.now, session_mode=False)
    assert server.state is S.CLEANING
    assert [t for t, _ in backend.take()] == ["P", "B", "E", "S"]
    backend.send(be.parse_complete(), be.bind_complete(), be.copy_in_response(0, [0]))
    assert [t for t, _ in backend.take()] == ["f", "S"]
    backend.send(be.error_response("57014", "COPY from stdin failed"), be.ready_for_query(b"I"))
    assert server.state is S.IDLE and server in pool.idle



@pytest.mark.parametrize("status", [b"T", b"E"])
def test_release_in_transaction_rolls_back_before_checkin(world: World, pool: Pool, status: bytes) -> None:
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    client_query(server, backend, "begin")
    backend.take()
    backend.send(FakeBackend.done("BEGIN", status))
    assert rec.ready == [(world.now, server.id, status)] and server.txn_status == status
    server.release(world.now, session_mode=False)
    assert server.state is S.CLEANING and server not in pool.idle
    assert backend.take_queries() == ["ROLLBACK"]
    assert server.io.cancels == []  # type: ignore[attr-defined]
    backend.send(FakeBackend.done("ROLLBACK", b"I"))
    assert server.state is S.IDLE and server in pool.idle and server.clean
    assert rec.io.take() == [("C", b"BEGIN\0"), ("Z", status)]  # the ROLLBACK's went nowhere
    notes = [r for r in world.log.records() if r.kind == Kind.NOTE and r.machine == Machine.SERVER]
    assert [n.a for n in notes] == [Reason.ROLLBACK]
    server_transitions(world)


def test_rollback_failing_is_retried(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    client_query(server, backend, "begin")
    backend.send(FakeBackend.done("BEGIN", b"T"))
    backend.take()
    server.release(world.now, session_mode=False)
    assert backend.take_queries() == ["ROLLBACK"]
    backend.send(FakeBackend.error("57014", "canceling statement", b"E"))
    assert server.state is S.CLEANING
    assert backend.take_queries() == ["ROLLBACK"]
    backend.send(FakeBackend.done("ROLLBACK"))
    assert server.state is S.IDLE


def test_release_with_unsynced_batch_sends_sync_first(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    server.unsynced = True  # Parse/Bind/Execute forwarded, no Sync yet
    server.release(world.now, session_mode=False)
    assert server.state is S.CLEANING
    assert backend.take() == [("S", b"")]
    assert server.io.cancels == []  # type: ignore[attr-defined]
    backend.send(be.parse_complete() + be.bind_complete() + be.command_complete("INSERT 0 1"))
    backend.send(be.ready_for_query(b"T"))  # the batch opened a transaction
    assert backend.take_queries() == ["ROLLBACK"]
    backend.send(FakeBackend.done("ROLLBACK"))
    assert server.state is S.IDLE and server in pool.idle
    server_transitions(world)


def test_release_with_query_running_cancels_and_drains(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    client_query(server, backend, "select pg_sleep(100)")
    backend.take()
    server.release(world.now, session_mode=False)
    assert server.state is S.CLEANING
    assert server.io.cancels == [(server.pid, server.secret)]  # type: ignore[attr-defined]
    assert backend.take() == []  # nothing else until the query ends
    backend.send(be.row_description([be.Field("x")]))
    assert server.state is S.CLEANING
    backend.send(FakeBackend.error("57014", "canceling statement due to user request"))
    # Drained, but the postmaster has not acknowledged the cancel: not reusable yet.
    assert server.state is S.CLEANING and server not in pool.idle
    server.on_cancel_done(world.now)
    assert server.state is S.IDLE and server in pool.idle
    assert rec.io.sent == b""  # the client that left gets nothing
    assert rec.ready == []
    server_transitions(world)


def test_session_mode_release_discards_all(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1, application_name="s")
    backend.answer_settings()
    assert server.applied == {"application_name": "s"}
    server.release(world.now, session_mode=True)
    assert server.state is S.CLEANING
    assert backend.take_queries() == ["DISCARD ALL"]
    assert server.applied == {}
    backend.send(FakeBackend.done("DISCARD ALL"))
    assert server.state is S.IDLE and server in pool.idle


def test_session_mode_release_in_transaction_rolls_back_then_discards(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    client_query(server, backend, "begin")
    backend.send(FakeBackend.done("BEGIN", b"T"))
    backend.take()
    server.release(world.now, session_mode=True)
    assert backend.take_queries() == ["ROLLBACK"]
    backend.send(FakeBackend.done("ROLLBACK"))
    assert backend.take_queries() == ["DISCARD ALL"]
    backend.send(FakeBackend.done("DISCARD ALL"))
    assert server.state is S.IDLE


def test_cleanup_timeout_closes_server(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    client_query(server, backend, "begin")
    backend.send(FakeBackend.done("BEGIN", b"T"))
    server.release(world.now, session_mode=False)
    assert server.state is S.CLEANING
    world.advance(world.now + 0.499)  # rollback_timeout is 500 ms
    assert server.state is S.CLEANING
    world.advance(world.now + 0.002)
    assert server.state is S.CLOSED and server.io.closed  # type: ignore[attr-defined]
    assert server.id not in pool.servers and server not in pool.idle
    assert world.transitions(Machine.SERVER, server.id)[-1].a == Reason.CLEANUP_FAILED
    server_transitions(world)


def test_cleanup_timer_cancelled_once_clean(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    client_query(server, backend, "begin")
    backend.send(FakeBackend.done("BEGIN", b"T"))
    server.release(world.now, session_mode=False)
    backend.send(FakeBackend.done("ROLLBACK"))
    world.advance(world.now + 10)
    assert server.state is S.IDLE


def test_ready_for_query_with_nothing_owed_closes_as_out_of_sync(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    backend.send(be.ready_for_query(b"I"))
    assert server.state is S.CLOSED
    assert server not in pool.idle and server.id not in pool.servers
    assert world.transitions(Machine.SERVER, server.id)[-1].a == Reason.OUT_OF_SYNC


def test_extra_ready_for_query_while_active_closes_and_tells_client(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    client_query(server, backend)
    backend.send(FakeBackend.result() + be.ready_for_query(b"I"))
    assert server.state is S.CLOSED
    assert rec.lost == [(world.now, server.id, False)]


def test_unsolicited_fatal_on_idle_server_is_remembered(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    backend.send(be.error_response("57P01", "terminating connection due to administrator command", "FATAL"))
    assert server.error == "terminating connection due to administrator command"
    server.on_closed(world.now)
    assert server.state is S.CLOSED


def test_discard_never_returns_to_pool(world: World, pool: Pool) -> None:
    server, _backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    server.discard(world.now)
    assert server.state is S.CLOSED and server not in pool.idle
    assert rec.lost == []  # the client that discarded it is not told


def test_terminate_sends_terminate_when_idle(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    server.terminate(world.now, Reason.SHUTDOWN)
    assert backend.take() == [("X", b"")]
    assert server.state is S.CLOSED


def test_illegal_transition_raises(world: World, pool: Pool) -> None:
    server, _ = new_server(world, pool)
    server.terminate(world.now, Reason.SHUTDOWN)
    with pytest.raises(IllegalTransition):
        server.link(world.now, Recorder(1))  # type: ignore[arg-type]


def test_query_timeout_closes_silent_server_and_tells_client(world: World) -> None:
    pool = world.make_pool(query_timeout=1000)
    server, backend = new_server(world, pool)
    rec = lend(world, pool, server, 1)
    client_query(server, backend, "select pg_sleep(10)")
    world.advance(0.5)
    feed(server, world.now, be.row_description([be.Field("x")]))  # activity pushes the deadline
    world.advance(1.2, step=True)
    assert server.state is S.ACTIVE
    world.advance(5.0, step=True)
    assert server.state is S.CLOSED
    assert len(rec.lost) == 1 and rec.lost[0][1:] == (server.id, True)
    assert world.transitions(Machine.SERVER, server.id)[-1].a == Reason.QUERY_TIMEOUT


def test_query_timer_does_not_fire_between_requests(world: World) -> None:
    pool = world.make_pool(query_timeout=1000)
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    client_query(server, backend, "begin")
    backend.send(FakeBackend.done("BEGIN", b"T"))
    world.advance(10.0, step=True)  # idle in transaction: nothing owed, not a silent server
    assert server.state is S.ACTIVE


def test_query_timeout_fires_query_timeout_after_last_activity(world: World) -> None:
    pool = world.make_pool(query_timeout=1000)
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    client_query(server, backend, "select pg_sleep(10)")
    world.advance(0.5)
    feed(server, world.now, be.row_description([be.Field("x")]))  # last server activity: 0.5
    world.advance(1.6, step=True)  # silent for 1.1 s > query_timeout
    assert server.state is S.CLOSED


def test_transitions_are_logged_and_legal_through_a_full_life(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool, auth="scram")
    for i in range(3):
        lend(world, pool, server, i + 1, application_name=f"c{i}")
        client_query(server, backend)
        backend.answer_settings()
        server.release(world.now, session_mode=i == 2)
        backend.answer_settings()
    server.terminate(world.now, Reason.SHUTDOWN)
    server_transitions(world)
    states = [(r.frm, r.to) for r in world.transitions(Machine.SERVER, server.id)]
    assert states[0] == (S.CONNECTING, S.STARTUP) and states[-1][1] == S.CLOSED
    assert (S.ACTIVE, S.CLEANING) in states and (S.CLEANING, S.IDLE) in states
    assert world.log.clamped == 0


def test_fake_stream_records_everything() -> None:
    s = FakeStream()
    s.send(memoryview(b"abc"))
    s.pause_reading()
    s.resume_reading()
    s.close()
    assert s.sent == b"abc" and s.log == ["pause", "resume", "close"]


# -- the login check (a new client's settings tried on a server) -------------------------------


def checker(world: World, pool: Pool, server: ServerSession, cid: int = 7, **params: str) -> Recorder:
    rec = Recorder(cid, params=dict(params))
    assert pool.checkout(world.now, rec) is server
    server.check_login(world.now, rec)
    return rec


def test_login_check_reports_parameter_status_to_the_client_session(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = checker(world, pool, server, timezone="Europe/Paris")
    assert backend.take_queries() == ["SELECT pg_catalog.set_config(E'timezone', E'Europe/Paris', false)"]
    backend.send(be.parameter_status("TimeZone", "Europe/Paris") + FakeBackend.result())
    assert rec.login_checks == [({"TimeZone": "Europe/Paris"}, None)]
    assert rec.io.sent == b""  # the check's replies are the proxy's own
    assert server.reported["TimeZone"] == "Europe/Paris"
    assert server.applied == {"timezone": "Europe/Paris"}


def test_login_check_without_settings_is_a_plain_round_trip(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = checker(world, pool, server)
    assert backend.take_queries() == ["SELECT 1"]
    backend.send(FakeBackend.result())
    assert rec.login_checks == [({}, None)]


def test_login_check_error_is_reported(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    rec = checker(world, pool, server, datestyle="nonsense")
    backend.take()
    backend.send(FakeBackend.error("22023", 'invalid value for parameter "DateStyle": "nonsense"'))
    ((_reported, error),) = rec.login_checks
    assert error is not None and error["C"] == "22023" and "DateStyle" in error["M"]
    assert rec.io.sent == b""


def test_login_check_does_not_forget_settings_applied_by_previous_client(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1, timezone="Asia/Tokyo")
    backend.answer_settings()
    server.release(world.now, session_mode=False)
    assert server.applied == {"timezone": "Asia/Tokyo"}

    checker(world, pool, server, search_path="s")
    (check,) = backend.take_queries()
    assert 'RESET "timezone"' in check or "timezone" in server.applied


def test_after_failed_login_check_next_sync_is_valid_sql(world: World, pool: Pool) -> None:
    server, backend = new_server(world, pool)
    checker(world, pool, server, datestyle="nonsense")
    backend.take()
    backend.send(FakeBackend.error("22023", "invalid value for parameter"))
    server.release(world.now, session_mode=False)
    assert server.state is S.IDLE
    lend(world, pool, server, 2, search_path="x")
    (sync,) = backend.take_queries()
    assert "__invalid__" not in sync


def test_late_cancel_never_reaches_the_next_client(world: World, pool: Pool) -> None:
    """The query ends on its own before the cancel lands: the server still waits for the ack."""
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    client_query(server, backend, "select 1")
    backend.take()
    server.release(world.now, session_mode=False)
    backend.send(FakeBackend.result())
    assert server.state is S.CLEANING and server.cancels_in_flight == 1
    server.on_cancel_done(world.now)
    assert server.state is S.IDLE and server.cancels_in_flight == 0
