"""A client socket bridged to its ClientSession.

Besides passing bytes in and out, this owns the reading switch of the client
socket, which two parties may want off at once: the session (while it waits for
a server) and backpressure (while its server's outbox is over the high-water
mark). Reading resumes only when neither does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from loop.clock import Clock
from loop.clock import read as read_clock
from loop.protocol import Protocol
from loop.transport import Stream, Transport, write_to
from pgdog_ev.tls import TlsStream, TlsTransport
from state.client import ClientSession
from state.events import Machine

if TYPE_CHECKING:
    from pgdog_ev.proxy.directory import Directory
    from pgdog_ev.proxy.server_conn import ServerConnection

log = logging.getLogger("pgdog_ev.client")

SESSION = 1
BACKPRESSURE = 2


class ClientConnection(Protocol):
    __slots__ = ("_clock", "_pause", "_paused_server", "cid", "directory", "reject", "session", "tls", "transport")

    def __init__(self, directory: Directory, cid: int, reject: tuple[str, str] | None = None) -> None:
        self.directory = directory
        self.cid = cid
        self.reject = reject
        # The TLS settings at accept time stay this connection's, whatever a reload brings.
        self.tls = directory.tls
        self.transport: Stream | None = None
        self._clock: Clock = directory.reactor.clock
        self.session: ClientSession | None = None
        self._pause = 0
        self._paused_server: ServerConnection | None = None

    @property
    def capture_id(self) -> tuple[int, int]:
        """What an input capture calls this connection's bytes."""
        return (int(Machine.CLIENT), self.cid)

    # -- loop protocol --------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        d = self.directory
        g = d.config.general
        peer = transport.peername
        self.session = ClientSession(
            self.cid,
            self,
            d,
            d.log,
            d.scheduler,
            d.entropy,
            d.reactor.now(),
            login_timeout_ms=g.client_login_timeout,
            idle_timeout_ms=g.client_idle_timeout,
            idle_in_transaction_timeout_ms=g.client_idle_in_transaction_timeout,
            max_message_size=g.max_message_size,
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or ""),
            reject=self.reject,
            tls_available=self.tls.accept is not None,
            tls_required=self.tls.client_required,
        )
        d.client_opened(self.session)

    def data_received(self, data: memoryview) -> None:
        session = self.session
        try:
            session.on_bytes(read_clock(self._clock), data)  # type: ignore[union-attr]
        except Exception:
            log.exception("internal error on client %d; closing it", self.cid)
            self._crash()

    def eof_received(self) -> None:
        self._lost()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def pause_writing(self) -> None:
        # The client reads slower than its server writes: stop reading the server.
        session = self.session
        server = session.server if session is not None else None
        if server is not None:
            conn = server.io
            conn.pause_reading()  # type: ignore[attr-defined]
            self._paused_server = conn  # type: ignore[assignment]

    def resume_writing(self) -> None:
        conn = self._paused_server
        self._paused_server = None
        if conn is not None:
            conn.resume_reading()

    def _lost(self) -> None:
        self.resume_writing()
        session = self.session
        if session is not None:
            try:
                session.on_closed(self.directory.reactor.now())
            except Exception:
                log.exception("internal error closing client %d", self.cid)

    def _crash(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._lost()

    # -- StreamIO for the session ---------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        transport = self.transport
        if transport is not None:
            write_to(transport, data)
            session = self.session
            if session is not None:
                session.bytes_out += len(data)
                pool = session.pool
                if pool is not None:
                    pool.stats.sent += len(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def start_tls(self) -> None:
        """The session answered 'S' to an SSLRequest: the client's TLS handshake comes next."""
        context = self.tls.accept
        transport = self.transport
        assert context is not None and transport is not None and self.session is not None
        if self.directory.capture is not None:
            self.directory.capture.on_tls(int(Machine.CLIENT), self.cid)
        stream = TlsStream(context, server_side=True)
        # Before TLS the transport is the socket's own.
        self.transport = TlsTransport(cast(Transport, transport), self, stream, f"client {self.session.peer}")

    def pause_reading(self, why: int = SESSION) -> None:
        was = self._pause
        self._pause |= why
        if not was and self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self, why: int = SESSION) -> None:
        if not self._pause & why:
            return
        self._pause &= ~why
        if not self._pause and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
