"""Objects created in the session's temporary schema.

They live until the session ends (or DISCARD TEMP), so a server that created one carries a
client's state into the pool. ``ON COMMIT DROP`` tables vanish with the transaction and are
flagged so the caller may ignore them. A view over a temporary table is silently made
temporary by the server; that cannot be seen from the text and is not detected.
"""

from __future__ import annotations

from collections.abc import Sequence

from pglast import ast
from pglast.enums import OnCommitAction

_ON_COMMIT_DROP = frozenset({"on_commit_drop"})


def _temp_schema(schema: str | None) -> bool:
    # pg_temp is an alias for the session's own pg_temp_NNN schema, which may also be named.
    return schema is not None and schema.startswith("pg_temp")


def _temp_relation(relation: ast.RangeVar | None) -> bool:
    return relation is not None and (relation.relpersistence == "t" or _temp_schema(relation.schemaname))


def _temp_qualified_name(names: Sequence[ast.Node] | None) -> bool:
    if not names or len(names) < 2:
        return False
    schema = names[-2]
    return isinstance(schema, ast.String) and _temp_schema(schema.sval)


def _relation_of(stmt: ast.Node) -> ast.RangeVar | None:
    if isinstance(stmt, ast.CreateStmt):
        return stmt.relation
    if isinstance(stmt, ast.ViewStmt):
        return stmt.view
    if isinstance(stmt, ast.CreateSeqStmt):
        return stmt.sequence
    if isinstance(stmt, ast.CompositeTypeStmt):
        return stmt.typevar
    if isinstance(stmt, ast.CreateTableAsStmt) and stmt.into is not None:
        return stmt.into.rel
    if isinstance(stmt, ast.SelectStmt) and stmt.intoClause is not None:
        return stmt.intoClause.rel
    return None


def _qualified_name_of(stmt: ast.Node) -> Sequence[ast.Node] | None:
    if isinstance(stmt, ast.CreateFunctionStmt):
        return stmt.funcname
    if isinstance(stmt, ast.DefineStmt):
        return stmt.defnames
    if isinstance(stmt, ast.CreateEnumStmt | ast.CreateRangeStmt):
        return stmt.typeName
    if isinstance(stmt, ast.CreateDomainStmt):
        return stmt.domainname
    return None


def _on_commit(stmt: ast.Node) -> OnCommitAction | None:
    if isinstance(stmt, ast.CreateStmt):
        return stmt.oncommit
    if isinstance(stmt, ast.CreateTableAsStmt) and stmt.into is not None:
        return stmt.into.onCommit
    if isinstance(stmt, ast.SelectStmt) and stmt.intoClause is not None:
        return stmt.intoClause.onCommit
    return None


def temp_object(stmt: ast.Node) -> tuple[str, frozenset[str]] | None:
    """(object name, flags) if ``stmt`` creates a temporary object, else None."""
    relation = _relation_of(stmt)
    if relation is not None:
        if not _temp_relation(relation):
            return None
        flags = _ON_COMMIT_DROP if _on_commit(stmt) == OnCommitAction.ONCOMMIT_DROP else frozenset()
        return relation.relname, flags
    names = _qualified_name_of(stmt)
    if _temp_qualified_name(names):
        assert names is not None
        last = names[-1]
        return (last.sval if isinstance(last, ast.String) else None) or "", frozenset()
    return None
