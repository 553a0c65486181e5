"""Transaction control statements.

The pooler needs to know where transactions start and end to decide when a server can go back
to the pool; the options are kept as flags because a read-only BEGIN may be routed to a
replica, and AND CHAIN starts a new transaction right after the old one ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from pglast import ast
from pglast.enums import TransactionStmtKind

from pgdog_ev.sql.model import Kind, Statement

_KINDS = {
    TransactionStmtKind.TRANS_STMT_BEGIN: Kind.BEGIN,
    TransactionStmtKind.TRANS_STMT_START: Kind.BEGIN,
    TransactionStmtKind.TRANS_STMT_COMMIT: Kind.COMMIT,
    TransactionStmtKind.TRANS_STMT_ROLLBACK: Kind.ROLLBACK,
    TransactionStmtKind.TRANS_STMT_SAVEPOINT: Kind.SAVEPOINT,
    TransactionStmtKind.TRANS_STMT_RELEASE: Kind.RELEASE,
    TransactionStmtKind.TRANS_STMT_ROLLBACK_TO: Kind.ROLLBACK_TO,
    TransactionStmtKind.TRANS_STMT_PREPARE: Kind.PREPARE_TRANSACTION,
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: Kind.COMMIT_PREPARED,
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: Kind.ROLLBACK_PREPARED,
}
_SAVEPOINT_KINDS = frozenset({Kind.SAVEPOINT, Kind.RELEASE, Kind.ROLLBACK_TO})
_TWO_PHASE_KINDS = frozenset({Kind.PREPARE_TRANSACTION, Kind.COMMIT_PREPARED, Kind.ROLLBACK_PREPARED})


def _option_flag(option: ast.DefElem) -> str | None:
    arg = option.arg
    value = arg.val if isinstance(arg, ast.A_Const) else None
    if option.defname == "transaction_isolation" and isinstance(value, ast.String):
        return "isolation:" + value.sval
    if not isinstance(value, ast.Integer):
        return None
    if option.defname == "transaction_read_only":
        return "read_only" if value.ival else "read_write"
    if option.defname == "transaction_deferrable":
        return "deferrable" if value.ival else "not_deferrable"
    return None


def transaction_flags(options: Sequence[ast.Node] | None) -> set[str]:
    """BEGIN / SET TRANSACTION modes as flags: read_only | read_write,
    isolation:<level as PostgreSQL spells it>, deferrable | not_deferrable."""
    flags: set[str] = set()
    for option in options or ():
        if isinstance(option, ast.DefElem):
            flag = _option_flag(option)
            if flag is not None:
                flags.add(flag)
    return flags


def from_transaction(stmt: ast.TransactionStmt) -> Statement:
    kind = _KINDS.get(stmt.kind)
    if kind is None:  # a TransactionStmtKind this table does not know (newer grammar)
        return Statement(Kind.OTHER)
    if kind is Kind.BEGIN:
        return Statement(kind, flags=frozenset(transaction_flags(stmt.options)))
    if kind in (Kind.COMMIT, Kind.ROLLBACK):
        return Statement(kind, flags=frozenset({"chain"}) if stmt.chain else frozenset())
    if kind in _SAVEPOINT_KINDS:
        return Statement(kind, stmt.savepoint_name)
    if kind in _TWO_PHASE_KINDS:
        return Statement(kind, stmt.gid)
    return Statement(kind)
