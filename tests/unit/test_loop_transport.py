"""SocketTransport over real socketpairs / loopback TCP: coalescing, interest, backpressure, close."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from loop.poller import READ, WRITE
from loop.protocol import Protocol
from loop.reactor import Reactor
from loop.transport import IOV_CAP, SocketTransport

DEADLINE = 5.0


class Recorder(Protocol):
    def __init__(self) -> None:
        self.transport: SocketTransport | None = None
        self.data = bytearray()
        self.chunks = 0
        self.eof = 0
        self.lost: list[Exception | None] = []
        self.events: list[str] = []

    def connection_made(self, transport: object) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: memoryview) -> None:
        self.data += data
        self.chunks += 1

    def eof_received(self) -> None:
        self.eof += 1
        self.events.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        self.events.append("lost")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


class Echo(Recorder):
    def data_received(self, data: memoryview) -> None:
        super().data_received(data)
        assert self.transport is not None
        self.transport.write(data)


class TestReactor(Reactor):
    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[BaseException, str]] = []

    def handle_exception(self, exc: BaseException, context: str) -> None:
        self.errors.append((exc, context))


@pytest.fixture
def reactor() -> Iterator[TestReactor]:
    r = TestReactor()
    yield r
    r.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
    return client, conn


def drain(sock: socket.socket, reactor: Reactor, expected: int) -> bytes:
    """Read ``expected`` bytes from a plain non-blocking socket while the reactor keeps sending."""
    sock.setblocking(False)
    got = bytearray()

    def step() -> bool:
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            got.extend(chunk)
        return len(got) >= expected

    assert reactor.run_until(step, timeout=DEADLINE)
    return bytes(got)


def interest(reactor: Reactor, transport: SocketTransport) -> int | None:
    return reactor.poller.interest(transport.fileno())  # type: ignore[attr-defined]


def test_connection_made_and_addresses(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    proto = Recorder()
    t = reactor.transport(pair[0], proto)
    assert proto.transport is t
    assert t.get_protocol() is proto
    assert t.fileno() == pair[0].fileno()
    assert t.peername is not None and t.sockname is not None
    assert interest(reactor, t) == READ
    t.abort()


def test_many_writes_coalesce_into_one_send(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    t = reactor.transport(pair[0], Recorder())
    messages = [struct.pack("!cI", b"D", i) for i in range(IOV_CAP)]

    def produce() -> None:
        for m in messages:
            t.write(m)

    reactor.call_soon(produce)
    sends = reactor.stats.sends
    reactor.run_once(0)
    assert reactor.stats.sends == sends + 1
    assert t.get_write_buffer_size() == 0
    assert drain(pair[1], reactor, 5 * IOV_CAP) == b"".join(messages)


def test_iovec_count_is_capped(reactor: TestReactor, pair: tuple[socket.socket, socket.socket]) -> None:
    t = reactor.transport(pair[0], Recorder())
    n = IOV_CAP * 3 + 1
    for i in range(n):
        t.write(bytearray(struct.pack("!I", i)))
    sends = reactor.stats.sends
    reactor.run_once(0)
    assert reactor.stats.sends == sends + 4
    assert drain(pair[1], reactor, 4 * n) == b"".join(struct.pack("!I", i) for i in range(n))


def test_write_copies_views_and_bytearrays(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    t = reactor.transport(pair[0], Recorder())
    buf = bytearray(b"abc")
    t.write(buf)
    t.write(memoryview(buf)[1:])
    buf[:] = b"xyz"
    reactor.run_once(0)
    assert drain(pair[1], reactor, 5) == b"abcbc"


def test_epollout_only_while_output_pending(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    t = reactor.transport(pair[0], Recorder())
    t.set_write_buffer_limits(high=1 << 30)
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB: far beyond the socketpair buffer
    t.write(payload)
    reactor.run_once(0)
    assert t.get_write_buffer_size() > 0
    assert interest(reactor, t) == READ | WRITE
    assert reactor.stats.modifies == 1
    assert drain(pair[1], reactor, len(payload)) == payload
    assert t.get_write_buffer_size() == 0
    assert interest(reactor, t) == READ
    assert reactor.stats.modifies == 2
    # Idle passes: no churn.
    for _ in range(3):
        reactor.run_once(0)
    assert reactor.stats.modifies == 2


def test_request_response_needs_no_modify(reactor: TestReactor) -> None:
    a, b = tcp_pair()
    client, server = Recorder(), Echo()
    tc = reactor.transport(a, client)
    reactor.transport(b, server)
    before = reactor.stats.modifies
    for i in range(50):
        msg = b"Q%04d" % i
        tc.write(msg)
        assert reactor.run_until(lambda n=(i + 1) * 5: len(client.data) >= n, timeout=DEADLINE)
    assert bytes(client.data) == b"".join(b"Q%04d" % i for i in range(50))
    assert reactor.stats.modifies == before == 0
    tc.close()
    assert reactor.run_until(lambda: server.lost and client.lost, timeout=DEADLINE)


def test_backpressure_pause_and_resume_writing(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    proto = Recorder()
    t = reactor.transport(pair[0], proto)
    t.set_write_buffer_limits(high=64 * 1024)
    assert t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    chunk = b"x" * 16 * 1024
    total = 0
    for _ in range(4):
        t.write(chunk)
        total += len(chunk)
    assert proto.events == []  # exactly at high-water: not above it
    t.write(chunk)
    total += len(chunk)
    assert proto.events == ["pause"]
    t.write(chunk * 100)
    total += len(chunk) * 100
    assert proto.events == ["pause"]
    drain(pair[1], reactor, total)
    assert reactor.run_until(lambda: t.get_write_buffer_size() == 0, timeout=DEADLINE)
    assert proto.events == ["pause", "resume"]


def test_set_write_buffer_limits_validates(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    t = reactor.transport(pair[0], Recorder())
    with pytest.raises(ValueError):
        t.set_write_buffer_limits(high=10, low=20)
    t.abort()


def test_pause_reading_stops_data_received(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    proto = Recorder()
    t = reactor.transport(pair[0], proto)
    t.pause_reading()
    t.resume_reading()
    reactor.run_once(0)
    assert reactor.stats.modifies == 0  # pause+resume within one pass costs nothing
    t.pause_reading()
    assert not t.is_reading()
    pair[1].sendall(b"hello")
    for _ in range(5):
        reactor.run_once(0.01)
    assert proto.data == b""
    assert interest(reactor, t) == 0
    t.resume_reading()
    assert reactor.run_until(lambda: proto.data == b"hello", timeout=DEADLINE)
    assert interest(reactor, t) == READ


def test_pause_reading_inside_data_received(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    class Pauser(Recorder):
        def data_received(self, data: memoryview) -> None:
            super().data_received(data)
            assert self.transport is not None
            self.transport.pause_reading()

    proto = Pauser()
    t = reactor.transport(pair[0], proto, read_buffer_size=4)
    pair[1].sendall(b"abcdefgh")
    assert reactor.run_until(lambda: proto.chunks == 1, timeout=DEADLINE)
    for _ in range(3):
        reactor.run_once(0.01)
    assert proto.data == b"abcd"
    t.resume_reading()
    assert reactor.run_until(lambda: proto.chunks == 2, timeout=DEADLINE)
    assert proto.data == b"abcdefgh"


def test_data_view_is_released_after_call(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    kept: list[memoryview] = []

    class Keeper(Recorder):
        def data_received(self, data: memoryview) -> None:
            kept.append(data)

    reactor.transport(pair[0], Keeper())
    pair[1].sendall(b"abc")
    assert reactor.run_until(lambda: bool(kept), timeout=DEADLINE)
    with pytest.raises(ValueError):
        bytes(kept[0])


def test_close_flushes_then_connection_lost_once(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    proto = Recorder()
    t = reactor.transport(pair[0], proto)
    t.write(b"bye")
    t.close()
    t.close()
    t.write(b"ignored")
    assert t.is_closing()
    t.abort()  # outbox already committed to close(): abort now drops it
    assert reactor.run_until(lambda: bool(proto.lost), timeout=DEADLINE)
    for _ in range(3):
        reactor.run_once(0)
    assert proto.lost == [None]
    assert t.fileno() == -1


def test_close_delivers_pending_output(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    proto = Recorder()
    t = reactor.transport(pair[0], proto)
    payload = b"z" * (2 * 1024 * 1024)
    t.write(payload)
    t.close()
    assert drain(pair[1], reactor, len(payload)) == payload
    assert reactor.run_until(lambda: bool(proto.lost), timeout=DEADLINE)
    assert pair[1].recv(10) == b""  # EOF after the data
    assert proto.lost == [None]


def test_connection_lost_is_deferred_to_loop(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    proto = Recorder()
    t = reactor.transport(pair[0], proto)
    t.close()
    assert proto.lost == []
    reactor.run_once(0)
    assert proto.lost == [None]


def test_peer_eof_calls_eof_received_then_closes(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    proto = Recorder()
    reactor.transport(pair[0], proto)
    pair[1].sendall(b"last")
    pair[1].shutdown(socket.SHUT_WR)
    assert reactor.run_until(lambda: bool(proto.lost), timeout=DEADLINE)
    assert proto.data == b"last"
    assert proto.events == ["eof", "lost"]
    assert proto.lost == [None]


def test_reset_reports_exception(reactor: TestReactor) -> None:
    a, b = tcp_pair()
    proto = Recorder()
    reactor.transport(a, proto)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()
    assert reactor.run_until(lambda: bool(proto.lost), timeout=DEADLINE)
    assert isinstance(proto.lost[0], ConnectionResetError)
    assert proto.lost == proto.lost[:1]


def test_write_to_dead_peer_reports_error(reactor: TestReactor) -> None:
    a, b = tcp_pair()
    proto = Recorder()
    t = reactor.transport(a, proto)
    t.pause_reading()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()

    def keep_writing() -> bool:
        if not t.is_closing():
            t.write(b"x" * 1024)
        return bool(proto.lost)

    assert reactor.run_until(keep_writing, timeout=DEADLINE)
    assert isinstance(proto.lost[0], OSError)


def test_write_eof_half_close(reactor: TestReactor, pair: tuple[socket.socket, socket.socket]) -> None:
    proto = Recorder()
    t = reactor.transport(pair[0], proto)
    t.write(b"request")
    t.write_eof()
    t.write(b"dropped")
    assert drain(pair[1], reactor, 7) == b"request"
    assert pair[1].recv(10) == b""
    # Still readable after our half-close.
    pair[1].sendall(b"reply")
    assert reactor.run_until(lambda: proto.data == b"reply", timeout=DEADLINE)
    pair[1].close()
    assert reactor.run_until(lambda: bool(proto.lost), timeout=DEADLINE)
    assert proto.lost == [None]


def test_protocol_exception_aborts_transport(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    class Broken(Recorder):
        def data_received(self, data: memoryview) -> None:
            raise RuntimeError("parser bug")

    proto = Broken()
    t = reactor.transport(pair[0], proto)
    pair[1].sendall(b"x")
    assert reactor.run_until(lambda: bool(proto.lost), timeout=DEADLINE)
    assert t.is_closing()
    assert [str(e) for e, _ in reactor.errors] == ["parser bug"]
    assert proto.lost == [None]
    assert pair[1].recv(10) == b""


def test_set_protocol_retargets_events(
    reactor: TestReactor, pair: tuple[socket.socket, socket.socket]
) -> None:
    first, second = Recorder(), Recorder()
    t = reactor.transport(pair[0], first)
    pair[1].sendall(b"one")
    assert reactor.run_until(lambda: first.data == b"one", timeout=DEADLINE)
    t.set_protocol(second)
    assert t.get_protocol() is second
    pair[1].sendall(b"two")
    assert reactor.run_until(lambda: second.data == b"two", timeout=DEADLINE)
    t.abort()
    assert reactor.run_until(lambda: bool(second.lost), timeout=DEADLINE)
    assert first.lost == []


def test_shared_receive_buffer(reactor: TestReactor) -> None:
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    p1, p2 = Recorder(), Recorder()
    reactor.transport(a1, p1)
    reactor.transport(a2, p2)
    b1.sendall(b"first")
    b2.sendall(b"second")
    assert reactor.run_until(lambda: p1.data == b"first" and p2.data == b"second", timeout=DEADLINE)
    assert len(reactor._read_buffers) == 1
    for s in (a1, b1, a2, b2):
        s.close()
