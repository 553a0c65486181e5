"""Evaluating expressions, their static types (for RowDescription) and their column names.

Types are decided before execution, from the expression alone plus the
parameter types, because a Describe must answer before anything runs; the
values computed later are written out according to those types.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import Protocol

from sim.fakepg import nodes as n
from sim.fakepg import values as V
from sim.fakepg.errors import (
    DATATYPE_MISMATCH,
    DIVISION_BY_ZERO,
    GROUPING_ERROR,
    OBJECT_NOT_IN_PREREQUISITE_STATE,
    UNDEFINED_COLUMN,
    UNDEFINED_FUNCTION,
    SqlError,
)
from sim.fakepg.values import Interval, Lsn, Timestamp, Value

Row = dict[str, Value]
AGGREGATES = frozenset({"count", "sum", "min", "max", "avg"})


class Runtime(Protocol):
    """What built-in functions may ask of the statement being executed."""

    now: float
    txn_start: float

    def in_recovery(self) -> bool: ...
    def current_lsn(self) -> int: ...
    def replay_lsn(self) -> int | None: ...
    def replay_timestamp(self) -> float | None: ...
    def sleep(self, seconds: float) -> None: ...
    def current_setting(self, name: str, missing_ok: bool) -> str | None: ...
    def set_config(self, name: str, value: str, local: bool) -> str: ...
    def backend_pid(self) -> int: ...
    def user(self) -> str: ...
    def database(self) -> str: ...
    def server_port(self) -> int: ...
    def xid(self) -> int: ...
    def nextval(self, name: str) -> int: ...


def _recovery_lsn_error() -> SqlError:
    return SqlError(OBJECT_NOT_IN_PREREQUISITE_STATE, "recovery is in progress",
                    hint="WAL control functions cannot be executed during recovery.")


def _current_wal_lsn(rt: Runtime, args: list[Value]) -> Value:
    if rt.in_recovery():
        raise _recovery_lsn_error()
    return Lsn(rt.current_lsn())


def _replay_lsn(rt: Runtime, args: list[Value]) -> Value:
    lsn = rt.replay_lsn()
    return None if lsn is None else Lsn(lsn)


def _replay_ts(rt: Runtime, args: list[Value]) -> Value:
    ts = rt.replay_timestamp()
    return None if ts is None else Timestamp(ts)


def _sleep(rt: Runtime, args: list[Value]) -> Value:
    seconds = args[0]
    if seconds is None:
        return V.VOID_VALUE
    try:
        secs = float(V.cast(seconds, V.FLOAT8))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SqlError(DATATYPE_MISMATCH, "pg_sleep expects a number") from None
    if secs > 0:
        rt.sleep(secs)
    return V.VOID_VALUE


def _current_setting(rt: Runtime, args: list[Value]) -> Value:
    missing_ok = bool(args[1]) if len(args) > 1 else False
    return rt.current_setting(str(args[0]), missing_ok)


def _set_config(rt: Runtime, args: list[Value]) -> Value:
    if len(args) != 3:
        raise SqlError(UNDEFINED_FUNCTION, "function set_config does not exist")
    return rt.set_config(str(args[0]), "" if args[1] is None else str(args[1]), bool(V.cast(args[2], V.BOOL)))


def _coalesce(rt: Runtime, args: list[Value]) -> Value:
    return next((a for a in args if a is not None), None)


def _abs(rt: Runtime, args: list[Value]) -> Value:
    x = args[0]
    return None if x is None else abs(x)  # type: ignore[arg-type]


# name -> (return type or None for "type of the first argument", implementation)
Impl = Callable[[Runtime, list[Value]], Value]
FUNCTIONS: dict[str, tuple[int | None, Impl]] = {
    "now": (V.TIMESTAMPTZ, lambda rt, a: Timestamp(rt.txn_start)),
    "transaction_timestamp": (V.TIMESTAMPTZ, lambda rt, a: Timestamp(rt.txn_start)),
    "statement_timestamp": (V.TIMESTAMPTZ, lambda rt, a: Timestamp(rt.now)),
    "clock_timestamp": (V.TIMESTAMPTZ, lambda rt, a: Timestamp(rt.now)),
    "pg_is_in_recovery": (V.BOOL, lambda rt, a: rt.in_recovery()),
    "pg_current_wal_lsn": (V.PG_LSN, _current_wal_lsn),
    "pg_current_wal_insert_lsn": (V.PG_LSN, _current_wal_lsn),
    "pg_current_wal_flush_lsn": (V.PG_LSN, _current_wal_lsn),
    "pg_last_wal_replay_lsn": (V.PG_LSN, _replay_lsn),
    "pg_last_wal_receive_lsn": (V.PG_LSN, _replay_lsn),
    "pg_last_xact_replay_timestamp": (V.TIMESTAMPTZ, _replay_ts),
    "pg_sleep": (V.VOID, _sleep),
    "current_setting": (V.TEXT, _current_setting),
    "set_config": (V.TEXT, _set_config),
    "version": (V.TEXT, lambda rt, a: f"PostgreSQL {rt.current_setting('server_version', True)} (pgdog-ev fake "
                                      "server) on x86_64-pc-linux-gnu, 64-bit"),
    "pg_backend_pid": (V.INT4, lambda rt, a: rt.backend_pid()),
    "current_user": (V.TEXT, lambda rt, a: rt.user()),
    "current_database": (V.TEXT, lambda rt, a: rt.database()),
    "inet_server_port": (V.INT4, lambda rt, a: rt.server_port()),
    "txid_current": (V.INT8, lambda rt, a: rt.xid()),
    "pg_current_xact_id": (V.INT8, lambda rt, a: rt.xid()),
    "nextval": (V.INT8, lambda rt, a: rt.nextval(str(a[0]))),
    "coalesce": (None, _coalesce),
    "abs": (None, _abs),
}
# Functions that write: refused on a replica like an INSERT.
WRITE_FUNCTIONS = frozenset({"nextval", "txid_current", "pg_current_xact_id"})
# A SELECT calling only these (and no table) is a health or replication probe.
PROBE_FUNCTIONS = frozenset({"pg_is_in_recovery", "pg_current_wal_lsn", "pg_last_wal_replay_lsn",
                             "pg_last_xact_replay_timestamp", "pg_last_wal_receive_lsn", "now"})


# --- static typing ------------------------------------------------------------------


def type_of(e: n.Expr, params: tuple[int, ...], columns: dict[str, int]) -> int:
    if isinstance(e, n.Const):
        return e.oid
    if isinstance(e, n.Param):
        oid = params[e.index - 1] if e.index <= len(params) else V.TEXT
        return oid or V.TEXT
    if isinstance(e, n.Column):
        return columns.get(e.name, V.TEXT)
    if isinstance(e, n.Cast):
        return e.oid
    if isinstance(e, n.Extract):
        return V.NUMERIC
    if isinstance(e, n.IsNull | n.InList):
        return V.BOOL
    if isinstance(e, n.UnaryOp):
        return V.BOOL if e.op == "not" else type_of(e.operand, params, columns)
    if isinstance(e, n.Case):
        return type_of(e.whens[0][1], params, columns)
    if isinstance(e, n.Func):
        if e.name == "count":
            return V.INT8
        if e.name in ("sum", "avg"):
            return V.NUMERIC
        if e.name in ("min", "max"):
            return type_of(e.args[0], params, columns) if e.args else V.TEXT
        known = FUNCTIONS.get(e.name)
        if known is not None and known[0] is not None:
            return known[0]
        return type_of(e.args[0], params, columns) if e.args else V.TEXT
    if isinstance(e, n.BinOp):
        if e.op in ("and", "or", "=", "<>", "<", ">", "<=", ">="):
            return V.BOOL
        if e.op == "||":
            return V.TEXT
        left, right = type_of(e.left, params, columns), type_of(e.right, params, columns)
        if left == V.TIMESTAMPTZ and right == V.TIMESTAMPTZ:
            return V.INTERVAL
        if V.TIMESTAMPTZ in (left, right):
            return V.TIMESTAMPTZ
        if V.NUMERIC in (left, right):
            return V.NUMERIC
        if V.INT8 in (left, right):
            return V.INT8
        if left == V.TEXT and right in (V.INT4, V.INT2):
            return right
        return left
    return V.TEXT


def column_name(e: n.Expr) -> str:
    """PostgreSQL's default output column name."""
    if isinstance(e, n.Column):
        return e.name
    if isinstance(e, n.Func):
        return e.name
    if isinstance(e, n.Cast):
        inner = column_name(e.operand)
        return V.OID_NAMES.get(e.oid, e.type_name) if inner == "?column?" else inner
    if isinstance(e, n.Case):
        return "case"
    if isinstance(e, n.Extract):
        return "extract"
    return "?column?"


def has_aggregate(e: n.Expr) -> bool:
    if isinstance(e, n.Func):
        return e.name in AGGREGATES or any(has_aggregate(a) for a in e.args)
    return any(has_aggregate(child) for child in children(e))


def children(e: n.Expr) -> tuple[n.Expr, ...]:
    if isinstance(e, n.Func):
        return e.args
    if isinstance(e, n.BinOp):
        return (e.left, e.right)
    if isinstance(e, n.UnaryOp | n.IsNull | n.Extract | n.Cast):
        return (e.operand,)
    if isinstance(e, n.InList):
        return (e.operand, *e.items)
    if isinstance(e, n.Case):
        out: list[n.Expr] = [] if e.operand is None else [e.operand]
        for cond, result in e.whens:
            out += (cond, result)
        if e.default is not None:
            out.append(e.default)
        return tuple(out)
    return ()


def functions_called(e: n.Expr) -> list[str]:
    out = [e.name] if isinstance(e, n.Func) else []
    for child in children(e):
        out += functions_called(child)
    return out


# --- evaluation -----------------------------------------------------------------------


def _coerce_pair(a: Value, b: Value) -> tuple[Value, Value]:
    """Resolve an untyped literal against the other side, as PostgreSQL resolves 'unknown'."""
    if isinstance(a, str) and not isinstance(b, str) and b is not None:
        return _from_other(a, b), b
    if isinstance(b, str) and not isinstance(a, str) and a is not None:
        return a, _from_other(b, a)
    return a, b


def _from_other(text: str, other: Value) -> Value:
    if isinstance(other, bool):
        return V.parse_bool(text)
    if isinstance(other, int):
        return V.parse_int(text)
    if isinstance(other, Decimal | float):
        return V.parse_numeric(text)
    if isinstance(other, Lsn):
        return V.from_text(text, V.PG_LSN)
    return text


def _compare(op: str, a: Value, b: Value) -> bool | None:
    if a is None or b is None:
        return None
    a, b = _coerce_pair(a, b)
    if isinstance(a, Lsn) and isinstance(b, Lsn):
        a, b = a.value, b.value
    if isinstance(a, Timestamp | Interval) and type(a) is type(b):
        a, b = a.seconds, b.seconds  # type: ignore[union-attr]
    try:
        if op == "=":
            return a == b
        if op == "<>":
            return a != b
        if op == "<":
            return a < b  # type: ignore[operator]
        if op == ">":
            return a > b  # type: ignore[operator]
        if op == "<=":
            return a <= b  # type: ignore[operator]
        return a >= b  # type: ignore[operator]
    except TypeError:
        raise SqlError("42883", f"operator does not exist: {op}") from None


def _arith(op: str, a: Value, b: Value) -> Value:
    if a is None or b is None:
        return None
    if op == "||":
        return (V.to_text(a) or "") + (V.to_text(b) or "")
    a, b = _coerce_pair(a, b)
    if isinstance(a, Timestamp):
        if isinstance(b, Timestamp) and op == "-":
            return Interval(a.seconds - b.seconds)
        if isinstance(b, Interval):
            return Timestamp(a.seconds + b.seconds if op == "+" else a.seconds - b.seconds)
    if isinstance(a, Interval) and isinstance(b, Interval) and op in "+-":
        return Interval(a.seconds + b.seconds if op == "+" else a.seconds - b.seconds)
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | Decimal | float) \
            or not isinstance(b, int | Decimal | float):
        raise SqlError(UNDEFINED_FUNCTION, f"operator does not exist: {op}")
    if isinstance(a, int) and isinstance(b, int):
        if op in "/%" and b == 0:
            raise SqlError(DIVISION_BY_ZERO, "division by zero")
        if op == "+":
            return V.check_int8(a + b)
        if op == "-":
            return V.check_int8(a - b)
        if op == "*":
            return V.check_int8(a * b)
        quotient = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
        return quotient if op == "/" else a - b * quotient
    x, y = Decimal(str(a)), Decimal(str(b))
    if op in "/%" and y == 0:
        raise SqlError(DIVISION_BY_ZERO, "division by zero")
    try:
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        return x / y if op == "/" else x % y
    except (DivisionByZero, InvalidOperation):
        raise SqlError(DIVISION_BY_ZERO, "division by zero") from None


def _truth(value: Value) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return V.parse_bool(value)
    raise SqlError(DATATYPE_MISMATCH, "argument of WHERE must be type boolean")


class Evaluator:
    """Evaluates expressions of one statement against rows (dicts of column -> value)."""

    def __init__(self, rt: Runtime, params: tuple[Value, ...]) -> None:
        self.rt = rt
        self.params = params

    def truth(self, e: n.Expr, row: Row | None) -> bool:
        return _truth(self.eval(e, row)) is True

    def eval(self, e: n.Expr, row: Row | None, group: list[Row] | None = None) -> Value:
        if isinstance(e, n.Const):
            return e.value
        if isinstance(e, n.Param):
            if e.index > len(self.params):
                raise SqlError("42P02", f"there is no parameter ${e.index}")
            return self.params[e.index - 1]
        if isinstance(e, n.Column):
            return self._column(e, row)
        if isinstance(e, n.BinOp):
            if e.op in ("and", "or"):
                return self._logic(e, row, group)
            left, right = self.eval(e.left, row, group), self.eval(e.right, row, group)
            if e.op in ("=", "<>", "<", ">", "<=", ">="):
                return _compare(e.op, left, right)
            return _arith(e.op, left, right)
        if isinstance(e, n.UnaryOp):
            value = self.eval(e.operand, row, group)
            if e.op == "not":
                t = _truth(value)
                return None if t is None else not t
            return None if value is None else _arith("-", 0, value)
        if isinstance(e, n.IsNull):
            return (self.eval(e.operand, row, group) is None) != e.negated
        if isinstance(e, n.InList):
            return self._in(e, row, group)
        if isinstance(e, n.Case):
            return self._case(e, row, group)
        if isinstance(e, n.Cast):
            return V.cast(self.eval(e.operand, row, group), e.oid)
        if isinstance(e, n.Extract):
            return self._extract(e, row, group)
        if isinstance(e, n.Func):
            return self._call(e, row, group)
        raise SqlError("42601", "syntax error at or near \"*\"")

    def _column(self, e: n.Column, row: Row | None) -> Value:
        key = f"excluded.{e.name}" if e.table == "excluded" else e.name
        if row is None or key not in row:
            qualified = f"{e.table}.{e.name}" if e.table else e.name
            if row is not None and row.get("\0group") is not None:
                raise SqlError(GROUPING_ERROR, f'column "{qualified}" must appear in the GROUP BY clause or be '
                               "used in an aggregate function")
            raise SqlError(UNDEFINED_COLUMN, f'column "{qualified}" does not exist')
        return row[key]

    def _logic(self, e: n.BinOp, row: Row | None, group: list[Row] | None) -> Value:
        left = _truth(self.eval(e.left, row, group))
        if e.op == "and" and left is False:
            return False
        if e.op == "or" and left is True:
            return True
        right = _truth(self.eval(e.right, row, group))
        if e.op == "and":
            return False if right is False else (None if None in (left, right) else True)
        return True if right is True else (None if None in (left, right) else False)

    def _in(self, e: n.InList, row: Row | None, group: list[Row] | None) -> Value:
        value = self.eval(e.operand, row, group)
        saw_null = value is None
        for item in e.items:
            result = _compare("=", value, self.eval(item, row, group))
            if result:
                return not e.negated
            saw_null = saw_null or result is None
        return None if saw_null else e.negated

    def _case(self, e: n.Case, row: Row | None, group: list[Row] | None) -> Value:
        subject = None if e.operand is None else self.eval(e.operand, row, group)
        for cond, result in e.whens:
            if e.operand is None:
                hit = _truth(self.eval(cond, row, group)) is True
            else:
                hit = _compare("=", subject, self.eval(cond, row, group)) is True
            if hit:
                return self.eval(result, row, group)
        return None if e.default is None else self.eval(e.default, row, group)

    def _extract(self, e: n.Extract, row: Row | None, group: list[Row] | None) -> Value:
        value = self.eval(e.operand, row, group)
        if value is None:
            return None
        if e.field != "epoch" or not isinstance(value, Timestamp | Interval):
            raise SqlError("0A000", f'unit "{e.field}" not supported by the fake server')
        seconds = value.seconds + (V.BASE_EPOCH if isinstance(value, Timestamp) else 0.0)
        return Decimal(round(seconds * 1_000_000)).scaleb(-6)

    def _call(self, e: n.Func, row: Row | None, group: list[Row] | None) -> Value:
        if e.name in AGGREGATES:
            if group is None:
                raise SqlError(GROUPING_ERROR, "aggregate functions are not allowed here")
            return self._aggregate(e, group)
        known = FUNCTIONS.get(e.name)
        if known is None or e.star:
            raise SqlError(UNDEFINED_FUNCTION, f"function {e.name}() does not exist",
                           hint="No function matches the given name and argument types.")
        args = [self.eval(a, row, group) for a in e.args]
        return known[1](self.rt, args)

    def _aggregate(self, e: n.Func, group: list[Row]) -> Value:
        if e.name == "count" and e.star:
            return len(group)
        if len(e.args) != 1:
            raise SqlError(UNDEFINED_FUNCTION, f"function {e.name}() does not exist")
        values = [v for v in (self.eval(e.args[0], r) for r in group) if v is not None]
        if e.name == "count":
            return len(values)
        if not values:
            return None
        if e.name in ("min", "max"):
            try:
                return min(values) if e.name == "min" else max(values)  # type: ignore[type-var]
            except TypeError:
                raise SqlError(DATATYPE_MISMATCH, f"function {e.name} does not accept mixed types") from None
        total = sum((Decimal(str(v)) for v in values), Decimal(0))
        if e.name == "sum":
            return total
        return (total / len(values)).quantize(Decimal("1.0000000000000000"))
