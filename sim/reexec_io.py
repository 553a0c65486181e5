"""The loop of a re-execution: the production Reactor with no sockets and no free-running time.

:class:`ReplayReactor` is ``loop.reactor.Reactor`` on a :class:`~loop.clock.ManualClock` whose
``listen``, ``connect`` and ``transport`` are replaced: nothing touches the network, connections
complete only when a captured ``CONNECT`` says so, and transports record what is written and
otherwise behave as ``SocketTransport`` does towards their protocol (``close()`` queues
``connection_lost(None)``, at once or when the captured ``CLOSED`` says the output was flushed).
Timers never fire on their own: :meth:`ReplayReactor.fire_timer` runs the one a captured
``TIMER`` names, and :meth:`ReplayReactor.run_callbacks` runs the queued callbacks at a captured
callback point. The driver (:mod:`sim.reexecute`) calls these in the order of the capture.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loop.clock import ManualClock
from loop.poller import EventHandler
from loop.protocol import Protocol
from loop.reactor import Reactor
from loop.timers import TimerHandle
from pgdog_ev.capture.format import CONNECT_DEFERRED, CONNECT_TIMEOUT, CONNECT_TIMER

if TYPE_CHECKING:
    from sim.reexecute import Reexecution

#: Drop cancelled timers from the index after this many new ones.
_PRUNE_EVERY = 8192


class NullPoller:
    """Nothing is ever ready: inputs come from the capture."""

    def register(self, fd: int, events: int, handler: EventHandler) -> None:
        return None

    def modify(self, fd: int, events: int, handler: EventHandler) -> None:
        return None

    def unregister(self, fd: int) -> None:
        return None

    def poll(self, timeout: float | None) -> list[tuple[EventHandler, int]]:
        return []

    def close(self) -> None:
        return None


class FakeSocket:
    """Stands for the socket of an accepted or connected connection; only closed, never used."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"<FakeSocket {self.label}>"


class ReplayListener:
    def __init__(self, port: int | None) -> None:
        self.port = port
        self.path: str | None = None
        self.closed = False

    def close(self) -> None:
        self.closed = True


class ReplayTransport:
    """A connection's transport during re-execution, keyed as the capture names it."""

    def __init__(self, reactor: ReplayReactor, key: tuple[int, int] | None, protocol: Protocol) -> None:
        self._reactor = reactor
        self.key = key
        self._protocol = protocol
        self._closing = False
        self._closed = False
        self._reading = True
        self.bytes_out = 0
        self.writes = 0
        self.peername: Any = ("replay", key[1] if key else 0)
        self.sockname: Any = ("replay", 0)

    def __repr__(self) -> str:
        return f"<ReplayTransport {self.key} {'closed' if self._closed else 'open'}>"

    # -- what the protocol may call ---------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self.writes += 1
        self.bytes_out += len(data)

    def write_eof(self) -> None:
        return None

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._reading = False
        # In the captured run this close waited for its output when a CLOSED (or an ERROR while
        # flushing) follows for the connection; otherwise it completed at once.
        if self.key is not None and self._reactor.driver.close_is_deferred(self.key):
            return
        self._finalize(None)

    def abort(self) -> None:
        if self._closed:
            return
        self._closing = True
        self._reading = False
        self._finalize(None)

    def is_closing(self) -> bool:
        return self._closing

    @property
    def closed(self) -> bool:
        return self._closed

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._closing:
            self._reading = True

    def is_reading(self) -> bool:
        return self._reading

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 0, 0

    def set_write_buffer_limits(self, high: int = 0, low: int | None = None) -> None:
        return None

    def set_protocol(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Protocol:
        return self._protocol

    def fileno(self) -> int:
        return -1 if self._closed else 1000 + (self.key[1] if self.key else 0)

    def flush(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peername
        if name == "sockname":
            return self.sockname
        return default

    # -- captured inputs --------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            self._protocol.data_received(view)
        except Exception as exc:
            self._reactor.handle_exception(exc, f"{self!r} protocol.data_received")
            self.abort()
        view.release()

    def feed_eof(self) -> None:
        self._reading = False
        try:
            self._protocol.eof_received()
        except Exception as exc:
            self._reactor.handle_exception(exc, f"{self!r} protocol.eof_received")
            self.abort()
            return
        self.close()

    def feed_error(self, exc: Exception) -> None:
        self._closing = True
        self._reading = False
        self._finalize(exc)

    def feed_closed(self) -> None:
        self._finalize(None)

    def _finalize(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._reactor.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        self._protocol.connection_lost(exc)


class ReplayConnector:
    """An outbound connect that completes when the capture says it did."""

    def __init__(self, reactor: ReplayReactor, seq: int, on_done: Callable[..., None]) -> None:
        self._reactor = reactor
        self.seq = seq
        self._on_done: Callable[..., None] | None = on_done
        self._timer: TimerHandle | None = None
        self._done = False
        self.tag: Any = None

    def start(self, timeout: float | None) -> None:
        reactor = self._reactor
        found = reactor.driver.connect_result(self.seq)
        if found is not None and found[1] & CONNECT_DEFERRED:
            # It completed inside Reactor.connect in the captured run: the result goes through the
            # callback queue, after the timer it may have armed and cancelled.
            code, flags = found
            if timeout is not None and flags & CONNECT_TIMER:
                reactor.call_later(timeout, self._on_timeout).cancel()
            self._done = True
            reactor.call_soon(self._deliver, code, flags)
            return
        if timeout is not None:
            self._timer = reactor.call_later(timeout, self._on_timeout)

    def complete(self, code: int, flags: int) -> bool:
        """A captured CONNECT arrived; False if this connect was already over."""
        if self._done:
            return False
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deliver(code, flags)
        return True

    def _on_timeout(self) -> None:
        self._timer = None
        if self._done:
            return
        self._done = True
        self._deliver(errno_mod.ETIMEDOUT, CONNECT_TIMEOUT)

    def _deliver(self, code: int, flags: int) -> None:
        on_done = self._on_done
        self._on_done = None
        if on_done is None:
            return
        if code == 0:
            on_done(FakeSocket(f"connect#{self.seq}"), None)
        elif flags & CONNECT_TIMEOUT:
            on_done(None, TimeoutError(f"connect #{self.seq} timed out"))
        else:
            on_done(None, OSError(code, os.strerror(code)))

    def cancel(self) -> None:
        self._on_done = None
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def done(self) -> bool:
        return self._done


class ReplayReactor(Reactor):
    def __init__(self, driver: Reexecution, start: float) -> None:
        self.manual = ManualClock(start)
        super().__init__(clock=self.manual, poller=NullPoller())
        self.driver = driver
        self.listen_port: int | None = None
        self.listeners: list[ReplayListener] = []
        self.signal_handlers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self.transports: dict[tuple[int, int], ReplayTransport] = {}
        self.connectors: dict[int, ReplayConnector] = {}
        self._seq = 0
        self._live: dict[int, TimerHandle] = {}
        self._by_when: dict[float, list[TimerHandle]] = {}
        self._since_prune = 0
        self.drift = 0
        self.timers_fired = 0
        self.timers_unmatched = 0
        self.callbacks_run = 0

    # -- time ---------------------------------------------------------------------------------

    def set_time(self, t: float) -> None:
        if t > self.manual.now():
            self.manual.set(t)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        # Numbered like TimerHeap.push, but kept in an index instead of a heap: only the capture
        # decides when a timer fires.
        handle = TimerHandle(when, callback, args)
        self._seq += 1
        handle.seq = self._seq
        self._live[handle.seq] = handle
        self._by_when.setdefault(when, []).append(handle)
        self._since_prune += 1
        if self._since_prune >= _PRUNE_EVERY:
            self._prune()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(self.clock.now() + delay, callback, *args)

    def next_deadline(self) -> float | None:
        return None

    def _prune(self) -> None:
        self._since_prune = 0
        self._live = {seq: h for seq, h in self._live.items() if not h.cancelled}
        by_when: dict[float, list[TimerHandle]] = {}
        for h in self._live.values():
            by_when.setdefault(h.when, []).append(h)
        self._by_when = by_when

    def _forget(self, handle: TimerHandle) -> None:
        self._live.pop(handle.seq, None)
        same = self._by_when.get(handle.when)
        if same is not None:
            try:
                same.remove(handle)
            except ValueError:
                pass
            if not same:
                del self._by_when[handle.when]

    def find_timer(self, seq: int, when: float) -> TimerHandle | None:
        """The live timer the captured firing (``seq``, ``when``) names.

        Timers armed by parts that do not run here (the metrics endpoint, systemd pings) numbered
        the captured run's timers higher; ``drift`` is that offset so far. A timer with the same
        deadline and the expected number wins, else the oldest live one with that deadline."""
        handle = self._live.get(seq - self.drift)
        if handle is None or handle.cancelled or handle.when != when:
            handle = None
            for candidate in self._by_when.get(when, ()):
                if not candidate.cancelled:
                    handle = candidate
                    break
        if handle is not None:
            self.drift = seq - handle.seq
        return handle

    def fire_timer(self, seq: int, when: float) -> bool:
        handle = self.find_timer(seq, when)
        if handle is None:
            self.timers_unmatched += 1
            return False
        self._forget(handle)
        callback = handle.callback
        args = handle.args
        # Fired: as TimerHeap.pop_due does, a late cancel() is then harmless.
        handle._heap = None
        self.timers_fired += 1
        self.stats.timers += 1
        try:
            callback(*args)  # type: ignore[misc]
        except Exception as exc:
            self.handle_exception(exc, f"timer {callback!r}")
        return True

    def run_callbacks(self) -> int:
        """The callback phase of one pass: what is queued now runs; what it queues waits."""
        ready = self._ready
        if not ready:
            return 0
        self._ready = []
        self.stats.callbacks += len(ready)
        self.callbacks_run += len(ready)
        for callback, args in ready:
            try:
                callback(*args)
            except Exception as exc:
                self.handle_exception(exc, f"callback {callback!r}")
        return len(ready)

    # -- networking ---------------------------------------------------------------------------

    def listen(self, host: str | None, port: int, on_accept: Any, backlog: int = 1024,
               reuse_port: bool = False) -> ReplayListener:  # type: ignore[override]
        listener = ReplayListener(self.listen_port)
        self.listeners.append(listener)
        return listener

    def connect(self, host: str, port: int, on_done: Any, timeout: float | None = None,  # type: ignore[override]
                tag: Any = None) -> ReplayConnector:
        self._connects += 1
        connector = ReplayConnector(self, self._connects, on_done)
        connector.tag = tag
        self.connectors[connector.seq] = connector
        connector.start(timeout)
        return connector

    def transport(self, sock: Any, protocol: Protocol, read_buffer_size: int | None = None) -> ReplayTransport:  # type: ignore[override]
        key = getattr(protocol, "capture_id", None)
        transport = ReplayTransport(self, key, protocol)
        if key is not None:
            self.transports[key] = transport
        try:
            protocol.connection_made(transport)
        except Exception as exc:
            self.handle_exception(exc, f"{transport!r} protocol.connection_made")
            transport.abort()
        return transport

    # -- signals ------------------------------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callable[..., Any], *args: Any) -> None:
        self.signal_handlers[signum] = (callback, args)

    def remove_signal_handler(self, signum: int) -> bool:
        return self.signal_handlers.pop(signum, None) is not None

    def deliver_signal(self, signum: int) -> bool:
        entry = self.signal_handlers.get(signum)
        if entry is None:
            return False
        try:
            entry[0](*entry[1])
        except Exception as exc:
            self.handle_exception(exc, f"signal handler for {signum}")
        return True
