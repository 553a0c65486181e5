"""The extended query protocol: Parse, Bind, Describe, Execute, Close, Flush and Sync.

Messages up to a Sync share one implicit transaction; after an error every
message but Sync (and Terminate) is discarded, and the Sync answers
ReadyForQuery. Named statements and portals live until closed (portals
until their transaction ends), the unnamed ones until replaced. Execute
honours ``max_rows`` with PortalSuspended, and may wait (pg_sleep, a row
lock) like a simple query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from sim.fakepg import jobs, queries
from sim.fakepg import nodes as n
from sim.fakepg import values as V
from sim.fakepg.errors import (
    ABORTED_MESSAGE,
    DUPLICATE_CURSOR,
    DUPLICATE_PREPARED_STATEMENT,
    IN_FAILED_TRANSACTION,
    PROTOCOL_VIOLATION,
    UNDEFINED_CURSOR,
    UNDEFINED_PREPARED_STATEMENT,
    SqlError,
)
from sim.fakepg.paramtypes import infer
from sim.fakepg.result import Result
from sim.fakepg.sql import parse_one

if TYPE_CHECKING:
    from sim.fakepg.session import BackendSession, PreparedStmt

MESSAGES = frozenset({fe.PARSE, fe.BIND, fe.DESCRIBE, fe.EXECUTE, fe.CLOSE, fe.SYNC, fe.FLUSH})


@dataclass(slots=True)
class Portal:
    name: str
    prepared: PreparedStmt
    params: tuple[V.Value, ...]
    result_formats: tuple[int, ...]
    result: Result | None = None
    sent: int = 0
    started: bool = False
    completed: bool = False


def _statement(session: BackendSession, name: str) -> PreparedStmt:
    found = session.statements.get(name)
    if found is None:
        if name:
            raise SqlError(UNDEFINED_PREPARED_STATEMENT, f'prepared statement "{name}" does not exist')
        raise SqlError(UNDEFINED_PREPARED_STATEMENT, "unnamed prepared statement does not exist")
    return found


def _portal(session: BackendSession, name: str) -> Portal:
    found = session.portals.get(name)
    if found is None:
        raise SqlError(UNDEFINED_CURSOR, f'portal "{name}" does not exist')
    return found


def _check_not_aborted(session: BackendSession, stmt: n.Statement | None) -> None:
    txn = session.txn
    if txn is not None and txn.failed and not isinstance(stmt, n.TRANSACTION_EXIT):
        raise SqlError(IN_FAILED_TRANSACTION, ABORTED_MESSAGE)


def handle(session: BackendSession, now: float, mtype: int, body: bytes) -> None:
    try:
        _handle(session, now, mtype, body)
    except SqlError as err:
        session.error(err)
        session.abort_transaction()
        session.skip_till_sync = True


def _handle(session: BackendSession, now: float, mtype: int, body: bytes) -> None:
    if mtype == fe.SYNC:
        session.skip_till_sync = False
        txn = session.txn
        if txn is not None and not txn.explicit:
            session.end_transaction(now, commit=True)
        session.ready(now)
    elif mtype == fe.FLUSH:
        return
    elif mtype == fe.PARSE:
        _parse(session, now, fe.parse_parse(body))
    elif mtype == fe.BIND:
        _bind(session, now, fe.parse_bind(body))
    elif mtype == fe.DESCRIBE:
        _describe(session, fe.parse_describe(body))
    elif mtype == fe.EXECUTE:
        msg = fe.parse_execute(body)
        portal = _portal(session, msg.portal)
        _check_not_aborted(session, portal.prepared.stmt)
        session.job = jobs.ExecuteJob(portal=portal, max_rows=msg.max_rows)
    elif mtype == fe.CLOSE:
        msg = fe.parse_close(body)
        if msg.kind == "S":
            session.statements.pop(msg.name, None)
        else:
            session.portals.pop(msg.name, None)
        session.emit(be.close_complete())


def _parse(session: BackendSession, now: float, msg: fe.Parse) -> None:
    from sim.fakepg.session import PreparedStmt

    if msg.name and msg.name in session.statements:
        raise SqlError(DUPLICATE_PREPARED_STATEMENT, f'prepared statement "{msg.name}" already exists')
    parsed = parse_one(msg.sql)
    stmt = None if parsed is None else parsed[0]
    _check_not_aborted(session, stmt)
    types: tuple[int, ...] = tuple(msg.param_types)
    if stmt is not None:
        queries.check_relations(stmt, session.database, session.txn)
        types = infer(stmt, types)
    session.statements[msg.name] = PreparedStmt(msg.sql, stmt, types)
    session.emit(be.parse_complete())


def _decode(value: bytes | None, fmt: int, oid: int) -> V.Value:
    if value is None:
        return None
    if fmt == 1:
        return V.from_binary(value, oid)
    try:
        text = value.decode()
    except UnicodeDecodeError:
        raise SqlError("22021", 'invalid byte sequence for encoding "UTF8"') from None
    return V.from_text(text, oid)


def _bind(session: BackendSession, now: float, msg: fe.Bind) -> None:
    prepared = _statement(session, msg.statement)
    _check_not_aborted(session, prepared.stmt)
    types = prepared.param_types
    if len(msg.params) != len(types):
        label = f'"{msg.statement}"' if msg.statement else '""'
        raise SqlError(PROTOCOL_VIOLATION, f"bind message supplies {len(msg.params)} parameters, but prepared "
                       f"statement {label} requires {len(types)}")
    formats = msg.param_formats
    params = tuple(_decode(v, formats[0] if len(formats) == 1 else (formats[i] if formats else 0), types[i])
                   for i, v in enumerate(msg.params))
    if msg.portal and msg.portal in session.portals:
        raise SqlError(DUPLICATE_CURSOR, f'portal "{msg.portal}" already exists')
    fields = queries.describe(prepared.stmt, types) if prepared.stmt is not None else None
    columns = len(fields) if fields is not None else 0
    if len(msg.result_formats) > 1 and len(msg.result_formats) != columns:
        raise SqlError(PROTOCOL_VIOLATION, f"bind message has {len(msg.result_formats)} result formats but "
                       f"query has {columns} columns")
    session.ensure_txn(now)
    session.portals[msg.portal] = Portal(msg.portal, prepared, params, tuple(msg.result_formats))
    session.emit(be.bind_complete())


def _with_formats(fields: list[be.Field], formats: tuple[int, ...]) -> list[be.Field]:
    out = []
    for i, f in enumerate(fields):
        fmt = 0 if not formats else (formats[0] if len(formats) == 1 else formats[i])
        out.append(be.Field(f.name, f.table_oid, f.column, f.type_oid, f.type_size, f.type_mod, fmt))
    return out


def _describe(session: BackendSession, msg: fe.Describe) -> None:
    if msg.kind == "S":
        prepared = _statement(session, msg.name)
        session.emit(be.parameter_description(prepared.param_types))
        fields = queries.describe(prepared.stmt, prepared.param_types) if prepared.stmt is not None else None
        session.emit(be.row_description(fields) if fields is not None else be.no_data())
        return
    portal = _portal(session, msg.name)
    stmt = portal.prepared.stmt
    fields = queries.describe(stmt, portal.prepared.param_types) if stmt is not None else None
    if fields is None:
        session.emit(be.no_data())
    else:
        session.emit(be.row_description(_with_formats(fields, portal.result_formats)))


def step_execute(session: BackendSession, now: float, job: jobs.ExecuteJob) -> bool:
    """Run the portal's statement (once) and send its rows; False while it waits."""
    portal = job.portal
    assert portal is not None
    prepared = portal.prepared
    if portal.result is None:
        if prepared.stmt is None:
            portal.result = Result("", empty=True)
        else:
            try:
                result = jobs.attempt(session, now, job, prepared.stmt, prepared.sql, portal.params,
                                      prepared.param_types)
            except SqlError as err:
                _failed(session, err)
                return True
            if result is None:
                return False
            portal.result = result
    result = portal.result
    if result.empty:
        session.emit(be.empty_query_response())
        return True
    if not portal.started:
        for severity, code, message in result.notices:
            session.notice(severity, code, message)
    portal.started = True
    rows = result.rows[portal.sent:]
    batch = rows[:job.max_rows] if job.max_rows > 0 else rows
    try:
        data = session.encode_rows(result, batch, portal.result_formats)
    except SqlError as err:
        _failed(session, err)
        return True
    session.emit(data)
    portal.sent += len(batch)
    if job.max_rows > 0 and len(batch) == job.max_rows:
        # Like PostgreSQL, a full batch suspends even if it happened to hold the last row.
        session.emit(be.portal_suspended())
        return True
    tag = result.tag
    if tag.startswith("SELECT "):
        tag = f"SELECT {len(batch)}"  # rows fetched by this Execute
    elif portal.completed:
        tag = tag.rsplit(" ", 1)[0] + " 0"
    session.emit(be.command_complete(tag))
    portal.completed = True
    return True


def _failed(session: BackendSession, err: SqlError) -> None:
    session.error(err)
    session.abort_transaction()
    session.skip_till_sync = True
