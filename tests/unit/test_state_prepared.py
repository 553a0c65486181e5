"""Prepared statements in transaction mode: global names, lazy Parse injection, Close, DEALLOCATE, LRU."""

from __future__ import annotations

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from state.client import ClientSession, ClientState
from state.prepared import PREFIX
from state.server import ServerSession, ServerState
from tests.unit.statekit import (
    FakeBackend,
    FrontendDriver,
    ProxyRig,
    error_fields,
    only_server,
    ready_client,
    ready_statuses,
    rig,
    types,
)

C = ClientState
S = ServerState
NOOP = PREFIX + "noop"
SQL1 = "select $1::int"
SQL2 = "select 2"
SQL3 = "select 3"
# What a server answers to Bind + Execute of a one-row statement.
EXEC_REPLY = be.bind_complete() + be.data_row(["1"]) + be.command_complete("SELECT 1")








def show(msgs: list[tuple[str, bytes]]) -> list[str]:
    """Frontend messages as short strings: P:name, B:statement, C:S:name, D:S:name, Q:sql, E, S."""
    out = []
    for t, body in msgs:
        if t == "P":
            out.append(f"P:{fe.parse_parse(body).name}")
        elif t == "B":
            out.append(f"B:{fe.parse_bind(body).statement}")
        elif t == "C":
            close = fe.parse_close(body)
            out.append(f"C:{close.kind}:{close.name}")
        elif t == "D":
            describe = fe.parse_describe(body)
            out.append(f"D:{describe.kind}:{describe.name}")
        elif t == "Q":
            out.append(f"Q:{fe.parse_query(body)}")
        else:
            out.append(t)
    return out


def prepare(driver: FrontendDriver, name: str, sql: str = SQL1) -> None:
    """Parse + Sync with no server: the proxy answers ParseComplete + ReadyForQuery."""
    driver.send(fe.parse(name, sql) + fe.sync())
    msgs = driver.take()
    assert types(msgs) == "1Z", msgs


def bind_execute(name: str, *params: bytes) -> bytes:
    return fe.bind("", name, [], list(params), []) + fe.execute("")


def gname(n: int) -> str:
    return f"{PREFIX}{n}"


# -- local Parse, injected on Bind -------------------------------------------------------------


def test_named_parse_is_answered_locally_and_injected_before_bind() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    checkouts = r.pool.stats.checkouts
    driver.send(fe.parse("s1", SQL1, [23]) + fe.sync())
    msgs = driver.take()
    assert types(msgs) == "1Z" and ready_statuses(msgs) == [b"I"]
    assert client.state is C.IDLE and client.server is None
    assert r.pool.stats.checkouts == checkouts and backend.take() == []
    global_name = client.statements["s1"].name
    assert global_name.startswith(PREFIX)

    driver.send(bind_execute("s1", b"7") + fe.sync())
    assert client.state is C.ACTIVE and client.server is server
    sent = backend.take()
    assert show(sent) == [f"P:{global_name}", f"B:{global_name}", "E", "S"]
    injected = fe.parse_parse(sent[0][1])
    assert injected.sql == SQL1 and injected.param_types == (23,)
    assert fe.parse_bind(sent[1][1]).params == (b"7",)  # the rest of the Bind is unchanged
    backend.send(be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"I"))
    msgs = driver.take()
    assert types(msgs) == "2DCZ"  # the injected Parse's ParseComplete is swallowed
    assert global_name in server.prepared
    assert client.state is C.IDLE and server in r.pool.idle


def test_describe_of_a_named_statement_is_renamed_and_injected() -> None:
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    prepare(driver, "s1")
    g = client.statements["s1"].name
    driver.send(fe.describe("S", "s1") + fe.sync())
    assert show(backend.take()) == [f"P:{g}", f"D:S:{g}", "S"]
    backend.send(
        be.parse_complete() + be.parameter_description([23]) + be.no_data() + be.ready_for_query(b"I")
    )
    assert types(driver.take()) == "tnZ"


def test_unnamed_parse_goes_to_the_server_unchanged() -> None:
    r = rig()
    _client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    driver.send(fe.parse("", SQL1) + bind_execute("", b"1") + fe.sync())
    assert show(backend.take()) == ["P:", "B:", "E", "S"]
    backend.send(be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"I"))
    assert types(driver.take()) == "12DCZ"


def _two_sharing() -> tuple[ProxyRig, ClientSession, FrontendDriver, ClientSession, FrontendDriver, FakeBackend, str]:
    """Two clients of a pool of one, each with the same text prepared as "mine" and "theirs"."""
    r = rig(pool_size=1)
    a, da = ready_client(r)
    b, db = ready_client(r)
    backend = r.backend(only_server(r))
    prepare(da, "mine")
    prepare(db, "theirs")
    return r, a, da, b, db, backend, a.statements["mine"].name


def test_two_clients_share_one_global_statement() -> None:
    r, a, da, b, db, backend, g = _two_sharing()
    server = only_server(r)
    assert b.statements["theirs"].name == g
    assert a.statements["mine"] is b.statements["theirs"] and a.statements["mine"].refs == 2
    da.send(bind_execute("mine", b"1") + fe.sync())
    assert show(backend.take()) == [f"P:{g}", f"B:{g}", "E", "S"]
    backend.send(be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"I"))
    db.send(bind_execute("theirs", b"2") + fe.sync())
    assert b.server is server
    assert show(backend.take()) == [f"B:{g}", "E", "S"]  # no second Parse on this server
    backend.send(EXEC_REPLY + be.ready_for_query(b"I"))
    assert types(db.take()) == "2DCZ"
    # And a's second Bind does not inject either.
    da.take()
    da.send(bind_execute("mine", b"3") + fe.sync())
    assert show(backend.take()) == [f"B:{g}", "E", "S"]


def test_different_texts_get_different_names() -> None:
    r = rig()
    client, driver = ready_client(r)
    prepare(driver, "a", SQL1)
    prepare(driver, "b", SQL2)
    driver.send(fe.parse("c", SQL1, [23]) + fe.sync())  # other parameter types: another statement
    driver.take()
    names = {client.statements[n].name for n in "abc"}
    assert len(names) == 3


def _stale_plan(routine: str) -> bytes:
    return be.error_response("0A000", "cached plan must not change result type", fields={"R": routine})


def test_a_statement_whose_plan_no_longer_fits_is_not_handed_out_again() -> None:
    """The server refuses a shared statement's plan (an ALTER TABLE under SELECT *): the client
    that prepares the text again gets a new statement, Parsed afresh, while another client that
    still maps the old one keeps it (and its error, as on PostgreSQL). Another error changes
    nothing."""
    _, a, da, b, db, backend, g = _two_sharing()
    da.send(bind_execute("mine", b"1") + fe.sync())
    assert show(backend.take()) == [f"P:{g}", f"B:{g}", "E", "S"]
    backend.send(be.parse_complete() + be.error_response("22012", "division by zero", fields={"R": "int4div"})
                 + be.ready_for_query(b"I"))
    assert types(da.take()) == "EZ"
    prepare(da, "same")
    assert a.statements["same"].name == g  # (not renewed by an error of another kind)
    da.send(bind_execute("mine", b"1") + fe.sync())
    assert show(backend.take()) == [f"B:{g}", "E", "S"]
    backend.send(_stale_plan("RevalidateCachedQuery") + be.ready_for_query(b"I"))
    assert types(da.take()) == "EZ"
    prepare(da, "again")
    g2 = a.statements["again"].name
    assert g2 != g and b.statements["theirs"].name == g
    da.send(bind_execute("again", b"1") + fe.sync())
    assert show(backend.take()) == [f"P:{g2}", f"B:{g2}", "E", "S"]
    backend.send(be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"I"))
    assert types(da.take()) == "2DCZ"
    db.send(bind_execute("theirs", b"2") + fe.sync())
    assert show(backend.take()) == [f"B:{g}", "E", "S"]
    backend.send(_stale_plan("RevalidateCachedQuery") + be.ready_for_query(b"I"))
    assert types(db.take()) == "EZ"
    prepare(db, "fresh")
    assert b.statements["fresh"].name == g2  # (the old one failing again renews nothing)


# -- Close -----------------------------------------------------------------------------------


def test_close_without_server_drops_only_own_mapping() -> None:
    r = rig(pool_size=1)
    a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(da, "s1")
    prepare(db, "s1")
    stmt = a.statements["s1"]
    da.send(bind_execute("s1") + fe.sync())
    backend.take()
    backend.send(be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"I"))
    da.take()
    da.send(fe.close("S", "s1") + fe.sync())
    msgs = da.take()
    assert types(msgs) == "3Z" and ready_statuses(msgs) == [b"I"]
    assert "s1" not in a.statements and b.statements["s1"] is stmt and stmt.refs == 1
    assert backend.take() == [] and a.server is None
    db.send(bind_execute("s1") + fe.sync())
    assert show(backend.take()) == [f"B:{stmt.name}", "E", "S"]  # still prepared on the server
    backend.send(EXEC_REPLY + be.ready_for_query(b"I"))
    assert types(db.take()) == "2DCZ"


def test_close_with_server_attached_uses_a_noop_close_in_order() -> None:
    r = rig(pool_size=1)
    a, da = ready_client(r)
    _b, db = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(da, "s1")
    prepare(db, "s1")
    g = a.statements["s1"].name
    da.send(bind_execute("s1") + fe.close("S", "s1") + fe.sync())
    assert show(backend.take()) == [f"P:{g}", f"B:{g}", "E", f"C:S:{NOOP}", "S"]
    assert "s1" not in a.statements
    backend.send(be.parse_complete() + EXEC_REPLY + be.close_complete() + be.ready_for_query(b"I"))
    assert types(da.take()) == "2DC3Z"
    assert g in server.prepared  # the shared statement stays on the server
    db.send(bind_execute("s1") + fe.sync())
    assert show(backend.take()) == [f"B:{g}", "E", "S"]
    backend.send(EXEC_REPLY + be.ready_for_query(b"I"))
    assert types(db.take()) == "2DCZ"


def test_close_of_a_portal_goes_to_the_server() -> None:
    r = rig()
    _client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    driver.send(fe.parse("", SQL2) + fe.bind("p1", "", [], [], []) + fe.close("P", "p1") + fe.sync())
    assert show(backend.take()) == ["P:", "B:", "C:P:p1", "S"]
    backend.send(be.parse_complete() + be.bind_complete() + be.close_complete() + be.ready_for_query(b"I"))
    assert types(driver.take()) == "123Z"


# -- Parse with a server attached ----------------------------------------------------------------


def hold_in_transaction(r: ProxyRig, driver: FrontendDriver, server: ServerSession) -> None:
    driver.send(fe.query("begin; select 1"))
    backend = r.backend(server)
    backend.take()
    backend.send(FakeBackend.done("BEGIN", b"T"))
    driver.take()


def test_parse_of_a_statement_the_server_has_becomes_a_noop_close() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(driver, "s1")
    g = client.statements["s1"].name
    hold_in_transaction(r, driver, server)
    driver.send(bind_execute("s1") + fe.sync())
    assert show(backend.take()) == [f"P:{g}", f"B:{g}", "E", "S"]
    backend.send(be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"T"))
    assert types(driver.take()) == "2DCZ"
    # Same text under a new client-side name, with the server attached.
    driver.send(fe.parse("s2", SQL1) + fe.sync())
    assert client.statements["s2"].name == g
    assert show(backend.take()) == [f"C:S:{NOOP}", "S"]
    backend.send(be.close_complete() + be.ready_for_query(b"T"))
    msgs = driver.take()
    assert types(msgs) == "1Z" and ready_statuses(msgs) == [b"T"]


def test_noop_close_stands_in_for_parse_complete_in_pipeline_order() -> None:
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    prepare(driver, "s1")
    g = client.statements["s1"].name
    driver.send(bind_execute("s1") + fe.parse("s2", SQL1) + fe.close("S", "s1") + fe.sync())
    assert show(backend.take()) == [f"P:{g}", f"B:{g}", "E", f"C:S:{NOOP}", f"C:S:{NOOP}", "S"]
    backend.send(
        be.parse_complete()
        + EXEC_REPLY
        + be.close_complete()
        + be.close_complete()
        + be.ready_for_query(b"I")
    )
    assert types(driver.take()) == "2DC13Z"


def test_parse_of_a_new_statement_with_server_attached_is_forwarded() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    hold_in_transaction(r, driver, server)
    driver.send(fe.parse("s1", SQL2) + fe.sync())
    g = client.statements["s1"].name
    assert show(backend.take()) == [f"P:{g}", "S"]
    backend.send(be.parse_complete() + be.ready_for_query(b"T"))
    assert types(driver.take()) == "1Z"
    assert g in server.prepared


# -- errors --------------------------------------------------------------------------------------


def test_failed_injected_parse_is_forgotten_and_injected_again() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(driver, "bad", "select from nowhere_yet")
    g = client.statements["bad"].name
    driver.send(bind_execute("bad") + fe.sync())
    assert show(backend.take()) == [f"P:{g}", f"B:{g}", "E", "S"]
    backend.send(FakeBackend.error("42P01", 'relation "nowhere_yet" does not exist'))
    msgs = driver.take()
    assert types(msgs) == "EZ" and error_fields(msgs)[0]["C"] == "42P01"
    assert g not in server.prepared
    assert client.state is C.IDLE and server in r.pool.idle
    driver.send(bind_execute("bad") + fe.sync())
    assert show(backend.take()) == [f"P:{g}", f"B:{g}", "E", "S"]
    backend.send(be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"I"))
    assert types(driver.take()) == "2DCZ"
    assert g in server.prepared


def test_failed_bind_after_a_good_injected_parse_keeps_the_statement() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(driver, "s1")
    g = client.statements["s1"].name
    driver.send(bind_execute("s1", b"not a number") + fe.sync())
    backend.take()
    backend.send(be.parse_complete() + FakeBackend.error("22P02", "invalid input syntax for type integer"))
    assert types(driver.take()) == "EZ"
    assert g in server.prepared
    driver.send(bind_execute("s1", b"1") + fe.sync())
    assert show(backend.take()) == [f"B:{g}", "E", "S"]


def test_error_in_an_earlier_segment_drops_only_its_injections() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(driver, "s1", SQL2)
    prepare(driver, "s2", SQL3)
    g1, g2 = client.statements["s1"].name, client.statements["s2"].name
    driver.send(bind_execute("s1") + fe.sync() + bind_execute("s2") + fe.sync())
    assert show(backend.take()) == [f"P:{g1}", f"B:{g1}", "E", "S", f"P:{g2}", f"B:{g2}", "E", "S"]
    backend.send(FakeBackend.error("42601", "boom"))
    assert g1 not in server.prepared and g2 in server.prepared
    backend.send(be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"I"))
    assert types(driver.take()) == "EZ2DCZ"
    assert g2 in server.prepared and g1 not in server.prepared


def test_duplicate_named_parse_without_server_is_42p05() -> None:
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    prepare(driver, "s1")
    driver.send(fe.parse("s1", SQL2) + bind_execute("s1") + fe.describe("P", "") + fe.sync())
    msgs = driver.take()
    assert types(msgs) == "EZ" and ready_statuses(msgs) == [b"I"]
    assert error_fields(msgs)[0]["C"] == "42P05"
    assert client.state is C.IDLE and backend.take() == []
    assert client.statements["s1"].sql == SQL1  # the original stays
    # After the Sync the client is back to normal.
    driver.send(fe.parse("s2", SQL2) + fe.sync())
    assert types(driver.take()) == "1Z"


def test_duplicate_parse_with_sync_in_a_later_read_is_still_skipped() -> None:
    r = rig()
    client, driver = ready_client(r)
    prepare(driver, "s1")
    driver.send(fe.parse("s1", SQL2) + fe.bind("", "s1", [], [], []))
    assert types(driver.take()) == "E"
    driver.send(fe.execute("") + fe.sync())
    assert types(driver.take()) == "Z"
    assert client.server is None


# -- prepared_statements_limit -------------------------------------------------------------------


def test_limit_closes_least_recently_used_at_checkin() -> None:
    r = rig(prepared_statements_limit=2)
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    for name, sql in (("s1", SQL1), ("s2", SQL2), ("s3", SQL3)):
        prepare(driver, name, sql)
    g1, g2, g3 = (client.statements[n].name for n in ("s1", "s2", "s3"))
    # s1 is used again last: s2 is the least recently used.
    driver.send(
        bind_execute("s1", b"1")
        + bind_execute("s2")
        + bind_execute("s3")
        + bind_execute("s1", b"2")
        + fe.sync()
    )
    assert show(backend.take()) == [
        f"P:{g1}",
        f"B:{g1}",
        "E",
        f"P:{g2}",
        f"B:{g2}",
        "E",
        f"P:{g3}",
        f"B:{g3}",
        "E",
        f"B:{g1}",
        "E",
        "S",
    ]
    backend.send(
        be.parse_complete()
        + EXEC_REPLY
        + be.parse_complete()
        + EXEC_REPLY
        + be.parse_complete()
        + EXEC_REPLY
        + EXEC_REPLY
        + be.ready_for_query(b"I")
    )
    assert types(driver.take()) == "2DC" * 4 + "Z"
    assert client.state is C.IDLE and client.server is None
    # Over the limit: the server is cleaned before it goes back.
    assert show(backend.take()) == [f"C:S:{g2}", "S"]
    assert server.state is S.CLEANING and server not in r.pool.idle
    assert list(server.prepared) == [g3, g1] and server.prepared_evictions == 1
    backend.send(be.close_complete() + be.ready_for_query(b"I"))
    assert server.state is S.IDLE and server in r.pool.idle
    assert driver.take() == []  # the eviction's answers are hidden
    # s2 is injected again when needed.
    driver.send(bind_execute("s2") + fe.sync())
    assert show(backend.take())[:2] == [f"P:{g2}", f"B:{g2}"]


def test_within_limit_no_eviction() -> None:
    r = rig(prepared_statements_limit=2)
    _client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(driver, "s1", SQL2)
    prepare(driver, "s2", SQL3)
    driver.send(bind_execute("s1") + bind_execute("s2") + fe.sync())
    backend.take()
    backend.send(
        be.parse_complete() + EXEC_REPLY + be.parse_complete() + EXEC_REPLY + be.ready_for_query(b"I")
    )
    assert server.state is S.IDLE and server in r.pool.idle
    assert backend.take() == [] and len(server.prepared) == 2


# -- DEALLOCATE ---------------------------------------------------------------------------------


def test_deallocate_of_a_protocol_statement_is_answered_locally() -> None:
    r = rig(pool_size=1)
    a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(da, "s1")
    prepare(da, "s2", SQL2)
    prepare(db, "s1")
    stmt = b.statements["s1"]
    checkouts = r.pool.stats.checkouts
    da.send(fe.query("DEALLOCATE s1"))
    msgs = da.take()
    assert types(msgs) == "CZ" and ready_statuses(msgs) == [b"I"]
    assert be.parse_command_complete(msgs[0][1]) == "DEALLOCATE"
    assert set(a.statements) == {"s2"} and b.statements["s1"] is stmt and stmt.refs == 1
    assert r.pool.stats.checkouts == checkouts and backend.take() == []
    # b's statement still works (and is injected as usual).
    db.send(bind_execute("s1") + fe.sync())
    assert show(backend.take())[:2] == [f"P:{stmt.name}", f"B:{stmt.name}"]


def test_deallocate_all_drops_all_own_mappings() -> None:
    r = rig()
    a, da = ready_client(r)
    b, db = ready_client(r)
    prepare(da, "s1")
    prepare(da, "s2", SQL2)
    prepare(db, "s1")
    da.send(fe.query("DEALLOCATE ALL"))
    msgs = da.take()
    assert types(msgs) == "CZ" and be.parse_command_complete(msgs[0][1]) == "DEALLOCATE ALL"
    assert a.statements == {} and set(b.statements) == {"s1"}
    assert a.server is None
    # The names are free again.
    prepare(da, "s1", SQL3)


def test_deallocate_with_server_attached_is_answered_in_order() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    prepare(driver, "s1")
    hold_in_transaction(r, driver, server)
    driver.send(fe.query("select 2") + fe.query("DEALLOCATE s1"))
    assert show(backend.take()) == ["Q:select 2"]  # the DEALLOCATE is not forwarded
    assert driver.take() == []  # its answer waits for select 2's
    backend.send(FakeBackend.result("SELECT 1", b"T"))
    msgs = driver.take()
    assert types(msgs) == "TDCZCZ" and ready_statuses(msgs) == [b"T", b"T"]
    assert be.parse_command_complete(msgs[-2][1]) == "DEALLOCATE"
    assert "s1" not in client.statements


def test_deallocate_of_an_unknown_name_goes_to_the_server() -> None:
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    driver.send(fe.query("DEALLOCATE sql_level"))
    assert client.state is C.ACTIVE
    assert show(backend.take()) == ["Q:DEALLOCATE sql_level"]


# -- prepared_statements = "disabled" ------------------------------------------------------------


def test_disabled_passes_names_through() -> None:
    r = rig(prepared_statements="disabled")
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    assert not client.rename
    driver.send(fe.parse("s1", SQL1) + fe.sync())
    assert client.state is C.ACTIVE  # not answered locally
    assert show(backend.take()) == ["P:s1", "S"]
    backend.send(be.parse_complete() + be.ready_for_query(b"I"))
    assert types(driver.take()) == "1Z"
    driver.send(bind_execute("s1") + fe.describe("S", "s1") + fe.close("S", "s1") + fe.sync())
    assert show(backend.take()) == ["B:s1", "E", "D:S:s1", "C:S:s1", "S"]
    assert client.statements == {} and len(r.world.directory.statements) == 0
    backend.send(
        EXEC_REPLY
        + be.parameter_description([])
        + be.no_data()
        + be.close_complete()
        + be.ready_for_query(b"I")
    )
    assert types(driver.take()) == "2DCtn3Z"


def test_session_mode_never_renames() -> None:
    r = ProxyRig(pooler_mode="session")
    r.world.add_login(r.pool)
    client, driver, _ = r.connect()
    driver.take()
    driver.send(fe.parse("s1", SQL1) + fe.sync())
    backend = r.backend(only_server(r))
    assert show(backend.take()) == ["P:s1", "S"]
    assert not client.rename


def test_unnamed_parse_analysis_follows_the_text() -> None:
    """The analysis of an unnamed Parse is reused only for the very same text: a SET sent through
    the unnamed statement is tracked each time, whatever ran through it in between, including a
    text too long to be remembered and a statement that is not well formed."""
    r = rig()
    client, driver = ready_client(r)
    backend = r.backend(only_server(r))
    long_b = "SET search_path TO b /*" + "x" * 5000 + "*/"
    for sql, want in [("SET search_path TO a", "a"), (long_b, "b"), ("SET search_path TO a", "a"),
                      ("SET search_path TO a", "a"), ("SELECT 1", "a"), (long_b, "b"),
                      ("SET search_path TO a", "a")]:
        driver.send(fe.parse("", sql) + bind_execute("") + fe.sync())
        assert show(backend.take()) == ["P:", "B:", "E", "S"]
        backend.send(be.parse_complete() + be.bind_complete() + be.command_complete("SET")
                     + be.ready_for_query(b"I"))
        assert types(driver.take()) == "12CZ"
        assert client.params.get("search_path") == want, sql
    # A Parse whose parameter-type count disagrees with its length is a protocol violation: it
    # is not forwarded (only the proxy's own Sync, cleaning the server up, follows).
    bad = bytearray(fe.parse("", "SET search_path TO c"))
    bad[-2:] = b"\x00\x05"
    driver.send(bytes(bad) + fe.sync())
    assert show(backend.take()) == ["S"]
    assert types(driver.take()) == "E"
    assert client.state is ClientState.CLOSED and client.params.get("search_path") == "a"
