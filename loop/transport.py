"""Buffered, non-blocking stream transport (the analogue of PgBouncer's sbuf).

Writes never touch the socket directly.  They are appended to an outbox and
the transport is marked dirty; the reactor flushes every dirty transport once
at the end of its pass.  Many small protocol messages produced while handling
one batch of events thus leave in a single ``sendmsg`` scatter/gather call.
Epoll WRITE interest exists only while the kernel refused part of the outbox,
and interest is reconciled lazily (once per pass, only when it changed), so a
plain request/response exchange performs no ``epoll_ctl`` at all.
"""

from __future__ import annotations

import socket
import typing
from typing import TYPE_CHECKING, Any, Final

from loop.poller import READ, WRITE
from loop.protocol import Protocol

if TYPE_CHECKING:
    from loop.reactor import Reactor

#: Max buffers per sendmsg; well under IOV_MAX (1024 on Linux) while already
#: amortising the syscall over plenty of small messages.
IOV_CAP: Final = 64
DEFAULT_HIGH_WATER: Final = 256 * 1024

# Typed Any so that compiled code keeps it as the object it is: as an int, it was boxed anew
# (16384 is no cached small int) for every send.
_MSG_NOSIGNAL: Final[Any] = getattr(socket, "MSG_NOSIGNAL", 0)

Buffer = bytes | bytearray | memoryview


class Stream(typing.Protocol):
    """What a connection's owner writes to and steers: the socket's transport, or TLS spliced
    over it (pgdog_ev.tls), or a replay's stand-in."""

    def write(self, data: Buffer) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def is_closing(self) -> bool: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_reading(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...


class Transport(Stream, typing.Protocol):
    """What the proxy (and the reactor) may rely on; the simulator implements it virtually."""

    def write_eof(self) -> None: ...

    def set_write_buffer_limits(self, high: int = DEFAULT_HIGH_WATER, low: int | None = None) -> None: ...

    def set_protocol(self, protocol: Protocol) -> None: ...

    def get_protocol(self) -> Protocol: ...

    def fileno(self) -> int: ...

    def flush(self) -> None:
        """Called by the reactor once per pass for each transport marked dirty."""
        ...


_UNKNOWN: Final[Any] = object()


def _address(getter: typing.Callable[[], Any]) -> Any:
    try:
        return getter()
    except OSError:
        return None


class SocketTransport:
    """A connected non-blocking stream socket registered with the reactor's poller."""

    __slots__ = (
        "_closed",
        "_closing",
        "_dirty",
        "_dirty_list",
        "_eof_requested",
        "_eof_sent",
        "_fd",
        "_high",
        "_interest",
        "_low",
        "_outbox",
        "_outbox_size",
        "_protocol",
        "_reactor",
        "_read_size",
        "_reading",
        "_rec",
        "_rview",
        "_sock",
        "_sockname",
        "_stats",
        "_write_paused",
        "peername",
    )

    def __init__(
        self,
        reactor: Reactor,
        sock: socket.socket,
        protocol: Protocol,
        read_buffer_size: int | None = None,
    ) -> None:
        sock.setblocking(False)
        self._reactor = reactor
        self._stats = reactor.stats
        self._dirty_list = reactor._dirty
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._read_size = read_buffer_size or reactor.read_buffer_size
        self._rview: memoryview | None = None
        self._outbox: list[bytes | memoryview] = []
        self._outbox_size = 0
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._write_paused = False
        self._reading = True
        self._interest = READ
        self._dirty = False
        self._closing = False
        self._closed = False
        self._eof_requested = False
        self._eof_sent = False
        # An input capture's hooks, read once (loop.recorder); None in normal operation.
        self._rec = reactor.recorder
        self.peername: Any = _address(sock.getpeername)
        # Asked for rarely (admin, tests): fetched on first use, not kept per connection.
        self._sockname: Any = _UNKNOWN
        reactor._poller.register(self._fd, READ, self)
        self._stats.registers += 1

    @property
    def sockname(self) -> Any:
        if self._sockname is _UNKNOWN:
            self._sockname = None if self._closed else _address(self._sock.getsockname)
        return self._sockname

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return f"<SocketTransport fd={self._fd} {state} peer={self.peername!r}>"

    # -- writing ---------------------------------------------------------------

    def write(self, data: Buffer) -> None:
        if self._closing or self._eof_requested or not data:
            return
        if type(data) is not bytes:
            # Views may point into a reused receive buffer and bytearrays may
            # be mutated by the caller after we return: own a copy.
            data = bytes(data)
        self._outbox.append(data)
        self._outbox_size += len(data)
        # While waiting for EPOLLOUT the kernel buffer is known to be full:
        # an end-of-pass send attempt would only return EAGAIN.
        if not self._dirty and not self._interest & WRITE:
            self._dirty = True
            self._dirty_list.append(self)
        if self._outbox_size > self._high and not self._write_paused:
            self._pause_writing()

    def write_eof(self) -> None:
        """Half-close: send FIN once everything already written has left."""
        if self._closing or self._eof_requested:
            return
        self._eof_requested = True
        if not self._outbox:
            self._shutdown_write()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._outbox_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int = DEFAULT_HIGH_WATER, low: int | None = None) -> None:
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low ({low}) <= high ({high})")
        self._high = high
        self._low = low
        if self._outbox_size > high and not self._write_paused:
            self._pause_writing()
        else:
            self._maybe_resume_writing()

    def flush(self) -> None:
        """End-of-pass hook: send what is queued, then reconcile poller interest."""
        self._dirty = False
        if self._closed:
            return
        if self._outbox and not self._interest & WRITE:
            self._send()
            if self._closed:
                return
        self._sync_interest()

    def _send(self) -> None:
        outbox = self._outbox
        sock = self._sock
        stats = self._stats
        while outbox:
            count = len(outbox)
            try:
                if count == 1:
                    sent = sock.send(outbox[0], _MSG_NOSIGNAL)
                else:
                    bufs = outbox if count <= IOV_CAP else outbox[:IOV_CAP]
                    sent = sock.sendmsg(bufs, (), _MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._fatal(exc)
                return
            stats.sends += 1
            self._outbox_size -= sent
            i = 0
            partial = False
            while sent:
                size = len(outbox[i])
                if sent >= size:
                    sent -= size
                    i += 1
                else:
                    outbox[i] = memoryview(outbox[i])[sent:]
                    partial = True
                    break
            del outbox[:i]
            if partial:
                # Kernel buffer is full; retrying now would just hit EAGAIN.
                break
        if self._write_paused:
            self._maybe_resume_writing()
        if not outbox:
            if self._eof_requested and not self._eof_sent:
                self._shutdown_write()
            if self._closing and not self._closed:
                if self._rec is not None:
                    self._rec.on_closed(self)
                self._finalize(None)

    def _pause_writing(self) -> None:
        self._write_paused = True
        try:
            self._protocol.pause_writing()
        except Exception as exc:
            self._reactor.handle_exception(exc, f"{self!r} protocol.pause_writing")

    def _maybe_resume_writing(self) -> None:
        if self._write_paused and self._outbox_size <= self._low:
            self._write_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._reactor.handle_exception(exc, f"{self!r} protocol.resume_writing")

    def _shutdown_write(self) -> None:
        self._eof_sent = True
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal(exc)

    # -- reading ---------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop delivering data; unread bytes stay in the kernel (TCP backpressure to the peer)."""
        if self._reading:
            self._reading = False
            self._mark_dirty()

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._mark_dirty()

    def is_reading(self) -> bool:
        return self._reading

    def _mark_dirty(self) -> None:
        # Interest is reconciled at end of pass so pause/resume pairs within
        # one pass cost no epoll_ctl; self._reading already gates delivery.
        if not self._dirty and not self._closed:
            self._dirty = True
            self._dirty_list.append(self)

    def _sync_interest(self) -> None:
        want = (READ if self._reading else 0) | (WRITE if self._outbox else 0)
        if want != self._interest:
            self._interest = want
            self._reactor._poller.modify(self._fd, want, self)
            self._stats.modifies += 1

    def on_events(self, events: int) -> None:
        if events & READ and self._reading:
            self._read()
        if events & WRITE and self._interest & WRITE and not self._closed:
            self._send()
            if not self._closed:
                self._sync_interest()

    def _read(self) -> None:
        view = self._rview
        if view is None:
            view = self._rview = self._reactor._read_buffer(self._read_size)
        try:
            n = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        self._stats.reads += 1
        if n:
            data = view[:n]
            if self._rec is not None:
                self._rec.on_read(self, data)
            try:
                self._protocol.data_received(data)
            except Exception as exc:
                self._protocol_error(exc, "data_received")
            data.release()
        else:
            self._reading = False
            if self._rec is not None:
                self._rec.on_eof(self)
            try:
                self._protocol.eof_received()
            except Exception as exc:
                self._protocol_error(exc, "eof_received")
                return
            self.close()

    def _protocol_error(self, exc: Exception, where: str) -> None:
        # A protocol that raised has unknown state; keeping the connection
        # would risk desynchronised streams, so report and drop it.
        self._reactor.handle_exception(exc, f"{self!r} protocol.{where}")
        self.abort()

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, flush the outbox, then close; connection_lost(None) follows from the loop."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if self._outbox:
            self._mark_dirty()
        else:
            self._finalize(None)

    def abort(self) -> None:
        """Close immediately, discarding unsent data."""
        if self._closed:
            return
        self._closing = True
        self._reading = False
        self._outbox.clear()
        self._outbox_size = 0
        self._finalize(None)

    def is_closing(self) -> bool:
        return self._closing

    def _fatal(self, exc: Exception) -> None:
        if self._rec is not None and not self._closed:
            self._rec.on_error(self, exc)
        self._closing = True
        self._reading = False
        self._outbox.clear()
        self._outbox_size = 0
        self._finalize(exc)

    def _finalize(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._interest = 0
        try:
            self._reactor._poller.unregister(self._fd)
        except (KeyError, OSError, ValueError):
            pass
        self._sock.close()
        # Always deferred: close() is typically called from inside a protocol
        # callback, and connection_lost must not re-enter it.
        self._reactor.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        protocol = self._protocol
        self._rview = None
        protocol.connection_lost(exc)

    # -- misc ------------------------------------------------------------------

    def set_protocol(self, protocol: Protocol) -> None:
        """Re-target events (e.g. a server connection moving between clients)."""
        self._protocol = protocol

    def get_protocol(self) -> Protocol:
        return self._protocol

    def fileno(self) -> int:
        return -1 if self._closed else self._fd

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return None if self._closed else self._sock
        if name == "peername":
            return self.peername
        if name == "sockname":
            return self.sockname
        return default


def write_to(stream: Stream | None, data: Buffer) -> None:
    """``stream.write(data)`` unless there is none. A socket's own transport (every
    connection without TLS) is tested for first so that, compiled, the call is direct rather
    than a method looked up on the object at every write."""
    if isinstance(stream, SocketTransport):  # noqa: SIM114 (compiled, this branch's call is direct)
        stream.write(data)
    elif stream is not None:
        stream.write(data)
