"""Replication monitor: LSN parsing, status rows, lag, and the polling schedule (fake clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from pgdog_ev.config.model import General
from pgdog_ev.wire import backend as be
from state.cluster import Cluster
from state.events import EventLog, Kind, Machine
from state.pool import Pool, PoolState
from state.probe import Probe
from state.reasons import Reason
from state.replication import (
    LSN_SQL,
    ReplicationMonitor,
    ReplicationStatus,
    format_lsn,
    parse_lsn,
    parse_status,
)
from state.server import ServerState
from tests.unit.statekit import FakeBackend, FakeScheduler, Recorder, World

# -- parse_lsn / format_lsn ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/1", 1),
        ("1/0", 1 << 32),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("16/b374d848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", (1 << 64) - 1),
        ("00000016/0000000A", (0x16 << 32) | 0xA),
    ],
)
def test_parse_lsn_values(text: str, value: int) -> None:
    """pg_lsn text is two hex halves of a 64-bit position; lag is their difference, so exactness matters."""
    assert parse_lsn(text) == value


@pytest.mark.parametrize("text", ["0/0", "0/1", "1/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "A/1"])
def test_format_lsn_round_trip(text: str) -> None:
    """format_lsn is what SHOW REPLICATION prints: the canonical (PostgreSQL) spelling back."""
    lsn = parse_lsn(text)
    assert lsn is not None
    assert format_lsn(lsn) == text
    assert parse_lsn(format_lsn(lsn)) == lsn


def test_format_lsn_canonicalises_and_handles_none() -> None:
    """Leading zeros and lower case come back in PostgreSQL's own form; unknown prints empty."""
    assert format_lsn(parse_lsn("00000016/0000000a")) == "16/A"
    assert format_lsn(None) == ""
    for value in (0, 1, 1 << 32, (1 << 64) - 1, 0x1234_5678_9ABC_DEF0):
        assert parse_lsn(format_lsn(value)) == value


@pytest.mark.parametrize("text", [None, "", "/", "16", "16/", "/16", "xyz/1", "1/xyz", "1/2/3", "16-B374D848"])
def test_parse_lsn_garbage_is_none(text: str | None) -> None:
    """NULL (pg_last_wal_replay_lsn() on a primary) or a broken answer must mean 'unknown', never raise."""
    assert parse_lsn(text) is None


@pytest.mark.parametrize("text", ["-1/0", "0x1/0x2", "1_0/0", " 1/2", "0/100000000"])
def test_parse_lsn_rejects_non_pg_lsn_text(text: str) -> None:
    """'-1/0' parses to a negative position and '0/100000000' collides with '1/0': neither is a pg_lsn."""
    assert parse_lsn(text) is None


# -- parse_status ------------------------------------------------------------------------------


def test_parse_status_primary_row() -> None:
    """A primary: not in recovery, current WAL position, NULL replay timestamp."""
    status = parse_status(3.0, ["f", "0/3000060", None], None)
    assert status == ReplicationStatus(True, 3.0, in_recovery=False, lsn=0x3000060, replay_age=None)


def test_parse_status_replica_row() -> None:
    """A replica: in recovery, replayed position, age of the last replayed transaction in seconds."""
    status = parse_status(4.5, ["t", "0/3000000", "1.25"], None)
    assert status.ok and status.in_recovery is True
    assert status.lsn == 0x3000000 and status.replay_age == 1.25 and status.error is None
    assert status.checked_at == 4.5


def test_parse_status_nulls_are_unknown_not_errors() -> None:
    """A replica that has replayed nothing yet answers NULLs: still a good poll, values unknown."""
    status = parse_status(1.0, ["t", None, None], None)
    assert status.ok and status.in_recovery is True and status.lsn is None and status.replay_age is None


def test_parse_status_unparsable_age_is_unknown() -> None:
    """A strange number in the age column must not discard the recovery state and position."""
    status = parse_status(1.0, ["t", "1/0", "not-a-number"], None)
    assert status.ok and status.lsn == 1 << 32 and status.replay_age is None


def test_parse_status_error_wins() -> None:
    """The probe failed (error, timeout, closed): a failed status carrying the error."""
    status = parse_status(2.0, ["f", "0/1", None], "health check timed out (healthcheck_timeout)")
    assert not status.ok and status.error == "health check timed out (healthcheck_timeout)"
    assert status.in_recovery is None and status.lsn is None


@pytest.mark.parametrize("row", [None, [], ["f", "0/1"], ["x", "0/1", None], [None, "0/1", None]])
def test_parse_status_unexpected_rows_fail(row: list[str | None] | None) -> None:
    """No row, a short row or a non-boolean first column: the host answered something else."""
    status = parse_status(2.0, row, None)
    assert not status.ok and status.error == "unexpected answer to the LSN query"


# -- lag -----------------------------------------------------------------------------------------


@dataclass
class FakePool:
    """The few Pool attributes the monitor touches; probes are recorded for the test to answer."""

    id: int
    state: PoolState = PoolState.OPEN
    probes: list[tuple[float, Probe]] = field(default_factory=list)

    def probe(self, now: float, probe: Probe) -> None:
        self.probes.append((now, probe))

    def answer(self, at: float, row: list[str | None] | None = None, error: str | None = None) -> None:
        """Finish the oldest pending probe."""
        _, probe = self.probes.pop(0)
        probe.done(at, cast("Pool", self), row, error)


@dataclass
class FakeCluster:
    """What the monitor calls back: settings, pools, timers, the event log and the report."""

    general: General
    pools: list[FakePool]
    timers: FakeScheduler = field(default_factory=FakeScheduler)
    log: EventLog = field(default_factory=lambda: EventLog(capacity=4096))
    reports: list[tuple[float, int, ReplicationStatus]] = field(default_factory=list)

    def replication_report(self, now: float, pool: FakePool, status: ReplicationStatus) -> None:
        self.reports.append((now, pool.id, status))


def monitor_rig(n: int = 2, **general: Any) -> tuple[FakeCluster, ReplicationMonitor]:
    settings = {"lsn_check_delay": 1000, "lsn_check_interval": 5000, "lsn_check_timeout": 2000, **general}
    cluster = FakeCluster(General(**settings), [FakePool(i + 1) for i in range(n)])
    return cluster, ReplicationMonitor(cast("Cluster", cluster))


PRIMARY_ROW: list[str | None] = ["f", "0/5000", None]


def test_lag_none_when_primary_or_positions_unknown() -> None:
    """No primary, no good poll of it, a failed replica poll or a NULL position: lag is unknown."""
    _, monitor = monitor_rig()
    primary, replica = (cast("Pool", FakePool(1)), cast("Pool", FakePool(2)))
    assert monitor.lag(replica, None) is None
    assert monitor.lag(replica, primary) is None
    monitor.last_good[1] = monitor.status[1] = parse_status(0.0, PRIMARY_ROW, None)
    assert monitor.lag(replica, primary) is None  # replica never polled
    monitor.status[2] = parse_status(0.0, None, "boom")
    assert monitor.lag(replica, primary) is None  # replica poll failed
    monitor.status[2] = parse_status(0.0, ["t", None, "3"], None)
    assert monitor.lag(replica, primary) is None  # replica position unknown
    monitor.last_good[1] = parse_status(0.0, ["f", None, None], None)
    monitor.status[2] = parse_status(0.0, ["t", "0/1000", "3"], None)
    assert monitor.lag(replica, primary) is None  # primary position unknown


def test_lag_bytes_behind_and_seconds_only_while_behind() -> None:
    """Seconds count only while the replica is behind: an idle primary writes nothing to replay."""
    _, monitor = monitor_rig()
    primary, replica = (cast("Pool", FakePool(1)), cast("Pool", FakePool(2)))
    monitor.last_good[1] = parse_status(0.0, PRIMARY_ROW, None)
    monitor.status[2] = parse_status(0.0, ["t", "0/4000", "7.5"], None)
    assert monitor.lag(replica, primary) == (0x1000, 7.5)
    monitor.status[2] = parse_status(0.0, ["t", "0/5000", "7.5"], None)
    assert monitor.lag(replica, primary) == (0, 0.0)  # caught up: old replay is not lag
    monitor.status[2] = parse_status(0.0, ["t", "0/6000", "7.5"], None)
    assert monitor.lag(replica, primary) == (0, 0.0)  # ahead of a stale primary reading: not negative
    monitor.status[2] = parse_status(0.0, ["t", "0/4000", None], None)
    assert monitor.lag(replica, primary) == (0x1000, 0.0)  # behind, age unknown


def test_lag_uses_last_good_primary_position_while_its_poll_fails() -> None:
    """A failing primary poll must not erase the reference position lag is measured against."""
    cluster, monitor = monitor_rig()
    monitor.start(0.0)
    cluster.timers.fire_until(1.0)
    primary, replica = cluster.pools
    primary.answer(1.0, ["f", "1/0", None])
    replica.answer(1.0, ["t", "0/FFFFFF00", "2"])
    cluster.timers.fire_until(6.0)
    primary.answer(6.0, error="connection refused")
    assert not monitor.status[1].ok
    assert monitor.lag(cast("Pool", replica), cast("Pool", primary)) == (0x100, 2.0)


# -- the polling schedule ---------------------------------------------------------------------


def pending_whens(cluster: FakeCluster) -> list[float]:
    return [t.when for t in cluster.timers.pending()]


def test_first_poll_after_lsn_check_delay() -> None:
    """Nothing runs before lsn_check_delay; then every host is polled once with the LSN query."""
    cluster, monitor = monitor_rig(3, lsn_check_delay=1500)
    monitor.start(10.0)
    assert pending_whens(cluster) == [11.5, 11.5, 11.5]
    cluster.timers.fire_until(11.499)
    assert all(not p.probes for p in cluster.pools)
    cluster.timers.fire_until(11.5)
    for pool in cluster.pools:
        ((when, probe),) = pool.probes
        assert when == 11.5 and probe.sql == LSN_SQL
        assert probe.timeout == 2.0  # lsn_check_timeout, seconds
        assert probe.health is False  # an LSN poll is not counted as a health check
    assert pending_whens(cluster) == []  # the next poll is armed only when this one is answered


def test_no_delay_configured_polls_at_once() -> None:
    """lsn_check_delay unset (a monitor started for lag bans only): the first poll is immediate."""
    cluster, monitor = monitor_rig(2, lsn_check_delay=None)
    monitor.start(3.0)
    assert pending_whens(cluster) == [3.0, 3.0]


def test_polls_repeat_every_interval_from_the_start_of_the_last_one() -> None:
    """The period is measured from when a poll started, so a slow answer does not stretch it."""
    cluster, monitor = monitor_rig(1, lsn_check_delay=1000, lsn_check_interval=5000)
    monitor.start(0.0)
    (pool,) = cluster.pools
    cluster.timers.fire_until(1.0)
    pool.answer(1.4, PRIMARY_ROW)
    assert pending_whens(cluster) == [6.0]
    cluster.timers.fire_until(5.999)
    assert not pool.probes
    cluster.timers.fire_until(6.0)
    assert len(pool.probes) == 1
    # An answer slower than the interval: the next poll follows it at once, never in the past.
    pool.answer(13.0, PRIMARY_ROW)
    assert pending_whens(cluster) == [13.0]
    assert monitor.polls == 2 and monitor.failures == 0


def test_each_answer_is_recorded_and_reported() -> None:
    """Good polls update status and last_good, emit LSN_CHECK (b = in recovery), and reach the cluster."""
    cluster, monitor = monitor_rig()
    monitor.start(0.0)
    cluster.timers.fire_until(1.0)
    primary, replica = cluster.pools
    primary.answer(1.1, PRIMARY_ROW)
    replica.answer(1.2, ["t", "0/4000", "0.5"])
    assert monitor.status[1].in_recovery is False and monitor.status[2].in_recovery is True
    assert monitor.last_good[2] is monitor.status[2]
    assert [(now, pid) for now, pid, _ in cluster.reports] == [(1.1, 1), (1.2, 2)]
    notes = [r for r in cluster.log.records() if r.kind == Kind.NOTE and r.machine == Machine.MONITOR]
    assert [(r.id, r.a, r.b) for r in notes] == [(1, Reason.LSN_CHECK, 0), (2, Reason.LSN_CHECK, 1)]
    assert monitor.out_of_recovery(cast("Pool", primary)) and not monitor.out_of_recovery(cast("Pool", replica))
    assert monitor.lsn_of(cast("Pool", primary)) == 0x5000


def test_failures_are_counted_reported_and_polling_goes_on() -> None:
    """A failed poll is evidence too (the primary may be gone): report it and keep polling."""
    cluster, monitor = monitor_rig(1)
    monitor.start(0.0)
    (pool,) = cluster.pools
    cluster.timers.fire_until(1.0)
    pool.answer(1.0, PRIMARY_ROW)
    cluster.timers.fire_until(6.0)
    pool.answer(8.0, error="health check timed out (healthcheck_timeout)")
    assert monitor.failures == 1 and monitor.polls == 2
    status = monitor.status[1]
    assert not status.ok and "timed out" in (status.error or "")
    assert monitor.last_good[1].lsn == 0x5000  # the last good answer is kept
    assert not monitor.out_of_recovery(cast("Pool", pool))
    assert monitor.lsn_of(cast("Pool", pool)) == 0x5000
    (_, _, reported) = cluster.reports[-1]
    assert reported is status
    notes = [r.a for r in cluster.log.records() if r.kind == Kind.NOTE and r.machine == Machine.MONITOR]
    assert notes == [Reason.LSN_CHECK, Reason.LSN_CHECK_FAILED]
    assert pending_whens(cluster) == [11.0]


def test_lsn_of_unknown_host_is_minus_one() -> None:
    """An unpolled host or a NULL position ranks below every real position in an election."""
    _, monitor = monitor_rig()
    pool = cast("Pool", FakePool(1))
    assert monitor.lsn_of(pool) == -1
    monitor.last_good[1] = parse_status(0.0, ["t", None, None], None)
    assert monitor.lsn_of(pool) == -1


def test_stop_cancels_timers_and_ignores_answers_in_flight() -> None:
    """After stop (reload, shutdown) no poll runs, and a late answer neither reports nor re-arms."""
    cluster, monitor = monitor_rig(2)
    monitor.start(0.0)
    cluster.timers.fire_until(1.0)
    first, second = cluster.pools
    first.answer(1.0, PRIMARY_ROW)  # first is re-armed for 6.0; second is in flight
    monitor.stop()
    assert pending_whens(cluster) == []
    second.answer(1.5, ["t", "0/1", None])
    assert len(cluster.reports) == 1 and 2 not in monitor.status
    assert pending_whens(cluster) == []
    cluster.timers.fire_until(100.0)
    assert not first.probes and not second.probes


def test_closed_pool_is_not_polled_again() -> None:
    """A pool closed by a reload stops being polled instead of failing forever."""
    cluster, monitor = monitor_rig(2)
    monitor.start(0.0)
    cluster.pools[0].state = PoolState.CLOSED
    cluster.timers.fire_until(1.0)
    assert not cluster.pools[0].probes and len(cluster.pools[1].probes) == 1
    assert pending_whens(cluster) == []


def test_sync_pools_polls_new_hosts_and_forgets_removed_ones() -> None:
    """After a reload the new host is polled at once; a removed host's timer and status go."""
    cluster, monitor = monitor_rig(2)
    monitor.start(0.0)
    cluster.timers.fire_until(1.0)
    a, b = cluster.pools
    a.answer(1.0, PRIMARY_ROW)
    b.answer(1.0, ["t", "0/5000", None])
    c = FakePool(3)
    cluster.pools = [a, c]
    monitor.sync_pools(2.0)
    assert 2 not in monitor.status and 2 not in monitor.last_good
    cluster.timers.fire_until(2.0)
    assert len(c.probes) == 1 and not a.probes
    cluster.timers.fire_until(20.0)
    assert not b.probes  # its timer was cancelled
    assert len(a.probes) == 1


def test_sync_pools_does_not_double_poll_a_host_in_flight() -> None:
    """A host whose poll is running has no timer; sync_pools must not start a second poll."""
    cluster, monitor = monitor_rig(1)
    monitor.start(0.0)
    cluster.timers.fire_until(1.0)
    monitor.sync_pools(1.5)
    cluster.timers.fire_until(1.5)
    assert len(cluster.pools[0].probes) == 1


# -- one LSN poll through a real pool and server ------------------------------------------------


def test_lsn_probe_runs_on_an_idle_server_and_captures_the_first_row() -> None:
    """The probe's DataRow reaches the monitor (NULL as None); only the first row counts."""
    world = World()
    pool = world.make_pool(pool_size=1)
    rec = Recorder(1)
    pool.checkout(world.now, rec)
    (server,) = world.pool_io.opened
    backend = FakeBackend(world, server)
    backend.login("md5")
    ((_, lent),) = rec.granted
    lent.link(world.now, rec)  # type: ignore[arg-type]
    lent.release(world.now, session_mode=False)
    backend.take()
    answers: list[tuple[float, list[str | None] | None, str | None]] = []

    def done(now: float, _pool: Pool, row: list[str | None] | None, error: str | None) -> None:
        answers.append((now, row, error))

    world.advance(1.0)
    pool.probe(world.now, Probe(LSN_SQL, 2.0, done, health=False))
    assert server.state is ServerState.CHECKING and backend.take_queries() == [LSN_SQL]
    fields = [be.Field("a"), be.Field("b"), be.Field("c")]
    world.advance(1.2)
    backend.send(
        be.row_description(fields)
        + be.data_row(["t", "0/3000060", None])
        + be.data_row(["f", "9/9", "9"])
        + be.command_complete("SELECT 2")
        + be.ready_for_query(b"I")
    )
    assert answers == [(1.2, ["t", "0/3000060", None], None)]
    assert server.state is ServerState.IDLE and pool.idle == [server]
    assert pool.stats.healthchecks == 0  # an LSN poll is not a health check
    status = parse_status(1.2, answers[0][1], answers[0][2])
    assert status.in_recovery is True and status.lsn == 0x3000060


def test_lsn_probe_timeout_is_a_failed_poll() -> None:
    """A host that does not answer within lsn_check_timeout yields an error, and the connection closes."""
    world = World()
    pool = world.make_pool(pool_size=1)
    rec = Recorder(1)
    pool.checkout(world.now, rec)
    (server,) = world.pool_io.opened
    FakeBackend(world, server).login("md5")
    ((_, lent),) = rec.granted
    lent.link(world.now, rec)  # type: ignore[arg-type]
    lent.release(world.now, session_mode=False)
    answers: list[str | None] = []
    pool.probe(world.now, Probe(LSN_SQL, 0.5, lambda _n, _p, _r, err: answers.append(err), health=False))
    world.advance(0.499)
    assert answers == []
    world.advance(0.5)
    assert answers == ["LSN check timed out (lsn_check_timeout)"]
    assert server.state is ServerState.CLOSED and not pool.servers
    assert not parse_status(0.5, None, answers[0]).ok

