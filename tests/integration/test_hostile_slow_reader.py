"""A client that reads nothing while its query returns a large result (about 200 MB).

The proxy must apply backpressure: stop reading that client's server once the client's outbox is
full, so its memory stays flat, while the bystander keeps its latency. When the client resumes it
gets every row, intact; when it vanishes instead, its server is canceled, drained and lent clean to
the next client, never leaked.
"""

from __future__ import annotations

import hashlib
import select
import socket
import struct
import time

from tests.conftest import APP_DB, APP_USER
from tests.harness.admin import ADMIN
from tests.harness.bystander import Bystander, assert_daemon_clean, settled_pool
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.memory import RssSampler, rss
from tests.harness.rawclient import READY_IDLE, query, recv_until, reset_close, startup_packet

ROWS, WIDTH = 200_000, 1000
BIG = f"SELECT repeat('x', {WIDTH}) || g FROM generate_series(1, {ROWS}) g"
RSS_SLACK = 64 << 20


def _proxy(pg, proxy_factory):
    return proxy_factory(
        general={"auth_type": "trust", "default_pool_size": 2, "pooler_mode": "transaction"},
        databases=[app_database(pg)],
        users=[app_user()],
        admin=ADMIN,
    )


def _slow_login(proxy) -> socket.socket:
    """A raw client with a small receive buffer, logged in."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(30)
    s.connect((proxy.host, proxy.port))
    s.sendall(startup_packet(APP_USER, APP_DB))
    recv_until(s, READY_IDLE)
    return s


def _server_blocked_on_client(pg) -> bool:
    """PostgreSQL is blocked writing the result: the proxy stopped reading that server."""
    out = pg.psql("SELECT string_agg(wait_event, ',') FROM pg_stat_activity WHERE query LIKE 'SELECT repeat(%'")
    return out.strip() == "ClientWrite"


def _expected_digest() -> tuple[int, str]:
    h = hashlib.sha256()
    for g in range(1, ROWS + 1):
        h.update(b"x" * WIDTH + str(g).encode())
    return ROWS, h.hexdigest()


def _read_result(s: socket.socket) -> tuple[int, str, bytes]:
    """Read the whole answer: (DataRows, sha256 of the values in order, CommandComplete tag)."""
    h = hashlib.sha256()
    rows = 0
    buf = bytearray()
    pos = 0
    tag = b""
    chunk = bytearray(1 << 20)
    while True:
        while len(buf) - pos >= 5:
            t = buf[pos]
            (n,) = struct.unpack_from(">I", buf, pos + 1)
            if len(buf) - pos < 1 + n:
                break
            if t == ord("D"):
                (vlen,) = struct.unpack_from(">i", buf, pos + 7)
                h.update(buf[pos + 11 : pos + 11 + vlen])
                rows += 1
            elif t == ord("C"):
                tag = bytes(buf[pos + 5 : pos + n]).rstrip(b"\0")
            elif t == ord("Z"):
                return rows, h.hexdigest(), tag
            elif t == ord("E"):
                raise AssertionError(f"error in the result: {bytes(buf[pos : pos + 1 + n])!r}")
            pos += 1 + n
        del buf[:pos]
        pos = 0
        got = s.recv_into(chunk)
        assert got, f"closed after {rows} rows"
        buf += chunk[:got]


def test_slow_reader_gets_backpressure_then_every_row(pg, proxy_factory, poll):
    proxy = _proxy(pg, proxy_factory)
    expected = _expected_digest()
    slow = _slow_login(proxy)
    base = rss(proxy.pid)
    with Bystander(proxy) as by:
        by.baseline()
        with RssSampler(proxy.pid) as sampler:
            with by.phase("slow reader", min_samples=150):
                slow.sendall(query(BIG))
                # The client reads nothing: the proxy's outbox fills and it stops reading the server,
                # which blocks writing. The phase lasts until 150 bystander queries ran beside it.
                poll(lambda: _server_blocked_on_client(pg), timeout=30, what="PostgreSQL blocked on the proxy")
            stalled_peak = sampler.peak
            # Resumed: every row, in order, intact.
            got = _read_result(slow)
        by.check("slow reader", min_samples=150)
    slow.close()
    assert got == (*expected, f"SELECT {ROWS}".encode()), got[:1] + got[2:]
    assert sampler.samples >= 20
    assert stalled_peak < base + RSS_SLACK, (base >> 20, stalled_peak >> 20)
    assert sampler.peak < base + RSS_SLACK, (base >> 20, sampler.peak >> 20)
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)
    print(f"\nslow reader: rss {base >> 20} MB, peak stalled {stalled_peak >> 20} MB, peak reading "
          f"{sampler.peak >> 20} MB\n{by.report()}")


def test_slow_reader_that_vanishes_leaks_no_server(pg, proxy_factory, poll):
    proxy = _proxy(pg, proxy_factory)
    with connect(proxy) as c:
        c.execute("SELECT 1")
    before = settled_pool(proxy, poll)
    with Bystander(proxy) as by:
        by.baseline()
        with by.phase("vanishing reader"):
            for _ in range(3):
                slow = _slow_login(proxy)
                slow.sendall(query(BIG))
                poll(lambda: _server_blocked_on_client(pg), timeout=30, what="PostgreSQL blocked on the proxy")
                reset_close(slow)
                # Canceled and drained: PostgreSQL's query ends and its server is lent again.
                poll(lambda: not pg.psql("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT repeat(%' "
                                         "AND state = 'active'").strip(), timeout=15, what="the big query ended")
        by.check("vanishing reader")
    after = settled_pool(proxy, poll)
    # Cleaned, not dropped and reopened: the pool has what it had.
    assert after["sv_total"] <= max(before["sv_total"], 2), (before, after)
    assert_daemon_clean(proxy)
    with connect(proxy) as c:
        assert c.execute("SELECT 'clean', pg_current_xact_id_if_assigned() IS NULL").fetchone() == ("clean", True)


def test_pipelining_writer_that_reads_nothing(pg, proxy_factory, poll):
    """Queries sent without end and no answer read: backpressure runs the whole chain (client
    outbox full, server not read, PostgreSQL blocked writing, its input not read, the client not
    read), so the client soon cannot send more and the proxy's memory stays flat; when it leaves,
    the server owing thousands of answers is closed or cleaned, never left lent."""
    proxy = _proxy(pg, proxy_factory)
    base = rss(proxy.pid)
    q = query("SELECT repeat('y', 1000) FROM generate_series(1, 10)") * 100
    with Bystander(proxy) as by:
        by.baseline()
        with RssSampler(proxy.pid) as sampler, by.phase("pipelining writer", min_samples=50):
            s = _slow_login(proxy)
            s.setblocking(False)
            sent, progress = 0, time.monotonic()
            deadline = progress + 20
            rest = memoryview(q)
            # Send until a whole second passes without a byte accepted (or 200 MB went through).
            while time.monotonic() - progress < 1.0 and sent < 200 << 20:
                assert time.monotonic() < deadline, f"still sending after 20 s ({sent >> 20} MB)"
                try:
                    n = s.send(rest)
                except BlockingIOError:
                    select.select([], [s], [], 0.05)
                    continue
                sent += n
                rest = rest[n:] if n < len(rest) else memoryview(q)  # a partial send goes on where it stopped
                progress = time.monotonic()
            assert _server_blocked_on_client(pg)
        by.check("pipelining writer", min_samples=50)
        reset_close(s)
        settled_pool(proxy, poll)
    # What stopped the client was the kernel's buffers and the proxy's high-water marks, not 200 MB.
    assert sent < RSS_SLACK, f"{sent >> 20} MB accepted from a client whose answers are not read"
    assert sampler.peak < base + RSS_SLACK, (base >> 20, sampler.peak >> 20)
    assert_daemon_clean(proxy)
    with connect(proxy) as c:
        assert c.execute("SELECT 'clean', pg_current_xact_id_if_assigned() IS NULL").fetchone() == ("clean", True)
    print(f"\npipelining writer: {sent >> 20} MB sent before the chain stopped it; rss {base >> 20} -> "
          f"{sampler.peak >> 20} MB\n{by.report()}")
