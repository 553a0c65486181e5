"""What PostgreSQL skips or swallows, and the proxy's count of ReadyForQuery owed with it: requests
sent behind an extended-protocol batch that failed (before or after its error reached the proxy),
answers the proxy gives itself among them, the Syncs a COPY FROM STDIN (begun by an Execute or a
Query) reads and ignores, and a message that breaks such a COPY. Driven through a whole client
session against fuzz/responder.py (which answers as PostgreSQL does) or a ServerSession against
scripted replies."""

from __future__ import annotations

import pytest

from fuzz.targets.session import Session
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from state.client import ClientSession
from state.server import ServerState as S
from tests.unit.statekit import World, feed, ready_client
from tests.unit.test_state_server import lend, new_server


def _client() -> tuple[Session, ClientSession]:
    """A logged-in client of a transaction-mode pool whose servers answer as PostgreSQL does."""
    s = Session("transaction")
    client, _ = ready_client(s.rig)
    client.io.take()  # type: ignore[attr-defined]
    return s, client


def _extended(sql: str) -> bytes:
    """Parse, Bind and Execute of ``sql`` (unnamed), without a Sync."""
    return fe.parse("", sql) + fe.bind("", "", [], [], []) + fe.execute("")


def _copy_then(s: Session, client: ClientSession, copy: bytes, rest: bytes, wait_for_copy: bool) -> str:
    """``copy``, then ``rest``: sent at once or after the COPY began. Returns the types of the
    messages the client got."""
    if wait_for_copy:
        feed(client, s.world.now, copy)
        s.settle()
        feed(client, s.world.now, rest)
    else:
        feed(client, s.world.now, copy + rest)
    s.settle()
    return "".join(t for t, _ in client.io.take())  # type: ignore[attr-defined]


def _extended_copy(s: Session, client: ClientSession, then: bytes, wait_for_copy: bool) -> str:
    """An extended COPY FROM STDIN with its Sync, one row, CopyDone and ``then``."""
    return _copy_then(s, client, _extended("COPY t FROM STDIN") + fe.sync(),
                      fe.copy_data(b"1\n") + fe.copy_done() + then, wait_for_copy)


def test_a_failed_parse_does_not_forget_a_later_one_of_the_same_name() -> None:
    """P s1 (fails) S, C s1, P s1 (ok) S pipelined: PostgreSQL ends with s1 = select 1."""
    s, client = _client()
    feed(client, s.world.now,
         _extended("select 0") + fe.sync()
         + fe.parse("s1", "select error") + fe.sync()
         + fe.close("S", "s1") + fe.parse("s1", "select 1") + fe.sync())
    s.settle()
    assert "s1" in client.statements, "the second, successful Parse of s1 was forgotten"


def test_answer_waits_for_unsynced_messages_when_something_is_owed() -> None:
    """Q1, P/B/E (no Sync), DEALLOCATE ALL (answered by the proxy), Sync: sent at once."""
    s, client = _client()
    feed(client, s.world.now,
         fe.query("select 1") + _extended("select 2")
         + fe.query("DEALLOCATE ALL") + fe.sync())
    s.settle()
    got = "".join(t for t, _ in client.io.take())
    # PostgreSQL: T D C Z | 1 2 C | C Z (DEALLOCATE) | Z (Sync)
    assert got == "TDCZ12CCZZ", got


def test_query_after_the_batch_error_arrived_is_skipped() -> None:
    """P/B/E/Flush (fails, error read), then a Query and a Sync: PostgreSQL skips the Query."""
    s, client = _client()
    feed(client, s.world.now, _extended("select error") + fe.flush())
    s.settle()
    assert "".join(t for t, _ in client.io.take()) == "E"
    feed(client, s.world.now, fe.query("select 1") + fe.sync())
    s.settle()
    got = "".join(t for t, _ in client.io.take())
    (server,) = s.world.pool_io.opened
    assert got == "Z" and not server.owed and server.client is None


# -- server level ------------------------------------------------------------------------------


def test_copy_error_then_client_leaves() -> None:
    """Extended COPY FROM STDIN with its Sync; the COPY fails on bad data (ErrorResponse, the
    server now skips to a Sync); the client leaves before sending its CopyDone/Sync."""
    world = World()
    pool = world.make_pool(pool_size=3)
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    server.unsynced = True
    server.io.send(fe.parse("", "copy t from stdin", []) + fe.bind("", "", [], [], []) + fe.execute(""))
    server.expect_sync()
    server.io.send(fe.sync())
    backend.send(be.parse_complete(), be.bind_complete(), be.copy_in_response(0, [0]))
    server.io.send(fe.copy_data(b"x\n"))
    backend.take()
    backend.send(be.error_response("22P02", "invalid input syntax for type integer"))
    server.release(world.now, session_mode=False)
    sent = [t for t, _ in backend.take()]
    assert "S" in sent, "no Sync sent: the server waits for one, the proxy for a ReadyForQuery"


@pytest.mark.parametrize("wait_for_copy", [False, True])
def test_query_between_copy_done_and_second_sync(wait_for_copy: bool) -> None:
    """The Query after the CopyDone runs and has its ReadyForQuery; the second Sync its own."""
    s, client = _client()
    got = _extended_copy(s, client, fe.query("select 1") + fe.sync(), wait_for_copy)
    (server,) = s.world.pool_io.opened
    # PostgreSQL: 1 2 G | C (COPY) | T D C Z (the Query) | Z (the second Sync)
    assert got == "12GCTDCZZ" and server.state is S.IDLE


@pytest.mark.parametrize("wait_for_copy", [False, True])
def test_answer_queued_after_the_copy_sync_comes_after_its_ready_for_query(wait_for_copy: bool) -> None:
    """Extended COPY, CopyDone, Sync, then DEALLOCATE ALL (answered by the proxy) before the
    ReadyForQuery came: the DEALLOCATE's answer must follow that ReadyForQuery."""
    s, client = _client()
    got = _extended_copy(s, client, fe.sync() + fe.query("DEALLOCATE ALL"), wait_for_copy)
    assert got == "12GCZCZ", got


def test_copy_data_sent_ahead_with_a_single_sync() -> None:
    """P/B/E of a COPY FROM STDIN, its data, CopyDone and one Sync, sent before the server
    answered: that Sync follows the CopyDone, so it is not ignored (one ReadyForQuery for it)."""
    s, client = _client()
    feed(client, s.world.now, _extended("COPY t FROM STDIN")
         + fe.copy_data(b"1\n") + fe.copy_done() + fe.sync())
    s.settle()
    (server,) = s.world.pool_io.opened
    assert "".join(t for t, _ in client.io.take()) == "12GCZ" and server.state is S.IDLE
    feed(client, s.world.now, _extended("select 1") + fe.sync())
    s.settle()
    got = "".join(t for t, _ in client.io.take())
    assert got == "12CZ" and server.state is S.IDLE


@pytest.mark.parametrize("sql", ["DEALLOCATE ALL", "select 1"])
def test_request_after_the_batch_error_arrived(sql: str) -> None:
    """The batch's error already read, then a Query (or one the proxy answers) and a Sync: the
    server skips the Query; only the Sync's ReadyForQuery comes, and nothing is left owed."""
    s, client = _client()
    feed(client, s.world.now, _extended("select error") + fe.flush())
    s.settle()
    assert "".join(t for t, _ in client.io.take()) == "E"
    feed(client, s.world.now, fe.query(sql) + fe.sync())
    s.settle()
    assert "".join(t for t, _ in client.io.take()) == "Z"
    (server,) = s.world.pool_io.opened
    stuck_owed = list(server.owed)
    feed(client, s.world.now, fe.query("select 1"))
    s.settle()
    client.on_closed(s.world.now)
    s.settle()
    assert stuck_owed == [] and server.state.name != "CLEANING"


def test_settings_after_an_extended_copy_are_tracked() -> None:
    """A SET in the batch after the COPY's CopyDone is the session's, as without the COPY."""
    s, client = _client()
    feed(client, s.world.now, _extended("COPY t FROM STDIN") + fe.sync())
    s.settle()
    feed(client, s.world.now, fe.copy_data(b"1\n") + fe.copy_done()
         + _extended("SET search_path = foo") + fe.sync())
    s.settle()
    assert client.params.get("search_path") == "foo"


# -- a COPY FROM STDIN begun by a Query ---------------------------------------------------------


def _query_copy(s: Session, client: ClientSession, then: bytes, wait_for_copy: bool) -> str:
    """COPY FROM STDIN by a Query, then ``then``."""
    return _copy_then(s, client, fe.query("COPY t FROM STDIN"), then, wait_for_copy)


@pytest.mark.parametrize("wait_for_copy", [False, True])
@pytest.mark.parametrize("end", ["done", "fail"])
def test_syncs_inside_a_query_copy_get_no_ready_for_query(wait_for_copy: bool, end: str) -> None:
    """Flush and Syncs sent inside the COPY are read and ignored by it: one ReadyForQuery, for
    the Query, and the server is back in the pool; the next request is answered as usual."""
    s, client = _client()
    finish = fe.copy_done() if end == "done" else fe.copy_fail("no")
    got = _query_copy(s, client, fe.sync() + fe.copy_data(b"1\n") + fe.flush() + fe.sync() + finish
                      + fe.query("select 1"), wait_for_copy)
    (server,) = s.world.pool_io.opened
    if end == "fail" and not wait_for_copy:
        # A Sync behind a row, sent before the proxy knew of the COPY, then a CopyFail: its
        # error has the SQLSTATE of a timeout that could have struck before that Sync was read.
        assert got == "GEE" and server.state is S.CLOSED
        return
    assert got == ("GCZTDCZ" if end == "done" else "GEZTDCZ"), got
    assert server.state is S.IDLE and not server.owed and not server._ignored


def test_sync_after_a_query_copy_ended_is_answered() -> None:
    """CopyDone, then a Sync: outside the COPY, a Sync gets its ReadyForQuery."""
    s, client = _client()
    got = _query_copy(s, client, fe.copy_done() + fe.sync(), wait_for_copy=True)
    (server,) = s.world.pool_io.opened
    assert got == "GCZZ" and server.state is S.IDLE


@pytest.mark.parametrize("message", [fe.query("select 1"), fe.parse("", "select 1"), fe.function_call(1, [], [], 0),
                                     fe.bind("", "", [], [], []), fe.describe("S", ""), fe.execute(""),
                                     fe.close("S", "")], ids=lambda m: chr(m[0]))
def test_a_message_that_breaks_a_running_copy_ends_the_client_not_the_server(message: bytes) -> None:
    """Inside a COPY the proxy knows to be running, a message it cannot read gets PostgreSQL's
    error and FATAL, and the client is closed; the server gets a CopyFail and is reused."""
    s, client = _client()
    feed(client, s.world.now, fe.query("COPY t FROM STDIN"))
    s.settle()
    feed(client, s.world.now, fe.copy_data(b"1\n") + message + fe.query("select 2"))
    s.settle()
    msgs = client.io.take()  # type: ignore[attr-defined]
    (server,) = s.world.pool_io.opened
    assert [t for t, _ in msgs] == ["G", "E", "E"]
    assert f"unexpected message type 0x{message[0]:02X} during COPY from stdin".encode() in msgs[1][1]
    assert b"SFATAL" in msgs[2][1] and b"protocol synchronization was lost" in msgs[2][1]
    assert client.state.name == "CLOSED"
    assert server.state is S.IDLE and server.clean


def test_a_query_pipelined_behind_a_copy_reaches_the_server() -> None:
    """A Query sent with the COPY's, before the proxy knew of the COPY: PostgreSQL reads it
    inside the COPY, answers with an error and a FATAL and closes. The client hears exactly
    that, and nothing of the proxy's own after it."""
    s, client = _client()
    got = _query_copy(s, client, fe.query("select 1"), wait_for_copy=False)
    (server,) = s.world.pool_io.opened
    assert got == "GEE" and client.state.name == "CLOSED" and server.state is S.CLOSED


def test_two_copies_of_one_query_each_take_their_own_copy_done() -> None:
    """A Query with two COPY FROM STDIN: the first CopyDone ends the first; inside the second a
    Sync is ignored as in the first, and a Query breaks it."""
    s, client = _client()
    got = _copy_then(s, client, fe.query("COPY a FROM STDIN; COPY b FROM STDIN"), b"", wait_for_copy=True)
    feed(client, s.world.now, fe.copy_data(b"1\n") + fe.copy_done())
    s.settle()
    feed(client, s.world.now, fe.copy_data(b"2\n") + fe.sync() + fe.copy_done())
    s.settle()
    got += "".join(t for t, _ in client.io.take())  # type: ignore[attr-defined]
    (server,) = s.world.pool_io.opened
    assert got == "GCGCZ" and server.state is S.IDLE and not server.owed


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_a_bad_row_then_a_sync_inside_a_query_copy(mode: str) -> None:
    """The COPY fails at a bad row; the Sync (and Flush) the client sent after it, inside the
    COPY as far as the proxy knew, was not sent on: one ReadyForQuery, and no stray one for the
    next client. Session mode streams the client's messages, but drops those too (sent, the
    Sync's ReadyForQuery would be counted for no request, and the session's server closed)."""
    s = Session(mode)
    client, _ = ready_client(s.rig)
    client.io.take()  # type: ignore[attr-defined]
    got = _query_copy(s, client, fe.copy_data(b"bad\n") + fe.sync() + fe.flush() + fe.copy_done(), wait_for_copy=True)
    (server,) = s.world.pool_io.opened
    assert got == "GEZ" and server.state is (S.IDLE if mode == "transaction" else S.ACTIVE) and not server.owed
    feed(client, s.world.now, fe.query("select 1"))
    s.settle()
    assert "".join(t for t, _ in client.io.take()) == "TDCZ"  # type: ignore[attr-defined]


def test_a_bad_row_in_a_copy_with_a_sync_sent_before_it_began() -> None:
    """Query, Sync, bad row and CopyDone sent before the COPY began: whether the Sync came before
    the failing row is unknown, so the server is closed, never lent with a ReadyForQuery that
    answers no one; the client has the COPY's error first."""
    s, client = _client()
    got = _query_copy(s, client, fe.copy_data(b"1\n") + fe.sync() + fe.copy_data(b"bad\n") + fe.copy_done(),
                      wait_for_copy=False)
    (server,) = s.world.pool_io.opened
    assert got == "GEE" and server.state is S.CLOSED and client.state.name == "CLOSED"


def test_a_bad_row_in_a_query_copy_after_a_sync_sent_before_any_row() -> None:
    """Query, Sync, then a bad row: the COPY read the Sync before it parsed any row, so the
    Query's ReadyForQuery is the only one and the server goes back to the pool."""
    s, client = _client()
    got = _query_copy(s, client, fe.sync() + fe.copy_data(b"bad\n") + fe.copy_done(), wait_for_copy=False)
    (server,) = s.world.pool_io.opened
    assert got == "GEZ" and server.state is S.IDLE and not server.owed


# -- a COPY FROM STDIN begun by an Execute not yet synced --------------------------------------


def _flushed_copy(s: Session, client: ClientSession, then: bytes) -> str:
    """P/B/E of a COPY FROM STDIN and a Flush, no Sync; once the COPY began, ``then``."""
    return _copy_then(s, client, _extended("COPY t FROM STDIN") + fe.flush(), then, wait_for_copy=True)


@pytest.mark.parametrize("end", ["done", "fail"])
def test_syncs_inside_a_copy_begun_by_an_unsynced_execute(end: str) -> None:
    """The COPY reads the Syncs sent inside it; the Sync after its CopyDone (or CopyFail) is the
    Execute's own, with the one ReadyForQuery. Before, each inner Sync was counted as owing one,
    and the client kept the server for good."""
    s, client = _client()
    finish = fe.copy_done() if end == "done" else fe.copy_fail("no")
    got = _flushed_copy(s, client, fe.sync() + fe.flush() + fe.sync() + fe.copy_data(b"1\n") + finish + fe.sync())
    (server,) = s.world.pool_io.opened
    assert got == ("12GCZ" if end == "done" else "12GEZ"), got
    assert server.state is S.IDLE and not server.owed and not server._ignored
    feed(client, s.world.now, fe.query("select 1"))
    s.settle()
    assert "".join(t for t, _ in client.io.take()) == "TDCZ"  # type: ignore[attr-defined]


def test_a_bad_row_then_a_sync_in_a_copy_begun_by_an_unsynced_execute() -> None:
    """A bad row, then the Sync the failed COPY now waits for, and no CopyDone: the Sync goes
    to the server (held back, it would leave client and server waiting for each other). Sent
    behind a row, whether the COPY read it is unknown: the server is closed after the error."""
    s, client = _client()
    got = _flushed_copy(s, client, fe.copy_data(b"bad\n") + fe.sync())
    (server,) = s.world.pool_io.opened
    assert got == "12GEE" and server.state is S.CLOSED and client.state.name == "CLOSED"


@pytest.mark.parametrize("copy", [fe.query("COPY view FROM STDIN"), _extended("COPY view FROM STDIN") + fe.sync()],
                         ids=["query", "extended"])
def test_a_copy_that_fails_as_it_begins_with_syncs_sent_inside(copy: bytes) -> None:
    """COPY into a view, a Sync, a row, CopyDone, Sync, all sent at once: PostgreSQL fails the
    COPY before it reads anything, so the Sync is not the COPY's, and gets a ReadyForQuery of
    its own. The proxy cannot tell that from a COPY that read it: the server is closed after the
    error, never lent with a ReadyForQuery to come that nobody owns."""
    s, client = _client()
    got = _copy_then(s, client, copy, fe.sync() + fe.copy_data(b"1\n") + fe.copy_done() + fe.sync(),
                     wait_for_copy=False)
    (server,) = s.world.pool_io.opened
    assert got.endswith("GEE") and server.state is S.CLOSED and client.state.name == "CLOSED"


def test_a_copy_that_fails_as_it_begins_with_nothing_sent_inside() -> None:
    """The same COPY with nothing behind it: no doubt, the server is kept."""
    s, client = _client()
    got = _copy_then(s, client, fe.query("COPY view FROM STDIN"), b"", wait_for_copy=False)
    (server,) = s.world.pool_io.opened
    assert got == "GEZ" and server.state is S.IDLE and not server.owed


@pytest.mark.parametrize("end", [fe.copy_done(), fe.copy_fail("no"), b""], ids=["done", "fail", "none"])
def test_a_cancel_inside_a_copy_with_a_sync_sent_inside(end: bytes) -> None:
    """A statement timeout (or a cancel) strikes during the COPY's first row, before the Sync
    sent behind it was read; it has the same SQLSTATE as a CopyFail's error. The server is
    closed after the error."""
    world = World()
    pool = world.make_pool(pool_size=1)
    server, backend = new_server(world, pool)
    lend(world, pool, server, 1)
    server.copy_may_begin(False)
    server.expect_response()
    server.io.send(fe.query("COPY t FROM STDIN"))
    server.copy_data_sent = True  # (as the client does for its CopyData)
    server.expect_sync()
    if end:
        server.copy_end_sent(end[0] == fe.COPY_FAIL)
    backend.send(be.copy_in_response(0, [0]), be.error_response("57014", "canceling statement due to statement timeout"))
    assert server.state is S.CLOSED


@pytest.mark.parametrize("wait_for_copy", [False, True])
def test_a_bad_row_then_a_sync_inside_an_extended_copy(wait_for_copy: bool) -> None:
    """P/B/E/S of a COPY, a bad row, a Sync, CopyDone, Sync: PostgreSQL may have answered the
    inner Sync (the COPY had ended at the bad row) or not (it had read ahead). The server is
    closed after the client had the error, never lent with a ReadyForQuery nobody owns."""
    s, client = _client()
    got = _copy_then(s, client, _extended("COPY t FROM STDIN") + fe.sync(),
                     fe.copy_data(b"bad\n") + fe.sync() + fe.copy_done() + fe.sync(), wait_for_copy)
    (server,) = s.world.pool_io.opened
    assert got.startswith("12GE") and server.state is S.CLOSED and client.state.name == "CLOSED"


def test_a_bad_row_in_an_extended_copy_whose_sync_came_first() -> None:
    """libpq's extended COPY (P/B/E/S, then the rows, CopyDone, Sync) with a bad row: the COPY
    read its Sync before any row, the error skips to the last Sync, and the server is kept."""
    s, client = _client()
    got = _extended_copy(s, client, fe.sync(), wait_for_copy=True)
    (server,) = s.world.pool_io.opened
    assert got == "12GCZ"
    got = _copy_then(s, client, _extended("COPY t FROM STDIN") + fe.sync(),
                     fe.copy_data(b"1\n") + fe.copy_data(b"bad\n") + fe.copy_done() + fe.sync(), wait_for_copy=True)
    assert got == "12GEZ" and server.state is S.IDLE and not server.owed


def test_rows_of_an_earlier_copy_do_not_make_a_later_ones_sync_doubtful() -> None:
    """A Query's COPY fails at a bad row and the client never ends it (PostgreSQL ignores the
    rest); then an extended COPY whose Sync went before any of its own rows fails too. Only its
    own rows count: the server is kept."""
    s, client = _client()
    assert _query_copy(s, client, fe.copy_data(b"bad\n"), wait_for_copy=True) == "GEZ"
    got = _copy_then(s, client, _extended("COPY t FROM STDIN") + fe.sync(),
                     fe.copy_data(b"bad\n") + fe.copy_done() + fe.sync(), wait_for_copy=True)
    (server,) = s.world.pool_io.opened
    assert got == "12GEZ" and server.state is S.IDLE and not server.owed


@pytest.mark.parametrize("wait_for_copy", [False, True])
@pytest.mark.parametrize(("bad", "want"), [(None, "12GC12GCZ"), (1, "12GEZZ"), (2, "12GC12GEZ")],
                         ids=["ok", "first-bad", "second-bad"])
def test_two_extended_copies_in_one_stretch_each_read_their_own_sync(
        wait_for_copy: bool, bad: int | None, want: str) -> None:
    """P/B/E/S, a row, CopyDone, then a second COPY the same way, then a Sync, with no
    ReadyForQuery between: each COPY reads the Sync sent inside it, so only the last is answered
    (after a bad row in the first, the server skips to the second COPY's Sync, which is answered,
    and the last too). Counting the second COPY's Sync kept the server from the pool for good."""
    s, client = _client()
    rows = [b"bad\n" if bad == i else f"{i}\n".encode() for i in (1, 2)]
    got = _copy_then(s, client, _extended("COPY a FROM STDIN") + fe.sync(),
                     fe.copy_data(rows[0]) + fe.copy_done() + _extended("COPY b FROM STDIN") + fe.sync()
                     + fe.copy_data(rows[1]) + fe.copy_done() + fe.sync(), wait_for_copy)
    (server,) = s.world.pool_io.opened
    assert got == want and server.state is S.IDLE and not server.owed
    feed(client, s.world.now, fe.query("select 1"))
    s.settle()
    assert "".join(t for t, _ in client.io.take()) == "TDCZ"  # type: ignore[attr-defined]
