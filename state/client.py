"""One client connection to the proxy, as a sans-IO machine.

STARTUP reads the startup packet (switching to TLS on an SSLRequest when a
certificate is configured, refusing GSSENC, and
turning CancelRequests over to the directory); AUTH runs SCRAM, MD5, cleartext
or trust; LOGIN makes sure the settings the client asked for are acceptable to
the server and learns the ParameterStatus values to report; then the session
alternates between IDLE (no server), WAITING (queued at the pool) and ACTIVE
(a server lent to it). In transaction mode the server goes back when it says
ReadyForQuery idle with nothing owed; in session mode only when the client
leaves. Bytes that arrive before a server is attached are held (reading is
paused meanwhile, so the hold stays small) and sent once one is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final

from pgdog_ev.auth.errors import AuthFailed, AuthProtocolError
from pgdog_ev.auth.md5 import md5_check, md5_check_stored
from pgdog_ev.auth.plain import plain_check
from pgdog_ev.auth.scram import ScramServer, ScramVerifier, verify_plain_password
from pgdog_ev.sql import Analysis
from pgdog_ev.sql.analysis import OTHER_ANALYSIS
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer, build
from pgdog_ev.wire.scanner import BODY, HEADER, MessageScanner
from pgdog_ev.wire.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    parse_options,
    parse_startup,
    startup_length,
)
from state.client_admin import AdminAnswers
from state.client_effects import KNOWN_SETTINGS_LIMIT, ROLE_VALUES
from state.client_routing import _HEADER, batch_shape
from state.client_rw import NO_ROUTE, REQUEST_STARTS
from state.events import EventLog, Kind, Machine
from state.params import session_params
from state.pool import PoolState
from state.reasons import Reason
from state.registry import register_states
from state.server import IllegalTransition, ServerSession
from state.settings_tracker import SettingsTracker

if TYPE_CHECKING:
    from state.cluster import Cluster
    from state.interfaces import Directory, Entropy, Scheduler, StreamIO, TimerHandle
    from state.pool import Pool
    from state.prepared import GlobalStatement


class ClientState(IntEnum):
    STARTUP = 1
    AUTH = 2
    LOGIN = 3
    IDLE = 4
    WAITING = 5
    ACTIVE = 6
    CLOSED = 7


C: Final = ClientState
TRANSITIONS: Final[dict[ClientState, frozenset[ClientState]]] = {
    C.STARTUP: frozenset({C.AUTH, C.LOGIN, C.CLOSED}),
    C.AUTH: frozenset({C.LOGIN, C.CLOSED}),
    C.LOGIN: frozenset({C.IDLE, C.CLOSED}),
    C.IDLE: frozenset({C.WAITING, C.ACTIVE, C.CLOSED}),
    C.WAITING: frozenset({C.ACTIVE, C.IDLE, C.CLOSED}),
    C.ACTIVE: frozenset({C.IDLE, C.CLOSED}),
    C.CLOSED: frozenset(),
}
register_states(Machine.CLIENT, ClientState)

# Enum members the hot path reads, as module globals: on Python 3.11 reading a member off
# its class goes through EnumType.__getattr__'s slot (about 50 ns, against 6 for a global),
# and one transaction reads a few dozen of them.
_ACTIVE: Final = ClientState.ACTIVE
_CLOSED: Final = ClientState.CLOSED
_IDLE: Final = ClientState.IDLE
_K_TRANSITION: Final = Kind.TRANSITION
_LOGIN: Final = ClientState.LOGIN
_M_CLIENT: Final = Machine.CLIENT
_POOL_CLOSED: Final = PoolState.CLOSED
_POOL_OPEN: Final = PoolState.OPEN
_PARSE: Final = fe.PARSE
_BIND: Final = fe.BIND
_CLOSE: Final = fe.CLOSE
_EXECUTE: Final = fe.EXECUTE
_QUERY: Final = fe.QUERY
_COPY_DATA: Final = fe.COPY_DATA
_R_CHECKOUT: Final = Reason.CHECKOUT
_R_CLIENT_TERMINATE: Final = Reason.CLIENT_TERMINATE
_R_PROTOCOL_VIOLATION: Final = Reason.PROTOCOL_VIOLATION
_R_QUERY: Final = Reason.QUERY
_R_TRANSACTION_DONE: Final = Reason.TRANSACTION_DONE
_WAITING: Final = ClientState.WAITING

# Session mode with a server: every message but Terminate is announced by its
# header and streams through; Terminate is read.
CLIENT_TABLE: Final = bytearray([HEADER] * 256)
CLIENT_TABLE[fe.TERMINATE] = BODY
# The message types PostgreSQL accepts from a logged-in client (postgres.c, SocketBackend). It
# answers any other type byte with FATAL 08P01 at once, before reading the length; so does the
# proxy, without handing the message (or a server) to anyone: a StartupMessage or PasswordMessage
# after login, or stray bytes, never cost a server connection.
FRONTEND_TYPES: Final = b"BCcDdEFfHPQSX"
INVALID_TYPE: Final = bytes(t not in FRONTEND_TYPES for t in range(256))
# Otherwise every message is read whole, except CopyData, which streams, and invalid types, which
# are refused by their header.
MESSAGE_TABLE: Final = bytearray(HEADER if INVALID_TYPE[t] else BODY for t in range(256))
MESSAGE_TABLE[fe.COPY_DATA] = HEADER
OWES_READY: Final = frozenset({fe.QUERY, fe.SYNC, fe.FUNCTION_CALL})
# What a COPY FROM STDIN cannot read (it takes CopyData, CopyDone, CopyFail, and ignores Flush
# and Sync).
BREAKS_COPY: Final = frozenset(FRONTEND_TYPES) - frozenset(b"cdfHSX")
COPY_ENDS: Final = frozenset({fe.COPY_DONE, fe.COPY_FAIL})
EXTENDED: Final = frozenset({fe.PARSE, fe.BIND, fe.DESCRIBE, fe.EXECUTE, fe.CLOSE})
# Distinct ParameterStatus sets kept per pool for sharing between clients.
TOLD_CACHE_LIMIT: Final = 64
# Settings that cannot be wrong, so need no round trip to the server at login.
ALWAYS_VALID: Final = frozenset({"application_name"})
# While queued the client is still read (so a disconnect is noticed at once);
# past this much held data reading pauses until a server is attached.
HOLD_LIMIT: Final = 256 * 1024
AUTH_MESSAGE_LIMIT: Final = 64 * 1024

@dataclass(slots=True)
class Login:
    """What the directory knows about a (database, user) a client asked for."""

    # None for the admin console's login.
    pool: Pool | None
    user: str
    database: str
    auth_type: str
    pooler_mode: str
    passwords: tuple[str, ...] = ()
    verifier: ScramVerifier | None = None
    md5_stored: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The admin console's login: no pool; queries go to the directory's console.
    admin: bool = False
    # The hosts behind this (database, user); None for a lone pool (unit tests).
    cluster: Cluster | None = None


class ClientSession(AdminAnswers):
    """Protocol state of one client connection."""

    # Slots, not a __dict__: about 1 KB less per client (10,000 idle clients is 10 MB).
    __slots__ = (
        "_admin_running",
        "_auth_ok",
        "_await_batch",
        "_batch_whole",
        "_encryption_refused",
        "_fail",
        "_framer",
        "_guard_pending",
        "_held",
        "_held_whole",
        "_hold_paused",
        "_local_failed",
        "_local_txn",
        "_md5_salt",
        "_memo",
        "_memo_text",
        "_now",
        "_parse_memo",
        "_parse_memo_body",
        "_read_guard",
        "_ready_at",
        "_refused",
        "_route_memo",
        "_route_memo_text",
        "_scram",
        "_segment",
        "_skip_to_sync",
        "_startup_buf",
        "_timer",
        "_timer_when",
        "_told_shared",
        "_txn_role",
        "_unnamed",
        "_unnamed_sql",
        "_want_reroute",
        "_want_server",
        "admin",
        "application_name",
        "bytes_in",
        "bytes_out",
        "close_reason",
        "cluster",
        "connected_at",
        "database",
        "directory",
        "entropy",
        "errors",
        "full_sql",
        "id",
        "idle_timeout_ms",
        "idle_txn_timeout_ms",
        "io",
        "key_pid",
        "key_secret",
        "last_activity",
        "log",
        "login",
        "max_message_size",
        "peer",
        "pinned",
        "pool",
        "queries",
        "query_time",
        "reject",
        "rename",
        "role_override",
        "route_replica",
        "route_write",
        "scanner",
        "server",
        "session_mode",
        "settings",
        "sql_statements",
        "startup_role",
        "state",
        "statements",
        "timers",
        "tls",
        "tls_available",
        "tls_required",
        "told",
        "transactions",
        "user",
        "wait_deadline",
        "wait_started",
        "wait_time",
        "xact_time",
    )

    def __init__(
        self,
        cid: int,
        io: StreamIO,
        directory: Directory,
        log: EventLog,
        timers: Scheduler,
        entropy: Entropy,
        now: float,
        *,
        login_timeout_ms: int | None,
        idle_timeout_ms: int | None,
        max_message_size: int,
        idle_in_transaction_timeout_ms: int | None = None,
        peer: str = "",
        reject: tuple[str, str] | None = None,
        tls_available: bool = False,
        tls_required: bool = False,
    ) -> None:
        self.id = cid
        self.io = io
        self.directory = directory
        self.log = log
        self.timers = timers
        self.entropy = entropy
        self.peer = peer
        self.state = ClientState.STARTUP
        self.connected_at = now
        self.last_activity = now
        self.idle_timeout_ms = idle_timeout_ms
        self.idle_txn_timeout_ms = idle_in_transaction_timeout_ms
        self.max_message_size = max_message_size
        self.user = ""
        self.database = ""
        self.application_name = ""
        self.login: Login | None = None
        self.pool: Pool | None = None
        self.server: ServerSession | None = None
        self.session_mode = False
        self.key_pid = cid & 0x7FFFFFFF
        self.key_secret = b""
        self.wait_started = 0.0
        self.wait_deadline = 0.0
        self.queries = 0
        self.transactions = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.wait_time = 0.0
        self.query_time = 0.0
        self.xact_time = 0.0
        self.errors = 0
        # Set for a client of the admin console: its queries never need a server.
        self.admin = False
        self._admin_running = False
        self.close_reason: Reason | None = None
        self._startup_buf = bytearray()
        self._encryption_refused = 0  # 1: an SSLRequest was answered 'N', 2: a GSSENCRequest
        self._framer: Framer | None = None
        self._scram: ScramServer | None = None
        self._md5_salt = b""
        self._auth_ok = False
        # Client bytes not yet scanned: waiting for a server (or for login to end).
        self._held = bytearray()
        self._hold_paused = False
        self._want_server = False
        # Replaying held messages after a failed checkout: (SQLSTATE, message).
        self._fail: tuple[str, str] | None = None
        # The last refusal, for a request refused while it was being scanned (_checkout_now).
        self._refused: tuple[str, str] = (codes.CONNECTION_FAILURE, "no server")
        # An error answered part of an extended-protocol batch: drop until Sync.
        self._skip_to_sync = False
        # Transaction-mode session state (see on_request_done).
        self.settings = SettingsTracker({})
        self.rename = False
        self.pinned = False
        self.statements: dict[str, GlobalStatement] = {}
        # SQL PREPARE names (prepared_statements = "full").
        self.sql_statements: dict[str, GlobalStatement] = {}
        self.full_sql = False
        self._unnamed: Analysis = OTHER_ANALYSIS
        self._segment: list[Analysis] | None = None
        # A transaction begun without a server: the texts to replay on one.
        self._local_txn: list[str] | None = None
        # That transaction failed (a refusal): status E, and a server that joins it fails it too.
        self._local_failed = False
        self._ready_at = now
        self._timer_when = 0.0
        # The ParameterStatus values this client was last sent.
        self.told: dict[str, str] = {}
        # Fields the mixins describe (their class-level defaults do not reach slots).
        self._now = 0.0
        self._memo_text = b"\xff"  # never a Query text
        self._memo = OTHER_ANALYSIS
        self._unnamed_sql = b"\xff"
        self.cluster: Cluster | None = None
        self.route_write = True
        self.route_replica = False
        self.role_override: str | None = None
        self.startup_role: str | None = None
        self._txn_role: str | None = None
        self._read_guard = False
        self._route_memo_text = b"\xff"
        self._route_memo = NO_ROUTE
        self._parse_memo_body = b""
        self._parse_memo = NO_ROUTE
        self._guard_pending = False
        self._want_reroute = False
        self._await_batch = False
        # The message being read begins what the bytes just received hold whole: a usual
        # extended-protocol batch (see _extended_batch), which a multi-host cluster may route
        # at once by that message, or a lone Query.
        self._batch_whole = False
        # Set by _put_back for such a message: the caller holds everything it read, that
        # message first, instead of a copy of it being put back.
        self._held_whole = False
        self._told_shared = False
        # (SQLSTATE, message) for a connection accepted only to be refused
        # politely: after SSL negotiation and the startup packet, as PostgreSQL does.
        self.reject = reject
        # TLS as configured when the client connected; ``tls`` once this stream switched to it.
        self.tls_available = tls_available
        self.tls_required = tls_required
        self.tls = False
        self._timer: TimerHandle | None = None
        self.scanner = MessageScanner(
            MESSAGE_TABLE, self._route, self._on_message, self._on_header, max_len=max_message_size
        )
        if login_timeout_ms:
            self._timer = timers.arm(now + login_timeout_ms / 1000.0, self._login_expired)

    # -- bookkeeping ---------------------------------------------------------

    @property
    def params(self) -> dict[str, str]:
        """The session settings a server lent to this client must have."""
        return self.settings.params

    def report(self, name: str, value: str) -> None:
        """Send a ParameterStatus unless the client already has this value."""
        if self.told.get(name) != value:
            self.tell(name, value)
            self.io.send(be.parameter_status(name, value))

    def tell(self, name: str, value: str) -> None:
        """Note that the client was sent ``name = value``; the dict may be shared (copy on write)."""
        if self._told_shared:
            self.told = dict(self.told)
            self._told_shared = False
        self.told[name] = value

    def _transition(self, now: float, to: ClientState, reason: Reason, b: int = 0) -> None:
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"client {self.id}: {self.state.name} -> {to.name} ({reason.name})")
        self.log.emit(now, _K_TRANSITION, _M_CLIENT, self.id, self.state, to, reason, b)
        self.state = to


    def _fatal(self, now: float, code: str, message: str, reason: Reason, detail: str | None = None) -> None:
        self.errors += 1
        self.io.send(be.error_response(code, message, severity="FATAL", detail=detail))
        self._close(now, reason)

    # -- input ---------------------------------------------------------------

    def on_bytes(self, now: float, data: memoryview) -> None:
        self.last_activity = now
        n = len(data)
        self.bytes_in += n
        pool = self.pool
        if pool is not None:
            pool.stats.received += n
        state = self.state
        if state is _IDLE or state is _ACTIVE:
            # Logged in (every request after the first few packets): straight to the scanner.
            try:
                self._feed(now, data)
            except ProtocolViolation as exc:
                if self.state is not _CLOSED:
                    self._fatal(now, exc.sqlstate, str(exc), _R_PROTOCOL_VIOLATION)
            return
        self._dispatch(now, data)

    def _dispatch(self, now: float, data: memoryview) -> None:
        """Route bytes by state; also replays bytes held during login (counted already)."""
        try:
            if self.state is ClientState.STARTUP:
                self._startup_bytes(now, data)
            elif self.state is ClientState.AUTH:
                self._auth_bytes(now, data)
            elif self.state is ClientState.LOGIN or self.state is ClientState.WAITING:
                # A client may pipeline its first query behind the password.
                self._hold(data)
            elif self.state is not ClientState.CLOSED:
                self._feed(now, data)
        except ProtocolViolation as exc:
            if self.state is not ClientState.CLOSED:
                self._fatal(now, exc.sqlstate, str(exc), Reason.PROTOCOL_VIOLATION)
        except AuthProtocolError as exc:
            if self.state is not ClientState.CLOSED:
                self.directory.auth_failed(self, self.user, self.database)
                self._fatal(now, codes.PROTOCOL_VIOLATION, str(exc), Reason.PROTOCOL_VIOLATION)
        except AuthFailed:
            if self.state is not ClientState.CLOSED:
                self._auth_failed(now)

    def on_closed(self, now: float) -> None:
        """The client's socket went away."""
        if self.state is not ClientState.CLOSED:
            self._close(now, Reason.CLIENT_EOF)

    # -- startup -------------------------------------------------------------

    def _startup_bytes(self, now: float, data: memoryview) -> None:
        buf = self._startup_buf
        buf += data
        while self.state is ClientState.STARTUP:
            length = startup_length(buf)
            if length is None or len(buf) < length:
                return
            packet = parse_startup(memoryview(buf)[:length])
            rest = bytes(buf[length:])
            buf.clear()
            if isinstance(packet, (SSLRequest, GSSENCRequest)):
                if not self._encryption_request(now, isinstance(packet, SSLRequest), rest):
                    return
                buf += rest
                continue
            if isinstance(packet, CancelRequest):
                self.log.emit(now, Kind.NOTE, Machine.CLIENT, self.id, 0, 0, Reason.CANCEL_REQUEST)
                self.directory.cancel(now, packet.pid, packet.secret)
                self._close(now, Reason.CANCEL_REQUEST)
                return
            assert isinstance(packet, StartupMessage)
            self._startup(now, packet)
            if rest and self.state is not ClientState.CLOSED:
                self._dispatch(now, memoryview(rest))
            return

    def _encryption_request(self, now: float, ssl: bool, rest: bytes) -> bool:
        """Answer an SSLRequest or GSSENCRequest; False when the connection was closed instead.

        With TLS available an SSLRequest is answered 'S' and the stream switches to TLS. Bytes the
        client sent behind its SSLRequest would be plaintext slipped in ahead of the handshake
        (CVE-2021-23214), so they are refused, never read. GSSAPI encryption is not offered.
        """
        if self.tls:
            self._fatal(now, codes.PROTOCOL_VIOLATION, "encryption requested again on an encrypted connection",
                        Reason.PROTOCOL_VIOLATION)
            return False
        if not (ssl and self.tls_available):
            # One refusal of each kind, as PostgreSQL: a client asking again (in a loop, say) is
            # told what PostgreSQL tells it, the request code read as a protocol version.
            asked = 1 if ssl else 2
            if self._encryption_refused & asked:
                self._fatal(now, codes.FEATURE_NOT_SUPPORTED, f"unsupported frontend protocol 1234."
                            f"{5679 if ssl else 5680}: server supports 3.0 to 3.2", Reason.PROTOCOL_VIOLATION)
                return False
            self._encryption_refused |= asked
            self.io.send(b"N")
            self.log.emit(now, Kind.NOTE, Machine.CLIENT, self.id, 0, 0, Reason.SSL_REFUSED)
            return True
        if rest:
            self._fatal(now, codes.PROTOCOL_VIOLATION, "received unencrypted data after SSL request",
                        Reason.PROTOCOL_VIOLATION, detail="This could be either a client-software bug "
                        "or evidence of an attempted man-in-the-middle attack.")
            return False
        self.io.send(b"S")
        self.io.start_tls()
        self.tls = True
        self.log.emit(now, Kind.NOTE, Machine.CLIENT, self.id, 0, 0, Reason.TLS_ACCEPTED)
        return True

    def _startup(self, now: float, msg: StartupMessage) -> None:
        self.user = msg.user
        self.database = msg.database
        if self.tls_required and not self.tls:
            self._fatal(now, codes.INVALID_AUTHORIZATION, "TLS is required by this proxy (tls_client_required); "
                        "connect with sslmode=require or stronger", Reason.TLS_REQUIRED)
            return
        if self.reject is not None:
            self._fatal(now, self.reject[0], self.reject[1], Reason.TOO_MANY_CLIENTS)
            return
        options = parse_options(msg.params.get("options", ""))
        self.settings = SettingsTracker(session_params(msg.params, options))
        self.application_name = self.params.get("application_name", "")
        role = msg.params.get("pgdog.role", options.get("pgdog.role"))
        if role is not None:
            self.role_override = self.startup_role = ROLE_VALUES.get(role.strip().lower())
        if msg.protocol_options or msg.version & 0xFFFF:
            self.io.send(be.negotiate_protocol_version(0, list(msg.protocol_options)))
        login = self.directory.lookup(self.database, self.user)
        if login is None and not self.directory.has_database(self.database):
            self._fatal(now, codes.INVALID_CATALOG_NAME, f'database "{self.database}" does not exist',
                        Reason.UNKNOWN_DATABASE)
            return
        self.login = login
        auth_type = self._auth_type()
        self._framer = Framer(min(self.max_message_size, AUTH_MESSAGE_LIMIT))
        if auth_type == "trust" and login is not None:
            self._transition(now, ClientState.AUTH, Reason.STARTUP)
            self._authenticated(now)
            return
        self._transition(now, ClientState.AUTH, Reason.STARTUP)
        if auth_type == "scram":
            self.io.send(be.authentication_sasl(["SCRAM-SHA-256"]))
        elif auth_type == "md5":
            self._md5_salt = self.entropy(4)
            self.io.send(be.authentication_md5(self._md5_salt))
        else:
            self.io.send(be.authentication_cleartext())

    # -- authentication ------------------------------------------------------

    def _auth_bytes(self, now: float, data: memoryview) -> None:
        framer = self._framer
        assert framer is not None
        messages = framer.feed(data)
        for i, (mtype, body) in enumerate(messages):
            if self.state is not ClientState.AUTH:
                # Logged in mid-chunk: what the client pipelined behind its
                # password belongs to the session that starts now.
                rest = b"".join(build(t, b) for t, b in messages[i:]) + framer.take_pending()
                self._framer = None
                self._after_login_bytes(now, rest)
                return
            self._auth_message(now, mtype, body)
        if self.state is not ClientState.AUTH:
            self._framer = None
            if framer.pending():
                self._after_login_bytes(now, framer.take_pending())

    def _after_login_bytes(self, now: float, rest: bytes) -> None:
        if not rest or self.state is ClientState.CLOSED:
            return
        if self.state is ClientState.LOGIN:
            self._held += rest
        else:
            self._dispatch(now, memoryview(rest))

    def _auth_message(self, now: float, mtype: int, body: bytes) -> None:
        if mtype != fe.PASSWORD:
            raise ProtocolViolation(f"expected a password message, got {chr(mtype)!r}")
        login = self.login
        auth_type = self._auth_type()
        if auth_type == "scram":
            self._scram_message(now, body)
            return
        response = fe.parse_password(body)
        if login is None:
            raise AuthFailed("unknown user")
        if auth_type == "md5":
            ok = any(md5_check(login.user, pw, self._md5_salt, response) for pw in login.passwords)
            if not ok and login.md5_stored:
                ok = md5_check_stored(login.md5_stored, self._md5_salt, response)
        else:
            ok = plain_check(login.passwords, response)
            if not ok and login.verifier is not None and not login.passwords:
                ok = verify_plain_password(response.decode("utf-8", "replace"), login.verifier)
        if not ok:
            raise AuthFailed("wrong password")
        self._authenticated(now)

    def _scram_message(self, now: float, body: bytes) -> None:
        if self._scram is None:
            mechanism, data = fe.parse_sasl_initial_response(body)
            if mechanism != "SCRAM-SHA-256":
                raise AuthFailed(f"unsupported SASL mechanism {mechanism}")
            login = self.login
            if login is None or login.verifier is None:
                self._scram = ScramServer.for_unknown_user(
                    f"{self.user}\0{self.database}".encode(), self.entropy
                )
            else:
                self._scram = ScramServer(login.verifier, self.entropy)
            self.io.send(be.authentication_sasl_continue(self._scram.client_first(data or b"", mechanism)))
            return
        final = self._scram.client_final(fe.parse_sasl_response(body))
        if self.login is None:
            raise AuthFailed("unknown user")
        self.io.send(be.authentication_sasl_final(final))
        self._authenticated(now)

    def _auth_type(self) -> str:
        return self.login.auth_type if self.login is not None else self.directory.auth_type

    def _auth_failed(self, now: float) -> None:
        self.directory.auth_failed(self, self.user, self.database)
        self._fatal(now, codes.INVALID_PASSWORD, f'password authentication failed for user "{self.user}"',
                    Reason.AUTH_FAILED)

    def _authenticated(self, now: float) -> None:
        login = self.login
        assert login is not None
        self._scram = None
        if login.admin:
            self._admin_login(now)
            return
        refusal = self.directory.admit(self)
        if refusal is not None:
            self._fatal(now, refusal[0], refusal[1], Reason.TOO_MANY_CLIENTS)
            return
        pool = login.pool
        assert pool is not None  # only the admin console's login has none (answered above)
        cluster = self.cluster = login.cluster
        if cluster is not None and cluster.multi:
            # Settings are checked where a read could run if the primary is away.
            pool = cluster.login_pool()
            self.route_write = False
        self.pool = pool
        self.session_mode = login.pooler_mode == "session"
        self.rename = not self.session_mode and pool.settings.prepared_statements != "disabled"
        self.full_sql = self.rename and pool.settings.prepared_statements == "full"
        self.key_secret = self.entropy(4)
        self.io.send(be.authentication_ok())
        self._transition(now, ClientState.LOGIN, Reason.AUTH_OK)
        if self._login_known():
            self._finish_login(now)
            return
        server = pool.checkout(now, self)
        if server is not None:
            self.on_checkout(now, server)

    def _login_known(self) -> bool:
        pool = self.pool
        assert pool is not None
        if pool.server_params is None:
            return False
        known = pool.known_settings
        return all(k in ALWAYS_VALID or (k, v) in known for k, v in self.params.items())

    def on_login_checked(
        self, now: float, server: ServerSession, reported: dict[str, str], error: dict[str, str] | None
    ) -> None:
        """The server answered the settings check of a logging-in client."""
        self.server = None
        server.release(now, session_mode=False)
        if self.state is not ClientState.LOGIN:
            return
        if error is not None:
            self._fatal(now, error.get("C", codes.INVALID_PARAMETER_VALUE), error.get("M", "invalid setting"),
                        Reason.SERVER_ERROR, detail=error.get("D"))
            return
        pool = self.pool
        assert pool is not None
        if len(pool.known_settings) > KNOWN_SETTINGS_LIMIT:
            pool.known_settings.clear()
        lowered = {name.lower(): (name, value) for name, value in reported.items()}
        for k, v in self.params.items():
            hit = lowered.get(k)
            pool.known_settings[(k, v)] = {hit[0]: hit[1]} if hit else {}
        self._finish_login(now)

    def _finish_login(self, now: float) -> None:
        pool = self.pool
        assert pool is not None and pool.server_params is not None
        status = dict(pool.server_params)
        by_lower = {name.lower(): name for name in status}
        for k, v in self.params.items():
            reported = pool.known_settings.get((k, v))
            if reported:
                status.update(reported)
            elif k in by_lower:
                status[by_lower[k]] = v
        pool.stats.logins += 1
        self._logged_in(now, status)

    def _logged_in(self, now: float, status: dict[str, str]) -> None:
        """Tell the client its settings, cancel key and ReadyForQuery; run what it pipelined."""
        out = bytearray()
        for name, value in status.items():
            out += be.parameter_status(name, value)
        pool = self.pool
        if pool is not None:
            # Most clients are told the same values: one dict for all of them (about 0.5 KB each).
            key = tuple(status.items())
            shared = pool.told_cache.get(key)
            if shared is None:
                if len(pool.told_cache) >= TOLD_CACHE_LIMIT:
                    pool.told_cache.clear()
                shared = pool.told_cache[key] = status
            self.told = shared
            self._told_shared = True
        else:
            self.told = status
        out += be.backend_key_data(self.key_pid, self.key_secret)
        out += be.ready_for_query(b"I")
        self.io.send(out)
        self._cancel_timer()
        self._transition(now, ClientState.IDLE, Reason.LOGIN_DONE)
        self._arm_idle_timer(now)
        if self._held:
            held = bytes(self._held)
            self._held.clear()
            self._resume_held()
            self._dispatch(now, memoryview(held))

    def _admin_login(self, now: float) -> None:
        self.admin = True
        self.key_secret = self.entropy(4)
        self.scanner.on_message = self._admin_message
        self.io.send(be.authentication_ok())
        self._transition(now, ClientState.LOGIN, Reason.AUTH_OK)
        status = self.directory.admin_parameters()  # type: ignore[attr-defined]
        status["application_name"] = self.application_name
        self._logged_in(now, status)

    def _admin_wait(self, now: float) -> None:
        self._transition(now, ClientState.WAITING, Reason.ADMIN_COMMAND)

    def _admin_done(self, now: float) -> None:
        if self.state is ClientState.WAITING:
            self._transition(now, ClientState.IDLE, Reason.ADMIN_COMMAND)
            self._replay_held(now)

    # -- queries -------------------------------------------------------------
    #
    # Messages are handled one at a time. With no server attached, a message the
    # proxy cannot answer itself suspends the scanner: it and everything after
    # it wait, unread, in ``_held`` until the pool lends a server, then run
    # through the scanner again. In transaction mode every message but CopyData
    # is read whole, so SETs, prepared statements and transaction boundaries
    # can be tracked; in session mode, once a server is attached, only headers
    # are read and bodies stream through.

    def _route(self, view: memoryview) -> None:
        server = self.server
        if server is not None:
            server.io.send(view)

    def _hold(self, data: memoryview | bytes) -> None:
        self._held += data
        if len(self._held) > HOLD_LIMIT and not self._hold_paused:
            self._hold_paused = True
            self.io.pause_reading()

    def _feed(self, now: float, data: memoryview) -> None:
        self._now = now
        if self._await_batch:
            self._hold(data)  # behind the batch waiting to be routed
        else:
            consumed = -1
            scanner = self.scanner
            if len(data) > 5 and scanner.at_boundary():
                first = data[0]
                if first in (_PARSE, _BIND) and scanner.table[_PARSE] == BODY:
                    consumed = self._extended_batch(data)
                elif first == _QUERY and scanner.table[_QUERY] == BODY:
                    consumed = self._lone_query(data)
            if consumed < 0:
                consumed = scanner.feed(data)
            if self.state is _CLOSED:
                return  # a Terminate (or an error) ended the session: what follows is not read
            if consumed < len(data):
                self._hold(data[consumed:])
        if self._await_batch and self._batch_complete():
            self._await_batch = False
            self._want_server = True
        if self._want_server:
            self._want_server = False
            self._need_server(now)

    def _extended_batch(self, data: memoryview) -> int:
        """Read a whole usual extended-protocol request (see batch_shape) and return how much of
        ``data`` was consumed, as the scanner's ``feed`` would; -1 if ``data`` is not one.

        The first message (a Parse, or the Bind of a prepared statement) is read like any
        message: it may check out a server, wait for one, be refused, be renamed. Once it
        reached a server what follows needs no look at its bytes: a Bind after the Parse is of
        the unnamed statement and records the Parse's analysis, Describe and Execute only pass,
        and the Sync owes a ReadyForQuery. They go out as one write instead of each message
        read, rebuilt and written (``_to_server`` does the same bookkeeping one by one)."""
        scanner = self.scanner
        first_end = batch_shape(data, scanner.max_len)
        if first_end < 0:
            return -1
        first = data[0]
        waits = self._read_first(first, data[5:first_end])  # (an admin session reads its own way)
        if self.state is _CLOSED:
            return len(data)  # (what follows is not read)
        if waits >= 0:
            # Held until a server is lent: what follows waits behind it, as in feed.
            return first_end if waits else 0
        server = self.server
        if server is None or self.state is not _ACTIVE or self._skip_to_sync:
            # (Refused at its Parse: the rest is read to be dropped, up to the Sync.)
            return first_end + scanner.feed(data[first_end:])
        # The first message left the server unsynced, so a read guard (r/w split) would look at
        # none of the rest: only a request that starts after a Sync may be routed elsewhere.
        if first == _PARSE:
            server.pool.stats.bind_count += 1
            self._effect(self._unnamed)
        effects = self._segment
        self._segment = None
        server.copy_may_begin(True)  # (the batch holds an Execute, and no CopyDone after it)
        server.expect_sync(effects)
        server.io.send(data[first_end:])
        return len(data)

    def _lone_query(self, data: memoryview) -> int:
        """Read ``data`` when it is one whole Query, as the scanner's ``feed`` would (the common
        request of a simple-protocol client); -1 if it is not. A Query that must wait for a
        server is held as it came, not copied back (_put_back)."""
        scanner = self.scanner
        n = len(data)
        if (data[1] << 24 | data[2] << 16 | data[3] << 8 | data[4]) + 1 != n or n - 1 > scanner.max_len:
            return -1
        return 0 if self._read_first(_QUERY, data[5:]) == 0 else n

    def _read_first(self, mtype: int, body: memoryview) -> int:
        """Read the first message of bytes received whole (``_batch_whole``): -1 when it went on
        (to a server, or answered), 0 when it waits for a server with all the bytes held as
        they came, 1 when it waits put back on its own (something was held before it)."""
        scanner = self.scanner
        self._batch_whole = True
        try:
            scanner.on_message(mtype, body)
        finally:
            self._batch_whole = False
        if not scanner._suspended:
            return -1
        scanner._suspended = False
        if self._held_whole:
            self._held_whole = False
            return 0
        return 1

    def _broke_copy(self, now: float, mtype: int) -> None:
        """A message a COPY FROM STDIN cannot read, sent while one runs for this client.
        PostgreSQL answers it with an error, then ends the connection (it has read only the
        type byte, so it no longer knows where messages start) and consumes the message with no
        answer of its own. The proxy says the same and ends only the client: the server gets a
        CopyFail when it is released and goes back to the pool."""
        self.errors += 1
        self.io.send(be.error_response(
            codes.PROTOCOL_VIOLATION, f"unexpected message type 0x{mtype:02X} during COPY from stdin"))
        self._fatal(now, codes.PROTOCOL_VIOLATION, "terminating connection because protocol synchronization was lost",
                    _R_PROTOCOL_VIOLATION)

    def _on_header(self, mtype: int, length: int) -> bool:
        if INVALID_TYPE[mtype]:
            raise ProtocolViolation(f"invalid frontend message type {mtype}")
        server = self.server
        if server is None:
            # CopyData with no COPY running: PostgreSQL ignores it too.
            return False
        if mtype == _COPY_DATA:
            server.copy_data_sent = True
        elif server.copy_open and (mtype == fe.SYNC or mtype == fe.FLUSH):
            return False  # (session mode) not sent, as in _on_message
        elif mtype == fe.SYNC:
            server.expect_sync()
        elif mtype in OWES_READY:
            self.queries += 1
            server.copy_may_begin(False)
            server.expect_response()
        elif mtype in EXTENDED:
            server.unsynced = True
            if mtype == _EXECUTE:
                server.copy_may_begin(True)
            elif mtype in (_PARSE, _CLOSE):
                server.expect_completion()  # (read in turn, see ServerSession._behind_batch)
        elif mtype == fe.COPY_DONE or mtype == fe.COPY_FAIL:
            server.copy_end_sent(mtype == fe.COPY_FAIL)
        return True


    def _on_message(self, mtype: int, body: memoryview) -> None:
        now = self._now
        if mtype == fe.TERMINATE:
            self._close(now, _R_CLIENT_TERMINATE)
            return
        server = self.server
        if server is not None and server.copy_open and mtype not in COPY_ENDS:
            if mtype in BREAKS_COPY:
                self._broke_copy(now, mtype)
            # A Flush or Sync: the COPY would read and ignore it, so it is not sent at all
            # (sent, it would get a ReadyForQuery if a bad row ended the COPY before it).
            return
        if mtype == fe.QUERY and self.cluster is not None and not self.admin:
            reply = self._role_statement(body)
            if reply is not None:
                if not reply:
                    # Held until the server answered what is in flight, then read again.
                    self._put_back(mtype, body)
                    self._want_reroute = True
                    return
                self.queries += 1
                if server is not None:
                    server.answer(reply)
                else:
                    self.io.send(reply + be.ready_for_query(self._local_status()))
                return
        if server is not None:
            if self._read_guard and not self.pinned:
                if not server.unsynced and mtype in REQUEST_STARTS and self._must_reroute(server, mtype, body):
                    self._put_back(mtype, body)
                    self._want_reroute = True
                    return
            elif self._guard_pending:
                # The routed request itself: what comes after it is checked.
                self._guard_pending = False
                self._read_guard = True
            if self._skip_to_sync:
                # A Parse refused while this server was held (session_state = "refuse"): the rest
                # of its batch goes nowhere, and its Sync goes to the server, which answers the
                # stand-in sent in the Parse's place first.
                if mtype == fe.SYNC:
                    self._skip_to_sync = False
                    self._to_server(now, server, mtype, body)
                return
            self._to_server(now, server, mtype, body)
            return
        if self._skip_to_sync:
            # An error answered this extended-protocol batch: skip to its Sync.
            if mtype == fe.SYNC:
                self._skip_to_sync = False
                self.io.send(be.ready_for_query(self._local_status()))
            return
        if self._fail is not None:
            self._fail_message(mtype)
            return
        if not self.session_mode and self._answer_locally(now, mtype, body):
            return
        if not self._held and self._checkout_now(now, mtype, body):
            server = self.server
            if server is not None:
                # Lent at once: this message goes straight to it, with no hold and replay.
                if self._guard_pending:
                    self._guard_pending = False
                    self._read_guard = True
                self._to_server(now, server, mtype, body)
                return
            if self.state is not _WAITING:
                # Refused at once (every host banned...): this message gets the error the
                # held ones would have had.
                self._fail = self._refused
                try:
                    self._fail_message(mtype)
                finally:
                    self._fail = None
                return
            # Queued in the pool: on_checkout replays what is held.
            self._put_back(mtype, body)
            return
        self._put_back(mtype, body)
        self._want_server = True

    def _put_back(self, mtype: int, body: memoryview) -> None:
        """Hold this message (ahead of what is held) and end the scan after it: it is sent or
        answered once a server is lent."""
        if self._batch_whole and not self._held:
            self._held_whole = True  # (the caller holds what it read, this message first)
        else:
            self._held[:0] = _HEADER(mtype, len(body) + 4) + body
        self.scanner.suspend()

    def _checkout_now(self, now: float, mtype: int, body: memoryview) -> bool:
        """The common case of a request needing a server, done inside the scan: transaction
        mode, an open pool, and either one host or a simple Query (routed alone). False leaves
        it to ``_need_server`` after the scan: an extended-protocol batch is routed whole, a
        closed pool means following a reload."""
        pool = self.pool
        cluster = self.cluster
        if self.session_mode or pool is None or pool.state is not _POOL_OPEN:
            return False
        if cluster is not None:
            if cluster.closed:
                return False
            if cluster.multi:
                # A Query stands alone, and so does a batch known whole whose first message
                # decides its route (what follows it has no say: an unnamed Bind, a Describe,
                # Execute, Sync). Other batches are routed whole once their Sync is in.
                if (mtype != fe.QUERY and not self._batch_whole) or self._local_txn is not None:
                    return False
                self._transition(now, _WAITING, _R_QUERY)
                server = self._route_checkout(now, cluster, body, mtype)
                if server is not None:
                    self.on_checkout(now, server)
                return True
        self._transition(now, _WAITING, _R_QUERY)
        server = pool.checkout(now, self)
        if server is not None:
            self.on_checkout(now, server)
        return True

    def _need_server(self, now: float) -> None:
        pool = self.pool
        assert pool is not None
        cluster = self.cluster
        if pool.state is _POOL_CLOSED or (cluster is not None and cluster.closed):
            # A reload replaced our pool: follow the configuration.
            login = self.directory.lookup(self.database, self.user)
            if login is not None:
                self.login = login
                self.pool = pool = login.pool
                self.cluster = cluster = login.cluster
        if cluster is not None and cluster.multi:
            if not self._batch_complete():
                # Route the extended-protocol batch as a whole: wait for its Sync or Flush.
                self._await_batch = True
                return
            self._transition(now, _WAITING, _R_QUERY)
            server = self._route_checkout(now, cluster)
        else:
            self._transition(now, _WAITING, _R_QUERY)
            server = pool.checkout(now, self)
        if server is not None:
            self.on_checkout(now, server)

    def _cancel_wait(self, now: float) -> None:
        if self.pool is not None:
            self.pool.cancel_wait(now, self)
        if self.cluster is not None and self.cluster.write_waiters:
            self.cluster.cancel_wait(now, self)

    def on_checkout(self, now: float, server: ServerSession) -> None:
        """The pool lends us ``server``."""
        if self.state is _LOGIN:
            self.server = server
            server.check_login(now, self)
            return
        if self.state is not _WAITING:
            # We left while the grant was in flight: give it straight back.
            server.pool.checkin(now, server)
            return
        self.server = server
        server.link(now, self)
        self._transition(now, _ACTIVE, _R_CHECKOUT, server.id)
        if self._local_txn is not None:
            # Replay the transaction the proxy began without a server.
            server.send_hidden("; ".join(self._local_txn))
            if self._local_failed:
                # PostgreSQL answers what follows (25P02, COMMIT rolls back) as it would have.
                server.abort_transaction()
                self._local_failed = False
            self._local_txn = None
        if self.session_mode:
            self.scanner.table = CLIENT_TABLE
        if self._held or self._hold_paused:
            self._replay_held(now)

    def _replay_held(self, now: float) -> None:
        held = bytes(self._held)
        self._held.clear()
        self._resume_held()
        if held:
            # Held bytes are scanned only now, inside whatever lent the server (a check-in, a
            # server's answer): their protocol errors are this client's, not the caller's.
            try:
                self._feed(now, memoryview(held))
            except ProtocolViolation as exc:
                if self.state is not _CLOSED:
                    self._fatal(now, exc.sqlstate, str(exc), _R_PROTOCOL_VIOLATION)

    def on_checkout_failed(self, now: float, message: str, timeout: bool = False,
                           code: str = codes.CONNECTION_FAILURE) -> None:
        """No server could be had: an error for each request held, then idle again."""
        if self.state is ClientState.LOGIN:
            self._fatal(now, code, message, Reason.CHECKOUT_TIMEOUT)
            return
        if self.state is not ClientState.WAITING:
            return
        self.errors += 1
        reason = Reason.CANCELED if code == codes.QUERY_CANCELED else (
            Reason.CHECKOUT_TIMEOUT if timeout else Reason.CONNECT_FAILED)
        self._transition(now, ClientState.IDLE, reason)
        self._fail = self._refused = (code, message)
        try:
            self._replay_held(now)
        finally:
            self._fail = None

    def _fail_message(self, mtype: int) -> None:
        """Answer one held message of a request that got no server."""
        assert self._fail is not None
        error = be.error_response(*self._fail)
        if mtype in (fe.QUERY, fe.FUNCTION_CALL):
            self.io.send(error + be.ready_for_query(self._local_status()))
        elif mtype == fe.SYNC:
            self.io.send(be.ready_for_query(self._local_status()))
        elif mtype in EXTENDED or mtype == fe.FLUSH:
            self.io.send(error)
            self._skip_to_sync = True
        # CopyData/CopyDone/CopyFail of a COPY that never started: dropped.

    def _resume_held(self) -> None:
        if self._hold_paused:
            self._hold_paused = False
            self.io.resume_reading()

    def _local_status(self) -> bytes:
        if self._local_txn is None:
            return b"I"
        return b"E" if self._local_failed else b"T"

    # -- cancel --------------------------------------------------------------

    def cancel_request(self, now: float) -> None:
        """A CancelRequest carrying this client's key arrived."""
        if self.state is ClientState.WAITING:
            if self.admin:
                self._admin_cancel(now)
                return
            self._cancel_wait(now)
            self.on_checkout_failed(now, "canceling statement due to user request", code=codes.QUERY_CANCELED)
            return
        server = self.server
        if server is not None and self.state is ClientState.ACTIVE and server.owed:
            server.send_cancel(now)

    def on_server_ready(self, now: float, server: ServerSession, status: bytes) -> None:
        """Our server answered everything we sent; ``status`` is its transaction state."""
        self._ready_at = now
        if status != b"I":
            if self._want_reroute:
                self._keep_route(now)
            if self.idle_txn_timeout_ms:
                self._arm_idle_timer(now)
            return
        self._txn_role = None
        if self.session_mode or self.pinned or self.state is not _ACTIVE:
            if self._want_reroute:
                self._keep_route(now)
            return
        if not self.scanner.at_boundary():
            # Part of the client's next message already went to this server:
            # the rest must follow it there, so keep the server.
            return
        self.transactions += 1
        self.server = None
        self._read_guard = self._guard_pending = False
        server.release(now, session_mode=False)
        self._transition(now, _IDLE, _R_TRANSACTION_DONE, server.id)
        if self._want_reroute:
            # A request held back from a replica: route it afresh.
            self._want_reroute = False
            self._replay_held(now)

    def _keep_route(self, now: float) -> None:
        """The server stays ours after all (a transaction opened, the client pinned it):
        what was held back from it follows it there."""
        self._want_reroute = False
        self._read_guard = self._guard_pending = False
        self._replay_held(now)

    def on_server_lost(self, now: float, server: ServerSession, query_timeout: bool = False) -> None:
        if self.server is not server:
            return
        self.server = None
        if self.state is ClientState.LOGIN:
            self._fatal(now, codes.CONNECTION_FAILURE, f"server connection failed: {server.error}",
                        Reason.SERVER_LOST)
            return
        if server.fatal_forwarded:
            # The server's own FATAL reached the client (as PostgreSQL ends a connection): the
            # connection ends here too, with nothing said after it.
            self._close(now, Reason.SERVER_LOST)
        elif server.scanner.mid_message():
            # Part of a message already reached the client: an ErrorResponse now would be read
            # as the rest of it (psycopg: "insufficient data in D message"). Only closing the
            # connection tells the client the truth: its server went away.
            self.errors += 1
            self._close(now, Reason.QUERY_TIMEOUT if query_timeout else Reason.SERVER_LOST)
        elif query_timeout:
            self._fatal(now, codes.QUERY_CANCELED, "query_timeout: the server did not answer in time",
                        Reason.QUERY_TIMEOUT)
        else:
            self._fatal(now, codes.CONNECTION_FAILURE, f"server connection lost: {server.error}",
                        Reason.SERVER_LOST)

    # -- timers --------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _login_expired(self, now: float) -> None:
        self._timer = None
        if self.state in (ClientState.STARTUP, ClientState.AUTH, ClientState.LOGIN):
            if self.state is ClientState.LOGIN:
                self._cancel_wait(now)
            self._fatal(now, codes.PROTOCOL_VIOLATION, "client_login_timeout: login did not complete in time",
                        Reason.LOGIN_TIMEOUT)

    def _idle_since(self) -> float:
        return max(self.last_activity, self._ready_at)

    def _in_idle_transaction(self) -> bool:
        """Inside a transaction and waiting for the client, not for a server."""
        if self.state is ClientState.IDLE:
            return self._local_txn is not None
        server = self.server
        return (
            self.state is ClientState.ACTIVE and server is not None and not server.owed
            and server.txn_status != b"I" and not self._held
        )

    def _idle_deadline(self, now: float) -> float | None:
        idle, txn = self.idle_timeout_ms, self.idle_txn_timeout_ms
        if not idle and not txn:
            return None
        if txn and self._in_idle_transaction():
            return self._idle_since() + txn / 1000.0
        if idle and self.state is ClientState.IDLE:
            return self.last_activity + idle / 1000.0
        if self.state in (ClientState.ACTIVE, ClientState.WAITING):
            # Busy: look again a full period later.
            return now + min(x for x in (idle, txn) if x) / 1000.0
        return None

    def _arm_idle_timer(self, now: float) -> None:
        when = self._idle_deadline(now)
        if when is None:
            return
        when = max(when, now)
        if self._timer is not None:
            if self._timer_when <= when:
                return
            self._timer.cancel()
        self._timer_when = when
        self._timer = self.timers.arm(when, self._idle_check)

    def _idle_check(self, now: float) -> None:
        self._timer = None
        if self.state is ClientState.CLOSED:
            return
        txn = self.idle_txn_timeout_ms
        if txn and self._in_idle_transaction() and now - self._idle_since() >= txn / 1000.0:
            self._fatal(now, codes.IDLE_IN_TRANSACTION_TIMEOUT,
                        "terminating connection due to client_idle_in_transaction_timeout",
                        Reason.IDLE_IN_TRANSACTION_TIMEOUT)
            return
        idle = self.idle_timeout_ms
        if (idle and self.state is ClientState.IDLE and self._local_txn is None
                and now - self.last_activity >= idle / 1000.0):
            self._fatal(now, codes.IDLE_SESSION_TIMEOUT, "client_idle_timeout: closing idle connection",
                        Reason.CLIENT_IDLE_TIMEOUT)
            return
        self._arm_idle_timer(now)

    # -- the end -------------------------------------------------------------

    def shutdown(self, now: float, message: str) -> None:
        """The proxy is going away: tell the client why."""
        if self.state is not ClientState.CLOSED:
            self._fatal(now, codes.ADMIN_SHUTDOWN, message, Reason.SHUTDOWN)

    def _close(self, now: float, reason: Reason) -> None:
        if self.state is ClientState.CLOSED:
            return
        was = self.state
        self.close_reason = reason
        self._cancel_timer()
        self._transition(now, ClientState.CLOSED, reason)
        # Closed inside a scan (a Terminate with more behind it): the scan ends after this message.
        self.scanner.suspend()
        server = self.server
        self.server = None
        if was in (ClientState.WAITING, ClientState.LOGIN):
            self._cancel_wait(now)
        if was is ClientState.WAITING and self.admin:
            self.directory.admin_cancel(now, self)  # type: ignore[attr-defined]
        if server is not None:
            if self.scanner.at_boundary():
                server.release(now, session_mode=self.session_mode or self.pinned)
            else:
                server.discard(now)
        self._drop_all_statements()
        self.io.close()
        self.directory.client_closed(self)
