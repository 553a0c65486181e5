"""Map one parsed statement to the Statement the pooler acts on.

Dispatch is by node type; anything not listed is OTHER unless it hides a session-affecting
function call (searched only when the text mentions one, since walking a large tree costs as
much as parsing it). A COPY (SELECT pg_advisory_lock(...)) TO STDOUT is reported as COPY only.
"""

from __future__ import annotations

from collections.abc import Callable

from pglast import ast
from pglast.enums import CURSOR_OPT_HOLD, DiscardMode

from pgdog_ev.sql.functions import LOCK_FUNCTIONS, SET_CONFIG, UNLOCK_FUNCTIONS, called_functions
from pgdog_ev.sql.model import OTHER_STATEMENT, Kind, Statement
from pgdog_ev.sql.prepared import (
    from_deallocate,
    from_execute,
    from_prepare,
    statement_source,
)
from pgdog_ev.sql.settings import bare_set_config, from_set_config, from_variable_set
from pgdog_ev.sql.temp_objects import temp_object
from pgdog_ev.sql.transactions import from_transaction

_DISCARD = {
    DiscardMode.DISCARD_ALL: Kind.DISCARD_ALL,
    DiscardMode.DISCARD_PLANS: Kind.DISCARD_PLANS,
    DiscardMode.DISCARD_SEQUENCES: Kind.DISCARD_SEQUENCES,
    DiscardMode.DISCARD_TEMP: Kind.DISCARD_TEMP,
}
_ALL = frozenset({"all"})


def _discard(stmt: ast.DiscardStmt) -> Statement:
    return Statement(_DISCARD.get(stmt.target, Kind.OTHER))


def _listen(stmt: ast.ListenStmt) -> Statement:
    return Statement(Kind.LISTEN, stmt.conditionname)


def _notify(stmt: ast.NotifyStmt) -> Statement:
    return Statement(Kind.NOTIFY, stmt.conditionname, stmt.payload)


def _do(stmt: ast.DoStmt) -> Statement:
    """The block's body is opaque PL code: its effects on the session are unknown."""
    return Statement(Kind.DO)


def _load(stmt: ast.LoadStmt) -> Statement:
    return Statement(Kind.LOAD, stmt.filename)


def _unlisten(stmt: ast.UnlistenStmt) -> Statement:
    if stmt.conditionname is None:  # UNLISTEN *
        return Statement(Kind.UNLISTEN, flags=_ALL)
    return Statement(Kind.UNLISTEN, stmt.conditionname)


def _copy(stmt: ast.CopyStmt) -> Statement:
    """Only COPY over the client connection changes the protocol flow; COPY to/from a server
    file or program is an ordinary statement for the pooler."""
    if stmt.filename is not None or stmt.is_program:
        return OTHER_STATEMENT
    return Statement(Kind.COPY_FROM_STDIN if stmt.is_from else Kind.COPY_TO_STDOUT)


def _call(stmt: ast.CallStmt) -> Statement:
    names = stmt.funccall.funcname if stmt.funccall is not None else ()
    return Statement(Kind.CALL, ".".join(n.sval for n in names if isinstance(n, ast.String)) or None)


def _declare(stmt: ast.DeclareCursorStmt) -> Statement:
    if stmt.options & CURSOR_OPT_HOLD:
        return Statement(Kind.CURSOR_WITH_HOLD, stmt.portalname)
    return OTHER_STATEMENT


_SIMPLE: dict[type[ast.Node], Callable[..., Statement]] = {
    ast.VariableSetStmt: from_variable_set,
    ast.TransactionStmt: from_transaction,
    ast.DiscardStmt: _discard,
    ast.ListenStmt: _listen,
    ast.UnlistenStmt: _unlisten,
    ast.NotifyStmt: _notify,
    ast.ExecuteStmt: from_execute,
    ast.DeallocateStmt: from_deallocate,
    ast.CopyStmt: _copy,
    ast.DoStmt: _do,
    ast.CallStmt: _call,
    ast.LoadStmt: _load,
    ast.DeclareCursorStmt: _declare,
}


def _function_effect(stmt: ast.Node) -> Statement:
    """Session lock wins over set_config() (pinning is the stronger reaction), which wins
    over unlock."""
    setting: Statement | None = None
    unlock: Statement | None = None
    for name in called_functions(stmt):
        if name in LOCK_FUNCTIONS:
            return Statement(Kind.ADVISORY_LOCK, name)
        if name == SET_CONFIG:
            setting = Statement(Kind.UNTRACKED_SETTING)
        elif name in UNLOCK_FUNCTIONS and unlock is None:
            unlock = Statement(Kind.ADVISORY_UNLOCK, name)
    return setting or unlock or OTHER_STATEMENT


def classify(raw: ast.RawStmt, sql: str, mentions_functions: bool) -> Statement:
    """``mentions_functions``: the query text contains something that may be a session
    function name; without it the tree is not walked."""
    stmt = raw.stmt
    simple = _SIMPLE.get(type(stmt))
    if simple is not None:
        return simple(stmt)
    if isinstance(stmt, ast.PrepareStmt):
        return from_prepare(stmt, statement_source(sql, raw))
    if isinstance(stmt, ast.SelectStmt) and mentions_functions:
        call = bare_set_config(stmt)
        if call is not None:
            return from_set_config(call)
    temp = temp_object(stmt)
    if temp is not None:
        return Statement(Kind.TEMP_TABLE, temp[0], flags=temp[1])
    if mentions_functions:
        return _function_effect(stmt)
    return OTHER_STATEMENT
