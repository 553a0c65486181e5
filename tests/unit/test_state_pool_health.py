"""Pool health checks: the checkout check of a stale server, probe errors and timeouts, the idle
check schedule, probes queued behind busy servers, and what the owner (the cluster) is told."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from pgdog_ev.wire import backend as be
from state.events import Kind, Machine
from state.pool import MAINTENANCE_INTERVAL, Pool
from state.probe import HEALTHCHECK_SQL, Probe
from state.reasons import Reason
from state.server import TRANSITIONS as SERVER_TRANSITIONS
from state.server import ServerSession, ServerState
from tests.unit.statekit import FakeBackend, Recorder, World, check_transitions

S = ServerState
EPS = 1e-6


@dataclass
class FakeOwner:
    """A PoolOwner that records what the pool reports instead of banning or rerouting."""

    health: list[tuple[float, int, bool, int, str | None]] = field(default_factory=list)
    rerouted: list[tuple[float, int, list[int], str]] = field(default_factory=list)

    def pool_health(self, now: float, pool: Pool, ok: bool, reason: int, error: str | None) -> None:
        self.health.append((now, pool.id, ok, reason, error))

    def reroute(self, now: float, pool: Pool, clients: list[Any], error: str) -> None:
        self.rerouted.append((now, pool.id, [c.id for c in clients], error))

    def verdicts(self) -> list[tuple[bool, int]]:
        return [(ok, reason) for _, _, ok, reason, _ in self.health]


class Rig:
    """One pool with a recording owner, and the backends of its servers."""

    def __init__(self, *, start: bool = False, **settings: Any) -> None:
        base: dict[str, Any] = dict(
            pool_size=2,
            healthcheck_interval=1000,
            healthcheck_timeout=500,
            idle_healthcheck_interval=2000,
            idle_healthcheck_delay=1000,
            idle_timeout=0,
        )
        base.update(settings)
        self.world = World()
        self.pool = self.world.make_pool(start=start, **base)
        self.owner = FakeOwner()
        self.pool.owner = self.owner
        self.backends: dict[int, FakeBackend] = {}

    @property
    def now(self) -> float:
        return self.world.now

    def backend(self, server: ServerSession) -> FakeBackend:
        if server.id not in self.backends:
            self.backends[server.id] = FakeBackend(self.world, server)
        return self.backends[server.id]

    def bring_up(self) -> list[ServerSession]:
        up = []
        for server in list(self.world.pool_io.opened):
            if server.state is S.CONNECTING:
                self.backend(server).login("md5")
                up.append(server)
        return up

    def warm(self, n: int) -> list[ServerSession]:
        """``n`` idle servers, logged in and returned by a client at the current time."""
        recs = [Recorder(900 + i) for i in range(n)]
        for r in recs:
            self.pool.checkout(self.now, r)
        self.bring_up()
        servers = []
        for r in recs:
            ((_, server),) = r.granted
            give_back(self.world, r, server)
            servers.append(server)
        assert len(self.pool.idle) == n
        self.owner.health.clear()
        return servers

    def answer_probe(self, server: ServerSession) -> None:
        """The server answers ``;`` as PostgreSQL does: EmptyQueryResponse, ReadyForQuery."""
        assert self.backend(server).take_queries() == [HEALTHCHECK_SQL]
        self.backend(server).send(be.empty_query_response() + be.ready_for_query(b"I"))

    def fail_probe(self, server: ServerSession, message: str = "the database system is shutting down") -> None:
        assert self.backend(server).take_queries() == [HEALTHCHECK_SQL]
        self.backend(server).send(be.error_response("57P03", message) + be.ready_for_query(b"I"))


def give_back(world: World, rec: Recorder, server: ServerSession) -> None:
    """The client is done: link (as ClientSession.on_checkout would) and release a clean server."""
    server.link(world.now, rec)  # type: ignore[arg-type]
    server.release(world.now, session_mode=False)


def probes_sent(r: Rig) -> list[tuple[float, int]]:
    """(time, server id) of each health check started, from the event log."""
    return [
        (rec.now_ns / 1e9, rec.id)
        for rec in r.world.transitions(Machine.SERVER)
        if rec.to == S.CHECKING
    ]


# -- the checkout check ------------------------------------------------------------------------


def test_recent_server_is_lent_without_a_check() -> None:
    """A server used within healthcheck_interval is lent at once: no round trip on the hot path."""
    r = Rig()
    (server,) = r.warm(1)
    r.world.advance(0.999)
    assert r.pool.checkout(r.now, Recorder(1)) is server
    assert server.io.take() == []  # type: ignore[attr-defined]
    assert r.pool.stats.healthchecks == 0


def test_stale_server_is_checked_before_the_client_gets_it() -> None:
    """Unused for healthcheck_interval: ';' runs first and the client waits for the answer."""
    r = Rig()
    (server,) = r.warm(1)
    r.world.advance(1.0)
    client = Recorder(1)
    assert r.pool.checkout(r.now, client) is None
    assert server.state is S.CHECKING and list(r.pool.waiters) == [client]
    assert len(r.world.pool_io.opened) == 1  # the check covers the waiter: no extra connection
    assert client.granted == []
    r.world.advance(1.05)
    r.answer_probe(server)
    assert client.granted == [(1.05, server)]
    assert server.last_check == 1.05
    assert r.pool.stats.healthchecks == 1 and r.pool.stats.healthcheck_failures == 0
    assert r.owner.verdicts() == [(True, Reason.HEALTHCHECK_OK)]
    assert r.pool.healthy
    assert client.wait_time == pytest.approx(0.05)  # the check counts as checkout wait
    check_transitions(r.world, Machine.SERVER, SERVER_TRANSITIONS, S.CONNECTING)
    assert [rec.to for rec in r.world.transitions(Machine.SERVER, server.id)][-2:] == [S.CHECKING, S.IDLE]


def test_requests_answered_count_as_a_check() -> None:
    """A server that answered a client recently is as good as checked: no probe at the next checkout."""
    r = Rig()
    (server,) = r.warm(1)
    r.world.advance(0.8)
    client = Recorder(1)
    assert r.pool.checkout(r.now, client) is server
    server.link(r.now, client)  # type: ignore[arg-type]
    server.expect_response()
    r.backend(server).take()
    r.world.advance(0.9)
    r.backend(server).send(FakeBackend.result())
    server.release(r.now, session_mode=False)
    r.world.advance(1.5)  # 1.5 s since the login, 0.6 s since the last answer
    assert r.pool.checkout(r.now, Recorder(2)) is server


def test_probe_error_closes_server_and_reports_failure() -> None:
    """An ErrorResponse to ';' (e.g. shutting down) means the host is not fit: close, tell the owner."""
    r = Rig()
    (server,) = r.warm(1)
    r.world.advance(2.0)
    client = Recorder(1)
    r.pool.checkout(r.now, client)
    r.fail_probe(server)
    assert server.state is S.CLOSED and server.io.closed  # type: ignore[attr-defined]
    assert r.world.transitions(Machine.SERVER, server.id)[-1].a == Reason.HEALTHCHECK_FAILED
    ((now, pid, ok, reason, error),) = r.owner.health
    assert (now, pid, ok, reason) == (2.0, r.pool.id, False, Reason.HEALTHCHECK_FAILED)
    assert error == "health check failed: the database system is shutting down"
    assert not r.pool.healthy and r.pool.health_error == error
    assert r.pool.stats.healthcheck_failures == 1
    # The waiter is not failed: a new connection is opened for it.
    assert client.failed == [] and list(r.pool.waiters) == [client]
    assert r.pool.checking == 0 and r.pool.connecting == 1
    (fresh,) = r.bring_up()
    assert client.granted == [(2.0, fresh)]
    # The successful login is good evidence again.
    assert r.pool.healthy and r.owner.verdicts()[-1] == (True, Reason.SERVER_READY)


def test_probe_not_answered_within_healthcheck_timeout() -> None:
    """A silent server is closed at healthcheck_timeout and the owner hears HEALTHCHECK_TIMEOUT."""
    r = Rig(healthcheck_timeout=500)
    (server,) = r.warm(1)
    r.world.advance(3.0)
    r.pool.checkout(r.now, Recorder(1))
    r.world.advance(3.499)
    assert server.state is S.CHECKING and r.owner.health == []
    r.world.advance(3.5)
    assert server.state is S.CLOSED
    assert r.world.transitions(Machine.SERVER, server.id)[-1].a == Reason.HEALTHCHECK_TIMEOUT
    ((now, _, ok, reason, error),) = r.owner.health
    assert (now, ok, reason) == (3.5, False, Reason.HEALTHCHECK_TIMEOUT)
    assert error == "health check timed out (healthcheck_timeout)"
    assert server.io.closed  # type: ignore[attr-defined]
    # A late answer changes nothing: the owner heard exactly once.
    server.on_bytes(r.now, memoryview(be.empty_query_response() + be.ready_for_query(b"I")))
    assert len(r.owner.health) == 1
    check_transitions(r.world, Machine.SERVER, SERVER_TRANSITIONS, S.CONNECTING)


def test_health_verdict_change_is_noted_once() -> None:
    """The NOTE event marks a change of verdict; repeated failures do not flood the log."""
    r = Rig(pool_size=2)
    r.pool.checkout(r.now, Recorder(1))
    r.pool.checkout(r.now, Recorder(2))
    first, second = r.world.pool_io.opened
    first.on_connect_failed(r.now, "refused")
    second.on_connect_failed(r.now, "refused")
    notes = [rec for rec in r.world.log.records() if rec.kind == Kind.NOTE and rec.machine == Machine.POOL]
    assert [(rec.a, rec.b) for rec in notes] == [(Reason.HEALTHCHECK_FAILED, Reason.CONNECT_FAILED)]
    assert [ok for ok, _ in r.owner.verdicts()] == [False, False]  # the owner hears every one


# -- connects and logins are health evidence too ----------------------------------------------


def test_connect_failure_is_reported_and_waiters_go_to_the_owner() -> None:
    """With nothing alive, the pool asks its owner to reroute the waiters instead of failing them."""
    r = Rig(pool_size=1)
    a, b = Recorder(1), Recorder(2)
    r.pool.checkout(r.now, a)
    r.pool.checkout(r.now, b)
    (server,) = r.world.pool_io.opened
    server.on_connect_failed(r.now, "connection refused")
    assert r.owner.verdicts() == [(False, Reason.CONNECT_FAILED)]
    assert r.owner.rerouted == [(0.0, r.pool.id, [1, 2], "could not connect to the server: connection refused")]
    assert a.failed == [] and b.failed == [] and not r.pool.waiters


def test_login_timeout_is_reported_as_such() -> None:
    """A server that accepts TCP and never finishes the login is a LOGIN_TIMEOUT, not a refusal."""
    r = Rig(pool_size=1, connect_timeout=200)
    r.pool.checkout(r.now, Recorder(1))
    (server,) = r.world.pool_io.opened
    server.on_connected(r.now)
    r.world.advance(0.2)
    assert r.owner.verdicts() == [(False, Reason.LOGIN_TIMEOUT)]


def test_lone_pool_fails_its_waiters_itself() -> None:
    """Without an owner (a single-host database) the waiters get the connect error directly."""
    r = Rig(pool_size=1)
    r.pool.owner = None
    a = Recorder(1)
    r.pool.checkout(r.now, a)
    r.world.pool_io.opened[0].on_connect_failed(r.now, "refused")
    assert a.failed == [(0.0, "could not connect to the server: refused", False)]


# -- the idle check ---------------------------------------------------------------------------


def test_idle_check_starts_after_delay_then_repeats_every_interval() -> None:
    """An idle host is checked every idle_healthcheck_interval, the first after idle_healthcheck_delay."""
    r = Rig(start=True, idle_healthcheck_delay=1000, idle_healthcheck_interval=2000)
    (server,) = r.warm(1)
    t = 0.0
    while t < 9.0:
        t += 0.05
        r.world.advance(t, step=True)
        if server.state is S.CHECKING:
            r.answer_probe(server)
    times = [when for when, _ in probes_sent(r)]
    assert len(times) == 4
    assert 1.0 <= times[0] < 1.0 + MAINTENANCE_INTERVAL + EPS
    for before, after in itertools.pairwise(times):
        assert 2.0 <= after - before < 2.0 + MAINTENANCE_INTERVAL + EPS
    assert r.owner.verdicts() == [(True, Reason.HEALTHCHECK_OK)] * 4
    assert server.state is S.IDLE and r.pool.idle == [server]


def test_idle_check_skips_a_pool_whose_servers_are_all_busy() -> None:
    """Busy servers are answering clients: that is proof enough, no connection is added to check."""
    r = Rig(start=True, pool_size=3, idle_healthcheck_delay=1000)
    (server,) = r.warm(1)
    client = Recorder(1)
    assert r.pool.checkout(r.now, client) is server
    server.link(r.now, client)  # type: ignore[arg-type]
    r.world.advance(5.0, step=True)
    assert probes_sent(r) == [] and len(r.world.pool_io.opened) == 1
    assert not r.pool.probes


def test_idle_check_of_an_empty_pool_opens_a_connection_to_check() -> None:
    """A pool with no server at all is checked by connecting: a dead host is found without traffic."""
    r = Rig(start=True, idle_healthcheck_delay=1000)
    r.world.advance(0.9, step=True)
    assert r.world.pool_io.opened == []
    r.world.advance(1.0 + MAINTENANCE_INTERVAL, step=True)
    (server,) = r.world.pool_io.opened
    server.on_connect_failed(r.now, "connection refused")
    # The connect error, then the queued check answered with it.
    assert r.owner.verdicts() == [(False, Reason.CONNECT_FAILED), (False, Reason.HEALTHCHECK_FAILED)]
    assert not r.pool.probes
    assert not r.pool.healthy


def test_idle_check_never_opens_more_than_pool_size() -> None:
    """A check of a full pool waits for a connection; it never grows the pool past its size."""
    r = Rig(start=True, pool_size=1, idle_healthcheck_delay=0)
    (server,) = r.warm(1)
    client = Recorder(1)
    assert r.pool.checkout(r.now, client) is server
    server.link(r.now, client)  # type: ignore[arg-type]
    r.pool.health_check(r.now)
    r.pool.health_check(r.now)  # a second request joins the first
    assert len(r.pool.probes) == 1 and len(r.world.pool_io.opened) == 1


# -- probes queued behind busy servers --------------------------------------------------------


def test_queued_probe_runs_at_next_checkin_before_any_waiting_client() -> None:
    """A check must not starve behind clients: the next server checked in runs it first."""
    r = Rig(pool_size=1)
    (server,) = r.warm(1)
    owner, waiter = Recorder(1), Recorder(2)
    assert r.pool.checkout(r.now, owner) is server
    assert r.pool.checkout(r.now, waiter) is None
    r.pool.health_check(r.now)
    assert len(r.pool.probes) == 1 and server.state is S.IDLE  # not yet linked: still in the hands of owner
    r.world.advance(0.2)
    give_back(r.world, owner, server)
    assert server.state is S.CHECKING and waiter.granted == []
    r.backend(server).take_queries()  # the link's settings sync, if any, was before
    r.backend(server).send(be.empty_query_response() + be.ready_for_query(b"I"))
    assert waiter.granted == [(0.2, server)]
    assert r.owner.verdicts() == [(True, Reason.HEALTHCHECK_OK)]


def test_probes_queued_run_in_order_one_per_checkin() -> None:
    """An LSN poll and a health check queued together both run, in order, before the waiter."""
    r = Rig(pool_size=1)
    (server,) = r.warm(1)
    owner, waiter = Recorder(1), Recorder(2)
    r.pool.checkout(r.now, owner)
    r.pool.checkout(r.now, waiter)
    order: list[str] = []
    r.pool.probe(r.now, Probe("SELECT 1", 1.0, lambda *_: order.append("poll"), health=False))
    r.pool.health_check(r.now)
    give_back(r.world, owner, server)
    assert r.backend(server).take_queries() == ["SELECT 1"]
    r.backend(server).send(FakeBackend.result())
    assert order == ["poll"] and server.state is S.CHECKING
    r.answer_probe(server)
    assert waiter.granted == [(0.0, server)]
    assert r.pool.stats.healthchecks == 1  # the poll is not counted


def test_probe_on_idle_server_runs_at_once() -> None:
    """With a server idle, a probe does not queue."""
    r = Rig()
    (server,) = r.warm(1)
    rows: list[Any] = []
    r.pool.probe(r.now, Probe("SELECT 1", 1.0, lambda _n, _p, row, err: rows.append((row, err)), health=False))
    assert server.state is S.CHECKING and not r.pool.probes
    r.backend(server).take()
    r.backend(server).send(FakeBackend.result())
    assert rows == [(["0"], None)]
    assert r.pool.idle == [server]


def test_close_fails_queued_probes() -> None:
    """A closed pool answers its queued probes with an error instead of leaving the monitor waiting."""
    r = Rig(pool_size=1)
    r.warm(1)
    r.pool.checkout(r.now, Recorder(1))
    errors: list[str | None] = []
    r.pool.probe(r.now, Probe("SELECT 1", 1.0, lambda _n, _p, _r, err: errors.append(err), health=False))
    r.pool.close(r.now)
    assert errors == ["the pool was closed"]
    r.pool.probe(r.now, Probe("SELECT 1", 1.0, lambda _n, _p, _r, err: errors.append(err), health=False))
    assert errors == ["the pool was closed", "the pool is closed"]


def test_probe_opens_a_connection_when_none_is_idle() -> None:
    """A busy pool below its size opens a connection for a probe rather than waiting for a checkin."""
    r = Rig(pool_size=2)
    r.warm(1)
    r.pool.checkout(r.now, Recorder(1))
    r.pool.health_check(r.now)
    assert len(r.world.pool_io.opened) == 2
    (fresh,) = r.bring_up()
    assert fresh.state is S.CHECKING
    r.answer_probe(fresh)
    assert r.pool.idle == [fresh] and r.owner.verdicts()[-1] == (True, Reason.HEALTHCHECK_OK)


# -- known bugs --------------------------------------------------------------------------------


def test_probes_queued_during_pause_run_after_resume() -> None:
    """An LSN poll queued while PAUSE held the pool (long enough for an idle check to queue too)
    must run once it resumes, traffic or not: the monitor polls a host again only when its
    previous poll has been answered, and the health verdict only changes through checks."""
    r = Rig(start=True, pool_size=2, min_pool_size=0, idle_healthcheck_delay=1000, idle_healthcheck_interval=2000)
    r.world.advance(0.0)
    r.pool.pause(r.now)
    answered: list[str | None] = []
    r.pool.probe(r.now, Probe("SELECT 1", 1.0, lambda _n, _p, _r, err: answered.append(err), health=False))
    r.world.advance(3.0, step=True)
    assert r.world.pool_io.opened == []  # paused: nothing may connect yet
    assert len(r.pool.probes) == 2  # the poll and the idle health check
    r.pool.resume(r.now)
    r.world.advance(30.0, step=True)
    assert r.world.pool_io.opened  # a connection for the queued probes (one or one each)
    for _ in range(4):  # answer whatever runs, wherever it runs
        r.bring_up()
        for server in [s for s in r.pool.servers.values() if s.state is S.CHECKING]:
            sql = r.backend(server).take_queries()
            reply = be.empty_query_response() + be.ready_for_query(b"I") if sql == [";"] else FakeBackend.result()
            r.backend(server).send(reply)
    assert answered == [None]
    assert not r.pool.probes and r.owner.verdicts() == [(True, Reason.HEALTHCHECK_OK)]
