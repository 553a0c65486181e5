"""Pool: checkout, FIFO waiters, growth up to pool_size, timeouts and maintenance."""

from __future__ import annotations

import dataclasses

import pytest

from state.events import Kind, Machine
from state.pool import MAINTENANCE_INTERVAL, TRANSITIONS, Pool, PoolState
from state.reasons import Reason
from state.server import ServerSession, ServerState
from tests.unit.statekit import FakeBackend, Recorder, World, check_transitions

S = ServerState


@pytest.fixture
def world() -> World:
    return World()


def login(world: World, server: ServerSession) -> FakeBackend:
    backend = FakeBackend(world, server)
    backend.login("md5")
    return backend


def give_back(world: World, rec: Recorder, server: ServerSession) -> None:
    """The client is done: link (as ClientSession.on_checkout would) and release a clean server."""
    server.link(world.now, rec)  # type: ignore[arg-type]
    server.release(world.now, session_mode=False)


def warm(world: World, pool: Pool, n: int) -> list[ServerSession]:
    """``n`` logged-in idle servers."""
    recs = [Recorder(500 + i) for i in range(n)]
    for r in recs:
        pool.checkout(world.now, r)
    servers = world.pool_io.opened[-n:]
    for s in servers:
        login(world, s)
    for r in recs:
        ((_, s),) = r.granted
        give_back(world, r, s)
    assert len(pool.idle) == n
    return servers


def test_checkout_gives_idle_server_immediately(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    (server,) = warm(world, pool, 1)
    rec = Recorder(1)
    assert pool.checkout(world.now, rec) is server
    assert rec.granted == []  # returned, not called back
    assert not pool.waiters and not pool.idle
    assert len(world.pool_io.opened) == 1
    assert pool.stats.checkouts == 2


def test_idle_stack_is_most_recently_used_first(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    a, b = warm(world, pool, 2)
    assert pool.checkout(world.now, Recorder(1)) is b
    assert pool.checkout(world.now, Recorder(2)) is a


def test_waiters_open_connections_up_to_pool_size_never_more(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    recs = [Recorder(i) for i in range(1, 6)]
    for r in recs:
        assert pool.checkout(world.now, r) is None
        assert pool.total <= 2
    assert len(world.pool_io.opened) == 2
    assert pool.connecting == 2 and len(pool.waiters) == 5
    enq = [r for r in world.log.records() if r.kind == Kind.ENQUEUE]
    assert [(r.a, r.b) for r in enq] == [(i, i) for i in range(1, 6)]
    # The servers come up in the reverse order of opening: still the oldest waiters first.
    s1, s2 = world.pool_io.opened
    login(world, s2)
    login(world, s1)
    assert [r.granted[0][1] for r in recs[:2]] == [s2, s1]
    assert all(not r.granted for r in recs[2:])
    # Each checkin serves the oldest remaining waiter, no new connection is opened.
    for r, owner in ((recs[2], recs[0]), (recs[3], recs[1]), (recs[4], recs[2])):
        server = owner.granted[0][1]
        give_back(world, owner, server)
        assert r.granted[0][1] is server
    assert len(world.pool_io.opened) == 2 and pool.total == 2
    assert not pool.waiters


def test_new_connection_only_for_waiters_not_already_covered(world: World) -> None:
    pool = world.make_pool(pool_size=5)
    pool.checkout(world.now, Recorder(1))
    pool.checkout(world.now, Recorder(2))
    assert len(world.pool_io.opened) == 2
    login(world, world.pool_io.opened[0])  # serves waiter 1; waiter 2's connect is in flight
    assert len(world.pool_io.opened) == 2 and pool.connecting == 1


def test_checkout_timeout_fails_waiters_in_fifo_order(world: World) -> None:
    pool = world.make_pool(pool_size=1, checkout_timeout=1000)
    (server,) = warm(world, pool, 1)
    owner = Recorder(1)
    assert pool.checkout(world.now, owner) is server
    events: list[str] = []
    a, b, c = (Recorder(i, events=events) for i in (2, 3, 4))
    pool.checkout(0.0, a)
    world.advance(0.3)
    pool.checkout(world.now, b)
    world.advance(0.6)
    pool.checkout(world.now, c)
    world.advance(0.999)
    assert events == []
    world.advance(1.0)
    assert events == ["fail 2"]
    assert a.failed == [(1.0, a.failed[0][1], True)] and "checkout timeout" in a.failed[0][1]
    # The server comes back before b's deadline: b (older) gets it, c keeps waiting.
    world.advance(1.2)
    give_back(world, owner, server)
    assert events == ["fail 2", "grant 3 101"]
    world.advance(1.6)
    assert events == ["fail 2", "grant 3 101", "fail 4"]
    assert c.failed[0][2] is True
    assert pool.stats.checkout_timeouts == 2
    assert [r.a for r in world.log.records() if r.kind == Kind.TIMEOUT] == [2, 4]


def test_cancelled_waiter_is_skipped(world: World) -> None:
    pool = world.make_pool(pool_size=1)
    (server,) = warm(world, pool, 1)
    owner = Recorder(1)
    pool.checkout(world.now, owner)
    a, b = Recorder(2), Recorder(3)
    pool.checkout(world.now, a)
    pool.checkout(world.now, b)
    pool.cancel_wait(world.now, a)
    pool.cancel_wait(world.now, a)  # twice is harmless
    give_back(world, owner, server)
    assert a.granted == [] and b.granted[0][1] is server
    world.advance(5.0)
    assert a.failed == [] and b.failed == []


def test_connect_failure_with_nothing_alive_fails_all_waiters(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    recs = [Recorder(i) for i in range(3)]
    for r in recs:
        pool.checkout(world.now, r)
    s1, s2 = world.pool_io.opened
    s1.on_connect_failed(world.now, "connection refused")
    assert all(not r.failed for r in recs)  # s2 may still come up
    s2.on_connect_failed(world.now, "connection refused")
    for r in recs:
        ((_, message, timeout),) = r.failed
        assert message == "could not connect to the server: connection refused" and not timeout
    assert not pool.waiters and pool.total == 0 and pool.connecting == 0
    assert pool.last_error == "connection refused"
    assert pool.stats.connect_errors == 2


def test_connect_failure_while_servers_alive_keeps_waiters(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    (alive,) = warm(world, pool, 1)
    owner = Recorder(1)
    pool.checkout(world.now, owner)
    rec = Recorder(2)
    pool.checkout(world.now, rec)
    failing = world.pool_io.opened[-1]
    failing.on_connect_failed(world.now, "timeout")
    assert rec.failed == [] and list(pool.waiters) == [rec]
    give_back(world, owner, alive)
    assert rec.granted[0][1] is alive


def test_after_failure_retry_waits_for_maintenance_tick(world: World) -> None:
    pool = world.make_pool(pool_size=2, start=True)
    world.advance(0.0)  # first maintenance tick: nothing to do
    pool.checkout(world.now, Recorder(1))
    world.pool_io.opened[-1].on_connect_failed(world.now, "refused")
    assert len(world.pool_io.opened) == 1
    world.advance(0.1)
    rec = Recorder(2)
    pool.checkout(world.now, rec)
    assert len(world.pool_io.opened) == 1  # not immediately
    world.advance(MAINTENANCE_INTERVAL - 0.001)
    assert len(world.pool_io.opened) == 1
    world.advance(MAINTENANCE_INTERVAL)
    assert len(world.pool_io.opened) == 2
    login(world, world.pool_io.opened[-1])
    assert rec.granted and pool.last_error is None
    # Healthy again: the next waiter gets a connection opened at once.
    pool.checkout(world.now, Recorder(3))
    assert len(world.pool_io.opened) == 3


def test_failing_host_gets_one_probe_per_tick_for_min_pool_size(world: World) -> None:
    pool = world.make_pool(pool_size=4, min_pool_size=3, start=True)
    world.advance(0.0)
    assert len(world.pool_io.opened) == 3
    for s in world.pool_io.opened:
        s.on_connect_failed(world.now, "refused")
    t = 0.0
    for _ in range(3):
        t += MAINTENANCE_INTERVAL
        world.advance(t, step=True)
        assert pool.connecting == 1
        world.pool_io.opened[-1].on_connect_failed(world.now, "refused")
    assert len(world.pool_io.opened) == 6


def test_min_pool_size_opened_on_maintenance_tick(world: World) -> None:
    pool = world.make_pool(pool_size=5, min_pool_size=2)
    assert world.pool_io.opened == []
    pool.start(world.now)
    assert world.pool_io.opened == []  # only when the tick runs
    world.advance(0.0)
    assert len(world.pool_io.opened) == 2
    for s in world.pool_io.opened:
        login(world, s)
    assert len(pool.idle) == 2
    world.advance(10 * MAINTENANCE_INTERVAL, step=True)
    assert len(world.pool_io.opened) == 2  # enough already


def test_idle_timeout_closes_idle_servers_above_min_pool_size(world: World) -> None:
    pool = world.make_pool(pool_size=4, min_pool_size=1, idle_timeout=1000, start=True)
    servers = warm(world, pool, 3)
    for s in servers:
        s.io.take()  # type: ignore[attr-defined]
    # Use the newest one again at t=0.8: it stays fresh.
    world.advance(0.8, step=True)
    rec = Recorder(1)
    fresh = pool.checkout(world.now, rec)
    assert fresh is servers[-1]
    give_back(world, rec, fresh)
    world.advance(1.5, step=True)
    closed = [s for s in servers if s.state is S.CLOSED]
    assert closed == servers[:2]  # both stale ones; total was above min_pool_size
    for s in closed:
        assert s.io.take() == [("X", b"")]  # type: ignore[attr-defined]
        assert world.transitions(Machine.SERVER, s.id)[-1].a == Reason.IDLE_TIMEOUT
    assert pool.idle == [fresh]
    world.advance(5.0, step=True)
    assert pool.idle == [fresh] and fresh.state is S.IDLE  # min_pool_size keeps the last one


def test_server_lifetime_retires_servers(world: World) -> None:
    pool = world.make_pool(pool_size=2, server_lifetime=2000, idle_timeout=0, start=True)
    (server,) = warm(world, pool, 1)
    rec = Recorder(1)
    world.advance(1.0, step=True)
    assert pool.checkout(world.now, rec) is server
    world.advance(2.5, step=True)
    give_back(world, rec, server)  # too old on checkin: closed instead of pooled
    assert server.state is S.CLOSED and not pool.idle
    assert world.transitions(Machine.SERVER, server.id)[-1].a == Reason.LIFETIME


def test_server_lifetime_enforced_on_idle_servers_by_maintenance(world: World) -> None:
    world.make_pool(pool_size=2, min_pool_size=1, server_lifetime=2000, idle_timeout=0, start=True)
    world.advance(0.0)
    (first,) = world.pool_io.opened
    login(world, first)
    world.advance(1.9, step=True)
    assert first.state is S.IDLE
    world.advance(2.4, step=True)
    assert first.state is S.CLOSED
    assert len(world.pool_io.opened) == 2  # min_pool_size replaces it


def test_close_fails_waiters_and_stops_connecting(world: World) -> None:
    pool = world.make_pool(pool_size=3, start=True)
    (busy,) = warm(world, pool, 1)
    owner = Recorder(1)
    assert pool.checkout(world.now, owner) is busy
    waiter = Recorder(2)
    pool.checkout(world.now, waiter)
    connecting = world.pool_io.opened[-1]
    assert connecting.state is S.CONNECTING
    pool.close(world.now)
    assert pool.state is PoolState.CLOSED
    ((_, message, timeout),) = waiter.failed
    assert "closed" in message and not timeout
    assert connecting.state is S.CLOSED and connecting.io.closed  # type: ignore[attr-defined]
    assert busy.state is S.IDLE  # lent out: finishes with its client
    give_back(world, owner, busy)
    assert busy.state is S.CLOSED
    assert pool.total == 0
    n = len(world.pool_io.opened)
    world.advance(10.0, step=True)
    assert len(world.pool_io.opened) == n  # maintenance stopped
    assert waiter.failed == [waiter.failed[0]]  # failed once, no timeout later
    check_transitions(world, Machine.POOL, TRANSITIONS, PoolState.OPEN)


def test_close_terminates_idle_servers(world: World) -> None:
    pool = world.make_pool(pool_size=3)
    servers = warm(world, pool, 2)
    for s in servers:
        s.io.take()  # type: ignore[attr-defined]
    pool.close(world.now, Reason.SHUTDOWN)
    pool.close(world.now)  # idempotent
    for s in servers:
        assert s.state is S.CLOSED
        assert s.io.take() == [("X", b"")]  # type: ignore[attr-defined]
        assert world.transitions(Machine.SERVER, s.id)[-1].a == Reason.SHUTDOWN
    assert not pool.idle and pool.total == 0
    assert [r.a for r in world.transitions(Machine.POOL, pool.id)] == [Reason.SHUTDOWN]


def test_checkout_on_closed_pool_does_not_hang(world: World) -> None:
    pool = world.make_pool(pool_size=1)
    (_server,) = warm(world, pool, 1)
    owner = Recorder(1)
    pool.checkout(world.now, owner)
    pool.checkout(world.now, Recorder(2))  # arms the wait timer
    pool.close(world.now)
    late = Recorder(3)  # e.g. a client of this pool sending its next query after a reload
    pool.checkout(world.now, late)
    world.advance(60.0)
    assert late.failed


def test_pause_closes_idle_servers_and_holds_checkouts_until_resume(world: World) -> None:
    pool = world.make_pool(pool_size=2, checkout_timeout=5000)
    (server,) = warm(world, pool, 1)
    pool.pause(world.now)
    assert pool.state is PoolState.PAUSED and pool.paused
    assert server.state is S.CLOSED and pool.drained
    assert world.pool_io.drained == [(world.now, pool.id)]
    rec = Recorder(1)
    assert pool.checkout(world.now, rec) is None
    assert len(world.pool_io.opened) == 1  # no growth while paused
    pool.pause(world.now)  # idempotent
    world.advance(60.0)  # far past checkout_timeout: a held client does not time out
    assert rec.failed == [] and rec.granted == []
    pool.resume(world.now)
    assert pool.state is PoolState.OPEN
    assert len(world.pool_io.opened) == 2  # a fresh server for the waiter
    login(world, world.pool_io.opened[-1])
    assert rec.granted == [(60.0, world.pool_io.opened[-1])]
    reasons = [r.a for r in world.transitions(Machine.POOL, pool.id)]
    assert reasons == [Reason.PAUSE, Reason.RESUME]
    check_transitions(world, Machine.POOL, TRANSITIONS, PoolState.OPEN)


def test_pause_waits_for_busy_servers_and_closes_them_at_checkin(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    (server,) = warm(world, pool, 1)
    owner = Recorder(7)
    assert pool.checkout(world.now, owner) is server
    pool.pause(world.now)
    assert not pool.drained and world.pool_io.drained == []
    give_back(world, owner, server)
    assert server.state is S.CLOSED
    assert pool.drained and world.pool_io.drained == [(world.now, pool.id)]


def test_resumed_waiters_get_a_fresh_checkout_timeout(world: World) -> None:
    pool = world.make_pool(pool_size=1, checkout_timeout=1000)
    (server,) = warm(world, pool, 1)
    owner = Recorder(7)
    assert pool.checkout(world.now, owner) is server
    pool.set_maintenance(world.now, True)
    rec = Recorder(1)
    pool.checkout(world.now, rec)
    world.advance(30.0)
    assert rec.failed == []
    pool.set_maintenance(world.now, False)
    world.advance(30.9)
    assert rec.failed == []
    world.advance(31.1)
    assert len(rec.failed) == 1 and rec.failed[0][2] is True  # timed out 1 s after the hold lifted


def test_maintenance_keeps_servers_and_parks_clients(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    (server,) = warm(world, pool, 1)
    pool.set_maintenance(world.now, True)
    assert pool.state is PoolState.PAUSED and pool.maintenance and not pool.paused
    assert server.state is S.IDLE and pool.idle == [server]
    rec = Recorder(1)
    assert pool.checkout(world.now, rec) is None
    pool.pause(world.now)
    pool.resume(world.now)  # maintenance still holds
    assert pool.state is PoolState.PAUSED and rec.granted == []
    pool.set_maintenance(world.now, False)
    assert pool.state is PoolState.OPEN
    login(world, world.pool_io.opened[-1])
    assert len(rec.granted) == 1


def test_reconnect_replaces_idle_now_and_busy_at_checkin(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    first, second = warm(world, pool, 2)
    owner = Recorder(7)
    busy = pool.checkout(world.now, owner)
    assert busy is not None
    idle = first if busy is second else second
    world.advance(1.0)
    pool.reconnect(world.now)
    assert idle.state is S.CLOSED and busy.state is not S.CLOSED
    give_back(world, owner, busy)
    assert busy.state is S.CLOSED
    rec = Recorder(8)
    assert pool.checkout(world.now, rec) is None  # new connections only
    login(world, world.pool_io.opened[-1])
    assert rec.granted and rec.granted[0][1].created_at >= 1.0


def test_checkin_during_maintenance_goes_idle_not_to_waiter(world: World) -> None:
    pool = world.make_pool(pool_size=1, checkout_timeout=5000)
    (server,) = warm(world, pool, 1)
    owner = Recorder(1)
    pool.checkout(world.now, owner)
    pool.set_maintenance(world.now, True)
    waiter = Recorder(2)
    pool.checkout(world.now, waiter)
    give_back(world, owner, server)
    assert waiter.granted == [] and pool.idle == [server]
    pool.set_maintenance(world.now, False)
    assert waiter.granted[0][1] is server and not pool.idle


def test_resume_opens_connections_for_waiters(world: World) -> None:
    pool = world.make_pool(pool_size=2)
    pool.pause(world.now)
    pool.checkout(world.now, Recorder(1))
    assert world.pool_io.opened == []
    pool.resume(world.now)
    assert len(world.pool_io.opened) == 1


def test_server_lost_while_active_replaces_it_for_waiters(world: World) -> None:
    pool = world.make_pool(pool_size=1)
    (server,) = warm(world, pool, 1)
    owner = Recorder(1)
    pool.checkout(world.now, owner)
    server.link(world.now, owner)  # type: ignore[arg-type]
    waiter = Recorder(2)
    pool.checkout(world.now, waiter)
    assert len(world.pool_io.opened) == 1
    server.on_closed(world.now)
    assert owner.lost and len(world.pool_io.opened) == 2
    login(world, world.pool_io.opened[-1])
    assert waiter.granted


def test_expired_server_on_checkin_is_replaced_for_the_waiter(world: World) -> None:
    pool = world.make_pool(pool_size=1, server_lifetime=1000, checkout_timeout=10_000)
    (server,) = warm(world, pool, 1)
    owner = Recorder(1)
    pool.checkout(world.now, owner)
    waiter = Recorder(2)
    pool.checkout(world.now, waiter)
    world.advance(2.0)
    give_back(world, owner, server)
    assert server.state is S.CLOSED
    replacement = world.pool_io.opened[-1]
    assert replacement is not server and replacement.state is S.CONNECTING
    login(world, replacement)
    assert waiter.granted[0][1] is replacement


def test_fake_scheduler_fires_in_when_seq_order_and_skips_cancelled() -> None:
    from tests.unit.statekit import FakeScheduler

    sched = FakeScheduler()
    fired: list[tuple[str, float]] = []
    sched.arm(2.0, lambda now, tag: fired.append((tag, now)), "late")
    sched.arm(1.0, lambda now, tag: fired.append((tag, now)), "first")
    sched.arm(1.0, lambda now, tag: fired.append((tag, now)), "second")
    sched.arm(1.5, lambda now, tag: fired.append((tag, now)), "cancelled").cancel()
    assert sched.fire_until(0.5) == 0
    assert sched.fire_until(3.0, step=True) == 3
    assert fired == [("first", 1.0), ("second", 1.0), ("late", 2.0)]
    assert sched.pending() == []


def test_a_lowered_checkout_timeout_applies_to_the_next_waiter(world: World) -> None:
    pool = world.make_pool(pool_size=1, checkout_timeout=3000)
    (server,) = warm(world, pool, 1)
    assert pool.checkout(world.now, Recorder(1)) is server
    early = Recorder(2)
    pool.checkout(world.now, early)  # deadline 3.0
    pool.settings = dataclasses.replace(pool.settings, checkout_timeout=300)
    late = Recorder(3)
    pool.checkout(world.now, late)  # deadline 0.3, behind an earlier waiter
    world.advance(0.31)
    assert late.failed and not early.failed
    assert list(pool.waiters) == [early]
    world.advance(3.01)
    assert early.failed and not pool.waiters


def test_a_server_that_never_answers_the_login_times_out(world: World) -> None:
    pool = world.make_pool(pool_size=1, connect_timeout=500, checkout_timeout=5000)
    rec = Recorder(1)
    assert pool.checkout(world.now, rec) is None
    (server,) = world.pool_io.opened
    server.on_connected(world.now)  # TCP is up, then silence
    assert server.state is S.STARTUP
    world.advance(0.49)
    assert server.state is S.STARTUP
    world.advance(0.51)
    assert server.state is S.CLOSED and "login timeout" in (server.error or "")
    assert pool.stats.connect_errors == 1 and pool.last_error == server.error
    assert rec.failed and "login timeout" in rec.failed[0][1]  # nothing else could serve it
