"""One fake PostgreSQL server (a postmaster): its Database, roles, backends and fault knobs.

The world opens a session per accepted connection (``open_session``) and
routes CancelRequests through ``cancel`` (a session whose first packet is a
CancelRequest does that itself). The knobs are plain attributes the
simulator flips at any time:

* ``hang``: sessions stop answering (input is buffered, nothing is sent, a
  pg_sleep does not finish) until it is cleared, then they carry on;
* ``delay``: seconds added before every response leaves a session;
* ``refuse_connections``: logins fail with FATAL 57P03 (starting up);
* ``max_connections``: more logins fail with FATAL 53300.

``wakeup``/``on_timer`` drive every session of the server at once, which is
the simplest way for the world to keep their timers: a session's wakeup can
change during another session's call (a lock released, a cancel), so read
``server.wakeup`` again after any call into the server.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from sim.fakepg.auth import AuthSpec
from sim.fakepg.database import Database
from sim.fakepg.session import BackendSession, Phase


class CounterEntropy:
    """Deterministic bytes (SHA-256 of a seed and a counter) for when the world injects none."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.counter = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self.counter += 1
            out += hashlib.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
        return out[:n]


class FakeServer:
    def __init__(
        self,
        database: Database,
        auth: AuthSpec | None = None,
        *,
        entropy: Callable[[int], bytes] | None = None,
        port: int = 5432,
        first_pid: int = 1000,
        max_connections: int = 100,
        databases: tuple[str, ...] | None = None,
    ) -> None:
        self.database = database
        self.auth = auth if auth is not None else AuthSpec()
        self.entropy = entropy if entropy is not None else CounterEntropy(database.name.encode())
        self.port = port
        self.hang = False
        self.delay = 0.0
        self.refuse_connections = False
        self.max_connections = max_connections
        # Database names that exist (None: any name is accepted).
        self.databases = databases
        # Called with a session whose wakeup or closed flag may have changed during another
        # session's call (a released lock, a cancel): the world can re-arm its timer.
        self.on_wakeup: Callable[[BackendSession], None] | None = None
        self._next_pid = first_pid
        # Every open connection by pid, and the logged-in backends (the cancel-key table).
        self.connections: dict[int, BackendSession] = {}
        self.backends: dict[int, BackendSession] = {}
        self.connections_opened = 0
        # (now, pid, whether a waiting statement was cancelled) per CancelRequest received.
        self.cancels: list[tuple[float, int, bool]] = []

    # -- connections ---------------------------------------------------------------------

    def open_session(self, now: float, send: Callable[[bytes], None]) -> BackendSession:
        """A new connection was accepted: a backend for it (already closed if the node is down)."""
        pid = self._next_pid
        self._next_pid += 1
        self.connections_opened += 1
        session = BackendSession(self.database, pid, self.entropy(4), send, self.auth, now, server=self)
        if not self.database.up:
            session.kill()
            return session
        self.connections[pid] = session
        return session

    def register(self, session: BackendSession) -> None:
        """A backend finished logging in: its key can be cancelled from now on."""
        self.backends[session.pid] = session

    def forget(self, session: BackendSession) -> None:
        if self.connections.get(session.pid) is session:
            del self.connections[session.pid]
        if self.backends.get(session.pid) is session:
            del self.backends[session.pid]

    def connection_count(self, exclude: BackendSession | None = None) -> int:
        return sum(
            1 for pid in sorted(self.connections)
            if (s := self.connections[pid]) is not exclude and not s.cancel_connection
            and s.phase in (Phase.AUTH, Phase.READY)
        )

    @property
    def sessions(self) -> list[BackendSession]:
        return [self.connections[pid] for pid in sorted(self.connections)]

    def cancel(self, pid: int, secret: bytes, now: float) -> bool:
        target = self.backends.get(pid)
        hit = target is not None and hmac.compare_digest(target.secret, bytes(secret)) and target.cancel(now)
        self.cancels.append((now, pid, hit))
        return hit

    def terminate(self, pid: int, now: float) -> bool:
        """pg_terminate_backend: FATAL 57P01 to that backend, then it closes."""
        target = self.backends.get(pid)
        if target is None:
            return False
        target.terminate_by_admin(now)
        return True

    # -- time ----------------------------------------------------------------------------------

    @property
    def wakeup(self) -> float | None:
        times = [w for s in self.sessions if (w := s.wakeup) is not None]
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        for session in self.sessions:
            when = session.wakeup
            if when is not None and when <= now:
                session.on_timer(now)

    # -- the node ------------------------------------------------------------------------------

    def crash(self) -> None:
        """The node loses power: every backend dies with the database's in-memory state."""
        for session in self.sessions:
            session.kill()
        self.database.crash()

    def restart(self, now: float) -> None:
        self.database.restart(now)
