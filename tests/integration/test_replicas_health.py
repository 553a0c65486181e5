"""Health checks, bans and replication lag in a cluster of a primary and two replicas.

Each test gets servers of its own (`fresh_replica_set`): they stop replicas and pause replay. Bans
are observed the way an operator would: the event log (BAN/UNBAN records, with their monotonic
timestamps, which time.monotonic() in the test shares) and the admin console (SHOW POOLS, SHOW
BANS, SHOW REPLICATION, BAN, UNBAN, HEALTHCHECK).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from state.reasons import Reason
from tests.harness.admin import ADMIN, admin_connect, only, show
from tests.harness.clients import connect
from tests.harness.pgserver import PgServer
from tests.harness.ports import free_port
from tests.harness.proxy import ProxyProcess
from tests.harness.replicas import Event, ReplicaSet, cluster_general, cluster_users, events, wait_event

Poll = Callable[..., Any]

IDLE_CHECK_MS = 300
CHECK_TIMEOUT_MS = 500
BAN_MS = 1000
# The proxy's ban/maintenance ticks run every 1/3 s; a test run next to others needs slack too.
TICK = 0.34
SLACK = 0.8
CONNECT_BANS = (Reason.BAN_CONNECT_ERROR, Reason.BAN_HEALTHCHECK)

BANS_COLUMNS = ["id", "database", "user", "addr", "port", "shard", "role", "ban_reason", "ban_time_left", "error"]
REPLICATION_COLUMNS = ["id", "database", "user", "addr", "port", "shard", "role", "replica_lag",
                       "replica_lag_bytes", "pg_lsn", "lsn_age", "pg_is_in_recovery"]


def _general(**extra: Any) -> dict[str, Any]:
    return cluster_general(**{
        "load_balancing_strategy": "round_robin",
        "read_write_split": "include_primary",
        "healthcheck_interval": IDLE_CHECK_MS,
        "idle_healthcheck_interval": IDLE_CHECK_MS,
        "idle_healthcheck_delay": 0,
        "healthcheck_timeout": CHECK_TIMEOUT_MS,
        "ban_timeout": BAN_MS,
        "checkout_timeout": 5000,
        **extra,
    })


def _proxy(rs: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], **general: Any) -> ProxyProcess:
    return proxy_factory(general=_general(**general), databases=rs.databases(), users=cluster_users(), admin=ADMIN)


def _pool_ids(proxy: ProxyProcess) -> dict[int, int]:
    """Server port -> pool id (the ids BAN/UNBAN/HEALTHCHECK and the event log use)."""
    with admin_connect(proxy) as admin:
        return {int(r["port"]): int(r["id"]) for r in show(admin, "SHOW POOLS") if r["database"] == "app"}


def _reads(conn: psycopg.Connection, n: int) -> list[int]:
    out = []
    for _ in range(n):
        row = conn.execute("SELECT inet_server_port()").fetchone()
        assert row is not None
        out.append(int(row[0]))
    return out


def _ban_of(proxy: ProxyProcess, pool: int, poll: Poll, after: float = 0.0, timeout: float = 10.0) -> Event:
    return wait_event(poll, proxy, "ban", lambda e: e.id == pool and e.at >= after, timeout=timeout,
                      what=f"BAN of pool {pool}")


def _unban_of(proxy: ProxyProcess, pool: int, poll: Poll, after: float = 0.0, timeout: float = 10.0) -> Event:
    return wait_event(poll, proxy, "unban", lambda e: e.id == pool and e.at >= after, timeout=timeout,
                      what=f"UNBAN of pool {pool}")


def _pools_row(proxy: ProxyProcess, port: int) -> dict[str, Any]:
    with admin_connect(proxy) as admin:
        return only(show(admin, "SHOW POOLS"), database="app", port=port)


def _bans(proxy: ProxyProcess) -> list[dict[str, Any]]:
    with admin_connect(proxy) as admin:
        return show(admin, "SHOW BANS")


def _wait_no_bans(proxy: ProxyProcess, poll: Poll, timeout: float = 10.0) -> None:
    poll(lambda: not _bans(proxy), timeout=timeout, what="every ban lifted")


@pytest.fixture
def shared(replica_set: ReplicaSet) -> Iterator[ReplicaSet]:
    """The module's servers, for tests that stop no server (they ban by hand or pause replay):
    replay resumes and the replicas catch up afterwards, whatever the test did."""
    yield replica_set
    for r in replica_set.replicas:
        _resume_replay(replica_set, r)
    replica_set.sync()


# --------------------------------------------------------------------------- dead replicas


def test_killed_replica_banned_then_unbanned_after_restart(
    fresh_replica_set: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """A replica stopped hard is banned by the background health checks within the idle-check
    interval plus the check timeout, without any client touching it; reads then avoid it. The
    ban outlives ban_timeout while the host stays down, and lifts once it answers again."""
    rs = fresh_replica_set
    proxy = _proxy(rs, proxy_factory)
    ids = _pool_ids(proxy)
    victim = rs.replicas[1]
    vid = ids[victim.port]
    with connect(proxy) as conn:
        assert set(_reads(conn, 9)) == {s.port for s in rs.servers}

        t0 = time.monotonic()
        victim.stop(mode="immediate")
        ban = _ban_of(proxy, vid, poll, after=t0)
        detect = ban.at - t0
        print(f"\nkill -> BAN: {detect * 1000:.0f} ms")
        assert ban.a in CONNECT_BANS, ban
        assert detect <= (IDLE_CHECK_MS + CHECK_TIMEOUT_MS) / 1000 + SLACK, f"banned after {detect:.2f}s"

        row = _pools_row(proxy, victim.port)
        assert (row["banned"], row["healthy"]) == (True, False), row
        bans = _bans(proxy)
        assert len(bans) == 1, bans
        b = bans[0]
        assert (b["id"], b["port"], b["role"]) == (vid, victim.port, "replica"), b
        assert b["ban_reason"] in ("connect error", "health check failed"), b
        assert b["error"], b

        # Clients keep working, on the live hosts only.
        reads = _reads(conn, 12)
        assert Counter(reads) == {rs.primary.port: 6, rs.replicas[0].port: 6}, Counter(reads)

        # Past ban_timeout, the host still down: the ban stays (time left 0: waiting for an answer).
        poll(lambda: _bans(proxy)[0]["ban_time_left"] == 0, timeout=BAN_MS / 1000 + 3,
             what="ban_time_left reaching 0")
        time.sleep(3 * TICK)  # several ban ticks pass with the host still down: nothing may change
        assert [b["id"] for b in _bans(proxy)] == [vid]
        assert not [e for e in events(proxy, "unban") if e.id == vid]

        t_restart = time.monotonic()
        victim.start()
        t_up = time.monotonic()
        unban = _unban_of(proxy, vid, poll, after=t_restart)
        assert unban.a == Reason.UNBAN_EXPIRED, unban
        assert unban.at - ban.at >= BAN_MS / 1000
        late = unban.at - t_up
        print(f"restart -> UNBAN: {late * 1000:.0f} ms")
        assert late <= IDLE_CHECK_MS / 1000 + TICK + SLACK, f"unbanned {late:.2f}s after the restart"

        row = _pools_row(proxy, victim.port)
        assert (row["banned"], row["healthy"]) == (False, True), row
        assert Counter(_reads(conn, 9)) == {s.port: 3 for s in rs.servers}


def test_unban_waits_for_ban_timeout(
    fresh_replica_set: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """A host back before its ban expires stays out of the rotation until ban_timeout is over."""
    rs = fresh_replica_set
    proxy = _proxy(rs, proxy_factory, ban_timeout=2000)
    victim = rs.replicas[0]
    vid = _pool_ids(proxy)[victim.port]
    t0 = time.monotonic()
    victim.stop(mode="immediate")
    ban = _ban_of(proxy, vid, poll, after=t0)
    victim.start()
    with connect(proxy) as conn:
        # Back and answering, but still banned: reads avoid it while the ban runs.
        if time.monotonic() < ban.at + 1.5:
            assert victim.port not in _reads(conn, 8)
        unban = _unban_of(proxy, vid, poll, after=ban.at)
        assert unban.at - ban.at >= 2.0, unban.at - ban.at
        assert unban.at - ban.at <= 2.0 + TICK + SLACK, unban.at - ban.at
        assert victim.port in _reads(conn, 3)


def test_reads_right_after_a_kill_are_rerouted(
    fresh_replica_set: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """With background checks far apart, the first reads after a replica dies find out: the
    connect error bans the host and those reads move to another host instead of failing."""
    rs = fresh_replica_set
    proxy = _proxy(rs, proxy_factory, idle_healthcheck_interval=600000, idle_healthcheck_delay=600000,
                   healthcheck_interval=600000)
    victim = rs.replicas[0]
    vid = _pool_ids(proxy)[victim.port]
    with connect(proxy) as conn:
        assert set(_reads(conn, 6)) == {s.port for s in rs.servers}
        victim.stop(mode="immediate")
        reads = _reads(conn, 12)
        assert victim.port not in reads, Counter(reads)
        ban = _ban_of(proxy, vid, poll)
        assert ban.a in CONNECT_BANS, ban


def test_all_replicas_down_primary_serves_reads(
    fresh_replica_set: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """exclude_primary keeps reads off the primary only while a replica can take them: with both
    replicas dead, reads are served by the primary."""
    rs = fresh_replica_set
    proxy = _proxy(rs, proxy_factory, read_write_split="exclude_primary")
    ids = _pool_ids(proxy)
    with connect(proxy) as conn:
        assert set(_reads(conn, 4)) == rs.replica_ports
        for r in rs.replicas:
            r.stop(mode="immediate")
        assert set(_reads(conn, 6)) == {rs.primary.port}
        for r in rs.replicas:
            _ban_of(proxy, ids[r.port], poll)
        assert set(_reads(conn, 6)) == {rs.primary.port}
        # A write still works too.
        conn.execute("CREATE TABLE all_down (a int)")


def test_primary_down_writes_fail_fast_reads_continue(
    fresh_replica_set: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """Configured roles (no detection): with the primary dead, a write has nowhere to go and fails
    at once with a connection error, not after checkout_timeout; reads carry on on the replicas,
    and the client can go on reading on the same connection."""
    rs = fresh_replica_set
    proxy = _proxy(rs, proxy_factory, checkout_timeout=10000)
    pid = _pool_ids(proxy)[rs.primary.port]
    with connect(proxy) as conn:
        conn.execute("CREATE TABLE pd (a int)")
        rs.primary.stop(mode="immediate")
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("INSERT INTO pd VALUES (1)")
        assert time.monotonic() - t0 < 3.0, "the write waited instead of failing"
        assert "connect" in str(info.value).lower(), info.value
        reads = _reads(conn, 8)
        assert set(reads) == rs.replica_ports, Counter(reads)
        _ban_of(proxy, pid, poll)
        assert set(_reads(conn, 4)) == rs.replica_ports


@contextlib.contextmanager
def _frozen(server: PgServer) -> Iterator[None]:
    """SIGSTOP a server's postmaster and backends (a host that accepts connections but never
    answers), SIGCONT on the way out."""
    with open(os.path.join(server.datadir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(postmaster)], capture_output=True, text=True,
                              timeout=10).stdout.split()
    pids = [postmaster, *(int(p) for p in children)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_hung_replica_banned_by_check_timeout(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """A replica that stops answering (processes frozen, sockets still open) fails its health
    check by healthcheck_timeout and is banned; reads avoid it; once it answers again the ban
    lifts."""
    rs = shared
    proxy = _proxy(rs, proxy_factory)
    victim = rs.replicas[1]
    vid = _pool_ids(proxy)[victim.port]
    with connect(proxy) as conn:
        assert set(_reads(conn, 6)) == {s.port for s in rs.servers}
        with _frozen(victim):
            t0 = time.monotonic()
            ban = _ban_of(proxy, vid, poll, after=t0)
            detect = ban.at - t0
            print(f"\nfreeze -> BAN: {detect * 1000:.0f} ms")
            assert ban.a == Reason.BAN_HEALTHCHECK, ban
            assert detect <= (IDLE_CHECK_MS + CHECK_TIMEOUT_MS) / 1000 + TICK + SLACK, detect
            assert detect >= CHECK_TIMEOUT_MS / 1000, "banned before the check could time out"
            assert only(_bans(proxy), id=vid)["ban_reason"] == "health check failed"
            assert Counter(_reads(conn, 8)) == {rs.primary.port: 4, rs.replicas[0].port: 4}
            t_thaw = time.monotonic()
        unban = _unban_of(proxy, vid, poll, after=t_thaw)
        assert unban.a == Reason.UNBAN_EXPIRED, unban
        assert victim.port in _reads(conn, 3)


def test_reads_queued_at_a_banned_host_move(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """A read waiting for a busy replica's only connection moves to the other replica the moment
    the busy one is banned, instead of waiting for checkout_timeout."""
    rs = shared
    proxy = _proxy(rs, proxy_factory, default_pool_size=1, read_write_split="exclude_primary",
                   checkout_timeout=15000)
    ids = _pool_ids(proxy)
    holder = connect(proxy)
    try:
        holder.execute("BEGIN READ ONLY")
        row = holder.execute("SELECT inet_server_port()").fetchone()
        assert row is not None
        busy = int(row[0])
        other = (rs.replica_ports - {busy}).pop()
        result: dict[str, Any] = {}

        def read_twice() -> None:
            # Round robin: one of two reads is routed to the busy replica and queues there.
            with connect(proxy) as conn:
                result["ports"] = _reads(conn, 2)
                result["at"] = time.monotonic()

        t0 = time.monotonic()
        thread = threading.Thread(target=read_twice, daemon=True)
        thread.start()
        wait_event(poll, proxy, "enqueue", lambda e: e.machine == "pool" and e.id == ids[busy] and e.at >= t0,
                   what="a read queued at the busy replica")
        assert "ports" not in result
        with admin_connect(proxy) as admin:
            t_ban = time.monotonic()
            admin.execute(f"BAN {ids[busy]}")
        thread.join(10)
        assert not thread.is_alive(), "the queued read did not move"
        assert set(result["ports"]) == {other}, result
        assert result["at"] - t_ban < 2.0, result["at"] - t_ban
    finally:
        holder.close()


# --------------------------------------------------------------------------- lag


def _pause_replay(rs: ReplicaSet, replica: Any) -> None:
    rs.sql(replica, "SELECT pg_wal_replay_pause()")


def _resume_replay(rs: ReplicaSet, replica: Any) -> None:
    rs.sql(replica, "SELECT pg_wal_replay_resume()")


def _replication(proxy: ProxyProcess) -> list[dict[str, Any]]:
    with admin_connect(proxy) as admin:
        return [r for r in show(admin, "SHOW REPLICATION") if r["database"] == "app"]


@pytest.mark.parametrize("limit", ["bytes", "ms"])
def test_lagging_replica_banned_then_unbanned(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll, limit: str
) -> None:
    """A replica whose replay is paused falls behind the primary's writes: past
    ban_replica_lag_bytes (or ban_replica_lag, in ms) it is banned for lag and reads avoid it;
    once replay resumes and it catches up, the ban lifts."""
    rs = shared
    threshold = {"ban_replica_lag_bytes": 256 * 1024} if limit == "bytes" else {"ban_replica_lag": 1000}
    proxy = _proxy(rs, proxy_factory, lsn_check_delay=0, lsn_check_interval=250, lsn_check_timeout=1000,
                   **threshold)
    lagger = rs.replicas[0]
    lid = _pool_ids(proxy)[lagger.port]
    table = rs.table("lag", "id int, pad text")
    _wait_no_bans(proxy, poll)
    _pause_replay(rs, lagger)
    try:
        t0 = time.monotonic()
        rows = 5000 if limit == "bytes" else 1
        rs.sql(rs.primary, f"INSERT INTO {table} SELECT g, repeat('x', 200) FROM generate_series(1, {rows}) g")
        ban = _ban_of(proxy, lid, poll, after=t0)
        assert ban.a == Reason.BAN_LAG, ban
        print(f"\nwrite -> lag BAN ({limit}): {(ban.at - t0) * 1000:.0f} ms")
        row = only(_replication(proxy), port=lagger.port)
        assert row["pg_is_in_recovery"] is True, row
        if limit == "bytes":
            assert row["replica_lag_bytes"] >= 256 * 1024, row
        else:
            assert row["replica_lag_bytes"] > 0 and row["replica_lag"] >= 1.0, row
        assert only(_bans(proxy), port=lagger.port)["ban_reason"] == "replication lag"
        with connect(proxy) as conn:
            assert lagger.port not in _reads(conn, 9)
    finally:
        _resume_replay(rs, lagger)
    unban = _unban_of(proxy, lid, poll, after=ban.at)
    assert unban.a == Reason.UNBAN_EXPIRED, unban
    assert unban.at - ban.at >= BAN_MS / 1000
    _wait_no_bans(proxy, poll)
    with connect(proxy) as conn:
        assert Counter(_reads(conn, 9)) == {s.port: 3 for s in rs.servers}


# --------------------------------------------------------------------------- admin


def test_show_bans_and_replication_columns(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """SHOW BANS and SHOW REPLICATION have the documented columns; SHOW REPLICATION tells the
    primary (not in recovery) from the replicas, with their WAL positions, once polled."""
    rs = shared
    proxy = _proxy(rs, proxy_factory, lsn_check_delay=0, lsn_check_interval=250)
    with admin_connect(proxy) as admin:
        cur = admin.execute("SHOW BANS")
        assert cur.description is not None
        assert [d.name for d in cur.description][: len(BANS_COLUMNS)] == BANS_COLUMNS
        assert cur.fetchall() == []
        cur = admin.execute("SHOW REPLICATION")
        assert cur.description is not None
        assert [d.name for d in cur.description][: len(REPLICATION_COLUMNS)] == REPLICATION_COLUMNS
    rows = poll(lambda: (r := _replication(proxy)) and all(x["pg_lsn"] for x in r) and r,
                what="every host polled")
    by_port = {int(r["port"]): r for r in rows}
    assert set(by_port) == {s.port for s in rs.servers}
    p = by_port[rs.primary.port]
    assert (p["role"], p["pg_is_in_recovery"]) == ("primary", False), p
    for r in rs.replicas:
        row = by_port[r.port]
        assert (row["role"], row["pg_is_in_recovery"]) == ("replica", True), row
        assert row["replica_lag_bytes"] is not None and row["replica_lag_bytes"] >= 0, row
    for row in rows:
        assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", row["pg_lsn"]), row
        assert 0 <= row["lsn_age"] < 5, row


def test_admin_ban_and_unban(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """BAN id takes a healthy host out of the read rotation until UNBAN id, whatever
    ban_timeout says; ids come from SHOW POOLS; unknown ids are errors."""
    rs = shared
    proxy = _proxy(rs, proxy_factory, ban_timeout=500)
    target = rs.replicas[0]
    tid = _pool_ids(proxy)[target.port]
    with admin_connect(proxy) as admin, connect(proxy) as conn:
        t0 = time.monotonic()
        admin.execute(f"BAN {tid}")
        b = only(show(admin, "SHOW BANS"), id=tid)
        assert (b["ban_reason"], b["ban_time_left"]) == ("manual", None), b
        assert only(show(admin, "SHOW POOLS"), id=tid)["banned"] is True
        ban = _ban_of(proxy, tid, poll, after=t0)
        assert ban.a == Reason.BAN_MANUAL, ban
        assert target.port not in _reads(conn, 10)
        time.sleep(0.5 + 3 * TICK)  # ban_timeout passes: a manual ban stays
        assert target.port not in _reads(conn, 10)
        assert [r["id"] for r in show(admin, "SHOW BANS")] == [tid]

        admin.execute(f"UNBAN {tid}")
        assert show(admin, "SHOW BANS") == []
        unban = _unban_of(proxy, tid, poll, after=ban.at)
        assert unban.a == Reason.UNBAN_MANUAL, unban
        assert Counter(_reads(conn, 9)) == {s.port: 3 for s in rs.servers}

        # A banned primary still takes every write (they have nowhere else to go), but no reads.
        pid = _pool_ids(proxy)[rs.primary.port]
        admin.execute(f"BAN {pid}")
        for _ in range(3):
            r = conn.execute("SELECT inet_server_port() FROM pg_advisory_xact_lock(7)").fetchone()
            assert r == (rs.primary.port,), r
        assert rs.primary.port not in _reads(conn, 6)
        admin.execute(f"UNBAN {pid}")

        with pytest.raises(psycopg.Error, match="no pool with id"):
            admin.execute("BAN 999999")
        with pytest.raises(psycopg.Error):
            admin.execute("UNBAN nonsense")


def test_every_host_banned_by_hand_fails_reads_at_once(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """With every host banned by hand there is nowhere to read: a simple-protocol read is refused
    at once with the reason (in the same scan that checks it out), the connection stays usable,
    writes still go to the primary, and reads work again after UNBAN."""
    rs = shared
    proxy = _proxy(rs, proxy_factory)
    ids = _pool_ids(proxy)
    with admin_connect(proxy) as admin, connect(proxy) as conn:
        for port in sorted(ids):
            admin.execute(f"BAN {ids[port]}")
        for _ in range(2):
            with pytest.raises(psycopg.Error, match="every host is banned"):
                conn.execute("SELECT inet_server_port()")
        r = conn.execute("SELECT inet_server_port() FROM pg_advisory_xact_lock(7)").fetchone()
        assert r == (rs.primary.port,), r
        for port in sorted(ids):
            admin.execute(f"UNBAN {ids[port]}")
        assert set(_reads(conn, 9)) == {s.port for s in rs.servers}


def test_include_primary_if_replica_banned(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """include_primary_if_replica_banned: reads stay on the replicas until one is banned, then the
    primary helps the remaining one."""
    rs = shared
    proxy = _proxy(rs, proxy_factory, read_write_split="include_primary_if_replica_banned")
    target = rs.replicas[0]
    tid = _pool_ids(proxy)[target.port]
    with admin_connect(proxy) as admin, connect(proxy) as conn:
        assert Counter(_reads(conn, 6)) == {r.port: 3 for r in rs.replicas}
        admin.execute(f"BAN {tid}")
        assert Counter(_reads(conn, 6)) == {rs.primary.port: 3, rs.replicas[1].port: 3}
        admin.execute(f"UNBAN {tid}")
        assert Counter(_reads(conn, 6)) == {r.port: 3 for r in rs.replicas}


def test_admin_healthcheck_finds_a_dead_host_now(
    fresh_replica_set: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """With background checks minutes apart, HEALTHCHECK id checks the host at once: a dead one is
    banned and SHOW POOLS shows it unhealthy; a live one stays healthy and unbanned."""
    rs = fresh_replica_set
    proxy = _proxy(rs, proxy_factory, idle_healthcheck_interval=600000, idle_healthcheck_delay=600000,
                   healthcheck_interval=600000)
    ids = _pool_ids(proxy)
    dead, alive = rs.replicas
    with admin_connect(proxy) as admin:
        dead.stop(mode="immediate")
        time.sleep(0.5)  # give background machinery a chance to (wrongly) notice on its own
        assert show(admin, "SHOW BANS") == []
        t0 = time.monotonic()
        admin.execute(f"HEALTHCHECK {ids[dead.port]}")
        admin.execute(f"HEALTHCHECK {ids[alive.port]}")
        ban = _ban_of(proxy, ids[dead.port], poll, after=t0)
        assert ban.at - t0 < 1.0, ban.at - t0
        assert ban.a in CONNECT_BANS, ban
        rows = {int(r["port"]): r for r in show(admin, "SHOW POOLS") if r["database"] == "app"}
        assert (rows[dead.port]["banned"], rows[dead.port]["healthy"]) == (True, False)
        assert (rows[alive.port]["banned"], rows[alive.port]["healthy"]) == (False, True)
        with pytest.raises(psycopg.Error, match="no pool with id"):
            admin.execute("HEALTHCHECK 999999")


def test_every_read_target_banned_clears_automatic_bans(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """Both replicas banned for lag and the primary banned by hand: rather than fail a read, the
    proxy lifts the automatic bans (UNBAN, all banned) and serves it from a lagging replica. The
    manual ban stays."""
    rs = shared
    proxy = _proxy(rs, proxy_factory, lsn_check_delay=0, lsn_check_interval=250,
                   ban_replica_lag_bytes=64 * 1024, ban_timeout=60000)
    ids = _pool_ids(proxy)
    table = rs.table("allban", "id int, pad text")
    _wait_no_bans(proxy, poll)
    for r in rs.replicas:
        _pause_replay(rs, r)
    try:
        with admin_connect(proxy) as admin, connect(proxy) as conn:
            admin.execute(f"BAN {ids[rs.primary.port]}")
            rs.sql(rs.primary, f"INSERT INTO {table} SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g")
            for r in rs.replicas:
                _ban_of(proxy, ids[r.port], poll)
            t0 = time.monotonic()
            port = _reads(conn, 1)[0]
            assert port in rs.replica_ports
            cleared = wait_event(poll, proxy, "unban", lambda e: e.at >= t0 and e.a == Reason.UNBAN_ALL_BANNED)
            assert cleared.id in {ids[r.port] for r in rs.replicas}
            assert ids[rs.primary.port] in [b["id"] for b in show(admin, "SHOW BANS")]
    finally:
        for r in rs.replicas:
            _resume_replay(rs, r)


# --------------------------------------------------------------------------- hosts a reload adds


def test_hosts_added_by_reload_wait_for_their_first_health_check(
    shared: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    """require_healthcheck_on_discovery: a RELOAD adds a live replica and a host with nothing
    listening. Both are banned at once (BAN, new host); the live one is checked at once and joins
    the rotation (UNBAN, health check), long before any idle check is due; the dead one stays out
    with no expiry, and reads never fail because of it. A database the same reload brings in is
    new as a whole: none of its hosts is banned."""
    rs = shared
    old, added = rs.replicas
    entries = rs.databases()
    by_port = {e["port"]: e for e in entries}
    dead_port = free_port()
    proxy = proxy_factory(
        general=cluster_general(
            require_healthcheck_on_discovery=True,
            read_write_split="exclude_primary",
            load_balancing_strategy="round_robin",
            ban_timeout=BAN_MS,
        ),
        databases=[by_port[rs.primary.port], by_port[old.port]],
        users=cluster_users(),
        admin=ADMIN,
    )
    with connect(proxy) as conn:
        assert set(_reads(conn, 4)) == {old.port}
    assert events(proxy, "ban") == []  # the hosts of the first configuration are not "discovered"
    t0 = time.monotonic()
    dead = {**by_port[old.port], "host": "127.0.0.1", "port": dead_port}
    other = [{**by_port[port], "name": "app2"} for port in (rs.primary.port, old.port)]
    users = cluster_users()
    proxy.update(databases=[by_port[rs.primary.port], by_port[old.port], by_port[added.port], dead, *other],
                 users=[*users, {**users[0], "database": "app2"}])
    poll(lambda: len(_pool_ids(proxy)) == 4, what="the reload's new pools")
    ids = _pool_ids(proxy)
    bans = {port: _ban_of(proxy, ids[port], poll, after=t0) for port in (added.port, dead_port)}
    assert {b.a for b in bans.values()} == {Reason.BAN_DISCOVERY}, bans
    with admin_connect(proxy) as admin:
        app2 = {int(r["id"]) for r in show(admin, "SHOW POOLS") if r["database"] == "app2"}
    assert len(app2) == 2 and not [e for e in events(proxy, "ban") if e.id in app2]
    unban = _unban_of(proxy, ids[added.port], poll, after=t0)
    assert unban.a == Reason.UNBAN_HEALTHCHECK, unban
    with connect(proxy) as conn:
        assert set(_reads(conn, 12)) == {old.port, added.port}
    # What must not happen (the dead host's ban expiring) can only be shown by waiting past the
    # moment a timed ban would have ended.
    poll(lambda: time.monotonic() > bans[dead_port].at + BAN_MS / 1000 + 2 * TICK, what="ban_timeout over")
    (row,) = _bans(proxy)
    assert (row["port"], row["ban_reason"], row["ban_time_left"]) == (
        dead_port,
        "new host, not yet checked",
        None,
    )
    with connect(proxy) as conn:
        assert dead_port not in _reads(conn, 6)
    assert [e for e in events(proxy, "unban") if e.id == ids[dead_port]] == []
