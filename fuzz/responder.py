"""A permissive PostgreSQL for the session targets: answers what a ServerSession forwards.

The session targets drive the production client and server machines through the sans-IO test
kit (tests/unit/statekit.py), whose FakeBackend plays scripted logins. After login this plays
the server side of any request without running SQL, so that arbitrary client bytes get
plausible answers: results for Query, the extended-protocol completions, COPY FROM STDIN and
TO STDOUT, and an error (then skipping to Sync, as PostgreSQL does) for any text containing
``error``. A message PostgreSQL would not accept closes the connection with a FATAL, again as
the server would. It never raises: a crash in a session target is the proxy's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer
from state.server import STAND_IN_POSITION, STAND_IN_SQL
from tests.unit.statekit import feed

if TYPE_CHECKING:
    from state.server import ServerSession
    from tests.unit.statekit import FakeStream, World

BEGIN_WORDS = ("begin", "start")
END_WORDS = ("commit", "rollback", "end", "abort")
ROW = be.row_description([be.Field("x", type_oid=23, type_size=4)]) + be.data_row([b"1"])


def _text(body: bytes) -> str:
    return body.rstrip(b"\0").decode("utf-8", "replace").lower()


class Responder:
    def __init__(self, world: World, server: ServerSession) -> None:
        self.world = world
        self.server = server
        self.stream: FakeStream = server.io  # type: ignore[assignment]
        self.framer = Framer(1 << 30)
        self.status = b"I"
        self.copy_in = False
        # COPY started by Execute: its end is followed by the client's Sync, not ReadyForQuery.
        self.copy_extended = False
        self.skipping = False
        self.dead = False
        self.statements: dict[bytes, str] = {}
        self.portals: dict[bytes, str] = {}
        self.cancels_done = 0
        # What a FATAL ending the connection says (None: an unknown message type's).
        self.last_words: bytes | None = None
        # Statements of a Query still to run after its COPY FROM STDIN ends.
        self.rest: list[str] = []

    def _error(self, message: str, code: str = "42000") -> bytes:
        if self.status == b"T":
            self.status = b"E"
        return be.error_response(code, message)

    def _refusal(self) -> bytes:
        """A COPY FROM STDIN that fails once begun, before it read any message (as PostgreSQL's
        does into a view, with a FREEZE it cannot honour, or at a statement trigger's error)."""
        return self._error("cannot copy to view", "42809")

    def _ready(self) -> bytes:
        return be.ready_for_query(self.status)

    def _run(self, sql: str, extended: bool) -> bytes:
        """The answer to one statement, without the ReadyForQuery."""
        head = sql.lstrip(" \t\n\r(")
        if head.startswith("copy") and "stdin" in sql:
            self.copy_in = True
            self.copy_extended = extended
            if "view" in sql:
                return be.copy_in_response(0, [0]) + self._copy_failed(self._refusal())
            return be.copy_in_response(0, [0])
        if head.startswith("copy") and "stdout" in sql:
            return be.copy_out_response(0, [0]) + be.copy_data(b"1\n") + be.copy_done() + be.command_complete("COPY 1")
        if head.startswith(BEGIN_WORDS):
            self.status = b"T"
        elif head.startswith(END_WORDS):
            self.status = b"I"
        return (b"" if extended else ROW) + be.command_complete("SELECT 1")

    def _query(self, sql: str) -> bytes:
        """Each statement of ``sql`` in turn (split at ";"), up to an error or a COPY FROM STDIN."""
        out = b""
        parts = [part for part in sql.split(";") if part.strip()] or [sql]
        while parts:
            part = parts.pop(0)
            if "error" in part:
                return out + self._error("error requested") + self._ready()
            if "stdin" in part and "view" in part:
                return out + be.copy_in_response(0, [0]) + self._refusal() + self._ready()
            out += self._run(part, extended=False)
            if self.copy_in:
                self.rest = parts
                return out
        return out + self._ready()

    def _copy(self, mtype: int, body: bytes) -> bytes | None:
        if mtype == fe.COPY_DATA and b"bad" in body:
            # A row the COPY cannot take: it fails there, what follows is read as usual.
            return self._copy_failed(self._error("invalid input syntax", "22P02"))
        if mtype == fe.COPY_DATA or mtype == fe.FLUSH or mtype == fe.SYNC:
            return b""  # PostgreSQL ignores Flush and Sync during COPY
        self.copy_in = False
        if mtype == fe.COPY_DONE:
            done = be.command_complete("COPY 0")
            if self.copy_extended:
                return done
            rest, self.rest = self.rest, []
            return done + (self._query(";".join(rest)) if rest else self._ready())
        if mtype != fe.COPY_FAIL:
            # The client broke the COPY protocol. PostgreSQL (14 and later) has read only the
            # type byte: it says so, then ends the connection.
            self.last_words = be.error_response(
                "08P01", f"unexpected message type 0x{mtype:02X} during COPY from stdin"
            ) + be.error_response("08P01", "terminating connection because protocol synchronization was lost",
                                  severity="FATAL")
            return None
        return self._copy_failed(self._error("COPY from stdin failed", "57014"))

    def _copy_failed(self, error: bytes) -> bytes:
        """The COPY ends with ``error``: a Query's (and the statements after it) at once, an
        Execute's with the server skipping to the next Sync."""
        self.copy_in = False
        self.rest = []
        if self.copy_extended:
            self.skipping = True
            return error
        return error + self._ready()

    def _message(self, mtype: int, body: bytes) -> bytes | None:
        """The answer to one message; None closes the connection after a FATAL."""
        if self.copy_in:
            return self._copy(mtype, body)
        if mtype == fe.QUERY:
            # Behind an error in an extended-protocol batch a Query is skipped like the rest,
            # with no ReadyForQuery; its own error does not start skipping.
            return b"" if self.skipping else self._query(_text(body))
        if mtype == fe.SYNC:
            self.skipping = False
            return self._ready()
        if self.skipping or mtype in (fe.FLUSH, fe.COPY_DATA, fe.COPY_DONE, fe.COPY_FAIL):
            return b""
        if mtype == fe.PARSE:
            name, _, rest = body.partition(b"\0")
            sql = _text(rest.partition(b"\0")[0])
            if "error" in sql:
                self.skipping = True
                return self._error("error requested")
            if sql == STAND_IN_SQL:  # the proxy's own Parse that PostgreSQL fails (a refusal)
                self.skipping = True
                if self.status == b"T":
                    self.status = b"E"
                return be.error_response("42601", 'syntax error at or near ")"', fields={"P": STAND_IN_POSITION})
            self.statements[name] = sql
            return be.parse_complete()
        if mtype == fe.BIND:
            portal, _, rest = body.partition(b"\0")
            self.portals[portal] = self.statements.get(rest.partition(b"\0")[0], "")
        elif mtype == fe.EXECUTE:
            return self._run(self.portals.get(body.partition(b"\0")[0], ""), extended=True)
        simple = {fe.BIND: be.bind_complete(), fe.DESCRIBE: be.no_data(), fe.CLOSE: be.close_complete()}
        if mtype in simple:
            return simple[mtype]
        if mtype == fe.FUNCTION_CALL:
            return be.function_call_response(None) + self._ready()
        return None

    def pump(self) -> bool:
        """Answer whatever the proxy sent since the last call; False when there was nothing."""
        server = self.server
        if self.dead or server.state.name == "CLOSED":
            self.dead = True
            return False
        now = self.world.now
        cancels = len(self.stream.cancels)
        if cancels > self.cancels_done:
            # The postmaster takes each CancelRequest and closes its connection; the query it
            # targets was answered already (this server answers at once).
            new, self.cancels_done = cancels - self.cancels_done, cancels
            for _ in range(new):
                server.on_cancel_done(now)
            return True
        raw = self.stream.take_raw()
        if not raw:
            return False
        try:
            messages = self.framer.feed(raw)
        except ProtocolViolation:
            messages = [(0, b"")]  # answered below like an unknown message type
        out = bytearray()
        for mtype, body in messages:
            if mtype == fe.TERMINATE:
                self.dead = True
                break
            answer = self._message(mtype, body)
            if answer is None:
                out += self.last_words or be.error_response(
                    "08P01", f"invalid frontend message type {mtype}", severity="FATAL")
                self.dead = True
                break
            out += answer
        if out:
            feed(server, now, bytes(out))
        if self.dead and server.state.name != "CLOSED":
            server.on_closed(now)
        return True
