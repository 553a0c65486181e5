"""SQL-level PREPARE / EXECUTE / DEALLOCATE.

Prepared statements are session state: a client that PREPAREs on one server and EXECUTEs on
another gets "prepared statement does not exist". The pooler keeps the statement text so it
can PREPARE it again on whichever server the EXECUTE lands on.
"""

from __future__ import annotations

import pglast.parser
from pglast import ast

from pgdog_ev.sql.model import Kind, Statement

_ALL = frozenset({"all"})


def statement_source(sql: str, raw: ast.RawStmt) -> str:
    """The text of one statement of a multi-statement query (offsets are characters)."""
    start = raw.stmt_location or 0
    return sql[start : start + raw.stmt_len] if raw.stmt_len else sql[start:]


def _body_after_as(source: str) -> str | None:
    """The statement following the first top-level AS: the parameter type list before it
    may hold parentheses but never the AS keyword, and PREPARE's name is an identifier."""
    depth = 0
    for token in pglast.parser.scan(source):
        if token.name == "ASCII_40":
            depth += 1
        elif token.name == "ASCII_41":
            depth -= 1
        elif token.name == "AS" and depth == 0:
            return source[token.end + 1 :].strip()
    return None


def from_prepare(stmt: ast.PrepareStmt, source: str) -> Statement:
    """Advisory locks or set_config() inside the prepared statement take effect only at
    EXECUTE time; the caller can analyze ``text`` then."""
    return Statement(Kind.PREPARE, stmt.name, text=_body_after_as(source))


def from_execute(stmt: ast.ExecuteStmt) -> Statement:
    return Statement(Kind.EXECUTE, stmt.name)


def from_deallocate(stmt: ast.DeallocateStmt) -> Statement:
    if stmt.isall or stmt.name is None:
        return Statement(Kind.DEALLOCATE, flags=_ALL)
    return Statement(Kind.DEALLOCATE, stmt.name)
