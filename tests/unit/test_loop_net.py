"""Listener and Connector over loopback TCP and unix sockets."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from loop.clock import ManualClock
from loop.poller import READ, EventHandler
from loop.protocol import Protocol
from loop.reactor import Reactor
from loop.transport import SocketTransport

DEADLINE = 5.0


class TestReactor(Reactor):
    __test__ = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors: list[tuple[BaseException, str]] = []
        self.starved: list[OSError | None] = []

    def handle_exception(self, exc: BaseException, context: str) -> None:
        self.errors.append((exc, context))

    def handle_starvation(self, exc: OSError | None, context: str) -> None:
        self.starved.append(exc)


@pytest.fixture
def reactor() -> Iterator[TestReactor]:
    r = TestReactor()
    yield r
    r.close()


class Echo(Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport: SocketTransport = transport

    def data_received(self, data: memoryview) -> None:
        self.transport.write(data)


class Client(Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: list[Exception | None] = []

    def data_received(self, data: memoryview) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


class Done:
    def __init__(self) -> None:
        self.calls: list[tuple[socket.socket | None, Exception | None]] = []

    def __call__(self, sock: socket.socket | None, exc: Exception | None) -> None:
        self.calls.append((sock, exc))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_echo_server(reactor: TestReactor) -> None:
    servers: list[SocketTransport] = []
    listener = reactor.listen(
        "127.0.0.1", 0, lambda sock, addr: servers.append(reactor.transport(sock, Echo()))
    )
    assert listener.port
    done = Done()
    reactor.connect("127.0.0.1", listener.port, done, timeout=DEADLINE)
    assert reactor.run_until(lambda: bool(done.calls), timeout=DEADLINE)
    sock, exc = done.calls[0]
    assert exc is None and sock is not None
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    client = Client()
    t = reactor.transport(sock, client)
    t.write(b"ping")
    t.write(b"pong")
    assert reactor.run_until(lambda: client.data == b"pingpong", timeout=DEADLINE)
    assert len(servers) == 1
    server_sock = servers[0].get_extra_info("socket")
    assert server_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert server_sock.gettimeout() == 0.0
    t.close()
    assert reactor.run_until(lambda: bool(client.lost), timeout=DEADLINE)
    listener.close()
    listener.close()
    assert reactor.errors == []


def test_accepts_are_batched(reactor: TestReactor) -> None:
    accepted: list[socket.socket] = []
    listener = reactor.listen("127.0.0.1", 0, lambda sock, addr: accepted.append(sock))
    clients = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(100)]
    try:
        reactor.run_once(DEADLINE)
        assert len(accepted) == 64
        assert reactor.run_until(lambda: len(accepted) == 100, timeout=DEADLINE)
        assert reactor.stats.accepts == 100
    finally:
        for s in clients + accepted:
            s.close()
        listener.close()


def test_on_accept_exception_does_not_stop_accepting(reactor: TestReactor) -> None:
    accepted: list[socket.socket] = []

    def on_accept(sock: socket.socket, addr: Any) -> None:
        accepted.append(sock)
        if len(accepted) == 1:
            raise RuntimeError("first one fails")

    listener = reactor.listen("127.0.0.1", 0, on_accept)
    clients = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(3)]
    try:
        assert reactor.run_until(lambda: len(accepted) == 3, timeout=DEADLINE)
        assert [str(e) for e, _ in reactor.errors] == ["first one fails"]
    finally:
        for s in clients + accepted:
            s.close()
        listener.close()


class _FailingSock:
    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.calls = 0

    def accept(self) -> Any:
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_emfile_pauses_accepting_without_spinning() -> None:
    clock = ManualClock()
    reactor = TestReactor(clock=clock)
    listener = reactor.listen("127.0.0.1", 0, lambda sock, addr: None)
    real = listener._sock
    fake = _FailingSock(real)
    listener._sock = fake  # type: ignore[assignment]
    client = socket.create_connection(("127.0.0.1", listener.port))
    try:
        reactor.run_once(DEADLINE)
        assert fake.calls == 1
        # Running out of descriptors is the load, not a bug: told as starvation, not as an error.
        assert not reactor.errors
        assert [e.errno for e in reactor.starved if e is not None] == [errno.EMFILE]
        assert reactor.poller.interest(listener.fileno()) == 0  # type: ignore[attr-defined]
        # The pending connection no longer wakes the loop.
        for _ in range(5):
            reactor.run_once(0)
        assert fake.calls == 1
        # Still out of descriptors after the backoff: paused again, but told only once.
        clock.advance(0.1)
        assert reactor.run_until(lambda: fake.calls == 2, timeout=DEADLINE)
        assert len(reactor.starved) == 1 and reactor.poller.interest(listener.fileno()) == 0  # type: ignore[attr-defined]
        clock.advance(0.1)
        listener._sock = real
        accepted: list[socket.socket] = []
        listener._on_accept = lambda sock, addr: accepted.append(sock)
        reactor.run_once(0)  # backoff timer restores READ interest
        assert reactor.poller.interest(listener.fileno()) == READ  # type: ignore[attr-defined]
        assert reactor.run_until(lambda: bool(accepted), timeout=DEADLINE)
        assert reactor.starved[1:] == [None]  # the backlog drained: accepting again, told once
        accepted[0].close()
    finally:
        listener._sock = real
        client.close()
        listener.close()
        reactor.close()


def test_starvation_lasts_until_the_backlog_drains() -> None:
    """At the limit each freed descriptor lets one connection in before the next EMFILE: that is
    one episode, told once, and over when an accept finds the backlog empty."""
    clock = ManualClock()
    reactor = TestReactor(clock=clock)
    listener = reactor.listen("127.0.0.1", 0, lambda sock, addr: None)
    real = listener._sock
    accepted: list[socket.socket] = []
    listener._on_accept = lambda sock, addr: accepted.append(sock)
    clients = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(3)]

    class OneThenFull:
        """One accept works, then EMFILE again."""

        def __init__(self) -> None:
            self.budget = 1

        def accept(self) -> Any:
            if self.budget:
                self.budget -= 1
                return real.accept()
            raise OSError(errno.EMFILE, "Too many open files")

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    try:
        listener._sock = _FailingSock(real)  # type: ignore[assignment]
        assert reactor.run_until(lambda: bool(reactor.starved), timeout=DEADLINE)
        for n in (1, 2):
            listener._sock = OneThenFull()  # type: ignore[assignment]
            clock.advance(0.1)
            assert reactor.run_until(lambda n=n: len(accepted) == n, timeout=DEADLINE)
            assert len(reactor.starved) == 1  # still the same episode
        listener._sock = real
        clock.advance(0.1)
        assert reactor.run_until(lambda: len(accepted) == 3, timeout=DEADLINE)
        reactor.run_once(0)
        assert reactor.starved[1:] == [None] and not reactor.errors
    finally:
        listener._sock = real
        for s in clients + accepted:
            s.close()
        listener.close()
        reactor.close()


def test_listen_reuse_port(reactor: TestReactor) -> None:
    first = reactor.listen("127.0.0.1", 0, lambda s, a: None, reuse_port=True)
    second = reactor.listen("127.0.0.1", first.port, lambda s, a: None, reuse_port=True)  # type: ignore[arg-type]
    assert second.port == first.port
    first.close()
    second.close()


def test_connect_refused(reactor: TestReactor) -> None:
    done = Done()
    reactor.connect("127.0.0.1", closed_port(), done)
    assert reactor.run_until(lambda: bool(done.calls), timeout=DEADLINE)
    sock, exc = done.calls[0]
    assert sock is None
    assert isinstance(exc, ConnectionRefusedError)
    for _ in range(3):
        reactor.run_once(0)
    assert len(done.calls) == 1


def test_connect_resolution_failure_is_delivered_from_loop(reactor: TestReactor) -> None:
    done = Done()
    reactor.connect("/nonexistent-dir-for-test/socket", 5432, done)
    assert done.calls == []  # never from inside connect()
    reactor.run_once(0)
    assert len(done.calls) == 1
    assert isinstance(done.calls[0][1], FileNotFoundError)


def test_connect_cancel_prevents_on_done(reactor: TestReactor) -> None:
    listener = reactor.listen("127.0.0.1", 0, lambda sock, addr: sock.close())
    done = Done()
    connector = reactor.connect("127.0.0.1", listener.port, done, timeout=0.01)  # type: ignore[arg-type]
    connector.cancel()
    assert connector.done
    probe = Done()
    reactor.connect("127.0.0.1", listener.port, probe)  # type: ignore[arg-type]
    assert reactor.run_until(lambda: bool(probe.calls), timeout=DEADLINE)
    # Outlive the cancelled connector's timeout: neither success nor timeout may be reported.
    waited: list[bool] = []
    reactor.call_later(0.05, waited.append, True)
    assert reactor.run_until(lambda: bool(waited), timeout=DEADLINE)
    assert done.calls == []
    probe.calls[0][0].close()  # type: ignore[union-attr]
    listener.close()


class _SilentPoller:
    """Never reports readiness; poll timeouts advance virtual time."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.fds: dict[int, int] = {}

    def register(self, fd: int, events: int, handler: EventHandler) -> None:
        self.fds[fd] = events

    def modify(self, fd: int, events: int, handler: EventHandler) -> None:
        self.fds[fd] = events

    def unregister(self, fd: int) -> None:
        del self.fds[fd]

    def poll(self, timeout: float | None) -> list[tuple[EventHandler, int]]:
        if timeout:
            self.clock.advance(timeout)
        return []

    def close(self) -> None:
        pass


def test_connect_timeout_with_virtual_time() -> None:
    clock = ManualClock()
    poller = _SilentPoller(clock)
    reactor = TestReactor(clock=clock, poller=poller)
    with socket.create_server(("127.0.0.1", 0)) as server:
        done = Done()
        reactor.connect("127.0.0.1", server.getsockname()[1], done, timeout=3.0)
        assert len(poller.fds) == 1
        assert reactor.run_until(lambda: bool(done.calls), timeout=10.0)
        assert clock.now() == 3.0
        sock, exc = done.calls[0]
        assert sock is None and isinstance(exc, TimeoutError)
        assert poller.fds == {}
    reactor.close()


def test_unix_socket_listen_and_connect(reactor: TestReactor) -> None:
    tmp = tempfile.mkdtemp(prefix="loop")
    path = os.path.join(tmp, ".s.TEST.1")
    try:
        accepted: list[SocketTransport] = []
        listener = reactor.listen(
            path, 0, lambda sock, addr: accepted.append(reactor.transport(sock, Echo()))
        )
        assert listener.port is None
        done = Done()
        reactor.connect(path, 0, done)
        assert reactor.run_until(lambda: bool(done.calls), timeout=DEADLINE)
        sock, exc = done.calls[0]
        assert exc is None and sock is not None
        client = Client()
        t = reactor.transport(sock, client)
        t.write(b"unix")
        assert reactor.run_until(lambda: client.data == b"unix", timeout=DEADLINE)
        t.close()
        assert reactor.run_until(lambda: bool(client.lost), timeout=DEADLINE)
        listener.close()
        assert not os.path.exists(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
