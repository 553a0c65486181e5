"""The simulated world's parts: virtual clock jumps, the virtual network under the production
loop code (Connector, Listener, SocketTransport), and the virtual disk."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from loop.protocol import Protocol
from sim.disk import VirtualDisk
from sim.network import INF, LinkConfig
from sim.world import EPOCH, Host, World


class Node(Host):
    def __init__(self, world: World, name: str) -> None:
        self.name = name
        self.vnode = world.net.add_node(name)
        self.reactor = world.new_reactor(self.vnode)
        world.add_host(self)


class Recorder(Protocol):
    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.data = bytearray()
        self.chunks: list[int] = []
        self.eof = False
        self.lost: list[Exception | None] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: memoryview) -> None:
        self.data += data
        self.chunks.append(len(data))
        if self.echo:
            self.transport.write(bytes(data))

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def pair(world: World, *, split: float = 0.5) -> tuple[Node, Node, list[Recorder], dict[str, Any]]:
    world.net.default_link = LinkConfig(latency=0.001, jitter=0.002, split=split)
    server, client = Node(world, "server"), Node(world, "client")
    accepted: list[Recorder] = []

    def on_accept(sock: Any, addr: Any) -> None:
        proto = Recorder(echo=True)
        accepted.append(proto)
        server.reactor.transport(sock, proto)

    server.reactor.listen(None, 5000, on_accept)
    out: dict[str, Any] = {}

    def done(sock: Any, exc: Exception | None) -> None:
        out["exc"] = exc
        if sock is not None:
            proto = Recorder()
            out["proto"] = proto
            client.reactor.transport(sock, proto)

    client.reactor.connect(server.vnode.ip, 5000, done, timeout=5.0)
    world.run_until(EPOCH + 1.0, stop=lambda: "proto" in out or "exc" in out)
    return server, client, accepted, out


def test_the_clock_jumps_to_the_next_timer_when_nothing_runs() -> None:
    world = World(1)
    node = Node(world, "a")
    fired: list[float] = []
    node.reactor.call_later(3600.0, lambda: fired.append(world.now()))
    steps_before = world.steps
    world.run_until(EPOCH + 7200.0)
    assert fired == [EPOCH + 3600.0]
    # An hour of idle virtual time is a handful of steps, not a busy loop.
    assert world.steps - steps_before < 10


def test_bytes_keep_their_order_through_splits_delays_and_merges() -> None:
    world = World(7)
    _, _, accepted, out = pair(world, split=0.9)
    client = out["proto"]
    payload = bytes(range(256)) * 40
    for i in range(0, len(payload), 333):
        client.transport.write(payload[i : i + 333])
    world.run_until(EPOCH + 5.0, stop=lambda: len(client.data) == len(payload))
    assert bytes(accepted[0].data) == payload
    assert bytes(client.data) == payload
    # The network really did cut and merge: reads do not line up with the 333-byte writes.
    assert any(n != 333 for n in accepted[0].chunks)


def test_same_seed_same_chunking_other_seed_other_chunking() -> None:
    def chunks(seed: int) -> list[int]:
        world = World(seed)
        _, _, accepted, out = pair(world, split=0.9)
        out["proto"].transport.write(b"x" * 5000)
        world.run_until(EPOCH + 5.0, stop=lambda: len(accepted[0].data) == 5000)
        return accepted[0].chunks

    assert chunks(3) == chunks(3)
    assert chunks(3) != chunks(4)


def test_a_partition_holds_segments_until_it_heals() -> None:
    world = World(2)
    _, _, accepted, out = pair(world)
    world.net.block("client", "server", INF)
    out["proto"].transport.write(b"hello")
    world.run_until(world.now() + 30.0)
    assert accepted[0].data == b""
    world.net.heal("client", "server")
    world.run_until(world.now() + 1.0, stop=lambda: out["proto"].data == b"hello")
    assert accepted[0].data == b"hello" and out["proto"].data == b"hello"


def test_a_connect_through_a_partition_times_out() -> None:
    world = World(2)
    world.net.add_node("x")
    client = Node(world, "client")
    server = Node(world, "server")
    server.reactor.listen(None, 5000, lambda sock, addr: None)
    world.net.block("client", "server", INF)
    result: dict[str, Any] = {}
    client.reactor.connect(server.vnode.ip, 5000, lambda s, e: result.update(sock=s, exc=e), timeout=2.5)
    start = world.now()
    world.run_until(start + 10.0, stop=lambda: bool(result))
    assert isinstance(result["exc"], TimeoutError)
    assert world.now() == pytest.approx(start + 2.5)


def test_connecting_where_nobody_listens_is_refused() -> None:
    world = World(2)
    client, server = Node(world, "client"), Node(world, "server")
    result: dict[str, Any] = {}
    client.reactor.connect(server.vnode.ip, 5999, lambda s, e: result.update(sock=s, exc=e), timeout=2.0)
    world.run_until(world.now() + 1.0, stop=lambda: bool(result))
    assert result["sock"] is None and result["exc"].errno == errno.ECONNREFUSED


def test_reset_reaches_both_ends_as_connection_lost_with_an_error() -> None:
    world = World(5)
    _, _, accepted, out = pair(world)
    conn_id = world.net.connections_of("client", "server")[0][0].conn_id
    world.net.reset_connection(conn_id)
    world.run_until(world.now() + 1.0, stop=lambda: bool(out["proto"].lost and accepted[0].lost))
    assert isinstance(out["proto"].lost[0], ConnectionResetError)
    assert isinstance(accepted[0].lost[0], ConnectionResetError)


def test_half_close_delivers_eof_after_the_data_in_flight() -> None:
    world = World(5)
    _, _, accepted, out = pair(world)
    accepted[0].transport.write(b"last words")
    world.step()  # the end-of-pass flush puts the bytes on the wire
    world.net.half_close(out["proto"].transport.get_extra_info("socket"))
    world.run_until(world.now() + 1.0, stop=lambda: out["proto"].eof)
    assert out["proto"].data == b"last words" and out["proto"].eof


def test_a_killed_process_closes_its_sockets_and_peers_see_eof() -> None:
    world = World(5)
    server, _, _, out = pair(world)
    world.net.kill_process(server.vnode)
    server.reactor = None
    world.run_until(world.now() + 1.0, stop=lambda: out["proto"].eof)
    assert out["proto"].eof


def test_a_powered_off_host_is_silent_and_answers_rst_when_it_returns() -> None:
    world = World(5)
    server, _, _, out = pair(world)
    world.net.power_off(server.vnode)
    server.reactor = None
    out["proto"].transport.write(b"anyone?")
    world.run_until(world.now() + 60.0)
    assert not out["proto"].eof and not out["proto"].lost
    world.net.power_on(server.vnode)
    world.run_until(world.now() + 1.0, stop=lambda: bool(out["proto"].lost))
    assert isinstance(out["proto"].lost[0], ConnectionResetError)


def test_a_full_receiver_pushes_back_on_the_sender() -> None:
    world = World(9)
    _, _, accepted, out = pair(world, split=0.0)
    accepted[0].transport.pause_reading()
    big = b"y" * (1 << 20)
    out["proto"].transport.write(big)
    world.run_until(world.now() + 2.0)
    # The sender's kernel took only what fits in the window; the rest waits in its outbox.
    assert 0 < out["proto"].transport.get_write_buffer_size() < len(big)
    accepted[0].echo = False
    accepted[0].transport.resume_reading()
    world.run_until(world.now() + 5.0, stop=lambda: len(accepted[0].data) == len(big))
    assert bytes(accepted[0].data) == big


def test_the_disk_keeps_fsynced_bytes_and_loses_the_rest_on_crash() -> None:
    disk = VirtualDisk()
    disk.append("wal", b"one;")
    disk.fsync("wal")
    disk.append("wal", b"two;")
    assert disk.read("wal") == b"one;two;"
    assert disk.durable("wal") == b"one;"
    disk.crash()
    assert disk.read("wal") == b"one;"


def test_a_crash_may_keep_a_prefix_of_the_unsynced_appends() -> None:
    disk = VirtualDisk(choose=lambda n: n - 1)
    for part in (b"a", b"b", b"c"):
        disk.append("f", part)
    disk.crash()
    assert disk.read("f") == b"ab"
