"""`pgdog-ev replay`: the incident timeline, its filters, `--at` snapshots, damaged input and usage errors.

The logs are written the way the daemon writes them (EventLog + RotatingFileSink, small files so
they rotate) with records in the order the machines emit them: a server logs in and is checked in,
a client logs in, is routed, checks a server out and back; another client waits for a new server;
the host of pool 3 dies (health check fails, BAN), the primary is lost and pool 2 promoted (ROLE),
a write waits for it; the ban expires (UNBAN); the client leaves; the daemon stops.
"""

from __future__ import annotations

import json
import os
import sys
import types
from collections.abc import Callable

import pytest

from pgdog_ev.cli import main
from pgdog_ev.eventlog.filesink import RotatingFileSink
from pgdog_ev.eventlog.replay import replay_main
from pgdog_ev.eventlog.timespec import parse_time
from state.client import ClientState as C
from state.cluster import RoleCode as RC
from state.events import RECORD, EventLog, Kind, LogHeader
from state.events import Machine as M
from state.reasons import Reason as R
from state.server import ServerState as S

# now == 0 is 2026-11-21T19:46:00Z; the log starts at now == 100 s, i.e. 19:47:40Z.
EPOCH_NS = 1_795_290_360 * 10**9
HEADER = LogHeader(code_version="t", clock_epoch_ns=EPOCH_NS, monotonic_start_ns=100 * 10**9, pid=42, hostname="h")
T0 = 100.0


def write_incident(path: str, header: LogHeader = HEADER, records_per_file: int = 16, t0: float = T0) -> None:
    sink = RotatingFileSink(path, header, max_bytes=len(header.encode()) + 48 * records_per_file, keep=10)
    log = EventLog(capacity=8, sink=sink)

    def e(t: float, kind: int, m: int, i: int, frm: int = 0, to: int = 0, a: int = 0, b: int = 0) -> None:
        log.emit(t0 + t, kind, m, i, frm, to, a, b)

    def tr(t: float, m: int, i: int, frm: int, to: int, r: int, b: int = 0) -> None:
        e(t, Kind.TRANSITION, m, i, frm, to, r, b)

    e(0.0, Kind.NOTE, M.DAEMON, 0, a=R.STARTUP, b=6432)
    for sid, pid in ((1, 1), (2, 2), (3, 3)):
        tr(0.1, M.SERVER, sid, S.CONNECTING, S.STARTUP, R.CONNECTED)
        tr(0.105, M.SERVER, sid, S.STARTUP, S.IDLE, R.SERVER_READY)
        e(0.105, Kind.CHECKIN, M.POOL, pid, b=sid)
    for pid, to in ((1, RC.PRIMARY), (2, RC.REPLICA), (3, RC.REPLICA)):
        e(0.2, Kind.ROLE, M.POOL, pid, RC.UNKNOWN, to, R.ROLE_PRIMARY if to == RC.PRIMARY else R.ROLE_REPLICA, 1)
    # client 1: logs in, one read on pool 2
    e(1.0, Kind.ACCEPT, M.CLIENT, 1, a=6432)
    tr(1.001, M.CLIENT, 1, C.STARTUP, C.AUTH, R.STARTUP)
    tr(1.003, M.CLIENT, 1, C.AUTH, C.LOGIN, R.AUTH_OK)
    tr(1.004, M.CLIENT, 1, C.LOGIN, C.IDLE, R.LOGIN_DONE)
    tr(1.010, M.CLIENT, 1, C.IDLE, C.WAITING, R.QUERY)
    e(1.010, Kind.ROUTE, M.CLIENT, 1, a=R.ROUTE_READ, b=0)
    e(1.010, Kind.CHECKOUT, M.POOL, 2, a=1, b=2)
    tr(1.010, M.SERVER, 2, S.IDLE, S.ACTIVE, R.CHECKOUT, 1)
    tr(1.010, M.CLIENT, 1, C.WAITING, C.ACTIVE, R.CHECKOUT, 2)
    tr(1.020, M.SERVER, 2, S.ACTIVE, S.IDLE, R.CHECKIN)
    e(1.020, Kind.CHECKIN, M.POOL, 2, b=2)
    tr(1.020, M.CLIENT, 1, C.ACTIVE, C.IDLE, R.TRANSACTION_DONE, 2)
    # client 2: waits at pool 3 for a new server (4)
    e(1.5, Kind.ACCEPT, M.CLIENT, 2, a=6432)
    tr(1.501, M.CLIENT, 2, C.STARTUP, C.AUTH, R.STARTUP)
    tr(1.502, M.CLIENT, 2, C.AUTH, C.LOGIN, R.AUTH_OK)
    tr(1.503, M.CLIENT, 2, C.LOGIN, C.IDLE, R.LOGIN_DONE)
    tr(1.510, M.CLIENT, 2, C.IDLE, C.WAITING, R.QUERY)
    e(1.510, Kind.ENQUEUE, M.POOL, 3, a=2, b=1)
    tr(1.520, M.SERVER, 4, S.CONNECTING, S.STARTUP, R.CONNECTED)
    tr(1.530, M.SERVER, 4, S.STARTUP, S.IDLE, R.SERVER_READY)
    e(1.530, Kind.CHECKIN, M.POOL, 3, b=4)
    e(1.530, Kind.CHECKOUT, M.POOL, 3, a=2, b=4)
    tr(1.530, M.SERVER, 4, S.IDLE, S.ACTIVE, R.CHECKOUT, 2)
    tr(1.530, M.CLIENT, 2, C.WAITING, C.ACTIVE, R.CHECKOUT, 4)
    # the host of pool 3 dies
    tr(2.0, M.SERVER, 3, S.IDLE, S.CHECKING, R.HEALTHCHECK)
    tr(2.001, M.SERVER, 4, S.ACTIVE, S.CLOSED, R.SERVER_LOST)
    tr(2.001, M.CLIENT, 2, C.ACTIVE, C.CLOSED, R.SERVER_LOST)
    tr(2.002, M.SERVER, 3, S.CHECKING, S.CLOSED, R.SERVER_LOST)
    e(2.002, Kind.NOTE, M.POOL, 3, a=R.HEALTHCHECK_FAILED, b=R.HEALTHCHECK_FAILED)
    e(2.002, Kind.BAN, M.POOL, 3, a=R.BAN_HEALTHCHECK, b=1)
    e(2.1, Kind.CONNECT, M.SERVER, 5, a=111)
    tr(2.1, M.SERVER, 5, S.CONNECTING, S.CLOSED, R.CONNECT_FAILED)
    # failover: pool 1 loses the primary role, a write waits, pool 2 is promoted
    e(3.0, Kind.NOTE, M.MONITOR, 1, a=R.LSN_CHECK_FAILED)
    e(3.0, Kind.ROLE, M.POOL, 1, RC.PRIMARY, RC.UNKNOWN, R.ROLE_LOST, 1)
    tr(3.1, M.CLIENT, 1, C.IDLE, C.WAITING, R.QUERY)
    e(3.1, Kind.ROUTE, M.CLIENT, 1, a=R.ROUTE_WRITE, b=1)
    e(3.1, Kind.ENQUEUE, M.LB, 1, a=1, b=1)
    e(3.5, Kind.NOTE, M.MONITOR, 2, a=R.LSN_CHECK, b=0)
    e(3.5, Kind.ROLE, M.POOL, 2, RC.REPLICA, RC.PRIMARY, R.ROLE_PRIMARY, 1)
    e(3.5, Kind.CHECKOUT, M.POOL, 2, a=1, b=2)
    tr(3.5, M.SERVER, 2, S.IDLE, S.ACTIVE, R.CHECKOUT, 1)
    tr(3.5, M.CLIENT, 1, C.WAITING, C.ACTIVE, R.CHECKOUT, 2)
    tr(3.6, M.SERVER, 2, S.ACTIVE, S.IDLE, R.CHECKIN)
    e(3.6, Kind.CHECKIN, M.POOL, 2, b=2)
    tr(3.6, M.CLIENT, 1, C.ACTIVE, C.IDLE, R.TRANSACTION_DONE, 2)
    e(4.0, Kind.UNBAN, M.POOL, 3, a=R.UNBAN_EXPIRED, b=1)
    tr(5.0, M.CLIENT, 1, C.IDLE, C.CLOSED, R.CLIENT_TERMINATE)
    e(6.0, Kind.SIGNAL, M.DAEMON, 0, a=R.SHUTDOWN)
    log.flush()
    sink.close()


RECORDS = 61  # what write_incident emits


@pytest.fixture
def incident(tmp_path) -> str:
    path = str(tmp_path / "pgdog-ev.evlog")
    write_incident(path)
    return path


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def replay(capsys) -> Run:
    def run(*args: str) -> tuple[int, str, str]:
        rc = replay_main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def body(out: str) -> list[str]:
    """Timeline lines without the run banners and gap notes."""
    return [ln for ln in out.splitlines() if ln.startswith(("+", "-"))]


def subjects(out: str) -> list[str]:
    return [ln.split()[1] for ln in body(out)]


def in_order(lines: list[str], wanted: list[str]) -> bool:
    it = iter(lines)
    return all(any(w in ln for ln in it) for w in wanted)


# --------------------------------------------------------------------------- timeline


def test_timeline_reads_as_a_story(incident, replay):
    assert len(os.listdir(os.path.dirname(incident))) > 3  # it rotated
    rc, out, err = replay(incident)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("=== run 1 of 1: pgdog-ev t pid 42 on h, log started 2026-11-21T19:47:40.000000Z")
    tl = body(out)
    assert len(tl) == RECORDS  # every rotated file read, oldest first
    assert tl[0] == "+0.000000s  daemon      NOTE startup (port 6432)"
    assert tl[-1] == "+6.000000s  daemon      SIGNAL (shutdown)"
    assert in_order(tl, [
        "+0.100000s  server:1    CONNECTING -> STARTUP (connected) [pool:1]",
        "+0.200000s  cluster:1   ROLE primary: none -> pool 1 (pool:1 unknown -> primary)",
        "+1.000000s  client:1    ACCEPT connection on port 6432",
        "+1.001000s  client:1    STARTUP -> AUTH (startup)",
        "+1.003000s  client:1    AUTH -> LOGIN (auth_ok)",
        "+1.010000s  client:1    ROUTE read (read)",
        "+1.010000s  pool:2      CHECKOUT server:2 to client:1",
        "+1.010000s  server:2    IDLE -> ACTIVE (checkout) client:1 [pool:2]",
        "+1.010000s  client:1    WAITING -> ACTIVE (checkout) server:2",
        "+1.020000s  pool:2      CHECKIN server:2 from client:1",
        "+1.020000s  client:1    ACTIVE -> IDLE (transaction_done) server:2",
        "+1.510000s  pool:3      ENQUEUE client:2 (1 waiting)",
        "+1.530000s  pool:3      CHECKIN server:4",
        "+2.002000s  pool:3      NOTE healthcheck_failed",
        "+2.002000s  pool:3      BAN reason=healthcheck cluster:1",
        "+2.100000s  server:5    CONNECT failed: ECONNREFUSED(111)",
        "+3.000000s  monitor:1   NOTE lsn_check_failed",
        "+3.000000s  cluster:1   ROLE primary: pool 1 -> none (pool:1 primary -> unknown, lost)",
        "+3.100000s  client:1    ROUTE write (write)",
        "+3.100000s  cluster:1   ENQUEUE client:1 waits for a primary (1 waiting)",
        "+3.500000s  monitor:2   NOTE lsn_check: not in recovery (a primary)",
        "+3.500000s  cluster:1   ROLE primary: none -> pool 2 (pool:2 replica -> primary)",
        "+4.000000s  pool:3      UNBAN reason=expired cluster:1",
        "+5.000000s  client:1    IDLE -> CLOSED (client_terminate)",
    ])
    assert "+0.200000s  cluster:1   ROLE pool:3 unknown -> replica" in tl


def test_role_change_straight_from_one_pool_to_another(tmp_path, replay):
    path = str(tmp_path / "ev")
    sink = RotatingFileSink(path, HEADER)
    log = EventLog(sink=sink)
    log.emit(T0 + 0.1, Kind.ROLE, M.POOL, 1, 0, RC.PRIMARY, R.ROLE_PRIMARY, 7)
    log.emit(T0 + 0.2, Kind.ROLE, M.POOL, 3, RC.REPLICA, RC.PRIMARY, R.ROLE_PRIMARY, 7)
    log.emit(T0 + 0.2, Kind.ROLE, M.POOL, 1, RC.PRIMARY, RC.REPLICA, R.ROLE_REPLICA, 7)
    log.flush()
    sink.close()
    rc, out, _ = replay(path)
    assert rc == 0
    assert body(out)[1:] == [
        "+0.200000s  cluster:7   ROLE primary: pool 1 -> pool 3 (pool:3 replica -> primary)",
        "+0.200000s  cluster:7   ROLE pool:1 primary -> replica",
    ]
    rc, out, _ = replay(path, "--at", "0.3")
    assert "cluster:7  primary pool:3 since +0.200000s" in out


def test_no_rotated_reads_the_live_file_only(incident, replay):
    rc, out, _ = replay(incident, "--no-rotated")
    assert rc == 0
    tl = body(out)
    assert 0 < len(tl) < RECORDS and tl[-1].endswith("SIGNAL (shutdown)")
    gap = [ln for ln in out.splitlines() if ln.startswith("...")]
    assert gap == [f"... records #0..#{RECORDS - len(tl) - 1} of run 1 are not in these files "
                   "(rotated away before the oldest kept file)"]
    # --all-rotated is the default, accepted for symmetry with `events`
    assert replay(incident, "--all-rotated")[1] == replay(incident)[1]


def test_wall_clock_column(incident, replay):
    rc, out, _ = replay(incident, "--wall", "--until", "0")
    assert rc == 0
    assert body(out) == []
    assert out.splitlines()[1] == "2026-11-21T19:47:40.000000Z +0.000000s  daemon      NOTE startup (port 6432)"


# --------------------------------------------------------------------------- filters


def test_client_filter_follows_the_client_across_machines(incident, replay):
    rc, out, _ = replay(incident, "--client", "2")
    assert rc == 0
    assert body(out) == [
        "+0.000000s  daemon      NOTE startup (port 6432)",
        "+1.500000s  client:2    ACCEPT connection on port 6432",
        "+1.501000s  client:2    STARTUP -> AUTH (startup)",
        "+1.502000s  client:2    AUTH -> LOGIN (auth_ok)",
        "+1.503000s  client:2    LOGIN -> IDLE (login_done)",
        "+1.510000s  client:2    IDLE -> WAITING (query)",
        "+1.510000s  pool:3      ENQUEUE client:2 (1 waiting)",
        "+1.530000s  pool:3      CHECKOUT server:4 to client:2",
        "+1.530000s  server:4    IDLE -> ACTIVE (checkout) client:2 [pool:3]",
        "+1.530000s  client:2    WAITING -> ACTIVE (checkout) server:4",
        # the server it held dies under it: that server's record is part of its story
        "+2.001000s  server:4    ACTIVE -> CLOSED (server_lost) [pool:3]",
        "+2.001000s  client:2    ACTIVE -> CLOSED (server_lost)",
        "+6.000000s  daemon      SIGNAL (shutdown)",
    ]


def test_client_filter_includes_the_checkin_and_cluster_queue(incident, replay):
    rc, out, _ = replay(incident, "--client", "1")
    assert rc == 0
    tl = body(out)
    assert "+1.020000s  server:2    ACTIVE -> IDLE (checkin) [pool:2]" in tl  # held by client 1 then
    assert "+1.020000s  pool:2      CHECKIN server:2 from client:1" in tl
    assert "+3.100000s  cluster:1   ENQUEUE client:1 waits for a primary (1 waiting)" in tl
    assert not any("client:2" in ln for ln in tl)
    assert not any("server:1 " in ln or "server:3" in ln for ln in tl)


def test_server_filter(incident, replay):
    rc, out, _ = replay(incident, "--server", "4")
    assert rc == 0
    assert subjects(out) == ["daemon", "server:4", "server:4", "pool:3", "pool:3", "server:4", "client:2",
                             "server:4", "client:2", "daemon"]
    assert "+1.530000s  pool:3      CHECKIN server:4" in body(out)


def test_pool_filter_takes_its_servers_and_their_clients(incident, replay):
    rc, out, _ = replay(incident, "--pool", "3")
    assert rc == 0
    tl = body(out)
    # servers 3 and 4 belong to pool 3 (learned from its CHECKINs), also before their first CHECKIN
    assert "+0.100000s  server:3    CONNECTING -> STARTUP (connected) [pool:3]" in tl
    assert "+1.520000s  server:4    CONNECTING -> STARTUP (connected) [pool:3]" in tl
    assert "+1.530000s  client:2    WAITING -> ACTIVE (checkout) server:4" in tl
    assert "+2.001000s  client:2    ACTIVE -> CLOSED (server_lost)" in tl
    assert "+0.200000s  cluster:1   ROLE pool:3 unknown -> replica" in tl
    assert in_order(tl, ["BAN reason=healthcheck", "UNBAN reason=expired"])
    assert not any(s in {"server:1", "server:2", "client:1", "monitor:1"} for s in subjects(out))
    # a server that never logged in cannot be placed: the log does not say its pool
    assert "server:5" not in subjects(out)


def test_filters_are_repeatable_comma_separated_and_add_up(incident, replay):
    _, both, _ = replay(incident, "--client", "1,2")
    _, repeated, _ = replay(incident, "--client", "1", "--client", "2")
    _, one, _ = replay(incident, "--client", "1")
    _, two, _ = replay(incident, "--client", "2")
    assert both == repeated
    assert set(body(both)) == set(body(one)) | set(body(two))
    _, mixed, _ = replay(incident, "--client", "2", "--pool", "2")
    assert "+1.010000s  pool:2      CHECKOUT server:2 to client:1" in body(mixed)
    assert "+1.500000s  client:2    ACCEPT connection on port 6432" in body(mixed)


def test_since_until_relative_and_wall_clock(incident, replay):
    rc, out, _ = replay(incident, "--since", "2.002", "--until", "+3.0s")
    assert rc == 0
    tl = body(out)
    assert tl[0].startswith("+2.002000s  server:3") and tl[-1].startswith("+3.000000s  cluster:1")
    assert out.splitlines()[0].startswith("=== run 1 of 1")
    _, iso, _ = replay(incident, "--since", "2026-11-21T19:47:42.002Z", "--until", "2026-11-21T20:47:43+01:00")
    assert iso == out
    _, naive, _ = replay(incident, "--since", "2026-11-21 19:47:42.002", "--until", "3")
    assert naive == out
    rc, out, err = replay(incident, "--since", "7")
    assert rc == 0 and out == "" and "no records match" in err


def test_json_lines_have_named_fields(incident, replay):
    rc, out, _ = replay(incident, "--format", "json", "--client", "2")
    assert rc == 0
    objs = [json.loads(ln) for ln in out.splitlines()]
    assert objs[0]["type"] == "run" and objs[0]["run"] == 1 and objs[0]["pid"] == 42
    assert len(objs[0]["files"]) > 1
    recs = [o for o in objs if o["type"] == "record"]
    assert len(recs) == len(body(replay(incident, "--client", "2")[1]))
    checkout = next(o for o in recs if o["kind"] == "CHECKOUT")
    assert checkout["subject"] == "pool:3" and checkout["machine"] == "pool" and checkout["id"] == 3
    assert checkout["a"] == 2 and checkout["b"] == 4
    assert checkout["clients"] == [2] and checkout["servers"] == [4] and checkout["pools"] == [3]
    assert checkout["text"] == "CHECKOUT server:4 to client:2"
    assert checkout["t"] == pytest.approx(1.53) and checkout["wall"] == "2026-11-21T19:47:41.530000Z"
    closed = recs[-2]
    assert closed["frm_name"] == "ACTIVE" and closed["to_name"] == "CLOSED" and closed["reason"] == "SERVER_LOST"


# --------------------------------------------------------------------------- --at


def at(replay: Run, path: str, t: str, *more: str) -> str:
    rc, out, err = replay(path, "--at", t, *more)
    assert rc == 0, err
    return out


def line_of(out: str, subject: str) -> str:
    found = [ln.strip() for ln in out.splitlines() if ln.strip().startswith(subject + " ")]
    assert len(found) == 1, (subject, out)
    return found[0]


def test_at_before_anything(incident, replay):
    out = at(replay, incident, "-1")
    assert out.splitlines()[0].startswith("state at -1.000000s (2026-11-21T19:47:39.000000Z), run 1 of 1 (pid 42)")
    assert "nothing recorded yet" in out and "the first record is at +0.000000s" in out


def test_at_knows_clusters_before_their_records(incident, replay):
    # Pools are placed in their cluster from their first record (the ROLEs at +0.2 s name it).
    out = at(replay, incident, "0.15")
    assert line_of(out, "cluster:1") == "cluster:1  primary none known, no bans, 0 writes waiting for a primary"
    assert line_of(out, "pool:3") == ("pool:3  OPEN (no change recorded; first seen +0.105000s), not banned, "
                                      "servers: 1 idle, 0 waiting, cluster:1")


def test_at_a_client_holding_a_server_and_one_waiting(incident, replay):
    out = at(replay, incident, "1.015")
    assert line_of(out, "client:1") == "client:1  ACTIVE since +1.010000s (checkout), holds server:2 since +1.010000s"
    assert line_of(out, "server:2") == "server:2  ACTIVE since +1.010000s (checkout), pool:2, held by client:1"
    assert "cluster:1  primary pool:1 since +0.200000s, no bans" in out
    out = at(replay, incident, "1.52")
    assert line_of(out, "client:2") == "client:2  WAITING since +1.510000s (query), queued at pool:3 since +1.510000s"
    assert line_of(out, "client:1") == "client:1  IDLE since +1.020000s (transaction_done)"
    assert "servers: 1 startup, 1 idle, 1 waiting" in line_of(out, "pool:3")
    assert out.splitlines()[-1].startswith("summary: 2 clients (1 idle, 1 waiting); 4 servers (3 idle, 1 startup)")


def test_at_after_the_ban_and_during_failover(incident, replay):
    before = at(replay, incident, "2.0015")
    assert "not banned" in line_of(before, "pool:3")
    after = at(replay, incident, "2.05")
    pool3 = line_of(after, "pool:3")
    assert "BANNED since +2.002000s (reason=healthcheck)" in pool3
    assert "unhealthy since +2.002000s" in pool3 and "servers: none" in pool3
    assert "banned: pool:3" in line_of(after, "cluster:1")
    assert "client:2" not in after and "server:3" not in after and "server:4" not in after  # closed
    assert "closed before then: 1 client, 2 servers, 0 pools" in after
    failover = at(replay, incident, "3.2")
    assert line_of(failover, "cluster:1") == (
        "cluster:1  primary none known, banned: pool:3, 1 write waiting for a primary")
    assert line_of(failover, "client:1").endswith("waiting for a primary of cluster:1 since +3.100000s")
    assert "role unknown since +3.000000s" in line_of(failover, "pool:1")
    assert line_of(failover, "monitor:1") == "monitor:1  last LSN check +3.000000s: failed"
    promoted = at(replay, incident, "3.55")
    assert line_of(promoted, "cluster:1").startswith("cluster:1  primary pool:2 since +3.500000s, banned: pool:3")
    unbanned = at(replay, incident, "2026-11-21T19:47:44.5Z")
    assert "not banned" in line_of(unbanned, "pool:3") and "no bans" in line_of(unbanned, "cluster:1")


def test_at_after_the_end(incident, replay):
    out = at(replay, incident, "10")
    assert "last record #60 at +6.000000s; the log ends at +6.000000s" in out.splitlines()[0]
    assert "clients" not in out.splitlines()[1:-1]
    assert "closed before then: 2 clients, 3 servers, 0 pools" in out


def test_at_with_filters(incident, replay):
    out = at(replay, incident, "1.015", "--client", "1")
    assert [ln.split()[0] for ln in out.splitlines()[1:-1] if ln.startswith("  ")] == [
        "cluster:1", "pool:2", "server:2", "client:1"]
    out = at(replay, incident, "1.52", "--pool", "3")
    assert [ln.split()[0] for ln in out.splitlines()[1:-1] if ln.startswith("  ")] == [
        "cluster:1", "pool:3", "server:3", "server:4", "client:2"]


def test_at_json(incident, replay):
    out = at(replay, incident, "3.2", "--format", "json")
    objs = [json.loads(ln) for ln in out.splitlines()]
    assert objs[0]["type"] == "snapshot" and objs[0]["at"] == 3.2 and objs[0]["last_seq"] == 49
    assert objs[-1]["type"] == "summary" and objs[-1]["banned_pools"] == 1
    by = {(o["type"], o.get("id")): o for o in objs}
    assert by[("cluster", 1)]["primary"] is None and by[("cluster", 1)]["banned_pools"] == [3]
    assert by[("pool", 3)]["banned"] is True and by[("pool", 3)]["ban_reason"] == "BAN_HEALTHCHECK"
    assert by[("pool", 1)]["role"] == "unknown"
    assert by[("client", 1)]["state"] == "WAITING" and by[("client", 1)]["waiting_at"] == "cluster:1"
    assert by[("server", 2)]["pool"] == 2 and by[("server", 2)]["client"] is None


# --------------------------------------------------------------------------- several runs


def test_a_restart_starts_a_new_run(tmp_path, replay):
    path = str(tmp_path / "ev")
    write_incident(path)
    second = LogHeader(code_version="t", clock_epoch_ns=EPOCH_NS + 155 * 10**9, monotonic_start_ns=5 * 10**9,
                       pid=43, hostname="h")
    write_incident(path, second, t0=5.0)  # the sink rotates the first run away: FILE.N.. are older
    rc, out, _ = replay(path, "--client", "2")
    assert rc == 0
    banners = [ln for ln in out.splitlines() if ln.startswith("===")]
    assert banners[0].startswith("=== run 1 of 2: pgdog-ev t pid 42")
    assert banners[1].startswith("=== run 2 of 2 (the daemon restarted: ids start again): pgdog-ev t pid 43")
    # run 2 started 60 s of wall clock after run 1 (now values differ, the wall clock tells)
    assert "log started 2026-11-21T19:48:40.000000Z (+60.000000s)" in banners[1]
    tl = body(out)
    assert "+61.500000s  client:2    ACCEPT connection on port 6432" in tl
    assert "+1.500000s  client:2    ACCEPT connection on port 6432" in tl
    # --at picks the run going at that time
    first = at(replay, path, "1.52")
    assert "run 1 of 2 (pid 42)" in first and "queued at pool:3" in line_of(first, "client:2")
    second_run = at(replay, path, "62.05")
    assert "run 2 of 2 (pid 43)" in second_run and "BANNED" in line_of(second_run, "pool:3")


# --------------------------------------------------------------------------- damaged input


def test_missing_file(tmp_path, replay):
    rc, out, err = replay(str(tmp_path / "nope.evlog"))
    assert rc == 1 and out == ""
    assert "nope.evlog: no such file" in err and "Traceback" not in err


@pytest.mark.parametrize("content, why", [
    (b"hello, this is not an event log at all" * 3, "bad magic"),
    (b"PGDOGEV\x00\xff\x00\x00\x00{", "truncated event log header"),
    (b"PGDOGEV\x00\x02\x00\x00\x00{]", "corrupt event log header"),
])
def test_corrupt_header(tmp_path, replay, content, why):
    path = tmp_path / "bad.evlog"
    path.write_bytes(content)
    rc, out, err = replay(str(path))
    assert rc == 1 and out == ""
    assert err.startswith("pgdog-ev replay: error: ") and why in err and "bad.evlog" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_corrupt_older_file_fails_before_printing(incident, replay):
    with open(incident + ".2", "r+b") as f:
        f.write(b"garbage!")
    rc, out, err = replay(incident)
    assert rc == 1 and out == "" and "evlog.2: not a pgdog-ev event log: bad magic" in err


def test_corrupt_records(tmp_path, replay):
    path = tmp_path / "ev"
    good = RECORD.pack(0, 10**9, Kind.NOTE, M.DAEMON, 0, 0, 0, 0, 0)
    path.write_bytes(HEADER.encode() + good + RECORD.pack(7, 2, 3, 4, 5, 6, 7, 8, 9) + good)
    rc, out, err = replay(str(path))
    assert rc == 1 and out == ""
    assert "corrupt record (number 2 in the file): sequence number 0 after 7" in err
    assert "Traceback" not in err


def test_missing_records_and_truncated_tail(tmp_path, replay):
    path = tmp_path / "ev"
    recs = [RECORD.pack(seq, 100 * 10**9 + seq, Kind.NOTE, M.DAEMON, 0, 0, 0, 0, 0) for seq in (0, 1, 5)]
    path.write_bytes(HEADER.encode() + b"".join(recs) + b"\x01\x02\x03")
    rc, out, err = replay(str(path))
    assert rc == 0
    assert "... records #2..#4 of run 1 are missing (a file of the set is missing or damaged)" in out
    assert len(body(out)) == 3
    assert "truncated last record ignored" in err


def test_empty_files_are_skipped(tmp_path, replay):
    path = str(tmp_path / "ev")
    write_incident(path, records_per_file=1000)
    open(path + ".1", "wb").close()  # a daemon that died before its first flush
    rc, out, err = replay(path)
    assert rc == 0 and len(body(out)) == RECORDS
    assert "ev.1: empty file skipped" in err
    open(path, "wb").close()
    os.remove(path + ".1")
    rc, out, err = replay(path)
    assert rc == 1 and "no events (every file is empty)" in err


def test_directory(tmp_path, replay):
    rc, _, err = replay(str(tmp_path), "--no-rotated")
    assert rc == 1 and "is a directory" in err


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize("args, message", [
    (["--client", "x"], "--client: 'x' is not a client id"),
    (["--server", "0"], "--server: '0' is not a server id"),
    (["--pool", ","], "--pool: no id given"),
    (["--at", "yesterday"], "--at: not a time: 'yesterday'"),
    (["--since", "12:00"], "--since: not a time"),
    (["--at", "1", "--since", "0"], "--at prints one moment"),
    (["--format", "xml"], "invalid choice"),
    (["--no-rotated", "--all-rotated"], "not allowed with"),
    (["--bogus"], "unrecognized arguments"),
])
def test_usage_errors(incident, replay, args, message):
    rc, out, err = replay(incident, *args)
    assert rc == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_no_file_is_a_usage_error(replay):
    rc, _, err = replay()
    assert rc == 2 and "FILE" in err


def test_parse_time():
    assert parse_time("12.5").seconds == 12.5
    assert parse_time("+3s").seconds == 3.0
    assert parse_time("-0.25").seconds == -0.25
    assert parse_time("2026-11-21T19:47:40Z").relative(EPOCH_NS + 100 * 10**9) == 0.0
    assert parse_time("2026-11-21T20:47:41.5+01:00").relative(EPOCH_NS + 100 * 10**9) == 1.5
    for bad in ("", "nan", "inf", "1e999", "soon"):
        with pytest.raises(ValueError):
            parse_time(bad)


# --------------------------------------------------------------------------- re-execution hook, dispatch


def test_reexecute_without_the_simulator(monkeypatch, incident, replay):
    monkeypatch.setitem(sys.modules, "sim.reexecute", None)  # import fails as if the file were missing
    rc, out, err = replay("--reexecute", incident)
    assert rc == 2 and out == ""
    assert "--reexecute needs the simulator's re-execution (module sim.reexecute)" in err
    assert "Traceback" not in err


def test_reexecute_module_without_its_entry_point(monkeypatch, incident, replay):
    monkeypatch.setitem(sys.modules, "sim.reexecute", types.ModuleType("sim.reexecute"))
    rc, _, err = replay(incident, "--reexecute")
    assert rc == 2 and "sim.reexecute has no reexecute_main" in err


def test_reexecute_hands_over_the_arguments(monkeypatch, incident, replay):
    seen: list[list[str]] = []

    def reexecute_main(argv: list[str]) -> int:
        seen.append(argv)
        return 5

    monkeypatch.setitem(sys.modules, "sim.reexecute", types.SimpleNamespace(reexecute_main=reexecute_main))
    assert main(["replay", incident, "--reexecute", "--seed", "3"]) == 5
    assert seen == [[incident, "--seed", "3"]]


def test_cli_dispatch(incident, capsys):
    assert main(["replay", incident, "--until", "0"]) == 0
    assert "daemon      NOTE startup (port 6432)" in capsys.readouterr().out
    assert main(["events", incident, "--all-rotated", "--tail", "1"]) == 0  # `events` is unchanged
    assert capsys.readouterr().out.rstrip().endswith("#60 daemon:0 SIGNAL reason=SHUTDOWN")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "replay" in capsys.readouterr().out
