"""A server socket bridged to its ServerSession."""

from __future__ import annotations

import errno
import logging
import socket
from typing import TYPE_CHECKING, Any, cast

from loop.clock import Clock
from loop.clock import read as read_clock
from loop.protocol import Protocol
from loop.transport import Stream, Transport, write_to
from pgdog_ev.capture.format import CANCEL
from pgdog_ev.tls import TlsStream, TlsTransport
from pgdog_ev.wire.startup import build_cancel_request
from state.events import Machine
from state.server import ServerSession

if TYPE_CHECKING:
    from loop.connector import Connector
    from pgdog_ev.proxy.client_conn import ClientConnection
    from pgdog_ev.proxy.directory import Directory
    from state.pool import Pool

log = logging.getLogger("pgdog_ev.server")

CANCEL_TIMEOUT = 5.0


def address(host: str, port: int) -> tuple[str, int]:
    """A host starting with '/' is a unix socket directory, as in libpq."""
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}", port
    return host, port


class ServerConnection(Protocol):
    def __init__(self, directory: Directory, pool: Pool, sid: int) -> None:
        self.directory = directory
        self.transport: Stream | None = None
        self._clock: Clock = directory.reactor.clock
        self._connector: Connector | None = None
        self._early: list[bytes] = []
        self._paused_client: ClientConnection | None = None
        # The TLS settings when the connection began stay its own, whatever a reload brings.
        self.tls = directory.tls
        self.session = ServerSession(
            sid, pool, self, directory.log, directory.scheduler, directory.entropy, directory.reactor.now(),
            tls_verify=self.tls.server_mode(pool.key.host),
        )
        # What an input capture calls this connection's bytes.
        self.capture_id = (int(Machine.SERVER), sid)
        host, port = address(pool.key.host, pool.key.port)
        timeout = pool.settings.connect_timeout / 1000.0 if pool.settings.connect_timeout else None
        self._connector = directory.reactor.connect(host, port, self._connected, timeout=timeout,
                                                    tag=self.capture_id)

    def _connected(self, sock: socket.socket | None, exc: Exception | None) -> None:
        self._connector = None
        now = self.directory.reactor.now()
        session = self.session
        if sock is None:
            error = "connect timeout" if isinstance(exc, TimeoutError) else str(exc)
            key = session.pool.key
            log.warning(
                "connect to %s:%d for %s/%s failed: %s", key.host, key.port, key.user, key.database, error,
                extra={"addr": f"{key.host}:{key.port}", "user": key.user, "database": key.database,
                       "server_id": session.id, "error": error},
            )
            code = errno.ETIMEDOUT if isinstance(exc, TimeoutError) else getattr(exc, "errno", 0) or 0
            session.on_connect_failed(now, error, code)
            return
        if session.state.name == "CLOSED":
            sock.close()
            return
        self.directory.reactor.transport(sock, self)
        session.on_connected(now)

    # -- loop protocol --------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: memoryview) -> None:
        try:
            self.session.on_bytes(read_clock(self._clock), data)
        except Exception:
            log.exception("internal error on server %d; closing it", self.session.id)
            if self.transport is not None:
                self.transport.abort()
            self._lost()

    def eof_received(self) -> None:
        self._lost()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        self.resume_writing()
        try:
            self.session.on_closed(self.directory.reactor.now())
        except Exception:
            log.exception("internal error closing server %d", self.session.id)

    def pause_writing(self) -> None:
        # The server reads slower than its client writes (COPY): stop reading the client.
        client = self.session.client
        if client is not None:
            conn = client.io
            conn.pause_reading(2)  # type: ignore[call-arg]
            self._paused_client = conn  # type: ignore[assignment]

    def resume_writing(self) -> None:
        conn = self._paused_client
        self._paused_client = None
        if conn is not None:
            conn.resume_reading(2)

    # -- ServerIO for the session ---------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        if self.transport is not None:
            write_to(self.transport, data)
            self.session.bytes_out += len(data)

    def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            self._connector = None
        if self.transport is not None:
            self.transport.close()

    def start_tls(self) -> None:
        """The server answered 'S' to our SSLRequest: handshake (verifying it as tls_verify says)."""
        context = self.tls.connect
        transport = self.transport
        assert context is not None and transport is not None
        key = self.session.pool.key
        if self.directory.capture is not None:
            self.directory.capture.on_tls(int(Machine.SERVER), self.session.id)
        stream = TlsStream(context, server_side=False, server_hostname=key.host)
        # Before TLS the transport is the socket's own.
        self.transport = TlsTransport(
            cast(Transport, transport), self, stream, f"server {key.host}:{key.port}", on_handshake_failed=self._tls_failed
        )

    def _tls_failed(self, reason: str) -> None:
        self.session.on_connect_failed(self.directory.reactor.now(), f"TLS handshake with the server failed: {reason}")

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def send_cancel(self, pid: int, secret: bytes) -> None:
        key = self.session.pool.key
        host, port = address(key.host, key.port)
        packet = build_cancel_request(pid, secret)

        reactor = self.directory.reactor
        session = self.session
        seq = 0

        def done(sock: socket.socket | None, exc: Exception | None) -> None:
            if sock is None:
                log.warning("cancel request to %s:%d failed: %s", key.host, key.port, exc,
                            extra={"addr": f"{key.host}:{key.port}", "server_id": session.id})
                session.on_cancel_done(reactor.now())
                return
            reactor.transport(sock, CancelSender(packet, session, reactor, seq))

        # ``done`` runs from the loop, never inside connect(): seq is set by then.
        seq = reactor.connect(host, port, done, timeout=CANCEL_TIMEOUT, tag=CANCEL).seq


class CancelSender(Protocol):
    """Sends one CancelRequest and waits for the postmaster to close the connection.

    The close is the postmaster's only acknowledgement that it signalled the
    backend; until then a server must not be lent to anyone else.
    """

    def __init__(self, packet: bytes, session: ServerSession, reactor: Any, seq: int = 0) -> None:
        self.packet = packet
        self.session = session
        self.reactor = reactor
        self.transport: Any = None
        self.timer: Any = None
        # What an input capture calls this connection (the number of the connect that made it).
        self.capture_id = (CANCEL, seq)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.packet)
        self.timer = self.reactor.call_later(CANCEL_TIMEOUT, transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.session.on_cancel_done(self.reactor.now())
