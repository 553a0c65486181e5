"""The parsed form of the SQL the fake server understands: immutable expression and statement nodes.

Nodes are frozen dataclasses so a parse can be cached by query text and
shared by every session, the way a prepared statement's plan is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.fakepg.values import Value

# --- expressions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Const:
    value: Value
    oid: int


@dataclass(frozen=True, slots=True)
class Param:
    index: int  # 1-based, as in $1


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    table: str | None = None


@dataclass(frozen=True, slots=True)
class Star:
    """``*`` in a select list or ``count(*)``."""


@dataclass(frozen=True, slots=True)
class Func:
    name: str  # lower case, without a pg_catalog. prefix
    args: tuple[Expr, ...]
    star: bool = False


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # + - * / % || = <> < > <= >= and or
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class UnaryOp:
    op: str  # - or not
    operand: Expr


@dataclass(frozen=True, slots=True)
class IsNull:
    operand: Expr
    negated: bool


@dataclass(frozen=True, slots=True)
class InList:
    operand: Expr
    items: tuple[Expr, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Case:
    operand: Expr | None
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None


@dataclass(frozen=True, slots=True)
class Extract:
    field: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Cast:
    operand: Expr
    oid: int
    type_name: str


Expr = Const | Param | Column | Star | Func | BinOp | UnaryOp | IsNull | InList | Case | Extract | Cast


@dataclass(frozen=True, slots=True)
class SelectItem:
    expr: Expr
    alias: str | None = None


# --- statements -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    tag: str  # "BEGIN" or "START TRANSACTION"
    read_only: bool | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    pass


@dataclass(frozen=True, slots=True)
class Rollback:
    pass


@dataclass(frozen=True, slots=True)
class Savepoint:
    name: str


@dataclass(frozen=True, slots=True)
class Release:
    name: str


@dataclass(frozen=True, slots=True)
class RollbackTo:
    name: str


@dataclass(frozen=True, slots=True)
class PrepareTransaction:
    gid: str


@dataclass(frozen=True, slots=True)
class CommitPrepared:
    gid: str


@dataclass(frozen=True, slots=True)
class RollbackPrepared:
    gid: str


@dataclass(frozen=True, slots=True)
class SetVar:
    name: str
    value: str | None  # None: DEFAULT
    local: bool = False


@dataclass(frozen=True, slots=True)
class SetTransaction:
    """SET TRANSACTION (this transaction) or SET SESSION CHARACTERISTICS AS TRANSACTION."""

    read_only: bool | None
    session: bool = False


@dataclass(frozen=True, slots=True)
class Reset:
    name: str | None  # None: ALL


@dataclass(frozen=True, slots=True)
class Discard:
    what: str  # all, plans, sequences, temp


@dataclass(frozen=True, slots=True)
class Deallocate:
    name: str | None  # None: ALL


@dataclass(frozen=True, slots=True)
class Show:
    name: str


@dataclass(frozen=True, slots=True)
class Select:
    items: tuple[SelectItem, ...]
    source: str | None = None
    where: Expr | None = None
    order: tuple[tuple[Expr, bool], ...] = ()  # (expression, descending)
    limit: Expr | None = None
    offset: Expr | None = None
    for_update: bool = False


@dataclass(frozen=True, slots=True)
class Insert:
    table: str
    columns: tuple[str, ...] | None
    rows: tuple[tuple[Expr, ...], ...]
    # None: no ON CONFLICT; (): DO NOTHING; else DO UPDATE SET assignments.
    conflict: tuple[tuple[str, Expr], ...] | None = None
    returning: tuple[SelectItem, ...] = ()


@dataclass(frozen=True, slots=True)
class Update:
    table: str
    assignments: tuple[tuple[str, Expr], ...]
    where: Expr | None = None
    returning: tuple[SelectItem, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    table: str
    where: Expr | None = None
    returning: tuple[SelectItem, ...] = ()


@dataclass(frozen=True, slots=True)
class CreateTable:
    name: str
    if_not_exists: bool = False


@dataclass(frozen=True, slots=True)
class PrepareStatement:
    """SQL-level PREPARE name [(types)] AS statement."""

    name: str
    types: tuple[int, ...]
    body: Statement
    body_text: str


@dataclass(frozen=True, slots=True)
class ExecuteStatement:
    name: str
    args: tuple[Expr, ...]


Statement = (
    Begin | Commit | Rollback | Savepoint | Release | RollbackTo | PrepareTransaction | CommitPrepared
    | RollbackPrepared | SetVar | SetTransaction | Reset | Discard | Deallocate | Show | Select | Insert
    | Update | Delete | CreateTable | PrepareStatement | ExecuteStatement
)

WRITES = (Insert, Update, Delete, CreateTable)
# IsTransactionExitStmt: allowed in a failed block.
TRANSACTION_EXIT = (Commit, Rollback, RollbackTo, PrepareTransaction)
TWO_PHASE = (PrepareTransaction, CommitPrepared, RollbackPrepared)


def command_tag(stmt: Statement) -> str:
    """The command name PostgreSQL uses in messages such as 'cannot execute X in a read-only transaction'."""
    names: dict[type, str] = {
        Insert: "INSERT", Update: "UPDATE", Delete: "DELETE", CreateTable: "CREATE TABLE",
        PrepareTransaction: "PREPARE TRANSACTION", CommitPrepared: "COMMIT PREPARED",
        RollbackPrepared: "ROLLBACK PREPARED", Select: "SELECT", Commit: "COMMIT", Rollback: "ROLLBACK",
        Savepoint: "SAVEPOINT", Release: "RELEASE", RollbackTo: "ROLLBACK", SetVar: "SET",
        SetTransaction: "SET", Reset: "RESET", Discard: "DISCARD", Deallocate: "DEALLOCATE", Show: "SHOW",
        PrepareStatement: "PREPARE", ExecuteStatement: "EXECUTE",
    }
    if isinstance(stmt, Begin):
        return stmt.tag
    if isinstance(stmt, Select) and stmt.for_update:
        return "SELECT FOR UPDATE"
    return names[type(stmt)]
