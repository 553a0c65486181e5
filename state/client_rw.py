"""Read/write split: which host of a multi-host cluster a client's next request runs on.

The decision is made once per checkout, from the first message waiting for a server:

1. an explicit role wins: ``SET LOCAL pgdog.role`` in the transaction, a ``/* pgdog_role: ... */``
   comment on the statement, then the session's ``pgdog.role`` (startup parameter or
   ``SET pgdog.role``);
2. session mode keeps the client on one server for good: the primary;
3. a transaction the proxy began (BEGIN answered locally) is read-only when BEGIN said READ ONLY,
   a SET TRANSACTION READ ONLY followed, or default_transaction_read_only is on; read-only ones
   go to replicas, others to the primary, unless ``read_write_strategy = "aggressive"``, where
   the first statement decides;
4. otherwise the statement decides (pgdog_ev/sql/route.py): a Query by its text, a Parse by its
   text, a Bind or Describe of a named statement by the statement's text (classified once per
   statement). A Query that opens a transaction is a write unless it opens a read-only one.

A server chosen for a lone read may see more requests before it goes back (pipelining). Reads
follow it; a request that would write, or open a transaction, waits until the server is
released and is then routed afresh, so a pipelined INSERT never reaches a replica.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdog_ev.sql import Analysis, analyze
from pgdog_ev.sql import Kind as Sql
from pgdog_ev.sql.analysis import OTHER_ANALYSIS
from pgdog_ev.sql.route import route
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from pgdog_ev.wire import frontend as fe
from state.client_fields import ClientFields
from state.client_routing import decode_text
from state.events import Kind, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    from state.cluster import Cluster
    from state.server import ServerSession

ROLE_SETTING = "pgdog.role"
ROLE_VALUES = {"primary": "primary", "replica": "replica", "auto": None, "any": None, "default": None}
# Messages that begin a request (when no extended-protocol batch is open).
REQUEST_STARTS = frozenset({fe.QUERY, fe.PARSE, fe.BIND, fe.DESCRIBE, fe.FUNCTION_CALL})
TRUE_VALUES = frozenset({"on", "true", "yes", "1", "t", "y"})

_WRITE = (True, False, Reason.ROUTE_WRITE)


class ReadWriteSplit(ClientFields):
    cluster: Cluster | None = None
    # The last routing decision: checkout reroutes (a host failing) keep it.
    route_write = True
    route_replica = False
    # pgdog.role for the session, and SET LOCAL pgdog.role for the transaction begun locally.
    role_override: str | None = None
    _txn_role: str | None = None
    # Holding a server chosen for a lone read; a request that must go elsewhere waits for it.
    _read_guard = False
    _want_reroute = False
    session_mode: bool

    # -- the decision ----------------------------------------------------------------

    def _route_checkout(self, now: float, cluster: Cluster) -> ServerSession | None:
        write, replica, why = self._decide(cluster)
        self.route_write = write
        self.route_replica = replica
        self._read_guard = not write and self._local_txn is None and not self.session_mode
        self.log.emit(now, Kind.ROUTE, Machine.CLIENT, self.id, 0, 0, why, int(write))
        return cluster.checkout(now, self, write, replica)  # type: ignore[arg-type]

    def _decide(self, cluster: Cluster) -> tuple[bool, bool, Reason]:
        role = self._txn_role
        if role is not None:
            return role == "primary", role == "replica", Reason.ROUTE_OVERRIDE
        held = self._held  # type: ignore[attr-defined]
        decided = self._message_route(cluster, held[0], memoryview(held)[5 : 1 + int.from_bytes(held[1:5], "big")]) \
            if len(held) >= 5 else None
        if decided is not None and decided[2] is Reason.ROUTE_HINT:
            return decided
        role = self.role_override
        if role is not None:
            return role == "primary", role == "replica", Reason.ROUTE_OVERRIDE
        if self.session_mode:
            return True, False, Reason.ROUTE_SESSION
        if self._local_txn is not None:
            if self._read_only_txn():
                return False, True, Reason.ROUTE_TRANSACTION
            if cluster.general.read_write_strategy != "aggressive":
                return True, False, Reason.ROUTE_TRANSACTION
        return decided if decided is not None else _WRITE

    def _message_route(self, cluster: Cluster, mtype: int, body: memoryview) -> tuple[bool, bool, Reason] | None:
        """Where one request-starting message should run; None if it says nothing (a write)."""
        if mtype == fe.QUERY:
            text = decode_text(bytes(body[:-1]))
            found = route(text)
            if found.hint is not None:
                return found.hint == "primary", found.hint == "replica", Reason.ROUTE_HINT
            if found.reason == "transaction control" or text.lstrip()[:7].upper() == "EXECUTE":
                return self._query_details(cluster, body, found.write)
            return (True, False, Reason.ROUTE_WRITE) if found.write else (False, False, Reason.ROUTE_READ)
        if mtype == fe.PARSE:
            found = route(fe.parse_parse(body).sql)
        elif mtype == fe.BIND or mtype == fe.DESCRIBE:
            if mtype == fe.BIND:
                name = fe.statement_name_of_bind(body)
            else:
                describe = fe.parse_describe(body)
                name = describe.name if describe.kind == "S" else ""
            stmt = self.statements.get(name) if name else None
            if stmt is None:
                return None
            found = stmt.route
        else:
            return None
        if found.hint is not None:
            return found.hint == "primary", found.hint == "replica", Reason.ROUTE_HINT
        return (True, False, Reason.ROUTE_WRITE) if found.write else (False, False, Reason.ROUTE_READ)

    def _query_details(self, cluster: Cluster, body: memoryview, write: bool) -> tuple[bool, bool, Reason]:
        """A Query that opens a transaction, or EXECUTEs a statement prepared with SQL PREPARE."""
        analysis = self._analyze(body)
        statements = analysis.statements if analysis is not OTHER_ANALYSIS else ()
        if len(statements) == 1 and statements[0].kind is Sql.EXECUTE:
            stmt = self.sql_statements.get(statements[0].name or "")
            if stmt is not None:
                write = stmt.route.write
            return (True, False, Reason.ROUTE_WRITE) if write else (False, False, Reason.ROUTE_READ)
        for st in statements:
            if st.kind is Sql.BEGIN:
                if "read_only" in st.flags or self._default_read_only():
                    return False, True, Reason.ROUTE_TRANSACTION
                if cluster.general.read_write_strategy != "aggressive":
                    return True, False, Reason.ROUTE_TRANSACTION
        return (True, False, Reason.ROUTE_WRITE) if write else (False, False, Reason.ROUTE_READ)

    def _read_only_txn(self) -> bool:
        txn = self._local_txn
        assert txn is not None
        read_only = self._default_read_only()
        for text in txn:
            for st in self._analyze_text(text).statements:
                if st.kind in (Sql.BEGIN, Sql.SET_TRANSACTION):
                    if "read_only" in st.flags:
                        read_only = True
                    elif "read_write" in st.flags:
                        read_only = False
        return read_only

    def _default_read_only(self) -> bool:
        value = self.settings.effective().get("default_transaction_read_only")
        return value is not None and value.strip().lower() in TRUE_VALUES

    @staticmethod
    def _analyze_text(text: str) -> Analysis:
        return analyze(text)

    # -- pipelined requests behind a read ------------------------------------------------

    def _must_reroute(self, server: ServerSession, mtype: int, body: memoryview) -> bool:
        """A request arriving while we hold a server chosen for a lone read: must it go elsewhere?"""
        if server.unsynced or mtype not in REQUEST_STARTS or self.cluster is None:
            return False
        if mtype == fe.FUNCTION_CALL:
            return True
        decided = self._message_route(self.cluster, mtype, body)
        return decided is None or decided[0]

    # -- pgdog.role ------------------------------------------------------------------

    def _role_statement(self, body: memoryview) -> bytes | None:
        """The reply to a SET/RESET of pgdog.role (never sent to a server), or None."""
        if b"pgdog" not in body:
            return None
        analysis = self._analyze(body)
        statements = analysis.statements if analysis is not OTHER_ANALYSIS else ()
        if len(statements) != 1:
            return None
        st = statements[0]
        if (st.name or "").lower() != ROLE_SETTING or st.kind not in (
            Sql.SET, Sql.SET_LOCAL, Sql.RESET, Sql.SET_DEFAULT
        ):
            return None
        value: str | None = None
        if st.kind in (Sql.SET, Sql.SET_LOCAL) and st.value is not None:
            key = st.value.strip().lower()
            if key not in ROLE_VALUES:
                self.errors += 1
                return be.error_response(
                    codes.INVALID_PARAMETER_VALUE, f'invalid value for parameter "pgdog.role": "{st.value}"',
                    hint="Available values: primary, replica, auto.")
            value = ROLE_VALUES[key]
        if st.kind is Sql.SET_LOCAL:
            if self._local_txn is None and (self.server is None or self.server.txn_status == b"I"):  # type: ignore[attr-defined]
                return be.notice_response(codes.NO_ACTIVE_SQL_TRANSACTION,
                                          "SET LOCAL can only be used in transaction blocks",
                                          severity="WARNING") + be.command_complete("SET")
            self._txn_role = value
            return be.command_complete("SET")
        self.role_override = value
        return be.command_complete("RESET" if st.kind is Sql.RESET else "SET")
