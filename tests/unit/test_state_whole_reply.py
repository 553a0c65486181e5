"""The whole-reply path of ServerSession against the message-by-message one.

A reply that arrives in one read (passed-through messages, then ReadyForQuery) goes to the
client as one write with only its ReadyForQuery looked at. Whatever the chunking, the client
must receive the same bytes, the event log must hold the same records and the statistics must
agree: the same workloads run once with whole replies and once with replies cut into single
bytes (which the whole-reply path never takes), and everything observable is compared.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.scanner import MessageScanner, action_table
from state.client import ClientSession
from state.server import QUIET_TABLE, SERVER_TABLE, ServerSession
from tests.unit.statekit import FakeBackend, FrontendDriver, ProxyRig, only_server, ready_client, rig

RESULT = FakeBackend.result("SELECT 3", rows=3)
EXTENDED_REPLY = be.parse_complete() + be.bind_complete() + RESULT
NOTICE = be.notice_response("01000", "look out")


def extended(sql: str) -> bytes:
    return (
        fe.parse("", sql)
        + fe.bind("", "", [], [b"1"], [])
        + fe.describe("P", "")
        + fe.execute("", 0)
        + fe.sync()
    )


# Each step: what the client sends, then what the server answers (None: the proxy answers alone).
Step = tuple[bytes, bytes | None]
WORKLOADS: dict[str, list[Step]] = {
    "simple queries": [(fe.query("select 1"), RESULT)] * 3,
    "extended batches": [(extended("select $1"), EXTENDED_REPLY)] * 3,
    "notice in the reply": [(fe.query("select 2"), NOTICE + RESULT)],
    "empty result": [(fe.query("select"), be.command_complete("SELECT 0") + be.ready_for_query(b"I"))],
    "transaction": [
        (fe.query("begin; select 1"), be.command_complete("BEGIN") + FakeBackend.result(status=b"T")),
        (fe.query("select 2"), FakeBackend.result(status=b"T")),
        (fe.query("commit"), FakeBackend.done("COMMIT")),
    ],
    "failed transaction": [
        (fe.query("begin; select 1"), be.command_complete("BEGIN") + FakeBackend.result(status=b"T")),
        (fe.query("selec"), FakeBackend.error(status=b"E")),
        (fe.query("rollback"), FakeBackend.done("ROLLBACK")),
    ],
    "error": [(fe.query("selec"), FakeBackend.error()), (fe.query("select 1"), RESULT)],
    "set (tracked, so its effects come first)": [
        (
            fe.query("set application_name = 'x'"),
            be.parameter_status("application_name", "x") + FakeBackend.done("SET"),
        ),
        (fe.query("select 1"), RESULT),
    ],
    "extended batch whose Parse fails": [
        (extended("selec $1"), be.error_response("42601", "syntax error") + be.ready_for_query(b"I")),
        (extended("select $1"), EXTENDED_REPLY),
    ],
    "pipelined batches": [(extended("select 1") + extended("select 2"), EXTENDED_REPLY + EXTENDED_REPLY)],
    "prepared by name": [
        # Prepared lazily: the proxy answers the Parse and sends it with the first Bind.
        (fe.parse("s1", "select 1") + fe.sync(), None),
        (
            fe.bind("", "s1", [], [], []) + fe.execute("", 0) + fe.sync(),
            be.parse_complete() + be.bind_complete() + RESULT,
        ),
        (fe.bind("", "s1", [], [], []) + fe.execute("", 0) + fe.sync(), be.bind_complete() + RESULT),
    ],
}


# Workloads whose every reply is a plain one (not BEGIN or SET, whose effects the client hears
# of first; nor a named Parse, whose ParseComplete decides whether the statement is prepared).
ONE_WRITE_PER_REPLY = {"simple queries", "extended batches", "notice in the reply", "empty result"}


def one_of_each(
    **settings: Any,
) -> tuple[ProxyRig, ClientSession, FrontendDriver, ServerSession, FakeBackend]:
    """A logged-in idle client and the pool's one server, their login traffic taken."""
    r = rig(pool_size=1, **settings)
    client, driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    backend.take()
    return r, client, driver, server, backend


def play(workload: list[Step], chunk: int | None) -> dict[str, Any]:
    """Run ``workload`` through one client and one server; everything a difference would show."""
    r, client, driver, server, backend = one_of_each()
    start = r.world.log.seq
    sends_before = client.io.sends  # type: ignore[attr-defined]
    for request, reply in workload:
        r.world.tick(0.001)
        driver.send(request)
        hidden = backend.take_queries()
        for _sql in hidden[:-1]:
            backend.send(FakeBackend.result())
        if reply is not None:
            r.world.tick(0.002)
            backend.send(reply, chunk=chunk)
    return {
        "client bytes": bytes(client.io.sent),  # type: ignore[attr-defined]
        "events": [tuple(rec) for rec in r.world.log.records() if rec.seq >= start],
        "stats": dataclasses.asdict(server.pool.stats),
        "client": (
            client.state,
            client.queries,
            client.transactions,
            client.errors,
            client.query_time,
            client.xact_time,
            client.server is None,
        ),
        "server": (
            server.state,
            server.txn_status,
            server.queries,
            server.transactions,
            server.errors,
            list(server.prepared),
        ),
        "client sends": client.io.sends - sends_before,  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_whole_replies_match_byte_by_byte_replies(name: str) -> None:
    whole = play(WORKLOADS[name], chunk=None)
    cut = play(WORKLOADS[name], chunk=1)
    sends = whole.pop("client sends"), cut.pop("client sends")
    assert whole == cut
    # One write per reply when the whole-reply path took it, else one per span and message.
    if name in ONE_WRITE_PER_REPLY:
        assert sends[0] == len(WORKLOADS[name])
    assert sends[0] <= sends[1]


def test_a_plain_reply_is_one_write_to_the_client() -> None:
    _, client, driver, server, backend = one_of_each()
    for _ in range(3):
        before = client.io.sends  # type: ignore[attr-defined]
        driver.send(fe.query("select 1"))
        backend.take()
        backend.send(RESULT)
        assert client.io.sends - before == 1  # type: ignore[attr-defined]
        assert driver.take()[-1] == ("Z", b"I")
        assert client.server is None and server in server.pool.idle


def test_a_reply_in_two_reads_goes_message_by_message() -> None:
    _, client, driver, server, backend = one_of_each()
    driver.send(fe.query("select 1"))
    backend.take()
    split = len(RESULT) - 6
    backend.send(RESULT[:split])
    assert client.server is server
    backend.send(RESULT[split:])
    assert client.server is None
    assert [t for t, _ in driver.take()] == ["T", "D", "D", "D", "C", "Z"]


def test_an_invalid_ready_status_is_not_forwarded() -> None:
    _, client, driver, server, backend = one_of_each()
    driver.send(fe.query("select 1"))
    backend.take()
    backend.send(RESULT[:-1] + b"X")
    assert server.state.name == "CLOSED"
    assert b"Z\x00\x00\x00\x05X" not in bytes(client.io.sent)  # type: ignore[attr-defined]


# -- MessageScanner.last_after_passes ----------------------------------------------------------

TABLE = action_table(header=b"1", body=b"Z")


def scanner() -> MessageScanner:
    return MessageScanner(TABLE, lambda view: None, lambda t, b: None, lambda t, n: True)


def msg(t: bytes, body: bytes = b"") -> bytes:
    return t + (len(body) + 4).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (msg(b"Z", b"I"), 0),
        (msg(b"D", b"ab") + msg(b"C", b"x\0") + msg(b"Z", b"I"), 14),
        (msg(b"D", b"ab") + msg(b"D", b"cd"), -1),  # nothing but passed messages
        (msg(b"D", b"ab") + msg(b"Z", b"I")[:-1], -1),  # the last one is incomplete
        (msg(b"D", b"ab") + msg(b"Z", b"I") + b"Z", -1),  # something after it
        (msg(b"1") + msg(b"Z", b"I"), -1),  # a HEADER type before it
        (msg(b"Z", b"I") + msg(b"Z", b"I"), -1),  # a BODY type before it
        (b"D\0\0\0\x02" + msg(b"Z", b"I"), -1),  # a bad length
        (b"", -1),
        (b"D\0\0", -1),
    ],
)
@pytest.mark.parametrize("small_chunk", [0, 1 << 20], ids=["skip", "copy"])
def test_last_after_passes(data: bytes, expect: int, small_chunk: int) -> None:
    s = scanner()
    s.small_chunk = small_chunk  # the copied chunk's native loop, or the scanner's skip (C when built)
    assert s.last_after_passes(memoryview(data)) == expect


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(b"DCTZ1"), st.binary(max_size=12)).map(
                lambda tb: msg(bytes([tb[0]]), tb[1])
            ),
            st.binary(max_size=6),
        ),
        max_size=6,
    ),
)
def test_last_after_passes_copied_or_skipped_agree(parts: list[bytes]) -> None:
    """Any bytes, mostly message-shaped: a small chunk copied and stepped over natively gets the
    same answer as the scanner's run skipping."""
    data = memoryview(b"".join(parts))
    answers = []
    for small_chunk in (0, 1 << 20):
        s = scanner()
        s.small_chunk = small_chunk
        answers.append(s.last_after_passes(data))
    assert answers[0] == answers[1]


def test_last_after_passes_with_another_table() -> None:
    data = memoryview(msg(b"1") + msg(b"Z", b"I"))
    s = scanner()
    assert s.last_after_passes(data) == -1
    assert s.last_after_passes(data, action_table(body=b"Z")) == 5


def test_last_after_passes_needs_a_boundary() -> None:
    s = scanner()
    s.feed(memoryview(msg(b"D", b"abcd")[:7]))  # mid-body
    assert s.last_after_passes(memoryview(msg(b"Z", b"I"))) == -1
    s = scanner()
    s.feed(memoryview(b"D\0"))  # mid-header
    assert s.last_after_passes(memoryview(msg(b"Z", b"I"))) == -1


def test_quiet_table_differs_from_the_server_table_only_in_completions() -> None:
    assert [t for t in range(256) if QUIET_TABLE[t] != SERVER_TABLE[t]] == [ord("1"), ord("3")]
