"""The fake node's durability: WAL on the virtual disk, crash and restart, 2PC across a crash."""

from __future__ import annotations

from sim.disk import VirtualDisk
from sim.fakepg import Database, FakeServer
from sim.fakepg.client import Driver
from sim.fakepg.wal import decode_all

T0 = 1000.0


def setup(disk: VirtualDisk | None = None, sync: bool = True) -> tuple[FakeServer, Driver]:
    server = FakeServer(Database(tables=("kv",), disk=disk, synchronous_commit=sync))
    driver = Driver(server, T0)
    assert driver.login().status == b"I"
    return server, driver


def reconnect(server: FakeServer, now: float) -> Driver:
    driver = Driver(server, now)
    assert driver.login().status == b"I"
    return driver


def test_commits_are_fsynced_before_the_acknowledgement() -> None:
    server, driver = setup()
    disk = server.database.disk
    fsyncs = disk.fsyncs
    driver.query("INSERT INTO kv VALUES (1, 1)")
    assert disk.fsyncs == fsyncs + 1
    records, _ = decode_all(disk.durable("wal"))
    assert [r.changes[0].key for r in records] == [1]
    driver.query("SELECT v FROM kv WHERE k = 1")
    assert disk.fsyncs == fsyncs + 1  # a read-only transaction writes no WAL


def test_crash_keeps_exactly_the_fsynced_commits() -> None:
    server, driver = setup()
    db = server.database
    driver.query("INSERT INTO kv VALUES (1, 1), (2, 2)")
    driver.query("UPDATE kv SET v = 5 WHERE k = 1")
    other = reconnect(server, T0)
    other.query("BEGIN; INSERT INTO kv VALUES (3, 3)")  # in flight: lost
    lsn = db.current_lsn
    server.crash()
    assert not db.up and driver.session.dead and other.session.dead
    assert driver.session.closed and server.connections == {} and db.sessions == []
    assert Driver(server, T0).session.closed  # no connections while down
    db.restart(T0 + 5)
    assert db.rows("kv") == [(1, 5), (2, 2)]
    assert db.current_lsn == lsn and db.lost == []
    assert reconnect(server, T0 + 5).query("SELECT count(*) FROM kv").value() == "2"


def test_synchronous_commit_off_loses_what_was_not_flushed() -> None:
    server, driver = setup(sync=False)
    db = server.database
    driver.query("INSERT INTO kv VALUES (1, 1)")
    db.flush(T0)
    driver.query("INSERT INTO kv VALUES (2, 2)")  # acknowledged, not yet on the platter
    assert db.has_committed("kv", 2)
    server.crash()
    db.restart(T0 + 1)
    assert db.rows("kv") == [(1, 1)]
    assert [r.changes[0].key for r in db.lost] == [2]


def test_a_session_can_turn_synchronous_commit_off() -> None:
    server, driver = setup()
    driver.query("SET synchronous_commit = off")
    assert driver.query("SHOW synchronous_commit").value() == "off"
    driver.query("INSERT INTO kv VALUES (1, 1)")
    server.crash()
    server.restart(T0 + 1)
    assert server.database.rows("kv") == []


def test_a_crash_may_keep_unsynced_appends() -> None:
    disk = VirtualDisk(choose=lambda n: n)  # the kernel wrote every dirty page back
    server, driver = setup(disk=disk, sync=False)
    driver.query("INSERT INTO kv VALUES (1, 1)")
    server.crash()
    server.restart(T0 + 1)
    assert server.database.rows("kv") == [(1, 1)] and server.database.lost == []


def test_prepared_transactions_survive_a_crash_and_keep_their_locks() -> None:
    server, driver = setup(sync=False)
    db = server.database
    driver.query("INSERT INTO kv VALUES (1, 1)")
    db.flush(T0)
    driver.query("BEGIN; UPDATE kv SET v = 2 WHERE k = 1; PREPARE TRANSACTION 'tx1'")
    server.crash()
    db.restart(T0 + 1)
    assert sorted(db.prepared) == ["tx1"] and db.rows("kv") == [(1, 1)]
    a = reconnect(server, T0 + 1)
    assert a.query("SELECT gid FROM pg_prepared_xacts").rows == [["tx1"]]
    b = reconnect(server, T0 + 1)
    assert b.query("UPDATE kv SET v = v + 10 WHERE k = 1").types == ""  # waits for the prepared lock
    assert a.query("COMMIT PREPARED 'tx1'").tags == ["COMMIT PREPARED"]
    b.tick(T0 + 1)
    assert b.read().tags == ["UPDATE 1"]
    assert db.rows("kv") == [(1, 12)]
    server.crash()
    db.restart(T0 + 2)
    # COMMIT PREPARED is always flushed; b's update ran with synchronous_commit off and is lost.
    assert db.rows("kv") == [(1, 2)] and db.prepared == {}
    assert [(r.kind, r.changes[0].value) for r in db.lost] == [("commit", 12)]


def test_a_torn_wal_tail_is_cut_at_restart() -> None:
    server, driver = setup()
    driver.query("INSERT INTO kv VALUES (1, 1)")
    server.database.disk.append("wal", b'{"kind": "com')
    server.database.disk.fsync("wal")
    server.crash()
    server.restart(T0 + 1)
    assert server.database.rows("kv") == [(1, 1)]
    assert server.database.disk.durable("wal").endswith(b"\n")


def test_the_servers_synchronous_commit_applies_to_sessions_that_did_not_set_it() -> None:
    server, driver = setup()
    chosen = reconnect(server, T0)
    chosen.query("SET synchronous_commit = on")
    server.database.synchronous_commit = False  # a reload of postgresql.conf
    assert driver.query("SHOW synchronous_commit").value() == "off"
    driver.query("INSERT INTO kv VALUES (1, 1)")
    chosen.query("INSERT INTO kv VALUES (2, 2)")  # its fsync also makes the first durable
    driver.query("INSERT INTO kv VALUES (3, 3)")
    server.crash()
    server.restart(T0 + 1)
    assert server.database.rows("kv") == [(1, 1), (2, 2)]
