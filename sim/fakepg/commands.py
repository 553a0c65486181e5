"""Running one parsed statement in a session: transaction control, settings, 2PC, and the queries.

This is where PostgreSQL's transaction-block rules live (what BEGIN inside
a block, COMMIT of a failed block, PREPARE TRANSACTION outside one answer),
where writes are refused on a server in recovery (and recorded, so the
simulator can flag a write that reached a replica), and where every
statement is counted by kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.fakepg import nodes as n
from sim.fakepg import queries
from sim.fakepg import values as V
from sim.fakepg.context import Context
from sim.fakepg.errors import (
    ABORTED_MESSAGE,
    ACTIVE_SQL_TRANSACTION,
    DUPLICATE_PREPARED_STATEMENT,
    IN_FAILED_TRANSACTION,
    INVALID_SAVEPOINT,
    NO_ACTIVE_SQL_TRANSACTION,
    READ_ONLY_TRANSACTION,
    SYNTAX_ERROR,
    UNDEFINED_PREPARED_STATEMENT,
    SqlError,
    read_only_error,
)
from sim.fakepg.exprs import PROBE_FUNCTIONS, WRITE_FUNCTIONS, functions_called
from sim.fakepg.paramtypes import infer
from sim.fakepg.result import Result
from sim.fakepg.txn import SavepointState
from sim.fakepg.values import Value

if TYPE_CHECKING:
    from sim.fakepg.session import BackendSession, PreparedStmt
    from sim.fakepg.txn import Transaction

WARNING = "WARNING"


def _select_functions(stmt: n.Select) -> list[str]:
    names: list[str] = []
    for item in stmt.items:
        names += functions_called(item.expr)
    for e in (stmt.where, stmt.limit, stmt.offset, *(o for o, _ in stmt.order)):
        if e is not None:
            names += functions_called(e)
    return names


def stat_kind(stmt: n.Statement) -> str:
    if isinstance(stmt, n.Select):
        if stmt.source is not None:
            return "read"
        return "probe" if set(_select_functions(stmt)) <= PROBE_FUNCTIONS else "other"
    if isinstance(stmt, n.WRITES):
        return "write"
    if isinstance(stmt, (n.Begin, n.Commit, n.Rollback, n.Savepoint, n.Release, n.RollbackTo, *n.TWO_PHASE)):
        return "txn"
    return "other"


def is_write(stmt: n.Statement) -> bool:
    if isinstance(stmt, n.WRITES + n.TWO_PHASE):
        return True
    if isinstance(stmt, n.Select):
        return stmt.for_update or any(f in WRITE_FUNCTIONS for f in _select_functions(stmt))
    return False


def _write_tag(stmt: n.Statement) -> str:
    if isinstance(stmt, n.Select) and not stmt.for_update:
        names = [f for f in _select_functions(stmt) if f in WRITE_FUNCTIONS]
        return f"{names[0]}()"
    return n.command_tag(stmt)


def refuse_writes(session: BackendSession, stmt: n.Statement, text: str, txn: Transaction, now: float) -> None:
    """25006 for a write on a server in recovery (recorded) or in a read-only transaction."""
    if not is_write(stmt):
        return
    db = session.database
    if db.in_recovery:
        db.writes_refused.append((now, text, session.pid))
        raise read_only_error(_write_tag(stmt))
    if (txn.read_only or txn.in_recovery) and not isinstance(stmt, n.CommitPrepared | n.RollbackPrepared):
        raise read_only_error(_write_tag(stmt))


def run(
    session: BackendSession,
    stmt: n.Statement,
    text: str,
    now: float,
    params: tuple[Value, ...] = (),
    param_types: tuple[int, ...] = (),
    sleeps_done: int = 0,
) -> Result:
    """Execute ``stmt`` in the session's current transaction (the caller opened one)."""
    txn = session.txn
    assert txn is not None
    if txn.failed and not isinstance(stmt, n.TRANSACTION_EXIT):
        raise SqlError(IN_FAILED_TRANSACTION, ABORTED_MESSAGE)
    handler = _HANDLERS.get(type(stmt))
    if handler is not None:
        return handler(session, stmt, text, now)
    refuse_writes(session, stmt, text, txn, now)
    if isinstance(stmt, n.ExecuteStatement):
        return _execute(session, stmt, now, sleeps_done)
    ctx = Context(session, txn, now, params, param_types, sleeps_done)
    if isinstance(stmt, n.Select):
        return queries.run_select(ctx, stmt)
    if isinstance(stmt, n.Insert):
        return queries.run_insert(ctx, stmt)
    if isinstance(stmt, n.Update):
        return queries.run_update(ctx, stmt)
    if isinstance(stmt, n.Delete):
        return queries.run_delete(ctx, stmt)
    if isinstance(stmt, n.CreateTable):
        return queries.run_create(ctx, stmt)
    raise SqlError(SYNTAX_ERROR, f'syntax error at or near "{text.split()[0] if text.split() else text}"')


# --- transaction control ----------------------------------------------------------------


def _begin(session: BackendSession, stmt: n.Begin, text: str, now: float) -> Result:
    txn = session.txn
    assert txn is not None
    result = Result(stmt.tag)
    if txn.explicit:
        result.notices.append((WARNING, ACTIVE_SQL_TRANSACTION, "there is already a transaction in progress"))
    txn.explicit = True
    if stmt.read_only is not None:
        _set_read_only(session, txn, stmt.read_only)
    return result


def _set_read_only(session: BackendSession, txn: Transaction, read_only: bool) -> None:
    if not read_only and session.database.in_recovery:
        raise SqlError(READ_ONLY_TRANSACTION, "cannot set transaction read-write mode during recovery")
    txn.read_only = read_only


def _commit(session: BackendSession, stmt: n.Commit, text: str, now: float) -> Result:
    txn = session.txn
    assert txn is not None
    if txn.failed:
        session.end_transaction(now, commit=False)
        return Result("ROLLBACK")
    result = Result("COMMIT")
    if not txn.explicit:
        result.notices.append((WARNING, NO_ACTIVE_SQL_TRANSACTION, "there is no transaction in progress"))
    session.end_transaction(now, commit=True)
    return result


def _rollback(session: BackendSession, stmt: n.Rollback, text: str, now: float) -> Result:
    txn = session.txn
    assert txn is not None
    result = Result("ROLLBACK")
    if not txn.explicit:
        result.notices.append((WARNING, NO_ACTIVE_SQL_TRANSACTION, "there is no transaction in progress"))
    session.end_transaction(now, commit=False)
    return result


def _require_block(session: BackendSession, what: str) -> Transaction:
    txn = session.txn
    assert txn is not None
    if not txn.explicit:
        raise SqlError(NO_ACTIVE_SQL_TRANSACTION, f"{what} can only be used in transaction blocks")
    return txn


def _savepoint(session: BackendSession, stmt: n.Savepoint, text: str, now: float) -> Result:
    txn = _require_block(session, "SAVEPOINT")
    txn.savepoints.append(SavepointState(stmt.name, dict(txn.writes), list(txn.creates),
                                         session.settings.snapshot()))
    return Result("SAVEPOINT")


def _find_savepoint(txn: Transaction, name: str) -> int:
    for i in range(len(txn.savepoints) - 1, -1, -1):
        if txn.savepoints[i].name == name:
            return i
    raise SqlError(INVALID_SAVEPOINT, f'savepoint "{name}" does not exist')


def _release(session: BackendSession, stmt: n.Release, text: str, now: float) -> Result:
    txn = _require_block(session, "RELEASE SAVEPOINT")
    del txn.savepoints[_find_savepoint(txn, stmt.name):]
    return Result("RELEASE")


def _rollback_to(session: BackendSession, stmt: n.RollbackTo, text: str, now: float) -> Result:
    txn = _require_block(session, "ROLLBACK TO SAVEPOINT")
    index = _find_savepoint(txn, stmt.name)
    sp = txn.savepoints[index]
    del txn.savepoints[index + 1:]
    txn.writes = dict(sp.writes)
    txn.creates = list(sp.creates)
    session.settings.restore(sp.settings)
    txn.failed = False
    return Result("ROLLBACK")


def _prepare_transaction(session: BackendSession, stmt: n.PrepareTransaction, text: str, now: float) -> Result:
    txn = session.txn
    assert txn is not None
    if not txn.explicit:
        return Result("ROLLBACK", notices=[(WARNING, NO_ACTIVE_SQL_TRANSACTION,
                                            "there is no transaction in progress")])
    if txn.failed:
        session.end_transaction(now, commit=False)
        return Result("ROLLBACK")
    refuse_writes(session, stmt, text, txn, now)
    session.txn = None
    session.restore_local_settings(txn)
    session.clear_portals()
    session.database.prepare(txn, stmt.gid, now, session.pid, session.user, session.database_name)
    return Result("PREPARE TRANSACTION")


def _finish_prepared(session: BackendSession, stmt: n.CommitPrepared | n.RollbackPrepared, text: str,
                     now: float) -> Result:
    txn = session.txn
    assert txn is not None
    tag = n.command_tag(stmt)
    if txn.explicit or session.multi_statement:
        raise SqlError(ACTIVE_SQL_TRANSACTION, f"{tag} cannot run inside a transaction block")
    refuse_writes(session, stmt, text, txn, now)
    session.database.finish_prepared(stmt.gid, isinstance(stmt, n.CommitPrepared), now, session.pid)
    return Result(tag)


# --- settings and session state ---------------------------------------------------------


def _set(session: BackendSession, stmt: n.SetVar, text: str, now: float) -> Result:
    name = stmt.name.lower()
    txn = session.txn
    assert txn is not None
    if stmt.local and not txn.explicit:
        session.settings.check_settable(name)
        return Result("SET", notices=[(WARNING, NO_ACTIVE_SQL_TRANSACTION,
                                       "SET LOCAL can only be used in transaction blocks")])
    if stmt.value is None:
        session.set_setting(name, None, stmt.local)
    else:
        session.set_setting(name, stmt.value, stmt.local)
    return Result("SET")


def _set_transaction(session: BackendSession, stmt: n.SetTransaction, text: str, now: float) -> Result:
    txn = session.txn
    assert txn is not None
    if stmt.session:
        if stmt.read_only is not None:
            session.settings.set("default_transaction_read_only", "on" if stmt.read_only else "off")
        return Result("SET")
    if not txn.explicit:
        return Result("SET", notices=[(WARNING, NO_ACTIVE_SQL_TRANSACTION,
                                       "SET TRANSACTION can only be used in transaction blocks")])
    if stmt.read_only is not None:
        _set_read_only(session, txn, stmt.read_only)
    return Result("SET")


def _reset(session: BackendSession, stmt: n.Reset, text: str, now: float) -> Result:
    if stmt.name is None:
        session.settings.reset_all()
    else:
        session.set_setting(stmt.name.lower(), None, False)
    return Result("RESET")


def _discard(session: BackendSession, stmt: n.Discard, text: str, now: float) -> Result:
    if stmt.what != "all":
        return Result(f"DISCARD {stmt.what.upper()}")
    txn = session.txn
    assert txn is not None
    if txn.explicit or session.multi_statement:
        raise SqlError(ACTIVE_SQL_TRANSACTION, "DISCARD ALL cannot run inside a transaction block")
    session.settings.reset_all()
    session.statements.clear()
    session.clear_portals()
    return Result("DISCARD ALL")


def _deallocate(session: BackendSession, stmt: n.Deallocate, text: str, now: float) -> Result:
    if stmt.name is None:
        session.statements.clear()
        return Result("DEALLOCATE ALL")
    if session.statements.pop(stmt.name, None) is None:
        raise SqlError(UNDEFINED_PREPARED_STATEMENT, f'prepared statement "{stmt.name}" does not exist')
    return Result("DEALLOCATE")


def _show(session: BackendSession, stmt: n.Show, text: str, now: float) -> Result:
    name = stmt.name.lower()
    if name == "all":
        from sim.fakepg.queries import _field

        fields = [_field("name", V.TEXT), _field("setting", V.TEXT), _field("description", V.TEXT)]
        rows: list[list[Value]] = [[k, session.show(k), ""] for k in sorted(session.settings.values)]
        return Result("SHOW", fields, rows)
    value = session.show(name)
    return Result("SHOW", queries.describe(stmt, ()), [[value]])


def _prepare_statement(session: BackendSession, stmt: n.PrepareStatement, text: str, now: float) -> Result:
    from sim.fakepg.session import PreparedStmt

    if stmt.name in session.statements:
        raise SqlError(DUPLICATE_PREPARED_STATEMENT, f'prepared statement "{stmt.name}" already exists')
    queries.check_relations(stmt.body, session.database, session.txn)
    types = infer(stmt.body, stmt.types)
    session.statements[stmt.name] = PreparedStmt(stmt.body_text, stmt.body, types, from_sql=True)
    return Result("PREPARE")


def _execute(session: BackendSession, stmt: n.ExecuteStatement, now: float, sleeps_done: int) -> Result:
    prepared: PreparedStmt | None = session.statements.get(stmt.name)
    if prepared is None or prepared.stmt is None:
        raise SqlError(UNDEFINED_PREPARED_STATEMENT, f'prepared statement "{stmt.name}" does not exist')
    if len(stmt.args) != len(prepared.param_types):
        raise SqlError(SYNTAX_ERROR, f'wrong number of parameters for prepared statement "{stmt.name}"',
                       detail=f"Expected {len(prepared.param_types)} parameters but got {len(stmt.args)}.")
    txn = session.txn
    assert txn is not None
    ctx = Context(session, txn, now, (), ())
    args = tuple(V.cast(ctx.evaluator.eval(e, None), oid)
                 for e, oid in zip(stmt.args, prepared.param_types, strict=True))
    return run(session, prepared.stmt, prepared.sql, now, args, prepared.param_types, sleeps_done)


_HANDLERS = {
    n.Begin: _begin,
    n.Commit: _commit,
    n.Rollback: _rollback,
    n.Savepoint: _savepoint,
    n.Release: _release,
    n.RollbackTo: _rollback_to,
    n.PrepareTransaction: _prepare_transaction,
    n.CommitPrepared: _finish_prepared,
    n.RollbackPrepared: _finish_prepared,
    n.SetVar: _set,
    n.SetTransaction: _set_transaction,
    n.Reset: _reset,
    n.Discard: _discard,
    n.Deallocate: _deallocate,
    n.Show: _show,
    n.PrepareStatement: _prepare_statement,
}
