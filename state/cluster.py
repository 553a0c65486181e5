"""The hosts of one (user, database): a pool per host, roles, bans, and where each checkout goes.

Writes go to the primary; reads to the hosts ``read_write_split`` allows, chosen by the
load-balancing strategy among those not banned. Bans only ever take a host out of the *read*
rotation: the primary keeps taking writes whatever its ban says, because a write has nowhere else
to go. A host is banned for ``ban_timeout`` when its health checks or connects fail, or when it
lags too far behind (``ban_replica_lag``/``ban_replica_lag_bytes``); at expiry the ban lifts only
if the host answers again. If every host a read could use is banned, the automatic bans are
cleared rather than failing every read (a manual ``BAN`` stays).

With ``require_healthcheck_on_discovery``, a host that a reload adds is banned from the start
(BAN_DISCOVERY) and checked at once; the ban has no expiry and lifts at its first passing health
check (UNBAN_HEALTHCHECK), so a replica added by mistake or still catching up with its base
backup never answers a read unproven. A successful login is not enough: it is the empty query
answered that counts.

With ``role = "auto"`` on every host and ``lsn_check_delay`` set, the replication monitor
(state/replication.py) tells the cluster which host is out of recovery: that one is the primary.
While there is none (the primary died, nothing promoted yet), writes queue here for up to
``checkout_timeout`` and go to the new primary the moment it is seen.

Every decision is an event: BAN/UNBAN (id = pool, a = reason), ROLE (id = pool, frm/to = role
codes, a = reason), and the clients' ROUTE records.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from state.balancer import Balancer
from state.events import EventLog, Kind, Machine
from state.reasons import Reason
from state.replication import ReplicationMonitor

if TYPE_CHECKING:
    from pgdog_ev.config.model import General
    from state.interfaces import Borrower, Entropy, Scheduler, TimerHandle
    from state.pool import Pool
    from state.replication import ReplicationStatus
    from state.server import ServerSession

TICK: Final = 0.333
INF: Final = float("inf")


class RoleCode(IntEnum):
    """Roles as event fields (frm/to of ROLE records)."""

    UNKNOWN = 0
    PRIMARY = 1
    REPLICA = 2


ROLE_CODES: Final = {"primary": RoleCode.PRIMARY, "replica": RoleCode.REPLICA}

BAN_REASONS: Final = {
    Reason.BAN_MANUAL: "manual",
    Reason.BAN_CONNECT_ERROR: "connect error",
    Reason.BAN_HEALTHCHECK: "health check failed",
    Reason.BAN_LAG: "replication lag",
    Reason.BAN_DISCOVERY: "new host, not yet checked",
}


@dataclass(slots=True)
class Ban:
    reason: Reason
    since: float
    # None: a manual ban, lifted only by UNBAN. inf: a new host's, lifted by its first health check.
    until: float | None
    error: str | None = None


class Cluster:
    """Pools of one (user, database), one per host."""

    def __init__(
        self,
        cid: int,
        user: str,
        database: str,
        pools: list[Pool],
        general: General,
        log: EventLog,
        timers: Scheduler,
        entropy: Entropy,
    ) -> None:
        self.id = cid
        self.user = user
        self.database = database
        self.log = log
        self.timers = timers
        self.general = general
        self.balancer = Balancer(general.load_balancing_strategy, entropy(8))
        self.pools: list[Pool] = []
        # More than one host: every checkout is routed. A field, not a property: it is read on
        # each checkout, and set_pools is the only place the pools change.
        self.multi = False
        self.primary: Pool | None = None
        self.bans: dict[int, Ban] = {}
        # Lag verdicts of the replication monitor: pool id -> whether the host is within the limits.
        self.lag_ok: dict[int, bool] = {}
        # Hosts out of recovery that are not the primary (an old primary back after a failover:
        # a second, diverged primary). They get no reads and no writes.
        self.fenced: set[int] = set()
        # Writes waiting for a primary (failover in progress), oldest first.
        self.write_waiters: deque[Borrower] = deque()
        self.monitor: ReplicationMonitor | None = None
        self.closed = False
        self._wait_timer: TimerHandle | None = None
        self._wait_when = 0.0
        # Read targets (by "replicas only"), recomputed when bans, roles or settings change.
        self._targets: dict[bool, list[Pool]] = {}
        self._tick_timer: TimerHandle | None = None
        self.set_pools(0.0, pools, general)

    # -- shape ---------------------------------------------------------------------

    @property
    def detecting(self) -> bool:
        """Roles come from the replication monitor (every host "auto", lsn_check_delay set)."""
        return (
            self.general.lsn_check_delay is not None
            and self.multi
            and all(pool.key.role == "auto" for pool in self.pools)
        )

    def set_pools(self, now: float, pools: list[Pool], general: General) -> None:
        """Install the pools (at start and on reload); pools that stay keep bans and roles."""
        self.general = general
        self._targets.clear()
        self.balancer.strategy = general.load_balancing_strategy
        for pool in pools:
            pool.owner = self
        self.pools = list(pools)
        self.multi = len(self.pools) > 1
        ids = {pool.id for pool in pools}
        for pid in [pid for pid in self.bans if pid not in ids]:
            del self.bans[pid]
        if self.detecting:
            # Keep what the monitor found; hosts it has not seen yet have no role.
            if self.primary is not None and self.primary.id not in ids:
                self.primary = None
            return
        primary = next((p for p in pools if p.key.role == "primary"), None)
        if primary is None:
            primary = next((p for p in pools if p.key.role == "auto"), None)
        for pool in pools:
            pool.role = "primary" if pool is primary else "replica"
        self.primary = primary

    @property
    def monitored(self) -> bool:
        """Whether the replication monitor runs: role detection, lag bans, or just SHOW
        REPLICATION for a cluster with lsn_check_delay set."""
        g = self.general
        return self.multi and (
            g.lsn_check_delay is not None or g.ban_replica_lag is not None or g.ban_replica_lag_bytes is not None
        )

    def start(self, now: float) -> None:
        """Arm the ban tick and the replication monitor (again after a reload changed the shape)."""
        if self._tick_timer is None and self.multi:
            self._tick_timer = self.timers.arm(now + TICK, self._tick)
        if self.monitored:
            if self.monitor is None:
                self.monitor = ReplicationMonitor(self)
                self.monitor.start(now)
            else:
                self.monitor.sync_pools(now)
        elif self.monitor is not None:
            self.monitor.stop()
            self.monitor = None

    def close(self, now: float) -> None:
        self.closed = True
        for timer in (self._wait_timer, self._tick_timer):
            if timer is not None:
                timer.cancel()
        self._wait_timer = self._tick_timer = None
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        waiters = list(self.write_waiters)
        self.write_waiters.clear()
        for client in waiters:
            client.on_checkout_failed(now, "the pool was closed (configuration reload or shutdown)")

    def login_pool(self) -> Pool:
        """Where a new client's settings are checked: the primary when it is up, else a read host."""
        primary = self.primary
        if primary is not None and primary.healthy:
            return primary
        targets = self._read_targets(False)
        return targets[0] if targets else (primary or self.pools[0])

    # -- checkout ------------------------------------------------------------------

    def checkout(
        self, now: float, client: Borrower, write: bool, replica: bool = False, deadline: float | None = None
    ) -> ServerSession | None:
        """Route ``client`` to a host and check out there (None: it waits).

        ``replica`` asks for replicas only (a read-only transaction, ``pgdog.role = replica``),
        falling back to the primary only when no replica is usable."""
        if write or not self.multi:
            primary = self.primary
            if primary is None:
                if self.detecting:
                    self._wait_for_primary(now, client, deadline)
                    return None
                primary = self.pools[0] if not self.multi else None
            if primary is not None:
                if self.multi:
                    primary.stats.writes += 1
                client.pool = primary
                return primary.checkout(now, client, deadline)
            # A cluster of replicas only: writes go where reads go, for the server to refuse.
        pool = self.pick(now, replica)
        if pool is None:
            client.on_checkout_failed(now, "no host is available for reads: every host is banned")
            return None
        pool.stats.reads += 1
        client.pool = pool
        return pool.checkout(now, client, deadline)

    def pick(self, now: float, replica: bool, exclude: Pool | None = None) -> Pool | None:
        # The usual read first: the cached targets, nothing excluded.
        targets = self._targets.get(replica) if exclude is None else None
        if not targets:
            targets = self._read_targets(replica, exclude)
        if not targets:
            if self._clear_bans(now, exclude):
                targets = self._read_targets(replica, exclude)
            if not targets:
                return None
        return self.balancer.pick(targets)

    def _read_targets(self, replica: bool, exclude: Pool | None = None) -> list[Pool]:
        if exclude is None:
            cached = self._targets.get(replica)
            if cached is None:
                cached = self._targets[replica] = self._compute_targets(replica, None)
            return cached
        return self._compute_targets(replica, exclude)

    def _compute_targets(self, replica: bool, exclude: Pool | None) -> list[Pool]:
        primary = self.primary
        bans = self.bans
        fenced = self.fenced
        replicas = [p for p in self.pools
                    if p is not primary and p is not exclude and p.id not in bans and p.id not in fenced]
        primary_ok = primary is not None and primary is not exclude and primary.id not in bans
        split = self.general.read_write_split
        if split == "prefer_primary" and not replica:
            return [primary] if primary_ok else replicas  # type: ignore[list-item]
        if replica or split == "exclude_primary":
            return replicas or ([primary] if primary_ok else [])  # type: ignore[list-item]
        if split == "include_primary_if_replica_banned" and replicas and not any(
            p.id in bans for p in self.pools if p is not primary
        ):
            return replicas
        return [*replicas, primary] if primary_ok else replicas  # type: ignore[list-item]

    def cancel_wait(self, now: float, client: Borrower) -> None:
        try:
            self.write_waiters.remove(client)
        except ValueError:
            pass
        else:
            self.log.emit(now, Kind.DEQUEUE, Machine.LB, self.id, 0, 0, client.id)

    # -- waiting for a primary -----------------------------------------------------

    def _wait_for_primary(self, now: float, client: Borrower, deadline: float | None) -> None:
        if deadline is None:
            client.wait_started = now
            deadline = now + self.general.checkout_timeout / 1000.0
        client.wait_deadline = deadline
        self.write_waiters.append(client)
        self.log.emit(now, Kind.ENQUEUE, Machine.LB, self.id, 0, 0, client.id, len(self.write_waiters))
        if self._wait_timer is None or deadline < self._wait_when:
            self._arm_wait_timer()

    def _arm_wait_timer(self) -> None:
        if self._wait_timer is not None:
            self._wait_timer.cancel()
            self._wait_timer = None
        if self.write_waiters:
            when = min(client.wait_deadline for client in self.write_waiters)
            self._wait_when = when
            self._wait_timer = self.timers.arm(when, self._wait_expired)

    def _wait_expired(self, now: float) -> None:
        self._wait_timer = None
        expired = [client for client in self.write_waiters if client.wait_deadline <= now]
        for client in expired:
            self.write_waiters.remove(client)
            self.log.emit(now, Kind.TIMEOUT, Machine.LB, self.id, 0, 0, client.id)
            client.on_checkout_failed(now, "checkout timeout: no primary is available for writes", timeout=True)
        self._arm_wait_timer()

    def _dispatch_writes(self, now: float) -> None:
        primary = self.primary
        if primary is None or not self.write_waiters:
            return
        waiters = list(self.write_waiters)
        self.write_waiters.clear()
        self._arm_wait_timer()
        for client in waiters:
            primary.stats.writes += 1
            self._move(now, client, primary)

    @staticmethod
    def _move(now: float, client: Borrower, pool: Pool) -> None:
        """Queue ``client`` at ``pool`` (from another host or the primary queue), keeping its
        checkout deadline."""
        client.pool = pool
        server = pool.checkout(now, client, client.wait_deadline)
        if server is not None:
            client.on_checkout(now, server)

    # -- the PoolOwner interface ------------------------------------------------------

    def pool_health(self, now: float, pool: Pool, ok: bool, reason: int, error: str | None) -> None:
        if self.closed or pool not in self.pools or pool.state.name == "CLOSED":
            return  # a pool a reload dropped, cut off mid-check
        if ok:
            if reason == Reason.HEALTHCHECK_OK:
                ban = self.bans.get(pool.id)
                if ban is not None and ban.reason is Reason.BAN_DISCOVERY:
                    self.unban(now, pool, Reason.UNBAN_HEALTHCHECK)
                    if not self.lag_ok.get(pool.id, True):
                        # It answers, but the replication monitor already found it too far
                        # behind (a replica still catching up): out for lag instead.
                        self.ban(now, pool, Reason.BAN_LAG, "replication lag")
            if pool is self.primary and self.write_waiters:
                self._dispatch_writes(now)
            return
        if pool.id in self.bans or not self.multi or self.general.ban_timeout <= 0:
            return
        if reason in (Reason.CONNECT_FAILED, Reason.LOGIN_TIMEOUT):
            ban_reason = Reason.BAN_CONNECT_ERROR
        else:
            ban_reason = Reason.BAN_HEALTHCHECK
        self.ban(now, pool, ban_reason, error)

    def reroute(self, now: float, pool: Pool, clients: list[Borrower], error: str) -> None:
        """``pool`` cannot serve these clients: writes wait for a primary (during failover) or
        fail; reads try another host, keeping their checkout deadline."""
        for client in clients:
            if client.route_write and (self.detecting or self.primary is not None or not self.multi):
                primary = self.primary
                if self.detecting and primary is not None and primary is not pool:
                    self._move(now, client, primary)  # the primary moved while this write queued
                elif self.detecting:
                    self._wait_for_primary(now, client, client.wait_deadline)
                else:
                    client.on_checkout_failed(now, error)
                continue
            # A read, or a write in a cluster without a primary (it goes where reads go).
            other = self.pick(now, client.route_replica, exclude=pool) if self.multi else None
            if other is None:
                client.on_checkout_failed(now, error)
                continue
            self._move(now, client, other)

    # -- bans ----------------------------------------------------------------------

    def discovered(self, now: float, pools: list[Pool]) -> None:
        """``pools`` joined this cluster in a reload: with require_healthcheck_on_discovery they
        take no reads until a health check passes, and that check starts now."""
        if not self.general.require_healthcheck_on_discovery or not self.multi or self.general.ban_timeout <= 0:
            return
        for pool in pools:
            if pool in self.pools:
                self.ban(now, pool, Reason.BAN_DISCOVERY, "waiting for its first health check")
                pool.health_check(now)

    def ban(self, now: float, pool: Pool, reason: Reason, error: str | None = None) -> None:
        manual = reason is Reason.BAN_MANUAL
        if manual:
            until = None
        elif reason is Reason.BAN_DISCOVERY:
            until = INF
        else:
            until = now + self.general.ban_timeout / 1000.0
        existing = self.bans.get(pool.id)
        if existing is not None and (existing.until is None or not manual):
            return
        self.bans[pool.id] = Ban(reason, now, until, error)
        self._targets.clear()
        pool.stats.bans += 1
        self.log.emit(now, Kind.BAN, Machine.POOL, pool.id, 0, 0, reason, self.id)
        # Idle connections to a failing host are suspect too; reads queued there move on.
        pool.dump_idle(now, Reason.BAN_MANUAL if manual else reason)
        if self.multi and pool.waiters:
            # Writes queued at the primary stay: bans are for reads.
            movers = [c for c in pool.waiters if not (c.route_write and pool is self.primary)]
            for client in movers:
                pool.cancel_wait(now, client)
            if movers:
                self.reroute(now, pool, movers, error or "the host was banned")

    def unban(self, now: float, pool: Pool, reason: Reason) -> bool:
        if self.bans.pop(pool.id, None) is None:
            return False
        self._targets.clear()
        self.log.emit(now, Kind.UNBAN, Machine.POOL, pool.id, 0, 0, reason, self.id)
        return True

    def _clear_bans(self, now: float, keep: Pool | None = None) -> bool:
        """Every usable host is banned: lift the automatic bans (better a suspect host than none),
        except that of ``keep``, the host a client is being moved away from."""
        cleared = False
        for pool in self.pools:
            if pool is keep:
                continue
            ban = self.bans.get(pool.id)
            if ban is not None and ban.until is not None:
                self.unban(now, pool, Reason.UNBAN_ALL_BANNED)
                cleared = True
        return cleared

    def _tick(self, now: float) -> None:
        """Lift expired bans of hosts that answer again (and are within the lag limits)."""
        self._tick_timer = None
        if self.closed:
            return
        for pool in self.pools:
            ban = self.bans.get(pool.id)
            if ban is None or ban.until is None or now < ban.until:
                continue
            if pool.healthy and (pool is self.primary or self.lag_ok.get(pool.id, True)):
                self.unban(now, pool, Reason.UNBAN_EXPIRED)
        self._tick_timer = self.timers.arm(now + TICK, self._tick)

    # -- roles and lag (from the replication monitor) ------------------------------

    def replication_report(self, now: float, pool: Pool, status: ReplicationStatus) -> None:
        """A poll of ``pool`` finished (or failed): re-elect the primary, judge lag."""
        monitor = self.monitor
        if monitor is None:
            return
        if self.detecting:
            self._elect(now, monitor)
        if pool is self.primary:
            self.lag_ok[pool.id] = True
        else:
            # Judged when the replica reports: against the primary's last position, which is
            # never newer than this report, so a replica keeping up is never late.
            self._judge_lag(now, monitor, pool)

    def _elect(self, now: float, monitor: ReplicationMonitor) -> None:
        current = self.primary
        candidates = [p for p in self.pools if monitor.out_of_recovery(p)]
        if current is not None and current in candidates:
            new: Pool | None = current
        elif candidates:
            # Two hosts out of recovery (a promoted replica and the old primary back as it was):
            # the one furthest ahead in WAL wins.
            new = max(candidates, key=monitor.lsn_of)
        else:
            new = None
        fenced = {p.id for p in candidates if p is not new}
        if fenced != self.fenced:
            self.fenced = fenced
            self._targets.clear()
        for pool in self.pools:
            status = monitor.status.get(pool.id)
            if pool is new:
                role = "primary"
            elif pool.id in fenced:
                role = "auto"
            elif status is not None and status.ok and status.in_recovery:
                role = "replica"
            else:
                role = pool.role if pool.role != "primary" else "auto"
            if role != pool.role:
                self.log.emit(now, Kind.ROLE, Machine.POOL, pool.id, ROLE_CODES.get(pool.role, RoleCode.UNKNOWN),
                              ROLE_CODES.get(role, RoleCode.UNKNOWN),
                              Reason.ROLE_PRIMARY if role == "primary" else
                              Reason.ROLE_REPLICA if role == "replica" else Reason.ROLE_LOST, self.id)
                pool.role = role
        if new is not current:
            self.primary = new
            self._targets.clear()
            if new is not None:
                # The new primary takes writes whatever its read ban says.
                self._dispatch_writes(now)

    def _judge_lag(self, now: float, monitor: ReplicationMonitor, pool: Pool) -> None:
        max_ms = self.general.ban_replica_lag
        max_bytes = self.general.ban_replica_lag_bytes
        lag = monitor.lag(pool, self.primary)
        if lag is None:
            return
        lag_bytes, lag_seconds = lag
        ok = not (
            (max_bytes is not None and lag_bytes >= max_bytes)
            or (max_ms is not None and lag_seconds is not None and lag_seconds * 1000.0 >= max_ms)
        )
        self.lag_ok[pool.id] = ok
        if not ok and pool.id not in self.bans and self.multi and self.general.ban_timeout > 0:
            by_bytes = max_bytes is not None and lag_bytes >= max_bytes
            what = f"{lag_bytes} bytes" if by_bytes else f"{(lag_seconds or 0.0) * 1000.0:.0f} ms"
            self.ban(now, pool, Reason.BAN_LAG, f"replication lag {what}")
