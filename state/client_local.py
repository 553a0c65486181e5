"""Answers the proxy gives itself, so a client holds no server for them.

With no server attached in transaction mode: BEGIN (replayed on the server the
next statement gets), COMMIT/ROLLBACK of such a transaction, SET/RESET whose
values a server already accepted once (an invalid value must be reported by
PostgreSQL, so unknown ones still go to a server), named Parse (prepared
lazily, where it is first used), Close, Flush and a bare Sync. Everything else
needs a server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pgdog_ev.sql import Analysis
from pgdog_ev.sql import Kind as Sql
from pgdog_ev.sql.analysis import OTHER_ANALYSIS
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from pgdog_ev.wire import frontend as fe
from state.client_routing import MessageRouting, query_text
from state.events import Kind, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    pass

# Statements the proxy may answer itself when the values are known good.
LOCAL_SETTING_KINDS: Final = frozenset({Sql.SET, Sql.SET_LOCAL, Sql.SET_DEFAULT, Sql.RESET, Sql.RESET_ALL})


class LocalAnswers(MessageRouting):

    def _answer_locally(self, now: float, mtype: int, body: memoryview) -> bool:
        """Transaction mode, no server: answer what needs none. False = needs a server."""
        if mtype == fe.QUERY:
            analysis = self._analyze(body)
            if analysis is OTHER_ANALYSIS or analysis.error is not None:
                return False
            if self._local_failed:
                out = self._failed_end(analysis)
            else:
                refusal = self._refusal(analysis)
                if refusal is not None:
                    self.io.send(refusal + be.ready_for_query(self._local_status()))
                    return True
                out = self._local_query(analysis, query_text(body))
            if out is None:
                return False
            self.queries += 1
            self.log.emit(now, Kind.NOTE, Machine.CLIENT, self.id, 0, 0, Reason.LOCAL_ANSWER)
            self.io.send(out + be.ready_for_query(self._local_status()))
            if self._local_txn is not None:
                self._arm_idle_timer(now)  # client_idle_in_transaction_timeout applies
            return True
        if mtype == fe.SYNC:
            self.io.send(be.ready_for_query(self._local_status()))
            return True
        if mtype == fe.FLUSH:
            return True
        if mtype == fe.COPY_DONE or mtype == fe.COPY_FAIL:
            # No server, so no COPY: the end of one that failed (its error and ReadyForQuery gave
            # the server back) or a stray one. PostgreSQL ignores both outside COPY; checking out
            # a server to forward them would hold it until the client's next request.
            return True
        if mtype == fe.PARSE:
            if self._local_failed:
                return False  # 25P02 (or a rollback) from the server the failure is replayed on
            refusal = self._refused_parse(body)
            if refusal is not None:
                self.io.send(refusal)
                self._skip_to_sync = True
                return True
            if not self.rename or (len(body) > 0 and body[0] == 0):
                return False  # the unnamed statement (its name is the empty first string)
            parse = fe.parse_parse(body)
            if not parse.name:
                return False
            if self.pool is not None:
                self.pool.stats.client_parse_count += 1
            if parse.name in self.statements:
                self.errors += 1
                self.io.send(be.error_response(codes.DUPLICATE_PREPARED_STATEMENT,
                                               f'prepared statement "{parse.name}" already exists'))
                self._skip_to_sync = True
                return True
            # Prepared lazily, on the server the first Bind or Describe lands on:
            # a client preparing outside a transaction holds no server for it.
            stmt = self._register(parse)
            if stmt.error is not None:
                self._drop_statement(parse.name)
                self.errors += 1
                message, position = stmt.error
                fields = {"P": str(position)} if position else None
                self.io.send(be.error_response(codes.SYNTAX_ERROR, message, fields=fields))
                self._skip_to_sync = True
                return True
            self.io.send(be.parse_complete())
            return True
        if mtype == fe.CLOSE and self.rename:
            close = fe.parse_close(body)
            if close.kind == "S" and close.name:
                self._drop_statement(close.name)
            # With no server there is no portal or unnamed statement to close.
            self.io.send(be.close_complete())
            return True
        return False

    def _failed_end(self, analysis: Analysis) -> bytes | None:
        """A transaction begun without a server, then failed by a refusal: a lone COMMIT or
        ROLLBACK ends it here (both roll back, as in PostgreSQL); anything else (None) goes to a
        server, which gets the transaction replayed and failed, so PostgreSQL itself answers it
        (25P02, or ROLLBACK TO, AND CHAIN, PREPARE TRANSACTION as it would)."""
        statements = analysis.statements
        if len(statements) != 1 or statements[0].kind not in (Sql.COMMIT, Sql.ROLLBACK):
            return None
        if "chain" in statements[0].flags:
            return None
        return self._local_end(False)

    def _local_query(self, analysis: Analysis, sql: str) -> bytes | None:
        statements = analysis.statements
        first = statements[0]
        if len(statements) == 1:
            if first.kind is Sql.BEGIN and self._local_txn is None:
                self._local_txn = [sql]
                start = sql.lstrip().upper().startswith("START")
                return be.command_complete("START TRANSACTION" if start else "BEGIN")
            if first.kind in (Sql.COMMIT, Sql.ROLLBACK) and "chain" not in first.flags:
                return self._local_end(first.kind is Sql.COMMIT)
            if self.full_sql:
                reply = self._sql_prepare(analysis, sql)
                if reply is not None:
                    return reply
            if first.kind is Sql.DEALLOCATE and self.rename and self._deallocate(analysis):
                return be.command_complete("DEALLOCATE" if first.name else "DEALLOCATE ALL")
        if not all(st.kind in LOCAL_SETTING_KINDS for st in statements):
            return None
        pool = self.pool
        assert pool is not None
        # Every change must be one a server already accepted: the proxy cannot
        # judge a value, and an error must come from PostgreSQL.
        for st in statements:
            if st.kind in (Sql.SET, Sql.SET_LOCAL) and st.value is not None:
                if (st.name.lower(), st.value) not in pool.known_settings:  # type: ignore[union-attr]
                    return None
            elif st.kind is not Sql.RESET_ALL:
                name = (st.name or "").lower()
                target = self.settings.startup.get(name)
                if target is not None:
                    if (name, target) not in pool.known_settings:
                        return None
                elif pool.reported_name(name) is None and name not in self.settings.effective():
                    return None
        in_txn = self._local_txn is not None
        out = bytearray()
        for st in statements:
            if st.kind is Sql.SET_LOCAL:
                if not in_txn:
                    out += be.notice_response(codes.NO_ACTIVE_SQL_TRANSACTION,
                                              "SET LOCAL can only be used in transaction blocks", severity="WARNING")
                out += be.command_complete("SET")
                continue
            if st.kind is Sql.RESET_ALL:
                changed = set(self.settings.effective()) | set(self.settings.startup)
                self.settings.change(None, None, in_txn)
            else:
                name = (st.name or "").lower()
                value = st.value if st.kind is Sql.SET else None
                self.settings.change(name, value, in_txn)
                changed = {name}
            out += self._parameter_status(changed)
            out += be.command_complete("RESET" if st.kind in (Sql.RESET, Sql.RESET_ALL) else "SET")
        if in_txn:
            assert self._local_txn is not None
            self._local_txn.append(sql)
        return bytes(out)

    def _local_end(self, commit: bool) -> bytes:
        if self._local_txn is None:
            warning = be.notice_response(codes.NO_ACTIVE_SQL_TRANSACTION, "there is no transaction in progress",
                                         severity="WARNING")
            return warning + be.command_complete("COMMIT" if commit else "ROLLBACK")
        self._local_txn = None
        self._local_failed = False
        self._txn_role = None
        if commit:
            self._commit_settings()
            return be.command_complete("COMMIT")
        undone = self.settings.rollback()
        names = {name for name, _ in undone if name is not None}
        if any(name is None for name, _ in undone):
            names |= set(self.settings.params) | set(self.settings.startup)
        return self._parameter_status(names) + be.command_complete("ROLLBACK")

    def _parameter_status(self, names: set[str]) -> bytes:
        """ParameterStatus for the reported ones among ``names``, at their current values."""
        pool = self.pool
        assert pool is not None and pool.server_params is not None
        current = self.settings.effective()
        out = bytearray()
        for name in sorted(names):
            reported_name = pool.reported_name(name)
            if reported_name is None:
                continue
            value = current.get(name)
            if value is None:
                reported = {reported_name: pool.server_params.get(reported_name, "")}
            else:
                reported = pool.known_settings.get((name, value), {})
            for rname, rvalue in reported.items():
                if self.told.get(rname) != rvalue:
                    self.tell(rname, rvalue)
                    out += be.parameter_status(rname, rvalue)
        return bytes(out)
