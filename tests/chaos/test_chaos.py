"""Chaos through a real toxiproxy: pgdog-ev -> toxiproxy -> each PostgreSQL server, and clients ->
toxiproxy -> pgdog-ev. For each case the workloads (psycopg writers and readers, plain and prepared;
asyncpg; pgbench) run before, during and after the fault, then the invariants are checked:

- every acknowledged insert is on the primary; every result read was exactly right;
- no request outlived the proxy's timeouts (server-side faults) and every workload thread and
  pgbench ended in time; benign faults failed no request at all;
- once the toxics are gone a new client works at once, every workload recovers, the pools are
  healthy and unbanned with no active, leaked or out-of-sync servers, and the daemon's memory is
  back near its baseline; the daemon is alive with no traceback in its log.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from tests.chaos.cases import HOLD, PRIMARY, REPLICA, Case, selected
from tests.chaos.conftest import Rig
from tests.chaos.workloads import (
    PGBENCH_CLIENTS,
    READ_ROWS,
    AsyncpgClients,
    Op,
    Pgbench,
    PsycopgClient,
    Tally,
    Watchdog,
    Workload,
    next_id,
)
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER, CHAOS_SUMMARY_KEY
from tests.harness.admin import ADMIN, admin_connect, show
from tests.harness.memory import rss
from tests.harness.proxy import ProxyProcess
from tests.harness.replicas import cluster_general, cluster_users, events
from tests.harness.toxi import Link

pytestmark = pytest.mark.chaos

# The proxy's timeouts (ms): every request that meets a server-side fault must end within
# checkout + query timeout, well before the clients' own deadline cuts it off.
TIMEOUTS = {
    "connect_timeout": 1000,
    "checkout_timeout": 2000,
    "query_timeout": 3000,
    "rollback_timeout": 1000,
    "healthcheck_timeout": 1000,
    "healthcheck_interval": 1000,
    "idle_healthcheck_interval": 1000,
    "idle_healthcheck_delay": 1000,
    "ban_timeout": 2000,
}
PROXY_BOUND = (TIMEOUTS["checkout_timeout"] + TIMEOUTS["query_timeout"]) / 1000 + 1.5
CLIENT_DEADLINE = 8.0
PGBENCH_SECONDS = 9
# How much the daemon's RSS may stay above its warmed-up baseline once the case is over.
RSS_SLACK = 12 * 2**20

_case_numbers = {c.name: i for i, c in enumerate(selected(), 1)}


def _start_proxy(rig: Rig, proxy_factory: Any) -> tuple[ProxyProcess, dict[str, Link]]:
    rs = rig.servers
    links = {PRIMARY: rig.toxi.link(f"pg-primary-{time.monotonic_ns()}", rs.primary.port),
             REPLICA: rig.toxi.link(f"pg-replica-{time.monotonic_ns()}", rs.replicas[0].port)}
    databases = [
        {"name": APP_DB, "host": "127.0.0.1", "port": links[PRIMARY].port, "database_name": APP_DB, "role": "primary"},
        {"name": APP_DB, "host": "127.0.0.1", "port": links[REPLICA].port, "database_name": APP_DB, "role": "replica"},
    ]
    proxy = proxy_factory(cluster_general(default_pool_size=4, **TIMEOUTS), databases, cluster_users(), admin=ADMIN)
    links["front"] = rig.toxi.link(f"front-{time.monotonic_ns()}", proxy.port)
    return proxy, links


def _dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user={APP_USER} password={APP_PASSWORD} dbname={APP_DB}"


def _url(port: int) -> str:
    return f"postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/{APP_DB}"


def _inject(case: Case, link: Link) -> None:
    if case.fault.down:
        link.down()
    for kind, stream, attrs in case.fault.toxics:
        link.add(kind, stream, **attrs)


def _wait_all_ok(poll: Any, tally: Tally, workloads: list[Workload], names: list[str], since: float, timeout: float,
                 what: str) -> float:
    """Poll until every workload has two successful requests started after `since`; seconds taken."""
    try:
        poll(lambda: all(tally.ok_since(n, since) >= 2 for n in names), timeout=timeout, interval=0.05, what=what)
    except AssertionError as e:
        recent = {n: [(o.what, o.ok, o.corrupt, o.error[:100]) for o in tally.ops if o.who == n][-3:] for n in names}
        raise AssertionError(f"{e}: successes {[(n, tally.ok_since(n, since)) for n in names]}; "
                             f"crashed {[(w.name, repr(w.crash)) for w in workloads if w.crash]}; "
                             f"last requests {recent}") from None
    return time.monotonic() - since


def _new_client(port: int) -> tuple[bool, float, str]:
    """One new client, one attempt: connect, write, read."""
    start = time.monotonic()
    try:
        with psycopg.connect(_dsn(port), autocommit=True, connect_timeout=5) as conn:
            ident = next_id()
            row = conn.execute("INSERT INTO chaos_acks (id, who) VALUES (%s, 'new-client') RETURNING id",
                               (ident,)).fetchone()
            # A read too (it may go to the replica).
            n = conn.execute("SELECT count(*) FROM chaos_reads").fetchone()
            good = row is not None and row[0] == ident and n is not None and n[0] == READ_ROWS
            return good, time.monotonic() - start, "" if good else f"wrong result {row} {n}"
    except psycopg.Error as e:
        return False, time.monotonic() - start, f"{type(e).__name__} {e.sqlstate} {e!r}"


def _pools_clean(proxy: ProxyProcess, seen: list[Any]) -> list[dict[str, Any]] | None:
    """SHOW POOLS of the app database if every pool is clean and no app client is left, else
    None (what was seen goes to `seen`, for the failure message)."""
    with admin_connect(proxy) as admin:
        pools = [r for r in show(admin, "SHOW POOLS") if r["database"] == APP_DB]
        clients = [r for r in show(admin, "SHOW CLIENTS") if r["database"] == APP_DB]
        servers = show(admin, "SHOW SERVERS")
    seen[:] = [pools, clients, servers]
    clean = pools and not clients and all(
        not r["banned"] and r["healthy"] and r["sv_active"] == 0 and r["sv_idle_xact"] == 0
        and r["cl_waiting"] == 0 and r["sv_login"] == 0 and r["cl_active"] == 0 for r in pools)
    return pools if clean else None


def _pgbench_clients(proxy: ProxyProcess) -> int:
    with admin_connect(proxy) as admin:
        return sum(1 for r in show(admin, "SHOW CLIENTS") if r["application_name"] == "pgbench")


def _errors(ops: list[Op]) -> dict[str, int]:
    return dict(Counter(f"{o.sqlstate or '-'} {o.error[:70]}" for o in ops if not o.ok).most_common(6))


@pytest.mark.parametrize("case", selected(), ids=lambda c: c.name)
def test_chaos(case: Case, chaos_rig: Rig, proxy_factory: Any, poll: Any, tmp_path: Any,
               record_property: Any, request: pytest.FixtureRequest) -> None:
    proxy, links = _start_proxy(chaos_rig, proxy_factory)
    request.addfinalizer(lambda: [link.destroy() for link in links.values()])
    assert proxy.pid is not None
    front = links["front"]
    tally = Tally()
    watchdog = Watchdog(CLIENT_DEADLINE).start()
    workloads = [
        PsycopgClient("psycopg-w", tally, watchdog, _dsn(front.port), "writer", prepared=False),
        PsycopgClient("psycopg-w-prep", tally, watchdog, _dsn(front.port), "writer", prepared=True),
        PsycopgClient("psycopg-r-prep", tally, watchdog, _dsn(front.port), "reader", prepared=True),
        AsyncpgClients("asyncpg", tally, watchdog, _url(front.port)),
    ]
    names = ["psycopg-w", "psycopg-w-prep", "psycopg-r-prep", "asyncpg-writer", "asyncpg-reader"]
    bench = Pgbench("127.0.0.1", front.port, APP_USER, APP_PASSWORD, APP_DB, _case_numbers[case.name],
                    PGBENCH_SECONDS, str(tmp_path))
    observed: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        bench.start()
        for w in workloads:
            w.start()
        _wait_all_ok(poll, tally, workloads, names, t0, 20, "workloads warm up")
        # pgbench too: a connection it opens during a fault on the client link fails, and
        # pgbench gives up (exit 1) on a client it could not connect at its start.
        poll(lambda: _pgbench_clients(proxy) >= PGBENCH_CLIENTS, timeout=20, interval=0.05,
             what="pgbench's clients logged in")
        baseline_rss = rss(proxy.pid)
        with admin_connect(proxy) as admin:
            before = {(r["addr"], r["port"]): r for r in show(admin, "SHOW POOLS") if r["database"] == APP_DB}

        t_in = time.monotonic()
        _inject(case, links[case.target])
        time.sleep(HOLD)  # the fault's duration, not a synchronisation
        links[case.target].clear()
        t_out = time.monotonic()
        assert links[case.target].listed_toxics() == []

        ok, took, err = _new_client(front.port)
        observed["new_client"] = f"{'ok' if ok else 'FAILED ' + err} in {took * 1000:.0f} ms"
        assert ok and took < 3.0, f"a new client right after the fault: {observed['new_client']}"
        observed["recovered_s"] = round(_wait_all_ok(poll, tally, workloads, names, t_out, 20, "workloads recover"), 2)
    finally:
        for w in workloads:
            w.stop()
        joined = {w.name: w.join(CLIENT_DEADLINE + 2) for w in workloads}
        bench.wait(grace=PROXY_BOUND if case.server_side else CLIENT_DEADLINE)
        watchdog.stop()

    ops = list(tally.ops)
    during = [o for o in ops if o.end >= t_in and o.start <= t_out]
    failed = [o for o in ops if not o.ok]
    killed = [o for o in ops if o.killed]
    observed.update({
        "ops": len(ops), "ops_during_fault": len(during), "failed": len(failed), "killed": len(killed),
        "max_op_s": round(max(o.duration for o in ops), 2), "acked": len(tally.acked),
        "errors": _errors(ops), "pgbench": bench.summary(),
    })

    # Nothing crashed, nothing corrupt, nothing hung.
    assert not [w.name for w in workloads if w.crash], [repr(w.crash) for w in workloads]
    assert all(joined.values()), f"workload threads still blocked: {joined}"
    assert not [o for o in ops if o.corrupt], "a request returned a wrong result"
    if case.fault.benign:
        assert not failed, f"benign fault {case.name} failed requests: {_errors(ops)}"
    if case.server_side:
        assert not killed, f"requests the proxy let hang past {CLIENT_DEADLINE}s: {killed[:3]}"
        assert observed["max_op_s"] <= PROXY_BOUND, f"slowest request {observed['max_op_s']}s > {PROXY_BOUND}s"
        assert not bench.killed, f"pgbench outlived its -T by more than {PROXY_BOUND}s: {bench.output[-1500:]}"
    else:
        late = [o for o in killed if o.start > t_out + 0.5]
        assert not late, f"requests started after the fault still hung: {late[:3]}"
    assert bench.returncode in (0, 2) or bench.killed, f"pgbench exit {bench.returncode}:\n{bench.output[-2000:]}"
    if case.fault.benign:
        assert bench.returncode == 0 and bench.aborted_clients == 0, bench.output[-2000:]

    # Every acknowledged write is on the primary, read directly (not through toxiproxy).
    with chaos_rig.servers.connect(chaos_rig.servers.primary) as direct:
        present = {r[0] for r in direct.execute("SELECT id FROM chaos_acks WHERE id = ANY(%s)",
                                                 (tally.acked,)).fetchall()}
        bench_rows = direct.execute("SELECT count(*) FROM chaos_bench WHERE case_no = %s",
                                    (_case_numbers[case.name],)).fetchone()[0]
    lost = sorted(set(tally.acked) - present)
    observed["acked_present"] = f"{len(present)}/{len(set(tally.acked))}"
    assert not lost, f"{len(lost)} acknowledged inserts are missing on the primary: {lost[:10]}"
    assert bench_rows >= bench.processed, f"pgbench committed {bench.processed} but {bench_rows} rows exist"

    # The pools heal: unbanned, healthy, no active/idle-in-transaction/login servers, no clients left.
    t_heal = time.monotonic()
    seen: list[Any] = []
    try:
        pools = poll(lambda: _pools_clean(proxy, seen), timeout=20, interval=0.1, what="pools clean after the fault")
    except AssertionError as e:
        raise AssertionError(f"{e}\nSHOW POOLS / CLIENTS / SERVERS: {seen}") from None
    observed["pools_clean_s"] = round(time.monotonic() - t_heal, 2)
    desync = {(r["addr"], r["port"]): r["out_of_sync"] - before.get((r["addr"], r["port"]), {}).get("out_of_sync", 0)
              for r in pools}
    observed["out_of_sync"] = sum(desync.values())
    assert not any(desync.values()), f"servers went out of sync: {desync}"

    # Memory back near its baseline.
    poll(lambda: rss(proxy.pid) <= baseline_rss + RSS_SLACK, timeout=15, interval=0.2,
         what=f"RSS back within {RSS_SLACK >> 20} MB of {baseline_rss >> 20} MB")
    observed["rss_mb"] = f"{baseline_rss / 2**20:.1f} -> {rss(proxy.pid) / 2**20:.1f}"

    recorded = Counter(e.kind for e in events(proxy, "BAN", "UNBAN"))
    observed["bans"] = f"{recorded['BAN']} banned, {recorded['UNBAN']} unbanned"
    assert proxy.returncode is None, "the daemon exited"
    assert "Traceback" not in proxy.log_text(), proxy.log_tail(60)

    summary = {"case": case.name, "injected": f"{case.fault.describe()} on {case.target} for {HOLD:.0f}s",
               "observed": json.dumps(observed)}
    record_property(CHAOS_SUMMARY_KEY, json.dumps(summary))
    print(f"{case.name}: injected {summary['injected']}\n  observed {summary['observed']}")
