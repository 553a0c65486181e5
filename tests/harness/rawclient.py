"""Raw-socket PostgreSQL protocol-3 helpers, for the tests that must send or see exact bytes.

Drivers hide what these tests are about: malformed or half-sent packets, clients that leave with a
request unanswered, and the precise messages (SQLSTATEs, ReadyForQuery status) the proxy answers
with. Every raw-socket test builds and reads messages with the same few helpers, kept here.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from pgdog_ev.auth.md5 import md5_hash
from pgdog_ev.auth.scram import ScramClient
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe

PROTOCOL_3 = 196608
# ReadyForQuery, idle: the end of a login or of a request outside a transaction.
READY_IDLE = b"Z\x00\x00\x00\x05I"
# The encryption requests of the startup phase: length 8, then a magic "protocol version".
SSL_REQUEST = struct.pack(">II", 8, 80877103)
GSSENC_REQUEST = struct.pack(">II", 8, 80877104)


def message(t: bytes, body: bytes) -> bytes:
    """A frontend message: type byte, then the length (itself included), then the body."""
    return t + struct.pack(">I", len(body) + 4) + body


def query(sql: str) -> bytes:
    """A simple-protocol Query message."""
    return message(b"Q", sql.encode() + b"\0")


def startup_packet(user: str, database: str, version: int = PROTOCOL_3) -> bytes:
    """A StartupMessage for `user` and `database` (`version` may be a bogus one on purpose)."""
    body = struct.pack(">I", version)
    for k, v in (("user", user), ("database", database)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack(">I", len(body) + 4) + body


def parse_messages(buf: bytes) -> list[tuple[str, bytes]]:
    """Split backend bytes into (type, body) pairs; a trailing partial message is returned cut short."""
    msgs = []
    while len(buf) >= 5:
        t = chr(buf[0])
        (n,) = struct.unpack(">I", buf[1:5])
        msgs.append((t, buf[5 : 1 + n]))
        buf = buf[1 + n :]
    return msgs


def error_fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse / NoticeResponse body, keyed by their code letter ("C", "M", ...)."""
    return {chr(p[0]): p[1:].decode(errors="replace") for p in body.split(b"\0") if p}


def recv_until(s: socket.socket, marker: bytes, what: str = "closed early") -> bytes:
    """Read until `marker` appears in what was received; fails with `what` if the peer closes first."""
    buf = b""
    while marker not in buf:
        chunk = s.recv(65536)
        assert chunk, f"{what}: {buf!r}"
        buf += chunk
    return buf


def trust_login(host: str, port: int, user: str, database: str, timeout: float = 10) -> socket.socket:
    """A raw socket logged in without a password (auth_type trust), up to ReadyForQuery (idle)."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(startup_packet(user, database))
    recv_until(s, READY_IDLE)
    return s


def read_until_close(s: socket.socket, timeout: float = 5.0) -> tuple[list[tuple[str, bytes]], str]:
    """Every message until the peer closes, and how it closed ("eof" or "reset"). A peer that
    neither closes nor stops talking within `timeout` seconds is a hang: AssertionError."""
    buf = b""
    how = "eof"
    deadline = time.monotonic() + timeout
    while True:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no close within {timeout}s (got {buf[:200]!r})") from None
        except ConnectionResetError:
            how = "reset"
            break
        if not chunk:
            break
        buf += chunk
    return parse_messages(buf), how


def reset_close(s: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a reset, as from a client that crashed."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class RawConn:
    """Backend messages read one at a time from a raw socket, as (type byte, body).

    `reset_is_eof`: a connection reset counts as the end of the stream (for tests that expect the
    proxy to drop them) instead of failing the read.
    """

    def __init__(self, sock: socket.socket, reset_is_eof: bool = False) -> None:
        self.sock = sock
        self.buf = b""
        self.reset_is_eof = reset_is_eof

    @classmethod
    def trust_login(cls, host: str, port: int, user: str, database: str, timeout: float = 15) -> RawConn:
        """Log in without a password (auth_type trust); the login must end idle."""
        conn = cls(socket.create_connection((host, port), timeout=timeout))
        conn.sock.sendall(startup_packet(user, database))
        msgs = conn.until(b"Z")
        assert msgs[-1] == (b"Z", b"I"), msgs
        return conn

    @classmethod
    def password_login(
        cls, host: str, port: int, user: str, database: str, password: str, timeout: float = 15
    ) -> tuple[RawConn, list[tuple[bytes, bytes]]]:
        """Log in answering whatever is asked (cleartext, MD5 or SCRAM-SHA-256) with `password`.

        Returns the connection and every message up to the ReadyForQuery or the ErrorResponse that
        ended the login: the caller checks which (a wrong password is the point of some tests).
        """
        conn = cls(socket.create_connection((host, port), timeout=timeout), reset_is_eof=True)
        conn.sock.sendall(startup_packet(user, database))
        out: list[tuple[bytes, bytes]] = []
        scram: ScramClient | None = None
        while True:
            m = conn.read()
            assert m is not None, f"connection closed during login; got {out!r}"
            out.append(m)
            t, body = m
            if t in (b"Z", b"E"):
                return conn, out
            if t != b"R":
                continue
            code, rest = be.parse_authentication(body)
            if code == be.AUTH_CLEARTEXT:
                conn.sock.sendall(fe.password(password))
            elif code == be.AUTH_MD5:
                conn.sock.sendall(fe.password(md5_hash(user, password, bytes(rest[:4]))))
            elif code == be.AUTH_SASL:
                scram = ScramClient(password, os.urandom)
                conn.sock.sendall(fe.sasl_initial_response(scram.mechanism, scram.client_first()))
            elif code == be.AUTH_SASL_CONTINUE:
                assert scram is not None, out
                conn.sock.sendall(fe.sasl_response(scram.server_first(bytes(rest))))

    def read(self) -> tuple[bytes, bytes] | None:
        """The next message, or None once the peer closed the connection."""
        while True:
            if len(self.buf) >= 5:
                (length,) = struct.unpack(">I", self.buf[1:5])
                if len(self.buf) >= length + 1:
                    t, body = self.buf[:1], self.buf[5 : length + 1]
                    self.buf = self.buf[length + 1 :]
                    return t, body
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                if not self.reset_is_eof:
                    raise
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk

    def until(self, mtype: bytes) -> list[tuple[bytes, bytes]]:
        """Every message up to and including the first of type `mtype`; fails if the peer closes first."""
        out = []
        while True:
            m = self.read()
            assert m is not None, f"connection closed before {mtype!r}; got {out!r}"
            out.append(m)
            if m[0] == mtype:
                return out

    def rest(self) -> list[tuple[bytes, bytes]]:
        """Every message until the peer closes the connection."""
        out = []
        while (m := self.read()) is not None:
            out.append(m)
        return out

    def close(self) -> None:
        self.sock.close()

    def reset_close(self) -> None:
        reset_close(self.sock)
