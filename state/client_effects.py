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
from state.settings_tracker import PROXY_SETTING

if TYPE_CHECKING:
    from state.server import ServerSession

KNOWN_SETTINGS_LIMIT: Final = 10_000
# The proxy's own setting: where this session's queries go. A query of its own SET/RESET of it is
# answered by the proxy (client_rw); one that reached a server inside a longer text or through
# the extended protocol takes effect here, once the server has run it.
ROLE_SETTING: Final = PROXY_SETTING
ROLE_VALUES: Final = {"primary": "primary", "replica": "replica", "auto": None, "any": None, "default": None}
# Statements whose lasting effect is a tracked session setting.
SETTING_KINDS: Final = frozenset({Sql.SET, Sql.SET_DEFAULT, Sql.RESET, Sql.RESET_ALL, Sql.SET_CONFIG})
# Session state that cannot follow a client to another server.
PIN_KINDS: Final = frozenset(
    {Sql.LISTEN, Sql.TEMP_TABLE, Sql.ADVISORY_LOCK, Sql.CURSOR_WITH_HOLD, Sql.UNTRACKED_SETTING, Sql.LOAD,
     Sql.PREPARE}
)


# What a rollback leaves behind: a session advisory lock, a SQL PREPARE, a loaded library.
SURVIVES_ROLLBACK: Final = frozenset({Sql.ADVISORY_LOCK, Sql.PREPARE, Sql.LOAD})
# In a request's effects, between those of the unsynced extended-protocol messages before a Query
# (or FunctionCall) and the Query's own: the server answers that Query only if those messages
# succeeded (after an error it skips to the Sync), so an error in the request is the Query's.
SEGMENT_END: Final = Analysis((), None)


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



def roles_after(role: str | None, changes: list[tuple[str | None, str | None]], startup: str | None) -> str | None:
    """The session's pgdog.role once ``changes`` (setting changes, in order) have taken effect:
    RESET ALL and RESET go back to the startup role, a value the proxy does not know changes
    nothing (it was warned about when set)."""
    for name, value in changes:
        if name is None or (name == ROLE_SETTING and value is None):
            role = startup
        elif name == ROLE_SETTING and value is not None:
            key = value.strip().lower()
            if key in ROLE_VALUES:
                role = ROLE_VALUES[key]
    return role


def _index_of(analyses: list[Analysis], mark: Analysis) -> int:
    for i, analysis in enumerate(analyses):
        if analysis is mark:
            return i
    return -1


class SessionEffects(ClientFields):

    def on_request_done(
        self, now: float, server: ServerSession, analyses: list[Analysis], before: bytes, status: bytes,
        failed: bool,
    ) -> None:
        """The server answered a request whose statements affect the session."""
        tracker = self.settings
        # Several statements in one request share its implicit transaction: their changes are
        # the session's only if it commits (a BEGIN among them makes it the block's, a ROLLBACK
        # undoes them), as the check on the final status below does.
        provisional = False
        if failed:
            self.pin_survivors(now, analyses)
            cut = _index_of(analyses, SEGMENT_END)
            if cut < 0:
                # Statements sharing a request with a failed one are taken as not run: in
                # the implicit transaction of a request, the error rolls them all back.
                if status == b"I":
                    tracker.rollback()
                return
            # The unsynced messages before the failed Query ran (had one of them failed, the
            # server would have skipped the Query): their effects count, and the error fails
            # the transaction open at it, a block (which stays, aborted) or an implicit one
            # (rolled back below); the Query's effects do not count.
            analyses = analyses[:cut]
            provisional = True
        in_txn = before != b"I"
        aborted = before == b"E"
        reset: set[str] = set()
        single = len(analyses) == 1 and len(analyses[0].statements) == 1
        if provisional or not single:
            provisional = in_txn = True
        for analysis in analyses:
            for st in analysis.statements:
                kind = st.kind
                if kind in SETTING_KINDS:
                    name = st.name.lower() if st.name else None
                    if name == ROLE_SETTING:
                        if not (kind is Sql.SET_CONFIG and "local" in st.flags):
                            self._role_set(server, kind, st.value, "default" in st.flags, in_txn)
                        continue  # the proxy's, not the server's: never replayed on other servers
                    if kind is Sql.RESET_ALL:
                        if not in_txn:
                            self.role_override = self.startup_role  # in a transaction: at COMMIT
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
                        self._committed(server)
                    aborted = "chain" in st.flags
                    in_txn = provisional or aborted
                elif kind is Sql.ROLLBACK or kind is Sql.PREPARE_TRANSACTION:
                    tracker.rollback()
                    in_txn = provisional or "chain" in st.flags
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
            if failed:
                tracker.rollback()  # (the implicit transaction the failed Query ended)
            else:
                self._committed(server)

    def pin_survivors(self, now: float, analyses: list[Analysis]) -> None:
        """A request failed, or the server skipped it after an earlier error: what a rollback
        leaves behind pins the client all the same, whether it ran before the error or not."""
        for analysis in analyses:
            for st in analysis.statements:
                if st.kind in SURVIVES_ROLLBACK and pins(st):
                    self._pin(now, st.kind)

    def _committed(self, server: ServerSession) -> None:
        """The client's transaction committed on ``server``: its setting changes, pgdog.role's
        among them, are the session's now. The server's settings moved with them, except
        pgdog.role's: most of its changes the proxy answered itself, and a server's placeholder
        was recorded when the server ran it (``_role_set``)."""
        done = self._commit_settings()
        self._server_applied(server, [change for change in done if change[0] != ROLE_SETTING])

    def _commit_settings(self) -> list[tuple[str | None, str | None]]:
        """The tracker's commit, plus what it leaves to the proxy: the role the transaction set."""
        done = self.settings.commit()
        self.role_override = roles_after(self.role_override, done, self.startup_role)
        return done

    def _role_set(self, server: ServerSession, kind: Sql, value: str | None, default: bool, in_txn: bool) -> None:
        """A SET/RESET of pgdog.role that a server ran (its own placeholder setting accepts any
        value): the session's role changes as if the proxy had answered it, at once or, inside a
        transaction, when it commits (a ROLLBACK undoes it, as it undoes any SET). The server
        keeps a placeholder setting, which the next checkout of it resets (it is in ``applied``
        and no client asks for it), so the next client does not see it."""
        if kind is Sql.RESET or kind is Sql.SET_DEFAULT or default:
            value = None
        if value is not None and value.strip().lower() not in ROLE_VALUES:
            self.errors += 1
            self.io.send(be.notice_response(
                codes.INVALID_PARAMETER_VALUE,
                f'invalid value for parameter "pgdog.role": "{value}"; the session keeps its role',
                severity="WARNING", hint="Available values: primary, replica, auto."))
        change = (ROLE_SETTING, value)
        # The placeholder is on the server now, whatever becomes of the transaction (a
        # rollback leaves it defined): the next checkout resets it.
        self._server_applied(server, [change])
        if in_txn:
            self.settings.change(ROLE_SETTING, value, True)
            return
        self.role_override = roles_after(self.role_override, [change], self.startup_role)

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
