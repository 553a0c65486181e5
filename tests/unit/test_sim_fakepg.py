"""The fake PostgreSQL backend: startup, authentication, simple queries, transactions, chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.startup import build_cancel_request, build_startup
from sim.fakepg import AuthSpec, Database, FakeServer, UserAuth
from sim.fakepg.client import Driver
from sim.fakepg.session import Phase
from state.replication import LSN_SQL, format_lsn, parse_status

T0 = 1000.0


def make(tables: tuple[str, ...] = ("kv", "counters"), auth: AuthSpec | None = None) -> FakeServer:
    return FakeServer(Database(tables=tables), auth)


def connect(server: FakeServer, now: float = T0, **login: object) -> Driver:
    driver = Driver(server, now)
    reply = driver.login(**login)  # type: ignore[arg-type]
    assert reply.status == b"I", (reply.types, reply.errors)
    return driver


# --- startup and authentication ----------------------------------------------------------


@pytest.mark.parametrize("method", ["trust", "password", "md5", "scram-sha-256"])
def test_login_with_each_method(method: str) -> None:
    server = make(auth=AuthSpec(users={"app": UserAuth(method, "s3cret")}, default=None))
    driver = Driver(server, T0)
    reply = driver.login(user="app", password="s3cret", ssl=True)
    assert reply.errors == []
    assert reply.status == b"I"
    # AuthenticationOk, then ParameterStatus..., BackendKeyData, ReadyForQuery.
    assert reply.types.endswith("KZ")
    assert reply.parameters["server_version"] == "16.4"
    assert reply.parameters["session_authorization"] == "app"
    assert reply.parameters["in_hot_standby"] == "off"
    assert driver.session.phase is Phase.READY
    assert driver.query("SELECT 1").value() == "1"


@pytest.mark.parametrize("method", ["password", "md5", "scram-sha-256"])
def test_wrong_password_is_fatal_28p01(method: str) -> None:
    server = make(auth=AuthSpec(users={"app": UserAuth(method, "right")}, default=None))
    driver = Driver(server, T0)
    reply = driver.login(user="app", password="wrong")
    assert reply.codes == ["28P01"]
    assert reply.errors[0].severity == "FATAL"
    assert driver.session.closed
    assert server.connections == {}


def test_unknown_role_and_database() -> None:
    server = make(auth=AuthSpec.single("app", "pw", "md5"))
    assert Driver(server, T0).login(user="nobody").codes == ["28000"]
    server.databases = ("app",)
    reply = Driver(server, T0).login(user="app", database="other", password="pw")
    assert reply.codes == ["3D000"]


def test_startup_settings_and_options_apply_and_unknown_ones_are_fatal() -> None:
    server = make()
    driver = connect(server, params={"application_name": "pgdog-ev", "options": "-c statement_timeout=5s"})
    assert driver.query("SHOW application_name").value() == "pgdog-ev"
    assert driver.query("SHOW statement_timeout").value() == "5s"
    bad = Driver(server, T0).login(params={"no_such_setting": "1"})
    assert bad.codes == ["42704"]


def test_refused_and_too_many_connections() -> None:
    server = make()
    server.refuse_connections = True
    reply = Driver(server, T0).login()
    assert reply.codes == ["57P03"]
    assert reply.errors[0].message == "the database system is starting up"
    server.refuse_connections = False
    server.max_connections = 1
    connect(server)
    assert Driver(server, T0).login().codes == ["53300"]


def test_malformed_startup_and_messages_get_08p01_and_close() -> None:
    server = make()
    driver = Driver(server, T0)
    driver.write(b"\x00\x00\x00\x03")
    reply = driver.read()
    assert reply.codes == ["08P01"] and driver.session.closed
    driver = connect(server)
    driver.write(b"?\x00\x00\x00\x04")
    reply = driver.read()
    assert reply.codes == ["08P01"] and driver.session.closed
    driver = connect(server)
    driver.write(b"Q\x00\x00\x00\x02")  # a length below 4
    assert driver.read().codes == ["08P01"] and driver.session.closed
    driver = connect(server)
    driver.write(fe.query("SELECT 1")[:-1] + b"x")  # no NUL terminator
    assert driver.read().codes == ["08P01"]


def test_terminate_closes_and_rolls_back() -> None:
    server = make()
    driver = connect(server)
    driver.query("BEGIN; INSERT INTO kv VALUES (1, 1)")
    driver.terminate()
    assert driver.session.closed
    assert server.database.rows("kv") == []
    assert server.database.locks.owner == {}
    assert server.database.sessions == []


def test_cancel_request_connection_is_closed_without_answer() -> None:
    server = make()
    target = connect(server)
    canceller = Driver(server, T0)
    canceller.write(build_cancel_request(target.session.pid, target.session.secret))
    assert canceller.session.closed
    assert canceller.received == bytearray()
    assert server.cancels == [(T0, target.session.pid, False)]


# --- simple queries ----------------------------------------------------------------------


def test_empty_query_is_the_health_check() -> None:
    driver = connect(make())
    for sql in (";", "", " ; ;"):
        reply = driver.query(sql)
        assert reply.types == "IZ"
        assert reply.status == b"I"


def test_crud_statements_and_tags() -> None:
    driver = connect(make())
    assert driver.query("INSERT INTO kv (k, v) VALUES (1, 10), (2, 20)").tags == ["INSERT 0 2"]
    assert driver.query("insert into kv values (3, 30);").tags == ["INSERT 0 1"]
    assert driver.query("SELECT v FROM kv WHERE k = 2").value() == "20"
    reply = driver.query("SELECT k, v FROM kv ORDER BY k")
    assert reply.rows == [["1", "10"], ["2", "20"], ["3", "30"]]
    assert [c.name for c in reply.columns] == ["k", "v"]
    assert [c.type_oid for c in reply.columns] == [20, 20]
    assert reply.tags == ["SELECT 3"]
    assert driver.query("SELECT k FROM kv ORDER BY k DESC LIMIT 2").rows == [["3"], ["2"]]
    assert driver.query("UPDATE kv SET v = v + 1 WHERE k = 1").tags == ["UPDATE 1"]
    assert driver.query("UPDATE kv SET v = 5 WHERE k = 2").tags == ["UPDATE 1"]
    assert driver.query("UPDATE kv SET v = 5 WHERE k = 99").tags == ["UPDATE 0"]
    assert driver.query("DELETE FROM kv WHERE k = 3").tags == ["DELETE 1"]
    assert driver.query("SELECT count(*) FROM kv").value() == "2"
    assert driver.query("SELECT * FROM kv ORDER BY k").rows == [["1", "11"], ["2", "5"]]
    assert driver.query("INSERT INTO kv VALUES (7, 7) RETURNING k").rows == [["7"]]
    assert driver.query("SELECT sum(v), max(k), min(v) FROM kv").rows == [["23", "7", "5"]]
    db = driver.server.database
    assert db.rows("kv") == [(1, 11), (2, 5), (7, 7)]
    assert db.committed_value("kv", 2) == 5 and db.has_committed("kv", 7) and not db.has_committed("kv", 3)


def test_duplicate_key_unknown_table_and_syntax_errors() -> None:
    driver = connect(make())
    driver.query("INSERT INTO kv VALUES (1, 1)")
    reply = driver.query("INSERT INTO kv VALUES (1, 2)")
    assert reply.codes == ["23505"] and reply.errors[0].detail == "Key (k)=(1) already exists."
    assert driver.query("SELECT v FROM nope WHERE k = 1").codes == ["42P01"]
    reply = driver.query("VACUUM kv")
    assert reply.codes == ["42601"] and reply.errors[0].message == 'syntax error at or near "VACUUM"'
    assert driver.query("SELECT 'unterminated").codes == ["42601"]
    assert driver.query("SELECT (1").errors[0].message == "syntax error at end of input"
    assert driver.query("SELECT no_such_function()").codes == ["42883"]
    assert driver.query("SELECT 1/0").codes == ["22012"]
    assert driver.query("SELECT v FROM kv WHERE k = 'x'").codes == ["22P02"]
    assert driver.query("INSERT INTO kv VALUES (9223372036854775807, 1)").tags == ["INSERT 0 1"]
    assert driver.query("UPDATE kv SET v = v + 9223372036854775806 WHERE k = 1").codes == []
    assert driver.query("UPDATE kv SET v = v + 1 WHERE k = 1").codes == ["22003"]
    assert driver.server.database.internal_errors == []


def test_on_conflict() -> None:
    driver = connect(make())
    driver.query("INSERT INTO kv VALUES (1, 1)")
    assert driver.query("INSERT INTO kv VALUES (1, 5) ON CONFLICT DO NOTHING").tags == ["INSERT 0 0"]
    reply = driver.query("INSERT INTO kv VALUES (1, 5) ON CONFLICT (k) DO UPDATE SET v = kv.v + excluded.v")
    assert reply.tags == ["INSERT 0 1"]
    assert driver.server.database.committed_value("kv", 1) == 6


def test_create_table() -> None:
    driver = connect(make(tables=()))
    assert driver.query("CREATE TABLE t (k bigint primary key, v bigint)").tags == ["CREATE TABLE"]
    assert driver.query("CREATE TABLE t (k bigint primary key, v bigint)").codes == ["42P07"]
    reply = driver.query("CREATE TABLE IF NOT EXISTS t (k bigint primary key, v bigint)")
    assert reply.tags == ["CREATE TABLE"] and reply.notices[0].code == "42P07"
    assert driver.query("INSERT INTO t VALUES (1, NULL)").tags == ["INSERT 0 1"]
    assert driver.query("SELECT v FROM t WHERE k = 1").value() is None
    assert driver.server.database.table_names() == ["t"]


def test_functions_and_settings() -> None:
    driver = connect(make())
    assert driver.query("SELECT pg_is_in_recovery()").value() == "f"
    assert driver.query("SELECT pg_current_wal_lsn()").value() == format_lsn(driver.server.database.current_lsn)
    assert driver.query("SELECT pg_last_wal_replay_lsn()").value() is None
    assert driver.query("SELECT now()").value() == "2025-01-01 00:16:40+00"
    assert driver.query("SELECT pg_backend_pid()").value() == str(driver.session.pid)
    assert driver.query("SELECT 1 + 2 * 3, 'a' || 'b', NULL IS NULL").rows == [["7", "ab", "t"]]
    assert driver.query("SET application_name TO 'x'").tags == ["SET"]
    assert driver.query("SHOW application_name").value() == "x"
    assert driver.query("SET statement_timeout = 100").tags == ["SET"]
    assert driver.query("SELECT current_setting('statement_timeout')").value() == "100"
    assert driver.query("RESET application_name").parameters == {"application_name": ""}
    assert driver.query("SET no_such_thing = 1").codes == ["42704"]
    assert driver.query("SET server_version = '1'").codes == ["55P02"]
    assert driver.query("SET myapp.tenant = 'a'").tags == ["SET"]
    assert driver.query("SHOW myapp.tenant").value() == "a"
    assert driver.query("SET application_name = 'y'").parameters == {"application_name": "y"}
    assert driver.query("RESET ALL").parameters == {"application_name": ""}
    assert driver.query("DISCARD ALL").tags == ["DISCARD ALL"]
    assert driver.query("DEALLOCATE ALL").tags == ["DEALLOCATE ALL"]
    assert driver.query("DEALLOCATE nope").codes == ["26000"]


def test_the_proxys_settings_sync_query() -> None:
    """What state/params.py sync_query sends: RESET "name"; SELECT pg_catalog.set_config(...)."""
    driver = connect(make())
    driver.query("SET search_path = a, b")
    reply = driver.query("RESET \"search_path\"; SELECT pg_catalog.set_config(E'application_name', E'it\\'s', "
                         "false), pg_catalog.set_config(E'timezone', E'Europe/Paris', false)")
    assert reply.tags == ["RESET", "SELECT 1"]
    assert reply.rows == [["it's", "Europe/Paris"]]
    assert reply.parameters == {"application_name": "it's", "TimeZone": "Europe/Paris"}
    assert driver.query("SHOW search_path").value() == '"$user", public'


def test_replication_poll_on_a_primary() -> None:
    driver = connect(make())
    driver.query("INSERT INTO kv VALUES (1, 1)")
    reply = driver.query(LSN_SQL)
    status = parse_status(T0, reply.rows[0], None)
    assert status.ok and status.in_recovery is False
    assert status.lsn == driver.server.database.current_lsn
    assert status.replay_age is None
    assert driver.server.database.stats["probe"] == 1


def test_stats_count_statements_by_kind() -> None:
    driver = connect(make())
    driver.query(";")
    driver.query("SELECT 1")
    driver.query("INSERT INTO kv VALUES (1, 1); SELECT v FROM kv WHERE k = 1")
    driver.query("BEGIN; SET application_name = 'a'; COMMIT")
    assert driver.server.database.stats == {"read": 1, "write": 1, "probe": 2, "txn": 2, "other": 1}
    assert driver.server.database.queries == 7


# --- transactions ------------------------------------------------------------------------


def test_transaction_states_are_exact() -> None:
    driver = connect(make())
    assert driver.query("BEGIN").status == b"T"
    assert driver.query("INSERT INTO kv VALUES (1, 1)").status == b"T"
    reply = driver.query("BEGIN")
    assert reply.status == b"T" and reply.notices[0].code == "25001"
    assert driver.query("SELECT nope FROM kv").status == b"E"
    reply = driver.query("SELECT 1")
    assert reply.codes == ["25P02"] and reply.status == b"E"
    assert reply.errors[0].message == ("current transaction is aborted, commands ignored until end of "
                                       "transaction block")
    reply = driver.query("COMMIT")
    assert reply.tags == ["ROLLBACK"] and reply.status == b"I"
    assert driver.server.database.rows("kv") == []
    reply = driver.query("COMMIT")
    assert reply.tags == ["COMMIT"] and reply.notices[0].code == "25P01" and reply.status == b"I"
    assert driver.query("START TRANSACTION READ WRITE").tags == ["START TRANSACTION"]
    assert driver.query("END").tags == ["COMMIT"]
    assert driver.query("BEGIN; ABORT").tags == ["BEGIN", "ROLLBACK"]


def test_writes_are_visible_to_others_only_after_commit() -> None:
    server = make()
    a, b = connect(server), connect(server)
    a.query("BEGIN")
    a.query("INSERT INTO kv VALUES (1, 1)")
    assert a.query("SELECT v FROM kv WHERE k = 1").value() == "1"
    assert b.query("SELECT count(*) FROM kv").value() == "0"
    assert not server.database.has_committed("kv", 1)
    a.query("COMMIT")
    assert b.query("SELECT v FROM kv WHERE k = 1").value() == "1"


def test_rollback_discards_writes_and_settings() -> None:
    driver = connect(make())
    driver.query("BEGIN")
    driver.query("INSERT INTO kv VALUES (1, 1)")
    assert driver.query("SET application_name = 'in-txn'").parameters == {"application_name": "in-txn"}
    reply = driver.query("ROLLBACK")
    assert reply.parameters == {"application_name": ""}
    assert driver.query("SELECT count(*) FROM kv").value() == "0"


def test_multi_statement_query_is_one_implicit_transaction() -> None:
    driver = connect(make())
    reply = driver.query("INSERT INTO kv VALUES (1, 1); INSERT INTO kv VALUES (1, 2); INSERT INTO kv VALUES (3, 3)")
    assert reply.tags == ["INSERT 0 1"] and reply.codes == ["23505"] and reply.status == b"I"
    assert driver.server.database.rows("kv") == []
    reply = driver.query("INSERT INTO kv VALUES (1, 1); BEGIN; INSERT INTO kv VALUES (2, 2)")
    assert reply.status == b"T"
    driver.query("COMMIT")
    assert driver.server.database.rows("kv") == [(1, 1), (2, 2)]
    assert driver.query("SELECT 1; DISCARD ALL").codes == ["25001"]


def test_savepoints() -> None:
    driver = connect(make())
    driver.query("BEGIN; INSERT INTO kv VALUES (1, 1); SAVEPOINT a; INSERT INTO kv VALUES (2, 2)")
    assert driver.query("INSERT INTO kv VALUES (2, 3)").status == b"E"
    reply = driver.query("ROLLBACK TO SAVEPOINT a")
    assert reply.tags == ["ROLLBACK"] and reply.status == b"T"
    driver.query("RELEASE a; COMMIT")
    assert driver.server.database.rows("kv") == [(1, 1)]
    assert driver.query("SAVEPOINT x").codes == ["25P01"]


def test_read_only_transaction_refuses_writes_without_recording_them() -> None:
    driver = connect(make())
    driver.query("BEGIN READ ONLY")
    reply = driver.query("INSERT INTO kv VALUES (1, 1)")
    assert reply.codes == ["25006"]
    assert reply.errors[0].message == "cannot execute INSERT in a read-only transaction"
    assert driver.server.database.writes_refused == []
    driver.query("ROLLBACK")
    driver.query("SET default_transaction_read_only = on")
    assert driver.query("UPDATE kv SET v = 1 WHERE k = 1").codes == ["25006"]
    assert driver.query("SHOW transaction_read_only").value() == "on"


def test_two_phase_commit_statements() -> None:
    driver = connect(make())
    driver.query("BEGIN; INSERT INTO kv VALUES (1, 1)")
    assert driver.query("PREPARE TRANSACTION 'gid-1'").tags == ["PREPARE TRANSACTION"]
    assert driver.session.status == b"I"
    db = driver.server.database
    assert sorted(db.prepared) == ["gid-1"] and db.rows("kv") == []
    assert driver.query("SELECT gid FROM pg_prepared_xacts").rows == [["gid-1"]]
    assert driver.query("SELECT * FROM pg_prepared_xacts").columns[1].name == "gid"
    assert driver.query("COMMIT PREPARED 'nope'").codes == ["42704"]
    assert driver.query("BEGIN; COMMIT PREPARED 'gid-1'").codes == ["25001"]
    driver.query("ROLLBACK")
    assert driver.query("COMMIT PREPARED 'gid-1'").tags == ["COMMIT PREPARED"]
    assert db.rows("kv") == [(1, 1)] and db.prepared == {}
    driver.query("BEGIN; INSERT INTO kv VALUES (2, 2); PREPARE TRANSACTION 'gid-2'")
    assert driver.query("BEGIN; UPDATE kv SET v = 1 WHERE k = 1; PREPARE TRANSACTION 'gid-2'").codes == ["42710"]
    assert driver.session.status == b"I"
    assert driver.query("ROLLBACK PREPARED 'gid-2'").tags == ["ROLLBACK PREPARED"]
    assert db.rows("kv") == [(1, 1)]
    reply = driver.query("PREPARE TRANSACTION 'outside'")
    assert reply.tags == ["ROLLBACK"] and reply.notices[0].code == "25P01" and db.prepared == {}


def test_sql_prepare_and_execute() -> None:
    driver = connect(make())
    driver.query("INSERT INTO kv VALUES (1, 10)")
    assert driver.query("PREPARE q (bigint) AS SELECT v FROM kv WHERE k = $1").tags == ["PREPARE"]
    assert driver.query("EXECUTE q(1)").value() == "10"
    assert driver.query("PREPARE q AS SELECT 1").codes == ["42P05"]
    assert driver.query("DEALLOCATE q").tags == ["DEALLOCATE"]
    assert driver.query("EXECUTE q(1)").codes == ["26000"]


# --- arbitrary chunking ----------------------------------------------------------------------

SCRIPT = (
    build_startup({"user": "app", "database": "app", "application_name": "x"})
    + fe.query("INSERT INTO kv VALUES (1, 1), (2, 2)")
    + fe.query("BEGIN; UPDATE kv SET v = v + 1 WHERE k = 1")
    + fe.parse("s1", "SELECT k, v FROM kv WHERE k = $1") + fe.bind("", "s1", (), (b"1",), ())
    + fe.describe("P", "") + fe.execute("", 0) + fe.sync()
    + fe.query("SELECT nope; SELECT 1") + fe.query("ROLLBACK")
    + fe.parse("", "SELECT count(*) FROM kv") + fe.bind("", "", (), (), ()) + fe.execute("", 1) + fe.sync()
    + fe.query(";") + fe.terminate()
)


def _run_script(cuts: list[int]) -> bytes:
    out = bytearray()
    server = make(auth=AuthSpec(users={"app": UserAuth("md5", "pw")}))
    session = server.open_session(T0, out.extend)
    # The md5 answer depends on the salt, so log in first, then replay the rest in pieces.
    session.on_bytes(T0, SCRIPT[:len(build_startup({"user": "app", "database": "app", "application_name": "x"}))])
    from pgdog_ev.auth.md5 import md5_hash
    salt = bytes(out[9:13])
    rest = fe.password(md5_hash("app", "pw", salt)) + SCRIPT[len(build_startup(
        {"user": "app", "database": "app", "application_name": "x"})):]
    pos = 0
    for cut in sorted(set(cuts)):
        if 0 < cut < len(rest):
            session.on_bytes(T0, rest[pos:cut])
            pos = cut
    session.on_bytes(T0, rest[pos:])
    assert session.closed
    return bytes(out)


WHOLE = None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), max_size=40))
def test_any_chunking_gives_the_same_bytes(cuts: list[int]) -> None:
    global WHOLE
    if WHOLE is None:
        WHOLE = _run_script([])
    assert _run_script(cuts) == WHOLE


def test_the_script_does_what_it_says() -> None:
    from pgdog_ev.wire.framing import Framer

    out = _run_script([])
    framer = Framer(1 << 20)
    types = "".join(chr(t) for t, _ in framer.feed(out))
    # md5 request, login, 2 simple queries, an extended batch, an error, rollback, one suspended row, health check.
    assert types.count("Z") == 8
    assert "s" in types and "E" in types and "I" in types


def test_prepare_transaction_of_a_failed_block_rolls_back() -> None:
    driver = connect(make())
    driver.query("BEGIN; INSERT INTO kv VALUES (1, 1)")
    driver.query("SELECT nope FROM kv")
    reply = driver.query("PREPARE TRANSACTION 'g'")
    assert reply.tags == ["ROLLBACK"] and reply.status == b"I"
    assert driver.server.database.prepared == {} and driver.server.database.rows("kv") == []
