"""SELECT, INSERT, UPDATE, DELETE and CREATE TABLE against a Database, under read committed.

Every statement computes all its effects first and applies them to the
transaction's private writes only when it completes, so a statement that
has to wait for a row lock (or sleeps) can simply be run again from the
start once the wait is over, which is also how PostgreSQL re-checks a row
that changed while it waited.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from pgdog_ev.wire.backend import Field
from sim.fakepg import nodes as n
from sim.fakepg import values as V
from sim.fakepg.errors import (
    DATATYPE_MISMATCH,
    DUPLICATE_TABLE,
    FEATURE_NOT_SUPPORTED,
    NOT_NULL_VIOLATION,
    SYNTAX_ERROR,
    UNDEFINED_COLUMN,
    UNDEFINED_TABLE,
    UNIQUE_VIOLATION,
    SqlError,
)
from sim.fakepg.exprs import Row, column_name, has_aggregate, type_of
from sim.fakepg.result import Result
from sim.fakepg.txn import DELETED, Written
from sim.fakepg.values import Timestamp, Value

if TYPE_CHECKING:
    from sim.fakepg.context import Context
    from sim.fakepg.database import Database
    from sim.fakepg.txn import Transaction

PREPARED_XACTS = "pg_prepared_xacts"
TABLE_COLUMNS: list[tuple[str, int]] = [("k", V.INT8), ("v", V.INT8)]
PREPARED_COLUMNS: list[tuple[str, int]] = [
    ("transaction", V.XID), ("gid", V.TEXT), ("prepared", V.TIMESTAMPTZ), ("owner", V.TEXT), ("database", V.TEXT),
]
VIRTUAL = {PREPARED_XACTS: PREPARED_COLUMNS}


def table_oid(name: str) -> int:
    return 16384 + zlib.crc32(name.encode()) % 1_000_000


def missing_table(name: str) -> SqlError:
    return SqlError(UNDEFINED_TABLE, f'relation "{name}" does not exist')


def check_relations(stmt: n.Statement, db: Database, txn: Transaction | None) -> None:
    """Parse analysis: a statement naming a missing table fails at Parse, as in PostgreSQL."""
    if isinstance(stmt, n.Select) and stmt.source is not None:
        name = stmt.source
        if name not in VIRTUAL and not db.table_exists(txn, name):
            raise missing_table(name)
    elif isinstance(stmt, n.Insert | n.Update | n.Delete) and not db.table_exists(txn, stmt.table):
        raise missing_table(stmt.table)


def _columns_of(source: str | None) -> list[tuple[str, int]]:
    if source is None:
        return []
    return VIRTUAL.get(source, TABLE_COLUMNS)


def _fields(items: tuple[n.SelectItem, ...], source: str | None, params: tuple[int, ...]) -> list[Field]:
    columns = _columns_of(source)
    types = dict(columns)
    user_table = source is not None and source not in VIRTUAL
    out: list[Field] = []
    for item in items:
        if isinstance(item.expr, n.Star):
            if source is None:
                raise SqlError(SYNTAX_ERROR, "SELECT * with no tables specified is not valid")
            for attnum, (name, oid) in enumerate(columns, 1):
                out.append(_field(name, oid, table_oid(source) if user_table else 0, attnum if user_table else 0))
            continue
        oid = type_of(item.expr, params, types)
        name = item.alias or column_name(item.expr)
        rel, attnum = 0, 0
        if user_table and isinstance(item.expr, n.Column) and item.expr.name in types:
            rel, attnum = table_oid(source), [c for c, _ in columns].index(item.expr.name) + 1  # type: ignore[arg-type]
        out.append(_field(name, oid, rel, attnum))
    return out


def _field(name: str, oid: int, rel: int = 0, attnum: int = 0) -> Field:
    return Field(name, rel, attnum, oid, V.TYPE_SIZES.get(oid, -1), -1, 0)


def describe(stmt: n.Statement, params: tuple[int, ...]) -> list[Field] | None:
    """RowDescription fields of a statement, without running it (None: it returns no rows)."""
    if isinstance(stmt, n.Select):
        return _fields(stmt.items, stmt.source, params)
    if isinstance(stmt, n.Insert | n.Update | n.Delete) and stmt.returning:
        return _fields(stmt.returning, stmt.table, params)
    if isinstance(stmt, n.Show):
        return [_field(stmt.name, V.TEXT)]
    return None


# --- reading -------------------------------------------------------------------------


def _key_expr(where: n.Expr | None) -> n.Expr | None:
    """The X of a top-level ``k = X`` conjunct (X free of columns): a point lookup."""
    if where is None:
        return None
    if isinstance(where, n.BinOp):
        if where.op == "and":
            return _key_expr(where.left) or _key_expr(where.right)
        if where.op == "=":
            for col, other in ((where.left, where.right), (where.right, where.left)):
                if isinstance(col, n.Column) and col.name == "k" and col.table != "excluded" \
                        and isinstance(other, n.Const | n.Param | n.Cast):
                    return other
    return None


def _table_rows(ctx: Context, table: str, where: n.Expr | None) -> list[Row]:
    """Visible rows of a user table that satisfy ``where``, by key."""
    db, txn, ev = ctx.db, ctx.txn, ctx.evaluator
    key_expr = _key_expr(where)
    if key_expr is not None:
        try:
            key = V.cast(ev.eval(key_expr, None), V.INT8)
        except SqlError:
            key = None
            key_expr = None
        if key_expr is not None:
            if key is None:
                return []
            found, value = db.lookup(txn, table, key)  # type: ignore[arg-type]
            rows = [{"k": key, "v": value}] if found else []
            return [r for r in rows if where is None or ev.truth(where, r)]
    visible = db.visible(txn, table)
    rows = [{"k": k, "v": visible[k]} for k in sorted(visible)]
    return [r for r in rows if where is None or ev.truth(where, r)]


def _prepared_rows(ctx: Context) -> list[Row]:
    out: list[Row] = []
    for px in sorted(ctx.db.prepared.values(), key=lambda p: (p.lsn, p.gid)):
        out.append({"transaction": px.xid, "gid": px.gid, "prepared": Timestamp(px.prepared_at),
                    "owner": px.owner, "database": px.database})
    return out


def _project(ctx: Context, items: tuple[n.SelectItem, ...], row: Row, source: str | None) -> list[Value]:
    out: list[Value] = []
    for item in items:
        if isinstance(item.expr, n.Star):
            out += [row.get(name) for name, _ in _columns_of(source)]
        else:
            out.append(ctx.evaluator.eval(item.expr, row))
    return out


def run_select(ctx: Context, stmt: n.Select) -> Result:
    fields = _fields(stmt.items, stmt.source, ctx.param_types)
    ev = ctx.evaluator
    if stmt.source is None:
        rows: list[Row] = [{}]
        if stmt.where is not None and not ev.truth(stmt.where, {}):
            rows = []
    elif stmt.source == PREPARED_XACTS:
        rows = [r for r in _prepared_rows(ctx) if stmt.where is None or ev.truth(stmt.where, r)]
    else:
        check_relations(stmt, ctx.db, ctx.txn)
        rows = _table_rows(ctx, stmt.source, stmt.where)
    if any(has_aggregate(item.expr) for item in stmt.items if not isinstance(item.expr, n.Star)):
        marker: Row = {"\0group": True}
        out = [[ev.eval(item.expr, marker, rows) for item in stmt.items]]
        return Result(f"SELECT {len(out)}", fields, out)
    if stmt.order:
        rows = _ordered(ctx, stmt, rows)
    offset = _count(ctx, stmt.offset) or 0
    limit = _count(ctx, stmt.limit)
    rows = rows[offset:] if limit is None else rows[offset:offset + limit]
    if stmt.for_update and stmt.source is not None and stmt.source not in VIRTUAL:
        for row in rows:
            ctx.lock(stmt.source, row["k"])  # type: ignore[arg-type]
    out = [_project(ctx, stmt.items, row, stmt.source) for row in rows]
    return Result(f"SELECT {len(out)}", fields, out)


def _count(ctx: Context, e: n.Expr | None) -> int | None:
    if e is None:
        return None
    value = V.cast(ctx.evaluator.eval(e, None), V.INT8)
    return None if value is None else max(0, int(value))  # type: ignore[arg-type]


def _ordered(ctx: Context, stmt: n.Select, rows: list[Row]) -> list[Row]:
    names = [item.alias or column_name(item.expr) for item in stmt.items]

    def sort_value(e: n.Expr, row: Row) -> Value:
        if isinstance(e, n.Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
            position = e.value
            if not 1 <= position <= len(stmt.items):
                raise SqlError(UNDEFINED_COLUMN, f"ORDER BY position {position} is not in select list")
            return ctx.evaluator.eval(stmt.items[position - 1].expr, row)
        if isinstance(e, n.Column) and e.name not in row and e.name in names:
            return ctx.evaluator.eval(stmt.items[names.index(e.name)].expr, row)
        return ctx.evaluator.eval(e, row)

    keyed = [(tuple(sort_value(e, row) for e, _ in stmt.order), i, row) for i, row in enumerate(rows)]
    # Stable multi-key sort: last key first; NULLs sort last ascending, first descending (PostgreSQL).
    try:
        for position in range(len(stmt.order) - 1, -1, -1):
            desc = stmt.order[position][1]
            keyed.sort(key=lambda item, p=position: _sort_key(item[0][p]), reverse=desc)
    except TypeError:
        raise SqlError(DATATYPE_MISMATCH, "could not identify an ordering operator for mixed types") from None
    return [row for _, _, row in keyed]


def _sort_key(value: Value) -> tuple[int, object]:
    if value is None:
        return (1, 0)
    if isinstance(value, V.Lsn):
        return (0, value.value)
    if isinstance(value, Timestamp | V.Interval):
        return (0, value.seconds)
    return (0, value)


# --- writing -------------------------------------------------------------------------


def _int8(value: Value, column: str, table: str) -> int | None:
    try:
        return V.cast(value, V.INT8)  # type: ignore[return-value]
    except SqlError:
        raise
    except (TypeError, ValueError):
        raise SqlError("42804", f'column "{column}" is of type bigint but expression is of another type') from None


def _returning(ctx: Context, stmt: n.Insert | n.Update | n.Delete, rows: list[Row]) -> tuple[list[Field] | None,
                                                                                             list[list[Value]]]:
    if not stmt.returning:
        return None, []
    fields = _fields(stmt.returning, stmt.table, ctx.param_types)
    return fields, [_project(ctx, stmt.returning, row, stmt.table) for row in rows]


def run_insert(ctx: Context, stmt: n.Insert) -> Result:
    check_relations(stmt, ctx.db, ctx.txn)
    table = stmt.table
    columns = stmt.columns or ("k", "v")
    for col in columns:
        if col not in ("k", "v"):
            raise SqlError(UNDEFINED_COLUMN, f'column "{col}" of relation "{table}" does not exist')
    pending: dict[int, int | None] = {}
    inserted: list[Row] = []
    for values in stmt.rows:
        if len(values) != len(columns):
            more = "more" if len(values) > len(columns) else "fewer"
            raise SqlError(SYNTAX_ERROR, f"INSERT has {more} expressions than target columns")
        row = {col: _int8(ctx.evaluator.eval(e, None), col, table) for col, e in zip(columns, values, strict=True)}
        key, value = row.get("k"), row.get("v")
        if key is None:
            raise SqlError(NOT_NULL_VIOLATION, f'null value in column "k" of relation "{table}" violates not-null '
                           "constraint")
        ctx.lock(table, key)
        if key in pending:
            exists, current = True, pending[key]
        else:
            exists, current = ctx.db.lookup(ctx.txn, table, key)
        if exists:
            if stmt.conflict is None:
                raise SqlError(UNIQUE_VIOLATION, f'duplicate key value violates unique constraint "{table}_pkey"',
                               detail=f"Key (k)=({key}) already exists.")
            if not stmt.conflict:
                continue
            scope: Row = {"k": key, "v": current, "excluded.k": key, "excluded.v": value}
            for col, e in stmt.conflict:
                if col != "v":
                    raise SqlError(FEATURE_NOT_SUPPORTED, f'updating column "{col}" is not supported')
                value = _int8(ctx.evaluator.eval(e, scope), col, table)
        pending[key] = value
        inserted.append({"k": key, "v": value})
    ctx.db.write(ctx.txn, {(table, k): v for k, v in pending.items()})
    fields, rows = _returning(ctx, stmt, inserted)
    return Result(f"INSERT 0 {len(inserted)}", fields, rows)


def run_update(ctx: Context, stmt: n.Update) -> Result:
    check_relations(stmt, ctx.db, ctx.txn)
    for col, _ in stmt.assignments:
        if col == "k":
            raise SqlError(FEATURE_NOT_SUPPORTED, "the fake server cannot change a primary key")
        if col != "v":
            raise SqlError(UNDEFINED_COLUMN, f'column "{col}" of relation "{stmt.table}" does not exist')
    targets = _table_rows(ctx, stmt.table, stmt.where)
    for row in targets:
        ctx.lock(stmt.table, row["k"])  # type: ignore[arg-type]
    changes: dict[tuple[str, int], Written] = {}
    updated: list[Row] = []
    for row in targets:
        new = dict(row)
        for col, e in stmt.assignments:
            new[col] = _int8(ctx.evaluator.eval(e, row), col, stmt.table)
        changes[(stmt.table, row["k"])] = new["v"]  # type: ignore[index]
        updated.append(new)
    ctx.db.write(ctx.txn, changes)
    fields, rows = _returning(ctx, stmt, updated)
    return Result(f"UPDATE {len(updated)}", fields, rows)


def run_delete(ctx: Context, stmt: n.Delete) -> Result:
    check_relations(stmt, ctx.db, ctx.txn)
    targets = _table_rows(ctx, stmt.table, stmt.where)
    for row in targets:
        ctx.lock(stmt.table, row["k"])  # type: ignore[arg-type]
    ctx.db.write(ctx.txn, {(stmt.table, row["k"]): DELETED for row in targets})  # type: ignore[misc]
    fields, rows = _returning(ctx, stmt, targets)
    return Result(f"DELETE {len(targets)}", fields, rows)


def run_create(ctx: Context, stmt: n.CreateTable) -> Result:
    if ctx.db.table_exists(ctx.txn, stmt.name) or stmt.name in VIRTUAL:
        if not stmt.if_not_exists:
            raise SqlError(DUPLICATE_TABLE, f'relation "{stmt.name}" already exists')
        return Result("CREATE TABLE", notices=[("NOTICE", DUPLICATE_TABLE,
                                                f'relation "{stmt.name}" already exists, skipping')])
    ctx.txn.creates.append(stmt.name)
    return Result("CREATE TABLE")
