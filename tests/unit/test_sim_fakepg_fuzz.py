"""Garbage in, PostgreSQL errors out: the fake backend never raises and never breaks its own state."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgdog_ev.wire import frontend as fe
from sim.fakepg import Database, FakeServer
from sim.fakepg.client import Driver

T0 = 1000.0
WORDS = [
    "SELECT", "INSERT", "INTO", "kv", "VALUES", "(", ")", "1", "$1", "$2", "'a'", ",", ";", "WHERE", "k", "=", "v",
    "+", "FROM", "BEGIN", "COMMIT", "ROLLBACK", "UPDATE", "SET", "DELETE", "ORDER", "BY", "LIMIT", "CASE", "WHEN",
    "THEN", "END", "ELSE", "NULL", "IS", "NOT", "AND", "OR", "pg_sleep(0)", "count(*)", "::", "bigint", "PREPARE",
    "TRANSACTION", "EXECUTE", "SHOW", "RESET", "ALL", "DISCARD", "now()", "-", "/", "0", "E'x\\'y'", '"kv"', "ON",
    "CONFLICT", "DO", "NOTHING", "RETURNING", "*", "pg_prepared_xacts", "gid", "SAVEPOINT", "TO", "IN", "BETWEEN",
    "EXTRACT", "EPOCH", "current_setting('application_name')", "9223372036854775807", "1.5", "true", "DESC", "--",
    "/*", "*/", "AS", "x", "FOR", "counters", "CREATE", "TABLE", "IF", "EXISTS", "pg_is_in_recovery()", "<>", "%",
]


def fresh() -> Driver:
    server = FakeServer(Database(tables=("kv", "counters")))
    driver = Driver(server, T0)
    assert driver.login().status == b"I"
    driver.query("INSERT INTO kv VALUES (1, 1), (2, 2)")
    return driver


def _healthy(driver: Driver) -> None:
    assert driver.server.database.internal_errors == []
    if not driver.session.closed:
        driver.tick(T0 + 100)  # let any sleep finish
        driver.write(fe.sync() + fe.query("ROLLBACK") + fe.query("SELECT 1"))
        reply = driver.read()
        assert reply.rows[-1:] == [["1"]], (reply.types, reply.errors)
    assert driver.server.database.internal_errors == []


sql_text = st.lists(st.sampled_from(WORDS), max_size=14).map(" ".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sql_text, min_size=1, max_size=4))
def test_random_sql_through_simple_queries(queries: list[str]) -> None:
    driver = fresh()
    for sql in queries:
        reply = driver.query(sql)
        assert reply.status in (b"I", b"T", b"E", None)
    _healthy(driver)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql_text, st.lists(st.one_of(st.none(), st.binary(max_size=9)), max_size=3),
       st.lists(st.sampled_from([0, 1]), max_size=3), st.integers(0, 3))
def test_random_sql_through_the_extended_protocol(sql: str, params: list[bytes | None], formats: list[int],
                                                 max_rows: int) -> None:
    driver = fresh()
    driver.write(fe.parse("s", sql) + fe.describe("S", "s") + fe.bind("p", "s", formats, params, formats[:1])
                 + fe.describe("P", "p") + fe.execute("p", max_rows) + fe.execute("p", 0) + fe.sync())
    reply = driver.read()
    assert reply.statuses[-1:] in ([b"I"], [b"T"], [b"E"], [])
    _healthy(driver)


MESSAGE_TYPES = b"QPBDESHCXFdcfp?Z"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(MESSAGE_TYPES), st.binary(max_size=24)), max_size=6))
def test_random_messages(messages: list[tuple[int, bytes]]) -> None:
    driver = fresh()
    data = b"".join(bytes([t]) + struct.pack("!I", len(body) + 4) + body for t, body in messages)
    driver.write(data)
    reply = driver.read()
    assert all(e.code for e in reply.errors)
    _healthy(driver)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_before_and_after_login(data: bytes) -> None:
    server = FakeServer(Database(tables=("kv",)))
    raw = Driver(server, T0)
    raw.write(data)
    assert server.database.internal_errors == []
    driver = fresh()
    driver.write(data)
    driver.read()
    assert driver.server.database.internal_errors == []
