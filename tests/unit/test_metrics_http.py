"""The tiny HTTP server of the metrics and health endpoints, driven in-process over loopback.

The reactor and the test's client socket share one thread: the client socket is non-blocking and
the test runs reactor passes until the answer (or the close) has arrived.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from loop.reactor import Reactor
from pgdog_ev.metrics.http import BadRequest, HttpServer, Request, Response, parse_head

DEADLINE = 5.0


class TestReactor(Reactor):
    __test__ = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors: list[tuple[BaseException, str]] = []

    def handle_exception(self, exc: BaseException, context: str) -> None:
        self.errors.append((exc, context))


@pytest.fixture
def reactor() -> Iterator[TestReactor]:
    r = TestReactor()
    yield r
    r.close()


class Rig:
    """A server answering "hello" (and recording requests) plus helpers to talk to it."""

    def __init__(self, reactor: TestReactor, **kwargs: Any) -> None:
        self.reactor = reactor
        self.requests: list[Request] = []
        self.server = HttpServer(reactor, "127.0.0.1", 0, self.handle, name="test", **kwargs)

    def handle(self, request: Request) -> Response:
        self.requests.append(request)
        if request.target == "/boom":
            raise RuntimeError("handler failed")
        return Response(200, b"hello", "text/plain; version=0.0.4")

    def connect(self) -> socket.socket:
        assert self.server.port is not None
        seen = len(self.server.connections) + self.server.evicted
        sock = socket.create_connection(("127.0.0.1", self.server.port))
        sock.setblocking(False)
        accepted = self.reactor.run_until(
            lambda: len(self.server.connections) + self.server.evicted > seen, DEADLINE
        )
        assert accepted, "the server did not accept"
        return sock

    def read_all(self, sock: socket.socket, timeout: float = DEADLINE) -> bytes:
        """Run the reactor until the server closes ``sock``; everything it sent."""
        data = bytearray()
        closed = False

        def done() -> bool:
            nonlocal closed
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return False
            except ConnectionResetError:
                closed = True
                return True
            if not chunk:
                closed = True
                return True
            data.extend(chunk)
            return False

        assert self.reactor.run_until(done, timeout), f"server did not close; got {bytes(data)!r}"
        assert closed
        sock.close()
        return bytes(data)

    def exchange(self, raw: bytes) -> bytes:
        sock = self.connect()
        sock.sendall(raw)
        return self.read_all(sock)


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


@pytest.fixture
def rig(reactor: TestReactor) -> Iterator[Rig]:
    r = Rig(reactor)
    yield r
    r.server.close()


def test_get_any_path(rig: Rig) -> None:
    answer = rig.exchange(b"GET /whatever?x=1 HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n")
    assert status(answer) == 200
    assert body(answer) == b"hello"
    head = answer.partition(b"\r\n\r\n")[0].decode()
    assert "Content-Length: 5" in head
    assert "Connection: close" in head
    assert "Content-Type: text/plain; version=0.0.4" in head
    assert rig.requests[0].target == "/whatever?x=1"
    assert rig.requests[0].headers == {"host": "x", "accept": "text/plain"}


def test_head_has_no_body(rig: Rig) -> None:
    answer = rig.exchange(b"HEAD / HTTP/1.0\r\n\r\n")
    assert status(answer) == 200
    assert body(answer) == b""
    assert b"Content-Length: 5" in answer


def test_request_split_into_single_bytes(rig: Rig) -> None:
    sock = rig.connect()
    for byte in b"GET / HTTP/1.1\r\nAccept: a\r\nAccept: b\r\n\r\n":
        sock.sendall(bytes([byte]))
        rig.reactor.run_once(0.01)
    answer = rig.read_all(sock)
    assert status(answer) == 200
    assert rig.requests[0].headers["accept"] == "a, b"


def test_bare_lf_accepted(rig: Rig) -> None:
    assert status(rig.exchange(b"GET / HTTP/1.0\nHost: x\n\n")) == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello
        b"hello there\r\n\r\n",
        b"GET /\r\n\r\n",  # HTTP/0.9
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
    ],
)
def test_garbage_is_400(rig: Rig, raw: bytes) -> None:
    answer = rig.exchange(raw)
    assert status(answer) == 400
    assert rig.requests == []


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS"])
def test_other_methods_are_405(rig: Rig, method: bytes) -> None:
    answer = rig.exchange(method + b" / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert status(answer) == 405
    assert b"Allow: GET, HEAD" in answer
    assert rig.requests == []


def test_oversized_request_is_431_without_waiting_for_the_end(rig: Rig) -> None:
    sock = rig.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000)
    answer = rig.read_all(sock)
    assert status(answer) == 431


def test_handler_error_is_500_and_server_keeps_serving(rig: Rig) -> None:
    assert status(rig.exchange(b"GET /boom HTTP/1.1\r\n\r\n")) == 500
    assert status(rig.exchange(b"GET / HTTP/1.1\r\n\r\n")) == 200


def test_idle_connection_times_out(reactor: TestReactor) -> None:
    rig = Rig(reactor, timeout=0.2)
    sock = rig.connect()
    sock.sendall(b"GET / HTTP/1.1\r\n")  # and never the rest
    assert rig.read_all(sock, timeout=3) == b""
    assert not rig.server.connections
    rig.server.close()


def test_connection_limit_evicts_the_oldest(reactor: TestReactor) -> None:
    rig = Rig(reactor, max_connections=2)
    oldest, held = rig.connect(), rig.connect()
    newest = rig.connect()
    assert rig.server.evicted == 1
    assert len(rig.server.connections) == 2
    assert rig.read_all(oldest) == b""
    for sock in (held, newest):
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert status(rig.read_all(sock)) == 200
    # Many idle connections never lock out a request that completes at once.
    idle = [rig.connect() for _ in range(5)]
    assert status(rig.exchange(b"GET / HTTP/1.1\r\n\r\n")) == 200
    rig.server.close()
    for sock in idle:
        sock.close()


def test_close_drops_open_connections(reactor: TestReactor) -> None:
    rig = Rig(reactor)
    sock = rig.connect()
    rig.server.close()
    assert rig.read_all(sock) == b""
    assert rig.server.port is None
    assert not reactor.errors


def test_parse_head_errors_carry_status() -> None:
    with pytest.raises(BadRequest) as exc:
        parse_head(b"PATCH / HTTP/1.1")
    assert exc.value.status == 405
    assert parse_head(b"GET / HTTP/1.1\r\nA: 1\r").headers == {"a": "1"}
