"""Bugs the fuzz targets (fuzz/) found, each with its smallest input, next to the fix's module.

A test here states what the fixed code does with the input the fuzzer produced, so that the
regression fails the same way the target did, without running the fuzzer.
"""

from __future__ import annotations

import time

import pytest

from fuzz.targets.copy import SIMPLE
from fuzz.targets.session import Session
from pgdog_ev.sql.prefilter import needs_parse
from pgdog_ev.sql.route import Route, route_fast, route_prefilter, route_slow
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.scanner import MessageScanner, action_table
from tests.unit.statekit import feed, ready_client

# -- pgdog_ev/wire/scanner.py -----------------------------------------------------------------


def test_scanner_forwards_the_end_of_a_message_before_a_bad_length() -> None:
    """copy_in: the tail of a streamed CopyData and a bad header in one read. The scanner raised
    without sending the tail, so the server kept half a CopyData and took the CopyFail that
    followed for its body (the client scanner said it was at a message boundary)."""
    sent = bytearray()
    scanner = MessageScanner(action_table(header=b"d"), lambda v: sent.extend(v), lambda t, b: None,
                             lambda t, n: True)
    message = fe.copy_data(b"abcdefgh")
    scanner.feed(memoryview(message[:7]))
    with pytest.raises(ProtocolViolation):
        scanner.feed(memoryview(message[7:] + b"d\x00\x00\x00\x03"))
    assert bytes(sent) == message


def test_a_copy_cut_by_a_bad_length_ends_with_a_whole_copy_fail() -> None:
    session = Session("transaction")
    client, _driver = ready_client(session.rig)
    feed(client, session.world.now, SIMPLE)
    session.settle()
    (server,) = session.world.pool_io.opened
    before = len(server.io.sent)
    session.answering = False
    message = fe.copy_data(b"abcdefgh")
    feed(client, session.world.now, message[:7])
    feed(client, session.world.now, message[7:] + b"d\x00\x00\x00\x03")
    assert client.state.name == "CLOSED"
    assert bytes(server.io.sent[before:]) == message + fe.copy_fail("client disconnected during COPY")


# -- state/server.py ----------------------------------------------------------------------------

EXTENDED_COPY = fe.parse("", "COPY t FROM STDIN") + fe.bind("", "", [], [], []) + fe.execute("") + fe.sync()


@pytest.mark.parametrize("interleave", [False, True], ids=["sent_at_once", "after_the_copy_began"])
def test_extended_copy_owes_one_ready_for_query_for_its_two_syncs(interleave: bool) -> None:
    """client_session: an extended-protocol COPY FROM STDIN with its Sync, then CopyData,
    CopyFail and another Sync (as libpq sends it). The COPY ignored the first Sync, so one
    ReadyForQuery came for the two the proxy counted: it kept the server, and once the client
    left the cleanup waited for a ReadyForQuery that never came."""
    session = Session("transaction")
    client, _driver = ready_client(session.rig)
    feed(client, session.world.now, EXTENDED_COPY)
    if interleave:
        session.settle()
    feed(client, session.world.now, fe.copy_data(b"2\n") + fe.copy_fail("no") + fe.sync())
    session.settle()
    (server,) = session.world.pool_io.opened
    assert server.client is None and server.state.name == "IDLE" and not server.owed
    feed(client, session.world.now, fe.query("SELECT 1"))
    session.settle()
    assert server.client is None and server.state.name == "IDLE"


def test_copy_done_of_a_simple_copy_does_not_end_a_later_extended_one() -> None:
    """client_session: a simple COPY ended by its CopyDone, then, in the same stretch before the
    next Sync, an extended COPY with its Sync, a CopyFail and another Sync. The first CopyDone
    was taken for the extended COPY's, so its Sync was not known to be ignored."""
    session = Session("transaction")
    client, _driver = ready_client(session.rig)
    feed(client, session.world.now, fe.query("COPY t FROM STDIN") + fe.copy_data(b"1\n") + fe.copy_done()
         + EXTENDED_COPY + fe.copy_data(b"2\n") + fe.copy_fail("no") + fe.sync())
    session.settle()
    (server,) = session.world.pool_io.opened
    assert server.client is None and server.state.name == "IDLE" and not server.owed


@pytest.mark.parametrize("sync", [False, True], ids=["client_leaves", "then_sync"])
def test_queries_after_a_failed_extended_copy_are_skipped(sync: bool) -> None:
    """client_session: an extended COPY with its Sync, CopyFail, then Queries with no Sync yet.
    The COPY read that Sync, so after the CopyFail's error the server skipped the Queries up to
    the next one: their ReadyForQuery never came, and once the client left the cleanup waited."""
    session = Session("transaction")
    client, _driver = ready_client(session.rig)
    feed(client, session.world.now, EXTENDED_COPY + fe.copy_data(b"2\n") + fe.copy_fail("no")
         + fe.query("SELECT 1") + fe.query("BEGIN"))
    session.settle()
    (server,) = session.world.pool_io.opened
    if sync:
        feed(client, session.world.now, fe.sync() + fe.query("SELECT 2"))
        session.settle()
        assert server.client is None and server.state.name == "IDLE" and not server.owed
    client.on_closed(session.world.now)
    session.settle()
    assert server.state.name == "IDLE" and not server.owed


# -- pgdog_ev/sql/route.py --------------------------------------------------------------------


def test_route_prefilter_does_not_backtrack_over_whitespace() -> None:
    """sql_route: 33 NULs (spaces once decoded), ';', four bad bytes took 10 s in the
    prefilter's first-word regex, doubling with every further space."""
    text = " " * 64 + ";"
    started = time.perf_counter()
    assert route_prefilter(text) is None
    assert time.perf_counter() - started < 1.0
    assert route_fast(text) == route_slow(text) == Route(False, "empty")


# -- pgdog_ev/sql/prefilter.py ----------------------------------------------------------------


def test_needs_parse_is_linear_in_a_run_of_semicolons() -> None:
    """sql_analyze (stretched input): every `;` of a trailing run rescanned the rest of it."""
    text = "a;b" + ";" * 200_000
    started = time.perf_counter()
    assert needs_parse(text) is False
    assert time.perf_counter() - started < 1.0
    assert needs_parse("SELECT 1;;  ; SET a = 1")


# -- pgdog_ev/admin/parser.py -----------------------------------------------------------------


def test_a_quoted_set_is_a_syntax_error() -> None:
    """admin_console: `'set'` became a SET command without key or value, and the console's
    handler raised IndexError out of the client session (the admin client got no answer)."""
    from pgdog_ev.admin.parser import AdminSyntaxError, parse

    with pytest.raises(AdminSyntaxError):
        parse("'set'")
    with pytest.raises(AdminSyntaxError):
        parse('"SET" default_pool_size 5')
    assert parse("'show' pools").verb == "SHOW"


def test_the_console_answers_a_quoted_set_with_an_error() -> None:
    from fuzz.targets.admin import admin_console

    admin_console(b"'set'")


# -- state/prepared.py ------------------------------------------------------------------------


def test_a_named_parse_with_an_error_at_the_end_of_its_text_is_answered() -> None:
    """client_session: a named Parse of `SELECT ... = (1`. libpg_query reports "syntax error at
    end of input" without a location; int(None) raised TypeError out of the client session."""
    from state.prepared import syntax_error
    from tests.unit.statekit import error_fields, rig, types

    assert syntax_error("SELECT (1") == ("syntax error at end of input", 10)
    client, driver = ready_client(rig("transaction"))
    driver.send(fe.parse("s1", "SELECT v FROM t WHERE id = (1") + fe.sync())
    answer = driver.take()
    assert types(answer) == "EZ"
    (error,) = error_fields(answer)
    assert (error["C"], error["M"], error["P"]) == ("42601", "syntax error at end of input", "30")
    assert client.state.name == "IDLE"


# -- state/client_routing.py ----------------------------------------------------------------


@pytest.mark.parametrize(("before", "text"), [("", b"BEGIN\0Q"), ("BEGIN", b"COMMIT\0\0")])
def test_query_text_with_a_nul_inside_is_left_to_the_server(before: str, text: bytes) -> None:
    """client_session: a Query whose body is `BEGIN`, a NUL, then more bytes. The proxy answered
    the BEGIN itself and kept the whole text to replay on a server, where building the Query
    raised ValueError (a NUL in a protocol string) out of the client session. PostgreSQL answers
    such a message 08P01: the proxy now leaves it to the server, answering and keeping none of it,
    and forwards it byte for byte."""
    from tests.unit.statekit import FakeBackend, error_fields, only_server, queries, ready_statuses, rig

    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    if before:
        driver.send(fe.query(before))
        driver.take()
    body = text + b"\0"
    driver.send(b"Q" + (len(body) + 4).to_bytes(4, "big") + body)
    sent = backend.take()
    assert queries(sent[:-1]) == ([before] if before else []) and sent[-1] == ("Q", body)
    status = b"E" if before else b"I"
    backend.send((FakeBackend.done("BEGIN", b"T") if before else b"")
                 + FakeBackend.error("08P01", "invalid message format", status))
    msgs = driver.take()
    assert error_fields(msgs)[0]["C"] == "08P01" and ready_statuses(msgs) == [status]
    assert client.state.name == ("ACTIVE" if before else "IDLE")


# -- pgdog_ev/admin/resultset.py --------------------------------------------------------------


def test_show_query_cache_shows_a_clients_bad_bytes() -> None:
    """admin_console (hypothesis engine, all targets in one process): a client's Query with a
    byte that is not UTF-8 is cached as decoded (surrogateescape); SHOW QUERY_CACHE then raised
    UnicodeEncodeError out of the console. Its bytes are now shown as \\xNN escapes."""
    from fuzz.targets.admin import admin_console
    from pgdog_ev.admin.resultset import Table, text
    from pgdog_ev.sql.analysis import default_cache
    from state.client_routing import decode_text

    admin_console(b"SHOW QUERY_CACHE; SET a = '\xf0'")
    default_cache().clear()
    table = Table([text("query")], [[decode_text(b"SET a = '\xf0'")], ["caf\u00e9"]])
    assert table.rows == [["SET a = '\\xf0'"], ["caf\u00e9"]]
    assert b"\\xf0" in table.encode()


# -- pgdog_ev/config/schema.py ----------------------------------------------------------------


def test_a_blank_text_setting_survives_show_config_then_set() -> None:
    """config_mutate: `broadcast_address = " "` loads as " ", SHOW CONFIG prints " ", and the
    text read back (SET, PGDOG_*) was None: any blank text meant "unset". Only "" does now."""
    from pgdog_ev.config import load_config_text
    from pgdog_ev.config.general_set import apply_override
    from pgdog_ev.config.schema import general_spec

    general = load_config_text('[general]\nquery_log = " "\n', None, entropy=bytes, env={}).general
    spec = general_spec("query_log")
    assert spec is not None and general.query_log == " "
    assert spec.from_text(spec.render(general.query_log)) == " "
    assert apply_override(general, "query_log", "' '") == general
    assert apply_override(general, "query_log", "''").query_log is None
    assert general_spec("query_timeout").from_text(" ") is None  # type: ignore[union-attr]
