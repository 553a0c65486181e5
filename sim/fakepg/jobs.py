"""A request in progress (a simple Query or an extended Execute) and the statement it is waiting in.

Statements run to completion at once unless they wait: ``pg_sleep`` until a
virtual time, or a row lock until its holder ends. A waiting statement is
re-run from the start when the wait is over, unless it is cancelled
(CancelRequest), times out (statement_timeout, lock_timeout) or would
deadlock; each of those ends it with PostgreSQL's error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.fakepg import commands
from sim.fakepg.errors import (
    DEADLOCK_DETECTED,
    LOCK_NOT_AVAILABLE,
    QUERY_CANCELED,
    LockWait,
    Sleep,
    SqlError,
)
from sim.fakepg.nodes import Statement
from sim.fakepg.result import Result
from sim.fakepg.settings import timeout_seconds
from sim.fakepg.values import Value

if TYPE_CHECKING:
    from sim.fakepg.extended import Portal
    from sim.fakepg.session import BackendSession


@dataclass(slots=True)
class Wait:
    since: float
    until: float | None = None  # pg_sleep ends
    holder: str | None = None  # lock holder's token
    woken: bool = False
    cancelled: bool = False


@dataclass(slots=True)
class Job:
    started: float | None = None  # when the current statement began (statement_timeout)
    sleeps_done: int = 0
    wait: Wait | None = None

    def next_statement(self) -> None:
        self.started = None
        self.sleeps_done = 0
        self.wait = None


@dataclass(slots=True)
class QueryJob(Job):
    statements: tuple[tuple[Statement, str], ...] = ()
    index: int = 0


@dataclass(slots=True)
class ExecuteJob(Job):
    portal: Portal | None = None
    max_rows: int = 0


def _timeout(session: BackendSession, name: str) -> float:
    try:
        return timeout_seconds(session.settings.values.get(name, "0"))
    except SqlError:
        return 0.0


def deadlines(session: BackendSession, job: Job) -> list[float]:
    """Times at which the waiting statement must be looked at again."""
    wait = job.wait
    if wait is None:
        return []
    out: list[float] = []
    if wait.until is not None:
        out.append(wait.until)
    statement_timeout = _timeout(session, "statement_timeout")
    if statement_timeout > 0 and job.started is not None:
        out.append(job.started + statement_timeout)
    lock_timeout = _timeout(session, "lock_timeout")
    if wait.holder is not None and lock_timeout > 0:
        out.append(wait.since + lock_timeout)
    return out


def _stop_waiting(session: BackendSession, job: Job) -> None:
    wait = job.wait
    job.wait = None
    if wait is not None and wait.holder is not None and not wait.woken and session.txn is not None:
        session.database.locks.stop_waiting(session.txn.token)


def attempt(
    session: BackendSession,
    now: float,
    job: Job,
    stmt: Statement,
    text: str,
    params: tuple[Value, ...] = (),
    param_types: tuple[int, ...] = (),
) -> Result | None:
    """Run (or resume) the job's current statement: its Result, or None while it waits."""
    wait = job.wait
    if wait is not None:
        statement_timeout = _timeout(session, "statement_timeout")
        lock_timeout = _timeout(session, "lock_timeout")
        if wait.cancelled:
            _stop_waiting(session, job)
            raise SqlError(QUERY_CANCELED, "canceling statement due to user request")
        if statement_timeout > 0 and job.started is not None and now >= job.started + statement_timeout:
            _stop_waiting(session, job)
            raise SqlError(QUERY_CANCELED, "canceling statement due to statement timeout")
        if wait.holder is not None:
            if not wait.woken and lock_timeout > 0 and now >= wait.since + lock_timeout:
                _stop_waiting(session, job)
                raise SqlError(LOCK_NOT_AVAILABLE, "canceling statement due to lock timeout")
            if not wait.woken:
                return None
        elif wait.until is not None:
            if now < wait.until:
                return None
            job.sleeps_done += 1
        job.wait = None
    if job.started is None:
        job.started = now
        session.database.count(commands.stat_kind(stmt))
    session.ensure_txn(now)
    try:
        return commands.run(session, stmt, text, now, params, param_types, job.sleeps_done)
    except Sleep as sleep:
        job.wait = Wait(now, until=sleep.until)
        return None
    except LockWait as lock:
        txn = session.txn
        assert txn is not None
        locks = session.database.locks
        if locks.would_deadlock(txn.token, lock.holder):
            raise SqlError(DEADLOCK_DETECTED, "deadlock detected",
                           detail=f"Process {session.pid} waits for a row lock held by {lock.holder}, which "
                           "waits for this transaction.") from None
        locks.wait(txn.token, lock.holder, session)
        job.wait = Wait(now, holder=lock.holder)
        return None
