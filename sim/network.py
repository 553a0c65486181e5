"""A virtual TCP network: byte streams that keep their order and nothing else.

Each simulated node gets objects that behave like non-blocking BSD sockets
(``send``, ``sendmsg``, ``recv_into``, ``connect_ex``, ``accept``, ``shutdown``,
``getsockopt(SO_ERROR)``...), so the production ``SocketTransport``,
``Connector`` and ``Listener`` run over it unchanged. What a real network may
do to a stream, this one does on purpose, every choice drawn from the world's
PRNG: writes are cut into segments, segments are delayed (latency plus
jitter), reads merge whatever has arrived, links stall or partition (segments
and SYNs are held until the link heals, as TCP retransmission would deliver
them), connections are reset or half-closed, and a node's process can die
(peers see FIN) or its host can vanish (peers see silence).

Nothing here reads a real clock: time is the world's clock, and every
arrival is an entry in one heap keyed ``(when, seq)``.
"""

from __future__ import annotations

import errno
import heapq
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loop.poller import READ, WRITE

if TYPE_CHECKING:
    import random

    from loop.clock import ManualClock

#: Bytes a sender may have in flight plus unread at the receiver before send() says EAGAIN.
SEND_BUFFER = 256 * 1024
INF = float("inf")
#: TCP's initial SYN retransmission timeout (doubles each retry), for SYNs lost to a partition.
SYN_RETRY = 1.0


class LinkConfig:
    """Delay and chunking of the path between two nodes."""

    __slots__ = ("jitter", "latency", "split")

    def __init__(self, latency: float = 0.0002, jitter: float = 0.0003, split: float = 0.25) -> None:
        self.latency = latency
        self.jitter = jitter
        # Probability that one send() is cut into several segments.
        self.split = split


class Link:
    """The path between two nodes: its delays and whether it is blocked (stall or partition)."""

    __slots__ = ("a", "b", "blocked_until", "config", "waiting")

    def __init__(self, a: str, b: str, config: LinkConfig) -> None:
        self.a = a
        self.b = b
        self.config = config
        self.blocked_until = 0.0
        # Pipes whose segments arrived while the link was blocked, in arrival order.
        self.waiting: dict[int, Pipe] = {}

    def blocked(self, now: float) -> bool:
        return now < self.blocked_until


class Pipe:
    """One direction of a connection: segments in flight toward ``dst``."""

    __slots__ = ("dst", "fin_queued", "in_flight", "key", "last_t", "link", "src")

    def __init__(self, key: int, src: VSocket, dst: VSocket, link: Link) -> None:
        self.key = key
        self.src = src
        self.dst = dst
        self.link = link
        # (arrival time, bytes) or (arrival time, None) for the FIN; times never decrease.
        self.in_flight: deque[tuple[float, bytes | None]] = deque()
        self.last_t = 0.0
        self.fin_queued = False

    def bytes_in_flight(self) -> int:
        return sum(len(d) for _, d in self.in_flight if d is not None)


class VirtualPoller:
    """Level-triggered readiness for one node's virtual sockets (the Poller interface).

    The network "touches" a descriptor whenever its readiness may have changed;
    ``poll`` looks only at touched descriptors and keeps those still ready, so
    the cost follows activity, not the number of connections.
    """

    def __init__(self, lookup: Callable[[int], Any]) -> None:
        self._lookup = lookup
        self._handlers: dict[int, tuple[Any, int]] = {}
        self._touched: dict[int, None] = {}
        self._cache: list[tuple[Any, int]] | None = None

    def touch(self, fd: int) -> None:
        self._touched[fd] = None
        self._cache = None

    def register(self, fd: int, events: int, handler: Any) -> None:
        if fd in self._handlers:
            raise FileExistsError(f"fd {fd} is already registered")
        self._handlers[fd] = (handler, events)
        self.touch(fd)

    def modify(self, fd: int, events: int, handler: Any) -> None:
        if fd not in self._handlers:
            raise KeyError(f"fd {fd} is not registered")
        self._handlers[fd] = (handler, events)
        self.touch(fd)

    def unregister(self, fd: int) -> None:
        del self._handlers[fd]
        self._touched.pop(fd, None)
        self._cache = None

    def _compute(self) -> list[tuple[Any, int]]:
        out: list[tuple[Any, int]] = []
        handlers = self._handlers
        touched = self._touched
        for fd in list(touched):
            entry = handlers.get(fd)
            obj = self._lookup(fd) if entry is not None else None
            mask = entry[1] & obj.readiness() if obj is not None else 0  # type: ignore[index]
            if mask:
                out.append((entry[0], mask))  # type: ignore[index]
            else:
                del touched[fd]
        return out

    def has_ready(self) -> bool:
        if self._cache is None:
            self._cache = self._compute()
        return bool(self._cache)

    def poll(self, timeout: float | None) -> list[tuple[Any, int]]:
        # Never blocks: the world moves the clock when no node has anything to do.
        out = self._cache if self._cache is not None else self._compute()
        self._cache = None
        return out

    def close(self) -> None:
        self._handlers.clear()
        self._touched.clear()
        self._cache = None


class VNode:
    """A host on the virtual network: an address, its descriptors and its poller."""

    def __init__(self, network: Network, name: str, ip: str) -> None:
        self.network = network
        self.name = name
        self.ip = ip
        self.fds: dict[int, VSocket | VListenSocket] = {}
        self._next_fd = 3
        self._next_port = 40000
        self.poller = VirtualPoller(self.fds.get)
        self.sockets = NodeSockets(self)
        # False while the host is powered off: nothing reaches it, it sends nothing.
        self.up = True

    def new_fd(self, obj: VSocket | VListenSocket) -> int:
        fd = self._next_fd
        self._next_fd += 1
        self.fds[fd] = obj
        return fd

    def ephemeral_port(self) -> int:
        self._next_port += 1
        return self._next_port

    def reset_poller(self) -> VirtualPoller:
        """A fresh poller for a restarted process (the old one died with it)."""
        self.poller = VirtualPoller(self.fds.get)
        return self.poller


class NodeSockets:
    """The SocketApi a node's reactor uses: sockets and names on the virtual network."""

    __slots__ = ("node",)

    def __init__(self, node: VNode) -> None:
        self.node = node

    def socket(self, family: int, type_: int, proto: int) -> VSocket:
        return VSocket(self.node)

    def listen_socket(self, host: str | None, port: int, backlog: int, reuse_port: bool) -> VListenSocket:
        return self.node.network.listen(self.node, host, port, backlog)

    def resolve(self, host: str, port: int) -> list[tuple[int, int, int, Any]]:
        ip = self.node.network.address_of(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, (ip, port))]


class VSocket:
    """One end of a virtual TCP connection, with the non-blocking socket methods the loop calls."""

    family = socket.AF_INET

    def __init__(self, node: VNode) -> None:
        self.node = node
        self.network = node.network
        self.fd = node.new_fd(self)
        self.peer: VSocket | None = None
        self.out: Pipe | None = None  # me -> peer
        self.rcvbuf: deque[bytes] = deque()
        self.rcv_bytes = 0
        self.fin_received = False
        self.reset = False
        self.error = 0
        self.connecting = False
        self.connected = False
        self.write_shut = False
        self.closed = False
        self.local: tuple[str, int] = (node.ip, 0)
        self.remote: tuple[str, int] | None = None
        self.conn_id = 0

    def __repr__(self) -> str:
        return f"<VSocket {self.node.name} fd={self.fd} {self.local}->{self.remote}>"

    # -- readiness ---------------------------------------------------------------------

    def readiness(self) -> int:
        if self.closed:
            return 0
        mask = 0
        if self.rcvbuf or self.fin_received or self.reset or self.error:
            mask |= READ
        if self.error or self.reset or (self.connected and self._room() > 0):
            mask |= WRITE
        return mask

    def _room(self) -> int:
        out = self.out
        peer = self.peer
        if out is None or peer is None:
            return 0
        return SEND_BUFFER - out.bytes_in_flight() - peer.rcv_bytes

    def touch(self) -> None:
        if not self.closed:
            self.node.poller.touch(self.fd)

    # -- the socket API ----------------------------------------------------------------

    def setblocking(self, flag: bool) -> None:
        if flag:
            raise ValueError("virtual sockets are non-blocking only")

    def setsockopt(self, *args: Any) -> None:
        return None

    def getsockopt(self, level: int, name: int) -> int:
        if name == socket.SO_ERROR:
            err, self.error = self.error, 0
            return err
        return 0

    def fileno(self) -> int:
        return -1 if self.closed else self.fd

    def getpeername(self) -> tuple[str, int]:
        if self.remote is None or not self.connected:
            raise OSError(errno.ENOTCONN, "not connected")
        return self.remote

    def getsockname(self) -> tuple[str, int]:
        return self.local

    def connect_ex(self, addr: tuple[str, int]) -> int:
        if self.connecting or self.connected:
            return errno.EISCONN
        self.connecting = True
        self.remote = (addr[0], addr[1])
        self.local = (self.node.ip, self.node.ephemeral_port())
        self.network.start_connect(self, addr)
        return errno.EINPROGRESS

    def _check(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self.reset:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        if self.error:
            err, self.error = self.error, 0
            raise OSError(err, errno.errorcode.get(err, "error"))

    def send(self, data: Any, flags: int = 0) -> int:
        self._check()
        if not self.connected:
            raise OSError(errno.ENOTCONN, "not connected")
        if self.write_shut:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        room = self._room()
        if room <= 0:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        chunk = bytes(data[:room]) if len(data) > room else bytes(data)
        self.network.transmit(self.out, chunk)  # type: ignore[arg-type]
        return len(chunk)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0) -> int:
        return self.send(b"".join(bytes(b) for b in buffers), flags)

    def recv_into(self, view: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self.reset:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        if self.rcvbuf:
            n = self.network.read_size(len(view), self.rcv_bytes)
            got = 0
            buf = self.rcvbuf
            while got < n and buf:
                seg = buf[0]
                take = min(len(seg), n - got)
                view[got : got + take] = seg[:take]
                got += take
                if take == len(seg):
                    buf.popleft()
                else:
                    buf[0] = seg[take:]
            self.rcv_bytes -= got
            if self.peer is not None:
                # Room in our receive buffer may make the sender writable again.
                self.peer.touch()
            if not buf and not self.fin_received:
                return got
            self.touch()
            return got
        if self.error:
            err, self.error = self.error, 0
            raise OSError(err, errno.errorcode.get(err, "error"))
        if self.fin_received:
            return 0
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    def shutdown(self, how: int) -> None:
        self._check()
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and not self.write_shut:
            self.write_shut = True
            if self.out is not None:
                self.network.transmit_fin(self.out)

    def close(self) -> None:
        """The owner closes: FIN after queued data; data arriving later is answered with RST."""
        if self.closed:
            return
        if self.out is not None and not self.write_shut and not self.reset:
            self.write_shut = True
            self.network.transmit_fin(self.out)
        self.closed = True
        self.connecting = False
        self.node.fds.pop(self.fd, None)
        self.network.forget(self)


class VListenSocket:
    """A listening socket: an accept queue filled by the network."""

    family = socket.AF_INET

    def __init__(self, node: VNode, port: int, backlog: int) -> None:
        self.node = node
        self.port = port
        self.backlog = backlog
        self.fd = node.new_fd(self)
        self.queue: deque[VSocket] = deque()
        self.closed = False

    def readiness(self) -> int:
        return READ if self.queue and not self.closed else 0

    def setblocking(self, flag: bool) -> None:
        return None

    def fileno(self) -> int:
        return self.fd

    def getsockname(self) -> tuple[str, int]:
        return (self.node.ip, self.port)

    def accept(self) -> tuple[VSocket, tuple[str, int]]:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        sock = self.queue.popleft()
        return sock, sock.remote  # type: ignore[return-value]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.node.fds.pop(self.fd, None)
        self.node.network.unlisten(self)
        # Connections accepted by the kernel but never by the process are reset.
        while self.queue:
            self.node.network.reset_socket(self.queue.popleft())


class Network:
    """Nodes, links, listeners and every segment in flight, driven by the world's clock."""

    def __init__(self, clock: ManualClock, rng: random.Random, default_link: LinkConfig | None = None) -> None:
        self.clock = clock
        self.rng = rng
        self.default_link = default_link or LinkConfig()
        self.nodes: dict[str, VNode] = {}
        self._by_ip: dict[str, VNode] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.listeners: dict[tuple[str, int], VListenSocket] = {}
        self.connections: dict[int, tuple[VSocket, VSocket]] = {}
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._next_conn = 1
        self.stats = {"segments": 0, "bytes": 0, "connects": 0, "refused": 0, "resets": 0, "syn_lost": 0}

    # -- topology ------------------------------------------------------------------------

    def add_node(self, name: str) -> VNode:
        ip = f"10.0.0.{len(self.nodes) + 1}"
        node = VNode(self, name, ip)
        self.nodes[name] = node
        self._by_ip[ip] = node
        return node

    def address_of(self, host: str) -> str:
        if host in self._by_ip:
            return host
        node = self.nodes.get(host)
        if node is None:
            raise socket.gaierror(socket.EAI_NONAME, f"unknown virtual host {host!r}")
        return node.ip

    def node_at(self, ip: str) -> VNode | None:
        return self._by_ip.get(ip)

    def link(self, a: str, b: str) -> Link:
        key = (a, b) if a <= b else (b, a)
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = Link(key[0], key[1], self.default_link)
        return link

    # -- scheduling ----------------------------------------------------------------------

    def at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, callback, args))

    def next_time(self) -> float | None:
        return self._events[0][0] if self._events else None

    def run_due(self, now: float) -> int:
        """Deliver everything due by ``now``; returns how many network events ran."""
        events = self._events
        count = 0
        while events and events[0][0] <= now:
            _, _, callback, args = heapq.heappop(events)
            callback(*args)
            count += 1
        return count

    def _delay(self, link: Link) -> float:
        cfg = link.config
        return cfg.latency + (self.rng.random() * cfg.jitter if cfg.jitter else 0.0)

    # -- listening and connecting ------------------------------------------------------------

    def listen(self, node: VNode, host: str | None, port: int, backlog: int) -> VListenSocket:
        if host not in (None, "", "0.0.0.0", "*", "::", node.ip, node.name, "127.0.0.1", "localhost"):
            raise OSError(errno.EADDRNOTAVAIL, f"cannot bind {host!r} on virtual host {node.name}")
        key = (node.ip, port)
        if key in self.listeners:
            raise OSError(errno.EADDRINUSE, f"address {node.ip}:{port} already in use")
        sock = VListenSocket(node, port, backlog)
        self.listeners[key] = sock
        return sock

    def unlisten(self, sock: VListenSocket) -> None:
        key = (sock.node.ip, sock.port)
        if self.listeners.get(key) is sock:
            del self.listeners[key]

    def start_connect(self, sock: VSocket, addr: tuple[str, int]) -> None:
        self.stats["connects"] += 1
        target = self.node_at(addr[0])
        if target is None:
            # Nobody at that address: the SYN vanishes; only the connect timeout ends the attempt.
            return
        link = self.link(sock.node.name, target.name)
        self.at(self.clock.now() + self._delay(link), self._syn, sock, target, addr[1], link, SYN_RETRY)

    def _syn(self, sock: VSocket, target: VNode, port: int, link: Link, retry: float) -> None:
        if sock.closed or not sock.connecting:
            return
        now = self.clock.now()
        if link.blocked(now) or not target.up or not sock.node.up:
            # Lost; the client kernel retransmits with exponential backoff.
            self.stats["syn_lost"] += 1
            self.at(now + retry, self._syn, sock, target, port, link, retry * 2)
            return
        listener = self.listeners.get((target.ip, port))
        back = now + self._delay(link)
        if listener is None or len(listener.queue) >= listener.backlog:
            self.stats["refused"] += 1
            self.at(back, self._refused, sock)
            return
        server = VSocket(target)
        server.local = (target.ip, port)
        server.remote = sock.local
        conn_id = self._next_conn
        self._next_conn += 1
        sock.conn_id = server.conn_id = conn_id
        sock.peer, server.peer = server, sock
        sock.out = Pipe(conn_id * 2, sock, server, link)
        server.out = Pipe(conn_id * 2 + 1, server, sock, link)
        server.connected = True
        self.connections[conn_id] = (sock, server)
        listener.queue.append(server)
        listener.node.poller.touch(listener.fd)
        self.at(back, self._established, sock)

    def _established(self, sock: VSocket) -> None:
        if sock.closed:
            return
        sock.connecting = False
        sock.connected = True
        sock.touch()

    def _refused(self, sock: VSocket) -> None:
        if sock.closed:
            return
        sock.connecting = False
        sock.error = errno.ECONNREFUSED
        sock.touch()

    # -- data ------------------------------------------------------------------------------

    def transmit(self, pipe: Pipe, data: bytes) -> None:
        """Queue ``data`` on ``pipe``, cut into segments that arrive in order, each after a delay."""
        rng = self.rng
        link = pipe.link
        now = self.clock.now()
        self.stats["bytes"] += len(data)
        pieces: list[bytes]
        if len(data) > 1 and rng.random() < link.config.split:
            cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.randint(1, 3))})
            pieces = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        else:
            pieces = [data]
        for piece in pieces:
            t = max(now + self._delay(link), pipe.last_t)
            pipe.last_t = t
            pipe.in_flight.append((t, piece))
            self.stats["segments"] += 1
            self.at(t, self._arrive, pipe)

    def transmit_fin(self, pipe: Pipe) -> None:
        if pipe.fin_queued:
            return
        pipe.fin_queued = True
        t = max(self.clock.now() + self._delay(pipe.link), pipe.last_t)
        pipe.last_t = t
        pipe.in_flight.append((t, None))
        self.at(t, self._arrive, pipe)

    def _arrive(self, pipe: Pipe) -> None:
        now = self.clock.now()
        link = pipe.link
        src, dst = pipe.src, pipe.dst
        if not pipe.in_flight:
            return
        if link.blocked(now) or not src.node.up or not dst.node.up:
            link.waiting[pipe.key] = pipe
            return
        if dst.reset:
            pipe.in_flight.clear()
            return
        touched = False
        while pipe.in_flight and pipe.in_flight[0][0] <= now:
            _, data = pipe.in_flight.popleft()
            if dst.closed:
                # The receiving process has closed its socket: its kernel answers with RST.
                if data is not None:
                    pipe.in_flight.clear()
                    self.reset_socket(src)
                    return
                continue
            if data is None:
                dst.fin_received = True
            else:
                dst.rcvbuf.append(data)
                dst.rcv_bytes += len(data)
            touched = True
        if touched:
            dst.touch()

    def read_size(self, capacity: int, available: int) -> int:
        """How much one recv returns: usually all that arrived (merged), sometimes less."""
        n = min(capacity, available)
        if n > 1 and self.rng.random() < 0.1:
            return self.rng.randint(1, n)
        return n

    # -- faults ---------------------------------------------------------------------------

    def block(self, a: str, b: str, until: float) -> None:
        """Stall (finite ``until``) or partition (``INF``) the link between two nodes."""
        link = self.link(a, b)
        link.blocked_until = max(link.blocked_until, until)
        if until != INF:
            self.at(until, self._heal_check, link)

    def heal(self, a: str, b: str) -> None:
        link = self.link(a, b)
        link.blocked_until = 0.0
        self._release(link)

    def _heal_check(self, link: Link) -> None:
        if not link.blocked(self.clock.now()):
            self._release(link)

    def _release(self, link: Link) -> None:
        """Held segments resume in order, each after a fresh delay (retransmission)."""
        now = self.clock.now()
        waiting = list(link.waiting.values())
        link.waiting.clear()
        for pipe in waiting:
            prev = now
            retimed: deque[tuple[float, bytes | None]] = deque()
            for t, data in pipe.in_flight:
                prev = max(t, prev, now + self._delay(link))
                retimed.append((prev, data))
            pipe.in_flight = retimed
            pipe.last_t = max(pipe.last_t, prev)
            for t, _ in retimed:
                self.at(t, self._arrive, pipe)

    def reset_socket(self, sock: VSocket) -> None:
        if sock.reset or sock.closed:
            return
        self.stats["resets"] += 1
        sock.reset = True
        sock.rcvbuf.clear()
        sock.rcv_bytes = 0
        if sock.out is not None:
            sock.out.in_flight.clear()
        sock.touch()

    def reset_connection(self, conn_id: int) -> None:
        pair = self.connections.get(conn_id)
        if pair is not None:
            for sock in pair:
                self.reset_socket(sock)

    def half_close(self, sock: VSocket) -> None:
        """The peer of ``sock`` stops sending: ``sock`` reads EOF after what is in flight."""
        peer = sock.peer
        if peer is not None and peer.out is not None and not peer.closed:
            peer.write_shut = True
            self.transmit_fin(peer.out)

    def kill_process(self, node: VNode) -> None:
        """The node's process died: its kernel closes every socket (peers see FIN)."""
        for fd in sorted(node.fds):
            obj = node.fds.get(fd)
            if obj is not None:
                obj.close()
        node.fds.clear()

    def power_off(self, node: VNode) -> None:
        """The host vanished: no FIN, no RST; peers hear nothing until the host returns."""
        node.up = False
        for fd in sorted(node.fds):
            obj = node.fds.get(fd)
            if isinstance(obj, VSocket):
                obj.closed = True
                self.forget(obj)
            elif obj is not None:
                obj.close()
        node.fds.clear()

    def power_on(self, node: VNode) -> None:
        """Back up with no sockets; segments for its old connections are answered with RST."""
        node.up = True
        for link in list(self.links.values()):
            if node.name in (link.a, link.b):
                self._release(link)

    def forget(self, sock: VSocket) -> None:
        pair = self.connections.get(sock.conn_id)
        if pair is not None and pair[0].closed and pair[1].closed:
            del self.connections[sock.conn_id]

    def connections_of(self, a: str, b: str | None = None) -> list[tuple[VSocket, VSocket]]:
        """Open connections between node ``a`` and ``b`` (any peer when ``b`` is None), oldest first."""
        out = []
        for conn_id in sorted(self.connections):
            x, y = self.connections[conn_id]
            names = {x.node.name, y.node.name}
            if a in names and (b is None or b in names):
                out.append((x, y))
        return out
