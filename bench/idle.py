"""Thousands of logged-in, idle client connections, for the memory-per-client measurement.

A driver per connection (or SCRAM's 4096 PBKDF2 rounds per login in Python) would make 10,000
logins take minutes, so this is a small non-blocking raw-protocol client on `selectors`: it keeps
a bounded number of logins in flight (the listen backlog is finite; overrunning it only adds SYN
retries), answers MD5 or cleartext password requests, and counts a connection as logged in at its
first ReadyForQuery. The sockets are then held open and idle until `close()`; `dropped()` tells
whether the proxy closed any of them meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import resource
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field

from tests.harness.rawclient import message, startup_packet

_AUTH_OK, _AUTH_CLEARTEXT, _AUTH_MD5 = 0, 3, 5


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE toward `wanted` (children inherit it); returns the new soft limit.

    Root may raise the hard limit too; anyone may raise the soft one up to the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        return wanted
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """The PasswordMessage payload for AuthenticationMD5Password: md5(md5(password+user)+salt)."""
    inner = hashlib.md5((password + user).encode()).hexdigest().encode()
    return b"md5" + hashlib.md5(inner + salt).hexdigest().encode() + b"\0"


@dataclass
class _Conn:
    sock: socket.socket
    buf: bytes = b""
    connected: bool = False


@dataclass
class IdleClients:
    """The outcome of `open_idle`: the open sockets and how the logins went."""

    sockets: list[socket.socket] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def logged_in(self) -> int:
        return len(self.sockets)

    def dropped(self) -> int:
        """How many held connections the peer has closed (or sent an error on) since login."""
        sel = selectors.DefaultSelector()
        for s in self.sockets:
            sel.register(s, selectors.EVENT_READ)
        count = 0
        try:
            for key, _ in sel.select(timeout=0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    count += 1
                    continue
                # Nothing is owed to an idle client; EOF or an ErrorResponse means it was dropped.
                if not data or data[:1] == b"E":
                    count += 1
        finally:
            sel.close()
        return count

    def close(self) -> None:
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()
        self.sockets.clear()


def open_idle(
    host: str,
    port: int,
    *,
    user: str,
    password: str,
    database: str,
    count: int,
    in_flight: int = 100,
    timeout: float = 300,
    stall: float = 20,
) -> IdleClients:
    """Open `count` connections and log each in; returns once all are logged in or failed.

    `stall`: give up on the rest once no login has completed for that long (a proxy at its
    connection limit would otherwise keep the caller waiting for the whole `timeout`).
    """
    out = IdleClients()
    sel = selectors.DefaultSelector()
    started = time.monotonic()
    deadline = started + timeout
    last_progress = started
    to_start = count
    pending = 0
    startup = startup_packet(user, database)

    def fail(conn: _Conn, why: str) -> None:
        nonlocal pending
        pending -= 1
        out.failed += 1
        if len(out.errors) < 5:
            out.errors.append(why)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn.sock)
        conn.sock.close()

    def on_messages(conn: _Conn) -> bool | None:
        """Answer what the buffer holds; True once logged in, False on a login error."""
        while len(conn.buf) >= 5:
            (length,) = struct.unpack(">I", conn.buf[1:5])
            if len(conn.buf) < length + 1:
                return None
            kind, body = conn.buf[:1], conn.buf[5 : length + 1]
            conn.buf = conn.buf[length + 1 :]
            if kind == b"R":
                (code,) = struct.unpack(">I", body[:4])
                if code == _AUTH_MD5:
                    conn.sock.sendall(message(b"p", md5_password(user, password, body[4:8])))
                elif code == _AUTH_CLEARTEXT:
                    conn.sock.sendall(message(b"p", password.encode() + b"\0"))
                elif code != _AUTH_OK:
                    raise ValueError(f"authentication request {code} is not supported here (use md5)")
            elif kind == b"E":
                raise ValueError(body.replace(b"\0", b" ").decode(errors="replace").strip())
            elif kind == b"Z":
                return True
        return None

    try:
        while to_start or pending:
            while to_start and pending < in_flight:
                try:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                except OSError as e:  # out of file descriptors: the rest cannot be opened either
                    out.failed += to_start
                    out.errors.append(f"socket: {e}")
                    to_start = 0
                    break
                sock.setblocking(False)
                err = sock.connect_ex((host, port))
                if err not in (0, errno.EINPROGRESS):
                    sock.close()
                    out.failed += 1
                    to_start -= 1
                    if len(out.errors) < 5:
                        out.errors.append(f"connect: {errno.errorcode.get(err, err)}")
                    continue
                sel.register(sock, selectors.EVENT_WRITE, _Conn(sock))
                to_start -= 1
                pending += 1
            now = time.monotonic()
            if now > deadline or now - last_progress > stall:
                why = "timed out logging in" if now > deadline else f"no login completed for {stall:.0f} s"
                for key in list(sel.get_map().values()):
                    fail(key.data, why)
                out.failed += to_start
                break
            for key, _ in sel.select(timeout=1.0):
                conn: _Conn = key.data
                try:
                    if not conn.connected:
                        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
                        conn.connected = True
                        conn.sock.sendall(startup)
                        sel.modify(conn.sock, selectors.EVENT_READ, conn)
                        continue
                    data = conn.sock.recv(65536)
                    if not data:
                        raise OSError("closed during login")
                    conn.buf += data
                    if on_messages(conn):
                        sel.unregister(conn.sock)
                        pending -= 1
                        out.sockets.append(conn.sock)
                        last_progress = time.monotonic()
                except BlockingIOError:
                    continue
                except (OSError, ValueError) as e:
                    fail(conn, str(e))
    finally:
        sel.close()
    out.seconds = time.monotonic() - started
    return out
