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
   statement). A statement that opens a transaction (a Query, or BEGIN in a Parse or a prepared
   statement) is a write unless it opens a read-only one.

A server chosen for a lone read may see more requests before it goes back (pipelining). Reads
follow it; a request that would write, or open a transaction, waits until the server is
released and is then routed afresh, so a pipelined INSERT never reaches a replica. If the read
left the server in a transaction, the server is not released, and what follows goes to it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from pgdog_ev.sql import Kind as Sql
from pgdog_ev.sql import analyze
from pgdog_ev.sql.analysis import OTHER_ANALYSIS
from pgdog_ev.sql.route import Route, plain_read, route
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import errors as codes
from pgdog_ev.wire import frontend as fe
from state.client_effects import ROLE_SETTING, ROLE_VALUES, roles_after
from state.client_local import LocalAnswers
from state.client_routing import MEMO_LIMIT, decode_text
from state.events import Kind, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    from state.cluster import Cluster
    from state.server import ServerSession

# Messages that begin a request (when no extended-protocol batch is open).
REQUEST_STARTS: Final = frozenset({fe.QUERY, fe.PARSE, fe.BIND, fe.DESCRIBE, fe.FUNCTION_CALL})
RESETS_ALL: Final = re.compile(rb"\s*(reset|discard)\s+all\s*;?\s*\x00?$")
ROLE_STATEMENT: Final = re.compile(
    r"\s*(set|reset)\s+(?:(local|session)\s+)?pgdog\.role"
    r"(?:\s*(?:to|=)\s*(?:'([^']*)'|\"([^\"]*)\"|([a-z_]+)))?\s*;?\s*$",
    re.IGNORECASE,
)


def role_value(match: re.Match[str]) -> str | None:
    """The value a ROLE_STATEMENT match sets, as written (quoted or not); None if it sets none."""
    return next((g for g in match.group(3, 4, 5) if g is not None), None)


def role_set_in(text: str) -> str | None:
    """"primary" or "replica" if ``text`` is a SET [LOCAL] of pgdog.role to one of them."""
    match = ROLE_STATEMENT.match(text)
    if match is None or match.group(1).lower() != "set":
        return None
    raw = role_value(match)
    return None if raw is None else ROLE_VALUES.get(raw.strip().lower())


# How a SET/RESET can start: the letters, or whitespace and comments before them.
ROLE_FIRST_BYTES: Final = frozenset(b"sSrRdD \t\r\n/-(")
ROLE_LETTERS: Final = frozenset(b"sSrRdD")
# Extended-protocol messages that continue a batch; anything else (Sync, Flush, Query...) ends it.
BATCH_PARTS: Final = frozenset({fe.PARSE, fe.BIND, fe.DESCRIBE, fe.EXECUTE, fe.CLOSE})
TRUE_VALUES: Final = frozenset({"on", "true", "yes", "1", "t", "y"})

_WRITE: Final = (True, False, Reason.ROUTE_WRITE)
_READ: Final = (False, False, Reason.ROUTE_READ)
# Enum members read on every routed checkout, as module globals (a class attribute read goes
# through EnumType.__getattr__ on Python 3.11, several times slower).
_HINT: Final = Reason.ROUTE_HINT
_ROUTE_READ: Final = Reason.ROUTE_READ
_OVERRIDE: Final = Reason.ROUTE_OVERRIDE
_TXN: Final = Reason.ROUTE_TRANSACTION
_K_ROUTE: Final = Kind.ROUTE
_M_CLIENT: Final = Machine.CLIENT
# A message that continues a request (Execute, an unnamed Bind, a portal Describe): no say in it.
NO_OPINION: Final = (False, False, Reason.NONE)
# The route remembered before any text was routed.
NO_ROUTE: Final = Route(True, "none")


class ReadWriteSplit(LocalAnswers):
    cluster: Cluster | None
    # The last routing decision: checkout reroutes (a host failing) keep it.
    route_write: bool
    route_replica: bool
    # pgdog.role for the session, and SET LOCAL pgdog.role for the transaction begun locally.
    role_override: str | None
    # The startup parameter's role: what RESET goes back to.
    startup_role: str | None
    _txn_role: str | None
    # Holding a server chosen for a lone read; a request that must go elsewhere waits for it.
    _read_guard: bool
    _route_memo_text: bytes  # b"\xff" at first: never a query text (those are UTF-8)
    _route_memo: Route
    _parse_memo_body: bytes  # the last Parse routed, whole (b"" at first: never a Parse body)
    _parse_memo: Route
    _guard_pending: bool
    _want_reroute: bool
    # An extended-protocol batch is waiting for its Sync or Flush before it is routed.
    _await_batch: bool
    session_mode: bool

    # -- the decision ----------------------------------------------------------------

    def _route_checkout(
        self, now: float, cluster: Cluster, query: memoryview | None = None, mtype: int = fe.QUERY
    ) -> ServerSession | None:
        """Choose primary or replica for the request held (or for ``query``, the body of the
        message that decides the request alone, being scanned right now: a Query, or the first
        message of a whole extended-protocol batch), then check out from there."""
        write, replica, why = self._decide(cluster, query, mtype)
        self.route_write = write
        self.route_replica = replica
        # Only a read the statement itself decided may meet a write later in the pipeline:
        # an override or a read-only transaction keeps what follows where it is.
        self._read_guard = False
        self.log.emit(now, _K_ROUTE, _M_CLIENT, self.id, 0, 0, why, int(write))
        server = cluster.checkout(now, self, write, replica)  # type: ignore[arg-type]
        if why is _ROUTE_READ and self._local_txn is None and not self.session_mode:
            # Armed once the routed request itself has gone (on_checkout replays it first).
            self._guard_pending = True
        return server

    def _decide(
        self, cluster: Cluster, query: memoryview | None = None, mtype: int = fe.QUERY
    ) -> tuple[bool, bool, Reason]:
        role = self._txn_role
        if role is not None:
            return role == "primary", role == "replica", _OVERRIDE
        if query is not None:
            # The one message that decides: as _batch_route would judge a batch of it alone.
            decided = self._message_route(cluster, mtype, query)
            if decided is None:
                decided = _WRITE
            elif decided is NO_OPINION:
                decided = None
        else:
            decided = self._batch_route(cluster)
        if decided is not None and (decided[2] is _HINT or decided[2] is _OVERRIDE):
            return decided
        role = self.role_override
        if self.settings.txn:
            # A SET pgdog.role in the open transaction counts at once, as a SET does in PostgreSQL.
            role = roles_after(role, self.settings.txn, self.startup_role)
        if role is not None:
            return role == "primary", role == "replica", _OVERRIDE
        if self.session_mode:
            return True, False, Reason.ROUTE_SESSION
        if self._local_txn is not None:
            if self._read_only_txn() or self._held_sets_read_only():
                return False, True, Reason.ROUTE_TRANSACTION
            if cluster.general.read_write_strategy != "aggressive":
                return True, False, Reason.ROUTE_TRANSACTION
        return decided if decided is not None else _WRITE

    def _batch_route(self, cluster: Cluster) -> tuple[bool, bool, Reason] | None:
        """The route of the request waiting in ``_held``: its first message, or for an
        extended-protocol batch every message up to its Sync or Flush (one write makes the
        batch a write; the first comment hint decides outright)."""
        held = self._held  # type: ignore[attr-defined]
        view = memoryview(held)
        pos, end = 0, len(held)
        verdict: tuple[bool, bool, Reason] | None = None
        while pos + 5 <= end:
            mtype = held[pos]
            length = int.from_bytes(held[pos + 1 : pos + 5], "big")
            if pos + 1 + length > end:
                break
            if mtype in REQUEST_STARTS:
                found = self._message_route(cluster, mtype, view[pos + 5 : pos + 1 + length])
                if found is NO_OPINION:
                    pos += 1 + length
                    continue
                if found is None:
                    found = _WRITE
                if found[2] is _HINT or found[2] is _OVERRIDE:
                    return found
                if verdict is None or (found[0] and not verdict[0]):
                    verdict = found
            if mtype not in BATCH_PARTS or (verdict is not None and verdict[0] and verdict[2] is not _TXN):
                # A Query or FunctionCall stands alone; Sync/Flush end the batch. After a BEGIN
                # the walk goes on: a SET [LOCAL] pgdog.role later in the batch decides.
                break
            pos += 1 + length
        return verdict

    def _batch_complete(self) -> bool:
        """Whether ``_held`` holds the whole request the first message begins: extended-protocol
        messages are routed together, so the checkout waits for the batch's Sync or Flush (as
        PgDog does), unless the client sends so much that reading it was paused."""
        held = self._held  # type: ignore[attr-defined]
        if self._hold_paused:  # type: ignore[attr-defined]
            return True
        pos, end = 0, len(held)
        while pos + 5 <= end:
            mtype = held[pos]
            if mtype not in BATCH_PARTS:
                return True
            pos += 1 + int.from_bytes(held[pos + 1 : pos + 5], "big")
        return False

    def _message_route(self, cluster: Cluster, mtype: int, body: memoryview) -> tuple[bool, bool, Reason] | None:
        """Where one request-starting message should run; None if it says nothing (a write)."""
        if mtype == fe.QUERY:
            raw = bytes(body[:-1])
            if raw == self._route_memo_text:
                found = self._route_memo
            elif plain_read(raw):
                return _READ
            else:
                found = route(decode_text(raw))
                self._remember_route(raw, found)
            if found.hint is not None:
                return found.hint == "primary", found.hint == "replica", _HINT
            if found.write:
                # (EXECUTE of a statement prepared with SQL PREPARE routes as a write by its
                # keyword: only then can the statement's own text make it a read.)
                if raw.lstrip()[:7].upper() == b"EXECUTE":
                    return self._query_details(cluster, body, True)
                return _WRITE
            if found.reason == "transaction control":
                return self._query_details(cluster, body, False)
            return _READ
        if mtype == fe.PARSE:
            # name NUL sql NUL ...: only the text matters here.
            # A driver repeats the same Parse, byte for byte: one comparison of the whole body
            # costs less than finding the text in it.
            raw = bytes(body)
            if raw == self._parse_memo_body:
                found = self._parse_memo
            else:
                start = raw.index(0) + 1
                found = route(decode_text(raw[start : raw.index(0, start)]))
                if len(raw) <= MEMO_LIMIT:
                    self._parse_memo_body = raw
                    self._parse_memo = found
            if found.reason == "transaction control":
                start = raw.index(0) + 1
                return self._query_details(cluster, memoryview(raw[start : raw.index(0, start) + 1]), found.write)
            if found.reason == "set" and b"pgdog" in raw:
                start = raw.index(0) + 1
                return self._role_route(decode_text(raw[start : raw.index(0, start)]), found)
        elif mtype == fe.BIND or mtype == fe.DESCRIBE:
            # The common cases first, from the bytes: an unnamed portal and statement (Bind),
            # a portal (Describe 'P') or the unnamed statement (Describe 'S' "").
            if body[:2] == b"\0\0" or (mtype == fe.DESCRIBE and (body[0] == 0x50 or body[1:2] == b"\0")):
                return NO_OPINION
            if mtype == fe.BIND:
                name = fe.statement_name_of_bind(body)
            else:
                describe = fe.parse_describe(body)
                name = describe.name if describe.kind == "S" else ""
            if not name:
                return NO_OPINION  # the unnamed statement or a portal: its Parse decided
            stmt = self.statements.get(name)
            if stmt is None:
                return None
            found = stmt.route
            if found.reason == "transaction control":
                # A prepared BEGIN (pgbench -M prepared): routed like the text it runs.
                return self._query_details(cluster, memoryview(stmt.sql.encode() + b"\0"), found.write)
            if found.reason == "set" and "pgdog" in stmt.sql:
                return self._role_route(stmt.sql, found)
        elif mtype == fe.FUNCTION_CALL:
            return None
        else:
            return NO_OPINION
        if found.hint is not None:
            return found.hint == "primary", found.hint == "replica", _HINT
        # (The module's constants: Reason.X read through the enum class is a lookup, and more.)
        return _WRITE if found.write else _READ

    def _role_route(self, sql: str, found: Route) -> tuple[bool, bool, Reason]:
        """A SET [LOCAL] pgdog.role sent with the extended protocol, which the server runs (a
        driver such as JDBC sends nothing as a simple Query): its value decides the batch
        holding it, so that BEGIN plus SET LOCAL pgdog.role, sent together, opens the
        transaction where the SET says, as the same two Queries would."""
        role = role_set_in(sql)
        if role is None:
            return _WRITE if found.write else _READ
        return role == "primary", role == "replica", _OVERRIDE

    def _remember_route(self, raw: bytes, found: Route) -> None:
        """The last text routed, per client: clients repeat texts (pgbench, ORMs, pools of
        prepared texts), and a byte comparison is cheaper than even the prefilter."""
        if len(raw) <= MEMO_LIMIT:
            self._route_memo_text = raw
            self._route_memo = found

    def _query_details(self, cluster: Cluster, body: memoryview, write: bool) -> tuple[bool, bool, Reason]:
        """A Query that opens a transaction, or EXECUTEs a statement prepared with SQL PREPARE."""
        analysis = self._analyze(body)
        statements = analysis.statements if analysis is not OTHER_ANALYSIS else ()
        if len(statements) == 1 and statements[0].kind is Sql.EXECUTE:
            stmt = self.sql_statements.get(statements[0].name or "")
            if stmt is not None:
                write = stmt.route.write
            return (True, False, Reason.ROUTE_WRITE) if write else (False, False, Reason.ROUTE_READ)
        for i, st in enumerate(statements):
            if st.kind is Sql.BEGIN:
                read_only = "read_only" in st.flags or any(
                    later.kind is Sql.SET_TRANSACTION and "read_only" in later.flags for later in statements[i + 1 :]
                )
                if read_only or self._default_read_only():
                    return False, True, Reason.ROUTE_TRANSACTION
                if cluster.general.read_write_strategy != "aggressive":
                    return True, False, Reason.ROUTE_TRANSACTION
        return (True, False, Reason.ROUTE_WRITE) if write else (False, False, Reason.ROUTE_READ)

    def _read_only_txn(self) -> bool:
        txn = self._local_txn
        assert txn is not None
        read_only = self._default_read_only()
        for text in txn:
            for st in analyze(text).statements:
                if st.kind in (Sql.BEGIN, Sql.SET_TRANSACTION):
                    if "read_only" in st.flags:
                        read_only = True
                    elif "read_write" in st.flags:
                        read_only = False
        return read_only

    def _held_sets_read_only(self) -> bool:
        """The request waiting is a Query with SET TRANSACTION READ ONLY (after a local BEGIN)."""
        held = self._held  # type: ignore[attr-defined]
        if len(held) < 5 or held[0] != fe.QUERY:
            return False
        body = memoryview(held)[5 : 1 + int.from_bytes(held[1:5], "big")]
        analysis = self._analyze(body)
        return analysis is not OTHER_ANALYSIS and any(
            st.kind is Sql.SET_TRANSACTION and "read_only" in st.flags for st in analysis.statements
        )

    def _default_read_only(self) -> bool:
        value = self.settings.effective().get("default_transaction_read_only")
        return value is not None and value.strip().lower() in TRUE_VALUES

    # -- pipelined requests behind a read ------------------------------------------------

    def _must_reroute(self, server: ServerSession, mtype: int, body: memoryview) -> bool:
        """A request arriving while we hold a server chosen for a lone read: must it go elsewhere?"""
        if server.unsynced or mtype not in REQUEST_STARTS or self.cluster is None:
            return False
        if server.txn_status != b"I" and not server.owed:
            # The read opened a transaction and everything was answered: nothing will release
            # this server until the client goes on, so what it sends next must follow it.
            return False
        if mtype == fe.FUNCTION_CALL:
            return True
        decided = self._message_route(self.cluster, mtype, body)
        if decided is NO_OPINION:
            return False  # an unnamed Bind: its statement lives on this server
        return decided is None or decided[0]

    # -- pgdog.role ------------------------------------------------------------------

    def _role_statement(self, body: memoryview) -> bytes | None:
        """The reply to a SET/RESET of pgdog.role (never sent to a server), or None; empty if
        the statement must wait for the server's answers to what was sent before it.

        Matched by a pattern rather than the SQL parser: PRIMARY is a reserved word, so the
        natural ``SET pgdog.role TO primary`` does not parse, yet it is what users type.

        Whether it lands in a transaction block is only known once the requests still in flight
        are answered (a pipelined BEGIN, COMMIT or ROLLBACK ahead of it), hence the wait."""
        if len(body) < 4 or body[0] not in ROLE_FIRST_BYTES or (body[0] in ROLE_LETTERS and body[2] not in b"tTsS"):
            return None  # the hot case: SELECT, INSERT... (SEt, REset and DIscard have t/s third)
        head = bytes(body[:256]).lower()
        server = self.server  # type: ignore[attr-defined]
        in_flight = server is not None and bool(server.owed)
        if b"pgdog" not in head:  # SET/RESET pgdog.role names it near the start
            # RESET ALL / DISCARD ALL: back to the startup role (in a transaction, at COMMIT).
            # Behind requests in flight it goes to the server, whose answer tells (on_request_done).
            if (self.role_override is not None and not in_flight and RESETS_ALL.match(head)
                    and not self._in_transaction()):
                self.role_override = self.startup_role
            return None
        match = ROLE_STATEMENT.match(decode_text(bytes(body[:-1])))
        if match is None:
            return None
        verb, scope = match.group(1).upper(), (match.group(2) or "").upper()
        raw = role_value(match)
        value: str | None = None
        key: str | None = None
        if verb == "SET":
            if raw is None:
                return None  # SET pgdog.role with no value: let the server report the syntax error
            key = raw.strip().lower()
            if key not in ROLE_VALUES:
                self.errors += 1
                return be.error_response(
                    codes.INVALID_PARAMETER_VALUE, f'invalid value for parameter "pgdog.role": "{raw}"',
                    hint="Available values: primary, replica, auto.")
            value = ROLE_VALUES[key]
        if in_flight and not server.unsynced:
            # (Behind an unfinished extended-protocol batch nothing could be read up to its Sync
            # while this waits: then the status now is the best there is.)
            return b""
        # RESET, and SET ... TO DEFAULT unquoted (quoted, 'default' is a value, the same as auto),
        # go back to what the session began with, as the server's own SET does.
        reset = verb == "RESET" or (key == "default" and match.group(5) is not None)
        if scope == "LOCAL":
            if not self._in_transaction():
                return be.notice_response(codes.NO_ACTIVE_SQL_TRANSACTION,
                                          "SET LOCAL can only be used in transaction blocks",
                                          severity="WARNING") + be.command_complete("SET")
            self._txn_role = None if reset else value
            return be.command_complete(verb)
        if self._in_transaction():
            # Like any SET in a transaction block: the session's at COMMIT, undone by ROLLBACK.
            self.settings.change(ROLE_SETTING, None if reset else key, True)
        else:
            self.role_override = self.startup_role if reset else value
        return be.command_complete(verb)

    def _in_transaction(self) -> bool:
        """In a transaction block: one the proxy began without a server, or the server's."""
        server = self.server  # type: ignore[attr-defined]
        return self._local_txn is not None or (server is not None and server.txn_status != b"I")
