"""Cluster: read targets, bans and their expiry, rerouting, write waiters during failover, role
election from the replication monitor and lag bans; real Pools, fake clock and backends."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from pgdog_ev.config.model import General
from pgdog_ev.wire import backend as be
from state.cluster import Cluster, RoleCode
from state.events import Kind, Machine, Record
from state.pool import Pool, PoolKey
from state.probe import HEALTHCHECK_SQL
from state.reasons import Reason
from state.replication import LSN_SQL
from state.server import ServerSession, ServerState
from tests.unit.statekit import FakeBackend, Recorder, World, make_settings

S = ServerState
LSN_FIELDS = [be.Field("pg_is_in_recovery"), be.Field("lsn"), be.Field("age")]


@dataclass(eq=False)
class Client(Recorder):
    """A Recorder with what the cluster reads of a client: its last routing decision and pool."""

    route_write: bool = False
    route_replica: bool = False
    pool: Any = None


class Rig:
    """A cluster of real pools (host0, host1, ...) over one fake world."""

    def __init__(
        self,
        roles: tuple[str, ...] = ("primary", "replica"),
        *,
        pool_size: int = 2,
        start: bool = True,
        **general: Any,
    ) -> None:
        settings: dict[str, Any] = dict(
            checkout_timeout=1000,
            ban_timeout=10_000,
            load_balancing_strategy="round_robin",
            read_write_split="include_primary",
            lsn_check_interval=5000,
            lsn_check_timeout=2000,
        )
        settings.update(general)
        self.general = General(**settings)
        self.world = World()
        self.pools: list[Pool] = []
        for i, role in enumerate(roles):
            key = PoolKey("app", "app", f"host{i}", 5432, 0, role)
            pool_settings = make_settings(pool_size=pool_size, checkout_timeout=self.general.checkout_timeout)
            self.pools.append(
                Pool(i + 1, key, pool_settings, self.world.pool_io, self.world.log, self.world.scheduler, 1 << 20)
            )
        self.cluster = Cluster(
            7, "app", "app", self.pools, self.general, self.world.log, self.world.scheduler, self.world.entropy
        )
        self.backends: dict[int, FakeBackend] = {}
        self._next_client = 1
        if start:
            self.cluster.start(self.world.now)

    # -- time, clients, servers ---------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.world.now

    def advance(self, to: float) -> None:
        self.world.advance(to, step=True)

    def client(self, *, write: bool = False, replica: bool = False) -> Client:
        c = Client(self._next_client, route_write=write, route_replica=replica)
        self._next_client += 1
        return c

    def checkout(self, *, write: bool = False, replica: bool = False) -> tuple[Client, ServerSession | None]:
        c = self.client(write=write, replica=replica)
        return c, self.cluster.checkout(self.now, c, write, replica)  # type: ignore[arg-type]

    def backend(self, server: ServerSession) -> FakeBackend:
        if server.id not in self.backends:
            self.backends[server.id] = FakeBackend(self.world, server)
        return self.backends[server.id]

    def connecting(self, pool: Pool) -> list[ServerSession]:
        return [s for s in pool.servers.values() if s.state is S.CONNECTING]

    def bring_up(self, pool: Pool) -> None:
        """Log in every server ``pool`` is connecting."""
        for server in self.connecting(pool):
            self.backend(server).login("md5")

    def refuse(self, pool: Pool, error: str = "connection refused") -> None:
        """Every connection ``pool`` is opening fails."""
        for server in self.connecting(pool):
            server.on_connect_failed(self.now, error)

    # -- the replication monitor's polls --------------------------------------------------------

    def lsn_server(self, pool: Pool) -> ServerSession:
        """The server running ``pool``'s LSN poll (logging in the one opened for it if needed)."""
        self.bring_up(pool)
        (server,) = [s for s in pool.servers.values() if s.state is S.CHECKING]
        assert LSN_SQL in self.backend(server).take_queries()
        return server

    def answer(self, pool: Pool, recovery: bool, lsn: str | None, age: str | None = None) -> None:
        """``pool``'s host answers its LSN poll."""
        server = self.lsn_server(pool)
        row = be.data_row(["t" if recovery else "f", lsn, age])
        self.backend(server).send(
            be.row_description(LSN_FIELDS) + row + be.command_complete("SELECT 1") + be.ready_for_query(b"I")
        )

    def fail_poll(self, pool: Pool, message: str = "terminating connection due to administrator command") -> None:
        server = self.lsn_server(pool)
        self.backend(server).send(be.error_response("57P01", message) + be.ready_for_query(b"I"))

    # -- what happened ----------------------------------------------------------------------------

    def events(self, kind: Kind) -> list[Record]:
        return [r for r in self.world.log.records() if r.kind == kind]

    def bans(self) -> list[tuple[int, int]]:
        """(pool id, reason) of every BAN record."""
        return [(r.id, r.a) for r in self.events(Kind.BAN)]

    def unbans(self) -> list[tuple[int, int]]:
        return [(r.id, r.a) for r in self.events(Kind.UNBAN)]

    def roles(self) -> list[tuple[int, int, int, int]]:
        """(pool id, from, to, reason) of every ROLE record."""
        return [(r.id, r.frm, r.to, r.a) for r in self.events(Kind.ROLE)]

    def targets(self, replica: bool = False) -> set[int]:
        """The ids of the hosts reads can go to now (round_robin visits each in a few picks)."""
        seen = set()
        for _ in range(12):
            pool = self.cluster.pick(self.now, replica)
            if pool is not None:
                seen.add(pool.id)
        return seen


def warm(r: Rig, pool: Pool, n: int = 1) -> list[ServerSession]:
    """``n`` idle servers in ``pool``, each logged in and used once."""
    recs = [Recorder(800 + i) for i in range(n)]
    for rec in recs:
        pool.checkout(r.now, rec)
    r.bring_up(pool)
    out = []
    for rec in recs:
        ((_, server),) = rec.granted
        server.link(r.now, rec)  # type: ignore[arg-type]
        server.release(r.now, session_mode=False)
        out.append(server)
    return out


def elect_first(r: Rig) -> None:
    """Auto roles: the first polls find host0 out of recovery and the others replicating."""
    r.advance(r.now)
    primary, *replicas = r.pools
    r.answer(primary, recovery=False, lsn="0/5000")
    for pool in replicas:
        r.answer(pool, recovery=True, lsn="0/5000", age="0")
    assert r.cluster.primary is primary


# -- shape and roles from the configuration -------------------------------------------------------


def test_fixed_roles_from_configuration() -> None:
    """role = primary marks the primary; with none, the first "auto" host; everything else is a replica."""
    r = Rig(("replica", "primary", "replica"))
    assert r.cluster.primary is r.pools[1]
    assert [p.role for p in r.pools] == ["replica", "primary", "replica"]
    r2 = Rig(("replica", "auto", "auto"))
    assert r2.cluster.primary is r2.pools[1]
    assert [p.role for p in r2.pools] == ["replica", "primary", "replica"]
    assert not r.cluster.detecting and r.cluster.multi


def test_detecting_needs_auto_everywhere_and_lsn_check_delay() -> None:
    """Roles come from the monitor only when every host is "auto" and lsn_check_delay is set."""
    assert Rig(("auto", "auto"), lsn_check_delay=0).cluster.detecting
    assert not Rig(("auto", "auto")).cluster.detecting
    assert not Rig(("primary", "auto"), lsn_check_delay=0).cluster.detecting
    r = Rig(("auto", "auto"), lsn_check_delay=0)
    assert r.cluster.primary is None and [p.role for p in r.pools] == ["auto", "auto"]


def test_monitor_runs_only_for_multi_host_clusters_that_need_it() -> None:
    """The LSN query costs a connection per host: only run it for detection, lag bans or the delay."""
    assert Rig(lsn_check_delay=100).cluster.monitor is not None
    assert Rig(ban_replica_lag=1000).cluster.monitor is not None
    assert Rig(ban_replica_lag_bytes=1000).cluster.monitor is not None
    assert Rig().cluster.monitor is None
    assert Rig(("auto",), lsn_check_delay=100).cluster.monitor is None


def test_login_pool_is_the_primary_when_healthy() -> None:
    """New clients' settings are checked on the primary, or a read host if it is failing."""
    r = Rig(("primary", "replica"))
    assert r.cluster.login_pool() is r.pools[0]
    r.pools[0].healthy = False
    assert r.cluster.login_pool() is r.pools[1]


# -- read targets ----------------------------------------------------------------------------------


P, R1, R2 = 1, 2, 3
THREE = ("primary", "replica", "replica")


@pytest.mark.parametrize(
    ("split", "banned", "replica", "expected"),
    [
        ("include_primary", (), False, {P, R1, R2}),
        ("include_primary", (R1,), False, {P, R2}),
        ("include_primary", (P,), False, {R1, R2}),
        ("include_primary", (), True, {R1, R2}),
        ("exclude_primary", (), False, {R1, R2}),
        ("exclude_primary", (R1,), False, {R2}),
        ("exclude_primary", (R1, R2), False, {P}),  # no replica left: the primary rather than nothing
        ("include_primary_if_replica_banned", (), False, {R1, R2}),
        ("include_primary_if_replica_banned", (R2,), False, {P, R1}),
        ("include_primary_if_replica_banned", (R1, R2), False, {P}),
        ("include_primary_if_replica_banned", (), True, {R1, R2}),
        ("prefer_primary", (), False, {P}),
        ("prefer_primary", (P,), False, {R1, R2}),
        ("prefer_primary", (), True, {R1, R2}),
        ("prefer_primary", (R1,), True, {R2}),
        ("prefer_primary", (R1, R2), True, {P}),
    ],
)
def test_read_targets(split: str, banned: tuple[int, ...], replica: bool, expected: set[int]) -> None:
    """Where reads may go for each read_write_split, with some hosts banned (manually, so nothing lifts)."""
    r = Rig(THREE, read_write_split=split)
    for pid in banned:
        r.cluster.ban(r.now, r.pools[pid - 1], Reason.BAN_MANUAL)
    assert r.targets(replica) == expected


def test_reads_balanced_round_robin_over_targets() -> None:
    """Checkouts of reads follow the strategy over the targets, counting reads per pool."""
    r = Rig(THREE)
    got = []
    for _ in range(6):
        client, _ = r.checkout()
        got.append(client.pool.id)
    assert sorted(got) == [P, P, R1, R1, R2, R2]
    assert [p.stats.reads for p in r.pools] == [2, 2, 2]
    assert [p.stats.writes for p in r.pools] == [0, 0, 0]


def test_writes_go_to_the_primary_even_when_banned() -> None:
    """A ban takes a host out of the read rotation only: writes have nowhere else to go."""
    r = Rig(THREE)
    r.cluster.ban(r.now, r.pools[0], Reason.BAN_MANUAL)
    for _ in range(3):
        client, _ = r.checkout(write=True)
        assert client.pool is r.pools[0]
    assert r.pools[0].stats.writes == 3
    assert len(r.pools[0].waiters) == 3 and not r.pools[1].waiters and not r.pools[2].waiters
    assert P not in r.targets()


def test_replica_only_cluster_sends_writes_where_reads_go() -> None:
    """No primary configured: writes are not refused by the proxy, the server refuses them."""
    r = Rig(("replica", "replica"))
    assert r.cluster.primary is None
    client, _ = r.checkout(write=True)
    assert client.pool in r.pools and client.failed == []


def test_single_host_checkout_goes_to_it_whatever_its_role() -> None:
    """A lone host takes everything; no balancing, no bans."""
    r = Rig(("replica",))
    for write in (True, False):
        client, _ = r.checkout(write=write)
        assert client.pool is r.pools[0]


# -- bans from health ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "ban_reason"),
    [
        (Reason.CONNECT_FAILED, Reason.BAN_CONNECT_ERROR),
        (Reason.LOGIN_TIMEOUT, Reason.BAN_CONNECT_ERROR),
        (Reason.HEALTHCHECK_FAILED, Reason.BAN_HEALTHCHECK),
        (Reason.HEALTHCHECK_TIMEOUT, Reason.BAN_HEALTHCHECK),
    ],
)
def test_health_failure_bans_with_its_reason(reason: Reason, ban_reason: Reason) -> None:
    """The BAN record says why (a = reason), and the ban lasts ban_timeout."""
    r = Rig(ban_timeout=3000)
    r.advance(2.0)
    r.cluster.pool_health(r.now, r.pools[1], False, reason, "boom")
    ban = r.cluster.bans[R1]
    assert (ban.reason, ban.since, ban.until, ban.error) == (ban_reason, 2.0, 5.0, "boom")
    (rec,) = r.events(Kind.BAN)
    assert (rec.machine, rec.id, rec.a, rec.b) == (Machine.POOL, R1, ban_reason, 7)
    assert r.pools[1].banned


def test_connect_failure_of_a_real_pool_bans_it() -> None:
    """End to end: a refused connection reaches the cluster through the pool and bans the host."""
    r = Rig()
    client, _ = r.checkout()
    pool = client.pool
    r.refuse(pool)
    assert r.bans() == [(pool.id, Reason.BAN_CONNECT_ERROR)]
    assert not pool.healthy


def test_health_ok_never_bans() -> None:
    """Good evidence only ever helps a host (unbanning is the tick's job, at expiry)."""
    r = Rig()
    r.cluster.pool_health(r.now, r.pools[1], True, Reason.HEALTHCHECK_OK, None)
    assert r.cluster.bans == {} and r.bans() == []


def test_no_ban_in_a_single_host_cluster() -> None:
    """With one host a ban would only turn a failing host into no host."""
    r = Rig(("primary",))
    r.cluster.pool_health(r.now, r.pools[0], False, Reason.CONNECT_FAILED, "refused")
    assert r.cluster.bans == {} and r.bans() == []


def test_no_ban_when_ban_timeout_is_zero() -> None:
    """ban_timeout = 0 turns bans off."""
    r = Rig(ban_timeout=0)
    r.cluster.pool_health(r.now, r.pools[1], False, Reason.CONNECT_FAILED, "refused")
    assert r.cluster.bans == {} and r.bans() == []


def test_repeated_failures_do_not_extend_or_duplicate_a_ban() -> None:
    """The first failure sets the expiry; more failures while banned add neither records nor time."""
    r = Rig(ban_timeout=1000)
    r.cluster.pool_health(0.0, r.pools[1], False, Reason.CONNECT_FAILED, "refused")
    r.advance(0.5)
    r.cluster.pool_health(r.now, r.pools[1], False, Reason.HEALTHCHECK_FAILED, "again")
    r.cluster.ban(r.now, r.pools[1], Reason.BAN_LAG)
    assert r.bans() == [(R1, Reason.BAN_CONNECT_ERROR)]
    assert r.cluster.bans[R1].until == 1.0 and r.cluster.bans[R1].error == "refused"


# -- manual bans and expiry ------------------------------------------------------------------------


def test_manual_ban_never_expires_and_unban_lifts_it() -> None:
    """BAN from the admin console holds until UNBAN, whatever the host's health."""
    r = Rig(ban_timeout=1000)
    r.cluster.ban(r.now, r.pools[1], Reason.BAN_MANUAL)
    assert r.cluster.bans[R1].until is None
    r.advance(100.0)
    assert R1 in r.cluster.bans and r.unbans() == []
    assert r.cluster.unban(r.now, r.pools[1], Reason.UNBAN_MANUAL) is True
    assert R1 not in r.cluster.bans
    assert r.unbans() == [(R1, Reason.UNBAN_MANUAL)]
    assert r.cluster.unban(r.now, r.pools[1], Reason.UNBAN_MANUAL) is False  # nothing to lift
    assert len(r.unbans()) == 1


def test_manual_ban_replaces_an_automatic_one_but_not_the_reverse() -> None:
    """An operator's BAN must outlast the automatic expiry; a failure must not shorten a manual ban."""
    r = Rig(THREE, ban_timeout=1000)
    r.cluster.pool_health(r.now, r.pools[1], False, Reason.CONNECT_FAILED, "refused")
    r.cluster.ban(r.now, r.pools[1], Reason.BAN_MANUAL)
    assert r.cluster.bans[R1].until is None and r.cluster.bans[R1].reason is Reason.BAN_MANUAL
    r.cluster.ban(r.now, r.pools[1], Reason.BAN_MANUAL)
    r.cluster.ban(r.now, r.pools[2], Reason.BAN_MANUAL)
    r.cluster.pool_health(r.now, r.pools[2], False, Reason.CONNECT_FAILED, "refused")
    assert r.cluster.bans[R2].until is None
    assert r.bans() == [(R1, Reason.BAN_CONNECT_ERROR), (R1, Reason.BAN_MANUAL), (R2, Reason.BAN_MANUAL)]


def test_timed_ban_lifts_at_expiry_when_healthy() -> None:
    """The ban tick lifts an expired ban of a host that answers, within one tick of the expiry."""
    r = Rig(THREE, ban_timeout=1000)
    r.cluster.pool_health(r.now, r.pools[1], False, Reason.HEALTHCHECK_FAILED, "boom")
    r.advance(0.99)
    assert R1 in r.cluster.bans
    r.advance(1.5)
    assert R1 not in r.cluster.bans
    (rec,) = r.events(Kind.UNBAN)
    assert (rec.id, rec.a, rec.b) == (R1, Reason.UNBAN_EXPIRED, 7)
    assert 1.0 <= rec.now_ns / 1e9 < 1.0 + 0.34


def test_timed_ban_stays_while_the_host_is_unhealthy() -> None:
    """At expiry a host that still fails stays out; it comes back at the first tick after it answers."""
    r = Rig(THREE, ban_timeout=1000)
    client, _ = r.checkout()
    pool = client.pool
    r.refuse(pool)
    assert not pool.healthy and pool.id in r.cluster.bans
    r.advance(5.0)
    assert pool.id in r.cluster.bans and r.unbans() == []
    pool.health_check(r.now)  # the idle check reconnects, and this time it works
    r.bring_up(pool)
    assert pool.healthy
    r.advance(5.4)
    assert r.unbans() == [(pool.id, Reason.UNBAN_EXPIRED)]


def test_timed_ban_stays_while_lagging() -> None:
    """A host within health but over the lag limits is not unbanned at expiry."""
    r = Rig(THREE, ban_timeout=1000)
    r.cluster.ban(r.now, r.pools[1], Reason.BAN_LAG)
    r.cluster.lag_ok[R1] = False
    r.advance(3.0)
    assert R1 in r.cluster.bans
    r.cluster.lag_ok[R1] = True
    r.advance(3.4)
    assert R1 not in r.cluster.bans


def test_every_read_target_banned_clears_automatic_bans_only() -> None:
    """Better a suspect host than none: automatic bans lift (UNBAN_ALL_BANNED), manual ones stay."""
    r = Rig(THREE)
    r.cluster.ban(r.now, r.pools[0], Reason.BAN_MANUAL)
    r.cluster.pool_health(r.now, r.pools[1], False, Reason.CONNECT_FAILED, "refused")
    r.cluster.pool_health(r.now, r.pools[2], False, Reason.HEALTHCHECK_TIMEOUT, "slow")
    client, _ = r.checkout()
    assert client.pool.id in (R1, R2) and client.failed == []
    assert sorted(r.unbans()) == [(R1, Reason.UNBAN_ALL_BANNED), (R2, Reason.UNBAN_ALL_BANNED)]
    assert set(r.cluster.bans) == {P}


def test_every_host_manually_banned_fails_reads_clearly() -> None:
    """Nothing automatic to lift: reads fail with a message saying why, instead of hanging."""
    r = Rig()
    for pool in r.pools:
        r.cluster.ban(r.now, pool, Reason.BAN_MANUAL)
    client, server = r.checkout()
    assert server is None
    assert client.failed == [(0.0, "no host is available for reads: every host is banned", False)]
    assert r.unbans() == []


def test_ban_moves_queued_reads_and_leaves_lent_connections() -> None:
    """Reads queued at a host being banned go to another host at once; connections already lent
    stay with their clients."""
    r = Rig(THREE, pool_size=1, read_write_split="exclude_primary")
    (lent,) = warm(r, r.pools[1])
    holder = Recorder(99)
    assert r.pools[1].checkout(r.now, holder) is lent
    lent.link(r.now, holder)  # type: ignore[arg-type]
    waiting = r.client()
    waiting.pool = r.pools[1]
    r.pools[1].checkout(r.now, waiting)  # type: ignore[arg-type]
    (spare,) = warm(r, r.pools[2])
    r.cluster.ban(r.now, r.pools[1], Reason.BAN_MANUAL)
    assert not r.pools[1].waiters
    assert waiting.pool is r.pools[2] and waiting.granted == [(0.0, spare)] and waiting.failed == []
    assert lent.state is S.ACTIVE


def test_ban_closes_idle_connections() -> None:
    """A banned host's idle connections may be as broken as the one that failed: close them."""
    r = Rig(THREE)
    servers = warm(r, r.pools[1], 2)
    r.cluster.pool_health(r.now, r.pools[1], False, Reason.HEALTHCHECK_TIMEOUT, "slow")
    assert not r.pools[1].idle
    for server in servers:
        assert server.state is S.CLOSED
        assert r.world.transitions(Machine.SERVER, server.id)[-1].a == Reason.BAN_HEALTHCHECK


# -- rerouting -------------------------------------------------------------------------------------


def test_reroute_moves_reads_keeping_their_deadline() -> None:
    """A read that waited at a failing host keeps its original checkout_timeout on the next host."""
    r = Rig(THREE, pool_size=1, checkout_timeout=1000)
    client, _ = r.checkout()
    first = client.pool
    assert client.wait_deadline == 1.0
    for pool in r.pools:  # every other host is busy, so the moved client has to wait again
        if pool is not first:
            pool.checkout(r.now, Recorder(90 + pool.id))
    r.advance(0.6)
    r.refuse(first)
    assert client.pool is not first and client.failed == []
    assert client.wait_deadline == 1.0 and client in client.pool.waiters
    r.advance(0.999)
    assert client.failed == []
    r.advance(1.0)
    assert len(client.failed) == 1 and client.failed[0][0] == 1.0 and client.failed[0][2] is True


def test_reroute_without_bans_also_moves_reads() -> None:
    """ban_timeout = 0: no ban, yet the pool's waiters still go elsewhere through reroute."""
    r = Rig(THREE, ban_timeout=0)
    client, _ = r.checkout()
    first = client.pool
    r.refuse(first)
    assert r.bans() == []
    assert client.pool is not first and client.failed == [] and client in client.pool.waiters


def test_reroute_fails_reads_when_no_other_host() -> None:
    """Two hosts, the other manually banned: the moved read fails with the pool's error."""
    r = Rig(("primary", "replica"), ban_timeout=0, read_write_split="include_primary")
    r.cluster.ban(r.now, r.pools[0], Reason.BAN_MANUAL)
    client, _ = r.checkout()
    assert client.pool is r.pools[1]
    r.refuse(r.pools[1], "no route to host")
    assert client.failed == [(0.0, "could not connect to the server: no route to host", False)]


def test_writes_fail_when_the_fixed_primary_cannot_connect() -> None:
    """Fixed roles: no other host can take a write, so it fails at once with the connect error."""
    r = Rig(THREE)
    client, _ = r.checkout(write=True)
    assert client.pool is r.pools[0]
    r.refuse(r.pools[0])
    assert client.failed == [(0.0, "could not connect to the server: connection refused", False)]
    assert client.pool is r.pools[0]
    assert r.bans() == [(P, Reason.BAN_CONNECT_ERROR)]


def test_writes_wait_for_a_primary_when_detecting() -> None:
    """Auto roles: a write the primary's pool cannot serve waits for the primary (or a new one)."""
    r = Rig(("auto", "auto"), lsn_check_delay=0)
    elect_first(r)
    primary = r.pools[0]
    for server in list(primary.idle):
        server.terminate(r.now, Reason.IDLE_TIMEOUT)
    client, _ = r.checkout(write=True)
    r.refuse(primary)
    assert client.failed == [] and list(r.cluster.write_waiters) == [client]
    assert [(r_.id, r_.a, r_.b) for r_ in r.events(Kind.ENQUEUE) if r_.machine == Machine.LB] == [(7, client.id, 1)]
    # The host answers again (the idle check reconnects): writes go to it.
    r.advance(0.5)
    primary.health_check(r.now)
    r.bring_up(primary)
    assert not r.cluster.write_waiters and list(primary.waiters) == [client]
    (server,) = [s for s in primary.servers.values() if s.state is S.CHECKING]
    assert r.backend(server).take_queries() == [";"]  # the check runs before the write gets it
    r.backend(server).send(be.empty_query_response() + be.ready_for_query(b"I"))
    assert client.granted == [(0.5, server)] and client.failed == []


# -- write waiters -----------------------------------------------------------------------------------


def test_write_waiters_time_out_at_checkout_timeout() -> None:
    """No primary while detecting: writes queue for checkout_timeout, then fail saying why."""
    r = Rig(("auto", "auto"), lsn_check_delay=60_000, checkout_timeout=1500)
    r.advance(0.2)
    client, server = r.checkout(write=True)
    assert server is None and list(r.cluster.write_waiters) == [client]
    assert client.wait_started == 0.2 and client.wait_deadline == pytest.approx(1.7)
    r.advance(1.69)
    assert client.failed == []
    r.advance(1.7)
    assert client.failed == [(1.7, "checkout timeout: no primary is available for writes", True)]
    assert not r.cluster.write_waiters
    (rec,) = [e for e in r.events(Kind.TIMEOUT) if e.machine == Machine.LB]
    assert (rec.id, rec.a) == (7, client.id)


def test_write_waiters_time_out_in_deadline_order() -> None:
    """Several writers: each fails at its own deadline, the timer re-arms for the next."""
    r = Rig(("auto", "auto"), lsn_check_delay=60_000, checkout_timeout=1000)
    a, _ = r.checkout(write=True)
    r.advance(0.4)
    b, _ = r.checkout(write=True)
    r.advance(1.0)
    assert len(a.failed) == 1 and b.failed == []
    r.advance(1.4)
    assert len(b.failed) == 1 and b.failed[0][0] == 1.4


def test_write_waiter_cancel() -> None:
    """A client that gives up (cancel, disconnect) leaves the queue with a DEQUEUE record."""
    r = Rig(("auto", "auto"), lsn_check_delay=60_000)
    client, _ = r.checkout(write=True)
    r.cluster.cancel_wait(r.now, client)  # type: ignore[arg-type]
    r.cluster.cancel_wait(r.now, client)  # type: ignore[arg-type]
    assert not r.cluster.write_waiters
    assert [(e.id, e.a) for e in r.events(Kind.DEQUEUE) if e.machine == Machine.LB] == [(7, client.id)]
    r.advance(5.0)
    assert client.failed == []


def test_write_waiters_dispatched_when_a_primary_is_elected() -> None:
    """The moment the monitor sees a host out of recovery, queued writes go there."""
    r = Rig(("auto", "auto"), lsn_check_delay=500, checkout_timeout=2000)
    a, _ = r.checkout(write=True)
    b, _ = r.checkout(write=True)
    r.advance(0.5)
    r.answer(r.pools[1], recovery=True, lsn="0/100", age="0")
    assert r.cluster.primary is None and len(r.cluster.write_waiters) == 2
    r.answer(r.pools[0], recovery=False, lsn="0/200")
    assert r.cluster.primary is r.pools[0] and not r.cluster.write_waiters
    assert a.pool is r.pools[0] and b.pool is r.pools[0]
    assert r.pools[0].stats.writes == 2
    # One got the poll's connection; the other is queued with its original deadline.
    granted = [c for c in (a, b) if c.granted]
    assert granted == [a]
    assert b in r.pools[0].waiters and b.wait_deadline == 2.0
    r.advance(10.0)
    assert a.failed == [] and len(b.failed) == 1  # the cluster's own timer was cancelled
    assert "no server connection available" in b.failed[0][1]


def test_close_fails_write_waiters() -> None:
    """A reload or shutdown must not leave queued writes hanging."""
    r = Rig(("auto", "auto"), lsn_check_delay=60_000)
    client, _ = r.checkout(write=True)
    r.cluster.close(r.now)
    assert client.failed == [(0.0, "the pool was closed (configuration reload or shutdown)", False)]
    assert r.cluster.monitor is None
    r.advance(100.0)
    assert len(client.failed) == 1


# -- election ----------------------------------------------------------------------------------------


def test_host_out_of_recovery_becomes_primary() -> None:
    """The first polls: the host out of recovery is primary, the others replicas; ROLE records say so."""
    r = Rig(("auto", "auto", "auto"), lsn_check_delay=0)
    elect_first(r)
    assert [p.role for p in r.pools] == ["primary", "replica", "replica"]
    assert sorted(r.roles()) == [
        (P, RoleCode.UNKNOWN, RoleCode.PRIMARY, Reason.ROLE_PRIMARY),
        (R1, RoleCode.UNKNOWN, RoleCode.REPLICA, Reason.ROLE_REPLICA),
        (R2, RoleCode.UNKNOWN, RoleCode.REPLICA, Reason.ROLE_REPLICA),
    ]
    assert all(e.b == 7 for e in r.events(Kind.ROLE))


def test_primary_stays_while_out_of_recovery() -> None:
    """Re-polls that confirm the roles change nothing and log nothing."""
    r = Rig(("auto", "auto"), lsn_check_delay=0)
    elect_first(r)
    before = len(r.roles())
    r.advance(5.0)
    r.answer(r.pools[0], recovery=False, lsn="0/6000")
    r.answer(r.pools[1], recovery=True, lsn="0/6000", age="0")
    assert r.cluster.primary is r.pools[0] and len(r.roles()) == before


def test_primary_stays_when_another_host_also_leaves_recovery() -> None:
    """Split brain with a current primary: it keeps the role (no flapping), even if the other is
    ahead; the other is fenced (no role, no reads: its data diverged)."""
    r = Rig(("auto", "auto"), lsn_check_delay=0)
    elect_first(r)
    r.advance(5.0)
    r.answer(r.pools[1], recovery=False, lsn="0/9000")
    r.answer(r.pools[0], recovery=False, lsn="0/6000")
    assert r.cluster.primary is r.pools[0]
    assert r.pools[1].role == "auto" and r.cluster.fenced == {r.pools[1].id}
    assert r.pools[1] not in r.cluster._read_targets(False)


def test_failed_poll_of_the_primary_demotes_it_and_writes_wait() -> None:
    """A primary that cannot be polled is not trusted with writes until someone answers as primary."""
    r = Rig(("auto", "auto"), lsn_check_delay=0)
    elect_first(r)
    r.advance(5.0)
    r.fail_poll(r.pools[0])
    assert r.cluster.primary is None and r.pools[0].role == "auto"
    assert r.roles()[-1] == (P, RoleCode.PRIMARY, RoleCode.UNKNOWN, Reason.ROLE_LOST)
    client, server = r.checkout(write=True)
    assert server is None and list(r.cluster.write_waiters) == [client]
    # The replica is promoted: the next poll finds it out of recovery.
    r.answer(r.pools[1], recovery=False, lsn="0/7000")
    assert r.cluster.primary is r.pools[1]
    assert r.roles()[-1] == (R1, RoleCode.REPLICA, RoleCode.PRIMARY, Reason.ROLE_PRIMARY)
    assert client.pool is r.pools[1] and not r.cluster.write_waiters


def test_failed_poll_of_a_replica_keeps_its_role() -> None:
    """A replica's failed poll says nothing about who the primary is."""
    r = Rig(("auto", "auto"), lsn_check_delay=0)
    elect_first(r)
    before = r.roles()
    r.advance(5.0)
    r.fail_poll(r.pools[1])
    assert r.cluster.primary is r.pools[0] and r.pools[1].role == "replica" and r.roles() == before


def test_highest_lsn_wins_among_hosts_out_of_recovery() -> None:
    """The primary is lost and two hosts are out of recovery: the one furthest ahead in WAL is chosen."""
    r = Rig(("auto", "auto", "auto"), lsn_check_delay=0)
    elect_first(r)
    r.advance(5.0)
    r.answer(r.pools[1], recovery=False, lsn="0/8000")
    r.answer(r.pools[2], recovery=False, lsn="1/0")
    assert r.cluster.primary is r.pools[0]
    r.fail_poll(r.pools[0])
    assert r.cluster.primary is r.pools[2]
    # The other host out of recovery is fenced until it rejoins as a replica.
    assert [p.role for p in r.pools] == ["auto", "auto", "primary"]
    assert r.cluster.fenced == {r.pools[1].id}


def test_demoted_primary_back_in_recovery_becomes_replica() -> None:
    """The old primary rejoins as a replica of the new one."""
    r = Rig(("auto", "auto"), lsn_check_delay=0)
    elect_first(r)
    r.advance(5.0)
    r.fail_poll(r.pools[0])
    r.answer(r.pools[1], recovery=False, lsn="0/7000")
    r.advance(10.0)
    r.answer(r.pools[0], recovery=True, lsn="0/7000", age="0")
    assert [p.role for p in r.pools] == ["replica", "primary"]
    assert r.roles()[-1] == (P, RoleCode.UNKNOWN, RoleCode.REPLICA, Reason.ROLE_REPLICA)


# -- lag bans ----------------------------------------------------------------------------------------


def lag_rig(**general: Any) -> Rig:
    r = Rig(("primary", "replica"), **{"lsn_check_delay": 0, "ban_timeout": 1000, **general})
    r.advance(0.0)
    return r


@pytest.mark.parametrize(("replica_lsn", "behind", "banned"), [("0/2001", 4095, False), ("0/2000", 4096, True)])
def test_lag_in_bytes_bans_the_replica(replica_lsn: str, behind: int, banned: bool) -> None:
    """ban_replica_lag_bytes: a replica that far behind (or further) leaves the read rotation."""
    r = lag_rig(ban_replica_lag_bytes=4096)
    r.answer(r.pools[0], recovery=False, lsn="0/3000")
    r.answer(r.pools[1], recovery=True, lsn=replica_lsn, age="0.1")
    assert r.cluster.lag_ok[R1] is not banned
    if banned:
        assert r.bans() == [(R1, Reason.BAN_LAG)]
        assert r.cluster.bans[R1].error == f"replication lag {behind} bytes"
        assert r.cluster.bans[R1].until == 1.0
    else:
        assert r.cluster.bans == {}


def test_lag_in_seconds_counts_only_while_behind() -> None:
    """ban_replica_lag (ms): an old replay on a caught-up replica is an idle primary, not lag."""
    r = lag_rig(ban_replica_lag=5000)
    r.answer(r.pools[0], recovery=False, lsn="0/3000")
    r.answer(r.pools[1], recovery=True, lsn="0/3000", age="60")
    assert r.cluster.bans == {}
    r.advance(5.0)
    r.answer(r.pools[1], recovery=True, lsn="0/3000", age="4.9")
    r.answer(r.pools[0], recovery=False, lsn="0/3001")  # now 1 byte behind, for 4.9 s
    assert r.cluster.bans == {}
    r.advance(10.0)
    r.answer(r.pools[1], recovery=True, lsn="0/3000", age="5")
    assert r.bans() == [(R1, Reason.BAN_LAG)]


def test_lag_ban_lifts_after_expiry_once_caught_up() -> None:
    """At expiry a still-lagging replica stays banned; it returns at the first tick after it catches up."""
    r = lag_rig(ban_replica_lag_bytes=100)
    r.answer(r.pools[0], recovery=False, lsn="0/3000")
    r.answer(r.pools[1], recovery=True, lsn="0/1000", age="1")
    assert R1 in r.cluster.bans
    r.advance(4.9)
    assert R1 in r.cluster.bans
    r.advance(5.0)
    r.answer(r.pools[1], recovery=True, lsn="0/3000", age="1")
    assert r.cluster.lag_ok[R1] is True
    r.advance(5.4)
    assert r.unbans() == [(R1, Reason.UNBAN_EXPIRED)]


def test_primary_is_never_lag_banned() -> None:
    """Lag is measured against the primary; the primary itself is always within limits."""
    r = lag_rig(ban_replica_lag_bytes=1)
    r.answer(r.pools[1], recovery=True, lsn="0/9000", age="1")
    r.answer(r.pools[0], recovery=False, lsn="0/1")
    assert r.cluster.lag_ok[P] is True and P not in r.cluster.bans


def test_no_lag_ban_without_ban_timeout() -> None:
    """ban_timeout = 0 turns lag bans off too, though the verdict is still recorded."""
    r = lag_rig(ban_replica_lag_bytes=1, ban_timeout=0)
    r.answer(r.pools[0], recovery=False, lsn="0/3000")
    r.answer(r.pools[1], recovery=True, lsn="0/1000", age="1")
    assert r.cluster.bans == {} and r.cluster.lag_ok[R1] is False


# -- known bugs ----------------------------------------------------------------------------------------


def test_write_queued_at_demoted_primary_waits_instead_of_going_to_a_replica() -> None:
    """Failover: the primary's poll fails, then its pool cannot connect for a queued write. The
    write must wait for the next primary; it must never be lent a replica's connection."""
    r = Rig(("auto", "auto"), pool_size=1, lsn_check_delay=0, ban_timeout=0, checkout_timeout=30_000)
    elect_first(r)
    primary, replica = r.pools
    holder, lent = r.checkout(write=True)
    assert holder.pool is primary and lent is not None
    lent.link(r.now, holder)  # type: ignore[arg-type]
    writer, _ = r.checkout(write=True)
    assert writer in primary.waiters
    r.advance(5.0)  # the next polls: the primary's queues behind its busy connection
    r.answer(replica, recovery=True, lsn="0/5000", age="0")
    assert len(primary.probes) == 1
    (busy,) = primary.servers.values()
    busy.on_closed(r.now)  # the primary goes away: its connection drops...
    r.refuse(primary)  # ...and the reconnect is refused
    assert r.cluster.primary is None  # the failed poll demoted it
    assert writer.pool is not replica  # fails: the write was routed to the replica...
    assert writer.granted == []  # ...and lent its connection
    assert list(r.cluster.write_waiters) == [writer]


def test_single_auto_host_with_lsn_check_delay_serves_queries() -> None:
    """One host, role "auto", lsn_check_delay set globally: the host must still take queries."""
    r = Rig(("auto",), lsn_check_delay=0, checkout_timeout=1000)
    r.advance(0.0)
    for write in (True, False):
        client, _ = r.checkout(write=write)
        assert client.pool is r.pools[0] and not r.cluster.write_waiters
    r.advance(2.0)
    assert [e for e in r.events(Kind.TIMEOUT) if e.machine == Machine.LB] == []


def test_lowered_checkout_timeout_applies_to_the_next_write_waiter() -> None:
    """Like the pool's queue: the timer follows the earliest deadline, not the first waiter's."""
    r = Rig(("auto", "auto"), lsn_check_delay=60_000, checkout_timeout=5000)
    first, _ = r.checkout(write=True)
    lowered = dataclasses.replace(r.general, checkout_timeout=1000)
    r.cluster.set_pools(r.now, r.pools, lowered)
    r.advance(0.1)
    second, _ = r.checkout(write=True)
    assert second.wait_deadline == pytest.approx(1.1)
    r.advance(1.2)
    assert len(second.failed) == 1 and second.failed[0][2] is True
    assert first.failed == []


def test_host_just_banned_keeps_its_ban_while_its_reads_move() -> None:
    """Both hosts fail in turn. Moving the second one's reads may lift the first one's ban (it is
    the only place left), but the host that has just failed must stay banned."""
    r = Rig(("primary", "replica"), ban_timeout=10_000)
    r.cluster.pool_health(r.now, r.pools[1], False, Reason.CONNECT_FAILED, "refused")
    r.advance(1.0)
    client, _ = r.checkout(write=False)  # the replica is banned: the read goes to the primary
    assert client.pool is r.pools[0]
    r.refuse(r.pools[0])  # the primary fails: ban it, move its queued read
    assert client.pool is r.pools[1] and client.failed == []
    assert (P, Reason.BAN_CONNECT_ERROR) in r.bans()
    assert P in r.cluster.bans


def test_closing_a_pool_during_a_health_check_does_not_ban_it() -> None:
    """A reload removes a host while its idle check runs: the cancelled check is not evidence
    against the host, and the cluster keeps no ban for a pool it dropped."""
    r = Rig(THREE)
    removed = r.pools[2]
    (server,) = warm(r, removed)
    removed.health_check(r.now)
    assert server.state is S.CHECKING
    r.cluster.set_pools(r.now, r.pools[:2], r.general)
    removed.close(r.now, Reason.RELOAD)
    assert r.bans() == []
    assert removed.id not in r.cluster.bans


def test_primary_report_does_not_ban_a_replica_on_its_stale_position() -> None:
    """Polls of all hosts run together; whichever answers first, a replica that keeps up with a
    primary writing 8 kB per interval must not be banned for 4 kB of lag."""
    r = lag_rig(ban_replica_lag_bytes=4096)
    r.answer(r.pools[0], recovery=False, lsn="0/3000")
    r.answer(r.pools[1], recovery=True, lsn="0/3000", age="0")
    r.advance(5.0)
    r.answer(r.pools[0], recovery=False, lsn="0/5000")  # the primary answers this round first...
    r.answer(r.pools[1], recovery=True, lsn="0/5000", age="0")  # ...the replica has kept up
    assert r.bans() == []


# -- require_healthcheck_on_discovery --------------------------------------------------------------


def checked(r: Rig, pool: Pool, ok: bool = True) -> None:
    """``pool``'s pending health check gets its connection and the host answers ``;`` (or fails)."""
    r.bring_up(pool)
    (server,) = [s for s in pool.servers.values() if s.state is S.CHECKING]
    assert r.backend(server).take_queries() == [HEALTHCHECK_SQL]
    if ok:
        r.backend(server).send(be.empty_query_response() + be.ready_for_query(b"I"))
    else:
        r.backend(server).send(
            be.error_response("57P03", "the database system is starting up") + be.ready_for_query(b"I")
        )


def test_discovered_host_takes_no_reads_until_its_first_check_passes() -> None:
    """A host a reload added is banned at once (no expiry, NULL in SHOW BANS) and checked at once;
    logging in is not enough, the answered check lifts the ban and reads reach it."""
    r = Rig(THREE, require_healthcheck_on_discovery=True)
    new = r.pools[2]
    r.cluster.discovered(r.now, [new])
    ban = r.cluster.bans[R2]
    assert (ban.reason, ban.until) == (Reason.BAN_DISCOVERY, float("inf"))
    assert r.bans() == [(R2, Reason.BAN_DISCOVERY)]
    assert R2 not in r.targets() and R2 not in r.targets(replica=True)
    assert len(r.connecting(new)) == 1  # the check needs a connection: opened now
    r.bring_up(new)
    assert R2 in r.cluster.bans and r.unbans() == []  # a login is not a health check
    checked(r, new)
    assert r.unbans() == [(R2, Reason.UNBAN_HEALTHCHECK)]
    assert R2 in r.targets(replica=True)


def test_discovered_host_failing_its_check_stays_out_until_one_passes() -> None:
    """A failed first check neither turns the ban into a timed one nor lets ban_timeout lift it."""
    r = Rig(THREE, require_healthcheck_on_discovery=True, ban_timeout=1000)
    new = r.pools[2]
    r.cluster.discovered(r.now, [new])
    checked(r, new, ok=False)
    assert not new.healthy
    assert r.cluster.bans[R2].reason is Reason.BAN_DISCOVERY and r.bans() == [(R2, Reason.BAN_DISCOVERY)]
    r.advance(30.0)
    assert R2 in r.cluster.bans and r.unbans() == []
    new.health_check(r.now)  # the idle check tries again; this time the host answers
    checked(r, new)
    assert r.unbans() == [(R2, Reason.UNBAN_HEALTHCHECK)]


def test_discovery_ban_is_off_by_default_and_where_bans_are() -> None:
    """Nothing happens without the setting, in a one-host cluster, or with bans off (ban_timeout 0)."""
    for roles, general in (
        (THREE, {}),
        (("primary",), {"require_healthcheck_on_discovery": True}),
        (THREE, {"require_healthcheck_on_discovery": True, "ban_timeout": 0}),
    ):
        r = Rig(roles, **general)
        r.cluster.discovered(r.now, [r.pools[-1]])
        assert r.cluster.bans == {} and r.bans() == [], (roles, general)
        assert r.connecting(r.pools[-1]) == [], (roles, general)


def test_discovery_ban_lifts_when_every_read_host_is_banned() -> None:
    """It is an automatic ban: better an unchecked host than failing every read."""
    r = Rig(require_healthcheck_on_discovery=True)
    r.cluster.ban(r.now, r.pools[0], Reason.BAN_MANUAL)
    r.cluster.discovered(r.now, [r.pools[1]])
    client, _ = r.checkout()
    assert client.pool is r.pools[1] and client.failed == []
    assert r.unbans() == [(R1, Reason.UNBAN_ALL_BANNED)]


def test_manual_ban_of_a_discovered_host_outlasts_its_check() -> None:
    """An operator's BAN on a host still waiting for its check holds after the check passes."""
    r = Rig(THREE, require_healthcheck_on_discovery=True)
    new = r.pools[2]
    r.cluster.discovered(r.now, [new])
    r.cluster.ban(r.now, new, Reason.BAN_MANUAL)
    checked(r, new)
    assert r.cluster.bans[R2].reason is Reason.BAN_MANUAL and r.unbans() == []


def test_discovered_host_found_lagging_is_banned_for_lag_when_its_check_passes() -> None:
    """A replica still catching up answers its check, but the monitor already judged its lag:
    the discovery ban becomes a lag ban instead of letting it serve stale reads."""
    r = Rig(THREE, require_healthcheck_on_discovery=True)
    new = r.pools[2]
    r.cluster.discovered(r.now, [new])
    r.cluster.lag_ok[R2] = False
    checked(r, new)
    assert r.bans() == [(R2, Reason.BAN_DISCOVERY), (R2, Reason.BAN_LAG)]
    assert r.unbans() == [(R2, Reason.UNBAN_HEALTHCHECK)]
    assert r.cluster.bans[R2].reason is Reason.BAN_LAG
