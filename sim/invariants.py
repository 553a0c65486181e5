"""What must hold, checked after every step of the world and once at the end.

After every step (from the proxy's own event log, read as it is written, and
from the fake servers' state):
- every TRANSITION is in its machine's table and starts where the last one ended;
- a banned host is given no new read checkouts; a write is never routed to a replica;
- a host a reload added under require_healthcheck_on_discovery gets no read checkout before
  it has answered a health check (counted by the fake server itself), unless every read host
  was banned and the proxy lifted the bans rather than fail reads;
- a server is only ever checked in to its pool with its backend idle (no open
  transaction, nothing unread, nothing in flight);
- a replica never executes a write (the fake servers record any they refuse);
- no pool holds more servers than its pool_size;
- once the faults are over, no request waits longer than the clients' timeout.

At the end of the settle phase:
- every acknowledged commit is on the primary, with its value; nothing a client
  abandoned before COMMIT is committed anywhere; counters lie within what was
  acknowledged and what is unknown;
- every client finished, no backend is left inside a transaction, every pool of
  a reachable host is unbanned and healthy, no client session leaked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state import client as client_mod
from state import pool as pool_mod
from state import server as server_mod
from state.events import RECORD, RECORD_SIZE, Kind, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    from sim.run import Run

_TABLES = {
    int(Machine.CLIENT): (client_mod.ClientState, client_mod.TRANSITIONS),
    int(Machine.SERVER): (server_mod.ServerState, server_mod.TRANSITIONS),
    int(Machine.POOL): (pool_mod.PoolState, pool_mod.TRANSITIONS),
}
_TRANSITION = int(Kind.TRANSITION)
_CHECKOUT = int(Kind.CHECKOUT)
_CHECKIN = int(Kind.CHECKIN)
_ROUTE = int(Kind.ROUTE)
_BAN = int(Kind.BAN)
_UNBAN = int(Kind.UNBAN)
_NOTE = int(Kind.NOTE)
_DAEMON = int(Machine.DAEMON)
_STARTUP = int(Reason.STARTUP)
_UNBAN_ALL_BANNED = int(Reason.UNBAN_ALL_BANNED)


class Invariants:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.world = run.world
        self._offset = 0
        self._states: dict[tuple[int, int], int] = {}
        self._banned: set[int] = set()
        self._routes: dict[int, int] = {}
        self._refused = [0] * len(run.pgs)
        self._hangs = 0
        self.counts = {"transitions": 0, "checkouts": 0, "bans": 0, "unbans": 0, "checkins": 0, "restarts": 0}

    # -- every step -------------------------------------------------------------------------

    def step(self) -> None:
        run = self.run
        run.events.flush()
        data = run.sink.data
        if len(data) > self._offset:
            end = len(data) - (len(data) - self._offset) % RECORD_SIZE
            for rec in RECORD.iter_unpack(memoryview(data)[self._offset:end]):
                self._record(rec)
            self._offset = end
        for i, pg in enumerate(run.pgs):
            refused = pg.database.writes_refused
            if len(refused) > self._refused[i]:
                for _when, sql, pid in refused[self._refused[i]:]:
                    self.world.violation("write-to-replica", f"{pg.name} (in recovery) was sent {sql!r} by pid {pid}")
                self._refused[i] = len(refused)
        daemon = run.proxy.daemon
        if daemon is not None:
            for pool in daemon.directory.pools.values():
                if pool.total > pool.settings.pool_size:
                    self.world.violation("pool-size", f"pool {pool.id} holds {pool.total} servers, "
                                                      f"pool_size is {pool.settings.pool_size}")
        hangs = run.app.hangs
        if len(hangs) > self._hangs:
            for cid, kind, waited, at in hangs[self._hangs:]:
                started = at - waited
                if started >= run.faults_end or at > run.faults_end + run.app.request_timeout:
                    self.world.violation("liveness", f"client {cid} ({kind}) got no answer for {waited:.1f} s "
                                                     f"(asked at +{started - _epoch():.3f}s, faults over at "
                                                     f"+{run.faults_end - _epoch():.3f}s)")
            self._hangs = len(hangs)

    def _record(self, rec: tuple[int, ...]) -> None:
        _, _, kind, machine, ident, frm, to, a, b = rec
        if kind == _TRANSITION:
            self.counts["transitions"] += 1
            table = _TABLES.get(machine)
            if table is None:
                return
            states, transitions = table
            key = (machine, ident)
            last = self._states.get(key)
            name = Machine(machine).name.lower()
            if last is not None and last != frm:
                self.world.violation("transition", f"{name} {ident}: went {frm}->{to} but was in {last}")
            try:
                legal = states(to) in transitions[states(frm)]
            except ValueError:
                legal = False
            if not legal:
                self.world.violation("transition", f"{name} {ident}: {frm}->{to} is not in its table")
            self._states[key] = to
        elif kind == _ROUTE:
            self._routes[ident] = b
        elif kind == _CHECKOUT:
            self.counts["checkouts"] += 1
            write = self._routes.pop(a, None)
            if write == 0 and ident in self._banned:
                self.world.violation("banned-host", f"pool {ident} is banned but client {a} got a read checkout there")
            if write == 0 and self.run.unchecked:
                self._check_proven(ident, a)
            if write == 1:
                self._check_write_target(ident, a)
        elif kind == _CHECKIN:
            self.counts["checkins"] += 1
            self._check_clean(ident, b)
        elif kind == _BAN:
            self.counts["bans"] += 1
            self._banned.add(ident)
        elif kind == _UNBAN:
            self.counts["unbans"] += 1
            self._banned.discard(ident)
            if a == _UNBAN_ALL_BANNED and self.run.unchecked:
                # Better an unchecked host than no host: the proxy's documented way out.
                pool = self._pool(ident)
                pg = self._pg_of(pool) if pool is not None else None
                if pg is not None:
                    self.run.unchecked.pop(pg.name, None)
        elif kind == _NOTE and machine == _DAEMON and a == _STARTUP:
            # A new incarnation of the proxy numbers its machines from 1 again.
            self.counts["restarts"] += 1
            self._states.clear()
            self._banned.clear()
            self._routes.clear()
            # Its configuration is its first: no host in it is "added by a reload".
            self.run.unchecked.clear()

    def _pool(self, pool_id: int) -> Any:
        daemon = self.run.proxy.daemon
        if daemon is None:
            return None
        for pool in daemon.directory.pools.values():
            if pool.id == pool_id:
                return pool
        return None

    def _check_proven(self, pool_id: int, client_id: int) -> None:
        pool = self._pool(pool_id)
        pg = self._pg_of(pool) if pool is not None else None
        if pg is None or pg.name not in self.run.unchecked:
            return
        if pg.database.stats.get("probe", 0) > self.run.unchecked[pg.name]:
            del self.run.unchecked[pg.name]  # it answered a check since the reload
            return
        self.world.violation("unchecked-host", f"client {client_id} got a read checkout on {pg.name} (pool "
                                               f"{pool_id}), added by a reload and not yet health-checked")

    def _check_write_target(self, pool_id: int, client_id: int) -> None:
        pool = self._pool(pool_id)
        if pool is None:
            return
        if pool.key.role == "replica":
            self.world.violation("write-to-replica", f"client {client_id}: write routed to replica pool {pool_id}")
            return
        host = self._pg_of(pool)
        if host is not None and host.reactor is not None and host.database.in_recovery and pool.role == "primary":
            # The proxy believes a host in recovery is the primary: it missed a role change.
            self.world.violation("write-to-replica",
                                 f"client {client_id}: write routed to {host.name}, which is in recovery")

    def _pg_of(self, pool: Any) -> Any:
        for pg in self.run.pgs:
            if pg.address == pool.key.host and pg.port == pool.key.port:
                return pg
        return None

    def _check_clean(self, pool_id: int, server_id: int) -> None:
        pool = self._pool(pool_id)
        if pool is None:
            return
        server = pool.servers.get(server_id)
        if server is None or server.state is not server_mod.ServerState.IDLE:
            return
        backend = self._backend(pool, server)
        if backend is None:
            return
        session, sock = backend
        status = session.txn_status
        if status != "I":
            self.world.violation("dirty-checkin", f"server {server_id} back in pool {pool_id} with its backend in "
                                                  f"transaction state {status!r}")
        elif session.busy or (sock.out is not None and sock.out.in_flight) or sock.rcvbuf or \
                (sock.peer is not None and sock.peer.out is not None and sock.peer.out.in_flight):
            self.world.violation("dirty-checkin", f"server {server_id} back in pool {pool_id} with unanswered "
                                                  f"requests or unread replies")

    def _backend(self, pool: Any, server: Any) -> tuple[Any, Any] | None:
        transport = getattr(server.io, "transport", None)
        if transport is None:
            return None
        sock = transport.get_extra_info("socket")
        pg = self._pg_of(pool)
        if sock is None or pg is None:
            return None
        session = pg.session_for(sock)
        return None if session is None else (session, sock)

    # -- at the end ------------------------------------------------------------------------

    def final(self) -> None:
        run = self.run
        world = self.world
        h = run.app.history
        for c in run.app.unfinished():
            what = c.outstanding
            detail = f"waiting since +{what[0] - _epoch():.3f}s on {what[1]!r}" if what else "not finished"
            world.violation("liveness", f"client {c.cid} ({c.kind}) still running at the end: {detail}")
        primary = run.primary()
        if primary is not None:
            db = primary.database
            for (table, key), value in h.acked.items():
                got = db.committed_value(table, key)
                if got is None:
                    world.violation("lost-commit", f"acknowledged {table} k={key} is not on the primary {primary.name}")
                elif got != value:
                    world.violation("lost-commit", f"acknowledged {table} k={key} v={value} reads v={got} on "
                                                   f"{primary.name}")
            for key, (acked, maybe) in h.counters.items():
                got = db.committed_value("counters", key) or 0
                if not acked <= got <= acked + maybe:
                    world.violation("counter", f"counter {key} is {got}: {acked} increments acknowledged, "
                                               f"{maybe} unknown")
        for pg in run.pgs:
            for table, key in sorted(h.never):
                if (table, key) in h.maybe:
                    continue
                if pg.database.committed_value(table, key) is not None:
                    world.violation("abandoned-committed", f"{table} k={key} was never committed by its client "
                                                           f"but is committed on {pg.name}")
            if pg.reactor is None:
                continue
            for session in pg.server.sessions:
                if session.txn_status != "I" and not getattr(session, "is_cancel", False):
                    world.violation("leaked-transaction", f"{pg.name} backend pid {session.pid} is still in "
                                                          f"transaction state {session.txn_status!r} after settling")
        daemon = run.proxy.daemon
        if daemon is not None:
            if daemon.directory.clients:
                ids = sorted(daemon.directory.clients)
                world.violation("leaked-client", f"the proxy still has client sessions {ids} after every client left")
            for cluster in daemon.directory.clusters.values():
                for pool in cluster.pools:
                    pg = self._pg_of(pool)
                    if pg is None or pg.reactor is None:
                        continue
                    if pool.banned:
                        world.violation("ban-not-lifted", f"pool {pool.id} ({pg.name}) is still banned after "
                                                          f"{run.sc.settle:.0f} s of health")
                    elif not pool.healthy:
                        world.violation("unhealthy", f"pool {pool.id} ({pg.name}) is still unhealthy after settling")

    def summary(self) -> dict[str, Any]:
        h = self.run.app.history
        return {
            "acked": len(h.acked),
            "commits": h.committed,
            "maybe": len(h.maybe),
            "never": len(h.never),
            "gave_up": h.gave_up,
            "errors": dict(sorted(h.errors.items())),
            "requests": sum(c.requests for c in self.run.app.clients),
            **self.counts,
        }


def _epoch() -> float:
    from sim.world import EPOCH

    return EPOCH
