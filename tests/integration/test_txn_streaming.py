"""A 100 MB result read by a slow client: the proxy must apply backpressure (its memory stays
bounded instead of buffering what the client has not read yet) and stay responsive for the other
clients of the same pool; a client that leaves in the middle of such a result frees its server."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time

import pytest

from tests.conftest import APP_DB, APP_USER
from tests.harness.clients import connect
from tests.harness.config import app_database, app_user
from tests.harness.memory import RssSampler, rss
from tests.harness.rawclient import READY_IDLE, query, recv_until, startup_packet

MB = 1024 * 1024
RSS_SLACK = 64 * MB
ROWS = 100_000
WIDTH = 1000
BIG_QUERY = f"SELECT repeat('x', {WIDTH}) FROM generate_series(1, {ROWS})"
BIG_COPY = f"COPY ({BIG_QUERY}) TO STDOUT"
# Per DataRow: type byte + length (4) + column count (2) + value length (4) + value.
DATA_ROW_BYTES = 1 + 4 + 2 + 4 + WIDTH
READ_RATE = 14 * MB  # bytes per second the slow client reads: about 7 s for the whole result
PROBES = 50


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={
            "auth_type": "trust",
            "default_pool_size": 2,
            "pooler_mode": "transaction",
            "checkout_timeout": 10000,
            "rollback_timeout": 3000,
        },
        databases=[app_database(pg)],
        users=[app_user()],
    )


def _raw_login(proxy, rcvbuf: int = 64 * 1024) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive buffer, so the kernel cannot absorb much of what the client has not read.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect((proxy.host, proxy.port))
    s.sendall(startup_packet(APP_USER, APP_DB))
    buf = recv_until(s, READY_IDLE, "login failed")
    assert buf.endswith(READY_IDLE), buf
    return s


class SlowReader(threading.Thread):
    """Sends `sql` on a raw connection and reads the answer at READ_RATE, parsing it: DataRows
    (a SELECT) or CopyData (COPY TO STDOUT) are checked to be WIDTH x's each."""

    def __init__(self, sock: socket.socket, sql: str) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.sql = sql
        self.copy_bytes = 0
        self.copy_x = 0
        self.copy_lines = 0
        self.received = 0
        self.rows = 0
        self.bad_rows = 0
        self.types: dict[bytes, int] = {}
        self.command_tag = b""
        self.ready_status = b""
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.done.set()

    def _run(self) -> None:
        self.sock.sendall(query(self.sql))
        buf = bytearray()
        start = time.monotonic()
        while True:
            ahead = self.received / READ_RATE - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)  # the workload: a client slower than the server
            chunk = self.sock.recv(16 * 1024)
            if not chunk:
                raise AssertionError(f"connection closed after {self.received} bytes")
            self.received += len(chunk)
            buf += chunk
            pos = 0
            while len(buf) - pos >= 5:
                (length,) = struct.unpack_from(">I", buf, pos + 1)
                if len(buf) - pos < length + 1:
                    break
                t = bytes(buf[pos : pos + 1])
                body = bytes(buf[pos + 5 : pos + 1 + length])
                pos += length + 1
                self.types[t] = self.types.get(t, 0) + 1
                if t == b"D":
                    self.rows += 1
                    ncols, vlen = struct.unpack_from(">hi", body, 0)
                    if ncols != 1 or vlen != WIDTH or body.count(b"x") != WIDTH:
                        self.bad_rows += 1
                elif t == b"d":
                    self.copy_bytes += len(body)
                    self.copy_x += body.count(b"x")
                    self.copy_lines += body.count(b"\n")
                elif t == b"C":
                    self.command_tag = body
                elif t == b"E":
                    raise AssertionError(f"error from the proxy: {body!r}")
                elif t == b"Z":
                    self.ready_status = body
                    del buf[:pos]
                    assert not buf, f"bytes after ReadyForQuery: {bytes(buf[:100])!r}"
                    return
            del buf[:pos]


@pytest.mark.parametrize("mode", ["select", "copy_out"])
def test_slow_reader_bounded_memory_and_others_stay_fast(proxy, poll, mode):
    fast = connect(proxy)
    sock = _raw_login(proxy)
    try:
        assert fast.execute("SELECT 1").fetchone() == (1,)
        baseline = rss(proxy.pid)
        reader = SlowReader(sock, BIG_QUERY if mode == "select" else BIG_COPY)
        with RssSampler(proxy.pid) as sampler:
            reader.start()
            poll(lambda: reader.received >= 10 * MB or reader.done.is_set(), timeout=30, what="stream under way")
            latencies = []
            for _ in range(PROBES):
                t0 = time.monotonic()
                assert fast.execute("SELECT 1").fetchone() == (1,)
                latencies.append(time.monotonic() - t0)
            still_streaming = not reader.done.is_set()
            in_flight_at_probe_end = reader.received
            assert reader.done.wait(timeout=60), f"slow reader stuck at {reader.received} bytes"
        assert reader.error is None, repr(reader.error)
        assert still_streaming, "the stream ended before the probes: the test did not measure anything"
        assert in_flight_at_probe_end < ROWS * DATA_ROW_BYTES
        # Everything arrived, intact.
        if mode == "select":
            assert reader.rows == ROWS and reader.bad_rows == 0, (reader.rows, reader.bad_rows)
            assert reader.command_tag == f"SELECT {ROWS}".encode() + b"\0"
            assert set(reader.types) == {b"T", b"D", b"C", b"Z"}, reader.types
            assert reader.received >= ROWS * DATA_ROW_BYTES
        else:
            assert (reader.copy_bytes, reader.copy_x, reader.copy_lines) == (ROWS * (WIDTH + 1), ROWS * WIDTH, ROWS)
            assert reader.command_tag == f"COPY {ROWS}".encode() + b"\0"
            assert set(reader.types) == {b"H", b"d", b"c", b"C", b"Z"}, reader.types
        assert reader.ready_status == b"I"
        # The server is back in the pool for the next one.
        assert fast.execute("SELECT 2").fetchone() == (2,)
        median, worst = statistics.median(latencies), max(latencies)
        assert median < 0.05, f"median SELECT 1 latency {median * 1000:.1f} ms while a slow client streams"
        assert worst < 1.0, f"worst SELECT 1 latency {worst * 1000:.0f} ms while a slow client streams"
        assert sampler.samples > 10
        growth = sampler.peak - baseline
        assert growth < RSS_SLACK, (
            f"proxy RSS grew by {growth / MB:.1f} MB (baseline {baseline / MB:.1f} MB, "
            f"peak {sampler.peak / MB:.1f} MB) while a slow client read {ROWS * WIDTH // MB} MB"
        )
    finally:
        sock.close()
        fast.close()


def _big_query_active(pg) -> bool:
    n = pg.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT repeat(''x''%'",
        db=APP_DB,
    )
    return n != "0"


def test_client_leaving_mid_result_frees_its_server(pg, proxy, poll):
    sock = _raw_login(proxy)
    try:
        sock.sendall(query(BIG_QUERY))
        got = 0
        while got < 2 * MB:
            chunk = sock.recv(65536)
            assert chunk, "closed early"
            got += len(chunk)
        # The server is still producing the result the client is not reading.
        assert _big_query_active(pg)
        baseline = rss(proxy.pid)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    poll(lambda: not _big_query_active(pg), timeout=15, what="abandoned query stopped on the server")
    # Pool of two: two transactions at once must both get a server again.
    a, b = connect(proxy, autocommit=False), connect(proxy, autocommit=False)
    try:
        t0 = time.monotonic()
        (pa,) = a.execute("SELECT pg_backend_pid()").fetchone()
        (pb,) = b.execute("SELECT pg_backend_pid()").fetchone()
        assert pa != pb
        assert time.monotonic() - t0 < 5
        a.rollback()
        b.rollback()
    finally:
        a.close()
        b.close()
    assert rss(proxy.pid) - baseline < RSS_SLACK
