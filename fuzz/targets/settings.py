"""SET, RESET, SET LOCAL and set_config(): the statements whose values the pooler replays.

Input: a query text (as for ``sql_analyze``); the seeds are real SET-family statements.

Oracles: every SET-like value the analysis reports is a fixed point of the GUC text rendering:
``set_config(name, value, is_local)`` with those literals reports the same name and value, a
string setting re-SET to the value as a literal reports it unchanged, and a list setting
(search_path...) re-SET to the value as written reports it unchanged (except the documented
cases: an empty item, an item long enough to be truncated as an identifier). The session
settings tracker, driven by the statements in order, agrees with a model that keeps whole
snapshots per transaction and savepoint.
"""

from __future__ import annotations

from fuzz.oracle import check
from fuzz.source import ByteSource
from pgdog_ev.sql.analysis import QueryCache
from pgdog_ev.sql.guc_text import LIST_QUOTE_SETTINGS
from pgdog_ev.sql.model import Kind, Statement
from state.settings_tracker import PROXY_SETTING, SettingsTracker

# A name no built-in setting has: its value is stored verbatim.
PLAIN_NAME = "pgdog_fuzz.value"
# NAMEDATALEN - 1: a longer quoted identifier is truncated when read back.
MAX_IDENTIFIER = 63
STARTUP = {"application_name": "fuzz", "search_path": "public"}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _only(text: str) -> tuple[Statement, ...]:
    return QueryCache(0).analyze(text).statements


def _check_value(st: Statement) -> None:
    name, value = st.name, st.value
    if name is None or value is None:
        return
    local = st.kind is Kind.SET_LOCAL or "local" in st.flags
    again = _only(f"SELECT set_config({_literal(name)}, {_literal(value)}, {'true' if local else 'false'})")
    want = Statement(Kind.SET_CONFIG, name, value, frozenset({"local"}) if local else frozenset())
    check(again == (want,), f"set_config({name!r}, {value!r}) reads back as {again}")
    if st.kind is Kind.SET_CONFIG:
        return
    plain = _only(f"SET {PLAIN_NAME} TO {_literal(value)}")
    check(plain == (Statement(Kind.SET, PLAIN_NAME, value),), f"SET ... TO {_literal(value)} reads back as {plain}")
    if name in LIST_QUOTE_SETTINGS and '""' not in value and len(value.encode()) <= MAX_IDENTIFIER:
        listed = _only(f"SET {name} TO {value}")
        check(listed == (Statement(Kind.SET, name, value),), f"SET {name} TO {value} reads back as {listed}")


class TrackerModel:
    """What SettingsTracker must hold, kept the slow way: a full copy per savepoint."""

    def __init__(self) -> None:
        self.session = dict(STARTUP)
        self.current = dict(STARTUP)
        self.savepoints: list[tuple[str, dict[str, str]]] = []

    def change(self, name: str | None, value: str | None, in_txn: bool) -> None:
        if name == PROXY_SETTING:
            return  # pgdog.role is the proxy's own, never a session setting to replay
        target = self.current
        if name is None:
            target.clear()
            target.update(STARTUP)
        elif value is not None:
            target[name] = value
        elif name in STARTUP:
            target[name] = STARTUP[name]
        else:
            target.pop(name, None)
        if not in_txn:
            self.session = dict(target)

    def end(self, commit: bool) -> None:
        if commit:
            self.session = dict(self.current)
        self.current = dict(self.session)
        self.savepoints = []

    def find(self, name: str) -> int | None:
        for i in range(len(self.savepoints) - 1, -1, -1):
            if self.savepoints[i][0] == name.lower():
                return i
        return None


def _track(statements: tuple[Statement, ...]) -> None:
    tracker = SettingsTracker(STARTUP)
    model = TrackerModel()
    in_txn = False
    for st in statements:
        kind = st.kind
        if kind is Kind.BEGIN:
            in_txn = True
        elif kind in (Kind.COMMIT, Kind.ROLLBACK) and in_txn:
            if kind is Kind.COMMIT:
                tracker.commit()
            else:
                tracker.rollback()
            model.end(kind is Kind.COMMIT)
            in_txn = False
        elif kind is Kind.SAVEPOINT and in_txn:
            tracker.savepoint(st.name or "")
            model.savepoints.append(((st.name or "").lower(), dict(model.current)))
        elif kind is Kind.RELEASE and in_txn:
            tracker.release(st.name or "")
            i = model.find(st.name or "")
            if i is not None:
                del model.savepoints[i:]
        elif kind is Kind.ROLLBACK_TO and in_txn:
            tracker.rollback_to(st.name or "")
            i = model.find(st.name or "")
            if i is not None:
                model.current = dict(model.savepoints[i][1])
                del model.savepoints[i + 1 :]
        elif kind in (Kind.SET, Kind.SET_CONFIG) and "local" not in st.flags and st.name is not None:
            tracker.change(st.name, st.value, in_txn)
            model.change(st.name, st.value, in_txn)
        elif kind in (Kind.SET_DEFAULT, Kind.RESET) and st.name is not None:
            tracker.change(st.name, None, in_txn)
            model.change(st.name, None, in_txn)
        elif kind is Kind.RESET_ALL:
            tracker.change(None, None, in_txn)
            model.change(None, None, in_txn)
        elif kind is Kind.DISCARD_ALL and not in_txn:
            tracker.reset_all()
            model.end(False)
            model.session = dict(STARTUP)
            model.current = dict(STARTUP)
        check(tracker.effective() == model.current, f"tracker effective settings differ after {st}")
        check(tracker.params == model.session, f"tracker session settings differ after {st}")


def set_parser(data: bytes) -> None:
    text = ByteSource(data).text()
    statements = QueryCache(0).analyze(text).statements
    for st in statements:
        if st.kind in (Kind.SET, Kind.SET_LOCAL, Kind.SET_CONFIG):
            _check_value(st)
    _track(statements)
