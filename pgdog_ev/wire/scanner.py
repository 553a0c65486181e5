"""Walk a typed-message byte stream without building an object per message.

The proxy forwards almost every byte it reads, and looks inside only a few
message types (ReadyForQuery, Terminate, Sync...). Like PgBouncer's sbuf, the
scanner reads just the 5-byte headers to find boundaries, streams the bodies of
uninteresting messages straight through as spans of the caller's buffer, and
buffers a body only for types the caller asked to read. A large DataRow or
CopyData therefore never sits whole in memory.

Each of the 256 type bytes has an action in a table:

* ``PASS``: forward (or drop, see ``forwarding``) without telling anyone;
* ``HEADER``: call ``on_header(type, length)`` once the header is known; its
  boolean result decides whether this message is forwarded; the body streams;
* ``BODY``: buffer the whole body, then call ``on_message(type, body)``; the
  callback forwards it itself (through the same sink) if it wants to, which
  lets it change where later bytes go before they are emitted.

``forwarding`` is the default for PASS messages; callbacks flip it to swallow
whole responses (e.g. those of a query the proxy injected).

An ``on_message`` callback may call ``suspend()``: ``feed`` then returns right
after that message with the number of bytes it consumed, so the caller can keep
the rest unread until it is ready for it (a client waiting for a server).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from pgdog_ev.wire import passrun
from pgdog_ev.wire._codec import u32_at
from pgdog_ev.wire.errors import PROGRAM_LIMIT_EXCEEDED, ProtocolViolation

PASS: Final = 0
HEADER: Final = 1
BODY: Final = 2

Sink = Callable[[memoryview], None]


def action_table(header: bytes = b"", body: bytes = b"") -> bytearray:
    """Build the 256-entry action table from the type bytes of each class."""
    table = bytearray(256)
    for t in header:
        table[t] = HEADER
    for t in body:
        table[t] = BODY
    return table


def _bad_length(mtype: int, length: int, max_len: int) -> ProtocolViolation:
    if length < 4:
        return ProtocolViolation(f"invalid message length {length} for message type {mtype!r}")
    return ProtocolViolation(
        f"message of {length - 4} bytes exceeds the limit of {max_len}", sqlstate=PROGRAM_LIMIT_EXCEEDED
    )


class MessageScanner:
    """Incremental message walker for one direction of one connection."""

    __slots__ = (
        "_body",
        "_hdr",
        "_remaining",
        "_suspended",
        "_type",
        "_want_body",
        "forward_current",
        "forwarding",
        "max_len",
        "on_header",
        "on_message",
        "sink",
        "skip",
        "skip_min",
        "small_chunk",
        "table",
    )

    def __init__(
        self,
        table: bytearray,
        sink: Sink,
        on_message: Callable[[int, memoryview], None],
        on_header: Callable[[int, int], bool] | None = None,
        max_len: int = 1 << 30,
    ) -> None:
        self.table = table
        self.sink = sink
        self.on_message = on_message
        self.on_header = on_header
        self.max_len = max_len
        self.forwarding = True
        # Partial header bytes carried over from the previous chunk.
        self._hdr = bytearray()
        # Body bytes of the current message still to come (streamed or buffered).
        self._remaining = 0
        self._type = 0
        self._want_body = False
        self._body = bytearray()
        # Whether the message currently streaming is being forwarded.
        self.forward_current = True
        self._suspended = False
        # Steps over runs of whole PASS messages (C when built); tests swap in the twin.
        self.skip: passrun.SkipPassed = passrun.skip_passed
        self.skip_min = passrun.C_THRESHOLD
        # last_after_passes copies a chunk this small and steps over it natively (0: never).
        self.small_chunk = passrun.SMALL_CHUNK

    def suspend(self) -> None:
        """Called from ``on_message``: stop this ``feed`` after the current message."""
        self._suspended = True

    def at_boundary(self) -> bool:
        """True when no message is partially read: a safe point to re-target."""
        return self._remaining == 0 and not self._hdr

    def mid_message(self) -> bool:
        """True when the head of a message went to the sink and the rest has not come: the peer
        holds half a message, so anything else sent to it now would be read as the rest."""
        return self._remaining > 0 and not self._want_body and self.forward_current

    def last_after_passes(self, data: memoryview, table: bytearray | None = None) -> int:
        """Where the last message of ``data`` starts, if it is the first one the table does
        not PASS, everything before it is whole PASS messages, and it ends exactly where
        ``data`` does, with nothing partly read before the chunk; else -1.

        The common reply (RowDescription, DataRows, CommandComplete, ReadyForQuery, all in one
        read) can then go out as one write with only its last message looked at, instead of a
        span, a callback and a second write. Only the caller knows whether that last message
        lets it (the server session checks for ReadyForQuery); if not, it calls ``feed``.
        ``table``, when given, replaces the scanner's own for this test: a caller may know that
        some HEADER types need no look at the moment."""
        if self._remaining or self._hdr:
            return -1
        n = len(data)
        if n <= self.small_chunk:
            raw = bytes(data)
            stop = passrun.skip_passed_bytes(raw, 0, n, self.table if table is None else table, self.max_len)
            if n - stop < 5:
                return -1
            return stop if stop + 1 + u32_at(raw, stop + 1) == n else -1
        stop = self.skip(data, 0, n, self.table if table is None else table, self.max_len)
        if n - stop < 5 or stop + 1 + int.from_bytes(data[stop + 1 : stop + 5], "big") != n:
            return -1
        return stop

    def feed(self, data: memoryview) -> int:
        """Consume one chunk; emits spans to ``sink`` and calls the callbacks.

        Returns how many bytes were consumed: all of them unless a callback suspended."""
        n = len(data)
        table = self.table
        if n >= 5 and not self._remaining and not self._hdr and table[data[0]] == BODY:
            # Exactly one whole message read in full (a client's Query, most often): what the
            # loop below would do for it, without the loop.
            # Four index reads: int.from_bytes of a slice made a view, a bound method and an int.
            length = (data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]
            if length + 1 == n and 4 <= length <= self.max_len + 4:
                self._type = data[0]
                self.on_message(data[0], data[5:])
                self._suspended = False
                return n
        pos = 0
        span_start = -1  # start of the pending forwarded span in ``data``
        sink = self.sink
        max_len = self.max_len
        skip_min = self.skip_min
        while pos < n:
            if self._remaining:
                take = min(self._remaining, n - pos)
                if self._want_body:
                    self._body += data[pos : pos + take]
                    self._remaining -= take
                    pos += take
                    if self._remaining == 0:
                        self._want_body = False
                        body = memoryview(bytes(self._body))
                        self._body.clear()
                        self.on_message(self._type, body)
                        if self._suspended:
                            self._suspended = False
                            return pos
                    continue
                if self.forward_current:
                    if span_start < 0:
                        span_start = pos
                elif span_start >= 0:
                    sink(data[span_start:pos])
                    span_start = -1
                self._remaining -= take
                pos += take
                continue
            # At a message boundary: assemble a 5-byte header.
            if self._hdr or n - pos < 5:
                need = 5 - len(self._hdr)
                got = data[pos : pos + need]
                self._hdr += got
                if span_start >= 0:
                    sink(data[span_start:pos])
                    span_start = -1
                pos += len(got)
                if len(self._hdr) < 5:
                    break
                hdr = bytes(self._hdr)
                self._hdr.clear()
                mtype = hdr[0]
                length = int.from_bytes(hdr[1:5], "big")
                header_view: memoryview | None = memoryview(hdr)
                hstart = -1
            else:
                if n - pos >= skip_min and not table[data[pos]]:
                    # Many bytes left, starting with a passed-through message: likely a run of
                    # DataRows. Step over all the whole ones in one call.
                    stop = self.skip(data, pos, n, table, max_len)
                    if stop > pos:
                        forward = self.forwarding
                        if forward:
                            if span_start < 0:
                                span_start = pos
                        elif span_start >= 0:
                            sink(data[span_start:pos])
                            span_start = -1
                        self.forward_current = forward
                        pos = stop
                        continue
                mtype = data[pos]
                length = int.from_bytes(data[pos + 1 : pos + 5], "big")
                header_view = None
                hstart = pos
                pos += 5
            body_len = length - 4
            if length < 4 or body_len > max_len:
                if span_start >= 0:
                    # Forward what precedes the bad header first: the span may end a message whose
                    # head already went out, and the peer must not be left holding half of it.
                    # (A straddling header flushed the span already, so hstart is set here.)
                    sink(data[span_start:hstart])
                raise _bad_length(mtype, length, max_len)
            action = table[mtype]
            if action == BODY:
                if span_start >= 0:
                    end = hstart if hstart >= 0 else pos
                    sink(data[span_start:end])
                    span_start = -1
                self._type = mtype
                if n - pos >= body_len:
                    # Whole body present: no copy into the body buffer.
                    body = data[pos : pos + body_len]
                    pos += body_len
                    self.on_message(mtype, body)
                    table = self.table  # (the callback may have changed what is read next)
                else:
                    self._want_body = True
                    self._remaining = body_len
                    if body_len == 0:
                        self._want_body = False
                        self.on_message(mtype, memoryview(b""))
                if self._suspended:
                    self._suspended = False
                    return pos
                continue
            if action == HEADER and self.on_header is not None:
                if span_start >= 0:
                    end = hstart if hstart >= 0 else pos
                    sink(data[span_start:end])
                    span_start = -1
                forward = self.on_header(mtype, length)
                table = self.table  # (the callback may have changed what is read next)
            else:
                forward = self.forwarding
            self.forward_current = forward
            if forward:
                if header_view is not None:
                    # The header straddled chunks, so any span was flushed already.
                    sink(header_view)
                elif span_start < 0:
                    span_start = hstart
            elif span_start >= 0:
                sink(data[span_start:hstart] if hstart >= 0 else data[span_start:pos])
                span_start = -1
            if n - pos >= body_len:
                # The whole body is in this chunk: step over it now (inside the span when
                # forwarded), rather than streaming it through another pass of the loop.
                if forward and span_start < 0:
                    span_start = pos  # the header went out alone (it straddled chunks)
                pos += body_len
                continue
            self._remaining = body_len
        if span_start >= 0:
            sink(data[span_start:pos])
        return n

    def sink_message(self, mtype: int, body: memoryview) -> None:
        """Forward a message that an ``on_message`` callback read in full."""
        self.sink(memoryview(bytes((mtype,)) + (len(body) + 4).to_bytes(4, "big") + body))
