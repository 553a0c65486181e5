"""A small deterministic world for driving the sans-IO state machines in unit tests.

Nothing here touches a socket, a clock or randomness: time is ``World.now``, timers live in a
``FakeScheduler`` the test fires explicitly, entropy is a counter, and every byte a machine sends
is recorded by a ``FakeStream`` so tests can decode it. ``FakeBackend`` plays the PostgreSQL
side of a server connection (trust, cleartext, MD5 or SCRAM, the latter with a real
``ScramServer``); ``FrontendDriver`` plays a client application logging in to the proxy.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pgdog_ev.auth.md5 import md5_check, md5_hash
from pgdog_ev.auth.scram import ScramClient, ScramServer, ScramVerifier
from pgdog_ev.config.pool_settings import PoolSettings
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.framing import Framer
from pgdog_ev.wire.startup import StartupMessage, build_startup, parse_startup, startup_length
from state.client import TRANSITIONS as CLIENT_TRANSITIONS
from state.client import ClientSession, ClientState, Login
from state.events import EventLog, Kind, Machine, Record
from state.pool import Pool, PoolKey
from state.prepared import PreparedRegistry
from state.server import ServerSession

# Fewer PBKDF2 rounds than PostgreSQL's 4096 keep SCRAM tests fast; the exchange is the same.
SCRAM_ITERATIONS = 64
DEFAULT_SERVER_PARAMS: dict[str, str] = {
    "server_version": "16.2",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "application_name": "pgdog-ev",
}


# -- time ------------------------------------------------------------------------------------


class TimerStorm(RuntimeError):
    """A timer keeps re-arming itself in the past: the production loop would spin."""


@dataclass
class FakeTimer:
    when: float
    seq: int
    callback: Callable[..., None]
    args: tuple[Any, ...]
    cancelled: bool = False
    fired: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """Timers as a list of (when, seq, callback, args); nothing runs until the test says so."""

    def __init__(self, storm_limit: int = 1000) -> None:
        self.timers: list[FakeTimer] = []
        self.storm_limit = storm_limit
        self.fired = 0
        self._seq = 0

    def arm(self, when: float, callback: Callable[..., None], *args: Any) -> FakeTimer:
        timer = FakeTimer(when, self._seq, callback, args)
        self._seq += 1
        self.timers.append(timer)
        return timer

    def pending(self) -> list[FakeTimer]:
        """Armed, not cancelled, not fired timers in firing order."""
        return sorted(
            (t for t in self.timers if not t.cancelled and not t.fired), key=lambda t: (t.when, t.seq)
        )

    def next_when(self) -> float | None:
        pending = self.pending()
        return pending[0].when if pending else None

    def _pop_due(self, now: float) -> FakeTimer | None:
        due = [t for t in self.timers if not t.cancelled and not t.fired and t.when <= now]
        if not due:
            return None
        timer = min(due, key=lambda t: (t.when, t.seq))
        timer.fired = True
        self.timers = [t for t in self.timers if not t.fired and not t.cancelled]
        return timer

    def fire_until(self, now: float, *, step: bool = False) -> int:
        """Run every timer due at ``now`` in (when, seq) order, including ones armed meanwhile.

        Each callback receives ``now`` (like a reactor that woke at ``now``), or with ``step`` the
        timer's own deadline (a clock that advanced through each one). Raises TimerStorm after
        ``storm_limit`` firings in one call.
        """
        count = 0
        while True:
            timer = self._pop_due(now)
            if timer is None:
                return count
            count += 1
            self.fired += 1
            if count > self.storm_limit:
                raise TimerStorm(f"{count} timer firings at now={now}: a timer re-arms in the past")
            timer.callback(timer.when if step else now, *timer.args)


class CounterEntropy:
    """Deterministic 'random' bytes: a byte counter. Records each draw's size."""

    def __init__(self, start: int = 1) -> None:
        self.counter = start
        self.draws: list[int] = []

    def __call__(self, n: int) -> bytes:
        out = bytes((self.counter + i) & 0xFF for i in range(n))
        self.counter += n
        self.draws.append(n)
        return out


# -- streams ------------------------------------------------------------------------------------


def decode(data: bytes | bytearray) -> list[tuple[str, bytes]]:
    """Split typed messages; the data must end on a message boundary."""
    framer = Framer(1 << 30)
    out = [(chr(t), body) for t, body in framer.feed(bytes(data))]
    assert framer.pending() == 0, f"partial message at the end of {bytes(data)!r}"
    return out


class FakeStream:
    """StreamIO / ServerIO that records everything a machine does to its socket."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.sent = bytearray()
        self.sends = 0
        self.closed = False
        self.close_calls = 0
        self.paused = False
        self.pause_calls = 0
        self.resume_calls = 0
        self.cancels: list[tuple[int, bytes]] = []
        self.log: list[str] = []
        self.sent_after_close = 0
        self._cursor = 0

    # StreamIO
    def send(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            self.sent_after_close += 1
        self.sent += bytes(data)  # copy: views may point into buffers that get reused
        self.sends += 1

    def close(self) -> None:
        self.closed = True
        self.close_calls += 1
        self.log.append("close")

    def pause_reading(self) -> None:
        self.paused = True
        self.pause_calls += 1
        self.log.append("pause")

    def resume_reading(self) -> None:
        self.paused = False
        self.resume_calls += 1
        self.log.append("resume")

    # ServerIO
    def send_cancel(self, pid: int, secret: bytes) -> None:
        self.cancels.append((pid, bytes(secret)))
        self.log.append("cancel")

    # reading what was sent
    def unread(self) -> bytes:
        return bytes(self.sent[self._cursor :])

    def take_raw(self, n: int | None = None) -> bytes:
        end = len(self.sent) if n is None else self._cursor + n
        out = bytes(self.sent[self._cursor : end])
        self._cursor += len(out)
        return out

    def take(self) -> list[tuple[str, bytes]]:
        """Typed messages sent since the last take."""
        return decode(self.take_raw())

    def take_startup(self) -> StartupMessage:
        buf = self.unread()
        length = startup_length(buf)
        assert length is not None and len(buf) >= length, "no complete startup packet sent"
        packet = parse_startup(buf[:length])
        self._cursor += length
        assert isinstance(packet, StartupMessage)
        return packet

    def all_messages(self, skip: int = 0) -> list[tuple[str, bytes]]:
        return decode(self.sent[skip:])


def types(msgs: Iterable[tuple[str, bytes]]) -> str:
    return "".join(t for t, _ in msgs)


def queries(msgs: Iterable[tuple[str, bytes]]) -> list[str]:
    """The SQL of the Query messages among ``msgs``."""
    return [fe.parse_query(body) for t, body in msgs if t == "Q"]


def error_fields(msgs: Iterable[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [be.parse_error_fields(body) for t, body in msgs if t == "E"]


def ready_statuses(msgs: Iterable[tuple[str, bytes]]) -> list[bytes]:
    return [be.parse_ready_for_query(body) for t, body in msgs if t == "Z"]


# -- the rest of the proxy ---------------------------------------------------------------------


class FakeDirectory:
    """The Directory interface: logins by (database, user), counters for the callbacks."""

    def __init__(self, auth_type: str = "trust") -> None:
        self.auth_type = auth_type
        self.logins: dict[tuple[str, str], Login] = {}
        self.databases: set[str] = set()
        self.cancels: list[tuple[float, int, bytes]] = []
        self.closed_clients: list[int] = []
        self.auth_failures = 0
        self.auth_failed_for: list[tuple[str, str]] = []
        self.statements = PreparedRegistry()

    def add(self, login: Login) -> Login:
        self.logins[(login.database, login.user)] = login
        self.databases.add(login.database)
        return login

    def has_database(self, name: str) -> bool:
        return name in self.databases

    def lookup(self, database: str, user: str) -> Login | None:
        return self.logins.get((database, user))

    def cancel(self, now: float, pid: int, secret: bytes) -> None:
        self.cancels.append((now, pid, bytes(secret)))

    def client_closed(self, client: ClientSession) -> None:
        self.closed_clients.append(client.id)

    def auth_failed(self, client: ClientSession, user: str, database: str) -> None:
        self.auth_failures += 1
        self.auth_failed_for.append((user, database))

    def admit(self, client: ClientSession) -> tuple[str, str] | None:
        return None


class FakePoolIO:
    """PoolIO: every open_server() creates a ServerSession over a FakeStream (still CONNECTING)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.opened: list[ServerSession] = []
        self.drained: list[tuple[float, int]] = []

    def open_server(self, pool: Pool) -> ServerSession:
        w = self.world
        sid = 100 + len(self.opened) + 1
        server = ServerSession(sid, pool, FakeStream(f"server{sid}"), w.log, w.scheduler, w.entropy, w.now)
        self.opened.append(server)
        return server

    def pool_drained(self, now: float, pool: Pool) -> None:
        self.drained.append((now, pool.id))


def make_settings(**overrides: Any) -> PoolSettings:
    """PoolSettings with small, test-friendly defaults (milliseconds, like the config)."""
    base: dict[str, Any] = dict(
        pool_size=2,
        min_pool_size=0,
        pooler_mode="transaction",
        idle_timeout=60_000,
        server_lifetime=3_600_000,
        server_lifetime_jitter=0,
        statement_timeout=None,
        lock_timeout=None,
        read_only=False,
        replication_mode=False,
        checkout_timeout=1_000,
        connect_timeout=1_000,
        connect_attempts=1,
        connect_attempt_delay=0,
        query_timeout=None,
        rollback_timeout=500,
        server_user="pg_app",
        server_password="server_pw",
        server_database="appdb",
    )
    base.update(overrides)
    return PoolSettings(**base)


class World:
    """Clock, scheduler, entropy, event log, directory and pool IO shared by the machines."""

    def __init__(self, *, auth_type: str = "trust", log_capacity: int = 1 << 16) -> None:
        self.now = 0.0
        self.log = EventLog(capacity=log_capacity)
        self.scheduler = FakeScheduler()
        self.entropy = CounterEntropy()
        self.directory = FakeDirectory(auth_type)
        self.pool_io = FakePoolIO(self)
        self._next_pool = 1
        self._next_client = 1

    # time
    def advance(self, to: float, *, step: bool = False) -> int:
        assert to >= self.now, "time never goes backwards"
        self.now = to
        return self.scheduler.fire_until(to, step=step)

    def tick(self, dt: float) -> int:
        return self.advance(self.now + dt)

    # machines
    def make_pool(self, settings: PoolSettings | None = None, *, start: bool = False, **kw: Any) -> Pool:
        settings = settings or make_settings(**kw)
        key = PoolKey("app", "app", "127.0.0.1", 5432)
        pool = Pool(self._next_pool, key, settings, self.pool_io, self.log, self.scheduler, 1 << 20)
        self._next_pool += 1
        if start:
            pool.start(self.now)
        return pool

    def add_login(
        self,
        pool: Pool,
        *,
        user: str = "app",
        database: str = "app",
        auth_type: str = "trust",
        password: str | None = "app_pw",
        pooler_mode: str | None = None,
        scram: bool = True,
        md5_stored: str | None = None,
    ) -> Login:
        verifier = None
        if password is not None and scram:
            verifier = ScramVerifier.from_password(password, b"saltsaltsaltsalt", SCRAM_ITERATIONS)
        login = Login(
            pool=pool,
            user=user,
            database=database,
            auth_type=auth_type,
            pooler_mode=pooler_mode or pool.settings.pooler_mode,
            passwords=(password,) if password is not None else (),
            verifier=verifier,
            md5_stored=md5_stored,
        )
        return self.directory.add(login)

    def new_client(
        self, *, login_timeout_ms: int | None = None, idle_timeout_ms: int | None = None, **kw: Any
    ) -> ClientSession:
        cid = self._next_client
        self._next_client += 1
        return ClientSession(
            cid,
            FakeStream(f"client{cid}"),
            self.directory,
            self.log,
            self.scheduler,
            self.entropy,
            self.now,
            login_timeout_ms=login_timeout_ms,
            idle_timeout_ms=idle_timeout_ms,
            max_message_size=1 << 20,
            **kw,
        )

    # event log
    def transitions(self, machine: Machine, mid: int | None = None) -> list[Record]:
        return [
            r
            for r in self.log.records()
            if r.kind == Kind.TRANSITION and r.machine == machine and (mid is None or r.id == mid)
        ]


def feed(machine: ClientSession | ServerSession, now: float, *chunks: bytes) -> None:
    """Feed each chunk as its own read (a fresh bytes object, as a socket read would give)."""
    for chunk in chunks:
        machine.on_bytes(now, memoryview(bytes(chunk)))


def split_every(data: bytes, n: int) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


def check_transitions(world: World, machine: Machine, table: dict[Any, frozenset[Any]], start: Any) -> None:
    """Every TRANSITION record of ``machine`` is in ``table`` and chains from the previous state."""
    last: dict[int, int] = {}
    for rec in world.transitions(machine):
        frm = last.get(rec.id, int(start))
        assert rec.frm == frm, f"{machine.name} {rec.id}: record says from {rec.frm}, machine was in {frm}"
        allowed = {int(s) for s in table[type(start)(rec.frm)]}
        assert rec.to in allowed, f"{machine.name} {rec.id}: illegal {rec.frm} -> {rec.to}"
        last[rec.id] = rec.to


# -- the PostgreSQL side of a server connection ------------------------------------------------

AUTH_METHODS = ("trust", "cleartext", "md5", "scram")


class FakeBackend:
    """Scripted PostgreSQL replies for one ServerSession (bytes go in through ``on_bytes``)."""

    def __init__(self, world: World, server: ServerSession) -> None:
        self.world = world
        self.server = server
        self.stream: FakeStream = server.io  # type: ignore[assignment]
        self.startup: StartupMessage | None = None

    def send(self, *msgs: bytes, chunk: int | None = None) -> None:
        data = b"".join(msgs)
        chunks = split_every(data, chunk) if chunk else [data]
        for c in chunks:
            if self.server.state.name == "CLOSED":
                return
            feed(self.server, self.world.now, c)

    def take(self) -> list[tuple[str, bytes]]:
        return self.stream.take()

    def take_queries(self) -> list[str]:
        return queries(self.take())

    def login(
        self,
        auth: str = "trust",
        *,
        user: str | None = None,
        password: str | None = None,
        params: dict[str, str] | None = None,
        pid: int = 4242,
        secret: bytes = b"\x01\x02\x03\x04",
        chunk: int | None = None,
    ) -> None:
        """Connect and log in with ``auth``, checking the proxy's answers like PostgreSQL would."""
        server = self.server
        settings = server.pool.settings
        user = user or settings.server_user
        password = password if password is not None else settings.server_password
        if server.state.name == "CONNECTING":
            server.on_connected(self.world.now)
        self.startup = self.stream.take_startup()
        assert self.startup.user == user
        if auth == "cleartext":
            self.send(be.authentication_cleartext())
            ((t, body),) = self.take()
            assert t == "p" and fe.parse_password(body) == password.encode()
        elif auth == "md5":
            salt = b"\x0a\x0b\x0c\x0d"
            self.send(be.authentication_md5(salt))
            ((t, body),) = self.take()
            assert t == "p" and md5_check(user, password, salt, fe.parse_password(body))
            assert fe.parse_password(body) == md5_hash(user, password, salt)
        elif auth == "scram":
            verifier = ScramVerifier.from_password(password, b"pg-side-salt-16b", SCRAM_ITERATIONS)
            scram = ScramServer(verifier, CounterEntropy(77))
            self.send(be.authentication_sasl(["SCRAM-SHA-256"]))
            ((t, body),) = self.take()
            mechanism, data = fe.parse_sasl_initial_response(body)
            assert t == "p" and mechanism == "SCRAM-SHA-256"
            self.send(be.authentication_sasl_continue(scram.client_first(data or b"", mechanism)))
            ((t, body),) = self.take()
            final = scram.client_final(fe.parse_sasl_response(body))  # raises on a wrong proof
            assert scram.authenticated
            self.send(be.authentication_sasl_final(final))
        else:
            assert auth == "trust", auth
        self.send(*self.login_tail(params, pid, secret), chunk=chunk)

    @staticmethod
    def login_tail(
        params: dict[str, str] | None = None, pid: int = 4242, secret: bytes = b"\x01\x02\x03\x04"
    ) -> list[bytes]:
        msgs = [be.authentication_ok()]
        for name, value in (params or DEFAULT_SERVER_PARAMS).items():
            msgs.append(be.parameter_status(name, value))
        msgs.append(be.backend_key_data(pid, secret))
        msgs.append(be.ready_for_query(b"I"))
        return msgs

    # common replies
    @staticmethod
    def result(tag: str = "SELECT 1", status: bytes = b"I", rows: int = 1) -> bytes:
        out = be.row_description([be.Field("x", type_oid=23, type_size=4)])
        for i in range(rows):
            out += be.data_row([str(i)])
        return out + be.command_complete(tag) + be.ready_for_query(status)

    @staticmethod
    def done(tag: str, status: bytes = b"I") -> bytes:
        return be.command_complete(tag) + be.ready_for_query(status)

    @staticmethod
    def error(code: str = "42601", message: str = "syntax error", status: bytes = b"I") -> bytes:
        return be.error_response(code, message) + be.ready_for_query(status)

    def answer_settings(self, reported: dict[str, str] | None = None) -> list[str]:
        """Answer every pending hidden Query (settings sync / login check) successfully."""
        sql = self.take_queries()
        for _q in sql:
            ps = b"".join(be.parameter_status(k, v) for k, v in (reported or {}).items())
            self.send(ps + self.result("SELECT 1"))
        return sql


# -- the application side of a client connection ---------------------------------------------


class FrontendDriver:
    """Plays a client application (libpq-like) against a ClientSession."""

    def __init__(self, world: World, client: ClientSession) -> None:
        self.world = world
        self.client = client
        self.stream: FakeStream = client.io  # type: ignore[assignment]

    def send(self, *msgs: bytes) -> None:
        feed(self.client, self.world.now, b"".join(msgs))

    def take(self) -> list[tuple[str, bytes]]:
        return self.stream.take()

    def startup(self, user: str = "app", database: str = "app", **params: str) -> None:
        feed(self.client, self.world.now, build_startup({"user": user, "database": database, **params}))

    def authenticate(self, method: str, password: str, user: str = "app") -> list[tuple[str, bytes]]:
        """Answer the proxy's authentication request; returns the messages received after it."""
        msgs = self.take()
        assert msgs and msgs[0][0] == "R", msgs
        code, rest = be.parse_authentication(msgs[0][1])
        if method == "trust":
            assert code == be.AUTH_OK
            return msgs
        if method == "cleartext":
            assert code == be.AUTH_CLEARTEXT
            self.send(fe.password(password))
        elif method == "md5":
            assert code == be.AUTH_MD5
            self.send(fe.password(md5_hash(user, password, bytes(rest[:4]))))
        elif method == "scram":
            assert code == be.AUTH_SASL and "SCRAM-SHA-256" in be.parse_sasl_mechanisms(rest)
            scram = ScramClient(password, CounterEntropy(200))
            self.send(fe.sasl_initial_response("SCRAM-SHA-256", scram.client_first()))
            cont = self.take()
            if types(cont) != "R":  # refused already
                return cont
            code, rest = be.parse_authentication(cont[0][1])
            assert code == be.AUTH_SASL_CONTINUE
            self.send(fe.sasl_response(scram.server_first(bytes(rest))))
            final = self.take()
            if final and final[0][0] == "R":
                code, rest = be.parse_authentication(final[0][1])
                assert code == be.AUTH_SASL_FINAL
                scram.server_final(bytes(rest))  # the proxy proves it knows the verifier
                assert scram.authenticated
            return final
        else:
            raise AssertionError(method)
        return self.take()


def parse_key_data(msgs: Iterable[tuple[str, bytes]]) -> tuple[int, bytes]:
    ((pid, secret),) = [be.parse_backend_key_data(b) for t, b in msgs if t == "K"]
    return pid, secret


def parameter_statuses(msgs: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    return dict(be.parse_parameter_status(b) for t, b in msgs if t == "S")


def message_header(mtype: bytes, length: int) -> bytes:
    return mtype + struct.pack("!I", length)


@dataclass(eq=False)
class Recorder:
    """Fake waiter for pool tests: records grants and failures."""

    id: int
    params: dict[str, str] = field(default_factory=dict)
    wait_started: float = 0.0
    wait_deadline: float = 0.0
    wait_time: float = 0.0
    errors: int = 0
    query_time: float = 0.0
    xact_time: float = 0.0
    _now: float = 0.0
    granted: list[tuple[float, ServerSession]] = field(default_factory=list)
    failed: list[tuple[float, str, bool]] = field(default_factory=list)
    io: FakeStream = field(default_factory=FakeStream)
    events: list[str] | None = None
    ready: list[tuple[float, int, bytes]] = field(default_factory=list)
    lost: list[tuple[float, int, bool]] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    login_checks: list[tuple[dict[str, str], dict[str, str] | None]] = field(default_factory=list)
    told: dict[str, str] = field(default_factory=dict)
    reported: list[tuple[str, str]] = field(default_factory=list)

    def report(self, name: str, value: str) -> None:
        self.reported.append((name, value))

    def on_checkout(self, now: float, server: ServerSession) -> None:
        self.granted.append((now, server))
        if self.events is not None:
            self.events.append(f"grant {self.id} {server.id}")

    def on_checkout_failed(self, now: float, message: str, timeout: bool = False) -> None:
        self.failed.append((now, message, timeout))
        if self.events is not None:
            self.events.append(f"fail {self.id}")

    def on_server_ready(self, now: float, server: ServerSession, status: bytes) -> None:
        self.ready.append((now, server.id, status))

    def on_server_lost(self, now: float, server: ServerSession, query_timeout: bool = False) -> None:
        self.lost.append((now, server.id, query_timeout))

    def forget_statement(self, name: str, stmt: str) -> None:
        self.forgotten.append(name)

    def on_login_checked(
        self, now: float, server: ServerSession, reported: dict[str, str], error: dict[str, str] | None
    ) -> None:
        self.login_checks.append((dict(reported), error))


class ProxyRig:
    """A world with one pool and helpers to bring clients and servers through their logins."""

    def __init__(self, *, auth_type: str = "trust", world: World | None = None, **settings: Any) -> None:
        self.world = world or World(auth_type=auth_type)
        self.pool = self.world.make_pool(**settings)
        self.backends: dict[int, FakeBackend] = {}
        self.server_auth = "md5"

    @property
    def now(self) -> float:
        return self.world.now

    def backend(self, server: ServerSession) -> FakeBackend:
        if server.id not in self.backends:
            self.backends[server.id] = FakeBackend(self.world, server)
        return self.backends[server.id]

    def bring_up(self) -> list[ServerSession]:
        """Log in every server the pool is still connecting."""
        up = []
        for server in list(self.world.pool_io.opened):
            if server.state.name == "CONNECTING":
                self.backend(server).login(self.server_auth)
                up.append(server)
        return up

    def answer_login_checks(self, reported: dict[str, str] | None = None) -> list[str]:
        sql: list[str] = []
        for server in list(self.world.pool_io.opened):
            if server.state.name == "ACTIVE" and server.owed:
                sql += self.backend(server).answer_settings(reported)
        return sql

    def connect(
        self,
        *,
        method: str = "trust",
        password: str = "app_pw",
        user: str = "app",
        database: str = "app",
        reported: dict[str, str] | None = None,
        login_timeout_ms: int | None = None,
        idle_timeout_ms: int | None = None,
        idle_in_transaction_timeout_ms: int | None = None,
        **params: str,
    ) -> tuple[ClientSession, FrontendDriver, list[tuple[str, bytes]]]:
        """Start a client and log it in; returns the messages it received after authenticating."""
        client = self.world.new_client(
            login_timeout_ms=login_timeout_ms,
            idle_timeout_ms=idle_timeout_ms,
            idle_in_transaction_timeout_ms=idle_in_transaction_timeout_ms,
        )
        driver = FrontendDriver(self.world, client)
        driver.startup(user, database, **params)
        msgs = driver.authenticate(method, password, user=user)
        if client.state.name == "LOGIN":
            self.bring_up()
            self.answer_login_checks(reported)
            msgs += driver.take()
        return client, driver, msgs


def rig(mode: str = "transaction", auth: str = "trust", **settings: Any) -> ProxyRig:
    """One pool in ``mode`` with the app/app login."""
    r = ProxyRig(pooler_mode=mode, **settings)
    r.world.add_login(r.pool, auth_type=auth)
    return r


def only_server(r: ProxyRig) -> ServerSession:
    (server,) = r.world.pool_io.opened
    return server


def ready_client(
    r: ProxyRig, *, idle_in_transaction_timeout_ms: int | None = None, **params: str
) -> tuple[ClientSession, FrontendDriver]:
    """A logged-in, idle client with its login messages already taken."""
    client, driver, msgs = r.connect(idle_in_transaction_timeout_ms=idle_in_transaction_timeout_ms, **params)
    assert client.state.name == "IDLE", msgs
    driver.take()
    return client, driver


def client_transitions(world: World) -> None:
    """Every client transition in the log is one the client's table allows."""
    check_transitions(world, Machine.CLIENT, CLIENT_TRANSITIONS, ClientState.STARTUP)
