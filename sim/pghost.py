"""A fake PostgreSQL server as a simulated host.

The sans-IO backend sessions (sim/fakepg) sit behind the same Reactor,
Listener and SocketTransport the proxy uses. This adapter adds what belongs
to the host rather than to PostgreSQL: the listening port, the wake-up timer
each session asks for (pg_sleep, delayed answers), replication ticks, and the
faults (process crash and restart, power loss, a hang that stops it
answering without closing anything).
"""

from __future__ import annotations

from typing import Any

from loop.protocol import Protocol
from sim.world import Host, SimReactor, World

PG_PORT = 5432
#: How often a replica applies the primary's WAL (its lag setting decides what is due).
REPLICATION_TICK = 0.005


class BackendConn(Protocol):
    """One accepted connection and its backend session."""

    def __init__(self, host: PgHost) -> None:
        self.host = host
        self.transport: Any = None
        self.session: Any = None
        self.sock: Any = None
        self.timer: Any = None
        self.timer_at: float | None = None
        self.held_in: list[bytes] = []
        self.held_out: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.sock = transport.get_extra_info("socket")
        host = self.host
        host.conns[self.sock.fd] = self
        self.session = host.server.open_session(host.world.now(), self._send)
        self._after()

    def _send(self, data: bytes) -> None:
        if self.host.hung:
            self.held_out.append(bytes(data))
        elif self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: memoryview) -> None:
        if self.host.hung:
            self.held_in.append(bytes(data))
            return
        self.session.on_bytes(self.host.world.now(), bytes(data))
        self._after()

    def resume(self) -> None:
        """The hang is over: what was written comes out, what was read is processed."""
        out, self.held_out = self.held_out, []
        for data in out:
            self._send(data)
        held, self.held_in = self.held_in, []
        now = self.host.world.now()
        for data in held:
            if self.transport is None:
                return
            self.session.on_bytes(now, data)
        self._after()

    def _after(self) -> None:
        session = self.session
        if session is None or self.transport is None:
            return
        if session.closed:
            self.transport.close()
            return
        wakeup = session.wakeup
        if wakeup != self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.timer_at = wakeup
            if wakeup is not None:
                reactor = self.host.reactor
                assert reactor is not None
                self.timer = reactor.call_at(wakeup, self._wake)

    def _wake(self) -> None:
        self.timer = None
        self.timer_at = None
        if self.host.hung:
            self.host.world.later(0.01, self._wake_later)
            return
        self.session.on_timer(self.host.world.now())
        self._after()

    def _wake_later(self) -> None:
        if self.transport is not None and self.host.reactor is not None:
            self._wake()

    def eof_received(self) -> None:
        self._gone()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def _gone(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None
            self.host.conns.pop(self.sock.fd, None)
            self.session.on_closed(self.host.world.now())


class PgHost(Host):
    def __init__(self, world: World, name: str, server: Any, port: int = PG_PORT) -> None:
        self.world = world
        self.name = name
        self.vnode = world.net.add_node(name)
        self.server = server
        self.port = port
        self.reactor: SimReactor | None = None
        self.conns: dict[int, BackendConn] = {}
        self.hung = False
        self.crashes = 0
        world.add_host(self)

    @property
    def database(self) -> Any:
        return self.server.database

    @property
    def address(self) -> str:
        return self.vnode.ip

    def start(self) -> None:
        self.reactor = self.world.new_reactor(self.vnode)
        self.reactor.listen(None, self.port, self._accept)
        self.reactor.call_later(REPLICATION_TICK, self._tick)

    def _accept(self, sock: Any, addr: Any) -> None:
        assert self.reactor is not None
        self.reactor.transport(sock, BackendConn(self))

    def _tick(self) -> None:
        db = self.database
        now = self.world.now()
        if getattr(db, "primary", None) is not None and db.in_recovery:
            db.replicate(now)
        flush = getattr(db, "flush", None)
        if flush is not None:
            flush(now)
        if self.reactor is not None:
            self.reactor.call_later(REPLICATION_TICK, self._tick)

    # -- faults ---------------------------------------------------------------------------

    def crash(self) -> None:
        """kill -9 of the postmaster: connections close, uncommitted work is gone."""
        if self.reactor is None:
            return
        self.crashes += 1
        self.world.net.kill_process(self.vnode)
        self.conns.clear()
        self.reactor = None
        self.database.crash()

    def restart(self) -> None:
        if self.reactor is not None:
            return
        self.database.restart(self.world.now())
        self.start()

    def power_off(self) -> None:
        if self.reactor is None:
            return
        self.crashes += 1
        self.world.net.power_off(self.vnode)
        self.conns.clear()
        self.reactor = None
        self.database.crash()

    def power_on(self) -> None:
        self.world.net.power_on(self.vnode)
        self.restart()

    def hang(self, on: bool) -> None:
        """SIGSTOP / SIGCONT: nothing is answered meanwhile, nothing is closed."""
        if self.hung == on:
            return
        self.hung = on
        if not on:
            for fd in sorted(self.conns):
                conn = self.conns.get(fd)
                if conn is not None:
                    conn.resume()

    def session_for(self, sock: Any) -> Any:
        """The backend session on the other end of a proxy's socket (None if gone)."""
        peer = getattr(sock, "peer", None)
        if peer is None or peer.node is not self.vnode:
            return None
        conn = self.conns.get(peer.fd)
        return conn.session if conn is not None else None
