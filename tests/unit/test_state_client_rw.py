"""Read/write split of client requests over a two-host cluster: the routing decision (hints,
SET LOCAL / session pgdog.role, session mode, transactions, the statement) and pgdog.role
answered by the proxy itself. Real ClientSessions, real pools, fake backends."""

from __future__ import annotations

from typing import Any

import pytest

from pgdog_ev.config.model import General
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from state.client import ClientSession, ClientState, Login
from state.cluster import Cluster
from state.events import Kind, Record
from state.pool import Pool, PoolKey
from state.reasons import Reason
from state.server import HIDDEN, LOGIN_CHECK, ServerSession, ServerState
from tests.unit.statekit import (
    FakeBackend,
    FrontendDriver,
    World,
    client_transitions,
    error_fields,
    make_settings,
    ready_statuses,
    types,
)

C = ClientState
S = ServerState


class RwRig:
    """A primary and a replica behind one login. With ``exclude_primary`` every read (and every
    replica request) goes to the replica, every write to the primary: the pool says the route."""

    def __init__(self, *, mode: str = "transaction", **general: Any) -> None:
        settings: dict[str, Any] = dict(
            read_write_split="exclude_primary",
            read_write_strategy="conservative",
            load_balancing_strategy="round_robin",
            checkout_timeout=1000,
        )
        settings.update(general)
        self.world = World()
        self.pools = [
            Pool(i + 1, PoolKey("app", "app", f"host{i}", 5432, 0, role),
                 make_settings(pooler_mode=mode, pool_size=4), self.world.pool_io, self.world.log,
                 self.world.scheduler, 1 << 20)
            for i, role in enumerate(("primary", "replica"))
        ]
        self.primary, self.replica = self.pools
        self.cluster = Cluster(3, "app", "app", self.pools, General(**settings), self.world.log,
                               self.world.scheduler, self.world.entropy)
        self.world.directory.add(Login(pool=self.primary, cluster=self.cluster, user="app", database="app",
                                       auth_type="trust", pooler_mode=mode))
        self.backends: dict[int, FakeBackend] = {}
        # Client queries each server received, by server id.
        self.forwarded: dict[int, list[str]] = {}

    def backend(self, server: ServerSession) -> FakeBackend:
        if server.id not in self.backends:
            self.backends[server.id] = FakeBackend(self.world, server)
        return self.backends[server.id]

    def serve(self) -> None:
        """Log in new servers and answer the queries the proxy sent of its own (login checks,
        settings syncs); the client's own queries are recorded in ``forwarded``, unanswered."""
        for server in list(self.world.pool_io.opened):
            if server.state is S.CONNECTING:
                self.backend(server).login("md5")
        for server in list(self.world.pool_io.opened):
            if server.state is not S.ACTIVE:
                continue
            backend = self.backend(server)
            sql = backend.take_queries()
            hidden = 0
            for entry in server.owed:
                if entry not in (HIDDEN, LOGIN_CHECK):
                    break
                hidden += 1
            for _ in sql[:hidden]:
                backend.send(FakeBackend.result("SELECT 1", status=server.txn_status))
            self.forwarded.setdefault(server.id, []).extend(sql[hidden:])

    def connect(self, **params: str) -> tuple[ClientSession, FrontendDriver]:
        client = self.world.new_client()
        driver = FrontendDriver(self.world, client)
        driver.startup("app", "app", **params)
        driver.authenticate("trust", "")
        self.serve()
        assert client.state is C.IDLE, client.state
        driver.take()
        return client, driver

    def opened(self) -> int:
        return len(self.world.pool_io.opened)


def last_route(r: RwRig, client: ClientSession) -> tuple[bool, bool, Reason]:
    """(write, replica, reason) of the client's last ROUTE record, checked against its state."""
    records: list[Record] = [x for x in r.world.log.records() if x.kind == Kind.ROUTE and x.id == client.id]
    assert records, "no routing decision was made"
    rec = records[-1]
    write = bool(rec.b)
    assert write is client.route_write
    return write, client.route_replica, Reason(rec.a)


def local(driver: FrontendDriver, sql: str) -> list[tuple[str, bytes]]:
    """Send ``sql`` and return the answer, which must come without a server (ends in ReadyForQuery)."""
    driver.send(fe.query(sql))
    msgs = driver.take()
    assert msgs and msgs[-1][0] == "Z", msgs
    return msgs


def tags(msgs: list[tuple[str, bytes]]) -> list[str]:
    return [be.parse_command_complete(body) for t, body in msgs if t == "C"]


W, RD = True, False
HINT, OVERRIDE, SESSION, TXN = Reason.ROUTE_HINT, Reason.ROUTE_OVERRIDE, Reason.ROUTE_SESSION, Reason.ROUTE_TRANSACTION
INSERT = "INSERT INTO t VALUES (1)"

# (setup answered locally, the statement routed, expected (write, replica, reason))
DECISIONS: list[tuple[str, list[str], str, tuple[bool, bool, Reason]]] = [
    ("read", [], "SELECT 1", (RD, False, Reason.ROUTE_READ)),
    ("write", [], INSERT, (W, False, Reason.ROUTE_WRITE)),
    ("locking read is a write", [], "SELECT * FROM t FOR UPDATE", (W, False, Reason.ROUTE_WRITE)),
    ("hint replica on a write", [], "/* pgdog_role: replica */ " + INSERT, (RD, True, HINT)),
    ("hint primary on a read", [], "/* pgdog_role: primary */ SELECT 1", (W, False, HINT)),
    ("session role replica", ["SET pgdog.role = 'replica'"], "SELECT 1", (RD, True, OVERRIDE)),
    ("session role primary", ["SET pgdog.role TO primary"], "SELECT 1", (W, False, OVERRIDE)),
    ("session role auto", ["SET pgdog.role = 'replica'", "SET pgdog.role = auto"], "SELECT 1",
     (RD, False, Reason.ROUTE_READ)),
    ("hint beats session role", ["SET pgdog.role = replica"], "/* pgdog_role: primary */ SELECT 1",
     (W, False, HINT)),
    ("SET LOCAL beats hint", ["BEGIN", "SET LOCAL pgdog.role = replica"],
     "/* pgdog_role: primary */ SELECT 1", (RD, True, OVERRIDE)),
    ("SET LOCAL beats session role", ["SET pgdog.role = primary", "BEGIN", "SET LOCAL pgdog.role = replica"],
     "SELECT 1", (RD, True, OVERRIDE)),
    ("session role beats transaction rules", ["SET pgdog.role = replica", "BEGIN"], "SELECT 1",
     (RD, True, OVERRIDE)),
    ("hint beats transaction rules", ["BEGIN"], "/* pgdog_role: replica */ SELECT 1", (RD, True, HINT)),
    ("local BEGIN: the transaction goes to the primary", ["BEGIN"], "SELECT 1", (W, False, TXN)),
    ("local BEGIN READ ONLY: a replica", ["BEGIN READ ONLY"], "SELECT 1", (RD, True, TXN)),
    ("local START TRANSACTION READ ONLY", ["START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"],
     "SELECT 1", (RD, True, TXN)),
    ("BEGIN in the query", [], "BEGIN; SELECT 1", (W, False, TXN)),
    ("BEGIN READ ONLY in the query", [], "BEGIN READ ONLY; SELECT 1", (RD, True, TXN)),
]


@pytest.mark.parametrize(("setup", "sql", "expected"), [c[1:] for c in DECISIONS], ids=[c[0] for c in DECISIONS])
def test_decision_table(setup: list[str], sql: str, expected: tuple[bool, bool, Reason]) -> None:
    """Explicit role (SET LOCAL, then a comment hint, then the session's) > session mode >
    transaction rules > the statement; the ROUTE record and the pool agree with the decision."""
    r = RwRig()
    client, driver = r.connect()
    for text in setup:
        local(driver, text)
    driver.send(fe.query(sql))
    write, replica, reason = last_route(r, client)
    assert (write, replica, reason) == expected
    assert client.pool is (r.primary if write else r.replica)
    # The request reaches a server of that pool (after any replayed local BEGIN).
    r.serve()
    server = client.server
    assert client.state is C.ACTIVE and server is not None and server.pool is client.pool
    assert r.forwarded[server.id][-1] == sql
    client_transitions(r.world)


def test_session_mode_routes_to_the_primary() -> None:
    """In session mode the client keeps one server for good: it must be the primary."""
    r = RwRig(mode="session")
    client, driver = r.connect()
    driver.send(fe.query("SELECT 1"))
    assert last_route(r, client) == (W, False, SESSION)
    assert client.pool is r.primary


def test_session_mode_yields_to_an_explicit_role() -> None:
    """An explicit pgdog.role (startup parameter here) still beats session mode."""
    r = RwRig(mode="session")
    client, driver = r.connect(**{"pgdog.role": "replica"})
    driver.send(fe.query(INSERT))
    assert last_route(r, client) == (RD, True, OVERRIDE)
    assert client.pool is r.replica


def test_startup_parameter_sets_the_session_role() -> None:
    """pgdog.role as a startup parameter is the session's role, and is not sent to servers."""
    r = RwRig()
    client, driver = r.connect(**{"pgdog.role": "primary"})
    assert client.role_override == "primary"
    assert "pgdog.role" not in client.params
    driver.send(fe.query("SELECT 1"))
    assert last_route(r, client) == (W, False, OVERRIDE)


def test_default_transaction_read_only_makes_local_transactions_read_only() -> None:
    """default_transaction_read_only = on: a plain BEGIN opens a read-only transaction."""
    r = RwRig()
    client, driver = r.connect(default_transaction_read_only="on")
    local(driver, "BEGIN")
    driver.send(fe.query("SELECT 1"))
    assert last_route(r, client) == (RD, True, TXN)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [("SELECT 1", (RD, False, Reason.ROUTE_READ)), (INSERT, (W, False, Reason.ROUTE_WRITE))],
)
def test_aggressive_strategy_lets_the_first_statement_decide(sql: str, expected: tuple[bool, bool, Reason]) -> None:
    """read_write_strategy = aggressive: a transaction begun with a read runs where reads run."""
    r = RwRig(read_write_strategy="aggressive")
    client, driver = r.connect()
    local(driver, "BEGIN")
    driver.send(fe.query(sql))
    assert last_route(r, client) == expected


@pytest.mark.parametrize(
    ("setup", "sql"),
    [(["BEGIN"], "SET TRANSACTION READ ONLY"), ([], "BEGIN; SET TRANSACTION READ ONLY")],
    ids=["separate", "same-query"],
)
def test_set_transaction_read_only_makes_the_transaction_read_only(setup: list[str], sql: str) -> None:
    """The module documents SET TRANSACTION READ ONLY after BEGIN as making it read-only."""
    r = RwRig()
    client, driver = r.connect()
    for text in setup:
        local(driver, text)
    driver.send(fe.query(sql))
    assert last_route(r, client) == (RD, True, TXN)


def test_set_local_role_ends_with_the_local_transaction() -> None:
    """SET LOCAL pgdog.role lasts until the transaction the proxy began ends."""
    r = RwRig()
    client, driver = r.connect()
    local(driver, "BEGIN")
    msgs = local(driver, "SET LOCAL pgdog.role = replica")
    assert tags(msgs) == ["SET"] and ready_statuses(msgs) == [b"T"]
    msgs = local(driver, "COMMIT")
    assert tags(msgs) == ["COMMIT"]
    driver.send(fe.query(INSERT))
    assert last_route(r, client) == (W, False, Reason.ROUTE_WRITE)


# -- SET / RESET pgdog.role, answered by the proxy ---------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "role"),
    [
        ("SET pgdog.role = 'replica'", "replica"),
        ("SET pgdog.role TO primary", "primary"),
        ("set pgdog.ROLE = REPLICA", "replica"),
        ('SET pgdog.role = "primary"', "primary"),
        ("SET SESSION pgdog.role = replica;", "replica"),
        ("SET pgdog.role = auto", None),
        ("SET pgdog.role = 'any'", None),
        ("SET pgdog.role = default", None),
    ],
)
def test_set_role_answered_locally(sql: str, role: str | None) -> None:
    """No server is needed (or opened) for pgdog.role; the client sees SET and ReadyForQuery."""
    r = RwRig()
    client, driver = r.connect()
    client.role_override = "primary" if role is None else None
    opened = r.opened()
    msgs = local(driver, sql)
    assert types(msgs) == "CZ" and tags(msgs) == ["SET"] and ready_statuses(msgs) == [b"I"]
    assert client.role_override == role
    assert r.opened() == opened and client.state is C.IDLE and client.server is None


def test_reset_role_answered_locally() -> None:
    """RESET goes back to the statement deciding, and is answered with RESET."""
    r = RwRig()
    client, driver = r.connect()
    local(driver, "SET pgdog.role = replica")
    msgs = local(driver, "RESET pgdog.role")
    assert tags(msgs) == ["RESET"] and client.role_override is None


@pytest.mark.parametrize("value", ["'bogus'", "standby", "'prim ary'"])
def test_invalid_role_rejected_with_22023(value: str) -> None:
    """An unknown role is an error the client can see (SQLSTATE 22023), and changes nothing."""
    r = RwRig()
    client, driver = r.connect()
    local(driver, "SET pgdog.role = replica")
    errors_before = client.errors
    msgs = local(driver, f"SET pgdog.role = {value}")
    assert types(msgs) == "EZ" and ready_statuses(msgs) == [b"I"]
    (fields,) = error_fields(msgs)
    assert fields["C"] == "22023"
    assert "pgdog.role" in fields["M"] and value.strip("'") in fields["M"]
    assert client.role_override == "replica"
    assert client.errors == errors_before + 1


def test_set_local_role_outside_a_transaction_warns_and_does_nothing() -> None:
    """As PostgreSQL does for SET LOCAL outside a transaction: a WARNING, SET, no effect."""
    r = RwRig()
    client, driver = r.connect()
    msgs = local(driver, "SET LOCAL pgdog.role = replica")
    assert types(msgs) == "NCZ"
    notice = be.parse_error_fields(msgs[0][1])
    assert notice["C"] == "25P01" and notice["S"] == "WARNING"
    driver.send(fe.query(INSERT))
    assert last_route(r, client) == (W, False, Reason.ROUTE_WRITE)


def test_set_role_while_holding_a_server_is_answered_in_turn() -> None:
    """Pipelined behind a BEGIN still in flight, the SET waits for its answer: it then lands in
    the transaction the BEGIN opened, so it counts for the session only at COMMIT."""
    r = RwRig()
    client, driver = r.connect()
    driver.send(fe.query("BEGIN; SELECT 1"))
    r.serve()
    server = client.server
    assert server is not None and r.forwarded[server.id] == ["BEGIN; SELECT 1"]
    backend = r.backend(server)
    driver.send(fe.query("SET pgdog.role = replica") + fe.query("SELECT 2"))
    assert backend.take() == []  # never sent to the server, nor what follows it yet
    assert driver.take() == []  # not before the server's answer
    backend.send(be.command_complete("BEGIN") + FakeBackend.result("SELECT 1", status=b"T"))
    msgs = driver.take()
    assert tags(msgs) == ["BEGIN", "SELECT 1", "SET"] and ready_statuses(msgs) == [b"T", b"T"]
    assert client.role_override is None and client.settings.txn == [("pgdog.role", "replica")]
    assert client.server is server and backend.take_queries() == ["SELECT 2"]
    backend.send(FakeBackend.result("SELECT 2", status=b"T"))
    driver.take()
    driver.send(fe.query("COMMIT"))
    backend.take()
    backend.send(set_reply("COMMIT", "I"))
    driver.take()
    assert client.role_override == "replica" and client.server is None
    assert "pgdog.role" not in server.applied  # the proxy answered it: nothing to reset there


@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
def test_set_role_pipelined_behind_a_transaction_end_is_the_sessions(end: str) -> None:
    """Behind a COMMIT or ROLLBACK still in flight, the SET is outside any transaction: the
    session's at once, whatever the status was when it arrived."""
    r = RwRig()
    client, driver, _, backend = begun_on_server(r)
    driver.send(fe.query(end) + fe.query("SET pgdog.role TO replica") + fe.query(INSERT))
    assert backend.take_queries() == [end]
    assert driver.take() == []
    backend.send(set_reply(end, "I"))
    msgs = driver.take()
    assert tags(msgs) == [end, "SET"] and ready_statuses(msgs) == [b"I", b"I"]
    assert client.role_override == "replica" and client.settings.txn == []
    assert last_route(r, client) == (RD, True, OVERRIDE)


def test_reset_all_pipelined_behind_a_begin_waits_for_the_commit() -> None:
    """RESET ALL behind a BEGIN in flight is the transaction's: a ROLLBACK keeps the role."""
    r = RwRig()
    client, driver = r.connect()
    local(driver, "SET pgdog.role TO replica")
    run_on_server(r, client, driver, fe.query("SELECT 1"), FakeBackend.result("SELECT 1", status=b"I"))
    driver.send(fe.query("BEGIN; SELECT 1"))
    r.serve()
    server = client.server
    assert server is not None
    backend = r.backend(server)
    driver.send(fe.query("RESET ALL"))
    assert client.role_override == "replica"
    assert backend.take_queries() == ["RESET ALL"]  # (serve took the first)
    backend.send(be.command_complete("BEGIN") + FakeBackend.result("SELECT 1", status=b"T")
                 + set_reply("RESET", "T"))
    driver.take()
    assert client.role_override == "replica"
    driver.send(fe.query("ROLLBACK"))
    backend.take()
    backend.send(set_reply("ROLLBACK", "I"))
    driver.take()
    assert client.role_override == "replica"


@pytest.mark.parametrize("how", ["set", "startup"])
def test_session_role_replica_write_reaches_the_replica(how: str) -> None:
    """pgdog.role = replica sends every request to a replica, writes included (for the server to
    refuse): the INSERT must reach the replica's server, not wait forever in the proxy."""
    r = RwRig()
    if how == "set":
        client, driver = r.connect()
        local(driver, "SET pgdog.role = replica")
    else:
        client, driver = r.connect(**{"pgdog.role": "replica"})
    driver.send(fe.query(INSERT))
    assert last_route(r, client) == (RD, True, OVERRIDE)
    r.serve()
    r.serve()
    server = client.server
    assert server is not None and server.pool is r.replica
    assert r.forwarded[server.id] == [INSERT]


def test_set_role_upper_case_is_answered_locally() -> None:
    """PostgreSQL folds unquoted names: SET PGDOG.ROLE is the same statement as SET pgdog.role."""
    r = RwRig()
    client, driver = r.connect()
    opened = r.opened()
    driver.send(fe.query("SET PGDOG.ROLE = replica"))
    assert client.role_override == "replica"
    assert r.opened() == opened and client.state is C.IDLE


def test_reset_goes_back_to_the_startup_role() -> None:
    """RESET pgdog.role, RESET ALL and DISCARD ALL restore what the startup parameter asked for,
    as PostgreSQL's RESET restores a setting's startup value."""
    r = RwRig()
    client, driver = r.connect(options="-c pgdog.role=replica")
    assert client.startup_role == "replica"
    local(driver, "SET pgdog.role TO primary")
    local(driver, "RESET pgdog.role")
    assert client.role_override == "replica"
    for reset in ("RESET ALL", "DISCARD ALL"):
        local(driver, "SET pgdog.role TO primary")
        assert client.role_override == "primary"
        driver.send(fe.query(reset))
        assert client.role_override == "replica", reset


def test_set_role_to_default_is_a_reset() -> None:
    """SET ... TO DEFAULT goes back to the startup role, as when the server runs it; quoted,
    'default' is a value, the same as auto."""
    r = RwRig()
    client, driver = r.connect(options="-c pgdog.role=replica")
    local(driver, "SET pgdog.role TO primary")
    local(driver, "SET pgdog.role TO DEFAULT")
    assert client.role_override == "replica"
    local(driver, "SET pgdog.role = 'default'")
    assert client.role_override is None


def extended(sql: str, name: str = "", params: tuple[bytes, ...] = ()) -> bytes:
    """What libpq's PQsendQueryParams / PQsendQueryPrepared send (pgbench -M extended)."""
    parse = fe.parse(name, sql) if sql else b""
    return parse + fe.bind("", name, [], list(params), []) + fe.describe("P", "") + fe.execute("") + fe.sync()


def answer_extended(backend: FakeBackend, tag: str, status: bytes, parse: bool = True) -> None:
    backend.send((be.parse_complete() if parse else b"") + be.bind_complete() + be.no_data()
                 + be.command_complete(tag) + be.ready_for_query(status))


@pytest.mark.parametrize("how", ["extended", "prepared"])
def test_extended_begin_opens_a_write_transaction(how: str) -> None:
    """BEGIN sent with the extended protocol (a Parse, or a Bind of a prepared BEGIN) routes like
    a BEGIN Query: the transaction goes to the primary, and the INSERT after it follows the same
    server. It used to be routed as a read that then held the INSERT back for a server that
    could never be released (pgbench -M extended hung with a replica configured)."""
    r = RwRig()
    client, driver = r.connect()
    if how == "prepared":
        driver.send(fe.parse("begin_stmt", "BEGIN") + fe.sync())
        r.serve()
        if client.server is not None:
            r.backend(client.server).send(be.parse_complete() + be.ready_for_query(b"I"))
        assert [t for t, _ in driver.take()] == ["1", "Z"]
        driver.send(extended("", "begin_stmt"))
    else:
        driver.send(extended("BEGIN"))
    assert last_route(r, client) == (W, False, TXN)
    r.serve()
    server = client.server
    assert server is not None and server.pool is r.primary
    backend = r.backend(server)
    backend.take()
    # (The proxy prepares begin_stmt on this server first: a ParseComplete it keeps to itself.)
    answer_extended(backend, "BEGIN", b"T")
    driver.take()
    driver.send(extended("INSERT INTO t VALUES ($1)", params=(b"1",)))
    sent = [t for t, _ in backend.take()]
    assert sent == ["P", "B", "D", "E", "S"], "the INSERT must reach the transaction's server"
    answer_extended(backend, "INSERT 0 1", b"T")
    assert ready_statuses(driver.take()) == [b"T"]
    assert client.server is server


def test_read_that_opens_a_transaction_keeps_its_server_for_what_follows() -> None:
    """aggressive: the first statement decides, so "BEGIN; SELECT 1" is a read on the replica and
    leaves its server in a transaction. A write sent after every answer came cannot wait for that
    server to be released (it never is): it follows the server."""
    r = RwRig(read_write_strategy="aggressive")
    client, driver = r.connect()
    driver.send(extended("SELECT 1"))
    assert last_route(r, client) == (RD, False, Reason.ROUTE_READ)
    r.serve()
    server = client.server
    assert server is not None and server.pool is r.replica
    backend = r.backend(server)
    backend.take()
    # The server reports a transaction open after the read (as a function opening one might).
    answer_extended(backend, "SELECT 1", b"T")
    driver.take()
    driver.send(extended(INSERT))
    assert [t for t, _ in backend.take()] == ["P", "B", "D", "E", "S"]
    assert client.server is server


# -- SET pgdog.role that reached a server (inside a longer text, or by the extended protocol) ------


def run_on_server(r: RwRig, client: ClientSession, driver: FrontendDriver, data: bytes,
                  reply: bytes) -> list[tuple[str, bytes]]:
    """Send ``data``; the server it reaches answers ``reply``; return what the client got."""
    driver.send(data)
    r.serve()
    server = client.server
    assert server is not None
    r.backend(server).take()
    r.backend(server).send(reply)
    return driver.take()


def begun_on_server(r: RwRig) -> tuple[ClientSession, FrontendDriver, ServerSession, FakeBackend]:
    """A client whose "BEGIN; SELECT 1" a server answered: it holds that server, in a transaction."""
    client, driver = r.connect()
    run_on_server(r, client, driver, fe.query("BEGIN; SELECT 1"),
                  be.command_complete("BEGIN") + FakeBackend.result("SELECT 1", status=b"T"))
    server = client.server
    assert server is not None
    return client, driver, server, r.backend(server)


def test_set_role_in_a_multi_statement_query_takes_effect_after_it_ran() -> None:
    """PostgreSQL accepts SET pgdog.role as a placeholder setting of its own; the proxy takes the
    session's role from it once the server ran it, and does not carry it to other servers."""
    r = RwRig()
    client, driver = r.connect()
    text = "SELECT 1; SET pgdog.role TO replica"
    msgs = run_on_server(r, client, driver, fe.query(text),
                         FakeBackend.result("SELECT 1", status=b"I")[:-6] + be.command_complete("SET")
                         + be.ready_for_query(b"I"))
    assert tags(msgs) == ["SELECT 1", "SET"]
    assert client.role_override == "replica"
    assert "pgdog.role" not in client.settings.effective()
    driver.send(fe.query(INSERT))
    assert last_route(r, client) == (RD, True, OVERRIDE)


def test_role_change_in_a_failed_query_does_not_count() -> None:
    """The server ran none of a text that failed: the session keeps its role."""
    r = RwRig()
    client, driver = r.connect()
    run_on_server(r, client, driver, fe.query("SET pgdog.role TO 'replica'; SELECT 1/0"),
                  be.command_complete("SET") + be.error_response("22012", "division by zero")
                  + be.ready_for_query(b"I"))
    assert client.role_override is None


@pytest.mark.parametrize(
    ("setup", "sql", "expected"),
    [
        (None, "SET pgdog.role TO 'primary'", "primary"),
        (None, "SET SESSION pgdog.role = replica", "replica"),
        ("replica", "RESET pgdog.role", None),
        ("replica", "SET pgdog.role TO DEFAULT", None),
        ("replica", "SELECT set_config('pgdog.role', 'auto', false)", None),
        ("replica", "RESET ALL", None),
        ("replica", "DISCARD ALL", None),
        (None, "SELECT set_config('pgdog.role', 'replica', true)", None),  # transaction-local: no lasting role
    ],
)
def test_extended_protocol_role_statements(setup: str | None, sql: str, expected: str | None) -> None:
    """Drivers that send everything with the extended protocol (JDBC) change the role too."""
    r = RwRig()
    client, driver = r.connect()
    if setup is not None:
        local(driver, f"SET pgdog.role TO {setup}")
    tag = "SELECT 1" if sql.startswith("SELECT") else sql.split()[0]
    run_on_server(r, client, driver, extended(sql),
                  be.parse_complete() + be.bind_complete() + be.no_data() + be.command_complete(tag)
                  + be.ready_for_query(b"I"))
    assert client.role_override == expected, sql


def test_invalid_role_that_a_server_accepted_warns_and_keeps_the_role() -> None:
    """The server's placeholder takes any value; the proxy keeps the session's role and says so."""
    r = RwRig()
    client, driver = r.connect()
    local(driver, "SET pgdog.role TO replica")
    msgs = run_on_server(r, client, driver, extended("SET pgdog.role TO nowhere"),
                         be.parse_complete() + be.bind_complete() + be.no_data() + be.command_complete("SET")
                         + be.ready_for_query(b"I"))
    assert client.role_override == "replica"
    notices = [body for t, body in msgs if t == "N"]
    assert len(notices) == 1 and b'invalid value for parameter "pgdog.role": "nowhere"' in notices[0]
    assert tags(msgs) == ["SET"] and client.errors == 1


# -- pgdog.role in a transaction block: the session's at COMMIT, undone by ROLLBACK ------------------


def set_reply(*tags_and_status: str) -> bytes:
    """CommandComplete for each tag, then ReadyForQuery with the last argument's status."""
    *tag_list, status = tags_and_status
    return b"".join(be.command_complete(t) for t in tag_list) + be.ready_for_query(status.encode())


@pytest.mark.parametrize(("end", "expected"), [("ROLLBACK", None), ("COMMIT", "replica"), ("ABORT", None)])
def test_role_set_in_a_transaction_text_follows_its_end(end: str, expected: str | None) -> None:
    """PostgreSQL undoes a SET with its transaction: BEGIN; SET pgdog.role ...; ROLLBACK sent as
    one text leaves the session's role as it was."""
    r = RwRig()
    client, driver = r.connect()
    run_on_server(r, client, driver, fe.query(f"BEGIN; SET pgdog.role TO replica; {end}"),
                  set_reply("BEGIN", "SET", "ROLLBACK" if end != "COMMIT" else "COMMIT", "I"))
    assert client.role_override == expected
    assert client.settings.txn == [] and "pgdog.role" not in client.settings.params


@pytest.mark.parametrize(("end", "expected"), [("ROLLBACK", None), ("COMMIT", "replica")])
def test_role_set_through_a_server_in_an_open_transaction_waits_for_its_end(end: str, expected: str | None) -> None:
    """A SET pgdog.role that ran inside a transaction opened by an earlier request."""
    r = RwRig()
    client, driver, _, backend = begun_on_server(r)
    driver.send(fe.query("SELECT 1; SET pgdog.role TO replica"))
    backend.take()
    backend.send(FakeBackend.result("SELECT 1", status=b"T")[:-6] + set_reply("SET", "T"))
    driver.take()
    assert client.role_override is None  # not yet: the transaction may still roll back
    driver.send(fe.query(end))
    backend.take()
    backend.send(set_reply(end, "I"))
    driver.take()
    assert client.role_override == expected


@pytest.mark.parametrize(("end", "expected"), [("ROLLBACK", None), ("COMMIT", "replica")])
def test_role_set_in_a_transaction_the_proxy_began_follows_its_end(end: str, expected: str | None) -> None:
    """BEGIN and the SET answered by the proxy, no server yet: the role counts for routing inside
    the transaction at once, and for the session only if it commits."""
    r = RwRig()
    client, driver = r.connect()
    local(driver, "BEGIN")
    msgs = local(driver, "SET pgdog.role TO replica")
    assert tags(msgs) == ["SET"] and ready_statuses(msgs) == [b"T"]
    assert client.role_override is None
    local(driver, end)
    assert client.role_override == expected
    driver.send(fe.query(INSERT))
    assert last_route(r, client) == ((RD, True, OVERRIDE) if expected else (W, False, Reason.ROUTE_WRITE))


def test_role_set_in_an_open_transaction_routes_its_first_statement() -> None:
    """A SET in PostgreSQL takes effect at once inside its transaction: the first statement of
    a transaction the proxy began goes where the pending role says."""
    r = RwRig()
    client, driver = r.connect()
    local(driver, "BEGIN")
    local(driver, "SET pgdog.role TO replica")
    driver.send(fe.query("SELECT 1"))
    assert last_route(r, client) == (RD, True, OVERRIDE)


def test_reset_all_in_a_transaction_that_rolls_back_keeps_the_role() -> None:
    r = RwRig()
    client, driver = r.connect()
    local(driver, "SET pgdog.role TO replica")
    run_on_server(r, client, driver, fe.query("BEGIN; RESET ALL; ROLLBACK"),
                  set_reply("BEGIN", "RESET", "ROLLBACK", "I"))
    assert client.role_override == "replica"


def test_role_placeholder_on_a_server_is_reset_for_the_next_client() -> None:
    """The server keeps the placeholder pgdog.role a client's SET made: its next checkout resets
    it, so the next client's SHOW pgdog.role does not see another session's role."""
    r = RwRig()
    client, driver = r.connect()
    run_on_server(r, client, driver, fe.query("SELECT 1; SET pgdog.role TO replica"),
                  FakeBackend.result("SELECT 1", status=b"I")[:-6] + set_reply("SET", "I"))
    (server,) = [s for s in r.world.pool_io.opened if s.pool is r.replica]
    assert client.server is None and server.applied.get("pgdog.role") == "replica"
    other, other_driver = r.connect()
    other_driver.send(fe.query("SHOW pgdog.role"))
    assert other.server is server
    sync, show = r.backend(server).take_queries()
    assert 'RESET "pgdog.role"' in sync and show == "SHOW pgdog.role"
    assert "pgdog.role" not in server.applied


def test_role_committed_by_the_proxy_leaves_nothing_to_reset() -> None:
    """A SET pgdog.role the proxy answered inside a server's transaction never reached that
    server: its COMMIT adds no placeholder for the next checkout to reset."""
    r = RwRig()
    client, driver, server, _ = begun_on_server(r)
    assert tags(local(driver, "SET pgdog.role TO primary")) == ["SET"]
    driver.send(fe.query("COMMIT"))
    r.backend(server).take()
    r.backend(server).send(set_reply("COMMIT", "I"))
    driver.take()
    assert client.role_override == "primary" and "pgdog.role" not in server.applied
    other, other_driver = r.connect()
    other_driver.send(fe.query("BEGIN; SELECT 1"))
    assert other.server is server
    assert r.backend(server).take_queries() == ["BEGIN; SELECT 1"]


def test_a_repeated_parse_routes_as_the_first_did() -> None:
    """The last Parse routed is remembered whole: the same bytes again take the same route,
    a transaction's BEGIN included (its details are read from the remembered body)."""
    r = RwRig()
    client, driver = r.connect()

    def run(sql: str, tag: str, status: bytes) -> ServerSession:
        driver.send(extended(sql))
        r.serve()
        server = client.server
        assert server is not None
        r.backend(server).take()
        answer_extended(r.backend(server), tag, status)
        driver.take()
        return server

    for _ in range(2):
        assert run("BEGIN", "BEGIN", b"T").pool is r.primary
        assert last_route(r, client) == (W, False, TXN)
        run("COMMIT", "COMMIT", b"I")
        assert client.server is None
    for _ in range(2):
        assert run("SELECT 1", "SELECT 1", b"I").pool is r.replica
        assert last_route(r, client) == (RD, False, Reason.ROUTE_READ)
        assert client.server is None


# -- SET [LOCAL] pgdog.role sent with the extended protocol decides its batch ---------------------


def jdbc_begin(sql: str) -> bytes:
    """What PgJDBC sends for the first statement of a transaction (autocommit off): its BEGIN
    and the statement, one batch."""
    return (fe.parse("", "BEGIN") + fe.bind("", "", [], [], []) + fe.execute("", 0)
            + fe.parse("", sql) + fe.bind("", "", [], [], []) + fe.describe("P", "") + fe.execute("", 1)
            + fe.sync())


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SET LOCAL pgdog.role TO 'replica'", (RD, True, OVERRIDE)),
        ("set local pgdog.role = replica", (RD, True, OVERRIDE)),
        ("SET pgdog.role TO 'replica'", (RD, True, OVERRIDE)),
        ("SET LOCAL pgdog.role TO 'auto'", (W, False, TXN)),
        ("SET LOCAL pgdog.role TO 'nowhere'", (W, False, TXN)),
        ("SET LOCAL work_mem TO '8MB'", (W, False, TXN)),
    ],
)
def test_role_set_in_a_batch_after_begin_decides_the_transaction(sql: str, expected: tuple) -> None:
    """JDBC sends BEGIN and the SET LOCAL pgdog.role after it as one batch: the SET decides where
    the transaction opens, as the same two Queries would (the proxy answers those). It used to
    open on the primary, whatever the SET said."""
    r = RwRig()
    client, driver = r.connect()
    driver.send(jdbc_begin(sql))
    assert last_route(r, client) == expected
    r.serve()
    server = client.server
    assert server is not None and server.pool is (r.replica if expected[1] else r.primary)


@pytest.mark.parametrize("how", ["parse", "prepared"])
def test_role_set_with_the_extended_protocol_in_a_local_transaction(how: str) -> None:
    """A BEGIN the proxy answered, then SET LOCAL pgdog.role with the extended protocol (psycopg
    with prepare=True: a named Parse first, then Binds of the name): the transaction opens on a
    replica."""
    r = RwRig()
    client, driver = r.connect()
    rest = fe.bind("", "_pg3_0", [], [], []) + fe.describe("P", "") + fe.execute("", 0) + fe.sync()
    if how == "prepared":
        driver.send(fe.parse("_pg3_0", "SET LOCAL pgdog.role TO 'replica'") + fe.sync())
        assert [t for t, _ in driver.take()] == ["1", "Z"]  # (answered by the proxy: no server yet)
    else:
        rest = fe.parse("_pg3_0", "SET LOCAL pgdog.role TO 'replica'") + rest
    local(driver, "BEGIN")
    driver.send(rest)
    assert last_route(r, client) == (RD, True, OVERRIDE)
    r.serve()
    assert client.server is not None and client.server.pool is r.replica
