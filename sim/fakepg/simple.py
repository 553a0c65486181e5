"""The simple query protocol: one Query message, its statements, one ReadyForQuery.

The statements of one Query run in one implicit transaction unless they
open a block themselves; the first error ends the message (a block becomes
failed, an implicit transaction is rolled back), as in PostgreSQL's
exec_simple_query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdog_ev.wire import backend as be
from sim.fakepg import jobs
from sim.fakepg.errors import SqlError
from sim.fakepg.sql import parse_script

if TYPE_CHECKING:
    from sim.fakepg.session import BackendSession


def start(session: BackendSession, now: float, text: str) -> None:
    try:
        statements = parse_script(text)
    except SqlError as err:
        session.database.count("other")
        session.error(err)
        session.abort_transaction()
        session.ready(now)
        return
    if not statements:
        # An empty query (";" is the proxy's health check): EmptyQueryResponse, no transaction.
        session.database.count("probe")
        session.emit(be.empty_query_response())
        session.ready(now)
        return
    session.multi_statement = len(statements) > 1
    session.job = jobs.QueryJob(statements=statements)


def step(session: BackendSession, now: float, job: jobs.QueryJob) -> bool:
    """Run statements until the message is done (True) or one of them waits (False)."""
    while job.index < len(job.statements):
        stmt, text = job.statements[job.index]
        try:
            result = jobs.attempt(session, now, job, stmt, text)
        except SqlError as err:
            session.error(err)
            session.abort_transaction()
            _finish(session, now)
            return True
        if result is None:
            return False
        session.emit_result(result)
        job.index += 1
        job.next_statement()
    txn = session.txn
    if txn is not None and not txn.explicit:
        session.end_transaction(now, commit=True)
    _finish(session, now)
    return True


def _finish(session: BackendSession, now: float) -> None:
    session.multi_statement = False
    session.ready(now)
