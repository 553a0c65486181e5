"""The narrow interfaces through which state machines reach the outside world.

Machines never hold a socket or read a clock: time arrives as ``now``, and every
effect (bytes out, close, a timer, a new server connection) goes through one of
these. Production implements them over ``loop/`` transports; the simulator over
virtual ones. Keeping them this small is what makes a machine replayable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pgdog_ev.sql import Analysis
    from state.client import ClientSession
    from state.pool import Pool
    from state.server import ServerSession

Entropy = Callable[[int], bytes]


class Borrower(Protocol):
    """What pools, clusters and server connections need of the client that holds or awaits a
    server: a ClientSession, or a recording fake in the machines' unit tests. (Typed as this
    rather than ClientSession so that the compiled build, which checks argument types, takes
    either; see pgdog_ev.native.)"""

    id: int
    io: StreamIO
    pool: Pool | None
    errors: int
    query_time: float
    xact_time: float
    wait_started: float
    wait_deadline: float
    wait_time: float
    route_write: bool
    route_replica: bool
    _now: float

    @property
    def params(self) -> dict[str, str]: ...

    def report(self, name: str, value: str) -> None: ...

    def tell(self, name: str, value: str) -> None: ...

    def on_checkout(self, now: float, server: ServerSession) -> None: ...

    def on_checkout_failed(self, now: float, message: str, timeout: bool = False, code: str = ...) -> None: ...

    def on_login_checked(self, now: float, server: ServerSession, reported: dict[str, str],
                         error: dict[str, str] | None) -> None: ...

    def on_request_done(self, now: float, server: ServerSession, analyses: list[Analysis], before: bytes,
                        status: bytes, failed: bool) -> None: ...

    def pin_survivors(self, now: float, analyses: list[Analysis]) -> None: ...

    def on_server_ready(self, now: float, server: ServerSession, status: bytes) -> None: ...

    def on_server_lost(self, now: float, server: ServerSession, query_timeout: bool = False) -> None: ...

    def forget_statement(self, name: str, stmt: str) -> None: ...


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Arms timers; the callback receives the time it fired at as ``now``."""

    def arm(self, when: float, callback: Callable[..., None], *args: Any) -> TimerHandle: ...


class StreamIO(Protocol):
    """One byte stream (a client's or a server's socket)."""

    def send(self, data: bytes | bytearray | memoryview) -> None: ...

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def start_tls(self) -> None:
        """Switch this stream to TLS: bytes already sent leave in plaintext, everything after is
        encrypted, and what the peer sends from now on arrives decrypted. Only called after the
        SSLRequest/'S' exchange the machine itself performed, and only when TLS is configured
        (a client session is told so at construction; a server session by its ``tls_verify``).
        A handshake that fails closes the stream, logged by the io and never by the machine:
        a client session sees ``on_closed``, a server session ``on_connect_failed`` with the reason."""


class ServerIO(StreamIO, Protocol):
    def send_cancel(self, pid: int, secret: bytes) -> None:
        """Send a CancelRequest for (pid, secret) on a new connection to the same host;
        call the session's ``on_cancel_done(now)`` once that connection is closed or failed."""


class PoolIO(Protocol):
    def open_server(self, pool: Pool) -> ServerSession:
        """Start connecting a new server for ``pool``; returns it in CONNECTING."""

    def pool_drained(self, now: float, pool: Pool) -> None:
        """A paused pool's last server connection closed (admin PAUSE waits for this)."""


class PoolOwner(Protocol):
    """The cluster a pool serves in (state/cluster.py)."""

    def pool_health(self, now: float, pool: Pool, ok: bool, reason: int, error: str | None) -> None:
        """The pool's host answered (``ok``) or failed: a health check, a connect error or
        timeout. ``reason`` is a Reason saying which."""

    def reroute(self, now: float, pool: Pool, clients: list[Borrower], error: str) -> None:
        """Clients queued at ``pool`` that it cannot serve (its host refuses connections):
        find them another host, or fail them with ``error``."""


class Directory(Protocol):
    """What a client session needs to know about the rest of the proxy."""

    @property
    def auth_type(self) -> str: ...

    # The proxy-wide PreparedRegistry of renamed statements.
    statements: Any

    def has_database(self, name: str) -> bool: ...

    def lookup(self, database: str, user: str) -> Any:
        """Return a ``Login`` for this (database, user), or None when unknown."""

    def cancel(self, now: float, pid: int, secret: bytes) -> None: ...

    def client_closed(self, client: ClientSession) -> None: ...

    def auth_failed(self, client: ClientSession, user: str, database: str) -> None: ...

    def admit(self, client: ClientSession) -> tuple[str, str] | None:
        """Count an authenticated client against the client limits; (SQLSTATE, message) if over."""

    # The admin console (clients whose Login has ``admin`` set).
    def admin_parameters(self) -> dict[str, str]:
        """ParameterStatus values an admin client gets at login."""

    def admin_query(self, now: float, client: ClientSession, text: str) -> bytes | None:
        """The reply to a simple Query (without ReadyForQuery), or None when it comes later
        through ``client.admin_reply``."""

    def admin_cancel(self, now: float, client: ClientSession) -> None:
        """A waiting admin command was canceled or its client left."""
