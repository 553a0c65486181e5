"""One backend process of a fake PostgreSQL server, as a sans-IO protocol machine.

Bytes come in through ``on_bytes(now, data)`` in any chunking; bytes go out
through the injected ``send``. Time only arrives as ``now``; ``wakeup`` says
when the session next wants ``on_timer(now)`` (a pg_sleep ending, a held
response under ``server.delay``, a timeout, or work left after ``server.hang``
was cleared: then it is a time already past, meaning "as soon as possible").
A statement waiting for a row lock or hit by a CancelRequest carries on at
once, inside the call that released the lock or delivered the cancel.
``closed`` turns true when the session wants its connection closed and has
nothing left to send.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer
from pgdog_ev.wire.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    parse_startup,
    startup_length,
)
from sim.fakepg import extended, jobs, login, simple
from sim.fakepg import values as V
from sim.fakepg.auth import AuthSpec
from sim.fakepg.errors import (
    ADMIN_SHUTDOWN,
    IDLE_IN_TRANSACTION_TIMEOUT,
    IDLE_SESSION_TIMEOUT,
    INTERNAL_ERROR,
    SqlError,
)
from sim.fakepg.nodes import Statement
from sim.fakepg.outbox import Outbox
from sim.fakepg.result import Result
from sim.fakepg.settings import SessionSettings, timeout_seconds

if TYPE_CHECKING:
    from collections.abc import Callable

    from sim.fakepg.database import Database
    from sim.fakepg.server import FakeServer
    from sim.fakepg.txn import Transaction

MAX_MESSAGE = 64 << 20


class Phase(IntEnum):
    STARTUP = 1
    AUTH = 2
    READY = 3
    CLOSED = 4


@dataclass(slots=True)
class PreparedStmt:
    """A prepared statement (protocol Parse or SQL PREPARE: one namespace, as in PostgreSQL)."""

    sql: str
    stmt: Statement | None  # None: the empty query
    param_types: tuple[int, ...]
    from_sql: bool = False


class BackendSession:
    """One connection's backend: startup, authentication, then queries until Terminate or close."""

    def __init__(
        self,
        database: Database,
        pid: int,
        secret: bytes,
        send: Callable[[bytes], None],
        auth: AuthSpec | None,
        now: float,
        server: FakeServer | None = None,
    ) -> None:
        self.database = database
        self.pid = pid
        self.secret = secret
        self.send = send
        self.auth = auth if auth is not None else AuthSpec()
        self.server = server
        self.opened_at = now
        self.phase = Phase.STARTUP
        self.user = ""
        self.database_name = ""
        self.params: dict[str, str] = {}
        self.settings = SessionSettings({})
        self.txn: Transaction | None = None
        self.statements: dict[str, PreparedStmt] = {}
        self.portals: dict[str, extended.Portal] = {}
        # Set while the statements of one multi-statement Query run (an implicit block).
        self.multi_statement = False
        self.skip_till_sync = False
        self.dead = False
        self.cancel_connection = False
        self.job: jobs.Job | None = None
        self.queries = 0
        self._raw = bytearray()  # startup phase: bytes before the typed framing starts
        self._framer: Framer | None = None
        self._inbox: deque[tuple[int, bytes]] = deque()
        self._login: login.Login | None = None
        self.outbox = Outbox(send)
        self._closing = False
        self._finished = False
        self._last_now = now
        self._idle_since = now
        self._running = False
        database.attach(self)

    # -- knobs (the server's, when there is one) -----------------------------------------

    def _hung(self) -> bool:
        return self.server is not None and self.server.hang

    def _delay(self) -> float:
        return self.server.delay if self.server is not None else 0.0

    # -- what the world reads --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """The connection should be closed now (nothing left to send)."""
        return self.dead or (self._closing and self.outbox.empty)

    @property
    def status(self) -> bytes:
        """ReadyForQuery status: b"I", b"T" or b"E"."""
        return b"I" if self.txn is None else self.txn.status

    @property
    def txn_status(self) -> str:
        return self.status.decode()

    @property
    def busy(self) -> bool:
        """Requests received and not fully answered yet (or answers not yet sent)."""
        framer = self._framer
        return (self.job is not None or bool(self._inbox) or not self.outbox.empty
                or (framer is not None and framer.pending() > 0))

    @property
    def is_cancel(self) -> bool:
        return self.cancel_connection

    @property
    def wakeup(self) -> float | None:
        if self.dead or (self.phase is Phase.CLOSED and not self.outbox.held) or self._hung():
            return None
        times: list[float] = []
        release = self.outbox.next_release
        if release is not None:
            times.append(release)
        job = self.job
        if job is not None and job.wait is not None:
            if job.wait.woken or job.wait.cancelled:
                times.append(self._last_now)
            times += jobs.deadlines(self, job)
        elif not self._closing and (job is not None or self._inbox or self._startup_ready()):
            times.append(self._last_now)
        idle = self._idle_deadline()
        if idle is not None:
            times.append(idle)
        return min(times) if times else None

    def _startup_ready(self) -> bool:
        if self.phase is not Phase.STARTUP or len(self._raw) < 4:
            return False
        try:
            length = startup_length(self._raw)
        except ProtocolViolation:
            return True
        return length is not None and len(self._raw) >= length

    def _idle_deadline(self) -> float | None:
        if self.phase is not Phase.READY or self._closing or self.job is not None or self._inbox:
            return None
        name = "idle_session_timeout" if self.txn is None or not self.txn.explicit \
            else "idle_in_transaction_session_timeout"
        try:
            timeout = timeout_seconds(self.settings.values.get(name, "0"))
        except SqlError:
            return None
        return self._idle_since + timeout if timeout > 0 else None

    # -- inputs ------------------------------------------------------------------------------

    def _touch(self, now: float) -> None:
        self._last_now = now
        if now > self.database.clock:
            self.database.clock = now

    def on_bytes(self, now: float, data: bytes) -> None:
        self._touch(now)
        if self.dead or self._closing or not data:
            return
        if self.phase is Phase.STARTUP:
            self._raw += data
        else:
            self.feed(data)
        self._run(now)

    def on_timer(self, now: float) -> None:
        self._touch(now)
        if self.dead:
            return
        idle = self._idle_deadline()
        if idle is not None and now >= idle and not self._hung():
            self._idle_timeout(now)
        self._run(now)

    def cancel(self, now: float) -> bool:
        """A CancelRequest with this session's key: ends a waiting statement with 57014."""
        job = self.job
        if job is None or job.wait is None or self._closing:
            return False
        self._touch(now)
        job.wait.cancelled = True
        self._resume()
        return True

    def lock_released(self) -> None:
        """The lock this session waits for was released (locks.Waiter): carry on at once."""
        job = self.job
        if job is not None and job.wait is not None:
            job.wait.woken = True
            self._resume()

    def _resume(self) -> None:
        """Run now on behalf of another session's call (a cancel, a released lock).

        The statement continues at the current time (the latest any session of
        the node has seen), so a world that only re-reads the wakeup of the
        session it called still sees the answer; ``server.on_wakeup`` is told too.
        """
        if self._running:
            return
        self._last_now = max(self._last_now, self.database.clock)
        self._run(self._last_now)
        if self.server is not None and self.server.on_wakeup is not None:
            self.server.on_wakeup(self)

    def on_closed(self, now: float) -> None:
        """The connection is gone: roll back, leave the server."""
        self._touch(now)
        if self.dead:
            return
        self.outbox.clear()
        self._closing = True
        self._finish(now)

    def kill(self) -> None:
        """The server crashed: nothing is sent and no state is touched (it is all lost)."""
        self.dead = True
        self._closing = True
        self._finished = True
        self.phase = Phase.CLOSED
        self.job = None
        self.txn = None
        self.outbox.clear()
        self.database.detach(self)
        if self.server is not None:
            self.server.forget(self)

    def terminate_by_admin(self, now: float | None = None) -> None:
        """Shut down by the server (fast shutdown, a rewind): FATAL 57P01, then close."""
        at = self._last_now if now is None else now
        self.error(SqlError(ADMIN_SHUTDOWN, "terminating connection due to administrator command",
                            severity="FATAL"))
        self.close_after_output(at)
        self._flush(at)

    # -- the main loop -------------------------------------------------------------------------

    def _run(self, now: float) -> None:
        self._running = True
        try:
            self._pump(now)
        except ProtocolViolation as exc:
            self.error(SqlError(exc.sqlstate, exc.message, severity="FATAL"))
            self.close_after_output(now)
        except Exception as exc:
            # A bug of the fake itself: recorded for the simulator to report, never raised into the world.
            self.database.internal_errors.append((now, self.pid, repr(exc)))
            self.error(SqlError(INTERNAL_ERROR, f"fake server internal error: {exc!r}", severity="FATAL"))
            self.close_after_output(now)
        finally:
            self._running = False
        self._flush(now)

    def _pump(self, now: float) -> None:
        while not self._closing and not self._hung():
            if self.phase is Phase.STARTUP:
                if not self._startup_step(now):
                    return
                continue
            job = self.job
            if job is not None:
                if not self._step_job(now, job):
                    return
                continue
            if not self._inbox:
                return
            mtype, body = self._inbox.popleft()
            if self.phase is Phase.AUTH:
                assert self._login is not None
                self._login.message(now, mtype, body)
            else:
                self._dispatch(now, mtype, body)

    def feed(self, data: bytes) -> None:
        assert self._framer is not None
        try:
            self._inbox.extend(self._framer.feed(data))
        except ProtocolViolation as exc:
            # Out of sync: whatever is queued still runs, then the FATAL (as the stream position is lost).
            self._inbox.append((-1, exc.message.encode()))

    def _step_job(self, now: float, job: jobs.Job) -> bool:
        if isinstance(job, jobs.QueryJob):
            done = simple.step(self, now, job)
        else:
            assert isinstance(job, jobs.ExecuteJob)
            done = extended.step_execute(self, now, job)
        if done:
            self.job = None
        return done

    def _dispatch(self, now: float, mtype: int, body: bytes) -> None:
        if mtype == -1:
            raise ProtocolViolation(body.decode())
        if mtype == fe.TERMINATE:
            self.skip_till_sync = False
            self.close_after_output(now)
            return
        if self.skip_till_sync and mtype != fe.SYNC:
            return
        if mtype == fe.QUERY:
            self.queries += 1
            simple.start(self, now, fe.parse_query(body))
        elif mtype in extended.MESSAGES:
            extended.handle(self, now, mtype, body)
        elif mtype == fe.FUNCTION_CALL:
            self.error(SqlError("0A000", "the fake server does not support the function call protocol"))
            self.abort_transaction()
            self.ready(now)
        elif mtype in (fe.COPY_DATA, fe.COPY_DONE, fe.COPY_FAIL):
            return  # ignored outside COPY, as PostgreSQL does
        else:
            raise ProtocolViolation(f"invalid frontend message type {mtype}")

    # -- startup and authentication ---------------------------------------------------------

    def _startup_step(self, now: float) -> bool:
        length = startup_length(self._raw)
        if length is None or len(self._raw) < length:
            return False
        packet = bytes(self._raw[:length])
        del self._raw[:length]
        msg = parse_startup(packet)
        if isinstance(msg, SSLRequest | GSSENCRequest):
            self.emit(b"N")
            return True
        if isinstance(msg, CancelRequest):
            self.cancel_connection = True
            self._raw.clear()
            if self.server is not None:
                self.server.cancel(msg.pid, msg.secret, now)
            self.close_after_output(now)
            return False
        assert isinstance(msg, StartupMessage)
        self._framer = Framer(MAX_MESSAGE)
        rest = bytes(self._raw)
        self._raw.clear()
        self.phase = Phase.AUTH
        self._login = login.Login(self)
        self._login.startup(now, msg)
        if rest:
            self.feed(rest)
        return True

    def fatal(self, now: float, code: str, message: str) -> None:
        self.error(SqlError(code, message, severity="FATAL"))
        self.close_after_output(now)

    def logged_in(self, now: float) -> None:
        """Authentication and settings succeeded: AuthenticationOk ... ReadyForQuery."""
        self._login = None
        self.phase = Phase.READY
        if self.server is not None:
            self.server.register(self)
        self.emit(be.authentication_ok())
        self.ready(now, key_data=True)

    # -- output ------------------------------------------------------------------------------

    def emit(self, data: bytes) -> None:
        self.outbox.write(data)

    def error(self, err: SqlError) -> None:
        fields = {"P": str(err.position)} if err.position is not None else None
        self.emit(be.error_response(err.code, err.message, err.severity, err.detail, err.hint, fields))

    def notice(self, severity: str, code: str, message: str) -> None:
        self.emit(be.notice_response(code, message, severity))

    def emit_result(self, result: Result) -> None:
        """A simple-query result: notices, RowDescription, DataRows, CommandComplete."""
        for severity, code, message in result.notices:
            self.notice(severity, code, message)
        if result.empty:
            self.emit(be.empty_query_response())
            return
        if result.fields is not None:
            self.emit(be.row_description(result.fields))
            self.emit(self.encode_rows(result, result.rows, ()))
        self.emit(be.command_complete(result.tag))

    @staticmethod
    def encode_rows(result: Result, rows: list[list[V.Value]], formats: tuple[int, ...]) -> bytes:
        """DataRows in the requested formats (SqlError if a binary format is unsupported)."""
        fields = result.fields or []
        oids = [f.type_oid for f in fields]
        out = bytearray()
        for row in rows:
            out += be.data_row([_cell(value, oids[i] if i < len(oids) else V.TEXT, _format(formats, i))
                                for i, value in enumerate(row)])
        return bytes(out)

    def ready(self, now: float, key_data: bool = False) -> None:
        dynamic = {"in_hot_standby": "on" if self.database.in_recovery else "off"}
        for name, value in self.settings.changed_reports(dynamic):
            self.emit(be.parameter_status(name, value))
        if key_data:
            self.emit(be.backend_key_data(self.pid, self.secret))
        self.emit(be.ready_for_query(self.status))
        self._idle_since = now

    def _flush(self, now: float) -> None:
        self.outbox.flush(now, self._delay(), self._hung())
        if self._closing:
            self._finish(now)

    def close_after_output(self, now: float) -> None:
        self._closing = True
        self._inbox.clear()
        self.job = None

    def _finish(self, now: float) -> None:
        """Leave the server once: roll back what is open, stop waiting for locks."""
        if self._finished:
            return
        self._finished = True
        self.phase = Phase.CLOSED
        job, self.job = self.job, None
        txn = self.txn
        if job is not None and job.wait is not None and job.wait.holder is not None and txn is not None:
            self.database.locks.stop_waiting(txn.token)
        if txn is not None and self.database.up:
            self.end_transaction(now, commit=False)
        self.txn = None
        self.database.detach(self)
        if self.server is not None:
            self.server.forget(self)

    def _idle_timeout(self, now: float) -> None:
        if self.txn is not None and self.txn.explicit:
            self.fatal(now, IDLE_IN_TRANSACTION_TIMEOUT,
                        "terminating connection due to idle-in-transaction timeout")
        else:
            self.fatal(now, IDLE_SESSION_TIMEOUT, "terminating connection due to idle-session timeout")

    # -- transactions and settings (used by commands, simple, extended) ---------------------

    def ensure_txn(self, now: float) -> Transaction:
        if self.txn is None:
            read_only = self.settings.values.get("default_transaction_read_only") == "on"
            self.txn = self.database.begin(now, read_only=read_only)
            self.txn.settings_before = self.settings.snapshot()
        return self.txn

    def end_transaction(self, now: float, commit: bool) -> None:
        txn, self.txn = self.txn, None
        if txn is None:
            return
        if commit:
            sync = self.synchronous_commit != "off"
            self.database.commit(txn, now, sync=sync, pid=self.pid)
            self.restore_local_settings(txn)
        else:
            self.database.rollback(txn)
            self.settings.restore(txn.settings_before)
        self.clear_portals()

    def abort_transaction(self) -> None:
        """A statement failed: an implicit transaction is rolled back, a block becomes failed ('E')."""
        txn = self.txn
        if txn is None:
            return
        if not txn.explicit:
            self.end_transaction(self._last_now, commit=False)
            return
        txn.failed = True
        if not txn.savepoints:
            # PostgreSQL aborts at once: locks go now, the block waits for ROLLBACK.
            self.database.rollback(txn)
            txn.writes.clear()
            txn.creates.clear()

    def restore_local_settings(self, txn: Transaction) -> None:
        for name, value in txn.local_settings.items():
            self.settings.values[name] = value

    def clear_portals(self) -> None:
        self.portals.clear()

    def set_setting(self, name: str, value: str | None, local: bool) -> str:
        txn = self.txn
        if name == "transaction_read_only":
            if txn is not None and value is not None:
                from sim.fakepg.values import parse_bool

                read_only = parse_bool(value)
                if not read_only and self.database.in_recovery:
                    raise SqlError("25006", "cannot set transaction read-write mode during recovery")
                txn.read_only = read_only
            return "on" if txn is not None and txn.read_only else "off"
        if local and txn is not None and txn.explicit:
            txn.local_settings.setdefault(name, self.settings.values.get(name, ""))
        return self.settings.set(name, value)

    def show(self, name: str) -> str:
        if name == "in_hot_standby":
            return "on" if self.database.in_recovery else "off"
        if name == "transaction_read_only":
            txn = self.txn
            read_only = self.database.in_recovery or (txn is not None and (txn.read_only or txn.in_recovery))
            return "on" if read_only else "off"
        if name == "synchronous_commit":
            return self.synchronous_commit
        return self.settings.get(name)

    @property
    def synchronous_commit(self) -> str:
        """The session's value if it SET one, else the server's (which the simulator may flip)."""
        value = self.settings.values.get("synchronous_commit")
        if value is None:
            return "on" if self.database.synchronous_commit else "off"
        return value


def _format(formats: tuple[int, ...], i: int) -> int:
    if not formats:
        return 0
    return formats[0] if len(formats) == 1 else formats[i]


def _cell(value: V.Value, oid: int, fmt: int) -> bytes | str | None:
    if fmt == 1:
        return V.to_binary(value, oid)
    return V.to_text(value)

