"""Replication monitor: polls each host's recovery state and WAL position.

Every ``lsn_check_interval`` (after ``lsn_check_delay``) each host of a cluster runs one query
(a probe, state/probe.py) for ``pg_is_in_recovery()``, its WAL position (written on a primary,
replayed on a replica) and how old the last replayed transaction is. The cluster uses the
answers to elect the primary (role = "auto") and to ban replicas that lag. A failed or timed-out
poll marks the host's status as failed: a primary that cannot be polled is no longer trusted
with writes until it, or a promoted replica, answers again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from state.events import Kind, Machine
from state.probe import Probe
from state.reasons import Reason

if TYPE_CHECKING:
    from state.cluster import Cluster
    from state.interfaces import TimerHandle
    from state.pool import Pool

LSN_SQL = (
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, "
    "EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))"
)


_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


def parse_lsn(text: str | None) -> int | None:
    """'16/B374D848' -> the 64-bit WAL position; None for NULL or garbage."""
    if not text or _LSN.fullmatch(text) is None:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int | None) -> str:
    return "" if lsn is None else f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(slots=True)
class ReplicationStatus:
    ok: bool
    checked_at: float
    in_recovery: bool | None = None
    lsn: int | None = None
    # Seconds since the last transaction replayed (replicas; None on a primary or if unknown).
    replay_age: float | None = None
    error: str | None = None


def parse_status(now: float, row: list[str | None] | None, error: str | None) -> ReplicationStatus:
    if error is not None:
        return ReplicationStatus(False, now, error=error)
    if row is None or len(row) < 3 or row[0] not in ("t", "f"):
        return ReplicationStatus(False, now, error="unexpected answer to the LSN query")
    age: float | None
    try:
        age = float(row[2]) if row[2] is not None else None
    except ValueError:
        age = None
    return ReplicationStatus(True, now, in_recovery=row[0] == "t", lsn=parse_lsn(row[1]), replay_age=age)


class ReplicationMonitor:
    """One poller per host of a cluster, each on its own timer."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.status: dict[int, ReplicationStatus] = {}
        # Last good status per host: lag is computed from known positions even while a poll fails.
        self.last_good: dict[int, ReplicationStatus] = {}
        self._timers: dict[int, TimerHandle] = {}
        self._in_flight: set[int] = set()
        self.polls = 0
        self.failures = 0
        self._stopped = False

    def start(self, now: float) -> None:
        delay = (self.cluster.general.lsn_check_delay or 0) / 1000.0
        for pool in self.cluster.pools:
            self._schedule(now + delay, pool)

    def sync_pools(self, now: float) -> None:
        """After a reload: poll new hosts, forget removed ones."""
        ids = {pool.id for pool in self.cluster.pools}
        for pid in [pid for pid in self._timers if pid not in ids]:
            self._timers.pop(pid).cancel()
            self.status.pop(pid, None)
            self.last_good.pop(pid, None)
        for pool in self.cluster.pools:
            if pool.id not in self._timers and pool.id not in self._in_flight:
                self._schedule(now, pool)

    def stop(self) -> None:
        self._stopped = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _schedule(self, when: float, pool: Pool) -> None:
        self._timers[pool.id] = self.cluster.timers.arm(when, self._poll, pool)

    def _poll(self, now: float, pool: Pool) -> None:
        self._timers.pop(pool.id, None)
        if self._stopped or pool.state.name == "CLOSED":
            return
        self._in_flight.add(pool.id)
        timeout = self.cluster.general.lsn_check_timeout / 1000.0
        started = now

        def done(at: float, _pool: Pool, row: list[str | None] | None, error: str | None) -> None:
            self._done(at, pool, started, row, error)

        pool.probe(now, Probe(LSN_SQL, timeout, done, health=False))

    def _done(self, now: float, pool: Pool, started: float, row: list[str | None] | None, error: str | None) -> None:
        self._in_flight.discard(pool.id)
        if self._stopped:
            return
        status = parse_status(now, row, error)
        self.polls += 1
        self.status[pool.id] = status
        if status.ok:
            self.last_good[pool.id] = status
            self.cluster.log.emit(now, Kind.NOTE, Machine.MONITOR, pool.id, 0, 0, Reason.LSN_CHECK,
                                  int(bool(status.in_recovery)))
        else:
            self.failures += 1
            self.cluster.log.emit(now, Kind.NOTE, Machine.MONITOR, pool.id, 0, 0, Reason.LSN_CHECK_FAILED)
        self.cluster.replication_report(now, pool, status)
        interval = self.cluster.general.lsn_check_interval / 1000.0
        self._schedule(max(now, started + interval), pool)

    # -- what the cluster asks -----------------------------------------------------

    def out_of_recovery(self, pool: Pool) -> bool:
        status = self.status.get(pool.id)
        return status is not None and status.ok and status.in_recovery is False

    def lsn_of(self, pool: Pool) -> int:
        status = self.last_good.get(pool.id)
        return status.lsn if status is not None and status.lsn is not None else -1

    def lag(self, replica: Pool, primary: Pool | None) -> tuple[int, float | None] | None:
        """(bytes, seconds) ``replica`` is behind ``primary``; None when either is unknown.

        Seconds come from the replica's last replayed transaction, and count only while it is
        behind in bytes: an idle primary writes nothing, and a caught-up replica is not late."""
        if primary is None:
            return None
        theirs = self.last_good.get(primary.id)
        ours = self.status.get(replica.id)
        if theirs is None or theirs.lsn is None or ours is None or not ours.ok or ours.lsn is None:
            return None
        behind = max(0, theirs.lsn - ours.lsn)
        seconds = (ours.replay_age or 0.0) if behind else 0.0
        return behind, seconds
