"""A pool of server connections for one (user, database, host), sans-IO.

Clients ask for a server; if none is idle they queue (FIFO) and a new
connection is opened while the pool is below its size. A returned server goes
straight to the oldest waiter, otherwise onto an idle stack (most recently used
first, so the surplus ages out through idle_timeout). Waiters that are not
served within checkout_timeout get an error, never a hang. The maintenance tick
enforces min_pool_size, idle_timeout and server_lifetime.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from state.events import EventLog, Kind, Machine
from state.probe import HEALTHCHECK_SQL, Probe
from state.reasons import Reason
from state.registry import register_states
from state.server import IllegalTransition, ServerSession, ServerState

if TYPE_CHECKING:
    from pgdog_ev.config import PoolSettings
    from state.interfaces import Borrower, PoolIO, PoolOwner, Scheduler, TimerHandle

MAINTENANCE_INTERVAL: Final = 0.333
HOLD_PAUSE: Final = 1
HOLD_MAINTENANCE: Final = 2


class PoolState(IntEnum):
    OPEN = 1
    PAUSED = 2
    CLOSED = 3


P: Final = PoolState
TRANSITIONS: Final[dict[PoolState, frozenset[PoolState]]] = {
    P.OPEN: frozenset({P.PAUSED, P.CLOSED}),
    P.PAUSED: frozenset({P.OPEN, P.CLOSED}),
    P.CLOSED: frozenset(),
}
register_states(Machine.POOL, PoolState)

# Enum members the hot path reads, as module globals: on Python 3.11 reading a member off
# its class goes through EnumType.__getattr__'s slot (about 50 ns, against 6 for a global),
# and one transaction reads a few dozen of them.
_K_CHECKIN: Final = Kind.CHECKIN
_K_CHECKOUT: Final = Kind.CHECKOUT
_K_ENQUEUE: Final = Kind.ENQUEUE
_M_POOL: Final = Machine.POOL
_POOL_CLOSED: Final = PoolState.CLOSED
_POOL_OPEN: Final = PoolState.OPEN
_R_LIFETIME: Final = Reason.LIFETIME
_R_PAUSE: Final = Reason.PAUSE
_R_RECONNECT: Final = Reason.RECONNECT


@dataclass(frozen=True, slots=True)
class PoolKey:
    user: str
    database: str
    host: str
    port: int
    shard: int = 0
    role: str = "primary"


# Upper bounds (seconds) of the checkout wait-time histogram; the last bucket is +Inf.
WAIT_BUCKETS: Final[tuple[float, ...]] = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


@dataclass(slots=True)
class PoolStats:
    """Counters that only ever grow, for SHOW STATS and the metrics endpoint.

    Times are seconds (floats); "received"/"sent" are bytes from and to this
    pool's clients. Averages are derived by the readers, never stored here.
    """

    checkouts: int = 0
    checkout_timeouts: int = 0
    connects: int = 0
    connect_errors: int = 0
    server_errors: int = 0
    out_of_sync: int = 0
    wait_time_total: float = 0.0
    max_wait: float = 0.0
    xact_count: int = 0
    xact_time: float = 0.0
    query_count: int = 0
    query_time: float = 0.0
    received: int = 0
    sent: int = 0
    # ErrorResponses PostgreSQL sent to this pool's clients.
    errors: int = 0
    # Servers returned through cleanup (ROLLBACK, DISCARD ALL, drained results).
    cleaned: int = 0
    rollbacks: int = 0
    client_parse_count: int = 0
    server_parse_count: int = 0
    bind_count: int = 0
    logins: int = 0
    # Settings syncs on checkout; connections closed because they could not be trusted.
    re_synced: int = 0
    force_closed: int = 0
    # Time spent connecting and logging in new servers.
    connect_time: float = 0.0
    # Health checks run (checkout, idle and admin HEALTHCHECK) and how many failed.
    healthchecks: int = 0
    healthcheck_failures: int = 0
    bans: int = 0
    # Checkouts routed here as reads and as writes (multi-host clusters only).
    reads: int = 0
    writes: int = 0
    # Checkouts that waited: counts per WAIT_BUCKETS bound, plus one for +Inf (see wait_buckets).
    waited_buckets: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BUCKETS) + 1))
    # Checkouts lent at once, nearly every transaction's: a native counter, where incrementing a
    # list item past 256 makes a new int object every time.
    lent_at_once: int = 0

    @property
    def wait_buckets(self) -> list[int]:
        """Checkout wait times: counts per WAIT_BUCKETS bound, plus one for +Inf."""
        buckets = list(self.waited_buckets)
        buckets[0] += self.lent_at_once
        return buckets

    def observe_wait(self, waited: float) -> None:
        self.checkouts += 1
        self.wait_time_total += waited
        if waited > self.max_wait:
            self.max_wait = waited
        if waited <= 0.0:
            self.lent_at_once += 1
            return
        buckets = self.waited_buckets
        for i, bound in enumerate(WAIT_BUCKETS):
            if waited <= bound:
                buckets[i] += 1
                return
        buckets[-1] += 1


class Pool:
    """Server connections for one pool key."""

    def __init__(
        self,
        pid: int,
        key: PoolKey,
        settings: PoolSettings,
        io: PoolIO,
        log: EventLog,
        timers: Scheduler,
        max_message_size: int,
    ) -> None:
        self.id = pid
        self.key = key
        self.settings = settings
        self.io = io
        self.log = log
        self.timers = timers
        self.max_message_size = max_message_size
        self.state = PoolState.OPEN
        self.idle: list[ServerSession] = []
        self.servers: dict[int, ServerSession] = {}
        self.connecting = 0
        self.waiters: deque[Borrower] = deque()
        self.stats = PoolStats()
        # HOLD_* bits (admin PAUSE / MAINTENANCE); the pool is PAUSED while any is set.
        self.holds = 0
        # Servers connected before this time are replaced (admin RECONNECT).
        self.reconnect_at = float("-inf")
        self.last_error: str | None = None
        # Startup ParameterStatus of this pool's servers, for clients' logins.
        self.server_params: dict[str, str] | None = None
        # (setting, value) pairs a server accepted, with what it reported back.
        self.known_settings: dict[tuple[str, str], dict[str, str]] = {}
        # What logged-in clients were told (ParameterStatus), one dict per distinct set of values,
        # shared until a client's own values change (ClientSession.tell copies it then).
        self.told_cache: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        # Lower-case name -> name as reported, for the settings servers report.
        self._reported_names: dict[str, str] = {}
        self._wait_timer: TimerHandle | None = None
        self._wait_when = 0.0
        self._maint_timer: TimerHandle | None = None
        # The cluster this pool serves in (bans, roles, rerouting); None for a lone pool.
        self.owner: PoolOwner | None = None
        # The host's current role: the configured one, or what the LSN monitor detected
        # ("auto" until it knows).
        self.role = key.role
        # Whether the last health evidence (check, connect, login) was good, and the error if not.
        self.healthy = True
        self.health_error: str | None = None
        self.probes: deque[Probe] = deque()
        # Connections running a probe right now (they return through checkin).
        self.checking = 0
        self._started = 0.0
        self._next_idle_check = 0.0
        self._health_probe = Probe(HEALTHCHECK_SQL, 0.0, self._health_done)

    # -- bookkeeping ---------------------------------------------------------

    def _transition(self, now: float, to: PoolState, reason: Reason) -> None:
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"pool {self.id}: {self.state.name} -> {to.name}")
        self.log.emit(now, Kind.TRANSITION, Machine.POOL, self.id, self.state, to, reason)
        self.state = to

    @property
    def active_count(self) -> int:
        return sum(1 for s in self.servers.values() if s.state is ServerState.ACTIVE)

    @property
    def total(self) -> int:
        return len(self.servers)

    def start(self, now: float) -> None:
        self._started = now
        self._next_idle_check = now + self.settings.idle_healthcheck_delay / 1000.0
        self._maint_timer = self.timers.arm(now, self._maintenance)

    # -- checkout ------------------------------------------------------------

    def checkout(self, now: float, client: Borrower, deadline: float | None = None) -> ServerSession | None:
        """A server for ``client`` now, or None and the client waits.

        ``deadline`` keeps the checkout_timeout of a client the cluster moved here from
        another host; a fresh checkout starts its own."""
        if self.state is _POOL_CLOSED:
            client.on_checkout_failed(now, "the pool was closed (configuration reload or shutdown)")
            return None
        if self.state is _POOL_OPEN and self.idle and not self.waiters:
            server = self.idle.pop()
            if now - server.last_check < self.settings.healthcheck_interval / 1000.0:
                self._lend(now, server, client, 0.0)
                return server
            # Unused for longer than healthcheck_interval: check it before lending.
            # The client queues meanwhile; the server comes back through checkin.
            self._run_probe(now, server, self._health_probe)
        if deadline is None:
            client.wait_started = now
            deadline = now + self.settings.checkout_timeout / 1000.0
        client.wait_deadline = deadline
        self.waiters.append(client)
        self.log.emit(now, _K_ENQUEUE, _M_POOL, self.id, 0, 0, client.id, len(self.waiters))
        if not self.holds and (self._wait_timer is None or client.wait_deadline < self._wait_when):
            self._arm_wait_timer()
        if self.last_error is None:
            # After a failed connect the maintenance tick retries, at its pace.
            self._grow(now)
        return None

    def cancel_wait(self, now: float, client: Borrower) -> None:
        try:
            self.waiters.remove(client)
        except ValueError:
            return
        self.log.emit(now, Kind.DEQUEUE, Machine.POOL, self.id, 0, 0, client.id)

    def _lend(self, now: float, server: ServerSession, client: Borrower, waited: float) -> None:
        self.stats.observe_wait(waited)
        if waited:
            client.wait_time += waited  # (a Borrower's attributes are read the slow way)
        self.log.emit(now, _K_CHECKOUT, _M_POOL, self.id, 0, 0, client.id, server.id)

    def _grow(self, now: float) -> None:
        """Open connections for waiters, up to the pool size."""
        if self.state is not PoolState.OPEN:
            return
        while len(self.waiters) + len(self.probes) > self.connecting + self.checking \
                and self.total < self.settings.pool_size:
            self._open(now)

    def _open(self, now: float) -> None:
        self.connecting += 1
        self.stats.connects += 1
        server = self.io.open_server(self)
        self.servers[server.id] = server

    def _arm_wait_timer(self) -> None:
        """One timer for the earliest deadline among the waiters.

        Deadlines are not in queue order once checkout_timeout changes (admin SET,
        reload), so the earliest is searched for rather than assumed to be first."""
        if self._wait_timer is not None:
            self._wait_timer.cancel()
            self._wait_timer = None
        if self.waiters and not self.holds:
            when = min(client.wait_deadline for client in self.waiters)
            self._wait_when = when
            self._wait_timer = self.timers.arm(when, self._wait_expired)

    def _wait_expired(self, now: float) -> None:
        self._wait_timer = None
        if self.holds:
            return
        expired = [client for client in self.waiters if client.wait_deadline <= now]
        for client in expired:
            self.waiters.remove(client)
            self.stats.checkout_timeouts += 1
            self.log.emit(now, Kind.TIMEOUT, Machine.POOL, self.id, 0, 0, client.id)
            client.on_checkout_failed(now, "checkout timeout: no server connection available", timeout=True)
        if self.waiters and self._wait_timer is None:
            self._arm_wait_timer()

    # -- servers coming back ---------------------------------------------------

    def server_ready(self, now: float, server: ServerSession) -> None:
        """A new connection finished logging in."""
        self.connecting -= 1
        self.last_error = None
        if not self.healthy:
            self._health(now, True, Reason.SERVER_READY, None)
        self.stats.connect_time += now - server.created_at
        if self.server_params is None:
            self.server_params = dict(server.reported)
            self._reported_names = {name.lower(): name for name in server.reported}
        self.checkin(now, server)

    def reported_name(self, name: str) -> str | None:
        """How servers spell ``name`` in ParameterStatus, or None if they never report it."""
        return self._reported_names.get(name)

    def checkin(self, now: float, server: ServerSession) -> None:
        """``server`` is IDLE and clean again."""
        self.log.emit(now, _K_CHECKIN, _M_POOL, self.id, 0, 0, 0, server.id)
        # It answered every request it was sent: as good as a health check.
        if server.last_active > server.last_check:
            server.last_check = server.last_active
        if self.state is _POOL_CLOSED or self._expired(now, server):
            server.terminate(now, _R_LIFETIME)
            return
        if self.holds & HOLD_PAUSE:
            server.terminate(now, _R_PAUSE)
            return
        if server.created_at < self.reconnect_at:
            server.terminate(now, _R_RECONNECT)
            if self.waiters:
                self._grow(now)
            return
        if self.probes and self.state is not _POOL_CLOSED:
            self._run_probe(now, server, self.probes.popleft())
            return
        if self.state is _POOL_OPEN:
            while self.waiters:
                client = self.waiters.popleft()
                self._lend(now, server, client, now - client.wait_started)
                client.on_checkout(now, server)
                return
        self.idle.append(server)

    def _expired(self, now: float, server: ServerSession) -> bool:
        # An int, never None (a test of that would box it: a new object at every checkin).
        lifetime = self.settings.server_lifetime
        return lifetime > 0 and now - server.created_at >= lifetime / 1000.0

    def server_closed(self, now: float, server: ServerSession, was: ServerState) -> None:
        self.servers.pop(server.id, None)
        if server in self.idle:
            self.idle.remove(server)
        if was in (ServerState.CONNECTING, ServerState.STARTUP):
            self.connecting -= 1
            self.stats.connect_errors += 1
            self.last_error = server.error
            reason = Reason.LOGIN_TIMEOUT if server.close_reason is Reason.LOGIN_TIMEOUT else Reason.CONNECT_FAILED
            self._health(now, False, reason, server.error)
            if not self.servers and self.connecting == 0:
                # Nothing can come back to the waiters or the probes: tell them why now.
                self._fail_probes(now, f"could not connect to the server: {server.error}")
                self._fail_waiters(now, f"could not connect to the server: {server.error}")
            if self.holds & HOLD_PAUSE and self.drained:
                self.io.pool_drained(now, self)
            return
        if was is ServerState.ACTIVE and server.error:
            self.stats.server_errors += 1
        self._grow(now)
        if self.holds & HOLD_PAUSE and self.drained:
            self.io.pool_drained(now, self)

    # -- maintenance -----------------------------------------------------------

    def _maintenance(self, now: float) -> None:
        self._maint_timer = None
        if self.state is PoolState.CLOSED:
            return
        idle_timeout = self.settings.idle_timeout
        keep = self.settings.min_pool_size
        # Oldest-used idle servers sit at the bottom of the stack.
        for server in list(self.idle):
            if self.total <= keep and not self._expired(now, server):
                break
            stale = idle_timeout and now - server.last_used >= idle_timeout / 1000.0
            if stale or self._expired(now, server):
                self.idle.remove(server)
                server.terminate(now, Reason.IDLE_TIMEOUT if stale else Reason.LIFETIME)
        if now >= self._next_idle_check and self.state is not PoolState.CLOSED:
            self._idle_health_check(now)
        if self.state is PoolState.OPEN:
            self._grow(now)
            floor = min(keep, self.settings.pool_size)
            if self.last_error is None:
                while self.total < floor:
                    self._open(now)
            elif self.total < floor and self.connecting == 0 and not self.banned:
                # One attempt per tick while the host is failing; a banned host is
                # retried by the idle health check, at its slower pace.
                self._open(now)
        self._maint_timer = self.timers.arm(now + MAINTENANCE_INTERVAL, self._maintenance)

    # -- health ----------------------------------------------------------------
    #
    # Evidence about the host arrives from connects and logins, from checks of
    # connections unused for healthcheck_interval (at checkout), and from the idle
    # check every idle_healthcheck_interval. Each change of verdict goes to the
    # owner (the cluster), which bans and unbans; the pool only keeps the verdict.

    @property
    def banned(self) -> bool:
        """Out of the read rotation (the cluster's bans)."""
        owner = self.owner
        return owner is not None and self.id in owner.bans  # type: ignore[attr-defined]

    def _health(self, now: float, ok: bool, reason: Reason, error: str | None) -> None:
        changed = ok != self.healthy
        self.healthy = ok
        self.health_error = None if ok else error
        if changed:
            self.log.emit(now, Kind.NOTE, Machine.POOL, self.id, 0, 0,
                          Reason.HEALTHCHECK_OK if ok else Reason.HEALTHCHECK_FAILED, reason)
        if self.owner is not None:
            self.owner.pool_health(now, self, ok, reason, error)

    def probe(self, now: float, probe: Probe) -> None:
        """Run ``probe`` on a connection of this pool as soon as one is free (see state/probe.py)."""
        if self.state is PoolState.CLOSED:
            probe.done(now, self, None, "the pool is closed")
            return
        if self.idle:
            self._run_probe(now, self.idle.pop(), probe)
            return
        self.probes.append(probe)
        if len(self.probes) > self.connecting and self.total < self.settings.pool_size \
                and not self.holds & HOLD_PAUSE:
            self._open(now)

    def health_check(self, now: float) -> None:
        """Check the host now (admin HEALTHCHECK, and the idle check)."""
        if self._health_probe not in self.probes:
            self.probe(now, self._health_probe)

    def _run_probe(self, now: float, server: ServerSession, probe: Probe) -> None:
        if probe.health:
            self.stats.healthchecks += 1
        self.checking += 1

        def done(at: float, srv: ServerSession, row: list[str | None] | None, error: str | None) -> None:
            self.checking -= 1
            if probe.health and error is not None:
                self.stats.healthcheck_failures += 1
            probe.done(at, self, row, error)
            if error is None:
                self.checkin(at, srv)
            elif self.waiters and self.state is PoolState.OPEN:
                self._grow(at)

        server.probe(now, probe.sql, probe.timeout or self.settings.healthcheck_timeout / 1000.0, done,
                     "health check" if probe.health else "LSN check")

    def _health_done(self, now: float, pool: Pool, row: list[str | None] | None, error: str | None) -> None:
        if error is None:
            self._health(now, True, Reason.HEALTHCHECK_OK, None)
        else:
            timeout = "timed out" in error
            self._health(now, False, Reason.HEALTHCHECK_TIMEOUT if timeout else Reason.HEALTHCHECK_FAILED, error)

    def _idle_health_check(self, now: float) -> None:
        """Every idle_healthcheck_interval: check an idle connection, or open one to check.
        A pool whose connections are all busy is evidently answering: nothing to do."""
        self._next_idle_check = now + max(self.settings.idle_healthcheck_interval, 100) / 1000.0
        if self.idle or not self.servers or not self.healthy:
            self.health_check(now)

    def _fail_probes(self, now: float, message: str) -> None:
        probes = list(self.probes)
        self.probes.clear()
        for probe in probes:
            probe.done(now, self, None, message)

    def _fail_waiters(self, now: float, message: str) -> None:
        waiters = list(self.waiters)
        self.waiters.clear()
        if self.owner is not None and waiters:
            self.owner.reroute(now, self, waiters, message)
            return
        for client in waiters:
            client.on_checkout_failed(now, message)

    def dump_idle(self, now: float, reason: Reason) -> None:
        """Close idle connections (the host was banned: they may be broken too)."""
        for server in list(self.idle):
            server.terminate(now, reason)
        self.idle.clear()

    # -- admin ---------------------------------------------------------------

    #
    # A pool is PAUSED while any hold is on. PAUSE (for a server restart) also
    # closes servers as they come home, and reports when the last one has gone;
    # MAINTENANCE only parks clients between transactions, servers stay open.
    # Clients queued behind a hold do not time out: the operator chose to make
    # them wait, and their checkout_timeout starts again when the hold lifts.

    @property
    def paused(self) -> bool:
        return bool(self.holds & HOLD_PAUSE)

    @property
    def maintenance(self) -> bool:
        return bool(self.holds & HOLD_MAINTENANCE)

    @property
    def drained(self) -> bool:
        """No server connection left (what PAUSE waits for)."""
        return not self.servers and self.connecting == 0

    def pause(self, now: float) -> None:
        self._hold(now, HOLD_PAUSE, Reason.PAUSE)
        for server in list(self.idle):
            server.terminate(now, Reason.PAUSE)
        self.idle.clear()
        # Connections still logging in finish, then close at check-in.

    def resume(self, now: float) -> None:
        self._release(now, HOLD_PAUSE, Reason.RESUME)

    def set_maintenance(self, now: float, on: bool) -> None:
        if on:
            self._hold(now, HOLD_MAINTENANCE, Reason.MAINTENANCE)
        else:
            self._release(now, HOLD_MAINTENANCE, Reason.MAINTENANCE)

    def reconnect(self, now: float) -> None:
        """Replace every server: idle ones now, busy ones when their client lets go."""
        self.reconnect_at = now
        self.log.emit(now, Kind.NOTE, Machine.POOL, self.id, 0, 0, Reason.RECONNECT)
        for server in list(self.idle):
            server.terminate(now, Reason.RECONNECT)
        self.idle.clear()
        if self.state is PoolState.OPEN:
            self._grow(now)

    def _hold(self, now: float, hold: int, reason: Reason) -> None:
        if self.state is PoolState.CLOSED:
            return
        self.holds |= hold
        if self.state is PoolState.OPEN:
            self._transition(now, PoolState.PAUSED, reason)
            if self._wait_timer is not None:
                self._wait_timer.cancel()
                self._wait_timer = None

    def _release(self, now: float, hold: int, reason: Reason) -> None:
        self.holds &= ~hold
        if self.holds or self.state is not PoolState.PAUSED:
            return
        self._transition(now, PoolState.OPEN, reason)
        deadline = now + self.settings.checkout_timeout / 1000.0
        for client in self.waiters:
            if client.wait_deadline < deadline:
                client.wait_deadline = deadline
        while self.idle and self.waiters:
            self.checkin(now, self.idle.pop())
        self._grow(now)
        if self.waiters:
            self._arm_wait_timer()

    def close(self, now: float, reason: Reason = Reason.POOL_CLOSED) -> None:
        """Stop lending; idle servers go now, active ones when their client lets go."""
        if self.state is PoolState.CLOSED:
            return
        self._transition(now, PoolState.CLOSED, reason)
        for timer in (self._wait_timer, self._maint_timer):
            if timer is not None:
                timer.cancel()
        self._wait_timer = self._maint_timer = None
        waiters = list(self.waiters)
        self.waiters.clear()
        for client in waiters:
            client.on_checkout_failed(now, "the pool was closed (configuration reload or shutdown)")
        self._fail_probes(now, "the pool was closed")
        for server in list(self.idle):
            server.terminate(now, reason)
        self.idle.clear()
        for server in list(self.servers.values()):
            if server.state in (ServerState.CONNECTING, ServerState.STARTUP, ServerState.CHECKING):
                server.terminate(now, reason)

