"""An incident replayed from a real daemon's event log: a replica killed under pgbench load.

The proxy fronts a primary and two streaming replicas with background health checks; pgbench
runs select-only transactions through it (reads spread over the three hosts); one replica is
stopped hard in the middle of the run.  Afterwards `pgdog-ev replay` must tell that story: the
victim pool served reads, its servers closed after the kill, and its BAN comes after the kill and
within what the health-check settings allow.  `--at` just before the ban shows the pool not
banned, just after shows it banned.

Record timestamps are CLOCK_MONOTONIC, the clock of time.monotonic() here, so the kill's time in
the timeline's terms is `time.monotonic() - header.monotonic_start_ns`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pgdog_ev.eventlog.reader import LogStream
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.admin import ADMIN, admin_connect, show
from tests.harness.pgbench import pgbench_env, pgbench_path, run_pgbench
from tests.harness.proxy import REPO_ROOT, ProxyProcess, _child_env
from tests.harness.replicas import ReplicaSet, cluster_general, cluster_users

Poll = Callable[..., Any]

IDLE_CHECK_MS = 300
CHECK_TIMEOUT_MS = 500
BAN_MS = 1000
# Ticks of 1/3 s in the proxy, and a machine busy with pgbench and three servers.
SLACK = 0.8
BAN_BOUND = (IDLE_CHECK_MS + CHECK_TIMEOUT_MS) / 1000 + SLACK
BENCH_SECONDS = 8
LINE = re.compile(r"^(?P<t>[+-][0-9]+\.[0-9]{6})s  (?P<subject>\S+)\s+(?P<text>.*)$")


def _replay(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pgdog_ev replay PATH ARGS...`, as an operator would run it."""
    return subprocess.run(
        [sys.executable, "-m", "pgdog_ev", "replay", path, *args],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=_child_env(None), stdin=subprocess.DEVNULL,
    )


def _replay_ok(path: str, *args: str) -> str:
    res = _replay(path, *args)
    assert res.returncode == 0, f"replay {' '.join(args)} exited {res.returncode}: {res.stderr}"
    return res.stdout


def _timeline(text: str) -> list[tuple[float, str, str]]:
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            out.append((float(m["t"]), m["subject"], m["text"]))
    return out


def _pool_ids(proxy: ProxyProcess) -> dict[int, int]:
    """Server port -> pool id."""
    with admin_connect(proxy) as admin:
        return {int(r["port"]): int(r["id"]) for r in show(admin, "SHOW POOLS") if r["database"] == APP_DB}


def _line_of(snapshot: str, subject: str) -> str:
    found = [ln.strip() for ln in snapshot.splitlines() if ln.strip().startswith(subject + " ")]
    assert len(found) == 1, (subject, snapshot)
    return found[0]


def test_replica_killed_under_pgbench_replays_as_a_ban(
    fresh_replica_set: ReplicaSet, proxy_factory: Callable[..., ProxyProcess], poll: Poll
) -> None:
    rs = fresh_replica_set
    proxy = proxy_factory(
        general=cluster_general(
            load_balancing_strategy="round_robin",
            read_write_split="include_primary",
            healthcheck_interval=IDLE_CHECK_MS,
            idle_healthcheck_interval=IDLE_CHECK_MS,
            idle_healthcheck_delay=0,
            healthcheck_timeout=CHECK_TIMEOUT_MS,
            ban_timeout=BAN_MS,
            checkout_timeout=5000,
        ),
        databases=rs.databases(), users=cluster_users(), admin=ADMIN,
    )
    victim = rs.replicas[1]
    vid = _pool_ids(proxy)[victim.port]
    path = proxy.event_log_path

    # pgbench's tables, made on the primary and replayed by both replicas before the run.
    run_pgbench(["-i", "-s", "1", "-q", "-h", rs.primary.host, "-p", str(rs.primary.port), "-U", APP_USER,
                 APP_DB], timeout=120, password=APP_PASSWORD)
    rs.sync()

    bench = subprocess.Popen(
        [pgbench_path(), "-n", "-S", "-M", "simple", "-c", "6", "-j", "2", "-T", str(BENCH_SECONDS),
         "-h", proxy.host, "-p", str(proxy.port), "-U", APP_USER, APP_DB],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=pgbench_env(APP_PASSWORD),
        stdin=subprocess.DEVNULL,
    )
    try:
        def victim_serving() -> bool:
            res = _replay(path, "--pool", str(vid), "--format", "json")
            return res.returncode == 0 and any(
                json.loads(ln).get("kind") == "CHECKOUT" for ln in res.stdout.splitlines())

        poll(victim_serving, timeout=20, interval=0.1, what=f"pgbench reads on pool {vid}")
        t_kill = time.monotonic()
        victim.stop(mode="immediate")

        def banned() -> list[tuple[float, str, str]]:
            res = _replay(path, "--pool", str(vid))
            return [e for e in _timeline(res.stdout) if e[2].startswith("BAN ")] if res.returncode == 0 else []

        poll(banned, timeout=15, interval=0.1, what=f"BAN of pool {vid} in the replayed timeline")
        out, _ = bench.communicate(timeout=BENCH_SECONDS + 60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    # Transactions in flight on the dead host fail (their pgbench clients abort: exit status 2);
    # the others carry on.
    assert bench.returncode in (0, 2), out
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert processed and int(processed.group(1)) > 0, out

    with LogStream(path) as stream:
        start = stream.header.monotonic_start_ns / 1e9
    kill = t_kill - start  # the kill on the timeline's clock

    text = _replay_ok(path, "--pool", str(vid))
    print(f"\n--- replay --pool {vid} (kill at {kill:+.6f}s), around the kill, checkouts left out:")
    events = _timeline(text)
    for t, subject, what in events:
        if kill - 0.3 <= t <= kill + BAN_BOUND + BAN_MS / 1000 and not re.search(
                r"CHECK(OUT|IN) |\((checkout|checkin|transaction_done)\)", what):
            print(f"{t:+.6f}s  {subject:<11} {what}")
    assert text.splitlines()[0].startswith("=== run 1 of 1: pgdog-ev")

    # Before the kill the victim's pool was lending servers to pgbench's clients.
    served = [e for e in events if e[0] < kill and e[1] == f"pool:{vid}" and e[2].startswith("CHECKOUT server:")]
    assert served, text[-4000:]
    # The BAN: after the kill, within the idle check interval plus the check timeout (plus slack).
    bans = [e for e in events if e[1] == f"pool:{vid}" and e[2].startswith("BAN ")]
    assert len(bans) >= 1, text[-4000:]
    t_ban, _, ban_text = bans[0]
    assert kill <= t_ban <= kill + BAN_BOUND, f"BAN at {t_ban:+.6f}s, kill at {kill:+.6f}s"
    assert re.fullmatch(r"BAN reason=(connect_error|healthcheck) cluster:\d+", ban_text), ban_text
    print(f"kill -> BAN in the timeline: {(t_ban - kill) * 1000:.0f} ms ({ban_text})")
    # The victim's server connections are gone by then (lost in flight, or closed by the ban).
    closed = [e for e in events if kill <= e[0] <= t_ban + 0.5 and e[1].startswith("server:")
              and "-> CLOSED" in e[2] and e[2].endswith(f"[pool:{vid}]")]
    assert closed, text[-4000:]
    # The other pools are not part of this pool's story.
    others = {f"pool:{p}" for p in _pool_ids(proxy).values() if p != vid}
    assert not [e for e in events if e[1] in others]

    # The whole timeline has it too, between the kill and the end of pgbench's run.
    full = _timeline(_replay_ok(path, "--since", f"{kill:.6f}"))
    assert (t_ban, f"pool:{vid}", ban_text) in full

    before = _replay_ok(path, "--at", f"{t_ban - 0.001:.6f}")
    after = _replay_ok(path, "--at", f"{t_ban + 0.001:.6f}")
    print(f"--- replay --at {t_ban + 0.001:.6f}:\n{after}")
    assert "not banned" in _line_of(before, f"pool:{vid}")
    assert f"pool:{vid}" not in _line_of(before, "cluster:1").partition("banned:")[2]
    assert "BANNED since" in _line_of(after, f"pool:{vid}")
    assert f"banned: pool:{vid}" in _line_of(after, "cluster:1")
    # The same moment as a wall-clock time (the --wall column of the BAN line, plus 1 ms).
    ban_line = next(ln for ln in _replay_ok(path, "--pool", str(vid), "--wall").splitlines()
                    if f" pool:{vid}" in ln and " BAN " in ln)
    wall = datetime.fromisoformat(ban_line.split()[0]) + timedelta(milliseconds=1)
    as_wall = _replay_ok(path, "--at", wall.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "--pool", str(vid))
    assert "BANNED since" in _line_of(as_wall, f"pool:{vid}")
