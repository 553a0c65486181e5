"""`[general] workers = 2` against a real PostgreSQL: two worker processes behind one port.

Connections spread over both workers and each serves queries; a CancelRequest reaches the query
whichever worker the kernel hands it to (both the local and the forwarded path are exercised and
counted); SHOW POOLS, SHOW STATS and the metrics endpoint add both workers up; an admin SET and a
SIGHUP reach every worker; SIGTERM drains both and the supervisor exits; a worker killed with
SIGKILL is restarted, and one that does not answer is named in a NOTICE instead of hanging SHOW.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.conftest import APP_DB
from tests.harness.admin import ADMIN_PASSWORD, admin_connect, only, show
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.pgserver import PgServer
from tests.harness.ports import free_port
from tests.harness.proxy import ProxyProcess, decode_event_log

WORKERS = 2
POOL = 4  # per pool, for the daemon: 2 per worker
NS = "pgdog_"
READY = "listening on"  # the supervisor's line once every worker listens
CANCEL_WITHIN = 5.0


def _general(**extra: Any) -> dict[str, Any]:
    return {"workers": WORKERS, "default_pool_size": POOL, "min_pool_size": 0, "checkout_timeout": 10000,
            "shutdown_timeout": 5000, **extra}


def _start(factory: Callable[..., ProxyProcess], pg: PgServer, **general: Any) -> ProxyProcess:
    # The admin password from the environment: the module-scoped factory writes no [admin].
    proxy = factory(general=_general(**general), databases=[app_database(pg)], users=[app_user()],
                    env={"PGDOG_ADMIN_PASSWORD": ADMIN_PASSWORD})
    _wait_ready(proxy)
    return proxy


def _wait_ready(proxy: ProxyProcess, timeout: float = 20.0) -> None:
    """The port accepts as soon as one worker listens; tests that need both wait for the
    supervisor's line saying every worker does."""
    deadline = time.monotonic() + timeout
    while f"with {WORKERS} workers" not in proxy.log_text():
        assert proxy.returncode is None, f"the proxy exited:\n{proxy.log_tail()}"
        assert time.monotonic() < deadline, f"workers not ready:\n{proxy.log_tail()}"
        time.sleep(0.05)


def worker_of(conn: psycopg.Connection) -> int:
    """The worker serving a client: its cancel key (the client id) modulo the worker count."""
    return conn.info.backend_pid % WORKERS


def clients_on_every_worker(proxy: ProxyProcess, per_worker: int = 1, limit: int = 60) -> list[psycopg.Connection]:
    """Connect until every worker has ``per_worker`` clients (the kernel picks the worker; 60
    tries leave a chance of 2^-59 that one got none). Returns every connection opened."""
    conns: list[psycopg.Connection] = []
    counts = [0] * WORKERS
    while min(counts) < per_worker:
        assert len(conns) < limit, f"after {limit} connections, clients per worker: {counts}"
        conn = connect(proxy)
        conns.append(conn)
        counts[worker_of(conn)] += 1
    return conns


def admin_on(proxy: ProxyProcess, worker: int, limit: int = 60) -> psycopg.Connection:
    """An admin connection the kernel gave to ``worker`` (others opened on the way are closed)."""
    for _ in range(limit):
        conn = admin_connect(proxy)
        if worker_of(conn) == worker:
            return conn
        conn.close()
    raise AssertionError(f"no admin connection landed on worker {worker} in {limit} tries")


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in parse_text(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    found = [v for lab, v in samples.get(NS + name, []) if labels.items() <= lab.items()]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


def _workers(admin: psycopg.Connection) -> list[dict[str, Any]]:
    return show(admin, "SHOW WORKERS")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- one daemon, several tests


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def proxy(pg: PgServer, module_proxy_factory: Callable[..., ProxyProcess], metrics_port: int) -> ProxyProcess:
    return _start(module_proxy_factory, pg, openmetrics_port=metrics_port, openmetrics_host="127.0.0.1",
                  openmetrics_namespace=NS)


@pytest.fixture
def clients(proxy: ProxyProcess) -> Iterator[list[psycopg.Connection]]:
    conns = clients_on_every_worker(proxy, per_worker=3)
    yield conns
    for conn in conns:
        conn.close()


def test_clients_spread_over_both_workers_and_each_serves_queries(proxy: ProxyProcess, clients, poll) -> None:
    for i, conn in enumerate(clients):
        assert conn.execute("SELECT %s::int * 2", (i,)).fetchone() == (i * 2,)
    with admin_connect(proxy) as admin:
        rows = [r for r in show(admin, "SHOW CLIENTS") if not r["admin"]]
        # One row per client of either worker, its worker appended; the id is the client's cancel
        # key, and the key says which worker owns the client.
        assert sorted(r["id"] for r in rows) == sorted(c.info.backend_pid for c in clients)
        assert all(r["id"] % WORKERS == r["worker"] for r in rows)
        # Both workers ran transactions for their clients.
        assert {r["worker"] for r in rows if r["transactions"] >= 1} == set(range(WORKERS))
        workers = _workers(admin)
        assert [w["worker"] for w in workers] == list(range(WORKERS))
        assert all(w["state"] == "up" for w in workers)
        assert len({w["pid"] for w in workers}) == WORKERS and proxy.pid not in {w["pid"] for w in workers}
        by_worker = {w: sum(1 for c in clients if worker_of(c) == w) for w in range(WORKERS)}
        # Every worker counts its own clients (the admin client is one of them).
        assert all(w["clients"] >= by_worker[w["worker"]] for w in workers)

        pool = only(show(admin, "SHOW POOLS"), database=APP_DB, user="app")
        assert pool["cl_active"] == len(clients)  # both workers' clients, in one row
        assert 1 <= pool["sv_total"] <= POOL
        assert pool["sv_total"] == len([s for s in show(admin, "SHOW SERVERS") if s["database"] == APP_DB])
        database = only(show(admin, "SHOW DATABASES"), name=APP_DB)
        assert database["pool_size"] == POOL  # 2 + 2: each worker's share, added up
        assert only(show(admin, "SHOW CONFIG"), name="default_pool_size")["value"] == str(POOL)
        assert only(show(admin, "SHOW CONFIG"), name="workers")["value"] == str(WORKERS)
        assert show(admin, "SHOW LISTS")[0]["pools"] == 1


def _sleep_then_cancel(pg: PgServer, conn: psycopg.Connection, mark: str, poll: Callable[..., Any]) -> None:
    conn.pgconn.send_query(f"SELECT pg_sleep(30) /* {mark} */".encode())
    while conn.pgconn.flush():
        pass
    running = f"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%/* {mark} */%'" \
              " AND pid <> pg_backend_pid()"
    poll(lambda: pg.psql(running) == "1", what=f"query {mark} running")
    conn.cancel()  # libpq's PQcancel: a new connection, to whichever worker the kernel picks
    deadline = time.monotonic() + CANCEL_WITHIN
    code = None
    while time.monotonic() < deadline:
        conn.pgconn.consume_input()
        if not conn.pgconn.is_busy():
            result = conn.pgconn.get_result()
            while conn.pgconn.get_result() is not None:
                pass
            assert result is not None
            code = result.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
            break
        time.sleep(0.01)
    assert code == b"57014", f"query not canceled within {CANCEL_WITHIN}s (SQLSTATE {code!r})"


def test_cancel_reaches_the_query_from_either_worker(pg: PgServer, proxy: ProxyProcess, clients, metrics_port: int,
                                                    poll) -> None:
    """The cancel connection lands on the client's own worker (handled there) or on the other
    (passed over the private channel): repeat until both happened, each time checking the query
    really was canceled and which path it took."""
    paths = {"local": 0, "forwarded": 0}
    with admin_connect(proxy) as admin:

        def forwarded() -> int:
            return sum(w["cancels_forwarded"] for w in _workers(admin))

        def received() -> int:
            return sum(w["cancels_received"] for w in _workers(admin))

        attempts = 0
        while min(paths.values()) < 2:
            attempts += 1
            assert attempts <= 40, f"cancel paths after 40 cancels: {paths}"
            conn = clients[attempts % len(clients)]
            before = forwarded()
            _sleep_then_cancel(pg, conn, f"workers_cancel_{attempts}_{uuid.uuid4().hex[:8]}", poll)
            assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)
            paths["forwarded" if forwarded() > before else "local"] += 1
        assert forwarded() == received() == paths["forwarded"]
    samples = _scrape(metrics_port)
    assert _value(samples, "cancel_requests_forwarded_total") == paths["forwarded"]


def test_show_stats_and_metrics_add_up_both_workers(proxy: ProxyProcess, clients, metrics_port: int) -> None:
    labels = {"user": "app", "database": APP_DB}
    with admin_connect(proxy) as admin:
        stats_before = only(show(admin, "SHOW STATS"), database=APP_DB, user="app")["total_query_count"]
        scraped_before = _value(_scrape(metrics_port), "queries_total", **labels)
        # A different number of queries on each worker: only their sum matches.
        on = {w: next(c for c in clients if worker_of(c) == w) for w in range(WORKERS)}
        runs = {0: 3, 1: 5}
        for worker, n in runs.items():
            for _ in range(n):
                on[worker].execute("SELECT 1")
        total = sum(runs.values())
        stats_after = only(show(admin, "SHOW STATS"), database=APP_DB, user="app")["total_query_count"]
        assert stats_after - stats_before == total
        samples = _scrape(metrics_port)
        assert _value(samples, "queries_total", **labels) - scraped_before == total
        assert _value(samples, "workers") == WORKERS
        assert _value(samples, "worker_restarts_total") == 0
        clients_shown = len(show(admin, "SHOW CLIENTS"))
        assert _value(samples, "clients") == clients_shown
        assert _value(samples, "pool_size", **labels) == POOL
        assert _value(samples, "build_info", version=_value_label(samples, "build_info", "version")) == 1


def _value_label(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, label: str) -> str:
    ((labels, _),) = samples[NS + name]
    return labels[label]


# --------------------------------------------------------------------------- signals and restarts


def test_set_and_sighup_reach_every_worker(pg: PgServer, proxy_factory, poll) -> None:
    proxy = _start(proxy_factory, pg)
    with admin_connect(proxy) as admin:
        # SET takes the daemon's total: each worker runs its share of it.
        admin.execute("SET default_pool_size TO 7")
        assert only(show(admin, "SHOW DATABASES"), name=APP_DB)["pool_size"] == 7  # 4 + 3
        assert only(show(admin, "SHOW CONFIG"), name="default_pool_size")["value"] == "7"
        # SIGHUP to the supervisor: the file's value again, in every worker; a new worker count
        # waits for a restart.
        general = _general(default_pool_size=6, workers=WORKERS + 1)
        proxy.update(general=general)
        poll(lambda: only(show(admin, "SHOW DATABASES"), name=APP_DB)["pool_size"] == 6, what="reloaded pool size")
        poll(lambda: "reload: all 2 workers reloaded" in proxy.log_text(), what="reload logged")
        assert "workers = 3 in the configuration takes effect at the next restart" in proxy.log_text()
        assert len(_workers(admin)) == WORKERS
        assert only(show(admin, "SHOW CONFIG"), name="workers")["value"] == str(WORKERS)
        # A bad file: both workers keep theirs and RELOAD says why.
        with open(proxy.config_path, "a") as f:
            f.write("\n[general]\nbroken = \n")
        with pytest.raises(psycopg.Error) as info:
            admin.execute("RELOAD")
        assert info.value.sqlstate == "F0000"
        assert only(show(admin, "SHOW DATABASES"), name=APP_DB)["pool_size"] == 6


def test_a_restarted_worker_keeps_a_host_a_reload_added_banned_until_checked(pg: PgServer, proxy_factory,
                                                                             poll) -> None:
    """require_healthcheck_on_discovery: a host a reload added (a port with nothing listening)
    stays banned in every worker until a health check passes, with no expiry. A worker restarted
    after that reload bans it too, from its first configuration: the supervisor tells it which
    hosts the daemon ran before; the first configuration's hosts serve at once."""
    primary = app_database(pg)
    replica = {**primary, "role": "replica"}  # the same server, so that the cluster has two hosts
    dead_port = free_port()
    dead = {**replica, "host": "127.0.0.1", "port": dead_port}
    proxy = proxy_factory(general=_general(require_healthcheck_on_discovery=True, idle_healthcheck_delay=0),
                          databases=[primary, replica], users=[app_user()],
                          env={"PGDOG_ADMIN_PASSWORD": ADMIN_PASSWORD})
    _wait_ready(proxy)
    proxy.update(databases=[primary, replica, dead])
    poll(lambda: "reload: all 2 workers reloaded" in proxy.log_text(), what="reload logged")
    with admin_on(proxy, 0) as admin:

        def bans() -> list[tuple[int, int, str]]:
            return sorted((r["worker"], r["port"], r["ban_reason"]) for r in show(admin, "SHOW BANS"))

        discovery = [(w, dead_port, "new host, not yet checked") for w in range(WORKERS)]
        poll(lambda: bans() == discovery, what="the added host banned in both workers")
        pid = only(_workers(admin), worker=1)["pid"]
        os.kill(pid, signal.SIGKILL)

        def restarted() -> bool:
            row = only(_workers(admin), worker=1)
            return row["state"] == "up" and row["pid"] != pid

        poll(restarted, timeout=15, what="worker 1 restarted")
        assert bans() == discovery, bans()
    # The restarted worker serves from the first configuration's hosts.
    conns = clients_on_every_worker(proxy)
    try:
        for conn in conns:
            assert conn.execute("SELECT inet_server_port()").fetchone() == (pg.port,)
    finally:
        for conn in conns:
            conn.close()


class FakeSystemd:
    """NOTIFY_SOCKET's receiving end: the datagrams, as dicts of KEY=VALUE lines."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.path = path
        self.seen: list[dict[str, str]] = []

    def next(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {key}=1 within {timeout}s; seen: {self.seen!r}"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.seen.append(message)
            if message.get(key) == "1":
                return message


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    directory = tempfile.mkdtemp(prefix="sdw-")  # short: AF_UNIX paths are limited to ~107 bytes
    fake = FakeSystemd(os.path.join(directory, "notify"))
    yield fake
    fake.sock.close()
    shutil.rmtree(directory, ignore_errors=True)


def test_systemd_hears_the_supervisor_and_sigterm_drains_every_worker(pg: PgServer, proxy_factory,
                                                                      systemd: FakeSystemd) -> None:
    proxy = proxy_factory(general=_general(), databases=[app_database(pg)], users=[app_user()],
                          env={"PGDOG_ADMIN_PASSWORD": ADMIN_PASSWORD, "NOTIFY_SOCKET": systemd.path})
    ready = systemd.next("READY")
    # READY once every worker listens, from the supervisor (the main PID), never from a worker.
    assert ready["MAINPID"] == str(proxy.pid) and ready["STATUS"] == f"{WORKERS} of {WORKERS} workers serving"
    log = proxy.log_text()
    assert all(f"worker {i} of {WORKERS} listening" in log for i in range(WORKERS)), log
    proxy.signal(signal.SIGHUP)
    systemd.next("RELOADING")
    assert systemd.next("READY")["MAINPID"] == str(proxy.pid)

    conns = clients_on_every_worker(proxy)
    with admin_connect(proxy) as admin:
        pids = [w["pid"] for w in _workers(admin)]
    try:
        proxy.signal(signal.SIGTERM)
        systemd.next("STOPPING")
        assert proxy.wait(timeout=20) == 0
    finally:
        for conn in conns:
            conn.close()
    assert not any(_alive(pid) for pid in pids), "a worker outlived the supervisor"
    assert all(m.get("MAINPID", str(proxy.pid)) == str(proxy.pid) for m in systemd.seen), systemd.seen
    log = proxy.log_text()
    for index in range(WORKERS):
        assert f"worker {index} (pid {pids[index]}) stopped" in log, log
    # Each worker wrote its own event log, readable with `pgdog-ev events` like any other.
    assert not os.path.exists(proxy.event_log_path)
    for index in range(WORKERS):
        text = decode_event_log(proxy.event_log_path.replace(".evlog", f".w{index}.evlog"))
        assert text is not None and "ACCEPT" in text and "reason=SHUTDOWN" in text, text


def test_a_killed_worker_is_restarted_and_a_silent_one_is_named(pg: PgServer, proxy_factory, poll) -> None:
    proxy = _start(proxy_factory, pg)
    with admin_on(proxy, 0) as admin:
        pid = only(_workers(admin), worker=1)["pid"]
        # Stopped (not dead): SHOW answers after its deadline without worker 1, and says so.
        os.kill(pid, signal.SIGSTOP)
        try:
            notices: list[str] = []
            admin.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            started = time.monotonic()
            rows = show(admin, "SHOW POOLS")
            assert time.monotonic() - started < 5
            assert only(rows, database=APP_DB, user="app")
            assert any("worker 1 did not answer" in n for n in notices), notices
            assert only(_workers(admin), worker=1)["state"] == "no answer"
        finally:
            os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            row = only(_workers(admin), worker=1)
            return row if row["state"] == "up" and row["pid"] != pid else None

        row = poll(restarted, timeout=15, what="worker 1 restarted")
        assert row["restarts"] == 1
    assert f"worker 1 (pid {pid}) was killed by signal 9 (SIGKILL)" in proxy.log_text()
    # Both serve again.
    conns = clients_on_every_worker(proxy)
    try:
        for conn in conns:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in conns:
            conn.close()
