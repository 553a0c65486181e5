"""Fake application clients: the frontend half of the protocol, driven by generator scripts.

A workload is a generator (psycopg 3's style for multi-step flows) that
yields operations (``Connect``, ``Query``, ``Extended``, ``Sleep``,
``Cancel``, ``Disconnect``) and is sent back each operation's ``Result``.
The driver speaks real protocol bytes to the proxy over the virtual network
from the application host's reactor, and records when every request started
and ended so the liveness invariant can tell an answered request from a hung
one.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loop.protocol import Protocol
from pgdog_ev.auth.md5 import md5_hash
from pgdog_ev.auth.scram import ScramClient
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.startup import build_cancel_request, build_startup

if TYPE_CHECKING:
    from sim.apphost import AppHost


@dataclass
class Connect:
    user: str = "app"
    database: str = "app"
    password: str = "secret"
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Query:
    sql: str
    #: Send a CancelRequest this many seconds after the query (a cancel race).
    cancel_after: float | None = None


@dataclass
class Extended:
    """A pipeline of (sql, params) run with Parse/Bind/Execute each, then one Sync."""

    steps: list[tuple[str, list[str | None]]]
    statement: str = ""


@dataclass
class Sleep:
    seconds: float


@dataclass
class Disconnect:
    #: True: drop the connection without Terminate, as a crashed application would.
    abrupt: bool = False


@dataclass
class Result:
    ok: bool
    tags: list[str] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)
    sqlstate: str | None = None
    message: str = ""
    status: str = ""
    lost: bool = False
    cancelled_sent: bool = False

    @property
    def value(self) -> str | None:
        """First column of the first row, the common case for the workloads' reads."""
        return self.rows[0][0] if self.rows and self.rows[0] else None


Op = Connect | Query | Extended | Sleep | Disconnect
Script = Generator[Op, Result | None, None]

LOST = "08006"


class Request:
    """One operation in flight: when it began and the answer it is building up."""

    __slots__ = ("extended", "result", "results", "started")

    def __init__(self, started: float, extended: bool) -> None:
        self.started = started
        self.extended = extended
        self.result = Result(ok=True)
        self.results: list[Result] = [self.result]

    def next_result(self) -> None:
        self.result = Result(ok=True)
        self.results.append(self.result)


class ClientDriver(Protocol):
    """One fake client: a script, at most one connection at a time, one request at a time."""

    def __init__(self, host: AppHost, cid: int, kind: str, script: Callable[[ClientDriver], Script]) -> None:
        self.host = host
        self.world = host.world
        self.cid = cid
        self.kind = kind
        self.gen = script(self)
        self.transport: Any = None
        self.buf = bytearray()
        self.connecting: Connect | None = None
        self.login_done = False
        self.scram: ScramClient | None = None
        self.key: tuple[int, bytes] | None = None
        self.request: Request | None = None
        self.finished = False
        self.requests = 0
        self.slowest = 0.0
        self.timer: Any = None
        self.connector: Any = None
        self.cancels_sent = 0
        self.cancels_on_connection = 0
        # Which connection is current: callbacks of an abandoned one are ignored.
        self.generation = 0
        # (started, what) of the request that is outstanding, for the liveness report.
        self.outstanding: tuple[float, str] | None = None

    # -- script stepping --------------------------------------------------------------------

    def start(self) -> None:
        self._advance(None)

    def _advance(self, result: Result | None) -> None:
        while True:
            try:
                op = self.gen.send(result)
            except StopIteration:
                self._finish()
                return
            result = self._run(op)
            if result is None:
                return  # asynchronous: the answer resumes the script

    def _finish(self) -> None:
        self.finished = True
        self.outstanding = None
        self.generation += 1
        if self.transport is not None:
            self.transport.write(fe.terminate())
            self.transport.close()
            self.transport = None

    def _run(self, op: Op) -> Result | None:
        now = self.world.now()
        if isinstance(op, Sleep):
            self.timer = self.host.reactor.call_later(op.seconds, self._advance, Result(ok=True))
            return None
        if isinstance(op, Disconnect):
            self.generation += 1
            if self.transport is not None:
                if op.abrupt:
                    self.transport.abort()
                else:
                    self.transport.write(fe.terminate())
                    self.transport.close()
                self.transport = None
            self.login_done = False
            return Result(ok=True)
        if isinstance(op, Connect):
            if self.transport is not None:
                return Result(ok=False, message="already connected")
            self.connecting = op
            self.login_done = False
            self._begin(now, False, "connect")
            self.connector = self.host.reactor.connect(self.host.proxy_address, self.host.proxy_port,
                                                       self._connected, timeout=self.host.connect_timeout)
            return None
        if self.transport is None or not self.login_done:
            return Result(ok=False, sqlstate=LOST, message="not connected", lost=True)
        if isinstance(op, Query):
            self._begin(now, False, op.sql)
            self.transport.write(fe.query(op.sql))
            if op.cancel_after is not None:
                self.host.reactor.call_later(op.cancel_after, self._send_cancel, self.request)
            return None
        if isinstance(op, Extended):
            out = bytearray()
            for sql, params in op.steps:
                out += fe.parse(op.statement, sql)
                out += fe.bind("", op.statement, [0], [None if p is None else p.encode() for p in params], [0])
                out += fe.describe("P", "")
                out += fe.execute("", 0)
            out += fe.sync()
            self._begin(now, True, " ; ".join(sql for sql, _ in op.steps))
            self.transport.write(bytes(out))
            return None
        raise TypeError(f"unknown operation {op!r}")

    def _begin(self, now: float, extended: bool, what: str) -> None:
        self.requests += 1
        self.request = Request(now, extended)
        self.outstanding = (now, what)
        self.timer = self.host.reactor.call_later(self.host.request_timeout, self._request_timed_out, self.request)

    def _complete(self, result: Result | list[Result]) -> None:
        req = self.request
        self.request = None
        if req is not None:
            elapsed = self.world.now() - req.started
            self.slowest = max(self.slowest, elapsed)
        self.outstanding = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._advance(result)  # type: ignore[arg-type]

    def _request_timed_out(self, req: Request) -> None:
        if self.request is not req:
            return
        self.timer = None
        self.host.hung(self, self.world.now() - req.started)
        self.generation += 1
        if self.connector is not None:
            self.connector.cancel()
            self.connector = None
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.login_done = False
        self._complete(Result(ok=False, sqlstate=LOST, message="client gave up waiting", lost=True))

    # -- connection -------------------------------------------------------------------------

    def _connected(self, sock: Any, exc: Exception | None) -> None:
        self.connector = None
        if sock is None:
            self._complete(Result(ok=False, sqlstate=LOST, message=f"connect failed: {exc}", lost=True))
            return
        self.generation += 1
        self.host.reactor.transport(sock, _Connection(self, self.generation))

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.cancels_on_connection = 0
        self.buf.clear()
        op = self.connecting
        assert op is not None
        params = {"user": op.user, "database": op.database, "application_name": f"sim-{self.kind}-{self.cid}"}
        params.update(op.params)
        transport.write(build_startup(params))

    def data_received(self, data: memoryview) -> None:
        self.buf += data
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 5:
            mtype = buf[pos]
            (length,) = struct.unpack_from("!I", buf, pos + 1)
            if length < 4 or length > 1 << 26:
                self.world.violation("protocol", f"client {self.cid}: bad message length {length} from proxy")
                self._lost()
                return
            end = pos + 1 + length
            if len(buf) < end:
                break
            body = bytes(buf[pos + 5 : end])
            pos = end
            self._message(mtype, body)
            if self.transport is None:
                return
        del buf[:pos]

    def eof_received(self) -> None:
        self._lost()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        self.generation += 1
        if self.transport is None and self.request is None:
            return
        if self.transport is not None:
            self.transport.abort()
        self.transport = None
        self.login_done = False
        if self.request is not None:
            self._complete(Result(ok=False, sqlstate=LOST, message="connection lost", lost=True))

    def _send_cancel(self, req: Request) -> None:
        if self.request is not req or self.key is None:
            return
        self.cancels_sent += 1
        self.cancels_on_connection += 1
        req.result.cancelled_sent = True
        pid, secret = self.key
        packet = build_cancel_request(pid, secret)
        host = self.host

        def done(sock: Any, exc: Exception | None) -> None:
            if sock is not None:
                host.reactor.transport(sock, _CancelSender(packet))

        host.reactor.connect(host.proxy_address, host.proxy_port, done, timeout=host.connect_timeout)

    # -- messages ---------------------------------------------------------------------------

    def _message(self, mtype: int, body: bytes) -> None:
        req = self.request
        if mtype == 0x52:  # 'R' authentication
            self._auth(body)
            return
        if mtype == 0x4B:  # 'K'
            self.key = be.parse_backend_key_data(body)
            return
        if mtype in (0x53, 0x4E, 0x41):  # ParameterStatus, Notice, Notification may come unasked
            return
        if req is None:
            self.world.violation("protocol", f"client {self.cid}: unexpected message {chr(mtype)!r} while idle")
            return
        result = req.result
        if mtype == 0x45:  # 'E'
            fields = be.parse_error_fields(body)
            result.ok = False
            result.sqlstate = fields.get("C")
            result.message = fields.get("M", "")
            if not self.login_done or fields.get("S") == "FATAL":
                # An error during login, or a FATAL, ends the connection.
                self._drop(req.results if req.extended else result)
        elif mtype == 0x5A:  # 'Z'
            status = be.parse_ready_for_query(body).decode()
            self.login_done = True
            for r in req.results:
                r.status = status
            if req.extended and result.tags == [] and result.ok and result.rows == []:
                req.results.pop()  # the empty Result opened after the last CommandComplete
            self._complete(req.results if req.extended else result)
        elif mtype == 0x43:  # 'C'
            result.tags.append(be.parse_command_complete(body))
            if req.extended:
                req.next_result()
        elif mtype == 0x44:  # 'D'
            result.rows.append([None if v is None else v.decode() for v in be.parse_data_row(body)])
        elif mtype == 0x49 and req.extended:  # EmptyQueryResponse
            req.next_result()

    def _drop(self, result: Result | list[Result]) -> None:
        for r in result if isinstance(result, list) else [result]:
            r.lost = True  # a FATAL ends the connection: what was in flight has an unknown outcome
        self.generation += 1
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self._complete(result)

    def _auth(self, body: bytes) -> None:
        code, rest = be.parse_authentication(body)
        op = self.connecting
        assert op is not None and self.transport is not None
        if code == 0:
            return
        if code == 3:
            self.transport.write(fe.password(op.password))
        elif code == 5:
            self.transport.write(fe.password(md5_hash(op.user, op.password, bytes(rest[:4]))))
        elif code == 10:
            self.scram = ScramClient(op.password, self.world.entropy)
            self.transport.write(fe.sasl_initial_response(self.scram.mechanism, self.scram.client_first()))
        elif code == 11 and self.scram is not None:
            self.transport.write(fe.sasl_response(self.scram.server_first(bytes(rest))))
        elif code == 12 and self.scram is not None:
            self.scram.server_final(bytes(rest))
        else:
            self.world.violation("protocol", f"client {self.cid}: unsupported authentication request {code}")


class _Connection(Protocol):
    """One connection of a driver; once the driver moved on, its late callbacks are dropped."""

    def __init__(self, driver: ClientDriver, generation: int) -> None:
        self.driver = driver
        self.generation = generation

    def _current(self) -> bool:
        return self.driver.generation == self.generation

    def connection_made(self, transport: Any) -> None:
        if self._current():
            self.driver.connection_made(transport)
        else:
            transport.abort()

    def data_received(self, data: memoryview) -> None:
        if self._current():
            self.driver.data_received(data)

    def eof_received(self) -> None:
        if self._current():
            self.driver.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._current():
            self.driver.connection_lost(exc)


class _CancelSender(Protocol):
    def __init__(self, packet: bytes) -> None:
        self.packet = packet

    def connection_made(self, transport: Any) -> None:
        transport.write(self.packet)
