"""One connection from the proxy to a PostgreSQL server, as a sans-IO machine.

The machine logs in (answering cleartext, MD5 or SCRAM), then alternates
between the pool (IDLE) and a client (ACTIVE). It keeps the protocol
bookkeeping that decides when a server can be handed on: a FIFO with one entry
per ReadyForQuery still owed (one per Query, Sync or FunctionCall sent), each
entry saying who reads those responses: the client, or nobody because the proxy
injected the request itself (settings sync, ROLLBACK, DISCARD ALL). A server is
clean when nothing is owed, no extended-protocol message waits for a Sync, and
the last ReadyForQuery said idle; only a clean server returns to the pool.
Anything else is cleaned (drain, ROLLBACK) or closed, never reused blindly.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final

from pgdog_ev.auth.errors import AuthFailed
from pgdog_ev.auth.md5 import md5_hash
from pgdog_ev.auth.scram import ScramClient
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer
from pgdog_ev.wire.scanner import MessageScanner, action_table
from pgdog_ev.wire.startup import build_ssl_request, build_startup
from state.events import EventLog, Kind, Machine
from state.illegal_transition import IllegalTransition
from state.params import sync_query
from state.prepared import NOOP_CLOSE, GlobalStatement
from state.reasons import Reason
from state.registry import register_states

if TYPE_CHECKING:
    from collections.abc import Callable

    from state.interfaces import Borrower, Entropy, Scheduler, ServerIO, TimerHandle
    from state.pool import Pool


class ServerState(IntEnum):
    CONNECTING = 1
    STARTUP = 2
    IDLE = 3
    ACTIVE = 4
    CLEANING = 5
    CLOSED = 6
    # Running a query of the proxy's own (health check, LSN poll) between clients.
    CHECKING = 7


S: Final = ServerState
TRANSITIONS: Final[dict[ServerState, frozenset[ServerState]]] = {
    S.CONNECTING: frozenset({S.STARTUP, S.CLOSED}),
    S.STARTUP: frozenset({S.IDLE, S.CLOSED}),
    S.IDLE: frozenset({S.ACTIVE, S.CHECKING, S.CLOSED}),
    S.ACTIVE: frozenset({S.IDLE, S.CLEANING, S.CLOSED}),
    S.CLEANING: frozenset({S.IDLE, S.CLOSED}),
    S.CHECKING: frozenset({S.IDLE, S.CLOSED}),
    S.CLOSED: frozenset(),
}
register_states(Machine.SERVER, ServerState)

# Enum members the hot path reads, as module globals: on Python 3.11 reading a member off
# its class goes through EnumType.__getattr__'s slot (about 50 ns, against 6 for a global),
# and one transaction reads a few dozen of them.
_K_TRANSITION: Final = Kind.TRANSITION
_M_SERVER: Final = Machine.SERVER
_R_CHECKIN: Final = Reason.CHECKIN
_R_CHECKOUT: Final = Reason.CHECKOUT
_R_CLEANED: Final = Reason.CLEANED
_R_CONNECT_FAILED: Final = Reason.CONNECT_FAILED
_R_OUT_OF_SYNC: Final = Reason.OUT_OF_SYNC
_S_ACTIVE: Final = ServerState.ACTIVE
_S_CHECKING: Final = ServerState.CHECKING
_S_CLEANING: Final = ServerState.CLEANING
_S_CLOSED: Final = ServerState.CLOSED
_S_IDLE: Final = ServerState.IDLE
_S_STARTUP: Final = ServerState.STARTUP


# Who reads the responses up to an owed ReadyForQuery. An owed entry may also
# be a list of analyses (the client's request, whose session effects apply once
# it succeeds) or bytes (an answer the proxy made itself, sent to the client
# when every request before it has been answered, followed by ReadyForQuery).
TO_CLIENT: Final = 0
HIDDEN: Final = 1
LOGIN_CHECK: Final = 2
HIDDEN_PREPARE: Final = 3  # a SQL PREPARE the proxy injected (prepared_statements = "full")
PROBE: Final = 4  # a health check or LSN poll (state CHECKING)
ABORT: Final = 5  # a statement that fails on purpose (abort_transaction); its error is dropped
NOT_FOR_CLIENT: Final = (HIDDEN, LOGIN_CHECK, HIDDEN_PREPARE, PROBE, ABORT)
# Fails wherever it runs, and says why in the server's log.
ABORT_SQL: Final = "DO $pgdog_ev$ BEGIN RAISE EXCEPTION 'pgdog-ev: a statement of this transaction was refused'; END $pgdog_ev$"

# What to do with the next ParseComplete/CloseComplete (prepared statements).
EXPECT_FORWARD: Final = 0  # the client's own Parse or Close
EXPECT_SWALLOW: Final = 1  # a Parse the proxy injected
EXPECT_AS_PARSE: Final = 2  # a no-op Close standing in for a ParseComplete
EXPECT_MARKER: Final = 3  # a no-op Close ahead of a request sent behind an unsynced batch

# A Parse that fails wherever it runs, sent in place of one the proxy refuses while a server is
# held: its error (42601 at STAND_IN_POSITION) is where the refusal goes, in its turn, and as for
# any error there the server skips to the Sync and fails the transaction.
STAND_IN_SQL: Final = "/* pgdog-ev: refused (session_state) */ )"
STAND_IN_POSITION: Final = str(STAND_IN_SQL.rindex(")") + 1)  # 1-based, in characters
STAND_IN_PARSE: Final = fe.parse("", STAND_IN_SQL, [])
# For a named Parse: a failing unnamed one would drop the unnamed statement, as the client's would not.
STAND_IN_PARSE_NAMED: Final = fe.parse("pgdog_ev_refused", STAND_IN_SQL, [])

PARSE_COMPLETE_MSG: Final = be.parse_complete()
# Closes the proxy forced on a connection it could no longer trust or wait for.
FORCE_CLOSED: Final = frozenset({Reason.OUT_OF_SYNC, Reason.QUERY_TIMEOUT, Reason.CLEANUP_FAILED})

# Server messages the machine must read: ReadyForQuery, ParameterStatus,
# ErrorResponse (bodies); CopyIn/CopyBoth responses, ParseComplete and
# CloseComplete only need their header.
SERVER_TABLE: Final = action_table(header=b"GW13", body=b"ZSE")
# When no ParseComplete/CloseComplete needs reading (see ``_quiet_expectations``), those two are
# forwarded unread: what a whole reply is tested against.
QUIET_TABLE: Final = action_table(header=b"GW", body=b"ZSE")
# During a COPY, CommandComplete too: the COPY's end (see ``_copy_complete``).
COPY_TABLE: Final = action_table(header=b"GW13C", body=b"ZSE")
# While probing, the first DataRow is read too (the answer of an LSN poll).
PROBE_TABLE: Final = action_table(header=b"GW13", body=b"ZSED")
DATA_ROW: Final = ord("D")
FATAL_SEVERITIES: Final = frozenset({"FATAL", "PANIC"})
# The routines (field R, never translated) that raise "cached plan must not change result type".
STALE_PLAN_ROUTINES: Final = frozenset({"RevalidateCachedQuery", "RevalidateCachedPlan"})
PARSE_COMPLETE: Final = ord("1")
CLOSE_COMPLETE: Final = ord("3")


class ServerSession:
    """Protocol state of one server connection."""

    def __init__(
        self,
        sid: int,
        pool: Pool,
        io: ServerIO,
        log: EventLog,
        timers: Scheduler,
        entropy: Entropy,
        now: float,
        tls_verify: str = "disabled",
    ) -> None:
        self.id = sid
        self.pool = pool
        self.io = io
        self.log = log
        self.timers = timers
        self.entropy = entropy
        # [general] tls_verify for this connection ("disabled" for unix sockets); ``tls`` once
        # the server accepted TLS; ``_tls_wait`` while its one-byte answer to SSLRequest is due.
        self.tls_verify = tls_verify
        self.tls = False
        self._tls_wait = False
        self.state = ServerState.CONNECTING
        self.created_at = now
        self.last_used = now
        self.last_active = now
        self.pid = 0
        self.secret = b""
        # ParameterStatus values the server reported, by name as sent.
        self.reported: dict[str, str] = {}
        # Session settings the proxy applied on top of the startup defaults.
        self.applied: dict[str, str] = {}
        # What ``applied`` was before the settings query in flight, to revert
        # to if the server rejects it (one simple query is one transaction).
        self._applied_before: dict[str, str] = {}
        # Session mode: end the cleanup with DISCARD ALL.
        self._cleanup_session = False
        self.txn_status = b"I"
        self.owed: deque[Any] = deque()
        # ReadyForQuery messages owed so far / received so far: they number the
        # Sync-delimited segments that prepared-statement expectations belong to.
        self._rfq_sent = 0
        self._rfq_seen = 0
        # (EXPECT_*, statement name, segment, the client's name for it, the statement it
        # names) per ParseComplete or CloseComplete to come. The client's name is set for its
        # named Parse: if the server fails or skips that Parse, the client's statement does
        # not exist either.
        self._expect: deque[tuple[int, str, int, str, str]] = deque()
        # Global prepared statements this server holds, least recently used first.
        self.prepared: OrderedDict[str, GlobalStatement] = OrderedDict()
        # The global statements bound, described or executed here since the last ReadyForQuery:
        # one of them failed if the server says its plan no longer fits (_on_stale_plan).
        self._used: list[GlobalStatement] = []
        self.prepared_evictions = 0
        # Names of injected SQL PREPAREs not yet answered, in order.
        self._sql_prepares: deque[str] = deque()
        self._prepare_error: bytes | None = None
        # Refusals standing in for a stand-in Parse's error, by segment (refuse_in_turn).
        self._refusals: dict[int, bytes] = {}
        # Requests (by the number of their ReadyForQuery) sent behind extended-protocol messages
        # not yet synced: whether the no-op Close sent ahead of each came back, that is whether
        # the messages before it all succeeded (see _behind_batch).
        self._behind: dict[int, bool] = {}
        # Whether the client request being answered failed, and what it reported.
        self._failed = False
        self.last_reported: dict[str, str] = {}
        self.unsynced = False
        self.copy_in = False
        # CopyDone/CopyFail messages sent so far, and whether one went since the last Execute
        # (the client sets it False at each): a COPY FROM STDIN begun by an Execute reads (and
        # ignores) every Sync sent before the CopyDone or CopyFail that ends it (_on_header).
        self.copy_ends_sent = 0
        self.copy_ended = False
        # Which of those (numbered from 0) were CopyFails, the latest few; and the number of the
        # one that ends the COPY running: a 57014 after a CopyFail may be its error.
        self._failed_ends: set[int] = set()
        self._copy_end_index = -1
        # A CopyData went since the last CopyDone, CopyFail, Query or Execute (copy_may_begin): a
        # Sync sent now may come after a bad row, which ends the COPY before the Sync is read.
        self.copy_data_sent = False
        # (_rfq_sent, its number) when each CopyDone/CopyFail not yet behind every answered
        # request was sent: one sent after request h (a Query starting COPY) holds one above h.
        self._copy_ends: deque[tuple[int, int]] = deque()
        # A COPY FROM STDIN begun by a Query is running and the client has sent nothing that
        # ends it: any message but CopyData, CopyDone, CopyFail, Flush or Sync breaks it
        # (the client reads ClientSession._broke_copy).
        self.copy_open = False
        # An error of severity FATAL or PANIC went to the client: the server closes next.
        self.fatal_forwarded = False
        # (number, copy_ends_sent, copy_ended, copy_data_sent) of each Sync owed, oldest first.
        self._syncs: deque[tuple[int, int, bool, bool]] = deque()
        # Syncs such a COPY read: no ReadyForQuery of their own will come. And copy_ends_sent
        # when the COPY began: a Sync sent while it is still the same goes to the COPY too.
        self._ignored: set[int] = set()
        self._ignored_at = -1
        self.client: Borrower | None = None
        self.error: str | None = None
        self.transactions = 0
        self.queries = 0
        self.rollbacks = 0
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0  # counted by the connection that sends them
        # Settings syncs and health checks run on this connection.
        self.resyncs = 0
        # Client requests (Query/Sync/FunctionCall) awaiting their ReadyForQuery, and
        # when the current busy stretch and transaction began (for query/xact time).
        self._requests = 0
        self.request_at = now
        self._xact_at: float | None = None
        # CancelRequests sent and not yet acknowledged by the postmaster. A
        # server is not lent again until they are: a late cancel would hit
        # the next client's query.
        self.cancels_in_flight = 0
        self._framer: Framer | None = None
        self._scram: ScramClient | None = None
        self._login_reported: dict[str, str] = {}
        self._login_error: dict[str, str] | None = None
        self._timer: TimerHandle | None = None
        # When this connection last proved the server alive (a check passed, a request answered).
        self.last_check = now
        # Why the connection closed (None while open): the pool tells connect errors from timeouts.
        self.close_reason: Reason | None = None
        # The probe running in CHECKING: its callback, the first row and the error it got.
        self._probe_done: Callable[[float, ServerSession, list[str | None] | None, str | None], None] | None = None
        self._probe_row: list[str | None] | None = None
        self._probe_error: str | None = None
        self._probe_label = "health check"
        self._probe_limit = "healthcheck_timeout"
        self.scanner = MessageScanner(
            SERVER_TABLE,
            self._to_client,
            self._on_message,
            self._on_header,
            max_len=pool.max_message_size,
        )

    # -- bookkeeping --------------------------------------------------------

    def _transition(self, now: float, to: ServerState, reason: Reason, b: int = 0) -> None:
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"server {self.id}: {self.state.name} -> {to.name} ({reason.name})")
        self.log.emit(now, _K_TRANSITION, _M_SERVER, self.id, self.state, to, reason, b)
        self.state = to

    @property
    def clean(self) -> bool:
        return (
            not self.owed
            and not self.unsynced
            and not self.copy_in
            and self.txn_status == b"I"
            and not self.cancels_in_flight
        )


    # -- connection establishment -------------------------------------------

    def on_connected(self, now: float) -> None:
        """TCP is up: ask for TLS unless tls_verify is disabled, else send the startup packet."""
        self._transition(now, ServerState.STARTUP, Reason.CONNECTED)
        self._framer = Framer(self.pool.max_message_size)
        timeout = self.pool.settings.connect_timeout
        if timeout:
            # connect_timeout bounds the login too: a server that accepts TCP and then says
            # nothing (overloaded, half-dead, a black hole) must not hold a slot forever.
            self._timer = self.timers.arm(now + timeout / 1000.0, self._login_expired)
        if self.tls_verify != "disabled":
            self._tls_wait = True
            self.io.send(build_ssl_request())
            return
        self._send_startup()

    def _tls_answer(self, now: float, data: memoryview) -> None:
        """The server's answer to SSLRequest: 'S', 'N', or an ErrorResponse from a server that
        does not understand the request."""
        self._tls_wait = False
        answer = data[0]
        if answer == ord("S"):
            if len(data) > 1:
                # Plaintext slipped in ahead of the handshake (CVE-2021-23222): never read it.
                raise ProtocolViolation("received unencrypted data after the server accepted TLS")
            self.io.start_tls()
            if self.state is ServerState.CLOSED:
                return
            self.tls = True
            self.log.emit(now, Kind.NOTE, Machine.SERVER, self.id, 0, 0, Reason.TLS_ACCEPTED)
            self._send_startup()
            return
        if answer != ord("N"):
            self._startup_messages(now, data)
            return
        if self.tls_verify in ("verify_ca", "verify_full"):
            self.error = f"server does not support TLS (tls_verify = {self.tls_verify})"
            self._close(now, Reason.CONNECT_FAILED)
            return
        self.log.emit(now, Kind.NOTE, Machine.SERVER, self.id, 0, 0, Reason.SSL_REFUSED)
        self._send_startup()
        if len(data) > 1:
            self._startup_messages(now, data[1:])

    def _send_startup(self) -> None:
        settings = self.pool.settings
        params = {"user": settings.server_user, "database": settings.server_database}
        params["application_name"] = "pgdog-ev"
        if settings.statement_timeout is not None:
            params["statement_timeout"] = str(settings.statement_timeout)
        self.io.send(build_startup(params))

    def on_connect_failed(self, now: float, error: str, errno_code: int = 0) -> None:
        """``errno_code`` is what the timeline shows (ETIMEDOUT for a connect timeout)."""
        self.error = error
        self.log.emit(now, Kind.CONNECT, Machine.SERVER, self.id, 0, 0, errno_code or 5)
        self._close(now, Reason.CONNECT_FAILED)

    def _startup_messages(self, now: float, data: memoryview) -> None:
        assert self._framer is not None
        for mtype, body in self._framer.feed(data):
            if self.state is not ServerState.STARTUP:
                return
            if mtype == be.AUTHENTICATION:
                self._on_auth(now, body)
            elif mtype == be.PARAMETER_STATUS:
                name, value = be.parse_parameter_status(body)
                self.reported[name] = value
            elif mtype == be.BACKEND_KEY_DATA:
                self.pid, self.secret = be.parse_backend_key_data(body)
            elif mtype == be.ERROR_RESPONSE:
                fields = be.parse_error_fields(body)
                self.error = fields.get("M", "server refused the connection")
                self._close(now, Reason.SERVER_ERROR)
                return
            elif mtype == be.READY_FOR_QUERY:
                self.txn_status = be.parse_ready_for_query(body)
                self._framer = None
                self.last_used = now
                self._cancel_timer()
                self._transition(now, ServerState.IDLE, Reason.SERVER_READY)
                self.scanner.forwarding = False
                self.pool.server_ready(now, self)
                return
            elif mtype in (be.NOTICE_RESPONSE, be.NEGOTIATE_PROTOCOL_VERSION):
                continue
            else:
                raise ProtocolViolation(f"unexpected message {chr(mtype)!r} during server login")

    def _on_auth(self, now: float, body: bytes) -> None:
        code, rest = be.parse_authentication(body)
        password = self.pool.settings.server_password
        if code == be.AUTH_OK:
            self._scram = None
            return
        if code in (be.AUTH_CLEARTEXT, be.AUTH_MD5, be.AUTH_SASL) and password is None:
            raise AuthFailed("the server asks for a password and none is configured (server_password)")
        assert password is not None
        if code == be.AUTH_CLEARTEXT:
            self.io.send(fe.password(password))
        elif code == be.AUTH_MD5:
            self.io.send(fe.password(md5_hash(self.pool.settings.server_user, password, bytes(rest[:4]))))
        elif code == be.AUTH_SASL:
            mechanisms = be.parse_sasl_mechanisms(rest)
            if "SCRAM-SHA-256" not in mechanisms:
                raise AuthFailed(f"server offers no supported SASL mechanism: {mechanisms}")
            self._scram = ScramClient(password, self.entropy)
            self.io.send(fe.sasl_initial_response("SCRAM-SHA-256", self._scram.client_first()))
        elif code == be.AUTH_SASL_CONTINUE:
            if self._scram is None:
                raise ProtocolViolation("SASLContinue without SASL")
            self.io.send(fe.sasl_response(self._scram.server_first(bytes(rest))))
        elif code == be.AUTH_SASL_FINAL:
            if self._scram is None:
                raise ProtocolViolation("SASLFinal without SASL")
            self._scram.server_final(bytes(rest))
        else:
            raise AuthFailed(f"unsupported authentication method {code} requested by the server")

    # -- input from the socket ----------------------------------------------

    def on_bytes(self, now: float, data: memoryview) -> None:
        self.last_active = now
        self.bytes_in += len(data)
        try:
            if self.state is _S_STARTUP:
                if self._tls_wait:
                    self._tls_answer(now, data)
                else:
                    self._startup_messages(now, data)
            elif self.state is _S_ACTIVE:
                if not self._whole_reply(data):
                    self.scanner.feed(data)
            elif self.state is not _S_CLOSED:
                self.scanner.feed(data)
        except (ProtocolViolation, AuthFailed) as exc:
            self.error = str(exc)
            reason = _R_CONNECT_FAILED if self.state is _S_STARTUP else _R_OUT_OF_SYNC
            self._close(now, reason)

    def on_closed(self, now: float) -> None:
        """The socket closed under us."""
        if self.state is ServerState.CLOSED:
            return
        if self.error is None:
            self.error = "server closed the connection unexpectedly"
        self._close(now, Reason.SERVER_LOST)

    def _whole_reply(self, data: memoryview) -> bool:
        """The hot path: ``data`` is the whole answer to the client's one request (messages the
        scanner passes, then ReadyForQuery). It goes to the client as one write, and only the
        ReadyForQuery is looked at. False (nothing done) when anything else could be in it, or
        when the request's effects must reach the client before its ReadyForQuery does."""
        scanner = self.scanner
        client = self.client
        owed = self.owed
        if client is None or not scanner.forwarding or len(owed) != 1 or owed[0] != TO_CLIENT:
            return False
        # A ReadyForQuery at the end ("Z", length 5, a status), read byte by byte: a slice and
        # its comparison cost more. (Without it, part of a large result is not walked twice.)
        n = len(data)
        if n < 6 or data[n - 6] != 90 or data[n - 2] != 5 or data[n - 3] or data[n - 4] or data[n - 5]:
            return False
        c = data[n - 1]
        if c == 73:
            status = b"I"
        elif c == 84:
            status = b"T"
        elif c == 69:
            status = b"E"
        else:
            return False
        last = scanner.last_after_passes(data, QUIET_TABLE if self._quiet_expectations() else SERVER_TABLE)
        if last != n - 6:
            return False
        client.io.send(data)
        self._ready(status, True)
        return True

    def _quiet_expectations(self) -> bool:
        """Whether every ParseComplete/CloseComplete this reply may hold would be forwarded with
        nothing to remember: the only ones awaited for it answer the client's own unnamed Parse
        or Close (an extended-protocol batch), which ReadyForQuery's bookkeeping drops alike
        whether they came or not."""
        expect = self._expect
        if not expect:
            return True  # iterating even an empty deque makes an iterator object
        seen = self._rfq_seen
        for kind, name, segment, client_name, _stmt in expect:
            if segment == seen and (kind != EXPECT_FORWARD or name or client_name):
                return False
        return True

    def _to_client(self, view: memoryview) -> None:
        client = self.client
        if client is not None:
            client.io.send(view)

    def _on_header(self, mtype: int, length: int) -> bool:
        if mtype in (PARSE_COMPLETE, CLOSE_COMPLETE):
            return self._on_completion()
        if mtype == be.COMMAND_COMPLETE:
            if self.copy_in:
                self._copy_complete()
            return self.scanner.forwarding
        # CopyInResponse / CopyBothResponse: the server now waits for CopyData.
        self.copy_in = True
        self.scanner.table = COPY_TABLE
        syncs = self._syncs
        head = self._rfq_seen
        if syncs and syncs[0][0] == head:
            if not syncs[0][2]:
                # Begun by an Execute whose Sync was sent before any CopyDone/CopyFail (libpq
                # sends them together): the COPY reads that Sync, and any sent after it up to
                # the CopyDone or CopyFail, and ignores them; the Execute ends at the next Sync
                # after that.
                count = syncs[0][1]
                self._ignored_at = count
                self._copy_end_index = count
                for number, sent_at, _ended, _data in syncs:
                    if sent_at == count:
                        self._ignored.add(number)
        elif self.owed:
            if mtype == be.COPY_IN_RESPONSE and self._behind.get(head) is not False:
                # (The head is a Query, sent with no unsynced messages before it, or behind some
                # whose no-op Close came back: the COPY is its own, not an earlier Execute's.)
                self._query_copy(head)
        elif self.unsynced and not self.copy_ended and mtype == be.COPY_IN_RESPONSE:
            # Begun by an Execute whose Sync is still to come (a Flush asked for this): the COPY
            # reads every Sync sent up to its CopyDone or CopyFail, and the Execute ends at the
            # first one after that. (Not copy_open: if the COPY fails, the server waits for a
            # Sync, so none the client sends may be held back.)
            self._ignored_at = self._copy_end_index = self.copy_ends_sent
        if self.state is _S_CLEANING:
            # The client left before its COPY began: end it for them.
            self._end_copy()
        return self.scanner.forwarding

    def _copy_complete(self) -> None:
        """The COPY ended well (its CommandComplete). The Syncs a COPY begun by an Execute read
        get no ReadyForQuery: counted as answered now, whatever the server does next (another
        COPY, a Parse, an error) is matched against the request it really belongs to."""
        self._copy_over()
        ignored = self._ignored
        if ignored and self._rfq_seen in ignored:
            owed = self.owed
            while owed and self._rfq_seen in ignored and type(owed[0]) is not bytes:
                ignored.discard(self._rfq_seen)
                self._drop_owed()
            if not ignored:
                self._ignored_at = -1
            self._update_forwarding()

    def _copy_over(self) -> None:
        self.copy_in = False
        self.scanner.table = SERVER_TABLE

    def _query_copy(self, head: int) -> None:
        """A COPY FROM STDIN begun by the Query numbered ``head``: it reads (and ignores) every
        Sync sent after that Query up to the first CopyDone or CopyFail sent after it and not
        taken by an earlier COPY of the same Query, so those get no ReadyForQuery of their own.
        With none sent yet, the client's next message must be CopyData or one of those
        (``copy_open``); a client in transaction mode then has its Syncs dropped, not sent."""
        ends = self._copy_ends
        end = -1
        while ends:
            sent_at, index = ends.popleft()  # (one sent before the Query ends no COPY of it)
            if sent_at > head:
                end = sent_at
                self._copy_end_index = index
                break
        for number, _count, _ended, _data in self._syncs:
            if number > head and (end < 0 or number < end):
                self._ignored.add(number)
        if end < 0:
            self.copy_open = True
            self._ignored_at = self._copy_end_index = self.copy_ends_sent

    def _end_copy(self) -> None:
        """End the COPY of a client that left: CopyFail, and a Sync if every Sync it sent went
        to a COPY begun by an Execute (the server waits for one after the CopyFail's error)."""
        if self.copy_in:
            self.copy_end_sent(True)
            self.io.send(fe.copy_fail("client disconnected during COPY"))
        if self._ignored and (not self._syncs or self._syncs[-1][1] == self._ignored_at):
            self._sync_hidden()

    def _sync_hidden(self) -> None:
        """A Sync of the proxy's own for a client that left (its ReadyForQuery is read here)."""
        self.unsynced = False
        self._syncs.append((self._rfq_sent, self.copy_ends_sent, self.copy_ended, self.copy_data_sent))
        self.owed.append(HIDDEN)
        self._rfq_sent += 1
        self.io.send(fe.sync())

    def copy_may_begin(self, execute: bool) -> None:
        """A Query or an ``execute`` goes: a COPY it begins reads only what is sent after it
        (and an Execute's ends at the first CopyDone or CopyFail after it: copy_ended)."""
        self.copy_data_sent = False
        if execute:
            self.copy_ended = False

    def copy_end_sent(self, failed: bool) -> None:
        """A CopyDone or CopyFail (``failed``) goes to the server (the client's or the proxy's)."""
        index = self.copy_ends_sent
        if failed:
            fails = self._failed_ends
            if len(fails) >= 16:
                fails.discard(min(fails))
            fails.add(index)
        self.copy_ends_sent = index + 1
        self.copy_ended = True
        self.copy_data_sent = False
        if self.copy_open:
            self.copy_open = False  # the end of that COPY: no later one may take it
            return
        ends = self._copy_ends
        while ends and ends[0][0] <= self._rfq_seen:
            ends.popleft()  # (before every request still unanswered: never read again)
        ends.append((self._rfq_sent, index))

    def _on_completion(self) -> bool:
        expect = self._expect
        if not expect or expect[0][2] != self._rfq_seen:
            return self.scanner.forwarding
        kind = expect.popleft()[0]
        if kind == EXPECT_SWALLOW:
            return False
        if kind == EXPECT_MARKER:
            # The batch ahead of the request succeeded: what comes next answers the request.
            self._behind[self._rfq_seen] = True
            self._update_forwarding()
            return False
        if kind == EXPECT_AS_PARSE:
            if self.scanner.forwarding and self.client is not None:
                self.client.io.send(PARSE_COMPLETE_MSG)
            return False
        return self.scanner.forwarding

    def _drop_expectations(self, before: int) -> None:
        """Expectations of segments numbered below ``before`` will never be met (an
        error skipped their messages): statements they would have prepared are not there."""
        expect = self._expect
        while expect and expect[0][2] < before:
            _kind, name, _, client_name, stmt = expect.popleft()
            if name:
                self.prepared.pop(name, None)
            if client_name and self.client is not None:
                self.client.forget_statement(client_name, stmt)

    def _on_message(self, mtype: int, body: memoryview) -> None:
        if mtype == be.READY_FOR_QUERY:
            self._on_ready(body)
        elif mtype == DATA_ROW:
            if self.state is _S_CHECKING and self._probe_row is None:
                self._probe_row = [None if v is None else v.decode("utf-8", "replace")
                                   for v in be.parse_data_row(body)]
        elif mtype == be.PARAMETER_STATUS:
            name, value = be.parse_parameter_status(body)
            self.reported[name] = value
            if self.owed and self.owed[0] == LOGIN_CHECK:
                self._login_reported[name] = value
            elif self.scanner.forwarding and self.client is not None:
                self.last_reported[name] = value
                self.client.tell(name, value)
                self.scanner.sink_message(mtype, body)
            elif self.client is not None and self.state is _S_ACTIVE:
                # Moved by the proxy's own settings sync: the client hears of it
                # only if that changes what it was last told.
                self.client.report(name, value)
        elif mtype == be.ERROR_RESPONSE:
            unsure = False
            if self.copy_in:
                if self._ignored:
                    if self._copy_read_unknown(body):
                        unsure = True
                    elif self._rfq_seen in self._ignored:
                        self._copy_failed()  # (begun by an Execute: its own Sync was read)
                # Syncs sent from now on come after the COPY: none is read by it.
                self._ignored_at = -1
                self.copy_open = False
                self._copy_over()
            if self._behind and self._behind.get(self._rfq_seen) is False:
                self._skip_behind()
            if self._expect:
                # The server now skips everything up to the next Sync.
                self._drop_expectations(self._rfq_seen + 1)
            if self.owed and self.owed[0] == LOGIN_CHECK:
                self._login_error = be.parse_error_fields(body)
            elif self.owed and self.owed[0] == PROBE:
                self._probe_error = be.parse_error_fields(body).get("M", "server error")
            elif self.owed and self.owed[0] == HIDDEN_PREPARE and self._sql_prepares:
                # The statement fails here; the client's EXECUTE (next) gets this error
                # in place of "does not exist", as if it had prepared the statement itself.
                self.prepared.pop(self._sql_prepares[0], None)
                self._prepare_error = bytes(body)
            elif self.owed and self.owed[0] == HIDDEN and self.state is _S_ACTIVE:
                # A settings sync failed and was rolled back as a whole.
                self.applied = self._applied_before
            elif self.scanner.forwarding and self.client is not None:
                self._failed = True
                refusal = self._refusals.pop(self._rfq_seen, None) if self._refusals else None
                if refusal is not None and _stand_in_failed(body):
                    body = memoryview(refusal)[5:]  # (counted when the client's Parse was refused)
                else:
                    self.errors += 1
                    self.pool.stats.errors += 1
                    self.client.errors += 1
                    if self._prepare_error is not None:
                        body = memoryview(self._prepare_error)
                        self._prepare_error = None
                    fields = be.parse_error_fields(body)
                    if self._used and fields.get("R", "") in STALE_PLAN_ROUTINES:
                        self._on_stale_plan()
                    if fields.get("V", fields.get("S")) in FATAL_SEVERITIES:  # (V: never translated)
                        # The server ends the connection after it: the client has heard why.
                        self.fatal_forwarded = True
                self.scanner.sink_message(mtype, body)
            elif not self.owed and self.client is None:
                # An error nobody asked for (e.g. FATAL before a shutdown).
                self.error = be.parse_error_fields(body).get("M", "server error")
            if unsure:
                # Never lent again: a ReadyForQuery counted for no one would answer the next
                # client's request. This client has had the COPY's error; it loses the server.
                self.error = "a COPY FROM STDIN failed with Sync messages sent inside it"
                self._close(self.last_active, _R_OUT_OF_SYNC)

    def _on_ready(self, body: memoryview) -> None:
        self._ready(be.parse_ready_for_query(body), False)

    def _ready(self, status: bytes, forwarded: bool) -> None:
        """``forwarded``: the ReadyForQuery went to the client already, with the reply before it."""
        now = self.last_active
        before = self.txn_status
        self.txn_status = status
        if self.copy_in:
            self._copy_over()
        self.copy_open = False
        owed = self.owed
        while owed:
            if self._behind and self._behind.get(self._rfq_seen) is False:
                # Its no-op Close never came back: the batch had failed before it was sent (its
                # error came earlier), and the server skipped it and the requests behind it.
                self._skip_behind()
            elif self._ignored and self._rfq_seen in self._ignored:
                self._drop_ignored(status)
            else:
                break
        if not owed:
            self.error = "ReadyForQuery without a pending request"
            self._close(now, _R_OUT_OF_SYNC)
            return
        self._rfq_seen += 1
        if self._syncs and self._syncs[0][0] < self._rfq_seen:
            self._syncs.popleft()
        if self._behind:
            self._behind.pop(self._rfq_seen - 1, None)
        if self._expect:
            self._drop_expectations(self._rfq_seen)
        if self._refusals:
            # Not met: an error before the stand-in skipped it, or nobody was reading.
            self._refusals.pop(self._rfq_seen - 1, None)
        reader = owed.popleft()
        client = self.client
        if reader == TO_CLIENT or type(reader) is list:
            self._prepare_error = None
            self._request_done(now, status)
            if client is not None:
                if reader != TO_CLIENT:
                    client.on_request_done(now, self, reader, before, status, self._failed)
                if not forwarded:
                    # The whole message is one of three constants: no rebuilding it.
                    self._to_client(be.ready_for_query(status))  # type: ignore[arg-type]
            self.queries += 1
        elif reader == LOGIN_CHECK:
            self._finish_login_check(now)
        elif reader == PROBE:
            self._finish_probe(now)
            return
        elif reader == HIDDEN_PREPARE and self._sql_prepares:
            self._sql_prepares.popleft()
        self._failed = False
        if self.last_reported:
            self.last_reported = {}
        if self._used:
            self._used.clear()
        if self._ignored and self._rfq_seen in self._ignored:
            self._drop_ignored(status)  # Syncs a COPY begun by this Query read
        self._send_answers(status, client)
        self._update_forwarding()
        if self.owed or self.unsynced or self.cancels_in_flight:
            return
        if self.state is _S_ACTIVE:
            if status == b"I":
                self.transactions += 1
            if self.client is not None:
                self.client.on_server_ready(now, self, status)
        elif self.state is _S_CLEANING:
            self._continue_cleaning(now)

    def _request_done(self, now: float, status: bytes) -> None:
        """Account one answered client request in the pool's query and transaction totals."""
        stats = self.pool.stats
        busy = now - self.request_at
        stats.query_count += 1
        stats.query_time += busy
        self.request_at = now
        self._requests -= 1
        client = self.client
        if client is not None:
            client.query_time += busy
        if status == b"I" and self._xact_at is not None:
            took = now - self._xact_at
            stats.xact_count += 1
            stats.xact_time += took
            if client is not None:
                client.xact_time += took
            self._xact_at = now if self._requests else None
        elif status != b"I" and self._xact_at is None:
            self._xact_at = now

    # -- probes (health checks, LSN polls) ------------------------------------

    def probe(
        self,
        now: float,
        sql: str,
        timeout: float,
        done: Callable[[float, ServerSession, list[str | None] | None, str | None], None],
        label: str = "health check",
    ) -> None:
        """Run one query of the proxy's own on this idle, clean connection.

        ``done(now, server, first_row, error)`` is called exactly once: with the first row
        (None if there was none) and ``error`` None when the server answered in time; with
        an error otherwise. A probe that errors or times out closes the connection, since a
        server that cannot answer ``;`` within healthcheck_timeout is not one to lend."""
        self._probe_done = done
        self._probe_label = label
        self._probe_limit = "healthcheck_timeout" if label == "health check" else "lsn_check_timeout"
        self._probe_row = None
        self._probe_error = None
        self._transition(now, ServerState.CHECKING, Reason.HEALTHCHECK)
        self.scanner.table = PROBE_TABLE
        self.scanner.forwarding = False
        self._send_hidden(sql, PROBE)
        self._cancel_timer()
        self._timer = self.timers.arm(now + timeout, self._probe_expired)

    def _finish_probe(self, now: float) -> None:
        self._cancel_timer()
        self.scanner.table = SERVER_TABLE
        error = self._probe_error
        if error is not None:
            self.error = f"{self._probe_label} failed: {error}"
            self._close(now, Reason.HEALTHCHECK_FAILED)
            return
        done, self._probe_done = self._probe_done, None
        self.last_check = now
        self._transition(now, ServerState.IDLE, Reason.HEALTHCHECK_OK)
        if done is not None:
            done(now, self, self._probe_row, None)

    def _probe_expired(self, now: float) -> None:
        self._timer = None
        if self.state is ServerState.CHECKING:
            self.error = f"{self._probe_label} timed out ({self._probe_limit})"
            self._close(now, Reason.HEALTHCHECK_TIMEOUT)

    # -- being lent to a client ---------------------------------------------

    def link(self, now: float, client: Borrower) -> None:
        """Hand this idle server to ``client``; settings are synced first."""
        self.client = client
        self.last_used = now
        self._transition(now, _S_ACTIVE, _R_CHECKOUT, client.id)
        query = sync_query(self.applied, client.params)
        if query is not None:
            self.resyncs += 1
            self.pool.stats.re_synced += 1
            self._applied_before = self.applied
            self.applied = dict(client.params)
            self._send_hidden(query, HIDDEN)
        self._update_forwarding()
        if self.pool.settings.query_timeout:
            self._arm_query_timer(now)

    def check_login(self, now: float, client: Borrower) -> None:
        """Apply a new client's settings and report back what the server thinks of them."""
        self.client = client
        self.last_used = now
        self._transition(now, ServerState.ACTIVE, Reason.CHECKOUT, client.id)
        self._login_reported = {}
        self._login_error = None
        # Also undo what the previous client applied, exactly as link() would.
        query = sync_query(self.applied, client.params) or "SELECT 1"
        self._applied_before = self.applied
        self.applied = dict(client.params)
        self._send_hidden(query, LOGIN_CHECK)
        self.scanner.forwarding = False

    def _finish_login_check(self, now: float) -> None:
        client = self.client
        if self._login_error is not None:
            # One simple query is one transaction: the failed sync changed nothing.
            self.applied = self._applied_before
        if client is not None:
            client.on_login_checked(now, self, self._login_reported, self._login_error)

    def _update_forwarding(self) -> None:
        """Responses go to the client unless the oldest owed request is the proxy's own (and the
        client's unsynced messages sent before that one have all been answered)."""
        owed = self.owed
        self.scanner.forwarding = self.client is not None and (
            not owed or owed[0] not in NOT_FOR_CLIENT
            or (len(self._behind) > 0 and self._behind.get(self._rfq_seen) is False)
        )

    def _behind_batch(self) -> None:
        """A request goes behind extended-protocol messages with no Sync yet. If one of those
        fails, the server skips everything up to the Sync, this request included, which then
        gets no ReadyForQuery; if it runs, its error (if any) says nothing of the batch. A no-op
        Close sent ahead of it tells the two apart: its CloseComplete comes only when the
        messages before it succeeded, and an error before it means the request is skipped."""
        self._behind[self._rfq_sent] = False
        self._expecting(EXPECT_MARKER)
        self.io.send(NOOP_CLOSE)

    def _skip_behind(self) -> None:
        """An unsynced batch failed ahead of the requests sent behind it: the server skips them
        (up to the Sync), so no ReadyForQuery will come for them. Answers the proxy queued among
        them go too, as their messages would have been skipped."""
        owed = self.owed
        behind = self._behind
        while owed:
            if type(owed[0]) is not bytes and behind.pop(self._rfq_seen, None) is None:
                break
            self._drop_owed()
        self._update_forwarding()

    def _copy_read_unknown(self, error: memoryview) -> bool:
        """Whether a COPY FROM STDIN that failed with ``error`` may have left some of the Syncs
        sent inside it unread: each such Sync then gets a ReadyForQuery, the others none, and
        nothing tells which is which.

        Only an error that comes from the rows leaves no doubt about a Sync sent before any
        CopyData: a bad value or a broken constraint (classes 22 and 23), or the client's
        CopyFail (57014 with a CopyFail sent), which PostgreSQL meets after reading the
        messages before it. A Sync behind some CopyData may be read or not either way (the
        COPY reads ahead of the row it parses, and a timeout can strike before the CopyFail is
        read). Any other error (the table a view, FREEZE refused, a statement trigger's, a
        cancel) may come before the COPY read anything."""
        code = be.parse_error_fields(error).get("C", "")
        if code == codes.PROTOCOL_VIOLATION:
            return False  # (a message that broke the COPY: PostgreSQL's FATAL and close follow)
        ignored = self._ignored
        if code[:2] in ("22", "23") or (code == codes.QUERY_CANCELED and self._copy_end_index in self._failed_ends):
            return any(after_data and number in ignored for number, _count, _ended, after_data in self._syncs)
        return True  # (called with Syncs ignored)

    def _copy_failed(self) -> None:
        """A COPY begun by an Execute failed (CopyFail, bad data): the server now skips to the
        next Sync the COPY did not read, so the requests owed before that one get nothing; and
        requests still to come before it are sent behind a failed batch."""
        ignored = self._ignored
        end = self._rfq_sent
        for number, _count, _ended, _data in self._syncs:
            if number not in ignored:
                end = number
                break
        else:
            self.unsynced = True
        for number in range(min(ignored) + 1, end):
            ignored.add(number)

    def _drop_ignored(self, status: bytes) -> None:
        """Syncs a COPY read get no ReadyForQuery: this one answers the request after them.
        Answers the proxy queued behind such a Sync have their turn now."""
        owed = self.owed
        ignored = self._ignored
        while owed and self._rfq_seen in ignored:
            ignored.discard(self._rfq_seen)
            self._drop_owed()
            self._send_answers(status, self.client)
        if not ignored:
            self._ignored_at = -1
        self._update_forwarding()

    def _send_answers(self, status: bytes, client: Borrower | None) -> None:
        """Answers the proxy queued (``answer``) whose turn came, each with its ReadyForQuery,
        to ``client`` if it still holds this server."""
        owed = self.owed
        while owed and type(owed[0]) is bytes:
            answer = owed.popleft()
            if client is not None and self.client is client:
                client.io.send(answer + be.ready_for_query(status))  # type: ignore[operator]

    def _drop_owed(self) -> None:
        """The oldest owed entry will get no ReadyForQuery of its own (the server skipped or
        swallowed its request): drop it, numbering on as if it had come."""
        head = self.owed.popleft()
        if type(head) is bytes:
            return  # (an answer of the proxy's own to a message that went likewise)
        self._rfq_seen += 1
        if self._syncs and self._syncs[0][0] < self._rfq_seen:
            self._syncs.popleft()
        if self._behind:
            self._behind.pop(self._rfq_seen - 1, None)
        if head == TO_CLIENT or type(head) is list:
            self._requests -= 1
            if type(head) is list and self.client is not None:
                self.client.pin_survivors(self.last_active, head)  # (skipped after an error)
        elif head == HIDDEN_PREPARE and self._sql_prepares:
            self.prepared.pop(self._sql_prepares.popleft(), None)

    def _send_hidden(self, sql: str, reader: int) -> None:
        if self.unsynced:
            self._behind_batch()
        self.owed.append(reader)
        self._rfq_sent += 1
        self.io.send(fe.query(sql))

    def send_hidden(self, sql: str) -> None:
        """A query of the proxy's own on behalf of the linked client; its responses are dropped."""
        self._send_hidden(sql, HIDDEN)
        self._update_forwarding()

    def abort_transaction(self) -> None:
        """Make the open transaction fail, as PostgreSQL does at any error, when the proxy
        answered one of its statements with an error itself: a COMMIT then rolls back, as the
        client expects. Answers queued after this (``answer``) carry the failed status."""
        self._send_hidden(ABORT_SQL, ABORT)
        self._update_forwarding()

    def refuse_in_turn(self, refusal: bytes, named: bool) -> None:
        """A Parse the client sent is refused (``refusal``, an ErrorResponse): a stand-in that
        fails goes in its place, and its error is replaced with the refusal. The client reads
        what comes before it first, and not the refusal if one of them fails (the server skips
        the stand-in, as it would have skipped the statement); the server fails the
        transaction, or the batch's implicit one, as at any error."""
        self.unsynced = True
        self._refusals[self._rfq_sent] = refusal
        self.io.send(STAND_IN_PARSE_NAMED if named else STAND_IN_PARSE)

    def expect_response(self, effects: list[Any] | None = None) -> None:
        """The client sent a Query, Sync or FunctionCall: one more ReadyForQuery owed.

        ``effects`` (analyses of what the request runs) come back to the client
        through ``on_request_done`` once the server has answered."""
        if not self._requests:
            client = self.client
            self.request_at = client._now if client is not None else self.last_active
            if self._xact_at is None and self.txn_status == b"I":
                self._xact_at = self.request_at
        self._requests += 1
        if self.unsynced:
            self._behind_batch()  # (never for a Sync: expect_sync marked the server synced)
        self.owed.append(TO_CLIENT if effects is None else effects)
        self._rfq_sent += 1
        if len(self.owed) == 1:
            self.scanner.forwarding = True

    def expect_sync(self, effects: list[Any] | None = None) -> None:
        """The client sent a Sync: the messages before it are synced, and one more ReadyForQuery
        is owed, unless a COPY begun by an Execute is still reading (and ignoring) Syncs."""
        self.unsynced = False
        number = self._rfq_sent
        self._syncs.append((number, self.copy_ends_sent, self.copy_ended, self.copy_data_sent))
        if self._ignored_at >= 0 and self.copy_ends_sent == self._ignored_at:
            self._ignored.add(number)  # (sent during a COPY that ignores Syncs)
        self.expect_response(effects)

    def answer(self, payload: bytes) -> None:
        """Send the client ``payload`` + ReadyForQuery in its turn, after every answer owed before it."""
        client = self.client
        if self.unsynced:
            # Its turn comes after the unsynced messages' answers: an empty query's, which
            # ends their implicit transaction as the client's own Query would have.
            self._send_hidden("", HIDDEN)
            self._update_forwarding()
        if not self.owed:
            if client is not None:
                client.io.send(payload + be.ready_for_query(self.txn_status))
        else:
            self.owed.append(payload)

    # -- prepared statements -------------------------------------------------

    def _expecting(self, kind: int, name: str = "", client_name: str = "", stmt: str = "") -> None:
        self._expect.append((kind, name, self._rfq_sent, client_name, stmt))

    def _use(self, stmt: GlobalStatement) -> None:
        used = self._used
        if not used or used[-1] is not stmt:  # (a batch of one statement's Executes: one entry)
            used.append(stmt)

    def ensure_prepared(self, stmt: GlobalStatement) -> None:
        """Make sure ``stmt`` exists here before a Bind/Describe that uses it."""
        name = stmt.name
        self._use(stmt)
        if name in self.prepared:
            self.prepared.move_to_end(name)
            return
        self.prepared[name] = stmt
        self._expecting(EXPECT_SWALLOW, name)
        self.pool.stats.server_parse_count += 1
        self.io.send(stmt.parse)

    def ensure_sql_prepared(self, stmt: GlobalStatement) -> None:
        """SQL PREPARE ``stmt`` here (hidden) before the client's EXECUTE, if missing."""
        name = stmt.name
        self._use(stmt)
        if name in self.prepared:
            self.prepared.move_to_end(name)
            return
        self.prepared[name] = stmt
        self._sql_prepares.append(name)
        self._send_hidden(stmt.prepare_sql, HIDDEN_PREPARE)
        self._update_forwarding()

    def forward_parse(self, stmt: GlobalStatement, client_name: str) -> None:
        """The client parsed ``stmt`` as ``client_name``: prepare it here, or just acknowledge
        it if it exists."""
        name = stmt.name
        if name in self.prepared:
            self.prepared.move_to_end(name)
            self._expecting(EXPECT_AS_PARSE, "", client_name, name)
            self.io.send(NOOP_CLOSE)
            return
        self.prepared[name] = stmt
        self._expecting(EXPECT_FORWARD, name, client_name, name)
        self.pool.stats.server_parse_count += 1
        self.io.send(stmt.parse)

    def forward_completion(self, data: bytes) -> None:
        """Send a Parse/Close whose ParseComplete/CloseComplete the client reads."""
        self.expect_completion()
        self.io.send(data)

    def expect_completion(self) -> None:
        """The client's own Parse/Close goes (unread) to the server: its ParseComplete or
        CloseComplete is the client's, not a no-op Close's the proxy sent (``_behind_batch``)."""
        self._expecting(EXPECT_FORWARD)

    def _on_stale_plan(self) -> None:
        """The server refused a statement whose plan no longer fits its tables ("cached plan
        must not change result type", after an ALTER TABLE): on PostgreSQL the client's own
        statement stays broken until it prepares the text again, which drivers do (PgJDBC
        retries at once). Prepared again, the text must get a statement of its own, not this
        one, which every server keeps as it is: clients that still use it get the same error,
        each in its turn, as they would on PostgreSQL. Which statement of the batch failed is
        not said, so each one used is renewed (an extra Parse at most)."""
        for stmt in self._used:
            stmt.stale = True

    def forget_prepared(self) -> None:
        """DISCARD ALL / DEALLOCATE ALL ran here: every statement is gone."""
        self.prepared.clear()

    def _evict_prepared(self) -> bool:
        """Over prepared_statements_limit: Close the least recently used (at check-in)."""
        limit = self.pool.settings.prepared_statements_limit
        if limit is None or len(self.prepared) <= limit:
            return False
        out = bytearray()
        while len(self.prepared) > limit:
            name, _ = self.prepared.popitem(last=False)
            out += fe.close("S", name)
            self.prepared_evictions += 1
        out += fe.sync()
        self.owed.append(HIDDEN)
        self._rfq_sent += 1
        self.io.send(out)
        return True

    def release(self, now: float, session_mode: bool) -> None:
        """The client is done with us: back to the pool, through cleaning if needed."""
        self.client = None
        self.scanner.forwarding = False
        if self._sql_prepares:
            for name in self._sql_prepares:
                # Their outcome will not be read: assume they failed (re-preparing is harmless).
                self.prepared.pop(name, None)
            self._sql_prepares.clear()
        if self.owed:
            self.owed = deque(HIDDEN for entry in self.owed if type(entry) is not bytes)
        if self.clean and not session_mode and not self._over_limit():
            self._transition(now, _S_IDLE, _R_CHECKIN)
            if self._timer is not None:
                self._cancel_timer()
            self.last_used = now
            self.pool.checkin(now, self)
            return
        self._transition(now, _S_CLEANING, _R_CLEANED)
        self.pool.stats.cleaned += 1
        self._requests = 0
        self._xact_at = None
        self._cleanup_session = session_mode
        if self.owed and not self.copy_in:
            # A query is still running for a client that left: stop it.
            self.send_cancel(now)
        self._end_copy()
        if self.unsynced:
            self._sync_hidden()
        self._arm_cleanup_timer(now)
        if not self.owed:
            self._continue_cleaning(now)

    def _over_limit(self) -> bool:
        limit = self.pool.settings.prepared_statements_limit
        return limit is not None and len(self.prepared) > limit

    def send_cancel(self, now: float) -> None:
        """Ask the postmaster to cancel what this server is running."""
        if not self.pid:
            return
        self.cancels_in_flight += 1
        self.log.emit(now, Kind.NOTE, Machine.SERVER, self.id, 0, 0, Reason.CANCEL_REQUEST)
        self.io.send_cancel(self.pid, self.secret)

    def on_cancel_done(self, now: float) -> None:
        """The postmaster took our CancelRequest (its connection closed)."""
        self.cancels_in_flight -= 1
        if self.cancels_in_flight:
            return
        if self.state is ServerState.CLEANING and not self.owed:
            self._continue_cleaning(now)
        elif self.state is ServerState.ACTIVE and self.client is not None and self.clean:
            self.client.on_server_ready(now, self, self.txn_status)

    def _continue_cleaning(self, now: float) -> None:
        if self.cancels_in_flight:
            return  # on_cancel_done resumes
        if self.txn_status != b"I":
            self.rollbacks += 1
            self.pool.stats.rollbacks += 1
            self._send_hidden("ROLLBACK", HIDDEN)
            self.log.emit(now, Kind.NOTE, Machine.SERVER, self.id, 0, 0, Reason.ROLLBACK)
            return
        if self._cleanup_session:
            self._cleanup_session = False
            self.applied = {}
            self.prepared.clear()
            self._send_hidden("DISCARD ALL", HIDDEN)
            return
        if self._evict_prepared():
            return
        self._cancel_timer()
        self.last_used = now
        self._transition(now, ServerState.IDLE, Reason.CLEANED)
        self.pool.checkin(now, self)


    # -- timers ------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _login_expired(self, now: float) -> None:
        self._timer = None
        if self.state is ServerState.STARTUP:
            self.error = "login timeout: the server did not complete the login within connect_timeout"
            self._close(now, Reason.LOGIN_TIMEOUT)

    def _arm_cleanup_timer(self, now: float) -> None:
        self._cancel_timer()
        self._timer = self.timers.arm(now + self.pool.settings.rollback_timeout / 1000.0, self._cleanup_expired)

    def _cleanup_expired(self, now: float) -> None:
        self._timer = None
        if self.state is ServerState.CLEANING:
            self.error = "cleanup did not finish within rollback_timeout"
            self._close(now, Reason.CLEANUP_FAILED)

    def _arm_query_timer(self, now: float) -> None:
        self._cancel_timer()
        timeout = (self.pool.settings.query_timeout or 0) / 1000.0
        # Between requests the server may stay silent: look again a full period later.
        when = self.last_active + timeout if self.owed else now + timeout
        self._timer = self.timers.arm(max(when, now), self._query_timer)

    def _query_timer(self, now: float) -> None:
        self._timer = None
        if self.state is not ServerState.ACTIVE:
            return
        timeout = (self.pool.settings.query_timeout or 0) / 1000.0
        if self.owed and now - self.last_active >= timeout:
            self.error = "query_timeout"
            client = self.client
            self._close(now, Reason.QUERY_TIMEOUT)
            if client is not None:
                client.on_server_lost(now, self, query_timeout=True)
            return
        self._arm_query_timer(now)

    # -- the end -----------------------------------------------------------

    def discard(self, now: float) -> None:
        """Its protocol state can no longer be trusted (a message half sent): close, never reuse."""
        self.error = self.error or "connection left mid-message"
        self.client = None
        self._close(now, Reason.OUT_OF_SYNC)

    def terminate(self, now: float, reason: Reason) -> None:
        """Close politely (pool shrinking, shutdown): Terminate, then the socket."""
        if self.state in (ServerState.IDLE, ServerState.CLEANING, ServerState.STARTUP, ServerState.CHECKING):
            self.io.send(fe.terminate())
        self._close(now, reason)

    def _close(self, now: float, reason: Reason) -> None:
        if self.state is ServerState.CLOSED:
            return
        was = self.state
        client = self.client
        self.client = None
        self.close_reason = reason
        self._cancel_timer()
        self._transition(now, ServerState.CLOSED, reason)
        if reason is Reason.OUT_OF_SYNC:
            self.pool.stats.out_of_sync += 1
        if reason in FORCE_CLOSED:
            self.pool.stats.force_closed += 1
        self.io.close()
        self.pool.server_closed(now, self, was)
        if was is ServerState.CHECKING:
            done, self._probe_done = self._probe_done, None
            if done is not None:
                done(now, self, None, self.error or "server connection closed during the health check")
        if client is not None and reason is not Reason.QUERY_TIMEOUT:
            client.on_server_lost(now, self)


def _stand_in_failed(body: memoryview) -> bool:
    """Whether this ErrorResponse is the stand-in Parse's own syntax error, by code and position.
    (An earlier Parse of the same batch failing at that very position would pass for it: the
    client then reads the refusal in place of that error, and the batch fails either way.)"""
    fields = be.parse_error_fields(body)
    return fields.get("C") == "42601" and fields.get("P") == STAND_IN_POSITION
