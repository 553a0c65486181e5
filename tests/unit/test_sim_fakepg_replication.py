"""Fake replicas: base backup, replay with lag and pause, refused writes, promotion, rewind."""

from __future__ import annotations

import pytest

from sim.fakepg import Database, FakeServer
from sim.fakepg.client import Driver
from state.replication import LSN_SQL, format_lsn, parse_status

T0 = 1000.0


def login(server: FakeServer, now: float = T0) -> Driver:
    driver = Driver(server, now)
    assert driver.login().status == b"I"
    return driver


@pytest.fixture
def pair() -> tuple[FakeServer, FakeServer]:
    primary = FakeServer(Database(tables=("kv",), name="p"))
    login(primary).query("INSERT INTO kv VALUES (1, 1)")
    replica = FakeServer(Database(primary=primary.database, name="r", lag=0.5))
    return primary, replica


def test_base_backup_copies_the_data_and_starts_in_recovery(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    db = replica.database
    assert db.in_recovery and db.rows("kv") == [(1, 1)]
    assert db.replay_lsn == primary.database.current_lsn
    reply = login(replica).query(LSN_SQL)
    status = parse_status(T0, reply.rows[0], None)
    assert status.in_recovery is True and status.lsn == primary.database.current_lsn
    assert status.replay_age is None  # nothing replayed yet
    assert Database(primary=primary.database).name == "p.r2"


def test_replay_waits_for_the_lag_and_can_be_paused(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    writer = login(primary, T0 + 1)
    writer.query("UPDATE kv SET v = 2 WHERE k = 1", now=T0 + 1)
    db = replica.database
    assert db.replicate(T0 + 1.2) == 0 and db.committed_value("kv", 1) == 1
    assert db.replicate(T0 + 1.5) == 1 and db.committed_value("kv", 1) == 2
    assert db.last_replay_timestamp == T0 + 1
    reply = login(replica, T0 + 3).query(LSN_SQL, now=T0 + 3)
    status = parse_status(T0 + 3, reply.rows[0], None)
    assert status.replay_age == pytest.approx(2.0)
    assert reply.rows[0][1] == format_lsn(primary.database.current_lsn)
    db.replay_paused = True
    writer.query("UPDATE kv SET v = 3 WHERE k = 1", now=T0 + 4)
    assert db.replicate(T0 + 10) == 0
    db.replay_paused = False
    db.lag = 0.0
    assert db.replicate(T0 + 10) == 1 and db.committed_value("kv", 1) == 3


def test_a_replica_only_receives_flushed_wal(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    primary.database.synchronous_commit = False
    login(primary).query("INSERT INTO kv VALUES (2, 2)")
    replica.database.lag = 0
    assert replica.database.replicate(T0 + 10) == 0
    primary.database.flush(T0 + 10)
    assert replica.database.replicate(T0 + 10) == 1


def test_a_replica_refuses_writes_and_records_them(pair: tuple[FakeServer, FakeServer]) -> None:
    _, replica = pair
    driver = login(replica, T0 + 2)
    reply = driver.query("INSERT INTO kv VALUES (5, 5)", now=T0 + 2)
    assert reply.codes == ["25006"]
    assert reply.errors[0].message == "cannot execute INSERT in a read-only transaction"
    assert driver.query("SELECT v FROM kv WHERE k = 1").value() == "1"
    assert driver.query("BEGIN; DELETE FROM kv WHERE k = 1").codes == ["25006"]
    driver.query("ROLLBACK")
    assert driver.query("SELECT v FROM kv WHERE k = 1 FOR UPDATE").codes == ["25006"]
    reply = driver.query("BEGIN READ WRITE")
    assert reply.codes == ["25006"] and reply.status == b"E"
    driver.query("ROLLBACK")
    assert driver.query("SELECT pg_current_wal_lsn()").codes == ["55000"]
    assert driver.query("SHOW transaction_read_only").value() == "on"
    db = replica.database
    assert db.writes_refused[0] == (T0 + 2, "INSERT INTO kv VALUES (5, 5)", driver.session.pid)
    assert [text.split()[0] for _, text, _ in db.writes_refused] == ["INSERT", "DELETE", "SELECT"]
    assert db.stats["write"] == 2


def test_promotion_makes_the_replica_writable(pair: tuple[FakeServer, FakeServer]) -> None:
    _, replica = pair
    db = replica.database
    old = login(replica)
    old.query("BEGIN; SELECT 1")  # started in recovery: stays read-only
    fresh = login(replica)
    replay = db.replay_lsn
    db.promote(T0 + 5)
    assert not db.in_recovery and db.primary is None and db.timeline == 2
    reply = fresh.query("INSERT INTO kv VALUES (2, 2)", now=T0 + 5)
    assert reply.tags == ["INSERT 0 1"] and reply.parameters == {"in_hot_standby": "off"}
    assert db.current_lsn > replay and db.wal[-1].lsn > replay
    assert old.query("INSERT INTO kv VALUES (3, 3)").codes == ["25006"]
    assert db.writes_refused == []
    assert fresh.query(LSN_SQL).rows[0][0] == "f"
    # The promotion is on disk: a crash does not put the node back into recovery.
    replica.crash()
    db.restart(T0 + 6)
    assert not db.in_recovery and db.rows("kv") == [(1, 1), (2, 2)]


def test_follow_discards_what_the_new_primary_never_had(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    old = primary.database
    writer = login(primary)
    writer.query("INSERT INTO kv VALUES (2, 2)", now=T0 + 1)  # acknowledged, never replicated
    new = replica.database
    new.promote(T0 + 2)
    login(replica).query("INSERT INTO kv VALUES (3, 3)", now=T0 + 3)
    dropped = old.follow(new, T0 + 4)
    assert [c.key for r in dropped for c in r.changes] == [2]
    assert old.discarded == dropped
    assert writer.session.closed and writer.read().codes == ["57P01"]
    assert old.in_recovery and old.rows("kv") == [(1, 1)]
    assert old.replicate(T0 + 4) == 1 and old.rows("kv") == [(1, 1), (3, 3)]
    assert login(primary).query("INSERT INTO kv VALUES (9, 9)").codes == ["25006"]


def test_follow_while_down_rewinds_the_disk(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    login(primary).query("INSERT INTO kv VALUES (2, 2)", now=T0 + 1)
    primary.crash()
    replica.database.promote(T0 + 2)
    dropped = primary.database.follow(replica.database)
    assert [c.key for r in dropped for c in r.changes] == [2] and not primary.database.up
    primary.restart(T0 + 3)
    assert primary.database.in_recovery and primary.database.rows("kv") == [(1, 1)]


def test_a_replica_keeps_replaying_after_its_own_crash(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    db = replica.database
    db.lag = 0
    writer = login(primary)
    writer.query("INSERT INTO kv VALUES (2, 2)")
    db.replicate(T0)
    replica.crash()
    writer.query("INSERT INTO kv VALUES (3, 3)")
    assert db.replicate(T0) == 0
    db.restart(T0 + 1)
    assert db.in_recovery and db.rows("kv") == [(1, 1), (2, 2)]
    assert db.replicate(T0 + 1) == 1 and db.rows("kv") == [(1, 1), (2, 2), (3, 3)]


def test_prepared_transactions_replicate_and_hold_locks_after_promotion(
    pair: tuple[FakeServer, FakeServer],
) -> None:
    primary, replica = pair
    db = replica.database
    db.lag = 0
    login(primary).query("BEGIN; UPDATE kv SET v = 7 WHERE k = 1; PREPARE TRANSACTION 'g'")
    db.replicate(T0)
    assert sorted(db.prepared) == ["g"]
    db.promote(T0 + 1)
    waiter = login(replica, T0 + 1)
    assert waiter.query("UPDATE kv SET v = 0 WHERE k = 1").types == ""
    assert login(replica, T0 + 1).query("COMMIT PREPARED 'g'").tags == ["COMMIT PREPARED"]
    waiter.tick(T0 + 1)
    assert waiter.read().tags == ["UPDATE 1"] and db.rows("kv") == [(1, 0)]


def test_a_replica_whose_history_diverged_stops_replaying(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    other = FakeServer(Database(primary=primary.database, name="r2", lag=0))
    login(primary).query("INSERT INTO kv VALUES (2, 2)")
    assert other.database.replicate(T0) == 1
    primary.database.follow(replica.database)  # the record (2, 2) is rewound away on the old primary
    replica.database.promote(T0 + 1)
    other.database.replicate(T0 + 2)
    assert other.database.replication_error is not None
    assert other.database.rows("kv") == [(1, 1), (2, 2)]
    dropped = other.database.follow(replica.database)
    assert [c.key for r in dropped for c in r.changes] == [2]
    assert other.database.replication_error is None and other.database.rows("kv") == [(1, 1)]


def test_catch_up_ignores_lag_and_pause_but_not_what_was_unflushed(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    db = replica.database
    db.lag, db.replay_paused = 100.0, True
    writer = login(primary)
    writer.query("INSERT INTO kv VALUES (2, 2)")
    primary.database.synchronous_commit = False
    writer.query("INSERT INTO kv VALUES (3, 3)")
    primary.crash()
    assert db.catch_up(T0) == 1 and db.rows("kv") == [(1, 1), (2, 2)]


def test_a_replica_with_nothing_to_discard_follows_without_a_restart(pair: tuple[FakeServer, FakeServer]) -> None:
    primary, replica = pair
    third = FakeServer(Database(primary=primary.database, name="r3"))
    reader = login(third)
    replica.database.promote(T0)
    assert third.database.follow(replica.database) == []
    assert not reader.session.closed and third.database.primary is replica.database
    login(replica).query("INSERT INTO kv VALUES (4, 4)")
    assert third.database.replicate(T0 + 10) == 1
    assert reader.query("SELECT v FROM kv WHERE k = 4").value() == "4"


def test_make_server_builds_scenario_nodes() -> None:
    import random
    from types import SimpleNamespace

    from sim.fakepg import make_server

    rng = random.Random(7)
    world = SimpleNamespace(rng=rng, entropy=rng.randbytes, uniform=lambda spec: float(spec[0]))
    sc = SimpleNamespace(replication_lag=[0.25, 0.5], backend_auth="scram-sha-256")
    p = make_server(world, sc, name="pg0", user="app", password="secret", database="app")
    r = make_server(world, sc, primary=p.database, name="pg1", user="app", password="secret", database="app")
    assert p.database.committed_value("counters", 5) == 0 and r.database.committed_value("counters", 5) == 0
    assert r.database.lag == 0.25 and r.database.in_recovery
    driver = Driver(r, T0)
    assert driver.login(user="app", database="app", password="secret").status == b"I"
    assert Driver(p, T0).login(user="app", database="other", password="secret").codes == ["3D000"]
    assert Driver(p, T0).login(user="admin", database="app").codes == ["28000"]
