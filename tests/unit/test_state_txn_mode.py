"""Transaction mode: local BEGIN/COMMIT, SET tracking, local SET answers, pinning, cancel, timeouts."""

from __future__ import annotations

from typing import Any

import pytest

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from state.client import ClientState
from state.events import Kind, Machine
from state.reasons import Reason
from state.server import ServerSession, ServerState
from tests.unit.statekit import (
    FakeBackend,
    FrontendDriver,
    ProxyRig,
    client_transitions,
    error_fields,
    only_server,
    queries,
    ready_client,
    ready_statuses,
    rig,
    types,
)

C = ClientState
S = ServerState












def notes(r: ProxyRig, cid: int, reason: Reason) -> list[Any]:
    return [
        rec
        for rec in r.world.log.records()
        if rec.kind == Kind.NOTE and rec.machine == Machine.CLIENT and rec.id == cid and rec.a == reason
    ]


def tags(msgs: list[tuple[str, bytes]]) -> list[str]:
    return [be.parse_command_complete(b) for t, b in msgs if t == "C"]


def notice_fields(msgs: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [be.parse_error_fields(b) for t, b in msgs if t == "N"]


def busy_elsewhere(r: ProxyRig, driver: FrontendDriver, server: ServerSession) -> None:
    """``driver``'s client takes ``server`` into a transaction and keeps it."""
    driver.send(fe.query("begin; select 1"))
    backend = r.backend(server)
    assert queries(backend.take())[-1] == "begin; select 1"
    backend.send(FakeBackend.done("BEGIN", b"T"))
    driver.take()


# -- local BEGIN / COMMIT ----------------------------------------------------------------------


def test_bare_begin_is_answered_locally_and_replayed_on_checkout() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    checkouts = r.pool.stats.checkouts
    driver.send(fe.query("BEGIN"))
    msgs = driver.take()
    assert types(msgs) == "CZ" and tags(msgs) == ["BEGIN"] and ready_statuses(msgs) == [b"T"]
    assert client.state is C.IDLE and client.server is None
    assert r.pool.stats.checkouts == checkouts and server in r.pool.idle
    assert backend.take() == []
    assert notes(r, client.id, Reason.LOCAL_ANSWER)

    driver.send(fe.query("select 1"))
    assert client.state is C.ACTIVE and client.server is server
    assert backend.take_queries() == ["BEGIN", "select 1"]
    # The replayed BEGIN's answer is hidden; only the query's reaches the client.
    backend.send(FakeBackend.done("BEGIN", b"T"))
    assert driver.take() == []
    backend.send(FakeBackend.result("SELECT 1", b"T"))
    msgs = driver.take()
    assert types(msgs) == "TDCZ" and ready_statuses(msgs) == [b"T"]
    assert client.state is C.ACTIVE and client.server is server  # still in the transaction

    driver.send(fe.query("COMMIT"))
    assert backend.take_queries() == ["COMMIT"]
    backend.send(FakeBackend.done("COMMIT", b"I"))
    msgs = driver.take()
    assert tags(msgs) == ["COMMIT"] and ready_statuses(msgs) == [b"I"]
    assert client.state is C.IDLE and client.server is None
    assert server.state is S.IDLE and server in r.pool.idle
    client_transitions(r.world)


@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK", "commit", "end"])
def test_local_begin_then_end_is_answered_locally(end: str) -> None:
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    checkouts = r.pool.stats.checkouts
    driver.send(fe.query("BEGIN"))
    driver.send(fe.query(end))
    msgs = driver.take()
    assert ready_statuses(msgs) == [b"T", b"I"]
    expected = "ROLLBACK" if end == "ROLLBACK" else "COMMIT"
    assert tags(msgs) == ["BEGIN", expected]
    assert notice_fields(msgs) == []
    assert client.state is C.IDLE and r.pool.stats.checkouts == checkouts
    assert backend.take() == []
    # Now no transaction: the next query goes out without a BEGIN in front.
    driver.send(fe.query("select 1"))
    assert backend.take_queries() == ["select 1"]


@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
def test_commit_without_transaction_warns_25p01(end: str) -> None:
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    driver.send(fe.query(end))
    msgs = driver.take()
    assert types(msgs) == "NCZ"
    (notice,) = notice_fields(msgs)
    assert notice["C"] == "25P01" and notice["S"] == "WARNING"
    assert "no transaction in progress" in notice["M"]
    assert tags(msgs) == [end] and ready_statuses(msgs) == [b"I"]
    assert client.state is C.IDLE and backend.take() == []


def test_second_begin_inside_a_local_transaction_goes_to_a_server() -> None:
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    driver.send(fe.query("BEGIN"))
    driver.take()
    driver.send(fe.query("BEGIN"))  # PostgreSQL warns about this: let it
    assert client.state is C.ACTIVE
    assert backend.take_queries() == ["BEGIN", "BEGIN"]


# -- SET tracking ------------------------------------------------------------------------------


def run(r: ProxyRig, driver: FrontendDriver, server: ServerSession, sql: str, reply: bytes) -> list[str]:
    """Send ``sql``; answer hidden syncs and then the query with ``reply``. Returns hidden SQL."""
    backend = r.backend(server)
    driver.send(fe.query(sql))
    sent = backend.take_queries()
    assert sent[-1] == sql, sent
    for _ in sent[:-1]:
        backend.send(FakeBackend.result())
    backend.send(reply)
    return sent[:-1]


def test_set_is_tracked_and_synced_to_the_next_server() -> None:
    r = rig(pool_size=2)
    a, da = ready_client(r)
    b, db = ready_client(r)
    first = only_server(r)
    assert run(r, da, first, "SET search_path TO a", FakeBackend.done("SET")) == []
    assert tags(da.take()) == ["SET"]
    assert a.params["search_path"] == "a"
    assert first.applied["search_path"] == "a"
    assert a.state is C.IDLE and first in r.pool.idle
    # b holds the first server in a transaction: a's next query needs a second one.
    busy_elsewhere(r, db, first)
    da.send(fe.query("select 'a'"))
    assert a.state is C.WAITING
    (second,) = r.bring_up()
    assert a.server is second
    backend2 = r.backend(second)
    sent = backend2.take_queries()
    assert len(sent) == 2 and sent[1] == "select 'a'"
    assert "set_config(E'search_path', E'a', false)" in sent[0]
    backend2.send(FakeBackend.result(), FakeBackend.result())
    msgs = da.take()
    assert types(msgs) == "TDCZ"  # the sync query's result was hidden
    assert second.applied["search_path"] == "a"
    assert b.server is first


def test_set_follows_the_client_on_a_shared_server() -> None:
    r = rig(pool_size=1)
    _a, da = ready_client(r)
    _b, db = ready_client(r)
    server = only_server(r)
    run(r, da, server, "SET search_path TO a", FakeBackend.done("SET"))
    assert run(r, db, server, "select 'b'", FakeBackend.result()) == ['RESET "search_path"']
    assert run(r, da, server, "select 'a'", FakeBackend.result()) == [
        "SELECT pg_catalog.set_config(E'search_path', E'a', false)"
    ]
    assert ready_statuses(da.take()) == [b"I", b"I"]
    assert ready_statuses(db.take()) == [b"I"]


def test_set_inside_rolled_back_transaction_is_discarded() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; set search_path to b"))
    backend.take()
    backend.send(be.command_complete("BEGIN") + be.command_complete("SET") + be.ready_for_query(b"T"))
    assert client.params.get("search_path") is None
    assert client.settings.effective()["search_path"] == "b"
    driver.send(fe.query("ROLLBACK"))
    backend.take()
    backend.send(FakeBackend.done("ROLLBACK", b"I"))
    assert "search_path" not in client.params and "search_path" not in client.settings.effective()
    assert "search_path" not in server.applied
    assert client.state is C.IDLE and server in r.pool.idle


def test_set_after_local_begin_then_rollback_is_discarded() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("BEGIN"))
    driver.send(fe.query("SET search_path TO b"))
    assert backend.take_queries() == ["BEGIN", "SET search_path TO b"]
    backend.send(FakeBackend.done("BEGIN", b"T"), FakeBackend.done("SET", b"T"))
    driver.send(fe.query("ROLLBACK"))
    backend.take()
    backend.send(FakeBackend.done("ROLLBACK", b"I"))
    assert ready_statuses(driver.take()) == [b"T", b"T", b"I"]
    assert "search_path" not in client.params
    assert client.state is C.IDLE


def test_set_inside_committed_transaction_is_kept() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; set search_path to b"))
    backend.take()
    backend.send(be.command_complete("BEGIN") + be.command_complete("SET") + be.ready_for_query(b"T"))
    driver.send(fe.query("COMMIT"))
    backend.take()
    backend.send(FakeBackend.done("COMMIT", b"I"))
    assert client.params["search_path"] == "b"
    assert server.applied["search_path"] == "b"
    assert client.state is C.IDLE and server in r.pool.idle


def test_failed_set_is_not_applied() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    run(r, driver, server, "SET search_path TO a", FakeBackend.done("SET"))
    before_known = dict(r.pool.known_settings)
    run(
        r,
        driver,
        server,
        "SET work_mem TO 'lots'",
        FakeBackend.error("22023", 'invalid value for parameter "work_mem"'),
    )
    assert error_fields(driver.take())[0]["C"] == "22023"
    assert "work_mem" not in client.params and "work_mem" not in server.applied
    assert client.params["search_path"] == "a"
    assert ("work_mem", "lots") not in r.pool.known_settings
    assert r.pool.known_settings == before_known


def test_set_local_is_never_tracked() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; set local search_path to c"))
    backend.take()
    backend.send(be.command_complete("BEGIN") + be.command_complete("SET") + be.ready_for_query(b"T"))
    assert "search_path" not in client.settings.effective()
    driver.send(fe.query("COMMIT"))
    backend.take()
    backend.send(FakeBackend.done("COMMIT", b"I"))
    assert "search_path" not in client.params and "search_path" not in server.applied
    assert ("search_path", "c") not in r.pool.known_settings


def test_two_sets_in_one_query_are_both_tracked() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    run(
        r,
        driver,
        server,
        "SET search_path = a; SET work_mem = '8MB'",
        be.command_complete("SET") + be.command_complete("SET") + be.ready_for_query(b"I"),
    )
    assert client.params["search_path"] == "a" and client.params["work_mem"] == "8MB"
    assert server.applied["search_path"] == "a" and server.applied["work_mem"] == "8MB"


def test_reset_of_a_startup_setting_returns_to_the_startup_value() -> None:
    r = rig(pool_size=1)
    client, driver = ready_client(r, search_path="start")
    server = only_server(r)
    run(r, driver, server, "SET search_path TO other", FakeBackend.done("SET"))
    assert client.params["search_path"] == "other"
    driver.take()
    # The login check accepted the startup value, so the proxy answers the RESET itself.
    driver.send(fe.query("RESET search_path"))
    assert r.backend(server).take() == [] and client.server is None
    msgs = driver.take()
    assert tags(msgs) == ["RESET"] and ready_statuses(msgs) == [b"I"]
    assert client.params["search_path"] == "start"
    # The next query puts the startup value back on the server.
    assert run(r, driver, server, "select 1", FakeBackend.result()) == [
        "SELECT pg_catalog.set_config(E'search_path', E'start', false)"
    ]


# -- SETs the proxy answers itself --------------------------------------------------------------


def test_known_set_is_answered_locally() -> None:
    r = rig()
    a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    run(r, da, server, "SET search_path TO a", FakeBackend.done("SET"))
    assert ("search_path", "a") in r.pool.known_settings
    checkouts = r.pool.stats.checkouts
    db.send(fe.query("SET search_path TO a"))
    msgs = db.take()
    assert types(msgs) == "CZ" and tags(msgs) == ["SET"] and ready_statuses(msgs) == [b"I"]
    assert b.state is C.IDLE and b.server is None
    assert r.pool.stats.checkouts == checkouts and backend.take() == []
    assert b.params["search_path"] == "a"
    assert notes(r, b.id, Reason.LOCAL_ANSWER)
    # The next query gets the setting applied on the server.
    assert run(r, db, server, "select 1", FakeBackend.result()) == []  # a's SET already put it there
    assert server.applied["search_path"] == "a"
    assert a.params["search_path"] == "a"


def test_known_set_of_a_reported_setting_sends_parameter_status() -> None:
    r = rig()
    _a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    run(
        r,
        da,
        server,
        "SET TimeZone TO 'Europe/Paris'",
        be.parameter_status("TimeZone", "Europe/Paris") + FakeBackend.done("SET"),
    )
    assert types(da.take()) == "SCZ"
    db.send(fe.query("SET TimeZone TO 'Europe/Paris'"))
    msgs = db.take()
    assert types(msgs) == "SCZ"
    assert be.parse_parameter_status(msgs[0][1]) == ("TimeZone", "Europe/Paris")
    assert b.server is None and b.params["timezone"] == "Europe/Paris"


def test_never_seen_value_goes_to_a_server() -> None:
    r = rig()
    _a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    run(r, da, server, "SET search_path TO a", FakeBackend.done("SET"))
    db.send(fe.query("SET search_path TO zzz"))
    assert b.state is C.ACTIVE and b.server is server
    assert r.backend(server).take_queries()[-1] == "SET search_path TO zzz"
    assert db.take() == []


def test_known_set_inside_local_transaction_is_rolled_back_locally() -> None:
    r = rig()
    _a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    run(r, da, server, "SET search_path TO a", FakeBackend.done("SET"))
    db.send(fe.query("BEGIN"))
    db.send(fe.query("SET search_path TO a"))
    assert b.server is None and b.settings.effective()["search_path"] == "a"
    assert "search_path" not in b.params
    db.send(fe.query("ROLLBACK"))
    msgs = db.take()
    assert ready_statuses(msgs) == [b"T", b"T", b"I"]
    assert tags(msgs) == ["BEGIN", "SET", "ROLLBACK"]
    assert "search_path" not in b.params and r.backend(server).take() == []


# -- pinning -------------------------------------------------------------------------------------


PINNING = ["LISTEN ch", "CREATE TEMP TABLE t(x int)", "select pg_advisory_lock(1)"]


@pytest.mark.parametrize("sql", PINNING)
def test_session_state_pins_the_server_until_the_client_leaves(sql: str) -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query(sql))
    assert backend.take_queries() == [sql]
    backend.send(FakeBackend.done("LISTEN", b"I"))
    assert ready_statuses(driver.take()) == [b"I"]
    assert client.state is C.ACTIVE and client.server is server and client.pinned
    assert server.state is S.ACTIVE and server not in r.pool.idle
    assert len(notes(r, client.id, Reason.PINNED)) == 1
    # Later queries stay on the same server, and do not pin twice.
    driver.send(fe.query("select 2"))
    assert backend.take_queries() == ["select 2"]
    backend.send(FakeBackend.result())
    assert client.server is server and len(notes(r, client.id, Reason.PINNED)) == 1
    client.on_closed(r.now)
    assert server.state is S.CLEANING and server not in r.pool.idle
    assert backend.take_queries() == ["DISCARD ALL"]
    backend.send(FakeBackend.done("DISCARD ALL"))
    assert server.state is S.IDLE and server in r.pool.idle and server.applied == {}
    client_transitions(r.world)


def test_temp_table_on_commit_drop_does_not_pin() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    run(r, driver, server, "CREATE TEMP TABLE t(x int) ON COMMIT DROP", FakeBackend.done("CREATE TABLE"))
    assert not client.pinned and client.state is C.IDLE and server in r.pool.idle


def test_failed_pinning_statement_does_not_pin() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    run(r, driver, server, "LISTEN ch", FakeBackend.error("42601", "nope"))
    assert not client.pinned and client.state is C.IDLE and server in r.pool.idle


@pytest.mark.parametrize("sql", PINNING)
def test_session_state_refused_without_a_server(sql: str) -> None:
    r = rig(session_state="refuse")
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    checkouts = r.pool.stats.checkouts
    driver.send(fe.query(sql))
    msgs = driver.take()
    assert types(msgs) == "EZ" and ready_statuses(msgs) == [b"I"]
    (fields,) = error_fields(msgs)
    assert fields["C"] == "0A000"
    assert client.state is C.IDLE and not client.pinned
    assert r.pool.stats.checkouts == checkouts and backend.take() == []
    assert notes(r, client.id, Reason.REFUSED)


def extended_batch(sql: str, name: str = "") -> bytes:
    return (fe.parse(name, sql) + fe.bind("", name, [], [], []) + fe.describe("P", "") + fe.execute("")
            + fe.sync())


@pytest.mark.parametrize("sql", PINNING)
@pytest.mark.parametrize(("name", "prepared"), [("", "extended"), ("s1", "extended"), ("", "disabled"),
                                                 ("s1", "disabled")])
def test_session_state_refused_at_parse_without_a_server(sql: str, name: str, prepared: str) -> None:
    """The extended protocol (JDBC, prepare=True) is refused as a Query is: at the Parse, the
    rest of the batch dropped, its Sync answered; no server lent, nothing pinned."""
    r = rig(session_state="refuse", prepared_statements=prepared)
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    checkouts = r.pool.stats.checkouts
    driver.send(extended_batch(sql, name))
    msgs = driver.take()
    assert types(msgs) == "EZ" and ready_statuses(msgs) == [b"I"]
    assert error_fields(msgs)[0]["C"] == "0A000"
    assert client.state is C.IDLE and not client.pinned and name not in client.statements
    assert r.pool.stats.checkouts == checkouts and backend.take() == []
    assert notes(r, client.id, Reason.REFUSED)
    # The client goes on: the next batch reaches a server.
    driver.send(extended_batch("select 1"))
    assert [t for t, _ in backend.take()] == ["P", "B", "D", "E", "S"]


@pytest.mark.parametrize("extended", [False, True])
def test_session_state_refused_with_a_server_attached(extended: bool) -> None:
    """Inside a transaction, as a Query or at its Parse: refused, not forwarded, the server kept.
    As at any error in PostgreSQL the transaction fails: the server's is made to fail too (a
    Query by a failing statement of the proxy's own; a Parse by a stand-in Parse that fails,
    whose error becomes the refusal), so a COMMIT rolls back what the client was told did not
    all run."""
    r = rig(session_state="refuse")
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    busy_elsewhere(r, driver, server)
    driver.send(extended_batch("LISTEN ch") if extended else fe.query("LISTEN ch"))
    if extended:
        sent = backend.take()
        assert "".join(t for t, _ in sent) == "PS"
        assert "LISTEN" not in fe.parse_parse(memoryview(sent[0][1])).sql
        assert driver.take() == []  # answered in its turn, by the server
        backend.send(stand_in_failure(b"E"))
    else:
        (abort,) = backend.take_queries()  # not forwarded: a failing statement of the proxy's own
        assert "LISTEN" not in abort and abort.startswith("DO ")
        assert driver.take() == []  # answered in its turn, after the abort
        backend.send(FakeBackend.error("P0001", "pgdog-ev: refused", status=b"E"))
    msgs = driver.take()
    assert types(msgs) == "EZ" and ready_statuses(msgs) == [b"E"]
    assert error_fields(msgs)[0]["C"] == "0A000"
    assert client.errors == 1 and client.server is server
    driver.send(fe.query("COMMIT"))
    assert backend.take_queries() == ["COMMIT"]
    backend.send(FakeBackend.done("ROLLBACK"))
    assert tags(driver.take()) == ["ROLLBACK"]
    assert client.state is C.IDLE and not client.pinned and server in r.pool.idle


@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
def test_session_state_refused_in_a_transaction_begun_without_a_server(extended: bool, end: str) -> None:
    """BEGIN answered by the proxy, then a refusal: status E as in PostgreSQL, and the
    COMMIT that ends it rolls back (and says so), still without a server."""
    r = rig(session_state="refuse")
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    checkouts = r.pool.stats.checkouts
    driver.send(fe.query("BEGIN"))
    driver.take()
    driver.send(extended_batch("LISTEN ch") if extended else fe.query("LISTEN ch"))
    msgs = driver.take()
    assert types(msgs) == "EZ" and ready_statuses(msgs) == [b"E"]
    assert error_fields(msgs)[0]["C"] == "0A000"
    driver.send(fe.query(end))
    msgs = driver.take()
    assert tags(msgs) == ["ROLLBACK"] and ready_statuses(msgs) == [b"I"]
    assert r.pool.stats.checkouts == checkouts and backend.take() == []
    assert client.state is C.IDLE and not client.pinned
    # A new transaction is healthy again.
    driver.send(fe.query("BEGIN"))
    assert ready_statuses(driver.take()) == [b"T"]


@pytest.mark.parametrize("extended", [False, True])
def test_statement_after_a_refusal_in_a_local_transaction_meets_a_failed_one(extended: bool) -> None:
    """What the proxy cannot answer goes to a server, on which the transaction is replayed and
    failed: PostgreSQL itself then answers 25P02, and the COMMIT rolls back there."""
    r = rig(session_state="refuse")
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("BEGIN"))
    driver.send(fe.query("LISTEN ch"))
    driver.take()
    driver.send(extended_batch("insert into t values (1)") if extended else fe.query("insert into t values (1)"))
    assert client.server is server
    sent = backend.take()
    replay, abort = queries(sent[:2])
    assert replay == "BEGIN" and abort.startswith("DO ")
    assert "".join(t for t, _ in sent[2:]) == ("PBDES" if extended else "Q")
    backend.send(FakeBackend.done("BEGIN", b"T") + FakeBackend.error("P0001", "pgdog-ev: refused", status=b"E"))
    assert driver.take() == []  # both the proxy's own
    backend.send(FakeBackend.error("25P02", "current transaction is aborted", status=b"E"))
    msgs = driver.take()
    assert error_fields(msgs)[0]["C"] == "25P02" and ready_statuses(msgs) == [b"E"]
    driver.send(fe.query("COMMIT"))
    assert backend.take_queries() == ["COMMIT"]
    backend.send(FakeBackend.done("ROLLBACK"))
    assert tags(driver.take()) == ["ROLLBACK"]
    assert client.state is C.IDLE and server in r.pool.idle


def test_session_state_refused_behind_a_request_in_flight() -> None:
    """Whether the refused statement lands in a transaction is known only at its turn: the
    failing statement goes anyway, and outside a transaction it changes nothing."""
    r = rig(session_state="refuse")
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("select 1") + fe.query("LISTEN ch"))
    sent = backend.take_queries()
    assert sent[0] == "select 1" and len(sent) == 2 and sent[1].startswith("DO ")
    backend.send(FakeBackend.result("SELECT 1") + FakeBackend.error("P0001", "pgdog-ev: refused"))
    msgs = driver.take()
    assert ready_statuses(msgs) == [b"I", b"I"] and error_fields(msgs)[0]["C"] == "0A000"
    assert client.state is C.IDLE and server in r.pool.idle


def stand_in_failure(status: bytes = b"I") -> bytes:
    """What PostgreSQL answers the stand-in Parse with, up to the Sync."""
    from state.server import STAND_IN_POSITION

    return (be.error_response("42601", 'syntax error at or near ")"', fields={"P": STAND_IN_POSITION})
            + be.ready_for_query(status))


def unnamed_select() -> bytes:
    return fe.parse("", "select 1") + fe.bind("", "", [], [], []) + fe.execute("")


def select_answered() -> bytes:
    return be.parse_complete() + be.bind_complete() + be.data_row(["1"]) + be.command_complete("SELECT 1")


@pytest.mark.parametrize("name", ["", "s1"])
def test_session_state_refused_at_a_parse_inside_a_batch(name: str) -> None:
    """A pipeline (psycopg, a JDBC batch) reaches a refused Parse after statements already on
    their way: the server fails a stand-in in its place, so the client reads the statements'
    answers, then the refusal, as if PostgreSQL had refused it; nothing is pinned. (A named
    Parse gets a named stand-in: an unnamed one would drop the unnamed statement.)"""
    r = rig(session_state="refuse")
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(unnamed_select() + extended_batch("LISTEN ch", name))
    sent = backend.take()
    assert "".join(t for t, _ in sent) == "PBEPS"
    stand_in = fe.parse_parse(memoryview(sent[3][1]))
    assert stand_in.sql.endswith(" )") and bool(stand_in.name) == bool(name)  # not the LISTEN
    backend.send(select_answered() + stand_in_failure())
    msgs = driver.take()
    assert types(msgs) == "12DCEZ" and ready_statuses(msgs) == [b"I"]
    (fields,) = error_fields(msgs)
    assert fields["C"] == "0A000" and "LISTEN" in fields["M"]
    assert client.errors == 1 and not client.pinned
    assert client.state is C.IDLE and server in r.pool.idle
    assert notes(r, client.id, Reason.REFUSED)
    # The next batch is the client's own again.
    driver.send(extended_batch("select 2"))
    assert "".join(t for t, _ in backend.take()) == "PBDES"


def test_an_error_before_a_refused_parse_in_its_batch_wins() -> None:
    """The server skips the stand-in after an earlier error, as it would have skipped the
    refused statement: the client reads that error, not the refusal."""
    r = rig(session_state="refuse")
    _client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(unnamed_select() + extended_batch("LISTEN ch"))
    backend.take()
    backend.send(be.parse_complete() + be.bind_complete()
                 + FakeBackend.error("22012", "division by zero"))
    msgs = driver.take()
    assert [f["C"] for f in error_fields(msgs)] == ["22012"] and ready_statuses(msgs) == [b"I"]
    # A later error at the stand-in's position is the client's own, and stays so.
    driver.send(extended_batch("select 3"))
    backend.take()
    backend.send(stand_in_failure())
    assert [f["C"] for f in error_fields(driver.take())] == ["42601"]


def test_session_state_refused_at_a_parse_behind_a_transaction_in_flight() -> None:
    """Behind a request still in flight (here a BEGIN), the refusal waits for its answer, and in
    the transaction it fails it: status E, and COMMIT rolls back."""
    r = rig(session_state="refuse")
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    busy_elsewhere(r, driver, server)
    driver.send(fe.query("insert into t values (1)") + extended_batch("LISTEN ch"))
    sent = backend.take()
    assert queries(sent[:1]) == ["insert into t values (1)"]
    assert "".join(t for t, _ in sent[1:]) == "PS"
    assert driver.take() == []  # nothing before its turn
    backend.send(FakeBackend.done("INSERT 0 1", b"T") + stand_in_failure(b"E"))
    msgs = driver.take()
    assert types(msgs) == "CZEZ" and ready_statuses(msgs) == [b"T", b"E"]
    assert error_fields(msgs)[0]["C"] == "0A000"
    driver.send(fe.query("COMMIT"))
    assert backend.take_queries() == ["COMMIT"]
    backend.send(FakeBackend.done("ROLLBACK"))
    assert tags(driver.take()) == ["ROLLBACK"]
    assert client.state is C.IDLE and not client.pinned and server in r.pool.idle


def test_session_state_pin_still_pins_over_the_extended_protocol() -> None:
    """The default keeps the client on its server instead, whichever protocol asked."""
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(extended_batch("LISTEN ch"))
    assert [t for t, _ in backend.take()] == ["P", "B", "D", "E", "S"]
    backend.send(be.parse_complete() + be.bind_complete() + be.no_data() + be.command_complete("LISTEN")
                 + be.ready_for_query(b"I"))
    driver.take()
    assert client.pinned and client.server is server


# -- cancel while queued --------------------------------------------------------------------------


def test_cancel_of_a_waiting_client_answers_its_held_query() -> None:
    r = rig(pool_size=1)
    _a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    busy_elsewhere(r, da, server)
    db.send(fe.query("select 'b'"))
    assert b.state is C.WAITING and list(r.pool.waiters) == [b]
    b.cancel_request(r.now)
    msgs = db.take()
    assert types(msgs) == "EZ" and ready_statuses(msgs) == [b"I"]
    assert error_fields(msgs)[0]["C"] == "57014"
    assert b.state is C.IDLE and not r.pool.waiters
    assert server.io.cancels == []  # type: ignore[attr-defined]
    assert r.world.transitions(Machine.CLIENT, b.id)[-1].a == Reason.CANCELED
    # The server later goes back to the pool, not to b.
    da.send(fe.query("COMMIT"))
    r.backend(server).take()
    r.backend(server).send(FakeBackend.done("COMMIT"))
    assert server in r.pool.idle and b.server is None
    client_transitions(r.world)


def test_cancel_of_an_active_client_goes_to_its_server() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    driver.send(fe.query("select pg_sleep(10)"))
    client.cancel_request(r.now)
    assert server.io.cancels == [(server.pid, server.secret)]  # type: ignore[attr-defined]
    assert driver.take() == []


# -- client_idle_in_transaction_timeout ---------------------------------------------------------------


def test_idle_in_transaction_timeout_closes_client_and_rolls_back() -> None:
    r = rig()
    client, driver = ready_client(r, idle_in_transaction_timeout_ms=500)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; select 1"))
    backend.take()
    t0 = r.now
    backend.send(FakeBackend.done("BEGIN", b"T"))
    driver.take()
    r.world.advance(t0 + 0.499)
    assert client.state is C.ACTIVE
    r.world.advance(t0 + 0.5)
    (fields,) = error_fields(driver.take())
    assert fields["C"] == "25P03" and fields["S"] == "FATAL"
    assert client.state is C.CLOSED and client.io.closed  # type: ignore[attr-defined]
    assert r.world.transitions(Machine.CLIENT, client.id)[-1].a == Reason.IDLE_IN_TRANSACTION_TIMEOUT
    assert server.state is S.CLEANING
    assert backend.take_queries() == ["ROLLBACK"]
    backend.send(FakeBackend.done("ROLLBACK"))
    assert server.state is S.IDLE and server in r.pool.idle


def test_idle_in_transaction_timer_restarts_with_activity() -> None:
    r = rig()
    client, driver = ready_client(r, idle_in_transaction_timeout_ms=500)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; select 1"))
    backend.send(FakeBackend.done("BEGIN", b"T"))
    r.world.advance(0.3)
    driver.send(fe.query("select 2"))
    r.world.advance(0.4)
    backend.send(FakeBackend.result("SELECT 1", b"T"))  # answered at 0.4: idle since then
    r.world.advance(0.85, step=True)
    assert client.state is C.ACTIVE
    r.world.advance(0.9, step=True)
    assert client.state is C.CLOSED


def test_idle_in_transaction_timeout_not_while_the_server_works() -> None:
    r = rig()
    client, driver = ready_client(r, idle_in_transaction_timeout_ms=500)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; select 1"))
    backend.send(FakeBackend.done("BEGIN", b"T"))
    driver.send(fe.query("select pg_sleep(5)"))
    r.world.advance(3.0, step=True)
    assert client.state is C.ACTIVE  # waiting for the server, not idle
    backend.send(FakeBackend.result("SELECT 1", b"T"))
    r.world.advance(3.4, step=True)
    assert client.state is C.ACTIVE
    r.world.advance(3.5, step=True)
    assert client.state is C.CLOSED


def test_idle_outside_a_transaction_is_not_affected() -> None:
    r = rig()
    client, driver = ready_client(r, idle_in_transaction_timeout_ms=500)
    server = only_server(r)
    driver.send(fe.query("select 1"))
    r.backend(server).send(FakeBackend.result())
    r.world.advance(5.0, step=True)
    assert client.state is C.IDLE
    assert error_fields(driver.take()) == []


def test_idle_in_locally_begun_transaction_times_out() -> None:
    r = rig()
    client, driver = ready_client(r, idle_in_transaction_timeout_ms=500)
    driver.send(fe.query("BEGIN"))
    assert ready_statuses(driver.take()) == [b"T"]
    r.world.advance(1.0, step=True)
    assert client.state is C.CLOSED
    assert error_fields(driver.take())[0]["C"] == "25P03"


# -- checkout failure with an extended-protocol batch held ------------------------------------------


@pytest.mark.parametrize("sync_later", [False, True])
def test_checkout_timeout_with_held_batch_gives_one_error_then_ready(sync_later: bool) -> None:
    r = rig(pool_size=1, checkout_timeout=1000)
    _a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    busy_elsewhere(r, da, server)
    batch = (
        fe.parse("", "select $1") + fe.bind("", "", [], [b"1"], []) + fe.describe("P", "") + fe.execute("")
    )
    t0 = r.now
    db.send(batch if sync_later else batch + fe.sync())
    assert b.state is C.WAITING
    r.world.advance(t0 + 1.0)
    msgs = db.take()
    assert b.state is C.IDLE
    if sync_later:
        assert types(msgs) == "E"
        db.send(fe.sync())
        msgs += db.take()
    assert types(msgs) == "EZ" and ready_statuses(msgs) == [b"I"]
    assert "checkout timeout" in error_fields(msgs)[0]["M"]
    # The client can go on afterwards.
    db.send(fe.query("select 2"))
    assert b.state is C.WAITING
    assert db.take() == []


def test_checkout_timeout_with_two_batches_answers_each() -> None:
    r = rig(pool_size=1, checkout_timeout=1000)
    _a, da = ready_client(r)
    b, db = ready_client(r)
    busy_elsewhere(r, da, only_server(r))
    batch = fe.bind("", "", [], [], []) + fe.execute("") + fe.sync()
    db.send(fe.parse("", "select 1") + batch + fe.query("select 3") + batch)
    r.world.advance(r.now + 1.0)
    msgs = db.take()
    assert types(msgs) == "EZEZEZ"
    assert b.state is C.IDLE
