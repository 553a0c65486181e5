"""The admin console side of a client session: simple queries answered by the proxy.

An admin client never gets a server. Each Query goes to the directory's admin
console, which answers at once or, for commands that wait on the pools (PAUSE
waits for servers to come home), later through :meth:`admin_reply`. While an
answer is pending the client sits in WAITING, so whatever it pipelines behind
the command is held, in order, exactly as for a client waiting for a server.
The extended protocol is refused with 08P01, which is also how pgcli and
similar tools recognise a virtual database.
"""

from __future__ import annotations

from typing import Final

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.scanner import MessageScanner
from state.client_rw import ReadWriteSplit
from state.reasons import Reason

EXTENDED_ONLY: Final = frozenset({fe.PARSE, fe.BIND, fe.DESCRIBE, fe.EXECUTE, fe.CLOSE})
READY_IDLE: Final = be.ready_for_query(b"I")
SIMPLE_ONLY: Final = "the admin database supports only the simple query protocol"


class AdminAnswers(ReadWriteSplit):
    def _admin_message(self, mtype: int, body: memoryview) -> None:
        """The scanner's message handler for admin clients (swapped in at login)."""
        now = self._now
        if mtype == fe.TERMINATE:
            self._close(now, Reason.CLIENT_TERMINATE)
            return
        if self._skip_to_sync:
            if mtype == fe.SYNC:
                self._skip_to_sync = False
                self.io.send(READY_IDLE)
            return
        if mtype == fe.QUERY:
            self.queries += 1
            text = bytes(body[:-1]).decode("utf-8", "replace")
            reply = self.directory.admin_query(now, self, text)  # type: ignore[attr-defined, arg-type]
            if reply is not None:
                self.io.send(reply + READY_IDLE)
            else:
                self._admin_running = True
                self.scanner.suspend()
                self._admin_wait(now)
            return
        if mtype in EXTENDED_ONLY:
            self.errors += 1
            self.io.send(be.error_response(codes.PROTOCOL_VIOLATION, SIMPLE_ONLY))
            self._skip_to_sync = True
            return
        if mtype == fe.SYNC:
            self.io.send(READY_IDLE)
            return
        if mtype == fe.FLUSH:
            return
        self.errors += 1
        message = f"unexpected message {chr(mtype)!r} on the admin database"
        self.io.send(be.error_response(codes.PROTOCOL_VIOLATION, message) + READY_IDLE)

    def admin_reply(self, now: float, payload: bytes) -> None:
        """The answer to a command that had to wait (see the module docstring)."""
        if not self._admin_running:
            return
        self._admin_running = False
        self.io.send(payload + READY_IDLE)
        self._admin_done(now)

    def _admin_cancel(self, now: float) -> None:
        """A CancelRequest for a waiting admin command: stop waiting, say so."""
        self.directory.admin_cancel(now, self)  # type: ignore[attr-defined, arg-type]
        self.admin_reply(now, be.error_response(codes.QUERY_CANCELED, "canceling statement due to user request"))

    # Provided by ClientSession.
    _admin_running: bool
    scanner: MessageScanner
