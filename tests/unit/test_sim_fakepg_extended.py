"""The fake backend's extended query protocol: statements, portals, pipelining, errors until Sync."""

from __future__ import annotations

import struct

from pgdog_ev.wire import frontend as fe
from sim.fakepg import Database, FakeServer
from sim.fakepg.client import Driver

T0 = 1000.0


def connect() -> Driver:
    driver = Driver(FakeServer(Database(tables=("kv",))), T0)
    assert driver.login().status == b"I"
    driver.query("INSERT INTO kv VALUES (1, 10), (2, 20), (3, 30)")
    return driver


def test_unnamed_statement_with_text_parameter() -> None:
    driver = connect()
    reply = driver.extended("SELECT k, v FROM kv WHERE k = $1", (b"2",))
    assert reply.types == "12TDCZ"
    assert reply.rows == [["2", "20"]] and reply.tags == ["SELECT 1"] and reply.status == b"I"


def test_named_statement_reused_and_described() -> None:
    driver = connect()
    driver.write(fe.parse("s", "SELECT v FROM kv WHERE k = $1") + fe.describe("S", "s") + fe.sync())
    reply = driver.read()
    assert reply.types == "1tTZ"
    from pgdog_ev.wire import backend as be

    assert be.parse_parameter_description(reply.messages[1][1]) == [20]
    assert reply.columns[0].name == "v" and reply.columns[0].type_oid == 20
    for key, value in ((b"1", "10"), (b"3", "30")):
        driver.write(fe.bind("", "s", (), (key,), ()) + fe.execute("", 0) + fe.sync())
        assert driver.read().rows == [[value]]
    assert driver.extended("SELECT 1", name="s").codes == ["42P05"]


def test_binary_parameters_and_results() -> None:
    driver = connect()
    reply = driver.extended("SELECT k, v FROM kv WHERE k = $1", (struct.pack("!q", 3),), param_formats=(1,),
                            result_formats=(1,))
    assert reply.raw_rows == [[struct.pack("!q", 3), struct.pack("!q", 30)]]
    assert all(f.format == 1 for f in reply.columns)
    reply = driver.extended("INSERT INTO kv (k, v) VALUES ($1, $2)", (struct.pack("!i", 4), b"40"),
                            param_types=(23, 20), param_formats=(1, 0), describe=False)
    assert reply.tags == ["INSERT 0 1"]
    assert driver.server.database.committed_value("kv", 4) == 40
    reply = driver.extended("SELECT v FROM kv WHERE k = $1", (b"\x00\x01",), param_formats=(1,))
    assert reply.codes == ["22P03"]


def test_max_rows_suspends_the_portal() -> None:
    driver = connect()
    driver.write(fe.query("BEGIN") + fe.parse("", "SELECT k FROM kv ORDER BY k") + fe.bind("p", "", (), (), ())
                 + fe.execute("p", 2) + fe.sync())
    reply = driver.read()
    assert reply.rows == [["1"], ["2"]] and reply.types.endswith("DDsZ") and reply.status == b"T"
    # A named portal survives the Sync inside a block.
    driver.write(fe.execute("p", 2) + fe.sync())
    reply = driver.read()
    assert reply.rows == [["3"]] and reply.tags == ["SELECT 1"]
    driver.query("COMMIT")
    driver.write(fe.execute("p", 0) + fe.sync())
    assert driver.read().codes == ["34000"]


def test_pipeline_of_several_executes_is_one_implicit_transaction() -> None:
    driver = connect()
    batch = fe.parse("ins", "INSERT INTO kv VALUES ($1, $2)")
    for k in (5, 6, 5, 7):
        batch += fe.bind("", "ins", (), (str(k).encode(), b"0"), ()) + fe.execute("", 0)
    batch += fe.sync() + fe.bind("", "ins", (), (b"8", b"8"), ()) + fe.execute("", 0) + fe.sync()
    driver.write(batch)
    reply = driver.read()
    # Two inserts, a duplicate (error), the fourth skipped until Sync; the next batch runs.
    assert reply.types == "12C2C2EZ2CZ"
    assert reply.codes == ["23505"] and reply.statuses == [b"I", b"I"]
    assert [k for k, _ in driver.server.database.rows("kv")] == [1, 2, 3, 8]


def test_errors_skip_until_sync_and_a_query_is_ignored_meanwhile() -> None:
    driver = connect()
    driver.write(fe.bind("", "missing", (), (), ()) + fe.execute("", 0) + fe.query("SELECT 1") + fe.sync()
                 + fe.query("SELECT 2"))
    reply = driver.read()
    assert reply.codes == ["26000"]
    assert reply.types == "EZTDCZ" and reply.rows == [["2"]]


def test_bind_errors() -> None:
    driver = connect()
    reply = driver.extended("SELECT v FROM kv WHERE k = $1", ())
    assert reply.codes == ["08P01"]
    assert reply.errors[0].message == 'bind message supplies 0 parameters, but prepared statement "" requires 1'
    assert driver.extended("SELECT v FROM kv WHERE k = $1", (b"x",)).codes == ["22P02"]
    assert driver.extended("SELECT v FROM nope").codes == ["42P01"]
    assert driver.extended("SELECT 1; SELECT 2").codes == ["42601"]


def test_close_and_flush() -> None:
    driver = connect()
    driver.write(fe.parse("s", "SELECT 1") + fe.flush())
    assert driver.read().types == "1"
    driver.write(fe.close("S", "s") + fe.close("S", "__pgdog_ev_noop") + fe.close("P", "x") + fe.sync())
    assert driver.read().types == "333Z"
    assert "s" not in driver.session.statements


def test_transaction_control_through_extended_protocol() -> None:
    driver = connect()
    reply = driver.extended("BEGIN")
    assert reply.tags == ["BEGIN"] and reply.status == b"T" and "n" in reply.types
    driver.extended("UPDATE kv SET v = v + 1 WHERE k = 1")
    assert driver.server.database.committed_value("kv", 1) == 10
    assert driver.extended("SELECT nope FROM kv").status == b"E"
    assert driver.extended("SELECT 1").codes == ["25P02"]
    reply = driver.extended("COMMIT")
    assert reply.tags == ["ROLLBACK"] and reply.status == b"I"
    assert driver.server.database.committed_value("kv", 1) == 10


def test_empty_statement_through_extended_protocol() -> None:
    driver = connect()
    reply = driver.extended("")
    assert reply.types == "12nIZ"


def test_sync_commits_the_implicit_transaction() -> None:
    driver = connect()
    driver.write(fe.parse("", "DELETE FROM kv WHERE k = 1") + fe.bind("", "", (), (), ()) + fe.execute("", 0))
    assert driver.read().types == "12C"
    assert driver.server.database.has_committed("kv", 1)
    driver.write(fe.sync())
    assert driver.read().status == b"I"
    assert not driver.server.database.has_committed("kv", 1)
