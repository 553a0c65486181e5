"""Hostile framing against the real daemon: length fields that lie, messages cut short, and bytes
that are not PostgreSQL at all, while a bystander client keeps querying and is timed.

Each bad input must end in a clear FATAL (SQLSTATE checked) or a clean close, promptly; the daemon
must not allocate what a length field claims, must not hold a server for a message still arriving,
and must log no traceback. test_pooler_malformed.py covers single bad packets without timing
anybody; here every attack runs repeatedly beside a measured bystander.
"""

from __future__ import annotations

import random
import socket
import struct
import time

import psycopg

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.admin import ADMIN
from tests.harness.bystander import (
    Bystander,
    assert_daemon_clean,
    attack_rounds,
    attackers_hold_no_server,
    open_fds,
    settled_pool,
)
from tests.harness.config import app_database, app_user
from tests.harness.memory import RssSampler, rss
from tests.harness.rawclient import (
    GSSENC_REQUEST,
    PROTOCOL_3,
    SSL_REQUEST,
    RawConn,
    error_fields,
    message,
    query,
    read_until_close,
    startup_packet,
    trust_login,
)

MAX_MESSAGE = 64 << 20
LOGIN_TIMEOUT_MS = 1500
ROUNDS = 4


def _proxy(pg, proxy_factory, pool_size: int = 2):
    return proxy_factory(
        general={
            "auth_type": "trust",
            "default_pool_size": pool_size,
            "pooler_mode": "transaction",
            "max_message_size": MAX_MESSAGE,
            "client_login_timeout": LOGIN_TIMEOUT_MS,
            "checkout_timeout": 10000,
        },
        databases=[app_database(pg)],
        users=[app_user()],
        admin=ADMIN,
    )


def _connect(proxy) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=5)


def _login(proxy) -> socket.socket:
    return trust_login(proxy.host, proxy.port, APP_USER, APP_DB)


def _refused(label: str, s: socket.socket, codes: tuple[str, ...], words: str = "") -> str:
    """The proxy ends this connection with a FATAL of one of `codes` (mentioning `words`) or, where
    PostgreSQL itself just hangs up, a clean close; never a ReadyForQuery. Returns the SQLSTATE or
    "close"."""
    try:
        msgs, how = read_until_close(s)
    finally:
        s.close()
    assert not any(t == "Z" for t, _ in msgs), f"{label}: {msgs}"
    errors = [error_fields(b) for t, b in msgs if t == "E"]
    if not errors:
        assert how in ("eof", "reset"), f"{label}: {how}"
        return "close"
    last = errors[-1]
    assert last["S"] == "FATAL" and last["C"] in codes, f"{label}: {last}"
    assert words in last["M"], f"{label}: {last}"
    return last["C"]


# --------------------------------------------------------------------------- 1. length fields


def test_oversized_length_fields(pg, proxy_factory, poll):
    proxy = _proxy(pg, proxy_factory)
    startup_cases = [
        ("startup length 0x7fffffff", struct.pack(">II", 0x7FFFFFFF, PROTOCOL_3)),
        ("startup length 0xffffffff", struct.pack(">II", 0xFFFFFFFF, PROTOCOL_3)),
        ("startup length 0x80000000 (negative)", struct.pack(">II", 0x80000000, PROTOCOL_3)),
        ("startup length 10001", struct.pack(">II", 10001, PROTOCOL_3) + b"user\0app\0"),
        ("startup length 7", struct.pack(">I", 7) + b"\0\0\0\0\0\0\0\0"),
        ("startup length 0", struct.pack(">I", 0) + b"\0\0\0\0\0\0\0\0"),
    ]
    after_login = [
        ("Query length 0x7fffffff", b"Q" + struct.pack(">I", 0x7FFFFFFF), "54000", "exceeds the limit"),
        ("Query length 0xffffffff (-1)", b"Q" + struct.pack(">I", 0xFFFFFFFF), "54000", "exceeds the limit"),
        ("Query length 0x80000000 (negative)", b"Q" + struct.pack(">I", 0x80000000), "54000", "exceeds the limit"),
        ("Query length max_message_size + 1", b"Q" + struct.pack(">I", MAX_MESSAGE + 5) + b"SELECT ",
         "54000", f"exceeds the limit of {MAX_MESSAGE}"),
        ("Bind length 0x7ffffff0", b"B" + struct.pack(">I", 0x7FFFFFF0) + b"\0\0", "54000", "exceeds the limit"),
        ("CopyData length 0xfffffff0", b"d" + struct.pack(">I", 0xFFFFFFF0), "54000", "exceeds the limit"),
        ("Query length 3", b"Q" + struct.pack(">I", 3), "08P01", "invalid message length 3"),
        ("Query length 0", b"Q" + struct.pack(">I", 0) + b"SELECT 1\0", "08P01", "invalid message length 0"),
        ("Sync length 1", b"S" + struct.pack(">I", 1), "08P01", "invalid message length 1"),
    ]
    base_rss = rss(proxy.pid)
    outcomes: dict[str, set[str]] = {}
    with Bystander(proxy) as by:
        by.baseline()
        with RssSampler(proxy.pid) as sampler, by.phase("lengths"):
            for _ in attack_rounds(ROUNDS):
                for label, data in startup_cases:
                    s = _connect(proxy)
                    s.sendall(data)
                    outcomes.setdefault(label, set()).add(
                        _refused(label, s, ("08P01",), "invalid length of startup packet"))
                for label, data, code, words in after_login:
                    s = _login(proxy)
                    s.sendall(data)
                    outcomes.setdefault(label, set()).add(_refused(label, s, (code,), words))
        by.check("lengths")
        print(f"\n{by.report()}")
    # After login each is refused with its own error, never a silent close.
    for label, _data, code, _words in after_login:
        assert outcomes[label] == {code}, (label, outcomes[label])
    # Refused at the header: nothing near the claimed sizes was ever allocated.
    assert sampler.samples >= 5
    assert sampler.peak < base_rss + (32 << 20), (base_rss, sampler.peak)
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)


def test_declared_size_is_not_allocated_while_the_body_trickles(pg, proxy_factory, poll):
    """Twenty clients each announce a Query of max_message_size - 1 (64 MiB) and send only the
    first KiB: 1.3 GB if the proxy reserved what they claim. It must buffer what arrives, hold no
    server for them (pool of one, so the bystander would stall if it did), and free all of it."""
    proxy = _proxy(pg, proxy_factory, pool_size=1)
    clients: list[socket.socket] = []
    base_rss = rss(proxy.pid)
    with Bystander(proxy) as by:
        by.baseline()
        # The twenty stay half-sent while the bystander runs 100 queries.
        with RssSampler(proxy.pid) as sampler, by.phase("trickle", min_samples=100):
            for _ in range(20):
                s = _login(proxy)
                s.sendall(b"Q" + struct.pack(">I", MAX_MESSAGE + 3) + b"SELECT '" + b"x" * 1024)
                clients.append(s)
            assert len(attackers_hold_no_server(proxy)) == 20
            held_rss = rss(proxy.pid)  # the twenty partial messages are in (the admin query came after)
        by.check("trickle", min_samples=100)
        print(f"\n{by.report()}")
        for s in clients:
            s.close()
    assert sampler.samples >= 5
    assert max(sampler.peak, held_rss) < base_rss + (32 << 20), (base_rss, held_rss, sampler.peak)
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)


# --------------------------------------------------------------------------- 2. truncated messages


def test_truncated_messages(pg, proxy_factory, poll):
    """Cut short, then gone or silent. Before login the daemon closes a silent client at
    client_login_timeout; after login a half-sent request holds no server (pool of one: the
    bystander would stall) and completes correctly when the rest arrives."""
    proxy = _proxy(pg, proxy_factory, pool_size=1)
    startup = startup_packet(APP_USER, APP_DB)
    q = query("SELECT 'the whole of a query that arrives in pieces', 42")
    parse = message(b"P", b"\0SELECT $1::int * 2\0\0\0")
    with Bystander(proxy) as by:
        by.baseline()
        fds0 = open_fds(proxy.pid)
        with by.phase("truncated"):
            for _ in attack_rounds(ROUNDS):
                # Before login: a header, half a body, then gone.
                for cut in (2, 4, len(startup) // 2, len(startup) - 1):
                    s = _connect(proxy)
                    s.sendall(startup[:cut])
                    s.close()
                # After login: a header or half a body, then gone.
                for data in (q, parse):
                    for cut in (1, 5, len(data) // 2, len(data) - 1):
                        s = _login(proxy)
                        s.sendall(data[:cut])
                        s.close()
            # Before login, half a startup packet and then silence: closed at client_login_timeout.
            silent = []
            for _ in range(10):
                s = _connect(proxy)
                s.sendall(startup[: len(startup) // 2])
                silent.append((s, time.monotonic()))
            # After login, half a Query and then silence: harmless, holds no server.
            half = _login(proxy)
            half.sendall(q[: len(q) // 2])
            for s, t0 in silent:
                code = _refused("half a startup packet, then silence", s, ("08P01",), "client_login_timeout")
                waited = time.monotonic() - t0
                assert code == "08P01" and LOGIN_TIMEOUT_MS / 1000 * 0.8 < waited < LOGIN_TIMEOUT_MS / 1000 + 3, waited
            attackers_hold_no_server(proxy)  # the half-sent Query holds none
        by.check("truncated")
        print(f"\n{by.report()}")
        # Every connection of the attack is gone from the daemon (the half-sent one stays).
        poll(lambda: open_fds(proxy.pid) <= fds0 + 1, what="the daemon's fds back to their count before the attack")
    # The rest of the half-sent Query, well after client_login_timeout: answered in full.
    half.sendall(q[len(q) // 2 :])
    conn = RawConn(half)
    msgs = conn.until(b"Z")
    assert [t for t, _ in msgs] == [b"T", b"D", b"C", b"Z"], msgs
    assert msgs[1][1].endswith(b"\x00\x00\x00\x0242"), msgs[1]
    conn.close()
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)


# --------------------------------------------------------------------------- 3. not PostgreSQL


def _tls_client_hello() -> bytes:
    """A TLS 1.2 ClientHello record, as a client that skips the SSLRequest (sslnegotiation=direct,
    or plain HTTPS) sends first."""
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + b"\x00\x00"
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def _direct(pg, data: bytes, *then: bytes) -> list[tuple[str, bytes]]:
    """What PostgreSQL itself answers: `data`, one byte read per later packet, then the rest."""
    with socket.create_connection((pg.host, pg.port), timeout=5) as s:
        s.sendall(data)
        single = b""
        for packet in then:
            single += s.recv(1)
            s.sendall(packet)
        msgs, _how = read_until_close(s)
        return [("byte", single), *msgs] if then else msgs


def test_garbage_before_startup(pg, proxy_factory, poll):
    proxy = _proxy(pg, proxy_factory)
    rng = random.Random(8)
    garbage = [
        ("an HTTP request", b"GET / HTTP/1.1\r\nHost: db\r\nUser-Agent: curl\r\n\r\n"),
        ("a TLS ClientHello (TLS not configured)", _tls_client_hello()),
        ("an SSLRequest, then a ClientHello although refused", SSL_REQUEST + _tls_client_hello()),
        ("an SMTP greeting", b"EHLO attacker.example\r\n"),
        *((f"random bytes #{i}", rng.randbytes(rng.randrange(1, 600))) for i in range(12)),
    ]
    # PostgreSQL's own answer to an SSLRequest repeated after its 'N'.
    direct = _direct(pg, SSL_REQUEST, SSL_REQUEST)
    assert direct[0] == ("byte", b"N")
    pg_again = error_fields(direct[-1][1])
    assert pg_again["C"] == "0A000" and "unsupported frontend protocol 1234.5679" in pg_again["M"], pg_again
    with Bystander(proxy) as by:
        by.baseline()
        fds0 = open_fds(proxy.pid)
        with by.phase("garbage"):
            for _ in attack_rounds(ROUNDS):
                for label, data in garbage:
                    s = _connect(proxy)
                    s.sendall(data)
                    _refused(label, s, ("08P01", "0A000"))
                # Connected, then gone without a byte; or half-closed at once.
                for _ in range(25):
                    _connect(proxy).close()
                    s = _connect(proxy)
                    s.shutdown(socket.SHUT_WR)
                    _refused("a half-close before any byte", s, ())
                # Two SSLRequests (TLS not configured): 'N', then PostgreSQL's error.
                s = _connect(proxy)
                s.sendall(SSL_REQUEST)
                assert s.recv(1) == b"N"
                s.sendall(SSL_REQUEST)
                code = _refused("a second SSLRequest", s, ("0A000",), "unsupported frontend protocol 1234.5679")
                assert code == pg_again["C"]
                # Two GSSENCRequests: the same, for its code.
                s = _connect(proxy)
                s.sendall(GSSENC_REQUEST)
                assert s.recv(1) == b"N"
                s.sendall(GSSENC_REQUEST)
                _refused("a second GSSENCRequest", s, ("0A000",), "unsupported frontend protocol 1234.5680")
                # A GSSENCRequest is refused and the client goes on in plain text, as libpq does.
                s = _connect(proxy)
                s.sendall(GSSENC_REQUEST)
                assert s.recv(1) == b"N"
                s.sendall(startup_packet(APP_USER, APP_DB) + query("SELECT 7"))
                conn = RawConn(s)
                assert conn.until(b"Z")[-1] == (b"Z", b"I")  # logged in
                assert conn.until(b"Z")[1] == (b"D", b"\x00\x01\x00\x00\x00\x017")
                conn.close()
                # A CancelRequest of the wrong length.
                s = _connect(proxy)
                s.sendall(struct.pack(">III", 12, 80877102, 1))
                _refused("a short CancelRequest", s, ("08P01",))
        by.check("garbage")
        print(f"\n{by.report()}")
        # One more server may have been opened for the GSSENC client's query; nothing else stays.
        poll(lambda: open_fds(proxy.pid) <= fds0 + 1, what="the daemon's fds back to their count before the attack")
    assert_daemon_clean(proxy)
    settled_pool(proxy, poll)
    # And the front door still works for a real driver.
    with psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
