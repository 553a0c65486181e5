"""ClientSession: startup, authentication, login, and lending servers per transaction/session."""

from __future__ import annotations

import pytest

from pgdog_ev.auth.md5 import md5_stored
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.startup import build_cancel_request, build_ssl_request, build_startup
from state.client import ClientState
from state.events import Machine
from state.reasons import Reason
from state.server import ServerState
from tests.unit.statekit import (
    DEFAULT_SERVER_PARAMS,
    FakeBackend,
    FrontendDriver,
    ProxyRig,
    check_transitions,
    client_transitions,
    error_fields,
    feed,
    only_server,
    parameter_statuses,
    parse_key_data,
    queries,
    ready_client,
    ready_statuses,
    rig,
    types,
)

C = ClientState
S = ServerState
AUTH = ("trust", "cleartext", "md5", "scram")










# -- startup and authentication --------------------------------------------------------------


@pytest.mark.parametrize("method", AUTH)
def test_full_startup_with_each_auth_method(method: str) -> None:
    r = rig(auth=method)
    client, _driver, msgs = r.connect(method=method, application_name="psql")
    assert client.state is C.IDLE
    kinds = types(msgs)
    assert kinds.endswith("KZ") and "R" in kinds
    codes = [be.parse_authentication(b)[0] for t, b in msgs if t == "R"]
    assert codes[-1] == be.AUTH_OK
    if method == "scram":
        assert codes == [be.AUTH_SASL_FINAL, be.AUTH_OK]
    status = parameter_statuses(msgs)
    assert status["application_name"] == "psql"
    assert status["server_version"] == DEFAULT_SERVER_PARAMS["server_version"]
    assert parse_key_data(msgs) == (client.key_pid, client.key_secret)
    assert ready_statuses(msgs) == [b"I"]
    # The login borrowed a server for the settings check and gave it back.
    server = only_server(r)
    assert server.state is S.IDLE and server in r.pool.idle
    assert client.server is None and r.world.directory.auth_failures == 0
    client_transitions(r.world)


def test_scram_client_accepts_split_messages() -> None:
    r = rig(auth="scram")
    client = r.world.new_client()
    startup = build_startup({"user": "app", "database": "app"})
    feed(client, 0.0, *[startup[i : i + 3] for i in range(0, len(startup), 3)])
    assert client.state is C.AUTH
    assert types(client.io.take()) == "R"  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["cleartext", "md5", "scram"])
def test_wrong_password_is_refused_without_opening_a_server(method: str) -> None:
    r = rig(auth=method)
    client, _driver, msgs = r.connect(method=method, password="wrong")
    assert client.state is C.CLOSED and client.io.closed  # type: ignore[attr-defined]
    ((fields),) = error_fields(msgs)
    assert fields["C"] == "28P01" and fields["S"] == "FATAL"
    assert 'user "app"' in fields["M"]
    assert r.world.directory.auth_failures == 1
    assert r.world.directory.auth_failed_for == [("app", "app")]
    assert r.world.pool_io.opened == []
    assert r.world.directory.closed_clients == [client.id]
    assert [x.a for x in r.world.transitions(Machine.CLIENT, client.id)][-1] == Reason.AUTH_FAILED
    client_transitions(r.world)


def test_md5_with_stored_hash_only() -> None:
    r = ProxyRig()
    r.world.add_login(r.pool, auth_type="md5", password=None, md5_stored=md5_stored("app", "hashed_pw"))
    client, _, msgs = r.connect(method="md5", password="hashed_pw")
    assert client.state is C.IDLE
    client2, _, msgs = r.connect(method="md5", password="other")
    assert client2.state is C.CLOSED and error_fields(msgs)[0]["C"] == "28P01"


def test_cleartext_checked_against_scram_verifier_when_no_plaintext() -> None:
    r = ProxyRig()
    login = r.world.add_login(r.pool, auth_type="cleartext")
    login.passwords = ()
    client, _, _ = r.connect(method="cleartext", password="app_pw")
    assert client.state is C.IDLE


@pytest.mark.parametrize("method", ["scram", "md5", "cleartext"])
def test_unknown_user_of_known_database_fails_like_a_wrong_password(method: str) -> None:
    r = rig(auth=method)
    r.world.directory.auth_type = method
    client, _, msgs = r.connect(method=method, user="mallory", password="app_pw")
    assert client.state is C.CLOSED
    assert error_fields(msgs)[0]["C"] == "28P01"
    assert r.world.directory.auth_failures == 1
    assert r.world.pool_io.opened == []


def test_unknown_database_is_3d000() -> None:
    r = rig()
    client = r.world.new_client()
    driver = FrontendDriver(r.world, client)
    driver.startup(database="nope")
    ((t, body),) = driver.take()
    fields = be.parse_error_fields(body)
    assert t == "E" and fields["C"] == "3D000" and '"nope"' in fields["M"]
    assert client.state is C.CLOSED
    assert r.world.transitions(Machine.CLIENT, client.id)[-1].a == Reason.UNKNOWN_DATABASE
    assert r.world.directory.auth_failures == 0


@pytest.mark.parametrize("same_chunk", [True, False])
def test_ssl_request_refused_then_startup_continues(same_chunk: bool) -> None:
    r = rig()
    client = r.world.new_client()
    startup = build_startup({"user": "app", "database": "app"})
    if same_chunk:
        feed(client, 0.0, build_ssl_request() + startup)
    else:
        feed(client, 0.0, build_ssl_request())
        assert client.io.take_raw() == b"N"  # type: ignore[attr-defined]
        feed(client, 0.0, startup)
    stream = client.io
    if same_chunk:
        assert stream.take_raw(1) == b"N"  # type: ignore[attr-defined]
    assert types(stream.take()) == "R"  # type: ignore[attr-defined]
    assert client.state is C.LOGIN  # trust: straight to the login check


def test_cancel_request_goes_to_directory_and_closes() -> None:
    r = rig()
    client = r.world.new_client()
    r.world.now = 3.0
    feed(client, 3.0, build_cancel_request(1234, b"\x09\x08\x07\x06"))
    assert r.world.directory.cancels == [(3.0, 1234, b"\x09\x08\x07\x06")]
    assert client.state is C.CLOSED and client.io.closed  # type: ignore[attr-defined]
    assert client.io.sent == b""  # type: ignore[attr-defined]
    assert r.world.transitions(Machine.CLIENT, client.id)[-1].a == Reason.CANCEL_REQUEST


def test_startup_packet_too_long_is_a_protocol_error() -> None:
    r = rig()
    client = r.world.new_client()
    feed(client, 0.0, (20_000).to_bytes(4, "big") + b"\x00\x03\x00\x00")
    ((t, body),) = client.io.take()  # type: ignore[attr-defined]
    fields = be.parse_error_fields(body)
    assert t == "E" and fields["C"] == "08P01" and fields["S"] == "FATAL"
    assert client.state is C.CLOSED


def test_startup_without_user_is_refused() -> None:
    r = rig()
    client = r.world.new_client()
    feed(client, 0.0, build_startup({"database": "app"}))
    assert error_fields(client.io.take())[0]["C"] == "28000"  # type: ignore[attr-defined]
    assert client.state is C.CLOSED


def test_garbage_instead_of_password_message_is_a_protocol_violation() -> None:
    r = rig(auth="md5")
    client = r.world.new_client()
    driver = FrontendDriver(r.world, client)
    driver.startup()
    driver.take()
    driver.send(fe.query("select 1"))
    assert error_fields(driver.take())[0]["C"] == "08P01"
    assert client.state is C.CLOSED


# -- the login check -------------------------------------------------------------------------


def test_first_login_checks_settings_on_a_server_then_reports_them() -> None:
    r = rig()
    client = r.world.new_client()
    driver = FrontendDriver(r.world, client)
    driver.startup(application_name="app1", timezone="Europe/Paris")
    assert types(driver.take()) == "R"
    assert client.state is C.LOGIN
    server = only_server(r)  # checked out for the check
    r.backend(server).login("md5")
    assert client.server is server and server.state is S.ACTIVE
    (check,) = r.backend(server).take_queries()
    assert check == (
        "SELECT pg_catalog.set_config(E'application_name', E'app1', false), "
        "pg_catalog.set_config(E'timezone', E'Europe/Paris', false)"
    )
    assert driver.take() == []  # nothing until the check answered
    r.backend(server).send(
        be.parameter_status("application_name", "app1"),
        be.parameter_status("TimeZone", "Europe/Paris"),
        FakeBackend.result(),
    )
    msgs = driver.take()
    assert types(msgs).endswith("KZ") and set(types(msgs)[:-2]) == {"S"}
    status = parameter_statuses(msgs)
    assert status["TimeZone"] == "Europe/Paris" and status["application_name"] == "app1"
    assert status["server_version"] == "16.2"
    assert client.state is C.IDLE and client.server is None
    assert server.state is S.IDLE and server in r.pool.idle
    # Same settings again: known, so no second round trip to a server.
    client2, _, msgs2 = r.connect(application_name="app1", timezone="Europe/Paris")
    assert client2.state is C.IDLE and r.backend(server).take() == []
    assert parameter_statuses(msgs2)["TimeZone"] == "Europe/Paris"
    # application_name alone never needs a check.
    client3, _, _ = r.connect(application_name="other")
    assert client3.state is C.IDLE and r.backend(server).take() == []


def test_rejected_setting_fails_the_login() -> None:
    r = rig()
    client = r.world.new_client()
    driver = FrontendDriver(r.world, client)
    driver.startup(datestyle="nonsense")
    driver.take()
    r.bring_up()
    server = only_server(r)
    r.backend(server).take()
    r.backend(server).send(FakeBackend.error("22023", 'invalid value for parameter "DateStyle"'))
    ((fields),) = error_fields(driver.take())
    assert fields["C"] == "22023" and fields["S"] == "FATAL"
    assert client.state is C.CLOSED
    assert server.state is S.IDLE  # the check failed cleanly: the server is reusable


def test_login_fails_when_no_server_can_be_reached() -> None:
    r = rig()
    client = r.world.new_client()
    driver = FrontendDriver(r.world, client)
    driver.startup()
    driver.take()
    only_server(r).on_connect_failed(0.0, "connection refused")
    fields = error_fields(driver.take())[0]
    assert fields["C"] == "08006" and "connection refused" in fields["M"]
    assert client.state is C.CLOSED


# -- transaction mode ------------------------------------------------------------------------


def test_transaction_mode_query_gets_and_returns_a_server() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    q = fe.query("select 1")
    driver.send(q)
    assert client.state is C.ACTIVE and client.server is server
    # A queued client is still read (its disconnect must be noticed): no pause.
    assert "pause" not in client.io.log  # type: ignore[attr-defined]
    assert backend.stream.take_raw() == q  # forwarded byte for byte
    reply = FakeBackend.result("SELECT 1")
    backend.send(reply)
    assert client.io.take_raw() == reply  # type: ignore[attr-defined]
    assert client.state is C.IDLE and client.server is None
    assert server.state is S.IDLE and server in r.pool.idle
    assert [x.a for x in r.world.transitions(Machine.CLIENT, client.id)][-3:] == [
        Reason.QUERY,
        Reason.CHECKOUT,
        Reason.TRANSACTION_DONE,
    ]
    client_transitions(r.world)


def test_transaction_keeps_the_server_until_idle() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; select 1"))
    backend.send(FakeBackend.done("BEGIN", b"T"))
    assert client.state is C.ACTIVE and client.server is server
    driver.send(fe.query("select 1"))
    backend.send(FakeBackend.error("22012", "division by zero", b"E"))
    assert client.state is C.ACTIVE
    driver.send(fe.query("rollback"))
    backend.send(FakeBackend.done("ROLLBACK", b"I"))
    assert client.state is C.IDLE and server in r.pool.idle
    assert queries(backend.take()) == ["begin; select 1", "select 1", "rollback"]
    assert ready_statuses(driver.take()) == [b"T", b"E", b"I"]
    assert client.transactions == 1


def test_extended_protocol_pipeline_released_after_last_sync() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    batch = fe.parse("", "select $1") + fe.bind("", "", [], [b"1"], []) + fe.execute("") + fe.sync()
    driver.send(batch + batch)
    assert len(server.owed) == 2 and not server.unsynced
    reply = be.parse_complete() + be.bind_complete() + FakeBackend.result()[:-6] + be.ready_for_query(b"I")
    backend.send(reply)
    assert client.state is C.ACTIVE
    backend.send(reply)
    assert client.state is C.IDLE
    assert driver.stream.take_raw() == reply + reply


def test_next_query_waits_while_the_server_is_elsewhere() -> None:
    r = rig(pool_size=1)
    _a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    da.send(fe.query("begin; select 1"))
    backend.send(FakeBackend.done("BEGIN", b"T"))
    q1, q2 = fe.query("select 'b1'"), fe.query("select 'b2'")
    db.send(q1[:3])  # header still incomplete: nothing to route yet
    assert b.state is C.IDLE
    db.send(q1[3:] + q2[:7])
    assert b.state is C.WAITING and not b.io.paused  # type: ignore[attr-defined]
    db.send(q2[7:])  # bytes still arriving (already in the socket buffer) are held too
    backend.take()
    da.send(fe.query("commit"))
    assert queries(backend.take()) == ["commit"]
    backend.send(FakeBackend.done("COMMIT"))
    # a's commit finished: the server goes to b, whose held bytes go out in order, whole.
    assert b.state is C.ACTIVE and b.server is server
    assert not b.io.paused  # type: ignore[attr-defined]
    assert backend.stream.take_raw() == q1 + q2
    assert len(server.owed) == 2
    backend.send(FakeBackend.result(), FakeBackend.result())
    assert b.state is C.IDLE
    assert ready_statuses(db.take()) == [b"I", b"I"]


def test_checkout_timeout_while_waiting_answers_each_owed_request() -> None:
    r = rig(pool_size=1, checkout_timeout=1000)
    _a, da = ready_client(r)
    b, db = ready_client(r)
    backend = r.backend(only_server(r))
    da.send(fe.query("begin; select 1"))
    backend.send(FakeBackend.done("BEGIN", b"T"))
    t0 = r.world.now
    db.send(fe.query("select 1") + fe.query("select 2") + fe.query("select 3")[:8])
    assert b.state is C.WAITING
    r.world.advance(t0 + 1.0)
    msgs = db.take()
    assert types(msgs) == "EZEZ"
    assert all(f["C"] == "08006" and "checkout timeout" in f["M"] for f in error_fields(msgs))
    assert b.state is C.IDLE and not b.io.paused  # type: ignore[attr-defined]
    assert [x.a for x in r.world.transitions(Machine.CLIENT, b.id)][-1] == Reason.CHECKOUT_TIMEOUT
    # The third query was still arriving: once whole it is a new request, served normally.
    db.send(fe.query("select 3")[8:])
    assert b.state is C.WAITING
    da.send(fe.query("commit"))
    backend.send(FakeBackend.done("COMMIT"))
    assert b.state is C.ACTIVE
    assert queries(backend.take())[-2:] == ["commit", "select 3"]
    backend.send(FakeBackend.result())
    assert ready_statuses(db.take()) == [b"I"]
    client_transitions(r.world)


def test_partial_next_message_keeps_the_server_until_it_is_complete() -> None:
    r = rig(pool_size=1, checkout_timeout=1000)
    a, da = ready_client(r)
    b, db = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    db.send(fe.query("select 'b1'"))
    da.send(fe.query("begin; select 1"))
    assert a.state is C.WAITING
    # b's next query is pipelined but only 3 header bytes were read when b1's answer arrives.
    q2 = fe.query("select 'b2'")
    db.send(q2[:3])
    backend.take()
    backend.send(FakeBackend.result())
    assert b.state is C.ACTIVE and b.server is server  # the rest must follow to the same server
    assert a.state is C.WAITING
    db.send(q2[3:])
    assert backend.stream.take_raw() == q2
    backend.send(FakeBackend.result())
    assert b.state is C.IDLE and a.state is C.ACTIVE and a.server is server
    assert ready_statuses(db.take()) == [b"I", b"I"]  # one per query, nothing extra
    client_transitions(r.world)


def test_client_eof_mid_transaction_rolls_back_and_pools_server() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; select 1"))
    backend.send(FakeBackend.done("BEGIN", b"T"))
    backend.take()
    client.on_closed(r.now)
    assert client.state is C.CLOSED
    assert server.state is S.CLEANING and server not in r.pool.idle
    assert backend.take_queries() == ["ROLLBACK"]
    backend.send(FakeBackend.done("ROLLBACK"))
    assert server.state is S.IDLE and server in r.pool.idle and server.clean
    assert r.world.directory.closed_clients == [client.id]
    client_transitions(r.world)


def test_half_received_message_is_never_forwarded_in_transaction_mode() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    q = fe.query("select 'a long query text'")
    driver.send(q[:12])
    assert backend.stream.take_raw() == b"" and client.state is C.IDLE
    client.on_closed(r.now)
    assert server.state is S.IDLE and server in r.pool.idle


def test_client_eof_mid_message_closes_the_server() -> None:
    r = rig("session")
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("select 1"))
    backend.send(FakeBackend.result())
    backend.take()
    q = fe.query("select 'a long query text'")
    driver.send(q[:12])
    assert backend.stream.take_raw() == q[:12]  # session mode streams: half a message already forwarded
    client.on_closed(r.now)
    assert server.state is S.CLOSED and server.io.closed  # type: ignore[attr-defined]
    assert server not in r.pool.idle and server.id not in r.pool.servers
    assert r.world.transitions(Machine.SERVER, server.id)[-1].a == Reason.OUT_OF_SYNC
    # The next client gets a brand-new connection.
    _c2, d2 = ready_client(r)
    d2.send(fe.query("select 1"))
    assert len(r.world.pool_io.opened) == 2


def test_client_eof_while_waiting_leaves_the_queue() -> None:
    r = rig(pool_size=1)
    a, da = ready_client(r)
    b, db = ready_client(r)
    backend = r.backend(only_server(r))
    da.send(fe.query("begin; select 1"))
    db.send(fe.query("select 1"))
    assert list(r.pool.waiters) == [b]
    b.on_closed(r.now)
    assert not r.pool.waiters
    backend.send(FakeBackend.done("BEGIN", b"T"))
    assert a.state is C.ACTIVE


def test_terminate_closes_idle_client() -> None:
    r = rig()
    client, driver = ready_client(r)
    driver.send(fe.terminate())
    assert client.state is C.CLOSED and client.io.closed  # type: ignore[attr-defined]
    assert r.world.transitions(Machine.CLIENT, client.id)[-1].a == Reason.CLIENT_TERMINATE
    assert r.world.directory.closed_clients == [client.id]


def test_terminate_inside_transaction_cleans_server() -> None:
    r = rig()
    _client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("begin; select 1"))
    backend.send(FakeBackend.done("BEGIN", b"T"))
    backend.take()
    driver.send(fe.terminate())
    assert backend.take_queries() == ["ROLLBACK"]  # the Terminate itself is not forwarded
    backend.send(FakeBackend.done("ROLLBACK"))
    assert server in r.pool.idle


def test_server_lost_while_active_fails_client() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    driver.send(fe.query("select 1"))
    server.on_closed(r.now)
    ((fields),) = error_fields(driver.take())
    assert fields["C"] == "08006" and fields["S"] == "FATAL"
    assert client.state is C.CLOSED


@pytest.mark.parametrize("cut", [1, 5, 7, 12])
def test_server_lost_mid_message_closes_without_an_error(cut: int) -> None:
    """The server went away after part of a DataRow reached the client: a FATAL ErrorResponse
    after it would be read as the rest of the row (a client-side desync, "insufficient data in
    D message"), so the client is closed with nothing more sent. Cut inside the header, the
    header bytes were never forwarded and the FATAL is safe."""
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("select repeat('x', 100)"))
    backend.take()
    head = be.row_description([be.Field("repeat")])
    row = be.data_row(["x" * 100])
    backend.send(head + row[:cut])
    server.on_closed(r.now)
    got = driver.stream.take_raw()
    assert client.state is C.CLOSED
    if cut < 5:
        assert got.startswith(head) and got[len(head):][:1] == b"E"
        assert b"08006" in got
    else:
        assert got == head + row[:cut], "nothing may follow the half-sent message"


# -- session mode ----------------------------------------------------------------------------


def test_session_mode_keeps_server_until_terminate() -> None:
    r = rig(mode="session")
    client, driver = ready_client(r, application_name="sess")
    server = only_server(r)
    backend = r.backend(server)
    assert client.session_mode
    driver.send(fe.query("select 1"))
    # application_name was applied by the login check already: only the query itself goes out.
    assert backend.answer_settings() == ["select 1"]
    for _ in range(3):
        assert client.state is C.ACTIVE and client.server is server
        driver.send(fe.query("select 2"))
        backend.send(FakeBackend.result())
    assert client.state is C.ACTIVE
    assert ready_statuses(driver.take()) == [b"I"] * 4
    backend.take()
    driver.send(fe.terminate())
    assert client.state is C.CLOSED
    assert backend.take_queries() == ["DISCARD ALL"]
    backend.send(FakeBackend.done("DISCARD ALL"))
    assert server.state is S.IDLE and server in r.pool.idle and server.applied == {}


# -- timers ----------------------------------------------------------------------------------


def test_client_login_timeout() -> None:
    r = rig(auth="md5")
    client = r.world.new_client(login_timeout_ms=2000)
    driver = FrontendDriver(r.world, client)
    driver.startup()
    driver.take()
    r.world.advance(1.999)
    assert client.state is C.AUTH
    r.world.advance(2.0)
    fields = error_fields(driver.take())[0]
    assert fields["S"] == "FATAL" and "client_login_timeout" in fields["M"]
    assert client.state is C.CLOSED
    assert r.world.transitions(Machine.CLIENT, client.id)[-1].a == Reason.LOGIN_TIMEOUT


def test_client_login_timeout_while_waiting_for_login_check() -> None:
    r = rig()
    client = r.world.new_client(login_timeout_ms=1000)
    FrontendDriver(r.world, client).startup()
    assert client.state is C.LOGIN and list(r.pool.waiters) == [client]
    r.world.advance(1.0)
    assert client.state is C.CLOSED and not r.pool.waiters


def test_login_timer_cancelled_after_login() -> None:
    r = rig()
    client, _, _ = r.connect(login_timeout_ms=1000)
    r.world.advance(5.0)
    assert client.state is C.IDLE


def test_client_idle_timeout() -> None:
    r = rig()
    client, driver, _ = r.connect(idle_timeout_ms=1000)
    r.world.advance(0.5)
    driver.send(fe.query("select 1"))
    r.backend(only_server(r)).send(FakeBackend.result())
    driver.take()
    r.world.advance(1.2, step=True)
    assert client.state is C.IDLE  # activity at 0.5 pushed the deadline to 1.5
    r.world.advance(1.6, step=True)
    fields = error_fields(driver.take())[0]
    assert fields["C"] == "57P05"
    assert client.state is C.CLOSED
    assert r.world.transitions(Machine.CLIENT, client.id)[-1].a == Reason.CLIENT_IDLE_TIMEOUT


def test_idle_timeout_does_not_spin_while_in_transaction() -> None:
    r = rig()
    client, driver, _ = r.connect(idle_timeout_ms=1000)
    driver.send(fe.query("begin; select 1"))
    r.backend(only_server(r)).send(FakeBackend.done("BEGIN", b"T"))
    assert client.state is C.ACTIVE
    r.world.advance(1.5)
    assert client.state is C.ACTIVE  # idle in transaction is not client_idle_timeout's business


# -- settings per client on a shared server --------------------------------------------------


def test_two_clients_sharing_one_server_get_their_own_settings() -> None:
    r = rig(pool_size=1)
    _a, da = ready_client(r, application_name="alpha", timezone="UTC")
    _b, db = ready_client(r, application_name="beta", search_path="b_schema")
    server = only_server(r)
    backend = r.backend(server)
    backend.take()

    def run(driver: FrontendDriver, sql: str) -> list[str]:
        driver.send(fe.query(sql))
        sent = queries(backend.take())
        assert sent[-1] == sql
        for _ in sent:
            backend.send(FakeBackend.result())
        return sent[:-1]

    assert run(da, "select 'a1'") == [
        "RESET \"search_path\"; SELECT pg_catalog.set_config(E'application_name', E'alpha', false), "
        "pg_catalog.set_config(E'timezone', E'UTC', false)"
    ]
    assert run(da, "select 'a2'") == []  # already applied
    assert run(db, "select 'b1'") == [
        "RESET \"timezone\"; SELECT pg_catalog.set_config(E'application_name', E'beta', false), "
        "pg_catalog.set_config(E'search_path', E'b_schema', false)"
    ]
    assert run(da, "select 'a3'")[0].startswith('RESET "search_path"; SELECT')
    # Only the clients' own results reached them; the sync queries' never did.
    assert ready_statuses(da.take()) == [b"I"] * 3
    assert ready_statuses(db.take()) == [b"I"]
    assert server.applied == {"application_name": "alpha", "timezone": "UTC"}


def test_query_pipelined_behind_password_in_same_read_is_not_lost() -> None:
    r = rig(auth="cleartext")
    r.connect(method="cleartext")  # the pool knows its server parameters now
    client = r.world.new_client()
    driver = FrontendDriver(r.world, client)
    driver.startup()
    driver.take()
    driver.send(fe.password("app_pw") + fe.query("select 'pipelined'"))
    assert client.state in (C.ACTIVE, C.WAITING)
    assert queries(r.backend(only_server(r)).take())[-1:] == ["select 'pipelined'"]


def test_query_pipelined_behind_password_in_later_read_is_held() -> None:
    r = rig(auth="cleartext")
    client = r.world.new_client()
    driver = FrontendDriver(r.world, client)
    driver.startup()
    driver.take()
    driver.send(fe.password("app_pw"))
    assert client.state is C.LOGIN
    driver.send(fe.query("select 'early'"))
    r.bring_up()
    server = only_server(r)
    r.backend(server).answer_settings()
    assert client.state is C.ACTIVE
    assert queries(r.backend(server).take()) == ["select 'early'"]


# -- determinism -----------------------------------------------------------------------------


def scripted_scenario() -> tuple[str, int, bytes]:
    r = rig(pool_size=1, auth="scram", checkout_timeout=1000)
    a, da, _ = r.connect(method="scram", application_name="a", timezone="UTC")
    _b, db, _ = r.connect(method="scram", application_name="b")
    server = only_server(r)
    backend = r.backend(server)
    da.send(fe.query("begin; select 1"))
    backend.answer_settings()
    db.send(fe.query("select 1"))
    r.world.advance(0.4)
    backend.send(FakeBackend.done("BEGIN", b"T"))
    r.world.advance(1.1)  # b times out
    da.send(fe.query("commit"))
    backend.send(FakeBackend.done("COMMIT"))
    db.send(fe.query("select 2"))
    backend.answer_settings()
    backend.send(FakeBackend.result())
    a.on_closed(r.world.now)
    db.send(fe.terminate())
    return r.world.log.digest(), r.world.log.seq, bytes(db.stream.sent)


def test_same_scenario_twice_gives_identical_event_logs() -> None:
    first = scripted_scenario()
    second = scripted_scenario()
    assert first == second
    assert first[1] > 20


# -- odds and ends ---------------------------------------------------------------------------


def test_newer_protocol_minor_is_negotiated_down() -> None:
    r = rig()
    client = r.world.new_client()
    feed(
        client, 0.0, build_startup({"user": "app", "database": "app", "_pq_.foo": "1"}, version=(3 << 16) | 2)
    )
    msgs = client.io.take()  # type: ignore[attr-defined]
    assert types(msgs) == "vR"
    assert be.parse_negotiate_protocol_version(msgs[0][1]) == (0, ["_pq_.foo"])


def test_login_timeout_while_login_check_in_flight_cleans_the_server() -> None:
    r = rig()
    client = r.world.new_client(login_timeout_ms=1000)
    FrontendDriver(r.world, client).startup(search_path="s")
    r.bring_up()
    server = only_server(r)
    backend = r.backend(server)
    assert client.server is server and len(backend.take_queries()) == 1
    r.world.advance(1.0)
    assert client.state is C.CLOSED
    assert server.state is S.CLEANING
    assert server.io.cancels == [(server.pid, server.secret)]  # type: ignore[attr-defined]
    backend.send(FakeBackend.result())  # the check's answer drains away
    assert server.state is S.CLEANING  # until the postmaster acknowledges the cancel
    server.on_cancel_done(r.world.now)
    assert server.state is S.IDLE and server in r.pool.idle


def test_query_timeout_reaches_the_client_as_57014() -> None:
    r = rig(query_timeout=1000)
    client, driver = ready_client(r)
    driver.send(fe.query("select pg_sleep(100)"))
    server = client.server
    assert server is not None
    r.world.advance(5.0, step=True)
    fields = error_fields(driver.take())[0]
    assert fields["C"] == "57014" and fields["S"] == "FATAL"
    assert client.state is C.CLOSED and server.state is S.CLOSED
    assert server not in r.pool.idle


def test_client_eof_during_copy_in_fails_the_copy_and_cleans() -> None:
    r = rig()
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    driver.send(fe.query("copy t from stdin"))
    backend.send(be.copy_in_response(0, [0]))
    assert types(driver.take()) == "G" and server.copy_in
    driver.send(fe.copy_data(b"1\n"))
    backend.take()
    client.on_closed(r.now)
    assert server.state is S.CLEANING
    sent = backend.take()
    assert types(sent) == "f"
    backend.send(FakeBackend.error("57014", "COPY from stdin failed: client disconnected during COPY"))
    assert server.state is S.IDLE and server.clean


def test_machines_only_take_legal_transitions_in_a_busy_scenario() -> None:
    r = rig(pool_size=2, checkout_timeout=500)
    drivers = [ready_client(r, application_name=f"c{i}")[1] for i in range(4)]
    for i, d in enumerate(drivers):
        d.send(fe.query(f"select {i}"))
    r.bring_up()
    for _ in range(6):
        for server in list(r.world.pool_io.opened):
            if server.state is S.ACTIVE:
                r.backend(server).answer_settings()
    r.world.advance(1.0)
    for d in drivers:
        assert ready_statuses(d.take()) == [b"I"]  # answered or timed out: exactly once
        d.client.on_closed(r.now)
    client_transitions(r.world)
    from state.server import TRANSITIONS as SERVER_TRANSITIONS

    check_transitions(r.world, Machine.SERVER, SERVER_TRANSITIONS, S.CONNECTING)
    assert r.world.log.clamped == 0
