"""The event loop: all scheduling policy lives here.

One pass of ``run_once`` is: poll for IO (blocking no longer than the next
timer or not at all if work is queued), dispatch IO handlers, fire due
timers, run queued callbacks, then flush every transport written to during
the pass.  The Clock, the Poller and the transports are pluggable so the
deterministic simulator drives exactly this code with virtual time and a
virtual network.
"""

from __future__ import annotations

import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any, Final

from mypy_extensions import mypyc_attr

from loop.clock import Clock, MonotonicClock
from loop.connector import ConnectCallback, Connector
from loop.listener import AcceptCallback, Listener
from loop.poller import EpollPoller, Poller
from loop.protocol import Protocol
from loop.recorder import Recorder
from loop.signals import SignalDispatcher
from loop.sockets import SocketApi, SystemSockets
from loop.timers import TimerHandle, TimerHeap
from loop.transport import SocketTransport, Transport

DEFAULT_READ_BUFFER_SIZE = 64 * 1024

# Where an owner (the daemon) has the loop report exceptions and accept starvation.
ExceptionSink = Callable[[BaseException, str], None]
StarvationSink = Callable[[OSError | None, str], None]


# ReactorStats' counters, listed here: a compiled class has no __slots__ to read at run time.
STATS_FIELDS: Final = (
    "accepts", "callbacks", "exceptions", "modifies", "passes", "reads", "registers", "sends", "timers",
)  # fmt: skip


class ReactorStats:
    """Plain counters (attributes, not a dict) cheap enough to bump on the hot path.

    Benchmarks and tests assert on them, e.g. ``modifies`` staying flat proves
    there is no epoll_ctl churn and ``sends`` proves write coalescing.
    """

    __slots__ = STATS_FIELDS

    def __init__(self) -> None:
        self.passes = 0
        self.reads = 0
        self.sends = 0
        self.modifies = 0
        self.registers = 0
        self.accepts = 0
        self.timers = 0
        self.callbacks = 0
        self.exceptions = 0

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in STATS_FIELDS}

    def __repr__(self) -> str:
        return f"ReactorStats({self.snapshot()})"


# Compiled (pgdog_ev.native); the simulator's, the replay's and the tests' reactors subclass it.
@mypyc_attr(allow_interpreted_subclasses=True)
class Reactor:
    """Single-threaded event loop; nothing here is thread-safe."""

    def __init__(
        self,
        clock: Clock | None = None,
        poller: Poller | None = None,
        read_buffer_size: int = DEFAULT_READ_BUFFER_SIZE,
        sockets: SocketApi | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._poller: Poller = poller if poller is not None else EpollPoller()
        self.sockets: SocketApi = sockets if sockets is not None else SystemSockets()
        self.read_buffer_size = read_buffer_size
        self.stats = ReactorStats()
        self._timers = TimerHeap()
        self._ready: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        # Transports with queued output or a pending interest change.  The
        # list object is never replaced: transports keep a reference to it.
        # Socket transports to flush at the end of the pass (typed so the calls are native).
        self._dirty: list[SocketTransport] = []
        self._read_buffers: dict[int, memoryview] = {}
        self._signals: SignalDispatcher | None = None
        self._stopping = False
        self._running = False
        self._closed = False
        # An input capture's hooks (loop.recorder); None unless one runs. Install it before the
        # transports it should see: they read it once, when they are made.
        self.recorder: Recorder | None = None
        self._connects = 0
        # The owner's reporters (None: print to stderr). Attributes rather than methods to
        # replace: a compiled class's methods cannot be reassigned on an instance.
        self.exception_sink: ExceptionSink | None = None
        self.starvation_sink: StarvationSink | None = None

    @property
    def poller(self) -> Poller:
        return self._poller

    # -- time and scheduling ---------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` in this pass's callback phase (or the next pass if called from it)."""
        self._ready.append((callback, args))

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._timers.push(when, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._timers.push(self.clock.now() + delay, callback, *args)

    def has_pending(self) -> bool:
        """Callbacks or flushes are queued: the next pass must not block."""
        return bool(self._ready or self._dirty)

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due (None without timers)."""
        return self._timers.next_deadline()

    def _read_buffer(self, size: int) -> memoryview:
        # One receive buffer per size for the whole reactor: data_received
        # views are only valid during the call, so reads never overlap.
        view = self._read_buffers.get(size)
        if view is None:
            view = self._read_buffers[size] = memoryview(bytearray(size))
        return view

    # -- networking ------------------------------------------------------------

    def listen(
        self,
        host: str | None,
        port: int,
        on_accept: AcceptCallback,
        backlog: int = 1024,
        reuse_port: bool = False,
    ) -> Listener:
        return Listener(self, host, port, on_accept, backlog=backlog, reuse_port=reuse_port)

    def connect(
        self,
        host: str,
        port: int,
        on_done: ConnectCallback,
        timeout: float | None = None,
        tag: Any = None,
    ) -> Connector:
        """``tag`` is the caller's name for the connection (opaque here; an input capture records it)."""
        connector = Connector(self, host, port, on_done)
        self._connects += 1
        connector.seq = self._connects
        connector.tag = tag
        connector.start(timeout)
        return connector

    def transport(
        self,
        sock: socket.socket,
        protocol: Protocol,
        read_buffer_size: int | None = None,
    ) -> Transport:
        """Wrap a connected socket; ``protocol.connection_made`` runs before this returns.

        Typed by the protocol, not the class: the replay's reactor returns its own transports,
        and a compiled caller checks what it gets against the declared type."""
        transport = SocketTransport(self, sock, protocol, read_buffer_size)
        try:
            protocol.connection_made(transport)
        except Exception as exc:
            self.handle_exception(exc, f"{transport!r} protocol.connection_made")
            transport.abort()
        return transport

    # -- signals ---------------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` from the loop when ``signum`` arrives (main thread only)."""
        if self._signals is None:
            self._signals = SignalDispatcher(self)
        self._signals.add(signum, callback, *args)

    def remove_signal_handler(self, signum: int) -> bool:
        if self._signals is None:
            return False
        return self._signals.remove(signum)

    # -- running ---------------------------------------------------------------

    def run_once(self, timeout: float | None = None) -> None:
        """One pass; ``timeout`` caps how long to block in poll (None: until a timer or IO)."""
        stats = self.stats
        stats.passes += 1
        timers = self._timers
        clock = self.clock
        recorder = self.recorder
        if recorder is not None:
            recorder.on_pass()
        if self._ready or self._dirty:
            wait: float | None = 0.0
        else:
            wait = timeout
            deadline = timers.next_deadline()
            if deadline is not None:
                until = deadline - clock.now()
                if until < 0.0:
                    until = 0.0
                if wait is None or until < wait:
                    wait = until
        events = self._poller.poll(wait)
        for handler, ev in events:
            try:
                if isinstance(handler, SocketTransport):
                    handler.on_events(ev)  # the usual handler, called natively once compiled
                else:
                    handler.on_events(ev)
            except Exception as exc:
                self.handle_exception(exc, f"IO handler {handler!r}")

        if timers:
            if recorder is not None:
                recorder.on_timers()
            for handle in timers.pop_due(clock.now()):
                # A timer earlier in this batch may have cancelled a later one.
                if handle.cancelled:
                    continue
                stats.timers += 1
                if recorder is not None:
                    recorder.on_timer(handle)
                callback = handle.callback
                try:
                    callback(*handle.args)  # type: ignore[misc]
                except Exception as exc:
                    self.handle_exception(exc, f"timer {callback!r}")

        ready = self._ready
        if ready:
            # Callbacks queued from here on run next pass: a callback that
            # reschedules itself cannot starve IO.
            self._ready = []
            stats.callbacks += len(ready)
            if recorder is not None:
                recorder.on_callbacks(len(ready))
            for callback, args in ready:
                try:
                    callback(*args)
                except Exception as exc:
                    self.handle_exception(exc, f"callback {callback!r}")

        dirty = self._dirty
        if dirty:
            # Index loop: a flush may dirty more transports (e.g. resume_writing
            # resuming a peer), which are then handled in this same pass.
            i = 0
            while i < len(dirty):
                transport = dirty[i]
                i += 1
                try:
                    transport.flush()
                except Exception as exc:
                    self.handle_exception(exc, f"flush {transport!r}")
            dirty.clear()

    def run_forever(self) -> None:
        if self._running:
            raise RuntimeError("reactor is already running")
        self._running = True
        self._stopping = False
        try:
            run_once = self.run_once
            while not self._stopping:
                run_once()
        finally:
            self._running = False
            self._stopping = False

    def run_until(self, predicate: Callable[[], object], timeout: float | None = None) -> bool:
        """Drive passes until ``predicate()`` holds or ``timeout`` (clock seconds) elapses.

        Returns whether the predicate held; handy for tests and for shutdown drains.
        """
        clock = self.clock
        deadline = None if timeout is None else clock.now() + timeout
        while not predicate():
            if deadline is None:
                self.run_once()
                continue
            left = deadline - clock.now()
            if left <= 0:
                return bool(predicate())
            self.run_once(left)
        return True

    def stop(self) -> None:
        """Make ``run_forever`` return after the current pass."""
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Restore signal handling and release the poller; transports are the owner's job."""
        if self._closed:
            return
        if self._running:
            raise RuntimeError("cannot close a running reactor")
        self._closed = True
        if self._signals is not None:
            self._signals.close()
            self._signals = None
        self._poller.close()
        self._ready.clear()
        self._dirty.clear()
        self._timers = TimerHeap()
        self._read_buffers.clear()

    def __enter__(self) -> Reactor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- errors ----------------------------------------------------------------

    def handle_exception(self, exc: BaseException, context: str) -> None:
        """Sink for every exception raised by callbacks; the loop keeps running."""
        self.stats.exceptions += 1
        sink = self.exception_sink
        if sink is not None:
            sink(exc, context)
            return
        print(f"loop: exception in {context}", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)

    def handle_starvation(self, exc: OSError | None, context: str) -> None:
        """A listener ran out of descriptors or memory (``exc``) and pauses accepting, or (None)
        accepts again. Not a bug but the load: the owner warns the operator, once per episode."""
        sink = self.starvation_sink
        if sink is not None:
            sink(exc, context)
        elif exc is not None:
            print(f"loop: {context} cannot accept: {exc.strerror}; accepting paused", file=sys.stderr)
        else:
            print(f"loop: {context} accepting again", file=sys.stderr)
