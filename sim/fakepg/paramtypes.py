"""Parameter types of a statement, as PostgreSQL infers them for a Parse without explicit types.

Only the contexts the fake's SQL has matter: a parameter compared with or
assigned to a bigint column is bigint, a LIMIT is bigint, pg_sleep takes a
float, a cast names its type; anything else is text.
"""

from __future__ import annotations

from sim.fakepg import nodes as n
from sim.fakepg import values as V
from sim.fakepg.exprs import children, type_of

TABLE_COLUMNS = {"k": V.INT8, "v": V.INT8}


def _walk(e: n.Expr, hint: int, found: dict[int, int], columns: dict[str, int]) -> None:
    if isinstance(e, n.Param):
        if hint and not found.get(e.index):
            found[e.index] = hint
        found.setdefault(e.index, 0)
        return
    if isinstance(e, n.Cast):
        _walk(e.operand, e.oid, found, columns)
        return
    if isinstance(e, n.BinOp) and e.op not in ("and", "or", "||"):
        # Each side takes its type from the other side, or from the context for arithmetic.
        outer = hint if e.op in ("+", "-", "*", "/", "%") else 0
        left_type = 0 if isinstance(e.left, n.Param) else type_of(e.left, (), columns)
        right_type = 0 if isinstance(e.right, n.Param) else type_of(e.right, (), columns)
        _walk(e.left, right_type or outer, found, columns)
        _walk(e.right, left_type or outer, found, columns)
        return
    if isinstance(e, n.InList):
        target = type_of(e.operand, (), columns)
        for item in e.items:
            _walk(item, target, found, columns)
        _walk(e.operand, 0, found, columns)
        return
    if isinstance(e, n.Func) and e.name == "pg_sleep":
        for arg in e.args:
            _walk(arg, V.FLOAT8, found, columns)
        return
    for child in children(e):
        _walk(child, 0, found, columns)


def _items(items: tuple[n.SelectItem, ...], found: dict[int, int], columns: dict[str, int]) -> None:
    for item in items:
        _walk(item.expr, 0, found, columns)


def infer(stmt: n.Statement, declared: tuple[int, ...]) -> tuple[int, ...]:
    found: dict[int, int] = {}
    cols = TABLE_COLUMNS
    if isinstance(stmt, n.Select):
        cols = TABLE_COLUMNS if stmt.source is not None else {}
        _items(stmt.items, found, cols)
        for e in (stmt.where, *(o for o, _ in stmt.order)):
            if e is not None:
                _walk(e, 0, found, cols)
        for e in (stmt.limit, stmt.offset):
            if e is not None:
                _walk(e, V.INT8, found, cols)
    elif isinstance(stmt, n.Insert):
        for row in stmt.rows:
            for e in row:
                _walk(e, V.INT8, found, cols)
        for _, e in stmt.conflict or ():
            _walk(e, V.INT8, found, cols)
        _items(stmt.returning, found, cols)
    elif isinstance(stmt, n.Update | n.Delete):
        if isinstance(stmt, n.Update):
            for _, e in stmt.assignments:
                _walk(e, V.INT8, found, cols)
        if stmt.where is not None:
            _walk(stmt.where, 0, found, cols)
        _items(stmt.returning, found, cols)
    elif isinstance(stmt, n.ExecuteStatement):
        for e in stmt.args:
            _walk(e, 0, found, cols)
    count = max([len(declared), *found])
    return tuple(
        (declared[i] if i < len(declared) and declared[i] else found.get(i + 1, 0)) or V.TEXT
        for i in range(count)
    )
