"""From a StartupMessage to the first ReadyForQuery: admission checks, authentication, settings.

The order follows PostgreSQL: the postmaster refuses connections while
starting up, then the backend checks the database and role, counts
connections, authenticates, and only then applies the startup settings
(an unknown one is FATAL) and reports ParameterStatus, BackendKeyData and
ReadyForQuery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdog_ev.auth.errors import AuthFailed
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.startup import StartupMessage, parse_options
from sim.fakepg.auth import Authenticator
from sim.fakepg.errors import (
    CANNOT_CONNECT_NOW,
    INVALID_AUTHORIZATION,
    INVALID_CATALOG_NAME,
    INVALID_PASSWORD,
    TOO_MANY_CONNECTIONS,
    SqlError,
)
from sim.fakepg.settings import SessionSettings, startup_settings

if TYPE_CHECKING:
    from sim.fakepg.session import BackendSession


def _no_entropy(n: int) -> bytes:
    return bytes(n)


class Login:
    def __init__(self, session: BackendSession) -> None:
        self.session = session
        self.auth: Authenticator | None = None

    def startup(self, now: float, msg: StartupMessage) -> None:
        session = self.session
        server = session.server
        session.user = msg.user
        session.database_name = msg.database
        session.params = dict(msg.params)
        if msg.minor > 0 or msg.protocol_options:
            session.emit(be.negotiate_protocol_version(0, msg.protocol_options))
        if not session.database.up or (server is not None and server.refuse_connections):
            session.fatal(now, CANNOT_CONNECT_NOW, "the database system is starting up")
            return
        if server is not None and server.databases is not None and msg.database not in server.databases:
            session.fatal(now, INVALID_CATALOG_NAME, f'database "{msg.database}" does not exist')
            return
        role = session.auth.lookup(msg.user)
        if role is None:
            session.fatal(now, INVALID_AUTHORIZATION, f'role "{msg.user}" does not exist')
            return
        if server is not None and server.connection_count(exclude=session) >= server.max_connections:
            session.fatal(now, TOO_MANY_CONNECTIONS, "sorry, too many clients already")
            return
        entropy = server.entropy if server is not None else _no_entropy
        self.auth = Authenticator(session.auth, msg.user, role, entropy)
        first, done = self.auth.start()
        session.emit(first)
        if done:
            self._finish(now)

    def message(self, now: float, mtype: int, body: bytes) -> None:
        """One message while authenticating: only PasswordMessage/SASL responses (or Terminate)."""
        session = self.session
        if mtype == -1:
            raise ProtocolViolation(body.decode())
        if mtype == fe.TERMINATE:
            session.close_after_output(now)
            return
        if mtype != fe.PASSWORD or self.auth is None:
            raise ProtocolViolation(f"expected password response, got message type {mtype}")
        try:
            out, done = self.auth.step(body)
        except AuthFailed:
            session.fatal(now, INVALID_PASSWORD, f'password authentication failed for user "{session.user}"')
            return
        session.emit(out)
        if done:
            self._finish(now)

    def _finish(self, now: float) -> None:
        session = self.session
        self.auth = None
        try:
            options = parse_options(session.params.get("options", ""))
            settings = startup_settings(session.params)
            settings.update(startup_settings(options))
        except ProtocolViolation as exc:
            session.fatal(now, exc.sqlstate, exc.message)
            return
        except SqlError as exc:
            session.fatal(now, exc.code, exc.message)
            return
        settings.setdefault("session_authorization", session.user)
        session.settings = SessionSettings(settings)
        session.logged_in(now)
