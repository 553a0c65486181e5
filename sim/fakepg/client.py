"""A minimal frontend for driving a BackendSession directly: tests and scenario checks.

It speaks real protocol bytes (built with the project's codec) and parses
what the session sends back, so a test can log in with any auth method,
run queries and read rows, errors and ReadyForQuery states without a
network or a proxy in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pgdog_ev.auth.md5 import md5_hash
from pgdog_ev.auth.scram import ScramClient
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.framing import Framer
from pgdog_ev.wire.startup import build_ssl_request, build_startup
from sim.fakepg.server import FakeServer
from sim.fakepg.session import BackendSession

Message = tuple[str, bytes]


@dataclass
class Reply:
    """Messages received, with accessors for what tests look at."""

    messages: list[Message] = field(default_factory=list)

    @property
    def types(self) -> str:
        return "".join(t for t, _ in self.messages)

    @property
    def rows(self) -> list[list[str | None]]:
        return [[None if v is None else v.decode() for v in be.parse_data_row(body)]
                for t, body in self.messages if t == "D"]

    @property
    def raw_rows(self) -> list[list[bytes | None]]:
        return [be.parse_data_row(body) for t, body in self.messages if t == "D"]

    @property
    def columns(self) -> list[be.Field]:
        found = [be.parse_row_description(body) for t, body in self.messages if t == "T"]
        return found[-1] if found else []

    @property
    def tags(self) -> list[str]:
        return [be.parse_command_complete(body) for t, body in self.messages if t == "C"]

    @property
    def errors(self) -> list[be.ErrorInfo]:
        return [be.error_info(body) for t, body in self.messages if t == "E"]

    @property
    def codes(self) -> list[str]:
        return [e.code for e in self.errors]

    @property
    def notices(self) -> list[be.ErrorInfo]:
        return [be.error_info(body) for t, body in self.messages if t == "N"]

    @property
    def statuses(self) -> list[bytes]:
        return [be.parse_ready_for_query(body) for t, body in self.messages if t == "Z"]

    @property
    def status(self) -> bytes | None:
        found = self.statuses
        return found[-1] if found else None

    @property
    def parameters(self) -> dict[str, str]:
        return dict(be.parse_parameter_status(body) for t, body in self.messages if t == "S")

    def value(self) -> str | None:
        """The single value of a one-row, one-column answer."""
        rows = self.rows
        if len(rows) != 1 or len(rows[0]) != 1:
            raise AssertionError(f"expected one value, got {rows} ({self.types}, {self.errors})")
        return rows[0][0]


class Driver:
    """One client connection to a FakeServer. ``chunks`` cuts each write (arbitrary chunking)."""

    def __init__(
        self,
        server: FakeServer,
        now: float = 0.0,
        chunks: Callable[[bytes], list[bytes]] | None = None,
    ) -> None:
        self.server = server
        self.now = now
        self.chunks = chunks
        self.received = bytearray()
        self._framer = Framer(1 << 26)
        self._pending: list[Message] = []
        self.session: BackendSession = server.open_session(now, self.received.extend)

    # -- raw I/O -----------------------------------------------------------------------------

    def write(self, data: bytes, now: float | None = None) -> None:
        if now is not None:
            self.now = now
        pieces = self.chunks(data) if self.chunks is not None else [data]
        for piece in pieces:
            self.session.on_bytes(self.now, piece)

    def tick(self, now: float) -> None:
        """Let time pass: fire the session's timer if it is due."""
        self.now = now
        when = self.session.wakeup
        if when is not None and when <= now:
            self.session.on_timer(now)

    def read(self) -> Reply:
        """Every complete message received since the last read."""
        data = bytes(self.received)
        self.received.clear()
        out = self._pending + [(chr(t), body) for t, body in self._framer.feed(data)]
        self._pending = []
        return Reply(out)

    def read_byte(self) -> bytes:
        data = bytes(self.received[:1])
        del self.received[:1]
        return data

    # -- conversations --------------------------------------------------------------------------

    def login(
        self,
        user: str = "app",
        database: str = "app",
        password: str = "",
        ssl: bool = False,
        params: dict[str, str] | None = None,
        entropy: Callable[[int], bytes] | None = None,
    ) -> Reply:
        """Startup and authentication with whatever method the server asks for."""
        if ssl:
            self.write(build_ssl_request())
            answer = self.read_byte()
            if answer != b"N":
                raise AssertionError(f"unexpected SSL answer {answer!r}")
        startup = {"user": user, "database": database}
        startup.update(params or {})
        self.write(build_startup(startup))
        seen = Reply()
        scram: ScramClient | None = None
        for _ in range(8):
            reply = self.read()
            seen.messages += reply.messages
            auth = [body for t, body in reply.messages if t == "R"]
            if reply.status is not None or reply.errors or not auth:
                return seen
            code, rest = be.parse_authentication(auth[-1])
            if code == be.AUTH_OK:
                continue
            if code == be.AUTH_CLEARTEXT:
                self.write(fe.password(password))
            elif code == be.AUTH_MD5:
                self.write(fe.password(md5_hash(user, password, rest[:4])))
            elif code == be.AUTH_SASL:
                scram = ScramClient(password, entropy or (lambda n: b"\x07" * n))
                self.write(fe.sasl_initial_response("SCRAM-SHA-256", scram.client_first()))
            elif code == be.AUTH_SASL_CONTINUE:
                assert scram is not None
                self.write(fe.sasl_response(scram.server_first(rest)))
            elif code == be.AUTH_SASL_FINAL:
                assert scram is not None
                scram.server_final(rest)
        return seen

    def query(self, sql: str, now: float | None = None) -> Reply:
        self.write(fe.query(sql), now)
        return self.read()

    def extended(
        self,
        sql: str,
        params: tuple[bytes | None, ...] = (),
        name: str = "",
        param_types: tuple[int, ...] = (),
        param_formats: tuple[int, ...] = (),
        result_formats: tuple[int, ...] = (),
        max_rows: int = 0,
        describe: bool = True,
        now: float | None = None,
    ) -> Reply:
        """Parse, Bind, Describe portal, Execute, Sync in one write (a pipeline)."""
        data = (fe.parse(name, sql, param_types) + fe.bind("", name, param_formats, params, result_formats)
                + (fe.describe("P", "") if describe else b"") + fe.execute("", max_rows) + fe.sync())
        self.write(data, now)
        return self.read()

    def terminate(self) -> None:
        self.write(fe.terminate())
