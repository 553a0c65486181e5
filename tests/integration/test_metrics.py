"""The OpenMetrics and health endpoints of a running proxy, scraped over HTTP like Prometheus does.

pgbench runs a custom script rather than a built-in one: a built-in script makes pgbench run
queries of its own besides the transactions it reports (it asks pgbench_branches for the scale,
and newer versions the catalogs for partitioning), each one a transaction to the proxy. With a
script of one explicit transaction, the proxy's transaction counter must grow by exactly the
number of transactions pgbench reports.
"""

from __future__ import annotations

import re
import socket
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from pgdog_ev import __version__
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.pgbench import run_pgbench
from tests.harness.ports import free_port
from tests.harness.promql import NAMESPACE, referenced_names
from tests.harness.proxy import ProxyError, ProxyProcess

Samples = dict[str, list[tuple[dict[str, str], float]]]
OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
CLIENTS, PER_CLIENT = 4, 50

SCRIPT = """\
\\set v random(1, 1000)
BEGIN;
INSERT INTO metrics_bench (v) VALUES (:v);
SELECT count(*) FROM metrics_bench WHERE v = :v;
END;
"""


def http_get(port: int, accept: str | None = None, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) of one request to 127.0.0.1:port."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method=method)
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(port: int, accept: str | None = None) -> Samples:
    status, content_type, text = http_get(port, accept)
    assert status == 200, text
    openmetrics = content_type.startswith("application/openmetrics-text")
    assert openmetrics == (accept is not None and "openmetrics" in accept), content_type
    if not openmetrics:
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
    parse = parse_openmetrics if openmetrics else parse_text
    out: Samples = {}
    for family in parse(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for lab, v in samples.get(NAMESPACE + name, []) if labels.items() <= lab.items()]
    assert len(found) == 1, f"{name} {labels}: {found} in {samples.get(NAMESPACE + name)}"
    return found[0]


def buckets(samples: Samples, **labels: str) -> list[tuple[float, float]]:
    rows = [(float(lab["le"]), v) for lab, v in samples[NAMESPACE + "checkout_wait_seconds_bucket"]
            if labels.items() <= lab.items()]
    return sorted(rows)


def metrics_proxy(proxy_factory: Callable[..., ProxyProcess], pg: Any, db: str = APP_DB,
                  **general: Any) -> tuple[ProxyProcess, int]:
    port = free_port()
    g = {"openmetrics_port": port, "openmetrics_host": "127.0.0.1", "openmetrics_namespace": NAMESPACE,
         "checkout_timeout": 20000, **general}
    proxy = proxy_factory(general=g, databases=[app_database(pg, db, db)], users=[app_user(db)])
    return proxy, port


@pytest.mark.parametrize("mode", ["simple", "prepared"])
def test_pgbench_counted_exactly(pg, proxy_factory, tmp_path: Path, mode: str) -> None:
    db = f"metrics_{uuid.uuid4().hex[:8]}"
    pg.create_database(db, owner=APP_USER)
    with psycopg.connect(pg.dsn(APP_USER, db, APP_PASSWORD), autocommit=True) as c:
        c.execute("CREATE TABLE metrics_bench (v int)")
    proxy, port = metrics_proxy(proxy_factory, pg, db, default_pool_size=2)
    script = tmp_path / "bench.sql"
    script.write_text(SCRIPT)
    pool = {"database": db, "user": APP_USER}

    before = scrape(port)
    out = run_pgbench(
        ["-n", "-M", mode, "-c", str(CLIENTS), "-j", "2", "-t", str(PER_CLIENT), "-f", str(script),
         "-h", proxy.host, "-p", str(proxy.port), "-U", APP_USER, db],
        timeout=120, password=APP_PASSWORD,
    )
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert processed, out
    done = int(processed.group(1))
    assert done == CLIENTS * PER_CLIENT, out
    after = scrape(port, OPENMETRICS)

    def delta(name: str) -> float:
        return value(after, name, **pool) - value(before, name, **pool)

    # One explicit transaction per script run: exactly pgbench's count.
    assert delta("transactions_total") == done
    # INSERT and SELECT reach a server in every transaction, END too (BEGIN may be answered locally).
    assert delta("queries_total") >= 3 * done
    # pgbench's own connection (opened at start, before the clients' ones) logs in too.
    assert delta("client_logins_total") == CLIENTS + 1
    assert delta("xact_time_seconds_total") > 0
    assert delta("query_time_seconds_total") > 0
    assert delta("received_bytes_total") > 0 and delta("sent_bytes_total") > 0
    assert delta("query_errors_total") == 0
    if mode == "prepared":
        assert delta("binds_total") >= 3 * done
        assert delta("client_parse_total") >= 3  # each client prepares its statements once

    # The wait histogram: one observation per checkout, cumulative buckets ending in +Inf = count.
    rows = buckets(after, **pool)
    assert rows[-1][0] == float("inf")
    counts = [v for _, v in rows]
    assert counts == sorted(counts)
    count = value(after, "checkout_wait_seconds_count", **pool)
    assert count == rows[-1][1]
    assert count - value(before, "checkout_wait_seconds_count", **pool) >= done
    assert value(after, "checkout_wait_seconds_sum", **pool) >= 0
    assert value(after, "checkout_timeouts_total", **pool) == 0
    # Nothing stays lent out, and a pool of 2 never opened more than 2 servers.
    assert value(after, "servers_active", **pool) == 0
    assert value(after, "clients_waiting", **pool) == 0
    assert 1 <= value(after, "servers_total", **pool) <= value(after, "pool_size", **pool) == 2


def test_scrape_has_everything_ops_uses(pg, proxy_factory, poll) -> None:
    proxy, port = metrics_proxy(proxy_factory, pg)
    with connect(proxy) as c:
        c.execute("SELECT 1")
    for accept in (None, OPENMETRICS):
        samples = scrape(port, accept)
        names = set(samples)
        missing = sorted(referenced_names() - names)
        assert not missing, f"the dashboard or the alert rules use metrics missing from a scrape: {missing}"
        assert all(n.startswith(NAMESPACE) for n in names), sorted(n for n in names if not n.startswith(NAMESPACE))
    assert value(samples, "build_info", version=__version__) == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "event_log_records_total") > 0
    poll(lambda: value(scrape(port), "event_log_written_bytes_total") > 0, what="event log flushed (every 200 ms)")
    assert value(samples, "pools") == 1
    assert value(samples, "clients_by_state", state="idle") == 0
    # HEAD: the headers of a scrape, no body.
    status, content_type, body = http_get(port, method="HEAD")
    assert (status, body) == (200, "")
    assert content_type.startswith("text/plain")


def test_clients_waiting_behind_a_pool_of_one(pg, proxy_factory, poll) -> None:
    proxy, port = metrics_proxy(proxy_factory, pg, default_pool_size=1)
    pool = {"database": APP_DB, "user": APP_USER}
    holder = connect(proxy, autocommit=False)
    holder.execute("SELECT 1")  # inside a transaction: the only server stays with this client
    waiter = connect(proxy)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(waiter.execute("SELECT 2").fetchone()), daemon=True)
    try:
        thread.start()

        def queued() -> Samples | None:
            s = scrape(port)
            return s if value(s, "clients_waiting", **pool) == 1 and value(s, "maxwait_seconds", **pool) > 0 else None

        s = poll(queued, what="a client counted as waiting")
        assert value(s, "servers_idle_xact", **pool) == 1
        assert value(s, "servers_total", **pool) == 1
        assert value(s, "clients_by_state", state="waiting") == 1
        assert value(s, "clients") == 2
        holder.commit()
        thread.join(20)
        assert result == [(2,)]

        def drained() -> Samples | None:
            s = scrape(port)
            return s if value(s, "clients_waiting", **pool) == 0 else None

        s = poll(drained, what="the queue drained")
        assert value(s, "maxwait_seconds", **pool) == 0
        assert value(s, "checkout_wait_seconds_sum", **pool) > 0
        assert value(s, "checkout_wait_seconds_bucket", le="+Inf", **pool) >= 2
    finally:
        holder.close()
        thread.join(20)
        waiter.close()


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_health_endpoint_follows_the_server(pg_factory, proxy_factory, poll) -> None:
    server = pg_factory(name="pg-health")
    server.create_user(APP_USER, APP_PASSWORD)
    server.create_database(APP_DB, owner=APP_USER)
    health = free_port()
    proxy, port = metrics_proxy(proxy_factory, server, healthcheck_port=health, min_pool_size=1)
    pool = {"database": APP_DB, "user": APP_USER}

    assert http_get(health) == (200, "text/plain; charset=utf-8", "up")
    assert http_get(health, method="HEAD")[:1] == (200,)
    assert http_get(health, method="POST")[0] == 405
    assert _raw(health, b"\x00\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _raw(port, b"DELETE / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    poll(lambda: value(scrape(port), "servers_idle", **pool) == 1, what="min_pool_size server")

    server.stop()
    poll(lambda: http_get(health) == (502, "text/plain; charset=utf-8", "down"), what="health says down")
    s = scrape(port)
    assert value(s, "pool_healthy", **pool) == 0
    assert value(s, "connect_errors_total", **pool) >= 1

    server.start()
    poll(lambda: http_get(health)[2] == "up", timeout=20, what="health up again")
    assert value(scrape(port), "pool_healthy", **pool) == 1
    assert proxy.returncode is None


def closed_by_peer(sock: socket.socket) -> bool:
    """The other side closed: EOF, or a reset (it closed with our unread request in its buffer)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_slowloris_does_not_hurt(pg, proxy_factory, poll) -> None:
    proxy, port = metrics_proxy(proxy_factory, pg)
    # Far more half-sent requests than the endpoint keeps open: the oldest are evicted.
    held = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
        held.append(sock)
    try:
        assert closed_by_peer(held[0])  # evicted: closed without an answer
        # A real scrape still gets through, and the proxy still serves queries.
        assert value(scrape(port), "pools") == 1
        with connect(proxy) as c:
            assert c.execute("SELECT 41 + 1").fetchone() == (42,)

        # One byte at a time forever: dropped at the connection deadline (10 s) all the same.
        slow = held[-1]
        slow.settimeout(0.05)

        def dropped() -> bool:
            try:
                slow.sendall(b"a")
                return slow.recv(1) == b""
            except TimeoutError:
                return False
            except OSError:
                return True

        poll(dropped, timeout=20, interval=0.2, what="the slow connection dropped")
        assert proxy.returncode is None
        assert value(scrape(port), "pools") == 1
    finally:
        for sock in held:
            sock.close()


def test_metrics_port_in_use_is_a_clean_error(pg, proxy_factory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = proxy_factory(
            general={"openmetrics_port": port, "openmetrics_host": "127.0.0.1"},
            databases=[app_database(pg)], users=[app_user()], start=False,
        )
        with pytest.raises(ProxyError):
            proxy.start(timeout=20)
    assert proxy.returncode == 1
    log = proxy.log_text()
    assert f"openmetrics_port: cannot listen on 127.0.0.1:{port}" in log, log
    assert "Traceback" not in log, log
