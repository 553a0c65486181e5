"""MessageScanner: chunking never changes what is forwarded or which callbacks run."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgdog_ev.wire import passrun
from pgdog_ev.wire.errors import PROGRAM_LIMIT_EXCEEDED, ProtocolViolation
from pgdog_ev.wire.framing import build
from pgdog_ev.wire.scanner import BODY, HEADER, PASS, MessageScanner, action_table

PASS_TYPES = b"ab"
HEADER_TYPES = b"hk"
BODY_TYPES = b"Zy"
TABLE = action_table(header=HEADER_TYPES, body=BODY_TYPES)


class Harness:
    """A scanner whose callbacks record everything and steer forwarding from message content.

    A BODY message whose body starts with ``+``/``-`` turns forwarding on/off; one starting with
    ``!`` is echoed through ``sink_message``. ``on_header`` forwards even lengths only.
    """

    def __init__(self, max_len: int = 1 << 20, forwarding: bool = True) -> None:
        self.events: list[tuple] = []
        self.scanner = MessageScanner(TABLE, self._sink, self._on_message, self._on_header, max_len=max_len)
        self.scanner.forwarding = forwarding

    def _sink(self, view: memoryview) -> None:
        assert isinstance(view, memoryview)
        data = bytes(view)
        if not data:
            return
        if self.events and self.events[-1][0] == "sink":
            self.events[-1] = ("sink", self.events[-1][1] + data)
        else:
            self.events.append(("sink", data))

    def _on_message(self, mtype: int, body: memoryview) -> None:
        data = bytes(body)
        self.events.append(("body", mtype, data))
        if data.startswith(b"+"):
            self.scanner.forwarding = True
        elif data.startswith(b"-"):
            self.scanner.forwarding = False
        elif data.startswith(b"!"):
            self.scanner.sink_message(mtype, body)

    def _on_header(self, mtype: int, length: int) -> bool:
        self.events.append(("header", mtype, length))
        return length % 2 == 0

    def feed(self, *chunks: bytes) -> Harness:
        for chunk in chunks:
            self.scanner.feed(memoryview(bytes(chunk)))
        return self

    @property
    def forwarded(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "sink")


def reference(messages: list[tuple[int, bytes]], forwarding: bool = True) -> list[tuple]:
    """What the scanner must do, computed message by message without any chunking."""
    events: list[tuple] = []

    def sink(data: bytes) -> None:
        if not data:
            return
        if events and events[-1][0] == "sink":
            events[-1] = ("sink", events[-1][1] + data)
        else:
            events.append(("sink", data))

    for mtype, body in messages:
        raw = build(mtype, body)
        action = TABLE[mtype]
        if action == BODY:
            events.append(("body", mtype, body))
            if body.startswith(b"+"):
                forwarding = True
            elif body.startswith(b"-"):
                forwarding = False
            elif body.startswith(b"!"):
                sink(raw)
        elif action == HEADER:
            events.append(("header", mtype, len(body) + 4))
            if (len(body) + 4) % 2 == 0:
                sink(raw)
        elif forwarding:
            sink(raw)
    return events


body_st = st.binary(max_size=24)
message_st = st.one_of(
    st.tuples(st.sampled_from(list(PASS_TYPES + HEADER_TYPES)), body_st),
    st.tuples(
        st.sampled_from(list(BODY_TYPES)),
        st.tuples(st.sampled_from([b"", b"+", b"-", b"!"]), body_st).map(lambda p: p[0] + p[1]),
    ),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    out, start = [], 0
    for p in [*points, len(data)]:
        out.append(data[start:p])
        start = p
    return out


@settings(max_examples=400, deadline=None)
@given(
    messages=st.lists(message_st, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30),
    forwarding=st.booleans(),
)
def test_any_chunking_forwards_the_same_bytes_and_callbacks(messages, cuts, forwarding) -> None:
    stream = b"".join(build(t, b) for t, b in messages)
    whole = Harness(forwarding=forwarding).feed(stream)
    pieces = Harness(forwarding=forwarding).feed(*chunked(stream, cuts))
    assert pieces.events == whole.events
    assert whole.events == reference(messages, forwarding)
    assert whole.scanner.at_boundary() and pieces.scanner.at_boundary()


@settings(max_examples=100, deadline=None)
@given(messages=st.lists(message_st, min_size=1, max_size=8))
def test_byte_at_a_time_equals_whole(messages) -> None:
    stream = b"".join(build(t, b) for t, b in messages)
    single = Harness().feed(*[stream[i : i + 1] for i in range(len(stream))])
    assert single.events == Harness().feed(stream).events


def test_pass_messages_stream_as_spans_without_copying_headers_apart() -> None:
    h = Harness()
    stream = build(ord("a"), b"hello") + build(ord("b"), b"") + build(ord("a"), b"x" * 10)
    h.feed(stream)
    assert h.events == [("sink", stream)]


@pytest.mark.parametrize("split", [1, 2, 3, 4])
def test_oversized_length_raises_as_soon_as_header_is_complete(split: int) -> None:
    h = Harness(max_len=10)
    header = bytes([ord("a")]) + (4 + 11).to_bytes(4, "big")
    h.feed(header[:split])  # nothing to judge yet
    with pytest.raises(ProtocolViolation) as info:
        h.feed(header[split:])  # no body byte sent at all
    assert info.value.sqlstate == PROGRAM_LIMIT_EXCEEDED
    assert h.forwarded == b""


def test_limit_is_inclusive() -> None:
    h = Harness(max_len=10)
    msg = build(ord("a"), b"x" * 10)
    h.feed(msg)
    assert h.forwarded == msg


@pytest.mark.parametrize("length", [0, 1, 3])
def test_length_below_four_raises(length: int) -> None:
    h = Harness()
    with pytest.raises(ProtocolViolation):
        h.feed(bytes([ord("a")]) + length.to_bytes(4, "big"))


def test_length_below_four_raises_when_header_straddles() -> None:
    h = Harness()
    bad = bytes([ord("Z")]) + (2).to_bytes(4, "big")
    h.feed(bad[:2])
    with pytest.raises(ProtocolViolation):
        h.feed(bad[2:])
    assert not any(e[0] == "body" for e in h.events)


def test_forwarding_false_swallows_pass_messages_only() -> None:
    h = Harness(forwarding=False)
    pass_msg = build(ord("a"), b"dropped")
    hdr_even = build(ord("h"), b"xx")  # length 6: on_header says forward
    body_msg = build(ord("y"), b"seen")
    h.feed(pass_msg + hdr_even + body_msg + pass_msg)
    assert h.forwarded == hdr_even
    assert ("body", ord("y"), b"seen") in h.events
    assert ("header", ord("h"), 6) in h.events


def test_callback_turning_forwarding_off_affects_following_messages_of_same_chunk() -> None:
    h = Harness()
    first = build(ord("a"), b"1")
    second = build(ord("a"), b"2")
    h.feed(first + build(ord("Z"), b"-") + second + build(ord("Z"), b"+") + first)
    assert h.forwarded == first + first


def test_forward_current_false_drops_only_rest_of_current_message() -> None:
    h = Harness()
    msg = build(ord("a"), b"0123456789")
    nxt = build(ord("b"), b"next")
    h.feed(msg[:8])
    assert h.forwarded == msg[:8]
    assert not h.scanner.at_boundary()
    h.scanner.forward_current = False
    h.feed(msg[8:12])
    h.feed(msg[12:] + nxt)
    assert h.forwarded == msg[:8] + nxt
    assert h.scanner.at_boundary()


def test_at_boundary() -> None:
    h = Harness()
    msg = build(ord("a"), b"abc")
    body = build(ord("Z"), b"I")
    assert h.scanner.at_boundary()
    h.feed(msg[:3])
    assert not h.scanner.at_boundary()  # partial header
    h.feed(msg[3:6])
    assert not h.scanner.at_boundary()  # header done, body streaming
    h.feed(msg[6:])
    assert h.scanner.at_boundary()
    h.feed(body[:5])
    assert not h.scanner.at_boundary()  # BODY message waiting for its body
    h.feed(body[5:])
    assert h.scanner.at_boundary()
    assert h.events[-1] == ("body", ord("Z"), b"I")


def test_body_callback_sees_exact_body_across_chunks() -> None:
    h = Harness()
    payload = bytes(range(40))
    msg = build(ord("y"), payload)
    h.feed(*[msg[i : i + 7] for i in range(0, len(msg), 7)])
    assert h.events == [("body", ord("y"), payload)]


def test_actions_table_constants() -> None:
    assert TABLE[ord("a")] == PASS and TABLE[ord("h")] == HEADER and TABLE[ord("Z")] == BODY


# -- runs of passed-through messages (pgdog_ev.wire.passrun) ----------------------------------

SKIPS = {"none": lambda buf, pos, n, table, max_len: pos, "python": passrun.skip_passed_py}
if passrun.skip_passed_c is not None:
    SKIPS["c"] = passrun.skip_passed_c

long_message_st = st.one_of(
    st.tuples(st.sampled_from(list(PASS_TYPES)), st.binary(max_size=90)),
    message_st,
)


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(long_message_st, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
    forwarding=st.booleans(),
    skip_min=st.sampled_from([0, 5, 64]),
)
def test_skipping_runs_changes_nothing(messages, cuts, forwarding, skip_min) -> None:
    """Stepping over runs of PASS messages in one call (C or Python) forwards the same bytes and
    runs the same callbacks as the message-by-message loop, for any chunking."""
    stream = b"".join(build(t, b) for t, b in messages)
    want = reference(messages, forwarding)
    for name, skip in SKIPS.items():
        h = Harness(forwarding=forwarding)
        h.scanner.skip, h.scanner.skip_min = skip, skip_min
        h.feed(*chunked(stream, cuts))
        assert h.events == want, name
        assert h.scanner.at_boundary(), name


def test_the_c_twin_is_built() -> None:
    """`make` compiles it; a checkout without a C compiler falls back (and this says so)."""
    if passrun.skip_passed_c is None:
        pytest.skip("the C twin is not built here (no compiler, or PGDOG_EV_PURE_PYTHON is set)")
    assert passrun.skip_passed is passrun.skip_passed_c


@settings(max_examples=500, deadline=None)
@given(
    data=st.binary(max_size=400),
    pos=st.integers(min_value=0, max_value=400),
    actions=st.binary(min_size=256, max_size=256),
    max_len=st.sampled_from([0, 3, 50, 1 << 30]),
)
def test_the_twins_agree_on_any_bytes(data, pos, actions, max_len) -> None:
    """Arbitrary (mostly malformed) bytes: the memoryview twin, the bytes twin (what
    last_after_passes runs on a small copied chunk) and the C twin when built stop at the same
    place, never past the end."""
    table = bytearray(a % 3 for a in actions)
    pos = min(pos, len(data))
    view = memoryview(data)
    py = passrun.skip_passed_py(view, pos, len(data), table, max_len)
    assert pos <= py <= len(data)
    assert passrun.skip_passed_bytes(data, pos, len(data), table, max_len) == py
    if passrun.skip_passed_c is not None:
        assert passrun.skip_passed_c(view, pos, len(data), table, max_len) == py


def test_lengths_the_scanner_rejects_stop_the_run() -> None:
    """A length under 4 or over the limit is left for the scanner to raise on, at its message."""
    ok = build(ord("a"), b"xyz")
    for bad in (b"a\x00\x00\x00\x03", b"a\x00\x00\x01\x00" + bytes(252)):
        stream = ok * 3 + bad + ok
        for name, skip in SKIPS.items():
            if name == "none":
                continue
            assert skip(memoryview(stream), 0, len(stream), TABLE, 100) == 3 * len(ok), name
        h = Harness(max_len=100)
        h.scanner.skip_min = 0
        with pytest.raises(ProtocolViolation):
            h.feed(stream)


def test_a_run_stops_at_the_last_whole_message_for_every_cut() -> None:
    """Cut a run of PASS messages at every byte: each twin stops at the last boundary at or before
    the cut (a message missing even its last byte is left for the next chunk)."""
    bodies = [b"", b"x", b"yz" * 7, bytes(range(40)), b"q"]
    stream = b"".join(build(ord("a"), b) for b in bodies)
    boundaries = [0]
    for b in bodies:
        boundaries.append(boundaries[-1] + 5 + len(b))
    for name, skip in SKIPS.items():
        if name == "none":
            continue
        for cut in range(len(stream) + 1):
            want = max(x for x in boundaries if x <= cut)
            assert skip(memoryview(stream), 0, cut, TABLE, 1 << 20) == want, (name, cut)


def test_a_table_changed_by_a_callback_applies_to_the_rest_of_the_same_chunk() -> None:
    """The server session reads CommandComplete only during a COPY: the table it sets at the
    CopyInResponse (a header) or back at ReadyForQuery (a body) must rule the very next message,
    even when the server's whole answer came in one read."""
    seen: list[int] = []
    tables = {ord("h"): action_table(header=b"hk", body=b"Z"), ord("Z"): action_table(header=b"h", body=b"Zy")}

    def on_header(mtype: int, length: int) -> bool:
        seen.append(mtype)
        scanner.table = tables.get(mtype, scanner.table)
        return True

    def on_message(mtype: int, body: memoryview) -> None:
        seen.append(mtype)
        scanner.table = tables.get(mtype, scanner.table)

    scanner = MessageScanner(action_table(header=b"h", body=b"Z"), lambda view: None, on_message, on_header)
    scanner.forwarding = True
    scanner.feed(memoryview(b"".join(build(ord(t), body) for t, body in
                                     (("k", b""), ("h", b""), ("k", b""), ("Z", b"I"), ("k", b""), ("y", b"x")))))
    assert bytes(seen) == b"hkZy"
