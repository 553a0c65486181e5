"""What a finished request did to the client's session, and what the proxy does about it.

The server's ReadyForQuery tells whether a request succeeded and in which
transaction state it left the session; only then are its SETs applied (or kept
for the end of the transaction), its DISCARD ALL honoured, and a client that
created state the proxy cannot move (LISTEN, temp tables, session advisory
locks, WITH HOLD cursors, SQL PREPARE, settings changed in ways the text does
not tell) pinned to its server for the rest of the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pgdog_ev.sql import Analysis, Statement
from pgdog_ev.sql import Kind as Sql
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from state.client_fields import ClientFields
from state.events import Kind, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    from state.server import ServerSession

KNOWN_SETTINGS_LIMIT: Final = 10_000
# The proxy's own setting: where this session's queries go. A query of its own SET/RESET of it is
# answered by the proxy (client_rw); one that reached a server inside a longer text or through
# the extended protocol takes effect here, once the server has run it.
ROLE_SETTING: Final = "pgdog.role"
ROLE_VALUES: Final = {"primary": "primary", "replica": "replica", "auto": None, "any": None, "default": None}
# Statements whose lasting effect is a tracked session setting.
SETTING_KINDS: Final = frozenset({Sql.SET, Sql.SET_DEFAULT, Sql.RESET, Sql.RESET_ALL, Sql.SET_CONFIG})
# Session state that cannot follow a client to another server.
PIN_KINDS: Final = frozenset(
    {Sql.LISTEN, Sql.TEMP_TABLE, Sql.ADVISORY_LOCK, Sql.CURSOR_WITH_HOLD, Sql.UNTRACKED_SETTING, Sql.LOAD,
     Sql.PREPARE}
)


def pins(st: Statement) -> bool:
    """Whether running ``st`` ties the client to its server for the rest of the session."""
    kind = st.kind
    if kind in PIN_KINDS:
        if kind is Sql.TEMP_TABLE and "on_commit_drop" in st.flags:
            return False
        return not (kind is Sql.UNTRACKED_SETTING and "local" in st.flags)
    return False


_CHARACTERISTICS: Final = {
    "read_only": ("default_transaction_read_only", "on"),
    "read_write": ("default_transaction_read_only", "off"),
    "deferrable": ("default_transaction_deferrable", "on"),
    "not_deferrable": ("default_transaction_deferrable", "off"),
}


def characteristics(st: Statement) -> list[tuple[str, str]]:
    """SET SESSION CHARACTERISTICS AS TRANSACTION ... as the settings it changes."""
    out: list[tuple[str, str]] = []
    for flag in sorted(st.flags):
        if flag.startswith("isolation:"):
            out.append(("default_transaction_isolation", flag.split(":", 1)[1]))
        elif flag in _CHARACTERISTICS:
            out.append(_CHARACTERISTICS[flag])
    return out



class SessionEffects(ClientFields):

    def on_request_done(
        self, now: float, server: ServerSession, analyses: list[Analysis], before: bytes, status: bytes,
        failed: bool,
    ) -> None:
        """The server answered a request whose statements affect the session."""
        tracker = self.settings
        if failed:
            # Statements sharing a request with a failed one are taken as not run.
            if status == b"I":
                tracker.rollback()
            return
        in_txn = before != b"I"
        aborted = before == b"E"
        reset: set[str] = set()
        single = len(analyses) == 1 and len(analyses[0].statements) == 1
        for analysis in analyses:
            for st in analysis.statements:
                kind = st.kind
                if kind in SETTING_KINDS:
                    name = st.name.lower() if st.name else None
                    if name == ROLE_SETTING:
                        if not (kind is Sql.SET_CONFIG and "local" in st.flags):
                            self._role_changed(kind, st.value, "default" in st.flags)
                        continue  # the proxy's, not the server's: never replayed on other servers
                    if kind is Sql.RESET_ALL:
                        self.role_override = self.startup_role
                        name, value = None, None
                        reset |= set(self.settings.startup)
                    else:
                        value = None if "default" in st.flags or kind in (Sql.RESET, Sql.SET_DEFAULT) else st.value
                    if kind is Sql.SET_CONFIG and "local" in st.flags:
                        continue
                    tracker.change(name, value, in_txn)
                    if value is None and name is not None:
                        reset.add(name)
                    if not in_txn:
                        self._server_applied(server, [(name, value)])
                    if single and kind is Sql.SET and name is not None and value is not None:
                        self._learn_setting(server, name, value)
                elif kind is Sql.SET_TRANSACTION and "session" in st.flags:
                    for name, value in characteristics(st):
                        tracker.change(name, value, in_txn)
                        if not in_txn:
                            self._server_applied(server, [(name, value)])
                elif kind is Sql.BEGIN:
                    in_txn = True
                elif kind is Sql.COMMIT:
                    if aborted:
                        tracker.rollback()
                    else:
                        self._server_applied(server, tracker.commit())
                    in_txn = aborted = "chain" in st.flags
                elif kind is Sql.ROLLBACK or kind is Sql.PREPARE_TRANSACTION:
                    tracker.rollback()
                    in_txn = "chain" in st.flags
                    aborted = False
                elif kind is Sql.SAVEPOINT and in_txn:
                    tracker.savepoint(st.name or "")
                elif kind is Sql.RELEASE and in_txn:
                    tracker.release(st.name or "")
                elif kind is Sql.ROLLBACK_TO and in_txn:
                    tracker.rollback_to(st.name or "")
                    aborted = False
                elif kind is Sql.DISCARD_ALL:
                    self.role_override = self.startup_role
                    tracker.reset_all()
                    server.applied = {}
                    server.forget_prepared()
                    self._drop_all_statements()
                elif kind is Sql.DEALLOCATE and st.name is None:
                    server.forget_prepared()
                elif pins(st):
                    self._pin(now, kind)
        if reset:
            # The server went back to its own defaults and reported those; the
            # client's defaults are its startup values (resynced at next checkout).
            self.io.send(self._parameter_status(reset))
        if status == b"I" and tracker.txn:
            # The transaction ended in a way the text did not show (e.g. an
            # implicit COMMIT of a multi-statement query): take the server's word.
            self._server_applied(server, tracker.commit())

    def _role_changed(self, kind: Sql, value: str | None, default: bool) -> None:
        """A SET/RESET of pgdog.role that a server ran (its own placeholder setting accepts any
        value): the session's role changes as if the proxy had answered it."""
        if kind is Sql.RESET or kind is Sql.SET_DEFAULT or default or value is None:
            self.role_override = self.startup_role
            return
        key = value.strip().lower()
        if key in ROLE_VALUES:
            self.role_override = ROLE_VALUES[key]
            return
        self.errors += 1
        self.io.send(be.notice_response(
            codes.INVALID_PARAMETER_VALUE,
            f'invalid value for parameter "pgdog.role": "{value}"; the session keeps its role',
            severity="WARNING", hint="Available values: primary, replica, auto."))

    def _server_applied(self, server: ServerSession, changes: list[tuple[str | None, str | None]]) -> None:
        """The server itself ran these changes: its settings moved with the client's."""
        applied = server.applied
        for name, value in changes:
            if name is None:
                applied.clear()
            elif value is None:
                applied.pop(name, None)
            else:
                applied[name] = value

    def _learn_setting(self, server: ServerSession, name: str, value: str) -> None:
        """A SET the server accepted can later be answered without one, with the
        ParameterStatus the server sent for it (if the setting is reported at all)."""
        pool = self.pool
        assert pool is not None
        reported = server.last_reported
        if not reported and pool.reported_name(name) is not None:
            return  # unchanged, so not reported this time: we cannot tell what it reports
        if len(pool.known_settings) > KNOWN_SETTINGS_LIMIT:
            pool.known_settings.clear()
        pool.known_settings[(name, value)] = dict(reported)

    def _pin(self, now: float, kind: int) -> None:
        if not self.pinned:
            self.pinned = True
            self.log.emit(now, Kind.NOTE, Machine.CLIENT, self.id, 0, 0, Reason.PINNED, kind)
