"""The MessageScanner against a message-by-message model of what it must do.

The scanner is the proxy's hot path: it streams spans of the caller's buffer, steps over runs of
passed-through messages (in C, with a pure-Python twin), buffers bodies that straddle reads and
lets callbacks suspend it or turn forwarding off mid-chunk. All of that must be invisible: for
any chunking, and with either twin or none, the callbacks see the same messages in the same
order and the sink receives the bytes the model computes from the whole stream at once.

The callbacks are scripted from the stream itself (message types, lengths and first body
bytes, mixed with a ``rules`` byte from the input), so the model can replay their decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fuzz.oracle import check
from pgdog_ev.wire import passrun
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer
from pgdog_ev.wire.scanner import BODY, HEADER, MessageScanner

Event = tuple[str, int, object]


def _no_skip(buf: object, pos: int, n: int, table: bytearray, max_len: int) -> int:
    return pos


SKIPS: list[passrun.SkipPassed] = [passrun.skip_passed_py, _no_skip]
if passrun.skip_passed_c is not None:
    SKIPS.append(passrun.skip_passed_c)


@dataclass(frozen=True)
class Rules:
    """How the scripted callbacks decide, from one input byte."""

    bits: int

    def forward_header(self, mtype: int, length: int) -> bool:
        return self.bits & 1 == 0 or (length + mtype) % 4 != 0

    def flips(self, body: bytes) -> bool:
        return bool(body) and body[0] % 5 == self.bits % 5

    def echoes(self, body: bytes) -> bool:
        return self.bits & 2 != 0 and bool(body) and body[0] % 3 == 0

    def suspends(self, mtype: int) -> bool:
        return self.bits & 4 != 0 and mtype % 2 == 0

    @property
    def forwarding(self) -> bool:
        return self.bits & 8 == 0


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    sink: bytearray = field(default_factory=bytearray)
    error: str | None = None
    at_boundary: bool = True


def model(data: bytes, table: bytearray, rules: Rules, max_len: int) -> tuple[Outcome, list[tuple[int, bytes]]]:
    """What the scanner must do with ``data`` fed whole, and the complete messages in it."""
    out = Outcome()
    messages: list[tuple[int, bytes]] = []
    forwarding = rules.forwarding
    pos, n = 0, len(data)
    while n - pos >= 5:
        mtype = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 5], "big")
        if length < 4 or length - 4 > max_len:
            out.error = "bad length"
            return out, messages
        end = pos + 1 + length
        complete = end <= n
        action = table[mtype]
        if action == BODY:
            if not complete:
                break
            body = data[pos + 5 : end]
            out.events.append(("body", mtype, body))
            if rules.flips(body):
                forwarding = not forwarding
            elif rules.echoes(body):
                out.sink += data[pos:end]
        elif action == HEADER:
            out.events.append(("header", mtype, length))
            if rules.forward_header(mtype, length):
                out.sink += data[pos : min(end, n)]
        elif forwarding:
            out.sink += data[pos : min(end, n)]
        if not complete:
            break
        messages.append((mtype, data[pos + 5 : end]))
        pos = end
    out.at_boundary = pos == n
    return out, messages


class ScannerRun:
    """One MessageScanner with scripted callbacks that record everything."""

    def __init__(self, table: bytearray, rules: Rules, max_len: int, skip: passrun.SkipPassed, skip_min: int) -> None:
        self.rules = rules
        self.out = Outcome()
        self.scanner = MessageScanner(table, self._sink, self._on_message, self._on_header, max_len=max_len)
        self.scanner.forwarding = rules.forwarding
        self.scanner.skip = skip
        self.scanner.skip_min = skip_min

    def _sink(self, view: memoryview) -> None:
        check(isinstance(view, memoryview), f"sink got {type(view).__name__}")
        self.out.sink += view

    def _on_header(self, mtype: int, length: int) -> bool:
        self.out.events.append(("header", mtype, length))
        return self.rules.forward_header(mtype, length)

    def _on_message(self, mtype: int, body: memoryview) -> None:
        data = bytes(body)
        self.out.events.append(("body", mtype, data))
        scanner = self.scanner
        if self.rules.flips(data):
            scanner.forwarding = not scanner.forwarding
        elif self.rules.echoes(data):
            scanner.sink_message(mtype, body)
        if self.rules.suspends(mtype):
            scanner.suspend()

    def feed_all(self, chunks: list[bytes]) -> Outcome:
        try:
            for chunk in chunks:
                view = memoryview(bytes(chunk))  # a fresh buffer per read, as a socket gives
                while view:
                    consumed = self.scanner.feed(view)
                    check(0 < consumed <= len(view), f"feed consumed {consumed} of {len(view)} bytes")
                    view = view[consumed:]
        except ProtocolViolation as exc:
            self.out.error = str(exc)
        self.out.at_boundary = self.scanner.at_boundary()
        return self.out


def check_scanner(data: bytes, ways: list[list[bytes]], table: bytearray, rules: Rules, max_len: int,
                  skip_min: int) -> tuple[list[tuple[int, bytes]], bool]:
    """Every chunking with every twin against the model; returns the stream's complete messages
    and whether it holds an unacceptable length."""
    want, messages = model(data, table, rules, max_len)
    for chunks in ways:
        for skip in SKIPS:
            got = ScannerRun(table, rules, max_len, skip, skip_min).feed_all(chunks)
            how = f"{len(chunks)} chunks, skip={getattr(skip, '__name__', skip)}"
            check(got.events == want.events, f"callbacks differ from the model ({how})")
            check((got.error is None) == (want.error is None), f"error {got.error!r}, model {want.error!r} ({how})")
            # Also on a violation: the messages before it went out whole (the caller may keep
            # using the peer, e.g. to end a COPY), and nothing of the bad one did.
            check(got.sink == want.sink, f"forwarded bytes differ from the model ({how})")
            if want.error is None:
                check(got.at_boundary == want.at_boundary, f"at_boundary {got.at_boundary} ({how})")
    return messages, want.error is not None


def check_framer(data: bytes, ways: list[list[bytes]], max_len: int, messages: list[tuple[int, bytes]],
                 error: bool) -> None:
    """The Framer (login and test decoding) splits the stream into the model's messages."""
    for chunks in ways:
        framer = Framer(max_len)
        got: list[tuple[int, bytes]] = []
        failed = False
        try:
            for chunk in chunks:
                got += framer.feed(chunk)
        except ProtocolViolation:
            failed = True
        # A feed that raises returns nothing, so messages before the violation in the same read
        # are lost: harmless, the connection closes.
        if error:
            check(got == messages[: len(got)], f"Framer messages are not a prefix ({len(chunks)} chunks)")
        else:
            check(got == messages, f"Framer messages differ ({len(chunks)} chunks)")
        check(failed == error, f"Framer error {failed}, model {error} ({len(chunks)} chunks)")


def check_twins(data: bytes, table: bytearray, max_len: int, starts: Callable[[], list[int]]) -> None:
    """The C twin of passrun stops where the Python twin does, from any start."""
    c_skip = passrun.skip_passed_c
    if c_skip is None:
        return
    n = len(data)
    for pos in starts():
        py = passrun.skip_passed_py(data, pos, n, table, max_len)
        check(c_skip(data, pos, n, table, max_len) == py, f"passrun twins disagree from {pos}")
        check(pos <= py <= n, f"passrun stopped at {py}, outside {pos}..{n}")
