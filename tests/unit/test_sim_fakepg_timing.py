"""Time in the fake backend: pg_sleep, cancel, timeouts, row-lock waits, and the hang/delay knobs."""

from __future__ import annotations

from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.startup import build_cancel_request
from sim.fakepg import Database, FakeServer
from sim.fakepg.client import Driver

T0 = 1000.0


def setup() -> FakeServer:
    server = FakeServer(Database(tables=("kv",)))
    driver = login(server)
    driver.query("INSERT INTO kv VALUES (1, 1), (2, 2)")
    return server


def login(server: FakeServer, now: float = T0) -> Driver:
    driver = Driver(server, now)
    assert driver.login().status == b"I"
    return driver


def cancel(server: FakeServer, target: Driver, now: float) -> Driver:
    canceller = Driver(server, now)
    canceller.write(build_cancel_request(target.session.pid, target.session.secret))
    assert canceller.session.closed and canceller.received == bytearray()
    return canceller


def test_pg_sleep_finishes_when_its_time_comes() -> None:
    driver = login(setup())
    assert driver.query("SELECT pg_sleep(0.5)").types == ""
    assert driver.session.wakeup == T0 + 0.5
    driver.tick(T0 + 0.4)
    assert driver.read().types == ""
    driver.tick(T0 + 0.5)
    reply = driver.read()
    assert reply.types == "TDCZ" and reply.rows == [[""]] and reply.columns[0].type_oid == 2278
    assert driver.session.wakeup is None


def test_messages_pipelined_behind_a_sleep_wait_for_it() -> None:
    driver = login(setup())
    driver.write(fe.query("SELECT pg_sleep(1); SELECT 1") + fe.query("SELECT 2"))
    assert driver.read().types == ""
    driver.tick(T0 + 1)
    reply = driver.read()
    assert reply.rows == [[""], ["1"], ["2"]] and reply.statuses == [b"I", b"I"]


def test_cancel_ends_a_sleep_with_57014() -> None:
    server = setup()
    driver = login(server)
    driver.query("BEGIN; SELECT pg_sleep(10)")
    cancel(server, driver, T0 + 1)
    reply = driver.read()
    assert reply.codes == ["57014"] and reply.status == b"E"
    assert reply.errors[0].message == "canceling statement due to user request"
    assert server.cancels == [(T0 + 1, driver.session.pid, True)]
    # A wrong secret or an idle backend: nothing happens.
    canceller = Driver(server, T0 + 2)
    canceller.write(build_cancel_request(driver.session.pid, b"\0\0\0\0"))
    assert server.cancels[-1] == (T0 + 2, driver.session.pid, False)


def test_cancel_of_an_extended_execute() -> None:
    server = setup()
    driver = login(server)
    assert driver.extended("SELECT pg_sleep($1)", (b"5",)).types == "12T"
    cancel(server, driver, T0 + 1)
    reply = driver.read()
    assert reply.types == "EZ" and reply.codes == ["57014"] and reply.status == b"I"


def test_statement_timeout() -> None:
    server = setup()
    driver = login(server)
    driver.query("SET statement_timeout = '200ms'")
    driver.query("SELECT pg_sleep(1)")
    assert driver.session.wakeup == T0 + 0.2
    driver.tick(T0 + 0.2)
    reply = driver.read()
    assert reply.codes == ["57014"] and reply.errors[0].message == "canceling statement due to statement timeout"


def test_writers_of_one_row_serialise_instead_of_losing_updates() -> None:
    server = setup()
    a, b = login(server), login(server)
    a.query("BEGIN; UPDATE kv SET v = v + 1 WHERE k = 1")
    assert b.query("UPDATE kv SET v = v + 1 WHERE k = 1").types == ""
    assert b.session.wakeup is None
    assert b.query("SELECT 1").types == ""  # queued behind the waiting statement
    woken: list[int] = []
    server.on_wakeup = lambda session: woken.append(session.pid)
    a.query("COMMIT", now=T0 + 1)
    # B carries on inside A's call, at A's time, and the world is told.
    assert woken == [b.session.pid] and b.session.wakeup is None
    assert b.read().tags == ["UPDATE 1", "SELECT 1"]
    assert server.database.committed_value("kv", 1) == 3
    assert server.database.wal[-1].time == T0 + 1


def test_a_waiting_insert_sees_the_committed_duplicate() -> None:
    server = setup()
    a, b = login(server), login(server)
    a.query("BEGIN; INSERT INTO kv VALUES (5, 5)")
    b.query("INSERT INTO kv VALUES (5, 6)")
    a.query("COMMIT")
    b.tick(T0)
    assert b.read().codes == ["23505"]


def test_deadlock_is_detected() -> None:
    server = setup()
    a, b = login(server), login(server)
    a.query("BEGIN; UPDATE kv SET v = 10 WHERE k = 1")
    b.query("BEGIN; UPDATE kv SET v = 20 WHERE k = 2")
    assert a.query("UPDATE kv SET v = 10 WHERE k = 2").types == ""
    reply = b.query("UPDATE kv SET v = 20 WHERE k = 1")
    assert reply.codes == ["40P01"] and reply.status == b"E"
    a.tick(T0)
    assert a.read().tags == ["UPDATE 1"]
    b.query("ROLLBACK")
    a.query("COMMIT")
    assert server.database.rows("kv") == [(1, 10), (2, 10)]


def test_lock_timeout_and_a_closed_waiter() -> None:
    server = setup()
    a, b, c = login(server), login(server), login(server)
    a.query("BEGIN; UPDATE kv SET v = 10 WHERE k = 1")
    b.query("SET lock_timeout = '1s'")
    b.query("UPDATE kv SET v = 20 WHERE k = 1")
    b.tick(T0 + 1)
    assert b.read().codes == ["55P03"]
    c.query("UPDATE kv SET v = 30 WHERE k = 1")
    c.session.on_closed(T0 + 2)
    assert server.database.locks.waiters == {}
    a.session.on_closed(T0 + 2)
    assert server.database.locks.owner == {} and server.database.rows("kv") == [(1, 1), (2, 2)]


def test_hang_buffers_everything_until_cleared() -> None:
    server = setup()
    driver = login(server)
    server.hang = True
    driver.query("SELECT 1")
    assert driver.read().types == "" and driver.session.wakeup is None and server.wakeup is None
    fresh = Driver(server, T0)
    fresh.write(b"")
    assert fresh.login().types == ""  # a hung server does not even answer a login
    server.hang = False
    assert driver.session.wakeup == T0
    server.on_timer(T0 + 3)
    assert driver.read().rows == [["1"]]
    assert fresh.read().types.endswith("KZ")


def test_hang_holds_a_finished_sleep() -> None:
    driver = login(setup())
    driver.query("SELECT pg_sleep(1)")
    driver.server.hang = True
    driver.tick(T0 + 2)
    assert driver.read().types == ""
    driver.server.hang = False
    driver.tick(T0 + 5)
    assert driver.read().tags == ["SELECT 1"]


def test_delay_holds_each_response() -> None:
    server = setup()
    driver = login(server)
    server.delay = 0.25
    driver.query("SELECT 1")
    assert driver.read().types == "" and driver.session.wakeup == T0 + 0.25
    driver.query("SELECT 2", now=T0 + 0.1)
    driver.tick(T0 + 0.25)
    assert driver.read().rows == [["1"]]
    assert driver.session.wakeup == T0 + 0.35
    driver.tick(T0 + 0.35)
    assert driver.read().rows == [["2"]]
    driver.terminate()
    assert driver.session.closed


def test_delayed_fatal_closes_after_it_is_sent() -> None:
    server = setup()
    server.delay = 1.0
    server.refuse_connections = True
    driver = Driver(server, T0)
    driver.login()
    assert not driver.session.closed
    driver.tick(T0 + 1)
    assert driver.read().codes == ["57P03"] and driver.session.closed


def test_idle_in_transaction_timeout() -> None:
    server = setup()
    driver = login(server)
    driver.query("SET idle_in_transaction_session_timeout = '2s'")
    driver.query("BEGIN; UPDATE kv SET v = 9 WHERE k = 1", now=T0 + 1)
    assert driver.session.wakeup == T0 + 3
    driver.tick(T0 + 3)
    reply = driver.read()
    assert reply.codes == ["25P03"] and driver.session.closed
    assert server.database.locks.owner == {} and server.database.committed_value("kv", 1) == 1


def test_terminate_a_backend() -> None:
    server = setup()
    driver = login(server)
    driver.query("BEGIN; UPDATE kv SET v = 5 WHERE k = 1")
    assert server.terminate(driver.session.pid, T0 + 1)
    reply = driver.read()
    assert reply.codes == ["57P01"] and reply.errors[0].severity == "FATAL" and driver.session.closed
    assert server.database.locks.owner == {} and not server.terminate(driver.session.pid, T0 + 1)


def test_a_cancel_during_a_hang_takes_effect_when_it_ends() -> None:
    server = setup()
    driver = login(server)
    driver.query("SELECT pg_sleep(10)")
    server.hang = True
    canceller = Driver(server, T0 + 1)
    canceller.write(build_cancel_request(driver.session.pid, driver.session.secret))
    assert not canceller.session.closed and driver.read().types == ""
    server.hang = False
    server.on_timer(T0 + 2)
    assert canceller.session.closed
    assert driver.read().codes == ["57014"]
