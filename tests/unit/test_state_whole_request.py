"""The client's whole-request paths against the message-by-message one.

A driver's usual extended-protocol request (Parse, unnamed Bind, Describe, Execute, Sync) that
arrives in one read has only its Parse read; the rest goes to the server as one write. A lone
message in one read skips the scanner's loop. Whatever the chunking, the server must receive
the same bytes, the client the same answers, the event log the same records and the statistics
must agree: each workload runs once with requests whole and once cut into single bytes (which
neither path takes), and everything observable is compared.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from state.client_routing import BATCH_REST_LIMIT, batch_shape
from state.events import Kind
from tests.unit.statekit import (
    FakeBackend,
    ProxyRig,
    decode,
    feed,
    only_server,
    ready_client,
    rig,
    split_every,
)
from tests.unit.test_state_client_rw import RwRig
from tests.unit.test_state_whole_reply import one_of_each

RESULT = FakeBackend.result("SELECT 1")
EXTENDED_REPLY = be.parse_complete() + be.bind_complete() + RESULT
NO_DESCRIBE_REPLY = (
    be.parse_complete() + be.bind_complete() + be.data_row(["1"]) + FakeBackend.done("SELECT 1")
)


def extended(sql: str, describe: bytes | None = fe.describe("P", "")) -> bytes:
    return (
        fe.parse("", sql)
        + fe.bind("", "", [], [b"1"], [])
        + (describe or b"")
        + fe.execute("", 0)
        + fe.sync()
    )


# Each step: what the client sends, then what the server answers (None: the proxy answers alone).
Step = tuple[bytes, bytes | None]
WORKLOADS: dict[str, list[Step]] = {
    "extended batches": [(extended("select $1"), EXTENDED_REPLY)] * 3,
    "no Describe": [(extended("select $1", None), NO_DESCRIBE_REPLY)] * 2,
    "Describe of the statement": [(extended("select $1", fe.describe("S", "")), EXTENDED_REPLY)],
    "texts change": [(extended(f"select $1 + {i}"), EXTENDED_REPLY) for i in range(3)],
    "Parse fails": [
        (extended("selec $1"), be.error_response("42601", "syntax error") + be.ready_for_query(b"I")),
        (extended("select $1"), EXTENDED_REPLY),
    ],
    "a SET with effects": [
        (
            extended("set application_name = 'x'", None),
            be.parse_complete()
            + be.bind_complete()
            + be.parameter_status("application_name", "x")
            + FakeBackend.done("SET"),
        ),
        (extended("select $1"), EXTENDED_REPLY),
    ],
    "inside a transaction": [
        (fe.query("begin; select 1"), be.command_complete("BEGIN") + FakeBackend.result(status=b"T")),
        (extended("select $1"), be.parse_complete() + be.bind_complete() + FakeBackend.result(status=b"T")),
        (fe.query("commit"), FakeBackend.done("COMMIT")),
    ],
    "BEGIN by extended protocol": [
        (extended("begin", None), be.parse_complete() + be.bind_complete() + FakeBackend.done("BEGIN", b"T")),
        (extended("select $1"), be.parse_complete() + be.bind_complete() + FakeBackend.result(status=b"T")),
        (extended("commit", None), be.parse_complete() + be.bind_complete() + FakeBackend.done("COMMIT")),
    ],
    "two batches in one read": [
        (extended("select 1") + extended("select 2"), EXTENDED_REPLY + EXTENDED_REPLY)
    ],
    "simple queries": [(fe.query("select 1"), RESULT)] * 3,
    "a named statement": [
        (fe.parse("s1", "select 1") + fe.sync(), None),
        (
            fe.bind("", "s1", [], [], []) + fe.execute("", 0) + fe.sync(),
            be.parse_complete() + be.bind_complete() + be.data_row(["1"]) + FakeBackend.done("SELECT 1"),
        ),
    ],
    "a named statement, Described, used again": [
        (fe.parse("s1", "select $1") + fe.sync(), None),
        (
            fe.bind("", "s1", [], [b"1"], []) + fe.describe("P", "") + fe.execute("", 0) + fe.sync(),
            be.parse_complete() + EXTENDED_REPLY[len(be.parse_complete()) :],
        ),
        (
            fe.bind("", "s1", [], [b"2"], []) + fe.execute("", 0) + fe.sync(),
            be.bind_complete() + be.data_row(["2"]) + FakeBackend.done("SELECT 1"),
        ),
        (
            fe.bind("", "s2", [], [], []) + fe.execute("", 0) + fe.sync(),
            be.error_response("26000", 'prepared statement "s2" does not exist') + be.ready_for_query(b"I"),
        ),
    ],
    "Terminate": [(fe.query("select 1"), RESULT), (fe.terminate(), None)],
}


def observe(world: Any, start: int, clients: list[Any], servers: list[Any]) -> dict[str, Any]:
    return {
        "client bytes": [bytes(c.io.sent) for c in clients],
        "server bytes": [bytes(s.io.sent) for s in servers],
        "events": [tuple(rec) for rec in world.log.records() if rec.seq >= start],
        "stats": [dataclasses.asdict(s.pool.stats) for s in servers],
        "clients": [
            (
                c.state,
                c.queries,
                c.transactions,
                c.errors,
                c.server is None,
                c._segment,
                dict(c.settings.params),
            )
            for c in clients
        ],
        "servers": [
            (s.state, s.txn_status, s.queries, s.transactions, s.unsynced, list(s.owed), list(s.prepared))
            for s in servers
        ],
    }


def play(workload: list[Step], chunk: int | None, **settings: Any) -> dict[str, Any]:
    """Run ``workload`` through one client and the pool's one server."""
    r, client, _driver, server, backend = one_of_each(**settings)
    start = r.world.log.seq
    for request, reply in workload:
        r.world.tick(0.001)
        feed(client, r.world.now, *(split_every(request, chunk) if chunk else [request]))
        for _sql in backend.take_queries()[:-1]:
            backend.send(FakeBackend.result())  # hidden settings syncs
        if reply is not None:
            r.world.tick(0.002)
            backend.send(reply)
    return observe(r.world, start, [client], [server])


@pytest.mark.parametrize("name", list(WORKLOADS))
@pytest.mark.parametrize("prepared", ["extended", "disabled"])
def test_whole_requests_match_byte_by_byte_requests(name: str, prepared: str) -> None:
    whole = play(WORKLOADS[name], None, prepared_statements=prepared)
    cut = play(WORKLOADS[name], 1, prepared_statements=prepared)
    assert whole == cut


def test_a_whole_batch_is_one_write_after_its_parse() -> None:
    _, client, driver, server, backend = one_of_each()
    for _ in range(3):
        before = server.io.sends  # type: ignore[attr-defined]
        driver.send(extended("select $1"))
        assert server.io.sends - before == 2  # type: ignore[attr-defined]  # the Parse, then the rest
        assert [t for t, _ in backend.take()] == ["P", "B", "D", "E", "S"]
        backend.send(EXTENDED_REPLY)
        assert [t for t, _ in driver.take()] == ["1", "2", "T", "D", "C", "Z"]
        assert client.server is None and server in server.pool.idle


def test_a_prepared_statement_batch_is_one_write_after_its_bind() -> None:
    _, client, driver, server, backend = one_of_each()
    driver.send(fe.parse("s1", "select $1") + fe.sync())
    driver.take()
    driver.send(fe.bind("", "s1", [], [b"1"], []) + fe.execute("", 0) + fe.sync())
    backend.take()
    backend.send(be.parse_complete() + be.bind_complete() + be.data_row(["1"]) + FakeBackend.done("SELECT 1"))
    driver.take()
    for _ in range(3):
        before = server.io.sends  # type: ignore[attr-defined]
        driver.send(fe.bind("", "s1", [], [b"1"], []) + fe.execute("", 0) + fe.sync())
        assert server.io.sends - before == 2  # type: ignore[attr-defined]  # the renamed Bind, then the rest
        assert [t for t, _ in backend.take()] == ["B", "E", "S"]
        backend.send(be.bind_complete() + be.data_row(["1"]) + FakeBackend.done("SELECT 1"))
        assert [t for t, _ in driver.take()] == ["2", "D", "C", "Z"]
        assert client.server is None and server in server.pool.idle


def queued(chunk: int | None) -> dict[str, Any]:
    """A batch that waits for the only server (another client's transaction holds it), then
    replays once that transaction ends."""
    r: ProxyRig = rig(pool_size=1)
    holder, _ = ready_client(r)
    waiter, _ = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    backend.take()
    start = r.world.log.seq
    feed(holder, r.world.now, fe.query("begin; select 1"))
    backend.send(be.command_complete("BEGIN") + FakeBackend.result(status=b"T"))
    request = extended("select $1")
    feed(waiter, r.world.now, *(split_every(request, chunk) if chunk else [request]))
    assert waiter.server is None and waiter._held
    feed(holder, r.world.now, fe.query("commit"))
    backend.send(FakeBackend.done("COMMIT"))
    assert waiter.server is server
    backend.send(EXTENDED_REPLY)
    return observe(r.world, start, [holder, waiter], [server])


def test_a_batch_that_waits_for_a_server_is_read_the_same() -> None:
    assert queued(None) == queued(1)


INSERT_REPLY = be.parse_complete() + be.bind_complete() + FakeBackend.done("INSERT 0 1")
# Split workloads: (request, reply); each request gets a server of its own route.
SPLIT_WORKLOADS: dict[str, list[Step]] = {
    "reads and a write": [
        (extended("select $1"), EXTENDED_REPLY),
        (extended("insert into t values ($1)"), INSERT_REPLY),
        (extended("select $1"), EXTENDED_REPLY),
    ],
    "a hint": [(extended("/* pgdog_role: primary */ select $1"), EXTENDED_REPLY)],
    "BEGIN by extended protocol": [
        (extended("begin", None), be.parse_complete() + be.bind_complete() + FakeBackend.done("BEGIN", b"T")),
        (extended("select $1"), be.parse_complete() + be.bind_complete() + FakeBackend.result(status=b"T")),
        (extended("commit", None), be.parse_complete() + be.bind_complete() + FakeBackend.done("COMMIT")),
    ],
    "prepared statements": [
        (fe.parse("r", "select $1") + fe.parse("w", "insert into t values ($1)") + fe.sync(), None),
        *[(fe.bind("", name, [], [b"1"], []) + fe.execute("", 0) + fe.sync(), None) for name in "rrwrr"],
    ],
    # A Bind of the unnamed statement first: nothing in the batch has a say, so it is a write.
    "unnamed statement, bound later": [
        (fe.parse("", "select 1") + fe.sync(), None),
        (fe.bind("", "", [], [], []) + fe.execute("", 0) + fe.sync(), None),
    ],
}


def answer(msgs: list[tuple[str, bytes]]) -> bytes:
    """A server's answer to extended-protocol messages of a one-row read (hidden Queries are
    answered by RwRig.serve)."""
    out = b""
    for mtype, _body in msgs:
        if mtype == "P":
            out += be.parse_complete()
        elif mtype == "B":
            out += be.bind_complete()
        elif mtype == "E":
            out += be.data_row(["1"]) + be.command_complete("SELECT 1")
        elif mtype == "S":
            out += be.ready_for_query(b"I")
    return out


def split(workload: list[Step], chunk: int | None) -> dict[str, Any]:
    """Batches over a primary and a replica: a whole one is routed by its first message at once,
    a cut one once its Sync is in (held, then replayed). A step without a reply is answered
    from what its server received (a Parse injected or not)."""
    r = RwRig(read_write_split="include_primary", load_balancing_strategy="round_robin")
    client, _driver = r.connect()
    for _ in range(2):  # a server on each host, logged in, before anything is compared
        feed(client, r.world.now, extended("select 1"))
        r.serve()
        assert client.server is not None
        r.backend(client.server).send(EXTENDED_REPLY)
    start = r.world.log.seq
    for request, reply in workload:
        sent = {s.id: len(s.io.sent) for s in r.world.pool_io.opened}  # type: ignore[attr-defined]
        feed(client, r.world.now, *(split_every(request, chunk) if chunk else [request]))
        r.serve()
        server = client.server
        if server is None:
            continue  # answered by the proxy
        if reply is None:
            reply = answer(decode(bytes(server.io.sent[sent[server.id] :])))  # type: ignore[attr-defined]
        r.backend(server).send(reply)
    servers = sorted(r.world.pool_io.opened, key=lambda s: s.id)
    return observe(r.world, start, [client], servers)


@pytest.mark.parametrize("name", list(SPLIT_WORKLOADS))
def test_split_batches_are_read_the_same(name: str) -> None:
    assert split(SPLIT_WORKLOADS[name], None) == split(SPLIT_WORKLOADS[name], 1)


def test_a_whole_split_batch_is_routed_without_being_held() -> None:
    r = RwRig(read_write_split="include_primary", load_balancing_strategy="round_robin")
    client, _driver = r.connect()
    r.serve()
    client.on_bytes(r.world.now, memoryview(extended("select $1")))
    assert client.server is not None and not client._held
    routes = [rec for rec in r.world.log.records() if rec.kind == Kind.ROUTE and rec.id == client.id]
    assert len(routes) == 1 and routes[0].b == 0  # a read


def session_mode(chunk: int | None) -> dict[str, Any]:
    r = rig("session", pool_size=1)
    client, _driver = ready_client(r)
    server = only_server(r)
    backend = r.backend(server)
    backend.take()
    start = r.world.log.seq
    for _ in range(2):
        request = extended("select $1")
        feed(client, r.world.now, *(split_every(request, chunk) if chunk else [request]))
        backend.send(EXTENDED_REPLY)
    return observe(r.world, start, [client], [server])


def test_session_mode_batches_are_read_the_same() -> None:
    assert session_mode(None) == session_mode(1)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (extended("select 1") + fe.sync(), "a second Sync"),
        (extended("select 1")[:-1], "cut short"),
        (
            fe.parse("", "select 1") + fe.bind("", "s1", [], [], []) + fe.execute("", 0) + fe.sync(),
            "named statement",
        ),
        (
            fe.parse("", "select 1") + fe.bind("p", "", [], [], []) + fe.execute("p", 0) + fe.sync(),
            "named portal",
        ),
        (
            fe.parse("", "select 1")
            + fe.bind("", "", [], [], [])
            + fe.describe("S", "s1")
            + fe.execute("", 0)
            + fe.sync(),
            "Describe of a named statement",
        ),
        (fe.parse("", "select 1") + fe.bind("", "", [], [], []) + fe.sync(), "no Execute"),
        (
            fe.parse("", "select 1") + fe.bind("", "", [], [], []) + fe.execute("", 0) + fe.flush(),
            "Flush, not Sync",
        ),
        (b"P\0\0\0\x03" + extended("select 1")[5:], "a length below 4"),
    ],
)
def test_batch_shape_refuses_anything_else(data: bytes, why: str) -> None:
    assert batch_shape(memoryview(data), 1 << 20) == -1, why


def test_batch_shape_finds_the_end_of_the_first_message() -> None:
    data = extended("select 1")
    assert batch_shape(memoryview(data), 1 << 20) == len(fe.parse("", "select 1"))
    bind = fe.bind("", "s1", [], [b"1"], [])
    assert batch_shape(memoryview(bind + fe.execute("", 0) + fe.sync()), 1 << 20) == len(bind)
    assert batch_shape(memoryview(bind + bind + fe.execute("", 0) + fe.sync()), 1 << 20) == -1
    # A message longer than the scanner allows is left for the scanner to refuse.
    assert batch_shape(memoryview(data), 8) == -1


def _reference_batch_shape(data: bytes, max_len: int) -> int:
    """batch_shape written plainly, message by message, as the model it must agree with."""
    limit = max_len + 4
    messages: list[tuple[int, int, int]] = []  # (type, start, end)
    pos = 0
    while pos < len(data):
        if pos + 5 > len(data):
            return -1
        length = int.from_bytes(data[pos + 1 : pos + 5], "big")
        if length < 4 or length > limit or pos + 1 + length > len(data):
            return -1
        messages.append((data[pos], pos, pos + 1 + length))
        pos += 1 + length
    kinds = bytes(m[0] for m in messages)
    if kinds not in (b"PBES", b"PBDES", b"BES", b"BDES"):
        return -1
    if len(data) - messages[0][2] > BATCH_REST_LIMIT:
        return -1
    for kind, start, end in messages[1:]:
        body = data[start + 5 : end]
        if kind == fe.BIND and kinds[0] == fe.PARSE and body[:2] != b"\0\0":
            return -1
        if kind == fe.DESCRIBE and (len(body) != 2 or body[0] not in b"PS" or body[1] != 0):
            return -1
        if kind == fe.SYNC and end - start != 5:
            return -1
    return messages[0][2]


_ODD = [
    fe.flush(),
    fe.query("select 1"),
    fe.bind("p", "", [], [], []),
    fe.describe("S", "s1"),
    fe.sync(),
    b"",
    b"S\0\0\0\x03",
]
_PARTS = (
    [fe.parse("", "select 1"), fe.parse("s1", "select $1"), fe.bind("", "s1", [], [b"1"], [])],
    [fe.bind("", "", [], [b"1"], []), fe.bind("", "", [], [b"x" * 9000], []), fe.bind("", "s1", [], [], [])],
    [b"", fe.describe("P", ""), fe.describe("S", "")],
    [fe.execute("", 0), fe.execute("p", 5)],
    [fe.sync()],
)


@settings(max_examples=500, deadline=None)
@given(
    choice=st.tuples(*(st.integers(min_value=0, max_value=len(options) - 1) for options in _PARTS)),
    spoil=st.one_of(
        st.none(), st.tuples(st.integers(min_value=0, max_value=len(_PARTS)), st.sampled_from(_ODD))
    ),
    cut=st.sampled_from([0, 0, 1, 4]),
    max_len=st.sampled_from([1 << 20, 1 << 20, 6]),
)
def test_batch_shape_agrees_with_a_plain_reading(
    choice: tuple[int, ...], spoil: tuple[int, bytes] | None, cut: int, max_len: int
) -> None:
    """A usual batch built from variants of each part, half the time with one part swapped for
    something else (or something appended), perhaps cut short."""
    parts = [options[i] for options, i in zip(_PARTS, choice, strict=True)]
    if parts[0][:1] == b"B":
        parts[1] = b""  # a lone Bind
    if spoil is not None:
        where, odd = spoil
        if where < len(parts):
            parts[where] = odd
        else:
            parts.append(odd)
    data = b"".join(parts)
    data = data[: len(data) - cut]
    assert batch_shape(memoryview(data), max_len) == _reference_batch_shape(data, max_len)
