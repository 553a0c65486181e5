"""SET / RESET / set_config(): the statements whose effect the pooler tracks and replays.

Only changes whose resulting value is known from the text are reported as SET-like kinds; the
rest become UNTRACKED_SETTING so the caller can treat the server as dirty instead of replaying
a wrong value.
"""

from __future__ import annotations

from pglast import ast
from pglast.enums import SetOperation, VariableSetKind

from pgdog_ev.sql.functions import SET_CONFIG, function_name
from pgdog_ev.sql.guc_text import render_set_value
from pgdog_ev.sql.model import Kind, Statement
from pgdog_ev.sql.transactions import transaction_flags

_LOCAL = frozenset({"local"})
_DEFAULT = frozenset({"default"})
_LOCAL_DEFAULT = frozenset({"local", "default"})
_BOOL_WORDS = (("true", True), ("false", False), ("yes", True), ("no", False))


def _scope(is_local: bool) -> frozenset[str]:
    return _LOCAL if is_local else frozenset()


def from_variable_set(stmt: ast.VariableSetStmt) -> Statement:
    kind = stmt.kind
    name = stmt.name
    if kind == VariableSetKind.VAR_SET_VALUE:
        value = render_set_value(name, stmt.args or ())
        if value is None:
            return Statement(Kind.UNTRACKED_SETTING, name, flags=_scope(stmt.is_local))
        return Statement(Kind.SET_LOCAL if stmt.is_local else Kind.SET, name, value)
    if kind == VariableSetKind.VAR_SET_DEFAULT:
        if stmt.is_local:
            return Statement(Kind.SET_LOCAL, name, None, _DEFAULT)
        return Statement(Kind.SET_DEFAULT, name)
    if kind == VariableSetKind.VAR_RESET:
        return Statement(Kind.RESET, name)
    if kind == VariableSetKind.VAR_RESET_ALL:
        return Statement(Kind.RESET_ALL)
    if kind == VariableSetKind.VAR_SET_MULTI:
        return _from_set_multi(stmt)
    # VAR_SET_CURRENT: the value is whatever the server has now, which the text cannot tell.
    return Statement(Kind.UNTRACKED_SETTING, name, flags=_scope(stmt.is_local))


def _from_set_multi(stmt: ast.VariableSetStmt) -> Statement:
    """SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ... (flag "session":
    these change the session defaults), SET TRANSACTION SNAPSHOT 'id' (flag "snapshot")."""
    if stmt.name == "TRANSACTION SNAPSHOT":
        snapshot = render_set_value("", stmt.args or ())
        return Statement(Kind.SET_TRANSACTION, value=snapshot, flags=frozenset({"snapshot"}))
    flags = transaction_flags(stmt.args)
    if stmt.name == "SESSION CHARACTERISTICS":
        flags |= {"session"}
    return Statement(Kind.SET_TRANSACTION, flags=frozenset(flags))


def _string_const(node: ast.Node) -> str | None:
    if isinstance(node, ast.A_Const) and not node.isnull and isinstance(node.val, ast.String):
        return node.val.sval
    return None


def _is_null(node: ast.Node) -> bool:
    return isinstance(node, ast.A_Const) and bool(node.isnull)


def _parse_bool(text: str) -> bool | None:
    """PostgreSQL's parse_bool(): an unambiguous prefix of true/false/yes/no, on/off (at
    least two letters), or 1/0."""
    word = text.strip().lower()
    if word in ("1", "0"):
        return word == "1"
    if word.startswith("o"):
        if word == "on":
            return True
        return False if len(word) >= 2 and "off".startswith(word) else None
    for full, result in _BOOL_WORDS:
        if word and full.startswith(word):
            return result
    return None


def _bool_const(node: ast.Node) -> bool | None:
    """The constant value of a boolean argument, None if not a literal. set_config() treats
    a NULL is_local as false."""
    if _is_null(node):
        return False
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Boolean):
        return bool(node.val.boolval)
    text = _string_const(node)
    return None if text is None else _parse_bool(text)


def _plain_call(call: ast.FuncCall) -> bool:
    return not (
        call.agg_order or call.agg_filter or call.over or call.agg_star or call.agg_distinct
        or call.func_variadic
    )  # fmt: skip


def from_set_config(call: ast.FuncCall) -> Statement:
    """set_config(name, value, is_local) with literal arguments; a NULL value resets the
    setting (flag "default")."""
    args = call.args or ()
    if not _plain_call(call) or len(args) != 3:
        return Statement(Kind.UNTRACKED_SETTING)
    name = _string_const(args[0])
    value = _string_const(args[1])
    is_local = _bool_const(args[2])
    if name is None or is_local is None or (value is None and not _is_null(args[1])):
        return Statement(Kind.UNTRACKED_SETTING, name)
    if value is None:
        return Statement(Kind.SET_CONFIG, name, None, _LOCAL_DEFAULT if is_local else _DEFAULT)
    return Statement(Kind.SET_CONFIG, name, value, _scope(is_local))


def bare_set_config(stmt: ast.SelectStmt) -> ast.FuncCall | None:
    """The call in ``SELECT set_config(...)`` with nothing else in the statement: only then
    does running it once per statement reproduce exactly the setting change."""
    if stmt.op != SetOperation.SETOP_NONE or not stmt.targetList or len(stmt.targetList) != 1:
        return None
    if (
        stmt.fromClause or stmt.whereClause or stmt.groupClause or stmt.havingClause
        or stmt.windowClause or stmt.valuesLists or stmt.sortClause or stmt.limitCount
        or stmt.limitOffset or stmt.lockingClause or stmt.withClause or stmt.intoClause
        or stmt.distinctClause
    ):  # fmt: skip
        return None
    target = stmt.targetList[0]
    call = getattr(target, "val", None)
    if isinstance(call, ast.FuncCall) and function_name(call) == SET_CONFIG:
        return call
    return None
