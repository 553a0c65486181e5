"""Client messages on their way to the server it holds, in transaction mode.

Each message is read whole so that the proxy can keep its books: statements
that change session state are remembered until the server says whether they
ran (see client_effects.py), and named prepared statements are renamed to
their proxy-global names, with a Parse injected where the server lacks one
(see prepared.py). Anything not understood is forwarded as is, for PostgreSQL
to judge.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from pgdog_ev.sql import Analysis, analyze
from pgdog_ev.sql import Kind as Sql
from pgdog_ev.sql.analysis import OTHER_ANALYSIS
from pgdog_ev.sql.model import OTHER_STATEMENT
from pgdog_ev.sql.prefilter import plain_statement
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire._codec import u32_at
from state.client_effects import SEGMENT_END, SessionEffects, pins
from state.events import Kind, Machine
from state.prepared import NOOP_CLOSE
from state.reasons import Reason
from state.sql_prepare import prepare_rest, rewrite_execute

if TYPE_CHECKING:
    from state.prepared import GlobalStatement
    from state.server import ServerSession


MEMO_LIMIT: Final = 4096
# A Query body with a NUL before its end is not one string: PostgreSQL answers it with 08P01
# ("invalid message format"), so the proxy leaves it to the server, answering, tracking and
# replaying none of it (a text with a NUL cannot even be sent again as a Query of its own).
MALFORMED_TEXT: Final = Analysis((OTHER_STATEMENT,), "invalid message format")
_HEADER: Final = struct.Struct("!BI").pack
_PARSE: Final = fe.PARSE
_BIND: Final = fe.BIND
_DESCRIBE: Final = fe.DESCRIBE
_EXECUTE: Final = fe.EXECUTE
_ERROR: Final = be.ERROR_RESPONSE
_SYNC: Final = fe.SYNC


# batch_shape copies what follows the first message (Bind, Describe, Execute, Sync) to read it as
# bytes, which mypyc indexes natively; a longer rest (large Bind parameters) is left to the
# scanner's general path, where reading it costs little beside moving it.
BATCH_REST_LIMIT: Final = 8192


def batch_shape(data: memoryview, max_len: int) -> int:
    """Where the first message ends if ``data`` is exactly a driver's usual extended-protocol
    request, each message whole: a Parse and a Bind of the unnamed portal and statement, or a
    lone Bind (of a prepared statement); then perhaps a Describe of the unnamed portal or
    statement, an Execute and a Sync. Else -1. Lengths are checked as the scanner checks them;
    anything else (a second batch, a named portal, a cut, more than BATCH_REST_LIMIT bytes after
    the first message) is -1."""
    n = len(data)
    if n < 5:
        return -1
    limit = max_len + 4
    first = data[0]
    length = (data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]  # no slice, no int object
    if length < 4 or length > limit:
        return -1
    first_end = 1 + length
    if first != _PARSE and first != _BIND:
        return -1
    if n - first_end > BATCH_REST_LIMIT:
        return -1
    rest = bytes(data[first_end:])
    n = len(rest)
    pos = 0
    if first == _PARSE:
        if pos + 7 > n or rest[pos] != _BIND or rest[pos + 5] != 0 or rest[pos + 6] != 0:
            return -1
        length = u32_at(rest, pos + 1)
        if length < 6 or length > limit:
            return -1
        pos += 1 + length
    if pos + 5 > n:
        return -1
    if rest[pos] == _DESCRIBE:
        if pos + 7 > n or u32_at(rest, pos + 1) != 6 or rest[pos + 6] != 0:
            return -1
        kind = rest[pos + 5]
        if kind != 0x50 and kind != 0x53:  # P, S
            return -1
        pos += 7
        if pos + 5 > n:
            return -1
    if rest[pos] != _EXECUTE:
        return -1
    length = u32_at(rest, pos + 1)
    if length < 4 or length > limit:
        return -1
    pos += 1 + length
    if pos + 5 != n or rest[pos] != _SYNC or u32_at(rest, pos + 1) != 4:  # Sync, in place
        return -1
    return first_end


def decode_text(raw: bytes) -> str:
    """Query text as str, leniently: it only informs tracking, the bytes are forwarded as sent."""
    return raw.decode("utf-8", "surrogateescape")


def query_text(body: memoryview) -> str:
    """The text of a Query message body (NUL-terminated)."""
    return decode_text(bytes(body[:-1]))


class MessageRouting(SessionEffects):
    _memo_text: bytes  # b"\xff" at first: never a Query text (those end before a NUL and are UTF-8)
    _memo: Analysis

    def _to_server(self, now: float, server: ServerSession, mtype: int, body: memoryview) -> None:
        msg = _HEADER(mtype, len(body) + 4) + body
        if mtype == fe.QUERY:
            self.queries += 1
            server.copy_may_begin(False)
            analysis = self._analyze(body)
            # The Query ends the implicit transaction of the unsynced messages before it: what
            # they did stands if it succeeds, and is rolled back with it if it fails.
            segment = self._segment
            self._segment = None
            if analysis is OTHER_ANALYSIS:
                server.expect_response(None if segment is None else [*segment, SEGMENT_END])
            else:
                refusal = self._refusal(analysis)
                if refusal is not None:
                    if server.txn_status != b"I" or server.owed or server.unsynced:
                        # (In a transaction, now or at its turn; or in the implicit one of the
                        # unsynced messages before it, which an error in a Query rolls back,
                        # their effects with it.)
                        server.abort_transaction()
                    server.answer(refusal)
                    return
                if self.full_sql:
                    sql = query_text(body)
                    reply = self._sql_prepare(analysis, sql)
                    if reply is not None:
                        if reply[0] == _ERROR:
                            # PostgreSQL's own error would fail the transaction, or the implicit
                            # one of the messages before it: so does the proxy's, as a refusal.
                            if server.txn_status != b"I" or server.owed or server.unsynced:
                                server.abort_transaction()
                        else:
                            self._segment = segment  # (the answer's empty query commits them)
                        server.answer(reply)
                        return
                    rewritten = self._sql_execute(server, analysis, sql, segment)
                    if rewritten is not None:
                        server.io.send(rewritten)
                        return
                if self.rename and self._deallocate(analysis):
                    self._segment = segment
                    server.answer(
                        be.command_complete("DEALLOCATE" if analysis.statements[0].name else "DEALLOCATE ALL")
                    )
                    return
                server.expect_response([analysis] if segment is None else [*segment, SEGMENT_END, analysis])
            server.io.send(msg)
        elif mtype == fe.SYNC:
            effects = self._segment
            self._segment = None
            server.expect_sync(effects)
            server.io.send(msg)
        elif mtype == fe.BIND:
            server.unsynced = True
            server.pool.stats.bind_count += 1
            if self.rename:
                msg = self._bind(server, msg, body)
            else:
                self._effect(self._unnamed if not fe.statement_name_of_bind(body) else OTHER_ANALYSIS)
            server.io.send(msg)
        elif mtype == fe.EXECUTE:
            server.unsynced = True
            server.copy_may_begin(True)
            server.io.send(msg)
        elif mtype == fe.PARSE:
            refusal = self._refused_parse(body)
            if refusal is not None:
                # Refused in its turn, by the server (a stand-in that fails): what was sent before
                # it is answered first and an error there wins, the transaction or the batch
                # fails with it, and the unnamed statement goes as PostgreSQL's Parse drops it.
                # The rest of its batch goes nowhere; its Sync goes to the server.
                self._skip_to_sync = True
                server.refuse_in_turn(refusal, body[0] != 0)
                return
            server.unsynced = True
            server.pool.stats.client_parse_count += 1
            self._parse(server, msg, body)
        elif mtype == fe.DESCRIBE:
            server.unsynced = True
            if self.rename and not (len(body) == 2 and body[1] == 0 and body[:1] in (b"S", b"P")):
                # (The unnamed statement or portal goes as it is, undecoded.)
                describe = fe.parse_describe(body)
                stmt = self.statements.get(describe.name) if describe.kind == "S" and describe.name else None
                if stmt is not None:
                    server.ensure_prepared(stmt)
                    msg = fe.describe("S", stmt.name)
            server.io.send(msg)
        elif mtype == fe.CLOSE:
            server.unsynced = True
            if self.rename:
                close = fe.parse_close(body)
                if close.kind == "S" and close.name:
                    # Only this client's name goes: others may share the statement.
                    self._drop_statement(close.name)
                    msg = NOOP_CLOSE
            server.forward_completion(msg)
        elif mtype == fe.FUNCTION_CALL:
            self.queries += 1
            segment = self._segment  # (its implicit transaction ends with the call's, as at a Query)
            self._segment = None
            server.expect_response(None if segment is None else [*segment, SEGMENT_END])
            server.io.send(msg)
        else:
            # Flush, CopyDone, CopyFail, and anything PostgreSQL itself should judge.
            if mtype == fe.COPY_DONE or mtype == fe.COPY_FAIL:
                server.copy_end_sent(mtype == fe.COPY_FAIL)
            server.io.send(msg)

    def _analyze(self, body: memoryview) -> Analysis:
        """The statements of a Query body (decoded leniently: this only informs tracking).

        The last short text is remembered: a query that waited for a server is looked at
        twice (can the proxy answer it? then, on the server), and clients repeat texts."""
        raw = bytes(body[:-1])
        if raw == self._memo_text:
            return self._memo
        if plain_statement(raw):
            analysis = OTHER_ANALYSIS
        elif b"\0" in raw:
            analysis = MALFORMED_TEXT
        else:
            analysis = analyze(decode_text(raw))
        if len(raw) <= MEMO_LIMIT:
            self._memo_text = raw
            self._memo = analysis
        return analysis

    def _effect(self, analysis: Analysis) -> None:
        if analysis is not OTHER_ANALYSIS:
            if self._segment is None:
                self._segment = [analysis]
            else:
                self._segment.append(analysis)

    def _parse(self, server: ServerSession, msg: bytes, body: memoryview) -> None:
        if len(body) > 0 and body[0] == 0 and self._parse_unnamed(msg):
            server.forward_completion(msg)
            return
        parse = fe.parse_parse(body)
        if not parse.name:
            self._unnamed = analyze(parse.sql)
            self._unnamed_sql = b"\xff"
        if not self.rename or not parse.name:
            server.forward_completion(msg)
            return
        existing = self.statements.get(parse.name)
        if existing is not None:
            # PostgreSQL refuses a name in use: parsing the global name where it
            # exists makes the server say so, in its place in the pipeline.
            server.ensure_prepared(existing)
            server.forward_completion(existing.parse)
            return
        server.forward_parse(self._register(parse), parse.name)

    _unnamed_sql: bytes  # b"\xff" at first: never valid UTF-8, no text matches before the first Parse

    def _parse_unnamed(self, msg: bytes) -> bool:
        """Analyse a Parse of the unnamed statement from its bytes: drivers send the same text
        again and again (each execution of an extended-protocol query), so an unchanged text
        reuses the last analysis. False when the message is not well formed: the full parser
        then says what is wrong with it."""
        end = msg.find(b"\0", 6)
        if end < 0 or len(msg) < end + 3:
            return False
        if len(msg) != end + 3 + 4 * ((msg[end + 1] << 8) | msg[end + 2]):
            return False
        memo = self._unnamed_sql
        if end - 6 != len(memo) or not msg.startswith(memo, 6):  # compared in place: no slice
            sql = msg[6:end]
            try:
                text = sql.decode("utf-8")
            except UnicodeDecodeError:
                return False
            self._unnamed = analyze(text)
            self._unnamed_sql = sql if len(sql) <= MEMO_LIMIT else b"\xff"
        return True

    def _register(self, parse: fe.Parse) -> GlobalStatement:
        stmt = self.directory.statements.acquire(parse.sql, parse.param_types)
        self.statements[parse.name] = stmt
        return stmt

    def _bind(self, server: ServerSession, msg: bytes, body: memoryview) -> bytes:
        # Unnamed portal and statement (two empty names), the usual Bind of a driver: no decoding.
        name = "" if body[:2] == b"\0\0" else fe.statement_name_of_bind(body)
        if not name:
            self._effect(self._unnamed)
            return msg
        stmt = self.statements.get(name)
        if stmt is None:
            return msg  # the server reports the unknown name
        self._effect(stmt.analysis)
        server.ensure_prepared(stmt)
        raw = bytes(body)
        portal_end = raw.index(0) + 1
        rest = raw[raw.index(0, portal_end) + 1 :]
        new = raw[:portal_end] + stmt.name.encode() + b"\0" + rest
        return b"B" + (len(new) + 4).to_bytes(4, "big") + new

    def forget_statement(self, name: str, stmt: str) -> None:
        """The server failed or skipped this client's Parse of ``name`` as the shared statement
        ``stmt`` (an error before it in its batch): as in PostgreSQL, the statement does not
        exist, unless the name was given to another statement since."""
        current = self.statements.get(name)
        if current is not None and current.name == stmt:
            self._drop_statement(name)

    def _drop_statement(self, name: str) -> None:
        stmt = self.statements.pop(name, None)
        if stmt is not None:
            self.directory.statements.release(stmt)

    def _drop_all_statements(self) -> None:
        for stmt in self.statements.values():
            self.directory.statements.release(stmt)
        self.statements.clear()
        for stmt in self.sql_statements.values():
            self.directory.statements.release(stmt)
        self.sql_statements.clear()

    def _sql_prepare(self, analysis: Analysis, sql: str) -> bytes | None:
        """A lone SQL PREPARE, registered under its global name; the reply to send, or None."""
        statements = analysis.statements
        if len(statements) != 1 or statements[0].kind is not Sql.PREPARE or not statements[0].name:
            return None
        rest = prepare_rest(sql)
        if rest is None:
            return None
        name = statements[0].name
        if name in self.sql_statements:
            self.errors += 1
            return be.error_response(
                codes.DUPLICATE_PREPARED_STATEMENT, f'prepared statement "{name}" already exists'
            )
        self.sql_statements[name] = self.directory.statements.acquire_sql(rest)
        return be.command_complete("PREPARE")

    def _sql_execute(
        self, server: ServerSession, analysis: Analysis, sql: str, segment: list[Analysis] | None
    ) -> bytes | None:
        """A lone EXECUTE of a registered name: the rewritten Query, its PREPARE injected if needed.
        ``segment``: the effects of the unsynced messages before it, whose fate is the Query's."""
        statements = analysis.statements
        if len(statements) != 1 or statements[0].kind is not Sql.EXECUTE:
            return None
        stmt = self.sql_statements.get(statements[0].name or "")
        if stmt is None:
            return None
        rewritten = rewrite_execute(sql, stmt.name)
        if rewritten is None:
            return None
        if segment is not None and stmt.name not in server.prepared:
            # The PREPARE sent first, a Query of the proxy's own, ends the messages' implicit
            # transaction: it commits them, or rolls them back if it fails, which the client
            # cannot see. The client keeps this server, whose settings are then its own.
            self._pin(self._now, Sql.EXECUTE)
            self._segment = segment
            segment = None
        server.ensure_sql_prepared(stmt)
        server.expect_response([stmt.analysis] if segment is None else [*segment, SEGMENT_END, stmt.analysis])
        return fe.query(rewritten)

    def _deallocate(self, analysis: Analysis) -> bool:
        """A lone DEALLOCATE drops this client's names only: the proxy answers it."""
        statements = analysis.statements
        if len(statements) != 1 or statements[0].kind is not Sql.DEALLOCATE:
            return False
        name = statements[0].name
        if name is None:
            self._drop_all_statements()
        elif name in self.statements:
            self._drop_statement(name)
        elif name in self.sql_statements:
            self.directory.statements.release(self.sql_statements.pop(name))
        else:
            return False  # a SQL-level statement of its own: the server decides
        return True

    def _refused_parse(self, body: memoryview) -> bytes | None:
        """session_state = "refuse" for a statement sent with the extended protocol (JDBC,
        ``prepare=True``): refused at its Parse, as its Query would be; the caller drops the rest
        of its batch up to the Sync. Judged again if it then reaches a server: it is cheap, and
        the same answer."""
        pool = self.pool
        if pool is None or pool.settings.session_state != "refuse":
            return None
        try:
            sql = fe.parse_parse(body).sql
        except (codes.ProtocolViolation, ValueError):
            return None  # malformed: the server says what is wrong with it
        return self._refusal(analyze(sql))

    def _refusal(self, analysis: Analysis) -> bytes | None:
        """With session_state = "refuse", session state the proxy cannot carry is an error."""
        pool = self.pool
        if pool is None or pool.settings.session_state != "refuse":
            return None
        for st in analysis.statements:
            if pins(st):
                self.errors += 1
                if self._local_txn is not None:
                    self._local_failed = True  # (with a server, the caller fails its transaction)
                self.log.emit(self._now, Kind.NOTE, Machine.CLIENT, self.id, 0, 0, Reason.REFUSED, st.kind)
                return be.error_response(
                    codes.FEATURE_NOT_SUPPORTED,
                    f"{st.kind.name} is not supported in transaction mode",
                    hint='Use pooler_mode = "session", or session_state = "pin" to keep this client on one server.',
                )
        return None
