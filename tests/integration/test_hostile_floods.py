"""Floods against the real daemon: thousands of connections that never log in, wrong passwords in
a loop, CancelRequests with guessed keys. A bystander client is timed throughout; afterwards the
daemon must be alive, clean in its log, back to its descriptors and memory, and hold no server.

test_pooler_limits.py covers client_login_timeout and max_client_conn with one or two clients,
test_pooler_auth.py a single wrong password, test_txn_cancel_listen.py four wrong cancel keys;
here each comes by the thousand.
"""

from __future__ import annotations

import random
import resource
import selectors
import socket
import sys
import threading
import time
import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgdog_ev.wire.startup import build_cancel_request
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.admin import ADMIN
from tests.harness.bystander import Bystander, assert_daemon_clean, open_fds, settled_pool
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.events import events_text
from tests.harness.memory import rss
from tests.harness.ports import free_port
from tests.harness.proxy import ProxyProcess
from tests.harness.rawclient import RawConn, error_fields, parse_messages, startup_packet

# --------------------------------------------------------------------------- 4. unfinished logins

WAVE = 2500  # two waves: 5,000 connections in all
MAX_CLIENTS = 2000
LOGIN_TIMEOUT_MS = 2500

# Starts the daemon with a soft open-files limit of 1024 (a common default for services), the hard
# limit unchanged: the daemon must raise its own soft limit to fit 5,000 connections.
LOW_SOFT_LIMIT = (
    "import os, resource, sys\n"
    "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'pgdog_ev', 'run', '-c', sys.argv[1], '-u', sys.argv[2]])\n"
)


def _soft_nofile(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open files limit")


def _raise_own_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard open-files limit ({hard}) is below the {need} this test opens")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class Flood:
    """Connections opened with non-blocking connects, a few hundred in flight at a time, and then
    watched with epoll until the peer closes each; what each received is kept."""

    def __init__(self, host: str, port: int) -> None:
        self.addr = (host, port)
        self.sel = selectors.DefaultSelector()
        self.open: dict[int, socket.socket] = {}
        self.received: dict[int, bytes] = {}
        self.opened_at: dict[int, float] = {}
        self.closed_at: dict[int, float] = {}

    def connect(self, n: int, first_bytes: list[bytes], in_flight: int = 256) -> list[int]:
        """Open `n` connections; connection i sends first_bytes[i % len] once connected."""
        ids: list[int] = []
        pending: dict[int, tuple[socket.socket, bytes, float]] = {}
        sel = selectors.DefaultSelector()
        i = 0
        while i < n or pending:
            while i < n and len(pending) < in_flight:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                started = time.monotonic()  # before the handshake, so before the proxy's accept
                s.connect_ex(self.addr)
                pending[s.fileno()] = (s, first_bytes[i % len(first_bytes)], started)
                sel.register(s, selectors.EVENT_WRITE)
                i += 1
            for key, _ in sel.select(timeout=10):
                s, data, started = pending.pop(key.fd)
                sel.unregister(s)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                assert err == 0, f"connect failed: {err}"
                if data:
                    s.send(data)
                fd = s.fileno()
                self.open[fd] = s
                self.received[fd] = b""
                self.opened_at[fd] = started
                self.sel.register(s, selectors.EVENT_READ)
                ids.append(fd)
        sel.close()
        return ids

    def pump(self, timeout: float = 0.1) -> None:
        """Read what arrived; a connection the peer closed leaves `open`."""
        for key, _ in self.sel.select(timeout=timeout):
            s = self.open[key.fd]
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                self.received[key.fd] += chunk
                continue
            self.sel.unregister(s)
            self.closed_at[key.fd] = time.monotonic()
            del self.open[key.fd]
            s.close()

    def wait_closed(self, ids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(fd in self.open for fd in ids):
            left = sum(fd in self.open for fd in ids)
            assert time.monotonic() < deadline, f"{left} of {len(ids)} connections still open after {timeout}s"
            self.pump()

    def close(self) -> None:
        for s in self.open.values():
            s.close()
        self.sel.close()



def _answer_to_password(proxy: ProxyProcess, sent: bytes) -> dict[str, str]:
    """Log in up to the password request, send `sent` instead of a password: the error fields of
    the proxy's last answer."""
    conn = RawConn(socket.create_connection((proxy.host, proxy.port), timeout=10), reset_is_eof=True)
    try:
        conn.sock.sendall(startup_packet(APP_USER, APP_DB))
        assert conn.read()[0] == b"R"
        conn.sock.sendall(sent)
        return error_fields(conn.rest()[-1][1])
    finally:
        conn.close()

def test_five_thousand_unfinished_logins(pg, proxy_factory, poll):
    _raise_own_nofile(2 * WAVE + 1000)
    metrics_port = free_port()
    proxy = proxy_factory(
        general={"max_client_conn": MAX_CLIENTS, "client_login_timeout": LOGIN_TIMEOUT_MS,
                 "default_pool_size": 2, "openmetrics_port": metrics_port},
        databases=[app_database(pg)],
        users=[app_user()],
        admin=ADMIN,
        argv=[sys.executable, "-c", LOW_SOFT_LIMIT, "{config}", "{users}"],
    )
    # Started at 1024, the daemon raised its own soft limit to fit the flood.
    assert _soft_nofile(proxy.pid) >= 2 * WAVE + 100, _soft_nofile(proxy.pid)
    startup = startup_packet(APP_USER, APP_DB)
    # Half say nothing at all, half send the first half of a startup packet and stop.
    unfinished = [b"", startup[: len(startup) // 2]]
    flood = Flood(proxy.host, proxy.port)
    try:
        with Bystander(proxy) as by:
            by.baseline()
            fds0, rss0 = open_fds(proxy.pid), rss(proxy.pid)
            with by.phase("flood"):
                t0 = time.monotonic()
                wave1 = flood.connect(WAVE, unfinished)
                # All accepted: the daemon holds one descriptor for each.
                poll(lambda: open_fds(proxy.pid) >= fds0 + WAVE, timeout=20, what="wave 1 accepted")
                opened1 = time.monotonic() - t0
                # At the limit: a client that does log in is told why it cannot.
                extra = RawConn(socket.create_connection((proxy.host, proxy.port), timeout=10), reset_is_eof=True)
                extra.sock.sendall(startup)
                refused = extra.rest()
                extra.close()
                fields = error_fields(refused[-1][1])
                assert fields["C"] == "53300" and "too many client connections" in fields["M"], refused
                with pytest.raises(psycopg.OperationalError, match="too many client connections"):
                    psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10, sslmode="disable")
                wave2 = flood.connect(WAVE, unfinished)
                # Wave 1 is closed at client_login_timeout ...
                flood.wait_closed(wave1, timeout=LOGIN_TIMEOUT_MS / 1000 + 15)
                # ... and below the limit again, with wave 2 still open, a new client logs in at once.
                still_open = sum(fd in flood.open for fd in wave2)
                t1 = time.monotonic()
                with connect(proxy) as c:
                    assert c.execute("SELECT 'in'").fetchone() == ("in",)
                login_during_flood = time.monotonic() - t1
                flood.wait_closed(wave2, timeout=LOGIN_TIMEOUT_MS / 1000 + 15)
            by.check("flood")
            # Every descriptor of the flood is closed.
            poll(lambda: open_fds(proxy.pid) <= fds0 + 1, timeout=10, what="the daemon's descriptors back to baseline")
            rss1 = rss(proxy.pid)
    finally:
        flood.close()
    assert still_open > WAVE // 2, f"only {still_open} of wave 2 were open when the new client logged in"
    assert login_during_flood < 2.0, login_during_flood
    # Each unfinished login got a clear error, no sooner than the timeout.
    errors: dict[str, int] = {}
    for fd in wave1 + wave2:
        msgs = parse_messages(flood.received[fd])
        assert len(msgs) == 1 and msgs[0][0] == "E", flood.received[fd][:200]
        f = error_fields(msgs[0][1])
        errors[f"{f['C']} {f['M']}"] = errors.get(f"{f['C']} {f['M']}", 0) + 1
        assert flood.closed_at[fd] - flood.opened_at[fd] >= LOGIN_TIMEOUT_MS / 1000 * 0.9
    assert errors == {"08P01 client_login_timeout: login did not complete in time": 2 * WAVE}, errors
    assert rss1 < rss0 + (64 << 20), (rss0, rss1)
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)
    print(f"\nflood: wave of {WAVE} accepted in {opened1:.2f}s; login during flood {login_during_flood:.3f}s; "
          f"fds {fds0} -> {open_fds(proxy.pid)}; rss {rss0 >> 20} -> {rss1 >> 20} MB\n{by.report()}")


# Leaves the daemon 300 descriptors, soft and hard: it cannot raise them.
TIGHT_LIMIT = (
    "import os, resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'pgdog_ev', 'run', '-c', sys.argv[1], '-u', sys.argv[2]])\n"
)


def test_out_of_descriptors(pg, proxy_factory, poll):
    """600 unfinished logins against a daemon allowed 300 descriptors: it says so at start (the
    limit cannot fit max_client_conn), warns once per episode when accept() fails with EMFILE (no
    traceback every 100 ms), keeps serving its connected clients, and takes the connections waiting
    in the listen backlog as descriptors free up, until all are closed at client_login_timeout."""
    proxy = proxy_factory(
        general={"client_login_timeout": 2000, "default_pool_size": 2, "max_client_conn": 1000},
        databases=[app_database(pg)],
        users=[app_user()],
        admin=ADMIN,
        argv=[sys.executable, "-c", TIGHT_LIMIT, "{config}", "{users}"],
    )
    assert "max_client_conn = 1000, but this process may open only 300 files" in proxy.log_text()
    flood = Flood(proxy.host, proxy.port)
    try:
        with Bystander(proxy) as by:
            by.baseline()
            fds0 = open_fds(proxy.pid)
            with by.phase("out of descriptors"):
                ids = flood.connect(600, [b""])
                flood.wait_closed(ids, timeout=30)
            by.check("out of descriptors")
            poll(lambda: open_fds(proxy.pid) <= fds0 + 1, timeout=10, what="the daemon's descriptors back to baseline")
    finally:
        flood.close()
    for fd in ids:
        (msg,) = parse_messages(flood.received[fd])
        assert error_fields(msg[1])["C"] == "08P01", flood.received[fd]
    log = proxy.log_text()
    starved = log.count("cannot accept new connections: Too many open files")
    assert 1 <= starved <= 4, starved  # once per episode, not once per 100 ms backoff
    assert log.count("accepting new connections again") == starved
    assert_daemon_clean(proxy)
    with connect(proxy) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    print(f"\nout of descriptors: {starved} episode(s)\n{by.report()}")


# --------------------------------------------------------------------------- 7. wrong passwords

NAMESPACE = "pgdog_"
ATTEMPTS = 300  # per auth method
THREADS = 4


def _metrics_proxy(pg, proxy_factory, **general):
    port = free_port()
    g = {"openmetrics_port": port, "openmetrics_host": "127.0.0.1", "openmetrics_namespace": NAMESPACE,
         "default_pool_size": 2, "min_pool_size": 0, **general}
    return proxy_factory(general=g, databases=[app_database(pg)], users=[app_user()], admin=ADMIN), port


def _metric(port: int, name: str) -> float:
    """The sum of every sample `name` (all pools) in one scrape of the metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == NAMESPACE + name
    )


def _attempt(proxy, user: str, password: str) -> list[tuple[bytes, bytes]]:
    """One login with `password`: every message until the proxy closes the connection."""
    conn, msgs = RawConn.password_login(proxy.host, proxy.port, user, APP_DB, password)
    try:
        return msgs + conn.rest()
    finally:
        conn.close()


@pytest.mark.parametrize("auth_type", ["scram", "md5"])
def test_wrong_passwords_in_a_loop(pg, proxy_factory, poll, auth_type):
    proxy, port = _metrics_proxy(pg, proxy_factory, auth_type=auth_type)
    # What PostgreSQL says to a wrong password, for the message text.
    _conn, direct = RawConn.password_login(pg.host, pg.port, APP_USER, APP_DB, "not the password")
    _conn.close()
    pg_error = error_fields(direct[-1][1])
    assert pg_error["C"] == "28P01", direct
    users = [(APP_USER, f"wrong-{i}") for i in range(ATTEMPTS - 20)] + [(f"nosuch_{i}", "x") for i in range(20)]
    failures: list[str] = []
    lock = threading.Lock()
    attempts = [0]
    until = [0.0]

    def attack(part: list[tuple[str, str]]) -> None:
        # The whole list at least once, and again until the attack has lasted a second: long
        # enough for the bystander's latency during it to mean something.
        while True:
            for user, password in part:
                check(user, password)
            if time.monotonic() > until[0]:
                return

    def check(user: str, password: str) -> None:
        msgs = _attempt(proxy, user, password)
        errors = [error_fields(b) for t, b in msgs if t == b"E"]
        ok = (
            len(errors) == 1 and errors[0]["S"] == "FATAL" and errors[0]["C"] == "28P01"
            and errors[0]["M"] == pg_error["M"].replace(f'"{APP_USER}"', f'"{user}"')
            and not any(t == b"Z" for t, _ in msgs)
        )
        with lock:
            attempts[0] += 1
            if not ok:
                failures.append(f"{user}: {msgs}")

    with Bystander(proxy) as by:
        by.baseline()
        failed0, connects0 = _metric(port, "auth_failures_total"), _metric(port, "server_connects_total")
        with by.phase("wrong passwords"):
            threads = [threading.Thread(target=attack, args=(users[i::THREADS],)) for i in range(THREADS)]
            t0 = time.monotonic()
            until[0] = t0 + 1.0
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            elapsed = time.monotonic() - t0
            # A protocol error instead of the password is refused too, but is not a wrong password.
            violation = _answer_to_password(proxy, b"Q\x00\x00\x00\x0dSELECT 1\x00")
            # A password message claiming 2 GiB: refused by its header (authentication messages are
            # small; the limit there is 64 KiB whatever max_message_size says).
            oversized = _answer_to_password(proxy, b"p\x7f\xff\xff\xff")
        by.check("wrong passwords")
        # Counted, one each, where an operator sees them; and not one server connection opened.
        assert _metric(port, "auth_failures_total") - failed0 == attempts[0] >= len(users)
        assert _metric(port, "server_connects_total") == connects0
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:5]
    assert violation["C"] == "08P01" and "expected a password message" in violation["M"], violation
    assert oversized["C"] == "54000" and "exceeds the limit of 65536" in oversized["M"], oversized
    assert proxy.log_text().count("authentication failed for user") == attempts[0]
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)
    print(f"\n{auth_type}: {attempts[0]} wrong logins in {elapsed:.2f}s\n{by.report()}")


# --------------------------------------------------------------------------- 8. guessed cancel keys

SLEEP = 2.0
# Backends running the victim's query now: an idle backend keeps showing its last query, and
# in transaction mode the two queries may run on different servers.
SLEEPING = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'"


def _cancel(proxy, pid: int, secret: bytes) -> bytes:
    """One CancelRequest; returns what the proxy sent back before closing (nothing, as PostgreSQL)."""
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as s:
        s.sendall(build_cancel_request(pid, secret))
        msgs, _how = RawConn(s, reset_is_eof=True).rest(), None
        return b"".join(t + b for t, b in msgs)


def test_guessed_cancel_keys(pg, proxy_factory, poll):
    proxy = proxy_factory(
        general={"auth_type": "trust", "default_pool_size": 2, "pooler_mode": "transaction"},
        databases=[app_database(pg)],
        users=[app_user()],
        admin=ADMIN,
    )
    rng = random.Random(8)
    victim = connect(proxy)
    pid = victim.info.backend_pid  # the key the proxy gave the victim: pid known, secret not
    answers: list[bytes] = []
    sent = [0]
    result: list[object] = []

    def run_victim() -> None:
        t0 = time.monotonic()
        try:
            row = victim.execute(f"SELECT pg_sleep({SLEEP}), 'finished'").fetchone()
            result.append((row, time.monotonic() - t0))
        except Exception as e:
            result.append(e)

    def guess(pids) -> None:
        while not result:
            p = next(pids)
            answers.append(_cancel(proxy, p, rng.randbytes(4)))
            sent[0] += 1

    try:
        with Bystander(proxy) as by:
            by.baseline()
            with by.phase("guessed cancel keys"):
                runner = threading.Thread(target=run_victim)
                runner.start()
                poll(lambda: int(pg.psql(SLEEPING)) == 1,
                     what="the victim's query running")
                guessers = [
                    threading.Thread(target=guess, args=(iter(lambda: rng.randrange(1 << 31), None),)),
                    threading.Thread(target=guess, args=(iter(lambda: rng.randrange(1, 64), None),)),
                    threading.Thread(target=guess, args=(iter(lambda: pid, None),)),  # the right pid, wrong keys
                ]
                for t in guessers:
                    t.start()
                runner.join(SLEEP + 20)
                for t in guessers:
                    t.join(20)
            by.check("guessed cancel keys")
        # Nothing was canceled: the query ran its full time and finished normally.
        assert len(result) == 1 and not isinstance(result[0], Exception), result
        (row, took) = result[0]
        assert row == ("", "finished") and took >= SLEEP * 0.95, result
        assert sent[0] >= 100, sent[0]
        assert all(a == b"" for a in answers), [a for a in answers if a][:3]  # closed without a word
        # Not one CancelRequest went on to PostgreSQL.
        notes = events_text(proxy, "--kind", "note")
        assert notes, "the event log could not be read"
        assert not [line for line in notes.splitlines() if "server:" in line and "CANCEL_REQUEST" in line]
        # The real key still works: the check above can see a forwarded cancel.
        runner = threading.Thread(target=run_victim)
        result.clear()
        runner.start()
        poll(lambda: int(pg.psql(SLEEPING)) == 1,
             what="the victim's second query running")
        victim.cancel()
        runner.join(10)
        assert isinstance(result[0], psycopg.errors.QueryCanceled), result
        poll(lambda: any("server:" in line and "CANCEL_REQUEST" in line
                         for line in events_text(proxy, "--kind", "note").splitlines()),
             what="the real cancel in the event log")
    finally:
        victim.close()
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)
    print(f"\ncancel: {sent[0]} guessed keys during a {SLEEP}s query\n{by.report()}")
